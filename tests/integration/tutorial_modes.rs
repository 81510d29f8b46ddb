//! The tutorial's own Python client and server (tests/peers) against rcmd, both ways, in
//! the length-ack, classic, json-header and naive modes.

use crate::common;

use std::process::Stdio;

use common::{peer, rcmd, run, start_server, Run};
use rcmd::server::ServerConfig;
use rcmd::wire::{Order, Protocol};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Starts the tutorial's Python server in `mode`; returns it and its address.
async fn python_server(mode: &str, fmt: &str) -> (tokio::process::Child, String) {
    python_server_with(&[mode, fmt]).await
}

/// [`python_server`] with all its arguments: MODE [FMT [WORD]].
async fn python_server_with(args: &[&str]) -> (tokio::process::Child, String) {
    let mut child = tokio::process::Command::new("python3")
        .arg(peer("tests/peers/tutorial_server.py"))
        .args(args)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 must be installed");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let port = lines
        .next_line()
        .await
        .unwrap()
        .expect("server printed no port");
    (child, format!("127.0.0.1:{port}"))
}

/// Runs the tutorial's Python client against `addr`; returns each reply's bytes.
async fn python_client(
    mode: &str,
    addr: std::net::SocketAddr,
    fmt: &str,
    script: &str,
) -> (Run, Vec<Vec<u8>>) {
    let port = addr.port().to_string();
    let r = run(
        "python3",
        &[&peer("tests/peers/tutorial_client.py"), mode, &port, fmt],
        script.as_bytes(),
    )
    .await;
    r.expect_code(0);
    let replies = r
        .stdout_str()
        .lines()
        .map(|hex| {
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect()
        })
        .collect();
    (r, replies)
}

fn seq_output(n: u32) -> Vec<u8> {
    (1..=n)
        .map(|i| format!("{i}\n"))
        .collect::<String>()
        .into_bytes()
}

