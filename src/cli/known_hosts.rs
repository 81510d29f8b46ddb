//! `rcmd known-hosts`: the servers this client trusts, listed or forgotten (as
//! `ssh-keygen -F` and `-R` do for ssh's known_hosts).

use clap::Args;

use super::Failure;
use crate::config::ConfigDir;
use crate::tls::known_hosts::KnownHosts;

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub(super) struct KnownHostsArgs {
    /// Print every server recorded: HOST:PORT and its fingerprint
    #[arg(long)]
    list: bool,

    /// Forget the server at HOST[:PORT] (port 9000 unless given), so the next connection
    /// asks about it again
    #[arg(long, value_name = "HOST[:PORT]")]
    remove: Option<String>,
}

pub(super) fn run(args: KnownHostsArgs) -> Result<i32, Failure> {
    let fail = |e: &dyn std::fmt::Display| Failure::new(e);
    let path = ConfigDir::locate()
        .map_err(|e| fail(&e))?
        .known_hosts_file();
    let mut known = KnownHosts::load(&path).map_err(|e| fail(&e))?;
    if args.list {
        for entry in known.entries() {
            println!("{} {}", entry.host, entry.fingerprint);
        }
        return Ok(0);
    }
    let host = crate::wire::with_default_port(args.remove.as_deref().unwrap_or_default());
    if !path.exists() {
        return Err(fail(&format!(
            "{host} is not in {} (no such file)",
            path.display()
        )));
    }
    match known.remove(&host).map_err(|e| fail(&e))? {
        0 => Err(fail(&format!("{host} is not in {}", path.display()))),
        n => {
            eprintln!(
                "rcmd: removed {host} from {} ({n} line{})",
                path.display(),
                if n == 1 { "" } else { "s" }
            );
            Ok(0)
        }
    }
}
