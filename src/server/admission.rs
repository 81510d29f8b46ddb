//! Who may hold a connection open. Until it authenticates, a connection takes one of a few
//! *unauthenticated* places (at most `max_unauthenticated_per_source` from one source and
//! `max_unauthenticated` in all); only once it has authenticated does it trade that for one
//! of the `max_conns` slots. So peers that connect and never authenticate cannot crowd out
//! the clients that do.
//!
//! Each connection's [`Ticket`] travels with its task (a task-local), so the handshake can
//! trade it in without every connection handler passing it along.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::guard::{Guard, Source};
use super::Limits;

/// The server's admission state, shared by every connection.
#[derive(Debug)]
pub(crate) struct Admission {
    guard: Guard,
    pending: Mutex<Pending>,
    slots: Arc<Semaphore>,
    max_conns: usize,
    per_source: usize,
    total: usize,
}

#[derive(Debug, Default)]
struct Pending {
    by_source: HashMap<Source, usize>,
    total: usize,
}

/// Why a connection is turned away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Its source already has this many unauthenticated connections.
    SourceFull { source: Source, max: usize },
    /// The server already has this many unauthenticated connections.
    AllFull { max: usize },
    /// Authenticated, but all `--max-conns` slots are taken.
    Busy { max: usize },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::SourceFull { source, max } => write!(
                f,
                "too many unauthenticated connections from {source} ({max}); authenticate \
                 or close some and try again"
            ),
            Refusal::AllFull { max } => write!(
                f,
                "server busy: {max} connections are already authenticating; try again later"
            ),
            Refusal::Busy { max } => write!(
                f,
                "server busy: {max} connections already open (--max-conns); try again later"
            ),
        }
    }
}

impl Admission {
    pub fn new(limits: &Limits) -> Arc<Admission> {
        Arc::new(Admission {
            guard: Guard::default(),
            pending: Mutex::default(),
            slots: Arc::new(Semaphore::new(limits.max_conns)),
            max_conns: limits.max_conns,
            per_source: limits.max_unauthenticated_per_source,
            total: limits.max_unauthenticated,
        })
    }

    /// The failure guard, for the handshake and for logging refusals.
    pub fn guard(&self) -> &Guard {
        &self.guard
    }

    /// Admits a new connection from `source` as unauthenticated, if there is room.
    pub fn admit(self: &Arc<Self>, source: Source) -> Result<Ticket, Refusal> {
        let mut pending = self.pending.lock().unwrap();
        if pending.total >= self.total {
            return Err(Refusal::AllFull { max: self.total });
        }
        let mine = pending.by_source.entry(source).or_default();
        if *mine >= self.per_source {
            return Err(Refusal::SourceFull {
                source,
                max: self.per_source,
            });
        }
        *mine += 1;
        pending.total += 1;
        Ok(Ticket {
            admission: Arc::clone(self),
            source,
            slot: None,
            released: false,
        })
    }

    fn release(&self, source: Source) {
        let mut pending = self.pending.lock().unwrap();
        pending.total -= 1;
        if let Some(n) = pending.by_source.get_mut(&source) {
            *n -= 1;
            if *n == 0 {
                pending.by_source.remove(&source);
            }
        }
    }
}

/// One connection's place: unauthenticated until [`Ticket::authenticated`] trades it for a
/// connection slot. Dropping it frees whichever it holds.
#[derive(Debug)]
pub(crate) struct Ticket {
    admission: Arc<Admission>,
    source: Source,
    slot: Option<OwnedSemaphorePermit>,
    /// Already given back (the connection is only saying goodbye).
    released: bool,
}

impl Ticket {
    /// Gives back whatever this connection holds, before it ends: one that was refused and
    /// is only waiting for its peer to hang up must not keep others out meanwhile.
    pub fn give_back(&mut self) {
        if !self.released {
            self.released = true;
            if self.slot.take().is_none() {
                self.admission.release(self.source);
            }
        }
    }

    pub fn guard(&self) -> &Guard {
        &self.admission.guard
    }

    /// The connection has authenticated (or needs no authentication): it leaves the
    /// unauthenticated places for one of the `max_conns` slots, if one is free.
    pub fn authenticated(&mut self) -> Result<(), Refusal> {
        if self.slot.is_some() || self.released {
            return Ok(());
        }
        let slot = Arc::clone(&self.admission.slots)
            .try_acquire_owned()
            .map_err(|_| Refusal::Busy {
                max: self.admission.max_conns,
            })?;
        self.admission.release(self.source);
        self.slot = Some(slot);
        Ok(())
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.give_back();
    }
}

tokio::task_local! {
    static TICKET: RefCell<Ticket>;
}

/// Runs one connection's handler with its ticket, which is dropped when the handler ends.
pub(crate) async fn with_ticket<F: Future>(ticket: Ticket, handler: F) -> F::Output {
    TICKET.scope(RefCell::new(ticket), handler).await
}

/// Calls `f` with the current connection's ticket; `None` outside [`with_ticket`].
pub(crate) fn ticket<R>(f: impl FnOnce(&mut Ticket) -> R) -> Option<R> {
    TICKET.try_with(|t| f(&mut t.borrow_mut())).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(last: u8) -> Source {
        Source::from(std::net::IpAddr::from([127, 0, 0, last]))
    }

    fn admission(max_conns: usize, per_source: usize, total: usize) -> Arc<Admission> {
        Admission::new(&Limits {
            max_conns,
            max_unauthenticated_per_source: per_source,
            max_unauthenticated: total,
            ..Limits::default()
        })
    }

    #[test]
    fn unauthenticated_places_are_capped_per_source_and_in_all() {
        let a = admission(10, 2, 3);
        let one = a.admit(src(2)).unwrap();
        let _two = a.admit(src(2)).unwrap();
        assert_eq!(
            a.admit(src(2)).unwrap_err(),
            Refusal::SourceFull {
                source: src(2),
                max: 2
            }
        );
        let _three = a.admit(src(3)).unwrap();
        assert_eq!(a.admit(src(4)).unwrap_err(), Refusal::AllFull { max: 3 });
        drop(one);
        assert!(
            a.admit(src(2)).is_ok(),
            "a closed connection frees its place"
        );
    }

    #[test]
    fn authenticating_trades_the_place_for_a_slot() {
        let a = admission(1, 1, 8);
        let mut first = a.admit(src(2)).unwrap();
        first.authenticated().unwrap();
        // Its unauthenticated place is free again...
        let mut second = a.admit(src(2)).unwrap();
        // ...but the only slot is taken.
        assert_eq!(second.authenticated(), Err(Refusal::Busy { max: 1 }));
        drop(first);
        second.authenticated().unwrap();
        assert!(second.authenticated().is_ok(), "idempotent");
        drop(second);
        let mut third = a.admit(src(2)).unwrap();
        third.authenticated().unwrap();
    }
}
