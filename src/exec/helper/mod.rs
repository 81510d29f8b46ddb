//! Starting supervisors by fork alone: one helper process per server forks a supervisor
//! for every command, so a command costs one process start, as it would from a shell.
//!
//! Every command runs under its own [`supervisor`](super::supervisor). Starting that
//! supervisor with `exec` (`rcmd supervise -- CMD`) made every command cost two process
//! starts, the rcmd binary's and the command's, and tripled the time of a batch of short
//! commands. A multi-threaded server cannot simply fork and run Rust code in the child
//! either. So the server starts one small, single-threaded helper (`rcmd supervise`,
//! reading requests on fd 3) the first time it runs a command, and asks it for each
//! supervisor: the request carries the plan and, as `SCM_RIGHTS`, the command's stdin,
//! stdout and stderr, the supervisor's control pipe and a status pipe. The helper forks;
//! the child puts those descriptors in place and becomes the supervisor, a fresh copy of a
//! single-threaded process where anything is safe. The helper answers with the
//! supervisor's pid and a pidfd for it.
//!
//! The supervisor is the helper's child, not the server's, so the server learns how the
//! command ended from the status pipe (four bytes, the raw wait status, written just before
//! the supervisor exits) and signals the supervisor through its pidfd, which cannot reach
//! another process that reused the pid. The helper ends when the server's end of its
//! socket closes, which the kernel does when the server dies in any way; a helper that
//! stops answering is killed and replaced.
//!
//! A connection runs its commands one at a time, so its first command's supervisor stays
//! for the rest ([`Serial`]): the request that starts it carries one more descriptor, a
//! socket on which the server sends it each later command directly, without a fork or a
//! round trip through the helper. Between commands it holds nothing of theirs.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::cgroup::{Cgroups, Group};
use super::supervisor::Plan;
use super::tree;

mod child;
mod request;
mod serve;

use request::{encode, recv_with_fds, send_with_fds};
pub use serve::serve;

/// The descriptor on which the helper reads requests.
const REQUEST_FD: RawFd = 3;
/// The descriptor on which a supervisor writes the command's wait status.
pub const STATUS_FD: RawFd = 4;
/// Descriptors sent with each request, in order: stdin, stdout, stderr, control, status.
pub(super) const PASSED: usize = 5;
/// Where a supervisor kept for a connection's later commands reads them (see [`Serial`]):
/// a sixth descriptor in the request that starts it.
const SERIAL_FD: RawFd = 5;
/// A request larger than this is refused (a command line and environment are far smaller;
/// the server checks both long before).
const MAX_REQUEST: usize = 64 << 20;
/// How long the server waits on the helper before replacing it: it answers in well under a
/// millisecond unless it was stopped, or is replacing a spare that was (which takes
/// [`SPARE_PATIENCE`]). The wait blocks the task that starts a command, so it is short.
const HELPER_PATIENCE: Duration = Duration::from_secs(3);
/// How long the helper waits for a spare to take a request before replacing it (a spare
/// that was stopped would otherwise hold the command forever).
const SPARE_PATIENCE: Duration = Duration::from_secs(1);

/// Starts the supervisors of one server's commands through its helper.
#[derive(Clone)]
pub struct Spawner {
    exe: PathBuf,
    helper: Arc<Mutex<Option<Helper>>>,
    /// Where each command gets a cgroup of its own, or why it cannot.
    cgroups: Result<Cgroups, String>,
    /// The soft limit on open files the helper (and so every command) gets, where the
    /// server raised its own (see [`super::fd_limit`]).
    command_nofile: Option<u64>,
}

impl std::fmt::Debug for Spawner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spawner")
            .field("exe", &self.exe)
            .field("cgroups", &self.cgroups)
            .finish()
    }
}

/// A supervisor the helper started: its pid, a pidfd for it, and our end of its status
/// pipe.
#[derive(Debug)]
pub(super) struct Started {
    pub pid: libc::pid_t,
    pub pidfd: Option<OwnedFd>,
}

impl Spawner {
    /// A spawner whose helper is `exe supervise` (started on first use), and which runs
    /// each command in a cgroup of its own where a cgroup v2 hierarchy is writable (see
    /// [`super::cgroup`]).
    pub fn new(exe: impl Into<PathBuf>) -> Spawner {
        Spawner {
            cgroups: Cgroups::create().map_err(|e| e.to_string()),
            ..Spawner::supervisor_only(exe)
        }
    }

