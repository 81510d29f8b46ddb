//! What systemd hands a service and expects back: a listening socket passed at start
//! (socket activation, `LISTEN_FDS`) and word that the service is ready (`NOTIFY_SOCKET`).
//!
//! Both are a few lines of a documented protocol (sd_listen_fds(3), sd_notify(3)), so they
//! are spoken here directly rather than through libsystemd. Each variable is read once and
//! removed from the environment, as `sd_listen_fds(1)` does, so no command the server runs
//! inherits it and takes the socket or the notifications for its own.

use std::fmt;
use std::io;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

use rustix::net::{sockopt, AddressFamily, SocketType};

/// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: i32 = 3;

/// A socket systemd passed that `rcmd server` cannot listen on.
#[derive(Debug)]
pub enum ActivationError {
    /// More than one socket was passed (`LISTEN_FDS`).
    TooMany { count: u32 },
    /// `LISTEN_FDS` names a descriptor that is not open.
    NotOpen { fd: i32 },
    /// The descriptor is not a listening TCP socket: `what` it is instead, and the error
    /// asking about it raised, if any.
    Unsuitable {
        what: &'static str,
        source: Option<io::Error>,
    },
    /// The socket could not be made non-blocking.
    Adopt(io::Error),
}

impl fmt::Display for ActivationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActivationError::TooMany { count } => write!(
                f,
                "systemd passed {count} sockets; rcmd server listens on one (give the socket \
                 unit a single ListenStream=)"
            ),
            ActivationError::NotOpen { fd } => write!(
                f,
                "LISTEN_FDS says systemd passed a socket, but descriptor {fd} is not open"
            ),
            ActivationError::Unsuitable { what, .. } => write!(
                f,
                "the socket systemd passed is {what}; rcmd server needs a listening TCP socket \
                 (ListenStream=ADDRESS:PORT)"
            ),
            ActivationError::Adopt(e) => write!(f, "cannot use the socket systemd passed: {e}"),
        }
    }
}

impl std::error::Error for ActivationError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ActivationError::Unsuitable {
                source: Some(e), ..
            }
            | ActivationError::Adopt(e) => Some(e),
            _ => None,
        }
    }
}

/// Takes the listening socket systemd passed to this process, if it passed one, and removes
/// `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES` from the environment.
///
/// Call it while the process has one thread: it changes the environment.
///
/// # Errors
/// If systemd passed more than one socket, or one that is not a listening TCP socket.
pub fn take_listener() -> Result<Option<std::net::TcpListener>, ActivationError> {
    let pid = std::env::var("LISTEN_PID").ok();
    let fds = std::env::var("LISTEN_FDS").ok();
    for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(name);
    }
    // Sockets passed to another process (the variables leaked into ours) are not ours.
    if pid.and_then(|p| p.parse::<u32>().ok()) != Some(std::process::id()) {
        return Ok(None);
    }
    let count = fds.and_then(|n| n.parse::<u32>().ok()).unwrap_or(0);
    match count {
        0 => return Ok(None),
        1 => {}
        count => return Err(ActivationError::TooMany { count }),
    }
    let fd = LISTEN_FDS_START;
    // SAFETY: F_GETFD only reads the descriptor's flags; it fails if nothing is open there.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(ActivationError::NotOpen { fd });
    }
    let problem = |what| ActivationError::Unsuitable { what, source: None };
    let not_socket = |e: rustix::io::Errno| ActivationError::Unsuitable {
        what: "not a socket",
        source: Some(e.into()),
    };
    // SAFETY: the descriptor is open (checked above), and nothing closes it while it is
    // borrowed here.
    let socket = unsafe { BorrowedFd::borrow_raw(fd) };
    let accepting = sockopt::socket_acceptconn(socket).map_err(not_socket)?;
    let kind = sockopt::socket_type(socket).map_err(not_socket)?;
    let domain = sockopt::socket_domain(socket).map_err(not_socket)?;
    if kind != SocketType::STREAM {
        return Err(problem("not a stream socket"));
    }
    if domain != AddressFamily::INET && domain != AddressFamily::INET6 {
        return Err(problem("not an IPv4 or IPv6 socket"));
    }
    if !accepting {
        return Err(problem("not listening"));
    }
    // SAFETY: the descriptor is open (checked above), systemd passed it to this process
    // alone (LISTEN_PID), and nothing else here owns it: the variables that name it are
    // gone, so it is adopted once.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let listener = std::net::TcpListener::from(owned);
    listener
        .set_nonblocking(true)
        .map_err(ActivationError::Adopt)?;
    Ok(Some(listener))
}

/// Where to tell systemd about this service's state (`Type=notify`).
#[derive(Debug)]
pub struct Notifier {
    addr: SocketAddr,
}

impl Notifier {
    /// The socket `NOTIFY_SOCKET` names, if set (a path, or `@name` in the abstract
    /// namespace), which it removes from the environment.
    ///
    /// Call it while the process has one thread: it changes the environment.
    ///
    /// # Errors
    /// If the variable names no usable address.
    pub fn from_env() -> io::Result<Option<Notifier>> {
        let Some(name) = std::env::var_os("NOTIFY_SOCKET") else {
            return Ok(None);
        };
        std::env::remove_var("NOTIFY_SOCKET");
        let bytes = std::os::unix::ffi::OsStrExt::as_bytes(name.as_os_str());
        let addr = match bytes.strip_prefix(b"@") {
            Some(abstract_name) => SocketAddr::from_abstract_name(abstract_name)?,
            None => SocketAddr::from_pathname(&name)?,
        };
        Ok(Some(Notifier { addr }))
    }

    /// Sends `state`: newline-separated `KEY=VALUE` lines such as `READY=1`.
    ///
    /// # Errors
    /// If the datagram cannot be sent.
    pub fn notify(&self, state: &str) -> io::Result<()> {
        let socket = UnixDatagram::unbound()?;
        socket.send_to_addr(state.as_bytes(), &self.addr)?;
        Ok(())
    }
}
