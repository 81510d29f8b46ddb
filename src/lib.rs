//! rcmd: run commands on another machine over TCP, with every message framed by a length
//! header packed exactly as Python's `struct` packs it.
//!
//! Data flows one way through the modules:
//!
//! ```text
//! bytes ─▶ codec (frames, header) ─▶ protocol (messages) ─▶ server / client (actions)
//!                                                          └▶ exec (running commands)
//! ```

pub mod auth;
pub mod cli;
pub mod client;
pub mod codec;
pub mod config;
pub mod deadline;
pub mod demo;
pub mod exec;
pub mod fanout;
pub mod header;
pub mod protocol;
pub mod server;
pub mod spool;
pub mod status;
pub mod tls;
pub mod wire;
