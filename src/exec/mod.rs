//! Running one command: start it contained, stream its output as it is produced, feed it
//! input, signal it, and report how it ended.
//!
//! [`Running`] is pulled, not pushed: the caller asks for the next piece of output when it
//! is ready to send it, so a slow client slows the command down (through the pipe) instead
//! of making us buffer. Dropping a [`Running`] before it finished kills everything the
//! command started: a client that goes away leaves nothing behind.
//!
//! Containment comes in two strengths. With a [`Launcher::supervisor`] (the `rcmd` binary
//! always has one: a [`Spawner`] whose helper is itself), every command runs under a
//! [`supervisor`] forked for it by the helper, which also catches processes that left the
//! command's process group and survives the server being killed.
//! Without one (a library user, or this module's unit tests) the command's process group
//! is killed, which misses processes that called `setsid` or `setpgid`.

pub mod cgroup;
mod pipe;
pub mod pty;
pub mod spawner;
pub mod supervisor;
mod tree;

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe as unix_pipe;
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::status::Status;
pub use pipe::OutPipe;
pub use pty::WindowSize;
pub use spawner::{ConnectionSupervisor, Spawner};

/// How a command line becomes a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExecMode {
    /// `sh -c LINE`, as ssh and the tutorial's `shell=True` do: pipes and redirects work.
    #[default]
    Shell,
    /// Split the line with shell-words and run the program directly, without a shell.
    Direct,
}

/// How long a supervisor gets to carry out a kill before the server kills its tree itself.
const SUPERVISOR_GRACE: Duration = Duration::from_secs(1);
/// How long the server keeps killing a tree it took over.
const FORCED_KILL_DEADLINE: Duration = Duration::from_secs(2);

/// How much one read from a command's pipe may return.
const READ_CHUNK: usize = 256 * 1024;
/// Pipe capacity asked for (Linux allows up to /proc/sys/fs/pipe-max-size, 1 MiB by
/// default): a fast producer fills more before it waits on us, so we wake less often.
const PIPE_SIZE: libc::c_int = 1 << 20;
/// Variables that never reach a command: the server's own secret, and where the server
/// keeps its keys and token (a command has no business finding them).
const PRIVATE_ENV: &[&str] = &["RCMD_TOKEN", "RCMD_HOME"];

/// One piece of what a running command produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Stdout(Bytes),
    Stderr(Bytes),
    /// The command ended and its output is drained; no event follows.
    Done(Status),
}

/// What [`Running::next_in_place`] found: an event, or output left in its pipe.
#[derive(Debug)]
pub enum Piece {
    Event(Event),
    /// `len` bytes of stdout (or stderr) wait in `pipe`. The caller moves exactly that
    /// many out of it, telling the pipe with [`OutPipe::moved`]; until then this pipe
    /// reports nothing more.
    InPipe {
        stderr: bool,
        pipe: OutPipe,
        len: usize,
    },
}

/// How every command of a server is started.
#[derive(Debug, Clone, Default)]
pub struct Launcher {
    pub mode: ExecMode,
    /// Starts every command under a supervisor (see [`supervisor`]).
    pub supervisor: Option<Spawner>,
    /// Let background processes outlive a command that ended normally.
    pub allow_detach: bool,
    /// Where commands run unless the client asks for a directory (default: the current one).
    pub workdir: Option<PathBuf>,
    /// How long one command may run before everything it started is killed.
    pub timeout: Option<Duration>,
    /// The connection's own supervisor, kept between its commands (see
    /// [`spawner::Serial`]); `None`: a supervisor per command.
    pub connection: Option<ConnectionSupervisor>,
}

/// A terminal requested for a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TtyRequest {
    pub size: WindowSize,
    /// The client's `TERM`.
    pub term: OsString,
}

/// One command to start, with what the client asked for around it.
#[derive(Debug, Clone, Default)]
pub struct Request<'a> {
    /// The command line; empty with a terminal means a login shell.
    pub line: &'a [u8],
    /// Variables to set (already checked against what the server accepts).
    pub env: Vec<(OsString, OsString)>,
    /// Directory to run in, relative to the launcher's.
    pub cwd: Option<PathBuf>,
    /// Give the command a pipe for stdin (else /dev/null, or the terminal).
    pub stdin: bool,
    pub tty: Option<TtyRequest>,
}

impl<'a> Request<'a> {
    /// Just a command line, with an empty stdin.
    pub fn line(line: &'a [u8]) -> Request<'a> {
        Request {
            line,
            ..Request::default()
        }
    }
}

/// Where the command's output comes from.
#[derive(Debug)]
enum Output {
    Pipes {
        stdout: Option<OutPipe>,
        stderr: Option<OutPipe>,
        out_buf: BytesMut,
        err_buf: BytesMut,
    },
    /// With a terminal, stdout and stderr are one stream, reported as stdout.
    Pty {
        master: Option<pty::Master>,
        buf: BytesMut,
    },
}

/// The way into a running command's standard input; dropping it closes the input.
#[derive(Debug)]
pub enum Stdin {
    Pipe(unix_pipe::Sender),
    Pty(pty::Master),
}

impl Stdin {
    /// Writes some of `data` and says how much; waits while the command is not reading.
    /// Cancel safe: nothing is written unless it returns.
    ///
    /// # Errors
    /// If the command closed its input (it has ended, or does not want more).
    pub async fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Stdin::Pipe(p) => p.write(data).await,
            Stdin::Pty(m) => m.write(data).await,
        }
    }

    /// Prepares the end of input: on a terminal, types the EOF character. Dropping the
    /// `Stdin` afterwards closes a pipe.
    ///
    /// # Errors
    /// If the terminal is gone.
    pub async fn finish(&mut self) -> io::Result<()> {
        match self {
            Stdin::Pipe(_) => Ok(()),
            Stdin::Pty(m) => m.send_eof().await,
        }
    }
}

