//! The sending side: offers each planned entry and streams each file's bytes, holes in a
//! sparse file as holes, with the SHA-256 of the whole file at its end. Answers (with
//! `-u` or `--partial`) and the receiver's failures are read at the same time as data is
//! written, so neither side ever waits on the other's full socket.

use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;

use bytes::BytesMut;
use ring::digest::{Context, SHA256};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use super::link::{Carrier, Inbound, Outbound};
use super::plan::{Item, Plan};
use super::shared_sum::{SharedSum, SharedSums};
use super::{CopyError, Flags, Summary, Watch};
use crate::wire::transfer::{Answer, Entry, Transfer};

/// Most bytes read from a file at once (and sent in one message).
pub(crate) const CHUNK: usize = 1 << 20;

/// Data runs at least this long go from the file into the socket with `sendfile`, in the
/// clear; shorter ones are gathered with the messages around them.
const SENDFILE_MIN: usize = 64 * 1024;

/// Why a file is abandoned when it ends before the size it was offered with.
pub(crate) const SHRANK: &str = "the file shrank while it was being sent";

/// Why a file is abandoned when it was written to while it was sent.
const CHANGED: &str = "the file changed while it was being sent";

/// When `file` was last changed (its ctime, which every write moves), if it can be read.
fn changed_at(file: &File) -> Option<(i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    file.metadata().ok().map(|m| (m.ctime(), m.ctime_nsec()))
}

/// Zeros, to hash a hole as the bytes it stands for.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// Adds `n` zero bytes to `ctx`.
pub(crate) fn hash_zeros(ctx: &mut Context, mut n: u64) {
    while n > 0 {
        let k = n.min(ZEROS.len() as u64) as usize;
        ctx.update(&ZEROS[..k]);
        n -= k as u64;
    }
}

/// Adds the first `len` bytes of `file` to `ctx`; `false` if the file is shorter.
///
/// # Errors
/// Reading fails.
pub(crate) fn hash_prefix(file: &File, len: u64, ctx: &mut Context) -> std::io::Result<bool> {
    let mut buf = vec![0u8; CHUNK];
    let mut pos = 0u64;
    while pos < len {
        let want = (len - pos).min(CHUNK as u64) as usize;
        let n = file.read_at(&mut buf[..want], pos)?;
        if n == 0 {
            return Ok(false);
        }
        ctx.update(&buf[..n]);
        pos += n as u64;
    }
    Ok(true)
}

type Shared<'a> = Mutex<&'a mut (dyn Watch + Send)>;

/// Sends everything in `plan`, then waits for the receiver's summary. `sums` is shared
/// with the other connections sending the same files (`rcmd cp -H`), which then hash each
/// file once between them.
///
/// # Errors
/// The connection failed, or the peer broke the protocol.
pub async fn send<R, W, In, Out>(
    plan: Plan,
    flags: Flags,
    sums: Option<&SharedSums>,
    inbound: &mut Inbound<R, In, Out>,
    outbound: &mut Outbound<W, In, Out>,
    watch: &mut (dyn Watch + Send),
) -> Result<Summary, CopyError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    In: Carrier,
    Out: Carrier,
{
    let watch: Shared<'_> = Mutex::new(watch);
    let (answers_tx, mut answers) = mpsc::unbounded_channel();
    let reading = async {
        let tx = answers_tx;
        loop {
            match inbound.next().await? {
                Transfer::Answer(a) => {
                    let _ = tx.send(a);
                }
                Transfer::Failed { path, message } => {
                    watch
                        .lock()
                        .expect("no panics")
                        .failed_there(&path, &message);
                }
                Transfer::Done(summary) => return Ok(summary),
                other => {
                    return Err(CopyError::Refused(format!(
                        "{} from the receiving side",
                        super::receiver::describe(&other)
                    )))
                }
            }
        }
    };
    let limit = outbound.stall_limit();
    let writing = write_all(plan, flags, sums, outbound, &mut answers, &watch);
    let (mut reading, mut writing) = (std::pin::pin!(reading), std::pin::pin!(writing));
    // While files stream, the receiver may be silent for as long as they take: only a
    // write that makes no progress is a stall (the outbound's own limit).
    tokio::select! {
        summary = &mut reading => {
            let summary = summary?;
            writing.await?;
            Ok(summary)
        }
        written = &mut writing => {
            written?;
            // Everything is sent: the receiver's summary follows once it has written
            // what is in flight. One that falls silent instead is given up.
            super::link::patiently(limit, "its summary was awaited", reading).await
        }
    }
}

