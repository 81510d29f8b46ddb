//! The four stages of the tutorial, driven over real sockets into a picture of the bytes.
//!
//! Each stage's client reads the way the tutorial's client of that stage reads. Before
//! every read the demo waits (on socket readiness) until exactly the bytes it means the
//! read to see have arrived, so every run draws the same reads. What comes out is a
//! [`Trace`]: the server's bytes as segments of one stream, and the client's recv calls
//! as ranges of it. The text and the HTML page are both drawn from it.

use std::io;
use std::net::SocketAddr;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::{Decoder, Encoder};

use super::{wait_queued, Reference};
use crate::wire::frame::{FrameCodec, DEFAULT_MAX_FRAME};
use crate::wire::header::HeaderFormat;
use crate::wire::message::{ClientCodec, ClientMessage, Hello, Tag};

/// The tutorial's stages, in the order it teaches them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Naive,
    LengthAck,
    Classic,
    Framed,
}

impl Stage {
    pub const ALL: [Stage; 4] = [
        Stage::Naive,
        Stage::LengthAck,
        Stage::Classic,
        Stage::Framed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Naive => "naive",
            Stage::LengthAck => "length-ack",
            Stage::Classic => "classic",
            Stage::Framed => "framed",
        }
    }

    /// The key in `--json`.
    pub fn key(self) -> &'static str {
        match self {
            Stage::LengthAck => "length_ack",
            s => s.name(),
        }
    }
}

/// How the client reads in one case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Send a command, wait for its whole reply, read it. Repeat.
    AfterEachReply,
    /// Send every command (each after the last one's reply arrived), then read.
    AfterAllReplies,
    /// The learner's loop: `recv(N)` until a read comes back short.
    UntilShort,
}

/// What a run of bytes in the server's stream is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Output of a command.
    Output,
    /// A length header or the digits of one, and what it says.
    Header(String),
    /// A framed message's tag byte and what it means.
    Tag(String),
    /// A framed message that is not output (the exit status), with its meaning.
    Status(String),
}

/// A run of bytes the server sent, all for one command (`None`: the handshake).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub owner: Option<usize>,
    pub kind: Kind,
    pub len: usize,
}

/// One recv call: where in the stream it started, how many bytes it returned (0: it
/// would wait, nothing more is coming), and which command's reply it was read for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recv {
    pub start: usize,
    pub len: usize,
    pub asked: usize,
    pub for_command: usize,
}

/// What one command's reply came to on this stage's client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub got: Vec<u8>,
    /// The client's loop stopped while bytes of this reply were still on their way.
    pub stopped_early: bool,
    /// The client's loop called recv again with nothing more coming: it waits forever.
    pub waits: bool,
}

/// One stage's run of one case.
#[derive(Debug, Clone)]
pub struct Trace {
    pub stage: Stage,
    pub segments: Vec<Segment>,
    pub reads: Vec<Recv>,
    pub replies: Vec<Reply>,
    /// The client answered each length (length-ack): one more trip across the network.
    pub acks: usize,
}

impl Trace {
    fn new(stage: Stage, n: usize) -> Trace {
        Trace {
            stage,
            segments: Vec::new(),
            reads: Vec::new(),
            replies: vec![
                Reply {
                    got: Vec::new(),
                    stopped_early: false,
                    waits: false
                };
                n
            ],
            acks: 0,
        }
    }

    /// Bytes in the server's stream.
    pub fn len(&self) -> usize {
        self.segments.iter().map(|s| s.len).sum()
    }

    /// The owners of bytes `start..start + len`, as (owner, bytes) runs.
    pub fn owners(&self, start: usize, len: usize) -> Vec<(Option<usize>, usize)> {
        let mut runs: Vec<(Option<usize>, usize)> = Vec::new();
        let mut at = 0;
        for s in &self.segments {
            let (lo, hi) = (at.max(start), (at + s.len).min(start + len));
            if hi > lo {
                match runs.last_mut() {
                    Some(last) if last.0 == s.owner => last.1 += hi - lo,
                    _ => runs.push((s.owner, hi - lo)),
                }
            }
            at += s.len;
        }
        runs
    }

