//! rcmd: run commands on another machine over TCP, with every message framed by a length
//! header packed exactly as Python's `struct` packs it.
//!
//! Data flows one way through the modules:
//!
//! ```text
//! bytes ─▶ wire::frame (frames, header) ─▶ wire::message (messages) ─▶ server / client
//!     └──▶ wire::tutorial (length-ack, classic, json-header, naive) ─▶ └▶ exec
//! wire::trace: an optional wrapper around the bytes, showing each frame as it passes (--trace)
//! ```

#[cfg(not(target_os = "linux"))]
compile_error!(
    "rcmd runs on Linux only: it contains commands with PR_SET_CHILD_SUBREAPER and /proc, \
     and sizes pipes and terminals with Linux fcntl and ioctl calls"
);

pub mod auth;
pub mod cli;
pub mod client;
pub mod config;
pub mod deadline;
pub mod demo;
pub mod exec;
pub mod fanout;
pub mod printable;
pub mod server;
pub mod settings;
pub mod splice;
pub mod status;
pub mod systemd;
pub mod text;
pub mod tls;
pub mod wire;
