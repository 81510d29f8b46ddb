//! Pseudo-terminals for commands that asked for one (`rcmd client -t`): open a pair, size
//! it, and read and write its master side without blocking the runtime.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use rustix::fs::{fcntl_getfl, fcntl_setfl, Mode, OFlags};
use rustix::io::Errno;
use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
use rustix::termios::{tcsetwinsize, Winsize};
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
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    grantpt(&master)?;
    unlockpt(&master)?;
    let name = ptsname(&master, Vec::new())?;
    let slave = rustix::fs::open(
        name.as_c_str(),
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    set_size(master.as_fd(), size)?;
    let flags = fcntl_getfl(&master)?;
    fcntl_setfl(&master, flags | OFlags::NONBLOCK)?;
    // SAFETY: an OwnedFd stays open, on the same description, for as long as the AsyncFd
    // owns it.
    let fd =
        unsafe { AsyncFd::register_with_interest(master, Interest::READABLE | Interest::WRITABLE) }
            .map_err(|e| e.into_parts().1)?;
    Ok((Master { fd: Arc::new(fd) }, slave))
}

fn set_size(fd: BorrowedFd<'_>, size: WindowSize) -> io::Result<()> {
    let ws = Winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    Ok(tcsetwinsize(fd, ws)?)
}

impl Master {
    /// Changes the terminal's size; the kernel sends SIGWINCH to its foreground group.
    ///
    /// # Errors
    /// If the terminal is gone.
    pub fn resize(&self, size: WindowSize) -> io::Result<()> {
        set_size(self.fd.get_ref().as_fd(), size)
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
                rustix::io::read(fd.get_ref(), &mut *spare)
                    .map(|(filled, _)| filled.len())
                    .map_err(io::Error::from)
            });
            match result {
                Ok(Ok(0)) => return Ok(None),
                Ok(Ok(n)) => {
                    // SAFETY: the kernel initialised the first n bytes of spare capacity.
                    unsafe { buf.set_len(buf.len() + n) };
                    return Ok(Some(buf.split().freeze()));
                }
                Ok(Err(e)) if e.raw_os_error() == Some(Errno::IO.raw_os_error()) => {
                    return Ok(None)
                }
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
            let result =
                guard.try_io(|fd| rustix::io::write(fd.get_ref(), data).map_err(io::Error::from));
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
