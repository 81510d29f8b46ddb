//! `rcmd client -H LIST`: the fan-out options, and the one rule that keeps a second host
//! from being mistaken for a command.

use clap::builder::TypedValueParser;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use clap_complete::engine::ArgValueCompleter;

use super::seconds;
use super::Failure;
use crate::client::ClientConfig;
use crate::fanout::{self, hosts, Mode, Options, Outcome};
use crate::settings::HostSettings;

/// How long each host's connection may take unless --connect-timeout says otherwise.
pub(super) const FANOUT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where these options show in `--help`.
const HEADING: &str = "Many hosts (rcmd client -H LIST [OPTIONS] -- CMD)";

#[derive(Debug, Clone, Args)]
pub(super) struct FanoutArgs {
    /// Run on every host in LIST at once, instead of HOST:PORT. LIST is comma-separated:
    /// web[1-3], node[01-10,15] and 127.0.0.[2-51] are ranges; ^FILE reads hosts from FILE;
    /// @GROUP is a line `GROUP: LIST` in the hosts file of $RCMD_HOME (else
    /// $XDG_CONFIG_HOME/rcmd, else ~/.config/rcmd); a host may end in :PORT. -w is pdsh's
    /// spelling; a LIST that cannot be one host (@GROUP, a range, a comma) needs neither
    #[arg(help_heading = HEADING, short = 'H', visible_short_alias = 'w', long = "hosts",
          value_name = "LIST",
          add = ArgValueCompleter::new(super::completions::host_list_candidates))]
    pub hosts: Option<String>,

    /// Leave out these hosts (same syntax as -H; without :PORT, on every port)
    #[arg(help_heading = HEADING, short = 'x', long, value_name = "LIST", requires = "hosts",
          add = ArgValueCompleter::new(super::completions::host_list_candidates))]
    exclude: Option<String>,

    /// Port for the host (or the hosts in LIST) written without one [default: 9000]
    #[arg(help_heading = HEADING, short = 'p', long, value_name = "PORT",
          value_parser = super::Whole { min: 1, max: 65535 }.map(|v| v as u16))]
    pub port: Option<u16>,

    /// Run on at most N hosts at once
    #[arg(help_heading = HEADING, short = 'f', long, value_name = "N", default_value_t = 64,
          value_parser = super::Whole { min: 1, max: u32::MAX.into() }.map(|v| v as u32))]
    fanout: u32,

    /// After the first host fails, start no more and interrupt those running
    #[arg(help_heading = HEADING, short = 'k', long, requires = "hosts")]
    fail_fast: bool,

    /// Print output lines without the `HOST: ` prefix
    #[arg(help_heading = HEADING, short = 'N', long, requires = "hosts")]
    no_prefix: bool,

    /// Print nothing while running; then each distinct output once, headed by its hosts
    /// (as `dshbak -c`)
    #[arg(help_heading = HEADING, long, requires = "hosts", conflicts_with_all = ["json", "output_dir"])]
    collate: bool,

    /// Print one JSON object per host as it finishes: host, status or error, stdout,
    /// stderr, seconds
    #[arg(help_heading = HEADING, long, requires = "hosts", conflicts_with = "output_dir")]
    json: bool,

    /// Write HOST.out, HOST.err and HOST.status in DIR instead of printing output
    #[arg(help_heading = HEADING, long, value_name = "DIR", requires = "hosts")]
    output_dir: Option<PathBuf>,

    /// Give up when connecting, the TLS handshake or the server's hello takes longer
    /// than this many seconds (never counting a question asked of you) [default: 30, or
    /// 10 per host with -H]
    #[arg(long, value_name = "SECS", value_parser = seconds)]
    pub connect_timeout: Option<Duration>,

    /// Read standard input once and give the same bytes to the command on every host
    /// (at most 64 MiB); without it each command gets an empty stdin, as with ssh -n
    #[arg(help_heading = HEADING, long, requires = "hosts")]
    stdin: bool,

    /// Seconds each host may take in all; then it counts as failed
    #[arg(help_heading = HEADING, long, value_name = "SECS", value_parser = seconds, requires = "hosts")]
    timeout: Option<Duration>,
}

