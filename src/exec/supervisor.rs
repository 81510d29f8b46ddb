//! The supervisor: a small process between the server and every command it runs, so that
//! nothing the command starts outlives it.
//!
//! A process group is not enough: `setsid`, a double fork or `setpgid` each leave it, and
//! a SIGKILLed server can signal nobody. So the server runs each command under a
//! supervisor (forked for it by the server's helper, see [`super::helper`]), which
//!
//! - marks itself a *child subreaper* (`PR_SET_CHILD_SUBREAPER`): every orphan the command
//!   leaves, however it detached, is re-parented to the supervisor instead of to init, so
//!   the supervisor can always find it again through `/proc`;
//! - starts the command in its own process group (or, with a terminal, its own session);
//! - reads a *control pipe* (fd 3) whose other end only the server holds: a byte `N > 0`
//!   forwards signal `N` to the command's group, a `0` byte or end of file (the server let go
//!   of the command, or died in any way, SIGKILL included, since the kernel closes its file
//!   descriptors) kills every descendant;
//! - when the command itself ends, kills every descendant still alive (unless detaching),
//!   then tells the server the command's own status through its status pipe, and either
//!   exits or, as a connection's supervisor, waits for the connection's next command (see
//!   [`super::helper`]).
//!
//! It is synchronous and single-threaded: it runs in a fresh process, waits in `poll(2)` on
//! the control pipe and a `signalfd`, and does nothing else.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, RawFd};

use nix::sys::signal::{SigSet, Signal};
use rustix::event::{poll, PollFd, PollFlags};
use rustix::fs::{Mode, OFlags};
use rustix::io::{fcntl_setfd, FdFlags};
use rustix::process::{wait, WaitOptions};
use std::path::PathBuf;
use std::time::Duration;

use rustix::process::{Pid, RawPid};

use super::{cgroup, tree};

/// The descriptor on which the supervisor reads its control pipe.
pub const CONTROL_FD: RawFd = 3;
/// A control byte meaning "kill everything now".
pub const KILL: u8 = 0;
/// How long the supervisor keeps killing descendants that are still appearing (a process
/// forking as fast as it can) before it gives up and exits.
const KILL_DEADLINE: Duration = Duration::from_secs(5);

/// What the supervisor runs, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Let background processes live on when the command ends (`--allow-detach`). They are
    /// still killed when the client leaves, on a timeout, or when the server stops.
    pub detach: bool,
    /// The command's stdin is a terminal: start it in a session of its own with that
    /// terminal as its controlling terminal.
    pub tty: bool,
    pub program: OsString,
    pub args: Vec<OsString>,
    /// The command's whole environment.
    pub env: Vec<(OsString, OsString)>,
    /// Where the command runs; `None`: where the supervisor runs.
    pub cwd: Option<PathBuf>,
    /// The command's own cgroup (see [`super::cgroup`]), if the server made one.
    pub cgroup: Option<PathBuf>,
}

