//! How the supervisor starts its command: in a process group of its own (with a terminal,
//! a session whose controlling terminal is its stdin), with every standard signal back to
//! its default and none blocked, and born in its cgroup where the server made one.
//!
//! Born there, not moved there. Moving a process into a cgroup (a write to
//! `cgroup.procs`) takes the kernel's `cgroup_threadgroup_rwsem` for writing, which waits
//! out an RCU grace period while every fork and exit on the machine waits behind it: about
//! 6 ms a command on an idle machine here, 10-30 ms under load, and commands from many
//! connections queue on the one lock. `clone3` with `CLONE_INTO_CGROUP` (Linux 5.7) makes
//! the child in its group and takes that lock only to read. Where `clone3` is refused (a
//! seccomp filter may answer ENOSYS, as container runtimes' default profiles did), the
//! supervisor enters the group just for the moment of a fork, so the command inherits it,
//! and leaves it again: it must not be in the group when the group is killed.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::sys::signal::{SigHandler, SigSet, Signal};
use rustix::fs::{Mode, OFlags};
use rustix::pipe::PipeFlags;
use rustix::process::{Pid, RawPid, WaitOptions};

use super::cgroup;
use super::supervisor::Plan;

/// Starts `plan`'s command as this process's child. Returns its pid, or why it could not
/// be run (its exec's error: a missing program is `NotFound`), and the cgroup it is in.
pub(super) fn start(plan: &Plan) -> (io::Result<RawPid>, Option<&Path>) {
    let launch = match Launch::new(plan) {
        Ok(launch) => launch,
        Err(e) => return (Err(e), None),
    };
    let Some(dir) = plan.cgroup.as_deref() else {
        return (launch.run(fork()), None);
    };
    let born_in = rustix::fs::open(
        dir,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io::Error::from)
    .and_then(|group| fork_into(group.as_fd()));
    if let Ok(forked) = born_in {
        return (launch.run(Ok(forked)), Some(dir));
    }
    // No clone3 here: in for the fork, out again. A group that cannot be entered is no
    // group of the command's.
    let entered = cgroup::enter(dir).is_ok();
    let started = launch.run(fork());
    // Stuck in the command's group, we leave the killing of it to the server.
    let cgroup = (entered && cgroup::leave(dir).is_ok()).then_some(dir);
    (started, cgroup)
}

/// Everything the child needs, made before the fork so the child only makes system calls.
struct Launch {
    argv: Vec<CString>,
    envp: Vec<CString>,
    tty: bool,
    /// The child writes its exec's errno here; a successful exec closes it unwritten.
    failed: (OwnedFd, OwnedFd),
}

impl Launch {
    fn new(plan: &Plan) -> io::Result<Launch> {
        let c = |s: Vec<u8>| {
            CString::new(s).map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in an argument")
            })
        };
        let argv = std::iter::once(plan.program.as_os_str())
            .chain(plan.args.iter().map(|a| a.as_os_str()))
            .map(|a| c(a.as_bytes().to_vec()))
            .collect::<io::Result<Vec<_>>>()?;
        let envp = plan
            .env
            .iter()
            .map(|(k, v)| c([k.as_bytes(), b"=", v.as_bytes()].concat()))
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Launch {
            argv,
            envp,
            tty: plan.tty,
            failed: rustix::pipe::pipe_with(PipeFlags::CLOEXEC)?,
        })
    }

    /// Both sides of the fork: the child becomes the command; the parent learns whether it
    /// did.
    fn run(self, forked: io::Result<Option<RawPid>>) -> io::Result<RawPid> {
        let pid = match forked? {
            None => self.become_command(),
            Some(pid) => pid,
        };
        let Launch { failed: (r, w), .. } = self;
        drop(w);
        let mut errno = [0u8; 4];
        let got = loop {
            match rustix::io::read(&r, &mut errno) {
                Err(rustix::io::Errno::INTR) => continue,
                other => break other.unwrap_or(0),
            }
        };
        if got < errno.len() {
            return Ok(pid);
        }
        // It never became the command: reap it here, and say why.
        if let Some(pid) = Pid::from_raw(pid) {
            // An error: it was reaped already, which is all this was for.
            let _reaped = rustix::process::waitpid(Some(pid), WaitOptions::empty());
        }
        Err(io::Error::from_raw_os_error(i32::from_ne_bytes(errno)))
    }

    /// In the child: what `posix_spawnp` with a new process group, default signals and an
    /// empty mask does, then the exec. Reports a failure on the pipe and exits 127.
    fn become_command(&self) -> ! {
        let Err(err) = self.exec();
        let errno = err
            .raw_os_error()
            .unwrap_or(rustix::io::Errno::INVAL.raw_os_error());
        // Unwritten, the parent reads the pipe's end and takes the command as started; it
        // then sees it exit with 127, the shell's code for a command that could not run.
        let _unreported = rustix::io::write(&self.failed.1, &errno.to_ne_bytes());
        // SAFETY: _exit ends this process at once, running no destructor or atexit handler
        // that belongs to the parent's copy of this state.
        unsafe { libc::_exit(127) }
    }

    fn exec(&self) -> io::Result<std::convert::Infallible> {
        // Every standard signal to its default: what the supervisor watches, SIGPIPE (Rust
        // ignores it), and whatever the server's own parent ignored (a shell ignores SIGINT
        // and SIGQUIT for a background job, nohup SIGHUP), or a Ctrl-C from the client
        // would do nothing.
        for sig in Signal::iterator().filter(|s| ![Signal::SIGKILL, Signal::SIGSTOP].contains(s)) {
            // SAFETY: SIG_DFL installs no handler, so no code of ours runs in a signal's
            // context.
            unsafe { nix::sys::signal::signal(sig, SigHandler::SigDfl) }?;
        }
        SigSet::empty().thread_set_mask()?;
        if self.tty {
            rustix::process::setsid()?;
            rustix::process::ioctl_tiocsctty(std::io::stdin())?;
        } else {
            rustix::process::setpgid(None, None)?;
        }
        Ok(nix::unistd::execvpe(&self.argv[0], &self.argv, &self.envp)?)
    }
}

/// Forks this (single-threaded) process: `None` in the child, the child's pid in the
/// parent.
fn fork() -> io::Result<Option<RawPid>> {
    // SAFETY: the supervisor is single-threaded, so the child is a whole copy of it in
    // which any code may run; it only execs or exits (`Launch::become_command`).
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => Ok(None),
        nix::unistd::ForkResult::Parent { child } => Ok(Some(child.as_raw())),
    }
}

/// `struct clone_args` of `clone3(2)`, as far as `cgroup` (Linux 5.7).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// `CLONE_INTO_CGROUP`, from `linux/sched.h`.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// [`fork`], the child born in the cgroup whose directory `group` is open on.
///
/// # Errors
/// `clone3`'s: no child was made.
fn fork_into(group: BorrowedFd<'_>) -> io::Result<Option<RawPid>> {
    let args = CloneArgs {
        flags: CLONE_INTO_CGROUP,
        exit_signal: Signal::SIGCHLD as u64,
        cgroup: group.as_raw_fd() as u64,
        ..CloneArgs::default()
    };
    // SAFETY: without CLONE_VM or a stack of its own, clone3 copies this process as fork
    // does, and the supervisor is single-threaded, so the child may run any code; it only
    // execs or exits. `args` lives across the call, and the size given is its own.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            std::ptr::from_ref(&args),
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(None),
        pid => Ok(Some(pid as RawPid)),
    }
}
