//! Running one command on many hosts at once, as pdsh and bssh do: host lists with
//! ranges, output lines prefixed by host, grouped, as JSON or in files, and an exit status
//! and summary that say which hosts failed.
//!
//! ```text
//! "-H LIST" ─▶ hosts (targets) ─▶ runner (up to N at once, each through crate::client)
//!                                   ├▶ output (per-host writers)
//!                                   └▶ outcome (each host's result) ─▶ report / collate
//! ```

pub mod collate;
pub mod hosts;
pub mod kept;
pub mod outcome;
pub mod outdir;
pub mod output;
pub mod report;
mod runner;

pub use hosts::{compact, Target};
pub use outcome::{HostResult, Outcome};
pub use runner::{run, run_job, Clients, Job, Mode, Options};
