//! The four stages of the tutorial, driven over real sockets into a picture of the bytes.
//!
//! Each stage's client reads the way the tutorial's client of that stage reads. Before
//! every read the demo waits (on socket readiness) until exactly the bytes it means the
//! read to see have arrived, so every run draws the same reads. What comes out is a
//! [`Trace`]: the server's bytes as segments of one stream, and the client's recv calls
//! as ranges of it; when the requests stick together, also the client's sends as one
//! stream and the server's recv calls over them. The text and the HTML page are both
//! drawn from it.

use std::io;

use bytes::BytesMut;
use rustix::io::Errno;
use rustix::net::RecvFlags;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{Decoder, Encoder};

use super::{wait_queued, Reference};
use crate::server::{serve, ServerConfig};
use crate::wire::frame::{FrameCodec, DEFAULT_MAX_FRAME};
use crate::wire::header::HeaderFormat;
use crate::wire::message::{ClientCodec, ClientMessage, Hello, Tag};

/// The tutorial's stages, in the order it teaches them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Naive,
    LengthAck,
    Classic,
    Framed,
}

impl Stage {
    pub const ALL: [Stage; 4] = [
        Stage::Naive,
        Stage::LengthAck,
        Stage::Classic,
        Stage::Framed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Naive => "naive",
            Stage::LengthAck => "length-ack",
            Stage::Classic => "classic",
            Stage::Framed => "framed",
        }
    }

    /// The key in `--json`.
    pub fn key(self) -> &'static str {
        match self {
            Stage::LengthAck => "length_ack",
            s => s.name(),
        }
    }
}

/// How the client reads in one case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Send a command, wait for its whole reply, read it. Repeat.
    AfterEachReply,
    /// Send every command (each after the last one's reply arrived), then read.
    AfterAllReplies,
    /// Send every command before the server reads any, then read: a client that does not
    /// wait, meeting a server busy elsewhere (or Nagle's algorithm holding the sends).
    Pipelined,
    /// The learner's loop: `recv(N)` until a read comes back short.
    UntilShort,
}

/// What a run of bytes in the server's stream is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Output of a command.
    Output,
    /// A length header or the digits of one, and what it says.
    Header(String),
    /// A framed message's tag byte and what it means.
    Tag(String),
    /// A framed message that is not output (the exit status), with its meaning.
    Status(String),
}

/// A run of bytes the server sent, all for one command (`None`: the handshake).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub owner: Option<usize>,
    pub kind: Kind,
    pub len: usize,
}

/// Bytes the client sent, all for one command (`None`: the handshake).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub owner: Option<usize>,
    pub kind: Kind,
    pub bytes: Vec<u8>,
}

/// One recv call: where in the stream it started, how many bytes it returned (0: it
/// would wait, nothing more is coming), and which command's reply it was read for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recv {
    pub start: usize,
    pub len: usize,
    pub asked: usize,
    pub for_command: usize,
}

/// What one command's reply came to on this stage's client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub got: Vec<u8>,
    /// The client's loop stopped while bytes of this reply were still on their way.
    pub stopped_early: bool,
    /// The client's loop called recv again with nothing more coming: it waits forever.
    pub waits: bool,
    /// The server read this request together with the next ones and ran them as one
    /// command, whose output this is.
    pub merged: bool,
    /// The server ran this request as part of an earlier one's: no reply of its own comes.
    pub swallowed: bool,
}

/// One stage's run of one case.
#[derive(Debug, Clone)]
pub struct Trace {
    pub stage: Stage,
    pub segments: Vec<Segment>,
    pub reads: Vec<Recv>,
    pub replies: Vec<Reply>,
    /// The client answered each length (length-ack): one more trip across the network.
    pub acks: usize,
    /// What the client sent, in order, when the server read it after it all arrived
    /// ([`Plan::Pipelined`]); empty otherwise.
    pub requests: Vec<Sent>,
    /// The server's recv calls over [`Trace::requests`], as ranges of that stream.
    pub server_reads: Vec<Recv>,
}

impl Trace {
    fn new(stage: Stage, n: usize) -> Trace {
        Trace {
            stage,
            segments: Vec::new(),
            reads: Vec::new(),
            replies: vec![
                Reply {
                    got: Vec::new(),
                    stopped_early: false,
                    waits: false,
                    merged: false,
                    swallowed: false,
                };
                n
            ],
            acks: 0,
            requests: Vec::new(),
            server_reads: Vec::new(),
        }
    }

