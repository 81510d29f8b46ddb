//! Pseudo-terminals for commands that asked for one (`rcmd client -t`): open a pair, size
//! it, and read and write its master side without blocking the runtime.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// A terminal size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSize {
    pub rows: u16,
    pub cols: u16,
}

/// The master side of a pseudo-terminal; the command holds the other side.
#[derive(Debug, Clone)]
pub struct Master {
    fd: Arc<AsyncFd<OwnedFd>>,
}

/// Opens a pseudo-terminal of `size`: the master, to keep, and the slave, to hand to the
/// command as its stdin, stdout and stderr.
///
/// # Errors
/// If the system has no pseudo-terminal to give.
pub fn open(size: WindowSize) -> io::Result<(Master, OwnedFd)> {
    // SAFETY: the usual posix_openpt sequence; every descriptor returned is checked and
    // owned exactly once.
    unsafe {
        let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        if master < 0 {
            return Err(io::Error::last_os_error());
        }
        let master = OwnedFd::from_raw_fd(master);
        if libc::grantpt(master.as_raw_fd()) != 0 || libc::unlockpt(master.as_raw_fd()) != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut name = [0 as libc::c_char; 128];
        if libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()) != 0 {
            return Err(io::Error::last_os_error());
        }
        let slave = libc::open(
            name.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        if slave < 0 {
            return Err(io::Error::last_os_error());
        }
        let slave = OwnedFd::from_raw_fd(slave);
        set_size(master.as_raw_fd(), size)?;
        let flags = libc::fcntl(master.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(master.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
        // An OwnedFd stays open, on the same description, for as long as the AsyncFd owns it.
        let fd = AsyncFd::register_with_interest(master, Interest::READABLE | Interest::WRITABLE)
            .map_err(|e| e.into_parts().1)?;
        Ok((Master { fd: Arc::new(fd) }, slave))
    }
}

fn set_size(fd: RawFd, size: WindowSize) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from the pointer given.
    if unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl Master {
    /// Changes the terminal's size; the kernel sends SIGWINCH to its foreground group.
    ///
    /// # Errors
    /// If the terminal is gone.
    pub fn resize(&self, size: WindowSize) -> io::Result<()> {
        set_size(self.fd.get_ref().as_raw_fd(), size)
    }

    /// Reads what the command wrote, or `None` once every copy of the slave is closed
    /// (Linux reports that as EIO).
    ///
    /// # Errors
    /// Any other read error.
    pub async fn read(&self, buf: &mut BytesMut, max: usize) -> io::Result<Option<Bytes>> {
        buf.reserve(max);
        loop {
            let mut guard = self.fd.readable().await?;
            let spare = buf.spare_capacity_mut();
            let result = guard.try_io(|fd| {
                // SAFETY: reading into the buffer's spare capacity, at most its length.
                let n =
                    unsafe { libc::read(fd.as_raw_fd(), spare.as_mut_ptr().cast(), spare.len()) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match result {
                Ok(Ok(0)) => return Ok(None),
                Ok(Ok(n)) => {
                    // SAFETY: the kernel initialised the first n bytes of spare capacity.
                    unsafe { buf.set_len(buf.len() + n) };
                    return Ok(Some(buf.split().freeze()));
                }
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Ok(None),
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }

    /// Writes some of `data` as typed input to the command and says how much. Cancel
    /// safe: nothing is written unless it returns.
    ///
    /// # Errors
    /// If the terminal is gone.
    pub async fn write(&self, data: &[u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.writable().await?;
            let result = guard.try_io(|fd| {
                // SAFETY: writing from a valid slice, at most its length.
                let n = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match result {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }

    /// Signals end of input the way a person at the terminal would: the EOF character
    /// (Ctrl-D).
    ///
    /// # Errors
    /// If the terminal is gone.
    pub async fn send_eof(&self) -> io::Result<()> {
        while self.write(&[0x04]).await? == 0 {}
        Ok(())
    }
}
