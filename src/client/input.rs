//! Where a client's command lines come from: the command line (one-shot), a pipe, or a
//! person at a terminal; and, for a one-shot command, the standard input it is sent.
//!
//! Standard input is read on its own thread: reading it blocks, and the connection must
//! keep moving meanwhile (a piped client sends the next lines while replies stream back).

use std::io::{BufRead, IsTerminal, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::mpsc as std_mpsc;

use bytes::Bytes;
use tokio::sync::mpsc;

/// How much of our stdin one read takes when forwarding it.
const STDIN_CHUNK: usize = 256 * 1024;
/// Chunks read ahead of the connection: with the chunk size, what forwarding may hold in
/// memory however fast stdin is.
const STDIN_AHEAD: usize = 4;

/// A stream of command lines, never empty ones, and maybe the stdin to forward.
pub struct Input {
    lines: mpsc::Receiver<Vec<u8>>,
    /// Present when a person is typing: the prompt waits until the reply is shown.
    replied: Option<std_mpsc::Sender<()>>,
    one_shot: bool,
    stdin: Option<Stdin>,
    /// The stdin to forward is this process's own ([`Input::with_stdin`]).
    own_stdin: bool,
}

/// The stdin to forward: not read before the session asks for it, so nothing typed
/// before the connection is up (an answer to the first-contact question) is taken for it.
type Stdin = Box<dyn FnOnce() -> mpsc::Receiver<Bytes> + Send>;

impl Input {
    /// Exactly one command line, with an empty stdin.
    pub fn one(line: Vec<u8>) -> Input {
        let (tx, rx) = mpsc::channel(1);
        tx.try_send(line).expect("fresh channel has room");
        Input {
            lines: rx,
            replied: None,
            one_shot: true,
            stdin: None,
            own_stdin: false,
        }
    }

    /// Forwards this process's standard input to the one-shot command, read as it comes.
    pub fn with_stdin(self) -> Input {
        // A larger pipe lets a fast writer (`tar c . | rcmd …`) hand us bigger pieces, so
        // each costs fewer system calls. Refused when stdin is not a pipe, or the size is
        // over an unprivileged user's limit: the pipe stays as it was, which works.
        let _as_it_was = rustix::pipe::fcntl_setpipe_size(rustix::stdio::stdin(), STDIN_CHUNK * 4);
        let mut input = self.with_stdin_from(std::io::stdin());
        input.own_stdin = true;
        input
    }

    /// Forwards `source` to the one-shot command, read on its own thread once the
    /// session takes it ([`Input::take_stdin`]), never before.
    pub fn with_stdin_from<R: Read + Send + 'static>(mut self, mut source: R) -> Input {
        self.stdin = Some(Box::new(move || {
            let (tx, rx) = mpsc::channel(STDIN_AHEAD);
            std::thread::spawn(move || {
                let mut buf = vec![0u8; STDIN_CHUNK];
                loop {
                    let n = match source.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if tx.blocking_send(Bytes::copy_from_slice(&buf[..n])).is_err() {
                        break;
                    }
                }
            });
            rx
        }));
        self
    }

    /// Lines from standard input. At a terminal each line is edited with history and
    /// `exit` ends the session; piped, every non-empty line is a command.
    pub fn stdin(prompt: String) -> Input {
        let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
        let (tx, rx) = mpsc::channel(64);
        let (replied_tx, replied_rx) = std_mpsc::channel::<()>();
        std::thread::spawn(move || {
            if interactive {
                prompt_lines(&prompt, &tx, &replied_rx);
            } else {
                piped_lines(&tx);
            }
        });
        Input {
            lines: rx,
            replied: interactive.then_some(replied_tx),
            one_shot: false,
            stdin: None,
            own_stdin: false,
        }
    }

    /// The next command line, or `None` when there are no more.
    pub async fn next(&mut self) -> Option<Vec<u8>> {
        self.lines.recv().await
    }

    /// Whether this is a single command given on the command line.
    pub fn is_one_shot(&self) -> bool {
        self.one_shot
    }

    /// Whether a person types the lines at a prompt (and is back at it after each reply).
    pub fn is_prompt(&self) -> bool {
        self.replied.is_some()
    }

    /// The stdin to forward, if any, as chunks in order; the channel ends with it.
    /// Reading starts here.
    pub fn take_stdin(&mut self) -> Option<mpsc::Receiver<Bytes>> {
        self.stdin.take().map(|start| start())
    }

    /// Instead of [`take_stdin`](Self::take_stdin): our own stdin itself, when it is
    /// the stdin to forward and a pipe (which can be spliced); it is then never read here.
    pub fn take_stdin_pipe(&mut self) -> Option<OwnedFd> {
        if !self.own_stdin || self.stdin.is_none() {
            return None;
        }
        let pipe = stdin_pipe()?;
        self.stdin = None;
        Some(pipe)
    }

    /// Tells the input that the session is set up (its signal handling installed), so a
    /// terminal may show its first prompt.
    pub fn ready(&self) {
        self.replied();
    }

    /// Tells the input that a reply is complete (lets a terminal prompt again).
    pub fn replied(&self) {
        if let Some(tx) = &self.replied {
            let _ = tx.send(());
        }
    }
}

