//! `rcmd cp`: scp's grammar, to one host or (with -H) to many.

use std::ffi::{OsStr, OsString};
use std::io::IsTerminal;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use clap::builder::TypedValueParser;
use clap::Args;
use tokio::net::TcpStream;

use super::fanout::FANOUT_CONNECT_TIMEOUT;
use super::tls::ClientTlsArgs;
use super::token::TokenArgs;
use super::{init_logging, seconds, Failure, FramedWireArgs};
use crate::client::copy::{Direction, Request};
use crate::client::{ClientConfig, ClientError, Output};
use crate::copy::{progress, Flags, Watch};
use crate::fanout::output::HostWriter;
use crate::fanout::{self, hosts, Mode, Options, Target};
use crate::settings::HostSettings;

/// Exit code when some files failed and the rest were copied, as scp.
const SOME_FILES_FAILED: i32 = 1;

/// What `rcmd cp` exits with, for its help and manual page.
pub(super) const EXIT_STATUS: &str = "\
Exit status:
  0    every file was copied (or skipped with -u)
  1    some files failed, each named on stderr; the rest were copied (as scp)
  255  rcmd itself failed: the command line, the connection, trust, or the
       protocol. With -H: the largest of the hosts' statuses, 255 for a host
       that could not be reached";

#[derive(Debug, Clone, Args)]
pub(super) struct CpArgs {
    /// Copy directories and what is in them; symbolic links inside them are copied as
    /// links (as rsync -l), where scp follows them
    #[arg(short = 'r')]
    recursive: bool,

    /// Keep modes exactly, and modification and access times (without it, modes are
    /// masked by the receiving side's umask, as scp does)
    #[arg(short = 'p')]
    preserve: bool,

    /// Skip files whose size and modification time already match (a copy keeps the time
    /// only with -p, so copy with -p to skip next time)
    #[arg(short = 'u')]
    update: bool,

    /// Keep a cut file's bytes; the next copy of it continues from where they still match
    /// (checked by SHA-256 of the kept part), as rsync --partial --append-verify
    #[arg(long)]
    partial: bool,

    /// No progress bars (they show only when stderr is a terminal anyway)
    #[arg(short = 'q')]
    quiet: bool,

    /// Port of the host (as scp spells it) [default: 9000]; -H entries may carry :PORT
    #[arg(short = 'P', value_name = "PORT",
          value_parser = super::Whole { min: 1, max: 65535 }.map(|v| v as u16))]
    port: Option<u16>,

    /// Copy to (or from) every host in LIST at once, as pdcp (rpdcp); LIST as for
    /// rcmd client -H. The remote side is then written :PATH; downloads go to DST/HOST/
    #[arg(short = 'H', long = "hosts", value_name = "LIST")]
    hosts: Option<String>,

    /// Leave out these hosts (same syntax as -H)
    #[arg(short = 'x', long, value_name = "LIST", requires = "hosts")]
    exclude: Option<String>,

    /// With -H, copy with at most N hosts at once
    #[arg(short = 'f', long, value_name = "N", default_value_t = 64,
          value_parser = super::Whole { min: 1, max: u32::MAX.into() }.map(|v| v as u32))]
    fanout: u32,

    /// Give up connecting after this many seconds [default: 10 with -H]
    #[arg(long, value_name = "SECS", value_parser = seconds)]
    connect_timeout: Option<Duration>,

    #[command(flatten)]
    wire: FramedWireArgs,

    #[command(flatten)]
    token: TokenArgs,

    #[command(flatten)]
    tls: ClientTlsArgs,

    /// SRC... DST: local files and HOST:DST (upload), or HOST:SRC... and a local DST
    /// (download); globs in HOST:SRC are expanded on the host
    #[arg(value_name = "PATH", num_args = 2.., required = true)]
    paths: Vec<OsString>,
}

/// `HOST:PATH` split, or `None` for a local path. A colon after a slash is part of a
/// local name (`./a:b`), as scp reads it; `[v6]:PATH` carries an IPv6 address.
fn remote(arg: &OsStr) -> Option<(String, Bytes)> {
    let b = arg.as_bytes();
    let (host, path) = if b.starts_with(b"[") {
        let end = b.windows(2).position(|w| w == b"]:")?;
        (&b[..=end], &b[end + 2..])
    } else {
        let colon = b.iter().position(|&c| c == b':')?;
        if b[..colon].contains(&b'/') {
            return None;
        }
        (&b[..colon], &b[colon + 1..])
    };
    Some((
        String::from_utf8_lossy(host).into_owned(),
        Bytes::copy_from_slice(path),
    ))
}

fn usage(m: impl std::fmt::Display) -> Failure {
    Failure::new(m)
}

