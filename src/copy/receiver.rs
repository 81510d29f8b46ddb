//! The receiving side: every name from the peer is checked, every file is written to a
//! temporary name beside its target and renamed into place only once it is whole and its
//! SHA-256 matches. A transfer cut part-way leaves the target as it was (and, with
//! `--partial`, the bytes received so far, for the next try to continue from).

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use ring::digest::{Context, SHA256};
use tokio::io::{AsyncRead, AsyncWrite};

use super::link::{Carrier, Inbound, Outbound};
use super::paths::{self, check_name, Dir, Existing, Owner};
use super::sender::{hash_prefix, hash_zeros};
use super::{join, CopyError, Flags, Summary, Watch};
use crate::wire::transfer::{Answer, Entry, Kind, Transfer};

/// Where the top-level entries go.
enum Root {
    /// Into this directory, each under its own name.
    Into(Dir),
    /// The one entry becomes `name` in `parent` (the destination did not exist, or is a
    /// file to replace).
    As { parent: Dir, name: OsString },
}

/// A directory being filled.
struct Level {
    /// `None`: it could not be made; what is in it is dropped.
    dir: Option<Dir>,
    shown: Vec<u8>,
    entry: Entry,
    made: bool,
}

/// Where an entry goes: its directory, its name there, and its path as shown.
type Place = (Dir, OsString, Vec<u8>);

/// Why an entry has no place: a failure of that entry (`Ok`), or of the transfer.
type NoPlace = Result<String, CopyError>;

/// Where a file being received is written until it is whole.
enum Staging {
    /// A hidden name beside the target, renamed over it at the end.
    Named(OsString),
    /// A file with no name (`O_TMPFILE`), linked as the target at the end: one directory
    /// change per file rather than a create and a rename, which many small files feel,
    /// and nothing to clean up when a transfer is cut.
    Unnamed,
    /// The character device the user named as the destination (`rcmd cp host:f
    /// /dev/null`, as with scp): written in place; nothing is made, renamed or changed.
    Device,
}

/// A file being received.
struct Incoming {
    dir: Dir,
    name: OsString,
    staging: Staging,
    file: File,
    shown: Vec<u8>,
    entry: Entry,
    /// Bytes kept from an earlier try, and their hash.
    have: u64,
    kept: Context,
    ctx: Context,
    received: u64,
    started: bool,
    /// The temporary file was made by this try, so it is empty: a start at byte 0 need
    /// not truncate it.
    empty: bool,
    /// The last thing received was a hole: the file ends short of its size until it is
    /// extended (a hole at the end is never written).
    tail_hole: bool,
    /// Keep the temporary file if this is cut short (`--partial`).
    keep: bool,
    /// The file this one replaces: its owner, group and (without `-p`) permissions are
    /// kept.
    replacing: Option<Owner>,
}

impl Drop for Incoming {
    fn drop(&mut self) {
        if let (false, Staging::Named(temp)) = (self.keep, &self.staging) {
            self.dir.remove(temp);
        }
    }
}

/// What happens to the current file's data.
enum Current {
    None,
    Writing(Box<Incoming>),
    /// It failed (or its directory did); its data is read and dropped.
    Dropping,
}

struct Receiver<'a> {
    dest: PathBuf,
    flags: Flags,
    umask: u32,
    root: Option<Result<Root, ()>>,
    tops: u64,
    /// The top-level names the receiving user asked for (a download); `None` takes any.
    asked: Option<Vec<Vec<u8>>>,
    stack: Vec<Level>,
    current: Current,
    summary: Summary,
    watch: &'a mut (dyn Watch + Send),
    /// New targets are written unnamed (`O_TMPFILE`) and linked into place; off once the
    /// file system (or a missing /proc) refuses it, and with `--partial`, whose kept
    /// bytes need a name to be found by the next try.
    unnamed: bool,
}

