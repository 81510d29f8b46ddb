//! `rcmd demo sticky`: the same commands through the tutorial's four stages, side by side.
//!
//! Three cases, each deterministic:
//!
//! ```text
//! recv   receiver side: a reply longer than recv(N) leaves bytes behind; the next
//!        command's "reply" starts with them.
//! send   sender side: replies that reach the reader before it reads come out of one
//!        read as one blob (Nagle's algorithm and a slow reader both cause this).
//! split  拆包: the loop a learner writes, recv(N) until a short read, stops early
//!        on a reply that pauses and waits forever on one that fills its last read.
//! ```
//!
//! Stages: `naive` (no header), `length-ack` (the length as text, then "recv_ready"),
//! `classic` (`struct.pack('i', n)`) and `framed` (rcmd's own). Driving the sockets is in
//! `stages.rs`; this file chooses the cases and writes the text.

use std::io::{self, IsTerminal, Write};
use std::net::SocketAddr;

use tokio::net::TcpListener;

use super::render::Style;
use super::stages::{self, Kind, Plan, Stage, Trace};
use super::{reference, Reference};
use crate::printable::py_bytes;
use crate::server::{serve, ServerConfig};
use crate::wire::header::HeaderFormat;
use crate::wire::{Protocol, Wire, DEFAULT_RECV_SIZE};

/// Which cause of the bug to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Case {
    /// Receiver side: a reply longer than the read buffer bleeds into the next
    Recv,
    /// Sender side: replies that arrive before a read come out as one blob
    Send,
    /// One reply spread over several reads (拆包): where the learner's loop stops
    Split,
    /// All three, one after another
    All,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::Recv => "recv",
            Case::Send => "send",
            Case::Split => "split",
            Case::All => "all",
        }
    }
}

/// Options of `rcmd demo sticky`.
#[derive(Debug, Clone)]
pub struct Options {
    /// Header format of the framed stage (classic uses the tutorial's `i`).
    pub header: HeaderFormat,
    pub recv_size: usize,
    pub case: Case,
    /// Wait for Enter before every read.
    pub step: bool,
}

/// Counts for one stage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub commands: usize,
    pub wrong: usize,
    pub misattributed_bytes: usize,
}

/// The demo's result, per stage in [`Stage::ALL`] order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub stages: [Tally; 4],
    /// The client's `recv(N)`.
    pub recv_size: usize,
    /// A case showed no bug only because the buffer held every reply, and said so.
    pub hidden: bool,
}

impl Summary {
    pub fn of(&self, stage: Stage) -> Tally {
        self.stages[stage as usize]
    }

    /// The bug reproduced without framing (or a bigger buffer hid it, and the demo said
    /// so) and every framed stage was right.
    pub fn as_expected(&self) -> bool {
        (self.of(Stage::Naive).wrong > 0 || self.hidden)
            && Stage::ALL[1..]
                .iter()
                .all(|s| self.of(*s).wrong == 0 && self.of(*s).misattributed_bytes == 0)
    }

    /// The `--json` object, keys in the order people read them.
    pub fn to_json(self) -> String {
        let parts: Vec<String> = Stage::ALL
            .iter()
            .map(|s| {
                let t = self.of(*s);
                format!(
                    "\"{}\": {{\"commands\": {}, \"wrong\": {}, \"misattributed_bytes\": {}}}",
                    s.key(),
                    t.commands,
                    t.wrong,
                    t.misattributed_bytes
                )
            })
            .collect();
        format!("{{{}}}", parts.join(", "))
    }

    /// The closing lines.
    pub fn lines(&self) -> Vec<String> {
        Stage::ALL
            .iter()
            .map(|s| {
                let t = self.of(*s);
                if t.wrong == 0 && *s == Stage::Naive && self.hidden {
                    format!(
                        "{:<11} {} of {} correct, only because recv({}) hid the bug",
                        s.name(),
                        t.commands,
                        t.commands,
                        self.recv_size
                    )
                } else if t.wrong == 0 {
                    format!("{:<11} {} of {} correct", s.name(), t.commands, t.commands)
                } else {
                    format!(
                        "{:<11} {} of {} wrong, {} bytes taken for the wrong command",
                        s.name(),
                        t.wrong,
                        t.commands,
                        t.misattributed_bytes
                    )
                }
            })
            .collect()
    }
}

