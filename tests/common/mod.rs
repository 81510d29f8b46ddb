//! Helpers shared by the integration tests: an in-process server on 127.0.0.1:0, and the
//! built `rcmd` binary or a Python peer run as a real process.
#![allow(dead_code)]

pub mod tmux;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use rcmd::server::{serve, ServerConfig};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::Command;

/// Generous bound so a hung process fails the test instead of hanging it; never a wait
/// that the test relies on.
pub const PROCESS_DEADLINE: Duration = Duration::from_secs(60);

/// Starts a server in this test's runtime; it lives as long as the runtime. Its commands
/// run under the built binary's supervisor, as the real server's do.
pub async fn start_server(mut config: ServerConfig) -> SocketAddr {
    sandbox_home();
    config
        .supervisor
        .get_or_insert_with(|| rcmd::Spawner::new(rcmd_bin()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, config, std::future::pending()));
    addr
}

/// A server in this test's runtime that keeps what it logs and stops when told, as a
/// [`ServerProcess`] does: for tests that read the log of a server whose timings they
/// shortened. The log is caught on this thread, so the test's runtime must be
/// current-thread (`#[tokio::test]`).
pub struct LoggedServer {
    pub addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    log: LogBuffer,
    _catching: tracing::subscriber::DefaultGuard,
}

impl LoggedServer {
    pub async fn start(config: ServerConfig) -> LoggedServer {
        let log = LogBuffer::default();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(log.clone())
            .finish();
        let catching = tracing::subscriber::set_default(subscriber);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(serve(listener, config, async {
            let _ = stopped.await;
        }));
        LoggedServer {
            addr,
            stop,
            task,
            log,
            _catching: catching,
        }
    }

    /// Stops the server, waits for it to finish and returns every line it logged.
    pub async fn stop(self) -> Vec<String> {
        let _ = self.stop.send(());
        tokio::time::timeout(PROCESS_DEADLINE, self.task)
            .await
            .expect("the server did not stop")
            .unwrap();
        let bytes = self.log.0.lock().unwrap().clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// Where a [`LoggedServer`]'s log lines are written.
#[derive(Clone, Default)]
struct LogBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;

    fn make_writer(&'a self) -> LogBuffer {
        self.clone()
    }
}

/// A framed server with the defaults.
pub fn framed() -> ServerConfig {
    ServerConfig::new(rcmd::wire::Protocol::Framed)
}

/// `payload` as one frame with a `!I` header.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(payload);
    f
}

/// A framed hello of protocol `version`, announcing `max_frame`, offering `token`.
pub fn hello(version: u8, max_frame: u32, token: &[u8]) -> Vec<u8> {
    let mut p = b"Hrcmd".to_vec();
    p.push(version);
    p.extend_from_slice(&max_frame.to_be_bytes());
    p.extend_from_slice(token);
    frame(&p)
}

/// Sends `bytes` in one write, then reads until the server closes. Our side stays open,
/// so a server that ran the bytes would answer and wait for more instead of closing.
pub async fn send_raw(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    send_and_read(addr, bytes, false).await
}

/// [`send_raw`], closing our side after sending: the server sees the end of the stream.
pub async fn send_raw_then_close(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    send_and_read(addr, bytes, true).await
}

async fn send_and_read(addr: SocketAddr, bytes: &[u8], close: bool) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    if close {
        s.shutdown().await.unwrap();
    }
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(PROCESS_DEADLINE, s.read_to_end(&mut reply))
        .await
        .expect("server never closed the connection");
    reply
}

/// `rcmd client ADDR ARGS -- echo alive` prints `alive`: the server still serves.
pub async fn still_serves(addr: SocketAddr, args: &[&str]) {
    let addr = addr.to_string();
    let mut all = vec!["client", addr.as_str()];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--", "echo alive"]);
    let r = rcmd(&all, b"").await;
    r.expect_code(0);
    assert_eq!(r.stdout_str(), "alive\n", "{r}");
}

/// What a finished process did, printed in full when an assertion about it fails.
pub struct Run {
    pub command: String,
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Run {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
    /// Asserts the exit code, showing everything about the run if it differs.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, Some(code), "unexpected exit code\n{self}");
        self
    }
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "command: {}\nstatus: {:?}\nstdout: {}\nstderr: {}",
            self.command,
            self.code,
            self.stdout_str(),
            self.stderr_str()
        )
    }
}

