//! TLS between the real `rcmd server` and `rcmd client` binaries (and the Python client):
//! what someone on the path sees, and ssh's trust model (known_hosts, pinning, client keys).

use crate::common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use common::{RcmdHome, Run};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A TCP relay to `target` that records every byte it forwards, both ways.
async fn recording_proxy(target: SocketAddr) -> (SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<u8>>> = Arc::default();
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = TcpStream::connect(target).await.unwrap();
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            tokio::spawn(relay(cr, sw, Arc::clone(&log)));
            tokio::spawn(relay(sr, cw, Arc::clone(&log)));
        }
    });
    (addr, seen)
}

async fn relay(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    log: Arc<Mutex<Vec<u8>>>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        log.lock().unwrap().extend_from_slice(&buf[..n]);
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The server identity's fingerprint, as `rcmd fingerprint` prints it.
async fn fingerprint_of(home: &RcmdHome) -> String {
    let r = home.rcmd(&["fingerprint"], b"").await;
    r.expect_code(0);
    r.stdout_str().trim().to_string()
}

fn token_of(home: &RcmdHome) -> String {
    std::fs::read_to_string(home.token_file())
        .unwrap()
        .trim()
        .to_string()
}

#[track_caller]
fn refused_before_anything_ran(r: &Run, marker: &std::path::Path) {
    r.expect_code(255);
    assert!(r.stdout.is_empty(), "{r}");
    assert!(!marker.exists(), "the command ran: {r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_proxy_sees_no_token_command_or_output() {
    let home = RcmdHome::new();
    let server = home.server(&[]).await;
    let (proxy, seen) = recording_proxy(server.addr).await;
    // The output differs from the command, so each is looked for on its own.
    let r = home
        .rcmd(
            &["client", &proxy.to_string(), "--", "echo secret-$((6*7))"],
            b"",
        )
        .await;
    r.expect_code(0);
    assert_eq!(r.stdout_str(), "secret-42\n", "{r}");
    let seen = seen.lock().unwrap().clone();
    assert!(seen.len() > 100, "the proxy relayed the session");
    for secret in [
        token_of(&home).as_bytes(),
        &b"echo secret"[..],
        &b"secret-42"[..],
    ] {
        assert!(
            !contains(&seen, secret),
            "{:?} crossed the wire readable",
            String::from_utf8_lossy(secret)
        );
    }
    // The same through --plaintext is readable: the check above can fail.
    // A token of its own: the same-user one never goes out in the clear.
    let plain_home = RcmdHome::new();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("plain-token");
    std::fs::write(&token_file, "plaintext-token-0123456789\n").unwrap();
    std::fs::set_permissions(
        &token_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let token_arg = token_file.to_str().unwrap();
    let plain = plain_home
        .server(&["--plaintext", "--token-file", token_arg])
        .await;
    let (proxy, seen) = recording_proxy(plain.addr).await;
    let r = plain_home
        .rcmd(
            &[
                "client",
                "--plaintext",
                "--token-file",
                token_arg,
                &proxy.to_string(),
                "--",
                "echo secret-$((6*7))",
            ],
            b"",
        )
        .await;
    r.expect_code(0);
    let seen = seen.lock().unwrap().clone();
    assert!(contains(&seen, b"secret-42"));
    assert!(contains(&seen, b"plaintext-token-0123456789"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_presenting_another_key_is_refused_and_nothing_runs() {
    let real = RcmdHome::new();
    let _real_server = real.server(&[]).await;
    let impostor = RcmdHome::new();
    let impostor_server = impostor.server(&[]).await;
    let (proxy, seen) = recording_proxy(impostor_server.addr).await;
    // The client has met the real server at this address before.
    let client = RcmdHome::new();
    std::fs::create_dir_all(client.path()).unwrap();
    let known = client.path().join("known_hosts");
    std::fs::write(
        &known,
        format!("# servers\n{proxy} {}\n", fingerprint_of(&real).await),
    )
    .unwrap();
    let marker = tempfile::tempdir().unwrap().path().join("ran");
    let token = token_of(&impostor);
    let r = client
        .rcmd_env(
            &[
                "client",
                &proxy.to_string(),
                "--",
                &format!("touch {}", marker.display()),
            ],
            b"",
            &[("RCMD_TOKEN", &token)],
        )
        .await;
    refused_before_anything_ran(&r, &marker);
    let err = r.stderr_str();
    assert!(err.contains("WARNING"), "{r}");
    assert!(err.contains(&fingerprint_of(&impostor).await), "{r}");
    assert!(
        err.contains(&format!("remove line 2 of {}", known.display())),
        "{r}"
    );
    let seen = seen.lock().unwrap().clone();
    assert!(!contains(&seen, token.as_bytes()), "the token was sent");
    assert!(!contains(&seen, b"touch"), "the command was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_hosts_first_use_needs_accept_new_or_a_terminal() {
    let home = RcmdHome::new();
    let server = home.server(&[]).await;
    let addr = server.addr.to_string();
    let fp = fingerprint_of(&home).await;
    let token = token_of(&home);
    let client = RcmdHome::new();
    let env = [("RCMD_TOKEN", token.as_str())];
    let known = client.path().join("known_hosts");
    // No controlling terminal to ask on (the tests' clients run in a session of their
    // own, as under CI or cron): refused, saying how to check and pin it.
    let r = client
        .rcmd_env(&["client", &addr, "--", "echo ran"], b"", &env)
        .await;
    r.expect_code(255);
    assert!(r.stdout.is_empty(), "{r}");
    assert!(
        r.stderr_str().contains(&format!("--fingerprint {fp}")),
        "{r}"
    );
    assert!(!known.exists(), "nothing recorded");
    // --accept-new records it, and later connections need nothing.
    let r = client
        .rcmd_env(
            &["client", "--accept-new", &addr, "--", "echo ran"],
            b"",
            &env,
        )
        .await;
    r.expect_code(0);
    assert_eq!(r.stdout_str(), "ran\n");
    assert_eq!(
        std::fs::read_to_string(&known).unwrap(),
        format!("{addr} {fp}\n")
    );
    let r = client
        .rcmd_env(&["client", &addr, "--", "echo again"], b"", &env)
        .await;
    r.expect_code(0);
    assert_eq!(r.stdout_str(), "again\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_key_is_refused_with_the_line_to_remove() {
    let home = RcmdHome::new();
    let server = home.server(&[]).await;
    let addr = server.addr.to_string();
    let other = RcmdHome::new();
    let other_fp = {
        let _s = other.server(&[]).await;
        fingerprint_of(&other).await
    };
    let client = RcmdHome::new();
    std::fs::create_dir_all(client.path()).unwrap();
    let known = client.path().join("known_hosts");
    std::fs::write(
        &known,
        format!("127.0.0.9:9000 {other_fp}\n{addr} {other_fp}\n"),
    )
    .unwrap();
    let marker = tempfile::tempdir().unwrap().path().join("ran");
    let r = client
        .rcmd_env(
            &[
                "client",
                "--accept-new",
                &addr,
                "--",
                &format!("touch {}", marker.display()),
            ],
            b"",
            &[("RCMD_TOKEN", &token_of(&home))],
        )
        .await;
    refused_before_anything_ran(&r, &marker);
    assert!(
        r.stderr_str()
            .contains(&format!("remove line 2 of {}", known.display())),
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fingerprint_pins_one_identity() {
    let home = RcmdHome::new();
    let server = home.server(&[]).await;
    let addr = server.addr.to_string();
    let fp = fingerprint_of(&home).await;
    assert!(
        server.banner.iter().any(|l| l.contains(&fp)),
        "{:?}",
        server.banner
    );
    let client = RcmdHome::new();
    let env = [("RCMD_TOKEN", token_of(&home))];
    let env: Vec<_> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = client
        .rcmd_env(
            &["client", "--fingerprint", &fp, &addr, "--", "echo pinned"],
            b"",
            &env,
        )
        .await;
    r.expect_code(0);
    assert_eq!(r.stdout_str(), "pinned\n");
    assert!(!client.path().join("known_hosts").exists());
    // Another identity's fingerprint: refused.
    let wrong = {
        let other = RcmdHome::new();
        other.rcmd(&["keygen"], b"").await.expect_code(0);
        let r = other
            .rcmd(
                &[
                    "fingerprint",
                    other.path().join("client.pem").to_str().unwrap(),
                ],
                b"",
            )
            .await;
        r.stdout_str().trim().to_string()
    };
    let marker = tempfile::tempdir().unwrap().path().join("ran");
    let r = client
        .rcmd_env(
            &[
                "client",
                "--fingerprint",
                &wrong,
                &addr,
                "--",
                &format!("touch {}", marker.display()),
            ],
            b"",
            &env,
        )
        .await;
    refused_before_anything_ran(&r, &marker);
    assert!(r.stderr_str().contains("given with --fingerprint"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorized_keys_are_authentication_enough_and_others_are_refused() {
    let listed = RcmdHome::new();
    let r = listed.rcmd(&["keygen"], b"").await;
    r.expect_code(0);
    let line = r.stdout_str();
    assert!(line.starts_with("SHA256:"), "{r}");
    let home = RcmdHome::new();
    std::fs::create_dir_all(home.path()).unwrap();
    let keys = home.path().join("authorized_keys");
    std::fs::write(&keys, format!("# who may\n{line}")).unwrap();
    let server = home
        .server(&["--authorized-keys", keys.to_str().unwrap(), "--keys-only"])
        .await;
    let addr = server.addr.to_string();
    let fp = fingerprint_of(&home).await;
    // Listed: no token needed (this client has none).
    let r = listed
        .rcmd(
            &["client", "--fingerprint", &fp, &addr, "--", "echo by-key"],
            b"",
        )
        .await;
    r.expect_code(0);
    assert_eq!(r.stdout_str(), "by-key\n", "{r}");
    // An unlisted key, even with the right token: refused.
    let unlisted = RcmdHome::new();
    unlisted.rcmd(&["keygen"], b"").await.expect_code(0);
    let marker = tempfile::tempdir().unwrap().path().join("ran");
    let touch = format!("touch {}", marker.display());
    let token = token_of(&home);
    let r = unlisted
        .rcmd_env(
            &["client", "--fingerprint", &fp, &addr, "--", &touch],
            b"",
            &[("RCMD_TOKEN", &token)],
        )
        .await;
    refused_before_anything_ran(&r, &marker);
    assert!(r.stderr_str().contains("is not authorized"), "{r}");
    // No key at all: refused, saying how to make one.
    let keyless = RcmdHome::new();
    let r = keyless
        .rcmd_env(
            &["client", "--fingerprint", &fp, &addr, "--", &touch],
            b"",
            &[("RCMD_TOKEN", &token)],
        )
        .await;
    refused_before_anything_ran(&r, &marker);
    assert!(r.stderr_str().contains("rcmd keygen"), "{r}");
    // The server's own user: its client key is accepted without being listed.
    home.rcmd(&["keygen"], b"").await.expect_code(0);
    drop(server);
    let again = home
        .server(&["--authorized-keys", keys.to_str().unwrap(), "--keys-only"])
        .await;
    let r = home
        .rcmd_env(
            &["client", &again.addr.to_string(), "--", "echo mine"],
            b"",
            &[("RCMD_TOKEN", "not-the-token")],
        )
        .await;
    r.expect_code(0);
    assert_eq!(r.stdout_str(), "mine\n", "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_given_with_key_is_presented_instead_of_client_pem() {
    let home = RcmdHome::new();
    let keys_dir = tempfile::tempdir().unwrap();
    let key = keys_dir.path().join("deploy.pem");
    let r = home
        .rcmd(&["keygen", "--output", key.to_str().unwrap()], b"")
        .await;
    r.expect_code(0);
    let keys = keys_dir.path().join("authorized_keys");
    std::fs::write(&keys, r.stdout_str()).unwrap();
    let server = home
        .server(&["--authorized-keys", keys.to_str().unwrap()])
        .await;
    let addr = server.addr.to_string();
    let fp = fingerprint_of(&home).await;
    // A client with no key of its own in its directory, and no token.
    let client = RcmdHome::new();
    let with_key = |extra: &[&str]| {
        let mut args = vec!["client", "--fingerprint", &fp, &addr];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--", "echo by-key"]);
        args.iter().map(|a| a.to_string()).collect::<Vec<_>>()
    };
    let args = with_key(&["--key", key.to_str().unwrap()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = client.rcmd(&args, b"").await;
    r.expect_code(0);
    assert_eq!(r.stdout_str(), "by-key\n", "{r}");
    let args = with_key(&[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = client.rcmd(&args, b"").await;
    r.expect_code(255);
    assert!(r.stdout.is_empty(), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_speaks_tls_and_checks_the_fingerprint() {
    let home = RcmdHome::new();
    let server = home.server(&[]).await;
    let fp = fingerprint_of(&home).await;
    let port = server.addr.port().to_string();
    let script = common::peer("scripts/rcmd_client.py");
    // Another user's directory: only the pinned fingerprint and RCMD_TOKEN to go on.
    let elsewhere = RcmdHome::new();
    let token = token_of(&home);
    let env = [
        ("RCMD_HOME", elsewhere.path().to_str().unwrap()),
        ("RCMD_TOKEN", token.as_str()),
    ];
    let r = common::run_env(
        "python3",
        &[
            &script,
            "127.0.0.1",
            &port,
            "echo from-python",
            "--fingerprint",
            &fp,
        ],
        b"",
        &env,
    )
    .await;
    r.expect_code(0);
    assert_eq!(r.stdout_str(), "from-python\n", "{r}");
    let marker = tempfile::tempdir().unwrap().path().join("ran");
    let wrong = format!("SHA256:{}", "A".repeat(43));
    let r = common::run_env(
        "python3",
        &[
            &script,
            "127.0.0.1",
            &port,
            &format!("touch {}", marker.display()),
            "--fingerprint",
            &wrong,
        ],
        b"",
        &env,
    )
    .await;
    assert_ne!(r.code, Some(0), "{r}");
    assert!(r.stderr_str().contains("nothing was sent"), "{r}");
    assert!(!marker.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_is_refused_beyond_loopback() {
    let home = RcmdHome::new();
    let r = home
        .rcmd(&["server", "--plaintext", "--listen", "0.0.0.0:0"], b"")
        .await;
    r.expect_code(255);
    assert!(r.stderr_str().contains("with --plaintext"), "{r}");
    assert!(!r.stderr_str().contains("listening on"), "{r}");
    // The client refuses before connecting (192.0.2.1 is reserved for documentation: a
    // connection attempt would hang, not fail).
    let r = home
        .rcmd(
            &["client", "--plaintext", "192.0.2.1:9000", "--", "true"],
            b"",
        )
        .await;
    r.expect_code(255);
    assert!(r.stderr_str().contains("refusing --plaintext"), "{r}");
}
