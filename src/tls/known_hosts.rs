//! The client's `known_hosts`: which fingerprint each server (`host:port`) showed before.
//!
//! ```text
//! # comment
//! 127.0.0.1:9000 SHA256:Wd6t3I6uFhk0VvZ7kqB2n6ZxJd0c1Hf7Yt3oQnF8p2A
//! ```
//!
//! A line that cannot be read is an error naming it, never skipped: skipping would turn a
//! typo into a first connection, and a first connection can be accepted without a check.
//! So is a host without its `:PORT`: it could never match, since entries are always
//! written with one. The file and its directory must pass sshd's StrictModes checks
//! ([`crate::config::check_trust_file`]).

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
        if path.exists() {
            crate::config::check_trust_file(path, "known_hosts", false)
                .map_err(IdentityError::Untrusted)?;
        }
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(IdentityError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            let bad = |why: String| IdentityError::Line {
                path: path.to_path_buf(),
                line: line_no,
                why,
            };
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let (Some(host), Some(fp)) = (words.next(), words.next()) else {
                return Err(bad("expected HOST:PORT SHA256:...".into()));
            };
            if !has_port(host) {
                return Err(bad(format!(
                    "{host:?} has no :PORT; entries are HOST:PORT (the port 9000 unless \
                     another was used), as rcmd writes them"
                )));
            }
            let fingerprint = fp.parse().map_err(bad)?;
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

    /// Removes every line for `host` (`host:port`), keeping the rest of the file as it is
    /// (comments included); returns how many were removed. The file is replaced whole.
    ///
    /// # Errors
    /// If the file cannot be read or written.
    pub fn remove(&mut self, host: &str) -> Result<usize, IdentityError> {
        let cannot = |source| IdentityError::Write {
            path: self.path.clone(),
            source,
        };
        let text = std::fs::read_to_string(&self.path).map_err(cannot)?;
        let mut kept = String::new();
        let mut removed = 0;
        for line in text.lines() {
            if line.split_whitespace().next() == Some(host) {
                removed += 1;
            } else {
                kept.push_str(line);
                kept.push('\n');
            }
        }
        if removed > 0 {
            let dir = self.path.parent().unwrap_or(Path::new("."));
            let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(cannot)?;
            tmp.write_all(kept.as_bytes()).map_err(cannot)?;
            tmp.persist(&self.path).map_err(|e| cannot(e.error))?;
            *self = KnownHosts::load(&self.path)?;
        }
        Ok(removed)
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
        let cannot = |source| IdentityError::Write {
            path: self.path.clone(),
            source,
        };
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

/// Whether `host` ends in `:PORT` (a whole number from 1 to 65535) after a name, an IPv4
/// address or a bracketed IPv6 one.
fn has_port(host: &str) -> bool {
    let Some((name, port)) = host.rsplit_once(':') else {
        return false;
    };
    let name_ok = if let Some(v6) = name.strip_prefix('[') {
        v6.ends_with(']')
    } else {
        !name.is_empty() && !name.contains(':')
    };
    name_ok && port.parse::<u16>().is_ok_and(|p| p > 0) && port.bytes().all(|b| b.is_ascii_digit())
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
    fn a_host_without_its_port_is_an_error_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        let a = Fingerprint::of(b"a");
        for host in ["127.0.0.1", "[::1]", "host:", "host:x"] {
            std::fs::write(&path, format!("# mine\n{host} {a}\n")).unwrap();
            let err = KnownHosts::load(&path).unwrap_err().to_string();
            assert!(
                err.contains("line 2") && err.contains("no :PORT"),
                "{host}: {err}"
            );
        }
        std::fs::write(&path, format!("[::1]:9000 {a}\nh:1 {a}\n")).unwrap();
        assert!(KnownHosts::load(&path).is_ok());
    }

    #[test]
    fn remove_drops_only_that_host() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        let a = Fingerprint::of(b"a");
        std::fs::write(&path, format!("# mine\nh:1 {a}\nh:2 {a}\nh:1 {a}\n")).unwrap();
        let mut known = KnownHosts::load(&path).unwrap();
        assert_eq!(known.remove("h:1").unwrap(), 2);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("# mine\nh:2 {a}\n")
        );
        assert!(known.get("h:1").is_none() && known.get("h:2").is_some());
        assert_eq!(known.remove("h:9").unwrap(), 0);
    }
}