pub fn rcmd_bin() -> &'static str {
    sandbox_home();
    env!("CARGO_BIN_EXE_rcmd")
}

/// A home directory of this test process's own, made the process's `HOME` (and every
/// `XDG_*` base directory, and `RCMD_HOME`) the first time a test starts anything: so
/// nothing a test runs writes the user's files, neither the processes it spawns (a
/// browser's profile, tshark's preferences) nor the commands of an in-process server,
/// which inherit this process's environment (a login shell's `.bash_history`). Every
/// helper that starts a server or a process calls it.
pub fn sandbox_home() -> &'static Path {
    SANDBOX_HOME.get_or_init(|| {
        let home = tempfile::Builder::new()
            .prefix("rcmd-test-home.")
            .tempdir()
            .unwrap()
            .keep();
        // Set once, before this process's first child or in-process server, and never
        // changed afterwards.
        std::env::set_var("HOME", &home);
        for (var, dir) in [
            ("XDG_CONFIG_HOME", ".config"),
            ("XDG_CACHE_HOME", ".cache"),
            ("XDG_DATA_HOME", ".local/share"),
            ("XDG_STATE_HOME", ".local/state"),
        ] {
            std::env::set_var(var, home.join(dir));
        }
        std::env::set_var("RCMD_HOME", home.join(".config/rcmd"));
        // SAFETY: registers a plain function, run once as this process exits.
        unsafe { libc::atexit(remove_sandbox_home) };
        home
    })
}

static SANDBOX_HOME: OnceLock<PathBuf> = OnceLock::new();

/// Removes [`sandbox_home`] as the test process exits, so runs leave nothing in /tmp.
extern "C" fn remove_sandbox_home() {
    if let Some(home) = SANDBOX_HOME.get() {
        let _ = std::fs::remove_dir_all(home);
    }
}

pub fn peer(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// Runs a program to completion, feeding it `stdin` (or nothing), with no controlling
/// terminal ([`without_terminal`]). Any rcmd it starts uses an empty configuration
/// directory of the tests' own, never the real `~/.config/rcmd`.
pub async fn run(program: &str, args: &[&str], stdin: &[u8]) -> Run {
    run_env(program, args, stdin, &[]).await
}

/// [`run`] with extra environment variables.
pub async fn run_env(program: &str, args: &[&str], stdin: &[u8], env: &[(&str, &str)]) -> Run {
    run_within(PROCESS_DEADLINE, program, args, stdin, env).await
}

/// [`run_env`] for a program that may take longer than [`PROCESS_DEADLINE`] (a build):
/// `deadline` only keeps a hung one from hanging the suite.
pub async fn run_within(
    deadline: Duration,
    program: &str,
    args: &[&str],
    stdin: &[u8],
    env: &[(&str, &str)],
) -> Run {
    let mut cmd = Command::new(program);
    without_terminal(&mut cmd)
        .env("RCMD_HOME", default_home())
        .envs(env.iter().copied())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let command = format!("{program} {}", shell_words::join(args));
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {command}: {e}"));
    let mut pipe = child.stdin.take().unwrap();
    let input = stdin.to_vec();
    tokio::spawn(async move {
        let _ = pipe.write_all(&input).await;
    });
    let out = tokio::time::timeout(deadline, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{command} did not finish"))
        .unwrap();
    Run {
        command,
        code: out.status.code(),
        stdout: out.stdout,
        stderr: out.stderr,
    }
}

/// Starts `cmd` in a session of its own, with no controlling terminal, as under CI or
/// cron: a client meeting a new server then refuses it instead of asking on `/dev/tty`,
/// so a test behaves the same run from a developer's terminal, and can never wait for an
/// answer typed there. The tests of the question itself give it a terminal of their own
/// (a tmux pane).
pub fn without_terminal(cmd: &mut Command) -> &mut Command {
    // SAFETY: setsid is async-signal-safe, the only kind of call allowed between fork and
    // exec; it touches no memory of the parent's.
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::setsid()?;
            Ok(())
        })
    }
}