    /// The requests as a trace of their own (segments only), for drawing them as a bar.
    pub fn request_stream(&self) -> Trace {
        let mut t = Trace::new(self.stage, 0);
        t.segments = self
            .requests
            .iter()
            .map(|s| Segment {
                owner: s.owner,
                kind: s.kind.clone(),
                len: s.bytes.len(),
            })
            .collect();
        t
    }

    /// Bytes in the server's stream.
    pub fn len(&self) -> usize {
        self.segments.iter().map(|s| s.len).sum()
    }

    /// The owners of bytes `start..start + len`, as (owner, bytes) runs.
    pub fn owners(&self, start: usize, len: usize) -> Vec<(Option<usize>, usize)> {
        let mut runs: Vec<(Option<usize>, usize)> = Vec::new();
        let mut at = 0;
        for s in &self.segments {
            let (lo, hi) = (at.max(start), (at + s.len).min(start + len));
            if hi > lo {
                match runs.last_mut() {
                    Some(last) if last.0 == s.owner => last.1 += hi - lo,
                    _ => runs.push((s.owner, hi - lo)),
                }
            }
            at += s.len;
        }
        runs
    }

    fn push(&mut self, owner: usize, kind: Kind, len: usize) {
        if len > 0 {
            self.segments.push(Segment {
                owner: Some(owner),
                kind,
                len,
            });
        }
    }
}

/// Told of every read as it happens: `--step` waits for Enter before one and shows
/// its result right after.
pub trait Observer {
    /// Before stage `stage` calls `recv(asked)` for command `i` (0-based).
    ///
    /// # Errors
    /// An I/O error, which ends the demo.
    fn before(&mut self, stage: Stage, i: usize, asked: usize) -> io::Result<()>;
    /// After that read returned `got` (empty: it would wait, nothing more is coming).
    ///
    /// # Errors
    /// An I/O error, which ends the demo.
    fn after(&mut self, stage: Stage, i: usize, asked: usize, got: &[u8]) -> io::Result<()>;
    /// After the client sent `bytes` that answer the server for command `i` rather than
    /// carry a command: length-ack's `b'recv_ready'`, without which no output comes.
    ///
    /// # Errors
    /// An I/O error, which ends the demo.
    fn answered(&mut self, stage: Stage, i: usize, bytes: &[u8]) -> io::Result<()>;
    /// After the client sent command `i`'s request, `bytes` as they went on the wire.
    ///
    /// # Errors
    /// An I/O error, which ends the demo.
    fn sent(&mut self, stage: Stage, i: usize, bytes: &[u8]) -> io::Result<()>;
}

/// A stage's server before it reads anything: its socket listens (the kernel completes
/// connections and queues what they send), and it starts when told.
pub struct Server {
    pub listener: TcpListener,
    pub config: ServerConfig,
}

/// Where a stage reports its reads.
pub type Step<'a> = &'a mut dyn Observer;

/// A client connection and everything it read.
struct Client<'a> {
    conn: TcpStream,
    recv_size: usize,
    trace: Trace,
    /// Bytes read so far (the position in the server's stream).
    at: usize,
    step: Step<'a>,
    /// The server, until it is started.
    server: Option<Server>,
}

