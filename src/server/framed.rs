//! The `framed` protocol, server side: handshake (and authentication), then run requests
//! in order and stream each reply while still reading the next requests, so a client may
//! pipeline, and we notice at once when it goes away.
//!
//! Nothing in the loop ever waits on the peer: replies go through an [`Outbox`] written
//! from inside the `select!`, so a client that stops reading cannot hold back a command's
//! `--timeout`, the server's shutdown or the detection of its own departure; and if its
//! queue makes no progress for `--idle-timeout`, the connection ends.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::time::Instant;
use tokio_util::codec::{Encoder, FramedRead};
use tracing::{debug, info, warn};

use super::outbox::Outbox;
use super::{admission, env, ConnError, ServerConfig, Shutdown};
use crate::exec::{self, Event, OutPipe, Piece, Request, Running, TtyRequest, WindowSize};
use crate::printable::printable;
use crate::status::Status;
use crate::wire::header::HeaderFormat;
use crate::wire::message::{
    chunks, signal_number, ClientMessage, Hello, ProtocolError, ServerCodec, ServerMessage,
    MAX_HELLO_FRAME, STDIN_WINDOW,
};
use crate::wire::transfer::Transfer;

/// Requests read ahead while one runs; past this we stop reading and TCP pushes back.
const MAX_QUEUED: usize = 64;
/// Output queued for the peer before we stop taking more from the command: the command
/// then waits on its full pipe, so a slow reader slows it down instead of growing memory.
const HIGH_WATER: usize = 1 << 20;
/// Variables one command may be given, and their bytes in all (Linux's limit on one
/// argument string): queued commands cannot grow the server's memory without bound.
const MAX_ENV: usize = 256;
const MAX_ENV_BYTES: usize = 128 << 10;
/// How long a last message (a refusal, a goodbye) may take to write before we hang up.
const LAST_WORDS: Duration = Duration::from_millis(500);

type Reader<S> = FramedRead<ReadHalf<S>, ServerCodec>;
/// What a copy takes over: the writing half, the encoder, and the socket to send files into.
type Handed<S> = (WriteHalf<S>, ServerCodec, Option<crate::splice::Socket>);

/// The writing half of a connection: messages are encoded into the outbox and written
/// from the loop.
struct Writer<S> {
    socket: WriteHalf<S>,
    codec: ServerCodec,
    outbox: Outbox,
    /// Output is spliced when at least this much waits in the pipe (see [`ServerConfig`]).
    splice_min: usize,
}

impl<S: AsyncWrite> Writer<S> {
    fn push(&mut self, msg: ServerMessage) -> Result<(), ProtocolError> {
        let mut buf = BytesMut::new();
        self.codec.encode(msg, &mut buf)?;
        self.outbox.push(buf.freeze());
        Ok(())
    }

    /// Queues output as frames the header and the peer can take. Each frame's small head
    /// and its payload go out in one vectored write, straight from the buffer the pipe
    /// was read into: the output is never copied on its way to the socket.
    fn push_output(&mut self, data: Bytes, stderr: bool) -> Result<(), ProtocolError> {
        for piece in chunks(data, self.codec.max_body()) {
            let mut head = BytesMut::with_capacity(9);
            self.codec
                .encode_output_head(stderr, piece.len(), &mut head)?;
            self.outbox.push(head.freeze());
            self.outbox.push(piece);
        }
        Ok(())
    }

    /// Queues output of `len` bytes still in `pipe` as one frame: its head now, its
    /// payload spliced from the pipe once the head is written.
    fn push_in_pipe(
        &mut self,
        pipe: OutPipe,
        len: usize,
        stderr: bool,
    ) -> Result<(), ProtocolError> {
        let mut head = BytesMut::with_capacity(9);
        self.codec.encode_output_head(stderr, len, &mut head)?;
        self.outbox.push(head.freeze());
        self.outbox.push_pipe(pipe, len);
        Ok(())
    }

    /// How much output a command may leave in its pipe for us to splice: from
    /// `splice_min` to one frame's worth. `None`: read it all.
    fn in_place(&self) -> Option<(usize, usize)> {
        let max = self.codec.max_body();
        let min = self.splice_min.max(1);
        (self.outbox.can_splice() && max >= min).then_some((min, max))
    }

