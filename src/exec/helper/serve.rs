//! The helper's loop: it reads requests from the server and forks a supervisor for each,
//! one ahead of need, and kills the orphans of a supervisor that was killed.

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::io::{fcntl_setfd, Errno, FdFlags};
use rustix::process::{wait, DumpableBehavior, RawPid, WaitOptions};

use super::child::become_supervisor;
use super::request::{decode, malformed, send_with_fds, Request};
use super::{REQUEST_FD, SPARE_PATIENCE};
use crate::exec::{supervisor, tree};

/// Runs the helper: reads requests on fd 3 until the server closes it, forking a
/// supervisor for each. Returns the process's exit code.
pub fn serve() -> i32 {
    // SAFETY: taking ownership of the descriptor the server gave us on fd 3.
    let sock = unsafe { OwnedFd::from_raw_fd(REQUEST_FD) };
    let children = match set_up(&sock) {
        Ok(children) => children,
        Err(e) => {
            eprintln!("rcmd supervise: {e}");
            return 1;
        }
    };
    let mut sock = UnixStream::from(sock);
    let mut family = Family::default();
    let mut spare = family.fork_spare();
    loop {
        let mut fds = [
            PollFd::new(&sock, PollFlags::IN),
            PollFd::new(&children, PollFlags::IN),
        ];
        match poll(&mut fds, None) {
            Ok(_) => {}
            Err(Errno::INTR) => continue,
            Err(e) => {
                eprintln!("rcmd supervise: {}", io::Error::from(e));
                return 1;
            }
        }
        let (requested, ended) = (!fds[0].revents().is_empty(), !fds[1].revents().is_empty());
        if ended {
            children.drain();
            family.reap();
        }
        if requested {
            match serve_one(&mut sock, &mut spare, &mut family) {
                Ok(true) => {}
                // The server closed its end: it is gone, and so are we.
                Ok(false) => return 0,
                Err(e) => {
                    eprintln!("rcmd supervise: {e}");
                    return 1;
                }
            }
        }
    }
}

/// Puts the helper's descriptors and process attributes in order, before any supervisor
/// is forked (each inherits them); returns the signalfd that reports ended children.
fn set_up(sock: &OwnedFd) -> io::Result<supervisor::SignalFd> {
    // SAFETY: close_range only closes descriptors, and nothing in this process uses those
    // above the request socket yet. Whatever the server let slip without close-on-exec (a
    // terminal a test opened, say) would be held open for as long as we live, and handed
    // to every supervisor we fork.
    if unsafe { libc::close_range(REQUEST_FD as u32 + 1, u32::MAX, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    fcntl_setfd(sock, FdFlags::CLOEXEC)?;
    let children = supervisor::SignalFd::new(&[nix::sys::signal::Signal::SIGCHLD])?;
    // Orphans of a supervisor that was killed (a command can SIGKILL its own) come to us
    // instead of to init, and die here: see `Family::reap`.
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))?;
    // Not dumpable: a command (the same user) cannot open our descriptors or read our
    // memory and environment through /proc, so it cannot reopen its supervisor's status
    // pipe to forge or hold back the status the server reports. A command gets its own
    // dumpable state back when it is exec'd.
    rustix::process::set_dumpable_behavior(DumpableBehavior::NotDumpable)?;
    // `ps` and `top` show the process name, which would be "exe" (/proc/self/exe).
    rustix::thread::set_name(c"rcmd")?;
    Ok(children)
}

/// The helper's children: the supervisors it forked, and whatever else became its child.
#[derive(Default)]
struct Family {
    /// Supervisors (and the spare) we forked and have not reaped.
    forked: HashSet<RawPid>,
    /// Some request let background processes outlive their command (`--allow-detach`).
    detaching: bool,
}

impl Family {
    fn fork_spare(&mut self) -> Option<Spare> {
        let spare = Spare::fork().ok()?;
        self.forked.insert(spare.pid);
        Some(spare)
    }

    /// Reaps every child that has ended. Then, unless detaching is allowed, kills every
    /// child we did not fork: a supervisor kills what its command left before it exits,
    /// so anything re-parented to us is the orphan of one that was killed, and nothing a
    /// command starts may outlive it. (A detaching server's orphans are left alone: they
    /// include the background processes it lets live on.)
    fn reap(&mut self) {
        // Only a supervisor that did not finish its work (killed, or failed to start) can
        // have left orphans: one that exited normally killed its command's leftovers first.
        if !self.reap_ended() || self.detaching {
            return;
        }
        let me = rustix::process::getpid();
        let deadline = std::time::Instant::now() + ORPHAN_DEADLINE;
        // Each round kills the orphans there are (their own children come to us in turn
        // and die in the next), then reaps: zombies never pile up, however fast they come.
        while tree::kill_children_except(me, &|pid| {
            self.forked.contains(&pid.as_raw_nonzero().get())
        }) > 0
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(1));
            self.reap_ended();
        }
    }

    /// Reaps what has ended; says whether a supervisor ended other than normally.
    fn reap_ended(&mut self) -> bool {
        let mut abnormal = false;
        // No child left (ECHILD) ends the round as no child ended does.
        while let Ok(Some((pid, status))) = wait(WaitOptions::NOHANG) {
            let normal = status.exit_status() == Some(0);
            abnormal |= self.forked.remove(&pid.as_raw_nonzero().get()) && !normal;
        }
        abnormal
    }
}

