//! Who may hold a connection open. Until it authenticates, a connection takes one of a few
//! *unauthenticated* places (at most `max_unauthenticated_per_source` from one source and
//! `max_unauthenticated` in all); only once it has authenticated does it trade that for one
//! of the `max_conns` slots. So peers that connect and never authenticate cannot crowd out
//! the clients that do.
//!
//! A connection whose source already holds all its places is not refused: it waits in a
//! queue (at most `max_queued_per_source` from one source, `max_queued` in all), unread,
//! until one of its source's places is free, so a burst of clients from one source is
//! served in turn instead of turned away. A source is a local user for peers on this
//! machine (see `guard::Source`), so one local user holding connections open only makes
//! their own later connections wait.
//!
//! When every unauthenticated place is taken, a new connection whose source has places
//! left is not refused either: the oldest waiting connection of the source holding the
//! most places is evicted instead (as sshd's MaxStartups drops early), so connections held
//! open from many addresses cannot lock out a client that authenticates at once. A full
//! queue makes room the same way.
//!
//! Each connection's [`Ticket`] travels with its task (a task-local), so the handshake can
//! trade it in without every connection handler passing it along.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::guard::{Guard, Source};
use super::Limits;
use crate::wire::message::BUSY;

/// The server's admission state, shared by every connection.
#[derive(Debug)]
pub(crate) struct Admission {
    guard: Guard,
    pending: Mutex<Pending>,
    slots: Arc<Semaphore>,
    max_conns: usize,
}

/// Connections not yet authenticated: those holding a place and those queued for one.
#[derive(Debug)]
struct Pending {
    limits: PendingLimits,
    counts: HashMap<Source, Counts>,
    /// Connections holding a place, oldest first.
    placed: Vec<Entry>,
    /// Connections waiting for a place, oldest first.
    queued: VecDeque<Entry>,
    next_id: u64,
}

#[derive(Debug, Clone, Copy)]
struct PendingLimits {
    per_source: usize,
    total: usize,
    queued_per_source: usize,
    queued: usize,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    placed: usize,
    queued: usize,
}

#[derive(Debug)]
struct Entry {
    id: u64,
    source: Source,
    /// Cancelled when a newer connection takes this one's place or queue position.
    evicted: CancellationToken,
    /// Cancelled when this connection has a place.
    placed: CancellationToken,
}

/// Why a connection is turned away. Each says "server busy: …" first ([`BUSY`]): nothing
/// ran, and the client may try again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Its source already has this many connections waiting for a place.
    SourceFull { source: Source, max: usize },
    /// A newer connection took its place or its position in the queue.
    Evicted,
    /// It waited this long in the queue without getting a place.
    Waited { after: Duration },
    /// Authenticated, but all `--max-conns` slots are taken.
    Busy { max: usize },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(BUSY)?;
        match self {
            Refusal::SourceFull { source, max } => write!(
                f,
                "{max} connections from {source} are already waiting to authenticate; try \
                 again later"
            ),
            Refusal::Evicted => f.write_str(
                "too many connections are authenticating: this one waited longest and made \
                 room for a newer one; try again",
            ),
            Refusal::Waited { after } => write!(
                f,
                "no room to authenticate within {}s; try again later",
                after.as_secs_f64()
            ),
            Refusal::Busy { max } => write!(
                f,
                "{max} connections already open (--max-conns); try again later"
            ),
        }
    }
}

impl Admission {
    pub fn new(limits: &Limits) -> Arc<Admission> {
        Arc::new(Admission {
            guard: Guard::new(limits.backoff),
            pending: Mutex::new(Pending {
                limits: PendingLimits {
                    per_source: limits.max_unauthenticated_per_source.max(1),
                    total: limits.max_unauthenticated.max(1),
                    queued_per_source: limits.max_queued_per_source,
                    queued: limits.max_queued,
                },
                counts: HashMap::new(),
                placed: Vec::new(),
                queued: VecDeque::new(),
                next_id: 0,
            }),
            slots: Arc::new(Semaphore::new(limits.max_conns)),
            max_conns: limits.max_conns,
        })
    }

