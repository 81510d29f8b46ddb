//! Load generator for `scripts/bench`: many framed clients at once, each running several
//! commands, every reply checked.
//!
//! Usage: `loadgen ADDR CLIENTS COMMANDS`. All clients connect and complete the handshake
//! first, so CLIENTS connections are open at the same time; then each runs COMMANDS
//! `echo` commands one after another. Prints one JSON object: counts, wrong replies, and
//! command latency percentiles in milliseconds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use rcmd::wire::header::HeaderFormat;
use rcmd::wire::message::{ClientCodec, ClientMessage, Hello, ServerMessage};
use rcmd::Status;
use tokio::net::TcpStream;
use tokio::sync::Barrier;
use tokio_util::codec::Framed;

type Conn = Framed<TcpStream, ClientCodec>;

async fn connect(addr: &str) -> Result<Conn, String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut conn = Framed::new(stream, ClientCodec::new(HeaderFormat::NETWORK_U32, 1 << 20));
    conn.send(ClientMessage::Hello(Hello::new(1 << 20, Bytes::new())))
        .await
        .map_err(|e| e.to_string())?;
    match conn.next().await {
        Some(Ok(ServerMessage::Hello(_))) => Ok(conn),
        other => Err(format!("handshake failed: {other:?}")),
    }
}

/// Runs one command; returns whether the reply was exactly right, and how long it took.
async fn run(conn: &mut Conn, text: &str) -> Result<(bool, Duration), String> {
    let started = Instant::now();
    conn.send(ClientMessage::Run(Bytes::from(format!("echo {text}"))))
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    loop {
        match conn.next().await {
            Some(Ok(ServerMessage::Stdout(b))) => out.extend_from_slice(&b),
            Some(Ok(ServerMessage::Done(status))) => {
                let right = status == Status::Exited(0) && out == format!("{text}\n").as_bytes();
                return Ok((right, started.elapsed()));
            }
            Some(Ok(_)) => {}
            other => return Err(format!("reply broken: {other:?}")),
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, addr, clients, commands] = &args[..] else {
        eprintln!("usage: loadgen ADDR CLIENTS COMMANDS");
        std::process::exit(2);
    };
    let clients: usize = clients.parse().expect("CLIENTS is a number");
    let commands: usize = commands.parse().expect("COMMANDS is a number");
    let barrier = Arc::new(Barrier::new(clients));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let addr = addr.clone();
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                let conn = connect(&addr).await;
                // Everyone connected before anyone runs a command.
                barrier.wait().await;
                let mut conn = conn?;
                let mut results = Vec::with_capacity(commands);
                for i in 0..commands {
                    results.push(run(&mut conn, &format!("{c}-{i}")).await?);
                }
                Ok::<_, String>(results)
            })
        })
        .collect();
    let (mut latencies, mut wrong, mut failed) = (Vec::new(), 0usize, Vec::new());
    for t in tasks {
        match t.await.expect("client task panicked") {
            Ok(results) => {
                for (right, took) in results {
                    wrong += usize::from(!right);
                    latencies.push(took);
                }
            }
            Err(e) => failed.push(e),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    println!(
        "{{\"clients\": {clients}, \"commands\": {}, \"wrong\": {wrong}, \"failed_clients\": {}, \
         \"p50_ms\": {:.2}, \"p99_ms\": {:.2}, \"max_ms\": {:.2}, \"elapsed_s\": {elapsed:.2}}}",
        latencies.len(),
        failed.len(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
    );
    if let Some(e) = failed.first() {
        eprintln!("first failure: {e}");
    }
}