impl Client<'_> {
    /// One `recv(asked)` for command `i`, made once `want` bytes are queued (so it returns
    /// `min(asked, want)` bytes). Reads of nothing (`want` 0 with nothing coming) are
    /// recorded as the wait they would be.
    async fn recv(&mut self, i: usize, asked: usize, want: usize) -> io::Result<Vec<u8>> {
        self.step.before(self.trace.stage, i, asked)?;
        let mut buf = vec![0u8; asked.min(want)];
        if !buf.is_empty() {
            wait_queued(&self.conn, want).await?;
            self.conn.read_exact(&mut buf).await?;
        }
        self.trace.reads.push(Recv {
            start: self.at,
            len: buf.len(),
            asked,
            for_command: i,
        });
        self.at += buf.len();
        self.step.after(self.trace.stage, i, asked, &buf)?;
        Ok(buf)
    }

    async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.conn.write_all(bytes).await
    }

    /// Sends command `i`'s request and shows it.
    async fn request(&mut self, i: usize, bytes: &[u8]) -> io::Result<()> {
        self.send(bytes).await?;
        self.step.sent(self.trace.stage, i, bytes)
    }

    /// Lets the server start reading. In the pipelined plan that is once everything sent
    /// has reached its socket, so its first recv meets all of it.
    async fn start_server(&mut self) -> io::Result<()> {
        if let Some(server) = self.server.take() {
            sent_all(&self.conn).await?;
            tokio::spawn(serve(
                server.listener,
                server.config,
                std::future::pending(),
            ));
        }
        Ok(())
    }

    /// Records the pipelined requests as one stream and the server's one recv over it
    /// (its buffer holds them all: the demo's requests are short).
    fn record_requests(&mut self, requests: Vec<Sent>) {
        let len = requests.iter().map(|s| s.bytes.len()).sum();
        self.trace.requests = requests;
        self.trace.server_reads = vec![Recv {
            start: 0,
            len,
            asked: crate::wire::DEFAULT_RECV_SIZE,
            for_command: 0,
        }];
    }

    /// Sends an answer the server waits for before command `i`'s output.
    async fn answer(&mut self, i: usize, bytes: &[u8]) -> io::Result<()> {
        self.send(bytes).await?;
        self.step.answered(self.trace.stage, i, bytes)
    }
}

/// The commands of a case: each as run alone, and (for [`Plan::Pipelined`]) all of them
/// as one line, which is what a server without request framing runs when they arrive
/// together.
pub struct Commands<'a> {
    pub refs: &'a [Reference],
    pub merged: Option<&'a Reference>,
}

/// Runs `cmds` through one stage's `server`, reading as `plan` says.
///
/// # Errors
/// An I/O error, or a server that sent other bytes than the commands' own output.
pub async fn run(
    stage: Stage,
    server: Server,
    cmds: &Commands<'_>,
    plan: Plan,
    recv_size: usize,
    header: HeaderFormat,
    step: Step<'_>,
) -> io::Result<Trace> {
    let refs = cmds.refs;
    let conn = TcpStream::connect(server.listener.local_addr()?).await?;
    conn.set_nodelay(true)?;
    let mut c = Client {
        conn,
        recv_size,
        trace: Trace::new(stage, refs.len()),
        at: 0,
        step,
        server: Some(server),
    };
    if plan != Plan::Pipelined {
        c.start_server().await?;
    }
    match (stage, plan, cmds.merged) {
        (Stage::Framed, _, _) => framed(&mut c, refs, plan, header).await?,
        (_, Plan::Pipelined, Some(merged)) => pipelined(&mut c, refs, merged).await?,
        (Stage::Naive, _, _) => naive(&mut c, refs, plan).await?,
        (Stage::LengthAck, _, _) => length_ack(&mut c, refs).await?,
        (Stage::Classic, _, _) => classic(&mut c, refs, plan, HeaderFormat::NATIVE_INT).await?,
    }
    Ok(c.trace)
}

