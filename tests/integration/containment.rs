//! Nothing a command starts outlives it: not the end of its reply, its client leaving,
//! its timeout, nor the server stopping by any signal, SIGKILL included. Each way a
//! process can try to escape its process group is tried, and survivors are counted
//! through `/proc`.

use crate::common;

use std::process::Stdio;
use std::time::Duration;

use common::{pids_running, rcmd, rcmd_command, start_server, unique_marker, wait_until};
use rcmd::server::ServerConfig;
use rcmd::wire::Protocol;
use tokio::io::{AsyncBufReadExt, BufReader};

/// One command line that starts a `sleep MARKER` in each way a process can leave the
/// command's process group or parentage, then says "started" and (with `hold`) waits.
fn escapees(marker: &str, hold: bool) -> String {
    let python = format!(
        "import os, time\n\
         if os.fork() == 0:\n    os.setpgid(0, 0)\n    os.execvp('sleep', ['sleep', '{marker}'])"
    );
    let mut line = format!(
        "setsid sleep {marker} & \
         (sleep {marker} &) ; \
         sleep {marker} >/dev/null 2>&1 & \
         nohup sleep {marker} >/dev/null 2>&1 & \
         python3 -c \"{python}\" ; \
         echo started"
    );
    if hold {
        line.push_str(&format!("; sleep {marker}"));
    }
    line
}

/// How many `sleep` processes [`escapees`] starts (without the one `hold` adds).
const ESCAPEES: usize = 5;

async fn all_running(marker: &str) {
    let sleep = format!("sleep {marker}");
    wait_until("every escapee and the held sleep are running", || {
        pids_running(&sleep).len() == ESCAPEES + 1
    })
    .await;
}

/// Waits until no `sleep MARKER` the command started is left.
async fn none_left(marker: &str) {
    none_left_of(&format!("sleep {marker}")).await;
}

fn supervised() -> ServerConfig {
    ServerConfig::new(Protocol::Framed)
}