    /// Writes what is queued, giving up after `limit`: for last words to a peer that may
    /// not be reading.
    async fn flush_within(&mut self, limit: Duration) {
        let _ = tokio::time::timeout(limit, async {
            while !self.outbox.is_empty() {
                if self.outbox.write_some(&mut self.socket).await.is_err() {
                    return;
                }
            }
        })
        .await;
    }

    /// Writes everything queued and hands over the socket, the encoder and the second
    /// handle on the socket (in the clear), for a copy.
    async fn into_parts(mut self) -> std::io::Result<Handed<S>> {
        while !self.outbox.is_empty() {
            self.outbox.write_some(&mut self.socket).await?;
        }
        let raw = self.outbox.take_socket();
        Ok((self.socket, self.codec, raw))
    }

    /// Tells the peer why the connection ends, as far as it is listening, and ends our
    /// side of it.
    async fn last_words(&mut self, why: &str) {
        if self.push(ServerMessage::Error(why.to_string())).is_ok() {
            self.flush_within(LAST_WORDS).await;
        }
        let _ = tokio::time::timeout(LAST_WORDS, self.socket.shutdown()).await;
    }

    /// Tells the peer why it is being turned away; the caller then ends the connection
    /// with the returned error.
    async fn refuse(&mut self, why: String) -> ConnError {
        self.last_words(&why).await;
        ConnError::Refused(why)
    }
}

/// A command waiting its turn, with what the client asked for around it.
#[derive(Debug, Default)]
struct Job {
    line: Bytes,
    stdin: bool,
    env: Vec<(OsString, OsString)>,
    env_bytes: usize,
    cwd: Option<PathBuf>,
    tty: Option<TtyRequest>,
}

/// The running command's input: chunks received and not yet written to it.
struct Input {
    pipe: exec::Stdin,
    pending: VecDeque<Bytes>,
    /// The client sent `Z`: close the input once `pending` is written.
    eof: bool,
    /// Written since the last grant; granted back to the client in batches.
    written: usize,
}

/// The command being run for this connection.
struct Current {
    running: Running,
    line: Bytes,
    input: Option<Input>,
}

/// Serves one connection on `stream`. With `splice`, a second handle on the same socket,
/// large output is spliced from the command's pipe into it instead of copied.
pub(super) async fn serve<S: AsyncRead + AsyncWrite>(
    stream: S,
    splice: Option<crate::splice::Socket>,
    peer: SocketAddr,
    config: &ServerConfig,
    stop: &Shutdown,
) -> Result<(), ConnError> {
    let wire = config.wire;
    let (rd, wr) = tokio::io::split(stream);
    // Until the peer has said who it is, it gets only small frames.
    let mut reader = FramedRead::new(rd, ServerCodec::new(wire.header, MAX_HELLO_FRAME));
    let mut writer = Writer {
        socket: wr,
        codec: ServerCodec::new(wire.header, wire.max_frame),
        outbox: Outbox::with_splice(splice),
        splice_min: config.splice_min,
    };
    // A connection still authenticating may lose its place to a newer one when the server
    // is full of them (see `admission`).
    let evicted = admission::ticket(|t| t.evicted()).unwrap_or_default();
    let hello = tokio::select! {
        hello = handshake(&mut reader, &mut writer, peer, config) => hello,
        _ = stop.drain.cancelled() => return Ok(()),
        _ = evicted.cancelled() => {
            Err(writer.refuse(admission::Refusal::Evicted.to_string()).await)
        }
    };
    let hello = match hello {
        Ok(hello) => hello,
        Err(e) => return Err(linger(&mut reader, e).await),
    };
    let Some(hello) = hello else {
        return Ok(());
    };
    writer.codec.set_peer_max_frame(hello.max_frame);
    reader.decoder_mut().set_max_frame(wire.max_frame);
    let version = hello.version.min(config.version);
    let reply = Hello {
        version,
        ..Hello::new(wire.max_frame, Bytes::new())
    };
    writer.push(ServerMessage::Hello(reply))?;
    let result = Session {
        peer,
        config,
        version,
        writer,
        queue: VecDeque::new(),
        next_job: Job::default(),
        current: None,
        stdin_allowance: 0,
        supervisor: crate::exec::ConnectionSupervisor::default(),
        copy: None,
    }
    .run(&mut reader, stop)
    .await;
    match result {
        Err(e) => Err(linger(&mut reader, e).await),
        Ok(None) => Ok(()),
        Ok(Some((request, writer))) => {
            let handed = writer.into_parts().await?;
            super::copy::serve(reader, handed, request, peer, config, stop).await
        }
    }
}

