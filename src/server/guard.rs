//! Failed authentication, per source address: each failure waits longer before its refusal
//! (100 ms, doubling to 2 s, forgotten after a success or a quiet minute), and the log gets
//! at most one line a second per source, with a count, instead of a line per guess.
//!
//! The map is bounded: past [`MAX_SOURCES`] addresses the least recently seen is forgotten,
//! so an attacker with many addresses cannot grow it. Time is `tokio::time`, so tests
//! pause it.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The wait before refusing a source's first failed attempt; it doubles with each failure.
pub(crate) const FIRST_DELAY: Duration = Duration::from_millis(100);
/// The longest wait before a refusal.
pub(crate) const MAX_DELAY: Duration = Duration::from_secs(2);
/// A source with no failure for this long starts again from [`FIRST_DELAY`].
pub(crate) const FORGET_AFTER: Duration = Duration::from_secs(60);
/// At most one log line per source this often.
pub(crate) const LOG_EVERY: Duration = Duration::from_secs(1);
/// Sources remembered at once.
pub(crate) const MAX_SOURCES: usize = 4096;

/// The guard's timings: the constants above unless a test shortens them, so a server's
/// whole back-off and logging cycle can be watched in a fraction of a second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait before refusing a source's first failed attempt; it doubles with each.
    pub first_delay: Duration,
    /// The longest wait before a refusal.
    pub max_delay: Duration,
    /// A source with no failure for this long starts again from `first_delay`.
    pub forget_after: Duration,
    /// At most one log line per source this often.
    pub log_every: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            first_delay: FIRST_DELAY,
            max_delay: MAX_DELAY,
            forget_after: FORGET_AFTER,
            log_every: LOG_EVERY,
        }
    }
}

/// Where connections come from, as far as limits go: for a peer on this machine, the
/// local user that owns its socket (every local user connects from loopback, and may bind
/// any 127.x address); otherwise an IPv4 address, or an IPv6 /64 (one host usually holds a
/// whole /64, so single IPv6 addresses cost an attacker nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Source {
    Net(IpAddr),
    LocalUser(u32),
}

impl Source {
    /// The source of a connection from `peer` to our `local` address. A loopback peer
    /// whose owner the kernel cannot tell (its socket already closed) counts by address.
    pub fn of(peer: SocketAddr, local: SocketAddr) -> Source {
        match super::local_peer::owner(peer, local) {
            Ok(Some(uid)) => Source::LocalUser(uid),
            Ok(None) => Source::from(peer.ip()),
            Err(e) => {
                tracing::debug!(%peer, "whose connection this is is unknown: {e}");
                Source::from(peer.ip())
            }
        }
    }
}

impl From<IpAddr> for Source {
    fn from(ip: IpAddr) -> Source {
        match ip {
            IpAddr::V4(v4) => Source::Net(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source::Net(IpAddr::V4(v4)),
                None => Source::Net(IpAddr::V6((u128::from(v6) & !0u128 << 64).into())),
            },
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Net(IpAddr::V4(ip)) => write!(f, "{ip}"),
            Source::Net(IpAddr::V6(ip)) => write!(f, "{ip}/64"),
            Source::LocalUser(uid) => write!(f, "local uid {uid}"),
        }
    }
}

/// What one source did since its last log line: the line to log now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tally {
    pub source: Source,
    /// Failed authentications.
    pub failures: u32,
    /// Connections refused before authentication (too many from it, or in all).
    pub refused: u32,
    /// How long these took to happen.
    pub over: Duration,
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Tally {
            source,
            failures,
            refused,
            over,
        } = self;
        if (*failures, *refused) == (1, 0) {
            return write!(f, "authentication failed from {source}");
        }
        let mut what = Vec::new();
        if *failures > 0 {
            let s = if *failures == 1 { "" } else { "s" };
            what.push(format!("{failures} failed attempt{s}"));
        }
        if *refused > 0 {
            let s = if *refused == 1 { "" } else { "s" };
            what.push(format!(
                "{refused} connection{s} refused (too many unauthenticated)"
            ));
        }
        write!(
            f,
            "{} from {source} in the last {:.1}s",
            what.join(" and "),
            over.as_secs_f64()
        )
    }
}

