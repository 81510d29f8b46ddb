//! What an ssh or pdsh user types by habit works, or says clearly why not.

use crate::common;

use common::RcmdHome;

/// The user this test runs as.
fn me() -> String {
    let out = std::process::Command::new("id")
        .arg("-un")
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dash_p_gives_one_host_its_port() {
    let home = RcmdHome::new();
    let server = home.server(&[]).await;
    let port = server.addr.port().to_string();
    let r = home
        .rcmd(
            &["client", "-p", &port, "127.0.0.1", "--", "echo", "by -p"],
            b"",
        )
        .await;
    r.expect_code(0);
    assert_eq!(r.stdout_str(), "by -p\n", "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dash_w_a_group_and_a_range_need_no_dash_h() {
    let home = RcmdHome::new();
    let server = home.server(&[]).await;
    let addr = server.addr.to_string();
    let port = server.addr.port().to_string();
    std::fs::write(home.path().join("hosts"), format!("grp: {addr}\n")).unwrap();
    for target in [
        vec!["-w", addr.as_str()],
        vec!["@grp"],
        vec!["-p", &port, "127.0.0.[1]"],
    ] {
        let mut args = vec!["client"];
        args.extend(target.iter().copied());
        args.extend(["--", "echo hi"]);
        let r = home.rcmd(&args, b"").await;
        r.expect_code(0);
        assert!(r.stdout_str().ends_with(": hi\n"), "{r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_at_host_runs_as_the_server_user_or_says_why_not() {
    let home = RcmdHome::new();
    let server = home.server(&[]).await;
    let addr = server.addr.to_string();
    let mine = format!("{}@{addr}", me());
    let r = home
        .rcmd(&["client", &mine, "--", "echo same user"], b"")
        .await;
    r.expect_code(0);
    assert_eq!(r.stdout_str(), "same user\n", "{r}");
    let other = if me() == "nobody" { "root" } else { "nobody" };
    let theirs = format!("{other}@{addr}");
    let r = home.rcmd(&["client", &theirs, "--", "true"], b"").await;
    r.expect_code(255);
    assert!(
        r.stderr_str()
            .contains("commands run as the user who started `rcmd"),
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_hosts_lists_and_forgets_a_server() {
    let server_home = RcmdHome::new();
    let server = server_home.server(&[]).await;
    let addr = server.addr.to_string();
    let fp = server_home.rcmd(&["fingerprint"], b"").await.stdout_str();
    let client = RcmdHome::new();
    client
        .rcmd(&["client", "--accept-new", &addr, "-n", "--", "true"], b"")
        .await;
    let r = client.rcmd(&["known-hosts", "--list"], b"").await;
    r.expect_code(0);
    assert_eq!(r.stdout_str(), format!("{addr} {fp}"), "{r}");
    let r = client.rcmd(&["known-hosts", "--remove", &addr], b"").await;
    r.expect_code(0);
    let r = client.rcmd(&["known-hosts", "--list"], b"").await;
    assert_eq!(r.stdout_str(), "", "{r}");
    // Forgotten: unknown again.
    let r = client
        .rcmd(&["client", &addr, "-n", "--", "true"], b"")
        .await;
    r.expect_code(255);
    assert!(r.stderr_str().contains("unknown server identity"), "{r}");
    let r = client.rcmd(&["known-hosts", "--remove", &addr], b"").await;
    r.expect_code(255);
    assert!(r.stderr_str().contains("is not in"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_refused_suggests_starting_the_server() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let home = RcmdHome::new();
    let r = home
        .rcmd(&["client", &format!("127.0.0.1:{port}"), "--", "true"], b"")
        .await;
    r.expect_code(255);
    assert!(
        r.stderr_str()
            .contains("Start it on that machine with `rcmd server`"),
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_says_what_happens_to_the_command_words() {
    let r = common::rcmd(&["client", "--help"], b"").await;
    r.expect_code(0);
    let help = r
        .stdout_str()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(help.contains("Unlike ssh"), "{help}");
    assert!(help.contains("rcmd quotes each word"), "{help}");
    assert!(
        help.contains("[default: 30, or 10 per host with -H]"),
        "{help}"
    );
}