/// Runs the built `rcmd` binary.
pub async fn rcmd(args: &[&str], stdin: &[u8]) -> Run {
    run(rcmd_bin(), args, stdin).await
}

/// The built `rcmd` binary as a command to spawn, with the tests' empty configuration
/// directory, no controlling terminal ([`without_terminal`]), and killed if the test
/// drops it.
pub fn rcmd_command() -> Command {
    let mut cmd = Command::new(rcmd_bin());
    without_terminal(&mut cmd)
        .env("RCMD_HOME", default_home())
        .kill_on_drop(true);
    cmd
}

/// A configuration directory that does not exist and that no test creates, so a client
/// started without its own [`RcmdHome`] finds no same-user token.
fn default_home() -> &'static Path {
    static HOME: OnceLock<PathBuf> = OnceLock::new();
    HOME.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        dir.join("rcmd")
    })
}

/// rcmd's configuration directory for one test: the server and clients the test starts
/// through it share it (and so the same-user token), and nothing touches `~/.config`.
pub struct RcmdHome {
    _tmp: tempfile::TempDir,
    path: PathBuf,
}

impl RcmdHome {
    /// A directory that does not exist yet: the first server creates it.
    pub fn new() -> RcmdHome {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("rcmd");
        RcmdHome { _tmp: tmp, path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn token_file(&self) -> PathBuf {
        self.path.join("token")
    }

    /// `rcmd ARGS`, run to completion with this directory.
    pub async fn rcmd(&self, args: &[&str], stdin: &[u8]) -> Run {
        self.rcmd_env(args, stdin, &[]).await
    }

    /// [`RcmdHome::rcmd`] with extra environment variables.
    pub async fn rcmd_env(&self, args: &[&str], stdin: &[u8], env: &[(&str, &str)]) -> Run {
        let home = self.path.to_str().unwrap();
        let mut all = vec![("RCMD_HOME", home)];
        all.extend_from_slice(env);
        run_env(rcmd_bin(), args, stdin, &all).await
    }

    /// Starts `rcmd server ARGS` with this directory (on `--listen 127.0.0.1:0` unless ARGS
    /// say otherwise) and waits until it says where it listens.
    pub async fn server(&self, args: &[&str]) -> ServerProcess {
        self.server_env(args, &[]).await
    }

    /// [`RcmdHome::server`] with extra environment variables.
    pub async fn server_env(&self, args: &[&str], env: &[(&str, &str)]) -> ServerProcess {
        let mut cmd = rcmd_command();
        cmd.env("RCMD_HOME", &self.path)
            .envs(env.iter().copied())
            .arg("server");
        if !args.contains(&"--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        cmd.args(args);
        ServerProcess::start(cmd).await
    }
}

/// A running `rcmd server` process. Its log (stderr) is collected as it is written, so
/// the server never blocks on a full pipe.
pub struct ServerProcess {
    pub child: tokio::process::Child,
    pub addr: SocketAddr,
    /// What it printed up to and including the line saying where it listens and the
    /// settings that follow it.
    pub banner: Vec<String>,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    logger: tokio::task::JoinHandle<()>,
}

impl ServerProcess {
    /// Spawns `cmd` (an `rcmd server`) and waits for its "listening on" line.
    pub async fn start(mut cmd: Command) -> ServerProcess {
        let mut child = cmd.stderr(Stdio::piped()).spawn().unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut banner = Vec::new();
        let addr = loop {
            let line = lines.next_line().await.unwrap().unwrap_or_else(|| {
                panic!("the server exited before listening; it said: {banner:#?}")
            });
            banner.push(line.clone());
            if line.starts_with("rcmd server listening on") {
                break line
                    .split_whitespace()
                    .find_map(|w| w.parse().ok())
                    .unwrap_or_else(|| panic!("no address in {line:?}"));
            }
        };
        // The settings follow on lines of their own, in parentheses.
        while !banner.last().is_some_and(|l| l.ends_with(')')) {
            let line = lines.next_line().await.unwrap().unwrap_or_else(|| {
                panic!("the server's settings never ended; it said: {banner:#?}")
            });
            banner.push(line);
        }
        let log: std::sync::Arc<std::sync::Mutex<Vec<String>>> = std::sync::Arc::default();
        let sink = std::sync::Arc::clone(&log);
        let logger = tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().unwrap().push(line);
            }
        });
        ServerProcess {
            child,
            addr,
            banner,
            log,
            logger,
        }
    }

