//! The `framed` protocol, client side. Commands are sent as soon as they are read, without
//! waiting for earlier replies (pipelining); replies come back in request order.
//!
//! With a version-2 server, a one-shot command is a session as with ssh: its environment,
//! directory and terminal are set up first, standard input follows as the server grants
//! room for it, and Ctrl-C, SIGTERM, SIGHUP and terminal resizes are passed on.

use std::io::Write;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::time::Instant;
use tokio_util::codec::{FramedRead, FramedWrite};

use super::{ClientConfig, ClientError, Input, Output};
use crate::status::Status;
use crate::wire::message::{
    signal_name, ClientCodec, ClientMessage, Hello, ServerMessage, MAX_HELLO_FRAME,
};
use crate::wire::sniff::{identify_reply, wrong_mode_message};

/// Room for one read from the socket. Large output arrives in large frames; reading them
/// in large pieces means fewer system calls per byte.
const READ_BUFFER: usize = 1 << 20;
/// After passing a signal on, how long the command gets to end before we hang up (and
/// the server kills it). A second Ctrl-C within this long hangs up at once.
pub const SIGNAL_GRACE: Duration = Duration::from_secs(2);
/// Two Ctrl-C this close together mean "stop waiting".
const DOUBLE_INTERRUPT: Duration = Duration::from_secs(1);

type Reader<S> = FramedRead<ReadHalf<S>, ClientCodec>;
type Writer<S> = FramedWrite<WriteHalf<S>, ClientCodec>;

