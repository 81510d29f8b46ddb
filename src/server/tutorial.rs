//! The tutorial's wire modes, server side: `classic`, `json-header` and `naive`.
//!
//! All three read a command as whatever one `recv(recv_size)` returns, exactly as the
//! tutorial's server does, so request boundaries are as unreliable as the tutorial's
//! (that is the point of `naive`, and what `classic` clients expect). They differ in the
//! reply:
//!
//! ```text
//! classic      pack(FMT, n) ‖ stderr ‖ stdout                      n = len(stderr)+len(stdout)
//! json-header  pack(FMT, len(h)) ‖ h ‖ stderr ‖ stdout            h = {"total_size": n, ...}
//! naive        stdout and stderr as the command produces them, nothing else
//! ```

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::ReadHalf;
use tokio::net::TcpStream;
use tracing::{debug, info};

use super::{ConnError, ServerConfig, Shutdown};
use crate::exec::{self, Event};
use crate::header::HeaderFormat;
use crate::spool::{Spool, MEMORY_LIMIT};
use crate::status::Status;
use crate::wire::{Protocol, Wire};

pub(super) async fn serve(
    mut stream: TcpStream,
    peer: SocketAddr,
    config: &ServerConfig,
    stop: &Shutdown,
) -> Result<(), ConnError> {
    let wire = config.wire;
    let (mut rd, mut wr) = stream.split();
    let mut buf = vec![0u8; wire.recv_size.max(1)];
    loop {
        // These modes have no way to say goodbye: on idleness or shutdown the
        // connection simply closes, as the tutorial's server would.
        let idle_at = config
            .limits
            .idle_timeout
            .map(|t| tokio::time::Instant::now() + t);
        let n = tokio::select! {
            n = rd.read(&mut buf) => n?,
            _ = crate::deadline::until(idle_at) => {
                info!(%peer, "closing idle connection");
                return Ok(());
            }
            _ = stop.drain.cancelled() => return Ok(()),
        };
        if n == 0 {
            return Ok(());
        }
        let line = &buf[..n];
        let command = String::from_utf8_lossy(line);
        let command = command.trim_end();
        debug!(%peer, command, "running");
        let outcome = match wire.protocol {
            Protocol::Naive => {
                run_into(line, &mut rd, config, stop, &mut Sink::Raw(&mut wr)).await?
            }
            _ => spool_reply(line, &mut rd, &mut wr, config, stop).await?,
        };
        match outcome {
            Some(status) => info!(%peer, command, "command ended: {status}"),
            None => {
                info!(%peer, command, "command killed: the client went away or the server shut down");
                return Ok(());
            }
        }
    }
}

/// Resolves when the peer has closed its side. Data waiting to be read (the next command,
/// sent early) is left in place: the tutorial's server reads it only after replying.
async fn peer_closed(rd: &mut ReadHalf<'_>) {
    let mut probe = [0u8; 1];
    match rd.peek(&mut probe).await {
        Ok(0) | Err(_) => {}
        Ok(_) => std::future::pending().await,
    }
}

/// Where a command's output goes while it runs.
enum Sink<'a, W> {
    /// Straight to the peer, as produced (naive).
    Raw(&'a mut W),
    /// Held until the command ends, so the reply's length is known (classic, json-header).
    /// Past `limit` bytes the reply could not be described anyway: collecting stops there,
    /// so an endless command cannot fill the disk.
    Spooled {
        stdout: &'a mut Spool,
        stderr: &'a mut Spool,
        limit: u64,
    },
}

impl<W: AsyncWrite + Unpin> Sink<'_, W> {
    /// Whether the output has outgrown what a reply can carry.
    fn full(&self) -> bool {
        match self {
            Sink::Raw(_) => false,
            Sink::Spooled {
                stdout,
                stderr,
                limit,
            } => stdout.len() + stderr.len() > *limit,
        }
    }

    async fn take(&mut self, event: Event) -> std::io::Result<()> {
        match (self, event) {
            (Sink::Raw(w), Event::Stdout(b) | Event::Stderr(b)) => w.write_all(&b).await,
            (Sink::Spooled { stdout, .. }, Event::Stdout(b)) => stdout.push(&b).await,
            (Sink::Spooled { stderr, .. }, Event::Stderr(b)) => stderr.push(&b).await,
            (_, Event::Done(_)) => Ok(()),
        }
    }
}

