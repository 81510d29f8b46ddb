//! A client pointed at a server of another mode says which mode it speaks, and a reply
//! that stops part-way through a frame is explained, never waited on for ever.

use crate::common;

use std::time::Duration;

use common::{rcmd, start_server};
use rcmd::client::{self, ClientConfig, ClientError, Input, Output};
use rcmd::server::ServerConfig;
use rcmd::wire::Protocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framed_client_names_the_tutorial_mode_it_reached() {
    for (mode, name) in [
        (Protocol::Classic, "classic"),
        (Protocol::JsonHeader, "json-header"),
    ] {
        let addr = start_server(ServerConfig::new(mode)).await.to_string();
        let r = rcmd(
            &["client", &addr, "--plaintext", "-n", "--", "echo hi"],
            b"",
        )
        .await;
        r.expect_code(255);
        assert!(
            r.stderr_str().contains(&format!(
                "the server speaks `{name}`; try --protocol {name}"
            )),
            "{r}"
        );
        assert!(r.stdout.is_empty(), "nothing raw is printed: {r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn naive_client_names_a_framed_server_instead_of_printing_frames() {
    let addr = start_server(ServerConfig::new(Protocol::Framed))
        .await
        .to_string();
    let r = rcmd(
        &["client", &addr, "--plaintext", "--naive", "--", "echo hi"],
        b"",
    )
    .await;
    r.expect_code(255);
    assert!(r.stderr_str().contains("try --protocol framed"), "{r}");
    assert!(r.stdout.is_empty(), "{r}");
}

/// Reads the client's first frame after the hello (its command), whole.
async fn command_came(conn: &mut tokio::net::TcpStream) {
    let mut len = [0u8; 4];
    conn.read_exact(&mut len).await.unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    conn.read_exact(&mut body).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_that_stops_half_way_is_explained() {
    // A server that answers the hello, then sends two bytes of a four-byte header and
    // nothing more, as one whose --header is wider than the client's would.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut hello = [0u8; 14];
        conn.read_exact(&mut hello).await.unwrap();
        conn.write_all(b"\x00\x00\x00\x0aHrcmd\x02\x00\x10\x00\x00")
            .await
            .unwrap();
        // Only once the command came: the client is then waiting for its reply with
        // nothing buffered, and the half header must still be noticed.
        command_came(&mut conn).await;
        conn.write_all(b"\x00\x00").await.unwrap();
        let mut rest = Vec::new();
        let _ = conn.read_to_end(&mut rest).await;
    });
    let mut config = ClientConfig::new(Protocol::Framed);
    config.stall_timeout = Duration::from_millis(300);
    let mut out = Output {
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    let err = tokio::time::timeout(
        common::PROCESS_DEADLINE,
        client::run(&addr, &config, Input::one(b"echo hi".to_vec()), &mut out),
    )
    .await
    .expect("the client waited for ever on half a frame")
    .unwrap_err();
    assert!(matches!(err, ClientError::Usage(_)), "{err}");
    assert!(err.to_string().contains("another --header"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_that_stops_in_its_data_does_not_blame_the_header() {
    // A server that answers the hello, then sends a well-formed head of a 100-byte stdout
    // frame and 10 bytes of its data: the formats agree, so --header is not the cause.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut hello = [0u8; 14];
        conn.read_exact(&mut hello).await.unwrap();
        conn.write_all(b"\x00\x00\x00\x0aHrcmd\x02\x00\x10\x00\x00")
            .await
            .unwrap();
        command_came(&mut conn).await;
        conn.write_all(b"\x00\x00\x00\x64Ohalf-a-fr").await.unwrap();
        let mut rest = Vec::new();
        let _ = conn.read_to_end(&mut rest).await;
    });
    let mut config = ClientConfig::new(Protocol::Framed);
    config.stall_timeout = Duration::from_millis(300);
    let mut out = Output {
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    let err = tokio::time::timeout(
        common::PROCESS_DEADLINE,
        client::run(&addr, &config, Input::one(b"echo hi".to_vec()), &mut out),
    )
    .await
    .expect("the client waited for ever on half a frame")
    .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("10 bytes of its data came"), "{message}");
    assert!(message.contains("stopped sending"), "{message}");
    assert!(!message.contains("--header"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_client_is_told_the_server_speaks_tls() {
    let home = common::RcmdHome::new();
    let server = home.server(&[]).await;
    let r = home
        .rcmd(
            &[
                "client",
                "--plaintext",
                &server.addr.to_string(),
                "-n",
                "--",
                "true",
            ],
            b"",
        )
        .await;
    r.expect_code(255);
    assert!(r.stderr_str().contains("leave out --plaintext"), "{r}");
    server.stop().await;
}

/// What a client in `client` mode must suggest to reach a server started with `server`.
fn hint(server: &[&str]) -> &'static str {
    match server {
        [] => "try --protocol framed",
        ["--plaintext"] => "--plaintext",
        [_, "naive"] => "try --protocol naive",
        [_, "length-ack"] => "try --protocol length-ack",
        [_, "classic"] => "try --protocol classic",
        [_, "json-header"] => "try --protocol json-header",
        _ => unreachable!(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_names_the_mode_of_every_other_server() {
    let modes: [&[&str]; 6] = [
        &[],
        &["--plaintext"],
        &["--protocol", "naive"],
        &["--protocol", "length-ack"],
        &["--protocol", "classic"],
        &["--protocol", "json-header"],
    ];
    let home = common::RcmdHome::new();
    let mut wrong = Vec::new();
    for server_args in modes {
        let server = home.server(server_args).await;
        let addr = server.addr.to_string();
        // The five clients of one server at once: most of each case is a process
        // starting, or a client waiting out the silence that tells it the mode.
        let cases = modes
            .iter()
            .filter(|c| **c != server_args)
            .map(|client_args| wrong_reply(&home, &addr, server_args, client_args));
        wrong.extend(
            futures_util::future::join_all(cases)
                .await
                .into_iter()
                .flatten(),
        );
        server.stop().await;
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// What is wrong with how a client run with `client_args` is told of a server run with
/// `server_args` at `addr`, if anything.
async fn wrong_reply(
    home: &common::RcmdHome,
    addr: &str,
    server_args: &[&str],
    client_args: &[&str],
) -> Option<String> {
    let expected = match (server_args, client_args) {
        // Both framed: one has TLS and the other not.
        ([], ["--plaintext"]) => "leave out --plaintext",
        (["--plaintext"], []) => "add --plaintext",
        _ => hint(server_args),
    };
    // A classic or json-header client reading a naive or length-ack reply waits for the
    // rest of its header until its stall limit (5 s) runs out, then names the mode: run
    // in-process, with the limit shortened, the four cases cost a second instead of
    // twenty. The binary's exit code for this error (255, as for every client error) is
    // checked by the other cases.
    if let ([_, server_mode @ ("naive" | "length-ack")], [_, client_mode]) =
        (server_args, client_args)
    {
        if let Some(protocol) = stalling_client(client_mode) {
            return stalled_reply_is_named(addr, protocol, expected)
                .await
                .err()
                .map(|why| format!("server {server_mode}, client {client_mode}: {why}"));
        }
    }
    let mut args = vec!["client", addr, "-n"];
    args.extend_from_slice(client_args);
    args.extend_from_slice(&["--", "echo hi"]);
    let r = home.rcmd(&args, b"").await;
    // Digits alone may be a naive reply: printed, with a warning naming the mode.
    if let (["--protocol", "length-ack"], ["--protocol", "naive"]) = (server_args, client_args) {
        return (!r.stderr_str().contains(expected)).then(|| format!("no warning: {r}"));
    }
    // Nothing raw is printed, and the one message names the mode.
    (r.code != Some(255) || !r.stderr_str().contains(expected) || !r.stdout.is_empty()).then(|| {
        format!("server {server_args:?}, client {client_args:?}: wanted {expected:?}\n{r}")
    })
}

/// The client modes whose reply has a header to wait for, which stall on a naive or
/// length-ack server's reply.
fn stalling_client(mode: &str) -> Option<Protocol> {
    match mode {
        "classic" => Some(Protocol::Classic),
        "json-header" => Some(Protocol::JsonHeader),
        _ => None,
    }
}

/// Runs `echo hi` with a `protocol` client whose stall limit is short: it must fail with a
/// message containing `expected` and print nothing of the reply.
async fn stalled_reply_is_named(
    addr: &str,
    protocol: Protocol,
    expected: &str,
) -> Result<(), String> {
    let mut config = ClientConfig::new(protocol);
    config.stall_timeout = Duration::from_millis(200);
    let mut out = Output {
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    let result = tokio::time::timeout(
        common::PROCESS_DEADLINE,
        client::run(addr, &config, Input::one(b"echo hi".to_vec()), &mut out),
    )
    .await
    .map_err(|_| "the client waited for ever".to_string())?;
    match result {
        Err(e @ ClientError::Usage(_)) if e.to_string().contains(expected) => {}
        other => return Err(format!("wanted {expected:?}, got {other:?}")),
    }
    if !out.stdout.is_empty() {
        return Err(format!(
            "printed {:?}",
            String::from_utf8_lossy(&out.stdout)
        ));
    }
    Ok(())
}

/// A classic server's header can arrive alone, its output a moment later: the naive
/// client still names the mode instead of printing four bytes of header as the reply.
/// (The pause only makes the split likely; the hint must come either way.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn naive_client_names_classic_when_the_header_arrives_alone() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        conn.set_nodelay(true).unwrap();
        let mut command = [0u8; 64];
        let _ = conn.read(&mut command).await.unwrap();
        conn.write_all(&3i32.to_le_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _ = conn.write_all(b"hi\n").await;
        let mut rest = Vec::new();
        let _ = conn.read_to_end(&mut rest).await;
    });
    let r = rcmd(
        &["client", &addr, "--protocol", "naive", "--", "echo hi"],
        b"",
    )
    .await;
    r.expect_code(255);
    assert!(r.stderr_str().contains("try --protocol classic"), "{r}");
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_with_another_header_than_the_server_is_told_so() {
    // The server frames with !I; this client reads its answer with <H and finds an empty
    // frame. It used to say only "protocol error: malformed message: empty frame".
    let addr = start_server(common::framed()).await.to_string();
    for args in [
        vec![
            "client",
            "--plaintext",
            "--header",
            "<H",
            &addr,
            "--",
            "true",
        ],
        vec![
            "cp",
            "--plaintext",
            "--header",
            "<H",
            "-P",
            addr.rsplit(':').next().unwrap(),
            "/etc/hostname",
            "127.0.0.1:x",
        ],
    ] {
        let r = rcmd(&args, b"").await;
        r.expect_code(255);
        let err = r.stderr_str();
        assert!(err.contains("different --header formats"), "{r}");
        assert!(err.contains("2-byte '<H' header"), "{r}");
    }
}