struct Scenario {
    case: Case,
    title: &'static str,
    why: &'static str,
    commands: &'static [&'static str],
    plan: Plan,
}

const MISSING: &str = "ls /nonexistent-rcmd-demo";

/// A reply that fills whole reads of `n` exactly: spaces, an x and a newline. Made to
/// fit the reader's buffer, so the loop that stops on a short read waits at any
/// `--recv-size`: two reads, or one for a buffer so large that two would not fit in a
/// loopback socket's receive queue.
fn exact_reads(n: usize) -> String {
    let len = if n <= 16 * 1024 { 2 * n } else { n };
    format!("printf '%{}s\\n' x", len - 1)
}
/// Prints 1092 bytes, pauses, then 2801 more: a reply that arrives in two bursts.
const PAUSING: &str = "seq 1 300; sleep 0.1; seq 301 1000";
/// Stands for [`exact_reads`] in a scenario's commands.
const EXACT: &str = "EXACT";

const SCENARIOS: &[Scenario] = &[
    Scenario {
        case: Case::Recv,
        title: "receiver side: a reply longer than the read buffer",
        why: "The client takes one recv(N) as the reply. A reply longer than N leaves \
              the rest queued, and the next recv returns it as the next command's reply.",
        commands: &["seq 1 1000", "echo hello", "pwd", MISSING],
        plan: Plan::AfterEachReply,
    },
    Scenario {
        case: Case::Send,
        title: "sender side: replies that arrive before the reader reads",
        why: "The client sends its commands before reading (Nagle's algorithm has the \
              same effect on the sender): three replies are queued when it reads, and \
              one recv returns them all as one blob.",
        commands: &["echo hello", "pwd", MISSING],
        plan: Plan::AfterAllReplies,
    },
    Scenario {
        case: Case::Split,
        title: "拆包: one reply over several reads; when is it complete?",
        why: "The loop a learner writes: recv(N) until a read returns fewer than N \
              bytes. A reply that fills its last read exactly (#1) leaves \
              the loop waiting for bytes that never come; a reply that pauses can end \
              the loop early.",
        commands: &[EXACT, PAUSING],
        plan: Plan::UntilShort,
    },
];

/// Width of the byte-stream bar, in columns.
const BAR_WIDTH: usize = 64;
/// Widest line the demo prints.
pub const MAX_COLUMNS: usize = crate::text::COLUMNS;

/// Everything the demo saw: per case, its commands and each stage's trace.
pub struct Lesson {
    pub recv_size: usize,
    pub header: HeaderFormat,
    pub cases: Vec<(&'static str, &'static str, Vec<Reference>, Vec<Trace>)>,
}

/// Starts the four stages' servers in-process, on loopback.
async fn servers(opts: &Options) -> io::Result<Vec<SocketAddr>> {
    let mut addrs = Vec::new();
    for stage in Stage::ALL {
        let protocol = match stage {
            Stage::Naive => Protocol::Naive,
            Stage::LengthAck => Protocol::LengthAck,
            Stage::Classic => Protocol::Classic,
            Stage::Framed => Protocol::Framed,
        };
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        addrs.push(listener.local_addr()?);
        let mut config = ServerConfig::new(protocol);
        config.workdir = Some(super::WORKDIR.into());
        config.wire = Wire {
            header: if stage == Stage::Framed {
                opts.header
            } else {
                protocol.default_header()
            },
            // --recv-size is the client's read; the server reads each command whole, as
            // the tutorial's recv(1024) does (a smaller one would cut the commands).
            ..config.wire
        };
        tokio::spawn(serve(listener, config, std::future::pending()));
    }
    Ok(addrs)
}

