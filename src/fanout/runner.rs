//! Drives the hosts: at most `fanout` at once, each with its own deadlines, stopping early
//! on the first failure when asked.
//!
//! Every host runs in this one task (a `FuturesUnordered`), so hundreds of them cost one
//! connection and a few buffers each, and no thread.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio_util::sync::CancellationToken;

use super::hosts::{display_names, Target};
use super::kept::Kept;
use super::outcome::{HostResult, Outcome};
use super::outdir::OutputDir;
use super::output::{HostWriter, LinePrefixer, Shared};
use super::{collate, report};
use crate::client::{self, ClientConfig, ClientError, Input, Output};
use crate::tls::TrustError;
use tokio::net::TcpStream;

/// Where output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Streamed as it comes, line by line.
    Stream,
    /// Nothing while running; then each distinct output once, with its hosts.
    Collate,
    /// One JSON object per host on stdout as it finishes.
    Json,
    /// `HOST.out`, `HOST.err` and `HOST.status` in this directory.
    OutputDir(PathBuf),
}

/// How to run on many hosts.
#[derive(Debug, Clone)]
pub struct Options {
    /// Hosts running at once.
    pub fanout: usize,
    /// After the first failure start no more hosts and interrupt the running ones.
    pub fail_fast: bool,
    pub connect_timeout: Duration,
    /// How long one host may take in all.
    pub timeout: Option<Duration>,
    pub mode: Mode,
    /// Prefix streamed lines with `HOST: `.
    pub prefix: bool,
    /// Show a progress line on stderr.
    pub progress: bool,
    /// The same stdin for every host's command (`--stdin`); `None`: an empty stdin, as
    /// ssh's `-n` gives.
    pub stdin: Option<bytes::Bytes>,
}

/// The client settings for each host: one for all, except the hosts the settings file
/// gives settings of their own (`Fingerprint`, `TokenFile`, ... under their `Host`).
#[derive(Debug, Clone)]
pub struct Clients {
    all: ClientConfig,
    own: HashMap<Target, ClientConfig>,
}

impl Clients {
    /// The same settings for every host.
    pub fn one(all: ClientConfig) -> Clients {
        Clients {
            all,
            own: HashMap::new(),
        }
    }

    /// `target` connects with `config` instead.
    pub fn set(&mut self, target: Target, config: ClientConfig) {
        self.own.insert(target, config);
    }

    /// What `target` connects with.
    pub fn get(&self, target: &Target) -> &ClientConfig {
        self.own.get(target).unwrap_or(&self.all)
    }
}

/// What is done on each host once connected: a command, or a copy.
pub trait Job {
    /// The client settings `target` is reached with.
    fn client(&self, target: &Target) -> &ClientConfig;

    /// Runs on `target` shown as `name`, over `stream`, writing what it shows to `out`;
    /// its exit code, or why rcmd failed there.
    fn run_on<'a>(
        &'a self,
        target: &'a Target,
        name: &'a str,
        stream: TcpStream,
        out: &'a mut Output<HostWriter, HostWriter>,
    ) -> impl std::future::Future<Output = Result<i32, ClientError>> + 'a;
}

/// A command line, run with the same stdin (or none) on every host.
struct Command<'a> {
    line: &'a [u8],
    clients: &'a Clients,
    stdin: Option<&'a bytes::Bytes>,
}

impl Job for Command<'_> {
    fn client(&self, target: &Target) -> &ClientConfig {
        self.clients.get(target)
    }

    async fn run_on(
        &self,
        target: &Target,
        _name: &str,
        stream: TcpStream,
        out: &mut Output<HostWriter, HostWriter>,
    ) -> Result<i32, ClientError> {
        // Many hosts cannot share one stdin: each gets the command alone (`-n`).
        let input = match self.stdin {
            Some(data) => {
                Input::one(self.line.to_vec()).with_stdin_from(std::io::Cursor::new(data.clone()))
            }
            None => Input::one(self.line.to_vec()),
        };
        let client = self.client(target);
        client::run_on(&target.addr(), stream, client, input, out).await
    }
}

