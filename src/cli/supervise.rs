//! `rcmd supervise`: not for people. The server runs every command under it; see
//! [`crate::exec::supervisor`] for why.

use std::ffi::OsString;

use clap::Args;

use super::Failure;
use crate::exec::supervisor::{self, Plan};

#[derive(Debug, Args)]
pub(super) struct SuperviseArgs {
    /// Let background processes live on when the command ends
    #[arg(long)]
    detach: bool,

    /// The command's stdin is a terminal to make its controlling terminal
    #[arg(long)]
    tty: bool,

    /// The program and its arguments
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<OsString>,
}

pub(super) fn run(args: SuperviseArgs) -> Result<i32, Failure> {
    let mut words = args.command.into_iter();
    let program = words.next().expect("clap requires a program");
    Ok(supervisor::run(&Plan {
        detach: args.detach,
        tty: args.tty,
        program,
        args: words.collect(),
    }))
}
