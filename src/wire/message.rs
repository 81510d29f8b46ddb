//! Messages of the `framed` protocol and their codec: frames → messages.
//!
//! Every message is one frame (see [`crate::wire::frame`]) whose payload starts with a one-byte
//! tag. The byte-level layout, with worked hex dumps, is in `PROTOCOL.md`; in short:
//!
//! ```text
//! client → server   'H' "rcmd" version:u8 max_frame:u32be token...   once, first
//!                   'R' command line                                 run, stdin empty
//!   version 2:      'P' command line                                 run, stdin follows
//!                   'V' NAME 0x00 VALUE                              env for the next run
//!                   'D' directory                                    cwd for the next run
//!                   'T' rows:u16be cols:u16be TERM                   a terminal for it
//!                   'I' bytes | 'Z'                                  stdin data | its end
//!                   'K' signal name ("INT")                          signal the command
//!                   'W' rows:u16be cols:u16be                        terminal resized
//! server → client   'H' "rcmd" version:u8 max_frame:u32be           once, first
//!                   'O' stdout bytes | 'E' stderr bytes              any number
//!                   'X' code:i32be | 'S' signal:i32be                ends one reply
//!                   'F' code:i32be message(utf-8)                    ends one reply
//!                   '!' message(utf-8)                               then the server closes
//!   version 2:      'G' bytes:u32be                                  more stdin may be sent
//!                   'N' message(utf-8)                               a warning to show
//! both, version 3:  lower-case tags: `rcmd cp` (see [`crate::wire::transfer`])
//! ```

use std::marker::PhantomData;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use rustix::process::Signal;
use tokio_util::codec::{Decoder, Encoder};

use crate::status::Status;
use crate::wire::frame::{FrameCodec, FrameError};
use crate::wire::header::HeaderFormat;
use crate::wire::transfer::{self, Transfer};

/// Highest protocol version this build speaks. Peers agree on the lower of their two.
pub const VERSION: u8 = 3;
/// Four bytes every hello starts with, so a peer speaking something else is told so.
pub const MAGIC: &[u8; 4] = b"rcmd";
/// Largest frame accepted before the handshake completes: a peer that has proved nothing
/// cannot make the server reserve more than this.
pub const MAX_HELLO_FRAME: usize = 4096;
/// Smallest `max_frame` a hello may announce. A peer asking for tiny frames would make
/// every byte of output cost a frame head (and the server's memory with it).
pub const MIN_MAX_FRAME: u32 = 1024;
/// Stdin bytes a client may send before the server grants more with `G`: enough to keep a
/// fast stream moving, small enough that a command not reading its input costs little.
pub const STDIN_WINDOW: u32 = 8 << 20;
/// How a server's `!` answer to a hello begins when it turned the connection away for
/// want of room, before anything ran: the client may try again a little later.
pub const BUSY: &str = "server busy: ";

/// The first byte of every message: what it is. The letters are said here and nowhere else;
/// `H` opens both directions, every other tag belongs to one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Tag {
    /// Both ends' hello.
    Hello = b'H',
    // client → server
    Run = b'R',
    RunWithStdin = b'P',
    Env = b'V',
    Cwd = b'D',
    Tty = b'T',
    Stdin = b'I',
    StdinEof = b'Z',
    Signal = b'K',
    Resize = b'W',
    // server → client
    Stdout = b'O',
    Stderr = b'E',
    Exit = b'X',
    Signaled = b'S',
    Failed = b'F',
    Error = b'!',
    Credit = b'G',
    Notice = b'N',
}

impl Tag {
    /// Every tag, in the order `PROTOCOL.md` lists them.
    pub const ALL: [Tag; 18] = [
        Tag::Hello,
        Tag::Run,
        Tag::RunWithStdin,
        Tag::Env,
        Tag::Cwd,
        Tag::Tty,
        Tag::Stdin,
        Tag::StdinEof,
        Tag::Signal,
        Tag::Resize,
        Tag::Stdout,
        Tag::Stderr,
        Tag::Exit,
        Tag::Signaled,
        Tag::Failed,
        Tag::Error,
        Tag::Credit,
        Tag::Notice,
    ];

    /// The byte on the wire.
    pub const fn byte(self) -> u8 {
        self as u8
    }

    /// The tag a payload's first byte names, if any: one table lookup, as it is on the
    /// path of every frame.
    pub fn from_byte(byte: u8) -> Option<Tag> {
        const BY_BYTE: [Option<Tag>; 256] = {
            let mut table = [None; 256];
            let mut i = 0;
            while i < Tag::ALL.len() {
                table[Tag::ALL[i].byte() as usize] = Some(Tag::ALL[i]);
                i += 1;
            }
            table
        };
        BY_BYTE[usize::from(byte)]
    }

