//! The tutorial's wire modes, client side: `length-ack`, `classic`, `json-header` and
//! `naive`.
//!
//! One command at a time, as the tutorial's client does. Replies are streamed to the
//! output in fixed-size pieces: a length from the server sizes no buffer, so a lying
//! server cannot make the client allocate. The bytes are in [`crate::wire::tutorial`],
//! the recognising of a reply in another mode in [`crate::wire::sniff`]; this file only
//! moves them.

use std::io::Write;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{ClientConfig, ClientError, Input, Output};
use crate::wire::sniff::{self, PROBE};
use crate::wire::tutorial::{check_command_len, parse_length, JsonHeader, MAX_DIGITS};
use crate::wire::Protocol;

const COPY_CHUNK: usize = 64 * 1024;

pub(super) async fn run<S: AsyncRead + AsyncWrite + Unpin, O: Write, E: Write>(
    mut stream: S,
    config: &ClientConfig,
    input: &mut Input,
    out: &mut Output<O, E>,
) -> Result<i32, ClientError> {
    let mut last = 0;
    // Set after an empty length-ack reply: the next command waits until then.
    let mut hold_until = None;
    input.ready();
    while let Some(line) = input.next().await {
        // The server would read only --recv-size bytes and run them: a different command.
        check_command_len(line.len(), config.wire.recv_size).map_err(ClientError::Usage)?;
        if let Some(at) = hold_until.take() {
            tokio::time::sleep_until(at).await;
        }
        stream.write_all(&line).await?;
        last = match config.wire.protocol {
            Protocol::Naive => naive_reply(&mut stream, config, out).await?,
            Protocol::JsonHeader => json_reply(&mut stream, config, out).await?,
            Protocol::LengthAck | Protocol::StructAck => {
                if ack_reply(&mut stream, config, out).await? == 0 {
                    hold_until = Some(tokio::time::Instant::now() + config.ack_settle);
                }
                0
            }
            _ => classic_reply(&mut stream, config, out).await?,
        };
        input.replied();
    }
    Ok(last)
}

fn malformed(msg: String) -> ClientError {
    ClientError::Protocol(crate::wire::message::ProtocolError::Malformed(msg))
}

/// Why reading the start of a reply stopped short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Short {
    Closed,
    Stalled,
}

/// The start of a reply: our header's length and up to [`PROBE`] bytes after it.
struct Start {
    len: u64,
    /// The bytes after the header that arrived, at most `min(len, PROBE)`.
    body: Vec<u8>,
    /// Set when fewer came than that.
    short: Option<Short>,
}

/// A reply is in progress: bytes came, then nothing for the stall timeout.
fn stalled(config: &ClientConfig, got: usize, expected: Option<u64>) -> ClientError {
    ClientError::Usage(sniff::stall_message(
        got,
        expected,
        config.stall_timeout,
        &config.wire,
    ))
}

/// Reads the header and the first bytes after it, and checks they are in our mode: a
/// reply in another (framed frames, a JSON header to a classic client) is refused with
/// the mode to use instead of being printed raw.
async fn read_start<S: AsyncRead + Unpin>(
    stream: &mut S,
    config: &ClientConfig,
) -> Result<Start, ClientError> {
    let fmt = config.wire.header;
    let size = fmt.size();
    let mut start = [0u8; 8 + PROBE];
    // The first byte may take as long as the command runs; after that, the server sends
    // the reply in one go.
    let mut have = stream.read(&mut start[..size]).await?;
    if have == 0 {
        return Err(ClientError::Closed { unanswered: 1 });
    }
    let mut short = None;
    loop {
        let want = match start.get(..size).filter(|_| have >= size) {
            None => size,
            Some(head) => {
                let len = fmt.unpack_len(head).unwrap_or(PROBE as u64);
                size + len.min(PROBE as u64) as usize
            }
        };
        if have >= want {
            break;
        }
        match tokio::time::timeout(config.stall_timeout, stream.read(&mut start[have..want])).await
        {
            Err(_) => short = Some(Short::Stalled),
            Ok(Ok(0)) => short = Some(Short::Closed),
            Ok(Ok(n)) => {
                have += n;
                continue;
            }
            Ok(Err(e)) => return Err(e.into()),
        }
        break;
    }
    let first = &start[..have];
    if sniff::is_tls_reply(first) {
        return Err(ClientError::Usage(sniff::TLS_SERVER_MESSAGE.into()));
    }
    if let Some(theirs) = sniff::identify_reply(first, fmt).filter(|p| *p != config.wire.protocol) {
        return Err(ClientError::Usage(sniff::wrong_mode_message(theirs)));
    }
    if have < size {
        if let Some(theirs) = sniff::short_reply_mode(first) {
            return Err(ClientError::Usage(sniff::wrong_mode_message(theirs)));
        }
        return Err(match short {
            Some(Short::Stalled) => stalled(config, have, None),
            _ => ClientError::Closed { unanswered: 1 },
        });
    }
    let len = fmt
        .unpack_len(&first[..size])
        .map_err(|e| malformed(e.to_string()))?;
    Ok(Start {
        len,
        body: first[size..].to_vec(),
        short,
    })
}

