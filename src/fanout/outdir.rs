//! `--output-dir`: the directory and its `HOST.out`, `HOST.err` and `HOST.status` files,
//! written without following anything another user planted there.
//!
//! The directory may be shared (a sticky, world-writable one, as `/tmp`), so anyone may
//! have put a `HOST.out` there first: a symbolic link to a file only we may write, a hard
//! link to one, a FIFO that blocks whoever opens it. A file is therefore created with
//! `O_EXCL` (which never follows a link), and one that exists is reused only if it is a
//! plain file of ours with no other name; anything else is refused, never followed.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::OFlags;

use crate::config::owned_by_us;

/// A checked output directory.
#[derive(Debug)]
pub struct OutputDir {
    path: PathBuf,
}

impl OutputDir {
    /// Creates `path` (and its parents) if missing, and checks that another user cannot
    /// redirect what is written in it: neither it nor a symbolic link naming it belongs
    /// to someone else (root aside), and if others may write in it, it is sticky.
    ///
    /// # Errors
    /// A message naming the directory and what is wrong with it.
    pub fn open(path: &Path) -> io::Result<OutputDir> {
        let refuse = |why: String| Err(refusal(path, &why));
        std::fs::create_dir_all(path).map_err(|e| refusal(path, &format!("cannot create: {e}")))?;
        let link = std::fs::symlink_metadata(path)?;
        if link.file_type().is_symlink() && !owned_by_us(&link) {
            return refuse(format!(
                "is a symbolic link of another user (uid {}), who could point it anywhere",
                link.uid()
            ));
        }
        let dir = std::fs::metadata(path)?;
        if !dir.is_dir() {
            return refuse("is not a directory".into());
        }
        if !owned_by_us(&dir) && dir.uid() != 0 {
            return refuse(format!(
                "belongs to another user (uid {}), who could replace the files rcmd writes \
                 there; use a directory of your own",
                dir.uid()
            ));
        }
        let mode = dir.permissions().mode();
        if mode & 0o022 != 0 && mode & 0o1000 == 0 {
            return refuse(format!(
                "can be written by other users and is not sticky (mode {:04o}), so they \
                 could replace the files rcmd writes there; use a directory of your own",
                mode & 0o7777
            ));
        }
        Ok(OutputDir {
            path: path.to_path_buf(),
        })
    }

    /// `name` in the directory, empty and open for writing: created new, or an existing
    /// plain file of ours truncated.
    ///
    /// # Errors
    /// When `name` exists as anything else (a symbolic link, another user's file, a hard
    /// link, a FIFO), or the file cannot be created.
    pub fn create(&self, name: &str) -> io::Result<File> {
        let path = self.path.join(name);
        if name.contains('/') || name == "." || name == ".." {
            return Err(refusal(&path, "is not a file name in the directory"));
        }
        let fresh = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(OFlags::NOFOLLOW.bits() as i32)
            .open(&path);
        match fresh {
            Ok(file) => return Ok(file),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(refusal(&path, &format!("cannot create: {e}"))),
        }
        // It exists. O_NOFOLLOW refuses a symbolic link (ELOOP); O_NONBLOCK keeps a FIFO
        // from holding us until someone opens its other end. Nothing is truncated yet.
        let existing = OpenOptions::new()
            .write(true)
            .custom_flags((OFlags::NOFOLLOW | OFlags::NONBLOCK).bits() as i32)
            .open(&path);
        let file = match existing {
            Ok(file) => file,
            // Say what is there rather than what opening it did (ELOOP, ENXIO).
            Err(e) => {
                let why = match std::fs::symlink_metadata(&path) {
                    Ok(m) if m.file_type().is_symlink() => {
                        "exists and is a symbolic link: not followed, nothing written".into()
                    }
                    Ok(m) => match not_ours(&m) {
                        Some(why) => format!("exists and {why}: not overwritten"),
                        None => format!("cannot open: {e}"),
                    },
                    Err(_) => format!("cannot open: {e}"),
                };
                return Err(refusal(&path, &why));
            }
        };
        let meta = file.metadata()?;
        if let Some(why) = not_ours(&meta) {
            return Err(refusal(
                &path,
                &format!("exists and {why}: not overwritten; remove it or use another directory"),
            ));
        }
        file.set_len(0)?;
        Ok(file)
    }

