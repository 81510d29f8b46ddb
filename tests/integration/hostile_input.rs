//! Peers that send what no honest client sends. Each gets an error where the protocol has
//! a way to say it, its connection closes, and the server keeps serving everyone else.

use crate::common;

use common::{hello, rcmd, send_raw_then_close, start_server, still_serves};
use rcmd::server::ServerConfig;
use rcmd::wire::Protocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The text of a `!` error frame with a `!I` header.
fn error_text(reply: &[u8]) -> String {
    assert!(reply.len() > 5, "no error frame in {reply:?}");
    let len = u32::from_be_bytes(reply[..4].try_into().unwrap()) as usize;
    assert_eq!(reply[4], b'!', "not an error frame: {reply:?}");
    String::from_utf8_lossy(&reply[5..4 + len]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_length_rejected() {
    let addr = start_server(ServerConfig::new(Protocol::Framed)).await;
    let reply = send_raw_then_close(addr, &[0xff, 0xff, 0xff, 0xf0]).await;
    assert!(
        error_text(&reply).contains("exceeds the limit"),
        "{reply:?}"
    );
    // The same after the handshake, where the limit is --max-frame.
    let mut bytes = hello(1, 1 << 20, b"");
    bytes.extend_from_slice(&[0x7f, 0, 0, 0, b'R']);
    let reply = send_raw_then_close(addr, &bytes).await;
    assert!(String::from_utf8_lossy(&reply).contains("exceeds the limit of 1048576"));
    still_serves(addr, &["--plaintext", "--header", "!I"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_length_rejected() {
    let mut config = ServerConfig::new(Protocol::Framed);
    config.wire.header = "!i".parse().unwrap();
    let addr = start_server(config).await;
    let reply = send_raw_then_close(addr, &[0xff, 0xff, 0xff, 0xfe]).await;
    assert!(
        error_text(&reply).contains("negative length (-2)"),
        "{reply:?}"
    );
    still_serves(addr, &["--plaintext", "--header", "!i"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_request_gets_told_it_is_not_rcmd() {
    let addr = start_server(ServerConfig::new(Protocol::Framed)).await;
    // "GET " read as !I is 1195725856: far past the hello limit.
    let reply = send_raw_then_close(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(error_text(&reply).contains("exceeds"), "{reply:?}");
    still_serves(addr, &["--plaintext", "--header", "!I"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_before_hello_is_refused() {
    let addr = start_server(ServerConfig::new(Protocol::Framed)).await;
    let reply = send_raw_then_close(addr, b"\x00\x00\x00\x05Rtrue").await;
    assert!(error_text(&reply).contains("hello"), "{reply:?}");
    still_serves(addr, &["--plaintext", "--header", "!I"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_closing_mid_frame_is_survived() {
    let addr = start_server(ServerConfig::new(Protocol::Framed)).await;
    let mut bytes = hello(1, 1 << 20, b"");
    bytes.extend_from_slice(b"\x00\x00\x01\x00Recho never");
    // The server answers the hello, then sees the stream end inside the next frame.
    let reply = send_raw_then_close(addr, &bytes).await;
    assert_eq!(&reply[4..9], b"Hrcmd");
    still_serves(addr, &["--plaintext", "--header", "!I"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_message_tag_is_refused() {
    let addr = start_server(ServerConfig::new(Protocol::Framed)).await;
    let mut bytes = hello(1, 1 << 20, b"");
    bytes.extend_from_slice(b"\x00\x00\x00\x02Yy");
    let reply = send_raw_then_close(addr, &bytes).await;
    assert!(String::from_utf8_lossy(&reply).contains("unknown client message tag 0x59"));
    still_serves(addr, &["--plaintext", "--header", "!I"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_magic_version_zero_and_second_hello_are_refused() {
    let addr = start_server(ServerConfig::new(Protocol::Framed)).await;
    let mut magic = hello(1, 1 << 20, b"");
    magic[8] = b'x';
    let reply = send_raw_then_close(addr, &magic).await;
    assert!(
        error_text(&reply).contains("does not start with \"rcmd\""),
        "{reply:?}"
    );
    let mut v0 = hello(1, 1 << 20, b"");
    v0[9] = 0;
    let reply = send_raw_then_close(addr, &v0).await;
    assert!(error_text(&reply).contains("version 0"), "{reply:?}");
    let mut twice = hello(1, 1 << 20, b"");
    twice.extend_from_slice(&hello(1, 1 << 20, b""));
    let reply = send_raw_then_close(addr, &twice).await;
    assert!(String::from_utf8_lossy(&reply).contains("unexpected second hello"));
    still_serves(addr, &["--plaintext", "--header", "!I"]).await;
}

// ---------------------------------------------------------------- a lying server

/// A one-connection fake server that reads whatever the client sends first and answers
/// with `reply`, then closes.
async fn lying_server(reply: Vec<u8>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut first = [0u8; 64];
        let _ = conn.read(&mut first).await;
        let _ = conn.write_all(&reply).await;
        let _ = conn.shutdown().await;
        // Keep reading so the client's writes are not refused before it reads our reply.
        let mut sink = Vec::new();
        let _ = conn.read_to_end(&mut sink).await;
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_refuses_a_huge_frame_from_the_server() {
    // A server "hello" announcing a 2 GiB frame: the client must not try to buffer it.
    let addr = lying_server(vec![0x7f, 0xff, 0xff, 0xff, b'H']).await;
    let r = rcmd(&["client", "--plaintext", &addr, "--", "true"], b"").await;
    r.expect_code(255);
    assert!(r.stderr_str().contains("exceeds the limit"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_client_refuses_a_negative_length() {
    let addr = lying_server((-5i32).to_ne_bytes().to_vec()).await;
    let r = rcmd(
        &[
            "client",
            "--plaintext",
            &addr,
            "--protocol",
            "classic",
            "--",
            "true",
        ],
        b"",
    )
    .await;
    r.expect_code(255);
    assert!(r.stderr_str().contains("negative length (-5)"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_client_streams_a_lying_length_without_allocating_it() {
    // Claims 2 GiB, sends 3 bytes and closes: the client copies what comes, in pieces,
    // then reports the short reply instead of waiting on (or allocating) the rest.
    let mut reply = i32::MAX.to_ne_bytes().to_vec();
    reply.extend_from_slice(b"abc");
    let addr = lying_server(reply).await;
    let r = rcmd(
        &[
            "client",
            "--plaintext",
            &addr,
            "--protocol",
            "classic",
            "--",
            "true",
        ],
        b"",
    )
    .await;
    r.expect_code(255);
    assert_eq!(r.stdout, b"abc");
    assert!(r.stderr_str().contains("closed the connection"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_client_refuses_a_header_over_max_frame() {
    let addr = lying_server(100_000i32.to_ne_bytes().to_vec()).await;
    let r = rcmd(
        &[
            "client",
            "--plaintext",
            &addr,
            "--protocol",
            "json-header",
            "--max-frame",
            "4096",
            "--",
            "true",
        ],
        b"",
    )
    .await;
    r.expect_code(255);
    assert!(r.stderr_str().contains("more than --max-frame 4096"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_client_survives_sizes_that_overflow_when_added() {
    // stderr_size + stdout_size wraps to total_size in 64 bits: trusting the split would
    // copy "18 EB" of stderr. The sum is checked, so the output is taken as one stream.
    let json = br#"{"total_size":3,"stderr_size":18446744073709551615,"stdout_size":4}"#;
    let mut reply = (json.len() as i32).to_ne_bytes().to_vec();
    reply.extend_from_slice(json);
    reply.extend_from_slice(b"abc");
    let addr = lying_server(reply).await;
    let r = rcmd(
        &["client", &addr, "--protocol", "json-header", "--", "true"],
        b"",
    )
    .await;
    r.expect_code(0);
    assert_eq!(r.stdout, b"abc", "{r}");
}
