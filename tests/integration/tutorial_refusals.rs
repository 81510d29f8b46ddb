//! What the tutorial modes (`classic`, `json-header`, `naive`) refuse: another protocol's
//! request, a command cut at `--recv-size`, endless output, and, on the client, a reply in
//! another mode or one that stops part-way. Each refusal runs nothing and the server goes
//! on serving.

use crate::common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::{
    pids_running, rcmd, rcmd_bin, run, send_raw, start_server, still_serves, unique_marker,
    wait_until,
};
use rcmd::client::{self, ClientConfig, ClientError, Input, Output};
use rcmd::server::ServerConfig;
use rcmd::wire::Protocol;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const TUTORIAL_MODES: [Protocol; 5] = [
    Protocol::LengthAck,
    Protocol::Classic,
    Protocol::StructAck,
    Protocol::JsonHeader,
    Protocol::Naive,
];

fn config(protocol: Protocol) -> ServerConfig {
    ServerConfig::new(protocol)
}

/// [`send_raw`], answering length-ack's (or struct-ack's) length as its client would.
async fn send_raw_answering(addr: SocketAddr, bytes: &[u8], protocol: Protocol) -> Vec<u8> {
    if !protocol.waits_for_ack() {
        return send_raw(addr, bytes).await;
    }
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut digits = [0u8; 32];
    let n = s.read(&mut digits).await.unwrap();
    assert!(
        n > 0 && (protocol == Protocol::StructAck || digits[0].is_ascii_digit()),
        "{digits:?}"
    );
    s.write_all(b"recv_ready").await.unwrap();
    let mut reply = digits[..n].to_vec();
    let _ = tokio::time::timeout(common::PROCESS_DEADLINE, s.read_to_end(&mut reply))
        .await
        .expect("server never closed the connection");
    reply
}

/// The text of a classic reply with header `i`.
fn classic_text(reply: &[u8]) -> String {
    assert!(reply.len() >= 4, "no classic reply: {reply:?}");
    let len = i32::from_ne_bytes(reply[..4].try_into().unwrap()) as usize;
    assert_eq!(reply.len(), 4 + len, "{reply:?}");
    String::from_utf8_lossy(&reply[4..]).into_owned()
}

fn assert_absent(path: &Path) {
    assert!(
        !path.exists(),
        "{} was created: a command ran",
        path.display()
    );
}

