//! The command line: one module per subcommand, each an `Args` struct and a `run`.
//! Exit codes are decided here and nowhere else.

mod client;
mod completions;
mod copy_id;
mod cp;
mod demo;
mod fanout;
mod keys;
mod known_hosts;
mod man;
mod routes;
mod server;
mod supervise;
mod tls;
mod token;

use clap::builder::TypedValueParser;
use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::wire::frame::DEFAULT_MAX_FRAME;
use crate::wire::header::HeaderFormat;
use crate::wire::{Protocol, Wire, DEFAULT_RECV_SIZE};

/// Run commands on another machine over TCP, with every message framed by a length
/// header packed exactly as Python's struct module packs it.
#[derive(Debug, Parser)]
#[command(name = "rcmd", version, propagate_version = true, max_term_width = 80)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the commands that clients send and stream their output back.
    Server(server::ServerArgs),
    /// Run a command on a server (one-shot), or each line of standard input; with -H, one
    /// command on many servers at once.
    Client(client::ClientArgs),
    /// Copy files to or from a server (scp's grammar), or with -H to many at once.
    #[command(after_help = cp::EXIT_STATUS)]
    Cp(cp::CpArgs),
    /// Make this user's client key (for servers with --authorized-keys) and print its
    /// fingerprint.
    Keygen(keys::KeygenArgs),
    /// Add this client's key (`rcmd keygen`) to a server's authorized keys, logging in
    /// once with its token (as ssh-copy-id); from then on the key is enough.
    #[command(name = "copy-id")]
    CopyId(copy_id::CopyIdArgs),
    /// List the servers this client trusts, or forget one (--remove HOST[:PORT]).
    #[command(name = "known-hosts")]
    KnownHosts(known_hosts::KnownHostsArgs),
    /// Print the fingerprint of this machine's server identity (or of FILE), as clients
    /// see it.
    Fingerprint(keys::FingerprintArgs),
    /// Watch the sticky-packet bug happen, and its fix (`rcmd demo` lists the demos).
    Demo(demo::DemoArgs),
    /// Print the manual page of rcmd or of one of its subcommands (roff, for man -l), or
    /// write them all into a directory.
    Man(man::ManArgs),
    /// Print the script that makes a shell complete rcmd's subcommands, flags and known
    /// hosts (bash, zsh, fish, elvish, powershell).
    Completions(completions::CompletionsArgs),
    /// The server's helper: starts a supervisor for each of its commands (reads fd 3).
    #[command(hide = true)]
    Supervise(supervise::SuperviseArgs),
}

/// The wire settings; both ends must use the same ones. Those the command line leaves
/// out may come from the client's per-host settings file, so none has a value here
/// until [`WireArgs::wire`] fills in the defaults.
#[derive(Debug, Clone, Args)]
struct WireArgs {
    /// Wire mode; see PROTOCOL.md for each byte [default: framed]
    #[arg(long, value_enum)]
    protocol: Option<Protocol>,

    /// Short for --protocol naive: no length header, the sticky-packet bug on purpose.
    #[arg(long, conflicts_with = "protocol")]
    naive: bool,

    /// Length header as a Python struct format for one integer, e.g. !I <H q i
    /// [default: !I for framed, i for classic and json-header]
    #[arg(long, value_name = "FMT")]
    header: Option<HeaderFormat>,

    /// Largest frame accepted from the peer, in bytes (framed; the JSON header in
    /// json-header), 1024 to 4294967295 [default: 1048576]
    #[arg(long, value_name = "BYTES",
          value_parser = Whole { min: 1024, max: u32::MAX.into() }.map(|v| v as usize))]
    max_frame: Option<usize>,

    /// Bytes one read may return where the mode has no framing, like the tutorial's
    /// recv(1024); 1 to 4294967295 [default: 1024]
    #[arg(long, value_name = "N",
          value_parser = Whole { min: 1, max: u32::MAX.into() }.map(|v| v as usize))]
    recv_size: Option<usize>,
}

/// The wire options of a command that speaks only the framed protocol (`rcmd cp`): the
/// tutorial modes carry command lines and nothing else, so they are not offered.
#[derive(Debug, Clone, Args)]
struct FramedWireArgs {
    /// Length header as a Python struct format for one integer, e.g. !I <H q i
    /// [default: !I]
    #[arg(long, value_name = "FMT")]
    header: Option<HeaderFormat>,

    /// Largest frame accepted from the peer, in bytes, 1024 to 4294967295
    /// [default: 1048576]
    #[arg(long, value_name = "BYTES",
          value_parser = Whole { min: 1024, max: u32::MAX.into() }.map(|v| v as usize))]
    max_frame: Option<usize>,
}

impl FramedWireArgs {
    fn wire(&self) -> Wire {
        let framed = WireArgs {
            protocol: Some(Protocol::Framed),
            naive: false,
            header: self.header,
            max_frame: self.max_frame,
            recv_size: None,
        };
        framed.wire()
    }

    /// A settings file's header and frame limit, where the command line gave none (its
    /// wire mode is for `rcmd client`).
    fn default_to(&mut self, s: &crate::settings::HostSettings) {
        self.header = self.header.or(s.header);
        self.max_frame = self.max_frame.or(s.max_frame);
    }
}