/// Runs the demo, printing to `out` unless `quiet`; returns the summary and what it saw.
///
/// # Errors
/// An I/O error starting the servers or talking to them.
pub async fn run(
    opts: &Options,
    style: Style,
    out: &mut dyn Write,
    quiet: bool,
) -> io::Result<(Summary, Lesson)> {
    let addrs = servers(opts).await?;
    let mut sink = io::sink();
    let out: &mut dyn Write = if quiet { &mut sink } else { out };
    let mut stepper = Stepper {
        on: opts.step,
        stdin_ended: false,
    };
    legend(opts, style, out)?;
    let mut summary = Summary {
        recv_size: opts.recv_size,
        ..Summary::default()
    };
    let mut lesson = Lesson {
        recv_size: opts.recv_size,
        header: opts.header,
        cases: Vec::new(),
    };
    let chosen: Vec<&Scenario> = SCENARIOS
        .iter()
        .filter(|s| opts.case == Case::All || opts.case == s.case)
        .collect();
    for (n, scenario) in chosen.iter().enumerate() {
        let commands: Vec<String> = scenario
            .commands
            .iter()
            .map(|c| match *c {
                EXACT => exact_reads(opts.recv_size),
                c => c.to_string(),
            })
            .collect();
        let refs = references(&commands).await?;
        let head = format!("━━ {} of {}: {} ━━", n + 1, chosen.len(), scenario.title);
        writeln!(out, "{}", style.bold(&head))?;
        writeln!(out, "{}", wrap(scenario.why, MAX_COLUMNS - 2))?;
        for (i, r) in refs.iter().enumerate() {
            let what = if r.stdout.is_empty() {
                format!("{} bytes (stderr)", r.stderr.len())
            } else {
                format!("{} bytes", r.raw().len())
            };
            writeln!(
                out,
                "  {} $ {:<36} {}",
                style.marker(i),
                r.command,
                style.dim(&format!("prints {what} alone"))
            )?;
        }
        writeln!(out)?;
        let mut traces = Vec::new();
        for (stage, addr) in Stage::ALL.iter().zip(&addrs) {
            // Before the stage runs, so --step shows each read under its stage.
            writeln!(
                out,
                "{} {}",
                style.bold(&format!("{:<10}", stage.name())),
                style.dim(&how(*stage, opts.recv_size, scenario.plan, opts.header))
            )?;
            if opts.step && *stage == Stage::Framed {
                // The one place --step shows what timing decides (the summary below
                // says "count varies"): say so before the reader compares two runs.
                writeln!(out, "{}", style.dim(FRAMED_READS_VARY))?;
            }
            let trace = stages::run(
                *stage,
                *addr,
                &refs,
                scenario.plan,
                opts.recv_size,
                opts.header,
                &mut Shown {
                    stepper: &mut stepper,
                    out: &mut *out,
                },
            )
            .await?;
            let tally = render_stage(&trace, &refs, scenario.plan, opts, style, out)?;
            let t = &mut summary.stages[*stage as usize];
            t.commands += tally.commands;
            t.wrong += tally.wrong;
            t.misattributed_bytes += tally.misattributed_bytes;
            traces.push(trace);
        }
        let naive_right = traces[0]
            .replies
            .iter()
            .zip(&refs)
            .all(|(g, r)| g.got == r.raw() && !g.waits);
        // Only a buffer bigger than the tutorial's can hide the bug; at or below it, no bug
        // is a regression, and the exit status says so.
        if naive_right && opts.recv_size > DEFAULT_RECV_SIZE {
            hint(scenario.case, opts, style, out)?;
            summary.hidden = true;
        }
        writeln!(out)?;
        lesson
            .cases
            .push((scenario.case.name(), scenario.title, refs, traces));
    }
    for line in summary.lines() {
        let line = if line.contains("wrong") {
            style.bad(&line)
        } else {
            style.good(&line)
        };
        writeln!(out, "{}", style.bold(&line))?;
    }
    Ok((summary, lesson))
}

/// Shown once where the framed stage starts under `--step`.
const FRAMED_READS_VARY: &str = "  \
  these reads vary between runs: the server frames output as it reads the pipe,
  so a reply may take more frames (count varies); the replies stay the same";

/// `--step`: waits for Enter before every read. When standard input ends (no terminal,
/// nothing more piped) it stops asking and runs the rest, so it never waits forever.
struct Stepper {
    on: bool,
    stdin_ended: bool,
}

/// The stepper with the demo's output, for one stage: each read is shown as it is made.
struct Shown<'a> {
    stepper: &'a mut Stepper,
    out: &'a mut dyn Write,
}

