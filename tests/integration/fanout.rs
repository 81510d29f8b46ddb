//! `rcmd client -H LIST`: one command on 50 in-process servers at once, each on its own
//! loopback address (127.0.0.2 and up) and all on one port, through the real binary.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use common::{rcmd, start_servers_on_one_port, Run};
use rcmd::server::ServerConfig;
use rcmd::wire::Protocol;
use rcmd::ExecMode;

const HOSTS: usize = 50;

/// An address in 127.0.0.x that no test server uses.
const NOBODY: &str = "127.0.0.250";

/// The odd host out for tests that need two kinds of server: it runs commands without a
/// shell, so `echo $HOME` prints `$HOME` there and the home directory everywhere else.
const ODD: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 41);

fn framed(_: Ipv4Addr) -> ServerConfig {
    ServerConfig::new(Protocol::Framed)
}

fn odd_one_direct(addr: Ipv4Addr) -> ServerConfig {
    let mut config = ServerConfig::new(Protocol::Framed);
    if addr == ODD {
        config.exec = ExecMode::Direct;
    }
    config
}

/// `127.0.0.[2-51]` for those addresses (the compactor itself is unit-tested).
fn compact(addrs: &[Ipv4Addr]) -> String {
    rcmd::test_support::compact(&names(addrs))
}

/// `127.0.0.[2-51]:PORT`, or whatever range the servers got.
fn list(addrs: &[Ipv4Addr], port: u16) -> String {
    format!("{}:{port}", compact(addrs))
}

fn names(addrs: &[Ipv4Addr]) -> Vec<String> {
    addrs.iter().map(|a| a.to_string()).collect()
}