/// One-line description of a message, for a refusal.
pub(crate) fn describe(t: &Transfer) -> String {
    let name = match t {
        Transfer::Put { .. } | Transfer::Get { .. } => "a copy request",
        Transfer::Total { .. } => "a total",
        Transfer::Entry(_) => "an entry",
        Transfer::Start(_) => "a start offset",
        Transfer::Data(_) => "file data",
        Transfer::Hole(_) => "a hole",
        Transfer::Sum(_) => "a checksum",
        Transfer::Abandon(_) => "an abandoned file",
        Transfer::Up => "the end of a directory",
        Transfer::Finish => "the end of the entries",
        Transfer::Answer(_) => "an answer",
        Transfer::Done(_) => "a summary",
        Transfer::Failed { .. } => "a failure",
    };
    format!("unexpected {name}")
}

/// Receives into `dest` until the sender's end, and answers with the summary. Top-level
/// entries not named in `asked` ([`plan::asked_names`](super::plan::asked_names)) are
/// refused.
///
/// # Errors
/// The connection failed or the sender broke the protocol; what was written stays, and
/// a file cut short is removed (kept aside with `--partial`).
pub async fn receive<R, W, In, Out>(
    dest: &Path,
    flags: Flags,
    asked: Option<Vec<Vec<u8>>>,
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
    let mut r = Receiver {
        dest: dest.to_path_buf(),
        flags,
        umask: paths::umask(),
        root: None,
        tops: 0,
        asked,
        stack: Vec::new(),
        current: Current::None,
        summary: Summary::default(),
        watch,
        unnamed: !flags.partial && Path::new("/proc/self/fd").is_dir(),
    };
    loop {
        let msg = inbound.next().await?;
        if let Transfer::Finish = msg {
            if !matches!(r.current, Current::None) || !r.stack.is_empty() {
                return Err(CopyError::Refused(
                    "the entries ended inside a file or directory".into(),
                ));
            }
            outbound.send(Transfer::Done(r.summary)).await?;
            return Ok(r.summary);
        }
        r.take(msg, outbound).await?;
    }
}

