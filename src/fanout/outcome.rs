//! What each host did: the results the runner produces and the report reads.

/// How one host ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The command ran; its exit code (128+N for signal N).
    Exited(i32),
    /// No connection could be made.
    Unreachable(String),
    /// rcmd itself failed with this host: protocol, server refusal, timeout, local files.
    Failed(String),
    /// Stopped by `-k` after another host failed.
    Interrupted,
    /// Never started, because of `-k`.
    NotStarted,
}

impl Outcome {
    /// Anything but a command that exited 0.
    pub fn is_failure(&self) -> bool {
        *self != Outcome::Exited(0)
    }
}

/// What one host did.
#[derive(Debug)]
pub struct HostResult {
    /// The host as shown in output (see [`display_names`](super::hosts::display_names)).
    pub name: String,
    pub outcome: Outcome,
    pub seconds: f64,
    /// Output kept until the host is done (`--collate`, `--json`); empty otherwise.
    pub stdout: super::kept::Kept,
    pub stderr: super::kept::Kept,
}