/// How the command's whole tree is signalled and killed.
#[derive(Debug)]
enum Control {
    /// The write end of the supervisor's control pipe.
    Supervisor(OwnedFd),
    /// The command's process group, until the leader is reaped.
    Group(Option<i32>),
}

impl Control {
    fn send(&mut self, sig: u8) {
        match self {
            Control::Supervisor(fd) => {
                // SAFETY: writing one byte from a local to a descriptor we own. The pipe is
                // non-blocking; it could only be full if the supervisor stopped reading, and
                // then it is gone and closing our end will finish the job.
                unsafe {
                    libc::write(fd.as_raw_fd(), (&sig as *const u8).cast(), 1);
                }
            }
            Control::Group(Some(pgid)) => {
                let sig = if sig == supervisor::KILL {
                    libc::SIGKILL
                } else {
                    libc::c_int::from(sig)
                };
                // SAFETY: killpg has no memory-safety preconditions; the leader is not
                // reaped yet, so the group id cannot have been reused.
                unsafe {
                    libc::killpg(*pgid, sig);
                }
            }
            Control::Group(None) => {}
        }
    }
}

/// The process the server started for a command, and how it learns its end.
#[derive(Debug)]
enum Process {
    /// The command itself, our own child.
    Child(Child),
    /// The command's supervisor: the helper's child, not ours, so it reports the command's
    /// wait status through a pipe, and is signalled through a pidfd.
    Supervised {
        pid: libc::pid_t,
        pidfd: Option<OwnedFd>,
        status: unix_pipe::Receiver,
        /// The supervisor reported the status itself: it is done with the command.
        reported: bool,
    },
}

impl Process {
    fn id(&self) -> Option<u32> {
        match self {
            Process::Child(c) => c.id(),
            Process::Supervised { pid, .. } => u32::try_from(*pid).ok(),
        }
    }

    /// How the command ended.
    async fn wait(&mut self) -> io::Result<std::process::ExitStatus> {
        use std::os::unix::process::ExitStatusExt;
        match self {
            Process::Child(c) => c.wait().await,
            Process::Supervised {
                status,
                pidfd,
                reported,
                ..
            } => {
                let killed = ExitStatusExt::from_raw(libc::SIGKILL);
                let mut raw = [0u8; 4];
                // The supervisor's end: a pidfd turns readable when it exits, so nothing
                // else holding the status pipe open can make us wait beyond that.
                let exited = async {
                    match pidfd.as_ref().and_then(|fd| fd.try_clone().ok()) {
                        // SAFETY: the AsyncFd owns the duplicate, so it stays open, on
                        // the same pidfd, for as long as it is registered.
                        Some(fd) => match unsafe {
                            tokio::io::unix::AsyncFd::register_with_interest(
                                fd,
                                tokio::io::Interest::READABLE,
                            )
                        } {
                            Ok(fd) => drop(fd.readable().await),
                            Err(_) => std::future::pending().await,
                        },
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    biased;
                    // Four bytes, written at once just before the supervisor exits.
                    r = status.read_exact(&mut raw) => match r {
                        Ok(_) => {
                            *reported = true;
                            Ok(ExitStatusExt::from_raw(i32::from_le_bytes(raw)))
                        }
                        // The supervisor died without a word: it was killed, and so was
                        // the command as far as anyone can tell.
                        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(killed),
                        Err(e) => Err(e),
                    },
                    () = exited => match status.try_read(&mut raw) {
                        Ok(4) => Ok(ExitStatusExt::from_raw(i32::from_le_bytes(raw))),
                        _ => Ok(killed),
                    },
                }
            }
        }
    }

    /// What it takes to kill a supervisor and its tree from here, if this is one.
    fn killer(&self) -> Option<Killer> {
        match self {
            Process::Supervised {
                pid,
                pidfd: Some(fd),
                ..
            } => fd.try_clone().ok().map(|pidfd| Killer { pid: *pid, pidfd }),
            _ => None,
        }
    }
}

/// A command that has been started.
#[derive(Debug)]
pub struct Running {
    /// The process started: the supervisor, or the command itself. Only `Drop` takes it.
    process: Option<Process>,
    output: Output,
    stdin: Option<Stdin>,
    control: Control,
    /// When the command is killed for taking too long, and the limit, for the message.
    deadline: Option<(Instant, Duration)>,
    timed_out: bool,
    done: bool,
    /// When the supervisor was told to kill everything: if it has not managed within
    /// [`SUPERVISOR_GRACE`] (the command stopped it, say), the server does it itself.
    kill_sent: Option<Instant>,
    forced: bool,
    /// The kill could not be carried out and we stopped waiting for the command.
    abandoned: bool,
    /// The connection's supervisor that runs this command, and where it goes back once
    /// the command has ended cleanly.
    serial: Option<(spawner::Serial, ConnectionSupervisor)>,
    /// The command's cgroup, killed and removed when it is dropped.
    group: Option<cgroup::Group>,
}

/// A command that will never run; its status says why. Reported to the client as the
/// command's result, so the connection carries on.
pub type SpawnFailure = Status;

/// Starts `line` according to `mode`, with stdin from `/dev/null` and no supervisor: the
/// simple case, for the demo and for tests.
///
/// # Errors
/// As [`Launcher::spawn`].
pub fn spawn(
    line: &[u8],
    mode: ExecMode,
    timeout: Option<Duration>,
) -> Result<Running, SpawnFailure> {
    Launcher {
        mode,
        timeout,
        ..Launcher::default()
    }
    .spawn(&Request::line(line))
}

impl Launcher {
    /// Starts the command `req` describes. With a `timeout`, everything it started is
    /// killed when it runs out and the command ends with status 124, as `timeout(1)`
    /// reports it.
    ///
    /// # Errors
    /// A [`Status::Failed`] with the shell's conventional code: 127 when the program does
    /// not exist, 126 when it cannot be executed, 2 when the line cannot be parsed, 1 when
    /// the directory does not exist or no terminal can be had. (Under a supervisor a missing
    /// program is reported by the supervisor instead: a message on stderr and status 127.)
    pub fn spawn(&self, req: &Request<'_>) -> Result<Running, SpawnFailure> {
        let (program, args) = self.argv(req)?;
        let dir = self.directory(req)?;
        let tty = match &req.tty {
            Some(t) => Some((
                pty::open(t.size).map_err(|e| failed(1, format!("no terminal: {e}")))?,
                t,
            )),
            None => None,
        };
        match &self.supervisor {
            Some(spawner) => self.spawn_supervised(spawner, req, program, args, dir, tty),
            None => self.spawn_direct(req, program, args, dir, tty),
        }
    }

