//! Sessions like ssh: stdin, signals, terminals, environment and directory, and peers
//! that speak protocol version 1 on either side.

use crate::common;

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Stdio;

use common::{framed, rcmd, rcmd_bin, rcmd_command, start_server, unique_marker, wait_until};
use rcmd::test_support::pty;
use rcmd::WindowSize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_reaches_the_command_and_ends() {
    let addr = start_server(framed()).await.to_string();
    let r = rcmd(&["client", &addr, "--plaintext", "--", "cat"], b"hi\n").await;
    r.expect_code(0);
    assert_eq!(r.stdout_str(), "hi\n");
    let r = rcmd(&["client", &addr, "--plaintext", "--", "wc -c"], b"12345").await;
    assert_eq!(r.stdout_str().trim(), "5", "{r}");
    // -n: the command's stdin is empty, whatever ours holds (as ssh -n).
    let r = rcmd(
        &["client", &addr, "--plaintext", "-n", "--", "wc -c"],
        b"12345",
    )
    .await;
    assert_eq!(r.stdout_str().trim(), "0", "{r}");
}

/// Feeds `total` bytes of a pattern into `pipe` in uneven pieces with pauses between some
/// of them, so frames of every size (and empty pipes) occur; returns what it fed.
async fn feed_unevenly(mut pipe: tokio::process::ChildStdin, total: usize) -> Vec<u8> {
    let data: Vec<u8> = (0..total as u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
        .collect();
    let mut at = 0;
    let mut step = 1usize;
    while at < data.len() {
        let n = step.min(data.len() - at);
        pipe.write_all(&data[at..at + n]).await.unwrap();
        at += n;
        step = (step * 7 + 13) % (3 << 20) + 1;
        if step % 5 == 0 {
            tokio::task::yield_now().await;
        }
    }
    data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_from_a_pipe_is_spliced_byte_for_byte_past_many_credit_windows() {
    // In the clear, a piped stdin goes from its pipe into the socket inside the kernel;
    // --no-splice copies it through memory. Both must give the same bytes, past the
    // server's 8 MiB window several times, in pieces of every size.
    let addr = start_server(framed()).await.to_string();
    const TOTAL: usize = 40 << 20;
    for extra in [None, Some("--no-splice")] {
        let mut args = vec!["client", &addr, "--plaintext"];
        args.extend(extra);
        args.extend(["--", "sha256sum"]);
        let mut client = rcmd_command()
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let feeder = tokio::spawn(feed_unevenly(client.stdin.take().unwrap(), TOTAL));
        let out = client.wait_with_output().await.unwrap();
        let data = feeder.await.unwrap();
        assert_eq!(out.status.code(), Some(0), "{extra:?}");
        let local = std::process::Command::new("sha256sum")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut pipe = local.stdin.as_ref().unwrap();
        std::io::Write::write_all(&mut pipe, &data).unwrap();
        let mut local = local;
        drop(local.stdin.take());
        let expected = local.wait_with_output().unwrap().stdout;
        assert_eq!(out.stdout, expected, "{extra:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_stops_reading_spliced_stdin_still_ends() {
    // `head -c 5` reads five bytes and exits; the rest of a large piped stdin must not
    // hold the client, spliced or not.
    let addr = start_server(framed()).await.to_string();
    let mut client = rcmd_command()
        .args(["client", &addr, "--plaintext", "--", "head -c 5"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = client.stdin.take().unwrap();
    // Keeps writing until the client goes (its end of the pipe closes).
    let feeder = tokio::spawn(async move {
        let block = vec![b'x'; 1 << 20];
        while pipe.write_all(&block).await.is_ok() {}
    });
    let out = client.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(out.stdout, b"xxxxx");
    feeder.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tar_stream_unpacks_remotely() {
    let addr = start_server(framed()).await.to_string();
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("a.txt"), "alpha\n").unwrap();
    std::fs::create_dir(src.path().join("sub")).unwrap();
    std::fs::write(src.path().join("sub/b.bin"), [0u8, 255, 7, 0]).unwrap();
    let tar = std::process::Command::new("tar")
        .args(["c", "-C", src.path().to_str().unwrap(), "."])
        .output()
        .unwrap()
        .stdout;
    let untar = format!("tar x -C {}", dst.path().display());
    rcmd(&["client", &addr, "--plaintext", "--", &untar], &tar)
        .await
        .expect_code(0);
    assert_eq!(std::fs::read(dst.path().join("a.txt")).unwrap(), b"alpha\n");
    assert_eq!(
        std::fs::read(dst.path().join("sub/b.bin")).unwrap(),
        [0u8, 255, 7, 0]
    );
}

/// Peak resident memory of a process, from `/proc/PID/status`, in KiB.
fn peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gib_of_stdin_arrives_byte_for_byte_in_bounded_memory() {
    // A real server process, so its memory is its own; the client's is read just before
    // it exits (it waits on the remote command, which waits on a gate file).
    let home = common::RcmdHome::new();
    let server = home.server(&[]).await;
    let addr = server.addr.to_string();
    let dir = tempfile::tempdir().unwrap();
    let gate = dir.path().join("gate");
    const GIB: u64 = 1 << 30;
    // A deterministic stream, summed on both sides: cksum reads every byte.
    let line = format!(
        "cksum; while [ ! -e {} ]; do sleep 0.05; done",
        gate.display()
    );
    let mut client = rcmd_command()
        .env("RCMD_HOME", home.path())
        .args(["client", &addr, "--", &line])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = client.stdin.take().unwrap();
    let feeder = tokio::spawn(async move {
        let block: Vec<u8> = (0..1 << 20)
            .map(|i: u32| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        for _ in 0..GIB / (1 << 20) {
            stdin.write_all(&block).await.unwrap();
        }
        block
    });
    let mut out = BufReader::new(client.stdout.take().unwrap()).lines();
    let remote = out.next_line().await.unwrap().unwrap();
    let block = feeder.await.unwrap();
    let client_peak = peak_kib(client.id().unwrap());
    let server_peak = peak_kib(server.child.id().unwrap());
    std::fs::write(&gate, "").unwrap();
    assert_eq!(client.wait().await.unwrap().code(), Some(0));
    // The same bytes through the local cksum.
    let mut local = std::process::Command::new("cksum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = local.stdin.take().unwrap();
    std::thread::spawn(move || {
        use std::io::Write;
        for _ in 0..GIB / (1 << 20) {
            pipe.write_all(&block).unwrap();
        }
    });
    let expected = local.wait_with_output().unwrap().stdout;
    assert_eq!(remote, String::from_utf8_lossy(&expected).trim());
    assert!(remote.ends_with(&GIB.to_string()), "{remote}");
    assert!(client_peak < 32 * 1024, "client peak {client_peak} KiB");
    assert!(server_peak < 32 * 1024, "server peak {server_peak} KiB");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_reaches_the_command_and_its_status_comes_back() {
    let addr = start_server(framed()).await.to_string();
    let marker = unique_marker();
    let line = format!("trap 'echo got INT; exit 3' INT; echo ready; sleep {marker}");
    let mut client = rcmd_command()
        .args(["client", &addr, "--plaintext", "-n", "--", &line])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(client.stdout.take().unwrap()).lines();
    assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("ready"));
    // Only once sleep runs: a signal landing while the shell forks it reaches the child
    // before it execs, and the shell then waits for a sleep that never got it (a shell's
    // race, the same over ssh).
    sleeping(&marker).await;
    // SAFETY: kill(2) on the client this test started.
    unsafe { libc::kill(client.id().unwrap() as i32, libc::SIGINT) };
    let next = lines.next_line().await.unwrap();
    let out = client.wait_with_output().await.unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(next.as_deref(), Some("got INT"), "client said: {said}");
    assert_eq!(out.status.code(), Some(3), "client said: {said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_ignoring_the_signal_is_disconnected_and_killed() {
    let addr = start_server(framed()).await.to_string();
    let marker = unique_marker();
    let line = format!("trap '' INT TERM; echo ready; sleep {marker}");
    let mut client = rcmd_command()
        .args(["client", &addr, "--plaintext", "-n", "--", &line])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(client.stdout.take().unwrap()).lines();
    assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("ready"));
    // SAFETY: kill(2) on the client this test started.
    unsafe { libc::kill(client.id().unwrap() as i32, libc::SIGTERM) };
    let out = client.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(128 + libc::SIGTERM));
    assert!(String::from_utf8_lossy(&out.stderr).contains("did not end after the signal"));
    let sleep = format!("sleep {marker}");
    wait_until("the ignoring command is killed", || {
        common::pids_running(&sleep).is_empty()
    })
    .await;
}

/// Waits until `sleep MARKER` runs.
async fn sleeping(marker: &str) {
    let sleep = format!("sleep {marker}");
    wait_until("the sleep runs", || {
        !common::pids_running(&sleep).is_empty()
    })
    .await;
}

/// Runs the client on a pseudo-terminal of `size` and returns everything it showed.
fn on_a_terminal(args: &[&str], size: WindowSize, typed: &[u8]) -> (Option<i32>, String) {
    let (master, slave) = pty::open(size).unwrap();
    drop(master);
    // The test's own terminal: a plain blocking master read on a thread.
    let (m, s) = open_blocking_pty(size);
    drop(slave);
    let mut child = std::process::Command::new(rcmd_bin())
        .env("RCMD_HOME", common::RcmdHome::new().path())
        .env("TERM", "xterm-256color")
        .args(args)
        .stdin(s.try_clone().unwrap())
        .stdout(s.try_clone().unwrap())
        .stderr(s)
        .spawn()
        .unwrap();
    let mut reader = std::fs::File::from(m.try_clone().unwrap());
    let mut writer = std::fs::File::from(m);
    use std::io::Write;
    writer.write_all(typed).unwrap();
    let status = child.wait().unwrap();
    let mut shown = Vec::new();
    let mut buf = [0u8; 4096];
    // After the child exits nothing holds the terminal: reading ends with EIO.
    while let Ok(n) = reader.read(&mut buf) {
        if n == 0 {
            break;
        }
        shown.extend_from_slice(&buf[..n]);
    }
    (status.code(), String::from_utf8_lossy(&shown).into_owned())
}

fn open_blocking_pty(size: WindowSize) -> (OwnedFd, OwnedFd) {
    let (mut master, mut slave) = (0, 0);
    let ws = libc::winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty fills two descriptors, which we then own.
    unsafe {
        assert_eq!(
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                &ws
            ),
            0
        );
        (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t_gives_the_command_a_terminal_of_our_size() {
    let addr = start_server(framed()).await.to_string();
    let size = WindowSize { rows: 33, cols: 97 };
    let (code, shown) = tokio::task::spawn_blocking(move || {
        on_a_terminal(
            &[
                "client",
                &addr,
                "--plaintext",
                "-t",
                "--",
                "tty; stty size; echo $TERM; exit 4",
            ],
            size,
            b"",
        )
    })
    .await
    .unwrap();
    assert_eq!(code, Some(4), "{shown}");
    assert!(shown.contains("/dev/pts/"), "{shown}");
    assert!(shown.contains("33 97"), "{shown}");
    assert!(shown.contains("xterm-256color"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_command_at_a_terminal_opens_a_remote_shell() {
    let addr = start_server(framed()).await.to_string();
    let size = WindowSize { rows: 24, cols: 80 };
    // Typed at the remote shell, through the local terminal in raw mode.
    let (code, shown) = tokio::task::spawn_blocking(move || {
        on_a_terminal(
            &["client", &addr, "--plaintext"],
            size,
            b"echo remote-$((6*7)); exit 5\n",
        )
    })
    .await
    .unwrap();
    assert_eq!(code, Some(5), "{shown}");
    assert!(shown.contains("remote-42"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_terminal_is_restored_on_the_way_out() {
    let addr = start_server(framed()).await.to_string();
    // `stty -a` before and after the client, on the same terminal: the same settings.
    let line = format!(
        "stty -g; {} client {addr} --plaintext -t -- true; echo status=$?; stty -g",
        rcmd_bin()
    );
    let (code, shown) = tokio::task::spawn_blocking(move || on_a_terminal_sh(&line))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{shown}");
    assert!(
        shown.contains("status=0"),
        "the client itself failed: {shown}"
    );
    let settings: Vec<&str> = shown
        .lines()
        .map(str::trim)
        .filter(|l| l.contains(':') && !l.contains(' '))
        .collect();
    assert_eq!(settings.len(), 2, "{shown}");
    assert_eq!(settings[0], settings[1], "{shown}");
}

fn on_a_terminal_sh(line: &str) -> (Option<i32>, String) {
    let (m, s) = open_blocking_pty(WindowSize { rows: 24, cols: 80 });
    let mut child = std::process::Command::new("sh")
        .env("RCMD_HOME", common::RcmdHome::new().path())
        .args(["-c", line])
        .stdin(s.try_clone().unwrap())
        .stdout(s.try_clone().unwrap())
        .stderr(s)
        .spawn()
        .unwrap();
    let status = child.wait().unwrap();
    let mut reader = std::fs::File::from(m);
    let mut shown = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = reader.read(&mut buf) {
        if n == 0 {
            break;
        }
        shown.extend_from_slice(&buf[..n]);
    }
    let _ = reader.as_raw_fd();
    (status.code(), String::from_utf8_lossy(&shown).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_accepted_and_refused() {
    let addr = start_server(framed()).await.to_string();
    let r = rcmd(
        &[
            "client",
            &addr,
            "--plaintext",
            "-n",
            "-e",
            "LANG=C.UTF-8",
            "-e",
            "LC_TIME=C",
            "-e",
            "LD_PRELOAD=/tmp/evil.so",
            "--",
            "echo $LANG $LC_TIME [$LD_PRELOAD]",
        ],
        b"",
    )
    .await;
    r.expect_code(0);
    assert_eq!(r.stdout_str(), "C.UTF-8 C []\n");
    assert!(
        r.stderr_str().contains("LD_PRELOAD refused"),
        "the client warns about each refused variable: {r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cwd_runs_the_command_there_or_fails() {
    let mut config = framed();
    let base = tempfile::tempdir().unwrap();
    std::fs::create_dir(base.path().join("inner")).unwrap();
    config.workdir = Some(base.path().to_path_buf());
    let addr = start_server(config).await.to_string();
    // The server's working directory is its --workdir; --cwd is relative to it.
    let r = rcmd(&["client", &addr, "--plaintext", "-n", "--", "pwd"], b"").await;
    assert_eq!(r.stdout_str().trim(), base.path().to_str().unwrap(), "{r}");
    let r = rcmd(
        &[
            "client",
            &addr,
            "--plaintext",
            "-n",
            "--cwd",
            "inner",
            "--",
            "pwd",
        ],
        b"",
    )
    .await;
    assert_eq!(
        r.stdout_str().trim(),
        base.path().join("inner").to_str().unwrap(),
        "{r}"
    );
    let r = rcmd(
        &[
            "client",
            &addr,
            "--plaintext",
            "-n",
            "--cwd",
            "/no/such/dir",
            "--",
            "pwd",
        ],
        b"",
    )
    .await;
    r.expect_code(1);
    assert!(r.stdout.is_empty(), "nothing ran: {r}");
    assert!(r.stderr_str().contains("No such file or directory"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_client_works_against_this_server() {
    let addr = start_server(framed()).await;
    let r = common::run(
        "python3",
        &[
            &common::peer("scripts/rcmd_client.py"),
            "--plaintext",
            "127.0.0.1",
            &addr.port().to_string(),
            "echo v1 client",
        ],
        b"",
    )
    .await;
    r.expect_code(0);
    assert_eq!(r.stdout_str(), "v1 client\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn this_client_works_against_a_version_1_server() {
    let mut config = framed();
    config.version = 1;
    let addr = start_server(config).await.to_string();
    let r = rcmd(
        &["client", &addr, "--plaintext", "--", "echo old server"],
        b"ignored",
    )
    .await;
    r.expect_code(0);
    assert_eq!(r.stdout_str(), "old server\n");
    // What version 1 cannot do is refused, never done some other way.
    let r = rcmd(
        &["client", &addr, "--plaintext", "--cwd", "/tmp", "--", "pwd"],
        b"",
    )
    .await;
    r.expect_code(255);
    assert!(r.stderr_str().contains("protocol version 1"), "{r}");
    assert!(r.stdout.is_empty(), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_exit_255_like_every_failure_of_rcmd() {
    for args in [
        &["client"][..],
        &["client", "h", "--no-such-flag"],
        &["bogus"],
    ] {
        let r = rcmd(args, b"").await;
        r.expect_code(255);
    }
    rcmd(&["--help"], b"").await.expect_code(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_ends_the_client_quietly_with_141() {
    let addr = start_server(framed()).await.to_string();
    let marker = unique_marker();
    let line = format!("seq 1 100000000; sleep {marker}");
    let mut client = rcmd_command()
        .args(["client", &addr, "--plaintext", "-n", "--", &line])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(client.stdout.take().unwrap()).lines();
    assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("1"));
    drop(lines); // as `| head -1` does
    let out = client.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(141));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_ends_the_demo_quietly_too() {
    let mut demo = rcmd_command()
        .args(["demo", "sticky"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(demo.stdout.take().unwrap()).lines();
    lines.next_line().await.unwrap().unwrap();
    drop(lines);
    let out = demo.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(141));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_timeout_bounds_a_server_that_accepts_and_never_answers() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            conns.push(conn); // accepted, never answered
        }
    });
    // The four clients wait out their timeouts at once rather than in turn: the listener
    // holds every connection it accepts and answers none, so they cannot affect each other.
    let one_host = [
        (vec!["--plaintext"], "did not answer within 0.5s"),
        (vec![], "no TLS answer within 0.5s"),
    ]
    .map(|(args, says)| {
        let addr = addr.clone();
        async move {
            let mut all = vec!["client", addr.as_str(), "--connect-timeout", "0.5"];
            all.extend(args);
            all.extend(["-n", "--", "true"]);
            let r = rcmd(&all, b"").await;
            r.expect_code(255);
            assert!(r.stderr_str().contains(says), "{r}");
        }
    });
    // With many hosts, the silent one is reported unreachable, naming it once, and the run
    // ends.
    let many_hosts = [
        (vec!["--plaintext"], "unreachable: no answer within 0.5s"),
        (vec![], "unreachable: no TLS answer within 0.5s"),
    ]
    .map(|(args, says)| {
        let addr = addr.clone();
        async move {
            let mut all = vec!["client", "--connect-timeout", "0.5", "-H", addr.as_str()];
            all.extend(args);
            all.extend(["--", "true"]);
            let r = rcmd(&all, b"").await;
            r.expect_code(255);
            let stderr = r.stderr_str();
            let line = stderr
                .lines()
                .find(|l| l.contains(says))
                .unwrap_or_else(|| panic!("no {says:?}\n{r}"));
            assert_eq!(line.matches("127.0.0.1").count(), 1, "{r}");
        }
    });
    tokio::join!(
        futures_util::future::join_all(one_host),
        futures_util::future::join_all(many_hosts)
    );
    held.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_on_one_command_then_the_next_is_not_a_double_ctrl_c() {
    let addr = start_server(framed()).await.to_string();
    let mut client = rcmd_command()
        .args(["client", &addr, "--plaintext"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = client.stdin.take().unwrap();
    let (m1, m2) = (unique_marker(), unique_marker());
    let lines = format!("echo r1; sleep {m1}\necho r2; sleep {m2}\necho r3\n");
    stdin.write_all(lines.as_bytes()).await.unwrap();
    drop(stdin);
    let mut lines = BufReader::new(client.stdout.take().unwrap()).lines();
    for (seen, interrupt) in [("r1", Some(&m1)), ("r2", Some(&m2)), ("r3", None)] {
        assert_eq!(lines.next_line().await.unwrap().as_deref(), Some(seen));
        if let Some(marker) = interrupt {
            sleeping(marker).await;
            // SAFETY: kill(2) on the client this test started.
            unsafe { libc::kill(client.id().unwrap() as i32, libc::SIGINT) };
        }
    }
    assert_eq!(client.wait().await.unwrap().code(), Some(0));
}
