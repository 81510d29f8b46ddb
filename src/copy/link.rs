//! The two halves of a connection as `rcmd cp` uses them: copy messages in, copy messages
//! out. The same code serves both ends; [`Carrier`] says how each end's message type
//! carries a [`Transfer`].
//!
//! Small messages are gathered and written together (a tree of small files costs a few
//! writes, not four per file); a large payload goes out in one vectored write with its
//! head, straight from the buffer the file was read into.

use bytes::{Buf, Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::{Encoder, FramedRead};

use super::CopyError;
use crate::wire::message::{ClientMessage, Message, MessageCodec, ServerMessage};
use crate::wire::transfer::Transfer;

/// Gathered small messages are written once they reach this many bytes.
const GATHER: usize = 256 * 1024;

/// A message type that can carry copy messages.
pub trait Carrier: Message {
    fn carry(t: Transfer) -> Self;
    /// The copy message inside, or why this message has no place in a copy.
    ///
    /// # Errors
    /// The peer's error message, or a message out of place.
    fn open(self) -> Result<Transfer, CopyError>;
}

impl Carrier for ClientMessage {
    fn carry(t: Transfer) -> Self {
        ClientMessage::Copy(t)
    }
    fn open(self) -> Result<Transfer, CopyError> {
        match self {
            ClientMessage::Copy(t) => Ok(t),
            other => Err(CopyError::Refused(format!("{other:?} during a copy"))),
        }
    }
}

impl Carrier for ServerMessage {
    fn carry(t: Transfer) -> Self {
        ServerMessage::Copy(t)
    }
    fn open(self) -> Result<Transfer, CopyError> {
        match self {
            ServerMessage::Copy(t) => Ok(t),
            ServerMessage::Error(m) => Err(CopyError::Peer(m)),
            other => Err(CopyError::Refused(format!("{other:?} during a copy"))),
        }
    }
}

/// Copy messages from the peer.
pub struct Inbound<R, In, Out> {
    frames: FramedRead<R, MessageCodec<In, Out>>,
    /// How long the peer may send nothing before the copy is given up.
    idle: Option<std::time::Duration>,
}

impl<R: AsyncRead + Unpin, In: Carrier, Out> Inbound<R, In, Out> {
    pub fn new(frames: FramedRead<R, MessageCodec<In, Out>>) -> Self {
        Inbound { frames, idle: None }
    }

    /// Gives up when the peer sends nothing for `idle`: for a receiver, whose sender
    /// always has something to say.
    pub fn with_idle(mut self, idle: Option<std::time::Duration>) -> Self {
        self.idle = idle;
        self
    }

    /// The next message; [`CopyError::Closed`] if the connection ends instead.
    ///
    /// # Errors
    /// The connection's, the protocol's or the peer's error.
    pub async fn next(&mut self) -> Result<Transfer, CopyError> {
        let next = match self.idle {
            Some(idle) => tokio::time::timeout(idle, self.frames.next())
                .await
                .map_err(|_| {
                    CopyError::Refused(format!(
                        "nothing arrived for {}s (--idle-timeout)",
                        idle.as_secs_f64()
                    ))
                })?,
            None => self.frames.next().await,
        };
        match next {
            Some(Ok(m)) => m.open(),
            Some(Err(e)) => Err(e.into()),
            None => Err(CopyError::Closed),
        }
    }
}

/// Copy messages to the peer.
pub struct Outbound<W, In, Out> {
    socket: W,
    codec: MessageCodec<In, Out>,
    gathered: BytesMut,
}

impl<W: AsyncWrite + Unpin, In, Out: Carrier> Outbound<W, In, Out> {
    /// Messages written to `socket`, encoded with `codec` (which knows the peer's limit).
    pub fn new(socket: W, codec: MessageCodec<In, Out>) -> Self {
        Outbound {
            socket,
            codec,
            gathered: BytesMut::new(),
        }
    }

    /// Largest data payload one message may carry.
    pub fn max_body(&self) -> usize {
        self.codec.max_body()
    }

    /// Adds a message to what is gathered; written once enough is, or on [`flush`](Self::flush).
    ///
    /// # Errors
    /// The message does not fit a frame, or writing failed.
    pub async fn queue(&mut self, t: Transfer) -> Result<(), CopyError> {
        self.codec.encode(Out::carry(t), &mut self.gathered)?;
        if self.gathered.len() >= GATHER {
            self.flush().await?;
        }
        Ok(())
    }

    /// Sends a message now, with whatever was gathered before it.
    ///
    /// # Errors
    /// As [`queue`](Self::queue).
    pub async fn send(&mut self, t: Transfer) -> Result<(), CopyError> {
        self.codec.encode(Out::carry(t), &mut self.gathered)?;
        self.flush().await
    }

    /// A data message: small ones are gathered, large ones written at once with their
    /// head and what was gathered, in one vectored write.
    ///
    /// # Errors
    /// As [`queue`](Self::queue).
    pub async fn data(&mut self, data: Bytes) -> Result<(), CopyError> {
        if data.len() < 16 * 1024 {
            return self.queue(Transfer::Data(data)).await;
        }
        self.codec
            .encode_copy_data_head(data.len(), &mut self.gathered)?;
        let head = self.gathered.split().freeze();
        self.socket.write_all_buf(&mut head.chain(data)).await?;
        Ok(())
    }

    /// Writes what is gathered.
    ///
    /// # Errors
    /// The socket's error.
    pub async fn flush(&mut self) -> Result<(), CopyError> {
        if !self.gathered.is_empty() {
            let mut all = self.gathered.split().freeze();
            self.socket.write_all_buf(&mut all).await?;
        }
        self.socket.flush().await?;
        Ok(())
    }

    /// Flushes and ends our side of the connection.
    ///
    /// # Errors
    /// The socket's error.
    pub async fn close(&mut self) -> Result<(), CopyError> {
        self.flush().await?;
        self.socket.shutdown().await?;
        Ok(())
    }
}