    fn push(&mut self, owner: usize, kind: Kind, len: usize) {
        if len > 0 {
            self.segments.push(Segment {
                owner: Some(owner),
                kind,
                len,
            });
        }
    }
}

/// Told of every read as it happens: `--step` waits for Enter before one and shows
/// its result right after.
pub trait Observer {
    /// Before stage `stage` calls `recv(asked)` for command `i` (0-based).
    ///
    /// # Errors
    /// An I/O error, which ends the demo.
    fn before(&mut self, stage: Stage, i: usize, asked: usize) -> io::Result<()>;
    /// After that read returned `got` (empty: it would wait, nothing more is coming).
    ///
    /// # Errors
    /// An I/O error, which ends the demo.
    fn after(&mut self, stage: Stage, i: usize, asked: usize, got: &[u8]) -> io::Result<()>;
    /// After the client sent `bytes` that answer the server for command `i` rather than
    /// carry a command: length-ack's `b'recv_ready'`, without which no output comes.
    ///
    /// # Errors
    /// An I/O error, which ends the demo.
    fn answered(&mut self, stage: Stage, i: usize, bytes: &[u8]) -> io::Result<()>;
}

/// Where a stage reports its reads.
pub type Step<'a> = &'a mut dyn Observer;

/// A client connection and everything it read.
struct Client<'a> {
    conn: TcpStream,
    recv_size: usize,
    trace: Trace,
    /// Bytes read so far (the position in the server's stream).
    at: usize,
    step: Step<'a>,
}

impl Client<'_> {
    /// One `recv(asked)` for command `i`, made once `want` bytes are queued (so it returns
    /// `min(asked, want)` bytes). Reads of nothing (`want` 0 with nothing coming) are
    /// recorded as the wait they would be.
    async fn recv(&mut self, i: usize, asked: usize, want: usize) -> io::Result<Vec<u8>> {
        self.step.before(self.trace.stage, i, asked)?;
        let mut buf = vec![0u8; asked.min(want)];
        if !buf.is_empty() {
            wait_queued(&self.conn, want).await?;
            self.conn.read_exact(&mut buf).await?;
        }
        self.trace.reads.push(Recv {
            start: self.at,
            len: buf.len(),
            asked,
            for_command: i,
        });
        self.at += buf.len();
        self.step.after(self.trace.stage, i, asked, &buf)?;
        Ok(buf)
    }

    async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.conn.write_all(bytes).await
    }

    /// Sends an answer the server waits for before command `i`'s output.
    async fn answer(&mut self, i: usize, bytes: &[u8]) -> io::Result<()> {
        self.send(bytes).await?;
        self.step.answered(self.trace.stage, i, bytes)
    }
}

/// Runs `refs` through one stage's server at `addr`, reading as `plan` says.
///
/// # Errors
/// An I/O error, or a server that sent other bytes than the commands' own output.
pub async fn run(
    stage: Stage,
    addr: SocketAddr,
    refs: &[Reference],
    plan: Plan,
    recv_size: usize,
    header: HeaderFormat,
    step: Step<'_>,
) -> io::Result<Trace> {
    let conn = TcpStream::connect(addr).await?;
    conn.set_nodelay(true)?;
    let mut c = Client {
        conn,
        recv_size,
        trace: Trace::new(stage, refs.len()),
        at: 0,
        step,
    };
    match stage {
        Stage::Naive => naive(&mut c, refs, plan).await?,
        Stage::LengthAck => length_ack(&mut c, refs, plan).await?,
        Stage::Classic => classic(&mut c, refs, HeaderFormat::NATIVE_INT).await?,
        Stage::Framed => framed(&mut c, refs, plan, header).await?,
    }
    Ok(c.trace)
}

/// The bytes an unframed server sends for a command, in the order rcmd's server sends
/// them (stderr first, the tutorial's order, in the spooled stages).
pub(crate) fn spooled(r: &Reference) -> Vec<u8> {
    [&r.stderr[..], &r.stdout[..]].concat()
}

fn mismatch(stage: Stage) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "the {} server sent other bytes than the commands' own output",
            stage.name()
        ),
    )
}

