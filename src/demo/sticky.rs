//! `rcmd demo sticky`: the same commands over `naive` and over `framed`, side by side.
//!
//! Three cases, each deterministic:
//!
//! ```text
//! recv   receiver side: a reply longer than recv(N) leaves bytes behind; the next
//!        command's "reply" starts with them.
//! send   sender side: replies that reach the reader before it reads come out of one
//!        read as one blob (Nagle's algorithm and a slow reader both cause this).
//! split  拆包: one reply spread over several reads; nothing says when it is complete.
//! ```

use std::io::{self, Write};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{Decoder, Encoder};

use super::render::{snippet, Style};
use super::stream::Stream;
use super::{reference, wait_queued, Reference};
use crate::header::HeaderFormat;
use crate::protocol::{ClientCodec, ClientMessage, Hello, ServerMessage};
use crate::server::{serve, ServerConfig};
use crate::status::Status;
use crate::wire::{Protocol, Wire};

/// Which cause of the bug to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Case {
    /// Receiver side: a reply longer than the read buffer bleeds into the next
    Recv,
    /// Sender side: replies that arrive before a read come out as one blob
    Send,
    /// One reply spread over several reads (拆包)
    Split,
    /// All three, one after another
    All,
}

/// Options of `rcmd demo sticky`.
#[derive(Debug, Clone)]
pub struct Options {
    pub header: HeaderFormat,
    pub recv_size: usize,
    pub case: Case,
}

/// Counts for one half of the demo.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub commands: usize,
    pub wrong: usize,
    pub misattributed_bytes: usize,
}

impl Tally {
    fn of(commands: usize) -> Tally {
        Tally {
            commands,
            ..Tally::default()
        }
    }
}

/// The demo's result: did naive show the bug, and was framed right every time?
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub naive: Tally,
    pub framed: Tally,
}

impl Summary {
    /// The bug reproduced on the naive side and the framed side was entirely correct.
    pub fn as_expected(&self) -> bool {
        self.naive.wrong > 0 && self.framed.wrong == 0 && self.framed.misattributed_bytes == 0
    }

    /// The `--json` object, keys in the order people read them.
    pub fn to_json(&self) -> String {
        let tally = |t: &Tally| {
            format!(
                "{{\"commands\": {}, \"wrong\": {}, \"misattributed_bytes\": {}}}",
                t.commands, t.wrong, t.misattributed_bytes
            )
        };
        format!(
            "{{\"naive\": {}, \"framed\": {}}}",
            tally(&self.naive),
            tally(&self.framed)
        )
    }

    /// The closing line, e.g. `naive: 3 of 4 replies wrong, 2852 bytes misattributed; …`.
    pub fn line(&self) -> String {
        format!(
            "naive: {} of {} replies wrong, {} bytes misattributed; framed: {} of {} correct",
            self.naive.wrong,
            self.naive.commands,
            self.naive.misattributed_bytes,
            self.framed.commands - self.framed.wrong,
            self.framed.commands
        )
    }

    fn add(&mut self, other: Summary) {
        for (a, b) in [
            (&mut self.naive, other.naive),
            (&mut self.framed, other.framed),
        ] {
            a.commands += b.commands;
            a.wrong += b.wrong;
            a.misattributed_bytes += b.misattributed_bytes;
        }
    }
}

/// How the naive reader reads in one case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// Send a command, wait for its whole reply to arrive, read once. Repeat.
    AfterEachReply,
    /// Send every command (each after the last one's reply arrived), then read once
    /// per command.
    AfterAllReplies,
    /// Send one command, then keep reading until the stream is drained.
    UntilDrained,
}

struct Scenario {
    case: Case,
    title: &'static str,
    why: &'static str,
    commands: &'static [&'static str],
    plan: Plan,
}

const MISSING: &str = "ls /nonexistent-rcmd-demo";