    /// A short name for traces (`--trace`).
    pub fn name(self) -> &'static str {
        match self {
            Tag::Hello => "hello",
            Tag::Run => "run",
            Tag::RunWithStdin => "run+stdin",
            Tag::Env => "env",
            Tag::Cwd => "cwd",
            Tag::Tty => "tty",
            Tag::Stdin => "stdin",
            Tag::StdinEof => "stdin-eof",
            Tag::Signal => "signal",
            Tag::Resize => "resize",
            Tag::Stdout => "stdout",
            Tag::Stderr => "stderr",
            Tag::Exit => "exit",
            Tag::Signaled => "signaled",
            Tag::Failed => "failed",
            Tag::Error => "error",
            Tag::Credit => "credit",
            Tag::Notice => "notice",
        }
    }
}

/// What a client sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    Hello(Hello),
    /// One command line to run, with an empty stdin.
    Run(Bytes),
    /// One command line to run; its stdin arrives as `Stdin` messages and `StdinEof` (v2).
    RunWithStdin(Bytes),
    /// An environment variable for the next command (v2).
    Env {
        name: Bytes,
        value: Bytes,
    },
    /// The directory the next command runs in (v2).
    Cwd(Bytes),
    /// Run the next command in a pseudo-terminal of this size, with this `TERM` (v2).
    Tty {
        rows: u16,
        cols: u16,
        term: Bytes,
    },
    /// Standard input for the running command (v2).
    Stdin(Bytes),
    /// The end of the running command's standard input (v2).
    StdinEof,
    /// Deliver a signal, by name without `SIG` (`INT`), to the running command (v2).
    Signal(String),
    /// The client's terminal changed size (v2).
    Resize {
        rows: u16,
        cols: u16,
    },
    /// `rcmd cp` (v3).
    Copy(Transfer),
}

/// What a server sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerMessage {
    Hello(Hello),
    Stdout(Bytes),
    Stderr(Bytes),
    /// The end of one reply.
    Done(Status),
    /// A connection-level error; the server closes the connection after it.
    Error(String),
    /// The client may send this many more bytes of stdin (v2).
    Credit(u32),
    /// Something the user should know, such as a refused variable (v2).
    Notice(String),
    /// `rcmd cp` (v3).
    Copy(Transfer),
}

/// The handshake both sides open with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub version: u8,
    /// Largest frame payload the sender accepts; the peer never sends a larger one.
    pub max_frame: u32,
    /// Authentication token (client only; empty when none).
    pub token: Bytes,
}

/// A payload that is not a valid message.
#[derive(Debug)]
pub enum ProtocolError {
    Frame(FrameError),
    Malformed(String),
}

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProtocolError::Frame(e) => write!(f, "{e}"),
            ProtocolError::Malformed(m) => write!(f, "malformed message: {m}"),
        }
    }
}

impl std::error::Error for ProtocolError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ProtocolError::Frame(e) => Some(e),
            ProtocolError::Malformed(_) => None,
        }
    }
}

impl From<FrameError> for ProtocolError {
    fn from(e: FrameError) -> Self {
        ProtocolError::Frame(e)
    }
}

impl From<std::io::Error> for ProtocolError {
    fn from(e: std::io::Error) -> Self {
        ProtocolError::Frame(FrameError::Io(e))
    }
}

fn malformed(m: impl Into<String>) -> ProtocolError {
    ProtocolError::Malformed(m.into())
}

/// A message type that travels as one frame's payload.
pub trait Message: Sized {
    /// Parses one frame's payload.
    ///
    /// # Errors
    /// [`ProtocolError::Malformed`] for an unknown tag or a body of the wrong shape.
    fn parse(payload: Bytes) -> Result<Self, ProtocolError>;
    /// Payload length once encoded.
    fn encoded_len(&self) -> usize;
    /// Appends the payload (tag and body).
    fn write(&self, dst: &mut BytesMut);
    /// Shortens a message of text to at most `max` payload bytes (at a character
    /// boundary) so it fits the peer's frames; other messages are left as they are.
    fn fit(&mut self, _max: usize) {}
}

impl Hello {
    /// Our own hello, with our frame limit.
    pub fn new(max_frame: usize, token: Bytes) -> Hello {
        Hello {
            version: VERSION,
            max_frame: u32::try_from(max_frame).unwrap_or(u32::MAX),
            token,
        }
    }

