//! `rcmd client`.

use std::io::IsTerminal;

use clap::Args;
use clap_complete::engine::ArgValueCandidates;

use super::fanout::{self, FanoutArgs};
use super::tls::ClientTlsArgs;
use super::token::TokenArgs;
use super::{init_logging, Failure, WireArgs};
use crate::client::{self, terminal, ClientConfig, Input, Output, Session, Tty};
use crate::settings::HostSettings;
use crate::wire::Protocol;

#[derive(Debug, Clone, Args)]
pub(super) struct ClientArgs {
    /// Server address: HOST or HOST:PORT (port 9000 unless given), where HOST is a name,
    /// an IPv4 address, [IPv6], or an alias that `Host` lines in the settings file
    /// (`config` in rcmd's configuration directory, as ssh_config) give a HostName, Port
    /// and other settings. USER@HOST is accepted only when USER is the user running this
    /// client, and refused otherwise: rcmd has no login, commands run as the user who
    /// started `rcmd server` there
    #[arg(value_name = "[USER@]HOST[:PORT]", required_unless_present = "hosts",
          add = ArgValueCandidates::new(super::completions::host_candidates))]
    addr: Option<String>,

    #[command(flatten)]
    fanout: FanoutArgs,

    #[command(flatten)]
    wire: WireArgs,

    #[command(flatten)]
    token: TokenArgs,

    #[command(flatten)]
    tls: ClientTlsArgs,

    /// Show every frame on stderr as it passes: direction, header bytes in hex, their
    /// struct decode, the tag and a preview
    #[arg(long)]
    trace: bool,

    /// What to answer to each length in --protocol length-ack: the word the server
    /// checks for (`if data == b'recv_ready'`), when a copy of the tutorial uses another
    /// [default: recv_ready]
    #[arg(long, value_name = "WORD", value_parser = ack_word)]
    ack: Option<String>,

    /// Give the command an empty stdin instead of forwarding ours (as ssh -n)
    #[arg(short = 'n')]
    no_stdin: bool,

    /// Run the command in a pseudo-terminal on the server (as ssh -t): for top, vi, a
    /// REPL. Without a command, this is what happens at a terminal anyway
    #[arg(short = 't', conflicts_with = "no_tty")]
    tty: bool,

    /// Never ask for a pseudo-terminal (as ssh -T); without a command at a terminal,
    /// read command lines at a prompt instead of opening a remote shell
    #[arg(short = 'T')]
    no_tty: bool,

    /// Set NAME to VALUE for the command (repeatable); `-e NAME` sends our own value. The
    /// server accepts only the names its --accept-env allows (by default LANG, LC_*)
    #[arg(short = 'e', value_name = "NAME[=VALUE]")]
    env: Vec<String>,

    /// Directory to run the command in, on the server (relative to its --workdir, by
    /// default its user's home)
    #[arg(long, value_name = "DIR")]
    cwd: Option<String>,

    /// Copy output and input through memory instead of splicing them between the socket
    /// and stdout or stdin (when those are pipes or files, and the wire is in the clear)
    #[arg(long)]
    no_splice: bool,

    /// Command to run remotely; without one, each line of standard input is a command.
    /// Unlike ssh, which joins the words with spaces for the remote shell to split and
    /// expand again, rcmd quotes each word when there are several, so they arrive as typed
    /// (`echo '$HOME'` prints $HOME). A single word is the command line itself, for the
    /// remote shell: `'ls | wc -l'` runs a pipeline there
    #[arg(
        value_name = "CMD",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    command: Vec<String>,
}

/// An acknowledgement word: not empty (an empty send reaches no one, and the server would
/// wait forever) and short enough for the server's one read.
fn ack_word(word: &str) -> Result<String, String> {
    match word.len() {
        0 => Err("the word cannot be empty: the server waits for at least one byte".into()),
        1..=64 => Ok(word.to_string()),
        n => Err(format!("{n} bytes; at most 64")),
    }
}

