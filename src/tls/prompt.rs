//! The first-contact question, asked as ssh asks it: on the controlling terminal
//! (`/dev/tty`), never on the standard input a command may be given, in cooked mode
//! (echo, line editing, Enter ends the answer) whatever mode the terminal was left in,
//! until the answer is `yes`, `no` or the fingerprint itself.

use std::io::{BufRead, BufReader, Write};

use rustix::termios::{
    tcgetattr, tcsetattr, InputModes, LocalModes, OptionalActions, OutputModes, Termios,
};

use super::{Fingerprint, TrustError};

/// What one line typed at the question means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Yes,
    No,
    /// Anything else: ask again.
    Again,
}

/// How ssh asks again.
pub const ASK_AGAIN: &str = "Please type 'yes', 'no' or the fingerprint: ";

/// Judges one typed line: `yes` or `no` (any case), or the fingerprint shown, which is
/// as good as `yes`; surrounding blanks (and the `\r` a raw terminal sends) ignored.
pub fn judge(line: &str, seen: Fingerprint) -> Answer {
    let line = line.trim();
    if line.eq_ignore_ascii_case("yes") || line == seen.to_string() {
        Answer::Yes
    } else if line.eq_ignore_ascii_case("no") {
        Answer::No
    } else {
        Answer::Again
    }
}

/// Whether this process has a controlling terminal to ask on (`/dev/tty` opens), whatever
/// its standard input is: without one (a daemon, cron, `setsid`, CI) a new server is
/// refused instead, with the message saying how to pin it.
pub fn has_terminal() -> bool {
    open_terminal().is_ok()
}

fn open_terminal() -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
}

/// The question about `host`, which presented `seen`.
fn question(host: &str, seen: Fingerprint) -> String {
    let host = crate::printable::printable(host.as_bytes());
    format!(
        "The server at {host} is not known.\nIts identity fingerprint is {seen}.\n\
         (On the server, `rcmd fingerprint` prints it.)\n\
         Are you sure you want to trust it and continue connecting (yes/no/[fingerprint])? "
    )
}

/// Asks on the terminal whether to trust `seen` at `host`. Ctrl-C or Ctrl-D abort with an
/// error, and the terminal is left as it was found either way.
///
/// # Errors
/// When there is no terminal, or the person aborts.
pub async fn ask(host: &str, seen: Fingerprint) -> Result<bool, TrustError> {
    let cannot = TrustError::Terminal;
    let tty = open_terminal().map_err(cannot)?;
    // Listening for Ctrl-C from before the question shows: its default would kill us with
    // the terminal as we set it.
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(cannot)?;
    let cooked = Cooked::enter(&tty);
    // For putting the terminal back here when the reading thread cannot.
    let restore = cooked.saved.clone().zip(tty.try_clone().ok());
    let question = question(host, seen);
    let asking = tokio::task::spawn_blocking(move || {
        let _cooked = cooked;
        let mut out = &tty;
        out.write_all(question.as_bytes()).map_err(cannot)?;
        let mut lines = BufReader::new(&tty);
        loop {
            let mut line = String::new();
            if lines.read_line(&mut line).map_err(cannot)? == 0 {
                // Ctrl-D: end the prompt's line, as a shell does.
                let _ = out.write_all(b"\n");
                return Err(aborted());
            }
            match judge(&line, seen) {
                Answer::Yes => return Ok(true),
                Answer::No => return Ok(false),
                Answer::Again => out.write_all(ASK_AGAIN.as_bytes()).map_err(cannot)?,
            }
        }
    });
    tokio::select! {
        answer = asking => answer.map_err(|e| TrustError::Terminal(e.into()))?,
        _ = interrupt.recv() => {
            // The reading thread stays blocked until the process ends; the terminal is put
            // back here, since it cannot.
            if let Some((saved, tty)) = &restore {
                set(tty, saved);
            }
            // Cosmetic: without a terminal to write to there is no line to end.
            let _no_tty = std::fs::OpenOptions::new().write(true).open("/dev/tty")
                .and_then(|mut t| t.write_all(b"\n"));
            Err(aborted())
        }
    }
}

fn aborted() -> TrustError {
    TrustError::Interrupted
}

/// The terminal in cooked mode for as long as this lives, then back as it was.
struct Cooked {
    /// The terminal (a duplicate of the caller's descriptor) and its settings before.
    tty: Option<std::fs::File>,
    saved: Option<Termios>,
}

impl Cooked {
    fn enter(tty: &std::fs::File) -> Cooked {
        let saved = tcgetattr(tty).ok();
        if let Some(mut t) = saved.clone() {
            // Line editing and echo, Enter ends the line, Ctrl-C is a signal: what a person
            // answering a question expects, even when a terminal session left it raw.
            t.local_modes |= LocalModes::ICANON
                | LocalModes::ECHO
                | LocalModes::ECHOE
                | LocalModes::ECHOK
                | LocalModes::ISIG;
            t.input_modes |= InputModes::ICRNL;
            t.output_modes |= OutputModes::OPOST | OutputModes::ONLCR;
            set(tty, &t);
        }
        Cooked {
            tty: tty.try_clone().ok(),
            saved,
        }
    }
}

impl Drop for Cooked {
    fn drop(&mut self) {
        if let (Some(tty), Some(saved)) = (&self.tty, &self.saved) {
            set(tty, saved);
        }
    }
}

/// Applies `t` to the terminal once what was written has gone out. Best effort: a
/// terminal that refuses is one that is gone, and the question fails on it anyway.
fn set(tty: &std::fs::File, t: &Termios) {
    let _gone = tcsetattr(tty, OptionalActions::Drain, t);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yes_no_or_the_fingerprint_anything_else_asks_again() {
        let fp = Fingerprint::of(b"server");
        assert_eq!(judge("yes\n", fp), Answer::Yes);
        assert_eq!(judge("YES\r\n", fp), Answer::Yes);
        assert_eq!(judge(&format!("{fp}\n"), fp), Answer::Yes);
        assert_eq!(judge("no\n", fp), Answer::No);
        for again in ["y\n", "\n", "ye", "n", "yes please", "SHA256:x"] {
            assert_eq!(judge(again, fp), Answer::Again, "{again:?}");
        }
        let other = Fingerprint::of(b"other");
        assert_eq!(judge(&other.to_string(), fp), Answer::Again);
    }
}
