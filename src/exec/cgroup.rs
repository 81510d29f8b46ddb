//! Containment in a cgroup, where the server can have one: each command runs in a cgroup v2
//! group of its own, and `cgroup.kill` (Linux 5.14+) ends every process in it at once,
//! whatever the command did to its supervisor or the helper.
//!
//! The server makes one directory for itself under its own cgroup (found from
//! `/proc/self/mountinfo` and `/proc/self/cgroup`: hybrid systems mount the v2 hierarchy at
//! `/sys/fs/cgroup/unified`), and one below that for each command. The supervisor starts
//! the command born in that group and stays out of it itself, so it outlives a kill of the
//! group it watches (see [`super::start`]). Where no v2 hierarchy is writable (not root,
//! and no delegated subtree), the server keeps the supervisor alone.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a group's removal waits for its killed processes to leave it.
const EMPTY_DEADLINE: Duration = Duration::from_secs(2);

/// The directory a server makes its commands' groups in; removed when the last handle
/// to it goes.
#[derive(Debug, Clone)]
pub struct Cgroups(Arc<Base>);

#[derive(Debug)]
struct Base {
    dir: PathBuf,
    next: AtomicU64,
}

impl Cgroups {
    /// Makes this server's directory under its own cgroup.
    ///
    /// # Errors
    /// Why cgroup containment cannot be had here: no cgroup v2 hierarchy, not writable,
    /// or no `cgroup.kill` (a kernel before 5.14).
    pub fn create() -> io::Result<Cgroups> {
        static SERVERS: AtomicU64 = AtomicU64::new(0);
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
        let mount = cgroup2_mount(&mountinfo).ok_or_else(|| not_found("no cgroup2 mount"))?;
        let own = std::fs::read_to_string("/proc/self/cgroup")?;
        let own = own_cgroup(&own).ok_or_else(|| not_found("no cgroup v2 entry"))?;
        let parent = mount.join(own.trim_start_matches('/'));
        remove_stale(&parent);
        let n = SERVERS.fetch_add(1, Ordering::Relaxed);
        let dir = parent.join(format!("rcmd-{}-{n}", std::process::id()));
        std::fs::create_dir(&dir)?;
        if !dir.join("cgroup.kill").exists() {
            // Left behind, the empty directory is taken by `remove_stale` at a later start.
            let _stale = std::fs::remove_dir(&dir);
            return Err(not_found("no cgroup.kill (Linux 5.14 or later needed)"));
        }
        Ok(Cgroups(Arc::new(Base {
            dir,
            next: AtomicU64::new(0),
        })))
    }

    /// This server's directory.
    pub fn dir(&self) -> &Path {
        &self.0.dir
    }

    /// A new, empty group for one command.
    ///
    /// # Errors
    /// If the group cannot be made.
    pub fn command(&self) -> io::Result<Group> {
        let n = self.0.next.fetch_add(1, Ordering::Relaxed);
        let dir = self.0.dir.join(format!("cmd-{n}"));
        std::fs::create_dir(&dir)?;
        Ok(Group {
            dir,
            _base: self.clone(),
        })
    }
}

impl Drop for Base {
    fn drop(&mut self) {
        // Groups whose removal was still pending: killed and waited for here.
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for e in entries.flatten().filter(|e| e.path().is_dir()) {
                // An error: nothing is left in it to kill, or it is gone already.
                let _gone = kill(&e.path());
                remove_when_empty(&e.path());
            }
        }
        remove_when_empty(&self.dir);
    }
}

/// One command's group; dropping it kills what is left in it and removes it.
#[derive(Debug)]
pub struct Group {
    dir: PathBuf,
    /// The server's directory lives at least as long as its groups.
    _base: Cgroups,
}