/// Which way, and with which host when there is one (not with -H).
fn direction(paths: &[OsString], many: bool) -> Result<(Option<String>, Direction), Failure> {
    let (dest, sources) = paths.split_last().expect("clap requires two paths");
    if many {
        let marked = |p: &OsString| p.as_bytes().starts_with(b":");
        if sources
            .iter()
            .chain([dest])
            .any(|p| remote(p).is_some_and(|(h, _)| !h.is_empty()))
        {
            return Err(usage(
                "with -H the hosts come from the list: write the remote side as :PATH",
            ));
        }
        if sources.iter().all(marked) {
            let sources = sources
                .iter()
                .map(|s| Bytes::copy_from_slice(&s.as_bytes()[1..]));
            return Ok((
                None,
                Direction::Download {
                    sources: sources.collect(),
                    dest: PathBuf::from(dest),
                },
            ));
        }
        if sources.iter().any(marked) {
            return Err(usage("copy either to the hosts or from them, not both"));
        }
        let dest = dest.as_bytes();
        let dest = dest.strip_prefix(b":").unwrap_or(dest);
        return Ok((
            None,
            Direction::Upload {
                sources: sources.iter().map(PathBuf::from).collect(),
                dest: Bytes::copy_from_slice(dest),
            },
        ));
    }
    if let Some((host, dest)) = remote(dest) {
        if sources.iter().any(|s| remote(s).is_some()) {
            return Err(usage("copying between two remote paths is not supported"));
        }
        let sources = sources.iter().map(PathBuf::from).collect();
        return Ok((Some(host), Direction::Upload { sources, dest }));
    }
    let mut host = None;
    let mut remote_sources = Vec::new();
    for s in sources {
        let Some((h, path)) = remote(s) else {
            return Err(usage(format!(
                "{}: neither side is remote; write HOST:PATH for the host's side",
                s.to_string_lossy()
            )));
        };
        if host.as_ref().is_some_and(|first| first != &h) {
            return Err(usage("every remote source must be on the same host"));
        }
        host = Some(h);
        remote_sources.push(path);
    }
    Ok((
        host,
        Direction::Download {
            sources: remote_sources,
            dest: PathBuf::from(dest),
        },
    ))
}

/// `host` (an alias the settings file may give a `HostName`) with the port from -P, or
/// the settings file's, or the default.
fn address(host: &str, port: Option<u16>, settings: &HostSettings) -> String {
    let host = settings.host_name.as_deref().unwrap_or(host);
    match port.or(settings.port) {
        Some(p) if host.contains(':') && !host.starts_with('[') => format!("[{host}]:{p}"),
        Some(p) => format!("{host}:{p}"),
        None => crate::wire::with_default_port(host),
    }
}

/// The settings file's `Fingerprint`, `TokenFile`, `IdentityFile`, `ConnectTimeout` and
/// wire options for one host, where the command line gave none (as for `rcmd client`).
fn apply_host_settings(args: &mut CpArgs, s: &HostSettings) {
    args.tls.default_fingerprint(s.fingerprint);
    args.tls.default_key(s.identity_file.clone());
    if std::env::var_os("RCMD_TOKEN").is_none() {
        args.token.default_file(s.token_file.clone());
    }
    args.connect_timeout = args.connect_timeout.or(s.connect_timeout);
    args.wire.default_to(s);
}

/// How to reach a server, from the command line (with the host's settings applied).
fn client_config(args: &CpArgs) -> Result<ClientConfig, Failure> {
    let many = args.hosts.is_some();
    let wire = args.wire.wire();
    let (token, same_user_token) = args
        .token
        .for_client(std::env::var("RCMD_TOKEN").ok(), wire.protocol)
        .map_err(usage)?;
    let tls = args.tls.setup(wire.protocol, !many).map_err(usage)?;
    Ok(ClientConfig {
        wire,
        token,
        same_user_token,
        tls,
        connect_timeout: args
            .connect_timeout
            .or(many.then_some(FANOUT_CONNECT_TIMEOUT)),
        ..ClientConfig::new(wire.protocol)
    })
}