/// Runs the session on `stream`. With `splice`, large stdout payloads go from the socket
/// to stdout inside the kernel; with `splice_stdin`, stdin goes from its pipe into the
/// socket so (and `input` has no stdin of its own).
pub(super) async fn run<S: AsyncRead + AsyncWrite, O: Write, E: Write>(
    stream: S,
    mut splice: Option<super::spliced::SpliceIn>,
    splice_stdin: Option<super::spliced_stdin::SpliceOut>,
    config: &ClientConfig,
    input: &mut Input,
    out: &mut Output<O, E>,
) -> Result<i32, ClientError> {
    let wire = config.wire;
    let (rd, wr) = tokio::io::split(stream);
    let mut reader = FramedRead::with_capacity(
        rd,
        ClientCodec::new(wire.header, MAX_HELLO_FRAME),
        READ_BUFFER,
    );
    let mut writer = FramedWrite::new(wr, ClientCodec::new(wire.header, wire.max_frame));
    // --connect-timeout covers the hello too: a peer that accepts and never answers is as
    // unreachable as one that never accepts.
    let version = match config.connect_timeout {
        Some(limit) => tokio::time::timeout(limit, handshake(&mut reader, &mut writer, config))
            .await
            .map_err(|_| ClientError::HandshakeTimeout(limit))??,
        None => handshake(&mut reader, &mut writer, config).await?,
    };
    reader.decoder_mut().set_max_frame(wire.max_frame);

    let session = &config.session;
    let one_shot = input.is_one_shot();
    if version < 2 {
        // An older server: what it cannot do must not silently happen some other way.
        if session.cwd.is_some() || !session.env.is_empty() {
            return Err(ClientError::Usage(
                "the server speaks protocol version 1, which cannot set a command's \
                 directory or environment (--cwd, -e): upgrade the server"
                    .into(),
            ));
        }
        if session.tty.is_some() {
            out.err(b"rcmd: warning: the server speaks protocol version 1: no terminal\n")?;
        }
    }
    let forwards = version >= 2 && one_shot;
    let splice_stdin = splice_stdin.filter(|_| forwards);
    let mut stdin = input.take_stdin().filter(|_| forwards);
    let mut signals = if version >= 2 && session.forward_signals {
        Some(Signals::new()?)
    } else {
        None
    };
    input.ready();
    let mut tty_active = false;

    let mut pending = 0usize;
    let mut input_open = true;
    let mut last = 0;
    // Stdin for the one-shot command: room the server has granted, and a chunk read but
    // not yet sent for lack of room.
    let mut credit = 0usize;
    let mut held: Option<Bytes> = None;
    let mut stdin_open = stdin.is_some() || splice_stdin.is_some();
    let mut grace: Option<Instant> = None;
    let mut last_interrupt: Option<Instant> = None;
    // At a prompt, a command that outlives its Ctrl-C is killed (once) and the session
    // goes on; elsewhere the client hangs up, and the server kills it.
    let prompt = input.is_prompt();
    let mut killed = false;
    // A frame that has started arriving and stops: how much of it we had, and since when.
    let mut partial = (0usize, Instant::now());
    while input_open || pending > 0 {
        let buffered = reader.read_buffer().len();
        if buffered != partial.0 {
            partial = (buffered, Instant::now());
        }
        let stall_at = (buffered > 0).then(|| partial.1 + config.stall_timeout);
        let max_body = writer.encoder().max_body();
        let can_send_stdin = stdin_open && pending > 0;
        tokio::select! {
            line = input.next(), if input_open => match line {
                Some(line) => {
                    if line.len() > max_body {
                        return Err(ClientError::Usage(format!(
                            "command of {} bytes is longer than one frame allows ({max_body} \
                             bytes with header '{}' and the server's --max-frame)",
                            line.len(), wire.header
                        )));
                    }
                    if version >= 2 && one_shot {
                        for msg in session.setup_messages() {
                            writer.feed(msg).await?;
                        }
                        tty_active = session.tty.is_some();
                    }
                    let line = Bytes::from(line);
                    let msg = if stdin_open {
                        ClientMessage::RunWithStdin(line)
                    } else {
                        ClientMessage::Run(line)
                    };
                    writer.send(msg).await?;
                    pending += 1;
                }
                None => input_open = false,
            },
            waiting = stdin_waiting(&splice_stdin, credit), if can_send_stdin => {
                let splicer = splice_stdin.as_ref().expect("waiting only with a splicer");
                match waiting? {
                    0 => {
                        stdin_open = false;
                        writer.send(ClientMessage::StdinEof).await?;
                    }
                    waiting => {
                        let n = waiting.min(credit).min(max_body);
                        credit -= n;
                        send_spliced_stdin(&mut writer, splicer, n).await?;
                    }
                }
            }
            chunk = next_stdin(&mut stdin, &mut held, credit, max_body), if can_send_stdin && splice_stdin.is_none() => {
                match chunk {
                    Some(data) => {
                        credit -= data.len();
                        send_stdin(&mut writer, data).await?;
                    }
                    None => {
                        stdin_open = false;
                        writer.send(ClientMessage::StdinEof).await?;
                    }
                }
            }
            msg = next_message(&mut reader, &mut splice), if pending > 0 => match msg {
                Some(Ok(ServerMessage::Stdout(b))) => out.out(&b)?,
                Some(Ok(ServerMessage::Stderr(b))) => out.err(&b)?,
                Some(Ok(ServerMessage::Done(status))) => {
                    if let Status::Failed { message, .. } = &status {
                        let message = crate::printable::printable(message.as_bytes());
                        out.err(format!("{message}\n").as_bytes())?;
                    }
                    last = status.exit_code();
                    pending -= 1;
                    // A Ctrl-C for this command says nothing about the next one.
                    grace = None;
                    last_interrupt = None;
                    killed = false;
                    input.replied();
                }
                Some(Ok(ServerMessage::Credit(n))) => credit += n as usize,
                Some(Ok(ServerMessage::Notice(m))) => {
                    let m = crate::printable::printable(m.as_bytes());
                    out.err(format!("rcmd: warning: {m}\n").as_bytes())?;
                }
                Some(Ok(ServerMessage::Error(m))) => return Err(ClientError::Server(m)),
                Some(Ok(ServerMessage::Hello(_))) => {
                    return Err(ClientError::Server("unexpected second hello".into()))
                }
                Some(Ok(ServerMessage::Copy(_))) => {
                    return Err(ClientError::Server("unexpected copy message".into()))
                }
                Some(Err(e)) => return Err(e),
                None => return Err(ClientError::Closed { unanswered: pending }),
            },
            sig = next_signal(&mut signals) => {
                if sig == SignalKind::window_change().as_raw_value() {
                    if tty_active {
                        if let Some((rows, cols)) = super::terminal::window_size() {
                            writer.send(ClientMessage::Resize { rows, cols }).await?;
                        }
                    }
                    continue;
                }
                if pending == 0 {
                    // Nothing running to pass it on to: the signal is for us.
                    return Ok(128 + sig);
                }
                let now = Instant::now();
                if sig == SignalKind::interrupt().as_raw_value()
                    && last_interrupt.is_some_and(|t| now.duration_since(t) < DOUBLE_INTERRUPT)
                {
                    if prompt && !killed {
                        // At the prompt a second Ctrl-C stops this command, not the session.
                        killed = true;
                        grace = Some(kill_current(&mut writer, out, now).await?);
                        continue;
                    }
                    // The terminal echoed ^C; the shell's prompt belongs on a new line.
                    out.err(b"\n")?;
                    return Ok(128 + sig);
                }
                if sig == SignalKind::interrupt().as_raw_value() {
                    last_interrupt = Some(now);
                }
                if let Some(name) = signal_name(sig) {
                    writer.send(ClientMessage::Signal(name.into())).await?;
                }
                grace.get_or_insert(now + SIGNAL_GRACE);
                last = 128 + sig;
            }
            // Bytes of a frame can arrive while this select waits with no stall deadline
            // (the buffer was empty when it began), and a frame that stops there wakes no
            // branch: look again now and then, so a stall is seen within twice its limit.
            _ = tokio::time::sleep(config.stall_timeout), if pending > 0 && stall_at.is_none() => {}
            _ = crate::deadline::until(stall_at) => {
                if reader.read_buffer().len() == partial.0 {
                    let in_head = reader.decoder().frames().is_between_frames();
                    return Err(ClientError::Usage(stalled_mid_frame(
                        partial.0,
                        in_head,
                        config,
                    )));
                }
            }
            _ = crate::deadline::until(grace) => {
                if prompt && !killed {
                    // A person at the prompt gets the prompt back, as from a shell.
                    killed = true;
                    grace = Some(kill_current(&mut writer, out, Instant::now()).await?);
                    continue;
                }
                // The command did not end on the signal: hang up, and the server kills it.
                out.err(b"rcmd: the command did not end after the signal; disconnecting\n")?;
                return Ok(last);
            }
        }
    }
    Ok(last)
}