/// Runs `command` on every target and returns each host's result, in target order.
/// Output is written to this process's stdout and stderr (and files) as `options` say.
///
/// # Errors
/// When the output directory cannot be created, and `BrokenPipe` when our stdout or
/// stderr was closed (`| head`): then every host was stopped at once. A host's failure
/// is its result.
pub async fn run(
    targets: &[Target],
    command: &[u8],
    clients: &Clients,
    options: &Options,
) -> io::Result<Vec<HostResult>> {
    let job = Command {
        line: command,
        clients,
        stdin: options.stdin.as_ref(),
    };
    run_job(targets, &job, options).await
}

/// Runs `job` on every target, as [`run`] does a command.
///
/// # Errors
/// As [`run`].
pub async fn run_job(
    targets: &[Target],
    job: &impl Job,
    options: &Options,
) -> io::Result<Vec<HostResult>> {
    let output_dir = match &options.mode {
        Mode::OutputDir(dir) => Some(OutputDir::open(dir)?),
        _ => None,
    };
    let names = display_names(targets);
    let progress = options.progress.then(|| progress_bar(targets.len()));
    // Our output closing stops every host, as -k does, but is not a host's failure.
    let output_closed = CancellationToken::new();
    let cancel = output_closed.child_token();
    let sink = |w: Box<dyn io::Write + Send>| {
        Arc::new(Shared::new(w, progress.clone(), output_closed.clone()))
    };
    let sinks = Sinks {
        stdout: sink(Box::new(io::stdout())),
        stderr: sink(Box::new(io::stderr())),
        output_dir,
        options,
    };
    let mut results: Vec<Option<HostResult>> = (0..targets.len()).map(|_| None).collect();
    let mut waiting = targets.iter().zip(&names).enumerate();
    let mut running = FuturesUnordered::new();
    let mut failures = 0usize;
    loop {
        while running.len() < options.fanout.max(1) && !cancel.is_cancelled() {
            let Some((i, (target, name))) = waiting.next() else {
                break;
            };
            let host = one_host(name, target, job, &sinks, &cancel);
            running.push(async move { (i, host.await) });
        }
        let Some((i, mut result)) = running.next().await else {
            break;
        };
        if result.outcome.is_failure() {
            failures += 1;
            if options.fail_fast {
                cancel.cancel();
            }
        }
        sinks.finished(&mut result);
        if let Some(bar) = &progress {
            bar.inc(1);
            bar.set_message(format!("{failures} failed"));
        }
        results[i] = Some(result);
    }
    if output_closed.is_cancelled() {
        if let Some(bar) = &progress {
            bar.finish_and_clear();
        }
        return Err(io::ErrorKind::BrokenPipe.into());
    }
    for (i, (_, name)) in waiting {
        let mut result = HostResult {
            name: name.clone(),
            outcome: Outcome::NotStarted,
            seconds: 0.0,
            stdout: Kept::default(),
            stderr: Kept::default(),
        };
        sinks.finished(&mut result);
        results[i] = Some(result);
    }
    if let Some(bar) = &progress {
        bar.finish_and_clear();
    }
    let mut results: Vec<HostResult> = results.into_iter().flatten().collect();
    if options.mode == Mode::Collate {
        let (mut stdouts, mut stderrs): (Vec<Kept>, Vec<Kept>) = results
            .iter_mut()
            .map(|r| (std::mem::take(&mut r.stdout), std::mem::take(&mut r.stderr)))
            .unzip();
        let names: Vec<&str> = results.iter().map(|r| r.name.as_str()).collect();
        collate_into(&sinks.stdout, &names, &mut stdouts)?;
        collate_into(&sinks.stderr, &names, &mut stderrs)?;
    }
    if output_closed.is_cancelled() {
        return Err(io::ErrorKind::BrokenPipe.into());
    }
    Ok(results)
}

