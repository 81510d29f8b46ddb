//! A running command's streams: its output pipes (or terminal) read or left in place, and
//! the way into its input.

mod pipe;
pub mod pty;

use std::io;
use std::os::fd::OwnedFd;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe as unix_pipe;

pub use pipe::OutPipe;
pub use pty::WindowSize;

use super::{Event, Piece};

/// How much one read from a command's pipe may return.
const READ_CHUNK: usize = 256 * 1024;
/// Pipe capacity asked for (Linux allows up to /proc/sys/fs/pipe-max-size, 1 MiB by
/// default): a fast producer fills more before it waits on us, so we wake less often.
const PIPE_SIZE: usize = 1 << 20;
/// A command's ends of its stdin, stdout and stderr, and ours.
pub(super) struct Streams {
    /// Stdin, stdout and stderr, for the command (or its supervisor) to hold.
    pub theirs: [OwnedFd; 3],
    pub output: Output,
    pub stdin: Option<Stdin>,
}

impl Streams {
    /// Pipes for stdout and stderr, and for stdin if `stdin` (else `/dev/null`); or, with
    /// a `terminal` (master, slave), its slave for all three.
    ///
    /// # Errors
    /// Out of descriptors, or a descriptor the runtime cannot watch.
    pub fn open(stdin: bool, terminal: Option<(pty::Master, OwnedFd)>) -> io::Result<Streams> {
        if let Some((master, slave)) = terminal {
            return Ok(Streams {
                theirs: [slave.try_clone()?, slave.try_clone()?, slave],
                output: Output::Pty {
                    master: Some(master.clone()),
                    buf: BytesMut::new(),
                },
                stdin: Some(Stdin::Pty(master)),
            });
        }
        let (stdin_theirs, stdin_ours) = if stdin {
            let (r, w) = pipe2()?;
            (r, Some(w))
        } else {
            (OwnedFd::from(std::fs::File::open("/dev/null")?), None)
        };
        let (out_read, out_write) = pipe2()?;
        let (err_read, err_write) = pipe2()?;
        for fd in [&out_read, &err_read]
            .into_iter()
            .chain(stdin_ours.as_ref())
        {
            widen(fd);
        }
        Ok(Streams {
            theirs: [stdin_theirs, out_write, err_write],
            output: Output::Pipes {
                stdout: Some(OutPipe::new(out_read)?),
                stderr: Some(OutPipe::new(err_read)?),
                out_buf: BytesMut::new(),
                err_buf: BytesMut::new(),
            },
            stdin: stdin_ours
                .map(|w| unix_pipe::Sender::from_owned_fd(w).map(Stdin::Pipe))
                .transpose()?,
        })
    }
}

/// Where the command's output comes from.
#[derive(Debug)]
pub(super) enum Output {
    Pipes {
        stdout: Option<OutPipe>,
        stderr: Option<OutPipe>,
        out_buf: BytesMut,
        err_buf: BytesMut,
    },
    /// With a terminal, stdout and stderr are one stream, reported as stdout.
    Pty {
        master: Option<pty::Master>,
        buf: BytesMut,
    },
}

/// The way into a running command's standard input; dropping it closes the input.
#[derive(Debug)]
pub enum Stdin {
    Pipe(unix_pipe::Sender),
    Pty(pty::Master),
}

impl Stdin {
    /// Writes some of `data` and says how much; waits while the command is not reading.
    /// Cancel safe: nothing is written unless it returns.
    ///
    /// # Errors
    /// If the command closed its input (it has ended, or does not want more).
    pub async fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Stdin::Pipe(p) => p.write(data).await,
            Stdin::Pty(m) => m.write(data).await,
        }
    }

    /// Prepares the end of input: on a terminal, types the EOF character. Dropping the
    /// `Stdin` afterwards closes a pipe.
    ///
    /// # Errors
    /// If the terminal is gone.
    pub async fn finish(&mut self) -> io::Result<()> {
        match self {
            Stdin::Pipe(_) => Ok(()),
            Stdin::Pty(m) => m.send_eof().await,
        }
    }
}

/// A pipe, both ends close-on-exec: (read, write).
pub(super) fn pipe2() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?)
}

/// Asks for a [`PIPE_SIZE`] pipe behind `fd`. Failing (over the limit) leaves the default
/// size, which works.
fn widen(fd: &OwnedFd) {
    let _default_size_kept = rustix::pipe::fcntl_setpipe_size(fd, PIPE_SIZE);
}

/// A pipe for the supervisor's control channel: the read end for it, the write end
/// (non-blocking, close-on-exec) for us.
pub(super) fn control_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    use rustix::pipe::PipeFlags;
    // Only our end must not block: the supervisor waits on its end in poll.
    let (read, write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC)?;
    let flags = rustix::fs::fcntl_getfl(&write)?;
    rustix::fs::fcntl_setfl(&write, flags | rustix::fs::OFlags::NONBLOCK)?;
    Ok((read, write))
}

/// Pulls from one pipe (see [`OutPipe::pull`]); `None` at its end, which closes it.
async fn pull_pipe(
    pipe: &mut Option<OutPipe>,
    buf: &mut BytesMut,
    stderr: bool,
    in_place: Option<(usize, usize)>,
) -> io::Result<Option<Piece>> {
    let Some(p) = pipe.as_ref() else {
        return std::future::pending().await;
    };
    Ok(match p.pull(buf, READ_CHUNK, in_place).await? {
        pipe::Pulled::Read(b) if stderr => Some(Piece::Event(Event::Stderr(b))),
        pipe::Pulled::Read(b) => Some(Piece::Event(Event::Stdout(b))),
        pipe::Pulled::InPlace(len) => Some(Piece::InPipe {
            stderr,
            pipe: p.clone(),
            len,
        }),
        pipe::Pulled::End => {
            *pipe = None;
            None
        }
    })
}

impl Output {
    /// Stops reading: what is still unread, and whatever still holds the other end, is
    /// left behind.
    pub(super) fn abandon(&mut self) {
        match self {
            Output::Pipes { stdout, stderr, .. } => {
                *stdout = None;
                *stderr = None;
            }
            Output::Pty { master, .. } => *master = None,
        }
    }

    pub(super) fn is_open(&self) -> bool {
        match self {
            Output::Pipes { stdout, stderr, .. } => stdout.is_some() || stderr.is_some(),
            Output::Pty { master, .. } => master.is_some(),
        }
    }

    /// The next piece of output, or `None` when a stream closed (call again while open).
    pub(super) async fn next(
        &mut self,
        in_place: Option<(usize, usize)>,
    ) -> io::Result<Option<Piece>> {
        match self {
            // Both pipes are read concurrently: a command that fills one while we wait on
            // the other must not deadlock. Pulling is cancel safe, so losing a race loses
            // no bytes.
            Output::Pipes {
                stdout,
                stderr,
                out_buf,
                err_buf,
            } => tokio::select! {
                r = pull_pipe(stdout, out_buf, false, in_place) => r,
                r = pull_pipe(stderr, err_buf, true, in_place) => r,
            },
            Output::Pty { master, buf } => {
                let Some(m) = master.as_ref() else {
                    return std::future::pending().await;
                };
                // A terminal is always read: its master is no pipe to splice from.
                match m.read(buf, READ_CHUNK).await? {
                    Some(b) => Ok(Some(Piece::Event(Event::Stdout(b)))),
                    None => {
                        *master = None;
                        Ok(None)
                    }
                }
            }
        }
    }
}