    fn parse(mut body: Bytes) -> Result<Hello, ProtocolError> {
        if body.len() < 9 || &body[..4] != MAGIC {
            return Err(malformed(
                "the peer's hello does not start with \"rcmd\": is it an rcmd peer speaking \
                 --protocol framed with the same --header?",
            ));
        }
        body.advance(4);
        let version = body.get_u8();
        let max_frame = body.get_u32();
        Ok(Hello {
            version,
            max_frame,
            token: body,
        })
    }

    fn write(&self, dst: &mut BytesMut) {
        dst.put_slice(MAGIC);
        dst.put_u8(self.version);
        dst.put_u32(self.max_frame);
        dst.put_slice(&self.token);
    }

    /// Checks what a peer's hello announces.
    ///
    /// # Errors
    /// Version 0, or a `max_frame` below [`MIN_MAX_FRAME`].
    pub fn check(&self) -> Result<(), String> {
        if self.version == 0 {
            return Err(format!(
                "protocol version 0 is not supported (this side speaks 1 to {VERSION})"
            ));
        }
        if self.max_frame < MIN_MAX_FRAME {
            return Err(format!(
                "the hello's max_frame of {} bytes is below the minimum of {MIN_MAX_FRAME}",
                self.max_frame
            ));
        }
        Ok(())
    }
}

fn split_tag(mut payload: Bytes) -> Result<(u8, Bytes), ProtocolError> {
    if payload.is_empty() {
        return Err(malformed("empty frame"));
    }
    let tag = payload.get_u8();
    Ok((tag, payload))
}

fn get_i32(body: &mut Bytes, what: &str) -> Result<i32, ProtocolError> {
    if body.len() < 4 {
        return Err(malformed(format!("{what} is shorter than 4 bytes")));
    }
    Ok(body.get_i32())
}

fn get_size(body: &mut Bytes, what: &str) -> Result<(u16, u16), ProtocolError> {
    if body.len() < 4 {
        return Err(malformed(format!("{what} is shorter than 4 bytes")));
    }
    Ok((body.get_u16(), body.get_u16()))
}

fn utf8(body: Bytes) -> String {
    String::from_utf8_lossy(&body).into_owned()
}

/// Cuts `s` so that it takes at most `max` bytes, at a character boundary.
pub(crate) fn cut(s: &mut String, max: usize) {
    if s.len() > max {
        let end = (0..=max)
            .rev()
            .find(|&i| s.is_char_boundary(i))
            .unwrap_or(0);
        s.truncate(end);
    }
}

impl ClientMessage {
    /// The lowest protocol version in which this message exists.
    pub fn min_version(&self) -> u8 {
        match self {
            ClientMessage::Hello(_) | ClientMessage::Run(_) => 1,
            ClientMessage::Copy(_) => transfer::VERSION,
            _ => 2,
        }
    }
}

impl Message for ClientMessage {
    fn parse(payload: Bytes) -> Result<Self, ProtocolError> {
        let (tag, mut body) = split_tag(payload)?;
        Ok(match Tag::from_byte(tag) {
            Some(Tag::Hello) => ClientMessage::Hello(Hello::parse(body)?),
            Some(Tag::Run) => ClientMessage::Run(body),
            Some(Tag::RunWithStdin) => ClientMessage::RunWithStdin(body),
            Some(Tag::Env) => {
                let Some(eq) = body.iter().position(|&b| b == 0) else {
                    return Err(malformed(
                        "environment variable without a 0x00 after its name",
                    ));
                };
                let name = body.split_to(eq);
                body.advance(1);
                ClientMessage::Env { name, value: body }
            }
            Some(Tag::Cwd) => ClientMessage::Cwd(body),
            Some(Tag::Tty) => {
                let (rows, cols) = get_size(&mut body, "terminal request")?;
                ClientMessage::Tty {
                    rows,
                    cols,
                    term: body,
                }
            }
            Some(Tag::Stdin) => ClientMessage::Stdin(body),
            Some(Tag::StdinEof) => ClientMessage::StdinEof,
            Some(Tag::Signal) => ClientMessage::Signal(utf8(body)),
            Some(Tag::Resize) => {
                let (rows, cols) = get_size(&mut body, "window size")?;
                ClientMessage::Resize { rows, cols }
            }
            _ if transfer::is_tag(tag) => ClientMessage::Copy(Transfer::parse(tag, body)?),
            _ => return Err(malformed(format!("unknown client message tag 0x{tag:02x}"))),
        })
    }

    fn fit(&mut self, max: usize) {
        if let ClientMessage::Copy(t) = self {
            t.fit(max);
        }
    }