    /// Writes `bytes` as the whole of `name`, as [`create`](Self::create) opens it.
    ///
    /// # Errors
    /// As [`create`](Self::create), and the write's error.
    pub fn write(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.create(name)?.write_all(bytes)
    }
}

/// Why an existing file is not one to overwrite; `None` when it is a plain file of ours
/// with no other name.
fn not_ours(meta: &Metadata) -> Option<String> {
    let kind = meta.file_type();
    if !kind.is_file() {
        let what = if kind.is_fifo() {
            "is a FIFO"
        } else if kind.is_dir() {
            "is a directory"
        } else {
            "is not a plain file"
        };
        return Some(what.into());
    }
    if !owned_by_us(meta) {
        return Some(format!("belongs to another user (uid {})", meta.uid()));
    }
    if meta.nlink() != 1 {
        return Some(format!(
            "has {} names (hard links): writing it would change the others",
            meta.nlink()
        ));
    }
    None
}

fn refusal(path: &Path, why: &str) -> io::Error {
    use std::os::unix::ffi::OsStrExt;
    // The path is the user's, and may hold any byte: shown escaped, as all outside text.
    let shown = crate::printable::printable(path.as_os_str().as_bytes());
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("--output-dir: {shown} {why}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_planted_symlink_is_refused_and_its_target_untouched() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("precious");
        std::fs::write(&target, "keep me").unwrap();
        let dir = OutputDir::open(&tmp.path().join("out")).unwrap();
        std::os::unix::fs::symlink(&target, tmp.path().join("out/h.out")).unwrap();
        let err = dir.create("h.out").unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");
        assert!(err.contains("h.out"), "{err}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
        // A dangling link is not followed into creating its target either.
        std::os::unix::fs::symlink(tmp.path().join("new"), tmp.path().join("out/h.err")).unwrap();
        assert!(dir.create("h.err").is_err());
        assert!(!tmp.path().join("new").exists());
    }

    #[test]
    fn a_hard_link_and_a_fifo_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("precious");
        std::fs::write(&target, "keep me").unwrap();
        let dir = OutputDir::open(&tmp.path().join("out")).unwrap();
        std::fs::hard_link(&target, tmp.path().join("out/h.out")).unwrap();
        let err = dir.create("h.out").unwrap_err().to_string();
        assert!(err.contains("hard links"), "{err}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
        let fifo = tmp.path().join("out/h.err");
        let (fifo_type, mode) = (rustix::fs::FileType::Fifo, rustix::fs::Mode::from(0o600));
        rustix::fs::mknodat(rustix::fs::CWD, &fifo, fifo_type, mode, 0).unwrap();
        let err = dir.create("h.err").unwrap_err().to_string();
        assert!(err.contains("FIFO"), "{err}");
    }

    #[test]
    fn an_earlier_run_of_ours_is_overwritten() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = OutputDir::open(tmp.path()).unwrap();
        dir.write("h.status", b"a longer first run\n").unwrap();
        dir.write("h.status", b"0\n").unwrap();
        assert_eq!(std::fs::read(tmp.path().join("h.status")).unwrap(), b"0\n");
        assert!(dir.create("../escape").is_err());
    }

    #[test]
    fn a_directory_others_may_write_must_be_sticky() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        std::fs::create_dir(&out).unwrap();
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = OutputDir::open(&out).unwrap_err().to_string();
        assert!(err.contains("not sticky"), "{err}");
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o1777)).unwrap();
        OutputDir::open(&out).unwrap();
    }
}
