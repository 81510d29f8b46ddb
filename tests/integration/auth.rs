//! Same-user by default, and token hygiene, against the real `rcmd server` and `rcmd client`
//! binaries, each test in an rcmd home of its own.

use crate::common;

use std::os::unix::fs::PermissionsExt;

use common::{RcmdHome, Run};

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn chmod(path: &std::path::Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[track_caller]
fn refused_auth(r: &Run) {
    r.expect_code(255);
    assert!(r.stderr_str().contains("authentication failed"), "{r}");
    assert!(r.stdout.is_empty(), "no command may run: {r}");
}

// ---------------------------------------------------------------- same user by default

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_user_needs_no_flags_and_the_token_is_private() {
    let home = RcmdHome::new();
    assert!(!home.path().exists());
    let server = home.server(&[]).await;
    let token = home.token_file();
    assert!(
        server
            .banner
            .iter()
            .any(|l| l.contains("created the token file")),
        "{:?}",
        server.banner
    );
    assert_eq!(mode(home.path()), 0o700, "the directory");
    assert_eq!(mode(&token), 0o600, "the token file");
    let addr = server.addr.to_string();
    let r = home
        .rcmd(&["client", &addr, "--", "echo", "mine"], b"")
        .await;
    r.expect_code(0);
    assert_eq!(r.stdout_str(), "mine\n", "{r}");
    // A client with no token of its own (an empty home) is refused.
    let elsewhere = RcmdHome::new();
    refused_auth(
        &elsewhere
            .rcmd(&["client", "--accept-new", &addr, "--", "echo ran"], b"")
            .await,
    );
    // The token file is kept across restarts.
    let before = std::fs::read(&token).unwrap();
    drop(server);
    let again = home.server(&[]).await;
    assert_eq!(std::fs::read(&token).unwrap(), before);
    let r = home
        .rcmd(&["client", &again.addr.to_string(), "--", "true"], b"")
        .await;
    r.expect_code(0);
}

/// Why another user cannot be simulated here, if it cannot.
fn cannot_switch_user() -> Option<&'static str> {
    if unsafe { libc::geteuid() } != 0 {
        return Some("not running as root, so setpriv cannot switch to another user");
    }
    let found = std::process::Command::new("setpriv")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    (!found).then_some("setpriv is not installed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_local_user_is_refused_and_nothing_runs() {
    if let Some(why) = cannot_switch_user() {
        println!("skipped: {why}");
        return;
    }
    let home = RcmdHome::new();
    let server = home.server(&[]).await;
    let addr = server.addr.to_string();
    let proof_dir = tempfile::tempdir().unwrap();
    let proof = proof_dir.path().join("ran");
    let touch = format!("touch {}", proof.display());
    // The other user's own home: somewhere it may look, with no token in it.
    let theirs = tempfile::tempdir().unwrap();
    chmod(theirs.path(), 0o755);
    let their_home = theirs.path().join("rcmd");
    // The server's identity, pinned: this test is about the token, not about trust.
    let fp = home.rcmd(&["fingerprint"], b"").await.stdout_str();
    let fp = fp.trim().to_string();
    let as_nobody = |rcmd_home: String| {
        let touch = touch.clone();
        let addr = addr.clone();
        let fp = fp.clone();
        async move {
            common::run_env(
                "setpriv",
                &[
                    "--reuid=65534",
                    "--regid=65534",
                    "--clear-groups",
                    common::rcmd_bin(),
                    "client",
                    "--fingerprint",
                    &fp,
                    &addr,
                    "--",
                    &touch,
                ],
                b"",
                &[("RCMD_HOME", &rcmd_home)],
            )
            .await
        }
    };
    refused_auth(&as_nobody(their_home.to_str().unwrap().to_string()).await);
    // Pointed at the server user's directory, it refuses to trust it at all.
    let r = as_nobody(home.path().to_str().unwrap().to_string()).await;
    r.expect_code(255);
    assert!(r.stderr_str().contains("belongs to another user"), "{r}");
    assert!(!proof.exists(), "a command ran for another user");
    // The owner still gets in.
    let r = home.rcmd(&["client", &addr, "--", &touch], b"").await;
    r.expect_code(0);
    assert!(proof.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_unauthenticated_warns_and_lets_anyone_in() {
    let home = RcmdHome::new();
    let server = home.server(&["--allow-unauthenticated"]).await;
    assert!(
        server
            .banner
            .iter()
            .any(|l| l.contains("NO authentication")),
        "{:?}",
        server.banner
    );
    assert!(
        !home.token_file().exists(),
        "no token is made when none is used"
    );
    let r = RcmdHome::new()
        .rcmd(
            &[
                "client",
                "--accept-new",
                &server.addr.to_string(),
                "--",
                "echo open",
            ],
            b"",
        )
        .await;
    r.expect_code(0);
    assert_eq!(r.stdout_str(), "open\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_directory_others_may_write_is_refused() {
    let home = RcmdHome::new();
    std::fs::create_dir(home.path()).unwrap();
    chmod(home.path(), 0o777);
    let r = home.rcmd(&["server", "--listen", "127.0.0.1:0"], b"").await;
    r.expect_code(255);
    let fix = format!("chmod 700 {}", home.path().display());
    assert!(r.stderr_str().contains(&fix), "{r}");
    assert!(!home.token_file().exists());
}

// ---------------------------------------------------------------- token hygiene

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_files_others_can_read_are_refused_with_the_chmod() {
    let home = RcmdHome::new();
    let server = home.server(&[]).await;
    let addr = server.addr.to_string();
    let token = home.token_file();
    let fix = format!("chmod 600 {}", token.display());
    chmod(&token, 0o644);
    // The client will not use the default file...
    let r = home.rcmd(&["client", &addr, "--", "echo ran"], b"").await;
    r.expect_code(255);
    assert!(r.stderr_str().contains(&fix), "{r}");
    assert!(r.stdout.is_empty());
    // ...nor the same file named with --token-file...
    let named = token.to_str().unwrap();
    let r = home
        .rcmd(
            &["client", &addr, "--token-file", named, "--", "echo ran"],
            b"",
        )
        .await;
    r.expect_code(255);
    assert!(r.stderr_str().contains(&fix), "{r}");
    // ...and neither will a server, either way.
    drop(server);
    for extra in [&[][..], &["--token-file", named][..]] {
        let mut args = vec!["server", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let r = home.rcmd(&args, b"").await;
        r.expect_code(255);
        assert!(r.stderr_str().contains(&fix), "{r}");
    }
    chmod(&token, 0o600);
    let server = home.server(&[]).await;
    let r = home
        .rcmd(&["client", &server.addr.to_string(), "--", "true"], b"")
        .await;
    r.expect_code(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rcmd_token_never_reaches_the_commands() {
    let home = RcmdHome::new();
    let secret = [("RCMD_TOKEN", "hunter2-in-the-env")];
    let server = home.server_env(&[], &secret).await;
    let r = home
        .rcmd_env(
            &["client", &server.addr.to_string(), "--", "env"],
            b"",
            &secret,
        )
        .await;
    r.expect_code(0);
    let env = r.stdout_str();
    assert!(env.contains("PATH="), "the command's environment: {r}");
    assert!(!env.contains("RCMD_TOKEN"), "{r}");
    assert!(!env.contains("hunter2"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_on_the_command_line_warns_about_ps() {
    let home = RcmdHome::new();
    let server = home.server(&["--token", "visible"]).await;
    let warned = |text: &str| text.contains("--token") && text.contains("`ps`");
    assert!(
        server.banner.iter().any(|l| warned(l)),
        "{:?}",
        server.banner
    );
    let r = home
        .rcmd(
            &[
                "client",
                &server.addr.to_string(),
                "--token",
                "visible",
                "--",
                "echo in",
            ],
            b"",
        )
        .await;
    r.expect_code(0);
    assert!(warned(&r.stderr_str()), "{r}");
    // From a file, nothing to warn about.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("given");
    std::fs::write(&file, "visible\n").unwrap();
    chmod(&file, 0o600);
    let r = home
        .rcmd(
            &[
                "client",
                &server.addr.to_string(),
                "--token-file",
                file.to_str().unwrap(),
                "--",
                "echo in",
            ],
            b"",
        )
        .await;
    r.expect_code(0);
    assert!(!warned(&r.stderr_str()), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_finds_the_token_where_rcmd_does() {
    let home = RcmdHome::new();
    let plain = home.server(&["--plaintext"]).await;
    let tls = home.server(&[]).await;
    let script = common::peer("scripts/rcmd_client.py");
    let python = |server: &common::ServerProcess, env: Vec<(&'static str, String)>| {
        let script = script.clone();
        let port = server.addr.port().to_string();
        let plaintext = std::ptr::eq(server, &plain);
        async move {
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let mut args = vec![script.as_str(), "127.0.0.1", &port, "echo py"];
            if plaintext {
                args.push("--plaintext");
            }
            common::run_env("python3", &args, b"", &env).await
        }
    };
    let home_var = ("RCMD_HOME", home.path().to_str().unwrap().to_string());
    // The same-user file, to this user's own server (proved by its TLS identity).
    let r = python(&tls, vec![home_var.clone()]).await;
    r.expect_code(0);
    assert_eq!(r.stdout_str(), "py\n", "{r}");
    // Never in the clear: without TLS nobody is proved, so it is not sent.
    let r = python(&plain, vec![home_var.clone()]).await;
    assert!(r.stderr_str().contains("authentication failed"), "{r}");
    // RCMD_TOKEN comes first: a wrong one is refused even though the file is right.
    let r = python(&tls, vec![home_var.clone(), ("RCMD_TOKEN", "wrong".into())]).await;
    assert!(r.stderr_str().contains("authentication failed"), "{r}");
    // A token given explicitly is sent to any server, in the clear too.
    let right = std::fs::read_to_string(home.token_file()).unwrap();
    let r = python(&plain, vec![("RCMD_TOKEN", right.trim_end().to_string())]).await;
    r.expect_code(0);
    // A file others may read is refused with the fix.
    chmod(&home.token_file(), 0o640);
    let r = python(&tls, vec![home_var]).await;
    let fix = format!("chmod 600 {}", home.token_file().display());
    assert!(r.stderr_str().contains(&fix), "{r}");
}

// ---------------------------------------------------------------- guessing and hogging

/// Connects (from `from`, if given), sends `bytes` and returns all the server sent
/// before closing.
async fn exchange(
    addr: std::net::SocketAddr,
    from: Option<std::net::IpAddr>,
    bytes: &[u8],
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    if let Some(ip) = from {
        socket.bind((ip, 0).into()).unwrap();
    }
    let mut conn = socket.connect(addr).await.unwrap();
    conn.write_all(bytes).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(common::PROCESS_DEADLINE, conn.read_to_end(&mut got))
        .await
        .expect("the server never closed the connection")
        .unwrap();
    String::from_utf8_lossy(&got).into_owned()
}

/// How many failed attempts a log line reports: "authentication failed from X" is one,
/// "N failed attempts ... from X" is N.
fn failures_in(line: &str) -> u32 {
    if line.contains("authentication failed from") {
        return 1;
    }
    let Some(at) = line.find(" failed attempt") else {
        return 0;
    };
    line[..at]
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The guard's real timings divided by this, so the whole cycle takes under a second;
/// `server/guard.rs` tests the real ones with a paused clock.
const FASTER: u32 = 20;

#[tokio::test]
async fn fifty_wrong_guesses_are_slowed_and_logged_as_a_few_counts() {
    const GUESSES: usize = 50;
    // Fewer guessers than the per-source limit of unauthenticated connections (8), so
    // each guess is a failed authentication, not a refused connection.
    const GUESSERS: usize = 7;
    let real = rcmd::server::Backoff::default();
    let mut config = rcmd::ServerConfig::new(rcmd::wire::Protocol::Framed);
    config.token = Some(rcmd::Token::new(b"the token").unwrap());
    config.limits.backoff = rcmd::server::Backoff {
        first_delay: real.first_delay / FASTER,
        max_delay: real.max_delay / FASTER,
        forget_after: real.forget_after / FASTER,
        log_every: real.log_every / FASTER,
    };
    // The guesses are raw hellos, in the clear.
    let server = common::LoggedServer::start(config).await;
    let addr = server.addr;
    let left = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(GUESSES));
    let started = std::time::Instant::now();
    let guessers: Vec<_> = (0..GUESSERS)
        .map(|_| {
            let left = std::sync::Arc::clone(&left);
            tokio::spawn(async move {
                use std::sync::atomic::Ordering::SeqCst;
                while left
                    .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
                    .is_ok()
                {
                    let reply = exchange(addr, None, &common::hello(1, 1 << 20, b"a guess")).await;
                    assert!(reply.contains("authentication failed"), "{reply:?}");
                }
            })
        })
        .collect();
    for g in guessers {
        g.await.unwrap();
    }
    let took = started.elapsed();
    let log = server.stop().await;
    let lines: Vec<&String> = log.iter().filter(|l| failures_in(l) > 0).collect();
    let counted: u32 = lines.iter().map(|l| failures_in(l)).sum();
    assert_eq!(
        counted, GUESSES as u32,
        "every failure is counted once: {log:#?}"
    );
    assert!(
        lines.len() <= GUESSES / 2,
        "{} lines for {GUESSES} guesses: {log:#?}",
        lines.len()
    );
    // All from this machine: counted as the local user that owns the sockets.
    let uid = format!("local uid {}", unsafe { libc::getuid() });
    assert!(
        lines.iter().all(|l| l.contains(&uid)),
        "each line names the source: {lines:#?}"
    );
    // The delays (0.1 s doubling to 2 s, per source, at the real timings) add up to over
    // 90 s; at most 8 guesses from one source wait at once.
    assert!(
        took >= std::time::Duration::from_secs(10) / FASTER,
        "{GUESSES} guesses took only {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_connections_from_one_source_do_not_lock_out_others() {
    // 256 connections from 127.0.0.2 that never say a word.
    lock_out_attempt(&[[127, 0, 0, 2].into()], 256).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_connections_from_many_sources_do_not_lock_out_others() {
    // 8 silent connections from each of 16 addresses: twice what the server lets wait.
    let attackers: Vec<std::net::IpAddr> = (2..18).map(|i| [127, 0, 0, i].into()).collect();
    lock_out_attempt(&attackers, 8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_a_hundred_one_shot_clients_is_served_in_full() {
    // 100 clients started at once, from one address and one user, as a script's `&` or
    // `xargs -P` starts them: more than their 8 places to authenticate in, so the rest
    // wait their turn instead of being turned away.
    const CLIENTS: usize = 100;
    let home = RcmdHome::new();
    let server = home.server(&[]).await;
    let addr = server.addr.to_string();
    let runs = (0..CLIENTS).map(|i| {
        let (home, addr) = (&home, &addr);
        async move {
            let line = format!("echo client-{i}");
            (
                i,
                home.rcmd(&["client", addr, "-n", "--", &line], b"").await,
            )
        }
    });
    let runs = futures_util::future::join_all(runs).await;
    let failed: Vec<String> = runs
        .iter()
        .filter(|(i, r)| r.code != Some(0) || r.stdout_str() != format!("client-{i}\n"))
        .map(|(_, r)| r.to_string())
        .collect();
    server.stop().await;
    assert!(
        failed.is_empty(),
        "{} of {CLIENTS} clients failed; the first: {}",
        failed.len(),
        failed[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_running_at_once_are_not_bound_by_a_low_open_file_limit() {
    // Many systems start a server with a soft limit of 1,024 open files; each running
    // command takes several of the server's. Started with a soft limit of 64, the server
    // still runs 30 commands at once (some 240 descriptors), and each command sees the
    // limit the server was started with, not the raised one.
    const COMMANDS: usize = 30;
    const SOFT: u64 = 64;
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum;
    if hard.is_some_and(|h| h < 1024) {
        println!("skipped: the hard open-file limit here ({hard:?}) leaves no room to raise");
        return;
    }
    let home = RcmdHome::new();
    let mut cmd = common::rcmd_command();
    cmd.env("RCMD_HOME", home.path())
        .args(["server", "--listen", "127.0.0.1:0"]);
    // SAFETY: setrlimit is a single system call, safe between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
            rustix::process::setrlimit(
                rustix::process::Resource::Nofile,
                rustix::process::Rlimit {
                    current: Some(SOFT),
                    maximum: limit.maximum,
                },
            )?;
            Ok(())
        });
    }
    let server = common::ServerProcess::start(cmd).await;
    let addr = server.addr.to_string();
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    let ended = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut clients = tokio::task::JoinSet::new();
    for i in 0..COMMANDS {
        // Each says it started, then waits for all the others before it answers.
        let line = format!(
            "touch {dir}/started.{i}; while [ ! -e {go} ]; do sleep 0.01; done; ulimit -n",
            dir = dir.path().display(),
            go = go.display()
        );
        let (home_dir, addr, ended) = (
            home.path().to_str().unwrap().to_string(),
            addr.clone(),
            ended.clone(),
        );
        clients.spawn(async move {
            let r = common::run_env(
                common::rcmd_bin(),
                &["client", &addr, "-n", "--", &line],
                b"",
                &[("RCMD_HOME", &home_dir)],
            )
            .await;
            ended.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            r
        });
    }
    let started = || {
        std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name() != "go")
            .count()
    };
    // All running at once, or one gave up early (the failure this test is about).
    common::wait_until("every command started, or a client ended", || {
        started() == COMMANDS || ended.load(std::sync::atomic::Ordering::SeqCst) > 0
    })
    .await;
    std::fs::write(&go, b"").unwrap();
    let mut failed = Vec::new();
    while let Some(r) = clients.join_next().await {
        let r = r.unwrap();
        if r.code != Some(0) || r.stdout_str() != format!("{SOFT}\n") {
            failed.push(r.to_string());
        }
    }
    server.stop().await;
    assert!(
        failed.is_empty(),
        "{} of {COMMANDS} commands failed; the first: {}",
        failed.len(),
        failed[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_open_file_limit_cannot_be_raised_says_so_at_start() {
    // Hard and soft limit both 100: room for a few commands, far below --max-conns.
    let home = RcmdHome::new();
    let mut cmd = common::rcmd_command();
    cmd.env("RCMD_HOME", home.path()).args([
        "server",
        "--listen",
        "127.0.0.1:0",
        "--max-conns",
        "20",
    ]);
    // SAFETY: setrlimit is a single system call, safe between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let limit = rustix::process::Rlimit {
                current: Some(100),
                maximum: Some(100),
            };
            rustix::process::setrlimit(rustix::process::Resource::Nofile, limit)?;
            Ok(())
        });
    }
    let server = common::ServerProcess::start(cmd).await;
    let banner = server.banner.join("\n");
    server.stop().await;
    assert!(
        banner.contains("room for about 4 commands at once, fewer than --max-conns 20"),
        "{banner}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_local_user_holding_connections_open_does_not_lock_us_out() {
    if let Some(why) = cannot_switch_user() {
        println!("skipped: {why}");
        return;
    }
    let home = RcmdHome::new();
    let server = home.server(&[]).await;
    // nobody holds 64 silent connections from 127.0.0.1, our address too, and opens a new
    // one whenever the server closes one of them.
    let mut holder = tokio::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(python_for_anyone())
        .arg(common::peer("tests/peers/silent_holder.py"))
        .args([server.addr.port().to_string(), "64".into()])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut said = tokio::io::BufReader::new(holder.stdout.take().unwrap());
    let mut line = String::new();
    tokio::io::AsyncBufReadExt::read_line(&mut said, &mut line)
        .await
        .unwrap();
    assert_eq!(line, "holding 64\n", "the holder did not start");
    let addr = server.addr.to_string();
    let mut served = 0;
    for _ in 0..20 {
        let r = home
            .rcmd(&["client", &addr, "-n", "--", "echo in"], b"")
            .await;
        if r.code == Some(0) && r.stdout_str() == "in\n" {
            served += 1;
        } else {
            println!("not served: {r}");
        }
    }
    holder.kill().await.unwrap();
    server.stop().await;
    assert!(served >= 19, "only {served} of 20 clients were served");
}

/// A Python that another user can run: the system's, not one under root's home (pyenv).
fn python_for_anyone() -> &'static str {
    if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// Holds `each` silent connections from every address in `attackers`, then checks that
/// clients from 127.0.0.1 are served at least 19 times in 20.
async fn lock_out_attempt(attackers: &[std::net::IpAddr], each: usize) {
    use tokio::io::AsyncReadExt;
    let mut config = rcmd::ServerConfig::new(rcmd::wire::Protocol::Framed);
    config.token = Some(rcmd::Token::new(b"the token").unwrap());
    // 127.x addresses stand in for remote ones here: count them by address, not (as the
    // server does for peers on this machine) by the local user that owns them.
    config.limits.local_peers_by_user = false;
    let addr = common::start_server(config).await;
    let mut held = Vec::new();
    for attacker in attackers {
        for _ in 0..each {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind((*attacker, 0).into()).unwrap();
            held.push(socket.connect(addr).await.unwrap());
        }
    }
    if each > 8 + 128 {
        // Those past the per-source places and queue are told so at once.
        let mut told = Vec::new();
        held.last_mut()
            .unwrap()
            .read_to_end(&mut told)
            .await
            .unwrap();
        let told = String::from_utf8_lossy(&told);
        assert!(
            told.contains("server busy: 128 connections from 127.0.0.2 are already waiting"),
            "{told:?}"
        );
    }
    let a = addr.to_string();
    let mut served = 0;
    for _ in 0..20 {
        let r = common::run_env(
            common::rcmd_bin(),
            &["client", "--plaintext", &a, "--", "echo in"],
            b"",
            &[("RCMD_TOKEN", "the token")],
        )
        .await;
        if r.code == Some(0) && r.stdout_str() == "in\n" {
            served += 1;
        } else {
            println!("not served: {r}");
        }
    }
    assert!(served >= 19, "only {served} of 20 clients were served");
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_user_token_is_never_sent_to_a_server_that_is_not_ours() {
    // Another user listening where we connect, in the clear: it must learn nothing.
    let home = RcmdHome::new();
    let ours = home.server(&[]).await; // makes the same-user token
    let token = std::fs::read_to_string(home.token_file()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let caught = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut hello = vec![0u8; 4096];
        let n = conn.read(&mut hello).await.unwrap();
        hello.truncate(n);
        hello
    });
    let r = home
        .rcmd(&["client", "--plaintext", &addr, "-n", "--", "true"], b"")
        .await;
    let hello = caught.await.unwrap();
    assert!(!hello.is_empty(), "the client sent its hello: {r}");
    assert!(
        !String::from_utf8_lossy(&hello).contains(token.trim()),
        "the token went to a stranger"
    );
    ours.stop().await;
}

/// A command runs as the server's user, so it could read the server's, the helper's and
/// its supervisor's /proc entries, were they dumpable: the token in the server's starting
/// environment, and the supervisor's status pipe, reopened to report whatever status it
/// likes. None of the three is dumpable. (Root sees through that, so the server and its
/// command run as another user here.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_cannot_read_the_token_or_forge_its_status() {
    if let Some(why) = cannot_switch_user() {
        println!("skipped: {why}");
        return;
    }
    let theirs = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(theirs.path(), Some(65534), Some(65534)).unwrap();
    let home = theirs.path().to_str().unwrap().to_string();
    let as_nobody = |args: &[&str]| {
        let mut cmd = tokio::process::Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(common::rcmd_bin())
            .args(args)
            .env("HOME", &home)
            .env("RCMD_HOME", &home)
            .env("RCMD_TOKEN", "a-secret-token-0123456789")
            .kill_on_drop(true);
        cmd
    };
    let server = common::ServerProcess::start(as_nobody(&[
        "server",
        "--plaintext",
        "--listen",
        "127.0.0.1:0",
    ]))
    .await;
    let addr = server.addr.to_string();
    // The supervisor is $PPID, the helper its parent, the server the helper's parent.
    let line = "helper=$(ps -o ppid= -p $PPID | tr -d ' '); \
                server=$(ps -o ppid= -p $helper | tr -d ' '); \
                for p in $PPID $helper $server; do tr '\\0' '\\n' < /proc/$p/environ; done; \
                printf '\\0\\0\\0\\0' > /proc/$PPID/fd/4; exit 7";
    let out = as_nobody(&["client", "--plaintext", &addr, "--", line])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(7),
        "stdout {stdout:?} stderr {stderr:?}"
    );
    assert!(!stdout.contains("a-secret-token"), "token read: {stdout:?}");
    assert_eq!(
        stderr.matches("Permission denied").count(),
        4,
        "three environments and the status pipe: {stderr:?}"
    );
    server.stop().await;
}