/// Waits until everything written on `conn` has reached the peer's socket (nothing left
/// unacknowledged in our send queue, `SIOCOUTQ`).
async fn sent_all(conn: &TcpStream) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let wait = async {
        loop {
            let mut n: libc::c_int = 0;
            // SAFETY: SIOCOUTQ (TIOCOUTQ's number, for a socket) writes one c_int through
            // the pointer, valid and aligned. Raw: neither rustix nor nix wraps it.
            let rc = unsafe { libc::ioctl(conn.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
            if rc < 0 {
                return Err(io::Error::last_os_error());
            }
            if n == 0 {
                return Ok(());
            }
            // The kernel signals no event for an acknowledgement: look again shortly.
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    };
    tokio::time::timeout(super::ARRIVAL_GUARD, wait)
        .await
        .unwrap_or_else(|_| Err(io::Error::other("the demo server never took the requests")))
}

/// The tutorial stages with pipelined requests: the server's one recv returns them all,
/// it runs them as one command line, and its one reply goes to the first command.
async fn pipelined(c: &mut Client<'_>, refs: &[Reference], merged: &Reference) -> io::Result<()> {
    let stage = c.trace.stage;
    let mut requests = Vec::new();
    for (i, r) in refs.iter().enumerate() {
        c.request(i, r.command.as_bytes()).await?;
        requests.push(Sent {
            owner: Some(i),
            kind: Kind::Output,
            bytes: r.command.as_bytes().to_vec(),
        });
    }
    c.record_requests(requests);
    c.start_server().await?;
    let body = spooled(merged);
    let head = match stage {
        Stage::Naive => Vec::new(),
        Stage::LengthAck => body.len().to_string().into_bytes(),
        _ => HeaderFormat::NATIVE_INT
            .pack(body.len() as i128)
            .map_err(|e| io::Error::other(format!("classic header: {e}")))?,
    };
    let body = if stage == Stage::Naive {
        merged.raw()
    } else {
        body
    };
    let decoded = match stage {
        Stage::LengthAck => format!("b'{}': the length as text", body.len()),
        _ => format!("{}: struct.unpack('i') = {}", hex(&head), body.len()),
    };
    c.trace.push(0, Kind::Header(decoded), head.len());
    c.trace.push(0, Kind::Output, body.len());
    let n = c.recv_size;
    if stage == Stage::Naive {
        // One recv per command, as the naive client reads, until one waits.
        let mut read = Vec::new();
        for i in 0..refs.len() {
            let got = c.recv(i, n, body.len() - c.at).await?;
            let done = got.is_empty();
            read.extend_from_slice(&got);
            let reply = &mut c.trace.replies[i];
            reply.merged = i == 0;
            reply.swallowed = i > 0;
            reply.waits = done;
            reply.got = got;
            if done {
                break;
            }
        }
        for reply in &mut c.trace.replies[1..] {
            reply.swallowed = true;
        }
        return if read == body {
            Ok(())
        } else {
            Err(mismatch(stage))
        };
    }
    match stage {
        Stage::LengthAck => {
            if c.recv(0, n, head.len()).await? != head {
                return Err(mismatch(stage));
            }
            c.answer(0, crate::wire::tutorial::ACK).await?;
            c.trace.acks += 1;
        }
        _ => {
            if c.recv(0, head.len(), head.len()).await? != head {
                return Err(mismatch(stage));
            }
        }
    }
    let got = read_body(c, 0, body.len()).await?;
    if got != body {
        return Err(mismatch(stage));
    }
    c.trace.replies[0].got = got;
    c.trace.replies[0].merged = true;
    // The next command's reply never comes: its recv waits forever. The demo stops there.
    let ask = if stage == Stage::Classic { 4 } else { n };
    c.recv(1.min(refs.len() - 1), ask, 0).await?;
    for reply in &mut c.trace.replies[1..] {
        reply.swallowed = true;
        reply.waits = true;
    }
    Ok(())
}

/// The bytes an unframed server sends for a command, in the order rcmd's server sends
/// them (stderr first, the tutorial's order, in the spooled stages).
pub(crate) fn spooled(r: &Reference) -> Vec<u8> {
    [&r.stderr[..], &r.stdout[..]].concat()
}

fn mismatch(stage: Stage) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "the {} server sent other bytes than the commands' own output",
            stage.name()
        ),
    )
}

