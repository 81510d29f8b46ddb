//! The framed codec: `struct.pack(FMT, len(payload)) + payload`, for any [`HeaderFormat`].
//!
//! The decoder is a two-state machine, `Head` then `Data(n)`. A length read from the peer is
//! checked against the maximum (and for sign) *before* any buffer is reserved for it, so a
//! peer cannot make us allocate by lying about a length. Not having a whole frame buffered
//! yet is the normal state (`Ok(None)`), not an error.

use std::{fmt, io};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::wire::header::{HeaderError, HeaderFormat};

/// Default largest frame accepted from a peer: 1 MiB.
pub const DEFAULT_MAX_FRAME: usize = 1 << 20;

/// Encodes and decodes length-prefixed frames.
#[derive(Debug, Clone)]
pub struct FrameCodec {
    header: HeaderFormat,
    max_frame: usize,
    /// What the header can describe, computed once: it is checked on every frame sent.
    max_payload: usize,
    state: DecodeState,
}

#[derive(Debug, Clone, Copy)]
enum DecodeState {
    Head,
    Data(usize),
}

/// What can go wrong reading or writing frames.
#[derive(Debug)]
pub enum FrameError {
    Io(io::Error),
    /// The peer announced a frame larger than we accept.
    TooLarge {
        len: u64,
        max: usize,
    },
    /// A signed header carried a negative length.
    Negative(HeaderError),
    /// The stream ended in the middle of a frame.
    Truncated {
        buffered: usize,
    },
    /// We were asked to send a payload the header format or the peer cannot take.
    TooLargeToSend {
        len: usize,
        max: usize,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Io(e) => write!(f, "{e}"),
            FrameError::TooLarge { len, max } => write!(
                f,
                "frame of {len} bytes exceeds the limit of {max} bytes \
                 (--max-frame; or the two sides use different --header formats)"
            ),
            FrameError::Negative(e) => write!(f, "{e}"),
            FrameError::Truncated { buffered } => write!(
                f,
                "connection closed in the middle of a frame ({buffered} bytes of it received)"
            ),
            FrameError::TooLargeToSend { len, max } => write!(
                f,
                "cannot send {len} bytes in one frame: the limit is {max} bytes"
            ),
        }
    }
}

impl std::error::Error for FrameError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FrameError::Io(e) => Some(e),
            FrameError::Negative(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for FrameError {
    fn from(e: io::Error) -> Self {
        FrameError::Io(e)
    }
}

impl FrameCodec {
    /// A codec for `header` that accepts frames of at most `max_frame` payload bytes.
    pub fn new(header: HeaderFormat, max_frame: usize) -> Self {
        FrameCodec {
            header,
            max_frame,
            max_payload: header.max_len(),
            state: DecodeState::Head,
        }
    }

    /// The header format in use.
    pub fn header(&self) -> HeaderFormat {
        self.header
    }

    /// The largest payload the decoder accepts.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Changes the largest payload the decoder accepts from now on.
    pub fn set_max_frame(&mut self, max_frame: usize) {
        self.max_frame = max_frame;
    }

    /// Whether the decoder is between frames: nothing of the next frame consumed yet, so
    /// the read buffer starts with its head.
    pub fn is_between_frames(&self) -> bool {
        matches!(self.state, DecodeState::Head)
    }

    /// Largest payload this header format can describe.
    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// Writes the header for a payload of `len` bytes.
    ///
    /// # Errors
    /// [`FrameError::TooLargeToSend`] if the header format cannot describe `len`; the caller
    /// splits output into frames small enough instead (lengths are never wrapped).
    pub fn encode_head(&self, len: usize, dst: &mut BytesMut) -> Result<(), FrameError> {
        if len > self.max_payload {
            return Err(FrameError::TooLargeToSend {
                len,
                max: self.max_payload,
            });
        }
        dst.reserve(self.header.size() + len);
        let mut head = [0u8; 8];
        dst.put_slice(self.header.pack_len(len, &mut head));
        Ok(())
    }

    fn decode_head(&mut self, src: &mut BytesMut) -> Result<Option<usize>, FrameError> {
        let size = self.header.size();
        if src.len() < size {
            return Ok(None);
        }
        let len = self
            .header
            .unpack_len(&src[..size])
            .map_err(FrameError::Negative)?;
        if len > self.max_frame as u64 {
            return Err(FrameError::TooLarge {
                len,
                max: self.max_frame,
            });
        }
        let len = len as usize;
        src.advance(size);
        // Only now, with the length checked, is it safe to make room for the payload, and
        // only for the part of it that has not arrived yet.
        src.reserve(len.saturating_sub(src.len()));
        Ok(Some(len))
    }
}

impl Decoder for FrameCodec {
    type Item = Bytes;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        let n = match self.state {
            DecodeState::Head => match self.decode_head(src)? {
                Some(n) => {
                    self.state = DecodeState::Data(n);
                    n
                }
                None => return Ok(None),
            },
            DecodeState::Data(n) => n,
        };
        if src.len() < n {
            return Ok(None);
        }
        self.state = DecodeState::Head;
        Ok(Some(src.split_to(n).freeze()))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() && matches!(self.state, DecodeState::Head) => Ok(None),
            None => {
                let header_bytes = match self.state {
                    DecodeState::Head => 0,
                    DecodeState::Data(_) => self.header.size(),
                };
                Err(FrameError::Truncated {
                    buffered: header_bytes + src.len(),
                })
            }
        }
    }
}

