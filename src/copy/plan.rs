//! The sender's plan: what the named sources hold, walked before anything is sent, so the
//! receiver learns the totals first. Sources named by the user are followed when they are
//! links (as scp does); links met inside a directory with `-r` are offered as links (as
//! rsync `-l` does).

use std::ffi::OsStr;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::wire::transfer::{Entry, Flags, Kind, MAX_NAME};

/// One step of the plan, in the order it is sent.
#[derive(Debug)]
pub enum Item {
    /// A regular file, read from `path`; `shown` is its path as the user sees it.
    File {
        path: PathBuf,
        shown: Vec<u8>,
        entry: Entry,
    },
    /// A directory to enter, or a link to make.
    Other { entry: Entry },
    /// Leave the directory entered last.
    Up,
}

/// Everything to send, and what could not be.
#[derive(Debug, Default)]
pub struct Plan {
    pub items: Vec<Item>,
    /// Entries at the top (named sources that can be sent).
    pub top: u64,
    pub files: u64,
    pub bytes: u64,
    /// Paths that cannot be sent, and why.
    pub failures: Vec<(Vec<u8>, String)>,
}

impl Plan {
    /// Walks `sources` as `flags` say.
    pub fn new(sources: &[PathBuf], flags: Flags) -> Plan {
        Plan::new_under(sources, None, flags)
    }

    /// [`new`](Self::new) for sources found under `base` (the server's directory, for a
    /// path the client gave relative to it): each is shown without `base/`, as the user
    /// wrote it, so a failure names the user's path and not where the server keeps it.
    pub fn new_under(sources: &[PathBuf], base: Option<&Path>, flags: Flags) -> Plan {
        let mut plan = Plan::default();
        for source in sources {
            let relative = base.and_then(|b| source.strip_prefix(b).ok());
            let shown = relative
                .filter(|r| !r.as_os_str().is_empty())
                .unwrap_or(source)
                .as_os_str()
                .as_bytes()
                .to_vec();
            let meta = match std::fs::metadata(source) {
                Ok(m) => m,
                Err(e) => {
                    plan.fail(shown, crate::text::io_reason(&e));
                    continue;
                }
            };
            let Some(name) = top_name(source) else {
                plan.fail(shown, "cannot copy a file system root by name".into());
                continue;
            };
            let before = plan.items.len();
            plan.add(source, name.as_bytes(), shown, &meta, flags);
            if plan.items.len() > before {
                plan.top += 1;
            }
        }
        plan
    }

    fn fail(&mut self, shown: Vec<u8>, why: String) {
        self.failures.push((shown, why));
    }

    fn add(&mut self, path: &Path, name: &[u8], shown: Vec<u8>, meta: &Metadata, flags: Flags) {
        if name.len() > MAX_NAME {
            return self.fail(shown, "name longer than 255 bytes".into());
        }
        let ft = meta.file_type();
        if ft.is_file() {
            self.files += 1;
            self.bytes += meta.len();
            let entry = entry(Kind::File, name, meta, Bytes::new());
            self.items.push(Item::File {
                path: path.to_path_buf(),
                shown,
                entry,
            });
        } else if ft.is_symlink() {
            match std::fs::read_link(path) {
                Ok(target) => {
                    let target = Bytes::copy_from_slice(target.as_os_str().as_bytes());
                    let entry = entry(Kind::Link, name, meta, target);
                    self.items.push(Item::Other { entry });
                }
                Err(e) => self.fail(shown, crate::text::io_reason(&e)),
            }
        } else if ft.is_dir() {
            if !flags.recursive {
                return self.fail(shown, "a directory (use -r)".into());
            }
            let mut children = match std::fs::read_dir(path) {
                Ok(rd) => rd.filter_map(Result::ok).collect::<Vec<_>>(),
                Err(e) => return self.fail(shown, crate::text::io_reason(&e)),
            };
            children.sort_by_key(|c| c.file_name());
            let entry = entry(Kind::Dir, name, meta, Bytes::new());
            self.items.push(Item::Other { entry });
            for child in children {
                let cname = child.file_name();
                let cshown = super::join(&shown, cname.as_bytes());
                match child.path().symlink_metadata() {
                    Ok(m) => self.add(&child.path(), cname.as_bytes(), cshown, &m, flags),
                    Err(e) => self.fail(cshown, crate::text::io_reason(&e)),
                }
            }
            self.items.push(Item::Up);
        } else {
            self.fail(shown, "not a regular file".into());
        }
    }
}

