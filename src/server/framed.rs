//! The `framed` protocol, server side: handshake (and authentication), then run requests
//! in order and stream each reply while still reading the next requests, so a client may
//! pipeline and we notice at once when it goes away.

use std::collections::VecDeque;
use std::net::SocketAddr;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::codec::{Encoder, FramedRead, FramedWrite};
use tracing::{debug, info, warn};

use super::{admission, ConnError, ServerConfig, Shutdown};
use crate::exec::{self, Event, Running};
use crate::header::HeaderFormat;
use crate::protocol::{
    chunks, ClientMessage, Hello, MessageCodec, ProtocolError, ServerMessage, MAX_HELLO_FRAME,
    VERSION,
};
use crate::status::Status;

/// Requests read ahead while one runs; past this we stop reading and TCP pushes back.
const MAX_QUEUED: usize = 64;

type Reader = FramedRead<OwnedReadHalf, MessageCodec<ClientMessage>>;
type Writer = FramedWrite<OwnedWriteHalf, MessageCodec<ClientMessage>>;

pub(super) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    config: &ServerConfig,
    stop: &Shutdown,
) -> Result<(), ConnError> {
    let wire = config.wire;
    let limits = &config.limits;
    let (rd, wr) = stream.into_split();
    // Until the peer has said who it is, it gets only small frames.
    let mut reader = FramedRead::new(
        rd,
        MessageCodec::<ClientMessage>::new(wire.header, MAX_HELLO_FRAME),
    );
    let mut writer = FramedWrite::new(wr, MessageCodec::new(wire.header, wire.max_frame));
    let hello = tokio::select! {
        hello = handshake(&mut reader, &mut writer, peer, config) => hello?,
        _ = stop.drain.cancelled() => return Ok(()),
    };
    let Some(hello) = hello else {
        return Ok(());
    };
    writer.encoder_mut().set_peer_max_frame(hello.max_frame);
    reader.decoder_mut().set_max_frame(wire.max_frame);
    let reply = Hello {
        version: hello.version.min(VERSION),
        ..Hello::new(wire.max_frame, Bytes::new())
    };
    writer.send(ServerMessage::Hello(reply)).await?;

    let mut queue: VecDeque<Bytes> = VecDeque::new();
    let mut current: Option<Running> = None;
    // The command line `current` runs, for its log line.
    let mut current_line = Bytes::new();
    let mut last_activity = Instant::now();
    let mut draining = false;
    loop {
        if current.is_none() {
            if draining {
                return goodbye(&mut writer, "the server is shutting down").await;
            }
            if let Some(line) = queue.pop_front() {
                match start(&line, peer, config) {
                    Ok(running) => current = Some(running),
                    Err(status) => send_status(&mut writer, status, peer, &line).await?,
                }
                current_line = line;
                continue;
            }
        }
        // Idle means nothing to do and nothing received: a header trickled byte by byte
        // never completes a frame, so it does not count as activity.
        let idle_at = limits
            .idle_timeout
            .filter(|_| current.is_none() && queue.is_empty())
            .map(|t| last_activity + t);
        tokio::select! {
            msg = reader.next(), if !draining && queue.len() < MAX_QUEUED => match msg {
                Some(Ok(ClientMessage::Run(line))) => {
                    queue.push_back(line);
                    last_activity = Instant::now();
                }
                Some(Ok(ClientMessage::Hello(_))) => {
                    return Err(refuse(&mut writer, "unexpected second hello".into()).await);
                }
                Some(Err(e)) => return Err(refuse(&mut writer, e.to_string()).await),
                // The client is gone: dropping `current` kills what it was running.
                None => {
                    if current.is_some() {
                        info!(%peer, command = %lossy(&current_line), "command killed: the client went away");
                    }
                    return Ok(());
                }
            },
            event = next_event(&mut current) => match event {
                Ok(Event::Stdout(b)) => send_output(&mut writer, b, false).await?,
                Ok(Event::Stderr(b)) => send_output(&mut writer, b, true).await?,
                Ok(Event::Done(status)) => {
                    current = None;
                    last_activity = Instant::now();
                    send_status(&mut writer, status, peer, &current_line).await?;
                }
                Err(e) => {
                    current = None;
                    let status = Status::Failed {
                        code: 255,
                        message: format!("rcmd: reading command output failed: {e}"),
                    };
                    send_status(&mut writer, status, peer, &current_line).await?;
                }
            },
            _ = crate::deadline::until(idle_at) => {
                let idle = limits.idle_timeout.unwrap_or_default().as_secs_f64();
                info!(%peer, "closing idle connection");
                return goodbye(&mut writer, &format!("closing the connection: idle for {idle}s")).await;
            }
            _ = stop.drain.cancelled(), if !draining => draining = true,
            _ = stop.kill.cancelled() => {
                if current.take().is_some() {
                    info!(%peer, command = %lossy(&current_line), "command killed: shutdown grace period over");
                }
                return goodbye(&mut writer, "the server shut down; the running command was killed").await;
            }
        }
    }
}