impl stages::Observer for Shown<'_> {
    fn before(&mut self, stage: Stage, i: usize, asked: usize) -> io::Result<()> {
        let s = &mut *self.stepper;
        if !s.on || s.stdin_ended {
            return Ok(());
        }
        eprint!("[{} #{}: recv({asked})] press Enter ", stage.name(), i + 1);
        let mut line = String::new();
        if io::stdin().read_line(&mut line)? == 0 {
            eprintln!("\nrcmd: standard input ended: running the rest without stopping");
            s.stdin_ended = true;
        } else if !io::stdin().is_terminal() {
            // Only a terminal echoes the Enter that ends the prompt's line; from a pipe
            // (`yes '' |`) the read's result would follow on the same line.
            eprintln!();
        }
        Ok(())
    }

    fn after(&mut self, stage: Stage, i: usize, asked: usize, got: &[u8]) -> io::Result<()> {
        if !self.stepper.on {
            return Ok(());
        }
        let head = format!("  ▸ {} #{}: recv({asked}) →", stage.name(), i + 1);
        let line = if got.is_empty() {
            format!("{head} waits: nothing queued, nothing coming")
        } else {
            let head = format!("{head} {}", count(got.len(), "byte"));
            let room = MAX_COLUMNS.saturating_sub(head.chars().count() + 5);
            format!("{head} {}", py_bytes(got, room))
        };
        writeln!(self.out, "{line}")?;
        self.out.flush()
    }

    fn answered(&mut self, stage: Stage, i: usize, bytes: &[u8]) -> io::Result<()> {
        if !self.stepper.on {
            return Ok(());
        }
        let sent = py_bytes(bytes, MAX_COLUMNS);
        let line = format!(
            "  ◂ {} #{}: send({sent}): now the output",
            stage.name(),
            i + 1
        );
        writeln!(self.out, "{line}")?;
        self.out.flush()
    }
}

fn legend(opts: &Options, style: Style, out: &mut dyn Write) -> io::Result<()> {
    let n = opts.recv_size;
    let text = format!(
        "\
How to read this (the same on every run: before each read the demo waits until
exactly the bytes it expects have arrived, so reads never depend on timing):
  #1 #2 …   the commands of a case, in the order they are sent
  recv(N)   one call of Python's sock.recv(N), here N = {n}: it returns the
            bytes that have arrived, at most N. It returns b'' only when the
            server has closed the connection; while the connection is open and
            nothing is queued, it waits
  |111|22|  the bytes the server sent, in order, scaled to {BAR_WIDTH} columns;
            each digit is a byte of that command's reply; | ends a recv
  stages    naive       no header: the tutorial before its fix
            length-ack  the length as text, wait for the client's b'recv_ready',
                        then the output (the tutorial's first fix)
            classic     struct.pack('i', n), then the output (its struct fix)
            framed      rcmd: struct.pack('{h}', len) before every message,
                        whose first byte is a tag: 'O' stdout, 'E' stderr,
                        'X' exit status. len counts the tag: 1 + the bytes
",
        h = opts.header
    );
    writeln!(out, "{}", style.dim(&text))
}

async fn references(commands: &[String]) -> io::Result<Vec<Reference>> {
    let mut refs = Vec::new();
    for c in commands {
        let r = reference(c).await?;
        // An empty reply puts nothing on the wire: the demo could not tell when it is done.
        if r.raw().is_empty() {
            return Err(io::Error::other(format!(
                "demo command {c:?} printed nothing"
            )));
        }
        refs.push(r);
    }
    Ok(refs)
}

/// What each stage's client does, in the tutorial's Python.
fn how(stage: Stage, n: usize, plan: Plan, header: HeaderFormat) -> String {
    match stage {
        Stage::Naive if plan == Plan::UntilShort => {
            format!("recv({n}) until a read returns fewer than {n} bytes")
        }
        Stage::Naive => format!("one recv({n}) is taken as the whole reply"),
        Stage::LengthAck => format!("n = int(recv({n})); send(b'recv_ready'); recv until n"),
        Stage::Classic => "n = struct.unpack('i', recv(4)); recv until n".to_string(),
        Stage::Framed if plan == Plan::AfterAllReplies => {
            format!("all commands sent at once; frames '{header}' decoded")
        }
        Stage::Framed => format!("recv({n}) into a buffer; frames '{header}' decoded"),
    }
}

