//! The wire settings both ends must agree on: protocol mode, header format and limits.

pub mod frame;
pub mod header;
pub mod message;
pub(crate) mod sniff;
pub(crate) mod trace;
pub mod transfer;
pub(crate) mod tutorial;

use frame::DEFAULT_MAX_FRAME;
use header::HeaderFormat;

/// How messages are delimited on the connection. Byte-level layouts are in `PROTOCOL.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// rcmd's own: every message length-prefixed, output streamed, exit status kept.
    Framed,
    /// The tutorial's first fix: the length as ASCII digits, wait for the client's answer,
    /// then stderr and stdout. One extra round trip per reply.
    LengthAck,
    /// The tutorial's fix: `struct.pack(FMT, n)` then stderr and stdout (n bytes in all).
    Classic,
    /// A variant in learners' code: `struct.pack(FMT, n)`, wait for the client's answer,
    /// then stderr and stdout.
    StructAck,
    /// The tutorial's final version: packed length of a JSON header, the header, the output.
    JsonHeader,
    /// No header at all, as before the tutorial's fix: the sticky-packet bug, kept on purpose.
    Naive,
}

impl Protocol {
    /// The header format a mode uses unless told otherwise: `!I` for framed, the
    /// tutorial's `i` for the modes that talk to its programs.
    pub fn default_header(self) -> HeaderFormat {
        match self {
            Protocol::Framed => HeaderFormat::NETWORK_U32,
            _ => HeaderFormat::NATIVE_INT,
        }
    }

    /// Whether the server sends the length and then waits for the client's answer.
    pub fn waits_for_ack(self) -> bool {
        matches!(self, Protocol::LengthAck | Protocol::StructAck)
    }

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Framed => "framed",
            Protocol::LengthAck => "length-ack",
            Protocol::Classic => "classic",
            Protocol::StructAck => "struct-ack",
            Protocol::JsonHeader => "json-header",
            Protocol::Naive => "naive",
        }
    }
}

/// Default size of one read in the modes without framing (the tutorial's `recv(1024)`).
pub const DEFAULT_RECV_SIZE: usize = 1024;

/// Everything about the byte stream that both peers must see the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wire {
    pub protocol: Protocol,
    pub header: HeaderFormat,
    /// Largest frame (or JSON header) accepted from the peer.
    pub max_frame: usize,
    /// Size of one read where the mode has no framing (naive, and commands in the
    /// classic and json-header modes).
    pub recv_size: usize,
    /// Which stream a spooled reply sends first (server side).
    pub order: Order,
}

impl Wire {
    /// A mode with its default header and limits.
    pub fn new(protocol: Protocol) -> Wire {
        Wire {
            protocol,
            header: protocol.default_header(),
            max_frame: DEFAULT_MAX_FRAME,
            recv_size: DEFAULT_RECV_SIZE,
            order: Order::StderrFirst,
        }
    }
}

/// Which stream a spooled reply (length-ack, classic, json-header) sends first. The
/// tutorial sends stderr first; some of its copies send stdout first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Order {
    /// stderr, then stdout, as the tutorial sends them (the default)
    #[default]
    StderrFirst,
    /// stdout, then stderr, as some copies of the tutorial do
    StdoutFirst,
}

/// The port a server listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 9000;

/// `addr` with [`DEFAULT_PORT`] added when it names none: `host`, `1.2.3.4`, `[::1]` and a
/// bare `::1` get `:9000`; `host:port` and `[v6]:port` are kept.
pub fn with_default_port(addr: &str) -> String {
    let bracketed = addr.starts_with('[');
    let has_port = if bracketed {
        addr.contains("]:")
    } else {
        addr.matches(':').count() == 1
    };
    if has_port {
        addr.to_string()
    } else if !bracketed && addr.contains(':') {
        format!("[{addr}]:{DEFAULT_PORT}")
    } else {
        format!("{addr}:{DEFAULT_PORT}")
    }
}

#[cfg(test)]
mod tests {
    use super::with_default_port;

    #[test]
    fn addresses_without_a_port_get_9000() {
        for (given, meant) in [
            ("host", "host:9000"),
            ("host:22", "host:22"),
            ("10.1.2.3", "10.1.2.3:9000"),
            ("[::1]", "[::1]:9000"),
            ("[::1]:7", "[::1]:7"),
            ("::1", "[::1]:9000"),
        ] {
            assert_eq!(with_default_port(given), meant);
        }
    }
}
