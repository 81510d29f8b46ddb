//! `--trace`: every frame shown on stderr as it passes, so a learner can watch the bytes.
//!
//! [`Traced`] wraps a connection's byte stream; what is read and written is fed to one
//! [`Lane`] per direction, a small parser of the mode's framing that prints a line per
//! frame once it has passed:
//!
//! ```text
//! rcmd trace: client send  00 00 00 0b  !I=11  'R' run  "echo hello"
//! ```
//!
//! The handlers do not know they are traced: they see an ordinary stream.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::printable::py_bytes;
use crate::wire::header::HeaderFormat;
use crate::wire::message::Tag;
use crate::wire::tutorial::JsonHeader;
use crate::wire::{Protocol, Wire};

/// Characters of a payload shown in a trace line.
const PREVIEW: usize = 24;
/// Longest JSON header the trace reads to find `total_size`; past it, the rest is raw.
const MAX_JSON: usize = 64 * 1024;

/// How one direction's bytes are delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// Length header, then a payload whose first byte is a tag (framed).
    Tagged(HeaderFormat),
    /// Length header, then that many bytes (classic).
    Counted(HeaderFormat),
    /// Length header, a JSON header that long, then `total_size` bytes (json-header).
    Json(HeaderFormat),
    /// The length as ASCII digits in one read or write, then that many bytes (length-ack).
    Digits,
    /// No framing: each read or write is shown as it is (commands, naive replies).
    Raw,
}

/// Where a lane is in the frame passing through it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Head(Vec<u8>),
    Json {
        head: Vec<u8>,
        len: usize,
        json: Vec<u8>,
    },
    Body {
        head: String,
        len: u64,
        left: u64,
        seen: Vec<u8>,
        tagged: bool,
    },
}

/// One direction of one connection.
#[derive(Debug, Clone)]
pub struct Lane {
    label: String,
    shape: Shape,
    state: State,
}

impl Lane {
    fn new(label: String, shape: Shape) -> Lane {
        Lane {
            label,
            shape,
            state: State::Head(Vec::new()),
        }
    }

    /// The lanes of `side` (`"client"` or `"server"`) in `wire`'s mode: (send, recv).
    pub fn pair(wire: &Wire, side: &str) -> (Lane, Lane) {
        let h = wire.header;
        let reply = match wire.protocol {
            Protocol::Framed => Shape::Tagged(h),
            Protocol::Classic | Protocol::StructAck => Shape::Counted(h),
            Protocol::JsonHeader => Shape::Json(h),
            Protocol::LengthAck => Shape::Digits,
            Protocol::Naive => Shape::Raw,
        };
        let request = if wire.protocol == Protocol::Framed {
            reply
        } else {
            Shape::Raw
        };
        let (send, recv) = if side == "server" {
            (reply, request)
        } else {
            (request, reply)
        };
        (
            Lane::new(format!("{side} send"), send),
            Lane::new(format!("{side} recv"), recv),
        )
    }

