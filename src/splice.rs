//! Moving bytes from one descriptor to another inside the kernel, with `splice(2)` and
//! `sendfile(2)`, without ever blocking the task that asks.
//!
//! Every call here is a single non-blocking system call on non-blocking descriptors, made
//! once tokio says the far side is ready, and it reports only what actually moved: a
//! caller inside `select!` that is cancelled loses nothing. When the kernel refuses
//! (`EINVAL`: a descriptor that cannot splice, such as a pty or a TLS stream's socket),
//! [`is_refusal`] says so and the caller copies through user space instead.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::io::Errno;
use rustix::net::RecvFlags;
use rustix::pipe::{PipeFlags, SpliceFlags};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// One `splice(2)` of at most `len` bytes from `from` to `to` (one of them a pipe).
/// `Ok(0)`: `from` is at its end. `WouldBlock` when either side is not ready.
///
/// # Errors
/// The system call's error.
pub fn splice(from: BorrowedFd<'_>, to: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
    // No offsets: each descriptor's own position (pipes and sockets have none).
    let flags = SpliceFlags::MOVE | SpliceFlags::NONBLOCK;
    Ok(rustix::pipe::splice(from, None, to, None, len, flags)?)
}

/// One `sendfile(2)` of at most `len` bytes of `file` from `*offset` (advanced by what
/// moved) into `to`.
///
/// # Errors
/// The system call's error; `WouldBlock` when `to` is full.
pub fn sendfile(
    file: BorrowedFd<'_>,
    offset: &mut u64,
    to: BorrowedFd<'_>,
    len: usize,
) -> io::Result<usize> {
    Ok(rustix::fs::sendfile(to, file, Some(offset), len)?)
}

