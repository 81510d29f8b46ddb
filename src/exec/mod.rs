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

//! Where each part lives:
//!
//! ```text
//! launch      request -> program, arguments, environment, directory; starts it
//! process     Running: output pulled, input, signals, timeout, status, the kill
//! streams/    the output pipes (read or left in place), the terminal, stdin
//! helper/     the server's side of the helper, its loop, the child after fork, requests
//! supervisor  the process between the server and each command
//! tree        a process's descendants, found through /proc and killed through pidfds
//! cgroup      a cgroup per command, where one can be had
//! fd_limit    the server's open-file limit raised, the commands' kept as it was
//! ```

pub mod cgroup;
pub mod fd_limit;
pub mod helper;
mod launch;
mod process;
mod start;
mod streams;
pub mod supervisor;
mod tree;

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;

use crate::status::Status;
pub use helper::{ConnectionSupervisor, Spawner};
pub use process::Running;
pub use streams::{pty, OutPipe, Stdin, WindowSize};

/// How a command line becomes a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExecMode {
    /// `sh -c LINE`, as ssh and the tutorial's `shell=True` do: pipes and redirects work.
    #[default]
    Shell,
    /// Split the line with shell-words and run the program directly, without a shell.
    Direct,
}

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
    /// [`helper::Serial`]); `None`: a supervisor per command.
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

/// A command that will never run; its status says why. Reported to the client as the
/// command's result, so the connection carries on.
pub type SpawnFailure = Status;

/// Starts `line` according to `mode`, with stdin from `/dev/null` and no supervisor: the
/// simple case, for tests.
///
/// # Errors
/// As [`Launcher::spawn`].
#[cfg(test)]
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

/// The server's default directory for commands: its user's home, as ssh uses.
pub fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::launch::plain_words;
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