    /// Sends SIGTERM, waits for the server to exit and returns everything it logged after
    /// its banner.
    pub async fn stop(mut self) -> Vec<String> {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id().unwrap() as i32, libc::SIGTERM) };
        tokio::time::timeout(PROCESS_DEADLINE, self.child.wait())
            .await
            .expect("the server did not exit after SIGTERM")
            .unwrap();
        tokio::time::timeout(PROCESS_DEADLINE, &mut self.logger)
            .await
            .expect("the server's log never ended")
            .unwrap();
        let log = self.log.lock().unwrap().clone();
        log
    }
}

/// Pids of processes whose command line, arguments joined by spaces, contains `part`.
pub fn pids_containing(part: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let line = String::from_utf8_lossy(&raw).replace('\0', " ");
        if line.contains(part) && pid != std::process::id() {
            pids.push(pid);
        }
    }
    pids
}

/// Pids of processes whose whole command line, arguments joined by spaces, is `cmdline`.
pub fn pids_running(cmdline: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = raw
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.join(" ") == cmdline {
            pids.push(pid);
        }
    }
    pids
}

/// Waits until `condition` holds, checking it every few milliseconds, or panics with
/// `what` at the deadline. For conditions no event announces, such as another
/// process's descendant having exited.
pub async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    eventually(what, || std::future::ready(condition())).await;
}

/// [`wait_until`] for a check that must itself do I/O (connect, ask, read the answer).
pub async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    mut attempt: impl FnMut() -> F,
) {
    let deadline = tokio::time::Instant::now() + PROCESS_DEADLINE;
    while !attempt().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A string unlikely to appear in any other process's command line.
pub fn unique_marker() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{}.{:09}", 300 + std::process::id() % 100, nanos)
}

/// Starts `n` servers in this test's runtime on distinct loopback addresses, 127.0.0.2 and
/// up, all on one port: the port is whatever 127.0.0.2:0 got, and an address where that
/// port is taken is skipped. `config` says how the server at each address behaves.
pub async fn start_servers_on_one_port(
    n: usize,
    config: impl Fn(std::net::Ipv4Addr) -> ServerConfig,
) -> (u16, Vec<std::net::Ipv4Addr>) {
    start_servers_with_send_buffer(n, None, config).await
}

/// [`start_servers_on_one_port`], with each connection's socket send buffer set to
/// `send_buffer` bytes (the kernel doubles it): a small one makes the server's writes
/// find the socket full far more often, as a busy client's would.
pub async fn start_servers_with_send_buffer(
    n: usize,
    send_buffer: Option<u32>,
    config: impl Fn(std::net::Ipv4Addr) -> ServerConfig,
) -> (u16, Vec<std::net::Ipv4Addr>) {
    sandbox_home();
    let bind = |addr: std::net::SocketAddr| -> std::io::Result<TcpListener> {
        let socket = tokio::net::TcpSocket::new_v4()?;
        if let Some(size) = send_buffer {
            // Accepted connections inherit the listener's buffer sizes.
            socket.set_send_buffer_size(size)?;
        }
        socket.bind(addr)?;
        socket.listen(1024)
    };
    let first = bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let port = first.local_addr().unwrap().port();
    let mut addrs = Vec::new();
    let mut listeners = vec![first];
    for last in 3..=254u8 {
        if listeners.len() == n {
            break;
        }
        if let Ok(l) = bind((std::net::Ipv4Addr::new(127, 0, 0, last), port).into()) {
            listeners.push(l);
        }
    }
    assert_eq!(listeners.len(), n, "not enough free loopback addresses");
    for listener in listeners {
        let std::net::SocketAddr::V4(addr) = listener.local_addr().unwrap() else {
            unreachable!("bound to IPv4");
        };
        tokio::spawn(serve(listener, config(*addr.ip()), std::future::pending()));
        addrs.push(*addr.ip());
    }
    (port, addrs)
}

/// The subcommands a help page lists under "Commands:", without clap's own `help`.
pub fn subcommands(page: &str) -> Vec<String> {
    page.lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.is_empty())
        // A name starts two spaces in; wrapped descriptions are indented further.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}
