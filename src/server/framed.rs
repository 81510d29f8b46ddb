//! The `framed` protocol, server side: handshake, then run requests in order and stream
//! each reply while still reading the next requests (so a client may pipeline, and so we
//! notice at once when it goes away).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio_util::codec::{FramedRead, FramedWrite};
use tracing::info;

use super::{ConnError, ServerConfig};
use crate::exec::{self, Event, Running};
use crate::protocol::{
    chunks, ClientMessage, Hello, MessageCodec, ProtocolError, ServerMessage, MAX_HELLO_FRAME,
    VERSION,
};
use crate::status::Status;

/// How long a new connection has to send its hello.
const HELLO_DEADLINE: Duration = Duration::from_secs(10);
/// Requests read ahead while one runs; past this we stop reading and TCP pushes back.
const MAX_QUEUED: usize = 64;

type Writer = FramedWrite<OwnedWriteHalf, MessageCodec<ClientMessage>>;

pub(super) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    config: &ServerConfig,
) -> Result<(), ConnError> {
    let wire = config.wire;
    let (rd, wr) = stream.into_split();
    let mut reader = FramedRead::new(
        rd,
        MessageCodec::<ClientMessage>::new(wire.header, MAX_HELLO_FRAME),
    );
    let mut writer = FramedWrite::new(wr, MessageCodec::new(wire.header, wire.max_frame));

    let hello = match tokio::time::timeout(HELLO_DEADLINE, reader.next()).await {
        Err(_) => return refuse(&mut writer, "no hello within 10 seconds".into()).await,
        Ok(None) => return Ok(()),
        Ok(Some(Err(e))) => return refuse(&mut writer, e.to_string()).await,
        Ok(Some(Ok(ClientMessage::Hello(h)))) => h,
        Ok(Some(Ok(ClientMessage::Run(_)))) => {
            return refuse(&mut writer, "expected a hello before any command".into()).await
        }
    };
    if hello.version == 0 {
        return refuse(
            &mut writer,
            format!("protocol version 0 is not supported (this server speaks {VERSION})"),
        )
        .await;
    }
    writer.encoder_mut().set_peer_max_frame(hello.max_frame);
    reader.decoder_mut().set_max_frame(wire.max_frame);
    writer
        .send(ServerMessage::Hello(Hello::new(
            wire.max_frame,
            Bytes::new(),
        )))
        .await?;

    let mut queue: VecDeque<Bytes> = VecDeque::new();
    let mut current: Option<Running> = None;
    loop {
        if current.is_none() {
            if let Some(line) = queue.pop_front() {
                match start(&line, peer, config) {
                    Ok(running) => current = Some(running),
                    Err(status) => send_status(&mut writer, status, peer).await?,
                }
                continue;
            }
        }
        tokio::select! {
            msg = reader.next(), if queue.len() < MAX_QUEUED => match msg {
                Some(Ok(ClientMessage::Run(line))) => queue.push_back(line),
                Some(Ok(ClientMessage::Hello(_))) => {
                    return refuse(&mut writer, "unexpected second hello".into()).await;
                }
                Some(Err(e)) => return refuse(&mut writer, e.to_string()).await,
                // The client is gone: dropping `current` kills what it was running.
                None => {
                    if current.is_some() {
                        info!(%peer, "client went away mid-command; command killed");
                    }
                    return Ok(());
                }
            },
            event = next_event(&mut current) => match event {
                Ok(Event::Stdout(b)) => send_output(&mut writer, b, ServerMessage::Stdout).await?,
                Ok(Event::Stderr(b)) => send_output(&mut writer, b, ServerMessage::Stderr).await?,
                Ok(Event::Done(status)) => {
                    current = None;
                    send_status(&mut writer, status, peer).await?;
                }
                Err(e) => {
                    current = None;
                    let status = Status::Failed { code: 255, message: format!("rcmd: reading command output failed: {e}") };
                    send_status(&mut writer, status, peer).await?;
                }
            },
        }
    }
}

fn start(line: &[u8], peer: SocketAddr, config: &ServerConfig) -> Result<Running, Status> {
    let running = exec::spawn(line, config.exec);
    let pid = running.as_ref().ok().and_then(Running::id);
    info!(%peer, command = %String::from_utf8_lossy(line), pid, "running");
    running
}

async fn next_event(current: &mut Option<Running>) -> std::io::Result<Event> {
    match current {
        Some(running) => running.next().await,
        None => std::future::pending().await,
    }
}

async fn send_output(
    writer: &mut Writer,
    data: Bytes,
    wrap: fn(Bytes) -> ServerMessage,
) -> Result<(), ProtocolError> {
    let max = writer.encoder().max_body();
    for piece in chunks(data, max) {
        writer.feed(wrap(piece)).await?;
    }
    SinkExt::<ServerMessage>::flush(writer).await
}

async fn send_status(
    writer: &mut Writer,
    status: Status,
    peer: SocketAddr,
) -> Result<(), ProtocolError> {
    info!(%peer, "command {status}");
    writer.send(ServerMessage::Done(status)).await
}

/// Tells the peer why the connection ends (best effort: it may be gone), then ends it.
async fn refuse(writer: &mut Writer, why: String) -> Result<(), ConnError> {
    let _ = writer.send(ServerMessage::Error(why.clone())).await;
    Err(ConnError::Refused(why))
}