/// Most a refused peer's leftover bytes are read (and dropped) before the connection closes.
const LINGER_MAX: usize = 16 << 20;

/// After a refusal, reads and drops what the peer still sends, for a moment: closing a
/// socket with unread bytes makes the kernel send a reset, which can destroy the refusal
/// before the peer has read it.
async fn linger<S: AsyncRead>(reader: &mut Reader<S>, e: ConnError) -> ConnError {
    if matches!(e, ConnError::Refused(_) | ConnError::AuthFailed) {
        admission::ticket(|t| t.give_back());
        let socket = reader.get_mut();
        let mut sink = vec![0u8; 64 * 1024];
        let _ = tokio::time::timeout(LAST_WORDS, async {
            let mut total = 0;
            while total < LINGER_MAX {
                match socket.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n,
                }
            }
        })
        .await;
    }
    e
}

struct Session<'a, S> {
    peer: SocketAddr,
    config: &'a ServerConfig,
    version: u8,
    writer: Writer<S>,
    queue: VecDeque<Job>,
    /// What `V`, `D` and `T` messages set for the next command.
    next_job: Job,
    current: Option<Current>,
    /// Stdin bytes the client may still send: granted and not yet received.
    stdin_allowance: usize,
    /// The supervisor that runs this connection's commands, one after another.
    supervisor: crate::exec::ConnectionSupervisor,
    /// A copy request: the connection becomes a copy once nothing else is running.
    copy: Option<Transfer>,
}

/// A connection handed over to a copy: its request, and the writing half.
type Handoff<S> = Option<(Transfer, Writer<S>)>;

