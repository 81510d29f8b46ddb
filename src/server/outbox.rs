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
//!
//! Spliced bytes stop in a pipe of our own on the way. A splice into a TCP socket holds
//! its source pipe's lock for the whole send, loopback's receive work included, and a
//! command writing into that pipe meanwhile spins on the lock (a third of its time, for a
//! command writing 4 KiB at a time). Moving the bytes into our own pipe first takes that
//! lock only for as long as it takes to move page references.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::os::fd::AsFd;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tracing::debug;

use crate::exec::OutPipe;
use crate::splice::{self, Pipe, Socket};

/// The size of our own pipe between a command's pipe and the socket: as large as a
/// command's own output pipe, so one move empties what a command left in place.
const VIA_SIZE: usize = 1 << 20;

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
    /// Bytes were written and not flushed since. A TLS stream takes what it is given into
    /// its own buffer and returns, though the socket took only part of the ciphertext:
    /// the rest goes out only on a later write or a flush. The last write before a pause
    /// must therefore be flushed, or the peer waits for it forever.
    unflushed: bool,
    /// Where pipes are spliced to; `None`: every piece is written from memory.
    splice: Option<Splicer>,
}

/// The socket again, to splice into, and our pipe on the way there.
#[derive(Debug)]
struct Splicer {
    socket: Socket,
    via: Pipe,
    /// Bytes of the front piece (a pipe's) already moved into `via`.
    staged: usize,
}

