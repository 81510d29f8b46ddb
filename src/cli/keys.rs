//! `rcmd keygen` and `rcmd fingerprint`: make a client key, show an identity's fingerprint.

use std::path::PathBuf;

use clap::Args;

use super::Failure;
use crate::config::ConfigDir;
use crate::tls::identity::fingerprint_file;
use crate::tls::Identity;

#[derive(Debug, Args)]
pub(super) struct KeygenArgs {
    /// Where to write the key [default: client.pem in rcmd's configuration directory,
    /// which `rcmd client` presents]
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(super) struct FingerprintArgs {
    /// An identity or certificate file (PEM) [default: this machine's server identity,
    /// identity.pem in rcmd's configuration directory]
    #[arg(value_name = "FILE")]
    file: Option<PathBuf>,
}

pub(super) fn keygen(args: KeygenArgs) -> Result<i32, Failure> {
    let fail = |e: &dyn std::fmt::Display| Failure::new(e);
    let path = match args.output {
        Some(path) => path,
        None => {
            let dir = ConfigDir::locate().map_err(|e| fail(&e))?;
            dir.create().map_err(|e| fail(&e))?;
            dir.client_key_file()
        }
    };
    let (id, created) = Identity::load_or_create(&path, "rcmd client").map_err(|e| fail(&e))?;
    if created {
        eprintln!("rcmd: wrote the client key {}", path.display());
    } else {
        eprintln!("rcmd: {} already exists; kept it", path.display());
    }
    // The line a server's authorized_keys holds (`rcmd copy-id HOST` adds it there).
    println!(
        "{}",
        crate::tls::authorized::line(id.fingerprint(), &whoami())
    );
    Ok(0)
}

pub(super) fn fingerprint(args: FingerprintArgs) -> Result<i32, Failure> {
    let fail = |e: &dyn std::fmt::Display| Failure::new(e);
    let path = match args.file {
        Some(path) => path,
        None => {
            let path = ConfigDir::locate().map_err(|e| fail(&e))?.identity_file();
            if !path.exists() {
                return Err(fail(&format!(
                    "no server identity yet ({} does not exist): `rcmd server` makes it on \
                     first start",
                    path.display()
                )));
            }
            path
        }
    };
    println!("{}", fingerprint_file(&path).map_err(|e| fail(&e))?);
    Ok(0)
}

/// `user@host`, as a comment naming the key.
pub(super) fn whoami() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "user".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into());
    format!("{user}@{host}")
}