impl<S: AsyncRead + AsyncWrite> Session<'_, S> {
    async fn run(
        mut self,
        reader: &mut Reader<S>,
        stop: &Shutdown,
    ) -> Result<Handoff<S>, ConnError> {
        let limits = &self.config.limits;
        let mut last_activity = Instant::now();
        // When the outbox last moved: bytes written, or bytes queued into an empty one.
        let mut last_progress = Instant::now();
        let mut last_owed = false;
        let mut draining = false;
        loop {
            if self.current.is_none() {
                if draining {
                    let why = "the server is shutting down";
                    self.writer.last_words(why).await;
                    return Ok(None);
                }
                if let Some(request) = self.copy.take() {
                    return Ok(Some((request, self.writer)));
                }
                if let Some(job) = self.queue.pop_front() {
                    self.start(job)?;
                    continue;
                }
            }
            let backlog = self.writer.outbox.len();
            // Written but not yet flushed counts as owed to the peer, like queued bytes.
            let owed = !self.writer.outbox.is_empty();
            if !owed || !last_owed {
                last_progress = Instant::now();
            }
            last_owed = owed;
            let reading = !draining && self.queue.len() < MAX_QUEUED && backlog < HIGH_WATER;
            let pulling = backlog < HIGH_WATER;
            // Idle means nothing to do and nothing received: a header trickled byte by
            // byte never completes a frame, so it does not count as activity.
            let idle = self.current.is_none() && self.queue.is_empty() && !owed;
            let idle_at = limits
                .idle_timeout
                .filter(|_| idle)
                .map(|t| last_activity + t);
            // A peer that takes none of what we queue for as long is not coming back.
            let stalled_at = limits
                .idle_timeout
                .filter(|_| owed)
                .map(|t| last_progress + t);
            let command_deadline = self.current.as_ref().and_then(|c| c.running.deadline());
            let in_place = self.writer.in_place();
            let (running, input) = match &mut self.current {
                Some(c) => (Some(&mut c.running), c.input.as_mut()),
                None => (None, None),
            };
            tokio::select! {
                msg = reader.next(), if reading => match msg {
                    Some(Ok(msg)) => {
                        last_activity = Instant::now();
                        if let Err(why) = self.take(msg) {
                            return Err(self.writer.refuse(why).await);
                        }
                    }
                    Some(Err(e)) => return Err(self.writer.refuse(e.to_string()).await),
                    // The client is gone: dropping `current` kills what it was running.
                    None => {
                        if let Some(c) = &self.current {
                            info!(peer = %self.peer, command = %printable(&c.line),
                                  "command killed: the client went away");
                        }
                        return Ok(None);
                    }
                },
                event = next_event(running, in_place), if pulling => self.output(event)?,
                written = self.writer.outbox.write_some(&mut self.writer.socket) => {
                    written?;
                    last_progress = Instant::now();
                }
                written = write_input(input) => self.input_written(written)?,
                _ = crate::deadline::until(command_deadline) => {
                    if let Some(c) = &mut self.current {
                        c.running.time_out();
                    }
                }
                _ = crate::deadline::until(idle_at) => {
                    let idle = limits.idle_timeout.unwrap_or_default().as_secs_f64();
                    info!(peer = %self.peer, "closing idle connection");
                    let why = format!("closing the connection: idle for {idle}s");
                    self.writer.last_words(&why).await;
                    return Ok(None);
                }
                _ = crate::deadline::until(stalled_at) => {
                    if let Some(c) = &self.current {
                        info!(peer = %self.peer, command = %printable(&c.line),
                              "command killed: the client stopped reading");
                    }
                    return Err(ConnError::Stalled(backlog));
                }
                _ = stop.drain.cancelled(), if !draining => draining = true,
                _ = stop.kill.cancelled() => {
                    if let Some(c) = self.current.take() {
                        info!(peer = %self.peer, command = %printable(&c.line),
                              "command killed: shutdown grace period over");
                    }
                    let why = "the server shut down; the running command was killed";
                    self.writer.last_words(why).await;
                    return Ok(None);
                }
            }
        }
    }

    /// Acts on one message from the client. An `Err` is a reason to refuse it.
    fn take(&mut self, msg: ClientMessage) -> Result<(), String> {
        if msg.min_version() > self.version {
            return Err(format!(
                "{msg:?} needs protocol version {}, and this connection speaks {}",
                msg.min_version(),
                self.version
            ));
        }
        match msg {
            ClientMessage::Hello(_) => return Err("unexpected second hello".into()),
            ClientMessage::Run(line) => self.enqueue(line, false),
            ClientMessage::RunWithStdin(line) => self.enqueue(line, true),
            ClientMessage::Env { name, value } => {
                if !env::accepted(&self.config.accept_env, &name) || value.contains(&0) {
                    let name = printable(&name);
                    self.notice(format!(
                        "environment variable {name} refused: the server accepts only {} \
                         (--accept-env)",
                        self.config.accept_env.join(" ")
                    ));
                } else if self.next_job.env.len() >= MAX_ENV
                    || self.next_job.env_bytes + name.len() + value.len() > MAX_ENV_BYTES
                {
                    return Err(format!(
                        "more than {MAX_ENV} environment variables or {} KiB of them for one \
                         command",
                        MAX_ENV_BYTES >> 10
                    ));
                } else {
                    self.next_job.env_bytes += name.len() + value.len();
                    self.next_job.env.push((
                        OsString::from_vec(name.to_vec()),
                        OsString::from_vec(value.to_vec()),
                    ));
                }
            }
            ClientMessage::Cwd(dir) => {
                if dir.contains(&0) {
                    return Err("a directory name cannot contain a NUL byte".into());
                }
                self.next_job.cwd = Some(PathBuf::from(OsString::from_vec(dir.to_vec())));
            }
            ClientMessage::Tty { rows, cols, term } => {
                let sane = term.len() <= 64 && term.iter().all(|b| b.is_ascii_graphic());
                self.next_job.tty = Some(TtyRequest {
                    size: WindowSize { rows, cols },
                    term: OsString::from_vec(if sane {
                        term.to_vec()
                    } else {
                        b"dumb".to_vec()
                    }),
                });
            }
            ClientMessage::Stdin(data) => {
                if data.len() > self.stdin_allowance {
                    return Err(format!(
                        "{} bytes of stdin sent where only {} were granted",
                        data.len(),
                        self.stdin_allowance
                    ));
                }
                self.stdin_allowance -= data.len();
                // Input for a command that has already ended is dropped, as a pipe would.
                if let Some(input) = self.current.as_mut().and_then(|c| c.input.as_mut()) {
                    if !input.eof {
                        input.pending.push_back(data);
                    }
                }
            }
            ClientMessage::StdinEof => {
                if let Some(c) = &mut self.current {
                    if let Some(input) = &mut c.input {
                        input.eof = true;
                    }
                }
            }
            ClientMessage::Signal(name) => match signal_number(&name) {
                Some(sig) => {
                    if let Some(c) = &mut self.current {
                        debug!(peer = %self.peer, signal = %name, "forwarding a signal");
                        c.running.signal(sig);
                    }
                }
                None => self.notice(format!(
                    "signal {} is not one rcmd forwards",
                    printable(name.as_bytes())
                )),
            },
            ClientMessage::Resize { rows, cols } => {
                if let Some(c) = &self.current {
                    c.running.resize(WindowSize { rows, cols });
                }
            }
            ClientMessage::Copy(request @ (Transfer::Put { .. } | Transfer::Get { .. })) => {
                if self.current.is_some() || !self.queue.is_empty() || self.copy.is_some() {
                    return Err("a copy must be the only request on its connection".into());
                }
                self.copy = Some(request);
            }
            ClientMessage::Copy(_) => {
                return Err("a copy message before any copy request".into());
            }
        }
        Ok(())
    }

    fn enqueue(&mut self, line: Bytes, stdin: bool) {
        let mut job = std::mem::take(&mut self.next_job);
        job.line = line;
        job.stdin = stdin;
        self.queue.push_back(job);
    }

    fn notice(&mut self, text: String) {
        // Only a peer that can read notices gets them; the encoder cuts them to fit.
        let _ = self.writer.push(ServerMessage::Notice(text));
    }

    /// Starts `job`, or answers it with the status that says why it cannot run.
    fn start(&mut self, job: Job) -> Result<(), ProtocolError> {
        let request = Request {
            line: &job.line,
            env: job.env,
            cwd: job.cwd,
            stdin: job.stdin,
            tty: job.tty,
        };
        let launcher = crate::exec::Launcher {
            connection: Some(self.supervisor.clone()),
            ..self.config.launcher()
        };
        match launcher.spawn(&request) {
            Ok(mut running) => {
                debug!(peer = %self.peer, command = %printable(&job.line), pid = running.id(), "running");
                let input = if job.stdin {
                    running.take_stdin().map(|pipe| Input {
                        pipe,
                        pending: VecDeque::new(),
                        eof: false,
                        written: 0,
                    })
                } else {
                    None
                };
                if input.is_some() {
                    // Top the allowance up to one window, never beyond: credit left over
                    // from earlier commands does not add up.
                    let window = STDIN_WINDOW as usize;
                    let top_up = window.saturating_sub(self.stdin_allowance);
                    if top_up > 0 {
                        self.grant(top_up)?;
                    }
                }
                self.current = Some(Current {
                    running,
                    line: job.line,
                    input,
                });
                Ok(())
            }
            Err(status) => self.finish(status, &job.line),
        }
    }

    fn grant(&mut self, n: usize) -> Result<(), ProtocolError> {
        self.stdin_allowance += n;
        self.writer.push(ServerMessage::Credit(n as u32))
    }

    fn output(&mut self, event: std::io::Result<Piece>) -> Result<(), ProtocolError> {
        match event {
            Ok(Piece::InPipe { stderr, pipe, len }) => self.writer.push_in_pipe(pipe, len, stderr),
            Ok(Piece::Event(Event::Stdout(b))) => self.writer.push_output(b, false),
            Ok(Piece::Event(Event::Stderr(b))) => self.writer.push_output(b, true),
            Ok(Piece::Event(Event::Done(status))) => {
                let c = self
                    .current
                    .take()
                    .expect("an event came from the current command");
                self.finish(status, &c.line)
            }
            Err(e) => {
                let c = self
                    .current
                    .take()
                    .expect("an event came from the current command");
                let status = Status::Failed {
                    code: 255,
                    message: format!("rcmd: reading command output failed: {e}"),
                };
                self.finish(status, &c.line)
            }
        }
    }

    /// Ends one reply, and logs the command's one line.
    fn finish(&mut self, status: Status, line: &[u8]) -> Result<(), ProtocolError> {
        // A failure's message may quote what the client sent (its --cwd).
        let ended = printable(status.to_string().as_bytes());
        info!(peer = %self.peer, command = %printable(line), "command ended: {ended}");
        self.writer.push(ServerMessage::Done(status))
    }

    fn input_written(&mut self, written: std::io::Result<usize>) -> Result<(), ProtocolError> {
        let Some(c) = &mut self.current else {
            return Ok(());
        };
        let Some(input) = &mut c.input else {
            return Ok(());
        };
        match written {
            // The input was closed after the last pending byte.
            Ok(0) => c.input = None,
            Ok(n) => {
                input.written += n;
                // Grant back in batches: one `G` per quarter window, or when the client
                // may be waiting on the last of its allowance.
                if input.written >= STDIN_WINDOW as usize / 4 || input.pending.is_empty() {
                    let n = std::mem::take(&mut input.written);
                    return self.grant(n);
                }
            }
            // The command closed its input (or ended): later input goes nowhere.
            Err(_) => c.input = None,
        }
        Ok(())
    }
}

