//! `rcmd server`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::tls::ServerTlsArgs;
use super::token::{ServerToken, TokenArgs};
use super::{init_logging, seconds, Failure, WireArgs};
use crate::auth::{check_exposure, check_plaintext};
use crate::exec::ExecMode;
use crate::server::{self, Limits, ServerConfig};
use crate::wire::{Order, Protocol};

#[derive(Debug, Args)]
pub(super) struct ServerArgs {
    /// Address to listen on (port 9000 unless given); anything but loopback needs a token.
    /// Started by systemd with a socket (socket activation), it listens on that instead
    /// [default: 127.0.0.1:9000]
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,

    #[command(flatten)]
    wire: WireArgs,

    /// Run each command line without a shell: split it into words (shell quoting rules)
    /// and start the program directly
    #[arg(long)]
    exec: bool,

    #[command(flatten)]
    token: TokenArgs,

    #[command(flatten)]
    tls: ServerTlsArgs,

    /// Require no token (not even the same-user one). Anyone who can reach the port
    /// (on loopback: every local user, and web pages in a local browser) can run any
    /// command as this user
    #[arg(long)]
    allow_unauthenticated: bool,

    /// Most authenticated connections served at once; more are refused with a message
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_conns)]
    max_conns: usize,

    /// Most connections still authenticating at once, in all; past it the source holding
    /// the most loses its oldest
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_unauthenticated)]
    max_unauthenticated: usize,

    /// Most connections still authenticating at once from one source (a local user for a
    /// peer on this machine, else an IPv4 address or IPv6 /64); more wait their turn
    #[arg(long, value_name = "N",
          default_value_t = Limits::default().max_unauthenticated_per_source)]
    max_unauthenticated_per_source: usize,

    /// Kill a command (its whole process group) after this many seconds; the client exits 124
    #[arg(long, value_name = "SECS", value_parser = seconds)]
    timeout: Option<Duration>,

    /// Close a connection that sends nothing for this long while no command runs (0: never)
    #[arg(long, value_name = "SECS", value_parser = seconds, default_value = "600")]
    idle_timeout: Duration,

    /// Seconds a new connection has to send its hello and token
    #[arg(long, value_name = "SECS", value_parser = seconds, default_value = "10")]
    auth_timeout: Duration,

    /// On SIGINT, SIGTERM, SIGHUP or SIGQUIT, seconds running commands get to finish
    /// before they are killed
    #[arg(long, value_name = "SECS", value_parser = seconds, default_value = "10")]
    grace: Duration,

    /// Most output one reply may collect in classic and json-header mode, which must know
    /// a reply's length before sending it; past it the command is killed and the client
    /// told why. Classic is also bound by what --header can describe
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().max_spool)]
    max_spool: u64,

    /// Which stream a reply sends first in length-ack, classic, struct-ack and json-header,
    /// for the copies of the tutorial that differ (default: stderr-first)
    #[arg(long, value_enum, value_name = "ORDER")]
    order: Option<Order>,

    /// Show every frame on stderr as it passes: direction, header bytes in hex, their
    /// struct decode, the tag and a preview
    #[arg(long)]
    trace: bool,

    /// Let background processes a command started live on after it ends, as ssh does
    /// (by default everything a command started is killed when it ends)
    #[arg(long)]
    allow_detach: bool,

    /// Directory commands run in, and that a client's --cwd is relative to
    /// [default: this user's home, as with ssh]
    #[arg(long, value_name = "DIR")]
    workdir: Option<PathBuf>,

    /// Environment variables clients may set with -e (`*` and `?` match), as sshd's
    /// AcceptEnv; repeat it or separate names with spaces [default: LANG LC_*]
    #[arg(long, value_name = "PATTERN")]
    accept_env: Vec<String>,

    /// Copy command output through memory instead of splicing it from the command's
    /// pipe into the socket (framed mode in the clear; TLS always copies)
    #[arg(long)]
    no_splice: bool,

    /// Splice output only when at least this many bytes of it wait in the command's pipe;
    /// smaller pieces are copied, which costs fewer system calls
    #[arg(long, value_name = "BYTES", default_value_t = server::SPLICE_MIN)]
    splice_min: usize,
}

