//! The tutorial's wire modes, server side: `length-ack`, `classic`, `json-header` and
//! `naive`.
//!
//! All four read a command as whatever one `recv(recv_size)` returns, exactly as the
//! tutorial's server does, so request boundaries are as unreliable as the tutorial's
//! (that is the point of `naive`, and what `classic` clients expect). The bytes of each
//! reply are in [`crate::wire::tutorial`], and what the server refuses to run in
//! [`crate::wire::sniff`]; this file only reads, runs and writes.

use std::net::SocketAddr;
use std::os::fd::AsFd;

use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tracing::{debug, info};

use super::spool::{Spool, MEMORY_LIMIT};
use super::{ConnError, ServerConfig, Shutdown, REFUSAL_DEADLINE};
use crate::exec::{self, Event};
use crate::printable::printable;
use crate::status::Status;
use crate::wire::sniff::{self, Foreign};
use crate::wire::trace::Traced;
use crate::wire::tutorial::{
    self, message_parts, overflow_message, reply_head, spool_limit, too_long_message,
};
use crate::wire::{Order, Protocol, Wire};

pub(super) async fn serve(
    mut stream: TcpStream,
    peer: SocketAddr,
    config: &ServerConfig,
    stop: &Shutdown,
) -> Result<(), ConnError> {
    let wire = config.wire;
    let (mut rd, wr) = stream.split();
    let mut wr = Traced::new(wr, &wire, "server", config.trace);
    let mut buf = vec![0u8; wire.recv_size.max(1)];
    // In length-ack, a command that came in one read with the answer to the last reply.
    let mut carried: Vec<u8> = Vec::new();
    loop {
        if !carried.is_empty() {
            let n = carried.len().min(buf.len());
            buf[..n].copy_from_slice(&carried[..n]);
            carried.clear();
            let line = buf[..n].to_vec();
            if !run_command(&line, &mut rd, &mut wr, peer, config, stop, &mut carried).await? {
                return Ok(());
            }
            continue;
        }
        // These modes have no way to say goodbye: on idleness or shutdown the
        // connection simply closes, as the tutorial's server would.
        let idle_at = config
            .limits
            .idle_timeout
            .map(|t| tokio::time::Instant::now() + t);
        let n = tokio::select! {
            n = rd.read(&mut buf) => n?,
            _ = crate::deadline::until(idle_at) => {
                info!(%peer, "closing idle connection");
                return Ok(());
            }
            _ = stop.drain.cancelled() => return Ok(()),
        };
        if n == 0 {
            return Ok(());
        }
        if config.trace {
            crate::wire::trace::raw("server recv", &buf[..n]);
        }
        let line = buf[..n].to_vec();
        if !run_command(&line, &mut rd, &mut wr, peer, config, stop, &mut carried).await? {
            return Ok(());
        }
    }
}

/// Checks and runs one command read from the peer and sends its reply; `false` when the
/// connection is to close.
async fn run_command(
    line: &[u8],
    rd: &mut ReadHalf<'_>,
    wr: &mut Traced<WriteHalf<'_>>,
    peer: SocketAddr,
    config: &ServerConfig,
    stop: &Shutdown,
    carried: &mut Vec<u8>,
) -> Result<bool, ConnError> {
    let wire = config.wire;
    let n = line.len();
    if let Some(foreign) = sniff::foreign_request(line) {
        if let Some(msg) = sniff::foreign_message(&wire, foreign) {
            refuse_with(&msg, rd, wr, config, stop).await;
        }
        return Err(ConnError::Refused(foreign_warning(foreign, &wire)));
    }
    // A full read with more already waiting is the start of a longer command: running
    // it would run something the client never sent. Naive keeps that bug on purpose.
    if wire.protocol != Protocol::Naive
        && n == wire.recv_size.max(1)
        && crate::splice::waiting(rd.as_ref().as_fd())? > 0
    {
        let msg = too_long_message(wire.recv_size);
        refuse_with(&msg, rd, wr, config, stop).await;
        return Err(ConnError::Refused(
            msg.trim_start_matches("rcmd: ").trim_end().into(),
        ));
    }
    let command = printable(line);
    debug!(%peer, %command, "running");
    let outcome = match wire.protocol {
        Protocol::Naive => {
            match run_into(line, rd, config, stop, &mut Sink::Raw(&mut *wr)).await? {
                Outcome::Ended(status) => Some(status),
                // Nothing is collected, so nothing can overflow.
                Outcome::Overflow | Outcome::Gone => None,
            }
        }
        _ => spool_reply(line, rd, wr, config, stop, carried).await?,
    };
    match outcome {
        Some(status) => {
            let status = printable(status.to_string().as_bytes());
            info!(%peer, %command, "command ended: {status}")
        }
        None => {
            info!(%peer, %command, "command killed: the client went away or the server shut down");
            return Ok(false);
        }
    }
    Ok(true)
}