/// A duplicate of our stdin if it is a pipe.
fn stdin_pipe() -> Option<OwnedFd> {
    let stdin = std::io::stdin().as_fd().try_clone_to_owned().ok()?;
    let stat = rustix::fs::fstat(&stdin).ok()?;
    (rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::Fifo)
        .then_some(stdin)
}

fn piped_lines(tx: &mpsc::Sender<Vec<u8>>) {
    let stdin = std::io::stdin();
    let mut stdin = stdin.lock();
    let mut line = Vec::new();
    loop {
        line.clear();
        match stdin.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if let Some(cmd) = command_of(&line) {
            if tx.blocking_send(cmd.to_vec()).is_err() {
                return;
            }
        }
    }
}

/// A person at a terminal: a line editor with history, one command per line.
fn prompt_lines(prompt: &str, tx: &mpsc::Sender<Vec<u8>>, replied: &std_mpsc::Receiver<()>) {
    use rustyline::error::ReadlineError;
    let mut err = std::io::stderr();
    let _ = writeln!(
        err,
        "rcmd: each line runs in a new shell of its own (`cd` does not carry over);\n\
         `exit` or Ctrl-D ends. For one shell session, leave out -T (or use -t)."
    );
    let Ok(mut editor) = rustyline::DefaultEditor::new() else {
        return piped_lines(tx);
    };
    // The editor saves the SIGINT handler when a prompt starts and puts it back when it
    // ends: the first prompt waits until the session has installed its own (which passes
    // Ctrl-C on to a running command), so that is the one put back.
    if replied.recv().is_err() {
        return;
    }
    loop {
        let line = match editor.readline(prompt) {
            Ok(line) => line,
            // Ctrl-C at the prompt clears the line, as in a shell.
            Err(ReadlineError::Interrupted) => continue,
            Err(_) => break,
        };
        let Some(cmd) = command_of(line.as_bytes()) else {
            continue;
        };
        let _ = editor.add_history_entry(line.as_str());
        if cmd == b"exit" {
            break;
        }
        if tx.blocking_send(cmd.to_vec()).is_err() {
            break;
        }
        // Show the next prompt only once this command's reply is out.
        if replied.recv().is_err() {
            break;
        }
    }
    let _ = writeln!(err);
}

/// The command in one input line: without its line ending, `None` when blank.
fn command_of(line: &[u8]) -> Option<&[u8]> {
    let end = line
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    let start = line.iter().position(|b| !b.is_ascii_whitespace())?;
    Some(&line[start..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_lines_are_skipped_and_endings_trimmed() {
        assert_eq!(command_of(b"\n"), None);
        assert_eq!(command_of(b"  \t\r\n"), None);
        assert_eq!(command_of(b"echo hi\r\n"), Some(&b"echo hi"[..]));
        assert_eq!(command_of(b"  ls -l \n"), Some(&b"ls -l"[..]));
    }

    #[tokio::test]
    async fn forwarded_stdin_arrives_whole_and_ends() {
        let data: Vec<u8> = (0..=255u8).cycle().take(STDIN_CHUNK * 3 + 7).collect();
        let mut input =
            Input::one(b"cat".to_vec()).with_stdin_from(std::io::Cursor::new(data.clone()));
        let mut got = Vec::new();
        let mut stdin = input.take_stdin().unwrap();
        while let Some(chunk) = stdin.recv().await {
            assert!(chunk.len() <= STDIN_CHUNK);
            got.extend_from_slice(&chunk);
        }
        assert_eq!(got, data);
    }
}