    /// Starts the command under a supervisor the server's helper forks for it.
    fn spawn_supervised(
        &self,
        spawner: &Spawner,
        req: &Request<'_>,
        program: OsString,
        args: Vec<OsString>,
        cwd: Option<PathBuf>,
        tty: Option<((pty::Master, OwnedFd), &TtyRequest)>,
    ) -> Result<Running, SpawnFailure> {
        let internal = |e: io::Error| failed(126, format!("rcmd: {}", short(&e)));
        // The whole environment travels with the plan: ours, less what is private, with
        // the client's variables (and its TERM, with a terminal) over it.
        let mut env: Vec<(OsString, OsString)> = std::env::vars_os()
            .filter(|(k, _)| !PRIVATE_ENV.iter().any(|p| k == *p))
            .collect();
        let mut set = |k: &OsStr, v: &OsStr| match env.iter_mut().find(|(n, _)| n == k) {
            Some(pair) => pair.1 = v.to_os_string(),
            None => env.push((k.to_os_string(), v.to_os_string())),
        };
        for (k, v) in &req.env {
            set(k, v);
        }
        if let Some((_, t)) = &tty {
            set(OsStr::new("TERM"), &t.term);
        }
        // Background processes allowed to outlive the command must not share its group.
        let group = (!self.allow_detach)
            .then(|| spawner.command_group())
            .flatten();
        let plan = supervisor::Plan {
            detach: self.allow_detach,
            tty: tty.is_some(),
            program,
            args,
            env,
            cwd,
            cgroup: group.as_ref().map(|g| g.path().to_path_buf()),
        };
        let (control_read, control_write) = control_pipe().map_err(internal)?;
        let (status_read, status_write) = pipe2().map_err(internal)?;
        // Their ends (given to the supervisor), and ours.
        let (theirs, output, stdin) = match tty {
            Some(((master, slave), _)) => {
                let dup = |fd: &OwnedFd| fd.try_clone().map_err(internal);
                (
                    [dup(&slave)?, dup(&slave)?, slave],
                    Output::Pty {
                        master: Some(master.clone()),
                        buf: BytesMut::new(),
                    },
                    Some(Stdin::Pty(master)),
                )
            }
            None => {
                let (stdin_theirs, stdin_ours) = if req.stdin {
                    let (r, w) = pipe2().map_err(internal)?;
                    (r, Some(w))
                } else {
                    (
                        OwnedFd::from(std::fs::File::open("/dev/null").map_err(internal)?),
                        None,
                    )
                };
                let (out_read, out_write) = pipe2().map_err(internal)?;
                let (err_read, err_write) = pipe2().map_err(internal)?;
                for fd in [&out_read, &err_read]
                    .into_iter()
                    .chain(stdin_ours.as_ref())
                {
                    widen(fd);
                }
                let stdin = stdin_ours
                    .map(|w| unix_pipe::Sender::from_owned_fd(w).map(Stdin::Pipe))
                    .transpose()
                    .map_err(internal)?;
                (
                    [stdin_theirs, out_write, err_write],
                    Output::Pipes {
                        stdout: Some(OutPipe::new(out_read).map_err(internal)?),
                        stderr: Some(OutPipe::new(err_read).map_err(internal)?),
                        out_buf: BytesMut::new(),
                        err_buf: BytesMut::new(),
                    },
                    stdin,
                )
            }
        };
        let [i, o, e] = &theirs;
        let fds = [
            i.as_fd(),
            o.as_fd(),
            e.as_fd(),
            control_read.as_fd(),
            status_write.as_fd(),
        ];
        // A connection's supervisor would kill a detached command's background processes
        // with its next command's leftovers, so those get one of their own.
        let connection = self
            .connection
            .as_ref()
            .filter(|_| !plan.detach && !plan.tty);
        let started = match connection {
            Some(slot) => spawner
                .start_in(slot, &plan, fds)
                .map(|(started, serial)| (started, serial.map(|s| (s, slot.clone())))),
            None => spawner.start(&plan, &fds).map(|started| (started, None)),
        };
        let (started, serial) = started.map_err(|e| {
            failed(
                126,
                format!("rcmd: cannot start the command: {}", short(&e)),
            )
        })?;
        // Only the supervisor may hold these now: the command's output ends, and its
        // status arrives, when its copies close.
        drop((theirs, control_read, status_write));
        let status = unix_pipe::Receiver::from_owned_fd(status_read).map_err(internal)?;
        Ok(Running {
            process: Some(Process::Supervised {
                pid: started.pid,
                pidfd: started.pidfd,
                status,
                reported: false,
            }),
            output,
            stdin,
            control: Control::Supervisor(control_write),
            deadline: self.timeout.map(|t| (Instant::now() + t, t)),
            timed_out: false,
            done: false,
            kill_sent: None,
            forced: false,
            abandoned: false,
            serial,
            group,
        })
    }