    fn encoded_len(&self) -> usize {
        1 + match self {
            ClientMessage::Hello(h) => 9 + h.token.len(),
            ClientMessage::Run(b)
            | ClientMessage::RunWithStdin(b)
            | ClientMessage::Cwd(b)
            | ClientMessage::Stdin(b) => b.len(),
            ClientMessage::Env { name, value } => name.len() + 1 + value.len(),
            ClientMessage::Tty { term, .. } => 4 + term.len(),
            ClientMessage::StdinEof => 0,
            ClientMessage::Signal(name) => name.len(),
            ClientMessage::Resize { .. } => 4,
            ClientMessage::Copy(t) => return t.encoded_len(),
        }
    }

    fn write(&self, dst: &mut BytesMut) {
        match self {
            ClientMessage::Hello(h) => {
                dst.put_u8(Tag::Hello.byte());
                h.write(dst);
            }
            ClientMessage::Run(b) => tagged(dst, Tag::Run, b),
            ClientMessage::RunWithStdin(b) => tagged(dst, Tag::RunWithStdin, b),
            ClientMessage::Cwd(b) => tagged(dst, Tag::Cwd, b),
            ClientMessage::Stdin(b) => tagged(dst, Tag::Stdin, b),
            ClientMessage::Env { name, value } => {
                tagged(dst, Tag::Env, name);
                dst.put_u8(0);
                dst.put_slice(value);
            }
            ClientMessage::Tty { rows, cols, term } => {
                dst.put_u8(Tag::Tty.byte());
                dst.put_u16(*rows);
                dst.put_u16(*cols);
                dst.put_slice(term);
            }
            ClientMessage::StdinEof => dst.put_u8(Tag::StdinEof.byte()),
            ClientMessage::Signal(name) => tagged(dst, Tag::Signal, name.as_bytes()),
            ClientMessage::Resize { rows, cols } => {
                dst.put_u8(Tag::Resize.byte());
                dst.put_u16(*rows);
                dst.put_u16(*cols);
            }
            ClientMessage::Copy(t) => t.write(dst),
        }
    }
}

fn tagged(dst: &mut BytesMut, tag: Tag, body: &[u8]) {
    dst.put_u8(tag.byte());
    dst.put_slice(body);
}

impl Message for ServerMessage {
    fn parse(payload: Bytes) -> Result<Self, ProtocolError> {
        let (tag, mut body) = split_tag(payload)?;
        Ok(match Tag::from_byte(tag) {
            Some(Tag::Hello) => ServerMessage::Hello(Hello::parse(body)?),
            Some(Tag::Stdout) => ServerMessage::Stdout(body),
            Some(Tag::Stderr) => ServerMessage::Stderr(body),
            Some(Tag::Exit) => {
                ServerMessage::Done(Status::Exited(get_i32(&mut body, "exit code")?))
            }
            Some(Tag::Signaled) => {
                ServerMessage::Done(Status::Signaled(get_i32(&mut body, "signal")?))
            }
            Some(Tag::Failed) => {
                let code = get_i32(&mut body, "failure code")?;
                ServerMessage::Done(Status::Failed {
                    code,
                    message: utf8(body),
                })
            }
            Some(Tag::Error) => ServerMessage::Error(utf8(body)),
            Some(Tag::Credit) => {
                if body.len() < 4 {
                    return Err(malformed("stdin credit is shorter than 4 bytes"));
                }
                ServerMessage::Credit(body.get_u32())
            }
            Some(Tag::Notice) => ServerMessage::Notice(utf8(body)),
            _ if transfer::is_tag(tag) => ServerMessage::Copy(Transfer::parse(tag, body)?),
            _ => return Err(malformed(format!("unknown server message tag 0x{tag:02x}"))),
        })
    }

    fn encoded_len(&self) -> usize {
        1 + match self {
            ServerMessage::Hello(h) => 9 + h.token.len(),
            ServerMessage::Stdout(b) | ServerMessage::Stderr(b) => b.len(),
            ServerMessage::Done(Status::Failed { message, .. }) => 4 + message.len(),
            ServerMessage::Done(_) | ServerMessage::Credit(_) => 4,
            ServerMessage::Error(m) | ServerMessage::Notice(m) => m.len(),
            ServerMessage::Copy(t) => return t.encoded_len(),
        }
    }