impl Encoder<&[u8]> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, payload: &[u8], dst: &mut BytesMut) -> Result<(), FrameError> {
        self.encode_head(payload.len(), dst)?;
        dst.put_slice(payload);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec(fmt: &str, max: usize) -> FrameCodec {
        FrameCodec::new(fmt.parse().unwrap(), max)
    }

    #[test]
    fn read_single_frame_in_one_piece() {
        let mut c = codec("!I", 100);
        let mut buf = BytesMut::from(&b"\x00\x00\x00\x02hi"[..]);
        assert_eq!(c.decode(&mut buf).unwrap().unwrap(), &b"hi"[..]);
        assert!(buf.is_empty());
    }

    #[test]
    fn read_incomplete_head_then_rest() {
        let mut c = codec("<H", 100);
        let mut buf = BytesMut::from(&b"\x03"[..]);
        assert!(c.decode(&mut buf).unwrap().is_none());
        buf.extend_from_slice(b"\x00ab");
        assert!(c.decode(&mut buf).unwrap().is_none());
        buf.extend_from_slice(b"c");
        assert_eq!(c.decode(&mut buf).unwrap().unwrap(), &b"abc"[..]);
    }

    #[test]
    fn huge_length_rejected_before_reserving() {
        let mut c = codec("!Q", 1024);
        let mut buf = BytesMut::from(&b"\x7f\xff\xff\xff\xff\xff\xff\xff"[..]);
        let cap_before = buf.capacity();
        let err = c.decode(&mut buf).unwrap_err();
        assert!(
            matches!(err, FrameError::TooLarge { max: 1024, .. }),
            "{err}"
        );
        assert_eq!(
            buf.capacity(),
            cap_before,
            "no buffer sized from the bad length"
        );
    }

    #[test]
    fn negative_length_rejected() {
        let mut c = codec("!i", 1024);
        let mut buf = BytesMut::from(&b"\xff\xff\xff\xff"[..]);
        assert!(matches!(c.decode(&mut buf), Err(FrameError::Negative(_))));
    }

    #[test]
    fn eof_inside_frame_is_an_error_but_between_frames_is_not() {
        let mut c = codec("!I", 100);
        let mut empty = BytesMut::new();
        assert!(c.decode_eof(&mut empty).unwrap().is_none());
        let mut partial = BytesMut::from(&b"\x00\x00\x00\x05ab"[..]);
        let err = c.decode_eof(&mut partial).unwrap_err();
        assert!(
            matches!(err, FrameError::Truncated { buffered: 6 }),
            "{err}"
        );
    }

    #[test]
    fn encoder_refuses_what_the_header_cannot_describe() {
        let mut c = codec("b", 1000);
        let mut dst = BytesMut::new();
        c.encode(&[0u8; 127][..], &mut dst).unwrap();
        assert_eq!(dst[0], 127);
        let err = c.encode(&[0u8; 128][..], &mut dst).unwrap_err();
        assert!(matches!(
            err,
            FrameError::TooLargeToSend { len: 128, max: 127 }
        ));
    }
}