/// A server that contains its commands with a supervisor alone, as it does where no cgroup
/// v2 hierarchy is writable.
fn supervisor_only() -> ServerConfig {
    let mut config = supervised();
    config.supervisor = Some(rcmd::Spawner::supervisor_only(common::rcmd_bin()));
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_outlives_a_command_that_ended() {
    let addr = start_server(supervised()).await.to_string();
    let marker = unique_marker();
    let r = rcmd(
        &[
            "client",
            &addr,
            "--plaintext",
            "-n",
            "--",
            &escapees(&marker, false),
        ],
        b"",
    )
    .await;
    r.expect_code(0);
    assert_eq!(r.stdout_str(), "started\n");
    none_left(&marker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_detach_lets_background_processes_live_on() {
    let mut config = supervised();
    config.allow_detach = true;
    let addr = start_server(config).await.to_string();
    let marker = unique_marker();
    let line = format!("setsid sleep {marker} >/dev/null 2>&1 < /dev/null & echo started");
    let r = rcmd(&["client", &addr, "--plaintext", "-n", "--", &line], b"").await;
    r.expect_code(0);
    let sleep = format!("sleep {marker}");
    // It may still be on its way from `setsid` to `sleep`; once there, it stays.
    wait_until("the detached sleep runs on", || {
        pids_running(&sleep).len() == 1
    })
    .await;
    let alive = pids_running(&sleep);
    for pid in alive {
        // SAFETY: kill(2) on a process this test started.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_outlives_a_client_that_left() {
    let addr = start_server(supervised()).await.to_string();
    let marker = unique_marker();
    let mut client = rcmd_command()
        .args([
            "client",
            &addr,
            "--plaintext",
            "-n",
            "--",
            &escapees(&marker, true),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(client.stdout.take().unwrap()).lines();
    assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("started"));
    all_running(&marker).await;
    client.kill().await.unwrap();
    none_left(&marker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_outlives_a_timeout() {
    let mut config = supervised();
    config.limits.command_timeout = Some(Duration::from_millis(500));
    let addr = start_server(config).await.to_string();
    let marker = unique_marker();
    let r = rcmd(
        &[
            "client",
            &addr,
            "--plaintext",
            "-n",
            "--",
            &escapees(&marker, true),
        ],
        b"",
    )
    .await;
    r.expect_code(124);
    none_left(&marker).await;
}

/// Starts a real server, a client whose command leaves escapees behind and holds, then
/// stops the server with `sig` while the client is still connected.
async fn server_stopped_by(sig: libc::c_int) {
    let home = common::RcmdHome::new();
    let mut server = home.server(&["--grace", "0.2"]).await;
    let addr = server.addr.to_string();
    let marker = unique_marker();
    let mut client = rcmd_command()
        .env("RCMD_HOME", home.path())
        .args(["client", &addr, "-n", "--", &escapees(&marker, true)])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(client.stdout.take().unwrap()).lines();
    assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("started"));
    all_running(&marker).await;
    let server_pid = server.child.id().unwrap();
    let helpers = helpers_of(server_pid);
    assert!(!helpers.is_empty(), "the server started no helper");
    // SAFETY: kill(2) on the server process this test started.
    unsafe { libc::kill(server_pid as i32, sig) };
    tokio::time::timeout(common::PROCESS_DEADLINE, server.child.wait())
        .await
        .expect("the server did not exit")
        .unwrap();
    none_left(&marker).await;
    wait_until(
        "the server's helper and its spare supervisor are gone",
        || helpers.iter().all(|&pid| !is_helper(pid)),
    )
    .await;
    let _ = client.kill().await;
}

/// Whether `pid` is (still) an `rcmd supervise` process: the helper that forks
/// supervisors, or a supervisor it forked ahead of need.
fn is_helper(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == b"rcmd\0supervise\0")
}

/// The parent of `pid`, from /proc.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The helper a server process started, and the spare supervisor the helper keeps: the
/// `rcmd supervise` processes below `server`.
fn helpers_of(server: u32) -> Vec<u32> {
    let all = common::pids_running("rcmd supervise");
    let helpers: Vec<u32> = all
        .iter()
        .copied()
        .filter(|&p| parent_of(p) == Some(server))
        .collect();
    let spares = all
        .iter()
        .copied()
        .filter(|&p| parent_of(p).is_some_and(|pp| helpers.contains(&pp)));
    helpers.iter().copied().chain(spares).collect()
}

/// Whoever kills the server's helper, or the supervisor it keeps ready, only costs the
/// next command a new one: commands still run, and still run contained.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_helper_or_spare_is_replaced() {
    let home = common::RcmdHome::new();
    let server = home.server(&[]).await;
    let addr = server.addr.to_string();
    let server_pid = server.child.id().unwrap();
    home.rcmd(&["client", &addr, "--", "echo", "first"], b"")
        .await
        .expect_code(0);
    let helpers = |want: usize| {
        let found = helpers_of(server_pid);
        (found.len() == want).then_some(found)
    };
    // The helper and its spare: kill the spare first, then the helper.
    let mut both = None;
    wait_until("the helper has its spare", || {
        both = helpers(2);
        both.is_some()
    })
    .await;
    let [helper, spare] = both.unwrap()[..] else {
        unreachable!()
    };
    for (victim, what) in [(spare, "spare"), (helper, "helper")] {
        // SAFETY: kill(2) on a process this test's server started.
        unsafe { libc::kill(victim as i32, libc::SIGKILL) };
        wait_until("the killed process is gone", || !is_helper(victim)).await;
        run_contained(&home, &addr, what).await;
    }
    // A spare that was stopped would hold the next command forever: the helper gives it a
    // second to take the request, then kills it and uses a new one.
    let mut both = None;
    wait_until("the new helper has its spare", || {
        both = helpers(2);
        both.is_some()
    })
    .await;
    let [helper, spare] = both.unwrap()[..] else {
        unreachable!()
    };
    // SAFETY: kill(2) on a process this test's server started.
    unsafe { libc::kill(spare as i32, libc::SIGSTOP) };
    run_contained(&home, &addr, "stopped spare").await;
    wait_until("the stopped spare is gone", || !is_helper(spare)).await;
    assert!(
        is_helper(helper),
        "the helper was replaced along with its spare"
    );
    server.stop().await;
}

/// Runs a command that prints a line and leaves a process behind, and checks both.
async fn run_contained(home: &common::RcmdHome, addr: &str, what: &str) {
    {
        let marker = unique_marker();
        let r = home
            .rcmd(
                &[
                    "client",
                    addr,
                    "--",
                    &format!("echo after {what}; sleep {marker} &"),
                ],
                b"",
            )
            .await;
        r.expect_code(0);
        assert_eq!(r.stdout_str(), format!("after {what}\n"));
        none_left(&marker).await;
    }
}

/// A command started without a shell gets a clean signal state: nothing blocked (the
/// supervisor blocks the signals it reads from a signalfd) and nothing ignored (Rust
/// ignores SIGPIPE), or it could not be interrupted, terminated or stopped by a pipe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_start_with_no_signal_blocked_or_ignored() {
    let addr = start_server(supervised()).await.to_string();
    for field in ["SigBlk", "SigIgn"] {
        let r = rcmd(
            &[
                "client",
                &addr,
                "--plaintext",
                "--",
                "grep",
                field,
                "/proc/self/status",
            ],
            b"",
        )
        .await;
        r.expect_code(0);
        let mask = r.stdout_str();
        let mask = mask.trim().strip_prefix(&format!("{field}:\t")).unwrap();
        // The standard signals (1-31); glibc keeps two real-time ones for itself.
        let standard = u64::from_str_radix(mask, 16).unwrap() & 0x7fff_ffff;
        assert_eq!(standard, 0, "{field} {mask}");
    }
}

/// A process that holds its supervisor's status pipe open (reopened through /proc, which
/// only root may do: the supervisor is not dumpable) cannot keep the server waiting for a
/// status once the supervisor is gone. With --allow-detach the holder lives on, so only
/// the supervisor's own end can end the wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holding_the_status_pipe_does_not_hold_the_reply() {
    let mut config = supervised();
    config.allow_detach = true;
    let addr = start_server(config).await.to_string();
    let marker = unique_marker();
    let line = format!(
        "exec 9>/proc/$PPID/fd/4 || exit 3; \
         setsid sleep {marker} </dev/null >/dev/null 2>&1 & kill -KILL $PPID"
    );
    let r = rcmd(&["client", &addr, "--plaintext", "--", &line], b"").await;
    r.expect_code(128 + libc::SIGKILL);
    // Detached, the sleep may still be on its way to being exec'd when the reply ends.
    let sleep = format!("sleep {marker}");
    wait_until("the detached sleep runs", || {
        !pids_running(&sleep).is_empty()
    })
    .await;
    for pid in pids_running(&sleep) {
        // SAFETY: kill(2) on the sleep this test's command left behind on purpose.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    none_left(&marker).await;
}

/// `--timeout` holds while the server waits for a status, not only while output flows:
/// a command that closes its output and stops its supervisor still ends on time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_holds_after_the_output_ends() {
    let mut config = supervised();
    config.limits.command_timeout = Some(Duration::from_millis(300));
    let addr = start_server(config).await.to_string();
    let r = rcmd(
        &[
            "client",
            &addr,
            "--plaintext",
            "--",
            "kill -STOP $PPID; exit 0",
        ],
        b"",
    )
    .await;
    r.expect_code(124);
    assert!(r.stderr_str().contains("its processes were killed"), "{r}");
}

/// A command that kills the helper and then its own supervisor orphans what it started to
/// init (SECURITY.md says so). If that holds the output open, `--timeout` still ends the
/// reply, and says the kill did not reach everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_ends_the_reply_even_when_the_kill_cannot_reach_everything() {
    let mut config = supervisor_only();
    config.limits.command_timeout = Some(Duration::from_millis(300));
    let addr = start_server(config).await.to_string();
    let marker = unique_marker();
    // The helper is the supervisor's parent; once it is dead (a zombie), the supervisor's
    // orphans have no subreaper left but init.
    let line = format!(
        "h=$(cut -d' ' -f4 /proc/$PPID/stat); setsid sleep {marker} </dev/null & \
         kill -KILL $h; while [ \"$(cut -d' ' -f3 /proc/$h/stat)\" != Z ]; do :; done; \
         kill -KILL $PPID"
    );
    let r = rcmd(&["client", &addr, "--plaintext", "--", &line], b"").await;
    for pid in pids_running(&format!("sleep {marker}")) {
        // SAFETY: kill(2) on the sleep that escaped, as this test meant it to.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    r.expect_code(124);
    assert!(
        r.stderr_str()
            .contains("not all of its processes could be killed"),
        "{r}"
    );
    none_left(&marker).await;
}

/// A command can SIGKILL its own supervisor (they are the same user). What it started
/// then comes to the server's helper, a subreaper too, which kills it: the client sees
/// the command killed, and nothing is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_kills_its_supervisor_leaves_nothing_behind() {
    let addr = start_server(supervised()).await.to_string();
    let marker = unique_marker();
    let line = format!(
        "{}; kill -KILL $PPID; sleep {marker}",
        escapees(&marker, false)
    );
    let r = rcmd(&["client", &addr, "--plaintext", "--", &line], b"").await;
    assert_eq!(r.stdout_str(), "started\n", "{r}");
    r.expect_code(128 + libc::SIGKILL);
    none_left(&marker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_outlives_a_server_stopped_by_sigterm() {
    server_stopped_by(libc::SIGTERM).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_outlives_a_server_stopped_by_sigint() {
    server_stopped_by(libc::SIGINT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_outlives_a_server_whose_terminal_closed() {
    server_stopped_by(libc::SIGHUP).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_outlives_a_server_stopped_by_sigquit() {
    server_stopped_by(libc::SIGQUIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_outlives_a_server_killed_with_sigkill() {
    server_stopped_by(libc::SIGKILL).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_forking_and_exiting_in_a_loop_is_caught() {
    let addr = start_server(supervised()).await.to_string();
    let marker = unique_marker();
    // Every generation forks and exits at once: a scan of /proc always finds the one
    // before, already gone. Its process group does not change, and dies in one go.
    let runner = format!(
        "perl -e '$t = time + 3; while (time < $t) {{ exit if fork }} sleep 60; # {marker}'"
    );
    let r = rcmd(&["client", &addr, "--plaintext", "-n", "--", &runner], b"").await;
    r.expect_code(0);
    let perl = format!("# {marker}");
    wait_until("no runner is left", || {
        common::pids_containing(&perl).is_empty()
    })
    .await;
}

/// A command that stops its own supervisor, then sleeps.
fn stops_its_supervisor(marker: &str) -> String {
    format!("echo started; kill -STOP $PPID; sleep {marker}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_stops_its_supervisor_still_times_out() {
    let mut config = supervised();
    config.limits.command_timeout = Some(Duration::from_millis(500));
    let addr = start_server(config).await.to_string();
    let marker = unique_marker();
    let r = rcmd(
        &[
            "client",
            &addr,
            "--plaintext",
            "-n",
            "--",
            &stops_its_supervisor(&marker),
        ],
        b"",
    )
    .await;
    r.expect_code(124);
    none_left_of(&format!("sleep {marker}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_stops_its_supervisor_dies_with_its_client() {
    let addr = start_server(supervised()).await.to_string();
    let marker = unique_marker();
    let mut client = rcmd_command()
        .args([
            "client",
            &addr,
            "--plaintext",
            "-n",
            "--",
            &stops_its_supervisor(&marker),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(client.stdout.take().unwrap()).lines();
    assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("started"));
    let sleep = format!("sleep {marker}");
    wait_until("the sleep runs", || !pids_running(&sleep).is_empty()).await;
    client.kill().await.unwrap();
    none_left_of(&sleep).await;
}

/// Waits until no process with exactly this command line is left.
async fn none_left_of(cmdline: &str) {
    wait_until("every process the command started is gone", || {
        pids_running(cmdline).is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_inherit_no_descriptor_the_server_was_started_with() {
    // A shell that leaves descriptor 7 open, then becomes the server.
    let home = common::RcmdHome::new();
    let mut cmd = tokio::process::Command::new("sh");
    cmd.env("RCMD_HOME", home.path())
        .args([
            "-c",
            "exec 7</dev/null; exec \"$0\" server --listen 127.0.0.1:0",
            common::rcmd_bin(),
        ])
        .kill_on_drop(true);
    let server = common::ServerProcess::start(cmd).await;
    let r = home
        .rcmd(
            &[
                "client",
                &server.addr.to_string(),
                "-n",
                "--",
                "ls /proc/$$/fd",
            ],
            b"",
        )
        .await;
    r.expect_code(0);
    assert_eq!(r.stdout_str(), "0\n1\n2\n", "{r}");
    server.stop().await;
}

/// The parent of each command of one line-by-line session (its supervisor), as the
/// commands saw it, and what the session printed.
async fn supervisors_of(addr: &str, lines: &str) -> (Vec<u32>, common::Run) {
    let r = rcmd(&["client", addr, "--plaintext"], lines.as_bytes()).await;
    let parents = r
        .stdout_str()
        .lines()
        .filter_map(|l| l.strip_prefix("parent "))
        .map(|p| p.parse().unwrap())
        .collect();
    (parents, r)
}

/// A connection's commands run one after another under one supervisor, kept between
/// them: each still ends with nothing of its own left, inherits no descriptor of the
/// supervisor's, and the supervisor goes when the connection does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_supervisor_serves_a_connection_and_leaves_with_it() {
    let addr = start_server(supervised()).await.to_string();
    let marker = unique_marker();
    let lines = format!(
        "echo parent $PPID\n\
         sleep {marker} & echo parent $PPID\n\
         echo parent $PPID; ls /proc/self/fd\n"
    );
    let (parents, r) = supervisors_of(&addr, &lines).await;
    r.expect_code(0);
    assert_eq!(parents.len(), 3, "{r}");
    assert!(parents.iter().all(|p| *p == parents[0]), "{parents:?}");
    // 0-2, and the directory ls reads: nothing of the supervisor's.
    assert!(r.stdout_str().ends_with("\n0\n1\n2\n3\n"), "{r}");
    none_left(&marker).await;
    let supervisor = format!("/proc/{}", parents[0]);
    wait_until("the connection's supervisor is gone", || {
        !std::path::Path::new(&supervisor).exists()
    })
    .await;
}

/// A command that kills or stops the connection's supervisor gets only itself: the next
/// command of the connection runs under a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_or_stopped_connection_supervisor_is_not_used_again() {
    let mut config = supervised();
    config.limits.command_timeout = Some(Duration::from_millis(500));
    let addr = start_server(config).await.to_string();
    for how in ["KILL", "STOP"] {
        let lines = format!(
            "echo parent $PPID\n\
             kill -{how} $PPID\n\
             echo parent $PPID\n\
             echo parent $PPID\n"
        );
        let (parents, r) = supervisors_of(&addr, &lines).await;
        r.expect_code(0);
        assert_eq!(parents.len(), 3, "{how}: {r}");
        assert_ne!(
            parents[0], parents[1],
            "{how}: the same supervisor served on"
        );
        assert_eq!(parents[1], parents[2], "{how}: the new one is kept");
        let first = format!("/proc/{}", parents[0]);
        wait_until("the first supervisor is gone", || {
            !std::path::Path::new(&first).exists()
        })
        .await;
    }
}

/// The most zombies any one `rcmd` process (a supervisor, or the helper) holds at once,
/// sampled through /proc until `done` is set.
fn most_zombies_under_rcmd(done: &std::sync::atomic::AtomicBool) -> usize {
    use std::collections::HashMap;
    let mut most = 0;
    while !done.load(std::sync::atomic::Ordering::Acquire) {
        let mut zombies: HashMap<u32, usize> = HashMap::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
                continue;
            };
            let mut fields = rest.split(' ');
            if let (Some("Z"), Some(Ok(ppid))) = (fields.next(), fields.next().map(str::parse)) {
                *zombies.entry(ppid).or_default() += 1;
            }
        }
        for (ppid, n) in zombies {
            let comm = std::fs::read_to_string(format!("/proc/{ppid}/comm")).unwrap_or_default();
            if comm.trim() == "rcmd" {
                most = most.max(n);
            }
        }
    }
    most
}

/// A command whose process forks, exits and lets its child do the same, in a new session
/// each time, for 2 s: each generation it leaves is a zombie of its supervisor (the
/// subreaper), which must reap them while it hunts the live one, or they fill the process
/// table (pid_max is 32,768 here) and fork fails machine-wide.
async fn fork_and_exit_chain_leaves_few_zombies(config: ServerConfig) {
    let addr = start_server(config).await.to_string();
    let marker = unique_marker();
    let chain = format!(
        "perl -MPOSIX -MTime::HiRes=time -e \
         'if (fork) {{ select(undef, undef, undef, 0.2); exit }} POSIX::setsid(); \
         $t = time + 2; while (time < $t) {{ exit if fork; POSIX::setsid() }} # {marker}'"
    );
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let done = done.clone();
        std::thread::spawn(move || most_zombies_under_rcmd(&done))
    };
    let r = rcmd(&["client", &addr, "--plaintext", "-n", "--", &chain], b"").await;
    // The supervisor reports the command's status only once its tree is gone.
    let left = common::pids_containing(&format!("# {marker}"));
    done.store(true, std::sync::atomic::Ordering::Release);
    let most = watcher.join().unwrap();
    for pid in &left {
        // SAFETY: kill(2) on a link of the chain that outlived its command.
        unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
    }
    r.expect_code(0);
    assert!(left.is_empty(), "the chain outlived its command: {left:?}");
    assert!(
        most <= 1000,
        "{most} zombies at once under one rcmd process"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_and_exit_chain_never_fills_the_process_table() {
    fork_and_exit_chain_leaves_few_zombies(supervisor_only()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_and_exit_chain_never_fills_the_process_table_with_a_cgroup() {
    fork_and_exit_chain_leaves_few_zombies(supervised()).await;
}

/// A spawner that contains each command in a cgroup, or `None` (said) where no cgroup v2
/// hierarchy is writable here.
fn with_cgroups(spawner: rcmd::Spawner) -> Option<(rcmd::Spawner, std::path::PathBuf)> {
    match spawner.cgroup_dir().map(std::path::Path::to_path_buf) {
        Some(dir) => Some((spawner, dir)),
        None => {
            eprintln!(
                "skipped: no writable cgroup v2 hierarchy here ({})",
                spawner.containment()
            );
            None
        }
    }
}

/// A spawner whose helper, and so every supervisor, runs with `clone3` refused (ENOSYS),
/// as under container runtimes' older seccomp profiles: commands must then enter their
/// cgroup the old way, the supervisor stepping in for the fork and out again.
fn without_clone3() -> rcmd::Spawner {
    use std::os::unix::fs::PermissionsExt;
    let wrapper = common::sandbox_home().join("rcmd-without-clone3");
    let script = format!(
        "#!/bin/sh\nexec python3 '{}' '{}' \"$@\"\n",
        common::peer("tests/peers/no_clone3.py"),
        common::rcmd_bin()
    );
    std::fs::write(&wrapper, script).unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    rcmd::Spawner::new(wrapper)
}

/// The `0::` (cgroup v2) line of a `/proc/PID/cgroup`.
fn v2_line(text: &str) -> &str {
    text.lines()
        .find(|l| l.starts_with("0::"))
        .unwrap_or_else(|| panic!("no cgroup v2 line in {text:?}"))
}

/// Each command runs in a cgroup of its own under the server's directory, and its
/// supervisor does not: it stays in the server's own cgroup, out of reach of the kill
/// it deals the command's group.
async fn each_command_has_a_cgroup_its_supervisor_is_not_in(spawner: rcmd::Spawner) {
    let Some((spawner, dir)) = with_cgroups(spawner) else {
        return;
    };
    let server_dir = dir.file_name().unwrap().to_string_lossy().into_owned();
    let mut config = supervised();
    config.supervisor = Some(spawner);
    let addr = start_server(config).await.to_string();
    let ours = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let ours = v2_line(&ours);
    // The command's cgroup v2 line, then its supervisor's (the shell's parent).
    let line = "grep '^0::' /proc/self/cgroup; grep '^0::' /proc/$PPID/cgroup";
    // Twice on one connection: the connection's supervisor starts its second command too.
    let stdin = format!("{line}\n{line}\n");
    let r = rcmd(&["client", &addr, "--plaintext", "--"], stdin.as_bytes()).await;
    r.expect_code(0);
    let out = r.stdout_str();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out:?}");
    let (commands, supervisors) = ([lines[0], lines[2]], [lines[1], lines[3]]);
    for (i, command) in commands.iter().enumerate() {
        let (group, n) = command
            .rsplit_once("/cmd-")
            .unwrap_or_else(|| panic!("command {i} is not in a command's group: {command}"));
        assert!(
            group.ends_with(&format!("/{server_dir}")) && n.parse::<u64>().is_ok(),
            "command {i} is not in one of this server's groups: {command}"
        );
    }
    assert_ne!(commands[0], commands[1], "two commands shared one group");
    for supervisor in supervisors {
        assert_eq!(
            supervisor, ours,
            "a supervisor is not in the server's cgroup"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_command_is_born_in_a_cgroup_of_its_own() {
    each_command_has_a_cgroup_its_supervisor_is_not_in(rcmd::Spawner::new(common::rcmd_bin()))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_clone3_each_command_still_gets_a_cgroup_of_its_own() {
    each_command_has_a_cgroup_its_supervisor_is_not_in(without_clone3()).await;
}

/// Where the server can have a cgroup per command (root here, or a delegated subtree), a
/// command that stops the helper and then kills its own supervisor still leaves nothing
/// behind: its orphans go to init, out of every subreaper's reach, but not out of its
/// cgroup, which the server kills. (With a supervisor alone they survive: see
/// `a_timeout_ends_the_reply_even_when_the_kill_cannot_reach_everything`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_cgroup_stopping_the_helper_and_killing_the_supervisor_leaves_nothing() {
    stopping_the_helper_and_killing_the_supervisor_leaves_nothing(rcmd::Spawner::new(
        common::rcmd_bin(),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_clone3_stopping_the_helper_and_killing_the_supervisor_leaves_nothing() {
    stopping_the_helper_and_killing_the_supervisor_leaves_nothing(without_clone3()).await;
}

async fn stopping_the_helper_and_killing_the_supervisor_leaves_nothing(spawner: rcmd::Spawner) {
    let Some((spawner, dir)) = with_cgroups(spawner) else {
        return;
    };
    let mut config = supervised();
    config.supervisor = Some(spawner);
    let addr = start_server(config).await.to_string();
    let marker = unique_marker();
    let line = format!(
        "h=$(cut -d' ' -f4 /proc/$PPID/stat); echo helper $h; \
         setsid sleep {marker} </dev/null >/dev/null 2>&1 & \
         kill -STOP $h; kill -KILL $PPID"
    );
    /// Lets the helper the command stopped go on once the test is over, passed or not.
    /// Only that one: the other tests of this process run servers of their own, some
    /// with a supervisor stopped on purpose, which a SIGCONT would spoil.
    struct Resume(Option<i32>);
    impl Drop for Resume {
        fn drop(&mut self) {
            if let Some(helper) = self.0 {
                // SAFETY: kill(2) on the helper this test's server started, which its
                // command named; it is stopped, so it cannot have exited and been reused.
                unsafe { libc::kill(helper, libc::SIGCONT) };
            }
        }
    }
    let mut resume = Resume(None);
    let r = rcmd(&["client", &addr, "--plaintext", "--", &line], b"").await;
    resume.0 = r
        .stdout_str()
        .lines()
        .find_map(|l| l.strip_prefix("helper "))
        .and_then(|h| h.trim().parse().ok());
    assert!(
        resume.0.is_some(),
        "the command did not name its helper: {r}"
    );
    r.expect_code(128 + libc::SIGKILL);
    // The stopped helper, alive, is where the orphans went: only the cgroup reaches them.
    none_left(&marker).await;
    wait_until("the command's cgroup is removed", || {
        std::fs::read_dir(&dir)
            .map(|d| d.flatten().all(|e| !e.path().is_dir()))
            .unwrap_or(true)
    })
    .await;
}
