//! Running one command: spawn it in its own process group, stream its stdout and stderr as
//! they are produced, and report how it ended.
//!
//! [`Running`] is pulled, not pushed: the caller asks for the next piece of output when it
//! is ready to send it, so a slow client slows the command down (through the pipe) instead
//! of making us buffer. Dropping a [`Running`] before it finished kills the whole process
//! group, grandchildren of `sh -c` included: a client that goes away leaves nothing behind.

use std::ffi::OsStr;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::process::Stdio;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, ChildStderr, ChildStdout, Command};
use tokio::time::Instant;

use crate::status::Status;

/// How a command line becomes a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExecMode {
    /// `sh -c LINE`, as ssh and the tutorial's `shell=True` do: pipes and redirects work.
    #[default]
    Shell,
    /// Split the line with shell-words and run the program directly, without a shell.
    Direct,
}

/// How much one read from a command's pipe may return.
const READ_CHUNK: usize = 256 * 1024;
/// Pipe capacity asked for (Linux allows up to /proc/sys/fs/pipe-max-size, 1 MiB by
/// default): a fast producer fills more before it waits on us, so we wake less often.
const PIPE_SIZE: libc::c_int = 1 << 20;

/// One piece of what a running command produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Stdout(Bytes),
    Stderr(Bytes),
    /// The command ended and both its pipes are drained; no event follows.
    Done(Status),
}

/// A command that has been started.
#[derive(Debug)]
pub struct Running {
    child: Child,
    pgid: Option<i32>,
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
    out_buf: BytesMut,
    err_buf: BytesMut,
    reaped: bool,
    /// When the command is killed for taking too long, and the limit, for the message.
    deadline: Option<(Instant, Duration)>,
    timed_out: bool,
}

/// A command that will never run; its status says why. Reported to the client as the
/// command's result, so the connection carries on.
pub type SpawnFailure = Status;

/// Starts `line` according to `mode`, with stdin from `/dev/null`. With a `timeout`, the
/// whole process group is killed when it runs out and the command ends with status 124,
/// as `timeout(1)` reports it.
///
/// # Errors
/// A [`Status::Failed`] with the shell's conventional code: 127 when the program does not
/// exist, 126 when it cannot be executed, 2 when the line cannot be parsed.
pub fn spawn(
    line: &[u8],
    mode: ExecMode,
    timeout: Option<Duration>,
) -> Result<Running, SpawnFailure> {
    let mut cmd = match (mode, plain_words(line)) {
        // Nothing for a shell to do: start the program directly and save an exec.
        (ExecMode::Shell, Some(words)) => {
            let mut c = Command::new(words[0]);
            c.args(&words[1..]);
            c
        }
        (ExecMode::Shell, None) => {
            let mut c = Command::new("sh");
            c.arg("-c").arg(OsStr::from_bytes(line));
            c
        }
        (ExecMode::Direct, _) => {
            let text = std::str::from_utf8(line).map_err(|_| Status::Failed {
                code: 2,
                message: "rcmd: --exec needs a UTF-8 command line".into(),
            })?;
            let words = shell_words::split(text).map_err(|e| Status::Failed {
                code: 2,
                message: format!("rcmd: cannot parse command line: {e}"),
            })?;
            let Some((program, args)) = words.split_first() else {
                return Err(Status::Failed {
                    code: 2,
                    message: "rcmd: empty command line".into(),
                });
            };
            let mut c = Command::new(program);
            c.args(args);
            c
        }
    };
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, so one signal reaches everything the command started.
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| spawn_failure(line, mode, &e))?;
    let pgid = child.id().and_then(|p| i32::try_from(p).ok());
    for fd in [
        child.stdout.as_ref().map(AsRawFd::as_raw_fd),
        child.stderr.as_ref().map(AsRawFd::as_raw_fd),
    ]
    .into_iter()
    .flatten()
    {
        // SAFETY: F_SETPIPE_SZ only resizes the pipe behind a descriptor we own. Failing
        // (not Linux, or over the limit) leaves the default size, which also works.
        unsafe {
            libc::fcntl(fd, libc::F_SETPIPE_SZ, PIPE_SIZE);
        }
    }
    Ok(Running {
        stdout: child.stdout.take(),
        stderr: child.stderr.take(),
        child,
        pgid,
        out_buf: BytesMut::new(),
        err_buf: BytesMut::new(),
        reaped: false,
        deadline: timeout.map(|t| (Instant::now() + t, t)),
        timed_out: false,
    })
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