    /// The failure guard, for logging refusals.
    pub fn guard(&self) -> &Guard {
        &self.guard
    }

    /// Admits a new connection from `source` as unauthenticated: with a place if its
    /// source has one left (evicting another source's connection if the server is full),
    /// else queued for one ([`Ticket::turn`]), else refused.
    pub fn admit(self: &Arc<Self>, source: Source) -> Result<Ticket, Refusal> {
        let mut pending = self.pending.lock().unwrap();
        let limits = pending.limits;
        let counts = pending.counts.get(&source).copied().unwrap_or_default();
        let entry = Entry {
            id: pending.next_id,
            source,
            evicted: CancellationToken::new(),
            placed: CancellationToken::new(),
        };
        // Those already queued from this source go first.
        let room = counts.placed < limits.per_source && counts.queued == 0;
        if room && (pending.placed.len() < limits.total || pending.evict_placed()) {
            entry.placed.cancel();
            pending.count(source).placed += 1;
            pending.placed.push(entry.clone_handle());
        } else {
            if counts.queued >= limits.queued_per_source {
                return Err(Refusal::SourceFull {
                    source,
                    max: limits.queued_per_source,
                });
            }
            if pending.queued.len() >= limits.queued && !pending.evict_queued() {
                return Err(Refusal::SourceFull {
                    source,
                    max: limits.queued_per_source,
                });
            }
            pending.count(source).queued += 1;
            pending.queued.push_back(entry.clone_handle());
        }
        pending.next_id += 1;
        Ok(Ticket {
            admission: Arc::clone(self),
            entry,
            slot: None,
            released: false,
        })
    }

    /// Frees connection `id`'s place or queue position (unless it was evicted, and freed
    /// then), and gives a freed place to the next connection queued for it.
    fn release(&self, id: u64) {
        let mut pending = self.pending.lock().unwrap();
        if pending.remove(id) {
            pending.fill();
        }
    }
}

impl Entry {
    fn clone_handle(&self) -> Entry {
        Entry {
            id: self.id,
            source: self.source,
            evicted: self.evicted.clone(),
            placed: self.placed.clone(),
        }
    }
}

impl Pending {
    fn count(&mut self, source: Source) -> &mut Counts {
        self.counts.entry(source).or_default()
    }

    fn uncount(&mut self, source: Source, placed: bool) {
        if let Some(c) = self.counts.get_mut(&source) {
            if placed {
                c.placed -= 1;
            } else {
                c.queued -= 1;
            }
            if c.placed == 0 && c.queued == 0 {
                self.counts.remove(&source);
            }
        }
    }

    /// Forgets connection `id`. Returns whether it held a place (now free).
    fn remove(&mut self, id: u64) -> bool {
        if let Some(at) = self.placed.iter().position(|e| e.id == id) {
            let e = self.placed.remove(at);
            self.uncount(e.source, true);
            return true;
        }
        if let Some(at) = self.queued.iter().position(|e| e.id == id) {
            let e = self.queued.remove(at).expect("found");
            self.uncount(e.source, false);
        }
        false
    }

    /// Gives free places to the oldest queued connections whose source has room.
    fn fill(&mut self) {
        while self.placed.len() < self.limits.total {
            let per_source = self.limits.per_source;
            let counts = &self.counts;
            let Some(at) = self
                .queued
                .iter()
                .position(|e| counts.get(&e.source).is_some_and(|c| c.placed < per_source))
            else {
                return;
            };
            let e = self.queued.remove(at).expect("found");
            let c = self.count(e.source);
            c.queued -= 1;
            c.placed += 1;
            e.placed.cancel();
            self.placed.push(e);
        }
    }

