//! `rcmd server`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{init_logging, Failure, WireArgs};
use crate::auth::{check_exposure, Token};
use crate::exec::ExecMode;
use crate::server::{self, Limits, ServerConfig};

/// Exit code when the server cannot start.
const SERVER_FAILED: i32 = 1;

#[derive(Debug, Args)]
pub(super) struct ServerArgs {
    /// Address to listen on; anything but loopback needs a token
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9000")]
    listen: String,

    #[command(flatten)]
    wire: WireArgs,

    /// Run each command line without a shell: split it into words (shell quoting rules)
    /// and start the program directly
    #[arg(long)]
    exec: bool,

    /// Token clients must present (framed mode). Visible to other users in `ps`:
    /// prefer --token-file or RCMD_TOKEN
    #[arg(long, value_name = "TOKEN", conflicts_with = "token_file")]
    token: Option<String>,

    /// File holding the token (a trailing newline is ignored)
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,

    /// Listen beyond loopback without a token. Anyone who can reach the port can run
    /// any command as this user
    #[arg(long)]
    allow_unauthenticated: bool,

    /// Most connections served at once; more are refused with a message
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_conns)]
    max_conns: usize,

    /// Kill a command (its whole process group) after this many seconds; the client exits 124
    #[arg(long, value_name = "SECS", value_parser = seconds)]
    timeout: Option<Duration>,

    /// Close a connection that sends nothing for this long while no command runs (0: never)
    #[arg(long, value_name = "SECS", value_parser = seconds, default_value = "600")]
    idle_timeout: Duration,

    /// Seconds a new connection has to send its hello and token
    #[arg(long, value_name = "SECS", value_parser = seconds, default_value = "10")]
    auth_timeout: Duration,

    /// On SIGINT or SIGTERM, seconds running commands get to finish before they are killed
    #[arg(long, value_name = "SECS", value_parser = seconds, default_value = "10")]
    grace: Duration,

    /// Most output one reply may collect in classic and json-header mode, which must know
    /// a reply's length before sending it; past it the command is killed and the client
    /// told why. Classic is also bound by what --header can describe
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().max_spool)]
    max_spool: u64,
}

/// Parses a number of seconds, fractions allowed.
fn seconds(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .and_then(|v| Duration::try_from_secs_f64(v).ok())
        .ok_or_else(|| format!("{s:?} is not a number of seconds"))
}

pub(super) fn run(args: ServerArgs) -> Result<i32, Failure> {
    init_logging("rcmd=info");
    let fail = |e: &dyn std::fmt::Display| Failure::new(SERVER_FAILED, e);
    let token = Token::from_sources(
        args.token.as_deref(),
        args.token_file.as_deref(),
        std::env::var("RCMD_TOKEN").ok(),
    )
    .map_err(|e| fail(&e))?;
    let config = ServerConfig {
        wire: args.wire.wire(),
        exec: if args.exec {
            ExecMode::Direct
        } else {
            ExecMode::Shell
        },
        token,
        limits: Limits {
            max_conns: args.max_conns.max(1),
            command_timeout: args.timeout,
            idle_timeout: Some(args.idle_timeout).filter(|d| !d.is_zero()),
            auth_timeout: args.auth_timeout,
            grace: args.grace,
            max_spool: args.max_spool,
        },
    };
    let runtime = tokio::runtime::Runtime::new().map_err(|e| fail(&e))?;
    runtime.block_on(async {
        // Decide on exposure before binding anything: a refused address is never opened.
        let addrs: Vec<_> = tokio::net::lookup_host(&args.listen)
            .await
            .map_err(|e| fail(&format!("cannot resolve {}: {e}", args.listen)))?
            .collect();
        let warning = check_exposure(
            &addrs,
            config.wire.protocol,
            config.token.is_some(),
            args.allow_unauthenticated,
        )
        .map_err(|e| fail(&e))?;
        let listener = tokio::net::TcpListener::bind(&addrs[..])
            .await
            .map_err(|e| fail(&format!("cannot listen on {}: {e}", args.listen)))?;
        let local = listener.local_addr().map_err(|e| fail(&e))?;
        if let Some(warning) = warning {
            eprintln!("rcmd: {warning}");
        }
        eprintln!(
            "rcmd server listening on {local} (protocol {}, header {}{})",
            config.wire.protocol.name(),
            config.wire.header,
            if config.token.is_some() {
                ", token required"
            } else {
                ""
            }
        );
        server::serve(listener, config, shutdown_signal())
            .await
            .map_err(|e| fail(&e))?;
        Ok(0)
    })
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