    /// Takes the bytes of one read or write; returns a line per frame that ended in them.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        if self.shape == Shape::Raw {
            if !bytes.is_empty() {
                lines.push(format!(
                    "{}  {} bytes, no header  {}",
                    self.label,
                    bytes.len(),
                    preview(bytes)
                ));
            }
            return lines;
        }
        while !bytes.is_empty() {
            bytes = self.step(bytes, &mut lines);
        }
        lines
    }

    fn step<'a>(&mut self, bytes: &'a [u8], lines: &mut Vec<String>) -> &'a [u8] {
        match &mut self.state {
            State::Head(head) => {
                let (fmt, size) = match self.shape {
                    Shape::Tagged(f) | Shape::Counted(f) | Shape::Json(f) => (Some(f), f.size()),
                    _ => (None, 0),
                };
                let Some(fmt) = fmt else {
                    // Digits: the whole read or write is the length (the peer waits for
                    // our answer before sending anything more).
                    let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
                    let text = String::from_utf8_lossy(&bytes[..digits]).into_owned();
                    match text.parse::<u64>() {
                        Ok(len) => {
                            let head = format!("{}  length as text b'{text}' = {len}", self.label);
                            self.body(head, len, false, lines);
                            return &bytes[digits..];
                        }
                        Err(_) => {
                            lines.push(format!(
                                "{}  {} bytes, not a length  {}",
                                self.label,
                                bytes.len(),
                                preview(bytes)
                            ));
                            return &[];
                        }
                    }
                };
                let take = (size - head.len()).min(bytes.len());
                head.extend_from_slice(&bytes[..take]);
                if head.len() == size {
                    let hex = hex(head);
                    let value = fmt.unpack(head);
                    let len = fmt.unpack_len(head).unwrap_or(0);
                    let desc = format!("{}  {hex}  {fmt}={value}", self.label);
                    match self.shape {
                        Shape::Json(_) if (len as usize) <= MAX_JSON => {
                            self.state = State::Json {
                                head: desc.into_bytes(),
                                len: len as usize,
                                json: Vec::new(),
                            };
                            if len == 0 {
                                return self.step(&bytes[take..], lines);
                            }
                        }
                        Shape::Tagged(_) => self.body(desc, len, true, lines),
                        _ => self.body(desc, len, false, lines),
                    }
                }
                &bytes[take..]
            }
            State::Json { head, len, json } => {
                let take = (*len - json.len()).min(bytes.len());
                json.extend_from_slice(&bytes[..take]);
                if json.len() == *len {
                    let head = String::from_utf8_lossy(head).into_owned();
                    let total = JsonHeader::parse(json).map_or(0, |h| h.total_size);
                    let desc = format!(
                        "{head}  json {}",
                        // From the peer: escaped, so it cannot start a line of its own;
                        // quotes kept as they are, to read as JSON.
                        String::from_utf8_lossy(json)
                            .chars()
                            .flat_map(|c| match c {
                                '"' | '\'' => vec![c],
                                _ => c.escape_debug().collect(),
                            })
                            .take(60)
                            .collect::<String>()
                    );
                    self.body(desc, total, false, lines);
                }
                &bytes[take..]
            }
            State::Body {
                head,
                len,
                left,
                seen,
                tagged,
            } => {
                let take = usize::try_from(*left)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                let room = (PREVIEW * 4 + 1).saturating_sub(seen.len());
                seen.extend_from_slice(&bytes[..take.min(room)]);
                *left -= take as u64;
                if *left == 0 {
                    let line = finish(head, *len, seen, *tagged);
                    lines.push(line);
                    self.state = State::Head(Vec::new());
                }
                &bytes[take..]
            }
        }
    }

    /// Moves to the body of a frame `len` bytes long; an empty one ends at once.
    fn body(&mut self, head: String, len: u64, tagged: bool, lines: &mut Vec<String>) {
        if len == 0 {
            lines.push(finish(&head, 0, &[], tagged));
            self.state = State::Head(Vec::new());
        } else {
            self.state = State::Body {
                head,
                len,
                left: len,
                seen: Vec::new(),
                tagged,
            };
        }
    }
}

fn finish(head: &str, len: u64, seen: &[u8], tagged: bool) -> String {
    if !tagged {
        return format!("{head}  {len} bytes  {}", preview(seen));
    }
    match seen.split_first() {
        None => format!("{head}  empty"),
        Some((&tag, body)) => format!(
            "{head}  '{}' {}  1+{} bytes  {}",
            tag as char,
            tag_name(tag),
            len - 1,
            match tag {
                // A hello ends with the token: a trace is for watching frames, and must
                // not put the secret on a terminal or into a log.
                _ if tag == Tag::Hello.byte() => hello_preview(body, len - 1),
                _ => preview(body),
            }
        ),
    }
}

