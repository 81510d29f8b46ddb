//! rcmd: run commands on another machine over TCP, with every message framed by a length
//! header packed exactly as Python's `struct` packs it.
//!
//! Each layer uses only those drawn below it (client and server never each other); data
//! flows up from bytes to actions (README's "Layout" says the same):
//!
//! ```text
//! cli            one module per subcommand; the exit code is decided here
//! demo           the sticky-packet demos
//! fanout         one command on many hosts, through client
//! copy           rcmd cp: files to and from hosts, over client's connection
//! client         one connection: input lines and stdin, the terminal, a reply shown
//! server         accept, admit, read a message and do it
//! tls auth config   who may connect
//! exec           running one command: launch, process, streams, helper, supervisor
//! wire           bytes ─▶ header/frame ─▶ message (framed) | tutorial (the other modes);
//!                sniff: what the peer speaks; trace: each frame shown as it passes
//! splice systemd            the OS
//! status printable text deadline   small shared pieces
//! ```
//!
//! Modules are private but for the library's interface: [`serve`] with [`ServerConfig`]
//! to run a server, [`ClientConfig`] with [`client::run`] to talk to one, the protocol's
//! frames and messages in [`wire`], and [`cli`] for the binary. The few other types a
//! caller needs ([`Token`], [`Spawner`], [`Identity`], ...) are re-exported here.

// Every unsafe block says why it is sound.
#![deny(clippy::undocumented_unsafe_blocks)]

#[cfg(not(target_os = "linux"))]
compile_error!(
    "rcmd runs on Linux only: it contains commands with PR_SET_CHILD_SUBREAPER and /proc, \
     and sizes pipes and terminals with Linux fcntl and ioctl calls"
);

mod auth;
pub mod cli;
pub mod client;
mod config;
mod copy;
mod deadline;
mod demo;
mod exec;
mod fanout;
mod printable;
pub mod server;
mod settings;
mod splice;
mod status;
mod systemd;
mod text;
mod tls;
pub mod wire;

pub use auth::Token;
pub use client::{ClientConfig, ClientError};
pub use exec::{ExecMode, Spawner, WindowSize};
pub use server::{serve, ServerConfig};
pub use status::Status;
pub use tls::{Identity, ServerTls};
pub use wire::{Protocol, Wire};

/// Internals the integration tests check against; not part of the library's interface.
#[doc(hidden)]
pub mod test_support {
    pub use crate::copy::paths::umask;
    pub use crate::exec::pty;
    pub use crate::fanout::compact;
    pub use crate::printable::py_bytes;
}
