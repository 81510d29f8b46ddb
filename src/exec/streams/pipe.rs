//! A command's stdout or stderr pipe, read either into our memory or left in place for
//! the caller to move elsewhere inside the kernel (see [`crate::splice`]).
//!
//! Bytes left in place are *owed*: the pipe reports them once, and is not asked again
//! until the caller has moved them all ([`OutPipe::moved`]). Otherwise the next count of
//! waiting bytes would include them a second time.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::net::unix::pipe::Receiver;

/// The read end of one of a command's output pipes. Clones share it.
#[derive(Debug, Clone)]
pub struct OutPipe {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    rx: Receiver,
    owed: AtomicUsize,
}

/// The least room a read is given, so that reads of a few bytes still share allocations.
const MIN_READ: usize = 4096;

/// What one pull from a pipe found.
pub(super) enum Pulled {
    /// Bytes read into memory.
    Read(Bytes),
    /// This many bytes wait in the pipe, left there for the caller.
    InPlace(usize),
    /// The pipe is at its end.
    End,
}

impl OutPipe {
    pub(super) fn new(fd: OwnedFd) -> io::Result<OutPipe> {
        Ok(OutPipe {
            inner: Arc::new(Inner {
                rx: Receiver::from_owned_fd(fd)?,
                owed: AtomicUsize::new(0),
            }),
        })
    }

    /// Bytes reported in place and not yet moved.
    fn owed(&self) -> usize {
        self.inner.owed.load(Ordering::Acquire)
    }

    /// The caller moved `n` of the bytes it was given in place.
    pub fn moved(&self, n: usize) {
        self.inner.owed.fetch_sub(n, Ordering::AcqRel);
    }

    /// Waits for output, then reads it into `buf` (at most `chunk` more bytes of room) or,
    /// with `in_place = Some((min, max))` and at least `min` bytes waiting, leaves up to
    /// `max` of them in the pipe. Pending while bytes are owed. Cancel safe.
    pub(super) async fn pull(
        &self,
        buf: &mut BytesMut,
        chunk: usize,
        in_place: Option<(usize, usize)>,
    ) -> io::Result<Pulled> {
        if self.owed() > 0 {
            return std::future::pending().await;
        }
        loop {
            self.inner.rx.readable().await?;
            if let Some((min, max)) = in_place {
                let waiting = crate::splice::waiting(self.as_fd())?;
                if waiting >= min.max(1) {
                    let n = waiting.min(max);
                    self.inner.owed.store(n, Ordering::Release);
                    return Ok(Pulled::InPlace(n));
                }
            }
            // Room for what waits, not for a whole chunk: `reserve` finds room left in
            // the current allocation after earlier reads, where asking for a chunk every
            // time made a new allocation of at least a chunk for every read, each one
            // kept alive by a few KiB waiting in the outbox (up to 1 MiB of them).
            let waiting = crate::splice::waiting(self.as_fd()).unwrap_or(0);
            buf.reserve(waiting.clamp(MIN_READ, chunk));
            match self.inner.rx.try_read_buf(buf) {
                Ok(0) => return Ok(Pulled::End),
                // `split` hands the bytes out and leaves the rest of the allocation for
                // the next read.
                Ok(_) => return Ok(Pulled::Read(buf.split().freeze())),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads exactly `n` owed bytes into memory: for when they cannot be moved in the
    /// kernel after all. They are in the pipe already, so this never waits.
    ///
    /// # Errors
    /// The pipe's error, or `UnexpectedEof` if fewer than `n` bytes were there.
    pub fn read_owed(&self, n: usize) -> io::Result<Bytes> {
        let mut buf = BytesMut::with_capacity(n);
        while buf.len() < n {
            let room = n - buf.len();
            let mut limited = (&mut buf).limit(room);
            match self.inner.rx.try_read_buf(&mut limited) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(k) => self.moved(k),
                Err(e) => return Err(e),
            }
        }
        Ok(buf.freeze())
    }
}

impl AsFd for OutPipe {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.rx.as_fd()
    }
}
