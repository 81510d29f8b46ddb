//! `rcmd demo sticky`: the same commands through the tutorial's four stages, side by side.
//!
//! Three cases, each deterministic:
//!
//! ```text
//! recv   receiver side: a reply longer than recv(N) leaves bytes behind; the next
//!        command's "reply" starts with them.
//! send   sender side, both ways round: replies that reach the reader before it reads
//!        come out of one read as one blob; requests sent without waiting reach the
//!        server together, and its one recv runs them as one command line. Every stage
//!        gets the same sends: one at a time, then pipelined.
//! split  拆包: the loop a learner writes, recv(N) until a short read, stops early
//!        on a reply that pauses and waits forever on one that fills its last read.
//! ```
//!
//! Stages: `naive` (no header), `length-ack` (the length as text, then "recv_ready"),
//! `classic` (`struct.pack('i', n)`) and `framed` (rcmd's own). Driving the sockets is in
//! `stages.rs`; this file chooses the cases and writes the text.

use std::io::{self, IsTerminal, Write};

use tokio::net::TcpListener;

use super::render::Style;
use super::stages::{self, Commands, Kind, Plan, Stage, Trace};
use super::{reference, Reference};
use crate::printable::py_bytes;
use crate::server::ServerConfig;
use crate::wire::header::HeaderFormat;
use crate::wire::{Protocol, Wire, DEFAULT_RECV_SIZE};

