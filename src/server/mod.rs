//! `rcmd server`: accept connections and run the commands they send.
//!
//! The accept loop only admits connections (a few unauthenticated ones per source, then up
//! to `max_conns` authenticated ones: see `admission`) and hands each to the handler for the
//! configured [`Protocol`]; handlers never see another connection, so a bad peer can only
//! end its own. Shutdown comes in two stages, both announced through
//! [`Shutdown`]: *drain* (stop taking commands, let running ones finish) and, once the
//! grace period is over, *kill*.

mod admission;
mod copy;
mod env;
mod framed;
mod guard;
mod local_peer;
mod outbox;
mod spool;
mod tutorial;

pub use guard::Backoff;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use self::admission::Admission;
use crate::auth::Token;
use crate::exec::{ExecMode, Launcher};
use crate::printable::printable;
use crate::wire::message::ProtocolError;
use crate::wire::{Protocol, Wire};

/// Limits that keep one client, or many, from exhausting the server.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Authenticated connections served at once; more are refused with a message.
    pub max_conns: usize,
    /// Connections still authenticating, from one source (IPv4 address or IPv6 /64).
    pub max_unauthenticated_per_source: usize,
    /// Connections still authenticating, in all.
    pub max_unauthenticated: usize,
    /// Connections from one source waiting, unread, for one of its places to authenticate
    /// in; more are refused with a message.
    pub max_queued_per_source: usize,
    /// Connections waiting for a place, in all; past it a newcomer takes the place in the
    /// queue of the oldest from the source with the most waiting.
    pub max_queued: usize,
    /// Count a peer on this machine as the local user that owns its socket (`true`), or
    /// by its loopback address as a remote peer is counted (for tests that stand in for
    /// remote addresses with 127.x ones).
    pub local_peers_by_user: bool,
    /// How long one command may run before its process group is killed.
    pub command_timeout: Option<Duration>,
    /// How long a connection may send nothing (while no command runs) before it is closed.
    pub idle_timeout: Option<Duration>,
    /// How long a new connection has to complete the handshake (and authenticate).
    pub auth_timeout: Duration,
    /// On shutdown, how long running commands get to finish before they are killed.
    pub grace: Duration,
    /// Most output one reply collects in `classic` and `json-header` (which must know its
    /// length before sending); past it the command is killed and the reply says so.
    pub max_spool: u64,
    /// How failed authentications are slowed and logged, per source.
    pub backoff: Backoff,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_conns: 256,
            max_unauthenticated_per_source: 8,
            max_unauthenticated: 64,
            max_queued_per_source: 128,
            max_queued: 256,
            local_peers_by_user: true,
            command_timeout: None,
            idle_timeout: Some(Duration::from_secs(600)),
            auth_timeout: Duration::from_secs(10),
            grace: Duration::from_secs(10),
            max_spool: 1 << 30,
            backoff: Backoff::default(),
        }
    }
}

/// How the server behaves; shared by all connections.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub wire: Wire,
    pub exec: ExecMode,
    /// The token clients must present (framed mode only).
    pub token: Option<Token>,
    pub limits: Limits,
    /// Starts every command under a supervisor, through a helper run from the `rcmd`
    /// executable (see [`crate::exec::helper`]). Without one only the command's process
    /// group is killed when it ends.
    pub supervisor: Option<crate::exec::Spawner>,
    /// Let background processes outlive a command that ended normally, as ssh does.
    pub allow_detach: bool,
    /// Where commands run (a client's `--cwd` is relative to it); `None`: the server's own
    /// working directory.
    pub workdir: Option<PathBuf>,
    /// Names of environment variables a client may set, with `*` and `?` wildcards.
    pub accept_env: Vec<String>,
    /// Highest framed protocol version offered (a lower one imitates an older server).
    pub version: u8,
    /// Show every frame on stderr as it passes (`--trace`).
    pub trace: bool,
    /// TLS for the framed mode; `None`: the framed wire in the clear (`--plaintext`).
    pub tls: Option<Arc<crate::tls::ServerTls>>,
    /// Splice large output from a command's pipe straight into the socket (framed mode
    /// in the clear only); `false` copies it through memory (`--no-splice`).
    pub splice: bool,
    /// Output is spliced only when at least this many bytes wait in the pipe: below it,
    /// one read and one vectored write (head and payload together) cost less than a
    /// count, a head and a splice (see BENCHMARKS.md for the crossover).
    pub splice_min: usize,
}

