//! The child after fork: it puts the passed descriptors in place and becomes a supervisor,
//! for one command or for each of a connection's.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use super::request::{decode, Request};
use super::{PASSED, SERIAL_FD, STATUS_FD};
use crate::exec::supervisor::{self, Plan};

/// In the forked child: puts the passed descriptors at 0-4 (and a connection's socket at 5),
/// drops everything else of the helper's, and runs the supervisor: for one command, or,
/// with a connection's socket, for each command that comes on it. Never returns.
pub(super) fn become_supervisor(fds: &[OwnedFd], plan: &Plan) -> ! {
    let serial = fds.len() > PASSED;
    // SAFETY: rearranging this (new, single-threaded) process's own descriptors and
    // signal state before it becomes the supervisor.
    unsafe {
        let empty = supervisor::empty_sigset();
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        place(fds);
        let last = if serial { SERIAL_FD } else { STATUS_FD };
        libc::close_range(last as u32 + 1, u32::MAX, 0);
        // Never passed on to a command.
        libc::fcntl(STATUS_FD, libc::F_SETFD, libc::FD_CLOEXEC);
        libc::fcntl(SERIAL_FD, libc::F_SETFD, libc::FD_CLOEXEC);
        // Its own group, as the supervisor always had.
        libc::setpgid(0, 0);
    }
    let ended = supervisor::run(plan);
    report(ended.status);
    let clean = ended.clean && (!serial || serve_connection());
    // SAFETY: leaving at once: the helper's state copied into this process (its socket's
    // buffers) must not be flushed. A supervisor that could not kill everything exits
    // with 1, so the helper, which its orphans come to, kills them.
    unsafe { libc::_exit(i32::from(!clean)) }
}

/// A connection's supervisor between commands: runs each request that arrives on
/// [`SERIAL_FD`] as the first one was run; returns when the server closes it (or sends
/// what it never sends: a request to detach, a terminal, or more descriptors), or when
/// a command left something it could not kill (`false`: the supervisor is not clean).
fn serve_connection() -> bool {
    // Where commands without a directory of their own run: where the first one started.
    // SAFETY: opening a descriptor of our own; O_CLOEXEC keeps it from every command.
    let home = unsafe { libc::open(c".".as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
    // SAFETY: fd 5 is the connection's socket, ours alone.
    let mut sock = UnixStream::from(unsafe { OwnedFd::from_raw_fd(SERIAL_FD) });
    loop {
        // The last command's ends are ours no longer: its status and control pipes close
        // here, so the server sees them end, and its stdio (if it never started) goes.
        // /dev/null takes their places, so the next request's descriptors arrive above
        // them, not where they must go.
        supervisor::release_stdio();
        // SAFETY: replacing our own descriptors with copies of stdin, now /dev/null.
        unsafe {
            libc::dup2(0, supervisor::CONTROL_FD);
            libc::dup2(0, STATUS_FD);
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
        // SAFETY: as in `become_supervisor`; `request.fds` close when it is dropped.
        unsafe {
            place(&request.fds);
            libc::fcntl(STATUS_FD, libc::F_SETFD, libc::FD_CLOEXEC);
            if plan.cwd.is_none() && home >= 0 {
                libc::fchdir(home);
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

/// Tells the server the command's wait status: four bytes on the status pipe.
fn report(status: libc::c_int) {
    let bytes = status.to_le_bytes();
    // SAFETY: writing a local buffer to our own descriptor.
    unsafe { libc::write(STATUS_FD, bytes.as_ptr().cast(), bytes.len()) };
}

/// Puts `fds` at 0, 1, 2, ... in order: first out of the way (a passed descriptor may sit
/// where another must go), then into place; the copies made on the way are closed.
///
/// # Safety
/// Replaces this process's descriptors 0 to `fds.len() - 1`: nothing else may be using
/// them.
unsafe fn place(fds: &[OwnedFd]) {
    let high: Vec<RawFd> = fds
        .iter()
        .map(|fd| libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10))
        .collect();
    for (target, &fd) in high.iter().enumerate() {
        if fd < 0 || libc::dup2(fd, target as RawFd) < 0 {
            libc::_exit(126);
        }
    }
    for fd in high {
        libc::close(fd);
    }
}