async fn naive(c: &mut Client<'_>, refs: &[Reference], plan: Plan) -> io::Result<()> {
    let raw: Vec<Vec<u8>> = refs.iter().map(Reference::raw).collect();
    for (i, r) in raw.iter().enumerate() {
        c.trace.push(i, Kind::Output, r.len());
    }
    let ends: Vec<usize> = raw
        .iter()
        .scan(0, |end, r| {
            *end += r.len();
            Some(*end)
        })
        .collect();
    let n = c.recv_size;
    match plan {
        Plan::AfterEachReply => {
            for i in 0..refs.len() {
                c.send(refs[i].command.as_bytes()).await?;
                let got = c.recv(i, n, ends[i].max(c.at) - c.at).await?;
                c.trace.replies[i].got = got;
            }
        }
        Plan::AfterAllReplies => {
            for (i, r) in refs.iter().enumerate() {
                c.send(r.command.as_bytes()).await?;
                wait_queued(&c.conn, ends[i] - c.at).await?;
            }
            for i in 0..refs.len() {
                let left = ends[refs.len() - 1] - c.at;
                let got = c.recv(i, n, left).await?;
                c.trace.replies[i].got = got;
            }
        }
        Plan::UntilShort => {
            // The loop a learner writes: a short read must be the last piece.
            //     while True:
            //         chunk = s.recv(1024); data += chunk
            //         if len(chunk) < 1024: break
            for (i, r) in refs.iter().enumerate() {
                c.send(r.command.as_bytes()).await?;
                // Read what has arrived when the first piece is in: for a command that
                // pauses, that is the output before the pause.
                let arrived = first_burst(r);
                let mut got = Vec::new();
                loop {
                    let mut ready = (ends[i] - raw[i].len() + arrived).saturating_sub(c.at);
                    if ready == 0 && c.at < ends[i] {
                        // The first burst is all read, and more is coming: recv waits
                        // for it and returns what the second burst brings.
                        ready = ends[i] - c.at;
                    }
                    let chunk = c.recv(i, n, ready).await?;
                    let short = chunk.len() < n;
                    got.extend_from_slice(&chunk);
                    if short {
                        break;
                    }
                }
                let reply = &mut c.trace.replies[i];
                reply.stopped_early = got.len() < raw[i].len() && !got.is_empty();
                reply.waits = got.len() == raw[i].len() && got.len() % n == 0;
                reply.got = got;
                // The rest arrives later; the next command's reply queues behind it.
                if i + 1 < refs.len() {
                    wait_queued(&c.conn, ends[i] - c.at).await?;
                }
            }
        }
    }
    let expected: Vec<u8> = raw.concat();
    let read: Vec<u8> = c.trace.replies.iter().flat_map(|r| r.got.clone()).collect();
    if !expected.starts_with(&read) {
        return Err(mismatch(Stage::Naive));
    }
    Ok(())
}