const SCENARIOS: &[Scenario] = &[
    Scenario {
        case: Case::Recv,
        title: "receiver side: a reply longer than the read buffer",
        why: "The client reads each reply with one recv(N). seq's reply is longer than N, so \
              the rest stays in the stream and is what the next recv returns.",
        commands: &["seq 1 1000", "echo hello", "pwd", MISSING],
        plan: Plan::AfterEachReply,
    },
    Scenario {
        case: Case::Send,
        title: "sender side: replies that arrive before the reader reads",
        why: "The client is slow to read (Nagle's algorithm has the same effect on the \
              sender): three replies, one of them stderr, are waiting when it reads, and \
              one recv returns them all as one blob.",
        commands: &["echo hello", "pwd", MISSING],
        plan: Plan::AfterAllReplies,
    },
    Scenario {
        case: Case::Split,
        title: "拆包: one reply spread over several reads",
        why: "A reader that keeps calling recv(N) gets seq's reply in pieces. Nothing in the \
              bytes says which piece is the last, so it stops too early or waits forever.",
        commands: &["seq 1 1000"],
        plan: Plan::UntilDrained,
    },
];

/// Width of the byte-stream picture, in columns.
const BAR_WIDTH: usize = 64;

/// Runs the demo, printing to `out` unless `quiet`; returns the summary.
///
/// # Errors
/// An I/O error starting the servers or talking to them.
pub async fn run(
    opts: &Options,
    style: Style,
    out: &mut dyn Write,
    quiet: bool,
) -> io::Result<Summary> {
    let naive_addr = start(Protocol::Naive, opts).await?;
    let framed_addr = start(Protocol::Framed, opts).await?;
    let mut sink = io::sink();
    let out: &mut dyn Write = if quiet { &mut sink } else { out };

    let mut summary = Summary::default();
    let chosen: Vec<&Scenario> = SCENARIOS
        .iter()
        .filter(|s| opts.case == Case::All || opts.case == s.case)
        .collect();
    for (n, scenario) in chosen.iter().enumerate() {
        let refs = references(scenario.commands).await?;
        writeln!(
            out,
            "{}",
            style.bold(&format!(
                "━━ {} of {}: {} ━━",
                n + 1,
                chosen.len(),
                scenario.title
            ))
        )?;
        writeln!(out, "{}\n", wrap(scenario.why, 88))?;
        let half = Half {
            plan: scenario.plan,
            refs: &refs,
            opts,
            style,
        };
        let naive = naive_half(naive_addr, &half, out).await?;
        let framed = framed_half(framed_addr, &half, out).await?;
        summary.add(Summary { naive, framed });
        writeln!(out)?;
    }
    let verdict = if summary.as_expected() {
        style.good(&summary.line())
    } else {
        style.bad(&summary.line())
    };
    writeln!(out, "{}", style.bold(&verdict))?;
    Ok(summary)
}

async fn start(protocol: Protocol, opts: &Options) -> io::Result<std::net::SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let mut config = ServerConfig::new(protocol);
    config.wire = Wire {
        header: opts.header,
        recv_size: opts.recv_size,
        ..config.wire
    };
    tokio::spawn(serve(listener, config, std::future::pending()));
    Ok(addr)
}

async fn references(commands: &[&str]) -> io::Result<Vec<Reference>> {
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

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// What both halves of a case share: the same commands, read the same way, drawn alike.
#[derive(Clone, Copy)]
struct Half<'a> {
    plan: Plan,
    refs: &'a [Reference],
    opts: &'a Options,
    style: Style,
}

/// A client connection to one of the demo's servers. Small writes go out at once, so
/// what arrives together was sent together only where the demo means it to be.
async fn connect(addr: std::net::SocketAddr) -> io::Result<TcpStream> {
    let conn = TcpStream::connect(addr).await?;
    conn.set_nodelay(true)?;
    Ok(conn)
}

/// One recv on the naive connection: where in the stream it started, what it returned,
/// and which command the naive client took it to be the reply to.
struct Read {
    start: usize,
    bytes: Vec<u8>,
    taken_for: Option<usize>,
}

/// The naive client's side of the connection, keeping every read it made.
struct NaiveReader {
    conn: TcpStream,
    /// What the server should send: every command's own output, in order.
    wire: Vec<u8>,
    buf: Vec<u8>,
    reads: Vec<Read>,
    consumed: usize,
}