/// Which cause of the bug to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Case {
    /// Receiver side: a reply longer than the read buffer bleeds into the next
    Recv,
    /// Sender side: replies that arrive before a read come out as one blob, and
    /// pipelined requests reach the server as one command line
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
    /// Of the wrong ones, those where the mode has no defence: requests that reached a
    /// server without request framing together.
    pub merged: usize,
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
    /// so), the tutorial's fixes went wrong only on requests that stuck together (their
    /// requests have no header), and rcmd's framing was right throughout.
    pub fn as_expected(&self) -> bool {
        (self.of(Stage::Naive).wrong > 0 || self.hidden)
            && Stage::ALL[1..].iter().all(|s| {
                let t = self.of(*s);
                t.wrong == t.merged && t.misattributed_bytes == 0
            })
            && self.of(Stage::Framed).wrong == 0
    }

    /// The `--json` object, keys in the order people read them.
    pub fn to_json(self) -> String {
        let parts: Vec<String> = Stage::ALL
            .iter()
            .map(|s| {
                let t = self.of(*s);
                format!(
                    "\"{}\": {{\"commands\": {}, \"wrong\": {}, \"wrong_pipelined\": {}, \
                     \"misattributed_bytes\": {}}}",
                    s.key(),
                    t.commands,
                    t.wrong,
                    t.merged,
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
                } else if t.wrong == t.merged {
                    format!(
                        "{:<11} {} of {} wrong: pipelined requests ran as one command",
                        s.name(),
                        t.wrong,
                        t.commands
                    )
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
    /// Names the run on the page (`data-case`).
    key: &'static str,
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
        key: "recv",
        title: "receiver side: a reply longer than the read buffer",
        why: "The client takes one recv(N) as the reply. A reply longer than N leaves \
              the rest queued, and the next recv returns it as the next command's reply.",
        commands: &["seq 1 1000", "echo hello", "pwd", MISSING],
        plan: Plan::AfterEachReply,
    },
    Scenario {
        case: Case::Send,
        key: "send",
        title: "sender side: replies that arrive before the reader reads",
        why: "Every stage sends one command at a time, each once the last reply has \
              arrived, and reads only at the end (Nagle's algorithm has the same effect \
              on the sender): three replies are queued when it reads, and without a \
              header one recv returns them all as one blob. length-ack cannot wait: \
              its output comes only once answered, so it reads each reply in turn.",
        commands: &["echo hello", "pwd", MISSING],
        plan: Plan::AfterAllReplies,
    },
    Scenario {
        case: Case::Send,
        key: "send-pipelined",
        title: "sender side: requests that arrive before the server reads",
        why: "The same commands, sent by a client that does not wait, to a server that \
              reads once all three have arrived (busy with another client, or Nagle's \
              algorithm holding the sends). The tutorial frames only its replies: the \
              server's one recv returns the three requests as one command line, and \
              runs that. rcmd frames requests too.",
        commands: &["echo hello", "pwd", MISSING],
        plan: Plan::Pipelined,
    },
    Scenario {
        case: Case::Split,
        key: "split",
        title: "拆包 (split packets): when is a reply spread over reads complete?",
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
    pub cases: Vec<CaseRun>,
}

/// One case as run through every stage.
pub struct CaseRun {
    pub key: &'static str,
    pub title: &'static str,
    /// Its commands, each as run alone.
    pub refs: Vec<Reference>,
    /// All its commands as one line, as a server without request framing ran them when
    /// they arrived together (the pipelined case).
    pub merged: Option<Reference>,
    pub traces: Vec<Trace>,
}

/// A stage's server, in-process on loopback, listening but not yet reading: each run
/// starts its own, so the pipelined case can have it read only once the requests are in.
async fn server(opts: &Options, stage: Stage) -> io::Result<stages::Server> {
    {
        let protocol = match stage {
            Stage::Naive => Protocol::Naive,
            Stage::LengthAck => Protocol::LengthAck,
            Stage::Classic => Protocol::Classic,
            Stage::Framed => Protocol::Framed,
        };
        let listener = TcpListener::bind("127.0.0.1:0").await?;
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
        Ok(stages::Server { listener, config })
    }
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
        let merged = match scenario.plan {
            Plan::Pipelined => Some(reference(&commands.concat()).await?),
            _ => None,
        };
        let cmds = Commands {
            refs: &refs,
            merged: merged.as_ref(),
        };
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
        for stage in &Stage::ALL {
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
                server(opts, *stage).await?,
                &cmds,
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
            t.merged += tally.merged;
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
        lesson.cases.push(CaseRun {
            key: scenario.key,
            title: scenario.title,
            refs,
            merged,
            traces,
        });
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

    fn sent(&mut self, stage: Stage, i: usize, bytes: &[u8]) -> io::Result<()> {
        if !self.stepper.on {
            return Ok(());
        }
        let head = format!("  ◂ {} #{}: send(", stage.name(), i + 1);
        let room = MAX_COLUMNS.saturating_sub(head.chars().count() + 6);
        writeln!(self.out, "{head}{})", py_bytes(bytes, room))?;
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
            each digit is a byte of that command's reply; | ends a recv;
            digits after the last | were sent but never read (drawn dim)
  server    where requests stick together, the same bar for the other
            direction: the client's requests, and the server's recv calls
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
        Stage::Framed if plan == Plan::Pipelined => {
            format!("all commands sent at once; frames '{header}' decoded")
        }
        Stage::Framed if plan == Plan::AfterAllReplies => {
            format!("read at the end; frames '{header}' decoded")
        }
        Stage::Framed => format!("recv({n}) into a buffer; frames '{header}' decoded"),
    }
}

/// What one command's reply came to on a stage, in words: right or wrong, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub wrong: bool,
    pub text: String,
    /// Bytes read for this command that belong to another (naive).
    pub misattributed: usize,
}

/// The verdict on command `i`'s reply in `trace` (`r` is the command run alone, `n` the
/// client's recv size).
pub fn verdict(trace: &Trace, i: usize, r: &Reference, n: usize) -> Verdict {
    let reply = &trace.replies[i];
    let expected = match trace.stage {
        Stage::Naive => r.raw(),
        _ => [&r.stderr[..], &r.stdout[..]].concat(),
    };
    let reads: Vec<_> = trace.reads.iter().filter(|x| x.for_command == i).collect();
    let mis: usize = reads
        .iter()
        .flat_map(|x| trace.owners(x.start, x.len))
        .filter(|(o, _)| *o != Some(i))
        .map(|(_, l)| l)
        .sum();
    let wrong = reply.got != expected || reply.waits;
    let text = if reply.merged {
        format!(
            "WRONG: the server's one recv read all {} requests as one command line and \
             ran it; this is that command's output",
            trace.replies.len()
        )
    } else if reply.swallowed && !reply.got.is_empty() {
        format!(
            "WRONG: the server ran #{} as part of #1: this read returned more of that \
             output, and no reply of its own comes",
            i + 1
        )
    } else if reply.swallowed {
        format!(
            "WRONG: no reply of its own comes: the server ran #{} as part of #1; the \
             client waits forever",
            i + 1
        )
    } else if !wrong {
        let data_reads = reads.len().saturating_sub(1);
        match trace.stage {
            Stage::Naive => "ok: the whole reply, nothing else".to_string(),
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
            Stage::Framed => format!("ok: {} bytes, as the command printed alone", expected.len()),
        }
    } else if trace.stage != Stage::Naive {
        "WRONG: differs from the command's own output".to_string()
    } else if reply.waits {
        format!(
            "WRONG: all {} bytes came, but the last read was full, so the loop calls \
             recv({n}) again and waits forever (the demo gives up on it there and goes \
             on with the next command)",
            expected.len()
        )
    } else if reply.stopped_early {
        format!(
            "WRONG: stopped early: a short read ended the loop with {} of {} bytes; the \
             rest was still on its way",
            reply.got.len(),
            expected.len()
        )
    } else if reply.got.is_empty() {
        "WRONG: the reply was in an earlier read; this recv waits forever".to_string()
    } else if mis > 0 {
        format!(
            "WRONG: {mis} of {} bytes belong to other commands",
            reply.got.len()
        )
    } else {
        format!(
            "WRONG: {} of {} bytes; the rest is still queued",
            reply.got.len(),
            expected.len()
        )
    };
    Verdict {
        wrong,
        text,
        misattributed: if trace.stage == Stage::Naive { mis } else { 0 },
    }
}

/// The server's side of a pipelined run: its recv calls over the requests, and what it
/// made of them.
fn render_requests(trace: &Trace, style: Style, out: &mut dyn Write) -> io::Result<()> {
    let requests = trace.request_stream();
    for rd in &trace.server_reads {
        let whose: Vec<String> = requests
            .owners(rd.start, rd.len)
            .iter()
            .map(|(o, l)| match o {
                Some(o) => format!("{l} of #{}", o + 1),
                None => format!("{l} hello"),
            })
            .collect();
        // The tutorial's server makes one recv(1024); rcmd's reads into a buffer.
        let call = match trace.stage {
            Stage::Framed => "server reads".to_string(),
            _ => format!("server recv({})", rd.asked),
        };
        writeln!(out, "  {call} → {} bytes: {}", rd.len, whose.join(", "))?;
    }
    let spans: Vec<(usize, usize)> = trace
        .server_reads
        .iter()
        .map(|r| (r.start, r.len))
        .collect();
    writeln!(out, "  {}", style.bar(&requests, &spans, BAR_WIDTH))?;
    let text = if trace.stage == Stage::Framed {
        format!(
            "the server decodes {} 'R' frames from it: one command each",
            trace.replies.len()
        )
    } else {
        let line: Vec<u8> = trace
            .requests
            .iter()
            .flat_map(|s| s.bytes.clone())
            .collect();
        format!(
            "no header on requests: the server runs {} as one command",
            py_bytes(&line, 40)
        )
    };
    writeln!(out, "{}", wrap_styled(&style.dim(&text), 2))?;
    writeln!(out, "  client:")
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
    if !trace.requests.is_empty() {
        render_requests(trace, style, out)?;
    }
    for (i, r) in refs.iter().enumerate() {
        let reply = &trace.replies[i];
        let v = verdict(trace, i, r, n);
        tally.wrong += usize::from(v.wrong);
        tally.merged += usize::from(v.wrong && (reply.merged || reply.swallowed));
        tally.misattributed_bytes += v.misattributed;
        let reads: Vec<_> = trace.reads.iter().filter(|x| x.for_command == i).collect();
        let m = style.marker(i);
        let text = if v.wrong {
            style.bad(&v.text)
        } else {
            style.good(&v.text)
        };
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
                if reads.is_empty() {
                    writeln!(out, "  {m}")?;
                }
                writeln!(out, "{}", wrap_styled(&text, 6))?;
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
                if heads.is_empty() {
                    writeln!(out, "  {m}")?;
                }
                writeln!(out, "{}", wrap_styled(&text, 6))?;
            }
        }
    }
    if trace.stage == Stage::Framed && matches!(plan, Plan::AfterAllReplies | Plan::Pipelined) {
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
