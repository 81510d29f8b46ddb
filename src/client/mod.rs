//! `rcmd client`: send command lines to a server and show what comes back.
//!
//! The remote stdout goes to our stdout and the remote stderr to our stderr, as they
//! arrive. The exit code mirrors the last command's status (as ssh does); any failure of
//! the connection or the protocol is a [`ClientError`], which the binary reports as 255.

pub mod copy;
mod framed;
mod input;
mod spliced;
mod spliced_stdin;
pub(crate) mod terminal;
mod tutorial;

use std::fmt;
use std::io::{self, Write};
use std::time::Duration;

use tokio::net::TcpStream;

pub use input::Input;

use crate::auth::Token;
use crate::wire::message::{ClientCodec, ClientMessage, ProtocolError};
use crate::wire::{with_default_port, Protocol, Wire};

/// How long the naive client waits for a reply before saying it cannot tell why none came.
pub const NAIVE_WAIT: Duration = Duration::from_secs(1);

/// How long a tutorial-mode reply that has started may pause before the client gives up
/// and explains (those servers send a reply in one go, so a pause means a mismatch).
pub const STALL_WAIT: Duration = Duration::from_secs(5);

/// How long a length-ack client waits, after answering an empty reply, before sending its
/// next command. The server has been waiting in `recv` since it sent the length, so it
/// reads the answer as soon as it arrives; this only has to cover its being scheduled.
/// A person typing at the prompt takes longer anyway, so only piped commands wait.
pub const ACK_SETTLE: Duration = Duration::from_millis(200);

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
    /// This user's own token (the same-user file), sent only to a server whose TLS
    /// identity is this user's own: never in the clear, never to a server merely pinned
    /// or accepted, where another user could be listening.
    pub same_user_token: Option<Token>,
    /// How long connecting may take; `None`: as long as the system allows.
    pub connect_timeout: Option<Duration>,
    /// What a one-shot command asks for around it (framed mode, protocol version 2).
    pub session: Session,
    /// Show every frame on stderr as it passes (`--trace`).
    pub trace: bool,
    /// TLS for the framed mode, and whom to trust; `None`: the framed wire in the clear.
    pub tls: Option<crate::tls::ClientTls>,
    /// Large stdout payloads may be spliced from the socket straight to this process's
    /// stdout (fd 1), when it is a pipe or a file and the wire is in the clear. Only for
    /// an [`Output`] that writes to fd 1 itself.
    pub splice_stdout: bool,
    /// What the length-ack client answers to each length (`--ack`): the tutorial's
    /// `recv_ready` unless the server checks for another word.
    pub ack: Vec<u8>,
    /// How long a length-ack client holds its next command after an empty reply, so the
    /// server reads the answer and the command in two reads (see PROTOCOL.md).
    pub ack_settle: Duration,
    /// A one-shot command's stdin may be spliced from this process's stdin (fd 0) into
    /// the socket, when it is a pipe and the wire is in the clear.
    pub splice_stdin: bool,
    /// How many times a client turned away as busy tries again ([`BUSY_RETRIES`]).
    pub busy_retries: u32,
}

impl ClientConfig {
    /// Defaults for `protocol`.
    pub fn new(protocol: Protocol) -> ClientConfig {
        ClientConfig {
            wire: Wire::new(protocol),
            naive_wait: NAIVE_WAIT,
            stall_timeout: STALL_WAIT,
            token: None,
            same_user_token: None,
            connect_timeout: None,
            session: Session::default(),
            trace: false,
            tls: None,
            splice_stdout: false,
            ack: crate::wire::tutorial::ACK.to_vec(),
            ack_settle: ACK_SETTLE,
            splice_stdin: false,
            busy_retries: BUSY_RETRIES,
        }
    }
}

/// A one-shot command's surroundings, as ssh sets them up: environment, directory,
/// terminal, and whether Ctrl-C and friends are passed on.
#[derive(Debug, Clone, Default)]
pub struct Session {
    /// Variables to set (the server may refuse some, and says so).
    pub env: Vec<(Vec<u8>, Vec<u8>)>,
    /// Directory to run in, on the server.
    pub cwd: Option<Vec<u8>>,
    /// A pseudo-terminal on the server.
    pub tty: Option<Tty>,
    /// Pass SIGINT, SIGTERM and SIGHUP on to the remote command.
    pub forward_signals: bool,
}

