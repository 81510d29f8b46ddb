//! The client's zero-copy path for standard input: when our stdin is a pipe and the wire
//! is in the clear, each piece goes from that pipe into the socket inside the kernel,
//! behind a frame head that says how long it is, without ever being read into memory.
//!
//! The head is written first, so a piece is exactly what the pipe holds at that moment
//! (`FIONREAD`), within the server's credit and one frame.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::event::{PollFd, PollFlags, Timespec};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::splice::{self, Socket};

/// Our stdin (a pipe) and the socket it is spliced into.
#[derive(Debug)]
pub(super) struct SpliceOut {
    stdin: AsyncFd<OwnedFd>,
    socket: Socket,
}

impl SpliceOut {
    /// A splicer from `stdin` (a duplicate of ours, a pipe) into `stream`; `None` when the
    /// runtime cannot watch either.
    pub(super) fn new(stream: &TcpStream, stdin: OwnedFd) -> Option<SpliceOut> {
        // SAFETY: the AsyncFd owns the duplicate, so it stays open, on the same open file
        // description, for as long as it is registered.
        let stdin = unsafe { AsyncFd::register_with_interest(stdin, Interest::READABLE) }.ok()?;
        Some(SpliceOut {
            stdin,
            socket: Socket::new(stream, Interest::WRITABLE).ok()?,
        })
    }

    /// How many bytes wait in the pipe, once some do; `Ok(0)`: the writer closed it and
    /// nothing is left. Cancel safe: nothing is taken.
    ///
    /// # Errors
    /// The pipe's error.
    pub(super) async fn waiting(&self) -> io::Result<usize> {
        loop {
            let mut ready = self.stdin.readable().await?;
            match ready.try_io(|fd| waiting_or_end(fd.get_ref().as_fd())) {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }

    /// Moves exactly `len` bytes from the pipe (where at least that many wait) into the
    /// socket, waiting for room as it goes.
    ///
    /// # Errors
    /// The socket's error; `UnexpectedEof` if the pipe ran dry first (someone else read
    /// from it too), which leaves the frame short: the connection cannot go on.
    pub(super) async fn send(&self, mut len: usize) -> io::Result<()> {
        let pipe = self.stdin.get_ref().as_fd();
        while len > 0 {
            // Only what waits: the socket's readiness must not be spent on an empty pipe.
            let waiting = splice::waiting(pipe)?;
            if waiting == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            len -= self.socket.splice_from(pipe, len.min(waiting)).await?;
        }
        Ok(())
    }
}

/// `FIONREAD` of `pipe`; when nothing waits, `Ok(0)` if its writer is gone and
/// `WouldBlock` if not (a readiness that was stale).
fn waiting_or_end(pipe: BorrowedFd<'_>) -> io::Result<usize> {
    let n = splice::waiting(pipe)?;
    if n > 0 {
        return Ok(n);
    }
    let mut p = [PollFd::from_borrowed_fd(pipe, PollFlags::IN)];
    // A zero timeout: never waits.
    rustix::event::poll(&mut p, Some(&Timespec::default()))?;
    let revents = p[0].revents();
    // Bytes may have arrived between the two calls: only a hangup with none is the end.
    if revents.contains(PollFlags::HUP) && splice::waiting(pipe)? == 0 {
        return Ok(0);
    }
    if revents.contains(PollFlags::IN) {
        return splice::waiting(pipe);
    }
    Err(io::ErrorKind::WouldBlock.into())
}