// ---------------------------------------------------------------- other protocols

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_request_runs_nothing_and_the_server_serves_on() {
    let dir = tempfile::tempdir().unwrap();
    for protocol in TUTORIAL_MODES {
        let addr = start_server(config(protocol)).await;
        let file = dir.path().join(protocol.name());
        // What a web page can make a browser send to a port on localhost; sh would run
        // `touch` between the method and the version.
        let request = format!(
            "GET /;touch$IFS{};x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            file.display()
        );
        let reply = send_raw(addr, request.as_bytes()).await;
        assert_eq!(reply, b"", "{protocol:?} answered an HTTP request");
        assert_absent(&file);
        still_serves(addr, &["--protocol", protocol.name()]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_request_with_a_url_longer_than_one_read_runs_nothing() {
    // The first recv(1024) ends inside the URL, before ` HTTP/1.1` arrives; what follows
    // would be read as further commands.
    let dir = tempfile::tempdir().unwrap();
    for protocol in TUTORIAL_MODES {
        let addr = start_server(config(protocol)).await;
        let file = dir.path().join(protocol.name());
        let request = format!(
            "GET /;touch$IFS{};true$IFS{} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            file.display(),
            "A".repeat(3000)
        );
        let reply = send_raw(addr, request.as_bytes()).await;
        assert_eq!(reply, b"", "{protocol:?} answered an HTTP request");
        assert_absent(&file);
        still_serves(addr, &["--protocol", protocol.name()]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_ssh_and_header_lines_run_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let addr = start_server(config(Protocol::Classic)).await;
    for (i, prefix) in [
        &b"\x16\x03\x01"[..],
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"true\nOrigin: http://evil.example\n",
        b"POST /x HTTP/1.0\r\n",
    ]
    .into_iter()
    .enumerate()
    {
        let file = dir.path().join(i.to_string());
        let mut bytes = prefix.to_vec();
        bytes.extend_from_slice(format!(";touch {}\n", file.display()).as_bytes());
        assert_eq!(send_raw(addr, &bytes).await, b"", "{prefix:?}");
        assert_absent(&file);
    }
    still_serves(addr, &["--protocol", Protocol::Classic.name()]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_http_client_gets_no_answer_and_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x");
    for protocol in [Protocol::LengthAck, Protocol::Classic, Protocol::JsonHeader] {
        let addr = start_server(config(protocol)).await;
        let script = "import http.client, sys\n\
            c = http.client.HTTPConnection('127.0.0.1', int(sys.argv[1]), timeout=30)\n\
            c.request('GET', '/;touch${IFS}' + sys.argv[2] + ';')\n\
            try:\n    c.getresponse()\nexcept http.client.RemoteDisconnected as e:\n    print('disconnected')\n";
        let port = addr.port().to_string();
        let r = run(
            "python3",
            &["-c", script, &port, &file.to_string_lossy()],
            b"",
        )
        .await;
        r.expect_code(0);
        assert_eq!(r.stdout_str(), "disconnected\n", "{r}");
        assert_absent(&file);
        still_serves(addr, &["--protocol", protocol.name()]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_framed_hello_is_answered_in_the_servers_own_words() {
    let addr = start_server(config(Protocol::Classic)).await;
    let mut hello = vec![0, 0, 0, 10, b'H', b'r', b'c', b'm', b'd', 1];
    hello.extend_from_slice(&(1u32 << 20).to_be_bytes());
    let text = classic_text(&send_raw(addr, &hello).await);
    assert!(
        text.contains("this server speaks classic") && text.contains("--protocol classic"),
        "{text}"
    );
    still_serves(addr, &["--protocol", Protocol::Classic.name()]).await;
}

/// Starts the rcmd binary as a server with `args`; returns it, its address and its log.
async fn binary_server(
    args: &[&str],
) -> (
    tokio::process::Child,
    SocketAddr,
    tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
) {
    let mut server = tokio::process::Command::new(rcmd_bin())
        .args(["server", "--listen", "127.0.0.1:0"])
        .args(args)
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut log = BufReader::new(server.stderr.take().unwrap()).lines();
    // Warnings may come first; the address is on the "listening on" line.
    let line = loop {
        let line = log.next_line().await.unwrap().unwrap();
        if line.starts_with("rcmd server listening on") {
            break line;
        }
    };
    let addr = line
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (server, addr, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_warning_names_the_peer_and_commands_cannot_forge_log_lines() {
    let (mut server, addr, mut log) = binary_server(&["--protocol", "classic"]).await;
    let mut attacker = TcpStream::connect(addr).await.unwrap();
    let peer = attacker.local_addr().unwrap().to_string();
    attacker
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut sink = Vec::new();
    attacker.read_to_end(&mut sink).await.unwrap();
    // A command with a line break where a log line would start.
    let mut forger = TcpStream::connect(addr).await.unwrap();
    forger
        .write_all(b"true\n2026-01-01T00:00:00Z  INFO forged")
        .await
        .unwrap();
    let mut len = [0u8; 4];
    forger.read_exact(&mut len).await.unwrap();
    let mut reply = vec![0u8; i32::from_ne_bytes(len) as usize];
    forger.read_exact(&mut reply).await.unwrap();
    drop(forger);
    still_serves(addr, &["--protocol", Protocol::Classic.name()]).await;
    server.start_kill().unwrap();
    let mut lines = Vec::new();
    while let Some(line) = log.next_line().await.unwrap() {
        lines.push(line);
    }
    let about_attacker: Vec<_> = lines.iter().filter(|l| l.contains(&peer)).collect();
    assert_eq!(about_attacker.len(), 1, "{lines:#?}");
    assert!(
        about_attacker[0].contains("WARN")
            && about_attacker[0].contains("possible security attack: an HTTP request"),
        "{lines:#?}"
    );
    assert!(
        lines.iter().all(|l| !l.starts_with("2026-01-01")),
        "a command forged a log line: {lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(r"command=true\n2026-01-01")),
        "{lines:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tutorial_modes_refuse_to_listen_beyond_loopback() {
    for mode in ["length-ack", "classic", "json-header", "naive"] {
        let r = rcmd(
            &["server", "--protocol", mode, "--listen", "0.0.0.0:0"],
            b"",
        )
        .await;
        r.expect_code(255);
        assert!(r.stderr_str().contains("without a token"), "{r}");
    }
}

// ---------------------------------------------------------------- cut commands

/// 1031 bytes whose first 1024 are `touch …/cut` (padded): the command meant touches
/// `cut-meant`; cut at 1024 bytes it would touch `cut`.
fn long_touch(dir: &Path) -> (Vec<u8>, std::path::PathBuf) {
    let cut = dir.join("cut");
    let prefix = format!("touch {}", cut.display());
    let mut line = format!("{:>1024}", prefix).into_bytes();
    assert_eq!(line.len(), 1024);
    line.extend_from_slice(b"-meant\n");
    assert_eq!(line.len(), 1031);
    (line, cut)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_refuses_a_command_longer_than_recv_size() {
    let dir = tempfile::tempdir().unwrap();
    let (line, cut) = long_touch(dir.path());
    for protocol in [
        Protocol::LengthAck,
        Protocol::Classic,
        Protocol::StructAck,
        Protocol::JsonHeader,
    ] {
        let addr = start_server(config(protocol)).await;
        let reply = send_raw_answering(addr, &line, protocol).await;
        assert!(
            String::from_utf8_lossy(&reply)
                .contains("command longer than --recv-size 1024 bytes; not run"),
            "{reply:?}"
        );
        assert_absent(&cut);
        assert_absent(&dir.path().join("cut-meant"));
        still_serves(addr, &["--protocol", protocol.name()]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_refuse_to_send_a_command_longer_than_recv_size() {
    let dir = tempfile::tempdir().unwrap();
    let (line, cut) = long_touch(dir.path());
    let line = String::from_utf8(line).unwrap();
    for protocol in TUTORIAL_MODES {
        let addr = start_server(config(protocol)).await.to_string();
        let r = rcmd(
            &[
                "client",
                &addr,
                "--protocol",
                protocol.name(),
                "--",
                line.trim_end(),
            ],
            b"",
        )
        .await;
        r.expect_code(255);
        assert!(
            r.stderr_str()
                .contains("1030 bytes, longer than --recv-size 1024"),
            "{r}"
        );
        assert_absent(&cut);
    }
}

// ---------------------------------------------------------------- spools

fn with_max_spool(protocol: Protocol, header: &str, max: u64) -> ServerConfig {
    let mut c = config(protocol);
    c.wire.header = header.parse().unwrap();
    c.limits.max_spool = max;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_output_stops_at_max_spool_and_the_command_is_killed() {
    let addr = start_server(with_max_spool(Protocol::JsonHeader, "q", 100_000))
        .await
        .to_string();
    let marker = unique_marker();
    let r = rcmd(
        &[
            "client",
            &addr,
            "--protocol",
            "json-header",
            "--header",
            "q",
            "--",
            &format!("yes {marker}"),
        ],
        b"",
    )
    .await;
    r.expect_code(1);
    assert!(r.stdout.is_empty(), "{r}");
    assert!(
        r.stderr_str().contains("--max-spool of 100000 bytes"),
        "{r}"
    );
    wait_until("yes is killed", || {
        pids_running(&format!("yes {marker}")).is_empty()
    })
    .await;
    // Classic with a header wide enough that only --max-spool bounds it.
    let addr = start_server(with_max_spool(Protocol::Classic, "q", 100_000))
        .await
        .to_string();
    let r = rcmd(
        &["client", &addr, "--protocol", "classic", "--header", "q"],
        b"yes\necho next\n",
    )
    .await;
    r.expect_code(0);
    let out = r.stdout_str();
    assert!(out.contains("--max-spool of 100000 bytes"), "{r}");
    assert!(out.ends_with("next\n"), "the connection goes on\n{r}");
}

// ---------------------------------------------------------------- replies in another mode

async fn client_against(server: ServerConfig, client_args: &[&str], command: &str) -> common::Run {
    let addr = start_server(server).await.to_string();
    let mut args = vec!["client", addr.as_str()];
    args.extend_from_slice(client_args);
    args.extend_from_slice(&["--", command]);
    rcmd(&args, b"").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_name_the_mode_a_server_speaks() {
    let mut framed = config(Protocol::Framed);
    // `ls` is shorter than a frame header: the framed server waits for the rest, then
    // answers that no hello came.
    framed.limits.auth_timeout = Duration::from_millis(200);
    for (server, client, command, theirs) in [
        (framed.clone(), "classic", "echo hi", "framed"),
        (framed.clone(), "classic", "ls", "framed"),
        (framed, "json-header", "echo hi", "framed"),
        (
            config(Protocol::JsonHeader),
            "classic",
            "echo hi",
            "json-header",
        ),
        (
            config(Protocol::Classic),
            "json-header",
            "echo hi",
            "classic",
        ),
    ] {
        let r = client_against(server, &["--protocol", client], command).await;
        r.expect_code(255);
        let err = r.stderr_str();
        assert!(
            err.contains(&format!("the server speaks `{theirs}`"))
                && err.contains(&format!("try --protocol {theirs}")),
            "{client} client, `{command}`\n{r}"
        );
        assert!(r.stdout.is_empty(), "raw bytes printed\n{r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_that_stalls_is_explained() {
    // The server packs 'i' (4 bytes); the client waits for 8 and gets 7.
    let mut server = config(Protocol::Classic);
    server.wire.header = "i".parse().unwrap();
    let addr = start_server(server).await.to_string();
    let mut client = ClientConfig::new(Protocol::Classic);
    client.wire.header = "q".parse().unwrap();
    client.stall_timeout = Duration::from_millis(200);
    let mut out = Output {
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    let err = client::run(&addr, &client, Input::one(b"echo hi".to_vec()), &mut out)
        .await
        .unwrap_err();
    let ClientError::Usage(msg) = err else {
        panic!("unexpected error {err:?}");
    };
    assert!(msg.contains("stopped after 7 bytes"), "{msg}");
    assert!(msg.contains("different --header formats"), "{msg}");
    assert!(out.stdout.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_length_ack_reply_that_stalls_names_the_answer_not_a_header() {
    // A server of the strict tutorial copy that wants another word: the length, then
    // nothing, whatever the client answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = conn.read(&mut buf).await;
        conn.write_all(b"1").await.unwrap();
        let mut rest = Vec::new();
        let _ = conn.read_to_end(&mut rest).await;
    });
    let mut client = ClientConfig::new(Protocol::LengthAck);
    client.stall_timeout = Duration::from_millis(200);
    let mut out = Output {
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    let err = client::run(&addr, &client, Input::one(b"echo".to_vec()), &mut out)
        .await
        .unwrap_err();
    let ClientError::Usage(msg) = err else {
        panic!("unexpected error {err:?}");
    };
    assert!(msg.contains("stopped after 0 of 1 byte and"), "{msg}");
    assert!(
        msg.contains("answer to the length (b'recv_ready')"),
        "{msg}"
    );
    assert!(!msg.contains("header"), "length-ack has no header: {msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn length_ack_output_stops_at_max_spool_too() {
    let addr = start_server(with_max_spool(Protocol::LengthAck, "i", 100_000))
        .await
        .to_string();
    let marker = unique_marker();
    let r = rcmd(
        &[
            "client",
            &addr,
            "--protocol",
            "length-ack",
            "--",
            &format!("yes {marker}"),
        ],
        b"",
    )
    .await;
    r.expect_code(0);
    assert!(
        r.stdout_str().contains("--max-spool of 100000 bytes"),
        "{r}"
    );
    wait_until("yes is killed", || {
        pids_running(&format!("yes {marker}")).is_empty()
    })
    .await;
    still_serves(
        addr.parse().unwrap(),
        &["--protocol", Protocol::LengthAck.name()],
    )
    .await;
}