async fn naive(c: &mut Client<'_>, refs: &[Reference], plan: Plan) -> io::Result<()> {
    let raw: Vec<Vec<u8>> = refs.iter().map(Reference::raw).collect();
    for (i, r) in raw.iter().enumerate() {
        c.trace.push(i, Kind::Output, r.len());
    }
    let ends: Vec<usize> = raw
        .iter()
        .scan(0, |end, r| {
            *end += r.len();
            Some(*end)
        })
        .collect();
    let n = c.recv_size;
    match plan {
        Plan::AfterEachReply => {
            for i in 0..refs.len() {
                c.request(i, refs[i].command.as_bytes()).await?;
                let got = c.recv(i, n, ends[i].max(c.at) - c.at).await?;
                c.trace.replies[i].got = got;
            }
        }
        Plan::AfterAllReplies | Plan::Pipelined => {
            for (i, r) in refs.iter().enumerate() {
                c.request(i, r.command.as_bytes()).await?;
                wait_queued(&c.conn, ends[i] - c.at).await?;
            }
            for i in 0..refs.len() {
                let left = ends[refs.len() - 1] - c.at;
                let got = c.recv(i, n, left).await?;
                c.trace.replies[i].got = got;
            }
        }
        Plan::UntilShort => {
            // The loop a learner writes: a short read must be the last piece.
            //     while True:
            //         chunk = s.recv(1024); data += chunk
            //         if len(chunk) < 1024: break
            for (i, r) in refs.iter().enumerate() {
                c.request(i, r.command.as_bytes()).await?;
                // Read what has arrived when the first piece is in: for a command that
                // pauses, that is the output before the pause.
                let arrived = first_burst(r);
                let mut got = Vec::new();
                loop {
                    let mut ready = (ends[i] - raw[i].len() + arrived).saturating_sub(c.at);
                    if ready == 0 && c.at < ends[i] {
                        // The first burst is all read, and more is coming: recv waits
                        // for it and returns what the second burst brings.
                        ready = ends[i] - c.at;
                    }
                    let chunk = c.recv(i, n, ready).await?;
                    let short = chunk.len() < n;
                    got.extend_from_slice(&chunk);
                    if short {
                        break;
                    }
                }
                let reply = &mut c.trace.replies[i];
                reply.stopped_early = got.len() < raw[i].len() && !got.is_empty();
                reply.waits = got.len() == raw[i].len() && got.len() % n == 0;
                reply.got = got;
                // The rest arrives later; the next command's reply queues behind it.
                if i + 1 < refs.len() {
                    wait_queued(&c.conn, ends[i] - c.at).await?;
                }
            }
        }
    }
    let expected: Vec<u8> = raw.concat();
    let read: Vec<u8> = c.trace.replies.iter().flat_map(|r| r.got.clone()).collect();
    if !expected.starts_with(&read) {
        return Err(mismatch(Stage::Naive));
    }
    Ok(())
}

