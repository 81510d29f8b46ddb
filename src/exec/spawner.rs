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

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::cgroup::{Cgroups, Group};
use super::supervisor::{self, Plan};
use super::tree;

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
        }
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
                *helper = Some(Helper::start(&self.exe)?);
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
        pidfd_signal(self.pidfd.as_fd(), 0)?;
        let request = encode(plan);
        let len = u32::try_from(request.len()).map_err(|_| io::ErrorKind::InvalidInput)?;
        let raw = fds.map(|fd| fd.as_raw_fd());
        send_with_fds(&self.sock, &len.to_le_bytes(), &raw)?;
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
    fn start(exe: &std::path::Path) -> io::Result<Helper> {
        let (ours, theirs) = UnixStream::pair()?;
        let theirs_fd = theirs.as_raw_fd();
        let mut cmd = std::process::Command::new(exe);
        // The helper passes its environment to no command (each plan carries its own), but
        // its /proc entry would still show it: keep the server's secrets out of it.
        for name in super::PRIVATE_ENV {
            cmd.env_remove(name);
        }
        // Named as people know it in `ps`, whatever path started it (/proc/self/exe).
        cmd.arg0("rcmd")
            .arg("supervise")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            // A Ctrl-C meant for the server must not reach the helper or its supervisors.
            .process_group(0);
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(theirs_fd, REQUEST_FD) < 0 {
                    return Err(io::Error::last_os_error());
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
        let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
        send_with_fds(&self.sock, &len.to_le_bytes(), &raw)?;
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

/// Runs the helper: reads requests on fd 3 until the server closes it, forking a
/// supervisor for each. Returns the process's exit code.
pub fn serve() -> i32 {
    // SAFETY: taking ownership of the descriptor the server gave us on fd 3.
    let sock = unsafe { OwnedFd::from_raw_fd(REQUEST_FD) };
    // SAFETY: closing descriptors nobody else in this process uses yet. Whatever the
    // server let slip without close-on-exec (a terminal a test opened, say) would be held
    // open for as long as we live, and handed to every supervisor we fork.
    unsafe {
        libc::close_range(REQUEST_FD as u32 + 1, u32::MAX, 0);
        libc::fcntl(sock.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC);
    }
    let children = match supervisor::SignalFd::new(&[libc::SIGCHLD]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("rcmd supervise: {e}");
            return 1;
        }
    };
    // SAFETY: flags on this process, inherited by every supervisor we fork.
    unsafe {
        // Orphans of a supervisor that was killed (a command can SIGKILL its own) come to
        // us instead of to init, and die here: see `Family::reap`.
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        // Not dumpable: a command (the same user) cannot open our descriptors or read our
        // memory and environment through /proc, so it cannot reopen its supervisor's status
        // pipe to forge or hold back the status the server reports. A command gets its own
        // dumpable state back when it is exec'd.
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        // `ps` and `top` show the process name, which would be "exe" (/proc/self/exe).
        libc::prctl(libc::PR_SET_NAME, c"rcmd".as_ptr());
    }
    let mut sock = UnixStream::from(sock);
    let mut family = Family::default();
    let mut spare = family.fork_spare();
    loop {
        let mut fds = [
            libc::pollfd {
                fd: sock.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: children.fd,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is a valid array of two pollfd.
        if unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) } < 0 {
            continue; // EINTR
        }
        if fds[1].revents != 0 {
            children.drain();
            family.reap();
        }
        if fds[0].revents != 0 {
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

/// The helper's children: the supervisors it forked, and whatever else became its child.
#[derive(Default)]
struct Family {
    /// Supervisors (and the spare) we forked and have not reaped.
    forked: HashSet<libc::pid_t>,
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
        loop {
            let mut status = 0;
            // SAFETY: waitpid writes the status into a local.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                return abnormal;
            }
            let normal = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
            abnormal |= self.forked.remove(&pid) && !normal;
        }
    }
}

/// How long the helper keeps killing a killed supervisor's orphans as they appear.
const ORPHAN_DEADLINE: Duration = Duration::from_secs(5);

/// One request as it came: its body, and the descriptors that came with it.
struct Request {
    body: Vec<u8>,
    fds: Vec<OwnedFd>,
}

impl Request {
    /// Reads one request from `sock`, with `PASSED` descriptors (or, if `serial`, one
    /// more, for a supervisor to keep); `None` when the other end closed it.
    fn read(sock: &mut UnixStream, serial: bool) -> io::Result<Option<Request>> {
        let mut len = [0u8; 4];
        let most = PASSED + usize::from(serial);
        let got = recv_with_fds(sock.as_fd(), &mut len, most)?;
        if got.bytes == 0 {
            return Ok(None);
        }
        if got.bytes < len.len() {
            sock.read_exact(&mut len[got.bytes..])?;
        }
        let len = u32::from_le_bytes(len) as usize;
        if len > MAX_REQUEST || got.fds.len() < PASSED {
            return Err(malformed());
        }
        let mut body = vec![0u8; len];
        sock.read_exact(&mut body)?;
        Ok(Some(Request { body, fds: got.fds }))
    }

    /// Passes the request on, descriptors and all.
    fn send(&self, sock: &UnixStream) -> io::Result<()> {
        let len = (self.body.len() as u32).to_le_bytes();
        let raw: Vec<RawFd> = self.fds.iter().map(AsRawFd::as_raw_fd).collect();
        send_with_fds(sock, &len, &raw)?;
        let mut w = sock;
        w.write_all(&self.body)
    }
}

fn malformed() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "malformed request from the server",
    )
}

