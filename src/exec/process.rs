//! The process handle of a running command: its output pulled as it is ready, its input,
//! signals, its timeout, how it ended, and the kill of everything it started.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use rustix::process::{Pid, RawPid, Signal};
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe as unix_pipe;
use tokio::process::Child;
use tokio::time::Instant;

use super::helper::{self, ConnectionSupervisor};
use super::streams::{Output, Stdin, WindowSize};
use super::{cgroup, supervisor, tree, Event, Piece};
use crate::status::Status;

/// How long a supervisor gets to carry out a kill before the server kills its tree itself.
const SUPERVISOR_GRACE: Duration = Duration::from_secs(1);
/// How long the server keeps killing a tree it took over.
const FORCED_KILL_DEADLINE: Duration = Duration::from_secs(2);

/// How the command's whole tree is signalled and killed.
#[derive(Debug)]
pub(super) enum Control {
    /// The write end of the supervisor's control pipe.
    Supervisor(OwnedFd),
    /// The command's process group, until the leader is reaped.
    Group(Option<i32>),
}

impl Control {
    fn send(&mut self, sig: u8) {
        match self {
            Control::Supervisor(fd) => {
                // The pipe is non-blocking; it could only be full if the supervisor stopped
                // reading, and then it is gone and closing our end will finish the job.
                let _unsent = rustix::io::write(&*fd, &[sig]);
            }
            Control::Group(Some(pgid)) => {
                let sig = if sig == supervisor::KILL {
                    Some(Signal::KILL)
                } else {
                    Signal::from_named_raw(i32::from(sig))
                };
                // The leader is not reaped yet, so the group id cannot have been reused.
                if let (Some(group), Some(sig)) = (Pid::from_raw(*pgid), sig) {
                    // An error means the group has no member left: nothing to deliver to.
                    let _gone = rustix::process::kill_process_group(group, sig);
                }
            }
            Control::Group(None) => {}
        }
    }
}

/// The process the server started for a command, and how it learns its end.
#[derive(Debug)]
pub(super) enum Process {
    /// The command itself, our own child.
    Child(Child),
    /// The command's supervisor: the helper's child, not ours, so it reports the command's
    /// wait status through a pipe, and is signalled through a pidfd.
    Supervised {
        pid: RawPid,
        pidfd: Option<OwnedFd>,
        status: unix_pipe::Receiver,
        /// The supervisor reported the status itself: it is done with the command.
        reported: bool,
    },
}

impl Process {
    fn id(&self) -> Option<u32> {
        match self {
            Process::Child(c) => c.id(),
            Process::Supervised { pid, .. } => u32::try_from(*pid).ok(),
        }
    }

    /// How the command ended.
    async fn wait(&mut self) -> io::Result<std::process::ExitStatus> {
        use std::os::unix::process::ExitStatusExt;
        match self {
            Process::Child(c) => c.wait().await,
            Process::Supervised {
                status,
                pidfd,
                reported,
                ..
            } => {
                let killed = ExitStatusExt::from_raw(Signal::KILL.as_raw());
                let mut raw = [0u8; 4];
                // The supervisor's end: a pidfd turns readable when it exits, so nothing
                // else holding the status pipe open can make us wait beyond that.
                let exited = async {
                    match pidfd.as_ref().and_then(|fd| fd.try_clone().ok()) {
                        // SAFETY: the AsyncFd owns the duplicate, so it stays open, on
                        // the same pidfd, for as long as it is registered.
                        Some(fd) => match unsafe {
                            tokio::io::unix::AsyncFd::register_with_interest(
                                fd,
                                tokio::io::Interest::READABLE,
                            )
                        } {
                            Ok(fd) => drop(fd.readable().await),
                            Err(_) => std::future::pending().await,
                        },
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    biased;
                    // Four bytes, written at once just before the supervisor exits.
                    r = status.read_exact(&mut raw) => match r {
                        Ok(_) => {
                            *reported = true;
                            Ok(ExitStatusExt::from_raw(i32::from_le_bytes(raw)))
                        }
                        // The supervisor died without a word: it was killed, and so was
                        // the command as far as anyone can tell.
                        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(killed),
                        Err(e) => Err(e),
                    },
                    () = exited => match status.try_read(&mut raw) {
                        Ok(4) => Ok(ExitStatusExt::from_raw(i32::from_le_bytes(raw))),
                        _ => Ok(killed),
                    },
                }
            }
        }
    }

    /// What it takes to kill a supervisor and its tree from here, if this is one.
    fn killer(&self) -> Option<Killer> {
        match self {
            Process::Supervised {
                pid,
                pidfd: Some(fd),
                ..
            } => fd.try_clone().ok().map(|pidfd| Killer { pid: *pid, pidfd }),
            _ => None,
        }
    }
}

/// A command that has been started.
#[derive(Debug)]
pub struct Running {
    /// The process started: the supervisor, or the command itself. Only `Drop` takes it.
    process: Option<Process>,
    output: Output,
    stdin: Option<Stdin>,
    control: Control,
    /// When the command is killed for taking too long, and the limit, for the message.
    deadline: Option<(Instant, Duration)>,
    timed_out: bool,
    done: bool,
    /// When the supervisor was told to kill everything: if it has not managed within
    /// [`SUPERVISOR_GRACE`] (the command stopped it, say), the server does it itself.
    kill_sent: Option<Instant>,
    forced: bool,
    /// The kill could not be carried out and we stopped waiting for the command.
    abandoned: bool,
    /// The connection's supervisor that runs this command, and where it goes back once
    /// the command has ended cleanly.
    serial: Option<(helper::Serial, ConnectionSupervisor)>,
    /// The command's cgroup, killed and removed when it is dropped.
    group: Option<cgroup::Group>,
}

impl Running {
    /// A command just started, with `timeout` from now.
    pub(super) fn new(
        process: Process,
        output: Output,
        stdin: Option<Stdin>,
        control: Control,
        timeout: Option<Duration>,
        serial: Option<(helper::Serial, ConnectionSupervisor)>,
        group: Option<cgroup::Group>,
    ) -> Running {
        Running {
            process: Some(process),
            output,
            stdin,
            control,
            deadline: timeout.map(|t| (Instant::now() + t, t)),
            timed_out: false,
            done: false,
            kill_sent: None,
            forced: false,
            abandoned: false,
            serial,
            group,
        }
    }