    /// The source holding the most of `entries`, and the position of its oldest there.
    fn busiest<'a>(
        counts: &HashMap<Source, Counts>,
        mut entries: impl Iterator<Item = &'a Entry>,
        held: impl Fn(&Counts) -> usize,
    ) -> Option<u64> {
        let (&source, _) = counts.iter().max_by_key(|(_, c)| held(c))?;
        entries.find(|e| e.source == source).map(|e| e.id)
    }

    /// Evicts the oldest placed connection of the source that holds the most places.
    fn evict_placed(&mut self) -> bool {
        let Some(id) = Pending::busiest(&self.counts, self.placed.iter(), |c| c.placed) else {
            return false;
        };
        let at = self.placed.iter().position(|e| e.id == id).expect("found");
        let e = self.placed.remove(at);
        e.evicted.cancel();
        self.uncount(e.source, true);
        true
    }

    /// Evicts the oldest queued connection of the source that has the most queued.
    fn evict_queued(&mut self) -> bool {
        let Some(id) = Pending::busiest(&self.counts, self.queued.iter(), |c| c.queued) else {
            return false;
        };
        let at = self.queued.iter().position(|e| e.id == id).expect("found");
        let e = self.queued.remove(at).expect("found");
        e.evicted.cancel();
        self.uncount(e.source, false);
        true
    }
}

/// One connection's place: unauthenticated (or queued for a place) until
/// [`Ticket::authenticated`] trades it for a connection slot. Dropping it frees whichever
/// it holds.
#[derive(Debug)]
pub(crate) struct Ticket {
    admission: Arc<Admission>,
    entry: Entry,
    slot: Option<OwnedSemaphorePermit>,
    /// Already given back (the connection is only saying goodbye).
    released: bool,
}

impl Ticket {
    /// Waits until this connection has a place, for at most `limit`.
    ///
    /// # Errors
    /// [`Refusal::Evicted`] when a newer connection took its position in the queue, and
    /// [`Refusal::Waited`] when `limit` passed first.
    pub async fn turn(&self, limit: Duration) -> Result<(), Refusal> {
        tokio::select! {
            biased;
            _ = self.entry.placed.cancelled() => Ok(()),
            _ = self.entry.evicted.cancelled() => Err(Refusal::Evicted),
            _ = tokio::time::sleep(limit) => Err(Refusal::Waited { after: limit }),
        }
    }

    /// Gives back whatever this connection holds, before it ends: one that was refused and
    /// is only waiting for its peer to hang up must not keep others out meanwhile.
    pub fn give_back(&mut self) {
        if !self.released {
            self.released = true;
            if self.slot.take().is_none() {
                self.admission.release(self.entry.id);
            }
        }
    }

    pub fn guard(&self) -> &Guard {
        &self.admission.guard
    }

    /// Where this connection comes from, as limits and the failure guard count it.
    pub fn source(&self) -> Source {
        self.entry.source
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
        self.admission.release(self.entry.id);
        self.slot = Some(slot);
        Ok(())
    }

    /// Completes when a newer connection has taken this one's unauthenticated place.
    pub fn evicted(&self) -> CancellationToken {
        self.entry.evicted.clone()
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
        queueing(max_conns, per_source, total, 0, 0)
    }

    fn queueing(
        max_conns: usize,
        per_source: usize,
        total: usize,
        queued_per_source: usize,
        queued: usize,
    ) -> Arc<Admission> {
        Admission::new(&Limits {
            max_conns,
            max_unauthenticated_per_source: per_source,
            max_unauthenticated: total,
            max_queued_per_source: queued_per_source,
            max_queued: queued,
            ..Limits::default()
        })
    }

    fn placed(t: &Ticket) -> bool {
        t.entry.placed.is_cancelled()
    }

