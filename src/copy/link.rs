//! The two halves of a connection as `rcmd cp` uses them: copy messages in, copy messages
//! out. The same code serves both ends; [`Carrier`] says how each end's message type
//! carries a [`Transfer`].
//!
//! Small messages are gathered and written together (a tree of small files costs a few
//! writes, not four per file); a large payload goes out in one vectored write with its
//! head, straight from the buffer the file was read into; and when the wire is in the
//! clear, straight from the file into the socket with `sendfile(2)`.

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::{Encoder, FramedRead};

use super::CopyError;
use crate::splice::Socket;
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
    /// The same socket again, when the wire is in the clear: file data goes into it from
    /// the file, with `sendfile`.
    raw: Option<Socket>,
    /// How long one write may wait on a peer that takes nothing before the copy is given
    /// up: a receiver that stops reading would otherwise hold the connection forever.
    stall: Option<Duration>,
}

/// `wait` given up once it has taken `limit` (none: forever), with a refusal saying that
/// the peer was silent while `doing`.
pub async fn patiently<T>(
    limit: Option<Duration>,
    doing: &str,
    wait: impl std::future::Future<Output = Result<T, CopyError>>,
) -> Result<T, CopyError> {
    match limit {
        None => wait.await,
        Some(limit) => tokio::time::timeout(limit, wait).await.unwrap_or_else(|_| {
            Err(CopyError::Refused(format!(
                "the peer said nothing for {}s while {doing} (--idle-timeout)",
                limit.as_secs_f64()
            )))
        }),
    }
}

/// `io` given up with a `TimedOut` error once it has waited `limit` (none: forever).
async fn within<T>(
    limit: Option<Duration>,
    io: impl std::future::Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    match limit {
        None => io.await,
        Some(limit) => tokio::time::timeout(limit, io).await.unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "the peer took nothing for {}s (--idle-timeout)",
                    limit.as_secs_f64()
                ),
            ))
        }),
    }
}

impl<W: AsyncWrite + Unpin, In, Out: Carrier> Outbound<W, In, Out> {
    /// Messages written to `socket`, encoded with `codec` (which knows the peer's limit).
    pub fn new(socket: W, codec: MessageCodec<In, Out>) -> Self {
        Outbound {
            socket,
            codec,
            gathered: BytesMut::new(),
            raw: None,
            stall: None,
        }
    }

    /// Gives the copy up when a write waits `limit` on a peer that takes nothing.
    pub fn with_stall_limit(mut self, limit: Option<Duration>) -> Self {
        self.stall = limit;
        self
    }

    /// The limit given to [`with_stall_limit`](Self::with_stall_limit).
    pub fn stall_limit(&self) -> Option<Duration> {
        self.stall
    }

    /// File data goes from the file into `raw` (a second handle on the socket written,
    /// in the clear) where the kernel allows.
    pub fn with_sendfile(mut self, raw: Option<Socket>) -> Self {
        self.raw = raw;
        self
    }

    /// Whether [`file_data`](Self::file_data) may be used.
    pub fn can_send_file(&self) -> bool {
        self.raw.is_some()
    }