#[derive(Debug)]
struct Peer {
    /// Failures since the last success (or quiet minute): sets the delay.
    streak: u32,
    last_failure: Instant,
    /// Last time anything happened, for eviction.
    seen: Instant,
    /// When the last line for this source was logged.
    logged: Option<Instant>,
    /// Counted since then.
    failures: u32,
    refused: u32,
}

impl Peer {
    fn new(now: Instant) -> Peer {
        Peer {
            streak: 0,
            last_failure: now,
            seen: now,
            logged: None,
            failures: 0,
            refused: 0,
        }
    }

    /// The line to log now, if one is due and there is something to say.
    fn due(&mut self, source: Source, now: Instant, log_every: Duration) -> Option<Tally> {
        if self.failures == 0 && self.refused == 0 {
            return None;
        }
        let since = match self.logged {
            Some(at) if now.duration_since(at) < log_every => return None,
            Some(at) => now.duration_since(at),
            None => Duration::ZERO,
        };
        self.logged = Some(now);
        Some(Tally {
            source,
            failures: std::mem::take(&mut self.failures),
            refused: std::mem::take(&mut self.refused),
            over: since,
        })
    }
}

/// Per-source failure state, shared by every connection of one server.
#[derive(Debug, Default)]
pub(crate) struct Guard {
    peers: Mutex<HashMap<Source, Peer>>,
    timing: Backoff,
}

impl Guard {
    /// A guard with these timings (`Guard::default()` has the constants above).
    pub fn new(timing: Backoff) -> Guard {
        Guard {
            peers: Mutex::default(),
            timing,
        }
    }

    /// Records a failed authentication from `source`. Returns how long to wait before
    /// sending the refusal, and the line to log now, if one is due.
    pub fn failed(&self, source: Source) -> (Duration, Option<Tally>) {
        let Backoff {
            first_delay,
            max_delay,
            forget_after,
            log_every,
        } = self.timing;
        self.with_peer(source, |peer, now| {
            if now.duration_since(peer.last_failure) >= forget_after {
                peer.streak = 0;
            }
            peer.streak = peer.streak.saturating_add(1);
            peer.last_failure = now;
            peer.failures += 1;
            let doublings = (peer.streak - 1).min(16);
            let delay = first_delay.saturating_mul(1 << doublings).min(max_delay);
            (delay, peer.due(source, now, log_every))
        })
    }

    /// Records a connection from `source` refused before authentication. Returns the line
    /// to log now, if one is due.
    pub fn refused(&self, source: Source) -> Option<Tally> {
        let log_every = self.timing.log_every;
        self.with_peer(source, |peer, now| {
            peer.refused += 1;
            peer.due(source, now, log_every)
        })
    }

    /// A successful authentication from `source`: its next failure waits the least again.
    pub fn succeeded(&self, source: Source) {
        if let Some(peer) = self.peers.lock().unwrap().get_mut(&source) {
            peer.streak = 0;
        }
    }

    /// The lines due for sources that have gone quiet since they were last logged, so a
    /// burst's last failures are reported too; call it every [`Backoff::log_every`]. Sources with
    /// nothing left to report or delay are forgotten.
    pub fn flush(&self) -> Vec<Tally> {
        self.flush_at(Instant::now(), false)
    }

    /// Everything not yet logged, due or not (at shutdown).
    pub fn flush_all(&self) -> Vec<Tally> {
        self.flush_at(Instant::now(), true)
    }

    fn flush_at(&self, now: Instant, all: bool) -> Vec<Tally> {
        let Backoff {
            forget_after,
            log_every,
            ..
        } = self.timing;
        let mut peers = self.peers.lock().unwrap();
        let mut lines = Vec::new();
        for (source, peer) in peers.iter_mut() {
            if all {
                peer.logged = peer.logged.map(|at| at.min(now - log_every));
            }
            lines.extend(peer.due(*source, now, log_every));
        }
        peers.retain(|_, p| {
            p.failures + p.refused > 0 || now.duration_since(p.last_failure) < forget_after
        });
        lines
    }