/// A hello's fixed part (magic, version, max_frame) and the token's length, never its bytes.
fn hello_preview(body: &[u8], len: u64) -> String {
    const FIXED: usize = 9; // "rcmd", version:u8, max_frame:u32be
    let shown = &body[..body.len().min(FIXED)];
    let token = len.saturating_sub(FIXED as u64);
    format!("{}  token: {token} bytes, not shown", preview(shown))
}

/// What a framed tag means, in either direction (PROTOCOL.md).
fn tag_name(tag: u8) -> &'static str {
    Tag::from_byte(tag).map_or("unknown", Tag::name)
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn preview(bytes: &[u8]) -> String {
    py_bytes(bytes, PREVIEW)
}

/// A byte stream whose traffic is traced to stderr, one line per frame; or, made with
/// `enabled` false, a plain pass-through.
pub struct Traced<S> {
    inner: S,
    lanes: Option<(Lane, Lane)>,
}

impl<S> Traced<S> {
    /// Traces `inner`, the `side` (`"client"` or `"server"`) of a connection in `wire`'s
    /// mode, when `enabled`.
    pub fn new(inner: S, wire: &Wire, side: &str, enabled: bool) -> Traced<S> {
        Traced {
            inner,
            lanes: enabled.then(|| Lane::pair(wire, side)),
        }
    }

    /// The stream inside.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

/// Traces one unframed read or write (a tutorial-mode command) by `label`, e.g.
/// `"server recv"`.
pub fn raw(label: &str, bytes: &[u8]) {
    emit(Lane::new(label.to_string(), Shape::Raw).feed(bytes));
}

fn emit(lines: Vec<String>) {
    for line in lines {
        eprintln!("rcmd trace: {line}");
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Traced<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let (Poll::Ready(Ok(())), Some((_, recv))) = (&polled, &mut self.lanes) {
            emit(recv.feed(&buf.filled()[before..]));
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Traced<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let (Poll::Ready(Ok(n)), Some((send, _))) = (&polled, &mut self.lanes) {
            emit(send.feed(&buf[..*n]));
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lane(protocol: Protocol, header: &str, side: &str) -> (Lane, Lane) {
        let wire = Wire {
            header: header.parse().unwrap(),
            ..Wire::new(protocol)
        };
        Lane::pair(&wire, side)
    }

    #[test]
    fn framed_frames_are_shown_whole_across_pieces() {
        let (_, mut recv) = lane(Protocol::Framed, "!I", "client");
        let mut frame = vec![0, 0, 0, 7, b'O'];
        frame.extend_from_slice(b"hello\n");
        frame.extend_from_slice(&[0, 0, 0, 5, b'X', 0, 0, 0, 0]);
        assert!(recv.feed(&frame[..3]).is_empty());
        let lines = recv.feed(&frame[3..]);
        assert_eq!(
            lines,
            vec![
                "client recv  00 00 00 07  !I=7  'O' stdout  1+6 bytes  b'hello\\n'",
                "client recv  00 00 00 05  !I=5  'X' exit  1+4 bytes  b'\\x00\\x00\\x00\\x00'",
            ]
        );
    }

    #[test]
    fn tutorial_replies_by_mode() {
        let (mut send, mut recv) = lane(Protocol::Classic, "i", "server");
        assert_eq!(
            recv.feed(b"echo hi"),
            vec!["server recv  7 bytes, no header  b'echo hi'"]
        );
        let mut reply = 3i32.to_ne_bytes().to_vec();
        reply.extend_from_slice(b"hi\n");
        let line = &send.feed(&reply)[0];
        assert!(line.ends_with("i=3  3 bytes  b'hi\\n'"), "{line}");

        let (_, mut recv) = lane(Protocol::LengthAck, "i", "client");
        assert!(recv.feed(b"3").is_empty());
        assert_eq!(
            recv.feed(b"hi\n"),
            vec!["client recv  length as text b'3' = 3  3 bytes  b'hi\\n'"]
        );
    }
}