async fn write_all<W: AsyncWrite + Unpin, In, Out: Carrier>(
    plan: Plan,
    flags: Flags,
    sums: Option<&SharedSums>,
    out: &mut Outbound<W, In, Out>,
    answers: &mut mpsc::UnboundedReceiver<Answer>,
    watch: &Shared<'_>,
) -> Result<(), CopyError> {
    out.queue(Transfer::Total {
        top: plan.top,
        files: plan.files,
        bytes: plan.bytes,
    })
    .await?;
    watch
        .lock()
        .expect("no panics")
        .total(plan.files, plan.bytes);
    for (path, why) in plan.failures {
        fail(out, watch, path, why).await?;
    }
    for item in plan.items {
        match item {
            Item::Other { entry, .. } => out.queue(Transfer::Entry(entry)).await?,
            Item::Up => out.queue(Transfer::Up).await?,
            Item::File { path, shown, entry } => match File::open(&path) {
                Ok(file) => {
                    let to = Destination { flags, sums, out };
                    send_file(&file, &shown, entry, to, answers, watch).await?
                }
                Err(e) => fail(out, watch, shown, crate::text::io_reason(&e)).await?,
            },
        }
    }
    out.send(Transfer::Finish).await
}

/// Reports a failure on this side, here and to the receiver (which counts it).
async fn fail<W: AsyncWrite + Unpin, In, Out: Carrier>(
    out: &mut Outbound<W, In, Out>,
    watch: &Shared<'_>,
    path: Vec<u8>,
    message: String,
) -> Result<(), CopyError> {
    watch.lock().expect("no panics").failed(&path, &message);
    out.queue(Transfer::Failed {
        path: path.into(),
        message,
    })
    .await
}

/// Where a file goes, and how it is hashed on the way.
struct Destination<'a, 'o, W, In, Out> {
    flags: Flags,
    sums: Option<&'a SharedSums>,
    out: &'o mut Outbound<W, In, Out>,
}

async fn send_file<W: AsyncWrite + Unpin, In, Out: Carrier>(
    file: &File,
    shown: &[u8],
    entry: Entry,
    to: Destination<'_, '_, W, In, Out>,
    answers: &mut mpsc::UnboundedReceiver<Answer>,
    watch: &Shared<'_>,
) -> Result<(), CopyError> {
    let Destination { flags, sums, out } = to;
    let size = entry.size;
    out.queue(Transfer::Entry(entry)).await?;
    let mut ctx = Context::new(&SHA256);
    let start = if flags.asks() {
        out.flush().await?;
        let answer = super::link::patiently(out.stall_limit(), "its answer was awaited", async {
            answers.recv().await.ok_or(CopyError::Closed)
        })
        .await?;
        match answer {
            Answer::Skip => {
                // Already there (or refused there, which the receiver reports): counted as
                // done, as a download counts the files it skips, so the total adds up.
                let mut watch = watch.lock().expect("no panics");
                watch.file(shown, size, size);
                watch.file_done();
                return Ok(());
            }
            Answer::All => 0,
            Answer::Resume { have, sha256 } => {
                let kept = have <= size && hash_prefix(file, have, &mut ctx)?;
                if kept && ctx.clone().finish().as_ref() == sha256 {
                    have
                } else {
                    ctx = Context::new(&SHA256);
                    0
                }
            }
        }
    } else {
        0
    };
    out.queue(Transfer::Start(start)).await?;
    watch.lock().expect("no panics").file(shown, size, start);
    // A resumed file's hash starts with the kept prefix: this connection's own.
    let mut hashing = match sums.filter(|_| start == 0).and_then(|s| s.file(file, size)) {
        Some(shared) => Hashing::Shared(shared),
        None => Hashing::Own(ctx, None),
    };
    // A file written while it is read can be sent torn, part old and part new, with a
    // sum that matches what was sent: its change time says so, as tar's "file changed as
    // we read it".
    let before = changed_at(file);
    let sent = stream(file, start, size, &mut hashing, out, watch).await?;
    let sent = sent.and_then(|()| match changed_at(file) == before {
        true => Ok(()),
        false => Err(CHANGED.to_string()),
    });
    match sent.and_then(|()| hashing.finish()) {
        Ok(sum) => out.queue(Transfer::Sum(sum)).await?,
        Err(why) => {
            watch.lock().expect("no panics").failed(shown, &why);
            out.queue(Transfer::Abandon(why)).await?;
        }
    }
    watch.lock().expect("no panics").file_done();
    Ok(())
}

/// How the bytes a connection sends are hashed.
// One per file being sent, on the stack: boxing the larger variant would only add an
// allocation per file.
#[allow(clippy::large_enum_variant)]
enum Hashing {
    /// By this connection alone, reading into the buffer when the kernel sends the bytes.
    Own(Context, Option<Vec<u8>>),
    /// With the other connections sending the same file.
    Shared(SharedSum),
}

