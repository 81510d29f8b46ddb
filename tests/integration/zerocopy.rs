//! Output spliced from the command's pipe to the socket and from the socket to stdout
//! arrives exactly as the copy path delivers it: every check runs both ways.

use crate::common;

use std::process::Stdio;

use common::{pids_running, rcmd, rcmd_command, start_server, unique_marker, wait_until};
use rcmd::server::ServerConfig;
use rcmd::wire::Protocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A file of every byte value in a pattern that never lines up with a frame, larger than
/// a pipe and several frames.
fn binary_file(dir: &std::path::Path, len: usize) -> (std::path::PathBuf, Vec<u8>) {
    let data: Vec<u8> = (0..len)
        .map(|i| ((i * 131 + i / 977) % 256) as u8)
        .collect();
    let path = dir.join("binary");
    std::fs::write(&path, &data).unwrap();
    (path, data)
}

fn server(header: &str, splice: bool) -> ServerConfig {
    let mut config = ServerConfig::new(Protocol::Framed);
    config.wire.header = header.parse().unwrap();
    config.splice = splice;
    config
}

/// Runs `line` through a server (splicing or not) and a client (splicing or not), with
/// the header and the client's frame limit given; returns stdout, stderr and the code.
async fn through(header: &str, max_frame: Option<&str>, splice: bool, line: &str) -> common::Run {
    let addr = start_server(server(header, splice)).await.to_string();
    let mut args = vec!["client", "--plaintext", "--header", header, "-n"];
    if let Some(max) = max_frame {
        args.extend(["--max-frame", max]);
    }
    if !splice {
        args.push("--no-splice");
    }
    args.extend([addr.as_str(), "--", line]);
    rcmd(&args, b"").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_output_is_the_same_spliced_or_copied() {
    let dir = tempfile::tempdir().unwrap();
    let (path, data) = binary_file(dir.path(), 3_000_017);
    let p = path.display();
    let line = format!("cat {p}; printf '\\0\\n' >&2; cat {p} >&2; cat {p}; exit 3");
    let mut want_out = data.clone();
    want_out.extend_from_slice(&data);
    let mut want_err = b"\0\n".to_vec();
    want_err.extend_from_slice(&data);
    for splice in [true, false] {
        let r = through("!I", None, splice, &line).await;
        assert_eq!(r.code, Some(3), "splice {splice}: {}", r.stderr_str());
        assert!(r.stdout == want_out, "stdout differs (splice {splice})");
        assert!(r.stderr == want_err, "stderr differs (splice {splice})");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_split_at_the_headers_limit_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (path, data) = binary_file(dir.path(), 1_500_007);
    let line = format!("cat {}", path.display());
    // `!H` frames cannot hold a spliced payload (65,535 bytes at most): copied, in
    // frames cut at the header's limit. `<I` with a 70,000-byte limit on the client: the
    // server splices payloads of 64 KiB up to that limit.
    for (header, max) in [("!H", None), ("<I", Some("70000")), ("!Q", Some("65537"))] {
        for splice in [true, false] {
            let r = through(header, max, splice, &line).await;
            r.expect_code(0);
            assert!(
                r.stdout == data,
                "{header} {max:?} splice {splice}: {} bytes, want {}",
                r.stdout.len(),
                data.len()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_to_a_file_is_spliced_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (path, data) = binary_file(dir.path(), 2_000_003);
    let addr = start_server(server("!I", true)).await.to_string();
    let out_path = dir.path().join("out");
    let status = rcmd_command()
        .args(["client", "--plaintext", "-n", &addr, "--"])
        .arg(format!("cat {}; echo tail", path.display()))
        .stdout(std::fs::File::create(&out_path).unwrap())
        .status()
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let mut want = data;
    want.extend_from_slice(b"tail\n");
    assert!(std::fs::read(&out_path).unwrap() == want, "file differs");
}

/// A framed `!I` frame around `payload`.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(payload);
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gone_mid_frame_kills_the_command_and_others_are_served() {
    for splice in [true, false] {
        let addr = start_server(server("!I", splice)).await;
        let marker = unique_marker();
        let mut conn = TcpStream::connect(addr).await.unwrap();
        let mut bytes = frame(b"Hrcmd\x02\x00\x10\x00\x00");
        bytes.extend(frame(format!("Rcat /dev/zero; sleep {marker}").as_bytes()));
        conn.write_all(&bytes).await.unwrap();
        // Read well into the output, then leave part-way through a frame.
        let mut got = vec![0u8; 3 << 20];
        conn.read_exact(&mut got).await.unwrap();
        drop(conn);
        let sleep = format!("sleep {marker}");
        // `cat` never ends by itself: the command is only gone if it was killed.
        wait_until("the command is killed", || pids_running(&sleep).is_empty()).await;
        let r = rcmd(
            &[
                "client",
                "--plaintext",
                &addr.to_string(),
                "--",
                "echo still serving",
            ],
            b"",
        )
        .await;
        r.expect_code(0);
        assert_eq!(r.stdout_str(), "still serving\n", "splice {splice}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_mid_splice_ends_the_client_quietly_with_141() {
    let addr = start_server(server("!I", true)).await.to_string();
    let marker = unique_marker();
    let line = format!("cat /dev/zero; sleep {marker}");
    let mut client = rcmd_command()
        .args(["client", &addr, "--plaintext", "-n", "--", &line])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = client.stdout.take().unwrap();
    let mut got = vec![0u8; 2 << 20];
    stdout.read_exact(&mut got).await.unwrap();
    assert!(got.iter().all(|&b| b == 0));
    drop(stdout);
    let out = client.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(141));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
