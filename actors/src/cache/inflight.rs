//! Request coalescing: while one request (the leader) generates an answer, identical requests
//! wait for it instead of generating again.
//!
//! Nothing may hang: a leader that stores resolves its waiters with the value; one that fails,
//! aborts or is dropped releases them (`None`) to generate themselves; a waiter whose cache goes
//! away sees its channel close, which reads as released too.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::entry::CachedResponse;
use super::key::CacheKey;

/// Identifies one leadership, so a late `Abandon` from an old leader cannot release a newer one.
pub type LeaderId = u64;

/// A flight older than this is presumed leaked (a leader that never reported back) and is
/// replaced, releasing its waiters; far longer than any generation.
const MAX_FLIGHT_AGE: Duration = Duration::from_secs(30 * 60);

/// Waits for the leader of an identical request.
#[derive(Debug)]
pub struct Waiter(oneshot::Receiver<Option<Arc<CachedResponse>>>);

impl Waiter {
    /// The leader's answer, or `None` when the leader failed or vanished: then generate yourself.
    pub async fn wait(self) -> Option<Arc<CachedResponse>> {
        self.0.await.ok().flatten()
    }
}

/// Outcome of joining the flight for a key.
#[derive(Debug)]
pub(crate) enum Join {
    /// Nobody is generating this key: the caller leads.
    Lead(LeaderId),
    /// Someone is: wait for them.
    Wait(Waiter),
}

struct Flight {
    leader: LeaderId,
    started: Instant,
    waiters: Vec<oneshot::Sender<Option<Arc<CachedResponse>>>>,
}

/// The flights in progress, by key.
#[derive(Default)]
pub(crate) struct Inflight {
    flights: HashMap<CacheKey, Flight>,
    next_leader: LeaderId,
}

impl Inflight {
    /// Lead a new flight for `key`, or wait on the one in progress.
    pub(crate) fn join(&mut self, key: CacheKey, now: Instant) -> Join {
        if let Some(flight) = self.flights.get_mut(&key) {
            if now.saturating_duration_since(flight.started) < MAX_FLIGHT_AGE {
                let (tx, rx) = oneshot::channel();
                flight.waiters.push(tx);
                return Join::Wait(Waiter(rx));
            }
            tracing::warn!(
                ?key,
                "replacing a cache flight whose leader never reported back"
            );
            let stale = flight.leader;
            self.release(&key, stale);
        }
        self.next_leader += 1;
        let leader = self.next_leader;
        self.flights.insert(
            key,
            Flight {
                leader,
                started: now,
                waiters: Vec::new(),
            },
        );
        Join::Lead(leader)
    }

    /// Any valid answer for `key` ends its flight, whoever produced it. Returns waiters served.
    pub(crate) fn resolve(&mut self, key: &CacheKey, value: &Arc<CachedResponse>) -> usize {
        self.finish(key, None, Some(value))
    }

    /// The leader `leader` gave up: its waiters generate themselves. A stale leader id is ignored.
    pub(crate) fn release(&mut self, key: &CacheKey, leader: LeaderId) -> usize {
        self.finish(key, Some(leader), None)
    }

    /// Whoever leads `key`, its flight ends without an answer (the value was not cacheable).
    pub(crate) fn release_any(&mut self, key: &CacheKey) -> usize {
        self.finish(key, None, None)
    }

    /// Flights in progress.
    pub(crate) fn len(&self) -> usize {
        self.flights.len()
    }

    fn finish(
        &mut self,
        key: &CacheKey,
        only_leader: Option<LeaderId>,
        value: Option<&Arc<CachedResponse>>,
    ) -> usize {
        let matches = match (self.flights.get(key), only_leader) {
            (None, _) => false,
            (Some(flight), Some(leader)) => flight.leader == leader,
            (Some(_), None) => true,
        };
        if !matches {
            return 0;
        }
        let Some(flight) = self.flights.remove(key) else {
            return 0;
        };
        let mut served = 0;
        for waiter in flight.waiters {
            // A waiter whose request went away has dropped its receiver; nothing to do for it.
            if waiter.send(value.cloned()).is_ok() {
                served += 1;
            }
        }
        served
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::entry::sample;

    fn key(n: u8) -> CacheKey {
        CacheKey::from_bytes([n; 32])
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn second_identical_request_waits_and_gets_the_leaders_value() {
        let mut inflight = Inflight::default();
        let now = Instant::now();
        let Join::Lead(_) = inflight.join(key(1), now) else {
            panic!("first request must lead");
        };
        let Join::Wait(waiter) = inflight.join(key(1), now) else {
            panic!("second request must wait");
        };
        // A different key is not coalesced.
        assert!(matches!(inflight.join(key(2), now), Join::Lead(_)));
        let value = Arc::new(sample("answer"));
        assert_eq!(inflight.resolve(&key(1), &value), 1);
        assert_eq!(block_on(waiter.wait()).as_deref(), Some(&*value));
        assert_eq!(inflight.len(), 1);
    }

    #[test]
    fn abandoning_leader_releases_waiters_and_stale_ids_are_ignored() {
        let mut inflight = Inflight::default();
        let now = Instant::now();
        let Join::Lead(first) = inflight.join(key(1), now) else {
            panic!("lead");
        };
        let Join::Wait(w1) = inflight.join(key(1), now) else {
            panic!("wait");
        };
        assert_eq!(inflight.release(&key(1), first), 1);
        assert_eq!(block_on(w1.wait()), None);

        let Join::Lead(second) = inflight.join(key(1), now) else {
            panic!("a released key is led anew");
        };
        let Join::Wait(w2) = inflight.join(key(1), now) else {
            panic!("wait");
        };
        assert_eq!(inflight.release(&key(1), first), 0, "stale leader id");
        assert_eq!(inflight.len(), 1);
        assert_eq!(inflight.release(&key(1), second), 1);
        assert_eq!(block_on(w2.wait()), None);
    }

    #[test]
    fn dropped_registry_releases_waiters_instead_of_hanging() {
        let mut inflight = Inflight::default();
        let now = Instant::now();
        let _ = inflight.join(key(1), now);
        let Join::Wait(waiter) = inflight.join(key(1), now) else {
            panic!("wait");
        };
        drop(inflight);
        assert_eq!(block_on(waiter.wait()), None);
    }

    #[test]
    fn leaked_flight_is_replaced_after_max_age() {
        let mut inflight = Inflight::default();
        let now = Instant::now();
        let _ = inflight.join(key(1), now);
        let Join::Wait(waiter) = inflight.join(key(1), now) else {
            panic!("wait");
        };
        let later = now + MAX_FLIGHT_AGE + Duration::from_secs(1);
        assert!(matches!(inflight.join(key(1), later), Join::Lead(_)));
        assert_eq!(block_on(waiter.wait()), None);
    }
}