    /// As [`new`](Self::new), but never with a cgroup: the supervisor alone contains.
    pub fn supervisor_only(exe: impl Into<PathBuf>) -> Spawner {
        Spawner {
            exe: exe.into(),
            helper: Arc::new(Mutex::new(None)),
            cgroups: Err("not asked for".to_string()),
            command_nofile: None,
        }
    }

    /// Starts the helper, and so every supervisor and command, with a soft limit of
    /// `soft` open files: the limit the server started with, before
    /// [`fd_limit::raise`](super::fd_limit::raise) raised its own.
    pub fn command_nofile(mut self, soft: Option<u64>) -> Spawner {
        self.command_nofile = soft;
        self
    }

    /// The directory this server's commands' cgroups are made in, if it has one.
    pub fn cgroup_dir(&self) -> Option<&std::path::Path> {
        self.cgroups.as_ref().ok().map(Cgroups::dir)
    }

    /// Which containment this server uses, in a few words for its startup banner.
    pub fn containment(&self) -> String {
        match &self.cgroups {
            Ok(c) => format!("a cgroup per command, in {}", c.dir().display()),
            Err(why) => format!("a supervisor per command (no cgroup: {why})"),
        }
    }

    /// A new cgroup for one command, where this server has them.
    pub(super) fn command_group(&self) -> Option<Group> {
        match self.cgroups.as_ref().ok()?.command() {
            Ok(g) => Some(g),
            Err(e) => {
                tracing::warn!("no cgroup for a command, its supervisor alone contains it: {e}");
                None
            }
        }
    }

