//! `rcmd demo rtt`: what a round trip costs each stage, measured live.
//!
//! Every stage's client talks to its server through an in-process proxy that holds each
//! piece of data for `delay` in each direction, as a network would. The tutorial calls
//! its length-then-ready fix clumsy because the extra wait "amplifies network latency":
//! here it pays two round trips per command where the others pay one, and framed
//! pipelining pays one for a whole batch.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{FramedRead, FramedWrite};

use super::render::Style;
use crate::server::{serve, ServerConfig};
use crate::wire::message::{ClientCodec, ClientMessage, Hello, ServerMessage};
use crate::wire::Protocol;

/// Commands per stage.
const COMMANDS: usize = 5;
const COMMAND: &str = "echo hi";

/// The stages measured, with the round trips each should pay per command.
pub const ROWS: [(&str, &str); 5] = [
    ("naive", "1"),
    (
        "length_ack",
        "2: the length; b'recv_ready', then the output",
    ),
    ("classic", "1"),
    ("framed", "1"),
    ("framed_pipelined", "1 per batch: all sent before any reply"),
];

/// Milliseconds per command, per row of [`ROWS`].
#[derive(Debug, Clone, PartialEq)]
pub struct Timings {
    pub delay: Duration,
    pub per_command_ms: [f64; 5],
}

impl Timings {
    pub fn to_json(&self) -> String {
        let rows: Vec<String> = ROWS
            .iter()
            .zip(self.per_command_ms)
            .map(|((name, _), ms)| format!("\"{name}\": {ms:.1}"))
            .collect();
        format!(
            "{{\"delay_ms\": {}, \"per_command_ms\": {{{}}}}}",
            self.delay.as_millis(),
            rows.join(", ")
        )
    }
}

/// Runs the measurement, printing a table to `out` unless `quiet`.
///
/// # Errors
/// An I/O error talking to the servers.
pub async fn run(
    delay: Duration,
    style: Style,
    out: &mut dyn Write,
    quiet: bool,
) -> io::Result<Timings> {
    let mut sink = io::sink();
    let out: &mut dyn Write = if quiet { &mut sink } else { out };
    writeln!(
        out,
        "{}",
        style.bold(&format!(
            "━━ {COMMANDS} × `{COMMAND}` through a proxy that holds data {} ms each way ━━",
            delay.as_millis()
        ))
    )?;
    writeln!(
        out,
        "  One round trip is {} ms. Times are measured now, so they vary a little\n  \
         from run to run; the order does not.\n",
        2 * delay.as_millis()
    )?;
    writeln!(
        out,
        "  {:<17} {:>11}  round trips per command",
        "stage", "per command"
    )?;
    let mut per_command_ms = [0.0; 5];
    for (k, (name, trips)) in ROWS.iter().enumerate() {
        let protocol = match *name {
            "naive" => Protocol::Naive,
            "length_ack" => Protocol::LengthAck,
            "classic" => Protocol::Classic,
            _ => Protocol::Framed,
        };
        let server = start(protocol).await?;
        let proxy = proxy(server, delay).await?;
        let conn = TcpStream::connect(proxy).await?;
        conn.set_nodelay(true)?;
        let elapsed = match *name {
            "framed" => framed(conn, false).await?,
            "framed_pipelined" => framed(conn, true).await?,
            _ => tutorial(conn, protocol).await?,
        };
        let ms = elapsed.as_secs_f64() * 1000.0 / COMMANDS as f64;
        per_command_ms[k] = ms;
        writeln!(
            out,
            "  {:<17} {:>8.0} ms  {trips}",
            name.replace('_', "-").replace("-pipelined", ", pipelined"),
            ms
        )?;
    }
    Ok(Timings {
        delay,
        per_command_ms,
    })
}

async fn start(protocol: Protocol) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(serve(
        listener,
        ServerConfig::new(protocol),
        std::future::pending(),
    ));
    Ok(addr)
}

/// A proxy for one connection to `upstream`, holding data `delay` in each direction.
async fn proxy(upstream: SocketAddr, delay: Duration) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let (client, _) = listener.accept().await?;
        let server = TcpStream::connect(upstream).await?;
        client.set_nodelay(true)?;
        server.set_nodelay(true)?;
        let (cr, cw) = client.into_split();
        let (sr, sw) = server.into_split();
        tokio::try_join!(delayed(cr, sw, delay), delayed(sr, cw, delay))?;
        Ok::<_, io::Error>(())
    });
    Ok(addr)
}

/// Copies `from` to `to`, each piece written `delay` after it was read, in order.
async fn delayed(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) -> io::Result<()> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = from.read(&mut buf).await?;
            if n == 0
                || tx
                    .send((tokio::time::Instant::now() + delay, buf[..n].to_vec()))
                    .is_err()
            {
                return Ok::<_, io::Error>(());
            }
        }
    };
    let writer = async move {
        while let Some((at, bytes)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            to.write_all(&bytes).await?;
        }
        to.shutdown().await
    };
    tokio::try_join!(reader, writer)?;
    Ok(())
}

/// The tutorial's client of `protocol`, one command at a time; the time for all.
async fn tutorial(mut conn: TcpStream, protocol: Protocol) -> io::Result<Duration> {
    let expected = b"hi\n";
    let began = Instant::now();
    for _ in 0..COMMANDS {
        conn.write_all(COMMAND.as_bytes()).await?;
        match protocol {
            Protocol::LengthAck => {
                let mut digits = [0u8; 1];
                conn.read_exact(&mut digits).await?;
                conn.write_all(crate::wire::tutorial::ACK).await?;
            }
            Protocol::Classic => {
                let mut head = [0u8; 4];
                conn.read_exact(&mut head).await?;
            }
            _ => {}
        }
        let mut got = [0u8; 3];
        conn.read_exact(&mut got).await?;
        if &got != expected {
            return Err(io::Error::other("unexpected reply through the proxy"));
        }
    }
    Ok(began.elapsed())
}

/// rcmd's framed client: one command at a time, or every command before any reply.
async fn framed(conn: TcpStream, pipelined: bool) -> io::Result<Duration> {
    let header = Protocol::Framed.default_header();
    let max = crate::wire::frame::DEFAULT_MAX_FRAME;
    let (rd, wr) = conn.into_split();
    let mut rd = FramedRead::new(rd, ClientCodec::new(header, max));
    let mut wr = FramedWrite::new(wr, ClientCodec::new(header, max));
    let err = |e: crate::wire::message::ProtocolError| io::Error::other(e.to_string());
    wr.send(ClientMessage::Hello(Hello::new(max, bytes::Bytes::new())))
        .await
        .map_err(err)?;
    match rd.next().await {
        Some(Ok(ServerMessage::Hello(_))) => {}
        other => return Err(io::Error::other(format!("expected a hello, got {other:?}"))),
    }
    let run = || ClientMessage::Run(BytesMut::from(COMMAND.as_bytes()).freeze());
    let began = Instant::now();
    let batches = if pipelined { 1 } else { COMMANDS };
    for _ in 0..batches {
        let n = COMMANDS / batches;
        for _ in 0..n {
            wr.feed(run()).await.map_err(err)?;
        }
        wr.flush().await.map_err(err)?;
        let mut done = 0;
        while done < n {
            match rd.next().await {
                Some(Ok(ServerMessage::Done(_))) => done += 1,
                Some(Ok(_)) => {}
                other => return Err(io::Error::other(format!("framed reply: {other:?}"))),
            }
        }
    }
    Ok(began.elapsed())
}