impl Start {
    /// The error for a start that came up short, once whatever arrived has been shown.
    fn check(&self, config: &ClientConfig) -> Result<(), ClientError> {
        match self.short {
            None => Ok(()),
            Some(Short::Closed) => Err(ClientError::Closed { unanswered: 1 }),
            Some(Short::Stalled) => Err(stalled(
                config,
                config.wire.header.size() + self.body.len(),
                Some(self.len),
            )),
        }
    }
}

/// Copies exactly `n` bytes from `r` to `w`, in pieces; `done` bytes of the reply (of
/// `expected`, when known) came before, for the message if it stalls.
async fn copy_exact<R: AsyncRead + Unpin>(
    r: &mut R,
    config: &ClientConfig,
    mut n: u64,
    (mut done, expected): (usize, Option<u64>),
    mut w: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> Result<(), ClientError> {
    let mut buf = vec![0u8; COPY_CHUNK.min(usize::try_from(n).unwrap_or(COPY_CHUNK))];
    while n > 0 {
        let want = buf.len().min(usize::try_from(n).unwrap_or(usize::MAX));
        let got = match tokio::time::timeout(config.stall_timeout, r.read(&mut buf[..want])).await {
            Err(_) => return Err(stalled(config, done, expected)),
            Ok(got) => got?,
        };
        if got == 0 {
            return Err(ClientError::Closed { unanswered: 1 });
        }
        w(&buf[..got])?;
        n -= got as u64;
        done += got;
    }
    Ok(())
}

async fn classic_reply<S: AsyncRead + AsyncWrite + Unpin, O: Write, E: Write>(
    stream: &mut S,
    config: &ClientConfig,
    out: &mut Output<O, E>,
) -> Result<i32, ClientError> {
    let start = read_start(stream, config).await?;
    // The mode cannot tell stderr from stdout, nor carry a status.
    out.out(&start.body)?;
    start.check(config)?;
    let done = config.wire.header.size() + start.body.len();
    let rest = start.len - start.body.len() as u64;
    copy_exact(stream, config, rest, (done, None), |b| out.out(b)).await?;
    Ok(0)
}

/// Reads one length-ack or struct-ack reply and returns its length.
///
/// After an empty reply nothing comes back to show that the server has read our answer,
/// and a server that reads the answer and the next command in one `recv` (the tutorial's)
/// takes the command for part of the answer and waits forever for another. So the caller
/// holds the next command for [`ClientConfig::ack_settle`] after an empty reply.
async fn ack_reply<S: AsyncRead + AsyncWrite + Unpin, O: Write, E: Write>(
    stream: &mut S,
    config: &ClientConfig,
    out: &mut Output<O, E>,
) -> Result<u64, ClientError> {
    // The tutorial: `length = int(recv(1024))`, `send(b'recv_ready')`, then recv until length.
    // The server waits for our answer, so the first read holds the length and nothing else
    // (a refusal, sent in one go, has its message right after it).
    let mut first = [0u8; MAX_DIGITS + PROBE];
    let n = stream.read(&mut first).await?;
    if n == 0 {
        return Err(ClientError::Closed { unanswered: 1 });
    }
    let mut n = n;
    let head = if config.wire.protocol == Protocol::StructAck {
        struct_head(stream, config, &mut first, &mut n).await?
    } else {
        parse_length(&first[..n])
    };
    let (len, digits) = match head {
        Ok(parsed) => parsed,
        Err(e) => {
            // Not our mode: gather the rest of what came (briefly) to say which it is.
            let _ = tokio::time::timeout(JUDGE_WAIT, async {
                while n < first.len() {
                    match stream.read(&mut first[n..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(got) => n += got,
                    }
                }
            })
            .await;
            return Err(other_mode_error(&first[..n], config).unwrap_or_else(|| malformed(e)));
        }
    };
    let first = &first[..n];
    let already = &first[digits..];
    let already = &already[..already
        .len()
        .min(usize::try_from(len).unwrap_or(usize::MAX))];
    if already.is_empty() {
        stream.write_all(&config.ack).await?;
    } else if let Some(e) = (config.wire.protocol == Protocol::StructAck)
        .then(|| other_mode_error(first, config))
        .flatten()
    {
        // A json-header server's reply, say, starts as ours does but does not wait.
        return Err(e);
    } else {
        out.out(already)?;
    }
    // The mode cannot tell stderr from stdout, nor carry a status.
    let rest = len - already.len() as u64;
    copy_exact(stream, config, rest, (already.len(), Some(len)), |b| {
        out.out(b)
    })
    .await?;
    Ok(len)
}

/// Reads struct-ack's `pack(FMT, n)`, which may come in pieces, into `first[..*n]`: the
/// length and the header's size, or why it is not one.
async fn struct_head<S: AsyncRead + Unpin>(
    stream: &mut S,
    config: &ClientConfig,
    first: &mut [u8],
    n: &mut usize,
) -> Result<Result<(u64, usize), String>, ClientError> {
    let fmt = config.wire.header;
    let size = fmt.size();
    while *n < size {
        match tokio::time::timeout(config.stall_timeout, stream.read(&mut first[*n..size])).await {
            Err(_) => return Err(stalled(config, *n, None)),
            Ok(Ok(0)) => return Err(ClientError::Closed { unanswered: 1 }),
            Ok(got) => *n += got?,
        }
    }
    Ok(fmt
        .unpack_len(&first[..size])
        .map(|len| (len, size))
        .map_err(|e| e.to_string()))
}

/// How long a length-ack client gathers a reply that is not a length, to judge it.
const JUDGE_WAIT: Duration = Duration::from_millis(250);

/// The error for a length-ack or struct-ack reply that is another mode's: TLS, framed,
/// json-header, classic (to length-ack), or text with no length at all (naive).
fn other_mode_error(first: &[u8], config: &ClientConfig) -> Option<ClientError> {
    if sniff::is_tls_reply(first) {
        return Some(ClientError::Usage(sniff::TLS_SERVER_MESSAGE.into()));
    }
    let ours = config.wire.protocol;
    let theirs = sniff::identify_reply(first, config.wire.header)
        // A struct-ack reply that came whole without our answer (a refusal, or a
        // classic server) reads as classic, and prints right.
        .filter(|p| *p != ours && !(ours == Protocol::StructAck && *p == Protocol::Classic))
        .or_else(|| {
            (ours == Protocol::LengthAck && sniff::is_text(first)).then_some(Protocol::Naive)
        })?;
    Some(ClientError::Usage(sniff::wrong_mode_message(theirs)))
}

async fn json_reply<S: AsyncRead + AsyncWrite + Unpin, O: Write, E: Write>(
    stream: &mut S,
    config: &ClientConfig,
    out: &mut Output<O, E>,
) -> Result<i32, ClientError> {
    let start = read_start(stream, config).await?;
    let n = start.len;
    if n > config.wire.max_frame as u64 {
        return Err(ClientError::Usage(format!(
            "the server announced a JSON header of {n} bytes, more than --max-frame {}",
            config.wire.max_frame
        )));
    }
    start.check(config)?;
    // Checked against --max-frame above, so this buffer is bounded by our own limit.
    let mut json = start.body;
    let have = json.len();
    json.resize(n as usize, 0);
    let size = config.wire.header.size();
    match tokio::time::timeout(config.stall_timeout, stream.read_exact(&mut json[have..])).await {
        Err(_) => return Err(stalled(config, size + have, None)),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Err(ClientError::Closed { unanswered: 1 })
        }
        Ok(r) => r.map(drop)?,
    }
    let header = JsonHeader::parse(&json).map_err(malformed)?;
    let done = size + json.len();
    match header.split() {
        // An rcmd server says how the output splits: stderr first unless it says otherwise.
        Some((e, o)) if header.stdout_first == Some(true) => {
            copy_exact(stream, config, o, (done, None), |b| out.out(b)).await?;
            copy_exact(stream, config, e, (done, None), |b| out.err(b)).await?;
        }
        Some((e, o)) => {
            copy_exact(stream, config, e, (done, None), |b| out.err(b)).await?;
            copy_exact(stream, config, o, (done, None), |b| out.out(b)).await?;
        }
        None => {
            copy_exact(stream, config, header.total_size, (done, None), |b| {
                out.out(b)
            })
            .await?
        }
    }
    Ok(header.exit_code.unwrap_or(0))
}

async fn naive_reply<S: AsyncRead + AsyncWrite + Unpin, O: Write, E: Write>(
    stream: &mut S,
    config: &ClientConfig,
    out: &mut Output<O, E>,
) -> Result<i32, ClientError> {
    // One read, as the tutorial's client does before the fix: whatever it returns is
    // taken as the whole reply. Leftovers surface in the next command's reply.
    let mut buf = vec![0u8; config.wire.recv_size.max(1)];
    match tokio::time::timeout(config.naive_wait, stream.read(&mut buf)).await {
        Ok(Ok(0)) => Err(ClientError::Closed { unanswered: 1 }),
        Ok(Ok(mut n)) => {
            // A classic server writes its header and its output apart, so the first read
            // may hold the header alone: when it looks like one, give the rest a moment
            // to come before deciding what kind of server this is.
            let classic_start = |got: &[u8]| {
                sniff::is_classic_header_alone(got)
                    || (sniff::identify_reply(got, config.wire.header) == Some(Protocol::Classic)
                        && !sniff::is_whole_classic_reply(got))
            };
            while n < buf.len() && classic_start(&buf[..n]) {
                match tokio::time::timeout(config.naive_wait, stream.read(&mut buf[n..])).await {
                    Ok(Ok(more)) if more > 0 => n += more,
                    _ => break,
                }
            }
            // Naive replies have no shape of their own to check, but an rcmd framed
            // server's answer has an unmistakable one: say so rather than print frames.
            if sniff::is_tls_reply(&buf[..n]) {
                return Err(ClientError::Usage(sniff::TLS_SERVER_MESSAGE.into()));
            }
            // So has a json-header reply, and a classic one that came whole.
            let reply = &buf[..n];
            let other = sniff::identify_reply(reply, config.wire.header).filter(|p| match p {
                Protocol::Classic => sniff::is_whole_classic_reply(reply),
                _ => true,
            });
            if let Some(theirs) = other {
                return Err(ClientError::Usage(sniff::wrong_mode_message(theirs)));
            }
            if sniff::is_framed_reply(&buf[..n]) {
                return Err(ClientError::Usage(sniff::wrong_mode_message(
                    Protocol::Framed,
                )));
            }
            out.out(&buf[..n])?;
            // Digits alone may be output (`printf 3`), so this is only a warning.
            if sniff::is_bare_length(&buf[..n]) {
                let text = sniff::wrong_mode_message(Protocol::LengthAck);
                let text = format!(
                    "warning: digits alone are how a length-ack server starts a reply; if {text}"
                );
                out.err((crate::text::message("rcmd: ", &text) + "\n").as_bytes())?;
            }
            Ok(0)
        }
        Ok(Err(e)) => Err(e.into()),
        Err(_) => {
            out.err(no_reply_message(config.naive_wait).as_bytes())?;
            Ok(0)
        }
    }
}

fn no_reply_message(waited: Duration) -> String {
    let text = format!(
        "no reply within {waited:?}. In naive mode nothing marks where a reply starts or \
         ends, so an empty reply and a slow one look the same."
    );
    crate::text::message("rcmd: ", &text) + "\n"
}
