//! The `framed` protocol, client side. Commands are sent as soon as they are read, without
//! waiting for earlier replies (pipelining); replies come back in request order.

use std::io::Write;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_util::codec::{FramedRead, FramedWrite};

use super::{ClientConfig, ClientError, Input, Output};
use crate::protocol::{ClientMessage, Hello, MessageCodec, ServerMessage, MAX_HELLO_FRAME};
use crate::status::Status;

/// Room for one read from the socket. Large output arrives in large frames; reading them
/// in large pieces means fewer system calls per byte.
const READ_BUFFER: usize = 1 << 20;

pub(super) async fn run<O: Write, E: Write>(
    stream: TcpStream,
    config: &ClientConfig,
    mut input: Input,
    out: &mut Output<O, E>,
) -> Result<i32, ClientError> {
    let wire = config.wire;
    let (rd, wr) = stream.into_split();
    let mut reader = FramedRead::with_capacity(
        rd,
        MessageCodec::<ServerMessage>::new(wire.header, MAX_HELLO_FRAME),
        READ_BUFFER,
    );
    let mut writer = FramedWrite::new(
        wr,
        MessageCodec::<ServerMessage>::new(wire.header, wire.max_frame),
    );

    let token = config
        .token
        .as_ref()
        .map_or_else(Bytes::new, |t| Bytes::copy_from_slice(t.as_bytes()));
    writer
        .send(ClientMessage::Hello(Hello::new(wire.max_frame, token)))
        .await?;
    match reader.next().await {
        Some(Ok(ServerMessage::Hello(h))) => writer.encoder_mut().set_peer_max_frame(h.max_frame),
        Some(Ok(ServerMessage::Error(m))) => return Err(ClientError::Server(m)),
        Some(Ok(other)) => {
            return Err(ClientError::Server(format!(
                "expected a hello, got {other:?}"
            )))
        }
        Some(Err(e)) => return Err(e.into()),
        None => return Err(ClientError::Closed { unanswered: 0 }),
    }
    reader.decoder_mut().set_max_frame(wire.max_frame);

    let mut pending = 0usize;
    let mut input_open = true;
    let mut last = 0;
    while input_open || pending > 0 {
        tokio::select! {
            line = input.next(), if input_open => match line {
                Some(line) => {
                    let max = writer.encoder().max_body();
                    if line.len() > max {
                        return Err(ClientError::Usage(format!(
                            "command of {} bytes is longer than one frame allows ({max} bytes \
                             with header '{}' and the server's --max-frame)",
                            line.len(), wire.header
                        )));
                    }
                    writer.send(ClientMessage::Run(line.into())).await?;
                    pending += 1;
                }
                None => input_open = false,
            },
            msg = reader.next(), if pending > 0 => match msg {
                Some(Ok(ServerMessage::Stdout(b))) => out.out(&b)?,
                Some(Ok(ServerMessage::Stderr(b))) => out.err(&b)?,
                Some(Ok(ServerMessage::Done(status))) => {
                    if let Status::Failed { message, .. } = &status {
                        out.err(format!("{message}\n").as_bytes())?;
                    }
                    last = status.exit_code();
                    pending -= 1;
                    input.replied();
                }
                Some(Ok(ServerMessage::Error(m))) => return Err(ClientError::Server(m)),
                Some(Ok(ServerMessage::Hello(_))) => {
                    return Err(ClientError::Server("unexpected second hello".into()))
                }
                Some(Err(e)) => return Err(e.into()),
                None => return Err(ClientError::Closed { unanswered: pending }),
            },
        }
    }
    Ok(last)
}
