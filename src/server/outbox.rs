//! Bytes waiting to go to one peer, written without ever blocking the connection's loop.
//!
//! Every frame is queued here and written from inside the loop's `select!`, one system
//! call at a time. A peer that stops reading therefore stalls only this queue: the loop
//! still notices a timeout, a shutdown, a disconnect, or the queue making no progress.
//!
//! A queued piece is either bytes in our memory, written with vectored writes, or bytes
//! still in a command's pipe, spliced from there into the socket (see [`crate::splice`]).
//! Pieces go out strictly in order, so a frame's head is always whole on the wire before
//! its payload starts to move.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::os::fd::AsFd;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tracing::debug;

use crate::exec::OutPipe;
use crate::splice::{self, Socket};

/// How many pieces one vectored write takes at most (Linux accepts 1024).
const MAX_SLICES: usize = 64;

#[derive(Debug)]
enum Piece {
    Bytes(Bytes),
    /// `len` bytes waiting in `from`, owed to us (see [`OutPipe::moved`]).
    Pipe {
        from: OutPipe,
        len: usize,
    },
}

impl Piece {
    fn len(&self) -> usize {
        match self {
            Piece::Bytes(b) => b.len(),
            Piece::Pipe { len, .. } => *len,
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct Outbox {
    queue: VecDeque<Piece>,
    len: usize,
    /// The socket again, to splice into; `None`: every piece is written from memory.
    splice: Option<Socket>,
}

impl Outbox {
    /// An outbox that may splice pipes into `socket` (a duplicate of the one written).
    pub(super) fn with_splice(socket: Option<Socket>) -> Outbox {
        Outbox {
            splice: socket,
            ..Outbox::default()
        }
    }

    /// Whether pieces left in a pipe can be taken ([`push_pipe`](Self::push_pipe)).
    pub(super) fn can_splice(&self) -> bool {
        self.splice.is_some()
    }

    /// Queues `bytes` behind everything already queued.
    pub(super) fn push(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.len += bytes.len();
            self.queue.push_back(Piece::Bytes(bytes));
        }
    }

    /// Queues `len` bytes that wait in `from`, to be spliced from there.
    pub(super) fn push_pipe(&mut self, from: OutPipe, len: usize) {
        if len > 0 {
            self.len += len;
            self.queue.push_back(Piece::Pipe { from, len });
        }
    }

    /// Bytes queued and not yet written.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes as much of the queue as one system call takes. Cancel safe: the queue only
    /// advances past bytes that were written.
    ///
    /// # Errors
    /// The socket's error.
    pub(super) async fn write_some<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut W,
    ) -> std::io::Result<usize> {
        if self.is_empty() {
            return std::future::pending().await;
        }
        if let Some(Piece::Pipe { from, len }) = self.queue.front_mut() {
            let (from, len) = (from.clone(), *len);
            let moved = match &self.splice {
                Some(socket) => socket.splice_from(from.as_fd(), len).await,
                None => Err(std::io::Error::from_raw_os_error(libc::EINVAL)),
            };
            match moved {
                Ok(n) => {
                    from.moved(n);
                    self.advance(n);
                    return Ok(n);
                }
                Err(e) if splice::is_refusal(&e) => {
                    // The kernel will not splice here: copy these bytes, and all later
                    // output, through memory. Nothing has moved, so the frame is intact.
                    debug!("splice refused ({e}); copying output instead");
                    self.splice = None;
                    let bytes = from.read_owed(len)?;
                    self.queue[0] = Piece::Bytes(bytes);
                }
                Err(e) => return Err(e),
            }
        }
        let slices: Vec<IoSlice<'_>> = self
            .queue
            .iter()
            .take(MAX_SLICES)
            .map_while(|p| match p {
                Piece::Bytes(b) => Some(IoSlice::new(b)),
                Piece::Pipe { .. } => None,
            })
            .collect();
        let n = w.write_vectored(&slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        self.advance(n);
        Ok(n + self.splice_now())
    }

    /// With a frame head just written and its payload next in the pipe, starts moving
    /// the payload at once if the socket has room, saving a turn of the loop. Never
    /// waits, so it keeps `write_some` cancel safe; any failure is left to the next turn.
    fn splice_now(&mut self) -> usize {
        let (Some(socket), Some(Piece::Pipe { from, len })) = (&self.splice, self.queue.front())
        else {
            return 0;
        };
        match socket.try_splice_from(from.as_fd(), *len) {
            Ok(n) if n > 0 => {
                from.moved(n);
                self.advance(n);
                n
            }
            _ => 0,
        }
    }

    fn advance(&mut self, mut n: usize) {
        self.len -= n;
        while n > 0 {
            let front = self.queue.front_mut().expect("advanced past the queue");
            if front.len() <= n {
                n -= front.len();
                self.queue.pop_front();
            } else {
                match front {
                    Piece::Bytes(b) => b.advance(n),
                    Piece::Pipe { len, .. } => *len -= n,
                }
                n = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::{Event, ExecMode, Piece};
    use tokio::io::AsyncReadExt;

    /// Sends a command's output through an outbox as `<len>` heads and payloads, leaving
    /// output of `min` bytes or more in the pipe; returns what the peer read.
    async fn through_outbox(line: &str, splice: bool, min: usize) -> (Vec<u8>, usize) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (a, b) = tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        let (mut a, (mut b, _)) = (a.unwrap(), b.unwrap());
        let socket = splice.then(|| Socket::new(&a, tokio::io::Interest::WRITABLE).unwrap());
        let mut out = Outbox::with_splice(socket);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            b.read_to_end(&mut got).await.unwrap();
            got
        });
        let mut running = crate::exec::spawn(line.as_bytes(), ExecMode::Shell, None).unwrap();
        let mut in_pipe = 0;
        loop {
            match running.next_in_place(Some((min, 100_000))).await.unwrap() {
                Piece::InPipe { pipe, len, .. } => {
                    in_pipe += 1;
                    out.push(Bytes::from(format!("<{len}>")));
                    out.push_pipe(pipe, len);
                }
                Piece::Event(Event::Stdout(b)) => {
                    out.push(Bytes::from(format!("<{}>", b.len())));
                    out.push(b);
                }
                Piece::Event(Event::Done(_)) => break,
                Piece::Event(Event::Stderr(_)) => unreachable!(),
            }
            while !out.is_empty() {
                out.write_some(&mut a).await.unwrap();
            }
        }
        drop((out, a));
        (reader.await.unwrap(), in_pipe)
    }

    /// The payloads of `<len>`-framed `bytes`, checking every length.
    fn unframe(mut bytes: &[u8]) -> Vec<u8> {
        let mut data = Vec::new();
        while !bytes.is_empty() {
            let end = bytes.iter().position(|&b| b == b'>').unwrap();
            let len: usize = std::str::from_utf8(&bytes[1..end])
                .unwrap()
                .parse()
                .unwrap();
            data.extend_from_slice(&bytes[end + 1..end + 1 + len]);
            bytes = &bytes[end + 1 + len..];
        }
        data
    }

    #[tokio::test]
    async fn output_left_in_the_pipe_follows_its_head_spliced_or_copied() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        let data: Vec<u8> = (0..1_000_003u32).map(|i| (i % 253) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let line = format!("cat {}", path.display());
        // With no socket to splice into, what was left in the pipe is read and copied:
        // the fallback when the kernel refuses.
        for splice in [true, false] {
            let (got, in_pipe) = through_outbox(&line, splice, 1).await;
            assert!(in_pipe > 0, "nothing was left in the pipe");
            assert!(unframe(&got) == data, "splice {splice}: output differs");
        }
        // Below the threshold everything is read as before.
        let (got, in_pipe) = through_outbox("printf small", true, 64 * 1024).await;
        assert_eq!((unframe(&got), in_pipe), (b"small".to_vec(), 0));
    }

    #[tokio::test]
    async fn partial_writes_keep_order_and_lose_nothing() {
        // A writer that takes at most 3 bytes at a time.
        let (mut a, mut b) = tokio::io::duplex(3);
        let mut out = Outbox::default();
        out.push(Bytes::from_static(b"hello "));
        out.push(Bytes::new());
        out.push(Bytes::from_static(b"world"));
        assert_eq!(out.len(), 11);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut b, &mut got)
                .await
                .unwrap();
            got
        });
        while !out.is_empty() {
            out.write_some(&mut a).await.unwrap();
        }
        drop(a);
        assert_eq!(reader.await.unwrap(), b"hello world");
    }
}