fn entry(kind: Kind, name: &[u8], meta: &Metadata, target: Bytes) -> Entry {
    Entry {
        kind,
        mode: meta.mode(),
        mtime: meta.mtime(),
        atime: meta.atime(),
        size: if kind == Kind::File { meta.len() } else { 0 },
        name: Bytes::copy_from_slice(name),
        target,
    }
}

/// The name a named source is offered under: its last component (`dir/.` and `dir/..`
/// resolved first), `None` for `/`.
fn top_name(source: &Path) -> Option<std::ffi::OsString> {
    let last = source.components().next_back()?;
    match last {
        std::path::Component::Normal(n) => Some(n.to_os_string()),
        _ => std::fs::canonicalize(source)
            .ok()?
            .file_name()
            .map(OsStr::to_os_string),
    }
}

/// The names a download of `sources` may bring at its top level, as [`top_name`] names
/// what the sending side offers: each source's last component (a glob where it is one).
/// `None` when any source ends in `.`, `..` or `/`, whose names only the sender knows.
///
/// A receiver checks every top-level name against these, as scp has since OpenSSH 8.0
/// (CVE-2019-6111): a hostile server must not choose what lands in the user's directory,
/// `.bashrc` for `a.txt`. Inside a directory copied with `-r` the names are the sender's.
pub fn asked_names(sources: &[impl AsRef<[u8]>]) -> Option<Vec<Vec<u8>>> {
    sources
        .iter()
        .map(|s| {
            match Path::new(OsStr::from_bytes(s.as_ref()))
                .components()
                .next_back()
            {
                Some(std::path::Component::Normal(n)) => Some(n.as_bytes().to_vec()),
                _ => None,
            }
        })
        .collect()
}

/// Whether `name` is one of `asked` ([`asked_names`]): the same bytes, or a match of it
/// as a glob, as the sending side's glob(3) matches (a leading dot only by a dot).
pub fn was_asked(asked: &[Vec<u8>], name: &[u8]) -> bool {
    asked
        .iter()
        .any(|pattern| pattern == name || fnmatch(pattern, name))
}

fn fnmatch(pattern: &[u8], name: &[u8]) -> bool {
    let (Ok(p), Ok(n)) = (
        std::ffi::CString::new(pattern),
        std::ffi::CString::new(name),
    ) else {
        return false;
    };
    // SAFETY: fnmatch only reads the two NUL-terminated strings, which we own.
    unsafe { libc::fnmatch(p.as_ptr(), n.as_ptr(), libc::FNM_PERIOD) == 0 }
}

