//! Where a client's command lines come from: the command line (one-shot), a pipe, or a
//! person at a terminal.
//!
//! Standard input is read on its own thread: reading it blocks, and the connection must
//! keep moving meanwhile (a piped client sends the next lines while replies stream back).

use std::io::{BufRead, IsTerminal, Write};
use std::sync::mpsc as std_mpsc;

use tokio::sync::mpsc;

/// A stream of command lines, never empty ones.
pub struct Input {
    lines: mpsc::Receiver<Vec<u8>>,
    /// Present when a person is typing: the prompt waits until the reply is shown.
    replied: Option<std_mpsc::Sender<()>>,
}

impl Input {
    /// Exactly one command line.
    pub fn one(line: Vec<u8>) -> Input {
        let (tx, rx) = mpsc::channel(1);
        tx.try_send(line).expect("fresh channel has room");
        Input {
            lines: rx,
            replied: None,
        }
    }

    /// Lines from standard input. On a terminal each line is prompted for with `prompt`
    /// and `exit` ends the session; piped, every non-empty line is a command.
    pub fn stdin(prompt: String) -> Input {
        let interactive = std::io::stdin().is_terminal();
        let (tx, rx) = mpsc::channel(64);
        let (replied_tx, replied_rx) = std_mpsc::channel::<()>();
        std::thread::spawn(move || {
            let stdin = std::io::stdin();
            let mut stdin = stdin.lock();
            let mut line = Vec::new();
            loop {
                if interactive {
                    let mut err = std::io::stderr();
                    let _ = write!(err, "{prompt}");
                    let _ = err.flush();
                }
                line.clear();
                match stdin.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let Some(cmd) = command_of(&line) else {
                    continue;
                };
                if interactive && cmd == b"exit" {
                    break;
                }
                if tx.blocking_send(cmd.to_vec()).is_err() {
                    break;
                }
                // Show the next prompt only once this command's reply is out.
                if interactive && replied_rx.recv().is_err() {
                    break;
                }
            }
            if interactive {
                eprintln!();
            }
        });
        Input {
            lines: rx,
            replied: interactive.then_some(replied_tx),
        }
    }

    /// The next command line, or `None` when there are no more.
    pub async fn next(&mut self) -> Option<Vec<u8>> {
        self.lines.recv().await
    }

    /// Tells the input that a reply is complete (lets a terminal prompt again).
    pub fn replied(&self) {
        if let Some(tx) = &self.replied {
            let _ = tx.send(());
        }
    }
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
    use super::command_of;

    #[test]
    fn blank_lines_are_skipped_and_endings_trimmed() {
        assert_eq!(command_of(b"\n"), None);
        assert_eq!(command_of(b"  \t\r\n"), None);
        assert_eq!(command_of(b"echo hi\r\n"), Some(&b"echo hi"[..]));
        assert_eq!(command_of(b"  ls -l \n"), Some(&b"ls -l"[..]));
    }
}
