//! The server's `authorized_keys`: the client keys that are authentication enough, read
//! again whenever the file changes, so a key added (`rcmd copy-id`) or removed takes
//! effect on the next connection without a restart.
//!
//! ```text
//! # who may log in: a client key's fingerprint, then a comment naming it
//! SHA256:Wd6t3I6uFhk0VvZ7kqB2n6ZxJd0c1Hf7Yt3oQnF8p2A alice@laptop
//! ```
//!
//! The file and its directory get sshd's StrictModes checks each time it is read
//! ([`crate::config::check_trust_file`]); a file that fails them, or has a line that is
//! not a fingerprint, authorizes nobody until it is fixed, and the server says why.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::identity::{Fingerprint, IdentityError};

/// The keys a server accepts: its file's, read as it changes, and fixed ones (this user's
/// own client key).
#[derive(Debug)]
pub struct AuthorizedKeys {
    file: Option<PathBuf>,
    fixed: Vec<Fingerprint>,
    read: Mutex<Read>,
}

/// The file as last read: what identifies that version of it, and its keys (or why none).
#[derive(Debug)]
struct Read {
    stamp: Option<Stamp>,
    keys: Result<Vec<Fingerprint>, String>,
}

/// Changes when the file is replaced, written, or has its mode or owner changed.
type Stamp = (u64, u64, i64, i64, i64, i64, u64);

fn stamp(meta: &std::fs::Metadata) -> Stamp {
    (
        meta.dev(),
        meta.ino(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec(),
        meta.size(),
    )
}

impl AuthorizedKeys {
    /// The keys in `file` (if any; it need not exist yet) and `fixed`.
    ///
    /// # Errors
    /// When `file` exists and cannot be trusted or read: said at start, not only later.
    pub fn new(file: Option<PathBuf>, fixed: Vec<Fingerprint>) -> Result<Self, IdentityError> {
        let mut read = Read {
            stamp: None,
            keys: Ok(Vec::new()),
        };
        if let Some(path) = &file {
            if let Some(meta) = metadata(path)? {
                read = Read {
                    stamp: Some(stamp(&meta)),
                    keys: Ok(load(path)?),
                };
            }
        }
        Ok(AuthorizedKeys {
            file,
            fixed,
            read: Mutex::new(read),
        })
    }

    /// The file keys are read from, if any.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Whether `key` is authorized now (the file read again if it changed).
    pub fn contains(&self, key: &Fingerprint) -> bool {
        if self.fixed.contains(key) {
            return true;
        }
        match self.current() {
            Ok(keys) => keys.contains(key),
            Err(why) => {
                tracing::warn!("no key from it is accepted: {why}");
                false
            }
        }
    }

    /// The file's keys as it is now.
    fn current(&self) -> Result<Vec<Fingerprint>, String> {
        let Some(path) = &self.file else {
            return Ok(Vec::new());
        };
        let meta = match metadata(path) {
            Ok(Some(meta)) => meta,
            Ok(None) => return Ok(Vec::new()),
            Err(e) => return Err(e.to_string()),
        };
        let mut read = self.read.lock().unwrap_or_else(|e| e.into_inner());
        let now = stamp(&meta);
        if read.stamp != Some(now) {
            read.keys = load(path).map_err(|e| e.to_string());
            read.stamp = Some(now);
        }
        read.keys.clone()
    }
}

/// The file's metadata, or `None` when there is no file.
fn metadata(path: &Path) -> Result<Option<std::fs::Metadata>, IdentityError> {
    match std::fs::metadata(path) {
        Ok(meta) => Ok(Some(meta)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(IdentityError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The fingerprints in the authorized keys file at `path`, once it passes sshd's checks.
fn load(path: &Path) -> Result<Vec<Fingerprint>, IdentityError> {
    crate::config::check_trust_file(path, "the authorized keys file", false)
        .map_err(IdentityError::Untrusted)?;
    parse(path)
}

/// The fingerprints in an authorized keys file.
///
/// # Errors
/// If the file cannot be read or a line does not start with a fingerprint.
pub fn parse(path: &Path) -> Result<Vec<Fingerprint>, IdentityError> {
    let text = std::fs::read_to_string(path).map_err(|source| IdentityError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let first = line.split_whitespace().next().unwrap_or_default();
        keys.push(first.parse().map_err(|why| IdentityError::Line {
            path: path.to_path_buf(),
            line: i + 1,
            why,
        })?);
    }
    Ok(keys)
}

/// The line `rcmd keygen` prints and `rcmd copy-id` adds: the key's fingerprint and who
/// it is.
pub fn line(key: Fingerprint, comment: &str) -> String {
    format!("{key} {comment}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn authorized_keys_take_a_comment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        let a = Fingerprint::of(b"a");
        std::fs::write(&path, format!("# who may\n{a} alice@laptop\n\n")).unwrap();
        assert_eq!(parse(&path).unwrap(), vec![a]);
        std::fs::write(&path, "alice SHA256:x\n").unwrap();
        assert!(parse(&path).unwrap_err().to_string().contains("line 1"));
    }

    #[test]
    fn a_changed_file_is_read_again_and_a_bad_one_authorizes_nobody() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("authorized_keys");
        let (a, b, own) = (
            Fingerprint::of(b"a"),
            Fingerprint::of(b"b"),
            Fingerprint::of(b"own"),
        );
        let keys = AuthorizedKeys::new(Some(path.clone()), vec![own]).unwrap();
        assert!(!keys.contains(&a), "no file yet");
        assert!(keys.contains(&own));
        std::fs::write(&path, format!("{a} alice\n")).unwrap();
        assert!(keys.contains(&a));
        std::fs::write(&path, format!("{b} bob, a longer line\n")).unwrap();
        assert!(!keys.contains(&a) && keys.contains(&b));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(!keys.contains(&b), "a file others may write");
        assert!(keys.contains(&own));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(keys.contains(&b));
        std::fs::remove_file(&path).unwrap();
        assert!(!keys.contains(&b));
    }
}