/// Runs `plan` under supervision, with the command's stdin, stdout and stderr at 0-2 and
/// the control pipe at [`CONTROL_FD`]. Returns the command's raw wait status once it (and,
/// unless detaching, everything it started) is gone; a command that could not start is
/// reported on stderr and ends with the shell's code for that.
pub fn run(plan: &Plan) -> Ended {
    // SAFETY: the helper put the control pipe at CONTROL_FD before calling us, and nothing
    // in this process closes it while the supervisor lives.
    let control = unsafe { BorrowedFd::borrow_raw(CONTROL_FD) };
    let set_up = || -> io::Result<SignalFd> {
        rustix::process::set_child_subreaper(Some(rustix::process::getpid()))?;
        // The command must not inherit the control pipe.
        fcntl_setfd(control, FdFlags::CLOEXEC)?;
        SignalFd::new(&WATCHED)
    };
    let signals = match set_up() {
        Ok(s) => s,
        Err(e) => return Ended::clean(report_failure(&plan.program, &e)),
    };
    // The supervisor takes on the command's directory and environment itself, so the
    // command inherits them and its child after the fork only execs (see super::start),
    // with the PATH search done on the command's own PATH. (This process is
    // single-threaded, so changing its environment is safe.)
    if let Some(dir) = &plan.cwd {
        if let Err(e) = std::env::set_current_dir(dir) {
            let dir = crate::printable::printable(dir.as_os_str().as_encoded_bytes());
            eprintln!("rcmd: cd {dir}: {e}");
            return Ended::clean(1 << 8);
        }
    }
    for (name, _) in std::env::vars_os() {
        std::env::remove_var(name);
    }
    for (name, value) in &plan.env {
        std::env::set_var(name, value);
    }
    let (started, cgroup) = super::start::start(plan);
    let pid = match started {
        Ok(pid) => pid,
        Err(e) => return Ended::clean(report_failure(&plan.program, &e)),
    };
    // Our copies of the command's stdin, stdout and stderr would keep its pipes open after
    // the command is gone: the server sees the end of output only when all copies close.
    if let Err(e) = release_stdio() {
        eprintln!("rcmd: cannot let go of the command's output: {e}");
    }
    let mut sup = Supervisor {
        child: pid,
        status: None,
        clean: true,
        cgroup,
    };
    sup.watch(control, &signals, plan.detach)
}

/// How a supervised command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    /// The command's raw wait status.
    pub status: i32,
    /// Everything it started is gone: nothing outlived a kill's deadline.
    pub clean: bool,
}

impl Ended {
    fn clean(status: i32) -> Ended {
        Ended {
            status,
            clean: true,
        }
    }
}

struct Supervisor<'a> {
    child: RawPid,
    /// The command's cgroup, which we are not in: killing it ends the command's tree.
    cgroup: Option<&'a std::path::Path>,
    /// The command's wait status, once reaped.
    status: Option<i32>,
    /// Every kill so far left nothing behind.
    clean: bool,
}

impl Supervisor<'_> {
    /// Waits for the command, obeying the control pipe and termination signals meanwhile;
    /// returns its wait status once it ended and (unless detaching) its descendants are gone.
    fn watch(&mut self, control: BorrowedFd<'_>, signals: &SignalFd, detach: bool) -> Ended {
        let mut control_open = true;
        loop {
            if let Some(status) = self.status {
                if !detach {
                    self.kill_descendants();
                }
                return Ended {
                    status,
                    clean: self.clean,
                };
            }
            let mut fds = [
                PollFd::new(signals, PollFlags::IN),
                PollFd::new(&control, PollFlags::IN),
            ];
            // A closed control pipe is no longer watched.
            let watched = if control_open { 2 } else { 1 };
            if poll(&mut fds[..watched], None).is_err() {
                continue; // EINTR
            }
            let signalled = !fds[0].revents().is_empty();
            let commanded = control_open && !fds[1].revents().is_empty();
            if signalled {
                for sig in signals.drain() {
                    if sig != Signal::SIGCHLD as i32 {
                        // Someone asked the supervisor itself to stop: take the tree down.
                        self.kill_descendants();
                    }
                }
                self.reap();
            }
            if commanded {
                let mut buf = [0u8; 64];
                let n = rustix::io::read(control, &mut buf).unwrap_or(0);
                if n == 0 {
                    // The server let go of the command, or died: nothing may outlive that.
                    control_open = false;
                    self.kill_descendants();
                } else {
                    for &b in &buf[..n] {
                        if b == KILL {
                            self.kill_descendants();
                        } else {
                            self.forward(i32::from(b));
                        }
                    }
                }
            }
        }
    }

    /// Sends `sig` to the command's process group (its session's group with a terminal).
    fn forward(&self, sig: i32) {
        // The group leader is our unreaped child, so its id cannot have been reused.
        let (Some(group), Some(sig)) = (
            Pid::from_raw(self.child),
            rustix::process::Signal::from_named_raw(sig),
        ) else {
            return;
        };
        if self.status.is_none() {
            // An error means the group has no member left: nothing to deliver to.
            let _gone = rustix::process::kill_process_group(group, sig);
        }
    }

    /// Reaps every child that has ended, noting the command's own status.
    fn reap(&mut self) {
        // No child left (ECHILD) ends the round as no child ended does.
        while let Ok(Some((pid, status))) = wait(WaitOptions::NOHANG) {
            if pid.as_raw_nonzero().get() == self.child {
                self.status = Some(status.as_raw());
            }
        }
    }

    /// SIGKILLs every descendant until none is left (or the deadline passes), reaping
    /// our own children as they die; notes in `clean` when something may be left.
    fn kill_descendants(&mut self) {
        self.reap();
        if self.status.is_some() && !tree::has_children() {
            // The usual end: the command is reaped and we have no child left. Every live
            // descendant would be our child by now (an orphan comes to us, the subreaper),
            // so there is nothing to kill.
            return;
        }
        // Every process the command started, wherever it went, dies at once; the walk
        // below then only reaps them. A group that cannot be killed is not tried again.
        self.cgroup = self.cgroup.filter(|dir| cgroup::kill(dir).is_ok());
        let me = rustix::process::getpid();
        // The command's own group first and every round: its members die at once, even
        // ones that fork and exit faster than a walk of the tree can see them.
        let group = Pid::from_raw(self.child);
        let gone = tree::kill_tree(me, group.as_slice(), KILL_DEADLINE, &mut || {
            self.reap();
            // We are the subreaper: while we have no child, nothing is left anywhere.
            tree::has_children()
        });
        self.clean &= gone;
    }
}