/// `--collate`: each distinct output of `kept` (one per host of `names`) once, under
/// its hosts, streamed from where it was kept.
fn collate_into(stream: &Shared, names: &[&str], kept: &mut [Kept]) -> io::Result<()> {
    let keyed: Vec<_> = names
        .iter()
        .zip(kept.iter())
        .map(|(&name, k)| (name, (!k.is_empty()).then(|| k.key())))
        .collect();
    let groups = collate::groups(&keyed);
    stream.write_with(|out| {
        collate::write(&groups, out, |i, out| {
            kept[i].copy_to(out)?;
            Ok(kept[i].ends_with_newline())
        })
    })
}

fn progress_bar(total: usize) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(total as u64),
        indicatif::ProgressDrawTarget::stderr(),
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template("{pos}/{len} hosts done, {msg}, {elapsed}")
            .expect("the template is valid"),
    );
    bar.set_message("0 failed");
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Output destinations shared by all hosts.
struct Sinks<'a> {
    stdout: Arc<Shared>,
    stderr: Arc<Shared>,
    /// Where `--output-dir` writes, checked.
    output_dir: Option<OutputDir>,
    options: &'a Options,
}

impl Sinks<'_> {
    /// The writers for one host's stdout and stderr.
    fn output_for(&self, name: &str) -> io::Result<Output<HostWriter, HostWriter>> {
        let lines = |shared: &Arc<Shared>| {
            let prefix = if self.options.prefix {
                format!("{name}: ").into_bytes()
            } else {
                Vec::new()
            };
            HostWriter::Lines(LinePrefixer::new(prefix, Arc::clone(shared)))
        };
        if let Some(dir) = &self.output_dir {
            return Ok(Output {
                stdout: HostWriter::File(dir.create(&format!("{name}.out"))?),
                stderr: HostWriter::File(dir.create(&format!("{name}.err"))?),
            });
        }
        Ok(match &self.options.mode {
            Mode::Collate | Mode::Json => Output {
                stdout: HostWriter::Kept(Box::default()),
                stderr: HostWriter::Kept(Box::default()),
            },
            Mode::Stream | Mode::OutputDir(_) => Output {
                stdout: lines(&self.stdout),
                stderr: lines(&self.stderr),
            },
        })
    }

    /// Reports a host as it finishes, where the mode wants that.
    fn finished(&self, result: &mut HostResult) {
        match &self.options.mode {
            Mode::Json => {
                if let Err(e) = self
                    .stdout
                    .write_with(|out| report::write_json(result, out))
                {
                    let _ = self.stderr.write_whole(format!("rcmd: {e}\n").as_bytes());
                }
            }
            Mode::OutputDir(_) => {
                let Some(dir) = &self.output_dir else { return };
                let name = format!("{}.status", result.name);
                if let Err(e) = dir.write(&name, report::status_file(&result.outcome).as_bytes()) {
                    let _ = self.stderr.write_whole(format!("rcmd: {e}\n").as_bytes());
                }
            }
            Mode::Stream | Mode::Collate => {}
        }
    }
}

/// Runs the command on one host, start to end, and says how it went.
async fn one_host(
    name: &str,
    target: &Target,
    job: &impl Job,
    sinks: &Sinks<'_>,
    cancel: &CancellationToken,
) -> HostResult {
    let started = Instant::now();
    let mut out = match sinks.output_for(name) {
        Ok(out) => out,
        Err(e) => {
            return HostResult {
                name: name.to_string(),
                outcome: Outcome::Failed(e.to_string()),
                seconds: 0.0,
                stdout: Kept::default(),
                stderr: Kept::default(),
            }
        }
    };
    let mut outcome = tokio::select! {
        biased;
        () = cancel.cancelled() => Outcome::Interrupted,
        outcome = attempt(target, name, job, sinks.options, &mut out) => outcome,
    };
    for w in [&mut out.stdout, &mut out.stderr] {
        if let Err(e) = w.finish() {
            if !outcome.is_failure() {
                outcome = Outcome::Failed(format!("writing its output: {e}"));
            }
        }
    }
    HostResult {
        name: name.to_string(),
        outcome,
        seconds: started.elapsed().as_secs_f64(),
        stdout: out.stdout.take_kept(),
        stderr: out.stderr.take_kept(),
    }
}