impl NaiveReader {
    /// One recv, taken as the reply to `taken_for`. With nothing left to come it returns
    /// nothing instead of blocking forever, as a real client would.
    async fn recv(&mut self, taken_for: Option<usize>) -> io::Result<()> {
        let n = if self.consumed < self.wire.len() {
            self.conn.read(&mut self.buf).await?
        } else {
            0
        };
        let bytes = self.buf[..n].to_vec();
        // The picture is only honest if the wire carried exactly the expected bytes.
        if bytes[..] != self.wire[self.consumed..self.consumed + n] {
            return Err(invalid(
                "the naive server's output differed from the commands' own output".into(),
            ));
        }
        self.reads.push(Read {
            start: self.consumed,
            bytes,
            taken_for,
        });
        self.consumed += n;
        Ok(())
    }
}

async fn naive_half(
    addr: std::net::SocketAddr,
    half: &Half<'_>,
    out: &mut dyn Write,
) -> io::Result<Tally> {
    let Half {
        plan,
        refs,
        opts,
        style,
    } = *half;
    let stream = Stream::new(refs.iter().map(|r| r.raw().len()).collect());
    let conn = connect(addr).await?;
    let mut r = NaiveReader {
        wire: refs.iter().flat_map(Reference::raw).collect(),
        conn,
        buf: vec![0u8; opts.recv_size],
        reads: Vec::new(),
        consumed: 0,
    };
    match plan {
        Plan::AfterEachReply => {
            for (i, reference) in refs.iter().enumerate() {
                r.conn.write_all(reference.command.as_bytes()).await?;
                wait_queued(&r.conn, stream.span(i).end - r.consumed).await?;
                r.recv(Some(i)).await?;
            }
        }
        Plan::AfterAllReplies => {
            for (i, reference) in refs.iter().enumerate() {
                r.conn.write_all(reference.command.as_bytes()).await?;
                // The next command goes out only once this reply is here, so the server
                // reads each command on its own.
                wait_queued(&r.conn, stream.span(i).end).await?;
            }
            for i in 0..refs.len() {
                r.recv(Some(i)).await?;
            }
        }
        Plan::UntilDrained => {
            r.conn.write_all(refs[0].command.as_bytes()).await?;
            wait_queued(&r.conn, stream.len()).await?;
            r.recv(Some(0)).await?;
            while r.consumed < stream.len() {
                r.recv(None).await?;
            }
        }
    }
    let (reads, consumed) = (r.reads, r.consumed);

    let detail = format!(
        "(no header; the client takes one recv({}) as the reply)",
        opts.recv_size
    );
    writeln!(out, "{} {}", style.bold("naive"), style.dim(&detail))?;
    let mut tally = Tally::of(refs.len());
    for (i, r) in refs.iter().enumerate() {
        let expected = r.raw();
        writeln!(
            out,
            "  {} $ {:<28} {}",
            style.marker(i),
            r.command,
            style.dim(&format!("printed {} bytes on its own", expected.len()))
        )?;
        let taken: Vec<&Read> = reads.iter().filter(|rd| rd.taken_for == Some(i)).collect();
        let (start, got) = match taken.first() {
            Some(rd) => (rd.start, rd.bytes.clone()),
            None => (consumed, Vec::new()),
        };
        let mis = stream.misattributed(i, start, got.len());
        let wrong = got != expected;
        tally.wrong += usize::from(wrong);
        tally.misattributed_bytes += mis;
        let owners: Vec<String> = stream
            .pieces(start, got.len())
            .iter()
            .map(|p| format!("{}×{}", style.marker(p.owner), p.len))
            .collect();
        let verdict = if !wrong {
            style.good("ok")
        } else if got.is_empty() {
            style.bad("WRONG: nothing left to read; a real client blocks here forever")
        } else if mis > 0 {
            style.bad(&format!(
                "WRONG: {mis} of {} bytes belong to other commands",
                got.len()
            ))
        } else {
            style.bad(&format!(
                "WRONG: only {} of {} bytes; the rest is still in the stream",
                got.len(),
                expected.len()
            ))
        };
        writeln!(
            out,
            "      recv → {:>4} bytes  {:<12} {verdict}",
            got.len(),
            owners.join(" ")
        )?;
        if !got.is_empty() {
            writeln!(out, "      {}", style.dim(&snippet(&got, 60)))?;
        }
    }
    let spans: Vec<(usize, usize)> = reads.iter().map(|r| (r.start, r.bytes.len())).collect();
    writeln!(
        out,
        "  the byte stream, | where each recv ended ({} reads; digits say whose bytes):",
        reads.len()
    )?;
    writeln!(out, "  {}", style.stream_bar(&stream, &spans, BAR_WIDTH))?;
    Ok(tally)
}

