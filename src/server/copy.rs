//! `rcmd cp` on the server: a connection whose first request is a copy becomes one. Paths
//! are taken from the server's `--workdir` (by default its user's home), as commands run.

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio_util::codec::FramedRead;
use tracing::{info, warn};

use super::{ConnError, ServerConfig, Shutdown};
use crate::copy::link::{Inbound, Outbound};
use crate::copy::plan::{self, Plan};
use crate::copy::{receiver, sender, CopyError, Watch};
use crate::printable::printable;
use crate::wire::message::ServerCodec;
use crate::wire::transfer::Transfer;

/// Failures go to the server's log, one line each.
struct Log(SocketAddr);

impl Watch for Log {
    fn failed(&mut self, path: &[u8], message: &str) {
        info!(peer = %self.0, path = %printable(path), "copy: {}", printable(message.as_bytes()));
    }
}

/// Serves the copy `request` on the connection.
pub(super) async fn serve<S: AsyncRead + AsyncWrite>(
    reader: FramedRead<ReadHalf<S>, ServerCodec>,
    (socket, codec, raw): (WriteHalf<S>, ServerCodec, Option<crate::splice::Socket>),
    request: Transfer,
    peer: SocketAddr,
    config: &ServerConfig,
    stop: &Shutdown,
) -> Result<(), ConnError> {
    let inbound = Inbound::new(reader);
    // A receiver that stops reading is given up as a command's client would be.
    let mut outbound = Outbound::new(socket, codec)
        .with_sendfile(raw)
        .with_stall_limit(config.limits.idle_timeout);
    let base = config.workdir.clone();
    let mut log = Log(peer);
    let copy = async {
        match request {
            Transfer::Put { flags, dest } => {
                let dest = within(base.as_deref(), OsStr::from_bytes(&dest));
                info!(%peer, dest = %printable(dest.as_os_str().as_bytes()), "copy: receiving");
                let mut inbound = inbound.with_idle(config.limits.idle_timeout);
                receiver::receive(&dest, flags, None, &mut inbound, &mut outbound, &mut log).await
            }
            Transfer::Get { flags, sources } => {
                let paths: Vec<PathBuf> = sources
                    .iter()
                    .flat_map(|s| plan::expand(s, base.as_deref()))
                    .collect();
                info!(%peer, sources = paths.len(), "copy: sending");
                let plan = Plan::new_under(&paths, base.as_deref(), flags);
                // Not `with_idle`: a receiver says nothing while a large file streams
                // to it. The sender bounds the waits on it by the stall limit instead.
                let mut inbound = inbound;
                sender::send(plan, flags, None, &mut inbound, &mut outbound, &mut log).await
            }
            other => Err(CopyError::Refused(format!(
                "{other:?} before a copy request"
            ))),
        }
    };
    let result = tokio::select! {
        r = copy => r,
        _ = stop.kill.cancelled() => return Ok(()),
    };
    match result {
        Ok(summary) => {
            info!(%peer, written = summary.written, skipped = summary.skipped,
                  failed = summary.failed, "copy ended");
            let _ = outbound.close().await;
            Ok(())
        }
        Err(CopyError::Io(e)) => Err(ConnError::Io(e)),
        Err(CopyError::Protocol(e)) => Err(ConnError::Protocol(e)),
        Err(e) => {
            warn!(%peer, "copy failed: {e}");
            Err(ConnError::Refused(e.to_string()))
        }
    }
}

/// `path` taken from `base` when relative; `base` itself when empty.
fn within(base: Option<&std::path::Path>, path: &OsStr) -> PathBuf {
    let mut p = base.map(PathBuf::from).unwrap_or_default();
    if path.is_empty() {
        if p.as_os_str().is_empty() {
            p.push(".");
        }
        // A trailing slash: the destination must be a directory.
        let mut s = p.into_os_string();
        s.push("/");
        return PathBuf::from(s);
    }
    p.push(path);
    p
}
