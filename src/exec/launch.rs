//! Launching: a request becomes a program, its arguments, its environment and its directory,
//! and is started under a supervisor or, without one, as our own child.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::Stdio;

use tokio::net::unix::pipe as unix_pipe;
use tokio::process::Command;

use super::process::{Control, Process, Running};
use super::streams::{self, pty, Streams};
use super::{supervisor, ExecMode, Launcher, Request, SpawnFailure, Spawner, TtyRequest};
use crate::status::Status;

/// Variables that never reach a command: the server's own secret, and where the server
/// keeps its keys and token (a command has no business finding them).
pub(super) const PRIVATE_ENV: &[&str] = &["RCMD_TOKEN", "RCMD_HOME"];

/// What starting a command gave: its process, how to signal it, and what the launch
/// path keeps for it.
struct Started {
    process: Process,
    control: Control,
    serial: Option<(super::helper::Serial, super::ConnectionSupervisor)>,
    group: Option<super::cgroup::Group>,
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
        let cwd = self.directory(req)?;
        let terminal = match &req.tty {
            Some(t) => Some(pty::open(t.size).map_err(|e| failed(1, format!("no terminal: {e}")))?),
            None => None,
        };
        // Both paths start the command on the same ends, made here: pipes or the terminal.
        let streams = Streams::open(req.stdin, terminal).map_err(internal)?;
        let launch = Launch {
            program,
            args,
            env: environment(req),
            cwd,
            tty: req.tty.is_some(),
        };
        let started = match &self.supervisor {
            Some(spawner) => self.start_supervised(spawner, launch, &streams.theirs)?,
            None => start_direct(launch, &streams.theirs)?,
        };
        // Only the command (or its supervisor) may hold its ends now: its output ends when
        // its copies close.
        let Streams { output, stdin, .. } = streams;
        Ok(Running::new(
            started.process,
            output,
            stdin,
            started.control,
            self.timeout,
            started.serial,
            started.group,
        ))
    }

    /// Starts the command under a supervisor the server's helper forks for it.
    fn start_supervised(
        &self,
        spawner: &Spawner,
        launch: Launch,
        theirs: &[OwnedFd; 3],
    ) -> Result<Started, SpawnFailure> {
        // Background processes allowed to outlive the command must not share its group.
        let group = (!self.allow_detach)
            .then(|| spawner.command_group())
            .flatten();
        let plan = supervisor::Plan {
            detach: self.allow_detach,
            tty: launch.tty,
            program: launch.program,
            args: launch.args,
            env: launch.env,
            cwd: launch.cwd,
            cgroup: group.as_ref().map(|g| g.path().to_path_buf()),
        };
        let (control_read, control_write) = streams::control_pipe().map_err(internal)?;
        let (status_read, status_write) = streams::pipe2().map_err(internal)?;
        let [i, o, e] = theirs;
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
        // Only the supervisor may hold these now: its status arrives when its copy closes.
        drop((control_read, status_write));
        let status = unix_pipe::Receiver::from_owned_fd(status_read).map_err(internal)?;
        Ok(Started {
            process: Process::Supervised {
                pid: started.pid,
                pidfd: started.pidfd,
                status,
                reported: false,
            },
            control: Control::Supervisor(control_write),
            serial,
            group,
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

/// What to start, however it is started.
struct Launch {
    program: OsString,
    args: Vec<OsString>,
    /// The command's whole environment.
    env: Vec<(OsString, OsString)>,
    cwd: Option<PathBuf>,
    /// `theirs` is a terminal, to become the command's controlling terminal.
    tty: bool,
}

/// Starts the command as our own child, in its own process group (or, on a terminal, its
/// own session), without a supervisor: for a library user, and for this module's tests.
fn start_direct(launch: Launch, theirs: &[OwnedFd; 3]) -> Result<Started, SpawnFailure> {
    let stdio = |fd: &OwnedFd| fd.try_clone().map(Stdio::from).map_err(internal);
    let mut cmd = Command::new(&launch.program);
    cmd.args(&launch.args)
        .env_clear()
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .stdin(stdio(&theirs[0])?)
        .stdout(stdio(&theirs[1])?)
        .stderr(stdio(&theirs[2])?)
        .kill_on_drop(true);
    if let Some(dir) = &launch.cwd {
        cmd.current_dir(dir);
    }
    if launch.tty {
        // SAFETY: setsid and ioctl are async-signal-safe, the only kind of call allowed
        // between fork and exec; the closure touches no memory of the parent's.
        unsafe {
            cmd.pre_exec(|| {
                rustix::process::setsid()?;
                rustix::process::ioctl_tiocsctty(std::io::stdin())?;
                Ok(())
            });
        }
    } else {
        // Its own group, so one signal reaches everything the command started.
        cmd.process_group(0);
    }
    let child = cmd
        .spawn()
        .map_err(|e| spawn_failure(&launch.program, &e))?;
    let control = Control::Group(child.id().and_then(|p| i32::try_from(p).ok()));
    Ok(Started {
        process: Process::Child(child),
        control,
        serial: None,
        group: None,
    })
}

/// The command's whole environment: ours, less what is private, with the client's
/// variables (and its `TERM`, with a terminal) over it.
fn environment(req: &Request<'_>) -> Vec<(OsString, OsString)> {
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
    if let Some(TtyRequest { term, .. }) = &req.tty {
        set(OsStr::new("TERM"), term);
    }
    env
}

fn internal(e: io::Error) -> Status {
    failed(126, format!("rcmd: {}", short(&e)))
}

/// The user's login shell, from the password database, else `$SHELL`, else `/bin/sh`.
fn login_shell() -> OsString {
    let me = nix::unistd::User::from_uid(nix::unistd::getuid());
    match me {
        Ok(Some(user)) if !user.shell.as_os_str().is_empty() => user.shell.into_os_string(),
        _ => std::env::var_os("SHELL").unwrap_or_else(|| "/bin/sh".into()),
    }
}

pub(super) fn failed(code: i32, message: impl Into<String>) -> Status {
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
pub(super) fn plain_words(line: &[u8]) -> Option<Vec<&str>> {
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