/// Writes some pending input to the command, or closes its input once the client ended
/// it and all is written (then `Ok(0)`). Pending forever when there is nothing to do.
/// Cancel safe: a chunk only advances past bytes that were written.
async fn write_input(input: Option<&mut Input>) -> std::io::Result<usize> {
    let Some(input) = input else {
        return std::future::pending().await;
    };
    let Some(front) = input.pending.front_mut() else {
        if input.eof {
            input.pipe.finish().await?;
            return Ok(0);
        }
        return std::future::pending().await;
    };
    let n = input.pipe.write(front).await?;
    front.advance(n);
    if front.is_empty() {
        input.pending.pop_front();
    }
    Ok(n)
}

/// Reads the client's hello within the auth deadline and checks its version and token.
/// `None` when the peer left before saying anything.
async fn handshake<S: AsyncRead + AsyncWrite>(
    reader: &mut Reader<S>,
    writer: &mut Writer<S>,
    peer: SocketAddr,
    config: &ServerConfig,
) -> Result<Option<Hello>, ConnError> {
    let deadline = config.limits.auth_timeout;
    let hello = match tokio::time::timeout(deadline, reader.next()).await {
        Err(_) => {
            let why = format!("no hello within {}s", deadline.as_secs_f64());
            return Err(writer.refuse(why).await);
        }
        Ok(None) => return Ok(None),
        Ok(Some(Err(e))) => return Err(writer.refuse(e.to_string()).await),
        Ok(Some(Ok(ClientMessage::Hello(h)))) => h,
        Ok(Some(Ok(_))) => {
            let why = "expected a hello before any command".to_string();
            return Err(writer.refuse(why).await);
        }
    };
    if let Err(why) = hello.check() {
        return Err(writer.refuse(why).await);
    }
    let source =
        admission::ticket(|t| t.source()).unwrap_or_else(|| super::guard::Source::from(peer.ip()));
    if let Some(token) = &config.token {
        if !token.matches(&hello.token) {
            // Slow the next guess from this source, and log a count instead of a line each.
            let failed = admission::ticket(|t| t.guard().failed(source));
            let (delay, tally) = failed.unwrap_or_default();
            if let Some(tally) = tally {
                warn!("{tally}");
            }
            tokio::time::sleep(delay).await;
            writer
                .last_words("authentication failed: wrong or missing token")
                .await;
            return Err(ConnError::AuthFailed);
        }
        admission::ticket(|t| t.guard().succeeded(source));
        info!(%peer, "authenticated");
    }
    // Only now does the connection take one of the --max-conns slots.
    if let Some(Err(busy)) = admission::ticket(|t| t.authenticated()) {
        return Err(writer.refuse(busy.to_string()).await);
    }
    Ok(Some(hello))
}

async fn next_event(
    running: Option<&mut Running>,
    in_place: Option<(usize, usize)>,
) -> std::io::Result<Piece> {
    match running {
        Some(running) => running.next_in_place(in_place).await,
        None => std::future::pending().await,
    }
}

/// The bytes of one `!` error frame, for a connection that never reaches a handler.
pub(super) fn error_frame(header: HeaderFormat, why: &str) -> Vec<u8> {
    let mut codec = ServerCodec::new(header, MAX_HELLO_FRAME);
    let mut buf = BytesMut::new();
    codec
        .encode(ServerMessage::Error(why.to_string()), &mut buf)
        .expect("text messages are cut to fit");
    buf.to_vec()
}