/// A supervisor forked ahead of need, waiting on `sock` for its request: the fork, the
/// costliest step of starting a command (about a millisecond on a virtual machine), then
/// happens while the previous command runs instead of before the next one. Dropping it
/// closes `sock`, which ends a spare still waiting.
struct Spare {
    pid: libc::pid_t,
    pidfd: Option<OwnedFd>,
    sock: UnixStream,
}

impl Spare {
    /// Waits (at most [`SPARE_PATIENCE`]) for the spare to say it took its request.
    fn taken(&self) -> io::Result<()> {
        let mut fd = libc::pollfd {
            fd: self.sock.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = SPARE_PATIENCE.as_millis() as libc::c_int;
        // SAFETY: one pollfd, ours.
        if unsafe { libc::poll(&mut fd, 1, ms) } <= 0 {
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
            let _ = pidfd_signal(fd.as_fd(), libc::SIGKILL);
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
        let pidfd = pidfd_open(pid).ok();
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
    // socket to the server, which is not ours to hold) and everything else is closed.
    unsafe {
        if raw != REQUEST_FD && libc::dup2(raw, REQUEST_FD) < 0 {
            libc::_exit(1);
        }
        libc::close_range(REQUEST_FD as u32 + 1, u32::MAX, 0);
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
    let pass: Vec<RawFd> = pidfd.iter().map(AsRawFd::as_raw_fd).collect();
    send_with_fds(sock, &answer, &pass)?;
    // The next command's supervisor, forked while this one starts.
    *spare = family.fork_spare();
    Ok(true)
}

fn answer(pid: libc::pid_t, errno: Option<i32>) -> [u8; 8] {
    let mut a = [0u8; 8];
    a[..4].copy_from_slice(&pid.to_le_bytes());
    a[4..].copy_from_slice(&errno.unwrap_or(0).to_le_bytes());
    a
}

/// In the forked child: puts the passed descriptors at 0-4 (and a connection's socket at 5),
/// drops everything else of the helper's, and runs the supervisor: for one command, or,
/// with a connection's socket, for each command that comes on it. Never returns.
fn become_supervisor(fds: &[OwnedFd], plan: &Plan) -> ! {
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

/// A pidfd for `pid` (Linux 5.3 and later).
fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes two integers and returns a new descriptor we then own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor, ours alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Sends `signal` to the process behind `pidfd`. `Err`: it has ended (or we may not).
pub(super) fn pidfd_signal(pidfd: BorrowedFd<'_>, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: pidfd_send_signal reads nothing from us but integers.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// What one `recvmsg` brought: how many bytes, and the descriptors that came with them.
struct Received {
    bytes: usize,
    fds: Vec<OwnedFd>,
}

/// Room for the control message carrying up to [`PASSED`] descriptors.
const CMSG_ROOM: usize = 64;

fn send_with_fds(sock: &UnixStream, data: &[u8], fds: &[RawFd]) -> io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let mut cmsg = [0u64; CMSG_ROOM / 8];
    // SAFETY: msghdr points at locals that outlive the call; the control message is
    // built with the CMSG macros inside a buffer large enough for PASSED descriptors.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if !fds.is_empty() {
            let size = std::mem::size_of_val(fds) as u32;
            msg.msg_control = cmsg.as_mut_ptr().cast();
            msg.msg_controllen = libc::CMSG_SPACE(size) as usize;
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(size) as usize;
            std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(c).cast(), fds.len());
        }
        loop {
            let n = libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL);
            if n >= 0 {
                // The descriptors went with the first byte; the rest is plain data.
                let mut rest = sock;
                return rest.write_all(&data[n as usize..]);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

fn recv_with_fds(sock: BorrowedFd<'_>, buf: &mut [u8], max_fds: usize) -> io::Result<Received> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut cmsg = [0u64; CMSG_ROOM / 8];
    // SAFETY: as in send_with_fds; every descriptor the kernel installed is taken into an
    // OwnedFd, so none leaks even when more came than we wanted.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cmsg.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&cmsg);
        let n = loop {
            let n = libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC);
            if n >= 0 {
                break n as usize;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        };
        let mut fds = Vec::new();
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c).cast::<RawFd>();
                let count = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize)
                    / std::mem::size_of::<RawFd>();
                for i in 0..count {
                    fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
        if msg.msg_flags & libc::MSG_CTRUNC != 0 || fds.len() > max_fds {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "unexpected descriptors on the helper's socket",
            ));
        }
        Ok(Received { bytes: n, fds })
    }
}

/// The plan as bytes: flags, then length-prefixed strings (program, directory, each
/// argument, each variable's name and value) with counts before the lists.
fn encode(plan: &Plan) -> Vec<u8> {
    let mut out = vec![u8::from(plan.detach) | (u8::from(plan.tty) << 1)];
    let mut put = |s: &[u8]| {
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s);
    };
    put(plan.program.as_bytes());
    for p in [&plan.cwd, &plan.cgroup] {
        put(p.as_ref().map_or(&[][..], |d| d.as_os_str().as_bytes()));
    }
    put(&(plan.args.len() as u32).to_le_bytes());
    for a in &plan.args {
        put(a.as_bytes());
    }
    put(&(plan.env.len() as u32).to_le_bytes());
    for (k, v) in &plan.env {
        put(k.as_bytes());
        put(v.as_bytes());
    }
    out
}