pub(super) fn run(mut args: CpArgs) -> Result<i32, Failure> {
    init_logging("rcmd=warn");
    let many = args.hosts.is_some();
    let (host, direction) = direction(&args.paths, many)?;
    let flags = Flags {
        recursive: args.recursive,
        preserve: args.preserve,
        update: args.update,
        partial: args.partial,
    };
    // Many hosts sent the same files hash each once between them.
    let sums = (many && matches!(direction, Direction::Upload { .. })).then(Default::default);
    let request = Request {
        flags,
        direction,
        sums,
    };
    let shown_host = host.clone();
    let addr = match host {
        Some(h) => {
            let alias = h.trim_start_matches('[').trim_end_matches(']');
            let own = super::routes::settings()?.for_host(alias);
            apply_host_settings(&mut args, &own);
            let addr = address(&h, args.port, &own);
            args.tls.check_plaintext(&addr).map_err(usage)?;
            Some(addr)
        }
        None => None,
    };
    let config = client_config(&args)?;
    let bars = !args.quiet && std::io::stderr().is_terminal();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(usage)?;
    if let Some(list) = &args.hosts {
        let lookup = super::routes::lookup(args.port)?;
        let targets = hosts::targets(list, args.exclude.as_deref(), &lookup).map_err(usage)?;
        for target in &targets {
            args.tls.check_plaintext(&target.addr()).map_err(usage)?;
        }
        let configure = |own: &HostSettings| {
            let mut args = args.clone();
            apply_host_settings(&mut args, own);
            client_config(&args)
        };
        let connect_timeout = config.connect_timeout;
        let clients = super::routes::clients(&targets, &lookup.settings, config, &configure)?;
        let options = Options {
            fanout: args.fanout as usize,
            fail_fast: false,
            connect_timeout: connect_timeout.unwrap_or(FANOUT_CONNECT_TIMEOUT),
            timeout: None,
            mode: Mode::Stream,
            prefix: true,
            progress: bars,
            stdin: None,
        };
        let job = CopyJob {
            request: &request,
            clients: &clients,
        };
        super::fanout::make_room_for_hosts();
        let results = runtime
            .block_on(fanout::run_job(&targets, &job, &options))
            .map_err(usage)?;
        for line in fanout::report::summary(&results) {
            eprintln!("rcmd: {line}");
        }
        return Ok(super::fanout::exit_code(results.iter().map(|r| &r.outcome)));
    }
    let addr = addr.expect("one host without -H");
    let host = shown_host.as_deref().unwrap_or_default();
    let mut watch: Box<dyn Watch + Send> = if bars {
        Box::new(progress::Bars::new().with_host(host))
    } else {
        Box::new(progress::Quiet::new("rcmd: ").with_host(host))
    };
    let result = runtime.block_on(crate::client::copy::run(
        &addr,
        &config,
        &request,
        &mut *watch,
    ));
    drop(watch);
    match result {
        Ok(summary) if summary.failed > 0 => Ok(SOME_FILES_FAILED),
        Ok(_) => Ok(0),
        Err(e) => Err(usage(e)),
    }
}

/// A copy on each host of a fan-out; downloads go to a directory per host.
struct CopyJob<'a> {
    request: &'a Request,
    clients: &'a fanout::Clients,
}

/// Failures, through the fan-out's writer (prefixed by host, kept apart from others).
struct HostWatch<'a>(&'a mut HostWriter);

impl Watch for HostWatch<'_> {
    fn failed(&mut self, path: &[u8], message: &str) {
        use std::io::Write;
        let line = format!(
            "{}: {}\n",
            crate::printable::printable(path),
            crate::printable::printable(message.as_bytes())
        );
        let _ = self.0.write_all(line.as_bytes());
    }
}

impl fanout::Job for CopyJob<'_> {
    fn client(&self, target: &Target) -> &ClientConfig {
        self.clients.get(target)
    }

    async fn run_on(
        &self,
        target: &Target,
        name: &str,
        stream: TcpStream,
        out: &mut Output<HostWriter, HostWriter>,
    ) -> Result<i32, ClientError> {
        let mut request = self.request.clone();
        if let Direction::Download { dest, .. } = &mut request.direction {
            // One directory per host, so no host's files can replace another's.
            if name.contains('/') || name.is_empty() || name == "." || name == ".." {
                return Err(ClientError::Usage(format!(
                    "{name}: not usable as a directory name"
                )));
            }
            let mine = dest.join(name);
            std::fs::create_dir_all(&mine).map_err(|e| {
                ClientError::Usage(format!("cannot create {}: {e}", mine.display()))
            })?;
            let mut with_slash = mine.into_os_string();
            with_slash.push("/");
            *dest = PathBuf::from(with_slash);
        }
        let mut watch = HostWatch(&mut out.stderr);
        let client = self.client(target);
        match crate::client::copy::run_on(&target.addr(), stream, client, &request, &mut watch)
            .await
        {
            Ok(s) if s.failed > 0 => Ok(SOME_FILES_FAILED),
            Ok(_) => Ok(0),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_paths_are_read_as_scp_reads_them() {
        let r = |s: &str| remote(OsStr::new(s)).map(|(h, p)| (h, p.to_vec()));
        assert_eq!(r("host:/tmp/x"), Some(("host".into(), b"/tmp/x".to_vec())));
        assert_eq!(r("127.0.0.1:"), Some(("127.0.0.1".into(), Vec::new())));
        assert_eq!(r("[::1]:a b"), Some(("[::1]".into(), b"a b".to_vec())));
        assert_eq!(r("./a:b"), None);
        assert_eq!(r("plain"), None);
        let none = HostSettings::default();
        assert_eq!(address("[::1]", Some(7), &none), "[::1]:7");
        assert_eq!(address("h", None, &none), "h:9000");
        let web = HostSettings {
            host_name: Some("127.0.0.5".into()),
            port: Some(7001),
            ..HostSettings::default()
        };
        assert_eq!(address("web", None, &web), "127.0.0.5:7001");
        assert_eq!(address("web", Some(22), &web), "127.0.0.5:22", "-P wins");
    }
}