    fn write(&self, dst: &mut BytesMut) {
        match self {
            ServerMessage::Hello(h) => {
                dst.put_u8(Tag::Hello.byte());
                h.write(dst);
            }
            ServerMessage::Stdout(b) => tagged(dst, Tag::Stdout, b),
            ServerMessage::Stderr(b) => tagged(dst, Tag::Stderr, b),
            ServerMessage::Done(Status::Exited(c)) => {
                dst.put_u8(Tag::Exit.byte());
                dst.put_i32(*c);
            }
            ServerMessage::Done(Status::Signaled(n)) => {
                dst.put_u8(Tag::Signaled.byte());
                dst.put_i32(*n);
            }
            ServerMessage::Done(Status::Failed { code, message }) => {
                dst.put_u8(Tag::Failed.byte());
                dst.put_i32(*code);
                dst.put_slice(message.as_bytes());
            }
            ServerMessage::Error(m) => tagged(dst, Tag::Error, m.as_bytes()),
            ServerMessage::Credit(n) => {
                dst.put_u8(Tag::Credit.byte());
                dst.put_u32(*n);
            }
            ServerMessage::Notice(m) => tagged(dst, Tag::Notice, m.as_bytes()),
            ServerMessage::Copy(t) => t.write(dst),
        }
    }

    fn fit(&mut self, max: usize) {
        match self {
            ServerMessage::Done(Status::Failed { message, .. }) => {
                cut(message, max.saturating_sub(5));
            }
            ServerMessage::Error(m) | ServerMessage::Notice(m) => cut(m, max.saturating_sub(1)),
            ServerMessage::Copy(t) => t.fit(max),
            _ => {}
        }
    }
}

/// Decodes messages of type `In` and encodes messages of type `Out`, one frame each: the
/// types say the direction, so a server cannot send a client's message by mistake.
#[derive(Debug)]
pub struct MessageCodec<In, Out> {
    frames: FrameCodec,
    max_send: usize,
    _dir: PhantomData<fn(Out) -> In>,
}

/// The server's end: reads client messages, writes server messages.
pub type ServerCodec = MessageCodec<ClientMessage, ServerMessage>;
/// The client's end: reads server messages, writes client messages.
pub type ClientCodec = MessageCodec<ServerMessage, ClientMessage>;

impl<In, Out> MessageCodec<In, Out> {
    /// A codec over `header`; frames from the peer may be at most `max_frame` bytes.
    pub fn new(header: HeaderFormat, max_frame: usize) -> Self {
        let frames = FrameCodec::new(header, max_frame);
        let max_send = frames.max_payload();
        MessageCodec {
            frames,
            max_send,
            _dir: PhantomData,
        }
    }

    /// Changes the largest frame accepted from the peer from now on.
    pub fn set_max_frame(&mut self, max_frame: usize) {
        self.frames.set_max_frame(max_frame);
    }

    /// The frame codec underneath: for a reader that takes some payloads past the decoder.
    pub fn frames(&self) -> &FrameCodec {
        &self.frames
    }

    /// Records the largest frame the peer accepts (from its hello); sends stay within it.
    pub fn set_peer_max_frame(&mut self, peer_max: u32) {
        let peer_max = usize::try_from(peer_max).unwrap_or(usize::MAX);
        self.max_send = self.frames.max_payload().min(peer_max);
    }

    /// The largest frame the peer accepts, as its hello said (or what the header can
    /// describe, if less).
    pub fn peer_max_frame(&self) -> u32 {
        u32::try_from(self.max_send).unwrap_or(u32::MAX)
    }

    /// Largest body (payload less its tag) one message may carry: the lesser of what the
    /// header format can describe and what the peer accepts. Output is cut to this size.
    pub fn max_body(&self) -> usize {
        self.max_send.saturating_sub(1)
    }
}

impl<In, Out> MessageCodec<In, Out> {
    /// Writes only the frame header and `tag` of a data message whose body is `len` bytes,
    /// so the body can be written straight from its own buffer (a vectored write) instead
    /// of being copied behind the head.
    fn encode_data_head(
        &self,
        tag: Tag,
        len: usize,
        dst: &mut BytesMut,
    ) -> Result<(), ProtocolError> {
        self.encode_head_byte(tag.byte(), len, dst)
    }

    /// [`encode_data_head`](Self::encode_data_head) with the tag as a byte, for the
    /// copy messages, whose tags are their own ([`crate::wire::transfer`]).
    fn encode_head_byte(
        &self,
        tag: u8,
        len: usize,
        dst: &mut BytesMut,
    ) -> Result<(), ProtocolError> {
        if len > self.max_body() {
            return Err(FrameError::TooLargeToSend {
                len: len + 1,
                max: self.max_send,
            }
            .into());
        }
        self.frames.encode_head(1 + len, dst)?;
        dst.put_u8(tag);
        Ok(())
    }
}