/// How much of a command's output comes before it pauses: the demo's split case uses
/// `…; sleep …; …` to make a reply arrive in two bursts.
pub fn first_burst(r: &Reference) -> usize {
    match r.command.split_once("; sleep ") {
        Some((before, _)) => {
            // `seq 1 N` prints lines 1..=N.
            let n: usize = before
                .rsplit(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            (1..=n).map(|i| i.to_string().len() + 1).sum()
        }
        None => r.raw().len(),
    }
}

/// Reads a reply of `len` bytes after its head, as the tutorial's fixed clients do:
/// `while got < len: recv(min(N, len - got))`.
async fn read_body(c: &mut Client<'_>, i: usize, len: usize) -> io::Result<Vec<u8>> {
    let mut got = Vec::new();
    while got.len() < len {
        let ask = c.recv_size.min(len - got.len());
        let chunk = c.recv(i, ask, ask).await?;
        got.extend_from_slice(&chunk);
    }
    Ok(got)
}

async fn length_ack(c: &mut Client<'_>, refs: &[Reference]) -> io::Result<()> {
    // One at a time: a reply's output waits for our answer, so the client reads each
    // reply before it sends the next command.
    for (i, r) in refs.iter().enumerate() {
        let body = spooled(r);
        let digits = body.len().to_string();
        c.trace.push(
            i,
            Kind::Header(format!("b'{digits}': the length as text")),
            digits.len(),
        );
        c.trace.push(i, Kind::Output, body.len());
        c.request(i, r.command.as_bytes()).await?;
        let head = c.recv(i, c.recv_size, digits.len()).await?;
        if head != digits.as_bytes() {
            return Err(mismatch(Stage::LengthAck));
        }
        c.answer(i, crate::wire::tutorial::ACK).await?;
        c.trace.acks += 1;
        let got = read_body(c, i, body.len()).await?;
        if got != body {
            return Err(mismatch(Stage::LengthAck));
        }
        c.trace.replies[i].got = got;
    }
    Ok(())
}

async fn classic(
    c: &mut Client<'_>,
    refs: &[Reference],
    plan: Plan,
    header: HeaderFormat,
) -> io::Result<()> {
    let size = header.size();
    let mut heads = Vec::new();
    for (i, r) in refs.iter().enumerate() {
        let body = spooled(r);
        let head = header
            .pack(body.len() as i128)
            .map_err(|e| io::Error::other(format!("classic header: {e}")))?;
        c.trace.push(
            i,
            Kind::Header(format!(
                "{}: struct.unpack('{header}') = {}",
                hex(&head),
                body.len()
            )),
            size,
        );
        c.trace.push(i, Kind::Output, body.len());
        heads.push(head);
    }
    // Sent one at a time, each once the last reply has arrived; read at the end.
    let ahead = plan == Plan::AfterAllReplies;
    if ahead {
        for (i, r) in refs.iter().enumerate() {
            c.request(i, r.command.as_bytes()).await?;
            let end: usize = c
                .trace
                .segments
                .iter()
                .take(2 * (i + 1))
                .map(|s| s.len)
                .sum();
            wait_queued(&c.conn, end).await?;
        }
    }
    for (i, r) in refs.iter().enumerate() {
        let body = spooled(r);
        let head = &heads[i];
        if !ahead {
            c.request(i, r.command.as_bytes()).await?;
        }
        let got_head = c.recv(i, size, size).await?;
        if got_head != *head {
            return Err(mismatch(Stage::Classic));
        }
        let got = read_body(c, i, body.len()).await?;
        if got != body {
            return Err(mismatch(Stage::Classic));
        }
        c.trace.replies[i].got = got;
    }
    Ok(())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Bytes waiting on `conn`, copied without taking them (MSG_PEEK).
fn peek_all(conn: &TcpStream, max: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; max];
    // MSG_PEEK leaves the data queued; MSG_DONTWAIT never waits.
    let n = match rustix::net::recv(conn, &mut buf[..], RecvFlags::PEEK | RecvFlags::DONTWAIT) {
        Ok((n, _)) => n,
        Err(Errno::AGAIN) => 0,
        Err(e) => return Err(e.into()),
    };
    buf.truncate(n);
    Ok(buf)
}

/// Waits until `replies` whole framed replies (each ending in a status message) are
/// queued, and returns their frames as (payload) in order.
async fn wait_framed(
    conn: &TcpStream,
    header: HeaderFormat,
    replies: usize,
) -> io::Result<Vec<bytes::Bytes>> {
    let mut queued = 0;
    loop {
        let mut bytes = BytesMut::from(&peek_all(conn, 1 << 20)?[..]);
        if bytes.len() > queued {
            queued = bytes.len();
        }
        let mut codec = FrameCodec::new(header, DEFAULT_MAX_FRAME);
        let mut frames = Vec::new();
        let mut done = 0;
        while let Some(f) = codec
            .decode(&mut bytes)
            .map_err(|e| io::Error::other(e.to_string()))?
        {
            let tag = f.first().copied().and_then(Tag::from_byte);
            if matches!(tag, Some(Tag::Exit | Tag::Signaled | Tag::Failed)) {
                done += 1;
            }
            frames.push(f);
            if done == replies {
                return Ok(frames);
            }
        }
        wait_queued(conn, queued + 1).await?;
    }
}

async fn framed(
    c: &mut Client<'_>,
    refs: &[Reference],
    plan: Plan,
    header: HeaderFormat,
) -> io::Result<()> {
    let mut codec = ClientCodec::new(header, DEFAULT_MAX_FRAME);
    let mut hello = BytesMut::new();
    codec
        .encode(
            ClientMessage::Hello(Hello::new(DEFAULT_MAX_FRAME, bytes::Bytes::new())),
            &mut hello,
        )
        .map_err(|e| io::Error::other(e.to_string()))?;
    c.send(&hello).await?;
    let run = |cmd: &str| -> io::Result<Vec<u8>> {
        let mut b = BytesMut::new();
        ClientCodec::new(header, DEFAULT_MAX_FRAME)
            .encode(ClientMessage::Run(cmd.as_bytes().to_vec().into()), &mut b)
            .map_err(|e| io::Error::other(e.to_string()))?;
        Ok(b.to_vec())
    };
    if plan == Plan::Pipelined {
        // Every request before the server reads: its frames keep them apart.
        let mut requests = vec![Sent {
            owner: None,
            kind: Kind::Tag("'H' hello".into()),
            bytes: hello.to_vec(),
        }];
        for (i, r) in refs.iter().enumerate() {
            let bytes = run(&r.command)?;
            c.request(i, &bytes).await?;
            let (head, rest) = bytes.split_at(header.size());
            let decoded = format!(
                "{}: struct.unpack('{header}') = {} = 1 tag byte + {}",
                hex(head),
                rest.len(),
                rest.len() - 1
            );
            requests.push(Sent {
                owner: Some(i),
                kind: Kind::Header(decoded),
                bytes: head.to_vec(),
            });
            requests.push(Sent {
                owner: Some(i),
                kind: Kind::Tag("'R' run".into()),
                bytes: rest[..1].to_vec(),
            });
            requests.push(Sent {
                owner: Some(i),
                kind: Kind::Output,
                bytes: rest[1..].to_vec(),
            });
        }
        c.record_requests(requests);
        c.start_server().await?;
    }
    // The server's hello: read whole, not drawn.
    let frames = wait_hello(&c.conn, header).await?;
    let mut skip = vec![0u8; frames];
    c.conn.read_exact(&mut skip).await?;

    let batches: Vec<Vec<usize>> = match plan {
        Plan::AfterAllReplies | Plan::Pipelined => vec![(0..refs.len()).collect()],
        _ => (0..refs.len()).map(|i| vec![i]).collect(),
    };
    for batch in batches {
        if plan != Plan::Pipelined {
            for &i in &batch {
                c.request(i, &run(&refs[i].command)?).await?;
                if plan == Plan::AfterAllReplies {
                    // The next command goes once this reply has arrived.
                    wait_framed(&c.conn, header, i + 1).await?;
                }
            }
        }
        let frames = wait_framed(&c.conn, header, batch.len()).await?;
        let mut owner = batch.iter().copied();
        let mut i = owner.next().expect("batches are not empty");
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut bytes_of: Vec<(usize, usize)> = Vec::new();
        for f in &frames {
            let head = header
                .pack(f.len() as i128)
                .map_err(|e| io::Error::other(e.to_string()))?;
            let tag = f[0];
            let data = Tag::from_byte(tag).filter(|t| matches!(t, Tag::Stdout | Tag::Stderr));
            let body = &f[1..];
            let decoded = format!(
                "{}: struct.unpack('{header}') = {} = 1 tag byte + {}",
                hex(&head),
                f.len(),
                body.len()
            );
            c.trace.push(i, Kind::Header(decoded), head.len());
            match data {
                Some(t) => {
                    let what = t.name();
                    c.trace
                        .push(i, Kind::Tag(format!("'{}' ({what})", tag as char)), 1);
                    c.trace.push(i, Kind::Output, body.len());
                    if t == Tag::Stdout { &mut out } else { &mut err }.extend_from_slice(body);
                }
                None => {
                    let status = crate::wire::message::Message::parse(f.clone())
                        .map(|m: crate::wire::message::ServerMessage| match m {
                            crate::wire::message::ServerMessage::Done(s) => {
                                format!("'{}' {s}", tag as char)
                            }
                            other => format!("{other:?}"),
                        })
                        .map_err(|e| io::Error::other(e.to_string()))?;
                    c.trace.push(i, Kind::Status(status), f.len());
                    bytes_of.push((i, 0));
                    if out != refs[i].stdout || err != refs[i].stderr {
                        return Err(mismatch(Stage::Framed));
                    }
                    c.trace.replies[i].got = [&err[..], &out[..]].concat();
                    out.clear();
                    err.clear();
                    if let Some(next) = owner.next() {
                        i = next;
                    }
                }
            }
        }
        // Read it all, recv(N) at a time: the codec keeps what belongs to the next frame.
        let total: usize = frames.iter().map(|f| header.size() + f.len()).sum();
        let end = c.at + total;
        let mut first = batch[0];
        while c.at < end {
            // Each read is credited to the command whose bytes it starts in.
            let start_owner = c.trace.owners(c.at, 1).first().and_then(|o| o.0);
            first = start_owner.unwrap_or(first);
            let ask = c.recv_size.min(end - c.at);
            c.recv(first, c.recv_size, ask).await?;
        }
    }
    Ok(())
}

/// Waits for the server's hello and returns its length on the wire.
async fn wait_hello(conn: &TcpStream, header: HeaderFormat) -> io::Result<usize> {
    loop {
        let peeked = peek_all(conn, 4096)?;
        let mut bytes = BytesMut::from(&peeked[..]);
        let mut codec = FrameCodec::new(header, DEFAULT_MAX_FRAME);
        if let Some(f) = codec
            .decode(&mut bytes)
            .map_err(|e| io::Error::other(e.to_string()))?
        {
            return Ok(header.size() + f.len());
        }
        wait_queued(conn, peeked.len() + 1).await?;
    }
}
