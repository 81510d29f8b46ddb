//! Safe by default: authentication, exposure, limits, timeouts and shutdown, each tried
//! the way a hostile peer or a careless operator would, against the real server.

use crate::common;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::Duration;

use common::{
    eventually, framed, hello, pids_running, rcmd, rcmd_bin, start_server, still_serves,
    unique_marker, wait_until, RcmdHome,
};
use rcmd::client::{ClientConfig, ClientError, Input, Output};
use rcmd::server::{serve, ServerConfig};
use rcmd::wire::Protocol;
use rcmd::Token;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

fn with_token(token: &str) -> ServerConfig {
    let mut c = framed();
    c.token = Some(Token::new(token.as_bytes()).unwrap());
    c
}

/// Sends `bytes` over and over, one byte every 50 ms (a slowloris peer), until the
/// server closes the connection; returns what the server sent.
async fn trickle_until_closed(conn: &mut TcpStream, bytes: &[u8]) -> Vec<u8> {
    let (mut rd, mut wr) = conn.split();
    let trickle = async {
        for b in bytes.iter().cycle() {
            if wr.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let mut reply = Vec::new();
    tokio::select! {
        _ = trickle => {}
        _ = rd.read_to_end(&mut reply) => {}
    }
    reply
}

/// Reads until the server closes the connection; returns what it sent.
async fn read_to_close(conn: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let _ = tokio::time::timeout(common::PROCESS_DEADLINE, conn.read_to_end(&mut got))
        .await
        .expect("the server never closed the connection");
    got
}

// ---------------------------------------------------------------- authentication

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_and_wrong_tokens_are_refused() {
    let addr = start_server(with_token("correct horse")).await;
    let a = addr.to_string();
    for args in [
        vec![],
        vec!["--token", "wrong"],
        vec!["--token", "correct hors"],
    ] {
        let mut all = vec!["client", "--plaintext", a.as_str()];
        all.extend(args);
        all.extend(["--", "echo", "ran"]);
        let r = rcmd(&all, b"").await;
        r.expect_code(255);
        assert!(r.stderr_str().contains("authentication failed"), "{r}");
        assert!(r.stdout.is_empty(), "no command may run: {r}");
    }
    still_serves(addr, &["--plaintext", "--token", "correct horse"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_from_file_and_environment() {
    let addr = start_server(with_token("s3cret")).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "s3cret\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    still_serves(
        addr,
        &["--plaintext", "--token-file", file.to_str().unwrap()],
    )
    .await;
    let r = common::run(
        "env",
        &[
            "RCMD_TOKEN=s3cret",
            rcmd_bin(),
            "client",
            "--plaintext",
            &addr.to_string(),
            "--",
            "echo",
            "env",
        ],
        b"",
    )
    .await;
    r.expect_code(0);
    assert_eq!(r.stdout_str(), "env\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_command_runs_before_authentication() {
    let addr = start_server(with_token("right")).await;
    let dir = tempfile::tempdir().unwrap();
    let proof = dir.path().join("ran");
    // A wrong hello and a command in the same write: the command must never run.
    let mut bytes = hello(1, 1 << 20, b"wrong");
    let run = format!("Rtouch {}", proof.display());
    bytes.extend_from_slice(&(run.len() as u32).to_be_bytes());
    bytes.extend_from_slice(run.as_bytes());
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(&bytes).await.unwrap();
    let reply = read_to_close(&mut conn).await;
    assert!(String::from_utf8_lossy(&reply).contains("authentication failed"));
    assert!(!proof.exists(), "a command ran without authentication");
    still_serves(addr, &["--plaintext", "--token", "right"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_peers_get_only_small_frames() {
    let addr = start_server(with_token("t")).await;
    let mut conn = TcpStream::connect(addr).await.unwrap();
    // A 5000-byte "hello" is refused from its header alone, before it is read.
    conn.write_all(&5000u32.to_be_bytes()).await.unwrap();
    let reply = read_to_close(&mut conn).await;
    assert!(String::from_utf8_lossy(&reply).contains("exceeds the limit of 4096"));
    still_serves(addr, &["--plaintext", "--token", "t"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_hello_is_cut_off_at_the_auth_deadline() {
    let mut config = with_token("t");
    config.limits.auth_timeout = Duration::from_millis(300);
    let addr = start_server(config).await;
    let mut conn = TcpStream::connect(addr).await.unwrap();
    // The hello, one byte at a time, never finishing.
    let reply = trickle_until_closed(&mut conn, &hello(1, 1 << 20, b"t")).await;
    assert!(
        String::from_utf8_lossy(&reply).contains("no hello within 0.3s"),
        "{reply:?}"
    );
    still_serves(addr, &["--plaintext", "--token", "t"]).await;
}

// ---------------------------------------------------------------- exposure

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listening_without_a_token_is_refused_unless_allowed() {
    // Refused before binding: nothing is opened on 0.0.0.0.
    let r = rcmd(&["server", "--listen", "0.0.0.0:0", "--naive"], b"").await;
    r.expect_code(255);
    assert!(r.stderr_str().contains("without a token"), "{r}");
    assert!(r.stderr_str().contains("--allow-unauthenticated"), "{r}");
    // On loopback a tutorial mode serves learners, saying who else can use it.
    let server = common::RcmdHome::new().server(&["--naive"]).await;
    // The warning is wrapped to 80 columns: read it as words.
    let words = server.banner.join(" ");
    let words = words.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(words.contains("every local user"), "{:?}", server.banner);
    server.stop().await;
    let r = rcmd(
        &[
            "server",
            "--listen",
            "127.0.0.1:0",
            "--naive",
            "--token",
            "x",
        ],
        b"",
    )
    .await;
    r.expect_code(255);
    assert!(r.stderr_str().contains("no way to carry a token"), "{r}");
}

// ---------------------------------------------------------------- limits

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_max_conns_are_refused_with_a_message() {
    let mut config = framed();
    config.limits.max_conns = 2;
    let addr = start_server(config).await;
    // Two connections that have completed the handshake hold both slots.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(&hello(1, 1 << 20, b"")).await.unwrap();
        let mut reply = [0u8; 14];
        c.read_exact(&mut reply).await.unwrap();
        held.push(c);
    }
    // Asked once: the client's own retries (4.5 to 9 s of back-off) would only be
    // refused the same way while the slots are held.
    let mut client = ClientConfig::new(Protocol::Framed);
    client.busy_retries = 0;
    let mut out = Output {
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    let err = rcmd::client::run(
        &addr.to_string(),
        &client,
        Input::one(b"true".to_vec()),
        &mut out,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ClientError::Busy(_)), "{err:?}");
    assert!(err.to_string().contains("server busy"), "{err}");
    drop(held);
    // The slots come back once the server sees those connections close.
    let a = addr.to_string();
    eventually("a client is served again", || async {
        rcmd(&["client", "--plaintext", &a, "--", "echo", "in"], b"")
            .await
            .code
            == Some(0)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_abrupt_resets_are_survived() {
    let mut config = framed();
    config.limits.max_conns = 1000;
    let addr = start_server(config).await;
    let mut conns = Vec::new();
    for i in 0..500 {
        let c = TcpStream::connect(addr).await.unwrap();
        // Some mid-hello, some mid-command, some silent.
        match i % 3 {
            0 => {
                let _ = c.try_write(&hello(1, 1 << 20, b"")[..7]);
            }
            1 => {
                let mut bytes = hello(1, 1 << 20, b"");
                bytes.extend_from_slice(b"\x00\x00\x00\x0dRsleep 300 #");
                let _ = c.try_write(&bytes);
            }
            _ => {}
        }
        c.set_zero_linger().unwrap();
        conns.push(c);
    }
    drop(conns); // 500 RSTs at once
                 // Served once the server has seen the resets of those it was still authenticating
                 // (at most 8 at once from one address; the rest were refused at once).
    let a = addr.to_string();
    eventually("a client is served", || async {
        rcmd(&["client", "--plaintext", &a, "--", "echo", "in"], b"")
            .await
            .code
            == Some(0)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_timeout_kills_the_group_and_exits_124() {
    let mut config = framed();
    config.limits.command_timeout = Some(Duration::from_millis(500));
    let addr = start_server(config).await;
    let marker = unique_marker();
    let cmd = format!("echo partial; sleep {marker} & sleep {marker}");
    let r = rcmd(
        &["client", "--plaintext", &addr.to_string(), "--", &cmd],
        b"",
    )
    .await;
    r.expect_code(124);
    assert_eq!(
        r.stdout_str(),
        "partial\n",
        "output before the timeout is kept\n{r}"
    );
    assert!(r.stderr_str().contains("timed out after 0.5s"), "{r}");
    wait_until("the sleeps are killed", || {
        pids_running(&format!("sleep {marker}")).is_empty()
    })
    .await;
    still_serves(addr, &["--plaintext"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connection_is_closed_even_while_trickling() {
    let mut config = framed();
    config.limits.idle_timeout = Some(Duration::from_millis(300));
    let addr = start_server(config).await;
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(&hello(1, 1 << 20, b"")).await.unwrap();
    let mut server_hello = [0u8; 14];
    conn.read_exact(&mut server_hello).await.unwrap();
    // A request header that never completes: a byte now and then is not activity.
    let reply = trickle_until_closed(&mut conn, &[0, 0, 0, 200]).await;
    assert!(
        String::from_utf8_lossy(&reply).contains("idle for 0.3s"),
        "{reply:?}"
    );
    still_serves(addr, &["--plaintext"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_command_is_not_idleness() {
    let mut config = framed();
    config.limits.idle_timeout = Some(Duration::from_millis(200));
    let addr = start_server(config).await;
    let r = rcmd(
        &[
            "client",
            "--plaintext",
            &addr.to_string(),
            "--",
            "sleep 1; echo finished",
        ],
        b"",
    )
    .await;
    r.expect_code(0);
    assert_eq!(r.stdout_str(), "finished\n");
}

// ---------------------------------------------------------------- shutdown

/// Starts a server that shuts down when the returned sender fires.
async fn stoppable(
    config: ServerConfig,
) -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        serve(listener, config, async {
            let _ = rx.await;
        })
        .await;
    });
    (addr, tx, task)
}

/// Starts a client running `command` and waits for its first line.
async fn client_started(addr: SocketAddr, command: &str) -> tokio::process::Child {
    // The in-process servers speak the framed wire in the clear.
    client_started_in(addr, command, common::rcmd_command(), &["--plaintext"]).await
}

/// [`client_started`] for a client spawned from `cmd` (to give it an rcmd home), with
/// `options` before the address.
async fn client_started_in(
    addr: SocketAddr,
    command: &str,
    mut cmd: tokio::process::Command,
    options: &[&str],
) -> tokio::process::Child {
    let mut child = cmd
        .arg("client")
        .args(options)
        .args([&addr.to_string(), "--", command])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("started"));
    // Hand the rest of stdout back so the caller can read it.
    child.stdout = Some(lines.into_inner().into_inner());
    child
}

/// A command that prints `started`, then waits until the test creates `gate`, then prints
/// `done`: it is still running for exactly as long as the test wants.
fn gated(gate: &std::path::Path) -> String {
    format!(
        "echo started; while [ ! -e {} ]; do sleep 0.01; done; echo done",
        gate.display()
    )
}

async fn stopped_accepting(addr: SocketAddr) {
    wait_until("the server stops accepting", || {
        std::net::TcpStream::connect(addr).is_err()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_a_running_command_finish_within_grace() {
    let (addr, stop, server) = stoppable(framed()).await;
    let dir = tempfile::tempdir().unwrap();
    let gate = dir.path().join("go");
    let client = client_started(addr, &gated(&gate)).await;
    stop.send(()).unwrap();
    stopped_accepting(addr).await;
    assert!(
        !server.is_finished(),
        "the server must wait for the running command"
    );
    std::fs::write(&gate, "").unwrap();
    let out = client.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "done\n");
    tokio::time::timeout(common::PROCESS_DEADLINE, server)
        .await
        .expect("server did not stop after its command finished")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_kills_what_outlives_the_grace_period() {
    let mut config = framed();
    config.limits.grace = Duration::from_millis(300);
    let (addr, stop, server) = stoppable(config).await;
    let marker = unique_marker();
    let mut client = client_started(addr, &format!("echo started; sleep {marker}")).await;
    stop.send(()).unwrap();
    tokio::time::timeout(common::PROCESS_DEADLINE, server)
        .await
        .expect("server did not stop after the grace period")
        .unwrap();
    // SIGKILL has been sent; its delivery is the kernel's, so wait for it.
    wait_until("the sleep is killed", || {
        pids_running(&format!("sleep {marker}")).is_empty()
    })
    .await;
    let out = client.wait().await.unwrap();
    assert_eq!(out.code(), Some(255));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_exits_zero_and_the_port_is_reusable_at_once() {
    let home = RcmdHome::new();
    let mut server = home.server(&["--grace", "30"]).await;
    let addr = server.addr;
    let dir = tempfile::tempdir().unwrap();
    let gate = dir.path().join("go");
    let mut cmd = common::rcmd_command();
    cmd.env("RCMD_HOME", home.path());
    let client = client_started_in(addr, &gated(&gate), cmd, &[]).await;
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(server.child.id().unwrap() as i32, libc::SIGTERM) };
    stopped_accepting(addr).await;
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the server must wait for the running command"
    );
    std::fs::write(&gate, "").unwrap();
    let status = tokio::time::timeout(common::PROCESS_DEADLINE, server.child.wait())
        .await
        .expect("server did not exit after SIGTERM")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let out = client.wait_with_output().await.unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "done\n");
    // Restart on the very same port straight away.
    let again = home.server(&["--listen", &addr.to_string()]).await;
    assert_eq!(again.addr, addr);
    let r = home
        .rcmd(&["client", &addr.to_string(), "--", "echo alive"], b"")
        .await;
    r.expect_code(0);
    assert_eq!(r.stdout_str(), "alive\n", "{r}");
}
