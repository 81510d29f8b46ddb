//! A process's tree of descendants: found through each process's `children` list in
//! `/proc`, and killed through a pidfd for each member, so a pid that was reused between
//! finding and signalling is never hit.
//!
//! Walking `children` lists, instead of scanning all of `/proc` for parents, costs a few
//! reads per member however busy the machine is, and sees a process that appeared after a
//! scan began. A supervisor, a subreaper whose tree always comes back to it, also learns
//! from `waitid` whether it has any child left, which no snapshot of `/proc` can tell it.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::process::{self, Pid, PidfdFlags, Signal};

/// How long between rounds of killing, while a tree is still there.
const ROUND: Duration = Duration::from_millis(1);

/// A live member of a tree, with a pidfd that names it and no other process.
pub(crate) struct Member {
    pidfd: OwnedFd,
    group: Pid,
}

impl Member {
    /// SIGKILLs it. An error only means it has already ended.
    fn kill(&self) {
        let _ended = pidfd_kill(self.pidfd.as_fd());
    }
}

/// SIGKILLs every live descendant of `root` (not `root` itself) and the process groups
/// in `groups`, round after round, until none is left or `deadline` has passed.
/// `reap` is called every round, right after the kill: it reaps what it can (only
/// `root` can) and says whether `root` may still have a child. Each descendant's process
/// group is killed too: a group dies in one go, forks in flight included. Returns
/// whether the tree is gone; processes we may not signal (one that became another user,
/// say) survive until the deadline and are then left alone.
pub(crate) fn kill_tree(
    root: Pid,
    groups: &[Pid],
    deadline: Duration,
    reap: &mut dyn FnMut() -> bool,
) -> bool {
    let own_group = process::getpgrp();
    let deadline = Instant::now() + deadline;
    // Groups known to hold the tree, killed every round until they are empty: an empty
    // group's id is then no longer used, so it is not signalled again.
    let mut groups: Vec<Pid> = groups.iter().copied().filter(|g| !g.is_init()).collect();
    loop {
        groups.retain(|g| *g != own_group && process::kill_process_group(*g, Signal::KILL).is_ok());
        let living = descendants(root);
        for member in &living {
            member.kill();
            if member.group != own_group && !member.group.is_init() {
                // A group id stays taken while any member lives, and this one did a
                // moment ago; an error means the group is empty now.
                let _empty = process::kill_process_group(member.group, Signal::KILL);
            }
        }
        // Reaping every round keeps a process that forks and exits without end from
        // filling the process table with the zombies it leaves us.
        let more = reap();
        if living.is_empty() && groups.is_empty() && !more {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(ROUND);
    }
}

/// The live direct children of `parent`.
pub(crate) fn live_children(parent: Pid) -> Vec<(Pid, Member)> {
    children_of(parent)
        .into_iter()
        .filter_map(|pid| member(pid, &[parent]).map(|m| (pid, m)))
        .collect()
}

/// SIGKILLs `parent`'s live children that `keep` does not name.
pub(crate) fn kill_children_except(parent: Pid, keep: &dyn Fn(Pid) -> bool) -> usize {
    let mut killed = 0;
    for (pid, m) in live_children(parent) {
        if !keep(pid) {
            m.kill();
            killed += 1;
        }
    }
    killed
}

/// Every live descendant of `root`, found breadth first.
fn descendants(root: Pid) -> Vec<Member> {
    let mut tree = vec![root];
    let mut found = Vec::new();
    let mut i = 0;
    while i < tree.len() {
        for pid in children_of(tree[i]) {
            if tree.contains(&pid) {
                continue;
            }
            if let Some(m) = member(pid, &tree) {
                tree.push(pid);
                found.push(m);
            }
        }
        i += 1;
    }
    found
}

/// A pidfd for `pid` if it is alive and its parent is in `tree`. The pidfd is opened
/// first and the parent checked after: if `/proc` then still shows a live process with a
/// parent in the tree, the pidfd names that process, or one that has ended since (and
/// signalling it does nothing).
fn member(pid: Pid, tree: &[Pid]) -> Option<Member> {
    let pidfd = pidfd_open(pid).ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.as_raw_nonzero())).ok()?;
    let st = parse_stat(&stat)?;
    let parent = Pid::from_raw(st.ppid)?;
    (st.state != 'Z' && tree.contains(&parent)).then(|| Member {
        pidfd,
        group: Pid::from_raw(st.pgrp).unwrap_or(parent),
    })
}

/// The children of `pid`, from the `children` list of each of its threads (empty if it
/// has ended).
fn children_of(pid: Pid) -> Vec<Pid> {
    let mut kids = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", pid.as_raw_nonzero())) else {
        return kids;
    };
    for task in tasks.flatten() {
        let Ok(list) = std::fs::read_to_string(task.path().join("children")) else {
            continue;
        };
        kids.extend(
            list.split_ascii_whitespace()
                .filter_map(|s| s.parse().ok())
                .filter_map(Pid::from_raw),
        );
    }
    kids
}

/// A pidfd for `pid` (Linux 5.3 and later), which names that process and no other.
///
/// # Errors
/// It has ended, or we may not.
pub(crate) fn pidfd_open(pid: Pid) -> io::Result<OwnedFd> {
    Ok(process::pidfd_open(pid, PidfdFlags::empty())?)
}

/// SIGKILLs the process behind `pidfd`. `Err`: it has ended (or we may not).
pub(crate) fn pidfd_kill(pidfd: BorrowedFd<'_>) -> io::Result<()> {
    Ok(process::pidfd_send_signal(pidfd, Signal::KILL)?)
}

/// Whether the process behind `pidfd` has ended: a pidfd turns readable when it exits.
pub(crate) fn has_ended(pidfd: BorrowedFd<'_>) -> bool {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    poll(&mut fds, Some(&now)).map_or(true, |n| n > 0)
}

/// What `/proc/PID/stat` says of a process that matters here.
#[derive(Debug, PartialEq, Eq)]
struct Stat {
    state: char,
    ppid: i32,
    pgrp: i32,
}

/// The state, parent and process group from a `/proc/PID/stat` line. The command name in
/// parentheses may itself contain spaces and parentheses, so parsing starts after the
/// last `)`.
fn parse_stat(stat: &str) -> Option<Stat> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some(Stat { state, ppid, pgrp })
}

/// Whether this process has any child, alive or not yet reaped.
pub(crate) fn has_children() -> bool {
    use rustix::process::{WaitId, WaitIdOptions};
    // NOWAIT only looks; ECHILD is the one error, and means none.
    process::waitid(
        WaitId::All,
        WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT,
    )
    .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_awkward_names_parse() {
        let st = |state, ppid, pgrp| Some(Stat { state, ppid, pgrp });
        assert_eq!(parse_stat("42 (sleep) S 7 42 42 0"), st('S', 7, 42));
        assert_eq!(parse_stat("43 (a) b) (c) Z 1 43 9"), st('Z', 1, 43));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn a_tree_is_found_through_children_lists_and_killed() {
        let me = process::getpid();
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 60 & sleep 60 & wait"])
            .spawn()
            .unwrap();
        let pid = Pid::from_raw(child.id() as i32).unwrap();
        // Its two sleeps are running once it has two children.
        while children_of(pid).len() < 2 {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(live_children(me).iter().any(|(p, _)| *p == pid));
        assert!(kill_tree(pid, &[], Duration::from_secs(10), &mut || false));
        assert!(descendants(pid).is_empty());
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
