//! The per-host settings file, `config` in rcmd's configuration directory, as ssh's.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::RcmdHome;

/// A client home whose settings file says `text`.
fn client_with(text: &str) -> RcmdHome {
    let home = RcmdHome::new();
    std::fs::create_dir_all(home.path()).unwrap();
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(home.path().join("config"), text).unwrap();
    home
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aliases_patterns_ports_and_fingerprints_come_from_the_file() {
    let server_home = RcmdHome::new();
    let server = server_home.server(&[]).await;
    let port = server.addr.port();
    let fp = server_home.rcmd(&["fingerprint"], b"").await.stdout_str();
    let fp = fp.trim();
    let token = std::fs::read_to_string(server_home.token_file()).unwrap();
    let token = [("RCMD_TOKEN", token.trim())];
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = client_with(&format!(
        "# mine\nHost box\n    HostName 127.0.0.1\n    Port {port}\n    Fingerprint {fp}\n\n\
         Host 127.0.0.* !127.0.0.9\n    Port={port}\n    Fingerprint {fp}\n    SetEnv LANG=C.rcmd\n\n\
         Host *\n    Port {free}\n"
    ));
    // An alias: HostName, Port and Fingerprint (no known_hosts, no question).
    let r = client
        .rcmd_env(&["client", "box", "--", "echo by-alias"], b"", &token)
        .await;
    r.expect_code(0);
    assert_eq!(r.stdout_str(), "by-alias\n", "{r}");
    assert!(!client.path().join("known_hosts").exists(), "{r}");
    // A pattern, with a variable set for the command.
    let r = client
        .rcmd_env(&["client", "127.0.0.1", "--", "echo $LANG"], b"", &token)
        .await;
    r.expect_code(0);
    assert_eq!(r.stdout_str(), "C.rcmd\n", "{r}");
    // The command line overrides: its port (nothing listens there) and its fingerprint.
    let r = client
        .rcmd_env(
            &["client", &format!("box:{free}"), "--", "true"],
            b"",
            &token,
        )
        .await;
    r.expect_code(255);
    assert!(r.stderr_str().contains(&format!("127.0.0.1:{free}")), "{r}");
    let other = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let r = client
        .rcmd_env(
            &["client", "--fingerprint", other, "box", "--", "true"],
            b"",
            &token,
        )
        .await;
    r.expect_code(255);
    assert!(r.stderr_str().contains("given with --fingerprint"), "{r}");
    // First match wins: `Host *` comes last, so its port is only for the others.
    let r = client
        .rcmd_env(&["client", "127.0.0.9", "--", "true"], b"", &token)
        .await;
    r.expect_code(255);
    assert!(r.stderr_str().contains(&format!("127.0.0.9:{free}")), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_line_is_an_error_naming_file_and_line() {
    let client = client_with("Host box\n    HostName 127.0.0.1\n    Prot 9000\n");
    let r = client.rcmd(&["client", "box", "--", "true"], b"").await;
    r.expect_code(255);
    let file = client.path().join("config");
    assert!(
        r.stderr_str()
            .contains(&format!("{} line 3: unknown setting", file.display())),
        "{r}"
    );
}