impl Hashing {
    /// Hashes `n` bytes at `pos` that the kernel is about to send from `file`, reading
    /// them only if they must be; how many to send (fewer if the file ended early).
    fn unread(&mut self, file: &File, pos: u64, n: usize) -> Result<usize, String> {
        match self {
            Hashing::Own(ctx, buf) => {
                let buf = buf.get_or_insert_with(|| vec![0u8; CHUNK]);
                let got = match file.read_at(&mut buf[..n], pos) {
                    Ok(0) => return Err(SHRANK.into()),
                    Ok(got) => got,
                    Err(e) => return Err(crate::text::io_reason(&e)),
                };
                ctx.update(&buf[..got]);
                Ok(got)
            }
            Hashing::Shared(shared) => shared.data(file, pos, n as u64, None).map(|()| n),
        }
    }

    /// Hashes `held`, the bytes at `pos` this connection read to send.
    fn held(&mut self, file: &File, pos: u64, held: &[u8]) -> Result<(), String> {
        match self {
            Hashing::Own(ctx, _) => {
                ctx.update(held);
                Ok(())
            }
            Hashing::Shared(shared) => shared.data(file, pos, held.len() as u64, Some(held)),
        }
    }

    /// Hashes a hole of `n` bytes at `pos`.
    fn zeros(&mut self, file: &File, pos: u64, n: u64) -> Result<(), String> {
        match self {
            Hashing::Own(ctx, _) => {
                hash_zeros(ctx, n);
                Ok(())
            }
            Hashing::Shared(shared) => shared.zeros(file, pos, n),
        }
    }

    /// The whole file's SHA-256, once every byte was sent.
    fn finish(self) -> Result<[u8; 32], String> {
        match self {
            Hashing::Own(ctx, _) => {
                let mut sum = [0u8; 32];
                sum.copy_from_slice(ctx.finish().as_ref());
                Ok(sum)
            }
            Hashing::Shared(shared) => shared.sum(),
        }
    }
}

/// Streams `file` from `start` to `size`: data as data, holes as holes. The inner error
/// says why the file itself could not be read to its end.
async fn stream<W: AsyncWrite + Unpin, In, Out: Carrier>(
    file: &File,
    start: u64,
    size: u64,
    hashing: &mut Hashing,
    out: &mut Outbound<W, In, Out>,
    watch: &Shared<'_>,
) -> Result<Result<(), String>, CopyError> {
    use rustix::fs::SeekFrom;
    let chunk = out.max_body().clamp(1, CHUNK);
    let mut pos = start;
    // Where the data run that `pos` is in ends (the next hole).
    let mut data_end = start;
    while pos < size {
        if pos >= data_end {
            let data_at = match rustix::fs::seek(file.as_fd(), SeekFrom::Data(pos)) {
                Ok(at) => at.min(size),
                Err(rustix::io::Errno::NXIO) => size,
                Err(_) => pos,
            };
            if data_at > pos {
                let n = data_at - pos;
                if let Err(why) = hashing.zeros(file, pos, n) {
                    return Ok(Err(why));
                }
                out.queue(Transfer::Hole(n)).await?;
                watch.lock().expect("no panics").advance(n);
                pos = data_at;
                continue;
            }
            data_end = match rustix::fs::seek(file.as_fd(), SeekFrom::Hole(pos)) {
                Ok(at) if at > pos => at.min(size),
                _ => size,
            };
        }
        let want = (data_end - pos).min(chunk as u64) as usize;
        if want >= SENDFILE_MIN && out.can_send_file() {
            // Read here only to hash, if at all: the kernel sends the bytes from the page
            // cache. If they change in between, the receiver's hash differs and it drops
            // the file.
            let n = match hashing.unread(file, pos, want) {
                Ok(n) => n,
                Err(why) => return Ok(Err(why)),
            };
            if !out.file_data(file, pos, n).await? {
                return Ok(Err(SHRANK.into()));
            }
            watch.lock().expect("no panics").advance(n as u64);
            pos += n as u64;
            continue;
        }
        // Zeroed by the allocator (calloc), not byte by byte.
        let mut buf = BytesMut::zeroed(want);
        let n = match file.read_at(&mut buf, pos) {
            Ok(0) => return Ok(Err(SHRANK.into())),
            Ok(n) => n,
            Err(e) => return Ok(Err(crate::text::io_reason(&e))),
        };
        buf.truncate(n);
        if let Err(why) = hashing.held(file, pos, &buf) {
            return Ok(Err(why));
        }
        out.data(buf.freeze()).await?;
        watch.lock().expect("no panics").advance(n as u64);
        pos += n as u64;
    }
    Ok(Ok(()))
}