    #[test]
    fn without_a_queue_places_are_capped_per_source() {
        let a = admission(10, 2, 3);
        let one = a.admit(src(2)).unwrap();
        let _two = a.admit(src(2)).unwrap();
        assert_eq!(
            a.admit(src(2)).unwrap_err(),
            Refusal::SourceFull {
                source: src(2),
                max: 0
            }
        );
        drop(one);
        assert!(
            a.admit(src(2)).is_ok_and(|t| placed(&t)),
            "a closed connection frees its place"
        );
    }

    #[test]
    fn a_source_past_its_places_waits_in_turn_then_is_refused() {
        let a = queueing(10, 2, 8, 2, 8);
        let first = a.admit(src(2)).unwrap();
        let mut second = a.admit(src(2)).unwrap();
        let third = a.admit(src(2)).unwrap();
        let fourth = a.admit(src(2)).unwrap();
        assert!(placed(&first) && placed(&second));
        assert!(!placed(&third) && !placed(&fourth), "queued, not refused");
        let refused = a.admit(src(2)).unwrap_err();
        assert_eq!(
            refused,
            Refusal::SourceFull {
                source: src(2),
                max: 2
            }
        );
        assert!(refused.to_string().starts_with(BUSY), "{refused}");
        // Another source is not queued behind them.
        assert!(placed(&a.admit(src(3)).unwrap()));
        // Places come free in turn: by authenticating, or by closing.
        second.authenticated().unwrap();
        assert!(placed(&third) && !placed(&fourth));
        drop(first);
        assert!(placed(&fourth));
    }

    #[test]
    fn another_local_user_waits_in_a_queue_of_their_own() {
        let a = queueing(10, 2, 8, 4, 8);
        let (them, us) = (Source::LocalUser(65534), Source::LocalUser(1000));
        let theirs: Vec<_> = (0..6).map(|_| a.admit(them).unwrap()).collect();
        assert_eq!(theirs.iter().filter(|t| placed(t)).count(), 2);
        // Same address, another owner: our connection has a place at once.
        assert!(placed(&a.admit(us).unwrap()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_queued_connection_waits_at_most_its_limit() {
        let a = queueing(10, 1, 8, 4, 8);
        let first = a.admit(src(2)).unwrap();
        let second = a.admit(src(2)).unwrap();
        let limit = Duration::from_secs(10);
        assert_eq!(first.turn(limit).await, Ok(()));
        assert_eq!(
            second.turn(limit).await,
            Err(Refusal::Waited { after: limit })
        );
        // Given up, it no longer holds its position.
        drop(second);
        let third = a.admit(src(2)).unwrap();
        drop(first);
        assert_eq!(third.turn(limit).await, Ok(()));
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
        assert!(placed(&newcomer));
        assert!(first.evicted().is_cancelled());
        assert!(!second.evicted().is_cancelled() && !other.evicted().is_cancelled());
        // The evicted ticket's place is already free: dropping it frees nothing twice.
        drop(first);
        let pending = a.pending.lock().unwrap();
        assert_eq!(pending.placed.len(), 4);
        assert_eq!(pending.counts[&src(2)].placed, 2);
        drop(pending);
        drop(newcomer);
    }

    #[tokio::test]
    async fn a_full_queue_makes_room_from_the_source_with_most_waiting() {
        let a = queueing(10, 1, 8, 3, 4);
        let _placed = [a.admit(src(2)).unwrap(), a.admit(src(3)).unwrap()];
        let busy: Vec<_> = (0..3).map(|_| a.admit(src(2)).unwrap()).collect();
        let other = a.admit(src(3)).unwrap();
        // The queue is full: src(3)'s next evicts src(2)'s oldest waiting.
        let newcomer = a.admit(src(3)).unwrap();
        assert_eq!(
            busy[0].turn(Duration::from_secs(1)).await,
            Err(Refusal::Evicted)
        );
        assert!(!busy[1].evicted().is_cancelled() && !other.evicted().is_cancelled());
        let pending = a.pending.lock().unwrap();
        assert_eq!(pending.queued.len(), 4);
        assert_eq!(pending.counts[&src(2)].queued, 2);
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