    /// The next piece of output, or how the command ended once its output is drained.
    /// Never call it again after [`Event::Done`].
    ///
    /// # Errors
    /// An I/O error reading the output or waiting for the child.
    pub async fn next(&mut self) -> io::Result<Event> {
        match self.next_in_place(None).await? {
            Piece::Event(e) => Ok(e),
            Piece::InPipe { .. } => unreachable!("nothing is left in place unless asked"),
        }
    }

    /// As [`next`](Self::next), but with `in_place = Some((min, max))`, output of at least
    /// `min` bytes waiting in a pipe is left there and reported as [`Piece::InPipe`] (at
    /// most `max` bytes of it), for the caller to move without copying it through our
    /// memory. Smaller output, and a terminal's, is read as usual. Cancel safe.
    ///
    /// # Errors
    /// As [`next`](Self::next).
    pub async fn next_in_place(&mut self, in_place: Option<(usize, usize)>) -> io::Result<Piece> {
        let status = loop {
            let deadline = self.deadline();
            let supervised = matches!(self.control, Control::Supervisor(_));
            let overdue = self
                .kill_sent
                .filter(|_| !self.forced && supervised)
                .map(|at| at + SUPERVISOR_GRACE);
            // A kill that nothing carried out, even from here: the supervisor is gone or
            // stopped, and something it started holds the output. We stop waiting.
            let hopeless = self
                .kill_sent
                .filter(|_| supervised)
                .map(|at| at + SUPERVISOR_GRACE + FORCED_KILL_DEADLINE);
            if self.output.is_open() {
                tokio::select! {
                    r = self.output.next(in_place) => {
                        if let Some(piece) = r? { return Ok(piece); }
                    }
                    // Killing closes every copy of the output, so the loop then drains what
                    // was already written and ends.
                    _ = crate::deadline::until(deadline) => self.time_out(),
                    _ = crate::deadline::until(overdue) => self.force_kill(),
                    _ = crate::deadline::until(hopeless) => {
                        self.abandoned = true;
                        self.output.abandon();
                    }
                }
            } else {
                let process = self.process.as_mut().expect("only Drop takes the process");
                // The limits hold while the status is awaited too: a command can close its
                // output and stop its supervisor.
                tokio::select! {
                    status = process.wait() => break status?,
                    _ = crate::deadline::until(deadline) => self.time_out(),
                    _ = crate::deadline::until(overdue) => self.force_kill(),
                    _ = crate::deadline::until(hopeless) => {
                        self.abandoned = true;
                        break std::os::unix::process::ExitStatusExt::from_raw(Signal::KILL.as_raw());
                    }
                }
            }
        };
        self.done = true;
        // Whatever the command did to its supervisor, nothing in its group outlives it.
        drop(self.group.take());
        // The supervisor serves the connection's next command only if it said itself that
        // it is done with this one, and nobody had to kill it.
        let finished = matches!(
            self.process,
            Some(Process::Supervised { reported: true, .. })
        );
        if let Some((serial, slot)) = self.serial.take() {
            if finished && !self.forced && !self.abandoned {
                slot.put(serial);
            }
        }
        if let Control::Group(pgid) = &mut self.control {
            // Reaped: the id may now be reused, so it must never be signalled again.
            *pgid = None;
        }
        match self.deadline {
            Some((_, limit)) if self.timed_out => Ok(Event::Done(Status::Failed {
                code: 124,
                message: format!(
                    "rcmd: command timed out after {}s; {}",
                    limit.as_secs_f64(),
                    if self.abandoned {
                        "not all of its processes could be killed (it stopped or \
                         killed its supervisor)"
                    } else {
                        "its processes were killed"
                    }
                ),
            })),
            _ => Ok(Event::Done(Status::from_exit(status))),
        }
        .map(Piece::Event)
    }