/// Kills the running command (SIGKILL, which it cannot ignore) and says so; returns how
/// long its end is waited for before hanging up.
async fn kill_current<W, O: std::io::Write, E: std::io::Write>(
    writer: &mut FramedWrite<W, ClientCodec>,
    out: &mut Output<O, E>,
    now: Instant,
) -> Result<Instant, ClientError>
where
    W: tokio::io::AsyncWrite + Unpin,
{
    out.err(b"\nrcmd: the command did not end on Ctrl-C; killing it (SIGKILL)\n")?;
    let name =
        signal_name(rustix::process::Signal::KILL.as_raw()).expect("KILL is one rcmd forwards");
    writer.send(ClientMessage::Signal(name.into())).await?;
    Ok(now + SIGNAL_GRACE)
}

/// Completes the handshake on `stream` and hands the connection over, for messages
/// other than commands (`rcmd cp`).
pub(super) async fn open(
    stream: Box<dyn super::Stream>,
    config: &ClientConfig,
) -> Result<super::FramedConnection, ClientError> {
    let wire = config.wire;
    let (rd, wr) = tokio::io::split(stream);
    let mut reader = FramedRead::with_capacity(
        rd,
        ClientCodec::new(wire.header, MAX_HELLO_FRAME),
        READ_BUFFER,
    );
    let mut writer = FramedWrite::new(wr, ClientCodec::new(wire.header, wire.max_frame));
    let version = match config.connect_timeout {
        Some(limit) => tokio::time::timeout(limit, handshake(&mut reader, &mut writer, config))
            .await
            .map_err(|_| ClientError::HandshakeTimeout(limit))??,
        None => handshake(&mut reader, &mut writer, config).await?,
    };
    reader.decoder_mut().set_max_frame(wire.max_frame);
    let mut codec = ClientCodec::new(wire.header, wire.max_frame);
    codec.set_peer_max_frame(writer.encoder().peer_max_frame());
    Ok(super::FramedConnection {
        reader,
        writer: writer.into_inner(),
        codec,
        version,
        raw: None,
    })
}

/// Why the client gives up on a reply that stopped part-way through a frame, after
/// `got` bytes of it and nothing more for the stall timeout. A header that never
/// completes is what a server with a wider --header sends; once a head was read whole,
/// the two ends agree on the format (as the hello showed), and the cause lies elsewhere.
fn stalled_mid_frame(got: usize, in_head: bool, config: &ClientConfig) -> String {
    let waited = config.stall_timeout.as_secs_f64();
    let header = config.wire.header;
    if in_head {
        format!(
            "the reply stopped part-way through a frame's {}-byte header ({got} bytes of it \
             came) and nothing more came for {waited}s. The likely cause: the server uses \
             another --header than this client's '{header}' (both ends must use the same \
             format)",
            header.size()
        )
    } else {
        format!(
            "the reply stopped part-way through a frame ({got} bytes of its data came after \
             a well-formed header) and nothing more came for {waited}s: the server, or the \
             network between us, stopped sending"
        )
    }
}