    /// A data message of `len` bytes of `file` from `offset`, sent from the file into the
    /// socket by the kernel (copied through memory where it refuses). `Ok(false)`: the
    /// file ended first or could not be read; the message is completed with zeros, and
    /// the caller must abandon the file.
    ///
    /// # Errors
    /// As [`queue`](Self::queue).
    pub async fn file_data(
        &mut self,
        file: &std::fs::File,
        offset: u64,
        len: usize,
    ) -> Result<bool, CopyError> {
        use std::os::fd::AsFd;
        use std::os::unix::fs::FileExt;
        let raw = self
            .raw
            .as_ref()
            .expect("only with a socket to send files into");
        self.codec.encode_copy_data_head(len, &mut self.gathered)?;
        let mut head = self.gathered.split().freeze();
        let stall = self.stall;
        within(stall, self.socket.write_all_buf(&mut head)).await?;
        within(stall, self.socket.flush()).await?;
        let mut at = i64::try_from(offset).map_err(std::io::Error::other)?;
        let mut left = len;
        let mut copying: Option<Vec<u8>> = None;
        while left > 0 {
            let moved = match &mut copying {
                None => match within(stall, raw.send_file(file.as_fd(), &mut at, left)).await {
                    Ok(n) => n,
                    Err(e) if crate::splice::is_refusal(&e) => {
                        copying = Some(vec![0u8; left.min(1 << 20)]);
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                },
                Some(buf) => {
                    let want = left.min(buf.len());
                    match file.read_at(&mut buf[..want], at as u64) {
                        Ok(n) => {
                            within(stall, self.socket.write_all(&buf[..n])).await?;
                            at += n as i64;
                            n
                        }
                        Err(_) => 0,
                    }
                }
            };
            if moved == 0 {
                // The frame's length is said: it is filled, and the file dropped.
                let zeros = vec![0u8; left.min(1 << 20)];
                while left > 0 {
                    let n = left.min(zeros.len());
                    within(stall, self.socket.write_all(&zeros[..n])).await?;
                    left -= n;
                }
                return Ok(false);
            }
            left -= moved;
        }
        Ok(true)
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
        within(self.stall, self.socket.write_all_buf(&mut head.chain(data))).await?;
        Ok(())
    }

    /// Writes what is gathered.
    ///
    /// # Errors
    /// The socket's error.
    pub async fn flush(&mut self) -> Result<(), CopyError> {
        if !self.gathered.is_empty() {
            let mut all = self.gathered.split().freeze();
            within(self.stall, self.socket.write_all_buf(&mut all)).await?;
        }
        within(self.stall, self.socket.flush()).await?;
        Ok(())
    }

    /// Flushes and ends our side of the connection.
    ///
    /// # Errors
    /// The socket's error.
    pub async fn close(&mut self) -> Result<(), CopyError> {
        self.flush().await?;
        within(self.stall, self.socket.shutdown()).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::message::{ClientCodec, ServerCodec};
    use crate::wire::{Protocol, Wire};

    #[tokio::test]
    async fn a_file_shorter_than_its_data_message_is_padded_and_reported() {
        // The head says how long the message is before the file is read: when the file
        // ends first, the message is completed with zeros, so the next one still starts
        // where the receiver expects it, and the sender learns to drop the file.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (a, b) = tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        let (a, (b, _)) = (a.unwrap(), b.unwrap());
        let wire = Wire::new(Protocol::Framed);
        let raw = Socket::new(&a, tokio::io::Interest::WRITABLE).unwrap();
        let (_, writer) = tokio::io::split(a);
        let mut out = Outbound::new(writer, ClientCodec::new(wire.header, wire.max_frame))
            .with_sendfile(Some(raw));
        assert!(out.can_send_file());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("short");
        std::fs::write(&path, b"twelve bytes").unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let reading = tokio::spawn(async move {
            let (reader, _) = tokio::io::split(b);
            let mut frames = FramedRead::new(reader, ServerCodec::new(wire.header, wire.max_frame));
            let mut got = Vec::new();
            for _ in 0..2 {
                got.push(frames.next().await.unwrap().unwrap());
            }
            got
        });
        assert!(!out.file_data(&file, 2, 300_000).await.unwrap());
        assert!(out.file_data(&file, 0, 12).await.unwrap());
        let got = reading.await.unwrap();
        let mut padded = b"elve bytes".to_vec();
        padded.resize(300_000, 0);
        assert_eq!(got[0], ClientMessage::Copy(Transfer::Data(padded.into())));
        assert_eq!(
            got[1],
            ClientMessage::Copy(Transfer::Data(Bytes::from_static(b"twelve bytes")))
        );
    }
}