/// How much of a command's output comes before it pauses: the demo's split case uses
/// `…; sleep …; …` to make a reply arrive in two bursts.
pub fn first_burst(r: &Reference) -> usize {
    match r.command.split_once("; sleep ") {
        Some((before, _)) => {
            // `seq 1 N` prints lines 1..=N.
            let n: usize = before
                .rsplit(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            (1..=n).map(|i| i.to_string().len() + 1).sum()
        }
        None => r.raw().len(),
    }
}

/// Reads a reply of `len` bytes after its head, as the tutorial's fixed clients do:
/// `while got < len: recv(min(N, len - got))`.
async fn read_body(c: &mut Client<'_>, i: usize, len: usize) -> io::Result<Vec<u8>> {
    let mut got = Vec::new();
    while got.len() < len {
        let ask = c.recv_size.min(len - got.len());
        let chunk = c.recv(i, ask, ask).await?;
        got.extend_from_slice(&chunk);
    }
    Ok(got)
}

async fn length_ack(c: &mut Client<'_>, refs: &[Reference], _plan: Plan) -> io::Result<()> {
    // Whatever the plan, nothing can be sent ahead: each reply waits for our answer.
    for (i, r) in refs.iter().enumerate() {
        let body = spooled(r);
        let digits = body.len().to_string();
        c.trace.push(
            i,
            Kind::Header(format!("b'{digits}': the length as text")),
            digits.len(),
        );
        c.trace.push(i, Kind::Output, body.len());
        c.send(r.command.as_bytes()).await?;
        let head = c.recv(i, c.recv_size, digits.len()).await?;
        if head != digits.as_bytes() {
            return Err(mismatch(Stage::LengthAck));
        }
        c.answer(i, crate::wire::tutorial::ACK).await?;
        c.trace.acks += 1;
        let got = read_body(c, i, body.len()).await?;
        if got != body {
            return Err(mismatch(Stage::LengthAck));
        }
        c.trace.replies[i].got = got;
    }
    Ok(())
}

async fn classic(c: &mut Client<'_>, refs: &[Reference], header: HeaderFormat) -> io::Result<()> {
    let size = header.size();
    for (i, r) in refs.iter().enumerate() {
        let body = spooled(r);
        let head = header
            .pack(body.len() as i128)
            .map_err(|e| io::Error::other(format!("classic header: {e}")))?;
        c.trace.push(
            i,
            Kind::Header(format!(
                "{}: struct.unpack('{header}') = {}",
                hex(&head),
                body.len()
            )),
            size,
        );
        c.trace.push(i, Kind::Output, body.len());
        c.send(r.command.as_bytes()).await?;
        let got_head = c.recv(i, size, size).await?;
        if got_head != head {
            return Err(mismatch(Stage::Classic));
        }
        let got = read_body(c, i, body.len()).await?;
        if got != body {
            return Err(mismatch(Stage::Classic));
        }
        c.trace.replies[i].got = got;
    }
    Ok(())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Bytes waiting on `conn`, copied without taking them (MSG_PEEK).
fn peek_all(conn: &TcpStream, max: usize) -> io::Result<Vec<u8>> {
    use std::os::fd::AsRawFd;
    let mut buf = vec![0u8; max];
    // SAFETY: buf is valid for max bytes; MSG_PEEK|MSG_DONTWAIT leaves the data queued and
    // never blocks.
    let n = unsafe {
        libc::recv(
            conn.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            max,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::WouldBlock {
            Ok(Vec::new())
        } else {
            Err(e)
        };
    }
    buf.truncate(n as usize);
    Ok(buf)
}

/// Waits until `replies` whole framed replies (each ending in a status message) are
/// queued, and returns their frames as (payload) in order.
async fn wait_framed(
    conn: &TcpStream,
    header: HeaderFormat,
    replies: usize,
) -> io::Result<Vec<bytes::Bytes>> {
    let mut queued = 0;
    loop {
        let mut bytes = BytesMut::from(&peek_all(conn, 1 << 20)?[..]);
        if bytes.len() > queued {
            queued = bytes.len();
        }
        let mut codec = FrameCodec::new(header, DEFAULT_MAX_FRAME);
        let mut frames = Vec::new();
        let mut done = 0;
        while let Some(f) = codec
            .decode(&mut bytes)
            .map_err(|e| io::Error::other(e.to_string()))?
        {
            let tag = f.first().copied().and_then(Tag::from_byte);
            if matches!(tag, Some(Tag::Exit | Tag::Signaled | Tag::Failed)) {
                done += 1;
            }
            frames.push(f);
            if done == replies {
                return Ok(frames);
            }
        }
        wait_queued(conn, queued + 1).await?;
    }
}

async fn framed(
    c: &mut Client<'_>,
    refs: &[Reference],
    plan: Plan,
    header: HeaderFormat,
) -> io::Result<()> {
    let mut codec = ClientCodec::new(header, DEFAULT_MAX_FRAME);
    let mut hello = BytesMut::new();
    codec
        .encode(
            ClientMessage::Hello(Hello::new(DEFAULT_MAX_FRAME, bytes::Bytes::new())),
            &mut hello,
        )
        .map_err(|e| io::Error::other(e.to_string()))?;
    c.send(&hello).await?;
    // The server's hello: read whole, not drawn.
    let frames = wait_hello(&c.conn, header).await?;
    let mut skip = vec![0u8; frames];
    c.conn.read_exact(&mut skip).await?;

    let run = |cmd: &str| -> io::Result<Vec<u8>> {
        let mut b = BytesMut::new();
        ClientCodec::new(header, DEFAULT_MAX_FRAME)
            .encode(ClientMessage::Run(cmd.as_bytes().to_vec().into()), &mut b)
            .map_err(|e| io::Error::other(e.to_string()))?;
        Ok(b.to_vec())
    };
    let batches: Vec<Vec<usize>> = if plan == Plan::AfterAllReplies {
        // Pipelined: every request before any reply is read; framing keeps them apart.
        vec![(0..refs.len()).collect()]
    } else {
        (0..refs.len()).map(|i| vec![i]).collect()
    };
    for batch in batches {
        for &i in &batch {
            c.send(&run(&refs[i].command)?).await?;
        }
        let frames = wait_framed(&c.conn, header, batch.len()).await?;
        let mut owner = batch.iter().copied();
        let mut i = owner.next().expect("batches are not empty");
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut bytes_of: Vec<(usize, usize)> = Vec::new();
        for f in &frames {
            let head = header
                .pack(f.len() as i128)
                .map_err(|e| io::Error::other(e.to_string()))?;
            let tag = f[0];
            let data = Tag::from_byte(tag).filter(|t| matches!(t, Tag::Stdout | Tag::Stderr));
            let body = &f[1..];
            let decoded = format!(
                "{}: struct.unpack('{header}') = {} = 1 tag byte + {}",
                hex(&head),
                f.len(),
                body.len()
            );
            c.trace.push(i, Kind::Header(decoded), head.len());
            match data {
                Some(t) => {
                    let what = t.name();
                    c.trace
                        .push(i, Kind::Tag(format!("'{}' ({what})", tag as char)), 1);
                    c.trace.push(i, Kind::Output, body.len());
                    if t == Tag::Stdout { &mut out } else { &mut err }.extend_from_slice(body);
                }
                None => {
                    let status = crate::wire::message::Message::parse(f.clone())
                        .map(|m: crate::wire::message::ServerMessage| match m {
                            crate::wire::message::ServerMessage::Done(s) => {
                                format!("'{}' {s}", tag as char)
                            }
                            other => format!("{other:?}"),
                        })
                        .map_err(|e| io::Error::other(e.to_string()))?;
                    c.trace.push(i, Kind::Status(status), f.len());
                    bytes_of.push((i, 0));
                    if out != refs[i].stdout || err != refs[i].stderr {
                        return Err(mismatch(Stage::Framed));
                    }
                    c.trace.replies[i].got = [&err[..], &out[..]].concat();
                    out.clear();
                    err.clear();
                    if let Some(next) = owner.next() {
                        i = next;
                    }
                }
            }
        }
        // Read it all, recv(N) at a time: the codec keeps what belongs to the next frame.
        let total: usize = frames.iter().map(|f| header.size() + f.len()).sum();
        let end = c.at + total;
        let mut first = batch[0];
        while c.at < end {
            // Each read is credited to the command whose bytes it starts in.
            let start_owner = c.trace.owners(c.at, 1).first().and_then(|o| o.0);
            first = start_owner.unwrap_or(first);
            let ask = c.recv_size.min(end - c.at);
            c.recv(first, c.recv_size, ask).await?;
        }
    }
    Ok(())
}

/// Waits for the server's hello and returns its length on the wire.
async fn wait_hello(conn: &TcpStream, header: HeaderFormat) -> io::Result<usize> {
    loop {
        let peeked = peek_all(conn, 4096)?;
        let mut bytes = BytesMut::from(&peeked[..]);
        let mut codec = FrameCodec::new(header, DEFAULT_MAX_FRAME);
        if let Some(f) = codec
            .decode(&mut bytes)
            .map_err(|e| io::Error::other(e.to_string()))?
        {
            return Ok(header.size() + f.len());
        }
        wait_queued(conn, peeked.len() + 1).await?;
    }
}
