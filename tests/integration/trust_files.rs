//! The files rcmd trusts get sshd's StrictModes checks, the same-user token never goes out
//! in the clear, and --plaintext stays on loopback for many hosts as for one.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{RcmdHome, Run};

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[track_caller]
fn refused_saying(r: &Run, code: i32, says: &str) {
    r.expect_code(code);
    assert!(r.stderr_str().contains(says), "expected {says:?}\n{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_refuses_plaintext_beyond_loopback_before_connecting() {
    // In a network namespace of its own nothing can leave the machine, whatever the
    // client did: the refusal must come first anyway.
    if std::process::Command::new("unshare")
        .args(["-n", "true"])
        .status()
        .map_or(true, |s| !s.success())
    {
        eprintln!("skipped: `unshare -n` is not allowed here");
        return;
    }
    let home = RcmdHome::new();
    let r = common::run_env(
        "unshare",
        &[
            "-n",
            common::rcmd_bin(),
            "client",
            "--plaintext",
            "--token",
            "t",
            "-H",
            "127.0.0.1:9,192.0.2.10:9000",
            "--",
            "true",
        ],
        b"",
        &[("RCMD_HOME", home.path().to_str().unwrap())],
    )
    .await;
    refused_saying(&r, 255, "refusing --plaintext to 192.0.2.10:9000");
    assert!(!r.stderr_str().contains("unreachable"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cp_to_many_hosts_refuses_plaintext_beyond_loopback_before_connecting() {
    // As for `rcmd client -H`: an upload or a download to many hosts carries the token too.
    if std::process::Command::new("unshare")
        .args(["-n", "true"])
        .status()
        .map_or(true, |s| !s.success())
    {
        eprintln!("skipped: `unshare -n` is not allowed here");
        return;
    }
    let home = RcmdHome::new();
    let files = tempfile::tempdir().unwrap();
    let src = files.path().join("f");
    std::fs::write(&src, b"x").unwrap();
    let dst = files.path().join("got");
    for paths in [[src.to_str().unwrap(), ":f"], [":f", dst.to_str().unwrap()]] {
        let mut args = vec![
            "-n",
            common::rcmd_bin(),
            "cp",
            "--plaintext",
            "--token",
            "t",
            "-H",
            "127.0.0.1:9,192.0.2.10:9000",
        ];
        args.extend(paths);
        let r = common::run_env(
            "unshare",
            &args,
            b"",
            &[("RCMD_HOME", home.path().to_str().unwrap())],
        )
        .await;
        refused_saying(&r, 255, "refusing --plaintext to 192.0.2.10:9000");
        assert!(!r.stderr_str().contains("unreachable"), "{r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_user_token_is_not_sent_in_the_clear_even_when_given() {
    let home = RcmdHome::new();
    let server = home.server(&["--plaintext"]).await; // makes the same-user token
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let token_file = home.token_file();
    let token = std::fs::read_to_string(&token_file).unwrap();
    for env in [vec![], vec![("RCMD_TOKEN", token.trim())]] {
        let mut args = vec!["client", "--plaintext", &addr, "-n", "--", "true"];
        if env.is_empty() {
            args.splice(1..1, ["--token-file", token_file.to_str().unwrap()]);
        }
        let r = home.rcmd_env(&args, b"", &env).await;
        refused_saying(&r, 255, "refusing to send this user's own token");
        assert!(r.stderr_str().contains("--token-file FILE"), "{r}");
    }
    // Nobody was even connected to.
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_err(), "the client connected");
    // Over TLS, to its own server, it needs no flag at all.
    drop(server);
    let tls = home.server(&[]).await;
    let r = home
        .rcmd(&["client", &tls.addr.to_string(), "--", "echo ok"], b"")
        .await;
    r.expect_code(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_key_others_can_read_is_not_taken_as_this_users() {
    let home = RcmdHome::new();
    home.rcmd(&["keygen"], b"").await.expect_code(0);
    chmod(home.path(), 0o755);
    let key = home.path().join("client.pem");
    chmod(&key, 0o644);
    let r = home.rcmd(&["server", "--listen", "127.0.0.1:0"], b"").await;
    refused_saying(&r, 255, &format!("chmod go-rwx {}", key.display()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_identity_others_can_read_is_not_taken_as_our_own_server() {
    let home = RcmdHome::new();
    let server = home.server(&[]).await;
    let addr = server.addr.to_string();
    let identity = home.path().join("identity.pem");
    chmod(&identity, 0o644);
    let r = home.rcmd(&["client", &addr, "--", "echo ran"], b"").await;
    refused_saying(&r, 255, &format!("chmod go-rwx {}", identity.display()));
    assert!(r.stdout.is_empty(), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorized_keys_others_may_write_or_own_are_refused() {
    let home = RcmdHome::new();
    std::fs::create_dir_all(home.path()).unwrap();
    chmod(home.path(), 0o700);
    let keys = home.path().join("elsewhere");
    std::fs::write(&keys, "").unwrap();
    let serve = |keys: &Path| {
        let keys = keys.to_str().unwrap().to_string();
        let home = &home;
        async move {
            home.rcmd(
                &[
                    "server",
                    "--listen",
                    "127.0.0.1:0",
                    "--authorized-keys",
                    &keys,
                ],
                b"",
            )
            .await
        }
    };
    chmod(&keys, 0o666);
    refused_saying(
        &serve(&keys).await,
        255,
        &format!("chmod go-w {}", keys.display()),
    );
    chmod(&keys, 0o644);
    if std::os::unix::fs::chown(&keys, Some(65534), None).is_ok() {
        refused_saying(
            &serve(&keys).await,
            255,
            "belongs to another user (uid 65534)",
        );
    }
    // The default file in the configuration directory, the same.
    let default = home.path().join("authorized_keys");
    std::fs::write(&default, "").unwrap();
    chmod(&default, 0o622);
    let r = home.rcmd(&["server", "--listen", "127.0.0.1:0"], b"").await;
    refused_saying(&r, 255, &format!("chmod go-w {}", default.display()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_hosts_line_without_its_port_is_an_error_naming_it() {
    let home = RcmdHome::new();
    let server = home.server(&[]).await;
    let fp = home.rcmd(&["fingerprint"], b"").await.stdout_str();
    let client = RcmdHome::new();
    std::fs::create_dir_all(client.path()).unwrap();
    chmod(client.path(), 0o700);
    let known = client.path().join("known_hosts");
    std::fs::write(&known, format!("# typo\n127.0.0.1 {fp}")).unwrap();
    let addr = server.addr.to_string();
    let r = client
        .rcmd(&["client", "--accept-new", &addr, "--", "true"], b"")
        .await;
    refused_saying(&r, 255, &format!("{} line 2", known.display()));
    assert!(r.stderr_str().contains("no :PORT"), "{r}");
    // Not recorded as a first connection either.
    assert_eq!(std::fs::read_to_string(&known).unwrap().lines().count(), 2);
}
