//! `rcmd completions`: tab completion for bash, zsh, fish, elvish and PowerShell.
//!
//! The script each shell sources is a few lines that ask `rcmd` itself what may come next
//! (clap_complete's dynamic completion): subcommands and flags from the same definitions
//! as `--help`, and host names from the files rcmd reads, so completion knows the hosts
//! this user has already trusted or grouped, as a static script cannot.

use std::ffi::OsStr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use clap_complete::engine::CompletionCandidate;
use clap_complete::env::{Bash, Elvish, EnvCompleter, Fish, Powershell, Zsh};

use super::Failure;
use crate::config::ConfigDir;

/// The variable that turns a run of rcmd into a completion request. rcmd's own name, not
/// clap's usual `COMPLETE`, so that a `COMPLETE` set for something else cannot turn every
/// rcmd command into a completion.
const VAR: &str = "RCMD_COMPLETE";

/// The program the scripts run to complete: found on `PATH`, where installing puts it, so
/// a script still works after rcmd moves or is upgraded.
const PROGRAM: &str = "rcmd";

#[derive(Debug, Args)]
pub(super) struct CompletionsArgs {
    /// The shell to print the script for
    #[arg(value_enum, required_unless_present = "dir")]
    shell: Option<Shell>,

    /// Write every shell's script into DIR instead, each under the name that shell looks
    /// for (rcmd.bash, _rcmd, rcmd.fish, rcmd.elv, _rcmd.ps1); DIR is created if need be
    #[arg(long, value_name = "DIR", conflicts_with = "shell")]
    dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Shell {
    Bash,
    Zsh,
    Fish,
    Elvish,
    Powershell,
}

impl Shell {
    fn completer(self) -> &'static dyn EnvCompleter {
        match self {
            Shell::Bash => &Bash,
            Shell::Zsh => &Zsh,
            Shell::Fish => &Fish,
            Shell::Elvish => &Elvish,
            Shell::Powershell => &Powershell,
        }
    }

    /// The file name the shell (or its packaging convention) expects the script under.
    fn file_name(self) -> &'static str {
        match self {
            Shell::Bash => "rcmd.bash",
            Shell::Zsh => "_rcmd",
            Shell::Fish => "rcmd.fish",
            Shell::Elvish => "rcmd.elv",
            Shell::Powershell => "_rcmd.ps1",
        }
    }

    fn script(self) -> Vec<u8> {
        let mut out = Vec::new();
        self.completer()
            .write_registration(VAR, PROGRAM, PROGRAM, PROGRAM, &mut out)
            .expect("writing to memory cannot fail");
        out
    }
}

pub(super) fn run(args: CompletionsArgs) -> Result<i32, Failure> {
    let fail = |e: &dyn std::fmt::Display| Failure::new(e);
    if let Some(dir) = args.dir {
        std::fs::create_dir_all(&dir)
            .map_err(|e| fail(&format!("cannot create {}: {e}", dir.display())))?;
        for shell in Shell::value_variants() {
            let path = dir.join(shell.file_name());
            std::fs::write(&path, shell.script())
                .map_err(|e| fail(&format!("cannot write {}: {e}", path.display())))?;
            println!("{}", path.display());
        }
        return Ok(0);
    }
    let shell = args.shell.expect("clap requires a shell without --dir");
    std::io::Write::write_all(&mut std::io::stdout(), &shell.script()).map_err(|e| fail(&e))?;
    Ok(0)
}

/// Answers a completion request and exits, when the scripts above started this process
/// for one; otherwise returns at once.
pub(super) fn complete_if_asked() {
    clap_complete::CompleteEnv::with_factory(super::command)
        .var(VAR)
        .bin(PROGRAM)
        .completer(PROGRAM)
        .complete();
}

/// Candidates for a server address: the aliases in the per-host settings file and the
/// hosts in `known_hosts`.
pub(super) fn host_candidates() -> Vec<CompletionCandidate> {
    let Ok(dir) = ConfigDir::locate() else {
        return Vec::new();
    };
    hosts(&dir)
        .into_iter()
        .map(|(h, help)| CompletionCandidate::new(h).help(Some(help.into())))
        .collect()
}

/// Candidates for the last entry of a comma-separated host list (`-H`, `-x`): the hosts
/// in `known_hosts` and `@GROUP` for each group in the hosts file, after the entries
/// already typed.
pub(super) fn host_list_candidates(current: &OsStr) -> Vec<CompletionCandidate> {
    let Some(current) = current.to_str() else {
        return Vec::new();
    };
    let Ok(dir) = ConfigDir::locate() else {
        return Vec::new();
    };
    let (done, last) = current
        .rsplit_once(',')
        .map_or(("", current), |(done, last)| (done, last));
    let done = if done.is_empty() {
        String::new()
    } else {
        format!("{done},")
    };
    let groups = crate::fanout::hosts::group_names(&dir.path().join("hosts"));
    let groups = groups.into_iter().map(|g| (format!("@{g}"), "group"));
    hosts(&dir)
        .into_iter()
        .chain(groups)
        .filter(|(name, _)| name.starts_with(last))
        .map(|(name, help)| {
            CompletionCandidate::new(format!("{done}{name}")).help(Some(help.into()))
        })
        .collect()
}

/// Every host a user may name, with what it is: the aliases of the per-host settings
/// file, then the servers in `known_hosts`. An unreadable file offers nothing.
fn hosts(dir: &ConfigDir) -> Vec<(String, &'static str)> {
    let aliases = crate::settings::Settings::load(&dir.settings_file())
        .map(|s| s.aliases())
        .unwrap_or_default();
    let aliases = aliases.into_iter().map(|a| (a, "configured host"));
    aliases
        .chain(known_hosts(dir).into_iter().map(|h| (h, "known host")))
        .collect()
}

/// The servers in `known_hosts`, as a user types them: without the port when it is the
/// default one. An unreadable file offers nothing: completion never prints errors.
fn known_hosts(dir: &ConfigDir) -> Vec<String> {
    let Ok(known) = crate::tls::known_hosts::KnownHosts::load(&dir.known_hosts_file()) else {
        return Vec::new();
    };
    let mut names: Vec<String> = known
        .entries()
        .iter()
        .map(|e| shorter_address(&e.host))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// `host:9000` as `host` (the port clients assume), any other port kept.
fn shorter_address(host: &str) -> String {
    let default = format!(":{}", crate::wire::DEFAULT_PORT);
    host.strip_suffix(&default).unwrap_or(host).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_port_is_left_out() {
        assert_eq!(shorter_address("web1:9000"), "web1");
        assert_eq!(shorter_address("web1:9001"), "web1:9001");
        assert_eq!(shorter_address("[::1]:9000"), "[::1]");
    }

    #[test]
    fn every_shell_has_a_script_naming_the_variable() {
        for shell in Shell::value_variants() {
            let script = String::from_utf8(shell.script()).unwrap();
            assert!(script.contains(VAR), "{shell:?}: {script}");
        }
    }
}
