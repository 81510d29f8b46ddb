//! The receiving side's files: names from the peer checked, and every file and directory
//! made relative to a directory already open (`openat`, `mkdirat`, `renameat`), never
//! following a symbolic link a peer could have put in the way. Only the destination the
//! user named is opened by path, and that path may be a link: the user chose it.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::sync::Arc;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat, Timespec, Timestamps, CWD};

/// Whether `name` may name one entry: a single path component that is not `.` or `..`,
/// empty, or carrying a NUL byte. What a peer offers must pass before anything is made.
///
/// # Errors
/// Why it is refused, in words for the user.
pub fn check_name(name: &[u8]) -> Result<&OsStr, String> {
    let why = if name.is_empty() {
        "an empty name"
    } else if name == b"." || name == b".." {
        "a name that leaves its directory (`..` or `.`)"
    } else if name.contains(&b'/') {
        "a path, not a name (it has a `/`: absolute or leading elsewhere)"
    } else if name.contains(&0) {
        "a NUL byte in the name"
    } else if name.len() > crate::wire::transfer::MAX_NAME {
        "a name longer than 255 bytes"
    } else {
        return Ok(OsStr::from_bytes(name));
    };
    Err(format!("refused from the peer: {why}"))
}

/// This process's file mode creation mask, read without changing it (`umask(2)` can
/// only be read by setting it, which would race with other threads).
pub fn umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}

/// A directory, open; files are made inside it by name.
#[derive(Debug, Clone)]
pub struct Dir(Arc<OwnedFd>);

/// What is at a name now, not following a link there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    Nothing,
    File {
        size: u64,
        mtime: i64,
        /// Who owns it and its permissions: what replacing it keeps, as scp, which writes
        /// into the file it finds.
        owner: Owner,
    },
    Dir,
    Link,
    /// A character device, such as /dev/null.
    Device,
    Other,
}

/// A file's owner, group and permission bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

fn io_at(e: rustix::io::Errno) -> io::Error {
    io::Error::from(e)
}

impl Dir {
    /// The directory at `path`, as the user named it (links followed).
    ///
    /// # Errors
    /// It cannot be opened, or is not a directory.
    pub fn open_user(path: &Path) -> io::Result<Dir> {
        let path = if path.as_os_str().is_empty() {
            Path::new(".")
        } else {
            path
        };
        let fd = rustix::fs::openat(
            CWD,
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io_at)?;
        Ok(Dir(Arc::new(fd)))
    }

    /// What `name` is here, without following a link.
    ///
    /// # Errors
    /// The stat fails other than for a missing name.
    pub fn existing(&self, name: &OsStr) -> io::Result<Existing> {
        match rustix::fs::statat(&*self.0, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(classify(&st)),
            Err(rustix::io::Errno::NOENT) => Ok(Existing::Nothing),
            Err(e) => Err(io_at(e)),
        }
    }

    /// Whether this process may write to the file `name` (as `access(2)` says, by its
    /// effective ids): scp opens the file it replaces for writing, and so fails on one it
    /// may not write, where a rename would replace it all the same.
    pub fn writable(&self, name: &OsStr) -> bool {
        use rustix::fs::Access;
        rustix::fs::accessat(&*self.0, name, Access::WRITE_OK, AtFlags::EACCESS).is_ok()
    }