/// The terminal asked for: its size and `TERM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tty {
    pub rows: u16,
    pub cols: u16,
    pub term: Vec<u8>,
}

impl Session {
    /// The messages that set up the next command, sent just before it.
    fn setup_messages(&self) -> Vec<ClientMessage> {
        let mut msgs: Vec<ClientMessage> = self
            .env
            .iter()
            .map(|(name, value)| ClientMessage::Env {
                name: name.clone().into(),
                value: value.clone().into(),
            })
            .collect();
        if let Some(dir) = &self.cwd {
            msgs.push(ClientMessage::Cwd(dir.clone().into()));
        }
        if let Some(t) = &self.tty {
            msgs.push(ClientMessage::Tty {
                rows: t.rows,
                cols: t.cols,
                term: t.term.clone().into(),
            });
        }
        msgs
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
    /// The server turned the connection away for want of room, before anything ran.
    Busy(String),
    /// The server closed the connection with replies outstanding.
    Closed {
        unanswered: usize,
    },
    /// The request cannot be sent in this mode or with this header.
    Usage(String),
    /// Connecting took longer than `--connect-timeout`.
    ConnectTimeout {
        addr: String,
        after: Duration,
    },
    /// The server accepted the connection but did not answer the hello within
    /// `--connect-timeout`.
    HandshakeTimeout(Duration),
    /// The TLS handshake failed, or the server is not the one we trust.
    Trust(crate::tls::TrustError),
    /// The server at `host` refused us for want of a token, after this user's own was
    /// held back on purpose (the server is not this user's own).
    TokenHeldBack {
        refusal: String,
        host: String,
    },
    /// An `rcmd cp` transfer failed as a whole (a file failing is only counted).
    Copy(crate::copy::CopyError),
}

impl From<crate::copy::CopyError> for ClientError {
    fn from(e: crate::copy::CopyError) -> Self {
        ClientError::Copy(e)
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Connect { addr, source } => {
                let why = crate::text::io_reason(source);
                write!(f, "cannot connect to {addr}: {why}")?;
                if source.kind() == io::ErrorKind::ConnectionRefused {
                    // Nothing listens there: the usual cause is a server not started.
                    write!(
                        f,
                        ". Is rcmd running there? Start it on that machine with \
                         `rcmd server` (`--listen 0.0.0.0:PORT` to be reached from elsewhere)"
                    )?;
                }
                Ok(())
            }
            ClientError::Io(e) => {
                write!(f, "connection failed: {}", crate::text::io_reason(e))
            }
            ClientError::Protocol(e) => write!(f, "protocol error: {e}"),
            // The server's words, which must not move our cursor or forge our lines.
            ClientError::Server(m) | ClientError::Busy(m) => {
                write!(f, "server: {}", crate::printable::printable(m.as_bytes()))
            }
            ClientError::Closed { unanswered: 0 } => {
                write!(f, "the server closed the connection")
            }
            ClientError::Closed { unanswered: 1 } => write!(
                f,
                "the server closed the connection before the command finished"
            ),
            ClientError::Closed { unanswered } => write!(
                f,
                "the server closed the connection with {unanswered} commands unanswered"
            ),
            ClientError::Usage(m) => write!(f, "{m}"),
            ClientError::HandshakeTimeout(after) => write!(
                f,
                "the server accepted the connection but did not answer within {}s \
                 (--connect-timeout): is it an rcmd server?",
                after.as_secs_f64()
            ),
            ClientError::ConnectTimeout { addr, after } => write!(
                f,
                "cannot connect to {addr}: no answer within {}s (--connect-timeout)",
                after.as_secs_f64()
            ),
            ClientError::Trust(e) => write!(f, "{e}"),
            // The server's words escaped, as always; our own advice on a line of its own.
            ClientError::TokenHeldBack { refusal, host } => write!(
                f,
                "server: {}\n{}",
                crate::printable::printable(refusal.as_bytes()),
                held_back_advice(host)
            ),
            ClientError::Copy(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientError::Connect { source, .. } | ClientError::Io(source) => Some(source),
            ClientError::Protocol(e) => Some(e),
            ClientError::Trust(e) => Some(e),
            ClientError::Copy(e) => Some(e),
            _ => None,
        }
    }
}

impl ClientError {
    /// Whether this is our own stdout (or stderr) closing under us, as when the output
    /// is piped into `head`. Not an error to report: like a local command killed by
    /// SIGPIPE, the client ends quietly with status 141.
    pub fn is_local_broken_pipe(&self) -> bool {
        match self {
            ClientError::Io(e) => e
                .get_ref()
                .is_some_and(|inner| inner.is::<LocalOutputClosed>()),
            _ => false,
        }
    }
}

/// Marks an error writing our own output, to tell it apart from the socket's.
#[derive(Debug)]
struct LocalOutputClosed;

impl fmt::Display for LocalOutputClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("standard output closed")
    }
}