impl Splicer {
    /// Moves what it can of the `len` bytes at the front of `from` into `via`, without
    /// waiting: they are in `from` already, and `via` has room unless it holds a
    /// previous move still. They stay owed to `from` until they reach the socket: until
    /// then the command's pipe is not read again, as if they were still in it, or small
    /// reads would pile up in memory behind a socket that is full.
    fn stage(&mut self, from: &OutPipe, len: usize) -> std::io::Result<()> {
        if self.staged < len {
            match splice::splice(from.as_fd(), self.via.write.as_fd(), len - self.staged) {
                Ok(n) => self.staged += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Moves some of the front piece (`len` bytes in `from`) into the socket once it
    /// has room; says how many went. Cancel safe: `staged` counts what moved into `via`.
    async fn send(&mut self, from: &OutPipe, len: usize) -> std::io::Result<usize> {
        self.stage(from, len)?;
        let n = self
            .socket
            .splice_from(self.via.read.as_fd(), self.staged)
            .await?;
        self.staged -= n;
        from.moved(n);
        Ok(n)
    }

    /// As [`send`](Self::send), but only if the socket has room now.
    fn try_send(&mut self, from: &OutPipe, len: usize) -> std::io::Result<usize> {
        self.stage(from, len)?;
        let n = self
            .socket
            .try_splice_from(self.via.read.as_fd(), self.staged)?;
        self.staged -= n;
        from.moved(n);
        Ok(n)
    }

    /// The front piece's `len` bytes, read into memory from `via` and `from`: for when
    /// the socket refuses splice after all.
    fn take(self, from: &OutPipe, len: usize) -> std::io::Result<Bytes> {
        let mut bytes = Vec::with_capacity(len);
        let via = std::fs::File::from(self.via.read);
        let mut staged = std::io::Read::take(via, self.staged as u64);
        std::io::Read::read_to_end(&mut staged, &mut bytes)?;
        if bytes.len() != self.staged {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        from.moved(self.staged);
        bytes.extend_from_slice(&from.read_owed(len - self.staged)?);
        Ok(bytes.into())
    }
}

impl Outbox {
    /// An outbox that may splice pipes into `socket` (a duplicate of the one written).
    pub(super) fn with_splice(socket: Option<Socket>) -> Outbox {
        // Without a pipe of our own (out of descriptors), output is copied as elsewhere.
        let splice = socket.and_then(|socket| {
            Some(Splicer {
                socket,
                via: Pipe::new(VIA_SIZE).ok()?,
                staged: 0,
            })
        });
        Outbox {
            splice,
            ..Outbox::default()
        }
    }

    /// The socket pieces are spliced into, for a copy to send files into; the outbox
    /// copies from then on.
    pub(super) fn take_socket(&mut self) -> Option<Socket> {
        self.splice.take().map(|s| s.socket)
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

    /// Nothing queued, and everything written has been flushed to the socket.
    pub(super) fn is_empty(&self) -> bool {
        self.len == 0 && !self.unflushed
    }

    /// Writes as much of the queue as one system call takes, and once the queue is
    /// empty, flushes the writer. Cancel safe: the queue only advances past bytes that
    /// were written, and a flush cut short is taken up again on the next call.
    ///
    /// # Errors
    /// The socket's error.
    pub(super) async fn write_some<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut W,
    ) -> std::io::Result<usize> {
        if self.len == 0 {
            if !self.unflushed {
                return std::future::pending().await;
            }
            w.flush().await?;
            self.unflushed = false;
            return Ok(0);
        }
        if let Some(Piece::Pipe { from, len }) = self.queue.front_mut() {
            let (from, len) = (from.clone(), *len);
            // Spliced bytes bypass the writer: whatever it holds must reach the socket first.
            if self.unflushed {
                w.flush().await?;
                self.unflushed = false;
            }
            let moved = match &mut self.splice {
                Some(splicer) => splicer.send(&from, len).await,
                None => Err(std::io::Error::from(rustix::io::Errno::INVAL)),
            };
            match moved {
                Ok(n) => {
                    self.advance(n);
                    return Ok(n);
                }
                Err(e) if splice::is_refusal(&e) => {
                    // The kernel will not splice here: copy these bytes, and all later
                    // output, through memory. None has reached the socket, so the frame
                    // is intact.
                    debug!("splice refused ({e}); copying output instead");
                    let bytes = match self.splice.take() {
                        Some(splicer) => splicer.take(&from, len)?,
                        None => from.read_owed(len)?,
                    };
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
        self.unflushed = true;
        self.advance(n);
        Ok(n + self.splice_now())
    }

    /// With a frame head just written and its payload next in the pipe, starts moving
    /// the payload at once if the socket has room, saving a turn of the loop. Never
    /// waits, so it keeps `write_some` cancel safe; any failure is left to the next turn.
    fn splice_now(&mut self) -> usize {
        let (Some(splicer), Some(Piece::Pipe { from, len })) =
            (&mut self.splice, self.queue.front())
        else {
            return 0;
        };
        match splicer.try_send(from, *len) {
            Ok(n) if n > 0 => {
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
    async fn bytes_staged_in_our_pipe_are_copied_whole_when_splice_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        let data: Vec<u8> = (0..200_003u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let line = format!("cat {}", path.display());
        let mut running = crate::exec::spawn(line.as_bytes(), ExecMode::Shell, None).unwrap();
        let Piece::InPipe { pipe, len, .. } =
            running.next_in_place(Some((1, 1 << 20))).await.unwrap()
        else {
            panic!("the output was not left in its pipe");
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        // A one-page pipe of our own: only part of the piece fits in it.
        let mut splicer = Splicer {
            socket: Socket::new(&a, tokio::io::Interest::WRITABLE).unwrap(),
            via: Pipe::new(4096).unwrap(),
            staged: 0,
        };
        splicer.stage(&pipe, len).unwrap();
        assert!(
            splicer.staged > 0 && splicer.staged < len,
            "staged {} of {len}",
            splicer.staged
        );
        let bytes = splicer.take(&pipe, len).unwrap();
        assert!(bytes[..] == data[..len], "the copied bytes differ");
    }

    /// A writer that takes everything it is given and passes it on only when flushed,
    /// as a TLS stream does with ciphertext its socket had no room for.
    #[derive(Default)]
    struct Holding {
        held: Vec<u8>,
        passed: Vec<u8>,
    }

    impl AsyncWrite for Holding {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            self.held.extend_from_slice(buf);
            std::task::Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            let held = std::mem::take(&mut self.held);
            self.passed.extend_from_slice(&held);
            std::task::Poll::Ready(Ok(()))
        }

        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn what_a_buffering_writer_took_is_flushed_before_the_outbox_is_empty() {
        let mut w = Holding::default();
        let mut out = Outbox::default();
        out.push(Bytes::from_static(b"the last frame"));
        while !out.is_empty() {
            out.write_some(&mut w).await.unwrap();
        }
        assert_eq!(w.passed, b"the last frame", "held back: {:?}", w.held);
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