    /// The directory `name` in this one, made (with mode 0700 until its own is set) if
    /// missing; `true` when it was made. A link or anything else in the way is refused.
    ///
    /// # Errors
    /// Why it cannot be entered, for the user.
    pub fn enter(&self, name: &OsStr) -> Result<(Dir, bool), String> {
        let made = match self.existing(name).map_err(|e| e.to_string())? {
            Existing::Dir => false,
            Existing::Nothing => {
                rustix::fs::mkdirat(&*self.0, name, Mode::from_raw_mode(0o700))
                    .map_err(|e| format!("cannot make the directory: {}", io_at(e)))?;
                true
            }
            Existing::Link => {
                return Err("a symbolic link is in the way; not writing through it".into())
            }
            _ => return Err("exists and is not a directory".into()),
        };
        let fd = rustix::fs::openat(
            &*self.0,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR => {
                "a symbolic link is in the way; not writing through it".to_string()
            }
            e => format!("cannot open the directory: {}", io_at(e)),
        })?;
        Ok((Dir(Arc::new(fd)), made))
    }

    /// Opens `name` here to write, not following a link: with `fresh`, only if it does
    /// not exist yet; otherwise an existing regular file is opened as it is.
    ///
    /// # Errors
    /// The open's error (`EEXIST`, `ELOOP` for a link).
    pub fn open_file(&self, name: &OsStr, fresh: bool) -> io::Result<File> {
        let mut flags = OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        if fresh {
            flags |= OFlags::EXCL;
        }
        let fd =
            rustix::fs::openat(&*self.0, name, flags, Mode::from_raw_mode(0o600)).map_err(io_at)?;
        let file = File::from(fd);
        // A fresh open (`O_CREAT | O_EXCL | O_NOFOLLOW`) made a new regular file; only one
        // that may have been there before needs looking at.
        if !fresh && !file.metadata()?.is_file() {
            return Err(io::Error::other("not a regular file"));
        }
        Ok(file)
    }

    /// The character device `name` (such as /dev/null), opened to be written in place.
    ///
    /// # Errors
    /// It cannot be opened for writing, or is no longer a character device.
    pub fn open_device(&self, name: &OsStr) -> io::Result<File> {
        let flags = OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let file =
            File::from(rustix::fs::openat(&*self.0, name, flags, Mode::empty()).map_err(io_at)?);
        use std::os::unix::fs::FileTypeExt;
        if !file.metadata()?.file_type().is_char_device() {
            return Err(io::Error::other("not a character device"));
        }
        Ok(file)
    }

    /// A new file in this directory with no name yet (`O_TMPFILE`): nobody else can open
    /// it, and it vanishes with its descriptor unless [`link_unnamed`](Self::link_unnamed)
    /// names it. `Ok(None)` where the file system cannot make one.
    ///
    /// # Errors
    /// The kernel refused it for another reason (permission, space).
    pub fn open_unnamed(&self) -> io::Result<Option<File>> {
        use rustix::io::Errno;
        let flags = OFlags::RDWR | OFlags::TMPFILE | OFlags::CLOEXEC;
        match rustix::fs::openat(&*self.0, ".", flags, Mode::from_raw_mode(0o600)) {
            Ok(fd) => Ok(Some(File::from(fd))),
            // Not every file system has O_TMPFILE; older kernels take it for O_DIRECTORY.
            Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL | Errno::NOSYS) => Ok(None),
            Err(e) => Err(io_at(e)),
        }
    }

    /// Names here a file made by [`open_unnamed`](Self::open_unnamed): it appears whole,
    /// in one step, and only where nothing is (an `AlreadyExists` error otherwise; never
    /// through a link). Linked through `/proc/self/fd`, as open(2) describes, which needs
    /// no privilege.
    ///
    /// # Errors
    /// The name is taken, or /proc is not mounted.
    pub fn link_unnamed(&self, file: &File, name: &OsStr) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let by_fd = format!("/proc/self/fd/{}", file.as_raw_fd());
        rustix::fs::linkat(CWD, by_fd.as_str(), &*self.0, name, AtFlags::SYMLINK_FOLLOW)
            .map_err(io_at)
    }

    /// Renames `from` to `to` in this directory; replaces a file (or link) at `to`, never
    /// writing through a link.
    ///
    /// # Errors
    /// The rename's error.
    pub fn rename(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
        rustix::fs::renameat(&*self.0, from, &*self.0, to).map_err(io_at)
    }

    /// Removes the file `name`, as cleaning up: a missing one is no error, and one that
    /// cannot be removed is left (the transfer's own error, if any, is what is said).
    pub fn remove(&self, name: &OsStr) {
        let _left = rustix::fs::unlinkat(&*self.0, name, AtFlags::empty());
    }

    /// Makes a symbolic link `name` to `target` here.
    ///
    /// # Errors
    /// The call's error.
    pub fn symlink(&self, target: &OsStr, name: &OsStr) -> io::Result<()> {
        rustix::fs::symlinkat(target, &*self.0, name).map_err(io_at)
    }

    /// Sets the mode and, with `times`, access and modification times of this directory.
    ///
    /// # Errors
    /// The call's error.
    pub fn set_meta(&self, mode: Option<u32>, times: Option<(i64, i64)>) -> io::Result<()> {
        set_meta(&*self.0, mode, times)
    }

    /// Sets the times of the link `name` itself (not what it points to), where the file
    /// system keeps times for links: where it does not, the link keeps the time it was made.
    pub fn set_link_times(&self, name: &OsStr, atime: i64, mtime: i64) {
        let _not_kept = rustix::fs::utimensat(
            &*self.0,
            name,
            &timestamps(atime, mtime),
            AtFlags::SYMLINK_NOFOLLOW,
        );
    }
}

fn timestamps(atime: i64, mtime: i64) -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: atime,
            tv_nsec: 0,
        },
        last_modification: Timespec {
            tv_sec: mtime,
            tv_nsec: 0,
        },
    }
}

/// Sets the mode (permission bits) and times of the open file or directory `fd`.
///
/// # Errors
/// The call's error.
pub fn set_meta(fd: impl AsFd, mode: Option<u32>, times: Option<(i64, i64)>) -> io::Result<()> {
    if let Some(mode) = mode {
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode & 0o7777)).map_err(io_at)?;
    }
    if let Some((atime, mtime)) = times {
        rustix::fs::futimens(&fd, &timestamps(atime, mtime)).map_err(io_at)?;
    }
    Ok(())
}