/// Bytes waiting to be read in the pipe (or socket) `fd` (`FIONREAD`).
///
/// # Errors
/// The ioctl's error.
pub fn waiting(fd: BorrowedFd<'_>) -> io::Result<usize> {
    let n = rustix::io::ioctl_fionread(fd)?;
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

/// Whether `e` means "this pair of descriptors cannot be spliced": copy instead.
pub fn is_refusal(e: &io::Error) -> bool {
    matches!(
        Errno::from_io_error(e),
        Some(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP | Errno::BADF | Errno::SPIPE)
    )
}

/// A descriptor of its own (a duplicate) for a socket that another handle reads and
/// writes, with its own readiness: output can then be spliced into it between the frame
/// heads the other handle writes, in order, from the same task.
#[derive(Debug)]
pub struct Socket {
    fd: AsyncFd<OwnedFd>,
}

impl Socket {
    /// A duplicate of `socket` (already non-blocking, as tokio's sockets are), watched
    /// for `interest`.
    ///
    /// # Errors
    /// Out of descriptors, or the runtime cannot watch it.
    pub fn new(socket: &impl AsFd, interest: Interest) -> io::Result<Socket> {
        let fd = dup(socket.as_fd())?;
        // SAFETY: the AsyncFd owns the duplicate, so it stays open, on the same open file
        // description, for as long as it is registered.
        let fd = unsafe { AsyncFd::register_with_interest(fd, interest) }
            .map_err(|e| e.into_parts().1)?;
        Ok(Socket { fd })
    }

    /// Moves at most `len` bytes from `pipe`, where at least that many wait (the caller
    /// counted them), into the socket, once it has room; says how many moved. Cancel safe.
    ///
    /// # Errors
    /// The socket's error (the peer went away); [`is_refusal`] ones mean "copy instead".
    pub async fn splice_from(&self, pipe: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
        loop {
            let mut ready = self.fd.writable().await?;
            match ready.try_io(|fd| splice(pipe, fd.get_ref().as_fd(), len)) {
                Ok(Ok(0)) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }

    /// As [`splice_from`](Self::splice_from), but only if the socket has room now:
    /// `WouldBlock` otherwise. Never waits, so it may follow a write in the same step.
    ///
    /// # Errors
    /// As [`splice_from`](Self::splice_from), and `WouldBlock`.
    pub fn try_splice_from(&self, pipe: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
        self.fd
            .try_io(Interest::WRITABLE, |fd| splice(pipe, fd.as_fd(), len))
    }

    /// Moves at most `len` bytes from the socket into `pipe` (which must have room for
    /// them), once the socket has something to read. `Ok(0)`: the peer closed. Cancel safe.
    ///
    /// # Errors
    /// As [`splice`].
    pub async fn splice_to(&self, pipe: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
        loop {
            let mut ready = self.fd.readable().await?;
            match ready.try_io(|fd| splice(fd.get_ref().as_fd(), pipe, len)) {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }

    /// Copies into `buf` what the socket has now, without taking it (`MSG_PEEK`), and
    /// without waiting or touching the readiness: `WouldBlock` when nothing has arrived.
    /// `Ok(0)`: the peer closed.
    ///
    /// # Errors
    /// The socket's error.
    pub fn peek_now(&self, buf: &mut [u8]) -> io::Result<usize> {
        let (n, _) = rustix::net::recv(&self.fd, buf, RecvFlags::PEEK | RecvFlags::DONTWAIT)?;
        Ok(n)
    }

    /// Reads into `buf` once the socket has something. `Ok(0)`: the peer closed.
    /// Cancel safe.
    ///
    /// # Errors
    /// The socket's error.
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut ready = self.fd.readable().await?;
            let recv = |fd: &AsyncFd<OwnedFd>| {
                let (n, _) = rustix::net::recv(fd, &mut *buf, RecvFlags::empty())?;
                Ok(n)
            };
            match ready.try_io(recv) {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }

    /// Sends at most `len` bytes of `file` from `*offset` into the socket, once it has
    /// room; says how many moved. Cancel safe.
    ///
    /// # Errors
    /// As [`sendfile`].
    pub async fn send_file(
        &self,
        file: BorrowedFd<'_>,
        offset: &mut u64,
        len: usize,
    ) -> io::Result<usize> {
        loop {
            let mut ready = self.fd.writable().await?;
            match ready.try_io(|fd| sendfile(file, offset, fd.get_ref().as_fd(), len)) {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }
}

/// A pipe of our own, both ends non-blocking: the stop between two descriptors that
/// cannot be spliced directly (a socket and a file).
#[derive(Debug)]
pub struct Pipe {
    pub read: OwnedFd,
    pub write: OwnedFd,
}

impl Pipe {
    /// A new pipe, grown to `size` bytes where the system allows.
    ///
    /// # Errors
    /// Out of descriptors.
    pub fn new(size: usize) -> io::Result<Pipe> {
        let (read, write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        // Refused (over the limit for an unprivileged user): the default size, which works.
        let _default_size = rustix::pipe::fcntl_setpipe_size(&write, size);
        Ok(Pipe { read, write })
    }
}

fn dup(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    fd.try_clone_to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn pipe_to_socket_and_back_moves_every_byte() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (a, b) = tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        let (a, (mut b, _)) = (a.unwrap(), b.unwrap());
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let pipe = Pipe::new(1 << 20).unwrap();
        let written = {
            let w = pipe.write.try_clone().unwrap();
            let data = data.clone();
            std::thread::spawn(move || {
                let mut f = std::fs::File::from(w);
                // The pipe is non-blocking: retry until every byte is in.
                let mut rest = &data[..];
                while !rest.is_empty() {
                    match std::io::Write::write(&mut f, rest) {
                        Ok(n) => rest = &rest[n..],
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        };
        written.join().unwrap();
        drop(pipe.write);
        let socket = Socket::new(&a, Interest::WRITABLE).unwrap();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            b.read_to_end(&mut got).await.unwrap();
            got
        });
        let mut left = waiting(pipe.read.as_fd()).unwrap();
        assert_eq!(left, data.len());
        while left > 0 {
            left -= socket.splice_from(pipe.read.as_fd(), left).await.unwrap();
        }
        drop(socket);
        drop(a);
        assert_eq!(reader.await.unwrap(), data);
    }
}
