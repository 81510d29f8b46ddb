//! `rcmd man`: the manual pages, made from the same definitions as `--help`, so the two
//! cannot drift apart.

use std::path::PathBuf;

use clap::Args;

use super::Failure;

#[derive(Debug, Args)]
pub(super) struct ManArgs {
    /// The subcommand whose page to print, as typed after rcmd (`server`, `demo sticky`)
    /// [default: rcmd's own page]
    #[arg(value_name = "COMMAND")]
    command: Vec<String>,

    /// Write every page into DIR instead (rcmd.1, rcmd-server.1, ...), for packaging or
    /// `man -M`; DIR is created if need be
    #[arg(long, value_name = "DIR", conflicts_with = "command")]
    dir: Option<PathBuf>,
}

pub(super) fn run(args: ManArgs) -> Result<i32, Failure> {
    let fail = |e: &dyn std::fmt::Display| Failure::new(e);
    let pages = pages(super::command());
    if let Some(dir) = args.dir {
        std::fs::create_dir_all(&dir)
            .map_err(|e| fail(&format!("cannot create {}: {e}", dir.display())))?;
        for (_, page) in pages {
            let path = manual(page)
                .generate_to(&dir)
                .map_err(|e| fail(&format!("cannot write into {}: {e}", dir.display())))?;
            println!("{}", path.display());
        }
        return Ok(0);
    }
    let Some((_, page)) = pages.into_iter().find(|(path, _)| *path == args.command) else {
        return Err(fail(&format!(
            "no manual page for `rcmd {}`: it is not a subcommand (see rcmd --help)",
            args.command.join(" ")
        )));
    };
    let mut out = Vec::new();
    manual(page).render(&mut out).map_err(|e| fail(&e))?;
    std::io::Write::write_all(&mut std::io::stdout(), &out).map_err(|e| fail(&e))?;
    Ok(0)
}

/// One page, its footer naming rcmd and its version (clap's default names the subcommand).
fn manual(page: clap::Command) -> clap_mangen::Man {
    clap_mangen::Man::new(page)
        .source(format!("rcmd {}", env!("CARGO_PKG_VERSION")))
        .manual("rcmd manual")
}

/// Every page: rcmd's own and one per visible subcommand at any depth, each with the
/// words that name it after `rcmd`.
fn pages(mut cmd: clap::Command) -> Vec<(Vec<String>, clap::Command)> {
    // Built, so each subcommand knows its full name (`rcmd-demo-sticky`) for its title;
    // clap's own `help` subcommand has no page, as in clap_mangen::generate_to.
    cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let mut out = Vec::new();
    let mut pending = vec![(Vec::new(), cmd)];
    while let Some((path, cmd)) = pending.pop() {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            let mut sub_path = path.clone();
            sub_path.push(sub.get_name().to_string());
            pending.push((sub_path, sub.clone()));
        }
        out.push((path, cmd));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}