/// The next message from the server, through the splicer when there is one.
async fn next_message<S: AsyncRead>(
    reader: &mut Reader<S>,
    splice: &mut Option<super::spliced::SpliceIn>,
) -> Option<Result<ServerMessage, ClientError>> {
    match splice {
        Some(s) => s.next(reader).await,
        None => reader.next().await.map(|r| r.map_err(ClientError::from)),
    }
}

/// Sends our hello and reads the server's; returns the protocol version both speak.
async fn handshake<S: AsyncRead + AsyncWrite>(
    reader: &mut Reader<S>,
    writer: &mut Writer<S>,
    config: &ClientConfig,
) -> Result<u8, ClientError> {
    let wire = config.wire;
    let token = config
        .token
        .as_ref()
        .map_or_else(Bytes::new, |t| Bytes::copy_from_slice(t.as_bytes()));
    writer
        .send(ClientMessage::Hello(Hello::new(wire.max_frame, token)))
        .await?;
    let answer = reader.next().await;
    // Anything but a hello may be another mode's reply to our hello: say which mode the
    // server speaks rather than what its bytes look like as frames.
    if !matches!(
        answer,
        Some(Ok(ServerMessage::Hello(_) | ServerMessage::Error(_)))
    ) {
        if let Some(theirs) = other_mode(reader, wire.header).await {
            return Err(ClientError::Usage(wrong_mode_message(theirs)));
        }
        // A TLS alert or handshake record: a TLS server read our hello as garbage.
        if matches!(reader.read_buffer().get(..2), Some([0x15 | 0x16, 0x03])) {
            return Err(ClientError::Usage(
                "the server speaks TLS (rcmd's default); leave out --plaintext".into(),
            ));
        }
    }
    match answer {
        Some(Ok(ServerMessage::Hello(h))) => {
            h.check().map_err(ClientError::Server)?;
            writer.encoder_mut().set_peer_max_frame(h.max_frame);
            Ok(h.version.min(crate::wire::message::VERSION))
        }
        // Turned away for want of room, before anything ran: worth another try.
        Some(Ok(ServerMessage::Error(m))) if m.starts_with(crate::wire::message::BUSY) => {
            Err(ClientError::Busy(m))
        }
        Some(Ok(ServerMessage::Error(m))) => Err(ClientError::Server(m)),
        Some(Ok(other)) => Err(ClientError::Server(format!(
            "expected a hello, got {other:?}"
        ))),
        // No other mode's reply either: most often the two ends frame with different
        // --header formats, and the frame read here is nonsense ("empty frame").
        Some(Err(e)) => Err(ClientError::Usage(format!(
            "the server's answer to the hello is not a message this client can read ({e}). \
             The likely cause is different --header formats on the two ends: this client \
             uses a {}-byte '{}' header, and rcmd's default is !I",
            wire.header.size(),
            wire.header
        ))),
        None => Err(ClientError::Closed { unanswered: 0 }),
    }
}

/// Which mode the server at `host` speaks without TLS, asked on a new connection with a
/// plaintext hello, after a TLS handshake failed: a tutorial server turns TLS away without
/// a word, so only a plaintext hello gets it to say what it is. `None` when that tells
/// nothing either.
pub(super) async fn plaintext_mode(host: &str, config: &ClientConfig) -> Option<String> {
    let stream = super::connect(host, config.connect_timeout).await.ok()?;
    let (rd, wr) = tokio::io::split(stream);
    let mut reader = FramedRead::new(rd, ClientCodec::new(config.wire.header, MAX_HELLO_FRAME));
    let mut writer = FramedWrite::new(wr, ClientCodec::new(config.wire.header, MAX_HELLO_FRAME));
    // No token: this server is not the one the user meant to reach.
    let hello = Hello::new(config.wire.max_frame, Bytes::new());
    writer.send(ClientMessage::Hello(hello)).await.ok()?;
    let answer = tokio::time::timeout(JUDGE_WAIT * 8, reader.next()).await;
    // A hello, or a framed refusal (no token): a plaintext framed server either way.
    if let Ok(Some(Ok(_))) = answer {
        return Some(
            "the server speaks `framed` without TLS (started with --plaintext); add \
             --plaintext"
                .into(),
        );
    }
    other_mode(&mut reader, config.wire.header)
        .await
        .map(wrong_mode_message)
}