/// Sorts out the positional words: with -H there is no HOST:PORT, so the first word is
/// the command's; without it, a second word that looks like a host is refused, since
/// `rcmd client A B -- cmd` would otherwise run `B cmd` on A.
///
/// # Errors
/// A usage [`Failure`] suggesting -H.
pub(super) fn positionals(
    fanout: &mut FanoutArgs,
    addr: Option<String>,
    mut command: Vec<String>,
) -> Result<(Option<String>, Vec<String>), Failure> {
    // `rcmd client @web -- cmd`, `rcmd client 'node[1-4]' -- cmd`: unmistakably a list.
    if fanout.hosts.is_none() {
        if let Some(list) = addr.as_deref().filter(|a| looks_like_list(a)) {
            fanout.hosts = Some(list.to_string());
            return positionals(fanout, None, command);
        }
    }
    let addr = match (fanout.hosts.is_some(), addr) {
        (true, Some(first)) => {
            command.insert(0, first);
            None
        }
        (_, addr) => addr,
    };
    if let Some(word) = command.first().filter(|w| looks_like_host(w)) {
        let hosts = match &addr {
            Some(a) => format!("{a},{word}"),
            None => word.clone(),
        };
        return Err(Failure::new(format!(
            "{word:?} looks like a host, not a command; to run on several hosts, \
                 list them with -H: rcmd client -H {hosts} -- CMD"
        )));
    }
    Ok((addr, command))
}

/// A host list no one means as one host: `@GROUP`, `^FILE`, several hosts, or a range
/// (`web[1-3]`, `127.0.0.[2-9]`; not `[::1]`, an IPv6 address).
fn looks_like_list(word: &str) -> bool {
    word.starts_with('@')
        || word.starts_with('^')
        || word.contains(',')
        || (word.contains('[') && !word.starts_with('['))
}

/// `name:port`, `1.2.3.4:port`, `[v6]:port`, a host range with a port, or a bare IP
/// address (`127.0.0.4`, `::1`, `[::1]`, `127.0.0.[2-9]`): one word that no one means as a
/// command. (A bare name such as `web2` could be a program, so it is left alone.)
fn looks_like_host(word: &str) -> bool {
    let unbracketed = word.strip_prefix('[').and_then(|w| w.strip_suffix(']'));
    if word.parse::<std::net::IpAddr>().is_ok()
        || unbracketed.is_some_and(|w| w.parse::<std::net::Ipv6Addr>().is_ok())
    {
        return true;
    }
    // An IPv4 range: digits, dots and one or more bracketed ranges.
    let ipv4_range = word.contains('.')
        && word.contains('[')
        && word
            .chars()
            .all(|c| c.is_ascii_digit() || ".[]-,".contains(c));
    if ipv4_range {
        return true;
    }
    let Some((host, port)) = word.rsplit_once(':') else {
        return false;
    };
    let port_ok = !port.is_empty()
        && (port.bytes().all(|b| b.is_ascii_digit())
            || (port.starts_with('[') && port.ends_with(']')));
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_[]:,".contains(c));
    port_ok && host_ok
}

/// Runs `command` on every host in `-H`, and returns the exit status: the largest remote
/// status, or 255 if any host was unreachable or failed in rcmd.
/// Raises this process's soft limit on open files to its hard one, as the server does: a
/// fan-out holds a socket for every host it runs on at once, and a shell's soft limit
/// (often 1,024) would fail hosts past it with "Too many open files" while the hard limit
/// allows far more. The client starts no commands of its own, so nothing inherits it.
pub(super) fn make_room_for_hosts() {
    // Refused, the limit stays as it was, and a host that then gets no socket says why.
    let _unchanged = crate::exec::fd_limit::raise();
}