fn render_stage(
    trace: &Trace,
    refs: &[Reference],
    plan: Plan,
    opts: &Options,
    style: Style,
    out: &mut dyn Write,
) -> io::Result<Tally> {
    let n = opts.recv_size;
    let mut tally = Tally {
        commands: refs.len(),
        ..Tally::default()
    };
    for (i, r) in refs.iter().enumerate() {
        let reply = &trace.replies[i];
        let expected = match trace.stage {
            Stage::Naive => r.raw(),
            _ => [&r.stderr[..], &r.stdout[..]].concat(),
        };
        let reads: Vec<_> = trace.reads.iter().filter(|x| x.for_command == i).collect();
        let owners: Vec<(Option<usize>, usize)> = reads
            .iter()
            .flat_map(|x| trace.owners(x.start, x.len))
            .collect();
        let mis: usize = owners
            .iter()
            .filter(|(o, _)| *o != Some(i))
            .map(|(_, l)| l)
            .sum();
        let wrong = reply.got != expected || reply.waits;
        tally.wrong += usize::from(wrong);
        tally.misattributed_bytes += if trace.stage == Stage::Naive { mis } else { 0 };
        let m = style.marker(i);
        match trace.stage {
            Stage::Naive => {
                for (k, rd) in reads.iter().enumerate() {
                    let whose: Vec<String> = trace
                        .owners(rd.start, rd.len)
                        .iter()
                        .map(|(o, l)| format!("{l} of #{}", o.map_or(0, |o| o + 1)))
                        .collect();
                    let got = if rd.len == 0 {
                        "waits: nothing queued, nothing coming".to_string()
                    } else {
                        format!("{:>4} bytes: {}", rd.len, whose.join(", "))
                    };
                    let lead = if k == 0 { m.clone() } else { "  ".into() };
                    writeln!(out, "  {lead} recv({n}) → {got}")?;
                }
                let verdict = if !wrong {
                    style.good("ok: the whole reply, nothing else")
                } else if reply.waits {
                    style.bad(&format!(
                        "WRONG: all {} bytes came, but the last read was full, so \
                         the loop calls recv again and waits forever (the demo gives \
                         up on it there and goes on with the next command)",
                        expected.len()
                    ))
                } else if reply.stopped_early {
                    style.bad(&format!(
                        "WRONG: stopped early: a short read ended the loop with {} of \
                         {} bytes; the rest was still on its way",
                        reply.got.len(),
                        expected.len()
                    ))
                } else if reply.got.is_empty() {
                    style.bad("WRONG: the reply was in an earlier read; this recv waits forever")
                } else if mis > 0 {
                    style.bad(&format!(
                        "WRONG: {mis} of {} bytes belong to other commands",
                        reply.got.len()
                    ))
                } else {
                    style.bad(&format!(
                        "WRONG: {} of {} bytes; the rest is still queued",
                        reply.got.len(),
                        expected.len()
                    ))
                };
                writeln!(out, "{}", wrap_styled(&verdict, 6))?;
                if !reply.got.is_empty() {
                    writeln!(out, "      {}", style.dim(&py_bytes(&reply.got, 58)))?;
                }
            }
            _ => {
                let heads: Vec<String> = heads_of(trace, i, r);
                for (k, h) in heads.iter().enumerate() {
                    let lead = if k == 0 { m.clone() } else { "  ".into() };
                    writeln!(out, "  {lead} {h}")?;
                }
                // The first read of a reply is its length: counted apart from the data.
                let data_reads = reads.len().saturating_sub(1);
                let verdict = if wrong {
                    style.bad("WRONG: differs from the command's own output")
                } else {
                    style.good(&match trace.stage {
                        Stage::LengthAck => format!(
                            "ok: {} bytes in {} after the length; b'recv_ready' sent",
                            expected.len(),
                            count(data_reads, "read")
                        ),
                        Stage::Classic => format!(
                            "ok: {} bytes in {} after the 4-byte header",
                            expected.len(),
                            count(data_reads, "read")
                        ),
                        // How many reads depends on how many frames: not a fixed number.
                        _ => format!("ok: {} bytes, as the command printed alone", expected.len()),
                    })
                };
                writeln!(out, "      {verdict}")?;
            }
        }
    }
    if trace.stage == Stage::Framed && plan == Plan::AfterAllReplies {
        writeln!(
            out,
            "  all {} replies in {} of up to {n}: the frames keep them apart",
            refs.len(),
            count(trace.reads.len(), "read")
        )?;
    }
    if trace.stage == Stage::Naive {
        let spans: Vec<(usize, usize)> = trace.reads.iter().map(|r| (r.start, r.len)).collect();
        writeln!(out, "  {}", style.bar(trace, &spans, BAR_WIDTH))?;
        let data_reads = spans.iter().filter(|s| s.1 > 0).count();
        if data_reads > super::render::MARKED_READS {
            writeln!(out, "  ({data_reads} reads: too many to mark each with |)")?;
        }
    }
    Ok(tally)
}

