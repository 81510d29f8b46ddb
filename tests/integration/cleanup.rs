//! Nothing a command started outlives the client that asked for it.

use crate::common;

use std::process::Stdio;

use common::{pids_running, rcmd_command, start_server, unique_marker, wait_until};
use rcmd::server::ServerConfig;
use rcmd::wire::Protocol;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// A command that leaves one `sleep` in the background and waits on another, so both a
/// grandchild and the foreground child of `sh -c` must be killed.
fn two_sleeps(marker: &str) -> String {
    format!("sleep {marker} & echo started; sleep {marker}; echo never")
}

async fn both_sleeps_then_none(marker: &str, hang_up: impl std::future::Future<Output = ()>) {
    let sleep = format!("sleep {marker}");
    wait_until("both sleeps are running", || {
        pids_running(&sleep).len() == 2
    })
    .await;
    hang_up.await;
    wait_until("the command's whole process group is gone", || {
        pids_running(&sleep).is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framed_client_killed_mid_command_leaves_no_process() {
    let addr = start_server(ServerConfig::new(Protocol::Framed))
        .await
        .to_string();
    let marker = unique_marker();
    let mut client = rcmd_command()
        .args(["client", "--plaintext", &addr, "--", &two_sleeps(&marker)])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(client.stdout.take().unwrap()).lines();
    assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("started"));
    both_sleeps_then_none(&marker, async {
        client.kill().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn naive_peer_gone_mid_command_leaves_no_process() {
    let addr = start_server(ServerConfig::new(Protocol::Naive)).await;
    let marker = unique_marker();
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(two_sleeps(&marker).as_bytes())
        .await
        .unwrap();
    let mut started = [0u8; 8];
    conn.read_exact(&mut started).await.unwrap();
    assert_eq!(&started, b"started\n");
    both_sleeps_then_none(&marker, async { drop(conn) }).await;
}
