//! A copy as the client runs it against one host: connect, ask, then send or receive.
//! The transfer itself is `copy`'s, which knows nothing of which end connected.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use tokio::net::TcpStream;

use super::{ClientConfig, ClientError};
use crate::copy::link::{Inbound, Outbound};
use crate::copy::plan::Plan;
use crate::copy::shared_sum::SharedSums;
use crate::copy::{receiver, sender, CopyError, Flags, Summary, Watch};
use crate::wire::transfer::{self, Transfer};

/// Which way the files go.
#[derive(Debug, Clone)]
pub enum Direction {
    /// Local `sources` into `dest` on the host.
    Upload { sources: Vec<PathBuf>, dest: Bytes },
    /// `sources` on the host (globs expanded there) into local `dest`.
    Download { sources: Vec<Bytes>, dest: PathBuf },
}

/// One copy to or from one host.
#[derive(Debug, Clone)]
pub struct Request {
    pub flags: Flags,
    pub direction: Direction,
    /// For an upload to many hosts: the files' hashing, shared between them.
    pub sums: Option<Arc<SharedSums>>,
}

/// Runs `request` on a connection made to `host`.
///
/// # Errors
/// Connecting, an older server, or the transfer failing as a whole; a failed file is
/// only counted in the [`Summary`] (and shown to `watch`).
pub async fn run_on(
    host: &str,
    stream: TcpStream,
    config: &ClientConfig,
    request: &Request,
    watch: &mut (dyn Watch + Send),
) -> Result<Summary, ClientError> {
    let conn = super::open_framed_on(host, stream, config).await?;
    if conn.version < transfer::VERSION {
        return Err(CopyError::OldPeer(conn.version).into());
    }
    Ok(transfer(conn, request, watch).await?)
}

/// The transfer on a connection that said hello.
async fn transfer(
    conn: super::FramedConnection,
    request: &Request,
    watch: &mut (dyn Watch + Send),
) -> Result<Summary, CopyError> {
    let mut inbound = Inbound::new(conn.reader);
    let mut outbound = Outbound::new(conn.writer, conn.codec).with_sendfile(conn.raw);
    let flags = request.flags;
    let summary = match &request.direction {
        Direction::Upload { sources, dest } => {
            let plan = Plan::new(sources, flags);
            outbound
                .queue(Transfer::Put {
                    flags,
                    dest: dest.clone(),
                })
                .await?;
            let sums = request.sums.as_deref();
            sender::send(plan, flags, sums, &mut inbound, &mut outbound, watch).await?
        }
        Direction::Download { sources, dest } => {
            outbound
                .send(Transfer::Get {
                    flags,
                    sources: sources.clone(),
                })
                .await?;
            // The server may send only what was asked for, not names of its choosing.
            let asked = crate::copy::plan::asked_names(sources);
            receiver::receive(dest, flags, asked, &mut inbound, &mut outbound, watch).await?
        }
    };
    let _ = outbound.close().await;
    Ok(summary)
}

/// [`run_on`] with the connection made here, within the configured timeout.
///
/// # Errors
/// As [`run_on`].
pub async fn run(
    addr: &str,
    config: &ClientConfig,
    request: &Request,
    watch: &mut (dyn Watch + Send),
) -> Result<Summary, ClientError> {
    let stream = super::connect(addr, config.connect_timeout).await?;
    run_on(
        &crate::wire::with_default_port(addr),
        stream,
        config,
        request,
        watch,
    )
    .await
}
