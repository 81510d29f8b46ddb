//! The client's `known_hosts`: which fingerprint each server (`host:port`) showed before.
//!
//! ```text
//! # comment
//! 127.0.0.1:9000 SHA256:Wd6t3I6uFhk0VvZ7kqB2n6ZxJd0c1Hf7Yt3oQnF8p2A
//! ```
//!
//! A line that cannot be read is an error naming it, never skipped: skipping would turn a
//! typo into a first connection, and a first connection can be accepted without a check.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::identity::{Fingerprint, IdentityError};

/// One server's entry, with the line it is on (from 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub line: usize,
    pub host: String,
    pub fingerprint: Fingerprint,
}

/// A `known_hosts` file as read.
#[derive(Debug, Clone, Default)]
pub struct KnownHosts {
    pub path: PathBuf,
    entries: Vec<Entry>,
}

impl KnownHosts {
    /// The file at `path`; a file that does not exist yet has no entries.
    ///
    /// # Errors
    /// If it cannot be read or a line is not `HOST:PORT SHA256:...`.
    pub fn load(path: &Path) -> Result<KnownHosts, IdentityError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                return Err(IdentityError(format!(
                    "cannot read {}: {e}",
                    path.display()
                )))
            }
        };
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let (Some(host), Some(fp)) = (words.next(), words.next()) else {
                return Err(IdentityError(format!(
                    "{} line {line_no}: expected HOST:PORT SHA256:...",
                    path.display()
                )));
            };
            let fingerprint = fp
                .parse()
                .map_err(|e| IdentityError(format!("{} line {line_no}: {e}", path.display())))?;
            entries.push(Entry {
                line: line_no,
                host: host.to_string(),
                fingerprint,
            });
        }
        Ok(KnownHosts {
            path: path.to_path_buf(),
            entries,
        })
    }

    /// Every entry, in file order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The entry for `host` (as `host:port`), if any.
    pub fn get(&self, host: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.host == host)
    }

    /// Adds `host` to the file (created 0600 if need be).
    ///
    /// # Errors
    /// If the file cannot be written.
    pub fn add(&mut self, host: &str, fingerprint: Fingerprint) -> Result<(), IdentityError> {
        let cannot =
            |e: std::io::Error| IdentityError(format!("cannot write {}: {e}", self.path.display()));
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&self.path)
            .map_err(cannot)?;
        file.write_all(format!("{host} {fingerprint}\n").as_bytes())
            .map_err(cannot)?;
        let line = std::fs::read_to_string(&self.path)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        self.entries.push(Entry {
            line,
            host: host.to_string(),
            fingerprint,
        });
        Ok(())
    }
}

/// The server's `--authorized-keys` file: a client fingerprint per line, then an optional
/// comment naming whose key it is.
///
/// ```text
/// SHA256:Wd6t3I6uFhk0VvZ7kqB2n6ZxJd0c1Hf7Yt3oQnF8p2A alice@laptop
/// ```
///
/// # Errors
/// If the file cannot be read or a line does not start with a fingerprint.
pub fn authorized_keys(path: &Path) -> Result<Vec<Fingerprint>, IdentityError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| IdentityError(format!("cannot read {}: {e}", path.display())))?;
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let first = line.split_whitespace().next().unwrap_or_default();
        keys.push(
            first
                .parse()
                .map_err(|e| IdentityError(format!("{} line {}: {e}", path.display(), i + 1)))?,
        );
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_found_added_and_bad_lines_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        let mut known = KnownHosts::load(&path).unwrap();
        assert!(known.get("h:1").is_none());
        let a = Fingerprint::of(b"a");
        let b = Fingerprint::of(b"b");
        known.add("h:1", a).unwrap();
        known.add("h:2", b).unwrap();
        let known = KnownHosts::load(&path).unwrap();
        assert_eq!(known.get("h:1").unwrap().fingerprint, a);
        assert_eq!(known.get("h:2").unwrap().line, 2);
        std::fs::write(&path, format!("# mine\nh:1 {a}\nh:2 nonsense\n")).unwrap();
        let err = KnownHosts::load(&path).unwrap_err().to_string();
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn authorized_keys_take_a_comment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        let a = Fingerprint::of(b"a");
        std::fs::write(&path, format!("# who may\n{a} alice@laptop\n\n")).unwrap();
        assert_eq!(authorized_keys(&path).unwrap(), vec![a]);
        std::fs::write(&path, "alice SHA256:x\n").unwrap();
        assert!(authorized_keys(&path).unwrap_err().0.contains("line 1"));
    }
}
