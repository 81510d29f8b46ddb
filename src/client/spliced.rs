//! The client's zero-copy path: the payloads of large stdout frames go from the socket to
//! our stdout inside the kernel (through a pipe of our own), while frame heads and every
//! other message are read by the framed decoder as usual.
//!
//! The decoder reads ahead into its buffer, so this only takes over at a frame boundary:
//! whatever of a payload the decoder already holds is handed out as an ordinary stdout
//! message first, and only the rest is spliced. A frame the decoder has started is left
//! to it. Writing to stdout waits, as the copy path's `write` does.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use bytes::Buf;
use futures_util::StreamExt;
use rustix::event::{PollFd, PollFlags};
use rustix::fs::{FileType, OFlags};
use tokio::io::{AsyncRead, Interest, ReadHalf};
use tokio::net::TcpStream;
use tokio_util::codec::FramedRead;

use super::ClientError;
use crate::splice::{self, Pipe, Socket};
use crate::wire::frame::FrameError;
use crate::wire::message::{ClientCodec, ServerMessage, Tag};

/// Payloads at least this large are spliced; smaller ones are copied with their frame.
pub(super) const SPLICE_MIN: usize = 64 * 1024;
/// Our pipe between the socket and stdout.
const VIA_SIZE: usize = 1 << 20;
/// The tag of a stdout message (see PROTOCOL.md).
const STDOUT_TAG: u8 = Tag::Stdout.byte();

type Reader<S> = FramedRead<ReadHalf<S>, ClientCodec>;

/// Splices stdout payloads from one connection to this process's stdout.
#[derive(Debug)]
pub(super) struct SpliceIn {
    socket: Socket,
    stdout: OwnedFd,
    via: Pipe,
    /// Payload of the current stdout frame still in the socket.
    left: usize,
    /// Bytes in `via` not yet on stdout.
    held: usize,
    /// Stdout refused a splice: `via` is emptied by copying, and no new frame is spliced.
    copying: bool,
}

impl SpliceIn {
    /// A splicer for `stream`, if this process's stdout is something splice can write
    /// (a pipe, a regular file, or /dev/null); `None` otherwise (a terminal, say).
    pub(super) fn new(stream: &TcpStream) -> Option<SpliceIn> {
        let stdout = io::stdout().as_fd().try_clone_to_owned().ok()?;
        if !can_splice_into(&stdout) {
            return None;
        }
        Some(SpliceIn {
            socket: Socket::new(stream, Interest::READABLE).ok()?,
            stdout,
            via: Pipe::new(VIA_SIZE).ok()?,
            left: 0,
            held: 0,
            copying: false,
        })
    }

    /// The next message, as the reader would give it; on the way, the payloads of large
    /// stdout frames are written to stdout here. Cancel safe: state only advances past
    /// bytes that moved.
    pub(super) async fn next<S: AsyncRead>(
        &mut self,
        reader: &mut Reader<S>,
    ) -> Option<Result<ServerMessage, ClientError>> {
        let from_reader =
            |m: Option<Result<ServerMessage, _>>| m.map(|r| r.map_err(ClientError::from));
        loop {
            if self.left > 0 || self.held > 0 {
                if let Err(e) = self.pump().await {
                    return Some(Err(e));
                }
                continue;
            }
            if self.copying || !reader.decoder().frames().is_between_frames() {
                return from_reader(reader.next().await);
            }
            match self.large_stdout_head(reader).await {
                Ok(Some(part)) => {
                    if !part.is_empty() {
                        return Some(Ok(ServerMessage::Stdout(part)));
                    }
                }
                Ok(None) => return from_reader(reader.next().await),
                Err(e) => return Some(Err(ClientError::Protocol(e.into()))),
            }
        }
    }