/// Tells the peer why it is turned away, in its mode's words, within [`REFUSAL_DEADLINE`].
async fn refuse_with<W: AsyncWrite + Unpin>(
    msg: &str,
    rd: &mut ReadHalf<'_>,
    wr: &mut W,
    config: &ServerConfig,
    stop: &Shutdown,
) {
    let send = send_message(msg, 255, rd, wr, config, stop);
    let _ = tokio::time::timeout(REFUSAL_DEADLINE, send).await;
}

/// Sends a reply carrying `msg` instead of output, waiting for the answer in length-ack.
async fn send_message<W: AsyncWrite + Unpin>(
    msg: &str,
    exit_code: i32,
    rd: &mut ReadHalf<'_>,
    wr: &mut W,
    config: &ServerConfig,
    stop: &Shutdown,
) -> Result<(), ConnError> {
    let (head, body) = message_parts(&config.wire, msg, exit_code);
    wr.write_all(&head).await?;
    if !body.is_empty() && await_ack(rd, config, stop).await?.is_some() {
        wr.write_all(&body).await?;
    }
    Ok(())
}

/// Length-ack's wait for the client's answer to the length: any bytes will do, as in the
/// tutorial (`conn.recv(1024)`). `None` when the peer closed, went idle or the server is
/// shutting down: the reply is not sent.
///
/// After an empty reply a client has nothing to wait for, so its next command can arrive
/// in the same read as its acknowledgement (the sticky-packet bug, in this mode). What
/// follows a leading `recv_ready` (or the shorter `ready` some copies send) is returned, to
/// be run as the next command.
async fn await_ack(
    rd: &mut ReadHalf<'_>,
    config: &ServerConfig,
    stop: &Shutdown,
) -> Result<Option<Vec<u8>>, ConnError> {
    let mut ack = vec![0u8; config.wire.recv_size.max(1)];
    let idle_at = config
        .limits
        .idle_timeout
        .map(|t| tokio::time::Instant::now() + t);
    let n = tokio::select! {
        n = rd.read(&mut ack) => n?,
        _ = crate::deadline::until(idle_at) => 0,
        _ = stop.kill.cancelled() => 0,
    };
    if config.trace {
        crate::wire::trace::raw("server recv", &ack[..n]);
    }
    Ok((n > 0).then(|| {
        let ack = &ack[..n];
        [crate::wire::tutorial::ACK, b"ready"]
            .iter()
            .find_map(|word| ack.strip_prefix(*word))
            .unwrap_or_default()
            .to_vec()
    }))
}

/// The one line logged for a refused first read (with the peer, by the caller).
fn foreign_warning(foreign: Foreign, wire: &Wire) -> String {
    let mode = wire.protocol.name();
    match foreign {
        Foreign::FramedHello => {
            format!(
                "{foreign} sent to a {mode} server (a client with another --protocol); not run, \
                 connection closed"
            )
        }
        _ => format!(
            "possible security attack: {foreign} sent to a {mode} server; not run, connection \
             closed"
        ),
    }
}

/// Resolves when the peer has closed its side. Data waiting to be read (the next command,
/// sent early) is left in place: the tutorial's server reads it only after replying.
async fn peer_closed(rd: &mut ReadHalf<'_>) {
    let mut probe = [0u8; 1];
    match rd.peek(&mut probe).await {
        Ok(0) | Err(_) => {}
        Ok(_) => std::future::pending().await,
    }
}

/// Where a command's output goes while it runs.
enum Sink<'a, W> {
    /// Straight to the peer, as produced (naive).
    Raw(&'a mut W),
    /// Held until the command ends, so the reply's length is known (classic, json-header),
    /// up to `limit` bytes in all, so an endless command cannot fill the disk.
    Spooled {
        stdout: &'a mut Spool,
        stderr: &'a mut Spool,
        limit: u64,
    },
}

impl<W: AsyncWrite + Unpin> Sink<'_, W> {
    /// Takes one piece of output; `false` (and nothing taken) if it would pass the limit.
    async fn take(&mut self, event: Event) -> std::io::Result<bool> {
        let (spool, piece, used, limit) = match (self, event) {
            (Sink::Raw(w), Event::Stdout(b) | Event::Stderr(b)) => {
                w.write_all(&b).await?;
                return Ok(true);
            }
            (_, Event::Done(_)) => return Ok(true),
            (
                Sink::Spooled {
                    stdout,
                    stderr,
                    limit,
                },
                event,
            ) => {
                let used = stdout.len() + stderr.len();
                match event {
                    Event::Stdout(b) => (&mut **stdout, b, used, *limit),
                    Event::Stderr(b) => (&mut **stderr, b, used, *limit),
                    Event::Done(_) => unreachable!("matched above"),
                }
            }
        };
        if used.saturating_add(piece.len() as u64) > limit {
            return Ok(false);
        }
        spool.push(&piece).await?;
        Ok(true)
    }
}