pub(super) fn run(
    args: &FanoutArgs,
    list: &str,
    command: &str,
    config: ClientConfig,
    configure: &dyn Fn(&HostSettings) -> Result<ClientConfig, Failure>,
    check_target: &dyn Fn(&str) -> Result<(), String>,
) -> Result<i32, Failure> {
    let fail = |e: &dyn std::fmt::Display| Failure::new(e);
    if command.is_empty() {
        return Err(fail(
            &"with -H, give the command after --: many hosts cannot share standard input",
        ));
    }
    let lookup = super::routes::lookup(args.port)?;
    let targets = hosts::targets(list, args.exclude.as_deref(), &lookup).map_err(|e| fail(&e))?;
    let clients = super::routes::clients(&targets, &lookup.settings, config, configure)?;
    // Every host passes the checks a single one does (--plaintext beyond loopback), before
    // any is connected to.
    for target in &targets {
        check_target(&target.addr()).map_err(|e| fail(&e))?;
    }
    let mode = if args.collate {
        Mode::Collate
    } else if args.json {
        Mode::Json
    } else if let Some(dir) = &args.output_dir {
        Mode::OutputDir(dir.clone())
    } else {
        Mode::Stream
    };
    let options = Options {
        fanout: args.fanout as usize,
        fail_fast: args.fail_fast,
        connect_timeout: args.connect_timeout.unwrap_or(FANOUT_CONNECT_TIMEOUT),
        timeout: args.timeout,
        mode,
        prefix: !args.no_prefix,
        progress: std::io::stderr().is_terminal(),
        stdin: if args.stdin {
            Some(read_stdin_for_all()?)
        } else {
            None
        },
    };
    make_room_for_hosts();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(&e))?;
    let results = match runtime.block_on(fanout::run(
        &targets,
        command.as_bytes(),
        &clients,
        &options,
    )) {
        Ok(results) => results,
        // Our output was closed (`| head`): every host was stopped; end quietly, as the
        // single-host client does and as a command killed by SIGPIPE.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(super::SIGPIPE_STATUS),
        Err(e) => return Err(fail(&e)),
    };
    for line in fanout::report::summary(&results) {
        eprintln!("rcmd: {line}");
    }
    Ok(exit_code(results.iter().map(|r| &r.outcome)))
}

/// Most stdin `--stdin` holds, to give every host the same bytes.
const MAX_SHARED_STDIN: u64 = 64 << 20;

/// Our whole stdin, read once for every host.
fn read_stdin_for_all() -> Result<bytes::Bytes, Failure> {
    use std::io::Read;
    let mut data = Vec::new();
    std::io::stdin()
        .take(MAX_SHARED_STDIN + 1)
        .read_to_end(&mut data)
        .map_err(|e| Failure::new(format!("cannot read stdin: {e}")))?;
    if data.len() as u64 > MAX_SHARED_STDIN {
        return Err(Failure::new(format!(
            "--stdin holds at most {} MiB, read once for every host",
            MAX_SHARED_STDIN >> 20
        )));
    }
    Ok(data.into())
}

/// The largest remote status, or 255 when rcmd could not run the command somewhere.
/// Hosts stopped by -k do not count: the failure that stopped them already does.
pub(super) fn exit_code<'a>(outcomes: impl Iterator<Item = &'a Outcome>) -> i32 {
    let mut code = 0;
    for outcome in outcomes {
        code = code.max(match outcome {
            Outcome::Exited(c) => *c,
            Outcome::Unreachable(_) | Outcome::Failed(_) => super::FAILED,
            Outcome::Interrupted | Outcome::NotStarted => 0,
        });
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_like_words_are_recognised() {
        for w in [
            "b:9000",
            "10.0.0.2:22",
            "[::1]:9000",
            "web[1-3]:80",
            "h:[80-81]",
        ] {
            assert!(looks_like_host(w), "{w}");
        }
        for w in [
            "echo",
            "ls -l",
            "a:b",
            "echo:",
            ":80",
            "sh -c x:1",
            "/bin/x:1",
        ] {
            assert!(!looks_like_host(w), "{w}");
        }
    }

    #[test]
    fn exit_code_is_the_largest_status_or_255() {
        let code = |o: &[Outcome]| exit_code(o.iter());
        assert_eq!(code(&[Outcome::Exited(0), Outcome::Exited(3)]), 3);
        assert_eq!(
            code(&[Outcome::Exited(3), Outcome::Unreachable("x".into())]),
            255
        );
        assert_eq!(code(&[Outcome::Exited(1), Outcome::Interrupted]), 1);
        assert_eq!(code(&[]), 0);
    }
}