    /// If the next frame is a stdout frame worth splicing: consumes its head (reading
    /// the missing part of it from the socket, never more) and returns the part of its
    /// payload already buffered, leaving the rest in `left`. `None`: leave it to the reader.
    async fn large_stdout_head<S: AsyncRead>(
        &mut self,
        reader: &mut Reader<S>,
    ) -> io::Result<Option<bytes::Bytes>> {
        let frames = reader.decoder().frames();
        let (header, max_frame) = (frames.header(), frames.max_frame());
        let want = header.size() + 1;
        let buffered = reader.read_buffer().len();
        if buffered < want {
            // Look at the rest of the head without taking it: if the frame is not ours,
            // the reader reads it, in as large a read as it likes.
            let mut head = reader.read_buffer().to_vec();
            head.resize(want, 0);
            // Only what has arrived: waiting is left to the reader, on the socket's own
            // registration (waiting on our duplicate here lost wake-ups, rarely, when a
            // signal cut the wait short).
            let got = match self.socket.peek_now(&mut head[buffered..]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) => return Err(e),
            };
            if buffered + got < want || !is_large_stdout(&head, header, max_frame) {
                return Ok(None);
            }
            let mut rest = vec![0u8; want - buffered];
            let mut filled = 0;
            while filled < rest.len() {
                // Peeked, so already there: these reads do not wait.
                match self.socket.read(&mut rest[filled..]).await? {
                    0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                    n => filled += n,
                }
            }
            reader.read_buffer_mut().extend_from_slice(&rest);
        } else if !is_large_stdout(&reader.read_buffer()[..want], header, max_frame) {
            return Ok(None);
        }
        let buf = reader.read_buffer_mut();
        let len = header.unpack_len(&buf[..header.size()]).unwrap_or(0) as usize;
        buf.advance(want);
        let body = len - 1;
        let part = buf.split_to(body.min(buf.len())).freeze();
        self.left = body - part.len();
        Ok(Some(part))
    }

    /// Moves what it can of the current payload: from the socket into `via` when it is
    /// empty, then all of `via` to stdout.
    async fn pump(&mut self) -> Result<(), ClientError> {
        if self.held == 0 {
            let n = self
                .socket
                .splice_to(self.via.write.as_fd(), self.left.min(VIA_SIZE))
                .await
                .map_err(|e| ClientError::Protocol(e.into()))?;
            if n == 0 {
                return Err(ClientError::Protocol(
                    FrameError::Truncated { buffered: 0 }.into(),
                ));
            }
            self.left -= n;
            self.held += n;
        }
        while self.held > 0 {
            let n = if self.copying {
                self.copy_held().map_err(ClientError::Io)?
            } else {
                match splice::splice(self.via.read.as_fd(), self.stdout.as_fd(), self.held) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        wait_writable(&self.stdout)?;
                        continue;
                    }
                    Err(e) if splice::is_refusal(&e) => {
                        self.copying = true;
                        continue;
                    }
                    Err(e) => return Err(ClientError::Io(local(e))),
                }
            };
            self.held -= n;
        }
        Ok(())
    }

    /// Copies what `via` holds to stdout through memory; says how much.
    fn copy_held(&mut self) -> io::Result<usize> {
        use std::io::{Read, Write};
        let mut buf = vec![0u8; self.held.min(256 * 1024)];
        let n = std::fs::File::from(self.via.read.try_clone()?).read(&mut buf)?;
        let mut out = std::fs::File::from(self.stdout.try_clone()?);
        out.write_all(&buf[..n]).map_err(local)?;
        Ok(n)
    }
}

/// Whether `head` (a frame head and one tag byte) starts a stdout frame large enough to
/// splice and within our frame limit (a frame over it is left to the reader to refuse).
fn is_large_stdout(
    head: &[u8],
    header: crate::wire::header::HeaderFormat,
    max_frame: usize,
) -> bool {
    let Ok(len) = header.unpack_len(&head[..header.size()]) else {
        return false;
    };
    head[header.size()] == STDOUT_TAG && len <= max_frame as u64 && len > SPLICE_MIN as u64
}

/// A pipe, a regular file, or /dev/null: what splice writes into.
fn can_splice_into(fd: &OwnedFd) -> bool {
    let Ok(st) = rustix::fs::fstat(fd) else {
        return false;
    };
    match FileType::from_raw_mode(st.st_mode) {
        FileType::Fifo => true,
        // Not O_APPEND: older kernels refuse to splice into such a file.
        FileType::RegularFile => {
            rustix::fs::fcntl_getfl(fd).is_ok_and(|flags| !flags.contains(OFlags::APPEND))
        }
        FileType::CharacterDevice => st.st_rdev == rustix::fs::makedev(1, 3),
        _ => false,
    }
}

/// Waits until `fd` (a non-blocking stdout) can take more, as a blocking write would.
fn wait_writable(fd: &OwnedFd) -> io::Result<()> {
    let mut p = [PollFd::new(fd, PollFlags::OUT)];
    rustix::event::poll(&mut p, None)?;
    Ok(())
}

fn local(e: io::Error) -> io::Error {
    super::local(e)
}
