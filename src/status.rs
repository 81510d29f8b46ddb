//! How a command ended, and the exit code a client reports for it (as ssh does).

use std::fmt;
use std::process::ExitStatus;

/// The end of one remote command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// The command exited with this code.
    Exited(i32),
    /// A signal killed the command.
    Signaled(i32),
    /// The command could not be run or was stopped by rcmd; `code` follows shell
    /// conventions (127 not found, 126 not executable, 124 timed out).
    Failed { code: i32, message: String },
}

impl Status {
    /// The exit code a local process should end with to mirror this status:
    /// the code itself, 128+N for signal N, or the failure's code.
    pub fn exit_code(&self) -> i32 {
        match self {
            Status::Exited(c) => *c,
            Status::Signaled(n) => 128 + n,
            Status::Failed { code, .. } => *code,
        }
    }

    /// Converts what the operating system reported for a finished child.
    pub fn from_exit(status: ExitStatus) -> Status {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(c), _) => Status::Exited(c),
            (None, Some(sig)) => Status::Signaled(sig),
            // Neither: stopped or continued, which wait() does not report for us.
            (None, None) => Status::Failed {
                code: 255,
                message: format!("command ended in an unknown state ({status:?})"),
            },
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Exited(c) => write!(f, "exited with status {c}"),
            Status::Signaled(n) => write!(f, "killed by signal {n}"),
            Status::Failed { message, .. } => write!(f, "{message}"),
        }
    }
}
