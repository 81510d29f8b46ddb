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

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use rustix::process::Pid;

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
    // SAFETY: plain system calls on this process's own state; no memory is shared.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        // The command must not inherit the control pipe.
        libc::fcntl(CONTROL_FD, libc::F_SETFD, libc::FD_CLOEXEC);
    }
    let signals = match SignalFd::new(&WATCHED) {
        Ok(s) => s,
        Err(e) => return Ended::clean(report_failure(&plan.program, &e)),
    };
    // The supervisor takes on the command's directory and environment itself, so the
    // command inherits them: std starts a command given a directory or a PATH of its own
    // by fork and exec, and one that inherits both by the cheaper posix_spawn. (This
    // process is single-threaded, so changing its environment is safe.)
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
    // The command starts in its cgroup by inheriting it from us, there for the moment
    // it takes to start it: we must not be in it when it is killed.
    let cgroup = plan
        .cgroup
        .as_deref()
        .filter(|dir| cgroup::enter(dir).is_ok());
    let started = if plan.tty {
        spawn_in_terminal(plan)
    } else {
        spawn_in_group(&plan.program, &plan.args)
    };
    // Stuck in the command's group, we leave the killing of it to the server.
    let cgroup = cgroup.filter(|dir| cgroup::leave(dir).is_ok());
    let pid = match started {
        Ok(pid) => pid,
        Err(e) => return Ended::clean(report_failure(&plan.program, &e)),
    };
    // Our copies of the command's stdin, stdout and stderr would keep its pipes open after
    // the command is gone: the server sees the end of output only when all copies close.
    release_stdio();
    let mut sup = Supervisor {
        child: pid,
        status: None,
        clean: true,
        cgroup,
    };
    sup.watch(&signals, plan.detach)
}

/// Starts the command in a session of its own with the terminal on its stdin as its
/// controlling terminal, and every signal unblocked.
fn spawn_in_terminal(plan: &Plan) -> io::Result<libc::pid_t> {
    let mut cmd = Command::new(&plan.program);
    cmd.args(&plan.args);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let empty = empty_sigset();
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(cmd.spawn()?.id() as libc::pid_t)
}

/// Starts `program` (searched in `PATH`) in a process group of its own with
/// `posix_spawnp`, which costs less than a fork, with the signal mask emptied and every
/// standard signal back to its default (Rust programs ignore SIGPIPE, for one).
/// std's own posix_spawn path passes the supervisor's blocked signals on to the command,
/// which then could not be interrupted or terminated.
fn spawn_in_group(program: &OsStr, args: &[OsString]) -> io::Result<libc::pid_t> {
    extern "C" {
        static environ: *const *mut libc::c_char;
    }
    let c = |s: &OsStr| {
        CString::new(s.as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in an argument"))
    };
    let mut owned = vec![c(program)?];
    for a in args {
        owned.push(c(a)?);
    }
    let mut argv: Vec<*mut libc::c_char> = owned.iter().map(|s| s.as_ptr().cast_mut()).collect();
    argv.push(std::ptr::null_mut());
    // SAFETY: the attribute object is initialised before use and destroyed after; argv
    // points into `owned`, which outlives the call, and ends with a null pointer;
    // `environ` is this (single-threaded) process's environment.
    unsafe {
        let mut attr: libc::posix_spawnattr_t = std::mem::zeroed();
        libc::posix_spawnattr_init(&mut attr);
        let empty = empty_sigset();
        libc::posix_spawnattr_setsigmask(&mut attr, &empty);
        // Every standard signal to its default: what we watch, SIGPIPE, and whatever the
        // server's own parent had ignored (a shell ignores SIGINT and SIGQUIT for a
        // background job, nohup SIGHUP), or a Ctrl-C from the client would do nothing.
        let mut defaults = empty_sigset();
        for sig in 1..32 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::sigaddset(&mut defaults, sig);
            }
        }
        libc::posix_spawnattr_setsigdefault(&mut attr, &defaults);
        libc::posix_spawnattr_setpgroup(&mut attr, 0);
        let flags = libc::POSIX_SPAWN_SETSIGMASK
            | libc::POSIX_SPAWN_SETSIGDEF
            | libc::POSIX_SPAWN_SETPGROUP;
        libc::posix_spawnattr_setflags(&mut attr, flags as libc::c_short);
        let mut pid = 0;
        let r = libc::posix_spawnp(
            &mut pid,
            owned[0].as_ptr(),
            std::ptr::null(),
            &attr,
            argv.as_ptr(),
            environ,
        );
        libc::posix_spawnattr_destroy(&mut attr);
        if r != 0 {
            return Err(io::Error::from_raw_os_error(r));
        }
        Ok(pid)
    }
}