/// Reads the client's hello within the auth deadline and checks its version and token.
/// `None` when the peer left before saying anything.
async fn handshake(
    reader: &mut Reader,
    writer: &mut Writer,
    peer: SocketAddr,
    config: &ServerConfig,
) -> Result<Option<Hello>, ConnError> {
    let deadline = config.limits.auth_timeout;
    let hello = match tokio::time::timeout(deadline, reader.next()).await {
        Err(_) => {
            let why = format!("no hello within {}s", deadline.as_secs_f64());
            return Err(refuse(writer, why).await);
        }
        Ok(None) => return Ok(None),
        Ok(Some(Err(e))) => return Err(refuse(writer, e.to_string()).await),
        Ok(Some(Ok(ClientMessage::Hello(h)))) => h,
        Ok(Some(Ok(ClientMessage::Run(_)))) => {
            let why = "expected a hello before any command".to_string();
            return Err(refuse(writer, why).await);
        }
    };
    if hello.version == 0 {
        let why = format!("protocol version 0 is not supported (this server speaks {VERSION})");
        return Err(refuse(writer, why).await);
    }
    let source = super::guard::Source::from(peer.ip());
    if let Some(token) = &config.token {
        if !token.matches(&hello.token) {
            // Slow the next guess from this source, and log a count instead of a line each.
            let failed = admission::ticket(|t| t.guard().failed(source));
            let (delay, tally) = failed.unwrap_or_default();
            if let Some(tally) = tally {
                warn!("{tally}");
            }
            tokio::time::sleep(delay).await;
            say(writer, "authentication failed: wrong or missing token").await;
            return Err(ConnError::AuthFailed);
        }
        admission::ticket(|t| t.guard().succeeded(source));
        info!(%peer, "authenticated");
    }
    // Only now does the connection take one of the --max-conns slots.
    if let Some(Err(busy)) = admission::ticket(|t| t.authenticated()) {
        return Err(refuse(writer, busy.to_string()).await);
    }
    Ok(Some(hello))
}

fn start(line: &[u8], peer: SocketAddr, config: &ServerConfig) -> Result<Running, Status> {
    let running = exec::spawn(line, config.exec, config.limits.command_timeout);
    let pid = running.as_ref().ok().and_then(Running::id);
    debug!(%peer, command = %lossy(line), pid, "running");
    running
}

async fn next_event(current: &mut Option<Running>) -> std::io::Result<Event> {
    match current {
        Some(running) => running.next().await,
        None => std::future::pending().await,
    }
}

/// Sends one piece of output as frames the header and the peer can take. Each frame's
/// small head and its payload go out in one vectored write, straight from the buffer the
/// pipe was read into: the output is never copied on its way to the socket.
async fn send_output(writer: &mut Writer, data: Bytes, stderr: bool) -> Result<(), ProtocolError> {
    debug_assert!(writer.write_buffer().is_empty(), "every send is flushed");
    let codec = writer.encoder();
    let mut frames = Vec::with_capacity(4);
    for piece in chunks(data, codec.max_body()) {
        let mut head = BytesMut::with_capacity(9);
        codec.encode_output_head(stderr, piece.len(), &mut head)?;
        frames.push(head.freeze().chain(piece));
    }
    let socket = writer.get_mut();
    for mut frame in frames {
        socket.write_all_buf(&mut frame).await?;
    }
    Ok(())
}

/// Ends one reply, and logs the command's one line.
async fn send_status(
    writer: &mut Writer,
    status: Status,
    peer: SocketAddr,
    line: &[u8],
) -> Result<(), ProtocolError> {
    info!(%peer, command = %lossy(line), "command ended: {status}");
    writer.send(ServerMessage::Done(status)).await
}

fn lossy(line: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(line)
}

/// Tells the peer why the connection ends (best effort: it may be gone).
async fn say(writer: &mut Writer, why: &str) {
    let max = writer.encoder().max_body();
    let why = &why[..floor_char_boundary(why, max)];
    let _ = writer.send(ServerMessage::Error(why.to_string())).await;
}

/// Tells the peer why it is being turned away; the caller then ends the connection with
/// the returned error.
async fn refuse(writer: &mut Writer, why: String) -> ConnError {
    say(writer, &why).await;
    ConnError::Refused(why)
}

/// Ends the connection for a reason of the server's own (shutdown, idleness).
async fn goodbye(writer: &mut Writer, why: &str) -> Result<(), ConnError> {
    say(writer, why).await;
    Ok(())
}

/// The bytes of one `!` error frame, for a connection that never reaches a handler.
pub(super) fn error_frame(header: HeaderFormat, why: &str) -> Vec<u8> {
    let mut codec = MessageCodec::<ClientMessage>::new(header, MAX_HELLO_FRAME);
    let why = &why[..floor_char_boundary(why, codec.max_body())];
    let mut buf = BytesMut::new();
    codec
        .encode(ServerMessage::Error(why.to_string()), &mut buf)
        .expect("message cut to fit the header");
    buf.to_vec()
}

/// The largest index `<= max` that falls on a character boundary of `s`.
fn floor_char_boundary(s: &str, max: usize) -> usize {
    (0..=max.min(s.len()))
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0)
}