/// What the framed client collected for one command.
#[derive(Default)]
struct FramedReply {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    status: Option<Status>,
    lines: Vec<String>,
}

async fn framed_half(
    addr: std::net::SocketAddr,
    half: &Half<'_>,
    out: &mut dyn Write,
) -> io::Result<Tally> {
    let Half {
        plan,
        refs,
        opts,
        style,
    } = *half;
    let header = opts.header;
    let mut conn = connect(addr).await?;
    let mut codec = ClientCodec::new(header, crate::codec::DEFAULT_MAX_FRAME);
    let mut frames = FrameReader {
        conn: &mut conn,
        buf: BytesMut::new(),
        scratch: vec![0u8; opts.recv_size],
        wire: Vec::new(),
        read_ends: Vec::new(),
        header,
    };

    let mut out_buf = BytesMut::new();
    codec
        .encode(
            ClientMessage::Hello(Hello::new(crate::codec::DEFAULT_MAX_FRAME, Bytes::new())),
            &mut out_buf,
        )
        .map_err(|e| invalid(e.to_string()))?;
    frames.conn.write_all(&out_buf).await?;
    match frames.next(&mut codec).await?.0 {
        ServerMessage::Hello(h) => codec.set_peer_max_frame(h.max_frame),
        other => return Err(invalid(format!("expected a hello, got {other:?}"))),
    }
    let hello_end = frames.wire.len() - frames.buf.len();

    let send = async |conn: &mut TcpStream, codec: &mut ClientCodec, cmd: &str| -> io::Result<()> {
        let mut b = BytesMut::new();
        codec
            .encode(
                ClientMessage::Run(Bytes::copy_from_slice(cmd.as_bytes())),
                &mut b,
            )
            .map_err(|e| invalid(e.to_string()))?;
        conn.write_all(&b).await
    };

    let mut replies: Vec<FramedReply> = refs.iter().map(|_| FramedReply::default()).collect();
    if plan == Plan::AfterAllReplies {
        // Pipelined: every request before any reply is read; framing keeps them apart.
        for r in refs {
            send(frames.conn, &mut codec, &r.command).await?;
        }
        for reply in replies.iter_mut() {
            frames.read_reply(&mut codec, reply, hello_end).await?;
        }
    } else {
        for (r, reply) in refs.iter().zip(replies.iter_mut()) {
            send(frames.conn, &mut codec, &r.command).await?;
            frames.read_reply(&mut codec, reply, hello_end).await?;
        }
    }

    let detail = format!(
        "(header {header}: struct.pack('{header}', len(payload)) before every message; \
         reads of {} bytes)",
        opts.recv_size
    );
    writeln!(out, "{} {}", style.bold("framed"), style.dim(&detail))?;
    let mut tally = Tally::of(refs.len());
    for (i, (r, reply)) in refs.iter().zip(&replies).enumerate() {
        writeln!(out, "  {} $ {}", style.marker(i), r.command)?;
        for line in &reply.lines {
            writeln!(out, "      {line}")?;
        }
        let right = reply.stdout == r.stdout
            && reply.stderr == r.stderr
            && reply.status.as_ref() == Some(&r.status);
        if right {
            writeln!(
                out,
                "      {}",
                style.good(&format!(
                    "ok: stdout {} bytes, stderr {} bytes, {}: same as on its own",
                    reply.stdout.len(),
                    reply.stderr.len(),
                    r.status
                ))
            )?;
        } else {
            tally.wrong += 1;
            tally.misattributed_bytes +=
                differing(&reply.stdout, &r.stdout) + differing(&reply.stderr, &r.stderr);
            writeln!(
                out,
                "      {}",
                style.bad("WRONG: differs from the command's own output")
            )?;
        }
    }
    Ok(tally)
}

/// Bytes of `got` past the longest prefix it shares with `want`.
fn differing(got: &[u8], want: &[u8]) -> usize {
    let common = got.iter().zip(want).take_while(|(a, b)| a == b).count();
    got.len() - common
}

