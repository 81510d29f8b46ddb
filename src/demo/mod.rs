//! `rcmd demo`: make the sticky-packet bug certain and visible, then show the fix.
//!
//! The demos start their own servers in-process on `127.0.0.1:0`. They reproduce the bug
//! deterministically: each command is first run on its own, so the demo knows how many
//! bytes each reply puts on the wire; before every read it waits (on socket readiness,
//! never a sleep) until exactly the bytes it expects have arrived. A read then returns the
//! same bytes on every run.

pub mod html;
pub mod render;
pub mod rtt;
pub mod stages;
pub mod sticky;
pub mod udp;

use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::exec::{Event, ExecMode, Launcher, Request};
use crate::status::Status;

/// The demos there are, for `rcmd demo` without a name.
pub const DEMOS: &[(&str, &str)] = &[
    (
        "sticky",
        "TCP: replies run together (粘包); the tutorial's fixes side by side",
    ),
    (
        "rtt",
        "the cost of a round trip: length-ack waits once more per reply",
    ),
    (
        "udp",
        "UDP: boundaries kept, but a reply longer than the buffer is cut",
    ),
];

/// Where the demos' commands run, so `pwd` prints the same for everyone, wherever the
/// demo was started.
pub const WORKDIR: &str = "/";

/// Longest the demo waits for bytes it knows are coming: a guard against a broken
/// server, not a timing assumption.
pub(crate) const ARRIVAL_GUARD: Duration = Duration::from_secs(10);

/// What a command printed when run on its own, here, with nothing in between.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub command: String,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub status: Status,
}

impl Reference {
    /// The bytes a server without framing sends for it: everything it printed.
    pub fn raw(&self) -> Vec<u8> {
        [&self.stdout[..], &self.stderr[..]].concat()
    }
}

/// Runs `command` locally the way the demo's servers do (in [`WORKDIR`]), and records
/// what it printed.
///
/// # Errors
/// An I/O error running it.
pub async fn reference(command: &str) -> io::Result<Reference> {
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let launcher = Launcher {
        mode: ExecMode::Shell,
        workdir: Some(WORKDIR.into()),
        ..Launcher::default()
    };
    let status = match launcher.spawn(&Request::line(command.as_bytes())) {
        Err(status) => status,
        Ok(mut running) => loop {
            match running.next().await? {
                Event::Stdout(b) => stdout.extend_from_slice(&b),
                Event::Stderr(b) => stderr.extend_from_slice(&b),
                Event::Done(status) => break status,
            }
        },
    };
    Ok(Reference {
        command: command.to_string(),
        stdout,
        stderr,
        status,
    })
}

/// Bytes waiting in the socket's receive queue (`FIONREAD`).
fn queued(stream: &TcpStream) -> io::Result<usize> {
    crate::splice::waiting(stream.as_fd())
}

/// Waits until at least `want` bytes are queued on `stream`, driven by readiness events.
///
/// # Errors
/// `TimedOut` if they do not arrive within the guard time (the server misbehaved).
pub async fn wait_queued(stream: &TcpStream, want: usize) -> io::Result<()> {
    let wait = async {
        loop {
            stream.readable().await?;
            // Returning WouldBlock clears readiness, so the next `readable` waits for new
            // bytes; tokio does not lose an event that raced with the check.
            match stream.try_io(Interest::READABLE, || {
                if queued(stream)? >= want {
                    Ok(())
                } else {
                    Err(io::ErrorKind::WouldBlock.into())
                }
            }) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    };
    tokio::time::timeout(ARRIVAL_GUARD, wait)
        .await
        .unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "expected {want} bytes from the demo server, {} arrived",
                    queued(stream).unwrap_or(0)
                ),
            ))
        })
}