/// The paths `pattern` names on this side: its glob matches (as a shell expands them,
/// `*`, `?`, `[...]`), or the pattern itself when nothing matches, so a missing file is
/// reported as missing. A relative pattern is taken from `base`.
pub fn expand(pattern: &[u8], base: Option<&Path>) -> Vec<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    let mut full = Vec::new();
    if let Some(base) = base.filter(|_| !pattern.starts_with(b"/")) {
        for &b in base.as_os_str().as_bytes() {
            if b"*?[\\".contains(&b) {
                full.push(b'\\');
            }
            full.push(b);
        }
        full.push(b'/');
    }
    full.extend_from_slice(pattern);
    let literal = |p: &[u8]| {
        let mut lit = base
            .filter(|_| !p.starts_with(b"/"))
            .map(Path::to_path_buf)
            .unwrap_or_default();
        lit.push(OsStr::from_bytes(p));
        lit
    };
    if !pattern.iter().any(|b| b"*?[".contains(b)) {
        return vec![literal(pattern)];
    }
    let Ok(c) = std::ffi::CString::new(full) else {
        return vec![literal(pattern)];
    };
    let mut found = Vec::new();
    // SAFETY: glob fills the glob_t we own (zeroed, as it expects) from a NUL-terminated
    // pattern; each path it returns is a NUL-terminated string it owns until globfree,
    // copied out before that.
    unsafe {
        let mut g: libc::glob_t = std::mem::zeroed();
        if libc::glob(c.as_ptr(), 0, None, &mut g) == 0 {
            for i in 0..g.gl_pathc {
                let p = std::ffi::CStr::from_ptr(*g.gl_pathv.add(i));
                found.push(PathBuf::from(std::ffi::OsString::from_vec(
                    p.to_bytes().to_vec(),
                )));
            }
        }
        libc::globfree(&mut g);
    }
    if found.is_empty() {
        found.push(literal(pattern));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_download_accepts_only_the_names_it_asked_for() {
        let asked = asked_names(&[&b"logs/app.log"[..], b"/etc/*.conf", b"dir/", b"a[1]"])
            .expect("every source has a last name");
        assert_eq!(asked[0], b"app.log");
        assert_eq!(asked[2], b"dir");
        for name in [&b"app.log"[..], b"x.conf", b"dir", b"a[1]", b"a1"] {
            assert!(was_asked(&asked, name), "{}", String::from_utf8_lossy(name));
        }
        // What a hostile server would send instead; a glob's * does not match a leading
        // dot, as the glob that expanded it on the other side did not.
        for name in [
            &b".bashrc"[..],
            b"app.log.bak",
            b".x.conf",
            b"x.conf/",
            b"dirt",
        ] {
            assert!(
                !was_asked(&asked, name),
                "{}",
                String::from_utf8_lossy(name)
            );
        }
        // Names only the sender can know: any name goes.
        assert!(asked_names(&[&b"logs/app.log"[..], b"."]).is_none());
        assert!(asked_names(&[&b"a/.."[..]]).is_none());
        assert!(asked_names(&[&b"/"[..]]).is_none());
    }

    #[test]
    fn globs_expand_relative_to_the_base_and_misses_stay_literal() {
        let tmp = tempfile::tempdir().unwrap();
        for n in ["a.txt", "b.txt", "c.log"] {
            std::fs::write(tmp.path().join(n), n).unwrap();
        }
        let got = expand(b"*.txt", Some(tmp.path()));
        assert_eq!(
            got,
            vec![tmp.path().join("a.txt"), tmp.path().join("b.txt")]
        );
        assert_eq!(
            expand(b"*.none", Some(tmp.path())),
            vec![tmp.path().join("*.none")]
        );
        assert_eq!(
            expand(b"/x/y", Some(tmp.path())),
            vec![PathBuf::from("/x/y")]
        );
    }

    #[test]
    fn directories_need_r_and_inner_links_stay_links() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("d");
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("f"), "x").unwrap();
        std::os::unix::fs::symlink("f", d.join("l")).unwrap();
        let plan = Plan::new(std::slice::from_ref(&d), Flags::default());
        assert_eq!((plan.top, plan.failures.len()), (0, 1));
        let flags = Flags {
            recursive: true,
            ..Flags::default()
        };
        let plan = Plan::new(&[d], flags);
        assert_eq!((plan.top, plan.files, plan.bytes), (1, 1, 1));
        let kinds: Vec<_> = plan
            .items
            .iter()
            .map(|i| match i {
                Item::File { .. } => 'f',
                Item::Other { entry, .. } if entry.kind == Kind::Link => 'l',
                Item::Other { .. } => 'd',
                Item::Up => 'u',
            })
            .collect();
        assert_eq!(kinds, ['d', 'f', 'l', 'u']);
    }
}