/// Default for [`ServerConfig::splice_min`], from the crossover measured by scripts/bench.
pub const SPLICE_MIN: usize = 64 * 1024;

impl ServerConfig {
    /// Defaults for `protocol`: `sh -c`, the mode's header, 1 MiB frames, no token.
    pub fn new(protocol: Protocol) -> ServerConfig {
        ServerConfig {
            wire: Wire::new(protocol),
            exec: ExecMode::Shell,
            token: None,
            limits: Limits::default(),
            supervisor: None,
            allow_detach: false,
            workdir: None,
            accept_env: env::DEFAULT_ACCEPT.iter().map(|s| s.to_string()).collect(),
            version: crate::wire::message::VERSION,
            trace: false,
            tls: None,
            splice: true,
            splice_min: SPLICE_MIN,
        }
    }

    /// How this server starts commands.
    pub fn launcher(&self) -> Launcher {
        Launcher {
            mode: self.exec,
            supervisor: self.supervisor.clone(),
            allow_detach: self.allow_detach,
            workdir: self.workdir.clone(),
            timeout: self.limits.command_timeout,
            connection: None,
        }
    }
}

/// The two stages of shutdown, as every connection sees them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Shutdown {
    /// Take no new commands; finish the running one, then close.
    pub drain: CancellationToken,
    /// Kill the running command now and close.
    pub kill: CancellationToken,
}

/// Why a connection ended early. Only logged: it never affects another connection.
#[derive(Debug)]
pub(crate) enum ConnError {
    Protocol(ProtocolError),
    Io(std::io::Error),
    /// We refused the peer, and told it why where the mode allows.
    Refused(String),
    /// The peer took none of the bytes queued for it for `--idle-timeout`.
    Stalled(usize),
    /// The peer's token was wrong; the guard has logged it, in a summary.
    AuthFailed,
}

impl std::fmt::Display for ConnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnError::Protocol(e) => write!(f, "{e}"),
            ConnError::Io(e) => f.write_str(&crate::text::io_reason(e)),
            ConnError::Refused(why) => write!(f, "refused: {why}"),
            ConnError::Stalled(n) => write!(
                f,
                "the peer stopped reading: {n} bytes queued for it made no progress for \
                 --idle-timeout"
            ),
            ConnError::AuthFailed => f.write_str("authentication failed"),
        }
    }
}

