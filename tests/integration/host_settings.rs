//! The per-host settings file, `config` in rcmd's configuration directory, as ssh's.

use crate::common;

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

/// Two machines, each a server with a home (token, identity) of its own on its own port,
/// and a client whose settings file names them `left` and `right`, each with its own
/// address, port, fingerprint and token file.
struct TwoAliases {
    client: RcmdHome,
    _servers: Vec<(RcmdHome, common::ServerProcess)>,
    _tokens: tempfile::TempDir,
}

async fn two_aliases() -> TwoAliases {
    let tokens = tempfile::tempdir().unwrap();
    let mut config = String::new();
    let mut servers = Vec::new();
    for (name, ip) in [("left", "127.0.0.2"), ("right", "127.0.0.3")] {
        let home = RcmdHome::new();
        let listen = format!("{ip}:0");
        let server = home.server(&["--listen", &listen]).await;
        let fp = home.rcmd(&["fingerprint"], b"").await.stdout_str();
        let token_file = tokens.path().join(name);
        std::fs::copy(home.token_file(), &token_file).unwrap();
        std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        config.push_str(&format!(
            "Host {name}\n    HostName {ip}\n    Port {}\n    Fingerprint {}\n    \
             TokenFile {}\n",
            server.addr.port(),
            fp.trim(),
            token_file.display()
        ));
        servers.push((home, server));
    }
    TwoAliases {
        client: client_with(&config),
        _servers: servers,
        _tokens: tokens,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_list_of_aliases_reaches_each_with_its_own_settings() {
    let m = two_aliases().await;
    // Neither server shares a port, an identity or a token with the other: only the file's
    // settings for each alias get the command through.
    let r = m
        .client
        .rcmd(&["client", "-H", "left,right", "--", "echo up"], b"")
        .await;
    r.expect_code(0);
    let mut lines: Vec<&str> = r
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| std::str::from_utf8(l).unwrap())
        .collect();
    lines.sort();
    assert_eq!(lines, ["left: up", "right: up"], "{r}");
    assert!(!m.client.path().join("known_hosts").exists(), "{r}");
    // -p overrides the file's ports, as for one host: nothing listens on port 1.
    let r = m
        .client
        .rcmd(&["client", "-p", "1", "-H", "left", "--", "true"], b"")
        .await;
    r.expect_code(255);
    assert!(r.stderr_str().contains("left"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rcmd_cp_reaches_aliases_alone_and_in_a_list() {
    let m = two_aliases().await;
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("note");
    std::fs::write(&file, b"copied by alias\n").unwrap();
    let dest = work.path().join("dest");
    std::fs::create_dir(&dest).unwrap();
    let f = file.to_str().unwrap();
    let one = format!("left:{}/one", dest.display());
    m.client
        .rcmd(&["cp", "-q", f, &one], b"")
        .await
        .expect_code(0);
    assert_eq!(
        std::fs::read(dest.join("one")).unwrap(),
        b"copied by alias\n"
    );
    let many = format!(":{}/many", dest.display());
    let r = m
        .client
        .rcmd(&["cp", "-q", "-H", "left,right", f, &many], b"")
        .await;
    r.expect_code(0);
    assert_eq!(
        std::fs::read(dest.join("many")).unwrap(),
        b"copied by alias\n"
    );
    let back = work.path().join("back");
    let src = format!(":{}/one", dest.display());
    let r = m
        .client
        .rcmd(
            &["cp", "-q", "-H", "left,right", &src, back.to_str().unwrap()],
            b"",
        )
        .await;
    r.expect_code(0);
    for name in ["left", "right"] {
        assert_eq!(
            std::fs::read(back.join(name).join("one")).unwrap(),
            b"copied by alias\n",
            "{r}"
        );
    }
    assert!(!m.client.path().join("known_hosts").exists(), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wire_options_come_from_the_file_under_the_command_line() {
    let server_home = RcmdHome::new();
    let server = server_home
        .server(&["--protocol", "classic", "--header", "<H"])
        .await;
    let client = client_with(&format!(
        "Host lesson\n    HostName 127.0.0.1\n    Port {}\n    Protocol classic\n    \
         Header <H\n",
        server.addr.port()
    ));
    let r = client
        .rcmd(&["client", "lesson", "--", "echo classic"], b"")
        .await;
    r.expect_code(0);
    assert_eq!(r.stdout_str(), "classic\n", "{r}");
    // The command line wins over the file: with --naive the reply is not read as classic.
    let r = client
        .rcmd(&["client", "--naive", "lesson", "--", "echo classic"], b"")
        .await;
    r.expect_code(255);
    assert!(
        r.stderr_str().contains("the server speaks `classic`"),
        "{r}"
    );
}
