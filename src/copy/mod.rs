//! `rcmd cp`: files to and from hosts, in messages of the framed protocol (version 3).
//!
//! Either end may send. The sender plans what it offers, then streams entries and their
//! bytes; the receiver writes each file beside its target and renames it into place once
//! whole and its SHA-256 matches. Nothing here knows which end is the client.
//!
//! ```text
//! plan (walk, globs) ─▶ sender ─▶ link (messages) ─▶ receiver ─▶ paths (openat, rename)
//!                       │                          └▶ watch (progress, failures)
//!                       └ shared_sum (one hash per file for many hosts)
//! ```

pub mod link;
pub mod paths;
pub mod plan;
pub mod progress;
pub mod receiver;
pub mod sender;
pub mod shared_sum;

use std::fmt;
use std::io;

use crate::wire::message::ProtocolError;
pub use crate::wire::transfer::{Flags, Summary};

/// Why a whole transfer failed (one file failing is only counted and reported).
#[derive(Debug)]
pub enum CopyError {
    /// The connection failed or was cut.
    Io(io::Error),
    Protocol(ProtocolError),
    /// The peer said why it ended the connection.
    Peer(String),
    /// The peer broke the protocol's rules (a message out of place, a size exceeded).
    Refused(String),
    /// The connection closed before the transfer ended.
    Closed,
    /// The peer speaks an older protocol, without `rcmd cp`.
    OldPeer(u8),
}

impl fmt::Display for CopyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CopyError::Io(e) => write!(f, "connection failed: {}", crate::text::io_reason(e)),
            CopyError::Protocol(e) => write!(f, "protocol error: {e}"),
            CopyError::Peer(m) => write!(f, "peer: {m}"),
            CopyError::Refused(m) => write!(f, "refused: {m}"),
            CopyError::Closed => f.write_str("the connection closed before the copy ended"),
            CopyError::OldPeer(v) => write!(
                f,
                "the server speaks protocol version {v}, and rcmd cp needs version {}: \
                 upgrade the server",
                crate::wire::transfer::VERSION
            ),
        }
    }
}

impl std::error::Error for CopyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CopyError::Io(e) => Some(e),
            CopyError::Protocol(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for CopyError {
    fn from(e: io::Error) -> Self {
        CopyError::Io(e)
    }
}

impl From<ProtocolError> for CopyError {
    fn from(e: ProtocolError) -> Self {
        CopyError::Protocol(e)
    }
}

/// Someone watching a transfer: a progress display, a log. Paths are relative to what
/// was named, as bytes (they may not be UTF-8).
pub trait Watch {
    /// What the whole transfer holds.
    fn total(&mut self, _files: u64, _bytes: u64) {}
    /// A file starts; `done` of its `size` bytes are already there (resumed, or skipped).
    fn file(&mut self, _path: &[u8], _size: u64, _done: u64) {}
    /// More of the current file moved.
    fn advance(&mut self, _n: u64) {}
    /// The current file is finished, whether written or not.
    fn file_done(&mut self) {}
    /// One path failed on this side.
    fn failed(&mut self, path: &[u8], message: &str);
    /// One path failed on the peer's side, which said so.
    fn failed_there(&mut self, path: &[u8], message: &str) {
        self.failed(path, message);
    }
}

/// `a/b` from the path so far and one more name.
pub(crate) fn join(base: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = base.to_vec();
    if !p.is_empty() && !p.ends_with(b"/") {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}