impl Group {
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Kills every process in the group.
    ///
    /// # Errors
    /// If `cgroup.kill` cannot be written (the group is gone).
    pub fn kill(&self) -> io::Result<()> {
        kill(&self.dir)
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // The usual case: the supervisor emptied the group before it reported, and it goes
        // at once. Otherwise it is killed, and removed once its processes have left it,
        // off the caller's thread.
        if std::fs::remove_dir(&self.dir).is_ok() {
            return;
        }
        // An error: nothing is left in it to kill, or it is gone already.
        let _gone = kill(&self.dir);
        let dir = std::mem::take(&mut self.dir);
        let base = self._base.clone();
        let remove = move || {
            remove_when_empty(&dir);
            drop(base);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(remove)),
            Err(_) => remove(),
        }
    }
}

/// Removes what servers that were killed (SIGKILL leaves them no time to clean up) left
/// in `parent`: a directory `rcmd-PID-N` whose PID is gone, with its commands' groups,
/// each killed first.
fn remove_stale(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("rcmd-"))
            .and_then(|n| n.split_once('-'))
            .map(|(pid, _)| pid)
        else {
            continue;
        };
        if Path::new("/proc").join(pid).exists() {
            continue;
        }
        if let Ok(groups) = std::fs::read_dir(e.path()) {
            for g in groups.flatten().filter(|g| g.path().is_dir()) {
                if kill(&g.path()).is_ok() {
                    remove_when_empty(&g.path());
                }
            }
        }
        remove_when_empty(&e.path());
    }
}

/// Kills every process in the group at `dir` (writes its `cgroup.kill`).
///
/// # Errors
/// If the group is gone.
pub fn kill(dir: &Path) -> io::Result<()> {
    std::fs::write(dir.join("cgroup.kill"), "1")
}

/// Removes `dir` once its processes have left it (they were killed), or gives up after
/// [`EMPTY_DEADLINE`].
fn remove_when_empty(dir: &Path) {
    let deadline = Instant::now() + EMPTY_DEADLINE;
    loop {
        match std::fs::remove_dir(dir) {
            Err(e)
                if e.raw_os_error() == Some(rustix::io::Errno::BUSY.raw_os_error())
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(1));
            }
            _ => return,
        }
    }
}

/// Moves this process into the group at `dir`.
///
/// # Errors
/// If the group is gone or may not be entered.
pub fn enter(dir: &Path) -> io::Result<()> {
    std::fs::write(dir.join("cgroup.procs"), "0")
}

/// Moves this process back out of the command's group at `dir`, into the server's own
/// cgroup (two levels up: the server's directory is in between).
///
/// # Errors
/// As [`enter`].
pub fn leave(dir: &Path) -> io::Result<()> {
    let home = dir
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| not_found("a command's group has no server above it"))?;
    enter(home)
}

/// Where the cgroup v2 hierarchy is mounted, from `/proc/self/mountinfo`: the fifth field
/// of the first line whose filesystem type (after the ` - `) is `cgroup2`.
fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (fields, rest) = line.split_once(" - ")?;
        if rest.split_ascii_whitespace().next()? != "cgroup2" {
            return None;
        }
        // Spaces in a mount point are written as \040.
        let point = fields
            .split_ascii_whitespace()
            .nth(4)?
            .replace("\\040", " ");
        Some(PathBuf::from(point))
    })
}

/// This process's cgroup in the v2 hierarchy: the `0::PATH` line of `/proc/self/cgroup`.
fn own_cgroup(cgroup: &str) -> Option<&str> {
    cgroup.lines().find_map(|l| l.strip_prefix("0::"))
}

fn not_found(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, why.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_v2_mount_is_found_on_hybrid_and_unified_systems() {
        let hybrid = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
                      39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n\
                      41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_mount(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let unified = "25 20 0:22 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_mount(unified),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        let v1_only: String = hybrid.lines().take(2).collect::<Vec<_>>().join("\n");
        assert_eq!(cgroup2_mount(&v1_only), None);
    }

    #[test]
    fn the_own_cgroup_is_the_v2_line() {
        let lines = "9:name=systemd:/\n4:memory:/a/b\n0::/system.slice/rcmd.service\n";
        assert_eq!(own_cgroup(lines), Some("/system.slice/rcmd.service"));
        assert_eq!(own_cgroup("4:memory:/a\n"), None);
    }
}