/// Sends one piece of stdin: its small head and the data in one vectored write, straight
/// from the buffer stdin was read into.
async fn send_stdin<S: AsyncWrite>(writer: &mut Writer<S>, data: Bytes) -> Result<(), ClientError> {
    use bytes::Buf;
    use tokio::io::AsyncWriteExt;
    debug_assert!(writer.write_buffer().is_empty(), "every send is flushed");
    let mut head = bytes::BytesMut::with_capacity(9);
    writer.encoder().encode_stdin_head(data.len(), &mut head)?;
    let socket = writer.get_mut();
    socket.write_all_buf(&mut head.freeze().chain(data)).await?;
    // A TLS stream may hold the tail of what it took until flushed; the server must not
    // wait for it while we wait for the server.
    socket.flush().await?;
    Ok(())
}

/// Sends `len` bytes of stdin that wait in its pipe: the head from here, the bytes
/// spliced behind it.
async fn send_spliced_stdin<S: AsyncWrite>(
    writer: &mut Writer<S>,
    splicer: &super::spliced_stdin::SpliceOut,
    len: usize,
) -> Result<(), ClientError> {
    use tokio::io::AsyncWriteExt;
    debug_assert!(writer.write_buffer().is_empty(), "every send is flushed");
    let mut head = bytes::BytesMut::with_capacity(9);
    writer.encoder().encode_stdin_head(len, &mut head)?;
    let socket = writer.get_mut();
    socket.write_all(&head).await?;
    socket.flush().await?;
    splicer.send(len).await?;
    Ok(())
}

/// How many bytes wait in the spliced stdin once some do (`0`: its end), when the server
/// has granted room; pending without a splicer or room.
async fn stdin_waiting(
    splicer: &Option<super::spliced_stdin::SpliceOut>,
    credit: usize,
) -> std::io::Result<usize> {
    match splicer {
        Some(s) if credit > 0 => s.waiting().await,
        _ => std::future::pending().await,
    }
}

/// How long the client waits for the rest of an answer that is not a hello, to judge it.
const JUDGE_WAIT: Duration = Duration::from_millis(250);

/// Whether the server's answer to our hello is a whole reply in a tutorial mode. A tutorial
/// server answers a hello with one short reply and closes, so the rest of it is read first
/// (briefly); a classic reply must then be exactly as long as its header says, so that a
/// framed server that lies is not taken for one.
async fn other_mode<S: AsyncRead>(
    reader: &mut Reader<S>,
    header: crate::wire::header::HeaderFormat,
) -> Option<crate::wire::Protocol> {
    use crate::wire::Protocol;
    use tokio::io::AsyncReadExt;
    let _ = tokio::time::timeout(JUDGE_WAIT, async {
        let mut chunk = [0u8; 512];
        while reader.read_buffer().len() < crate::wire::sniff::PROBE {
            match reader.get_mut().read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => reader.read_buffer_mut().extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    let got = reader.read_buffer();
    // An rcmd tutorial server refuses a hello in its own mode's words, naming the mode;
    // a length-ack one first sends the length and waits for an answer we do not give.
    if let Some(theirs) = crate::wire::sniff::refusal_names_mode(got) {
        return Some(theirs);
    }
    if crate::wire::sniff::is_bare_length(got) {
        return Some(Protocol::LengthAck);
    }
    match identify_reply(got, header)? {
        Protocol::Framed => None,
        Protocol::Classic => {
            crate::wire::sniff::is_whole_classic_reply(got).then_some(Protocol::Classic)
        }
        theirs => Some(theirs),
    }
}

/// The next piece of stdin to send, within `credit` and one frame; `None` at its end.
/// Pending while there is no room, so the server's grants pace how fast we read.
async fn next_stdin(
    stdin: &mut Option<tokio::sync::mpsc::Receiver<Bytes>>,
    held: &mut Option<Bytes>,
    credit: usize,
    max_body: usize,
) -> Option<Bytes> {
    if credit == 0 {
        return std::future::pending().await;
    }
    let mut data = match held.take() {
        Some(d) => d,
        None => stdin.as_mut()?.recv().await?,
    };
    let room = credit.min(max_body);
    if data.len() > room {
        *held = Some(data.split_off(room));
    }
    Some(data)
}

/// The signals a session passes on to the remote command.
struct Signals {
    int: Signal,
    term: Signal,
    hup: Signal,
    winch: Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
            winch: signal(SignalKind::window_change())?,
        })
    }
}

async fn next_signal(signals: &mut Option<Signals>) -> i32 {
    let Some(s) = signals else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = s.int.recv() => SignalKind::interrupt().as_raw_value(),
        _ = s.term.recv() => SignalKind::terminate().as_raw_value(),
        _ = s.hup.recv() => SignalKind::hangup().as_raw_value(),
        _ = s.winch.recv() => SignalKind::window_change().as_raw_value(),
    }
}