fn spawn_failure(line: &[u8], mode: ExecMode, e: &io::Error) -> Status {
    let name = match (mode, plain_words(line)) {
        (ExecMode::Shell, Some(words)) => words[0].to_string(),
        (ExecMode::Shell, None) => "sh".to_string(),
        (ExecMode::Direct, _) => String::from_utf8_lossy(line)
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string(),
    };
    let (code, why) = match e.kind() {
        io::ErrorKind::NotFound => (127, "command not found".to_string()),
        io::ErrorKind::PermissionDenied => (126, "permission denied".to_string()),
        _ => (126, e.to_string()),
    };
    Status::Failed {
        code,
        message: format!("rcmd: {name}: {why}"),
    }
}

/// Reads one chunk into `buf`, or `None` at end of file (and then closes the pipe).
async fn read_pipe<R: tokio::io::AsyncRead + Unpin>(
    pipe: &mut Option<R>,
    buf: &mut BytesMut,
) -> io::Result<Option<Bytes>> {
    let Some(reader) = pipe.as_mut() else {
        return std::future::pending().await;
    };
    buf.reserve(READ_CHUNK);
    if reader.read_buf(buf).await? == 0 {
        *pipe = None;
        return Ok(None);
    }
    // `split` hands the bytes out and keeps the allocation for the next read once the
    // caller has dropped them.
    Ok(Some(buf.split().freeze()))
}

impl Running {
    /// The next piece of output, or how the command ended once both pipes are closed.
    /// Never call it again after [`Event::Done`].
    ///
    /// # Errors
    /// An I/O error reading a pipe or waiting for the child.
    pub async fn next(&mut self) -> io::Result<Event> {
        while self.stdout.is_some() || self.stderr.is_some() {
            let deadline = self.deadline.filter(|_| !self.timed_out).map(|(at, _)| at);
            // Both pipes are read concurrently: a command that fills one while we wait on
            // the other must not deadlock. read_buf is cancel safe, so losing a race
            // loses no bytes.
            tokio::select! {
                r = read_pipe(&mut self.stdout, &mut self.out_buf) => {
                    if let Some(b) = r? { return Ok(Event::Stdout(b)); }
                }
                r = read_pipe(&mut self.stderr, &mut self.err_buf) => {
                    if let Some(b) = r? { return Ok(Event::Stderr(b)); }
                }
                _ = crate::deadline::until(deadline) => {
                    // Killing the group closes every copy of the pipes, so the loop then
                    // drains what was already written and ends.
                    self.timed_out = true;
                    self.kill_group();
                }
            }
        }
        let status = self.child.wait().await?;
        self.reaped = true;
        match self.deadline {
            Some((_, limit)) if self.timed_out => Ok(Event::Done(Status::Failed {
                code: 124,
                message: format!(
                    "rcmd: command timed out after {}s; its processes were killed",
                    limit.as_secs_f64()
                ),
            })),
            _ => Ok(Event::Done(Status::from_exit(status))),
        }
    }

    fn kill_group(&self) {
        // Until we reap the leader its pid cannot be reused, so signalling its group here
        // cannot hit an unrelated process.
        if let (false, Some(pgid)) = (self.reaped, self.pgid) {
            // SAFETY: killpg has no memory-safety preconditions.
            unsafe {
                libc::killpg(pgid, libc::SIGKILL);
            }
        }
    }

    /// Process id of the command (the group leader).
    pub fn id(&self) -> Option<u32> {
        self.child.id()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill_group();
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
    async fn signal_is_reported() {
        let (_, _, status) = collect("kill -TERM $$", ExecMode::Shell).await;
        assert_eq!(status, Status::Signaled(15));
        assert_eq!(status.exit_code(), 143);
    }
}