    /// Starts the command as our own child, in its own process group, without a
    /// supervisor: for a library user, and for this module's tests.
    fn spawn_direct(
        &self,
        req: &Request<'_>,
        program: OsString,
        args: Vec<OsString>,
        dir: Option<PathBuf>,
        tty: Option<((pty::Master, OwnedFd), &TtyRequest)>,
    ) -> Result<Running, SpawnFailure> {
        let mut cmd = Command::new(&program);
        cmd.args(&args);
        for name in PRIVATE_ENV {
            cmd.env_remove(name);
        }
        cmd.envs(req.env.iter().map(|(k, v)| (k, v)));
        if let Some(dir) = &dir {
            cmd.current_dir(dir);
        }
        let master = match tty {
            Some(((master, slave), t)) => {
                cmd.env("TERM", &t.term);
                let dup = |fd: &OwnedFd| {
                    fd.try_clone()
                        .map(Stdio::from)
                        .map_err(|e| failed(1, format!("no terminal: {e}")))
                };
                cmd.stdin(dup(&slave)?)
                    .stdout(dup(&slave)?)
                    .stderr(Stdio::from(slave));
                // SAFETY: only async-signal-safe calls between fork and exec.
                unsafe {
                    cmd.pre_exec(|| {
                        if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                            return Err(io::Error::last_os_error());
                        }
                        Ok(())
                    });
                }
                Some(master)
            }
            None => {
                cmd.stdin(if req.stdin {
                    Stdio::piped()
                } else {
                    Stdio::null()
                })
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                // Its own group, so one signal reaches everything the command started.
                .process_group(0);
                None
            }
        };
        cmd.kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| spawn_failure(&program, &e))?;
        let control = Control::Group(child.id().and_then(|p| i32::try_from(p).ok()));
        let internal = |e: io::Error| failed(126, format!("rcmd: {e}"));
        let (output, stdin) = match master {
            Some(master) => (
                Output::Pty {
                    master: Some(master.clone()),
                    buf: BytesMut::new(),
                },
                Some(Stdin::Pty(master)),
            ),
            None => {
                let stdout = child.stdout.take().map(|p| p.into_owned_fd());
                let stderr = child.stderr.take().map(|p| p.into_owned_fd());
                let stdin = child.stdin.take().map(|p| p.into_owned_fd());
                let (stdout, stderr, stdin) = match (stdout, stderr, stdin) {
                    (Some(Ok(o)), Some(Ok(e)), i) => (o, e, i.transpose().map_err(internal)?),
                    _ => return Err(failed(126, "rcmd: the command's pipes are missing")),
                };
                for fd in [&stdout, &stderr].into_iter().chain(stdin.as_ref()) {
                    widen(fd);
                }
                (
                    Output::Pipes {
                        stdout: Some(OutPipe::new(stdout).map_err(internal)?),
                        stderr: Some(OutPipe::new(stderr).map_err(internal)?),
                        out_buf: BytesMut::new(),
                        err_buf: BytesMut::new(),
                    },
                    stdin
                        .map(|w| unix_pipe::Sender::from_owned_fd(w).map(Stdin::Pipe))
                        .transpose()
                        .map_err(internal)?,
                )
            }
        };
        Ok(Running {
            process: Some(Process::Child(child)),
            output,
            stdin,
            control,
            deadline: self.timeout.map(|t| (Instant::now() + t, t)),
            timed_out: false,
            done: false,
            kill_sent: None,
            forced: false,
            abandoned: false,
            serial: None,
            group: None,
        })
    }

    /// The program and arguments for `req`.
    fn argv(&self, req: &Request<'_>) -> Result<(OsString, Vec<OsString>), SpawnFailure> {
        if req.line.is_empty() && req.tty.is_some() {
            // No command and a terminal: a login shell, as `ssh host` gives.
            return Ok((login_shell(), vec!["-l".into()]));
        }
        let os = |s: &str| OsString::from(s);
        Ok(match (self.mode, plain_words(req.line)) {
            // Nothing for a shell to do: start the program directly and save an exec.
            (ExecMode::Shell, Some(words)) => {
                (os(words[0]), words[1..].iter().map(|w| os(w)).collect())
            }
            (ExecMode::Shell, None) => (
                os("sh"),
                vec![os("-c"), OsStr::from_bytes(req.line).to_os_string()],
            ),
            (ExecMode::Direct, _) => {
                let text = std::str::from_utf8(req.line)
                    .map_err(|_| failed(2, "rcmd: --exec needs a UTF-8 command line"))?;
                let words = shell_words::split(text)
                    .map_err(|e| failed(2, format!("rcmd: cannot parse command line: {e}")))?;
                let Some((program, args)) = words.split_first() else {
                    return Err(failed(2, "rcmd: empty command line"));
                };
                (os(program), args.iter().map(|a| os(a)).collect())
            }
        })
    }

    /// The directory `req` runs in, checked: a missing one is an error status, never a
    /// command run somewhere else.
    fn directory(&self, req: &Request<'_>) -> Result<Option<PathBuf>, SpawnFailure> {
        let dir = match (&self.workdir, &req.cwd) {
            (Some(base), Some(cwd)) => Some(base.join(cwd)),
            (None, Some(cwd)) => Some(cwd.clone()),
            (base, None) => base.clone(),
        };
        if let Some(d) = &dir {
            if let Err(e) = std::fs::read_dir(d) {
                return Err(failed(
                    1,
                    format!("rcmd: cd {}: {}", d.display(), short(&e)),
                ));
            }
        }
        Ok(dir)
    }
}

