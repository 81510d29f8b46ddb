//! Letting another machine in, as README says: `rcmd keygen` there, `rcmd copy-id` once
//! with the server's token, then no token at all; removing the key shuts it out again,
//! without restarting the server. Two configuration directories stand for two machines.

use crate::common;

use std::os::unix::fs::PermissionsExt;

use common::RcmdHome;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keygen_copy_id_then_no_token_and_removing_the_key_refuses_again() {
    let server_machine = RcmdHome::new();
    let server = server_machine.server(&[]).await;
    let addr = server.addr.to_string();
    let token = std::fs::read_to_string(server_machine.token_file()).unwrap();
    let laptop = RcmdHome::new();
    // Without a key yet: copy-id says what to do first.
    let r = laptop
        .rcmd_env(
            &["copy-id", "--accept-new", &addr],
            b"",
            &[("RCMD_TOKEN", token.trim())],
        )
        .await;
    r.expect_code(255);
    assert!(r.stderr_str().contains("rcmd keygen"), "{r}");
    let key = laptop.rcmd(&["keygen"], b"").await;
    key.expect_code(0);
    // Without the server's token: refused before connecting.
    let r = laptop.rcmd(&["copy-id", "--accept-new", &addr], b"").await;
    r.expect_code(255);
    assert!(
        r.stderr_str().contains("--token-file FILE or RCMD_TOKEN"),
        "{r}"
    );
    // Before copy-id, the laptop has no way in.
    let r = laptop
        .rcmd(&["client", "--accept-new", &addr, "--", "echo in"], b"")
        .await;
    r.expect_code(255);
    assert!(r.stderr_str().contains("authentication failed"), "{r}");
    let r = laptop
        .rcmd_env(&["copy-id", &addr], b"", &[("RCMD_TOKEN", token.trim())])
        .await;
    r.expect_code(0);
    let keys = server_machine.path().join("authorized_keys");
    let listed = std::fs::read_to_string(&keys).unwrap();
    assert_eq!(listed, key.stdout_str(), "{r}");
    // Twice is harmless.
    let r = laptop
        .rcmd_env(&["copy-id", &addr], b"", &[("RCMD_TOKEN", token.trim())])
        .await;
    r.expect_code(0);
    assert!(r.stderr_str().contains("already"), "{r}");
    assert_eq!(std::fs::read_to_string(&keys).unwrap(), listed);
    // No token now: the key is enough.
    let r = laptop
        .rcmd(&["client", &addr, "--", "echo by-key"], b"")
        .await;
    r.expect_code(0);
    assert_eq!(r.stdout_str(), "by-key\n", "{r}");
    // The key removed: refused again, the same server still running.
    std::fs::write(&keys, "# nobody\n").unwrap();
    let r = laptop
        .rcmd(&["client", &addr, "--", "echo by-key"], b"")
        .await;
    r.expect_code(255);
    assert!(r.stderr_str().contains("authentication failed"), "{r}");
    // And tokens still work beside keys.
    let r = laptop
        .rcmd_env(
            &["client", &addr, "--", "echo by-token"],
            b"",
            &[("RCMD_TOKEN", token.trim())],
        )
        .await;
    r.expect_code(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_held_back_is_explained_on_lines_of_its_own() {
    let server_machine = RcmdHome::new();
    let server = server_machine.server(&[]).await;
    let addr = server.addr.to_string();
    // The laptop has a same-user token of its own (its own server ran there once).
    let laptop = RcmdHome::new();
    std::fs::create_dir(laptop.path()).unwrap();
    std::fs::set_permissions(laptop.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(laptop.token_file(), format!("{}\n", "ab".repeat(32))).unwrap();
    std::fs::set_permissions(laptop.token_file(), std::fs::Permissions::from_mode(0o600)).unwrap();
    let r = laptop
        .rcmd(&["client", "--accept-new", &addr, "--", "echo in"], b"")
        .await;
    r.expect_code(255);
    let err = r.stderr_str();
    assert!(
        err.lines()
            .any(|l| l.starts_with("rcmd: server: authentication failed")),
        "{r}"
    );
    assert!(
        err.lines()
            .any(|l| l.starts_with("rcmd: this user's own token was held back on purpose")),
        "{r}"
    );
    assert!(
        !err.contains("\\n") && !err.contains("\\'"),
        "escaped advice: {r}"
    );
}