pub(super) fn run(mut args: ClientArgs) -> Result<i32, Failure> {
    init_logging("rcmd=warn");
    let (addr, command) = fanout::positionals(
        &mut args.fanout,
        args.addr.take(),
        std::mem::take(&mut args.command),
    )?;
    let addr = match addr {
        Some(addr) => Some(apply_settings(&mut args, &addr)?),
        None => None,
    };
    let at_terminal = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    // No command at a terminal: a remote login shell, as `ssh host` opens; -T asks for
    // the line-by-line prompt instead.
    let login_shell = command.is_empty() && at_terminal && !args.no_tty;
    let want_tty = args.tty || login_shell;
    if let Some(addr) = &addr {
        args.tls.check_plaintext(addr).map_err(Failure::new)?;
    }
    let config = client_config(&args, want_tty)?;
    let wire = config.wire;
    if let Some(list) = &args.fanout.hosts {
        if args.tty {
            return Err(Failure::new(
                "-t gives one command a terminal; with -H, many commands would share ours",
            ));
        }
        let check = |addr: &str| args.tls.check_plaintext(addr);
        // A host the settings file gives its own Fingerprint, TokenFile, ... is reached
        // with those, under the command line's, as `rcmd client ALIAS` would be.
        let configure = |own: &HostSettings| {
            let mut args = args.clone();
            apply_host_settings(&mut args, own.clone());
            client_config(&args, false)
        };
        return fanout::run(
            &args.fanout,
            list,
            &command_line(&command),
            config,
            &configure,
            &check,
        );
    }
    let addr = addr.expect("clap requires HOST:PORT without -H");
    let input = if login_shell {
        Input::one(Vec::new()).with_stdin()
    } else if command.is_empty() {
        Input::stdin(format!("{addr}> "))
    } else {
        let one = Input::one(command_line(&command).into_bytes());
        if args.no_stdin || wire.protocol != Protocol::Framed {
            one
        } else {
            one.with_stdin()
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Failure::new)?;
    let mut out = Output::terminal();
    // Every key goes to the remote terminal, Ctrl-C included, but only once the server
    // is trusted (any first-contact question answered in cooked mode); restored on every
    // way out (the guard's drop, and a panic hook for a panic).
    let mut raw = None;
    let mut go_raw = || {
        if want_tty && std::io::stdin().is_terminal() {
            raw = terminal::RawMode::enter();
        }
    };
    let result = runtime.block_on(client::run_then(
        &addr,
        &config,
        input,
        &mut out,
        &mut go_raw,
    ));
    let was_raw = raw.is_some();
    drop(raw);
    // Threads still blocked reading our stdin must not keep the process alive.
    runtime.shutdown_background();
    match result {
        Ok(code) => Ok(code),
        // The remote shell's last line is still on the screen: say why on a line of its own.
        Err(e) if was_raw => {
            eprintln!();
            Err(Failure::new(e))
        }
        // Our output was closed (`| head`): end quietly, as a command killed by SIGPIPE.
        Err(e) if e.is_local_broken_pipe() => Ok(super::SIGPIPE_STATUS),
        Err(e) => Err(Failure::new(e)),
    }
}

/// How to reach a server, from the command line (with the settings file's values for the
/// host applied to `args` already); `want_tty` asks for a terminal there.
fn client_config(args: &ClientArgs, want_tty: bool) -> Result<ClientConfig, Failure> {
    let wire = args.wire.wire();
    if args.token.given() && wire.protocol != Protocol::Framed {
        return Err(Failure::new(format!(
            "the {} mode has no way to carry a token",
            wire.protocol.name()
        )));
    }
    if args.ack.is_some() && !wire.protocol.waits_for_ack() {
        return Err(Failure::new(format!(
            "--ack is the answer to a length in --protocol length-ack or struct-ack; the {} \
             mode has none",
            wire.protocol.name()
        )));
    }
    let (token, same_user_token) = args
        .token
        .for_client(std::env::var("RCMD_TOKEN").ok(), wire.protocol)
        .map_err(Failure::new)?;
    if (want_tty || !args.env.is_empty() || args.cwd.is_some()) && wire.protocol != Protocol::Framed
    {
        return Err(Failure::new(format!(
            "-t, -e and --cwd need --protocol framed; the {} mode only carries command lines",
            wire.protocol.name()
        )));
    }
    let session = Session {
        env: args
            .env
            .iter()
            .filter_map(|spec| env_pair(spec).transpose())
            .collect::<Result<_, _>>()?,
        cwd: args.cwd.clone().map(String::into_bytes),
        tty: want_tty.then(|| {
            let (rows, cols) = terminal::window_size().unwrap_or((24, 80));
            Tty {
                rows,
                cols,
                term: std::env::var("TERM")
                    .unwrap_or_else(|_| "dumb".into())
                    .into_bytes(),
            }
        }),
        forward_signals: true,
    };
    if args.tls.plaintext() && token.as_ref().is_some_and(TokenArgs::is_same_user) {
        return Err(Failure::new(SAME_USER_IN_THE_CLEAR));
    }
    // Many hosts at once cannot each ask on the one terminal.
    let tls = args
        .tls
        .setup(wire.protocol, args.fanout.hosts.is_none())
        .map_err(Failure::new)?;
    let config = ClientConfig {
        wire,
        token,
        same_user_token,
        tls,
        // With many hosts one silent host must not hold up the rest: 10 s by default. One
        // host gets as long as a person waits for ssh's banner.
        connect_timeout: Some(args.fanout.connect_timeout.unwrap_or(
            if args.fanout.hosts.is_some() {
                fanout::FANOUT_CONNECT_TIMEOUT
            } else {
                client::DEFAULT_CONNECT_TIMEOUT
            },
        )),
        session,
        // Only a single host's output goes straight to our stdout.
        splice_stdout: args.fanout.hosts.is_none() && !args.no_splice,
        splice_stdin: args.fanout.hosts.is_none() && !args.no_splice,
        trace: args.trace,
        ack: args
            .ack
            .clone()
            .map_or(crate::wire::tutorial::ACK.to_vec(), String::into_bytes),
        ..ClientConfig::new(wire.protocol)
    };
    Ok(config)
}

/// Why this user's own token is never sent with --plaintext, even when given explicitly.
const SAME_USER_IN_THE_CLEAR: &str = "refusing to send this user's own token (the same-user \
     token file in rcmd's configuration directory) with --plaintext: nothing proves who \
     listens on that port, and whoever does (another local user who got there first) would \
     read the token and could then run commands as you, over TLS too. Leave out --plaintext \
     (TLS is the default, and your own server needs no token flag); for a server that must \
     run --plaintext, start it with a token of its own (--token-file FILE) and give that \
     one here";

/// The one host's address as rcmd connects to it, with the settings file's values for it
/// filled in where the command line gave none: `HostName` and `Port` (after `:PORT` and
/// `-p`), and the rest as [`apply_host_settings`] says.
fn apply_settings(args: &mut ClientArgs, addr: &str) -> Result<String, Failure> {
    let addr = login_user(addr)?;
    let (alias, port) = split_port(addr);
    let mut s = super::routes::settings()?.for_host(&alias);
    let host = s.host_name.take().unwrap_or(alias);
    let port = port.or(args.fanout.port).or(s.port);
    let addr = match port {
        Some(port) if host.contains(':') && !host.starts_with('[') => format!("[{host}]:{port}"),
        Some(port) => format!("{host}:{port}"),
        None => host,
    };
    apply_host_settings(args, s);
    Ok(addr)
}

/// The settings file's `Fingerprint`, `TokenFile`, `IdentityFile`, `ConnectTimeout`,
/// `SendEnv`, `SetEnv` and wire options for one host, where the command line gave none.
fn apply_host_settings(args: &mut ClientArgs, s: HostSettings) {
    args.wire.default_to(&s);
    args.tls.default_fingerprint(s.fingerprint);
    args.tls.default_key(s.identity_file);
    if std::env::var_os("RCMD_TOKEN").is_none() {
        args.token.default_file(s.token_file);
    }
    args.fanout.connect_timeout = args.fanout.connect_timeout.or(s.connect_timeout);
    for pattern in &s.send_env {
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if crate::settings::glob(pattern, &name) && !args.env.iter().any(|e| e == &*name) {
                args.env.push(name.into_owned());
            }
        }
    }
    args.env.extend(s.set_env);
}