impl ConnError {
    /// The peer hung up (reset, or closed with our writes pending).
    fn is_hang_up(&self) -> bool {
        use crate::wire::frame::FrameError;
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

/// How long connections get to close after the grace period, before the server exits
/// regardless: so it always exits within --grace plus this, whatever its clients do.
const AFTER_KILL: Duration = Duration::from_millis(900);

/// How long a refusal may take to write before the connection is dropped regardless.
const REFUSAL_DEADLINE: Duration = Duration::from_secs(1);

/// Serves connections from `listener` until `shutdown` completes, then stops accepting,
/// gives running commands `limits.grace` to finish, kills what is left and returns.
/// Nothing stops it before that: a connection's failure is logged and ends only that
/// connection, and a failed accept (out of descriptors, say) is logged and retried.
pub async fn serve(
    listener: TcpListener,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) {
    let config = Arc::new(config);
    let admission = Admission::new(&config.limits);
    let tracker = TaskTracker::new();
    let stop = Shutdown::default();
    // Failed attempts are logged as a count per source, at most once a second each.
    let mut log_tick = tokio::time::interval(config.limits.backoff.log_every);
    log_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            _ = log_tick.tick() => {
                log_tallies(admission.guard().flush());
                continue;
            }
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(conn) => conn,
            Err(e) => {
                // Out of file descriptors or a connection reset before accept: keep going,
                // but do not spin while the condition lasts.
                warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let config = Arc::clone(&config);
        let source = match stream.local_addr() {
            Ok(local) if config.limits.local_peers_by_user => guard::Source::of(peer, local),
            _ => guard::Source::from(peer.ip()),
        };
        match admission.admit(source) {
            Ok(ticket) => {
                let stop = stop.clone();
                tracker.spawn(async move {
                    // A queued connection is not read until it has a place.
                    let turn = tokio::select! {
                        turn = ticket.turn(config.limits.auth_timeout) => turn,
                        _ = stop.drain.cancelled() => return,
                    };
                    let mut ticket = ticket;
                    // Modes without a handshake have nothing to wait for.
                    let admitted = turn.and_then(|()| match config.wire.protocol {
                        Protocol::Framed => Ok(()),
                        _ => ticket.authenticated(),
                    });
                    match admitted {
                        Ok(()) => {
                            admission::with_ticket(ticket, handle(stream, peer, &config, &stop))
                                .await
                        }
                        Err(why) => {
                            let guard = ticket.guard();
                            log_refusal(guard, source, peer, &why);
                            drop(ticket);
                            refuse_at_once(stream, config, why.to_string()).await
                        }
                    }
                });
            }
            Err(why) => {
                log_refusal(admission.guard(), source, peer, &why);
                tracker.spawn(refuse_at_once(stream, config, why.to_string()));
            }
        }
    }
    log_tallies(admission.guard().flush_all());
    drop(listener);
    tracker.close();
    let running = tracker.len();
    if running > 0 {
        info!(
            connections = running,
            "shutting down: waiting up to {:?} for running commands", config.limits.grace
        );
    }
    stop.drain.cancel();
    if tokio::time::timeout(config.limits.grace, tracker.wait())
        .await
        .is_err()
    {
        warn!("grace period over: killing the commands still running");
        stop.kill.cancel();
        // Every connection stops at once on `kill`, saying goodbye for at most half a second;
        // this bound only guards against a bug keeping the server up forever. What is
        // still running when we return is killed as the runtime drops it (each command's
        // supervisor sees its control pipe close).
        if tokio::time::timeout(AFTER_KILL, tracker.wait())
            .await
            .is_err()
        {
            warn!("connections still open after the kill; leaving anyway");
        }
    }
    info!("server stopped");
}

async fn handle(stream: TcpStream, peer: SocketAddr, config: &ServerConfig, stop: &Shutdown) {
    // Replies are written as whole frames; waiting to coalesce them only adds latency.
    // Refused, replies are only later, never wrong: not worth refusing the connection.
    let _delayed = stream.set_nodelay(true);
    let protocol = config.wire.protocol.name();
    let opened = std::time::Instant::now();
    debug!(%peer, protocol, "connection opened");
    let result = match config.wire.protocol {
        Protocol::Framed => match &config.tls {
            Some(tls) => serve_tls(stream, peer, config, tls, stop).await,
            None => {
                // A second handle on the socket, to splice output into; without one (with
                // `--no-splice`, or `--trace`, which must see every byte) output is
                // copied, as it must be under TLS.
                let splice = (config.splice && !config.trace)
                    .then(|| crate::splice::Socket::new(&stream, tokio::io::Interest::WRITABLE))
                    .and_then(|s| s.map_err(|e| debug!(%peer, "no splice: {e}")).ok());
                serve_framed(stream, splice, peer, config, stop).await
            }
        },
        Protocol::LengthAck
        | Protocol::Classic
        | Protocol::StructAck
        | Protocol::JsonHeader
        | Protocol::Naive => tutorial::serve(stream, peer, config, stop).await,
    };
    // One line per connection, when it ends.
    let secs = format!("{:.3}", opened.elapsed().as_secs_f64());
    match result {
        Ok(()) => info!(%peer, protocol, secs, "connection closed"),
        // Logged by the guard, counted per source: one line per guess would flood the log.
        Err(ConnError::AuthFailed) => {
            debug!(%peer, protocol, secs, "connection closed: {}", ConnError::AuthFailed)
        }
        // A peer hanging up with replies unread is a normal way to leave, not a fault.
        // Why may quote what the peer sent.
        Err(e) if e.is_hang_up() => {
            let e = printable(e.to_string().as_bytes());
            info!(%peer, protocol, secs, "connection closed by peer: {e}")
        }
        Err(e) => {
            let e = printable(e.to_string().as_bytes());
            warn!(%peer, protocol, secs, "connection closed: {e}")
        }
    }
}

/// The framed protocol inside TLS. A client key the server authorizes is authentication
/// enough (no token is asked); with `--authorized-keys` nothing else is.
async fn serve_tls(
    stream: TcpStream,
    peer: SocketAddr,
    config: &ServerConfig,
    tls: &crate::tls::ServerTls,
    stop: &Shutdown,
) -> Result<(), ConnError> {
    // The handshake counts against the same deadline as the hello.
    let accepted = tokio::select! {
        accepted = tokio::time::timeout(config.limits.auth_timeout, tls.accept(stream)) => accepted,
        _ = stop.drain.cancelled() => return Ok(()),
    };
    let (mut stream, key) = match accepted {
        Ok(Ok(accepted)) => accepted,
        Ok(Err(e)) => return Err(ConnError::Refused(format!("TLS handshake failed: {e}"))),
        Err(_) => return Err(ConnError::Refused("no TLS handshake in time".into())),
    };
    if tls.authorizes(key) {
        info!(%peer, key = %key.expect("authorized keys exist"), "authenticated by key");
        let by_key = ServerConfig {
            token: None,
            ..config.clone()
        };
        return serve_framed(stream, None, peer, &by_key, stop).await;
    }
    if tls.require_key {
        let why = match key {
            Some(key) => format!(
                "key {key} is not authorized on this server, which takes keys only \
                 (--keys-only); ask its owner to add it to its authorized_keys"
            ),
            None => "this server takes client keys only (--keys-only); make one with \
                     `rcmd keygen` and ask the server's owner to add its fingerprint"
                .into(),
        };
        let bytes = framed::error_frame(config.wire.header, &why);
        let _ = tokio::time::timeout(REFUSAL_DEADLINE, async {
            stream.write_all(&bytes).await?;
            stream.shutdown().await
        })
        .await;
        log_tallies(admission::ticket(|t| t.guard().failed(t.source()).1).flatten());
        return Err(ConnError::Refused(why));
    }
    serve_framed(stream, None, peer, config, stop).await
}

/// The framed handler, behind `--trace` when asked: inside TLS, so the trace shows the
/// frames and not their ciphertext.
async fn serve_framed<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    stream: S,
    splice: Option<crate::splice::Socket>,
    peer: SocketAddr,
    config: &ServerConfig,
    stop: &Shutdown,
) -> Result<(), ConnError> {
    let traced = crate::wire::trace::Traced::new(stream, &config.wire, "server", config.trace);
    framed::serve(traced, splice, peer, config, stop).await
}

/// Tells a connection turned away at once why, in its own mode's words.
async fn refuse_at_once(stream: TcpStream, config: Arc<ServerConfig>, why: String) {
    let bytes = match config.wire.protocol {
        Protocol::Framed => framed::error_frame(config.wire.header, &why),
        _ => tutorial::message_reply(&config.wire, &why),
    };
    let _ = tokio::time::timeout(REFUSAL_DEADLINE, async {
        match (&config.tls, config.wire.protocol) {
            // The client can read nothing before the handshake.
            (Some(tls), Protocol::Framed) => {
                let (mut tls, _) = tls.accept(stream).await?;
                tls.write_all(&bytes).await?;
                tls.shutdown().await
            }
            _ => {
                let mut stream = stream;
                stream.write_all(&bytes).await
            }
        }
    })
    .await;
}

/// Logs a connection turned away before it authenticated: a count per source for
/// the crowding kinds, a line for a full server.
fn log_refusal(
    guard: &guard::Guard,
    source: guard::Source,
    peer: SocketAddr,
    why: &admission::Refusal,
) {
    match why {
        admission::Refusal::Busy { max } => warn!(%peer, max, "connection refused: server full"),
        _ => log_tallies(guard.refused(source)),
    }
}

fn log_tallies(tallies: impl IntoIterator<Item = guard::Tally>) {
    for tally in tallies {
        warn!("{tally}");
    }
}