impl<In, Out> MessageCodec<In, Out> {
    /// The head of a copy `Data` message whose body is `len` bytes; the body follows it
    /// unchanged (either end sends these).
    ///
    /// # Errors
    /// If `len` exceeds [`max_body`](Self::max_body).
    pub fn encode_copy_data_head(
        &self,
        len: usize,
        dst: &mut BytesMut,
    ) -> Result<(), ProtocolError> {
        self.encode_head_byte(transfer::DATA_TAG, len, dst)
    }
}

impl ServerCodec {
    /// The head of a `Stdout` (or, with `stderr`, a `Stderr`) message whose body is `len`
    /// bytes; the body follows it unchanged.
    ///
    /// # Errors
    /// If `len` exceeds [`max_body`](Self::max_body).
    pub fn encode_output_head(
        &self,
        stderr: bool,
        len: usize,
        dst: &mut BytesMut,
    ) -> Result<(), ProtocolError> {
        self.encode_data_head(if stderr { Tag::Stderr } else { Tag::Stdout }, len, dst)
    }
}

impl ClientCodec {
    /// The head of a `Stdin` message whose body is `len` bytes; the body follows it
    /// unchanged.
    ///
    /// # Errors
    /// If `len` exceeds [`max_body`](Self::max_body).
    pub fn encode_stdin_head(&self, len: usize, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        self.encode_data_head(Tag::Stdin, len, dst)
    }
}

