//! Drives the hosts: at most `fanout` at once, each with its own deadlines, stopping early
//! on the first failure when asked.
//!
//! Every host runs in this one task (a `FuturesUnordered`), so hundreds of them cost one
//! connection and a few buffers each, and no thread.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio_util::sync::CancellationToken;

use super::hosts::{display_names, Target};
use super::outcome::{HostResult, Outcome};
use tokio::net::TcpStream;

use super::output::{HostWriter, LinePrefixer, Shared};
use super::{collate, report};
use crate::client::{self, ClientConfig, ClientError, Input, Output};

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

/// What is done on each host once connected: a command, or a copy.
pub trait Job {
    /// Runs on the host `host` (its address) shown as `name`, over `stream`, writing
    /// what it shows to `out`; its exit code, or why rcmd failed there.
    fn run_on<'a>(
        &'a self,
        host: &'a str,
        name: &'a str,
        stream: TcpStream,
        out: &'a mut Output<HostWriter, HostWriter>,
    ) -> impl std::future::Future<Output = Result<i32, ClientError>> + 'a;
}

/// A command line, run with the same stdin (or none) on every host.
struct Command<'a> {
    line: &'a [u8],
    client: &'a ClientConfig,
    stdin: Option<&'a bytes::Bytes>,
}

impl Job for Command<'_> {
    async fn run_on(
        &self,
        host: &str,
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
        client::run_on(host, stream, self.client, input, out).await
    }
}

/// Runs `command` on every target and returns each host's result, in target order.
/// Output is written to this process's stdout and stderr (and files) as `options` say.
///
/// # Errors
/// Only when the output directory cannot be created; a host's failure is its result.
pub async fn run(
    targets: &[Target],
    command: &[u8],
    client: &ClientConfig,
    options: &Options,
) -> io::Result<Vec<HostResult>> {
    let job = Command {
        line: command,
        client,
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
    if let Mode::OutputDir(dir) = &options.mode {
        std::fs::create_dir_all(dir).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot create {}: {e}", dir.display()))
        })?;
    }
    let names = display_names(targets);
    let progress = options.progress.then(|| progress_bar(targets.len()));
    let sinks = Sinks {
        stdout: Arc::new(Shared::new(Box::new(io::stdout()), progress.clone())),
        stderr: Arc::new(Shared::new(Box::new(io::stderr()), progress.clone())),
        options,
    };
    let cancel = CancellationToken::new();
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
        let Some((i, result)) = running.next().await else {
            break;
        };
        if result.outcome.is_failure() {
            failures += 1;
            if options.fail_fast {
                cancel.cancel();
            }
        }
        sinks.finished(&result);
        if let Some(bar) = &progress {
            bar.inc(1);
            bar.set_message(format!("{failures} failed"));
        }
        results[i] = Some(result);
    }
    for (i, (_, name)) in waiting {
        let result = HostResult {
            name: name.clone(),
            outcome: Outcome::NotStarted,
            seconds: 0.0,
            stdout: Vec::new(),
            stderr: Vec::new(),
        };
        sinks.finished(&result);
        results[i] = Some(result);
    }
    if let Some(bar) = &progress {
        bar.finish_and_clear();
    }
    let results: Vec<HostResult> = results.into_iter().flatten().collect();
    if options.mode == Mode::Collate {
        for (stream, which) in [(&sinks.stdout, false), (&sinks.stderr, true)] {
            let outputs: Vec<(&str, &[u8])> = results
                .iter()
                .map(|r| {
                    let bytes = if which { &r.stderr } else { &r.stdout };
                    (r.name.as_str(), bytes.as_slice())
                })
                .collect();
            stream.write_whole(&collate::render(&collate::groups(&outputs)))?;
        }
    }
    Ok(results)
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
        Ok(match &self.options.mode {
            Mode::Stream => Output {
                stdout: lines(&self.stdout),
                stderr: lines(&self.stderr),
            },
            Mode::Collate | Mode::Json => Output {
                stdout: HostWriter::Memory(Vec::new()),
                stderr: HostWriter::Memory(Vec::new()),
            },
            Mode::OutputDir(dir) => {
                let create = |ext: &str| {
                    let path = dir.join(format!("{name}.{ext}"));
                    std::fs::File::create(&path).map_err(|e| {
                        io::Error::new(e.kind(), format!("cannot create {}: {e}", path.display()))
                    })
                };
                Output {
                    stdout: HostWriter::File(create("out")?),
                    stderr: HostWriter::File(create("err")?),
                }
            }
        })
    }

    /// Reports a host as it finishes, where the mode wants that.
    fn finished(&self, result: &HostResult) {
        match &self.options.mode {
            Mode::Json => {
                let mut line = report::json(result).to_string();
                line.push('\n');
                let _ = self.stdout.write_whole(line.as_bytes());
            }
            Mode::OutputDir(dir) => {
                let path = dir.join(format!("{}.status", result.name));
                if let Err(e) = std::fs::write(&path, report::status_file(&result.outcome)) {
                    let _ = self.stderr.write_whole(
                        format!("rcmd: cannot write {}: {e}\n", path.display()).as_bytes(),
                    );
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
                stdout: Vec::new(),
                stderr: Vec::new(),
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
        stdout: out.stdout.take_memory(),
        stderr: out.stderr.take_memory(),
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
    let stream = match tokio::time::timeout(
        options.connect_timeout,
        client::connect(&target.addr(), None),
    )
    .await
    {
        Ok(Ok(stream)) => stream,
        Ok(Err(ClientError::Connect { source, .. })) => {
            return Outcome::Unreachable(source.to_string())
        }
        Ok(Err(e)) => return Outcome::Unreachable(e.to_string()),
        Err(_) => {
            return Outcome::Unreachable(format!(
                "no connection within {} (--connect-timeout)",
                report::seconds(options.connect_timeout)
            ))
        }
    };
    let host = target.addr();
    let session = job.run_on(&host, name, stream, out);
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
        Err(e) => Outcome::Failed(e.to_string()),
    }
}