fn decode(body: &[u8]) -> Option<Plan> {
    let (&flags, mut rest) = body.split_first()?;
    let mut take = || -> Option<&[u8]> {
        let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let s = rest.get(4..4 + len)?;
        rest = &rest[4 + len..];
        Some(s)
    };
    let os = |s: &[u8]| OsString::from_vec(s.to_vec());
    let count = |s: &[u8]| Some(u32::from_le_bytes(s.try_into().ok()?) as usize);
    let program = os(take()?);
    let path = |p: &[u8]| (!p.is_empty()).then(|| PathBuf::from(OsStr::from_bytes(p)));
    let cwd = path(take()?);
    let cgroup = path(take()?);
    let mut args = Vec::new();
    for _ in 0..count(take()?)? {
        args.push(os(take()?));
    }
    let mut env = Vec::new();
    for _ in 0..count(take()?)? {
        let k = os(take()?);
        env.push((k, os(take()?)));
    }
    Some(Plan {
        detach: flags & 1 != 0,
        tty: flags & 2 != 0,
        program,
        args,
        env,
        cwd,
        cgroup,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_round_trip() {
        let plan = Plan {
            detach: true,
            tty: false,
            program: "sh".into(),
            args: vec!["-c".into(), "echo --tty".into(), "".into()],
            env: vec![("A".into(), "1=2".into()), ("EMPTY".into(), "".into())],
            cwd: Some("/tmp/a b".into()),
            cgroup: Some("/sys/fs/cgroup/rcmd-1-0/cmd-3".into()),
        };
        assert_eq!(decode(&encode(&plan)), Some(plan.clone()));
        let bare = Plan {
            tty: true,
            detach: false,
            args: vec![],
            env: vec![],
            cwd: None,
            cgroup: None,
            ..plan
        };
        assert_eq!(decode(&encode(&bare)), Some(bare));
    }

    #[test]
    fn truncated_requests_are_refused() {
        let plan = Plan {
            detach: false,
            tty: false,
            program: "true".into(),
            args: vec!["x".into()],
            env: vec![("A".into(), "1".into())],
            cwd: None,
            cgroup: None,
        };
        let bytes = encode(&plan);
        for cut in 0..bytes.len() {
            assert_eq!(decode(&bytes[..cut]), None, "cut at {cut}");
        }
    }
}
