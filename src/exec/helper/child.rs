//! The child after fork: it puts the passed descriptors in place and becomes a supervisor,
//! for one command or for each of a connection's.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::sys::signal::SigSet;

use super::request::{decode, Request};
use super::{PASSED, SERIAL_FD, STATUS_FD};
use crate::exec::supervisor::{self, Plan};

/// In the forked child: puts the passed descriptors at 0-4 (and a connection's socket at 5),
/// drops everything else of the helper's, and runs the supervisor: for one command, or,
/// with a connection's socket, for each command that comes on it. Never returns.
pub(super) fn become_supervisor(fds: &[OwnedFd], plan: &Plan) -> ! {
    let serial = fds.len() > PASSED;
    let clean = match prepare(fds, serial) {
        Ok(()) => {
            let ended = supervisor::run(plan);
            report(ended.status);
            ended.clean && (!serial || serve_connection())
        }
        // Without its descriptors in place it cannot run the command; the server sees
        // the status pipe close and reports the command killed.
        Err(_) => false,
    };
    // SAFETY: _exit only ends this process, at once: the helper's state copied into it
    // (its socket's buffers) must not be flushed. A supervisor that could not kill
    // everything exits with 1, so the helper, which its orphans come to, kills them.
    unsafe { libc::_exit(i32::from(!clean)) }
}

/// Puts this new (single-threaded) process's descriptors and signal state in order for a
/// supervisor: `fds` at 0-4 (and 5), nothing else of the helper's open, no signal blocked
/// (the helper blocks SIGCHLD to read it from a signalfd), and a process group of its own.
fn prepare(fds: &[OwnedFd], serial: bool) -> io::Result<()> {
    SigSet::empty().thread_set_mask()?;
    place(fds)?;
    let last = if serial { SERIAL_FD } else { STATUS_FD };
    // SAFETY: close_range only closes descriptors; those above `last` are the helper's,
    // and nothing in this process uses them again (the `OwnedFd`s in `fds` that sit
    // there are never dropped: this process ends in `_exit`).
    if unsafe { libc::close_range(last as u32 + 1, u32::MAX, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // Never passed on to a command.
    cloexec(STATUS_FD)?;
    if serial {
        cloexec(SERIAL_FD)?;
    }
    // Its own group, as the supervisor always had.
    Ok(rustix::process::setpgid(None, None)?)
}

/// Marks descriptor `fd`, which [`place`] put there, close-on-exec.
fn cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: `fd` was put in place by `place` and stays open while it is borrowed here.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    Ok(rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC)?)
}

/// A connection's supervisor between commands: runs each request that arrives on
/// [`SERIAL_FD`] as the first one was run; returns when the server closes it (or sends
/// what it never sends: a request to detach, a terminal, or more descriptors), or when
/// a command left something it could not kill (`false`: the supervisor is not clean).
fn serve_connection() -> bool {
    use rustix::fs::{Mode, OFlags};
    // Where commands without a directory of their own run: where the first one started.
    // O_CLOEXEC keeps it from every command.
    let home = rustix::fs::open(".", OFlags::PATH | OFlags::CLOEXEC, Mode::empty()).ok();
    // SAFETY: fd 5 is the connection's socket, placed by `become_supervisor` and owned by
    // nothing else in this process.
    let mut sock = UnixStream::from(unsafe { OwnedFd::from_raw_fd(SERIAL_FD) });
    loop {
        // The last command's ends are ours no longer: its status and control pipes close
        // here, so the server sees them end, and its stdio (if it never started) goes.
        // /dev/null takes their places, so the next request's descriptors arrive above
        // them, not where they must go.
        if supervisor::release_stdio()
            .and_then(|()| dup_to(0, supervisor::CONTROL_FD))
            .and_then(|()| dup_to(0, STATUS_FD))
            .is_err()
        {
            return false;
        }
        let Ok(Some(request)) = Request::read(&mut sock, false) else {
            return true;
        };
        let Some(plan) = decode(&request.body) else {
            return true;
        };
        if plan.detach || plan.tty || request.fds.len() != PASSED {
            return true;
        }
        if place(&request.fds)
            .and_then(|()| cloexec(STATUS_FD))
            .is_err()
        {
            return false;
        }
        if let (None, Some(home)) = (&plan.cwd, &home) {
            if rustix::process::fchdir(home).is_err() {
                return false;
            }
        }
        drop(request);
        let ended = supervisor::run(&plan);
        report(ended.status);
        if !ended.clean {
            return false;
        }
    }
}

/// Tells the server the command's wait status: four bytes on the status pipe. If it
/// cannot be written, the server is gone, or reads the pipe's end as the command killed.
fn report(status: i32) {
    // SAFETY: fd 4 is the status pipe, put in place by `place` and open until we exit.
    let pipe = unsafe { BorrowedFd::borrow_raw(STATUS_FD) };
    let _unreported = rustix::io::write(pipe, &status.to_le_bytes());
}

/// Copies descriptor `fd` to `target`, replacing whatever was there.
fn dup_to(fd: RawFd, target: RawFd) -> io::Result<()> {
    // SAFETY: dup2 touches no memory; every caller replaces one of this process's own
    // fixed descriptors (0-5), which nothing else in it holds an `OwnedFd` for.
    if unsafe { libc::dup2(fd, target) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Puts `fds` at 0, 1, 2, ... in order: first out of the way (a passed descriptor may sit
/// where another must go), then into place; the copies made on the way are closed.
fn place(fds: &[OwnedFd]) -> io::Result<()> {
    let high = fds
        .iter()
        .map(|fd| rustix::io::fcntl_dupfd_cloexec(fd, 10))
        .collect::<Result<Vec<OwnedFd>, _>>()?;
    for (target, fd) in high.iter().enumerate() {
        dup_to(fd.as_raw_fd(), target as RawFd)?;
    }
    Ok(())
}
