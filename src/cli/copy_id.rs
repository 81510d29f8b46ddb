//! `rcmd copy-id HOST[:PORT]`: lets this client's key in on a server, as ssh-copy-id
//! does: one connection authenticated with the server's token, over TLS with the server
//! pinned, appends the key's line to the server's authorized keys. From then on the key
//! is authentication enough.

use clap::Args;

use super::tls::ClientTlsArgs;
use super::token::TokenArgs;
use super::{init_logging, seconds, Failure};
use crate::client::{self, ClientConfig, Input, Output};
use crate::config::ConfigDir;
use crate::tls::authorized;
use crate::tls::Identity;
use crate::wire::Protocol;

#[derive(Debug, Args)]
pub(super) struct CopyIdArgs {
    /// The server: HOST or HOST:PORT (port 9000 unless given)
    #[arg(value_name = "HOST[:PORT]")]
    addr: String,

    #[command(flatten)]
    token: TokenArgs,

    #[command(flatten)]
    tls: ClientTlsArgs,

    /// Give up connecting after this many seconds
    #[arg(long, value_name = "SECS", value_parser = seconds, default_value = "30")]
    connect_timeout: std::time::Duration,
}

/// The shell script the server runs: appends `line` to its authorized keys unless the
/// key is there already. The file is the one the server reads (it tells its commands in
/// `RCMD_AUTHORIZED_KEYS`), else the default in its configuration directory; created
/// 0600 in a 0700 directory.
fn script(fingerprint: &str, line: &str) -> String {
    let line = shell_words::quote(line);
    format!(
        "set -e; umask 077; \
         f=\"${{RCMD_AUTHORIZED_KEYS:-${{RCMD_HOME:-${{XDG_CONFIG_HOME:-$HOME/.config}}/rcmd}}/authorized_keys}}\"; \
         mkdir -p \"$(dirname \"$f\")\"; \
         if [ -f \"$f\" ] && grep -q '^{fingerprint} ' \"$f\"; then \
         echo \"rcmd: the key was already in $f\" >&2; \
         else printf '%s\\n' {line} >> \"$f\"; echo \"rcmd: added the key to $f\" >&2; fi"
    )
}

pub(super) fn run(args: CopyIdArgs) -> Result<i32, Failure> {
    init_logging("rcmd=warn");
    let fail = |e: &dyn std::fmt::Display| Failure::new(e);
    if args.tls.plaintext() {
        return Err(fail(
            &"copy-id needs TLS: the key's line must reach the server pinned",
        ));
    }
    let (token, _) = args
        .token
        .for_client(std::env::var("RCMD_TOKEN").ok(), Protocol::Framed)
        .map_err(|e| fail(&e))?;
    if token.is_none() {
        return Err(fail(
            &"copy-id logs in once with the server's token: give it with --token-file FILE \
              or RCMD_TOKEN",
        ));
    }
    let dir = ConfigDir::locate().map_err(|e| fail(&e))?;
    let key_file = dir.client_key_file();
    if !key_file.exists() {
        return Err(fail(&format!(
            "no client key ({} does not exist): make one with `rcmd keygen` first",
            key_file.display()
        )));
    }
    let key = Identity::load(&key_file)
        .map_err(|e| fail(&e))?
        .fingerprint();
    let line = authorized::line(key, &super::keys::whoami());
    let tls = args
        .tls
        .setup(Protocol::Framed, true)
        .map_err(|e| fail(&e))?;
    let config = ClientConfig {
        token,
        tls,
        connect_timeout: Some(args.connect_timeout),
        ..ClientConfig::new(Protocol::Framed)
    };
    let input = Input::one(script(&key.to_string(), &line).into_bytes());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(&e))?;
    let result = runtime.block_on(client::run(
        &args.addr,
        &config,
        input,
        &mut Output::terminal(),
    ));
    runtime.shutdown_background();
    match result.map_err(|e| fail(&e))? {
        0 => {
            eprintln!(
                "rcmd: now try `rcmd client {}`: the key is authentication enough",
                args.addr
            );
            Ok(0)
        }
        code => Err(Failure::new(format!(
            "the server could not add the key (status {code})"
        ))),
    }
}