    /// When the command is to be killed for running too long, unless it already was.
    /// A caller that is not polling [`next`](Self::next) (its client is not reading, say)
    /// waits for this itself and calls [`time_out`](Self::time_out), so the limit holds
    /// whatever the client does.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline.filter(|_| !self.timed_out).map(|(at, _)| at)
    }

    /// Kills everything the command started, for taking too long: it ends with status 124.
    pub fn time_out(&mut self) {
        self.timed_out = true;
        self.kill();
    }

    /// Kills everything the command started.
    pub fn kill(&mut self) {
        if !self.done {
            self.control.send(supervisor::KILL);
            self.kill_sent.get_or_insert_with(Instant::now);
        }
    }

    /// Kills the supervisor's whole tree from here, and then the supervisor: for a
    /// supervisor that did not carry out a kill in time (the command sent it SIGSTOP).
    /// Its status pipe then closes, and `next` reports the command killed.
    fn force_kill(&mut self) {
        self.forced = true;
        if let Some(group) = &self.group {
            // Everything the command started, at once; the supervisor is not in it.
            if group.kill().is_err() {
                tracing::warn!("cannot kill a command's cgroup");
            }
        }
        if let Some(killer) = self.process.as_ref().and_then(Process::killer) {
            tokio::spawn(killer.run());
        }
    }

    /// Delivers signal `sig` to the command's process group.
    pub fn signal(&mut self, sig: i32) {
        if let (false, Ok(sig)) = (self.done, u8::try_from(sig)) {
            if sig != supervisor::KILL {
                self.control.send(sig);
            }
        }
    }

    /// Tells the command's terminal (if it has one) its new size.
    pub fn resize(&self, size: WindowSize) {
        if let Output::Pty {
            master: Some(m), ..
        } = &self.output
        {
            // An error: the command has closed its terminal, and has no size to be told.
            let _closed = m.resize(size);
        }
    }

    /// The way into the command's input, if it has one; taken once.
    pub fn take_stdin(&mut self) -> Option<Stdin> {
        self.stdin.take()
    }

    /// Process id of the command (of its supervisor, when it has one).
    pub fn id(&self) -> Option<u32> {
        self.process.as_ref().and_then(Process::id)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.kill();
        // A supervisor that does not end within its grace is killed from here, with its
        // tree, as in `next` (it may have been stopped by the command it watches).
        if let (Some(mut process), Control::Supervisor(_), Ok(runtime)) = (
            self.process.take(),
            &self.control,
            tokio::runtime::Handle::try_current(),
        ) {
            runtime.spawn(async move {
                if tokio::time::timeout(SUPERVISOR_GRACE, process.wait())
                    .await
                    .is_err()
                {
                    if let Some(killer) = process.killer() {
                        killer.run().await;
                    }
                }
            });
        }
    }
}

/// What the server needs to kill a supervisor's tree and then the supervisor itself.
struct Killer {
    pid: RawPid,
    pidfd: OwnedFd,
}

impl Killer {
    /// Kills the tree only while the pidfd says the supervisor is alive: its pid then still
    /// names it, so the scan of /proc finds its tree and no other.
    async fn run(self) {
        if tree::has_ended(self.pidfd.as_fd()) {
            return;
        }
        let pid = self.pid;
        // Scanning /proc and waiting between rounds blocks: not on the runtime's threads.
        let killed = tokio::task::spawn_blocking(move || {
            // Not its parent, we cannot reap: only the walk tells what is left.
            rustix::process::Pid::from_raw(pid)
                .is_some_and(|root| tree::kill_tree(root, &[], FORCED_KILL_DEADLINE, &mut || false))
        })
        .await;
        if !matches!(killed, Ok(true)) {
            tracing::warn!(
                pid,
                "not every process a stopped supervisor started could be killed"
            );
        }
        // An error means it has ended meanwhile: nothing left to do.
        let _ended = tree::pidfd_kill(self.pidfd.as_fd());
    }
}