/// Reads in `recv_size` pieces and decodes messages with the real codec, remembering the
/// raw bytes so each frame's header can be shown as it was on the wire.
struct FrameReader<'a> {
    conn: &'a mut TcpStream,
    buf: BytesMut,
    scratch: Vec<u8>,
    wire: Vec<u8>,
    read_ends: Vec<usize>,
    header: HeaderFormat,
}

impl FrameReader<'_> {
    /// The next message, and where its frame lies in the stream.
    async fn next(
        &mut self,
        codec: &mut ClientCodec,
    ) -> io::Result<(ServerMessage, std::ops::Range<usize>)> {
        loop {
            if let Some(msg) = codec
                .decode(&mut self.buf)
                .map_err(|e| invalid(e.to_string()))?
            {
                let end = self.wire.len() - self.buf.len();
                let start = end - self.header.size() - crate::protocol::Message::encoded_len(&msg);
                return Ok((msg, start..end));
            }
            let n = self.conn.read(&mut self.scratch).await?;
            if n == 0 {
                return Err(invalid("the framed server closed the connection".into()));
            }
            self.buf.extend_from_slice(&self.scratch[..n]);
            self.wire.extend_from_slice(&self.scratch[..n]);
            self.read_ends.push(self.wire.len());
        }
    }

    /// Which reads (1-based, counted from the first after the hello) hold `range`.
    fn reads_of(&self, range: &std::ops::Range<usize>, hello_end: usize) -> String {
        let first_read = self
            .read_ends
            .iter()
            .position(|&e| e > hello_end)
            .unwrap_or(0);
        let idx =
            |pos: usize| self.read_ends.iter().position(|&e| e > pos).unwrap_or(0) - first_read + 1;
        let (a, b) = (idx(range.start), idx(range.end - 1));
        if a == b {
            format!("read {a}")
        } else {
            format!("reads {a}-{b}")
        }
    }

    async fn read_reply(
        &mut self,
        codec: &mut ClientCodec,
        reply: &mut FramedReply,
        hello_end: usize,
    ) -> io::Result<()> {
        loop {
            let (msg, range) = self.next(codec).await?;
            let head = &self.wire[range.start..range.start + self.header.size()];
            let hex: Vec<String> = head.iter().map(|b| format!("{b:02x}")).collect();
            let value = self.header.unpack(head);
            let what = match &msg {
                ServerMessage::Stdout(b) => format!("'O' stdout {} bytes", b.len()),
                ServerMessage::Stderr(b) => format!("'E' stderr {} bytes", b.len()),
                ServerMessage::Done(Status::Exited(c)) => format!("'X' exit {c}"),
                ServerMessage::Done(Status::Signaled(s)) => format!("'S' signal {s}"),
                ServerMessage::Done(Status::Failed { code, .. }) => format!("'F' failed {code}"),
                other => format!("{other:?}"),
            };
            reply.lines.push(format!(
                "{:<3} {:<23} = {:<6} {:<22} {}",
                self.header.to_string(),
                hex.join(" "),
                value,
                what,
                self.reads_of(&range, hello_end)
            ));
            match msg {
                ServerMessage::Stdout(b) => reply.stdout.extend_from_slice(&b),
                ServerMessage::Stderr(b) => reply.stderr.extend_from_slice(&b),
                ServerMessage::Done(status) => {
                    reply.status = Some(status);
                    return Ok(());
                }
                ServerMessage::Error(m) => return Err(invalid(format!("server: {m}"))),
                ServerMessage::Hello(_) => return Err(invalid("unexpected hello".into())),
                // Only sent to sessions that forward stdin or set variables.
                ServerMessage::Credit(_) | ServerMessage::Notice(_) => {}
            }
        }
    }
}

/// Wraps prose at `width` columns, indented by two.
fn wrap(text: &str, width: usize) -> String {
    let mut lines = vec![String::from(" ")];
    for word in text.split_whitespace() {
        let line = lines.last_mut().expect("never empty");
        if line.len() + word.len() + 1 > width {
            lines.push(format!("  {word}"));
        } else {
            line.push(' ');
            line.push_str(word);
        }
    }
    lines.join("\n")
}
