//! Peers that send what no honest client sends. Each gets an error where the protocol has
//! a way to say it, its connection closes, and the server keeps serving everyone else.

mod common;

use common::{rcmd, start_server};
use rcmd::server::ServerConfig;
use rcmd::wire::Protocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `bytes` and closes our side, then reads until the server closes; returns what
/// the server sent back.
async fn send_raw(addr: std::net::SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    s.shutdown().await.unwrap();
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(common::PROCESS_DEADLINE, s.read_to_end(&mut reply))
        .await
        .expect("server never closed the connection");
    reply
}

/// The text of a `!` error frame with a `!I` header.
fn error_text(reply: &[u8]) -> String {
    assert!(reply.len() > 5, "no error frame in {reply:?}");
    let len = u32::from_be_bytes(reply[..4].try_into().unwrap()) as usize;
    assert_eq!(reply[4], b'!', "not an error frame: {reply:?}");
    String::from_utf8_lossy(&reply[5..4 + len]).into_owned()
}

async fn still_serves(addr: std::net::SocketAddr, header: &str) {
    let r = rcmd(
        &[
            "client",
            &addr.to_string(),
            "--header",
            header,
            "--",
            "echo alive",
        ],
        b"",
    )
    .await;
    r.expect_code(0);
    assert_eq!(r.stdout_str(), "alive\n");
}

fn hello() -> Vec<u8> {
    let mut h = vec![0, 0, 0, 10, b'H', b'r', b'c', b'm', b'd', 1];
    h.extend_from_slice(&(1u32 << 20).to_be_bytes());
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_length_rejected() {
    let addr = start_server(ServerConfig::new(Protocol::Framed)).await;
    let reply = send_raw(addr, &[0xff, 0xff, 0xff, 0xf0]).await;
    assert!(
        error_text(&reply).contains("exceeds the limit"),
        "{reply:?}"
    );
    // The same after the handshake, where the limit is --max-frame.
    let mut bytes = hello();
    bytes.extend_from_slice(&[0x7f, 0, 0, 0, b'R']);
    let reply = send_raw(addr, &bytes).await;
    assert!(String::from_utf8_lossy(&reply).contains("exceeds the limit of 1048576"));
    still_serves(addr, "!I").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_length_rejected() {
    let mut config = ServerConfig::new(Protocol::Framed);
    config.wire.header = "!i".parse().unwrap();
    let addr = start_server(config).await;
    let reply = send_raw(addr, &[0xff, 0xff, 0xff, 0xfe]).await;
    assert!(
        error_text(&reply).contains("negative length (-2)"),
        "{reply:?}"
    );
    still_serves(addr, "!i").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_request_gets_told_it_is_not_rcmd() {
    let addr = start_server(ServerConfig::new(Protocol::Framed)).await;
    // "GET " read as !I is 1195725856: far past the hello limit.
    let reply = send_raw(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(error_text(&reply).contains("exceeds"), "{reply:?}");
    still_serves(addr, "!I").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_before_hello_is_refused() {
    let addr = start_server(ServerConfig::new(Protocol::Framed)).await;
    let reply = send_raw(addr, b"\x00\x00\x00\x05Rtrue").await;
    assert!(error_text(&reply).contains("hello"), "{reply:?}");
    still_serves(addr, "!I").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_closing_mid_frame_is_survived() {
    let addr = start_server(ServerConfig::new(Protocol::Framed)).await;
    let mut bytes = hello();
    bytes.extend_from_slice(b"\x00\x00\x01\x00Recho never");
    // The server answers the hello, then sees the stream end inside the next frame.
    let reply = send_raw(addr, &bytes).await;
    assert_eq!(&reply[4..9], b"Hrcmd");
    still_serves(addr, "!I").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_message_tag_is_refused() {
    let addr = start_server(ServerConfig::new(Protocol::Framed)).await;
    let mut bytes = hello();
    bytes.extend_from_slice(b"\x00\x00\x00\x02Zz");
    let reply = send_raw(addr, &bytes).await;
    assert!(String::from_utf8_lossy(&reply).contains("unknown client message tag 0x5a"));
    still_serves(addr, "!I").await;
}