/// The one place a host's command goes through the client library.
async fn attempt(
    target: &Target,
    name: &str,
    job: &impl Job,
    options: &Options,
    out: &mut Output<HostWriter, HostWriter>,
) -> Outcome {
    let connect_timeout = (job.client(target).connect_timeout).unwrap_or(options.connect_timeout);
    let stream =
        match tokio::time::timeout(connect_timeout, client::connect(&target.addr(), None)).await {
            Ok(Ok(stream)) => stream,
            // Out of descriptors here is no fault of the host's, and the user can act on it.
            Ok(Err(ClientError::Connect { source, .. }))
                if matches!(source.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) =>
            {
                return Outcome::Failed(format!(
                    "no socket for it here: {}; raise the open-file limit (ulimit -n) or run \
                     on fewer hosts at once (-f)",
                    crate::text::io_reason(&source)
                ))
            }
            Ok(Err(ClientError::Connect { source, .. })) => {
                return Outcome::Unreachable(source.to_string())
            }
            Ok(Err(e)) => return Outcome::Unreachable(e.to_string()),
            Err(_) => {
                return Outcome::Unreachable(format!(
                    "no connection within {} (--connect-timeout)",
                    report::seconds(connect_timeout)
                ))
            }
        };
    let session = job.run_on(target, name, stream, out);
    let result = match options.timeout {
        Some(limit) => match tokio::time::timeout(limit, session).await {
            Ok(result) => result,
            Err(_) => {
                return Outcome::Failed(format!(
                    "timed out after {} (--timeout)",
                    report::seconds(limit)
                ))
            }
        },
        None => session.await,
    };
    match result {
        Ok(code) => Outcome::Exited(code),
        // One line for every host not yet known, not a fingerprint each: the summary then
        // groups them, and the advice is the same for all.
        Err(ClientError::Trust(e)) if e.is_unknown_host() => Outcome::Failed(
            "unknown server identity: not in known_hosts (pin it with --fingerprint, or \
             record new hosts with --accept-new)"
                .into(),
        ),
        // Accepted but never answered: as unreachable as a host that never accepts.
        Err(ClientError::HandshakeTimeout(limit)) => Outcome::Unreachable(format!(
            "no answer within {} (--connect-timeout)",
            report::seconds(limit)
        )),
        Err(ClientError::Trust(TrustError::Timeout { limit, .. })) => {
            Outcome::Unreachable(format!(
                "no TLS answer within {} (--connect-timeout)",
                report::seconds(limit)
            ))
        }
        Err(e) => Outcome::Failed(without_address(e.to_string(), &target.addr())),
    }
}

/// `why` without a leading `ADDR: `: every report of a host names it already (the summary
/// line, the JSON object, the `HOST.status` file), and a reason naming it again would
/// keep hosts that failed alike from grouping in the summary.
fn without_address(why: String, addr: &str) -> String {
    match why
        .strip_prefix(addr)
        .and_then(|rest| rest.strip_prefix(": "))
    {
        Some(rest) => rest.to_string(),
        None => why,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_names_its_host_only_where_it_is_reported() {
        let addr = "127.0.0.1:9501";
        assert_eq!(
            without_address(format!("{addr}: identity not accepted"), addr),
            "identity not accepted"
        );
        // Another host's address, or this one's further on, is part of the reason.
        for why in [
            "127.0.0.2:9501: identity not accepted",
            "127.0.0.1:95011: identity not accepted",
            "TLS handshake with 127.0.0.1:9501 failed",
        ] {
            assert_eq!(without_address(why.to_string(), addr), why);
        }
    }
}
