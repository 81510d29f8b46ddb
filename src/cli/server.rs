//! `rcmd server`.

use clap::Args;

use super::{init_logging, Failure, WireArgs};
use crate::exec::ExecMode;
use crate::server::{self, ServerConfig};

/// Exit code when the server cannot start.
const SERVER_FAILED: i32 = 1;

#[derive(Debug, Args)]
pub(super) struct ServerArgs {
    /// Address to listen on
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9000")]
    listen: String,

    #[command(flatten)]
    wire: WireArgs,

    /// Run each command line without a shell: split it into words (shell quoting rules)
    /// and start the program directly
    #[arg(long)]
    exec: bool,
}

pub(super) fn run(args: ServerArgs) -> Result<i32, Failure> {
    init_logging("rcmd=info");
    let config = ServerConfig {
        wire: args.wire.wire(),
        exec: if args.exec {
            ExecMode::Direct
        } else {
            ExecMode::Shell
        },
    };
    let runtime = tokio::runtime::Runtime::new().map_err(|e| Failure::new(SERVER_FAILED, e))?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .map_err(|e| {
                Failure::new(
                    SERVER_FAILED,
                    format!("cannot listen on {}: {e}", args.listen),
                )
            })?;
        let local = listener
            .local_addr()
            .map_err(|e| Failure::new(SERVER_FAILED, e))?;
        eprintln!(
            "rcmd server listening on {local} (protocol {}, header {})",
            config.wire.protocol.name(),
            config.wire.header
        );
        server::serve(listener, config, shutdown_signal())
            .await
            .map_err(|e| Failure::new(SERVER_FAILED, e))?;
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