/// Runs the command, feeding its output to `sink`; `None` if the peer went away or the
/// grace period of a shutdown ran out first (the command is then killed as its runner is
/// dropped).
async fn run_into<W: AsyncWrite + Unpin>(
    line: &[u8],
    rd: &mut ReadHalf<'_>,
    config: &ServerConfig,
    stop: &Shutdown,
    sink: &mut Sink<'_, W>,
) -> Result<Option<Status>, ConnError> {
    let mut running = match exec::spawn(line, config.exec, config.limits.command_timeout) {
        Ok(r) => r,
        Err(status) => {
            sink.take(Event::Stderr(format!("{status}\n").into()))
                .await?;
            return Ok(Some(status));
        }
    };
    loop {
        let event = tokio::select! {
            e = running.next() => e?,
            _ = peer_closed(rd) => return Ok(None),
            _ = stop.kill.cancelled() => return Ok(None),
        };
        if let Event::Done(status) = event {
            return Ok(Some(status));
        }
        sink.take(event).await?;
        if sink.full() {
            // Returning drops the runner, which kills the command's group.
            return Ok(Some(Status::Failed {
                code: 1,
                message: "rcmd: output too large for the header; command killed".into(),
            }));
        }
    }
}

async fn spool_reply<W: AsyncWrite + Unpin>(
    line: &[u8],
    rd: &mut ReadHalf<'_>,
    wr: &mut W,
    config: &ServerConfig,
    stop: &Shutdown,
) -> Result<Option<Status>, ConnError> {
    let mut stdout = Spool::new(MEMORY_LIMIT);
    let mut stderr = Spool::new(MEMORY_LIMIT);
    let mut sink: Sink<'_, W> = Sink::Spooled {
        stdout: &mut stdout,
        stderr: &mut stderr,
        // json-header carries the size in the JSON, so any size can be described there.
        limit: match config.wire.protocol {
            Protocol::Classic => config.wire.header.max_len() as u64,
            _ => u64::MAX,
        },
    };
    let Some(status) = run_into(line, rd, config, stop, &mut sink).await? else {
        return Ok(None);
    };
    let wire = config.wire;
    let total = stdout.len() + stderr.len();
    let mut head = Vec::new();
    let fits = if wire.protocol == Protocol::JsonHeader {
        let json = json_header(stdout.len(), stderr.len(), status.exit_code());
        let fits = wire.header.pack_into(json.len() as i128, &mut head).is_ok();
        head.extend_from_slice(json.as_bytes());
        fits
    } else {
        wire.header.pack_into(i128::from(total), &mut head).is_ok()
    };
    if !fits {
        // A wrapped length would desynchronise the client for good; an explanation it
        // can print is the honest reply.
        let msg = too_large_message(wire.header, total);
        wr.write_all(&message_reply(&wire, &msg)).await?;
        return Ok(Some(status));
    }
    wr.write_all(&head).await?;
    stderr.write_to(wr).await?;
    stdout.write_to(wr).await?;
    Ok(Some(status))
}

/// The tutorial's header dictionary, plus what a richer client can use to split the
/// streams and report the exit status. Tutorial clients read only `total_size`.
fn json_header(stdout: u64, stderr: u64, exit_code: i32) -> String {
    serde_json::json!({
        "total_size": stdout + stderr,
        "stderr_size": stderr,
        "stdout_size": stdout,
        "exit_code": exit_code,
    })
    .to_string()
}

fn too_large_message(header: HeaderFormat, len: u64) -> String {
    format!(
        "rcmd: the reply is {len} bytes, more than header format '{header}' can describe \
         (at most {}); use a wider --header such as q\n",
        header.max_value()
    )
}

/// A reply carrying `msg` (as stderr) in place of a command's output, in `wire`'s mode,
/// so a client of that mode shows it. Cut to what the header can describe.
pub(super) fn message_reply(wire: &Wire, msg: &str) -> Vec<u8> {
    let header = wire.header;
    let mut out = Vec::new();
    match wire.protocol {
        Protocol::JsonHeader => {
            // Under 90 bytes of JSON: every header format can describe that (b holds 127).
            let json = json_header(0, msg.len() as u64, 255);
            if header.pack_into(json.len() as i128, &mut out).is_ok() {
                out.extend_from_slice(json.as_bytes());
                out.extend_from_slice(msg.as_bytes());
            }
        }
        Protocol::Naive => out.extend_from_slice(msg.as_bytes()),
        Protocol::Classic | Protocol::Framed => {
            let body = &msg.as_bytes()[..msg.len().min(header.max_len())];
            header
                .pack_into(body.len() as i128, &mut out)
                .expect("length cut to the header's maximum");
            out.extend_from_slice(body);
        }
    }
    out
}