impl std::error::Error for LocalOutputClosed {}

fn local(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::BrokenPipe {
        io::Error::new(io::ErrorKind::BrokenPipe, LocalOutputClosed)
    } else {
        e
    }
}

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
        self.stdout.write_all(data).map_err(local)?;
        self.stdout.flush().map_err(local)
    }

    fn err(&mut self, data: &[u8]) -> io::Result<()> {
        self.stderr.write_all(data).map_err(local)?;
        self.stderr.flush().map_err(local)
    }
}

impl Output<RawStdout, io::Stderr> {
    /// The process's own stdout and stderr.
    pub fn terminal() -> Self {
        Output {
            stdout: RawStdout,
            stderr: io::stderr(),
        }
    }
}

/// This process's stdout without std's line buffer. Every write is flushed at once
/// anyway, and the line buffer costs a search for the last newline and a copy of what
/// follows it in every payload: a quarter of the client's time on binary output.
pub struct RawStdout;

impl Write for RawStdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            match rustix::io::write(rustix::stdio::stdout(), buf) {
                Err(rustix::io::Errno::INTR) => continue,
                r => return Ok(r?),
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// How long a single host's client waits to connect, for the TLS handshake and for the
/// server's hello, unless `--connect-timeout` says otherwise: as long as a person waits
/// for ssh's banner. Never while a person answers a question.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Connects to `addr` (`host`, `host:port`, `[v6]:port`) and runs every line of `input`.
/// Returns the exit code of the last command (0 if there was none).
///
/// # Errors
/// A [`ClientError`] when connecting, the protocol or the server fails.
/// A server that is busy is asked again a little later, up to
/// [`ClientConfig::busy_retries`] times.
pub async fn run<O: Write, E: Write>(
    addr: &str,
    config: &ClientConfig,
    input: Input,
    out: &mut Output<O, E>,
) -> Result<i32, ClientError> {
    run_then(addr, config, input, out, &mut || ()).await
}

/// [`run`], calling `ready` once, when the server is first trusted and before anything is
/// sent: after any first-contact question, so a terminal goes raw only then.
///
/// # Errors
/// As [`run`].
pub async fn run_then<O: Write, E: Write>(
    addr: &str,
    config: &ClientConfig,
    mut input: Input,
    out: &mut Output<O, E>,
    ready: &mut dyn FnMut(),
) -> Result<i32, ClientError> {
    let mut attempt = 0;
    let mut first = true;
    loop {
        let connection = open(addr, config).await?;
        if std::mem::take(&mut first) {
            ready();
        }
        match run_connection(connection, config, &mut input, out).await {
            Err(ClientError::Busy(_)) if attempt < config.busy_retries => {
                tokio::time::sleep(busy_backoff(attempt, random())).await;
                attempt += 1;
            }
            done => return done,
        }
    }
}

/// How many times a client turned away as busy (a burst of connections, a full server)
/// tries again. Nothing ran: the hello was refused before any command was sent.
pub const BUSY_RETRIES: u32 = 8;

/// The wait before trying a busy server again: doubling from 100 ms to 2 s, each wait
/// somewhere in its upper half (`jitter` picks where), so clients turned away together
/// do not all come back together. Over [`BUSY_RETRIES`] tries: 4.5 to 9 s in all.
fn busy_backoff(attempt: u32, jitter: u64) -> Duration {
    let ceiling = Duration::from_millis(100)
        .saturating_mul(1 << attempt.min(5))
        .min(Duration::from_secs(2));
    let half = ceiling / 2;
    half + Duration::from_nanos(jitter % (half.as_nanos() as u64 + 1))
}

/// A number no two processes are likely to share: std's hasher keys are random.
fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

/// A connection to a server that is trusted (its TLS identity checked, or in the clear
/// when the wire says so) and ready for the protocol's first message.
#[derive(Debug)]
pub struct Connection {
    /// `HOST:PORT` as `known_hosts` knows it.
    host: String,
    transport: Transport,
}

#[derive(Debug)]
enum Transport {
    Plain(TcpStream),
    /// `own`: the server proved to be this user's own (see
    /// [`ClientConfig::same_user_token`]).
    Tls {
        stream: Box<crate::tls::ClientStream>,
        own: bool,
    },
}

impl Connection {
    /// `HOST:PORT`, as the connection was made to.
    pub fn host(&self) -> &str {
        &self.host
    }
}

/// Opens a connection to `addr` and decides whether to trust the server: what
/// [`run`] does before it sends anything, apart so that a caller can act in between (put
/// the terminal in raw mode only after a first-contact question was answered). When a
/// person was asked about a new server, the connection is made again after the answer.
///
/// # Errors
/// As [`connect`], and [`ClientError::Trust`] for a server not trusted.
pub async fn open(addr: &str, config: &ClientConfig) -> Result<Connection, ClientError> {
    let host = with_default_port(addr);
    // Once for the question, once more after it: the second time the answer is on file.
    for _ in 0..2 {
        let stream = connect(addr, config.connect_timeout).await?;
        if let Some(connection) = secure(&host, stream, config).await? {
            return Ok(connection);
        }
    }
    Err(ClientError::Usage(format!(
        "{host}: the server was recorded but asked about again"
    )))
}

/// Runs every line of `input` on a connection [`open`] made.
///
/// # Errors
/// As [`run`], less connecting.
pub async fn run_connection<O: Write, E: Write>(
    connection: Connection,
    config: &ClientConfig,
    input: &mut Input,
    out: &mut Output<O, E>,
) -> Result<i32, ClientError> {
    fn traced<S>(s: S, config: &ClientConfig) -> crate::wire::trace::Traced<S> {
        crate::wire::trace::Traced::new(s, &config.wire, "client", config.trace)
    }
    match connection.transport {
        Transport::Tls { stream, own } => {
            // Our own token only to our own server.
            let mine;
            let config = match (&config.token, &config.same_user_token, own) {
                (None, Some(token), true) => {
                    mine = ClientConfig {
                        token: Some(token.clone()),
                        ..config.clone()
                    };
                    &mine
                }
                _ => config,
            };
            let held_back = config.token.is_none() && config.same_user_token.is_some();
            framed::run(traced(stream, config), None, None, config, input, out)
                .await
                .map_err(|e| match e {
                    ClientError::Server(refusal)
                        if held_back && refusal.starts_with(AUTH_FAILED) =>
                    {
                        ClientError::TokenHeldBack {
                            refusal,
                            host: connection.host.clone(),
                        }
                    }
                    e => e,
                })
        }
        Transport::Plain(stream) if config.wire.protocol == Protocol::Framed => {
            // `--trace` must see every byte: it never splices.
            let splice = (config.splice_stdout && !config.trace)
                .then(|| spliced::SpliceIn::new(&stream))
                .flatten();
            let splice_stdin = (config.splice_stdin && !config.trace)
                .then(|| input.take_stdin_pipe())
                .flatten()
                .and_then(|pipe| spliced_stdin::SpliceOut::new(&stream, pipe));
            framed::run(
                traced(stream, config),
                splice,
                splice_stdin,
                config,
                input,
                out,
            )
            .await
        }
        Transport::Plain(stream) => tutorial::run(traced(stream, config), config, input, out).await,
    }
}

/// How a server's refusal of our token begins.
const AUTH_FAILED: &str = "authentication failed";

/// Why this user's own token was not sent to `host`, and what to do instead.
fn held_back_advice(host: &str) -> String {
    format!(
        "rcmd: this user's own token was held back on purpose: the server at {host} is not \
         this user's own (its identity is not the identity.pem in rcmd's configuration \
         directory), so someone else could be listening there. To log in there, add this \
         client's key to it once: `rcmd keygen`, then `rcmd copy-id {host}` with that \
         server's token in --token-file FILE or RCMD_TOKEN; or give its token on every \
         connection the same way"
    )
}

/// Opens the connection [`run`] uses, within `timeout`; apart so a caller can put a
/// deadline on it alone. `addr` without a port gets [`DEFAULT_PORT`](crate::wire::DEFAULT_PORT).
///
/// # Errors
/// [`ClientError::Connect`] when `addr` cannot be resolved or reached, and
/// [`ClientError::ConnectTimeout`] when that takes longer than `timeout`.
pub async fn connect(addr: &str, timeout: Option<Duration>) -> Result<TcpStream, ClientError> {
    let addr = with_default_port(addr);
    let connect = TcpStream::connect(&addr);
    let connected =
        match timeout {
            Some(after) => tokio::time::timeout(after, connect).await.map_err(|_| {
                ClientError::ConnectTimeout {
                    addr: addr.clone(),
                    after,
                }
            })?,
            None => connect.await,
        };
    connected.map_err(|source| ClientError::Connect { addr, source })
}

/// The TLS handshake and the trust decision on `stream` (nothing in the clear); `None`
/// when a person was just asked and the connection must be made again.
async fn secure(
    host: &str,
    stream: TcpStream,
    config: &ClientConfig,
) -> Result<Option<Connection>, ClientError> {
    // Requests are small and we wait for their replies: do not let Nagle hold them back.
    stream.set_nodelay(true)?;
    let tls = match (&config.tls, config.wire.protocol) {
        (Some(tls), Protocol::Framed) => tls,
        _ => {
            return Ok(Some(Connection {
                host: host.to_string(),
                transport: Transport::Plain(stream),
            }))
        }
    };
    match tls.connect(host, stream, config.connect_timeout).await {
        Ok(crate::tls::Connected::Ready { stream, own }) => Ok(Some(Connection {
            host: host.to_string(),
            transport: Transport::Tls { stream, own },
        })),
        Ok(crate::tls::Connected::Recorded) => Ok(None),
        Err(e) if e.is_failed_handshake() => {
            Err(match framed::plaintext_mode(host, config).await {
                Some(hint) => ClientError::Usage(hint),
                None => ClientError::Trust(e),
            })
        }
        Err(e) => Err(ClientError::Trust(e)),
    }
}

/// [`run`] on a connection already open, to a server no person is asked about.
///
/// # Errors
/// As [`run`], less connecting.
pub async fn run_on<O: Write, E: Write>(
    host: &str,
    stream: TcpStream,
    config: &ClientConfig,
    mut input: Input,
    out: &mut Output<O, E>,
) -> Result<i32, ClientError> {
    run_once(host, stream, config, &mut input, out).await
}

/// One attempt of [`run`]: `input` is untouched when the hello is refused.
async fn run_once<O: Write, E: Write>(
    host: &str,
    stream: TcpStream,
    config: &ClientConfig,
    input: &mut Input,
    out: &mut Output<O, E>,
) -> Result<i32, ClientError> {
    match secure(host, stream, config).await? {
        Some(connection) => run_connection(connection, config, input, out).await,
        None => Err(ClientError::Usage(format!(
            "{host} was recorded in known_hosts; run the command again"
        ))),
    }
}

/// A byte stream a framed connection runs on: TCP, or TLS over it, maybe traced.
pub trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

/// An authenticated `framed` connection, past the handshake, for a caller that speaks
/// messages of its own on it (`rcmd cp`).
pub struct FramedConnection {
    pub reader: tokio_util::codec::FramedRead<tokio::io::ReadHalf<Box<dyn Stream>>, ClientCodec>,
    pub writer: tokio::io::WriteHalf<Box<dyn Stream>>,
    /// Our encoder, with the server's frame limit.
    pub codec: ClientCodec,
    /// The protocol version both ends speak.
    pub version: u8,
    /// A second handle on the socket, when the wire is in the clear (and not traced):
    /// file data can be sent into it from the file.
    pub raw: Option<crate::splice::Socket>,
}

/// [`open`]'s connection to `addr`, taken through the framed handshake.
///
/// # Errors
/// As [`open`]; and [`ClientError::Usage`] for a mode other than `framed`.
pub async fn open_framed(
    addr: &str,
    config: &ClientConfig,
) -> Result<FramedConnection, ClientError> {
    let connection = open(addr, config).await?;
    handshake(connection, config).await
}

/// A TCP connection already made to `host`, trusted and taken through the framed
/// handshake.
///
/// # Errors
/// As [`open_framed`].
pub async fn open_framed_on(
    host: &str,
    stream: TcpStream,
    config: &ClientConfig,
) -> Result<FramedConnection, ClientError> {
    match secure(host, stream, config).await? {
        Some(connection) => handshake(connection, config).await,
        None => Err(ClientError::Usage(format!(
            "{host} was recorded in known_hosts; run the command again"
        ))),
    }
}

/// The framed handshake on a trusted connection, with our own token only for our own
/// server.
async fn handshake(
    connection: Connection,
    config: &ClientConfig,
) -> Result<FramedConnection, ClientError> {
    if config.wire.protocol != Protocol::Framed {
        return Err(ClientError::Usage(format!(
            "this needs --protocol framed; the {} mode only carries command lines",
            config.wire.protocol.name()
        )));
    }
    let wire = &config.wire;
    match connection.transport {
        Transport::Tls { stream, own } => {
            let config = match (&config.token, &config.same_user_token, own) {
                (None, Some(token), true) => std::borrow::Cow::Owned(ClientConfig {
                    token: Some(token.clone()),
                    ..config.clone()
                }),
                _ => std::borrow::Cow::Borrowed(config),
            };
            let traced = crate::wire::trace::Traced::new(stream, wire, "client", config.trace);
            framed::open(Box::new(traced), &config).await
        }
        Transport::Plain(stream) => {
            let raw = (!config.trace)
                .then(|| crate::splice::Socket::new(&stream, tokio::io::Interest::WRITABLE).ok())
                .flatten();
            let traced = crate::wire::trace::Traced::new(stream, wire, "client", config.trace);
            let mut connection = framed::open(Box::new(traced), config).await?;
            connection.raw = raw;
            Ok(connection)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{busy_backoff, BUSY_RETRIES};
    use std::time::Duration;

    #[test]
    fn busy_retries_back_off_with_jitter_to_a_bound() {
        let waits = |jitter: u64| -> Vec<Duration> {
            (0..BUSY_RETRIES).map(|n| busy_backoff(n, jitter)).collect()
        };
        let least: Duration = waits(0).iter().sum();
        let most: Duration = waits(u64::MAX).iter().sum();
        assert_eq!(waits(0)[0], Duration::from_millis(50));
        assert!(waits(u64::MAX).iter().all(|w| *w <= Duration::from_secs(2)));
        assert!(least >= Duration::from_millis(4500) && most <= Duration::from_millis(9100));
        // Two clients with different draws wait differently.
        assert_ne!(busy_backoff(3, 1 << 20), busy_backoff(3, 1 << 29));
    }

    #[test]
    fn a_client_error_keeps_its_cause() {
        use std::error::Error;
        let refused = super::ClientError::Connect {
            addr: "127.0.0.1:1".into(),
            source: std::io::ErrorKind::ConnectionRefused.into(),
        };
        let cause = refused.source().expect("the io error is kept");
        let io = cause.downcast_ref::<std::io::Error>().unwrap();
        assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused);
        let frame = crate::wire::frame::FrameError::TooLarge { len: 9, max: 1 };
        let e = super::ClientError::Protocol(frame.into());
        assert!(e
            .source()
            .is_some_and(|s| s.to_string().contains("exceeds")));
        assert!(super::ClientError::Usage("x".into()).source().is_none());
    }
}