fn config(protocol: Protocol, header: &str) -> ServerConfig {
    let mut c = ServerConfig::new(protocol);
    c.wire.header = header.parse().unwrap();
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rcmd_classic_client_talks_to_tutorial_server() {
    for fmt in ["i", "!Q", "<H"] {
        let (_server, addr) = python_server("classic", fmt).await;
        let r = rcmd(
            &["client", &addr, "--protocol", "classic", "--header", fmt],
            b"echo hello\nseq 1 2000\n",
        )
        .await;
        r.expect_code(0);
        let mut expected = b"hello\n".to_vec();
        expected.extend(seq_output(2000));
        assert_eq!(r.stdout, expected, "header {fmt}\n{r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tutorial_classic_client_talks_to_rcmd_server() {
    let addr = start_server(config(Protocol::Classic, "i")).await;
    let (_, replies) = python_client(
        "classic",
        addr,
        "i",
        "echo hello; echo oops >&2\nseq 1 2000\n",
    )
    .await;
    assert_eq!(replies, vec![b"oops\nhello\n".to_vec(), seq_output(2000)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_output_too_big_for_the_header_gets_an_error_reply() {
    let addr = start_server(config(Protocol::Classic, "b")).await;
    let (_, replies) = python_client("classic", addr, "b", "seq 1 100\necho fits\n").await;
    let first = String::from_utf8_lossy(&replies[0]);
    assert!(first.contains("more than header format 'b'"), "{first}");
    assert!(replies[0].len() <= 127);
    assert_eq!(
        replies[1], b"fits\n",
        "the connection goes on after the error"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_classic_output_stops_at_what_the_header_can_describe() {
    // `yes` never ends; with header 'h' no reply can exceed 32767 bytes, so the server
    // stops collecting there, kills it, and explains, instead of spooling to disk forever.
    let addr = start_server(config(Protocol::Classic, "h")).await;
    let (_, replies) = python_client("classic", addr, "h", "yes\necho next\n").await;
    let first = String::from_utf8_lossy(&replies[0]);
    assert!(first.contains("more than header format 'h'"), "{first}");
    assert_eq!(replies[1], b"next\n", "the connection goes on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rcmd_json_client_talks_to_tutorial_server() {
    let (_server, addr) = python_server("json", "i").await;
    let r = rcmd(
        &["client", &addr, "--protocol", "json-header"],
        b"echo hello\nseq 1 500\n",
    )
    .await;
    r.expect_code(0);
    let mut expected = b"hello\n".to_vec();
    expected.extend(seq_output(500));
    assert_eq!(r.stdout, expected, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tutorial_json_client_talks_to_rcmd_server() {
    let addr = start_server(config(Protocol::JsonHeader, "!i")).await;
    let (_, replies) =
        python_client("json", addr, "!i", "echo hello; echo oops >&2\nseq 1 900\n").await;
    assert_eq!(replies, vec![b"oops\nhello\n".to_vec(), seq_output(900)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rcmd_json_client_splits_streams_and_status_from_rcmd_server() {
    let addr = start_server(config(Protocol::JsonHeader, "i"))
        .await
        .to_string();
    let r = rcmd(
        &[
            "client",
            &addr,
            "--protocol",
            "json-header",
            "--",
            "echo out; echo err >&2; exit 4",
        ],
        b"",
    )
    .await;
    r.expect_code(4);
    assert_eq!(r.stdout_str(), "out\n", "{r}");
    assert_eq!(r.stderr_str(), "err\n", "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn naive_rcmd_server_reproduces_the_bug_for_the_tutorial_client() {
    let addr = start_server(config(Protocol::Naive, "i")).await;
    let (_, replies) = python_client("naive", addr, "i", "seq 1 1000\necho hello\n").await;
    let seq = seq_output(1000);
    // The first recv(1024) gets only the start of seq's 3893 bytes...
    assert!(!replies[0].is_empty() && replies[0].len() <= 1024);
    assert_eq!(replies[0], seq[..replies[0].len()]);
    // ...and the reply to `echo hello` is more of seq's output, not hello.
    let rest = &seq[replies[0].len()..];
    assert_eq!(
        replies[1],
        rest[..replies[1].len()],
        "the second reply is stale seq output"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn naive_rcmd_client_shows_the_bug_against_tutorial_server() {
    let (_server, addr) = python_server("naive", "i").await;
    let r = rcmd(&["client", &addr, "--naive"], b"seq 1 1000\necho hello\n").await;
    r.expect_code(0);
    let seq = seq_output(1000);
    assert!(r.stdout.len() <= 2048);
    assert_eq!(
        r.stdout,
        seq[..r.stdout.len()],
        "both replies are seq's bytes\n{r}"
    );
    assert!(!r.stdout_str().contains("hello"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn naive_client_says_why_an_empty_reply_cannot_be_told_apart() {
    let addr = start_server(config(Protocol::Naive, "i")).await.to_string();
    let r = rcmd(&["client", &addr, "--naive", "--", "true"], b"").await;
    r.expect_code(0);
    assert!(r.stderr_str().contains("no reply within"), "{r}");
    assert_within_80_columns(&r.stderr_str());
}

#[track_caller]
fn assert_within_80_columns(text: &str) {
    for line in text.lines() {
        let n = line.chars().count();
        assert!(n <= 80, "{n} columns: {line}\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tutorial_server_banner_fits_and_names_what_delimits_a_reply() {
    let home = common::RcmdHome::new();
    for (mode, framing) in [
        ("length-ack", "length as text"),
        ("naive", "no header"),
        ("classic", "header i"),
        ("json-header", "header i"),
    ] {
        let server = home.server(&["--protocol", mode]).await;
        let banner = server.banner.join("\n");
        server.stop().await;
        assert_within_80_columns(&banner);
        let words = banner.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(words.contains("cannot authenticate"), "{banner}");
        assert!(
            words.contains(&format!("(protocol {mode}, {framing})")),
            "{banner}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tutorial_length_ack_client_talks_to_rcmd_server() {
    let addr = start_server(config(Protocol::LengthAck, "i")).await;
    let (_, replies) = python_client(
        "length-ack",
        addr,
        "i",
        "echo hello; echo oops >&2\nseq 1 2000\ntrue\necho after\n",
    )
    .await;
    assert_eq!(
        replies,
        vec![
            b"oops\nhello\n".to_vec(),
            seq_output(2000),
            Vec::new(),
            b"after\n".to_vec()
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rcmd_length_ack_client_talks_to_tutorial_server() {
    let (_server, addr) = python_server("length-ack", "i").await;
    let r = rcmd(
        &["client", &addr, "--protocol", "length-ack"],
        b"echo hello\nseq 1 2000\nls /nonexistent-rcmd-test\necho last\n",
    )
    .await;
    r.expect_code(0);
    let out = r.stdout_str();
    let mut expected = b"hello\n".to_vec();
    expected.extend(seq_output(2000));
    assert!(r.stdout.starts_with(&expected), "{r}");
    assert!(
        out.contains("nonexistent-rcmd-test"),
        "stderr comes as output\n{r}"
    );
    assert!(out.ends_with("last\n"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rcmd_length_ack_client_answers_recv_ready_to_a_strict_tutorial_server() {
    // The tutorial's own copy sends the output only `if data == b'recv_ready'`.
    let (_server, addr) = python_server("length-ack-strict", "i").await;
    let r = rcmd(
        &["client", &addr, "--protocol", "length-ack", "--trace"],
        b"echo hello
seq 1 3
",
    )
    .await;
    r.expect_code(0);
    assert_eq!(r.stdout_str(), "hello\n1\n2\n3\n", "{r}");
    assert!(
        r.stderr_str()
            .contains("client send  10 bytes, no header  b'recv_ready'"),
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rcmd_length_ack_client_survives_empty_replies_from_tutorial_server() {
    // After `true` the tutorial's server waits in recv(1024) for our answer and sends
    // nothing after it: had the answer and `echo hi` arrived together, it would take both
    // for the answer and wait forever for a command. The race went the wrong way in most
    // runs, so run it many times: twenty rounds, five at a time (each round spends most of
    // its time in the client's settle after each empty reply, not on the processor).
    for wave in 0..4 {
        let mut rounds = tokio::task::JoinSet::new();
        for round in wave * 5..wave * 5 + 5 {
            rounds.spawn(async move {
                let (_server, addr) = python_server("length-ack", "i").await;
                let r = rcmd(
                    &["client", &addr, "--protocol", "length-ack"],
                    b"true\ntrue\necho hi\n",
                )
                .await;
                r.expect_code(0);
                assert_eq!(r.stdout_str(), "hi\n", "round {round}\n{r}");
            });
        }
        while let Some(done) = rounds.join_next().await {
            if let Err(e) = done {
                std::panic::resume_unwind(e.into_panic());
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rcmd_length_ack_client_answers_the_word_the_server_expects() {
    // A copy of the tutorial that checks `if data == b'ok'`.
    let (_server, addr) = python_server_with(&["length-ack-strict", "i", "ok"]).await;
    let r = rcmd(
        &[
            "client",
            &addr,
            "--protocol",
            "length-ack",
            "--ack",
            "ok",
            "--trace",
        ],
        b"echo hello\nseq 1 3\n",
    )
    .await;
    r.expect_code(0);
    assert_eq!(r.stdout_str(), "hello\n1\n2\n3\n", "{r}");
    assert!(
        r.stderr_str()
            .contains("client send  2 bytes, no header  b'ok'"),
        "{r}"
    );
    // Where there is no answer to give, the word is refused rather than ignored.
    let r = rcmd(
        &["client", &addr, "--protocol", "classic", "--ack", "ok"],
        b"",
    )
    .await;
    r.expect_code(255);
    assert!(r.stderr_str().contains("--ack"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rcmd_struct_ack_client_talks_to_tutorial_server() {
    for fmt in ["i", "!I"] {
        let (_server, addr) = python_server_with(&["struct-ack", fmt, "recv_ready"]).await;
        let r = rcmd(
            &["client", &addr, "--protocol", "struct-ack", "--header", fmt],
            b"echo out; echo err >&2\ntrue\nseq 1 2000\ntrue\necho last\n",
        )
        .await;
        r.expect_code(0);
        let mut expected = b"err\nout\n".to_vec();
        expected.extend(seq_output(2000));
        expected.extend(b"last\n");
        assert_eq!(r.stdout, expected, "{r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tutorial_struct_ack_client_talks_to_rcmd_server() {
    for fmt in ["i", ">H"] {
        let addr = start_server(config(Protocol::StructAck, fmt)).await;
        let (_, replies) = python_client(
            "struct-ack",
            addr,
            fmt,
            "echo hello; echo oops >&2\nseq 1 2000\ntrue\necho after\n",
        )
        .await;
        assert_eq!(
            replies,
            vec![
                b"oops\nhello\n".to_vec(),
                seq_output(2000),
                Vec::new(),
                b"after\n".to_vec()
            ]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn struct_ack_server_sends_the_output_only_once_answered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = start_server(config(Protocol::StructAck, "!I")).await;
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"echo hello").await.unwrap();
    let mut head = [0u8; 4];
    conn.read_exact(&mut head).await.unwrap();
    assert_eq!(head, [0, 0, 0, 6]);
    conn.write_all(b"recv_ready").await.unwrap();
    let mut body = [0u8; 6];
    conn.read_exact(&mut body).await.unwrap();
    assert_eq!(&body, b"hello\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rcmd_length_ack_client_and_server_agree() {
    let addr = start_server(config(Protocol::LengthAck, "i"))
        .await
        .to_string();
    let r = rcmd(
        &["client", &addr, "--protocol", "length-ack"],
        b"seq 1 3\ntrue\necho x\n",
    )
    .await;
    r.expect_code(0);
    assert_eq!(r.stdout_str(), "1\n2\n3\nx\n", "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn length_ack_server_sends_the_output_in_one_write() {
    // A learner's client that takes the output with one recv(n): stderr and stdout sent
    // in two writes gave it a short read now and then, and its next length read hit output.
    let addr = start_server(config(Protocol::LengthAck, "i")).await;
    let script = "echo out; echo err >&2\n".repeat(60);
    let (_, replies) = python_client("length-ack-once", addr, "i", &script).await;
    assert_eq!(replies, vec![b"err\nout\n".to_vec(); 60]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn length_ack_server_sends_the_output_only_once_answered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = start_server(config(Protocol::LengthAck, "i")).await;
    let exchange = async |answer: bool| {
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        conn.write_all(b"echo hello").await.unwrap();
        let mut digits = [0u8; 16];
        let n = conn.read(&mut digits).await.unwrap();
        assert_eq!(&digits[..n], b"6");
        if answer {
            conn.write_all(b"recv_ready").await.unwrap();
        }
        conn.shutdown().await.unwrap();
        let mut rest = Vec::new();
        conn.read_to_end(&mut rest).await.unwrap();
        rest
    };
    assert_eq!(exchange(true).await, b"hello\n");
    // Closing without answering: the server never sends the output.
    assert_eq!(exchange(false).await, b"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_stdout_first_puts_stdout_before_stderr() {
    let script = "echo out; echo err >&2\n";
    for (order, want) in [
        (None, &b"err\nout\n"[..]),
        (Some(Order::StdoutFirst), b"out\nerr\n"),
    ] {
        for (protocol, mode) in [
            (Protocol::Classic, "classic"),
            (Protocol::JsonHeader, "json"),
            (Protocol::LengthAck, "length-ack"),
        ] {
            let mut c = config(protocol, "i");
            if let Some(order) = order {
                c.wire.order = order;
            }
            let addr = start_server(c).await;
            let (_, replies) = python_client(mode, addr, "i", script).await;
            assert_eq!(replies, vec![want.to_vec()], "{mode} {order:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rcmd_json_client_splits_streams_of_a_stdout_first_server() {
    let home = common::RcmdHome::new();
    let server = home
        .server(&["--protocol", "json-header", "--order", "stdout-first"])
        .await;
    let addr = server.addr.to_string();
    let r = home
        .rcmd(
            &[
                "client",
                &addr,
                "--protocol",
                "json-header",
                "--",
                "echo out; echo err >&2; exit 3",
            ],
            b"",
        )
        .await;
    r.expect_code(3);
    assert_eq!(r.stdout_str(), "out\n", "{r}");
    assert_eq!(r.stderr_str(), "err\n", "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_is_refused_where_streams_are_not_spooled() {
    let r = rcmd(
        &[
            "server",
            "--listen",
            "127.0.0.1:0",
            "--order",
            "stdout-first",
        ],
        b"",
    )
    .await;
    // A usage error, like `--order bogus`: 255, not a server that failed to start.
    r.expect_code(255);
    assert!(r.stderr_str().contains("--order applies to"), "{r}");
}