/// The user's login shell, from the password database, else `$SHELL`, else `/bin/sh`.
fn login_shell() -> OsString {
    // SAFETY: getpwuid_r writes into the buffers given; the shell pointer points into buf.
    unsafe {
        let mut pw: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 4096];
        let mut result = std::ptr::null_mut();
        if libc::getpwuid_r(
            libc::getuid(),
            &mut pw,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        ) == 0
            && !result.is_null()
            && !pw.pw_shell.is_null()
        {
            let shell = std::ffi::CStr::from_ptr(pw.pw_shell).to_bytes();
            if !shell.is_empty() {
                return OsStr::from_bytes(shell).to_os_string();
            }
        }
    }
    std::env::var_os("SHELL").unwrap_or_else(|| "/bin/sh".into())
}

/// The server's default directory for commands: its user's home, as ssh uses.
pub fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

fn failed(code: i32, message: impl Into<String>) -> Status {
    Status::Failed {
        code,
        message: message.into(),
    }
}

/// An error's text without Rust's "(os error N)" suffix.
fn short(e: &io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// A pipe, both ends close-on-exec: (read, write).
fn pipe2() -> io::Result<(OwnedFd, OwnedFd)> {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors, which we then own.
    unsafe {
        if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])))
    }
}

/// Asks for a [`PIPE_SIZE`] pipe behind `fd`.
fn widen(fd: &OwnedFd) {
    // SAFETY: F_SETPIPE_SZ only resizes the pipe behind a descriptor we own. Failing (over
    // the limit) leaves the default size, which works.
    unsafe {
        libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE);
    }
}

