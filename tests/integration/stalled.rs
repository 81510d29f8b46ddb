//! A client that stops reading defeats no limit, and a peer cannot move the server's
//! bounds: each case as a hostile raw-TCP peer plays it.

use crate::common;

use std::time::Duration;

use common::{frame, hello, pids_running, rcmd, start_server, unique_marker, wait_until};
use rcmd::server::ServerConfig;
use rcmd::wire::Protocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Connects, says hello and asks for `yes MARKER`, then never reads a byte.
async fn stalled_client(addr: std::net::SocketAddr, token: &[u8], marker: &str) -> TcpStream {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let mut bytes = hello(2, 1 << 20, token);
    bytes.extend(frame(format!("Ryes {marker}").as_bytes()));
    conn.write_all(&bytes).await.unwrap();
    let yes = format!("yes {marker}");
    wait_until("yes is running", || !pids_running(&yes).is_empty()).await;
    conn
}

async fn yes_is_gone(marker: &str) {
    let yes = format!("yes {marker}");
    wait_until("the command is killed", || pids_running(&yes).is_empty()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_holds_when_the_client_stops_reading() {
    let mut config = ServerConfig::new(Protocol::Framed);
    config.limits.command_timeout = Some(Duration::from_millis(500));
    let addr = start_server(config).await;
    let marker = unique_marker();
    let conn = stalled_client(addr, b"", &marker).await;
    yes_is_gone(&marker).await;
    drop(conn);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_makes_no_progress_ends_the_connection() {
    let mut config = ServerConfig::new(Protocol::Framed);
    config.limits.idle_timeout = Some(Duration::from_millis(500));
    let addr = start_server(config).await;
    let marker = unique_marker();
    let mut conn = stalled_client(addr, b"", &marker).await;
    yes_is_gone(&marker).await;
    // The server hung up: reading now drains what it had sent, then ends.
    let mut sink = Vec::new();
    let ended = tokio::time::timeout(common::PROCESS_DEADLINE, conn.read_to_end(&mut sink)).await;
    assert!(ended.is_ok(), "the server kept the stalled connection open");
    let r = rcmd(
        &[
            "client",
            &addr.to_string(),
            "--plaintext",
            "-n",
            "--",
            "echo alive",
        ],
        b"",
    )
    .await;
    assert_eq!(r.stdout_str(), "alive\n", "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_whatever_a_stalled_client_does() {
    let home = common::RcmdHome::new();
    // Plaintext, so the raw peer below can speak the framed protocol itself.
    let mut server = home.server(&["--grace", "0.3", "--plaintext"]).await;
    let token = std::fs::read_to_string(home.token_file()).unwrap();
    let marker = unique_marker();
    let conn = stalled_client(server.addr, token.trim().as_bytes(), &marker).await;
    // SAFETY: kill(2) on the server this test started.
    unsafe { libc::kill(server.child.id().unwrap() as i32, libc::SIGTERM) };
    // The stalled connection is still held open here: the server may not wait for it.
    let status = tokio::time::timeout(common::PROCESS_DEADLINE, server.child.wait())
        .await
        .expect("the server waited for a client that does not read")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    yes_is_gone(&marker).await;
    drop(conn);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hello_asking_for_tiny_frames_is_refused() {
    let addr = start_server(ServerConfig::new(Protocol::Framed)).await;
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(&hello(2, 10, b"")).await.unwrap();
    conn.write_all(&frame(b"Rseq 1 100000")).await.unwrap();
    let mut reply = Vec::new();
    conn.read_to_end(&mut reply).await.unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.contains("below the minimum of 1024"), "{reply}");
    assert!(!reply.contains("\n99999\n"), "the command ran: {reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_messages_fit_the_clients_frames() {
    let addr = start_server(ServerConfig::new(Protocol::Framed))
        .await
        .to_string();
    // The failure names the directory: 3000 bytes of it, for a client taking 1024.
    let dir = format!("/{}", "d".repeat(3000));
    let r = rcmd(
        &[
            "client",
            &addr,
            "--plaintext",
            "-n",
            "--max-frame",
            "1024",
            "--cwd",
            &dir,
            "--",
            "pwd",
        ],
        b"",
    )
    .await;
    r.expect_code(1);
    assert!(r.stderr_str().starts_with("rcmd: cd /ddd"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newline_in_a_command_cannot_forge_a_log_line() {
    let home = common::RcmdHome::new();
    let server = home.server(&[]).await;
    let line = "echo a\n2026-01-01T00:00:00Z  WARN forged: attack";
    let r = home
        .rcmd(&["client", &server.addr.to_string(), "-n", "--", line], b"")
        .await;
    // The second line runs too (and is not a command): what matters is the log.
    r.expect_code(127);
    let log = server.stop().await;
    assert!(
        log.iter().all(|l| !l.starts_with("2026-01-01T00:00:00Z")),
        "{log:#?}"
    );
    assert!(log.iter().any(|l| l.contains(r"echo a\n")), "{log:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_beyond_the_granted_credit_is_refused() {
    let addr = start_server(ServerConfig::new(Protocol::Framed)).await;
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let marker = unique_marker();
    // A command that never reads its stdin: after the pipe's worth, no more is granted.
    let mut bytes = hello(2, 1 << 20, b"");
    bytes.extend(frame(format!("Psleep {marker}").as_bytes()));
    conn.write_all(&bytes).await.unwrap();
    let (mut rd, mut wr) = conn.into_split();
    let flood = tokio::spawn(async move {
        let mut chunk = b"I".to_vec();
        chunk.resize(1_000_000, b'x');
        for _ in 0..16 {
            if wr.write_all(&frame(&chunk)).await.is_err() {
                break;
            }
        }
    });
    let mut reply = Vec::new();
    rd.read_to_end(&mut reply).await.unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.contains("were granted"), "{reply}");
    flood.abort();
    let sleep = format!("sleep {marker}");
    wait_until("the command is killed", || pids_running(&sleep).is_empty()).await;
}

/// Reads framed `!I` messages from `conn` until `count` of the tags in `ends` are seen;
/// returns every message's payload.
async fn read_until(conn: &mut TcpStream, ends: &[u8], count: usize) -> Vec<Vec<u8>> {
    let mut msgs = Vec::new();
    let mut seen = 0;
    while seen < count {
        let mut len = [0u8; 4];
        conn.read_exact(&mut len).await.unwrap();
        let mut payload = vec![0u8; u32::from_be_bytes(len) as usize];
        conn.read_exact(&mut payload).await.unwrap();
        if ends.contains(&payload[0]) {
            seen += 1;
        }
        msgs.push(payload);
    }
    msgs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_credit_does_not_add_up_across_commands() {
    let addr = start_server(ServerConfig::new(Protocol::Framed)).await;
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let mut bytes = hello(2, 1 << 20, b"");
    for _ in 0..20 {
        bytes.extend(frame(b"Ptrue"));
    }
    conn.write_all(&bytes).await.unwrap();
    let msgs = read_until(&mut conn, b"XSF", 20).await;
    let granted: u64 = msgs
        .iter()
        .filter(|m| m[0] == b'G')
        .map(|m| u64::from(u32::from_be_bytes(m[1..5].try_into().unwrap())))
        .sum();
    // One window in all: none of the commands read stdin, so nothing was given back.
    assert_eq!(granted, u64::from(rcmd::wire::message::STDIN_WINDOW));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_for_one_command_is_bounded() {
    let addr = start_server(ServerConfig::new(Protocol::Framed)).await;
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let mut bytes = hello(2, 1 << 20, b"");
    let value = "v".repeat(64 << 10);
    for i in 0..4 {
        bytes.extend(frame(format!("VLC_X{i}\0{value}").as_bytes()));
    }
    bytes.extend(frame(b"Rtrue"));
    conn.write_all(&bytes).await.unwrap();
    let mut reply = Vec::new();
    conn.read_to_end(&mut reply).await.unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.contains("128 KiB"), "{reply}");
}