impl WireArgs {
    fn wire(&self) -> Wire {
        let protocol = if self.naive {
            Protocol::Naive
        } else {
            self.protocol.unwrap_or(Protocol::Framed)
        };
        Wire {
            protocol,
            header: self.header.unwrap_or(protocol.default_header()),
            max_frame: self.max_frame.unwrap_or(DEFAULT_MAX_FRAME),
            recv_size: self.recv_size.unwrap_or(DEFAULT_RECV_SIZE),
            ..Wire::new(protocol)
        }
    }

    /// A settings file's wire options, where the command line gave none.
    fn default_to(&mut self, s: &crate::settings::HostSettings) {
        if !self.naive {
            self.protocol = self.protocol.or(s.protocol);
        }
        self.header = self.header.or(s.header);
        self.max_frame = self.max_frame.or(s.max_frame);
        self.recv_size = self.recv_size.or(s.recv_size);
    }
}

/// A failure of rcmd's own that ends the program: its message is printed and the exit code
/// is [`FAILED`], whichever subcommand failed. Exit codes that are not failures of rcmd's
/// (the remote command's status, a demo that did not reproduce) are `Ok` values.
pub struct Failure {
    message: String,
}

impl Failure {
    fn new(message: impl std::fmt::Display) -> Failure {
        Failure {
            message: message.to_string(),
        }
    }
}

/// Runs the parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> i32 {
    let result = match cli.command {
        Command::Server(args) => server::run(args),
        Command::Client(args) => client::run(args),
        Command::Cp(args) => cp::run(args),
        Command::Keygen(args) => keys::keygen(args),
        Command::CopyId(args) => copy_id::run(args),
        Command::KnownHosts(args) => known_hosts::run(args),
        Command::Fingerprint(args) => keys::fingerprint(args),
        Command::Demo(args) => demo::run(args),
        Command::Man(args) => man::run(args),
        Command::Completions(args) => completions::run(args),
        Command::Supervise(args) => supervise::run(args),
    };
    match result {
        Ok(code) => code,
        Err(f) => {
            eprintln!("rcmd: {}", f.message);
            FAILED
        }
    }
}

/// Parses a number of seconds, fractions allowed.
fn seconds(s: &str) -> Result<std::time::Duration, String> {
    s.parse::<f64>()
        .ok()
        .and_then(|v| std::time::Duration::try_from_secs_f64(v).ok())
        .ok_or_else(|| format!("{s:?} is not a number of seconds"))
}

/// Exit code for every failure of rcmd's own, a command line that cannot be parsed
/// included: one code, as ssh does, so anything else is always the remote command's
/// status (or, for a demo, what it showed).
pub const FAILED: i32 = 255;

/// How a shell reports a command killed by SIGPIPE: what rcmd exits with when its output
/// is closed early (`rcmd demo sticky | head`, `rcmd client host -- yes | head`).
const SIGPIPE_STATUS: i32 = 128 + rustix::process::Signal::PIPE.as_raw();

/// rcmd's command line as clap describes it: what `--help`, the manual pages and
/// completion are all made from.
pub fn command() -> clap::Command {
    Cli::command()
}

/// Parses the process's arguments, or prints why they are wrong (or the help) and exits.
/// A run that a completion script started for its candidates answers and exits here.
pub fn parse() -> Cli {
    completions::complete_if_asked();
    Cli::try_parse().unwrap_or_else(|e| {
        if !e.use_stderr() {
            let _ = e.print();
            std::process::exit(0);
        }
        // clap wraps help pages but not its errors, which quote our validators' long
        // explanations: those get wrapped here (without clap's colours, which the
        // wrapping would have to count around).
        let plain = e.render().to_string();
        if plain
            .lines()
            .all(|l| l.chars().count() <= crate::text::COLUMNS)
        {
            let _ = e.print();
        } else {
            let wrapped: Vec<String> = plain.lines().map(wrap_error_line).collect();
            eprintln!("{}", wrapped.join("\n"));
        }
        std::process::exit(FAILED);
    })
}

/// One line of a clap error, wrapped at [`crate::text::COLUMNS`], the following lines
/// indented under the text after its `error: ` or `tip: ` label.
fn wrap_error_line(line: &str) -> String {
    if line.chars().count() <= crate::text::COLUMNS {
        return line.to_string();
    }
    let text = line.trim_start();
    let lead = &line[..line.len() - text.len()];
    let label = ["error: ", "tip: "]
        .into_iter()
        .find(|l| text.starts_with(l))
        .map_or(0, str::len);
    crate::text::wrap(text, crate::text::COLUMNS, lead, lead.len() + label)
}

/// Sends `tracing` output to stderr, filtered by `RUST_LOG` or else by `default`.
fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour only for a person watching, as the demos do (https://no-color.org).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}

/// A whole number from `min` to `max` on the command line. clap's own range check says
/// "0 is not in 16..=65535", Rust's notation; this one says it in words.
#[derive(Clone, Copy)]
pub(crate) struct Whole {
    pub min: u64,
    pub max: u64,
}

impl clap::builder::TypedValueParser for Whole {
    type Value = u64;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<u64, clap::Error> {
        let Whole { min, max } = *self;
        let parsed = value
            .to_str()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|n| (min..=max).contains(n));
        parsed.ok_or_else(|| {
            let name = arg
                .and_then(clap::Arg::get_long)
                .map_or_else(|| "the value".to_string(), |l| format!("--{l}"));
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("{name} must be a whole number from {min} to {max}\n"),
            )
            .with_cmd(cmd)
        })
    }
}
