//! Messages of the `framed` protocol and their codec: frames → messages.
//!
//! Every message is one frame (see [`crate::codec`]) whose payload starts with a one-byte
//! tag. The byte-level layout, with worked hex dumps, is in `PROTOCOL.md`; in short:
//!
//! ```text
//! client → server   'H' "rcmd" version:u8 max_frame:u32be token...   once, first
//!                   'R' command line bytes                           any number
//! server → client   'H' "rcmd" version:u8 max_frame:u32be           once, first
//!                   'O' stdout bytes | 'E' stderr bytes              any number
//!                   'X' code:i32be | 'S' signal:i32be                ends one reply
//!                   'F' code:i32be message(utf-8)                    ends one reply
//!                   '!' message(utf-8)                               then the server closes
//! ```

use std::marker::PhantomData;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::codec::{FrameCodec, FrameError};
use crate::header::HeaderFormat;
use crate::status::Status;

/// Protocol version this build speaks. Peers agree on the lower of their two versions.
pub const VERSION: u8 = 1;
/// Four bytes every hello starts with, so a peer speaking something else is told so.
pub const MAGIC: &[u8; 4] = b"rcmd";
/// Largest frame accepted before the handshake completes: a peer that has proved nothing
/// cannot make the server reserve more than this.
pub const MAX_HELLO_FRAME: usize = 4096;

/// What a client sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    Hello(Hello),
    /// One command line to run.
    Run(Bytes),
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

fn utf8(body: Bytes) -> String {
    String::from_utf8_lossy(&body).into_owned()
}

impl Message for ClientMessage {
    fn parse(payload: Bytes) -> Result<Self, ProtocolError> {
        match split_tag(payload)? {
            (b'H', body) => Ok(ClientMessage::Hello(Hello::parse(body)?)),
            (b'R', body) => Ok(ClientMessage::Run(body)),
            (tag, _) => Err(malformed(format!("unknown client message tag 0x{tag:02x}"))),
        }
    }

    fn encoded_len(&self) -> usize {
        1 + match self {
            ClientMessage::Hello(h) => 9 + h.token.len(),
            ClientMessage::Run(cmd) => cmd.len(),
        }
    }

    fn write(&self, dst: &mut BytesMut) {
        match self {
            ClientMessage::Hello(h) => {
                dst.put_u8(b'H');
                h.write(dst);
            }
            ClientMessage::Run(cmd) => {
                dst.put_u8(b'R');
                dst.put_slice(cmd);
            }
        }
    }
}

impl Message for ServerMessage {
    fn parse(payload: Bytes) -> Result<Self, ProtocolError> {
        let (tag, mut body) = split_tag(payload)?;
        Ok(match tag {
            b'H' => ServerMessage::Hello(Hello::parse(body)?),
            b'O' => ServerMessage::Stdout(body),
            b'E' => ServerMessage::Stderr(body),
            b'X' => ServerMessage::Done(Status::Exited(get_i32(&mut body, "exit code")?)),
            b'S' => ServerMessage::Done(Status::Signaled(get_i32(&mut body, "signal")?)),
            b'F' => {
                let code = get_i32(&mut body, "failure code")?;
                ServerMessage::Done(Status::Failed {
                    code,
                    message: utf8(body),
                })
            }
            b'!' => ServerMessage::Error(utf8(body)),
            tag => return Err(malformed(format!("unknown server message tag 0x{tag:02x}"))),
        })
    }

    fn encoded_len(&self) -> usize {
        1 + match self {
            ServerMessage::Hello(h) => 9 + h.token.len(),
            ServerMessage::Stdout(b) | ServerMessage::Stderr(b) => b.len(),
            ServerMessage::Done(Status::Failed { message, .. }) => 4 + message.len(),
            ServerMessage::Done(_) => 4,
            ServerMessage::Error(m) => m.len(),
        }
    }

