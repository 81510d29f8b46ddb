//! The open-file limit. Many systems start processes with a soft limit of 1,024 descriptors
//! and a far higher hard limit. The server holds a socket for every connection and
//! several pipes for every running command, so a burst of a few hundred commands would
//! fail with "Too many open files" long before `--max-conns`. So the server raises its
//! own soft limit to the hard one when it starts, as Go's runtime does for every program,
//! and gives its commands the limit it started with: a program that still uses select(2)
//! breaks on a descriptor above 1,023, and a command should see the limit it would have
//! had over ssh.

use std::io;

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Raises this process's soft limit on open files to its hard limit. Returns the soft
/// limit it had, which commands should get back, if it changed it.
///
/// # Errors
/// The kernel refused the new limit.
pub fn raise() -> io::Result<Option<u64>> {
    let limit = getrlimit(Resource::Nofile);
    let Some(soft) = limit.current else {
        return Ok(None); // unlimited already
    };
    // An unlimited hard limit cannot be the soft one (the kernel caps descriptors at
    // fs.nr_open and refuses more): take that cap instead.
    let ceiling = match limit.maximum {
        Some(hard) => hard,
        None => nr_open().unwrap_or(soft),
    };
    if ceiling <= soft {
        return Ok(None);
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(ceiling),
            maximum: limit.maximum,
        },
    )?;
    Ok(Some(soft))
}

/// Sets this process's soft limit on open files to `soft`, the hard limit unchanged. A
/// single system call, so it may run between fork and exec.
///
/// # Errors
/// The kernel refused it (`soft` above the hard limit).
pub fn lower_to(soft: u64) -> io::Result<()> {
    let maximum = getrlimit(Resource::Nofile).maximum;
    Ok(setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(soft),
            maximum,
        },
    )?)
}

/// Descriptors the server holds for one connection running a command: its socket, the
/// command's stdin, stdout, stderr, control and status pipes, the splice pipe and the
/// supervisor's pidfd. (Measured: 973 open for 120 commands at once over TLS.)
const PER_COMMAND: u64 = 8;
/// Held whatever the load: the listener, the runtime's, the helper's socket, the log.
const BASE: u64 = 64;

/// How many commands can run at once within this process's current soft limit on open
/// files; `None` if it is unlimited.
pub fn room_for_commands() -> Option<u64> {
    let soft = getrlimit(Resource::Nofile).current?;
    Some(soft.saturating_sub(BASE) / PER_COMMAND)
}

/// The kernel's cap on any process's descriptors.
fn nr_open() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()?
        .trim()
        .parse()
        .ok()
}