pub(super) fn run(args: ServerArgs) -> Result<i32, Failure> {
    // Take RCMD_TOKEN out of this process's environment before anything else, so no
    // command the server runs can inherit the token. Still a single thread here (the
    // runtime starts below), so nothing reads the environment while it changes.
    let env_token = std::env::var("RCMD_TOKEN").ok();
    std::env::remove_var("RCMD_TOKEN");
    // The kernel keeps the environment the process started with, token included, in
    // /proc/PID/environ, readable by every process of the same user: the commands we run
    // among them. Not dumpable, this process's /proc entries (environ, memory, fds) are
    // closed to them; root still sees them.
    // SAFETY: a flag on this process.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
    let fail = |e: &dyn std::fmt::Display| Failure::new(e);
    // What systemd passed, taken while there is still one thread (it changes the
    // environment) and before the descriptors are closed to commands.
    let passed = crate::systemd::take_listener().map_err(|e| fail(&e))?;
    let notifier =
        crate::systemd::Notifier::from_env().map_err(|e| fail(&format!("NOTIFY_SOCKET: {e}")))?;
    if passed.is_some() && args.listen.is_some() {
        return Err(Failure::new(
            "--listen cannot be used when systemd passes the socket to listen on",
        ));
    }
    close_inherited_descriptors();
    init_logging("rcmd=info");
    // Room for a socket per connection and the pipes of every command they run.
    let command_nofile = crate::exec::fd_limit::raise().unwrap_or_else(|e| {
        tracing::warn!("cannot raise the open-file limit (commands may fail under load): {e}");
        None
    });
    let mut wire = args.wire.wire();
    if let Some(order) = args.order {
        if matches!(wire.protocol, Protocol::Framed | Protocol::Naive) {
            // A usage error, as clap's own are: 255, not a server that failed to start.
            return Err(Failure::new(format!(
                "--order applies to length-ack, classic, struct-ack and json-header; {} sends each \
                     stream as it comes",
                wire.protocol.name()
            )));
        }
        wire.order = order;
    }
    let token = args
        .token
        .for_server(env_token, wire.protocol, args.allow_unauthenticated)
        .map_err(|e| fail(&e))?;
    let tls = args.tls.setup(wire.protocol).map_err(|e| fail(&e))?;
    if let Some(file) = tls.as_ref().and_then(|t| t.tls.authorized_keys_file()) {
        // Where `rcmd copy-id` adds a key: the commands we run inherit it. Still a single
        // thread here (the runtime starts below).
        std::env::set_var("RCMD_AUTHORIZED_KEYS", file);
    }
    let workdir = match args.workdir {
        Some(dir) => {
            if !dir.is_dir() {
                return Err(fail(&format!(
                    "--workdir {}: not a directory",
                    dir.display()
                )));
            }
            Some(dir)
        }
        None => crate::exec::home_dir().filter(|h| h.is_dir()),
    };
    let defaults = ServerConfig::new(wire.protocol);
    let accept_env = if args.accept_env.is_empty() {
        defaults.accept_env
    } else {
        args.accept_env
            .iter()
            .flat_map(|p| p.split_whitespace().map(String::from))
            .collect()
    };
    let config = ServerConfig {
        wire,
        exec: if args.exec {
            ExecMode::Direct
        } else {
            ExecMode::Shell
        },
        token: token.token().cloned(),
        limits: Limits {
            max_conns: args.max_conns.max(1),
            max_unauthenticated: args.max_unauthenticated.max(1),
            max_unauthenticated_per_source: args.max_unauthenticated_per_source.max(1),
            command_timeout: args.timeout,
            idle_timeout: Some(args.idle_timeout).filter(|d| !d.is_zero()),
            auth_timeout: args.auth_timeout,
            grace: args.grace,
            max_spool: args.max_spool,
            ..Limits::default()
        },
        // The helper that forks every command's supervisor is this same executable;
        // /proc/self/exe still works if the file was replaced while the server runs.
        supervisor: Some(
            crate::exec::Spawner::new("/proc/self/exe").command_nofile(command_nofile),
        ),
        allow_detach: args.allow_detach,
        workdir,
        accept_env,
        version: defaults.version,
        trace: args.trace,
        tls: tls.as_ref().map(|t| t.tls.clone()),
        splice: !args.no_splice,
        splice_min: args.splice_min,
    };
    if let Some(room) = crate::exec::fd_limit::room_for_commands() {
        if room < config.limits.max_conns as u64 {
            tracing::warn!(
                "the open-file limit leaves room for about {room} commands at once, fewer \
                 than --max-conns {}: raise it (ulimit -n, or LimitNOFILE= in a unit)",
                config.limits.max_conns
            );
        }
    }
    let runtime = tokio::runtime::Runtime::new().map_err(|e| fail(&e))?;
    runtime.block_on(async {
        // Decide on exposure before binding anything: a refused address is never opened.
        // A bare address listens on the port clients assume, 9000. A socket systemd
        // passed is already open; it is checked the same way, before serving on it.
        let listen = args.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let addrs: Vec<_> = match &passed {
            Some(socket) => vec![socket.local_addr().map_err(|e| fail(&e))?],
            None => tokio::net::lookup_host(crate::wire::with_default_port(listen))
                .await
                .map_err(|e| fail(&format!("cannot resolve {listen}: {e}")))?
                .collect(),
        };
        if args.tls.plaintext() && config.wire.protocol == crate::wire::Protocol::Framed {
            check_plaintext(&addrs, args.allow_unauthenticated).map_err(|e| fail(&e))?;
        }
        let warning = check_exposure(
            &addrs,
            config.wire.protocol,
            config.token.is_some() || args.tls.requires_key(),
            args.allow_unauthenticated,
        )
        .map_err(|e| fail(&e))?;
        let activated = passed.is_some();
        let listener = match passed {
            Some(socket) => tokio::net::TcpListener::from_std(socket).map_err(|e| fail(&e))?,
            None => tokio::net::TcpListener::bind(&addrs[..])
                .await
                .map_err(|e| fail(&format!("cannot listen on {listen}: {e}")))?,
        };
        let local = listener.local_addr().map_err(|e| fail(&e))?;
        if let Some(warning) = warning {
            eprintln!("{}", crate::text::message("rcmd: ", &warning));
        }
        if let ServerToken::SameUser {
            path,
            created: true,
            ..
        } = &token
        {
            let created = format!(
                "created the token file {}: clients run by this user read it; \
                 another machine gets in with `rcmd copy-id` (see README)",
                path.display()
            );
            eprintln!("{}", crate::text::message("rcmd: ", &created));
        }
        if let Some(setup) = &tls {
            if let Some(path) = &setup.created {
                let created = format!(
                    "created the server identity {}: clients check its fingerprint",
                    path.display()
                );
                eprintln!("{}", crate::text::message("rcmd: ", &created));
            }
            eprintln!("rcmd server identity: {}", setup.tls.fingerprint);
        }
        let auth = match &token {
            _ if args.tls.requires_key() => ", client key required".to_string(),
            ServerToken::Given(_) => ", token required".to_string(),
            ServerToken::SameUser { path, .. } => {
                format!(", token required: this user's, in {}", path.display())
            }
            ServerToken::None => String::new(),
        };
        let over = if config.tls.is_some() {
            " over TLS 1.3"
        } else {
            ""
        };
        // What delimits a reply, in the mode's own terms: length-ack sends the length as
        // text and naive sends nothing, whatever --header says.
        let framing = match config.wire.protocol {
            Protocol::LengthAck => "length as text".to_string(),
            Protocol::Naive => "no header".to_string(),
            _ => format!("header {}", config.wire.header),
        };
        // The address ends its line, the fifth word, for scripts that start a server on
        // port 0; the settings follow in 80 columns, however long the token's path.
        let activated = if activated {
            ", socket from systemd"
        } else {
            ""
        };
        let settings = format!(
            "(protocol {}{over}, {framing}{auth}{activated})",
            config.wire.protocol.name()
        );
        let containment = config
            .supervisor
            .as_ref()
            .map_or_else(|| "its process group".to_string(), |s| s.containment());
        // Handlers in place before anyone is told the server is up: a SIGTERM sent the
        // moment it says so must stop it gracefully, not kill it.
        let shutdown = shutdown_signal();
        eprintln!(
            "rcmd server listening on {local}\n{}\n{}",
            crate::text::wrap(&settings, crate::text::COLUMNS, "  ", 2),
            crate::text::wrap(
                &format!("(containment: {containment})"),
                crate::text::COLUMNS,
                "  ",
                2
            )
        );
        // Ready: the socket accepts. systemd (Type=notify) starts what is ordered after
        // the service only now.
        notify(&notifier, &format!("READY=1\nSTATUS=listening on {local}"));
        let stopping = async {
            shutdown.await;
            notify(&notifier, "STOPPING=1");
        };
        server::serve(listener, config, stopping).await;
        Ok(0)
    })
}

