//! demos/wireshark/rcmd.lua: a real session captured on loopback and decoded by tshark.

use crate::common;

use std::process::Stdio;

use common::{peer, rcmd, run, start_server};
use rcmd::server::ServerConfig;
use rcmd::wire::Protocol;
use tokio::io::{AsyncBufReadExt, BufReader};

/// Captures `tcp port PORT` on `lo` into `file` until the returned child is interrupted.
async fn capture(port: u16, file: &std::path::Path) -> tokio::process::Child {
    let mut child = tokio::process::Command::new("dumpcap")
        .args(["-i", "lo", "-f", &format!("tcp port {port}"), "-w"])
        .arg(file)
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("dumpcap is needed (.ci/run installs tshark)");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    // dumpcap says so as it starts; the filter may be attached a moment later.
    loop {
        match lines.next_line().await.unwrap() {
            Some(line) if line.starts_with("Capturing on") => break,
            Some(_) => {}
            None => panic!("dumpcap ended before capturing"),
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    // Running means a probe connection's packets reach the file (dumpcap writes each
    // packet as it comes).
    let size = || std::fs::metadata(file).map_or(0, |m| m.len());
    common::wait_until("dumpcap writes the file's header", || size() > 0).await;
    let empty = size();
    common::eventually("the capture sees the probe connection", || async {
        drop(tokio::net::TcpStream::connect(("127.0.0.1", port)).await);
        size() > empty
    })
    .await;
    child
}

/// Stops the capture once `file` holds the session up to a frame `last` (dumpcap writes
/// in blocks: new probe connections push the session's packets out to the file).
async fn stop_after(
    child: tokio::process::Child,
    file: &std::path::Path,
    port: u16,
    mode: &str,
    header: &str,
    last: &str,
) {
    common::eventually("the capture holds the whole session", || async {
        drop(tokio::net::TcpStream::connect(("127.0.0.1", port)).await);
        decode(file, port, mode, header)
            .await
            .iter()
            .any(|f| f == last)
    })
    .await;
    stop(child).await;
}

async fn stop(mut child: tokio::process::Child) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGINT) };
    child.wait().await.unwrap();
}

/// tshark's `rcmd.length` and `rcmd.tag` for every frame, in order.
async fn decode(file: &std::path::Path, port: u16, mode: &str, header: &str) -> Vec<String> {
    let script = format!("lua_script:{}", peer("demos/wireshark/rcmd.lua"));
    let r = run(
        "tshark",
        &[
            "-X",
            &script,
            "-o",
            &format!("rcmd.port:{port}"),
            "-o",
            &format!("rcmd.mode:{mode}"),
            "-o",
            &format!("rcmd.header:{header}"),
            "-r",
            file.to_str().unwrap(),
            "-Y",
            "rcmd",
            "-T",
            "fields",
            "-e",
            "rcmd.length",
            "-e",
            "rcmd.tag",
        ],
        b"",
    )
    .await;
    // A file still being written may end in a cut packet: tshark says so and goes on.
    assert!(matches!(r.code, Some(0 | 2)), "{r}");
    let mut frames = Vec::new();
    for line in r.stdout_str().lines() {
        let (lens, tags) = line.split_once('\t').unwrap_or((line, ""));
        let tags: Vec<&str> = tags.split(',').collect();
        for (k, len) in lens.split(',').filter(|l| !l.is_empty()).enumerate() {
            frames.push(
                format!("{len} {}", tags.get(k).copied().unwrap_or(""))
                    .trim()
                    .to_string(),
            );
        }
    }
    frames
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tshark_decodes_every_framed_frame_of_a_real_session() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("framed.pcapng");
    // The in-process server is plaintext (the dissector reads no TLS) and needs no token.
    let addr = start_server(ServerConfig::new(Protocol::Framed)).await;
    let dumpcap = capture(addr.port(), &file).await;
    let r = rcmd(
        &[
            "client",
            &addr.to_string(),
            "--plaintext",
            "-n",
            "--",
            "echo hello",
        ],
        b"",
    )
    .await;
    r.expect_code(0);
    stop_after(dumpcap, &file, addr.port(), "framed", "!I", "5 X").await;
    let frames = decode(&file, addr.port(), "framed", "!I").await;
    // Hellos both ways, then run (1 + 10), stdout (1 + 6), exit (1 + 4).
    assert_eq!(frames.len(), 5, "{frames:?}");
    assert!(
        frames[0].ends_with(" H") && frames[1].ends_with(" H"),
        "{frames:?}"
    );
    assert_eq!(frames[2..], ["11 R", "7 O", "5 X"], "{frames:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tshark_decodes_classic_replies_with_the_header_preference() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("classic.pcapng");
    let mut config = ServerConfig::new(Protocol::Classic);
    config.wire.header = "<H".parse().unwrap();
    let addr = start_server(config).await;
    let dumpcap = capture(addr.port(), &file).await;
    let r = rcmd(
        &[
            "client",
            &addr.to_string(),
            "--protocol",
            "classic",
            "--header",
            "<H",
        ],
        b"echo hello\nseq 1 1000\n",
    )
    .await;
    r.expect_code(0);
    stop_after(dumpcap, &file, addr.port(), "classic", "<H", "3893").await;
    let frames = decode(&file, addr.port(), "classic", "<H").await;
    // Commands carry no header; each reply's length is decoded.
    let lengths: Vec<&String> = frames.iter().filter(|f| !f.is_empty()).collect();
    assert_eq!(lengths, ["6", "3893"], "{frames:?}");
}