/// Lines of `text` by the host in their prefix, in order, checking every line has one.
fn by_host<'a>(text: &'a str, run: &Run) -> BTreeMap<&'a str, Vec<&'a str>> {
    let mut map: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for line in text.lines() {
        let (host, rest) = line
            .split_once(": ")
            .unwrap_or_else(|| panic!("line without a prefix: {line:?}\n{run}"));
        map.entry(host).or_default().push(rest);
    }
    map
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_host_streams_whole_prefixed_lines() {
    let (port, addrs) = start_servers_on_one_port(HOSTS, framed).await;
    let r = rcmd(
        &[
            "client",
            "--plaintext",
            "-H",
            &list(&addrs, port),
            "--",
            "seq 1 5000; seq 1 2000 >&2; printf 'no newline'",
        ],
        b"",
    )
    .await;
    r.expect_code(0);
    let out = r.stdout_str();
    let err = r.stderr_str();
    let stdout = by_host(&out, &r);
    let stderr = by_host(&err, &r);
    let expected: Vec<String> = (1..=5000)
        .map(|i| i.to_string())
        .chain(["no newline".to_string()])
        .collect();
    let expected_err: Vec<String> = (1..=2000).map(|i| i.to_string()).collect();
    assert_eq!(stdout.len(), HOSTS, "hosts on stdout");
    for host in names(&addrs) {
        assert_eq!(stdout[host.as_str()], expected, "stdout of {host}");
        assert_eq!(stderr[host.as_str()], expected_err, "stderr of {host}");
    }
    assert!(
        out.ends_with('\n'),
        "a last line without newline still ends whole"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_prefix_keeps_lines_whole() {
    let (port, addrs) = start_servers_on_one_port(HOSTS, framed).await;
    let r = rcmd(
        &[
            "client",
            "--plaintext",
            "-N",
            "-H",
            &list(&addrs, port),
            "--",
            "seq 1 3000",
        ],
        b"",
    )
    .await;
    r.expect_code(0);
    let mut count = BTreeMap::<u32, usize>::new();
    for line in r.stdout_str().lines() {
        let n: u32 = line
            .parse()
            .unwrap_or_else(|_| panic!("mixed line {line:?}"));
        *count.entry(n).or_default() += 1;
    }
    assert_eq!(count.len(), 3000);
    assert!(count.values().all(|&c| c == HOSTS));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collate_groups_identical_output_under_compact_ranges() {
    let (port, addrs) = start_servers_on_one_port(HOSTS, odd_one_direct).await;
    let r = rcmd(
        &[
            "client",
            "--plaintext",
            "--collate",
            "-H",
            &list(&addrs, port),
            "--",
            "echo $HOME",
        ],
        b"",
    )
    .await;
    r.expect_code(0);
    let home = std::env::var("HOME").unwrap();
    let (odd, rest): (Vec<Ipv4Addr>, Vec<Ipv4Addr>) = addrs.iter().partition(|&&a| a == ODD);
    assert_eq!(odd.len(), 1, "the odd host got its address");
    let rule = "----------------";
    assert_eq!(
        r.stdout_str(),
        format!(
            "{rule}\n{}\n{rule}\n{home}\n{rule}\n{ODD}\n{rule}\n$HOME\n",
            compact(&rest)
        ),
        "{r}"
    );
    if addrs.last() == Some(&Ipv4Addr::new(127, 0, 0, 51)) {
        assert!(r.stdout_str().contains("\n127.0.0.[2-40,42-51]\n"), "{r}");
    }
    assert_eq!(r.stderr_str(), "", "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_dir_holds_out_err_and_status_per_host() {
    let (port, addrs) = start_servers_on_one_port(HOSTS, framed).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results");
    let hosts = format!("{},{NOBODY}:{port}", list(&addrs, port));
    let r = rcmd(
        &[
            "client",
            "--plaintext",
            "-H",
            &hosts,
            "--output-dir",
            out.to_str().unwrap(),
            "--",
            "echo out; echo err >&2; printf tail",
        ],
        b"",
    )
    .await;
    r.expect_code(255);
    assert_eq!(r.stdout_str(), "", "{r}");
    let read = |name: String| {
        std::fs::read_to_string(out.join(&name)).unwrap_or_else(|e| panic!("{name}: {e}\n{r}"))
    };
    for host in names(&addrs) {
        assert_eq!(read(format!("{host}.out")), "out\ntail");
        assert_eq!(read(format!("{host}.err")), "err\n");
        assert_eq!(read(format!("{host}.status")), "0\n");
    }
    let status = read(format!("{NOBODY}.status"));
    assert!(status.starts_with("255\nunreachable: "), "{status}");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 3 * HOSTS + 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_prints_one_object_per_host() {
    let (port, addrs) = start_servers_on_one_port(HOSTS, framed).await;
    let hosts = format!("{},{NOBODY}:{port}", list(&addrs, port));
    let r = rcmd(
        &[
            "client",
            "--plaintext",
            "--json",
            "-H",
            &hosts,
            "--",
            "echo hi; echo oops >&2; exit 4",
        ],
        b"",
    )
    .await;
    r.expect_code(255);
    let mut seen = BTreeSet::new();
    for line in r.stdout_str().lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}\n{r}"));
        let host = v["host"].as_str().unwrap().to_string();
        assert!(v["seconds"].as_f64().unwrap() >= 0.0);
        if host == NOBODY {
            assert!(v["error"].as_str().unwrap().contains("unreachable"), "{v}");
            assert!(v.get("status").is_none(), "{v}");
        } else {
            assert_eq!(v["status"], 4, "{v}");
            assert_eq!(v["stdout"], "hi\n", "{v}");
            assert_eq!(v["stderr"], "oops\n", "{v}");
        }
        assert!(seen.insert(host), "one object per host\n{r}");
    }
    let mut expected: BTreeSet<String> = names(&addrs).into_iter().collect();
    expected.insert(NOBODY.to_string());
    assert_eq!(seen, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_status_is_the_largest_or_255_with_a_summary() {
    let (port, addrs) = start_servers_on_one_port(HOSTS, odd_one_direct).await;
    let all = list(&addrs, port);
    let rest: Vec<Ipv4Addr> = addrs.iter().copied().filter(|&a| a != ODD).collect();

    // `exit 3` is a shell builtin: the odd host, without a shell, cannot find it (127).
    let r = rcmd(&["client", "--plaintext", "-H", &all, "--", "exit 3"], b"").await;
    r.expect_code(127);
    let err = r.stderr_str();
    assert!(
        err.contains(&format!("rcmd: {HOSTS} of {HOSTS} hosts failed:\n")),
        "{r}"
    );
    assert!(
        err.contains(&format!("rcmd:   {}: exit status 3\n", compact(&rest))),
        "{r}"
    );
    assert!(
        err.contains(&format!("rcmd:   {ODD}: exit status 127\n")),
        "{r}"
    );

    let hosts = format!("{all},{NOBODY}:{port}");
    let r = rcmd(
        &["client", "--plaintext", "-H", &hosts, "--", "exit 3"],
        b"",
    )
    .await;
    r.expect_code(255);
    assert!(
        r.stderr_str().contains(&format!(
            "rcmd:   {NOBODY}: unreachable: Connection refused"
        )),
        "{r}"
    );

    let r = rcmd(
        &[
            "client",
            "--plaintext",
            "-H",
            &all,
            "-x",
            &ODD.to_string(),
            "--",
            "true",
        ],
        b"",
    )
    .await;
    r.expect_code(0);
    assert_eq!(r.stderr_str(), "", "no summary when all succeed\n{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_fast_stops_starting_hosts_and_interrupts_running_ones() {
    let (port, addrs) = start_servers_on_one_port(HOSTS, odd_one_direct).await;
    // The odd host comes first and fails; with a shell, $1 is the home directory and the
    // command would sleep far longer than the test takes.
    let hosts = format!("{ODD}:{port},{}", list(&addrs, port));
    let cmd = "sh -c 'case $1 in /*) sleep 120;; *) sleep 1; exit 1;; esac' x $HOME";
    let started = std::time::Instant::now();
    let r = rcmd(
        &[
            "client",
            "--plaintext",
            "-k",
            "-f",
            "10",
            "-H",
            &hosts,
            "--",
            cmd,
        ],
        b"",
    )
    .await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "running hosts were not interrupted"
    );
    r.expect_code(1);
    let err = r.stderr_str();
    assert!(
        err.contains(&format!("rcmd:   {ODD}: exit status 1\n")),
        "{r}"
    );
    assert!(
        err.contains(": interrupted after another host failed (-k)\n"),
        "{r}"
    );
    assert!(
        err.contains(": not started after another host failed (-k)\n"),
        "{r}"
    );
    // The headline counts hosts that failed apart from those -k stopped.
    let headline = err
        .lines()
        .find(|l| l.contains(&format!(" of {HOSTS} hosts failed")))
        .unwrap_or_else(|| panic!("no headline: {r}"));
    let numbers: Vec<usize> = headline
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    // "rcmd: F of N hosts failed, I interrupted, S not started:"
    let [failed, all, interrupted, not_started] = numbers[..] else {
        panic!("{headline:?}")
    };
    assert_eq!(all, HOSTS, "{headline}");
    assert!(failed >= 1, "{headline}");
    assert_eq!(failed + interrupted + not_started, HOSTS, "{headline}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_of_one_runs_hosts_one_at_a_time() {
    let (port, addrs) = start_servers_on_one_port(HOSTS, framed).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    // Each command marks its start and end; a short pause between them widens the
    // window in which two overlapping commands would show.
    let cmd = format!(
        "echo start $$ >> {0}; sleep 0.02; echo end $$ >> {0}",
        log.display()
    );
    let r = rcmd(
        &[
            "client",
            "--plaintext",
            "-f",
            "1",
            "-H",
            &list(&addrs, port),
            "--",
            &cmd,
        ],
        b"",
    )
    .await;
    r.expect_code(0);
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2 * HOSTS, "{text}");
    for pair in lines.chunks(2) {
        let start = pair[0].strip_prefix("start ").expect(&text);
        let end = pair[1].strip_prefix("end ").expect(&text);
        assert_eq!(start, end, "one command ran while another did\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_host_positional_is_refused_with_a_hint() {
    let r = rcmd(
        &[
            "client",
            "--plaintext",
            "127.0.0.1:9",
            "127.0.0.2:9",
            "--",
            "hostname",
        ],
        b"",
    )
    .await;
    r.expect_code(255);
    assert!(
        r.stderr_str()
            .contains("rcmd client -H 127.0.0.1:9,127.0.0.2:9 -- CMD"),
        "{r}"
    );
    // Bare addresses too, now that the port is optional (issue 12's own example).
    for second in ["127.0.0.2", "::1", "[::1]", "127.0.0.[2-4]"] {
        let r = rcmd(
            &["client", "--plaintext", "127.0.0.1", second, "--", "true"],
            b"",
        )
        .await;
        r.expect_code(255);
        assert!(r.stderr_str().contains("list them with -H"), "{r}");
    }
    let r = rcmd(
        &["client", "--plaintext", "-H", "a[3-1]", "--", "true"],
        b"",
    )
    .await;
    r.expect_code(255);
    assert!(r.stderr_str().contains("runs backwards"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_from_a_file_and_a_group_with_default_port() {
    let (port, addrs) = start_servers_on_one_port(3, framed).await;
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join("hosts"),
        format!("# groups\ntrio: {}\n", compact(&addrs)),
    )
    .unwrap();
    let file = home.path().join("list");
    std::fs::write(&file, format!("{}\n", addrs[0])).unwrap();
    let mut cmd = tokio::process::Command::new(common::rcmd_bin());
    cmd.env("RCMD_HOME", home.path()).args([
        "client",
        "--plaintext",
        "-p",
        &port.to_string(),
        "-H",
        &format!("@trio,^{}", file.display()),
        "-x",
        &addrs[1].to_string(),
        "--",
        "echo",
        "a b",
    ]);
    let out = cmd.output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let mut lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        [format!("{}: a b", addrs[0]), format!("{}: a b", addrs[2])]
    );
}

/// The `dshbak -c` blocks of `text` (header and output), in any order.
fn blocks(text: &str) -> BTreeSet<String> {
    let rule = "----------------\n";
    text.split(rule)
        .skip(1)
        .collect::<Vec<_>>()
        .chunks(2)
        .map(|pair| pair.concat())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collate_matches_dshbak_on_the_streamed_output() {
    if std::process::Command::new("dshbak")
        .arg("-h")
        .output()
        .is_err()
    {
        eprintln!("dshbak (Debian's pdsh package) is not installed: cross-check skipped");
        return;
    }
    let (port, addrs) = start_servers_on_one_port(HOSTS, odd_one_direct).await;
    let hosts = list(&addrs, port);
    let cmd = "echo $HOME; echo two";
    let streamed = rcmd(&["client", "--plaintext", "-H", &hosts, "--", cmd], b"").await;
    streamed.expect_code(0);
    let dshbak = common::run("dshbak", &["-c"], &streamed.stdout).await;
    dshbak.expect_code(0);
    let collated = rcmd(
        &[
            "client",
            "--plaintext",
            "--collate",
            "-H",
            &hosts,
            "--",
            cmd,
        ],
        b"",
    )
    .await;
    collated.expect_code(0);
    assert_eq!(
        blocks(&collated.stdout_str()),
        blocks(&dshbak.stdout_str()),
        "ours:\n{}\ndshbak -c:\n{}",
        collated.stdout_str(),
        dshbak.stdout_str()
    );
    assert_eq!(blocks(&collated.stdout_str()).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_goes_to_every_host_only_when_asked() {
    let (port, addrs) = start_servers_on_one_port(5, framed).await;
    let hosts = list(&addrs, port);
    // Without --stdin every command's stdin is empty, whatever ours holds (as ssh -n).
    let r = rcmd(
        &["client", "--plaintext", "-N", "-H", &hosts, "--", "wc -c"],
        b"12345",
    )
    .await;
    r.expect_code(0);
    assert!(r.stdout_str().lines().all(|l| l.trim() == "0"), "{r}");
    // With it, every host's command reads the same bytes.
    let r = rcmd(
        &[
            "client",
            "--plaintext",
            "--stdin",
            "-H",
            &hosts,
            "--",
            "cat",
        ],
        b"same for all\n",
    )
    .await;
    r.expect_code(0);
    let out = r.stdout_str();
    let lines: Vec<&str> = out
        .lines()
        .map(|l| l.split_once(": ").map_or(l, |(_, rest)| rest))
        .collect();
    assert_eq!(lines.len(), addrs.len(), "{r}");
    assert!(lines.iter().all(|l| *l == "same for all"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_servers_are_one_line_of_the_summary() {
    // Three TLS servers of one user; the client is another user's, knowing none of them.
    let theirs = common::RcmdHome::new();
    let first = theirs.server(&["--listen", "127.0.0.2:0"]).await;
    let port = first.addr.port().to_string();
    let mut servers = vec![first];
    for ip in ["127.0.0.3", "127.0.0.4"] {
        servers.push(theirs.server(&["--listen", &format!("{ip}:{port}")]).await);
    }
    let ours = common::RcmdHome::new();
    let list = format!("127.0.0.[2-4]:{port}");
    let r = ours.rcmd(&["client", "-H", &list, "--", "true"], b"").await;
    r.expect_code(255);
    let err = r.stderr_str();
    assert!(
        err.lines()
            .any(|l| l.contains("127.0.0.[2-4]") && l.contains("unknown server identity")),
        "{r}"
    );
    assert!(!err.contains("SHA256:"), "no fingerprint per host: {r}");
    for s in servers {
        s.stop().await;
    }
}

/// What `seq 1 100000` prints: 589 kB per host. A host's reply was lost only when it
/// outran the server's send buffer (8192 bytes, which the kernel doubles), so that the
/// last write could meet a full socket. With the fix reverted, replies of 14 kB
/// (`seq 1 3000`) never lost a host in six tries; 49 kB (`seq 1 10000`) lost one in every
/// try, and this size lost one in each of three single runs. Over thirty times the
/// doubled buffer keeps a wide margin at a twentieth of the time a million lines took
/// (6.9 MB per host: 7.4 s, now 0.35 s).
const SEQ_HUNDRED_THOUSAND: usize = 588_895;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_fanout_delivers_every_byte_of_every_host() {
    // The end of a reply used to stay in the server's TLS buffer when the socket was full
    // at its last write, until the client gave up: about one run in five lost a host.
    let identity = rcmd::Identity::generate("rcmd test").unwrap();
    let tls = std::sync::Arc::new(rcmd::ServerTls::new(&identity, Vec::new(), false).unwrap());
    let token = "fan-out-over-tls-test-token";
    let (port, addrs) = common::start_servers_with_send_buffer(5, Some(8192), |_| {
        let mut config = ServerConfig::new(Protocol::Framed);
        config.tls = Some(std::sync::Arc::clone(&tls));
        config.token = Some(rcmd::Token::new(token.as_bytes()).unwrap());
        config
    })
    .await;
    let fingerprint = identity.fingerprint().to_string();
    let hosts = list(&addrs, port);
    let args = [
        "client",
        "--fingerprint",
        &fingerprint,
        "-N",
        "-H",
        &hosts,
        "--",
        "seq 1 100000",
    ];
    for run in 0..RUNS {
        let r = common::run_env(common::rcmd_bin(), &args, b"", &[("RCMD_TOKEN", token)]).await;
        assert_eq!(
            (r.code, r.stdout.len(), r.stderr_str()),
            (Some(0), 5 * SEQ_HUNDRED_THOUSAND, String::new()),
            "run {run}"
        );
    }
}

/// Runs of five hosts. With the servers' small send buffers the old code lost a host in
/// the first run; a few more cost seconds each.
const RUNS: usize = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_stdout_stops_every_host_with_sigpipe_status() {
    use tokio::io::AsyncBufReadExt;
    let (port, addrs) = start_servers_on_one_port(5, framed).await;
    let hosts = list(&addrs, port);
    // As `rcmd client -H ... | head -2`: two lines read, then the pipe closed. The old
    // client dropped the rest quietly, waited for every host to finish, and exited 0.
    let mut child = common::rcmd_command()
        .args([
            "client",
            "--plaintext",
            "-H",
            &hosts,
            "--",
            "seq 1 1000000000",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    for _ in 0..2 {
        let line = lines.next_line().await.unwrap().expect("a line of output");
        assert!(line.contains(": "), "{line}");
    }
    drop(lines);
    let status = tokio::time::timeout(common::PROCESS_DEADLINE, child.wait())
        .await
        .expect("the client kept running with its stdout closed")
        .unwrap();
    let mut stderr = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr)
        .await
        .unwrap();
    assert_eq!(status.code(), Some(141), "{stderr}");
    assert_eq!(stderr, "", "nothing to report: the reader left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_dir_never_follows_a_link_another_user_planted() {
    use std::os::unix::fs::PermissionsExt;
    let (port, addrs) = start_servers_on_one_port(2, framed).await;
    let tmp = tempfile::tempdir().unwrap();
    // A shared directory, as /tmp is, and a file only its owner may write.
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let shared = tmp.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let precious = tmp.path().join("precious");
    std::fs::write(&precious, "keep me\n").unwrap();
    std::fs::set_permissions(&precious, std::fs::Permissions::from_mode(0o600)).unwrap();
    let planted = shared.join(format!("{}.out", addrs[0]));
    plant_symlink(&precious, &planted).await;
    let r = rcmd(
        &[
            "client",
            "--plaintext",
            "-H",
            &list(&addrs, port),
            "--output-dir",
            shared.to_str().unwrap(),
            "--",
            "echo overwritten",
        ],
        b"",
    )
    .await;
    r.expect_code(255);
    assert_eq!(
        std::fs::read_to_string(&precious).unwrap(),
        "keep me\n",
        "{r}"
    );
    assert!(
        std::fs::symlink_metadata(&planted).unwrap().is_symlink(),
        "the link itself is left as it was"
    );
    assert!(
        r.stderr_str().contains("symbolic link: not followed"),
        "{r}"
    );
    let status = std::fs::read_to_string(shared.join(format!("{}.status", addrs[0]))).unwrap();
    assert!(status.starts_with("255\n--output-dir: "), "{status}");
    // The other host is written as ever.
    let other = std::fs::read_to_string(shared.join(format!("{}.out", addrs[1]))).unwrap();
    assert_eq!(other, "overwritten\n");
}

/// Plants `link -> target` as another user (nobody, through setpriv) when this test runs
/// as root, as the attack is; as this user otherwise.
async fn plant_symlink(target: &std::path::Path, link: &std::path::Path) {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        std::os::unix::fs::symlink(target, link).unwrap();
        return;
    }
    let r = common::run(
        "setpriv",
        &[
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "ln",
            "-s",
            target.to_str().unwrap(),
            link.to_str().unwrap(),
        ],
        b"",
    )
    .await;
    r.expect_code(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collate_and_json_keep_outputs_larger_than_memory_whole() {
    // Each host prints 0.6 MB, far past what the client keeps in memory per host: the
    // rest is spilled to disk and read back in order.
    let (port, addrs) = start_servers_on_one_port(3, framed).await;
    let hosts = list(&addrs, port);
    let seq: String = (1..=100_000).map(|i| format!("{i}\n")).collect();
    let command = "seq 1 100000; printf 'é\\377' >&2";
    let collate = rcmd(
        &[
            "client",
            "--plaintext",
            "--collate",
            "-H",
            &hosts,
            "--",
            command,
        ],
        b"",
    )
    .await;
    collate.expect_code(0);
    let rule = "----------------";
    assert!(
        collate.stdout_str() == format!("{rule}\n{}\n{rule}\n{seq}", compact(&addrs)),
        "{} bytes of stdout differ from the expected",
        collate.stdout.len()
    );
    let json = rcmd(
        &[
            "client",
            "--plaintext",
            "--json",
            "-H",
            &hosts,
            "--",
            command,
        ],
        b"",
    )
    .await;
    json.expect_code(0);
    let lines: Vec<&[u8]> = json
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(lines.len(), 3);
    for line in lines {
        let v: serde_json::Value = serde_json::from_slice(line).unwrap();
        assert!(v["stdout"] == seq.as_str(), "{}", v["host"]);
        assert_eq!(v["stderr"], "é\u{fffd}");
    }
}

/// `echo answered` on all the test's hosts at once, from a client started under
/// `prlimit --nofile=LIMIT` (`SOFT:` keeps the hard limit, `SOFT:HARD` sets both).
async fn all_at_once_under_open_file_limit(limit: &str) -> Run {
    let (port, addrs) = start_servers_on_one_port(HOSTS, framed).await;
    let hosts = list(&addrs, port);
    let fanout = HOSTS.to_string();
    let nofile = format!("--nofile={limit}");
    common::run(
        "prlimit",
        &[
            &nofile,
            "--",
            common::rcmd_bin(),
            "client",
            "--plaintext",
            "-f",
            &fanout,
            "-H",
            &hosts,
            "--",
            "echo answered",
        ],
        b"",
    )
    .await
}

/// A shell's soft limit on open files (often 1,024) is no cap on the hosts a fan-out can
/// reach at once: the client raises it to the hard limit, as the server does. Started here
/// with a soft limit of 32 for 50 hosts at once, every one of them must answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_hosts_at_once_than_the_soft_open_file_limit_all_answer() {
    let r = all_at_once_under_open_file_limit("32:").await;
    r.expect_code(0);
    let out = r.stdout_str();
    let stdout = by_host(&out, &r);
    assert_eq!(stdout.len(), HOSTS, "hosts that answered\n{r}");
    for lines in stdout.values() {
        assert_eq!(lines, &["answered"]);
    }
}

/// Where even the hard limit on open files is too low for the hosts asked for at once,
/// the hosts left without a socket are not called unreachable (nothing is wrong with them):
/// the summary says this machine ran out, and what to change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_left_without_a_socket_here_are_not_called_unreachable() {
    let r = all_at_once_under_open_file_limit("24:24").await;
    r.expect_code(255);
    let err = r.stderr_str();
    assert!(err.contains("no socket for it here"), "{r}");
    assert!(err.contains("ulimit -n"), "{r}");
    assert!(!err.contains("unreachable"), "{r}");
}
