//! Who may hold a connection open. Until it authenticates, a connection takes one of a few
//! *unauthenticated* places (at most `max_unauthenticated_per_source` from one source and
//! `max_unauthenticated` in all); only once it has authenticated does it trade that for one
//! of the `max_conns` slots. So peers that connect and never authenticate cannot crowd out
//! the clients that do.
//!
//! When every unauthenticated place is taken, a new connection is not refused: the oldest
//! waiting connection of the source holding the most places is evicted instead (as sshd's
//! MaxStartups drops early), so connections held open from many addresses cannot lock out
//! a client that authenticates at once.
//!
//! Each connection's [`Ticket`] travels with its task (a task-local), so the handshake can
//! trade it in without every connection handler passing it along.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

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
    /// Every unauthenticated connection, oldest first: its id, source and eviction token.
    waiting: Vec<(u64, Source, CancellationToken)>,
    next_id: u64,
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
            guard: Guard::new(limits.backoff),
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
        if pending.by_source.get(&source).copied().unwrap_or(0) >= self.per_source {
            return Err(Refusal::SourceFull {
                source,
                max: self.per_source,
            });
        }
        if pending.waiting.len() >= self.total && !pending.evict_one() {
            return Err(Refusal::AllFull { max: self.total });
        }
        *pending.by_source.entry(source).or_default() += 1;
        let id = pending.next_id;
        pending.next_id += 1;
        let evicted = CancellationToken::new();
        pending.waiting.push((id, source, evicted.clone()));
        Ok(Ticket {
            admission: Arc::clone(self),
            id,
            evicted,
            slot: None,
            released: false,
        })
    }

    /// Frees connection `id`'s unauthenticated place, unless it was evicted (and freed).
    fn release(&self, id: u64) {
        self.pending.lock().unwrap().remove(id);
    }
}

impl Pending {
    fn remove(&mut self, id: u64) {
        let Some(at) = self.waiting.iter().position(|(i, _, _)| *i == id) else {
            return;
        };
        let (_, source, _) = self.waiting.remove(at);
        if let Some(n) = self.by_source.get_mut(&source) {
            *n -= 1;
            if *n == 0 {
                self.by_source.remove(&source);
            }
        }
    }

    /// Evicts the oldest waiting connection of the source that holds the most places.
    fn evict_one(&mut self) -> bool {
        let Some((&source, _)) = self.by_source.iter().max_by_key(|(_, n)| **n) else {
            return false;
        };
        let Some(&(id, _, ref token)) = self.waiting.iter().find(|(_, s, _)| *s == source) else {
            return false;
        };
        token.cancel();
        self.remove(id);
        true
    }
}

/// One connection's place: unauthenticated until [`Ticket::authenticated`] trades it for a
/// connection slot. Dropping it frees whichever it holds.
#[derive(Debug)]
pub(crate) struct Ticket {
    admission: Arc<Admission>,
    id: u64,
    /// Cancelled when a newer connection takes this one's place.
    evicted: CancellationToken,
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
                self.admission.release(self.id);
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
        self.admission.release(self.id);
        self.slot = Some(slot);
        Ok(())
    }

    /// Completes when a newer connection has taken this one's unauthenticated place.
    pub fn evicted(&self) -> CancellationToken {
        self.evicted.clone()
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
        drop(one);
        assert!(
            a.admit(src(2)).is_ok(),
            "a closed connection frees its place"
        );
    }

    #[test]
    fn when_all_places_are_taken_the_busiest_sources_oldest_makes_room() {
        let a = admission(10, 3, 4);
        let first = a.admit(src(2)).unwrap();
        let second = a.admit(src(2)).unwrap();
        let other = a.admit(src(3)).unwrap();
        let _third = a.admit(src(2)).unwrap();
        // Full: a newcomer from elsewhere evicts src(2)'s oldest, not anyone else.
        let newcomer = a.admit(src(4)).unwrap();
        assert!(first.evicted().is_cancelled());
        assert!(!second.evicted().is_cancelled() && !other.evicted().is_cancelled());
        // The evicted ticket's place is already free: dropping it frees nothing twice.
        drop(first);
        let pending = a.pending.lock().unwrap();
        assert_eq!(pending.waiting.len(), 4);
        assert_eq!(pending.by_source[&src(2)], 2);
        drop(pending);
        drop(newcomer);
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