/// How a supervised command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    /// The command's raw wait status.
    pub status: libc::c_int,
    /// Everything it started is gone: nothing outlived a kill's deadline.
    pub clean: bool,
}

impl Ended {
    fn clean(status: libc::c_int) -> Ended {
        Ended {
            status,
            clean: true,
        }
    }
}

struct Supervisor<'a> {
    child: libc::pid_t,
    /// The command's cgroup, which we are not in: killing it ends the command's tree.
    cgroup: Option<&'a std::path::Path>,
    /// The command's wait status, once reaped.
    status: Option<libc::c_int>,
    /// Every kill so far left nothing behind.
    clean: bool,
}

impl Supervisor<'_> {
    /// Waits for the command, obeying the control pipe and termination signals meanwhile;
    /// returns its wait status once it ended and (unless detaching) its descendants are gone.
    fn watch(&mut self, signals: &SignalFd, detach: bool) -> Ended {
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
                libc::pollfd {
                    fd: if control_open { CONTROL_FD } else { -1 },
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: signals.fd,
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: `fds` is a valid array of two pollfd.
            if unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) } < 0 {
                continue; // EINTR
            }
            if fds[1].revents != 0 {
                for sig in signals.drain() {
                    if sig != libc::SIGCHLD {
                        // Someone asked the supervisor itself to stop: take the tree down.
                        self.kill_descendants();
                    }
                }
                self.reap();
            }
            if fds[0].revents != 0 {
                let mut buf = [0u8; 64];
                // SAFETY: reading into a local buffer of the given length.
                let n = unsafe { libc::read(CONTROL_FD, buf.as_mut_ptr().cast(), buf.len()) };
                if n <= 0 {
                    // The server let go of the command, or died: nothing may outlive that.
                    control_open = false;
                    self.kill_descendants();
                } else {
                    for &b in &buf[..n as usize] {
                        if b == KILL {
                            self.kill_descendants();
                        } else {
                            self.forward(libc::c_int::from(b));
                        }
                    }
                }
            }
        }
    }

    /// Sends `sig` to the command's process group (its session's group with a terminal).
    fn forward(&self, sig: libc::c_int) {
        if self.status.is_none() {
            // SAFETY: killpg has no memory-safety preconditions. The group leader is our
            // unreaped child, so its id cannot have been reused.
            unsafe {
                libc::killpg(self.child, sig);
            }
        }
    }

    /// Reaps every child that has ended, noting the command's own status.
    fn reap(&mut self) {
        loop {
            let mut status = 0;
            // SAFETY: waitpid writes the status into a local.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                return;
            }
            if pid == self.child {
                self.status = Some(status);
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
fn report_failure(program: &OsString, e: &io::Error) -> libc::c_int {
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
pub(super) fn release_stdio() {
    // SAFETY: opening /dev/null and duplicating it over our own descriptors 0-2.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            for fd in 0..3 {
                libc::dup2(null, fd);
            }
            if null > 2 {
                libc::close(null);
            }
        }
    }
}

pub(super) fn empty_sigset() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set it is given.
    unsafe {
        let mut set = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        set
    }
}

/// The signals the supervisor waits for, blocked and read from a descriptor instead of
/// handled asynchronously.
pub(super) struct SignalFd {
    pub(super) fd: RawFd,
}

const WATCHED: [libc::c_int; 6] = [
    libc::SIGCHLD,
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGPIPE,
];

impl SignalFd {
    pub(super) fn new(watched: &[libc::c_int]) -> io::Result<SignalFd> {
        // SAFETY: building a signal set and blocking it for this (single-threaded) process.
        unsafe {
            let mut set = empty_sigset();
            for &sig in watched {
                libc::sigaddset(&mut set, sig);
            }
            libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(SignalFd { fd })
        }
    }

    /// The signals delivered since the last call.
    pub(super) fn drain(&self) -> Vec<libc::c_int> {
        let mut got = Vec::new();
        loop {
            // SAFETY: signalfd_siginfo is plain data; read fills at most its size.
            let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
            let size = std::mem::size_of::<libc::signalfd_siginfo>();
            let n = unsafe {
                libc::read(
                    self.fd,
                    (&mut info as *mut libc::signalfd_siginfo).cast(),
                    size,
                )
            };
            if n != size as isize {
                return got;
            }
            got.push(info.ssi_signo as libc::c_int);
        }
    }
}

impl Drop for SignalFd {
    fn drop(&mut self) {
        // SAFETY: closing the descriptor this value owns. (A connection's supervisor makes
        // one per command.)
        unsafe {
            libc::close(self.fd);
        }
    }
}
