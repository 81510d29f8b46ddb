//! rcmd installed like real software: manual pages and completion made from the clap
//! definitions, systemd units, socket activation and readiness, and the Debian package,
//! each checked with the real tool (man, bash, zsh, fish, systemd-analyze,
//! systemd-socket-activate, cargo-deb, dpkg).

use crate::common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::{rcmd, subcommands, Run, PROCESS_DEADLINE};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Whether `program` is on `PATH`; a test that needs a missing one says so and skips.
fn have(program: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()));
    if !found {
        eprintln!("SKIPPED: {program} is not installed (.ci/run installs it)");
    }
    found
}

/// Every visible subcommand, as the words typed after `rcmd` (the empty path is rcmd
/// itself), found by following the `--help` pages, so subcommands added later are
/// covered without naming them here.
async fn command_paths() -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let mut pending = vec![Vec::<String>::new()];
    while let Some(path) = pending.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let r = rcmd(&args, b"").await;
        r.expect_code(0);
        for name in subcommands(&r.stdout_str()) {
            let mut sub = path.clone();
            sub.push(name);
            pending.push(sub);
        }
        found.push(path);
    }
    found.sort();
    assert!(found.len() >= 10, "only {found:?}");
    found
}

/// The flags a `--help` page shows (`-H`, `--hosts`, ...): the words that open its option
/// lines, which clap indents 2 or 6 columns (descriptions are indented further).
fn help_flags(page: &str) -> BTreeSet<String> {
    page.lines()
        .filter(|l| l.len() - l.trim_start().len() <= 6)
        .map(str::trim_start)
        .filter(|l| l.starts_with('-'))
        .flat_map(|l| {
            l.split_whitespace()
                .take_while(|w| w.starts_with('-'))
                .map(|w| w.trim_end_matches(',').to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// `rcmd PATH --help`.
async fn help_page(path: &[String]) -> String {
    let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
    args.push("--help");
    let r = rcmd(&args, b"").await;
    r.expect_code(0);
    r.stdout_str()
}

/// Runs `program` with `args` and extra environment to completion (no rcmd config).
async fn run(program: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    common::run_env(program, args, b"", env).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_manual_page_renders_without_warnings_and_names_every_flag() {
    if !have("man") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    for path in command_paths().await {
        let mut args = vec!["man"];
        args.extend(path.iter().map(String::as_str));
        let roff = rcmd(&args, b"").await;
        roff.expect_code(0);
        let file = tmp.path().join(format!("{}.1", path.join("-")));
        std::fs::write(&file, &roff.stdout).unwrap();
        let shown = run(
            "man",
            &["--warnings", "-l", file.to_str().unwrap()],
            &[
                ("MANWIDTH", "80"),
                ("LC_ALL", "C.UTF-8"),
                ("MANPAGER", "cat"),
            ],
        )
        .await;
        shown.expect_code(0);
        assert_eq!(shown.stderr_str(), "", "man warned about {path:?}\n{shown}");
        let text = shown.stdout_str();
        let name = ["rcmd".to_string()]
            .into_iter()
            .chain(path.iter().cloned())
            .collect::<Vec<_>>()
            .join("-");
        assert!(text.starts_with(&format!("{name}(1)")), "{path:?}: {text}");
        let words: BTreeSet<&str> = text
            .split(|c: char| c.is_whitespace() || "[]|,".contains(c))
            .collect();
        for flag in help_flags(&help_page(&path).await) {
            assert!(
                words.contains(flag.as_str()),
                "the page of {path:?} does not mention {flag}:\n{text}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn man_dir_writes_one_page_per_subcommand() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("man1");
    rcmd(&["man", "--dir", dir.to_str().unwrap()], b"")
        .await
        .expect_code(0);
    let written: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let expected: BTreeSet<String> = command_paths()
        .await
        .iter()
        .map(|p| {
            let mut words = vec!["rcmd".to_string()];
            words.extend(p.iter().cloned());
            format!("{}.1", words.join("-"))
        })
        .collect();
    assert_eq!(written, expected);
    let r = rcmd(&["man", "no-such-command"], b"").await;
    r.expect_code(255);
    assert!(r.stderr_str().contains("not a subcommand"), "{r}");
}

/// A configuration directory holding a `known_hosts` and a hosts file, for host
/// completion.
fn config_with_hosts() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("rcmd");
    std::fs::create_dir(&home).unwrap();
    let fp = "SHA256:Wd6t3I6uFhk0VvZ7kqB2n6ZxJd0c1Hf7Yt3oQnF8p2A";
    std::fs::write(
        home.join("known_hosts"),
        format!("127.0.0.5:9000 {fp}\nbuild7:9001 {fp}\n"),
    )
    .unwrap();
    std::fs::write(home.join("hosts"), "lab: web[1-3]\n").unwrap();
    std::fs::write(
        home.join("config"),
        "Host db1 web-* !db9\n    HostName 127.0.0.6\n",
    )
    .unwrap();
    (tmp, home)
}

/// The directory of the built binary, first on `PATH`, as installing it would put it.
fn path_with_rcmd() -> String {
    let dir = Path::new(common::rcmd_bin()).parent().unwrap();
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bash_completes_every_subcommand_flag_and_known_host() {
    if !have("bash") {
        return;
    }
    let (_tmp, home) = config_with_hosts();
    // An interactive bash, as a user's, that sources the script and then asks its
    // completion function what follows each line, the way readline calls it on Tab.
    let script = r#"
source <(rcmd completions bash) || exit 3
func=$(complete -p rcmd | sed -n 's/.* -F \([^ ]*\) .*/\1/p')
[ -n "$func" ] || exit 4
while IFS= read -r line; do
    read -ra COMP_WORDS <<< "$line"
    [[ $line == *' ' ]] && COMP_WORDS+=("")
    COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
    COMP_LINE=$line COMP_POINT=${#line} COMP_TYPE=9 COMPREPLY=()
    "$func" rcmd "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
    echo "${COMPREPLY[*]}"
done
"#;
    let paths = command_paths().await;
    let mut lines = Vec::new();
    for path in &paths {
        let words = std::iter::once("rcmd".to_string())
            .chain(path.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ");
        lines.push(format!("{words} "));
        lines.push(format!("{words} --"));
    }
    lines.push("rcmd client ".into());
    lines.push("rcmd client -H 127.0.0.5,@".into());
    let input = lines.join("\n") + "\n";
    let home_str = home.to_str().unwrap();
    let path = path_with_rcmd();
    let r = common::run_env(
        "bash",
        &["--norc", "--noprofile", "-i", "-c", script],
        input.as_bytes(),
        &[
            ("RCMD_HOME", home_str),
            ("PATH", &path),
            ("HISTFILE", "/dev/null"),
        ],
    )
    .await;
    r.expect_code(0);
    let out = r.stdout_str();
    let replies: Vec<BTreeSet<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(replies.len(), lines.len(), "{r}");
    for (i, path) in paths.iter().enumerate() {
        let page = help_page(path).await;
        let (after_space, after_dashes) = (&replies[2 * i], &replies[2 * i + 1]);
        for sub in subcommands(&page) {
            assert!(
                after_space.contains(sub.as_str()),
                "{:?} offers no {sub}\n{r}",
                lines[2 * i]
            );
        }
        for flag in help_flags(&page).iter().filter(|f| f.starts_with("--")) {
            assert!(
                after_dashes.contains(flag.as_str()),
                "{:?} offers no {flag}\n{r}",
                lines[2 * i + 1]
            );
        }
    }
    let n = lines.len();
    assert!(replies[n - 2].contains("127.0.0.5"), "{r}");
    assert!(replies[n - 2].contains("build7:9001"), "{r}");
    // An alias from the per-host settings; patterns are not names to type.
    assert!(replies[n - 2].contains("db1"), "{r}");
    assert!(
        !replies[n - 2].iter().any(|w| w.contains(['*', '!'])),
        "{r}"
    );
    assert!(replies[n - 1].contains("127.0.0.5,@lab"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fish_completes_from_the_script_and_zsh_loads_it() {
    let (_tmp, home) = config_with_hosts();
    let home_str = home.to_str().unwrap();
    let path = path_with_rcmd();
    let env = [("RCMD_HOME", home_str), ("PATH", path.as_str())];
    if have("fish") {
        let r = run(
            "fish",
            &[
                "--no-config",
                "-c",
                "rcmd completions fish | source; and complete -C'rcmd se'; \
                 and complete -C'rcmd client '",
            ],
            &env,
        )
        .await;
        r.expect_code(0);
        assert_eq!(r.stderr_str(), "", "{r}");
        let out = r.stdout_str();
        assert!(out.lines().any(|l| l.starts_with("server")), "{r}");
        assert!(out.lines().any(|l| l.starts_with("127.0.0.5")), "{r}");
    }
    if have("zsh") {
        let r = run(
            "zsh",
            &[
                "-f",
                "-c",
                "autoload -Uz compinit && compinit -u -D && \
                 source <(rcmd completions zsh) && (( $+functions[_clap_dynamic_completer_rcmd] )) \
                 && [[ ${_comps[rcmd]} == _clap_dynamic_completer_rcmd ]]",
            ],
            &env,
        )
        .await;
        r.expect_code(0);
        assert_eq!(r.stderr_str(), "", "{r}");
    }
}

/// The unit files shipped in `dist/systemd`.
fn unit_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/systemd");
    let mut units: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    units.sort();
    units
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_unit_passes_systemd_analyze_verify() {
    if !have("systemd-analyze") {
        return;
    }
    let units = unit_files();
    let names: Vec<String> = units
        .iter()
        .map(|u| u.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "rcmd.service",
            "rcmd.socket",
            "rcmd@.service",
            "rcmd@.socket"
        ]
    );
    // verify checks that ExecStart's program exists: the units name the installed
    // /usr/bin/rcmd, so the copies checked here name the built binary instead; and that
    // Documentation=man:... pages exist: the ones `rcmd man --dir` writes.
    let tmp = tempfile::tempdir().unwrap();
    let man = tmp.path().join("man/man1");
    rcmd(&["man", "--dir", man.to_str().unwrap()], b"")
        .await
        .expect_code(0);
    let mut copies = Vec::new();
    for (unit, name) in units.iter().zip(&names) {
        let text = std::fs::read_to_string(unit).unwrap();
        if name.ends_with(".service") {
            assert!(
                text.contains("\nExecStart=/usr/bin/rcmd server\n"),
                "{name}"
            );
            assert!(text.contains("\nType=notify\n"), "{name}");
        }
        let copy = tmp.path().join(name);
        std::fs::write(&copy, text.replace("/usr/bin/rcmd", common::rcmd_bin())).unwrap();
        copies.push(copy.to_string_lossy().into_owned());
    }
    let manpath = tmp.path().join("man");
    let mut args = vec!["verify"];
    args.extend(copies.iter().map(String::as_str));
    let r = run(
        "systemd-analyze",
        &args,
        &[("MANPATH", manpath.to_str().unwrap())],
    )
    .await;
    r.expect_code(0);
    assert_eq!(r.stderr_str(), "", "{r}");
}

/// `systemd-socket-activate` listening on a free loopback port for `rcmd server ARGS`,
/// with this test's environment passed on (it passes nothing by itself).
struct Activator {
    child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
    port: u16,
}

impl Activator {
    async fn start(home: &Path, args: &[&str]) -> Activator {
        // A port free a moment ago may be taken before systemd-socket-activate binds it:
        // then it says so and exits, and another is tried.
        for _ in 0..20 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut cmd = tokio::process::Command::new("systemd-socket-activate");
            cmd.arg("-l")
                .arg(format!("127.0.0.1:{port}"))
                .arg(format!("--setenv=RCMD_HOME={}", home.display()))
                .arg(format!("--setenv=HOME={}", home.display()))
                .arg("--setenv=PATH")
                .arg(common::rcmd_bin())
                .arg("server")
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .kill_on_drop(true);
            let mut child = cmd.spawn().unwrap();
            let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
            let first = tokio::time::timeout(PROCESS_DEADLINE, lines.next_line())
                .await
                .expect("systemd-socket-activate said nothing")
                .unwrap()
                .unwrap_or_default();
            if first.starts_with(&format!("Listening on 127.0.0.1:{port}")) {
                return Activator { child, lines, port };
            }
            assert!(first.contains("in use"), "systemd-socket-activate: {first}");
            let _ = child.wait().await;
        }
        panic!("no free port for systemd-socket-activate");
    }

    /// Lines it (and then the server it started) prints, up to one containing `part`.
    async fn read_until(&mut self, part: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let line = tokio::time::timeout(PROCESS_DEADLINE, self.lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("no line with {part:?}: {seen:#?}"))
                .unwrap()
                .unwrap_or_else(|| panic!("ended before a line with {part:?}: {seen:#?}"));
            let done = line.contains(part);
            seen.push(line);
            if done {
                return seen;
            }
        }
    }

    /// SIGTERM to the server (systemd-socket-activate became it), and its exit code.
    async fn stop(mut self) -> Option<i32> {
        // SAFETY: kill(2) on our own child's pid, which has not been waited for.
        unsafe { libc::kill(self.child.id().unwrap() as i32, libc::SIGTERM) };
        let status = tokio::time::timeout(PROCESS_DEADLINE, self.child.wait())
            .await
            .expect("the server did not stop")
            .unwrap();
        status.code()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_systemd_passes_serves_clients_and_no_command_inherits_it() {
    if !have("systemd-socket-activate") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("rcmd");
    // The token exists before the server does: systemd starts it at the first client.
    std::fs::create_dir(&home).unwrap();
    std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let token = home.join("token");
    std::fs::write(&token, format!("{}\n", "ab".repeat(32))).unwrap();
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let token = token.to_str().unwrap();
    let mut activator = Activator::start(&home, &["--token-file", token]).await;
    let addr = format!("127.0.0.1:{}", activator.port);
    let home_str = home.to_str().unwrap();
    let client = |command: &'static str| {
        let args = [
            "client",
            "--accept-new",
            "--token-file",
            token,
            &addr,
            "--",
            command,
        ]
        .map(String::from);
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            common::run_env(common::rcmd_bin(), &args, b"", &[("RCMD_HOME", home_str)]).await
        }
    };
    // The first client's connection waits in systemd's socket until the server runs.
    let first = client("echo served; env").await;
    first.expect_code(0);
    let out = first.stdout_str();
    assert!(out.starts_with("served\n"), "{first}");
    for name in [
        "LISTEN_FDS",
        "LISTEN_PID",
        "LISTEN_FDNAMES",
        "NOTIFY_SOCKET",
    ] {
        assert!(!out.contains(&format!("{name}=")), "{name} leaked\n{first}");
    }
    let banner = activator.read_until("rcmd server listening on").await;
    assert!(
        banner
            .last()
            .unwrap()
            .ends_with(&format!("listening on {addr}")),
        "{banner:#?}"
    );
    // The settings follow, wrapped, in parentheses.
    let settings = activator.read_until(")").await.join(" ");
    let settings = settings.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(settings.contains("socket from systemd"), "{settings}");
    // The command's descriptors: its standard ones only, not the listening socket.
    let fds = client("ls /proc/self/fd").await;
    fds.expect_code(0);
    assert_eq!(fds.stdout_str().split_whitespace().count(), 4, "{fds}");
    assert_eq!(activator.stop().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_is_signalled_once_the_socket_accepts_and_stopping_at_shutdown() {
    let tmp = tempfile::tempdir().unwrap();
    let notify_path = tmp.path().join("notify");
    let notify = tokio::net::UnixDatagram::bind(&notify_path).unwrap();
    let home = common::RcmdHome::new();
    let server = home
        .server_env(&[], &[("NOTIFY_SOCKET", notify_path.to_str().unwrap())])
        .await;
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(PROCESS_DEADLINE, notify.recv(&mut buf))
        .await
        .expect("no READY=1")
        .unwrap();
    let ready = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert_eq!(
        ready,
        format!("READY=1\nSTATUS=listening on {}", server.addr)
    );
    tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let stop = tokio::spawn(server.stop());
    let n = tokio::time::timeout(PROCESS_DEADLINE, notify.recv(&mut buf))
        .await
        .expect("no STOPPING=1")
        .unwrap();
    assert_eq!(&buf[..n], b"STOPPING=1");
    stop.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passed_descriptor_that_is_not_a_listening_socket_is_refused() {
    // LISTEN_PID is the shell's pid, which exec makes the server's; fd 3 is /dev/null.
    let script = format!(
        "LISTEN_PID=$$ LISTEN_FDS=1 exec {} server 3</dev/null",
        common::rcmd_bin()
    );
    let r = run("sh", &["-c", &script], &[]).await;
    assert_ne!(r.code, Some(0), "{r}");
    assert!(
        r.stderr_str()
            .contains("the socket systemd passed is not a socket"),
        "{r}"
    );
    let script = format!(
        "LISTEN_PID=$$ LISTEN_FDS=2 exec {} server 3</dev/null 4</dev/null",
        common::rcmd_bin()
    );
    let r = run("sh", &["-c", &script], &[]).await;
    assert!(r.stderr_str().contains("systemd passed 2 sockets"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_is_refused_beside_a_socket_systemd_passes() {
    if !have("systemd-socket-activate") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut activator = Activator::start(tmp.path(), &["--listen", "127.0.0.1:0"]).await;
    // The server starts at the first connection, and refuses to run. It may be gone, and
    // the connection reset with its listening socket, before this task sees the connect
    // complete: either way the connection reached the activator.
    let _conn = match tokio::net::TcpStream::connect(("127.0.0.1", activator.port)).await {
        Ok(conn) => Some(conn),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => None,
        Err(e) => panic!("connecting to systemd-socket-activate: {e}"),
    };
    let said = activator.read_until("rcmd:").await.join("\n");
    assert!(
        said.contains("--listen cannot be used when systemd passes the socket"),
        "{said}"
    );
    let status = tokio::time::timeout(PROCESS_DEADLINE, activator.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(255));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_debian_package_holds_everything_and_runs_from_a_throwaway_root() {
    if !have("cargo-deb") || !have("dpkg-deb") {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    // The README's command, into a directory of the test's own, packaging the binary
    // the tests run (the dev profile, unless they were built otherwise): a release build
    // would take minutes here, a dev `cargo build` would rebuild it without the tests'
    // dependency features (tens of seconds), and what is checked (the files, the unit,
    // the scripts, a binary that runs) is the same.
    let bin_dir = Path::new(common::rcmd_bin()).parent().unwrap();
    let profile = match bin_dir.file_name().unwrap().to_str().unwrap() {
        "debug" => "dev",
        other => other,
    };
    let target = bin_dir.parent().unwrap().to_str().unwrap();
    let r = common::run_within(
        Duration::from_secs(600),
        root.join("scripts/deb").to_str().unwrap(),
        &[
            "--profile",
            profile,
            "--no-build",
            "--fast",
            "-o",
            out.to_str().unwrap(),
        ],
        &[],
        &[("CARGO_TARGET_DIR", target)],
    )
    .await;
    r.expect_code(0);
    let deb = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .unwrap_or_else(|| panic!("no .deb\n{r}"));
    let listing = run("dpkg-deb", &["-c", deb.to_str().unwrap()], &[]).await;
    listing.expect_code(0);
    let files: BTreeSet<String> = listing
        .stdout_str()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|p| p.trim_start_matches('.').to_string())
        .collect();
    let mut expected = vec![
        "/usr/bin/rcmd".to_string(),
        "/usr/share/bash-completion/completions/rcmd".into(),
        "/usr/share/zsh/vendor-completions/_rcmd".into(),
        "/usr/share/fish/vendor_completions.d/rcmd.fish".into(),
        "/usr/share/doc/rcmd/copyright".into(),
    ];
    for unit in unit_files() {
        let name = unit.file_name().unwrap().to_string_lossy().into_owned();
        expected.push(format!("/usr/lib/systemd/system/{name}"));
    }
    for path in command_paths().await {
        let mut words = vec!["rcmd".to_string()];
        words.extend(path);
        // Gzipped, as Debian policy asks of manual pages.
        expected.push(format!("/usr/share/man/man1/{}.1.gz", words.join("-")));
    }
    for file in &expected {
        assert!(
            files.contains(file) || files.contains(&format!("{file}.gz")),
            "{file} is not in the package:\n{files:#?}"
        );
    }
    assert!(
        files
            .iter()
            .any(|f| f.starts_with("/usr/share/doc/rcmd/README")),
        "{files:#?}"
    );
    // Never enabled or started by installing it.
    let control = tmp.path().join("control");
    run(
        "dpkg-deb",
        &["-e", deb.to_str().unwrap(), control.to_str().unwrap()],
        &[],
    )
    .await
    .expect_code(0);
    // The synopsis (Description's first line) fits lintian's 80 columns.
    let fields = std::fs::read_to_string(control.join("control")).unwrap();
    let synopsis = fields
        .lines()
        .find_map(|l| l.strip_prefix("Description: "))
        .unwrap_or_else(|| panic!("no Description:\n{fields}"));
    assert!(synopsis.len() < 80, "synopsis too long: {synopsis:?}");
    if let Ok(postinst) = std::fs::read_to_string(control.join("postinst")) {
        for word in ["deb-systemd-invoke start", "deb-systemd-helper enable"] {
            assert!(
                !postinst.contains(word),
                "postinst runs {word}:\n{postinst}"
            );
        }
    }
    // Unpacked into a throwaway root, the binary runs from there.
    let unpacked = tmp.path().join("root");
    run(
        "dpkg-deb",
        &["-x", deb.to_str().unwrap(), unpacked.to_str().unwrap()],
        &[],
    )
    .await
    .expect_code(0);
    let bin = unpacked.join("usr/bin/rcmd");
    let version = run(bin.to_str().unwrap(), &["--version"], &[]).await;
    version.expect_code(0);
    assert_eq!(
        version.stdout_str(),
        format!("rcmd {}\n", env!("CARGO_PKG_VERSION"))
    );
    let page = run(bin.to_str().unwrap(), &["man", "server"], &[]).await;
    page.expect_code(0);
    assert!(page.stdout_str().contains("socket activation"), "{page}");
    // And man finds the installed, gzipped page by name.
    if have("man") {
        let manpath = unpacked.join("usr/share/man");
        let shown = run(
            "man",
            &["rcmd-server"],
            &[
                ("MANPATH", manpath.to_str().unwrap()),
                ("MANPAGER", "cat"),
                ("MANWIDTH", "80"),
            ],
        )
        .await;
        shown.expect_code(0);
        let text = shown.stdout_str();
        assert!(
            text.starts_with("rcmd-server(1)") && text.contains("SYNOPSIS"),
            "{shown}"
        );
    }
}