/// `host` and its port, if `addr` names one (`host:port`, `[v6]:port`).
fn split_port(addr: &str) -> (String, Option<u16>) {
    let full = crate::wire::with_default_port(addr);
    if full != addr {
        return (addr.to_string(), None);
    }
    match addr.rsplit_once(':') {
        Some((host, port)) => (
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port.parse().ok(),
        ),
        None => (addr.to_string(), None),
    }
}

/// `user@host` as an ssh user types it. rcmd has no login: commands run as whoever
/// started the server, so a user name is accepted only when it is ours (the user a
/// server started by the same user runs as), and otherwise refused saying so.
fn login_user(addr: &str) -> Result<&str, Failure> {
    let Some((user, host)) = addr.split_once('@') else {
        return Ok(addr);
    };
    if local_user().as_deref() == Some(user) {
        return Ok(host);
    }
    Err(Failure::new(format!(
        "{addr}: rcmd has no login user: commands run as the user who started `rcmd \
             server` on {host}. Leave out `{user}@`; to run as {user}, start the server there \
             as {user}"
    )))
}

/// The name of the user this process runs as.
fn local_user() -> Option<String> {
    let user = nix::unistd::User::from_uid(nix::unistd::geteuid()).ok()??;
    Some(user.name)
}

/// One variable for the remote command: its name and value.
type EnvPair = (Vec<u8>, Vec<u8>);

/// `NAME=VALUE`, or `NAME` for our own value of it (`None` when it is not set here).
fn env_pair(spec: &str) -> Result<Option<EnvPair>, Failure> {
    use std::os::unix::ffi::OsStrExt;
    match spec.split_once('=') {
        Some((name, value)) if !name.is_empty() => {
            Ok(Some((name.as_bytes().to_vec(), value.as_bytes().to_vec())))
        }
        Some(_) => Err(Failure::new(format!("-e {spec}: no variable name"))),
        // As ssh's SendEnv: a variable not set here is simply not sent.
        None => Ok(std::env::var_os(spec)
            .map(|value| (spec.as_bytes().to_vec(), value.as_bytes().to_vec()))),
    }
}

/// The command line for the words after `HOST:PORT`. Several words are each quoted, so
/// `printf '%s|' 'a b' c` arrives as typed; a single word is already a command line
/// (`'seq 10 | wc -l'`), as ssh users write it.
fn command_line(words: &[String]) -> String {
    match words {
        [line] => line.clone(),
        words => shell_words::join(words),
    }
}

#[cfg(test)]
mod tests {
    use super::command_line;

    #[test]
    fn several_words_are_quoted_one_is_a_command_line() {
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            command_line(&words(&["printf", "%s|", "a b", "c"])),
            "printf '%s|' 'a b' c"
        );
        assert_eq!(command_line(&words(&["seq 10 | wc -l"])), "seq 10 | wc -l");
    }
}