impl Receiver<'_> {
    async fn take<W: AsyncWrite + Unpin, In, Out: Carrier>(
        &mut self,
        msg: Transfer,
        out: &mut Outbound<W, In, Out>,
    ) -> Result<(), CopyError> {
        let refuse = |t: &Transfer| Err(CopyError::Refused(describe(t)));
        match (&mut self.current, msg) {
            (_, Transfer::Failed { path, message }) => {
                self.summary.failed += 1;
                self.watch.failed_there(&path, &message);
            }
            (Current::None, Transfer::Total { top, files, bytes }) if self.root.is_none() => {
                self.watch.total(files, bytes);
                let root = resolve(&self.dest, top);
                if let Err(why) = &root {
                    let shown = self.dest.as_os_str().as_bytes().to_vec();
                    self.fail(out, shown, why.clone()).await?;
                }
                self.root = Some(root.map_err(|_| ()));
            }
            (Current::None, Transfer::Entry(e)) if self.root.is_some() => {
                self.entry(e, out).await?
            }
            (Current::None, Transfer::Up) if !self.stack.is_empty() => {
                let level = self.stack.pop().expect("not empty");
                self.finish_dir(level, out).await?;
            }
            (Current::Dropping, Transfer::Start(_) | Transfer::Data(_) | Transfer::Hole(_)) => {}
            (Current::Dropping, Transfer::Sum(_) | Transfer::Abandon(_)) => {
                self.current = Current::None;
            }
            (Current::Writing(f), Transfer::Start(at)) if !f.started => {
                if at == f.have && at > 0 {
                    f.file.seek(SeekFrom::Start(at))?;
                    f.ctx = f.kept.clone();
                } else if at == 0 {
                    if !f.empty {
                        f.file.set_len(0)?;
                        f.file.seek(SeekFrom::Start(0))?;
                    }
                } else {
                    return Err(CopyError::Refused(format!(
                        "a start at byte {at} where {} were kept",
                        f.have
                    )));
                }
                f.started = true;
                f.received = at;
                self.watch.file(&f.shown, f.entry.size, at);
            }
            (Current::Writing(f), msg @ (Transfer::Data(_) | Transfer::Hole(_))) if f.started => {
                let n = match &msg {
                    Transfer::Data(b) => b.len() as u64,
                    Transfer::Hole(n) => *n,
                    _ => unreachable!("matched above"),
                };
                if f.received
                    .checked_add(n)
                    .is_none_or(|end| end > f.entry.size)
                {
                    return Err(CopyError::Refused(format!(
                        "more bytes than the {} offered for {}",
                        f.entry.size,
                        crate::printable::printable(&f.shown)
                    )));
                }
                let written = match &msg {
                    Transfer::Data(b) => f.file.write_all(b).map(|()| f.ctx.update(b)),
                    _ => f
                        .file
                        .seek(SeekFrom::Current(n as i64))
                        .map(|_| hash_zeros(&mut f.ctx, n)),
                };
                f.received += n;
                if n > 0 {
                    // An empty message changes nothing, and must not hide a hole before it.
                    f.tail_hole = matches!(msg, Transfer::Hole(_));
                }
                self.watch.advance(n);
                if let Err(e) = written {
                    let shown = f.shown.clone();
                    self.drop_current(true);
                    self.current = Current::Dropping;
                    self.fail(out, shown, crate::text::io_reason(&e)).await?;
                }
            }
            (Current::Writing(f), Transfer::Sum(sum)) if f.started => {
                let Current::Writing(f) = std::mem::replace(&mut self.current, Current::None)
                else {
                    unreachable!("matched above")
                };
                let shown = f.shown.clone();
                match self.complete(f, sum) {
                    Ok(()) => self.summary.written += 1,
                    Err(why) => self.fail(out, shown, why).await?,
                }
                self.watch.file_done();
            }
            (Current::Writing(f), Transfer::Abandon(why)) => {
                let shown = f.shown.clone();
                self.drop_current(false);
                self.summary.failed += 1;
                self.watch.failed(&shown, &why);
                self.watch.file_done();
            }
            (_, msg) => return refuse(&msg),
        }
        Ok(())
    }

    /// Ends the current file without renaming it: its temporary file goes unless
    /// `--partial` keeps it and `corrupt` does not say its bytes are wrong.
    fn drop_current(&mut self, corrupt: bool) {
        if let Current::Writing(mut f) = std::mem::replace(&mut self.current, Current::None) {
            if corrupt {
                f.keep = false;
            }
        }
    }

    async fn fail<W: AsyncWrite + Unpin, In, Out: Carrier>(
        &mut self,
        out: &mut Outbound<W, In, Out>,
        shown: Vec<u8>,
        why: String,
    ) -> Result<(), CopyError> {
        self.summary.failed += 1;
        self.watch.failed(&shown, &why);
        out.queue(Transfer::Failed {
            path: shown.into(),
            message: why,
        })
        .await
    }

    /// The directory and name an entry goes to, and how it is shown; `Ok(None)` when it
    /// goes nowhere (its directory failed).
    fn place(&mut self, name: &[u8]) -> Result<Option<Place>, NoPlace> {
        if let Some(level) = self.stack.last() {
            let Some(dir) = &level.dir else {
                return Ok(None);
            };
            let checked = check_name(name).map_err(Ok)?;
            return Ok(Some((
                dir.clone(),
                checked.to_os_string(),
                join(&level.shown, name),
            )));
        }
        self.tops += 1;
        let asked = |name: &[u8]| match &self.asked {
            Some(asked) if !super::plan::was_asked(asked, name) => Err(Ok(
                "refused from the peer: not a name that was asked for".to_string(),
            )),
            _ => Ok(()),
        };
        let dest = self.dest.as_os_str().as_bytes();
        match &self.root {
            Some(Ok(Root::Into(dir))) => {
                let checked = check_name(name).map_err(Ok)?;
                asked(name)?;
                Ok(Some((
                    dir.clone(),
                    checked.to_os_string(),
                    join(dest, name),
                )))
            }
            Some(Ok(Root::As {
                parent,
                name: as_name,
            })) if self.tops == 1 => {
                asked(name)?;
                Ok(Some((parent.clone(), as_name.clone(), dest.to_vec())))
            }
            Some(Ok(Root::As { .. })) => Err(Err(CopyError::Refused(
                "more entries than the total said, for a destination that is not a directory"
                    .into(),
            ))),
            _ => Ok(None),
        }
    }

    async fn entry<W: AsyncWrite + Unpin, In, Out: Carrier>(
        &mut self,
        e: Entry,
        out: &mut Outbound<W, In, Out>,
    ) -> Result<(), CopyError> {
        let placed = match self.place(&e.name) {
            Ok(p) => p,
            Err(Err(fatal)) => return Err(fatal),
            Err(Ok(why)) => {
                let shown = self.shown_in_current(&e.name);
                self.fail(out, shown, why).await?;
                None
            }
        };
        let Some((dir, name, shown)) = placed else {
            return self.nowhere(e, out).await;
        };
        match e.kind {
            Kind::Dir if self.flags.recursive => match dir.enter(&name) {
                Ok((d, made)) => self.stack.push(Level {
                    dir: Some(d),
                    shown,
                    entry: e,
                    made,
                }),
                Err(why) => {
                    self.fail(out, shown.clone(), why).await?;
                    self.stack.push(Level {
                        dir: None,
                        shown,
                        entry: e,
                        made: false,
                    });
                }
            },
            Kind::Link if self.flags.recursive => {
                if let Err(why) = self.link(&dir, &name, &e) {
                    self.fail(out, shown, why).await?;
                } else {
                    self.summary.written += 1;
                }
            }
            Kind::File => self.file(dir, name, shown, e, out).await?,
            _ => {
                return Err(CopyError::Refused(
                    "a directory or link offered without -r".into(),
                ))
            }
        }
        Ok(())
    }

    /// An entry with nowhere to go: its data (if a file) is dropped, its contents (if a
    /// directory) too.
    async fn nowhere<W: AsyncWrite + Unpin, In, Out: Carrier>(
        &mut self,
        e: Entry,
        out: &mut Outbound<W, In, Out>,
    ) -> Result<(), CopyError> {
        match e.kind {
            Kind::Dir => self.stack.push(Level {
                dir: None,
                shown: Vec::new(),
                entry: e,
                made: false,
            }),
            Kind::File => {
                self.current = Current::Dropping;
                if self.flags.asks() {
                    out.send(Transfer::Answer(Answer::Skip)).await?;
                    self.current = Current::None;
                }
            }
            Kind::Link => {}
        }
        Ok(())
    }

    fn shown_in_current(&self, name: &[u8]) -> Vec<u8> {
        let base = self.stack.last().map_or_else(
            || self.dest.as_os_str().as_bytes().to_vec(),
            |l| l.shown.clone(),
        );
        join(&base, name)
    }

    async fn file<W: AsyncWrite + Unpin, In, Out: Carrier>(
        &mut self,
        dir: Dir,
        name: OsString,
        shown: Vec<u8>,
        e: Entry,
        out: &mut Outbound<W, In, Out>,
    ) -> Result<(), CopyError> {
        let mut new_target = false;
        let mut replacing = None;
        let mut device = false;
        // The destination the user named, not a name inside a tree the peer chose.
        let named = self.stack.is_empty() && matches!(self.root, Some(Ok(Root::As { .. })));
        let why = match dir.existing(&name) {
            Ok(Existing::Link) => Some("a symbolic link is in the way; not replacing it".into()),
            Ok(Existing::Dir) => Some("is a directory".into()),
            Ok(Existing::Device) if named => {
                device = true;
                None
            }
            Ok(Existing::Device | Existing::Other) => {
                Some("exists and is not a regular file".into())
            }
            Ok(Existing::File { size, mtime, .. })
                if self.flags.update && size == e.size && mtime == e.mtime =>
            {
                self.summary.skipped += 1;
                self.watch.file(&shown, e.size, e.size);
                self.watch.file_done();
                out.send(Transfer::Answer(Answer::Skip)).await?;
                return Ok(());
            }
            Ok(Existing::Nothing) => {
                new_target = true;
                None
            }
            // A rename would replace a file this user may not write; scp, which writes
            // into it, fails there, and so does this.
            Ok(Existing::File { .. }) if !dir.writable(&name) => {
                Some("permission denied: the file here is not writable; not replacing it".into())
            }
            Ok(Existing::File { owner, .. }) => {
                replacing = Some(owner);
                None
            }
            Err(err) => Some(crate::text::io_reason(&err)),
        };
        let opened = match why {
            Some(why) => Err(why),
            None if device => dir
                .open_device(&name)
                .map(|f| (Staging::Device, f, true, 0, Context::new(&SHA256)))
                .map_err(|e| crate::text::io_reason(&e)),
            None => self
                .open_staging(&dir, &name, new_target)
                .map_err(|e| crate::text::io_reason(&e)),
        };
        let (staging, file, empty, have, kept) = match opened {
            Ok(o) => o,
            Err(why) => {
                self.fail(out, shown, why).await?;
                return self.nowhere(e, out).await;
            }
        };
        if self.flags.asks() {
            let answer = if have > 0 {
                let mut sha256 = [0u8; 32];
                sha256.copy_from_slice(kept.clone().finish().as_ref());
                Answer::Resume { have, sha256 }
            } else {
                Answer::All
            };
            out.send(Transfer::Answer(answer)).await?;
        }
        self.current = Current::Writing(Box::new(Incoming {
            dir,
            name,
            staging,
            file,
            shown,
            entry: e,
            have,
            kept,
            ctx: Context::new(&SHA256),
            received: 0,
            started: false,
            empty,
            tail_hole: false,
            keep: self.flags.partial,
            replacing,
        }));
        Ok(())
    }

    /// Where `name` is written until whole, whether this try made it (so it is empty), and
    /// what an earlier try kept (`--partial`). Unnamed only where nothing is at `name`:
    /// replacing a file takes a rename, which a link cannot do.
    fn open_staging(
        &mut self,
        dir: &Dir,
        name: &OsStr,
        new_target: bool,
    ) -> std::io::Result<(Staging, File, bool, u64, Context)> {
        if self.unnamed && new_target {
            match dir.open_unnamed()? {
                Some(file) => return Ok((Staging::Unnamed, file, true, 0, Context::new(&SHA256))),
                None => self.unnamed = false,
            }
        }
        let temp = paths::temp_name(name, self.flags.partial);
        let fresh = !self.flags.partial;
        let file = dir.open_file(&temp, fresh)?;
        let mut kept = Context::new(&SHA256);
        let mut have = if fresh { 0 } else { file.metadata()?.len() };
        if have > 0 && !hash_prefix(&file, have, &mut kept)? {
            have = 0;
            kept = Context::new(&SHA256);
        }
        Ok((Staging::Named(temp), file, fresh, have, kept))
    }

    /// Checks a whole file, sets its mode and times and puts it in place.
    fn complete(&self, mut f: Box<Incoming>, sum: [u8; 32]) -> Result<(), String> {
        let e = &f.entry;
        if f.received != e.size {
            f.keep = false;
            return Err(format!("{} bytes arrived of {}", f.received, e.size));
        }
        if f.ctx.clone().finish().as_ref() != sum {
            f.keep = false;
            return Err(
                "SHA-256 differs from the sender's: the bytes changed on the way; \
                        the old file is left as it was"
                    .into(),
            );
        }
        let io = |e: std::io::Error| crate::text::io_reason(&e);
        if let Staging::Device = f.staging {
            // Written in place, as it came: nothing to extend, set or put anywhere.
            f.keep = true;
            return Ok(());
        }
        // Every other way of ending leaves the file exactly `size` long already (its data
        // ends at `received`, and a resumed file was kept `have` long): one syscall fewer
        // per file, which many small files feel.
        if f.tail_hole {
            f.file.set_len(e.size).map_err(io)?;
        }
        let mode = match f.replacing {
            Some(old) => {
                // Before the mode: a change of owner clears set-user-ID bits that -p sets.
                paths::keep_owner(&f.file, old);
                if self.flags.preserve {
                    self.mode(e.mode)
                } else {
                    // Its permissions, without the set-ID bits, which were given to other
                    // contents.
                    old.mode & 0o1777
                }
            }
            None => self.mode(e.mode),
        };
        let times = self.flags.preserve.then_some((e.atime, e.mtime));
        paths::set_meta(&f.file, Some(mode), times).map_err(io)?;
        let mut linked = false;
        if let Staging::Unnamed = f.staging {
            match f.dir.link_unnamed(&f.file, &f.name) {
                Ok(()) => linked = true,
                // Something appeared at the name since it was looked at: replace it as a
                // named file would, through a hidden name and a rename.
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                    let temp = paths::temp_name(&f.name, false);
                    f.dir.link_unnamed(&f.file, &temp).map_err(io)?;
                    // Named now, so removed if the rename fails.
                    f.staging = Staging::Named(temp);
                }
                Err(err) => return Err(io(err)),
            }
        }
        if let (false, Staging::Named(temp)) = (linked, &f.staging) {
            f.dir.rename(temp, &f.name).map_err(io)?;
        }
        // In place: nothing left to remove.
        f.keep = true;
        if !self.flags.partial {
            // What a cut `--partial` copy of this file kept is of no use now that it is
            // whole (with --partial the kept file was this one, renamed into place).
            f.dir.remove(&paths::temp_name(&f.name, true));
        }
        Ok(())
    }

    /// The mode a new file or directory gets: the sender's with `-p`, else its
    /// permission bits less our umask, as scp does.
    fn mode(&self, theirs: u32) -> u32 {
        if self.flags.preserve {
            theirs & 0o7777
        } else {
            theirs & 0o777 & !self.umask
        }
    }

    fn link(&self, dir: &Dir, name: &OsStr, e: &Entry) -> Result<(), String> {
        match dir.existing(name) {
            Ok(Existing::Dir) => return Err("is a directory".into()),
            Err(err) => return Err(crate::text::io_reason(&err)),
            Ok(_) => {}
        }
        if e.target.is_empty() || e.target.contains(&0) {
            return Err("refused from the peer: a link with an empty target or a NUL byte".into());
        }
        let temp = paths::temp_name(name, false);
        let io = |e: std::io::Error| crate::text::io_reason(&e);
        dir.symlink(OsStr::from_bytes(&e.target), &temp)
            .map_err(io)?;
        if let Err(err) = dir.rename(&temp, name) {
            dir.remove(&temp);
            return Err(io(err));
        }
        if self.flags.preserve {
            dir.set_link_times(name, e.atime, e.mtime);
        }
        Ok(())
    }

    /// A directory is complete: its mode (and times with `-p`) are set last, so it
    /// stayed writable while it was filled.
    async fn finish_dir<W: AsyncWrite + Unpin, In, Out: Carrier>(
        &mut self,
        level: Level,
        out: &mut Outbound<W, In, Out>,
    ) -> Result<(), CopyError> {
        let Some(dir) = level.dir else {
            return Ok(());
        };
        let mode = (self.flags.preserve || level.made).then(|| self.mode(level.entry.mode));
        let times = self
            .flags
            .preserve
            .then_some((level.entry.atime, level.entry.mtime));
        if let Err(e) = dir.set_meta(mode, times) {
            self.fail(out, level.shown, crate::text::io_reason(&e))
                .await?;
        }
        Ok(())
    }
}

/// Where the top-level entries go, from the destination the user named and how many
/// entries come: into it when it is a directory; as it when one entry comes and it is
/// not (yet) one.
fn resolve(dest: &Path, top: u64) -> Result<Root, String> {
    let io = |e: std::io::Error| crate::text::io_reason(&e);
    let dir_meant = dest.as_os_str().as_bytes().ends_with(b"/");
    match std::fs::metadata(dest) {
        Ok(m) if m.is_dir() => return Dir::open_user(dest).map(Root::Into).map_err(io),
        Ok(_) if top > 1 || dir_meant => return Err("not a directory".into()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if top > 1 || dir_meant {
                return Err("no such directory".into());
            }
        }
        Err(e) => return Err(io(e)),
    }
    let name = dest
        .file_name()
        .ok_or_else(|| "names no file".to_string())?
        .to_os_string();
    let parent = dest.parent().unwrap_or(Path::new("."));
    let parent = Dir::open_user(parent).map_err(|e| format!("its directory: {}", io(e)))?;
    Ok(Root::As { parent, name })
}
