//! `scripts/rcmd_client.py` makes the checks `rcmd client` makes: the key `rcmd keygen`
//! made is presented, a configuration directory or token that others control is refused,
//! and `--plaintext` goes to loopback only unless explicitly allowed.

use crate::common;

use std::os::unix::fs::PermissionsExt;

use common::{RcmdHome, Run};

/// Runs the Python client against `127.0.0.1:port` with `home` as its configuration
/// directory.
async fn python(home: &RcmdHome, port: u16, command: &str, extra: &[&str]) -> Run {
    let script = common::peer("scripts/rcmd_client.py");
    let port = port.to_string();
    let mut args = vec![script.as_str(), "127.0.0.1", &port, command];
    args.extend_from_slice(extra);
    common::run_env(
        "python3",
        &args,
        b"",
        &[("RCMD_HOME", home.path().to_str().unwrap())],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_presents_the_key_rcmd_keygen_made() {
    let home = RcmdHome::new();
    let r = home.rcmd(&["keygen"], b"").await;
    r.expect_code(0);
    // A server that takes listed keys and nothing else: no token can get this command in.
    let keys = home.path().join("authorized_keys");
    std::fs::write(&keys, r.stdout_str()).unwrap();
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
    let server = home
        .server(&["--authorized-keys", keys.to_str().unwrap(), "--keys-only"])
        .await;
    let r = python(&home, server.addr.port(), "echo by-key", &[]).await;
    r.expect_code(0);
    assert_eq!(r.stdout_str(), "by-key\n", "{r}");
    assert!(
        server
            .stop()
            .await
            .iter()
            .any(|l| l.contains("authenticated by key")),
        "the server did not log a key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_refuses_a_config_dir_others_may_write() {
    let home = RcmdHome::new();
    let server = home.server(&[]).await;
    let scratch = tempfile::tempdir().unwrap();
    let marker = scratch.path().join("ran");
    let touch = format!("touch {}", marker.display());
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let r = python(&home, server.addr.port(), &touch, &[]).await;
    r.expect_code(255);
    assert!(
        r.stderr_str().contains("can be written by other users"),
        "{r}"
    );
    assert!(r.stderr_str().contains("chmod 700"), "{r}");
    assert!(!marker.exists(), "the command ran: {r}");
    // Closed again, the same directory is trusted.
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let r = python(&home, server.addr.port(), &touch, &[]).await;
    r.expect_code(0);
    assert!(marker.exists(), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_refuses_a_token_file_another_user_owns() {
    let home = RcmdHome::new();
    let server = home.server(&[]).await;
    let other_uid = 65534; // nobody
    if std::os::unix::fs::chown(home.token_file(), Some(other_uid), None).is_err() {
        println!("skipped: changing a file's owner needs root; run as root to test this");
        return;
    }
    let r = python(&home, server.addr.port(), "echo ran", &[]).await;
    r.expect_code(255);
    assert!(r.stdout.is_empty(), "{r}");
    assert!(r.stderr_str().contains("belongs to another user"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_refuses_plaintext_beyond_loopback() {
    // In a network namespace of its own, with no interface up, nothing can leave the
    // machine whatever the client tries: the refusal must come from the client itself.
    let script = common::peer("scripts/rcmd_client.py");
    let home = RcmdHome::new();
    let run = |extra: &'static [&'static str]| {
        let mut args = vec![
            "-n",
            "python3",
            script.as_str(),
            "192.0.2.10",
            "9000",
            "true",
            "--plaintext",
        ];
        args.extend_from_slice(extra);
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let home = home.path().to_str().unwrap().to_string();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            common::run_env("unshare", &args, b"", &[("RCMD_HOME", &home)]).await
        }
    };
    let r = run(&[]).await;
    if r.stderr_str().contains("unshare failed") || r.stderr_str().contains("Operation not") {
        println!("skipped: cannot make a network namespace here (unshare -n needs root): {r}");
        return;
    }
    r.expect_code(255);
    assert!(
        r.stderr_str()
            .contains("refusing --plaintext to 192.0.2.10"),
        "{r}"
    );
    // With the explicit override it tries to connect (and finds no network at all).
    let r = run(&["--allow-unauthenticated"]).await;
    r.expect_code(255);
    assert!(!r.stderr_str().contains("refusing --plaintext"), "{r}");
    assert!(r.stderr_str().contains("unreachable"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_never_sends_the_same_user_token_in_the_clear() {
    // Whoever listens on a loopback port first (another local user) would read it, as
    // `rcmd client --plaintext` refuses to let happen, however the token is given.
    let home = RcmdHome::new();
    let _server = home.server(&[]).await; // makes the same-user token
    let own = std::fs::read_to_string(home.token_file()).unwrap();
    let impostor = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = impostor.local_addr().unwrap().port();
    let (heard, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::Read;
        let (mut conn, _) = impostor.accept().unwrap();
        let mut hello = [0u8; 74];
        let n = conn.read(&mut hello).unwrap_or(0);
        let _ = heard.send(hello[..n].to_vec());
    });
    let script = common::peer("scripts/rcmd_client.py");
    let port = port.to_string();
    let r = common::run_env(
        "python3",
        &[&script, "127.0.0.1", &port, "true", "--plaintext"],
        b"",
        &[
            ("RCMD_HOME", home.path().to_str().unwrap()),
            ("RCMD_TOKEN", own.trim()),
        ],
    )
    .await;
    r.expect_code(255);
    assert!(
        r.stderr_str()
            .contains("refusing to send this user's own token"),
        "{r}"
    );
    if let Ok(bytes) = seen.try_recv() {
        let sent = String::from_utf8_lossy(&bytes);
        assert!(
            !sent.contains(own.trim()),
            "the token reached the listener: {r}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_says_why_it_cannot_connect_and_exits_255() {
    // 127.0.0.250 has no listener: the connection is refused at once. A caller must be
    // able to tell that from the command's own exit status, as with rcmd and ssh.
    let home = RcmdHome::new();
    let script = common::peer("scripts/rcmd_client.py");
    let r = common::run_env(
        "python3",
        &[&script, "127.0.0.250", "9", "true", "--plaintext"],
        b"",
        &[("RCMD_HOME", home.path().to_str().unwrap())],
    )
    .await;
    r.expect_code(255);
    let err = r.stderr_str();
    assert!(
        err.contains("rcmd_client.py: ") && err.contains("refused"),
        "{r}"
    );
    assert!(!err.contains("Traceback"), "{r}");
    // A usage mistake is rcmd's own failure too.
    let r = common::run(
        "python3",
        &[&script, "127.0.0.1", "not-a-port", "true"],
        b"",
    )
    .await;
    r.expect_code(255);
    assert!(r.stderr_str().contains("usage:"), "{r}");
}
