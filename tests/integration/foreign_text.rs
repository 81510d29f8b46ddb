//! Text from the other side (a server's error, warning and failure messages; a client's
//! `--cwd`) reaches our terminal and the server's log escaped, on one line: a peer can
//! neither move the cursor, retitle the terminal, ring its bell, nor forge a line of ours.

use crate::common;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use rcmd::wire::message::{ClientMessage, Hello, ServerCodec, ServerMessage};
use rcmd::wire::{Protocol, Wire};
use rcmd::Status;
use tokio::net::TcpListener;
use tokio_util::codec::{FramedRead, FramedWrite};

/// A retitled terminal (OSC ... BEL), a cleared line, a carriage return and a newline, each
/// followed by text that would pass for rcmd's own.
const HOSTILE: &str = "\x1b]0;pwned\x07\x1b[2K\rrcmd: all is well\nrcmd: a second line\x1b[31m";

/// How the hostile server answers.
#[derive(Clone, Copy)]
enum Answer {
    /// `!` instead of a hello.
    Error,
    /// A hello, then for the first command a warning (v2 clients only) and a failure.
    Failure { notice: bool },
}

/// A server that speaks the framed protocol in the clear and fills every text it sends
/// with [`HOSTILE`]. Serves connections until the test ends.
async fn hostile_server(answer: Answer) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let header = Wire::new(Protocol::Framed).header;
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (rd, wr) = conn.into_split();
                let mut rd = FramedRead::new(rd, ServerCodec::new(header, 1 << 20));
                let mut wr = FramedWrite::new(wr, ServerCodec::new(header, 1 << 20));
                let Some(Ok(ClientMessage::Hello(hello))) = rd.next().await else {
                    return;
                };
                let Answer::Failure { notice } = answer else {
                    let _ = wr.send(ServerMessage::Error(HOSTILE.into())).await;
                    return;
                };
                let reply = Hello {
                    version: hello.version,
                    ..Hello::new(1 << 20, Bytes::new())
                };
                let _ = wr.send(ServerMessage::Hello(reply)).await;
                while let Some(Ok(msg)) = rd.next().await {
                    if matches!(msg, ClientMessage::Run(_) | ClientMessage::RunWithStdin(_)) {
                        if notice {
                            let _ = wr.send(ServerMessage::Notice(HOSTILE.into())).await;
                        }
                        let failed = Status::Failed {
                            code: 3,
                            message: HOSTILE.into(),
                        };
                        let _ = wr.send(ServerMessage::Done(failed)).await;
                    }
                }
            });
        }
    });
    addr
}

/// Asserts that `shown` holds the hostile text only escaped: no control character but
/// line ends, and each copy of it on a line of its own.
#[track_caller]
fn escaped(shown: &str, copies: usize, what: &str) {
    assert!(
        !shown.contains(['\x1b', '\x07', '\r']),
        "{what}: raw control characters reached the terminal: {shown:?}"
    );
    assert!(
        !shown.lines().any(|l| l.starts_with("rcmd: a second line")),
        "{what}: a forged line: {shown:?}"
    );
    let one_line = shown
        .lines()
        .filter(|l| l.contains("pwned") && l.contains("a second line"))
        .count();
    assert_eq!(one_line, copies, "{what}: {shown:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_servers_error_is_shown_escaped() {
    let addr = hostile_server(Answer::Error).await.to_string();
    let r = common::rcmd(&["client", "--plaintext", &addr, "--", "true"], b"").await;
    r.expect_code(255);
    escaped(&r.stderr_str(), 1, "rcmd client");
    assert!(
        r.stderr_str().contains(r"server: \u{1b}]0;pwned\u{7}"),
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_servers_warning_and_failure_are_shown_escaped() {
    let addr = hostile_server(Answer::Failure { notice: true })
        .await
        .to_string();
    let r = common::rcmd(&["client", "--plaintext", &addr, "-n", "--", "true"], b"").await;
    r.expect_code(3);
    escaped(&r.stderr_str(), 2, "rcmd client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fanout_summary_shows_server_errors_escaped() {
    let addr = hostile_server(Answer::Error).await.to_string();
    let r = common::rcmd(&["client", "--plaintext", "-H", &addr, "--", "true"], b"").await;
    r.expect_code(255);
    escaped(&r.stderr_str(), 1, "the fan-out summary");
    assert!(r.stderr_str().contains("1 of 1 hosts failed"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_shows_server_text_escaped() {
    let script = common::peer("scripts/rcmd_client.py");
    for (answer, code) in [(Answer::Error, 255), (Answer::Failure { notice: false }, 3)] {
        let addr = hostile_server(answer).await;
        let port = addr.port().to_string();
        let r = common::run(
            "python3",
            &[&script, "127.0.0.1", &port, "true", "--plaintext"],
            b"",
        )
        .await;
        r.expect_code(code);
        escaped(&r.stderr_str(), 1, "rcmd_client.py");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newline_in_cwd_cannot_forge_a_server_log_line() {
    let home = common::RcmdHome::new();
    let server = home.server(&[]).await;
    let addr = server.addr.to_string();
    let forged = "2026-01-01T00:00:00.000000Z  INFO rcmd::server: forged";
    let cwd = format!("/nonexistent\n{forged}\x1b[2K");
    let r = home
        .rcmd(&["client", &addr, "-n", "--cwd", &cwd, "--", "true"], b"")
        .await;
    r.expect_code(1);
    // The client's own terminal gets the server's message about it escaped too.
    assert!(
        r.stderr_str()
            .contains(r"rcmd: cd /nonexistent\n2026-01-01"),
        "{r}"
    );
    assert!(!r.stderr_str().contains('\x1b'), "{r}");
    let log = server.stop().await;
    assert!(
        !log.iter().any(|l| l.starts_with("2026-01-01T00:00:00")),
        "a forged line in the log: {log:#?}"
    );
    assert!(
        log.iter()
            .any(|l| l.contains(r"rcmd: cd /nonexistent\n2026-01-01") && !l.contains('\x1b')),
        "the command's line is logged, escaped: {log:#?}"
    );
}
