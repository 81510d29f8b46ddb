//! `rcmd server`: accept connections and run the commands they send.
//!
//! The accept loop only hands each connection to the handler for the configured
//! [`Protocol`]; handlers never see another connection, so a bad peer can only end its own.

mod framed;
mod tutorial;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tracing::{info, warn};

use crate::exec::ExecMode;
use crate::protocol::ProtocolError;
use crate::wire::{Protocol, Wire};

/// Why a connection ended early. Only logged: it never affects another connection.
#[derive(Debug)]
pub(crate) enum ConnError {
    Protocol(ProtocolError),
    Io(std::io::Error),
    /// We refused the peer, and told it why where the mode allows.
    Refused(String),
}

impl std::fmt::Display for ConnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnError::Protocol(e) => write!(f, "{e}"),
            ConnError::Io(e) => write!(f, "{e}"),
            ConnError::Refused(why) => write!(f, "refused: {why}"),
        }
    }
}

impl ConnError {
    /// The peer hung up (reset, or closed with our writes pending).
    fn is_hang_up(&self) -> bool {
        use crate::codec::FrameError;
        use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
        let io = match self {
            ConnError::Io(e) | ConnError::Protocol(ProtocolError::Frame(FrameError::Io(e))) => e,
            _ => return false,
        };
        matches!(io.kind(), ConnectionReset | BrokenPipe | ConnectionAborted)
    }
}

impl From<ProtocolError> for ConnError {
    fn from(e: ProtocolError) -> Self {
        ConnError::Protocol(e)
    }
}

impl From<std::io::Error> for ConnError {
    fn from(e: std::io::Error) -> Self {
        ConnError::Io(e)
    }
}

/// How the server behaves; shared by all connections.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub wire: Wire,
    pub exec: ExecMode,
}

impl ServerConfig {
    /// Defaults for `protocol`: `sh -c`, the mode's header, 1 MiB frames.
    pub fn new(protocol: Protocol) -> ServerConfig {
        ServerConfig {
            wire: Wire::new(protocol),
            exec: ExecMode::Shell,
        }
    }
}

/// Serves connections from `listener` until `shutdown` completes.
///
/// # Errors
/// Never for a single connection's failure (that is logged and the connection closed);
/// only if the listener itself cannot be used.
pub async fn serve(
    listener: TcpListener,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let config = Arc::new(config);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let config = Arc::clone(&config);
                tokio::spawn(async move { handle(stream, peer, &config).await });
            }
            Err(e) => {
                // Out of file descriptors or a connection reset before accept: keep going,
                // but do not spin while the condition lasts.
                warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    Ok(())
}

async fn handle(stream: TcpStream, peer: SocketAddr, config: &ServerConfig) {
    // Replies are written as whole frames; waiting to coalesce them only adds latency.
    let _ = stream.set_nodelay(true);
    info!(%peer, protocol = config.wire.protocol.name(), "connection opened");
    let result = match config.wire.protocol {
        Protocol::Framed => framed::serve(stream, peer, config).await,
        Protocol::Classic | Protocol::JsonHeader | Protocol::Naive => {
            tutorial::serve(stream, peer, config).await
        }
    };
    match result {
        Ok(()) => info!(%peer, "connection closed"),
        // A peer hanging up with replies unread is a normal way to leave, not a fault.
        Err(e) if e.is_hang_up() => info!(%peer, "connection closed by peer: {e}"),
        Err(e) => warn!(%peer, "connection closed: {e}"),
    }
}
