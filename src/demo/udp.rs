//! `rcmd demo udp`: the same commands over UDP datagrams.
//!
//! UDP keeps message boundaries: one send is one receive, so replies never run into each
//! other. The price: a datagram larger than the receiver's buffer is cut to fit and the
//! rest is discarded by the kernel, gone for good. The reader asks with `MSG_TRUNC` how
//! long each datagram really was, so the loss can be counted.

use std::io::{self, Write};

use rustix::net::RecvFlags;
use tokio::io::Interest;
use tokio::net::UdpSocket;

use super::render::Style;
use super::{reference, Reference, ARRIVAL_GUARD};
use crate::printable::py_bytes;
use crate::wire::DEFAULT_RECV_SIZE;

/// Largest payload of one UDP datagram over IPv4.
const MAX_DATAGRAM: usize = 65_507;

const COMMANDS: &[&str] = &[
    "seq 1 1000",
    "echo hello",
    "pwd",
    "ls /nonexistent-rcmd-demo",
];

/// The demo's result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub commands: usize,
    pub wrong: usize,
    pub lost_bytes: usize,
    /// Replies that did not fit the buffer: exactly these should be wrong.
    pub too_long: usize,
    pub recv_size: usize,
}

impl Summary {
    /// Every reply that fit arrived whole and every one that did not was cut. With a
    /// buffer that holds every reply nothing is cut, and the summary says why.
    pub fn as_expected(&self) -> bool {
        self.wrong == self.too_long
    }

    /// The `--json` object.
    pub fn to_json(self) -> String {
        format!(
            "{{\"udp\": {{\"commands\": {}, \"wrong\": {}, \"lost_bytes\": {}}}}}",
            self.commands, self.wrong, self.lost_bytes
        )
    }

    /// The closing lines, within 80 columns.
    pub fn line(&self) -> String {
        let counts = format!(
            "udp: {} of {} replies correct, {} bytes lost",
            self.commands - self.wrong,
            self.commands,
            self.lost_bytes
        );
        if self.too_long == 0 {
            format!(
                "{counts}: every reply fit in recvfrom({}).\nA bigger buffer only hides the \
                 loss: a reply longer than the buffer is cut,\nas with the tutorial's \
                 buffer:\n    rcmd demo udp --recv-size {DEFAULT_RECV_SIZE}",
                self.recv_size
            )
        } else {
            format!("{counts}: boundaries kept, but a datagram\nlarger than the buffer is cut")
        }
    }
}

/// Runs the demo with a `recv_size`-byte receive buffer.
///
/// # Errors
/// An I/O error on the sockets or running a command.
pub async fn run(
    recv_size: usize,
    style: Style,
    out: &mut dyn Write,
    quiet: bool,
) -> io::Result<Summary> {
    let server = UdpSocket::bind("127.0.0.1:0").await?;
    let server_addr = server.local_addr()?;
    tokio::spawn(serve(server));

    let mut sink = io::sink();
    let out: &mut dyn Write = if quiet { &mut sink } else { out };
    let client = UdpSocket::bind("127.0.0.1:0").await?;
    client.connect(server_addr).await?;
    let mut buf = vec![0u8; recv_size];
    let mut summary = Summary {
        commands: COMMANDS.len(),
        recv_size,
        ..Summary::default()
    };
    writeln!(
        out,
        "{}",
        style.bold(&format!(
            "━━ the same commands over UDP, a datagram each way, recvfrom({recv_size}) ━━"
        ))
    )?;
    for (i, command) in COMMANDS.iter().enumerate() {
        let expected = reference(command).await?.raw();
        client.send(command.as_bytes()).await?;
        let real_len = recv_truncating(&client, &mut buf).await?;
        let got = &buf[..real_len.min(buf.len())];
        let lost = real_len - got.len();
        let wrong = got != expected;
        summary.wrong += usize::from(wrong);
        summary.lost_bytes += lost;
        summary.too_long += usize::from(expected.len() > recv_size);
        let verdict = if wrong {
            style.bad(&format!(
                "WRONG: datagram of {real_len} bytes cut to {}; {lost} bytes lost",
                got.len()
            ))
        } else {
            style.good("ok: one datagram, one whole reply")
        };
        writeln!(
            out,
            "  {} $ {:<28} recvfrom → {:>4} bytes",
            style.marker(i),
            command,
            got.len()
        )?;
        writeln!(out, "      {verdict}")?;
        writeln!(out, "      {}", style.dim(&py_bytes(got, 60)))?;
    }
    let line = summary.line();
    writeln!(
        out,
        "{}",
        style.bold(&if summary.as_expected() {
            style.good(&line)
        } else {
            style.bad(&line)
        })
    )?;
    Ok(summary)
}

/// Answers each datagram (a command) with one datagram holding its output.
async fn serve(sock: UdpSocket) -> io::Result<()> {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, peer) = sock.recv_from(&mut buf).await?;
        let command = String::from_utf8_lossy(&buf[..n]).into_owned();
        let Reference { stdout, stderr, .. } = reference(&command).await?;
        let reply = [stdout, stderr].concat();
        sock.send_to(&reply[..reply.len().min(MAX_DATAGRAM)], peer)
            .await?;
    }
}

/// Receives one datagram into `buf`, returning its full length even when it was longer
/// than `buf` (and so cut).
async fn recv_truncating(sock: &UdpSocket, buf: &mut [u8]) -> io::Result<usize> {
    let recv = async {
        loop {
            sock.readable().await?;
            match sock.try_io(Interest::READABLE, || {
                // MSG_TRUNC: the datagram's real length, though at most buf.len() is kept.
                let (_, len) = rustix::net::recv(sock, &mut *buf, RecvFlags::TRUNC)?;
                Ok(len)
            }) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return other,
            }
        }
    };
    tokio::time::timeout(ARRIVAL_GUARD, recv)
        .await
        .unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no datagram came back",
            ))
        })
}