/// Gives the open file `fd` the owner and group of the file it replaces, as far as this
/// process may: all of it as root, the group where the user is in it, else nothing (the
/// file is then this user's, as a file rsync replaces).
pub fn keep_owner(fd: impl AsFd, owner: Owner) {
    use rustix::fs::{Gid, Uid};
    let (uid, gid) = (Uid::from_raw(owner.uid), Gid::from_raw(owner.gid));
    if rustix::fs::fchown(&fd, Some(uid), Some(gid)).is_err() {
        let _not_a_member = rustix::fs::fchown(&fd, None, Some(gid));
    }
}

fn classify(st: &Stat) -> Existing {
    match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => Existing::File {
            size: st.st_size as u64,
            mtime: st.st_mtime,
            owner: Owner {
                uid: st.st_uid,
                gid: st.st_gid,
                mode: st.st_mode & 0o7777,
            },
        },
        FileType::Directory => Existing::Dir,
        FileType::Symlink => Existing::Link,
        FileType::CharacterDevice => Existing::Device,
        _ => Existing::Other,
    }
}

/// The name a file is written under until it is whole: hidden, beside its target. With
/// `partial` always the same one, so the next try finds what this one kept; otherwise
/// unique to this try.
pub fn temp_name(name: &OsStr, partial: bool) -> OsString {
    let bytes = name.as_bytes();
    // Long names would push the temporary one past NAME_MAX: use a digest of the name.
    let base: Vec<u8> = if bytes.len() > 200 {
        let d = ring::digest::digest(&ring::digest::SHA256, bytes);
        d.as_ref()[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
            .into_bytes()
    } else {
        bytes.to_vec()
    };
    let mut t = b".".to_vec();
    t.extend_from_slice(&base);
    if partial {
        t.extend_from_slice(b".rcmd-partial");
    } else {
        t.extend_from_slice(format!(".rcmd-{:x}", unique()).as_bytes());
    }
    OsString::from_vec(t)
}

/// A number that differs between calls and processes.
fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    (u64::from(std::process::id()) << 32)
        ^ n
        ^ u64::from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_leave_their_directory_are_refused() {
        for bad in [&b""[..], b".", b"..", b"/etc/passwd", b"a/../../b", b"a\0b"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        for good in [&b"a b"[..], b"new\nline", b"\xff\xfe", b"..x", b".hidden"] {
            assert!(check_name(good).is_ok(), "{good:?}");
        }
        assert!(check_name(&[b'a'; 256]).is_err());
    }

    #[test]
    fn a_link_in_the_way_of_a_directory_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), tmp.path().join("sub")).unwrap();
        let dir = Dir::open_user(tmp.path()).unwrap();
        let err = dir.enter(OsStr::new("sub")).unwrap_err();
        assert!(err.contains("symbolic link"), "{err}");
        assert!(dir.open_file(OsStr::new("sub"), false).is_err());
        let (_, made) = dir.enter(OsStr::new("new")).unwrap();
        assert!(made && tmp.path().join("new").is_dir());
    }

    #[test]
    fn an_unnamed_file_appears_whole_and_only_where_nothing_is() {
        use std::io::Write;
        let tmp = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let dir = Dir::open_user(tmp.path()).unwrap();
        let Some(mut file) = dir.open_unnamed().unwrap() else {
            println!("this file system has no O_TMPFILE: the named path is used");
            return;
        };
        file.write_all(b"whole").unwrap();
        assert_eq!(
            std::fs::read_dir(tmp.path()).unwrap().count(),
            0,
            "seen unnamed"
        );
        std::fs::write(tmp.path().join("taken"), b"old").unwrap();
        std::os::unix::fs::symlink(outside.path().join("x"), tmp.path().join("link")).unwrap();
        for name in ["taken", "link"] {
            let err = dir.link_unnamed(&file, OsStr::new(name)).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{name}");
        }
        assert_eq!(std::fs::read(tmp.path().join("taken")).unwrap(), b"old");
        assert!(!outside.path().join("x").exists(), "written through a link");
        dir.link_unnamed(&file, OsStr::new("new")).unwrap();
        assert_eq!(std::fs::read(tmp.path().join("new")).unwrap(), b"whole");
    }

    #[test]
    fn temporary_names_stay_within_name_max() {
        let long = OsString::from_vec(vec![b'x'; 255]);
        assert!(temp_name(&long, true).len() <= 255);
        assert_ne!(
            temp_name(OsStr::new("a"), false),
            temp_name(OsStr::new("a"), false)
        );
        assert_eq!(
            temp_name(OsStr::new("a"), true),
            OsStr::new(".a.rcmd-partial")
        );
    }
}
