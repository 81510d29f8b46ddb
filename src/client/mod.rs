//! `rcmd client`: send command lines to a server and show what comes back.
//!
//! The remote stdout goes to our stdout and the remote stderr to our stderr, as they
//! arrive. The exit code mirrors the last command's status (as ssh does); any failure of
//! the connection or the protocol is a [`ClientError`], which the binary reports as 255.

mod framed;
pub mod input;
mod tutorial;

use std::fmt;
use std::io::{self, Write};
use std::time::Duration;

use tokio::net::TcpStream;

pub use input::Input;

use crate::auth::Token;
use crate::protocol::ProtocolError;
use crate::wire::{Protocol, Wire};

/// How long the naive client waits for a reply before saying it cannot tell why none came.
pub const NAIVE_WAIT: Duration = Duration::from_secs(1);

/// How long a tutorial-mode reply that has started may pause before the client gives up
/// and explains (those servers send a reply in one go, so a pause means a mismatch).
pub const STALL_WAIT: Duration = Duration::from_secs(5);

/// How the client talks to the server.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub wire: Wire,
    /// How long the naive mode waits for the first bytes of a reply.
    pub naive_wait: Duration,
    /// How long a classic or json-header reply may pause part-way (see [`STALL_WAIT`]).
    pub stall_timeout: Duration,
    /// Sent in the hello when the server requires one (framed mode).
    pub token: Option<Token>,
}

impl ClientConfig {
    /// Defaults for `protocol`.
    pub fn new(protocol: Protocol) -> ClientConfig {
        ClientConfig {
            wire: Wire::new(protocol),
            naive_wait: NAIVE_WAIT,
            stall_timeout: STALL_WAIT,
            token: None,
        }
    }
}

/// Why a client session failed (as opposed to a command failing, which is a status).
#[derive(Debug)]
pub enum ClientError {
    Connect {
        addr: String,
        source: io::Error,
    },
    Io(io::Error),
    Protocol(ProtocolError),
    /// The server reported an error and closed the connection.
    Server(String),
    /// The server closed the connection with replies outstanding.
    Closed {
        unanswered: usize,
    },
    /// The request cannot be sent in this mode or with this header.
    Usage(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Connect { addr, source } => {
                write!(f, "cannot connect to {addr}: {source}")
            }
            ClientError::Io(e) => write!(f, "connection failed: {e}"),
            ClientError::Protocol(e) => write!(f, "protocol error: {e}"),
            ClientError::Server(m) => write!(f, "server: {m}"),
            ClientError::Closed { unanswered } => write!(
                f,
                "the server closed the connection with {unanswered} command(s) unanswered"
            ),
            ClientError::Usage(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> Self {
        ClientError::Io(e)
    }
}

impl From<ProtocolError> for ClientError {
    fn from(e: ProtocolError) -> Self {
        ClientError::Protocol(e)
    }
}

/// Where remote output is shown. Each write is flushed so output appears as it arrives.
pub struct Output<O: Write, E: Write> {
    pub stdout: O,
    pub stderr: E,
}

impl<O: Write, E: Write> Output<O, E> {
    fn out(&mut self, data: &[u8]) -> io::Result<()> {
        self.stdout.write_all(data)?;
        self.stdout.flush()
    }

    fn err(&mut self, data: &[u8]) -> io::Result<()> {
        self.stderr.write_all(data)?;
        self.stderr.flush()
    }
}

impl Output<io::Stdout, io::Stderr> {
    /// The process's own stdout and stderr.
    pub fn terminal() -> Self {
        Output {
            stdout: io::stdout(),
            stderr: io::stderr(),
        }
    }
}

/// Connects to `addr` (`host:port`, `[v6]:port`) and runs every line of `input`.
/// Returns the exit code of the last command (0 if there was none).
///
/// # Errors
/// A [`ClientError`] when connecting, the protocol or the server fails.
pub async fn run<O: Write, E: Write>(
    addr: &str,
    config: &ClientConfig,
    input: Input,
    out: &mut Output<O, E>,
) -> Result<i32, ClientError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|source| ClientError::Connect {
            addr: addr.to_string(),
            source,
        })?;
    // Requests are small and we wait for their replies: do not let Nagle hold them back.
    stream.set_nodelay(true)?;
    match config.wire.protocol {
        Protocol::Framed => framed::run(stream, config, input, out).await,
        _ => tutorial::run(stream, config, input, out).await,
    }
}