/// A pipe for the supervisor's control channel: the read end for it, the write end
/// (non-blocking, close-on-exec) for us.
fn control_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (read, write) = pipe2()?;
    // SAFETY: reading and setting the flags of a descriptor we own.
    unsafe {
        let flags = libc::fcntl(write.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(write.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
    Ok((read, write))
}

/// Words the shell treats specially even when they look plain.
const SHELL_WORDS: &[&str] = &[
    ".", ":", "[", "alias", "bg", "break", "case", "cd", "command", "continue", "do", "done",
    "elif", "else", "esac", "eval", "exec", "exit", "export", "fc", "fg", "fi", "for", "function",
    "getopts", "hash", "if", "in", "jobs", "kill", "local", "pwd", "read", "readonly", "return",
    "select", "set", "shift", "source", "test", "then", "times", "trap", "type", "ulimit", "umask",
    "unalias", "unset", "until", "wait", "while",
];

/// The words of `line` when running it through `sh -c` would change nothing: only plain
/// characters (no quoting, expansion, globbing, redirection or separators) and a first
/// word that is a program, not a builtin, keyword or assignment. Like make and ninja, rcmd
/// then starts the program itself and saves the shell's exec.
fn plain_words(line: &[u8]) -> Option<Vec<&str>> {
    let plain = |b: &u8| b.is_ascii_alphanumeric() || b"-_./:=,+@% \t".contains(b);
    if !line.iter().all(plain) {
        return None;
    }
    let words: Vec<&str> = std::str::from_utf8(line)
        .ok()?
        .split_ascii_whitespace()
        .collect();
    let first = *words.first()?;
    if first.contains('=') || SHELL_WORDS.contains(&first) {
        return None;
    }
    Some(words)
}

fn spawn_failure(program: &OsStr, e: &io::Error) -> Status {
    let (code, why) = match e.kind() {
        io::ErrorKind::NotFound => (127, "command not found".to_string()),
        io::ErrorKind::PermissionDenied => (126, "permission denied".to_string()),
        _ => (126, e.to_string()),
    };
    failed(code, format!("rcmd: {}: {why}", program.to_string_lossy()))
}

/// Pulls from one pipe (see [`OutPipe::pull`]); `None` at its end, which closes it.
async fn pull_pipe(
    pipe: &mut Option<OutPipe>,
    buf: &mut BytesMut,
    stderr: bool,
    in_place: Option<(usize, usize)>,
) -> io::Result<Option<Piece>> {
    let Some(p) = pipe.as_ref() else {
        return std::future::pending().await;
    };
    Ok(match p.pull(buf, READ_CHUNK, in_place).await? {
        pipe::Pulled::Read(b) if stderr => Some(Piece::Event(Event::Stderr(b))),
        pipe::Pulled::Read(b) => Some(Piece::Event(Event::Stdout(b))),
        pipe::Pulled::InPlace(len) => Some(Piece::InPipe {
            stderr,
            pipe: p.clone(),
            len,
        }),
        pipe::Pulled::End => {
            *pipe = None;
            None
        }
    })
}

impl Output {
    /// Stops reading: what is still unread, and whatever still holds the other end, is
    /// left behind.
    fn abandon(&mut self) {
        match self {
            Output::Pipes { stdout, stderr, .. } => {
                *stdout = None;
                *stderr = None;
            }
            Output::Pty { master, .. } => *master = None,
        }
    }

    fn is_open(&self) -> bool {
        match self {
            Output::Pipes { stdout, stderr, .. } => stdout.is_some() || stderr.is_some(),
            Output::Pty { master, .. } => master.is_some(),
        }
    }

    /// The next piece of output, or `None` when a stream closed (call again while open).
    async fn next(&mut self, in_place: Option<(usize, usize)>) -> io::Result<Option<Piece>> {
        match self {
            // Both pipes are read concurrently: a command that fills one while we wait on
            // the other must not deadlock. Pulling is cancel safe, so losing a race loses
            // no bytes.
            Output::Pipes {
                stdout,
                stderr,
                out_buf,
                err_buf,
            } => tokio::select! {
                r = pull_pipe(stdout, out_buf, false, in_place) => r,
                r = pull_pipe(stderr, err_buf, true, in_place) => r,
            },
            Output::Pty { master, buf } => {
                let Some(m) = master.as_ref() else {
                    return std::future::pending().await;
                };
                // A terminal is always read: its master is no pipe to splice from.
                match m.read(buf, READ_CHUNK).await? {
                    Some(b) => Ok(Some(Piece::Event(Event::Stdout(b)))),
                    None => {
                        *master = None;
                        Ok(None)
                    }
                }
            }
        }
    }
}

impl Running {
    /// The next piece of output, or how the command ended once its output is drained.
    /// Never call it again after [`Event::Done`].
    ///
    /// # Errors
    /// An I/O error reading the output or waiting for the child.
    pub async fn next(&mut self) -> io::Result<Event> {
        match self.next_in_place(None).await? {
            Piece::Event(e) => Ok(e),
            Piece::InPipe { .. } => unreachable!("nothing is left in place unless asked"),
        }
    }

    /// As [`next`](Self::next), but with `in_place = Some((min, max))`, output of at least
    /// `min` bytes waiting in a pipe is left there and reported as [`Piece::InPipe`] (at
    /// most `max` bytes of it), for the caller to move without copying it through our
    /// memory. Smaller output, and a terminal's, is read as usual. Cancel safe.
    ///
    /// # Errors
    /// As [`next`](Self::next).
    pub async fn next_in_place(&mut self, in_place: Option<(usize, usize)>) -> io::Result<Piece> {
        let status = loop {
            let deadline = self.deadline();
            let supervised = matches!(self.control, Control::Supervisor(_));
            let overdue = self
                .kill_sent
                .filter(|_| !self.forced && supervised)
                .map(|at| at + SUPERVISOR_GRACE);
            // A kill that nothing carried out, even from here: the supervisor is gone or
            // stopped, and something it started holds the output. We stop waiting.
            let hopeless = self
                .kill_sent
                .filter(|_| supervised)
                .map(|at| at + SUPERVISOR_GRACE + FORCED_KILL_DEADLINE);
            if self.output.is_open() {
                tokio::select! {
                    r = self.output.next(in_place) => {
                        if let Some(piece) = r? { return Ok(piece); }
                    }
                    // Killing closes every copy of the output, so the loop then drains what
                    // was already written and ends.
                    _ = crate::deadline::until(deadline) => self.time_out(),
                    _ = crate::deadline::until(overdue) => self.force_kill(),
                    _ = crate::deadline::until(hopeless) => {
                        self.abandoned = true;
                        self.output.abandon();
                    }
                }
            } else {
                let process = self.process.as_mut().expect("only Drop takes the process");
                // The limits hold while the status is awaited too: a command can close its
                // output and stop its supervisor.
                tokio::select! {
                    status = process.wait() => break status?,
                    _ = crate::deadline::until(deadline) => self.time_out(),
                    _ = crate::deadline::until(overdue) => self.force_kill(),
                    _ = crate::deadline::until(hopeless) => {
                        self.abandoned = true;
                        break std::os::unix::process::ExitStatusExt::from_raw(libc::SIGKILL);
                    }
                }
            }
        };
        self.done = true;
        // Whatever the command did to its supervisor, nothing in its group outlives it.
        drop(self.group.take());
        // The supervisor serves the connection's next command only if it said itself that
        // it is done with this one, and nobody had to kill it.
        let finished = matches!(
            self.process,
            Some(Process::Supervised { reported: true, .. })
        );
        if let Some((serial, slot)) = self.serial.take() {
            if finished && !self.forced && !self.abandoned {
                slot.put(serial);
            }
        }
        if let Control::Group(pgid) = &mut self.control {
            // Reaped: the id may now be reused, so it must never be signalled again.
            *pgid = None;
        }
        match self.deadline {
            Some((_, limit)) if self.timed_out => Ok(Event::Done(Status::Failed {
                code: 124,
                message: format!(
                    "rcmd: command timed out after {}s; {}",
                    limit.as_secs_f64(),
                    if self.abandoned {
                        "not all of its processes could be killed (it stopped or \
                         killed its supervisor)"
                    } else {
                        "its processes were killed"
                    }
                ),
            })),
            _ => Ok(Event::Done(Status::from_exit(status))),
        }
        .map(Piece::Event)
    }

    /// When the command is to be killed for running too long, unless it already was.
    /// A caller that is not polling [`next`](Self::next) (its client is not reading, say)
    /// waits for this itself and calls [`time_out`](Self::time_out), so the limit holds
    /// whatever the client does.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline.filter(|_| !self.timed_out).map(|(at, _)| at)
    }

    /// Kills everything the command started, for taking too long: it ends with status 124.
    pub fn time_out(&mut self) {
        self.timed_out = true;
        self.kill();
    }

    /// Kills everything the command started.
    pub fn kill(&mut self) {
        if !self.done {
            self.control.send(supervisor::KILL);
            self.kill_sent.get_or_insert_with(Instant::now);
        }
    }

    /// Kills the supervisor's whole tree from here, and then the supervisor: for a
    /// supervisor that did not carry out a kill in time (the command sent it SIGSTOP).
    /// Its status pipe then closes, and `next` reports the command killed.
    fn force_kill(&mut self) {
        self.forced = true;
        if let Some(group) = &self.group {
            // Everything the command started, at once; the supervisor is not in it.
            if group.kill().is_err() {
                tracing::warn!("cannot kill a command's cgroup");
            }
        }
        if let Some(killer) = self.process.as_ref().and_then(Process::killer) {
            tokio::spawn(killer.run());
        }
    }

    /// Delivers signal `sig` to the command's process group.
    pub fn signal(&mut self, sig: libc::c_int) {
        if let (false, Ok(sig)) = (self.done, u8::try_from(sig)) {
            if sig != supervisor::KILL {
                self.control.send(sig);
            }
        }
    }

    /// Tells the command's terminal (if it has one) its new size.
    pub fn resize(&self, size: WindowSize) {
        if let Output::Pty {
            master: Some(m), ..
        } = &self.output
        {
            let _ = m.resize(size);
        }
    }

    /// The way into the command's input, if it has one; taken once.
    pub fn take_stdin(&mut self) -> Option<Stdin> {
        self.stdin.take()
    }

    /// Process id of the command (of its supervisor, when it has one).
    pub fn id(&self) -> Option<u32> {
        self.process.as_ref().and_then(Process::id)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.kill();
        // A supervisor that does not end within its grace is killed from here, with its
        // tree, as in `next` (it may have been stopped by the command it watches).
        if let (Some(mut process), Control::Supervisor(_), Ok(runtime)) = (
            self.process.take(),
            &self.control,
            tokio::runtime::Handle::try_current(),
        ) {
            runtime.spawn(async move {
                if tokio::time::timeout(SUPERVISOR_GRACE, process.wait())
                    .await
                    .is_err()
                {
                    if let Some(killer) = process.killer() {
                        killer.run().await;
                    }
                }
            });
        }
    }
}

/// What the server needs to kill a supervisor's tree and then the supervisor itself.
struct Killer {
    pid: libc::pid_t,
    pidfd: OwnedFd,
}

impl Killer {
    /// Kills the tree only while the pidfd says the supervisor is alive: its pid then still
    /// names it, so the scan of /proc finds its tree and no other.
    async fn run(self) {
        if spawner::pidfd_signal(self.pidfd.as_fd(), 0).is_err() {
            return;
        }
        let pid = self.pid;
        // Scanning /proc and waiting between rounds blocks: not on the runtime's threads.
        let killed = tokio::task::spawn_blocking(move || {
            // Not its parent, we cannot reap: only the walk tells what is left.
            rustix::process::Pid::from_raw(pid)
                .is_some_and(|root| tree::kill_tree(root, &[], FORCED_KILL_DEADLINE, &mut || false))
        })
        .await;
        if !matches!(killed, Ok(true)) {
            tracing::warn!(
                pid,
                "not every process a stopped supervisor started could be killed"
            );
        }
        let _ = spawner::pidfd_signal(self.pidfd.as_fd(), libc::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn collect(line: &str, mode: ExecMode) -> (Vec<u8>, Vec<u8>, Status) {
        let mut r = spawn(line.as_bytes(), mode, None).unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        loop {
            match r.next().await.unwrap() {
                Event::Stdout(b) => out.extend_from_slice(&b),
                Event::Stderr(b) => err.extend_from_slice(&b),
                Event::Done(s) => return (out, err, s),
            }
        }
    }

    #[tokio::test]
    async fn stdout_and_stderr_kept_apart() {
        let (out, err, status) = collect("echo out; echo err >&2; exit 3", ExecMode::Shell).await;
        assert_eq!(out, b"out\n");
        assert_eq!(err, b"err\n");
        assert_eq!(status, Status::Exited(3));
    }

    #[tokio::test]
    async fn both_pipes_full_does_not_deadlock() {
        // Each stream writes far more than a pipe buffer holds.
        let (out, err, status) = collect(
            "head -c 300000 /dev/zero; head -c 300000 /dev/zero >&2; head -c 300000 /dev/zero",
            ExecMode::Shell,
        )
        .await;
        assert_eq!(
            (out.len(), err.len(), status),
            (600000, 300000, Status::Exited(0))
        );
    }

    #[tokio::test]
    async fn direct_mode_passes_words_without_a_shell() {
        let (out, _, _) = collect("printf '%s|' 'a b' c '$HOME'", ExecMode::Direct).await;
        assert_eq!(out, b"a b|c|$HOME|");
    }

    #[test]
    fn only_plain_command_lines_skip_the_shell() {
        assert_eq!(plain_words(b"uname -a"), Some(vec!["uname", "-a"]));
        assert_eq!(
            plain_words(b"ls -l /tmp/x.txt  a,b"),
            Some(vec!["ls", "-l", "/tmp/x.txt", "a,b"])
        );
        for shell in [
            &b"echo $HOME"[..],
            b"ls *.rs",
            b"a | b",
            b"a; b",
            b"a > f",
            b"echo 'x y'",
            b"cd /tmp",
            b"exit 3",
            b"FOO=1 env",
            b"kill -9 1",
            b"echo ~",
            b"a && b",
            b"echo \\n",
            b"",
            b"   ",
            b"if true",
            b"sleep 1 &",
        ] {
            assert_eq!(
                plain_words(shell),
                None,
                "{:?}",
                String::from_utf8_lossy(shell)
            );
        }
    }

    #[tokio::test]
    async fn plain_line_runs_like_the_shell_would() {
        let (direct, _, s1) = collect("printf %s-%s a b", ExecMode::Shell).await;
        let (shell, _, s2) = collect("printf %s-%s a b; true", ExecMode::Shell).await;
        assert_eq!((direct, s1), (shell, s2));
    }

    #[tokio::test]
    async fn missing_program_is_127() {
        let err = spawn(b"no-such-program-rcmd", ExecMode::Direct, None).unwrap_err();
        assert_eq!(err.exit_code(), 127);
        assert!(err.to_string().contains("command not found"), "{err}");
    }

    #[tokio::test]
    async fn timeout_kills_the_group_and_reports_124() {
        // The background sleep holds the pipes open: the run can only end if the whole
        // group is killed, not just the shell. The guard is far above the 0.2s limit and
        // far below the sleeps.
        let mut r = spawn(
            b"sleep 300 & sleep 300",
            ExecMode::Shell,
            Some(Duration::from_millis(200)),
        )
        .unwrap();
        let status = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                if let Event::Done(status) = r.next().await.unwrap() {
                    break status;
                }
            }
        })
        .await
        .expect("the command's group was not killed at the timeout");
        assert_eq!(status.exit_code(), 124);
        assert!(
            status.to_string().contains("timed out after 0.2s"),
            "{status}"
        );
    }

    #[tokio::test]
    async fn a_terminal_is_always_read_never_left_in_place() {
        let req = Request {
            line: b"head -c 200000 /dev/zero | tr '\\0' a",
            tty: Some(TtyRequest {
                size: WindowSize { rows: 24, cols: 80 },
                term: "dumb".into(),
            }),
            ..Request::default()
        };
        let mut r = Launcher::default().spawn(&req).unwrap();
        let mut got = 0;
        loop {
            match r.next_in_place(Some((1, 1 << 20))).await.unwrap() {
                Piece::Event(Event::Stdout(b)) => got += b.iter().filter(|&&c| c == b'a').count(),
                Piece::Event(Event::Done(s)) => break assert_eq!(s, Status::Exited(0)),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(got, 200_000);
    }

    #[tokio::test]
    async fn signal_is_reported() {
        let (_, _, status) = collect("kill -TERM $$", ExecMode::Shell).await;
        assert_eq!(status, Status::Signaled(15));
        assert_eq!(status.exit_code(), 143);
    }
}