/// Where `rcmd server` listens unless told otherwise or given a socket.
const DEFAULT_LISTEN: &str = "127.0.0.1:9000";

/// Tells systemd `state`, when it asked to be told; a failure is logged, never fatal: the
/// server works the same without a supervisor listening.
fn notify(notifier: &Option<crate::systemd::Notifier>, state: &str) {
    if let Some(notifier) = notifier {
        if let Err(e) = notifier.notify(state) {
            tracing::warn!("cannot notify systemd (NOTIFY_SOCKET): {e}");
        }
    }
}

/// Completes on SIGINT, SIGTERM, SIGHUP (the terminal the server runs in was closed) or
/// SIGQUIT: each is a graceful stop, so no command is left behind by any of them. The
/// handlers are installed when this is called, not when the future is first polled.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let install = |kind| signal(kind).expect("installing a signal handler");
    let mut term = install(SignalKind::terminate());
    let mut hup = install(SignalKind::hangup());
    let mut quit = install(SignalKind::quit());
    let mut int = install(SignalKind::interrupt());
    async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
            _ = hup.recv() => {}
            _ = quit.recv() => {}
        }
    }
}

/// Marks every descriptor this process inherited beyond stdin, stdout and stderr
/// close-on-exec, so commands do not inherit what the shell that started the server had
/// open (as sshd closes them at start).
fn close_inherited_descriptors() {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: F_SETFD on a descriptor number; one that closed since (the directory's
        // own) fails harmlessly.
        unsafe {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
}