/// How running a command into a [`Sink`] ended.
enum Outcome {
    Ended(Status),
    /// The output passed the sink's limit; the command was killed.
    Overflow,
    /// The peer went away, or the grace period of a shutdown ran out; the command was killed.
    Gone,
}

/// Runs the command, feeding its output to `sink`. Returning early drops the runner,
/// which kills the command's process group.
async fn run_into<W: AsyncWrite + Unpin>(
    line: &[u8],
    rd: &mut ReadHalf<'_>,
    config: &ServerConfig,
    stop: &Shutdown,
    sink: &mut Sink<'_, W>,
) -> Result<Outcome, ConnError> {
    let mut running = match config.launcher().spawn(&exec::Request::line(line)) {
        Ok(r) => r,
        Err(status) => {
            sink.take(Event::Stderr(format!("{status}\n").into()))
                .await?;
            return Ok(Outcome::Ended(status));
        }
    };
    loop {
        let event = tokio::select! {
            e = running.next() => e?,
            _ = peer_closed(rd) => return Ok(Outcome::Gone),
            _ = stop.kill.cancelled() => return Ok(Outcome::Gone),
        };
        if let Event::Done(status) = event {
            return Ok(Outcome::Ended(status));
        }
        if !sink.take(event).await? {
            return Ok(Outcome::Overflow);
        }
    }
}

async fn spool_reply(
    line: &[u8],
    rd: &mut ReadHalf<'_>,
    wr: &mut Traced<WriteHalf<'_>>,
    config: &ServerConfig,
    stop: &Shutdown,
    carried: &mut Vec<u8>,
) -> Result<Option<Status>, ConnError> {
    let wire = config.wire;
    let max_spool = config.limits.max_spool;
    let mut stdout = Spool::new(MEMORY_LIMIT);
    let mut stderr = Spool::new(MEMORY_LIMIT);
    let mut sink: Sink<'_, Traced<WriteHalf<'_>>> = Sink::Spooled {
        stdout: &mut stdout,
        stderr: &mut stderr,
        limit: spool_limit(&wire, max_spool),
    };
    let status = match run_into(line, rd, config, stop, &mut sink).await? {
        Outcome::Gone => return Ok(None),
        Outcome::Overflow => {
            let msg = overflow_message(&wire, max_spool);
            send_message(&msg, 1, rd, wr, config, stop).await?;
            return Ok(Some(Status::Failed {
                code: 1,
                message: msg.trim_start_matches("rcmd: ").trim_end().into(),
            }));
        }
        Outcome::Ended(status) => status,
    };
    match reply_head(&wire, stdout.len(), stderr.len(), status.exit_code()) {
        Ok(head) => {
            wr.write_all(&head).await?;
            if wire.protocol.waits_for_ack() {
                match await_ack(rd, config, stop).await? {
                    Some(next) => *carried = next,
                    None => return Ok(None),
                }
            }
            let (first, second) = match wire.order {
                Order::StderrFirst => (stderr, stdout),
                Order::StdoutFirst => (stdout, stderr),
            };
            // In one write when both are in memory: a learner's client that takes one
            // recv(n) for the whole output then gets it all, as it would from a server
            // that sends `stderr + stdout` (the tutorial's `sendall(res)`).
            if let (Some(a), Some(b)) = (first.in_memory(), second.in_memory()) {
                wr.write_all(&[a, b].concat()).await?;
            } else if config.trace {
                first.write_to(wr).await?;
                second.write_to(wr).await?;
            } else {
                // What spilled to disk goes with sendfile(2), never through our memory.
                let socket = wr.get_ref().as_ref();
                first.send_to(socket).await?;
                second.send_to(socket).await?;
            }
        }
        Err(msg) => send_message(&msg, 1, rd, wr, config, stop).await?,
    }
    Ok(Some(status))
}

/// A reply carrying `msg` in place of a command's output, in `wire`'s mode (see
/// [`tutorial::message_reply`]); for refusals made before any command runs.
pub(super) fn message_reply(wire: &Wire, msg: &str) -> Vec<u8> {
    tutorial::message_reply(wire, msg, 255)
}