    fn write(&self, dst: &mut BytesMut) {
        match self {
            ServerMessage::Hello(h) => {
                dst.put_u8(b'H');
                h.write(dst);
            }
            ServerMessage::Stdout(b) => {
                dst.put_u8(b'O');
                dst.put_slice(b);
            }
            ServerMessage::Stderr(b) => {
                dst.put_u8(b'E');
                dst.put_slice(b);
            }
            ServerMessage::Done(Status::Exited(c)) => {
                dst.put_u8(b'X');
                dst.put_i32(*c);
            }
            ServerMessage::Done(Status::Signaled(n)) => {
                dst.put_u8(b'S');
                dst.put_i32(*n);
            }
            ServerMessage::Done(Status::Failed { code, message }) => {
                dst.put_u8(b'F');
                dst.put_i32(*code);
                dst.put_slice(message.as_bytes());
            }
            ServerMessage::Error(m) => {
                dst.put_u8(b'!');
                dst.put_slice(m.as_bytes());
            }
        }
    }
}

/// Decodes messages of type `In` and encodes any [`Message`], one frame each.
#[derive(Debug)]
pub struct MessageCodec<In> {
    frames: FrameCodec,
    max_send: usize,
    _in: PhantomData<fn() -> In>,
}

impl<In> MessageCodec<In> {
    /// A codec over `header`; frames from the peer may be at most `max_frame` bytes.
    pub fn new(header: HeaderFormat, max_frame: usize) -> Self {
        let frames = FrameCodec::new(header, max_frame);
        let max_send = frames.max_payload();
        MessageCodec {
            frames,
            max_send,
            _in: PhantomData,
        }
    }

    /// Changes the largest frame accepted from the peer from now on.
    pub fn set_max_frame(&mut self, max_frame: usize) {
        self.frames.set_max_frame(max_frame);
    }

    /// Records the largest frame the peer accepts (from its hello); sends stay within it.
    pub fn set_peer_max_frame(&mut self, peer_max: u32) {
        let peer_max = usize::try_from(peer_max).unwrap_or(usize::MAX);
        self.max_send = self.frames.max_payload().min(peer_max);
    }

    /// Largest body (payload less its tag) one message may carry: the lesser of what the
    /// header format can describe and what the peer accepts. Output is cut to this size.
    pub fn max_body(&self) -> usize {
        self.max_send.saturating_sub(1)
    }

    /// Writes only the frame header and tag of a `Stdout` (or, with `stderr`, a `Stderr`)
    /// message whose body is `len` bytes. The body can then be written straight from its
    /// own buffer (a vectored write) instead of being copied behind the head.
    ///
    /// # Errors
    /// If `len` exceeds [`max_body`](Self::max_body).
    pub fn encode_output_head(
        &self,
        stderr: bool,
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
        dst.put_u8(if stderr { b'E' } else { b'O' });
        Ok(())
    }
}

impl<In: Message> Decoder for MessageCodec<In> {
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

impl<In, Out: Message> Encoder<Out> for MessageCodec<In> {
    type Error = ProtocolError;

    fn encode(&mut self, msg: Out, dst: &mut BytesMut) -> Result<(), ProtocolError> {
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

    fn round_trip<M: Message + std::fmt::Debug + PartialEq + Clone>(msg: M) {
        let mut codec: MessageCodec<M> = MessageCodec::new(HeaderFormat::NETWORK_U32, 1 << 20);
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
    }

    #[test]
    fn echo_hi_reply_bytes_match_protocol_md() {
        // The same bytes PROTOCOL.md draws for the reply to `echo hi`.
        let mut codec: MessageCodec<ClientMessage> =
            MessageCodec::new(HeaderFormat::NETWORK_U32, 1 << 20);
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
        let codec: MessageCodec<ClientMessage> = MessageCodec::new("<H".parse().unwrap(), 1000);
        for (stderr, msg) in [
            (false, ServerMessage::Stdout(Bytes::from("abc"))),
            (true, ServerMessage::Stderr(Bytes::from("abc"))),
        ] {
            let mut whole = BytesMut::new();
            let mut c: MessageCodec<ClientMessage> = MessageCodec::new("<H".parse().unwrap(), 1000);
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
        let mut codec: MessageCodec<ClientMessage> =
            MessageCodec::new(HeaderFormat::NETWORK_U32, 1 << 20);
        codec.set_peer_max_frame(10);
        assert_eq!(codec.max_body(), 9);
        let mut buf = BytesMut::new();
        assert!(codec
            .encode(ServerMessage::Stdout(Bytes::from("0123456789")), &mut buf)
            .is_err());
    }
}