/// Reports a command that could not be started, in the shell's words and codes.
fn report_failure(program: &OsString, e: &io::Error) -> i32 {
    let (code, why) = match e.kind() {
        io::ErrorKind::NotFound => (127, "command not found".to_string()),
        io::ErrorKind::PermissionDenied => (126, "permission denied".to_string()),
        _ => (126, e.to_string()),
    };
    let program = crate::printable::printable(program.as_encoded_bytes());
    eprintln!("rcmd: {program}: {why}");
    // As a wait status: exited with `code`.
    code << 8
}

/// Points stdin, stdout and stderr at /dev/null.
///
/// # Errors
/// If /dev/null cannot be opened or put in their places.
pub(super) fn release_stdio() -> io::Result<()> {
    let null = rustix::fs::open(c"/dev/null", OFlags::RDWR, Mode::empty())?;
    rustix::stdio::dup2_stdin(&null)?;
    rustix::stdio::dup2_stdout(&null)?;
    rustix::stdio::dup2_stderr(&null)?;
    if null.as_raw_fd() <= 2 {
        // It landed on one of 0-2 itself (that one was closed): it stays there.
        let _kept = null.into_raw_fd();
    }
    Ok(())
}

/// The signals the supervisor waits for, blocked and read from a descriptor instead of
/// handled asynchronously.
pub(super) struct SignalFd(nix::sys::signalfd::SignalFd);

const WATCHED: [Signal; 6] = [
    Signal::SIGCHLD,
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGPIPE,
];

impl SignalFd {
    /// Blocks `watched` in this (single-threaded) process and reads them from a descriptor.
    pub(super) fn new(watched: &[Signal]) -> io::Result<SignalFd> {
        use nix::sys::signalfd::SfdFlags;
        let set: SigSet = watched.iter().copied().collect();
        set.thread_block()?;
        let flags = SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK;
        Ok(SignalFd(nix::sys::signalfd::SignalFd::with_flags(
            &set, flags,
        )?))
    }

    /// The signals delivered since the last call.
    pub(super) fn drain(&self) -> Vec<i32> {
        let mut got = Vec::new();
        while let Ok(Some(info)) = self.0.read_signal() {
            got.push(info.ssi_signo as i32);
        }
        got
    }
}

impl AsFd for SignalFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}