/// How long the helper keeps killing a killed supervisor's orphans as they appear.
const ORPHAN_DEADLINE: Duration = Duration::from_secs(5);

/// A supervisor forked ahead of need, waiting on `sock` for its request: the fork, the
/// costliest step of starting a command (about a millisecond on a virtual machine), then
/// happens while the previous command runs instead of before the next one. Dropping it
/// closes `sock`, which ends a spare still waiting.
struct Spare {
    pid: RawPid,
    pidfd: Option<OwnedFd>,
    sock: UnixStream,
}

impl Spare {
    /// Waits (at most [`SPARE_PATIENCE`]) for the spare to say it took its request.
    fn taken(&self) -> io::Result<()> {
        let mut fd = [PollFd::new(&self.sock, PollFlags::IN)];
        let patience = Timespec::try_from(SPARE_PATIENCE).expect("a few seconds fit");
        if poll(&mut fd, Some(&patience))? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the spare supervisor did not answer",
            ));
        }
        let mut byte = [0u8; 1];
        match (&self.sock).read(&mut byte)? {
            1 => Ok(()),
            _ => Err(io::ErrorKind::UnexpectedEof.into()),
        }
    }

    fn kill(&self) {
        if let Some(fd) = &self.pidfd {
            // An error means it has ended already.
            let _ended = tree::pidfd_kill(fd.as_fd());
        }
    }

    fn fork() -> io::Result<Spare> {
        let (ours, theirs) = UnixStream::pair()?;
        // SAFETY: this process is single-threaded, so the child may run any code.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 {
            drop(ours);
            wait_for_request(theirs);
        }
        // Not reaped before this: only this thread reaps, and not in between.
        let pidfd = rustix::process::Pid::from_raw(pid).and_then(|p| tree::pidfd_open(p).ok());
        Ok(Spare {
            pid,
            pidfd,
            sock: ours,
        })
    }
}

/// In a spare: waits for its one request and becomes that command's supervisor; leaves
/// quietly if the helper goes away first. Never returns.
fn wait_for_request(sock: UnixStream) -> ! {
    let raw = std::os::fd::IntoRawFd::into_raw_fd(sock);
    // SAFETY: this new process's own descriptors: ours goes to fd 3 (over the helper's
    // socket to the server, which is not ours to hold) and everything else is closed. The
    // helper's `OwnedFd`s copied into this process are never used or dropped again: it
    // ends in `_exit`. Raw: rustix wraps neither close_range nor a dup2 onto a number.
    // A spare that cannot put its descriptors in order leaves at once, as `set_up` does.
    unsafe {
        if raw != REQUEST_FD && libc::dup2(raw, REQUEST_FD) < 0 {
            libc::_exit(1);
        }
        if libc::close_range(REQUEST_FD as u32 + 1, u32::MAX, 0) < 0 {
            libc::_exit(1);
        }
    }
    // SAFETY: fd 3 is now ours alone.
    let mut sock = UnixStream::from(unsafe { OwnedFd::from_raw_fd(REQUEST_FD) });
    if let Ok(Some(request)) = Request::read(&mut sock, true) {
        if let Some(plan) = decode(&request.body) {
            // Taken: the helper may answer the server now.
            if sock.write_all(&[1]).is_ok() {
                drop(sock);
                become_supervisor(&request.fds, &plan);
            }
        }
    }
    // SAFETY: leaving without running anything of the helper's copied state.
    unsafe { libc::_exit(0) }
}

/// Reads and carries out one request. `Ok(false)`: the server closed the socket.
fn serve_one(
    sock: &mut UnixStream,
    spare: &mut Option<Spare>,
    family: &mut Family,
) -> io::Result<bool> {
    let Some(request) = Request::read(sock, true)? else {
        return Ok(false);
    };
    let plan = decode(&request.body).ok_or_else(malformed)?;
    family.detaching |= plan.detach;
    let mut handed = Err(io::Error::from(io::ErrorKind::BrokenPipe));
    // A spare that died meanwhile (someone killed it) is replaced once.
    for _ in 0..2 {
        let s = match spare.take().or_else(|| family.fork_spare()) {
            Some(s) => s,
            None => {
                handed = Err(io::Error::last_os_error());
                break;
            }
        };
        match request.send(&s.sock).and_then(|()| s.taken()) {
            Ok(()) => {
                handed = Ok(s);
                break;
            }
            Err(e) => {
                // Stopped or gone: make sure it never runs this request late.
                s.kill();
                handed = Err(e);
            }
        }
    }
    // Our copies must close, or the command's output would never reach its end.
    drop(request);
    let (answer, pidfd) = match handed {
        Ok(s) => (answer(s.pid, None), s.pidfd),
        Err(e) => (answer(-1, e.raw_os_error()), None),
    };
    let pass: Vec<BorrowedFd<'_>> = pidfd.iter().map(AsFd::as_fd).collect();
    send_with_fds(sock, &answer, &pass)?;
    // The next command's supervisor, forked while this one starts.
    *spare = family.fork_spare();
    Ok(true)
}

fn answer(pid: RawPid, errno: Option<i32>) -> [u8; 8] {
    let mut a = [0u8; 8];
    a[..4].copy_from_slice(&pid.to_le_bytes());
    a[4..].copy_from_slice(&errno.unwrap_or(0).to_le_bytes());
    a
}