    /// Number of sources remembered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.peers.lock().unwrap().len()
    }

    fn with_peer<R>(&self, source: Source, f: impl FnOnce(&mut Peer, Instant) -> R) -> R {
        let now = Instant::now();
        let mut peers = self.peers.lock().unwrap();
        if !peers.contains_key(&source) && peers.len() >= MAX_SOURCES {
            // Full: forget the source seen least recently. A linear scan of a few
            // thousand entries, only when a new source arrives at a full map.
            if let Some(oldest) = peers.iter().min_by_key(|(_, p)| p.seen).map(|(s, _)| *s) {
                peers.remove(&oldest);
            }
        }
        let peer = peers.entry(source).or_insert_with(|| Peer::new(now));
        peer.seen = now;
        f(peer, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn src(last: u8) -> Source {
        Source::from(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[tokio::test(start_paused = true)]
    async fn delay_doubles_to_a_cap_and_a_success_resets_it() {
        let g = Guard::default();
        let delays: Vec<_> = (0..8).map(|_| g.failed(src(2)).0).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 2000, 2000, 2000].map(ms));
        // Another source is not slowed by this one.
        assert_eq!(g.failed(src(3)).0, ms(100));
        g.succeeded(src(2));
        assert_eq!(g.failed(src(2)).0, ms(100));
    }

    #[tokio::test(start_paused = true)]
    async fn delay_is_forgotten_after_a_quiet_minute() {
        let g = Guard::default();
        for _ in 0..5 {
            g.failed(src(2));
        }
        tokio::time::advance(FORGET_AFTER - ms(1)).await;
        assert_eq!(g.failed(src(2)).0, ms(3200).min(MAX_DELAY));
        tokio::time::advance(FORGET_AFTER).await;
        assert_eq!(g.failed(src(2)).0, ms(100));
    }

    #[tokio::test(start_paused = true)]
    async fn at_most_one_line_a_second_per_source_with_a_count() {
        let g = Guard::default();
        let first = g
            .failed(src(2))
            .1
            .expect("the first failure is logged at once");
        assert_eq!(first.to_string(), "authentication failed from 127.0.0.2");
        for _ in 0..11 {
            tokio::time::advance(ms(50)).await;
            assert_eq!(g.failed(src(2)).1, None);
            assert_eq!(g.refused(src(2)), None);
        }
        // Another source has its own line.
        assert!(g.failed(src(3)).1.is_some());
        tokio::time::advance(ms(450)).await;
        let line = g.failed(src(2)).1.expect("a second has passed");
        assert_eq!(
            line.to_string(),
            "12 failed attempts and 11 connections refused (too many unauthenticated) \
             from 127.0.0.2 in the last 1.0s"
        );
        assert_eq!(g.failed(src(2)).1, None);
        // What is left of a burst comes out at the next flush a second later.
        assert_eq!(g.flush(), []);
        tokio::time::advance(LOG_EVERY).await;
        let rest = g.flush();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].failures, 1);
        assert_eq!(g.flush(), []);
        // At shutdown everything pending comes out at once.
        g.refused(src(2));
        assert_eq!(g.flush_all()[0].refused, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_map_stays_bounded_and_forgets_the_oldest() {
        let g = Guard::default();
        for _ in 0..3 {
            g.failed(src(1));
        }
        let ip = |i: u32| Source::from(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)));
        let last = MAX_SOURCES as u32 + 500;
        for i in 0..=last {
            tokio::time::advance(Duration::from_micros(1)).await;
            g.failed(ip(i));
        }
        assert_eq!(g.len(), MAX_SOURCES);
        // The newest source is remembered; the oldest was forgotten and starts afresh.
        assert_eq!(g.failed(ip(last)).0, ms(200));
        assert_eq!(g.failed(src(1)).0, ms(100));
        // Quiet sources are dropped once their minute is up.
        tokio::time::advance(FORGET_AFTER + LOG_EVERY).await;
        g.flush();
        assert_eq!(g.len(), 0);
    }

    #[test]
    fn ipv6_sources_are_whole_64s_and_mapped_ipv4_is_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(Source::from(a), Source::from(b));
        assert_ne!(Source::from(a), Source::from(c));
        assert_eq!(Source::from(a).to_string(), "2001:db8:1:2::/64");
        let mapped: IpAddr = "::ffff:127.0.0.2".parse().unwrap();
        assert_eq!(Source::from(mapped), src(2));
    }
}
