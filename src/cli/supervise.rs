//! `rcmd supervise`: not for people. The server starts it once, as the helper that forks
//! a supervisor for every command; see [`crate::exec::helper`] for why.

use clap::Args;

use super::Failure;

#[derive(Debug, Args)]
pub(super) struct SuperviseArgs {}

pub(super) fn run(_args: SuperviseArgs) -> Result<i32, Failure> {
    Ok(crate::exec::helper::serve())
}