    /// Has the helper start a supervisor for `plan` with the descriptors `fds` (stdin,
    /// stdout, stderr, control read end, status write end). A helper that fails to answer
    /// is replaced once.
    ///
    /// # Errors
    /// The helper could not be started or reached, or could not fork.
    pub(super) fn start(&self, plan: &Plan, fds: &[BorrowedFd<'_>]) -> io::Result<Started> {
        let request = encode(plan);
        let mut helper = self.helper.lock().unwrap_or_else(PoisonError::into_inner);
        let mut last = None;
        for _ in 0..2 {
            if helper.is_none() {
                *helper = Some(Helper::start(&self.exe, self.command_nofile)?);
            }
            let h = helper.as_mut().expect("started above");
            match h.ask(&request, fds) {
                Ok(answer) => return answer,
                // The helper is gone or stuck: a new one, and one more try.
                Err(e) => {
                    *helper = None;
                    last = Some(e);
                }
            }
        }
        Err(last.expect("tried twice"))
    }

    /// As [`start`](Self::start), through the connection's supervisor in `slot` when it
    /// has one: a request to it costs no fork and no round trip through the helper.
    /// Otherwise the helper starts a supervisor that stays for the connection's later
    /// commands. Returns that supervisor, to be put back into `slot` once the command has
    /// ended cleanly; `None` if it cannot serve another (no pidfd to watch it by).
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub(super) fn start_in(
        &self,
        slot: &ConnectionSupervisor,
        plan: &Plan,
        fds: [BorrowedFd<'_>; PASSED],
    ) -> io::Result<(Started, Option<Serial>)> {
        if let Some(serial) = slot.take() {
            // One that died or stopped reading meanwhile is dropped, and a new one started.
            if let Ok(started) = serial.send(plan, fds) {
                return Ok((started, Some(serial)));
            }
        }
        let (ours, theirs) = UnixStream::pair()?;
        let [i, o, e, c, st] = fds;
        let started = self.start(plan, &[i, o, e, c, st, theirs.as_fd()])?;
        drop(theirs);
        let serial = match &started.pidfd {
            Some(pidfd) => {
                ours.set_write_timeout(Some(HELPER_PATIENCE))?;
                Some(Serial {
                    sock: ours,
                    pid: started.pid,
                    pidfd: pidfd.try_clone()?,
                })
            }
            None => None,
        };
        Ok((started, serial))
    }
}

/// The supervisor kept for one connection's commands, which run one at a time: after a
/// command it waits on `sock` for the next (or exits when `sock` closes), instead of
/// exiting and being replaced by a fork for every command.
///
/// Only commands that leave nothing behind by design are run this way (not with
/// `--allow-detach`, whose background processes a later command's clean-up would kill,
/// and not on a terminal). The supervisor is handed back only after a command
/// ended cleanly: one that was killed, stopped or timed out waiting is dropped, and with
/// it `sock`, so it exits once it is done.
#[derive(Debug)]
pub(super) struct Serial {
    sock: UnixStream,
    pid: libc::pid_t,
    pidfd: OwnedFd,
}

impl Serial {
    /// Sends the next command; the supervisor is idle, waiting for it, so this does not
    /// wait beyond its write timeout.
    fn send(&self, plan: &Plan, fds: [BorrowedFd<'_>; PASSED]) -> io::Result<Started> {
        if tree::has_ended(self.pidfd.as_fd()) {
            return Err(io::ErrorKind::NotConnected.into());
        }
        let request = encode(plan);
        let len = u32::try_from(request.len()).map_err(|_| io::ErrorKind::InvalidInput)?;
        send_with_fds(&self.sock, &len.to_le_bytes(), &fds)?;
        (&self.sock).write_all(&request)?;
        Ok(Started {
            pid: self.pid,
            pidfd: Some(self.pidfd.try_clone()?),
        })
    }
}

/// One connection's place for its [`Serial`] supervisor, empty while a command runs.
#[derive(Debug, Clone, Default)]
pub struct ConnectionSupervisor(Arc<Mutex<Option<Serial>>>);

impl ConnectionSupervisor {
    fn take(&self) -> Option<Serial> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    /// Keeps `serial` for the next command.
    pub(super) fn put(&self, serial: Serial) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(serial);
    }
}

/// The helper process and our end of its socket.
struct Helper {
    sock: UnixStream,
    child: std::process::Child,
}

impl Helper {
    fn start(exe: &std::path::Path, nofile: Option<u64>) -> io::Result<Helper> {
        let (ours, theirs) = UnixStream::pair()?;
        let theirs_fd = theirs.as_raw_fd();
        let mut cmd = std::process::Command::new(exe);
        // The helper passes its environment to no command (each plan carries its own), but
        // its /proc entry would still show it: keep the server's secrets out of it.
        for name in super::launch::PRIVATE_ENV {
            cmd.env_remove(name);
        }
        // Named as people know it in `ps`, whatever path started it (/proc/self/exe).
        cmd.arg0("rcmd")
            .arg("supervise")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            // A Ctrl-C meant for the server must not reach the helper or its supervisors.
            .process_group(0);
        // SAFETY: only async-signal-safe calls between fork and exec (dup2, and the
        // getrlimit and setrlimit system calls).
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(theirs_fd, REQUEST_FD) < 0 {
                    return Err(io::Error::last_os_error());
                }
                // The helper holds a few descriptors at a time, whatever the load, so
                // it can take the commands' limit itself: all it forks inherit it.
                if let Some(soft) = nofile {
                    super::fd_limit::lower_to(soft)?;
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        drop(theirs);
        ours.set_read_timeout(Some(HELPER_PATIENCE))?;
        ours.set_write_timeout(Some(HELPER_PATIENCE))?;
        Ok(Helper { sock: ours, child })
    }

    /// Sends one request and reads the answer. The outer error is the helper's failure
    /// (replace it); the inner one is the request's (fork failed).
    fn ask(&mut self, request: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<io::Result<Started>> {
        let len = u32::try_from(request.len()).map_err(|_| io::ErrorKind::InvalidInput)?;
        send_with_fds(&self.sock, &len.to_le_bytes(), fds)?;
        self.sock.write_all(request)?;
        let mut answer = [0u8; 8];
        let got = recv_with_fds(self.sock.as_fd(), &mut answer, 1)?;
        if got.bytes < answer.len() {
            self.sock.read_exact(&mut answer[got.bytes..])?;
        }
        let pid = i32::from_le_bytes(answer[..4].try_into().expect("4 bytes"));
        let errno = i32::from_le_bytes(answer[4..].try_into().expect("4 bytes"));
        if pid <= 0 {
            return Ok(Err(io::Error::from_raw_os_error(errno)));
        }
        Ok(Ok(Started {
            pid,
            pidfd: got.fds.into_iter().next(),
        }))
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        // The supervisors it started carry on without it; it holds nothing else.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