/// Largest write a pipe delivers whole (POSIX `PIPE_BUF` on Linux): a stream no longer
/// than this, written at once, reaches the server in one read and so in one frame.
const PIPE_BUF: usize = 4096;

/// The headers of command `i`'s reply, decoded, one line each.
///
/// The server frames what each read of the command's pipe returns, so a stream written
/// in pieces (stderr, which is unbuffered; a reply that pauses; one longer than a pipe
/// delivers whole) comes in a number of frames that depends on timing. Those streams
/// get one line with their size, the same on every run; the others show their frame.
fn heads_of(trace: &Trace, i: usize, r: &Reference) -> Vec<String> {
    let segs: Vec<_> = trace
        .segments
        .iter()
        .filter(|s| s.owner == Some(i))
        .collect();
    let pauses = stages::first_burst(r) < r.raw().len();
    let steady = |stdout: bool| stdout && !pauses && r.stdout.len() <= PIPE_BUF;
    let mut lines = Vec::new();
    let mut summarised = [false; 2];
    for (k, seg) in segs.iter().enumerate() {
        let Kind::Header(h) = &seg.kind else { continue };
        let (hex, value) = h.split_once(": ").unwrap_or((h, ""));
        let total = value.rsplit(" = ").nth(1).unwrap_or("");
        let fmt = value.split('\'').nth(1).unwrap_or("");
        let line = match segs.get(k + 1).map(|s| &s.kind) {
            Some(Kind::Tag(t)) => {
                let stdout = t.contains("stdout");
                if !steady(stdout) {
                    let (name, bytes) = if stdout {
                        ("'O' stdout", r.stdout.len())
                    } else {
                        ("'E' stderr", r.stderr.len())
                    };
                    if !std::mem::replace(&mut summarised[usize::from(stdout)], true) {
                        lines.push(format!(
                            "{name}: {bytes} bytes, a frame per read of the pipe (count varies)"
                        ));
                    }
                    continue;
                }
                let body = segs.get(k + 2).map_or(0, |s| s.len);
                format!("{hex}  {fmt} → {total} = 1 tag byte {t} + {body} bytes")
            }
            Some(Kind::Status(st)) => format!("{hex}  {fmt} → {total} = 1 tag byte + 4: {st}"),
            _ => h.clone(),
        };
        lines.push(line);
    }
    lines
}

/// When no naive read went wrong: a bigger buffer only hides the bug.
fn hint(case: Case, opts: &Options, style: Style, out: &mut dyn Write) -> io::Result<()> {
    let text = format!(
        "No bug in this case, but only because recv({}) held each reply whole. A bigger \
         buffer only hides the bug: any reply longer than the buffer brings it back. \
         With the tutorial's recv({DEFAULT_RECV_SIZE}) you see it again:",
        opts.recv_size
    );
    writeln!(out, "{}", style.bad(&wrap(&text, MAX_COLUMNS - 2)))?;
    writeln!(
        out,
        "    rcmd demo sticky --case {} --recv-size {DEFAULT_RECV_SIZE}",
        case.name()
    )
}

/// `n` and `noun`, plural when `n` is not 1: "1 read", "2 reads".
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Wraps prose at `width` columns, indented by two.
pub fn wrap(text: &str, width: usize) -> String {
    wrap_indent(text, width, 2)
}

fn wrap_indent(text: &str, width: usize, indent: usize) -> String {
    crate::text::wrap(text, width, &" ".repeat(indent), indent)
}

/// Wraps a verdict that may carry colour codes (kept around each line).
fn wrap_styled(text: &str, indent: usize) -> String {
    let (pre, body, post) = match text.strip_prefix("\x1b[") {
        Some(rest) => {
            let m = rest.find('m').map_or(0, |m| m + 1);
            let body = rest[m..].strip_suffix("\x1b[0m").unwrap_or(&rest[m..]);
            (format!("\x1b[{}", &rest[..m]), body, "\x1b[0m")
        }
        None => (String::new(), text, ""),
    };
    wrap_indent(body, MAX_COLUMNS, indent)
        .lines()
        .map(|l| {
            let (lead, rest) = l.split_at(indent);
            format!("{lead}{pre}{rest}{post}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}
