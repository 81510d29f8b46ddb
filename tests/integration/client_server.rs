//! `rcmd client` against an in-process `rcmd server`, in the default framed mode.

use crate::common;

use std::process::Stdio;

use common::{framed, rcmd, rcmd_command, run, start_server, RcmdHome};
use rcmd::ExecMode;
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shot_arguments_arrive_as_typed() {
    let addr = start_server(framed()).await.to_string();
    let r = rcmd(
        &[
            "client",
            "--plaintext",
            &addr,
            "--",
            "printf",
            "%s|",
            "a b",
            "c",
        ],
        b"",
    )
    .await;
    r.expect_code(0);
    assert_eq!(r.stdout_str(), "a b|c|", "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_argument_is_a_shell_command_line() {
    let addr = start_server(framed()).await.to_string();
    let r = rcmd(
        &["client", "--plaintext", &addr, "--", "seq 3 | wc -l"],
        b"",
    )
    .await;
    r.expect_code(0);
    assert_eq!(r.stdout_str().trim(), "3", "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdout_stderr_and_exit_status_are_kept_apart() {
    let addr = start_server(framed()).await.to_string();
    let r = rcmd(
        &[
            "client",
            "--plaintext",
            &addr,
            "--",
            "echo out; echo err >&2; exit 7",
        ],
        b"",
    )
    .await;
    r.expect_code(7);
    assert_eq!(r.stdout_str(), "out\n", "{r}");
    assert_eq!(r.stderr_str(), "err\n", "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_by_signal_exits_128_plus_n() {
    let addr = start_server(framed()).await.to_string();
    rcmd(
        &["client", "--plaintext", &addr, "--", "kill -KILL $$"],
        b"",
    )
    .await
    .expect_code(137);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_command_is_127_and_connection_stays_usable() {
    let addr = start_server(framed()).await.to_string();
    let r = rcmd(
        &["client", "--plaintext", &addr],
        b"no-such-command-rcmd\necho still here\n",
    )
    .await;
    r.expect_code(0);
    assert_eq!(r.stdout_str(), "still here\n", "{r}");
    assert!(r.stderr_str().contains("not found"), "{r}");
    let r = rcmd(
        &["client", "--plaintext", &addr, "--", "no-such-command-rcmd"],
        b"",
    )
    .await;
    r.expect_code(127);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_mode_runs_without_a_shell() {
    let mut config = framed();
    config.exec = ExecMode::Direct;
    let addr = start_server(config).await.to_string();
    let r = rcmd(
        &["client", "--plaintext", &addr, "--", "echo", "$HOME", "a|b"],
        b"",
    )
    .await;
    r.expect_code(0);
    assert_eq!(r.stdout_str(), "$HOME a|b\n", "{r}");
    let r = rcmd(
        &["client", "--plaintext", &addr, "--", "no-such-command-rcmd"],
        b"",
    )
    .await;
    r.expect_code(127);
    assert!(r.stderr_str().contains("command not found"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn piped_lines_run_in_order_and_last_status_wins() {
    let addr = start_server(framed()).await.to_string();
    let script = b"echo one\n\n   \necho two >&2\nseq 3\nexit 5\n";
    let r = rcmd(&["client", "--plaintext", &addr], script).await;
    r.expect_code(5);
    assert_eq!(r.stdout_str(), "one\n1\n2\n3\n", "{r}");
    assert_eq!(r.stderr_str(), "two\n", "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_pipelined_commands_keep_request_order() {
    let addr = start_server(framed()).await.to_string();
    let script: String = (0..200).map(|i| format!("echo {i}\n")).collect();
    let r = rcmd(&["client", "--plaintext", &addr], script.as_bytes()).await;
    r.expect_code(0);
    let expected: String = (0..200).map(|i| format!("{i}\n")).collect();
    assert_eq!(r.stdout_str(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_utf8_output_passes_byte_for_byte() {
    let addr = start_server(framed()).await.to_string();
    let r = rcmd(
        &[
            "client",
            "--plaintext",
            &addr,
            "--",
            r"printf '\377\000\200abc'",
        ],
        b"",
    )
    .await;
    r.expect_code(0);
    assert_eq!(r.stdout, b"\xff\x00\x80abc");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_output_split_into_frames_the_header_can_hold() {
    // '!H' frames carry at most 65535 bytes: 5 MB must arrive whole, in many frames.
    let mut config = framed();
    config.wire.header = "!H".parse().unwrap();
    let addr = start_server(config).await.to_string();
    let cmd = "head -c 5000000 /dev/urandom | tee /tmp/rcmd-large-$$ | cksum; cat /tmp/rcmd-large-$$; rm /tmp/rcmd-large-$$";
    let r = rcmd(
        &["client", "--plaintext", &addr, "--header", "!H", "--", cmd],
        b"",
    )
    .await;
    r.expect_code(0);
    let nl = r.stdout.iter().position(|&b| b == b'\n').unwrap();
    let (cksum_line, body) = (&r.stdout[..nl], &r.stdout[nl + 1..]);
    assert_eq!(body.len(), 5_000_000);
    let check = run("cksum", &[], body).await;
    assert_eq!(
        check.stdout_str().trim(),
        String::from_utf8_lossy(cksum_line).trim()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_split_to_the_client_max_frame() {
    // The client accepts at most 1024-byte frames (the least a hello may ask for); the
    // server learns it from the hello and cuts seq's 48894 bytes to fit (the client would
    // refuse a larger frame).
    let addr = start_server(framed()).await.to_string();
    let r = rcmd(
        &[
            "client",
            "--plaintext",
            &addr,
            "--max-frame",
            "1024",
            "--",
            "seq 1 10000",
        ],
        b"",
    )
    .await;
    r.expect_code(0);
    let expected: String = (1..=10000).map(|i| format!("{i}\n")).collect();
    assert_eq!(r.stdout_str(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_too_long_for_the_header_is_refused_clearly() {
    let mut config = framed();
    config.wire.header = "b".parse().unwrap();
    let addr = start_server(config).await.to_string();
    let long = format!("echo {}", "x".repeat(200));
    let r = rcmd(
        &["client", "--plaintext", &addr, "--header", "b", "--", &long],
        b"",
    )
    .await;
    r.expect_code(255);
    assert!(
        r.stderr_str().contains("longer than one frame allows"),
        "{r}"
    );
    // Short commands still fit in a 'b' header.
    let r = rcmd(
        &[
            "client",
            "--plaintext",
            &addr,
            "--header",
            "b",
            "--",
            "echo ok",
        ],
        b"",
    )
    .await;
    r.expect_code(0);
    assert_eq!(r.stdout_str(), "ok\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_streams_before_the_command_ends() {
    let addr = start_server(framed()).await.to_string();
    let mut child = rcmd_command()
        .args([
            "client",
            "--plaintext",
            &addr,
            "--",
            "echo first; sleep 30; echo second",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(common::PROCESS_DEADLINE, lines.next_line())
        .await
        .expect("first line never arrived")
        .unwrap();
    assert_eq!(first.as_deref(), Some("first"));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the line must arrive while the command is still running"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_refused_is_255_with_a_message() {
    // Bind then drop a listener: the port is known to be closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let r = rcmd(
        &["client", "--plaintext", &port.to_string(), "--", "true"],
        b"",
    )
    .await;
    r.expect_code(255);
    assert!(r.stderr_str().contains("cannot connect"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mismatched_header_formats_fail_with_a_hint() {
    let addr = start_server(framed()).await.to_string();
    let r = rcmd(
        &[
            "client",
            "--plaintext",
            &addr,
            "--header",
            "<I",
            "--",
            "true",
        ],
        b"",
    )
    .await;
    r.expect_code(255);
    assert!(r.stderr_str().contains("--header"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_from_scripts_speaks_framed() {
    let addr = start_server(framed()).await;
    let r = run(
        "python3",
        &[
            &common::peer("scripts/rcmd_client.py"),
            "127.0.0.1",
            &addr.port().to_string(),
            "echo hi; echo oops >&2; exit 3",
            "--plaintext",
        ],
        b"",
    )
    .await;
    r.expect_code(3);
    assert_eq!(r.stdout_str(), "hi\n", "{r}");
    assert_eq!(r.stderr_str(), "oops\n", "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_binary_announces_its_address_and_serves() {
    let home = RcmdHome::new();
    let server = home.server(&[]).await;
    let addr = server.addr.to_string();
    assert!(addr.starts_with("127.0.0.1:"), "{:?}", server.banner);
    let r = home
        .rcmd(&["client", &addr, "--", "echo", "served"], b"")
        .await;
    r.expect_code(0);
    assert_eq!(r.stdout_str(), "served\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_banner_gives_the_address_its_own_line_and_fits_in_80_columns() {
    let home = RcmdHome::new();
    let server = home.server(&[]).await;
    let (addr, banner) = (server.addr, server.banner.clone());
    server.stop().await;
    let text = banner.join("\n");
    // scripts/bench and the tests take the address as the line's fifth word.
    assert!(
        banner.contains(&format!("rcmd server listening on {addr}")),
        "{text}"
    );
    for line in &banner {
        let n = line.chars().count();
        assert!(n <= 80, "{n} columns: {line}\n{text}");
    }
    let words = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let details = format!(
        "(protocol framed over TLS 1.3, header !I, token required: this user's, in {})",
        home.token_file().display()
    );
    assert!(words.ends_with(&details), "{text}");
}