impl<In: Message, Out> Decoder for MessageCodec<In, Out> {
    type Item = In;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<In>, ProtocolError> {
        match self.frames.decode(src)? {
            Some(payload) => In::parse(payload).map(Some),
            None => Ok(None),
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<In>, ProtocolError> {
        match self.frames.decode_eof(src)? {
            Some(payload) => In::parse(payload).map(Some),
            None => Ok(None),
        }
    }
}

impl<In, Out: Message> Encoder<Out> for MessageCodec<In, Out> {
    type Error = ProtocolError;

    fn encode(&mut self, mut msg: Out, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        msg.fit(self.max_send);
        let len = msg.encoded_len();
        if len > self.max_send {
            return Err(FrameError::TooLargeToSend {
                len,
                max: self.max_send,
            }
            .into());
        }
        self.frames.encode_head(len, dst)?;
        msg.write(dst);
        Ok(())
    }
}

/// Signals a client may ask to deliver, by the names `kill -l` uses.
const SIGNALS: &[(&str, i32)] = &[
    ("HUP", Signal::HUP.as_raw()),
    ("INT", Signal::INT.as_raw()),
    ("QUIT", Signal::QUIT.as_raw()),
    ("KILL", Signal::KILL.as_raw()),
    ("USR1", Signal::USR1.as_raw()),
    ("USR2", Signal::USR2.as_raw()),
    ("PIPE", Signal::PIPE.as_raw()),
    ("ALRM", Signal::ALARM.as_raw()),
    ("TERM", Signal::TERM.as_raw()),
    ("CONT", Signal::CONT.as_raw()),
    ("STOP", Signal::STOP.as_raw()),
    ("TSTP", Signal::TSTP.as_raw()),
    ("WINCH", Signal::WINCH.as_raw()),
];

/// The number of the signal named `name` (`INT`), if it is one a client may send. Names
/// travel on the wire, not numbers, which differ between systems.
pub fn signal_number(name: &str) -> Option<i32> {
    SIGNALS.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// The name of signal `sig`, if it is one a client may send.
pub fn signal_name(sig: i32) -> Option<&'static str> {
    SIGNALS.iter().find(|(_, s)| *s == sig).map(|(n, _)| *n)
}

/// Cuts `data` into pieces of at most `max` bytes without copying, so no frame exceeds what
/// the header format or the peer can take and nothing is truncated.
pub fn chunks(mut data: Bytes, max: usize) -> impl Iterator<Item = Bytes> {
    let max = max.max(1);
    std::iter::from_fn(move || {
        if data.is_empty() {
            None
        } else {
            Some(data.split_to(max.min(data.len())))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tag_is_one_distinct_byte_that_reads_back() {
        let mut seen = std::collections::HashSet::new();
        for tag in Tag::ALL {
            assert!(seen.insert(tag.byte()), "{tag:?} shares its byte");
            assert_eq!(Tag::from_byte(tag.byte()), Some(tag));
        }
        let letters: Vec<u8> = Tag::ALL.iter().map(|t| t.byte()).collect();
        assert_eq!(letters, b"HRPVDTIZKWOEXSF!GN");
        assert_eq!(Tag::from_byte(b'h'), None);
        assert_eq!(Tag::from_byte(0), None);
    }

    fn round_trip<M: Message + std::fmt::Debug + PartialEq + Clone>(msg: M) {
        let mut codec: MessageCodec<M, M> = MessageCodec::new(HeaderFormat::NETWORK_U32, 1 << 20);
        let mut buf = BytesMut::new();
        codec.encode(msg.clone(), &mut buf).unwrap();
        assert_eq!(buf.len(), 4 + msg.encoded_len());
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(msg));
        assert!(buf.is_empty());
    }

    #[test]
    fn every_message_round_trips() {
        round_trip(ClientMessage::Hello(Hello::new(
            1 << 20,
            Bytes::from("tok"),
        )));
        round_trip(ClientMessage::Run(Bytes::from("echo hi")));
        round_trip(ServerMessage::Hello(Hello::new(4096, Bytes::new())));
        round_trip(ServerMessage::Stdout(Bytes::from(&b"\xff\x00bin"[..])));
        round_trip(ServerMessage::Stderr(Bytes::from("oops")));
        round_trip(ServerMessage::Done(Status::Exited(-1)));
        round_trip(ServerMessage::Done(Status::Signaled(9)));
        round_trip(ServerMessage::Done(Status::Failed {
            code: 127,
            message: "nope: command not found".into(),
        }));
        round_trip(ServerMessage::Error("bye".into()));
        round_trip(ServerMessage::Credit(1 << 22));
        round_trip(ServerMessage::Notice("LC_X refused".into()));
        round_trip(ClientMessage::RunWithStdin(Bytes::from("cat")));
        round_trip(ClientMessage::Env {
            name: Bytes::from("LANG"),
            value: Bytes::from("C.UTF-8=x\0y"),
        });
        round_trip(ClientMessage::Cwd(Bytes::from("/tmp")));
        round_trip(ClientMessage::Tty {
            rows: 24,
            cols: 80,
            term: Bytes::from("xterm-256color"),
        });
        round_trip(ClientMessage::Stdin(Bytes::from(&b"\x00\xff"[..])));
        round_trip(ClientMessage::StdinEof);
        round_trip(ClientMessage::Signal("INT".into()));
        round_trip(ClientMessage::Resize {
            rows: 50,
            cols: 132,
        });
    }

    #[test]
    fn version_2_bytes_match_protocol_md() {
        // The session PROTOCOL.md draws, message by message.
        let mut client = ClientCodec::new(HeaderFormat::NETWORK_U32, 1 << 20);
        let mut buf = BytesMut::new();
        for msg in [
            ClientMessage::Hello(Hello::new(1 << 20, Bytes::new())),
            ClientMessage::Env {
                name: Bytes::from("LANG"),
                value: Bytes::from("C.UTF-8"),
            },
            ClientMessage::Cwd(Bytes::from("/tmp")),
            ClientMessage::Tty {
                rows: 24,
                cols: 80,
                term: Bytes::from("xterm"),
            },
            ClientMessage::RunWithStdin(Bytes::from("cat")),
            ClientMessage::Stdin(Bytes::from("hi\n")),
            ClientMessage::StdinEof,
            ClientMessage::Resize {
                rows: 50,
                cols: 132,
            },
            ClientMessage::Signal("INT".into()),
        ] {
            client.encode(msg, &mut buf).unwrap();
        }
        let expected: &[&[u8]] = &[
            b"\x00\x00\x00\x0aHrcmd\x03\x00\x10\x00\x00",
            b"\x00\x00\x00\x0dVLANG\x00C.UTF-8",
            b"\x00\x00\x00\x05D/tmp",
            b"\x00\x00\x00\x0aT\x00\x18\x00\x50xterm",
            b"\x00\x00\x00\x04Pcat",
            b"\x00\x00\x00\x04Ihi\n",
            b"\x00\x00\x00\x01Z",
            b"\x00\x00\x00\x05W\x00\x32\x00\x84",
            b"\x00\x00\x00\x04KINT",
        ];
        assert_eq!(&buf[..], &expected.concat()[..]);
        let mut server = ServerCodec::new(HeaderFormat::NETWORK_U32, 1 << 20);
        let mut buf = BytesMut::new();
        server
            .encode(ServerMessage::Credit(STDIN_WINDOW), &mut buf)
            .unwrap();
        server
            .encode(
                ServerMessage::Notice("environment variable FOO refused".into()),
                &mut buf,
            )
            .unwrap();
        assert_eq!(&buf[..9], b"\x00\x00\x00\x05G\x00\x80\x00\x00");
        assert_eq!(&buf[9..14], b"\x00\x00\x00\x21N");
    }

    #[test]
    fn text_messages_are_cut_to_fit_the_peer() {
        let mut codec = ServerCodec::new(HeaderFormat::NETWORK_U32, 1 << 20);
        codec.set_peer_max_frame(1024);
        let long = "é".repeat(2000);
        for msg in [
            ServerMessage::Done(Status::Failed {
                code: 127,
                message: long.clone(),
            }),
            ServerMessage::Error(long.clone()),
            ServerMessage::Notice(long.clone()),
        ] {
            let mut buf = BytesMut::new();
            codec.encode(msg, &mut buf).unwrap();
            assert!(buf.len() <= 4 + 1024, "{}", buf.len());
        }
        // Output is never cut: it is split by the sender instead.
        let mut buf = BytesMut::new();
        let out = ServerMessage::Stdout(Bytes::from(vec![b'x'; 2000]));
        assert!(codec.encode(out, &mut buf).is_err());
    }

    #[test]
    fn hellos_with_tiny_frames_are_refused() {
        let mut hello = Hello::new(1023, Bytes::new());
        assert!(hello
            .check()
            .unwrap_err()
            .contains("below the minimum of 1024"));
        hello.max_frame = 1024;
        assert!(hello.check().is_ok());
        hello.version = 0;
        assert!(hello.check().is_err());
    }

    #[test]
    fn signal_names_map_both_ways() {
        assert_eq!(signal_number("INT"), Some(Signal::INT.as_raw()));
        assert_eq!(signal_name(Signal::TERM.as_raw()), Some("TERM"));
        assert_eq!(signal_number("SEGV"), None);
    }

    #[test]
    fn echo_hi_reply_bytes_match_protocol_md() {
        // The same bytes PROTOCOL.md draws for the reply to `echo hi`.
        let mut codec = ServerCodec::new(HeaderFormat::NETWORK_U32, 1 << 20);
        let mut buf = BytesMut::new();
        codec
            .encode(ServerMessage::Stdout(Bytes::from("hi\n")), &mut buf)
            .unwrap();
        codec
            .encode(ServerMessage::Done(Status::Exited(0)), &mut buf)
            .unwrap();
        assert_eq!(
            &buf[..],
            b"\x00\x00\x00\x04Ohi\n\x00\x00\x00\x05X\x00\x00\x00\x00"
        );
    }

    #[test]
    fn output_head_plus_body_equals_the_whole_message() {
        let codec = ServerCodec::new("<H".parse().unwrap(), 1000);
        for (stderr, msg) in [
            (false, ServerMessage::Stdout(Bytes::from("abc"))),
            (true, ServerMessage::Stderr(Bytes::from("abc"))),
        ] {
            let mut whole = BytesMut::new();
            let mut c = ServerCodec::new("<H".parse().unwrap(), 1000);
            c.encode(msg, &mut whole).unwrap();
            let mut head = BytesMut::new();
            codec.encode_output_head(stderr, 3, &mut head).unwrap();
            head.extend_from_slice(b"abc");
            assert_eq!(head, whole);
        }
        assert!(codec
            .encode_output_head(false, 65535, &mut BytesMut::new())
            .is_err());
    }

    #[test]
    fn unknown_tag_is_malformed() {
        let err = ServerMessage::parse(Bytes::from("Zxx")).unwrap_err();
        assert!(err.to_string().contains("0x5a"), "{err}");
    }

    #[test]
    fn wrong_magic_says_what_to_check() {
        let err = ClientMessage::parse(Bytes::from("Hhttp/1.1")).unwrap_err();
        assert!(err.to_string().contains("--header"), "{err}");
    }

    #[test]
    fn chunks_split_without_losing_bytes() {
        let data = Bytes::from((0..=255u8).cycle().take(1000).collect::<Vec<_>>());
        let parts: Vec<Bytes> = chunks(data.clone(), 254).collect();
        assert_eq!(parts.len(), 4);
        assert!(parts.iter().all(|p| p.len() <= 254));
        assert_eq!(parts.concat(), data.to_vec());
    }

    #[test]
    fn sends_stay_within_the_peer_limit() {
        let mut codec = ServerCodec::new(HeaderFormat::NETWORK_U32, 1 << 20);
        codec.set_peer_max_frame(10);
        assert_eq!(codec.max_body(), 9);
        let mut buf = BytesMut::new();
        assert!(codec
            .encode(ServerMessage::Stdout(Bytes::from("0123456789")), &mut buf)
            .is_err());
    }
}
