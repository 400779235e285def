//! Reporting the cache's occupancy and tier failures to the metrics as they change.
//!
//! The actor takes a [`Snapshot`] after every message that can change memory or count a failure
//! and sends only the difference from the last one it reported: a `CacheState` when occupancy or
//! evictions moved, one `CacheTierError` per new failure of a tier.

use actix::Recipient;

use crate::metrics::{CacheState, CacheTierError};

/// Where the cache reports (in the server: the metrics actor).
#[derive(Clone)]
pub struct CacheReporter {
    /// Occupancy and the running evictions total, after each change.
    pub state: Recipient<CacheState>,
    /// One event per failed disk or Redis operation.
    pub tier_errors: Recipient<CacheTierError>,
}

/// The cache's reportable numbers at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub entries: u64,
    pub bytes: u64,
    pub evictions_total: u64,
    pub disk_failures: u64,
    pub redis_failures: u64,
}

/// The events that take the metrics from `last` (`None`: nothing reported yet) to `now`.
pub(crate) fn changes(
    last: Option<&Snapshot>,
    now: &Snapshot,
) -> (Option<CacheState>, Vec<CacheTierError>) {
    let base = last.copied().unwrap_or_default();
    let state = CacheState {
        entries: now.entries,
        bytes: now.bytes,
        evictions_total: now.evictions_total,
    };
    let moved = last.is_none()
        || (base.entries, base.bytes, base.evictions_total)
            != (now.entries, now.bytes, now.evictions_total);
    let mut errors = Vec::new();
    for (tier, before, after) in [
        ("disk", base.disk_failures, now.disk_failures),
        ("redis", base.redis_failures, now.redis_failures),
    ] {
        for _ in before..after {
            errors.push(CacheTierError { tier: tier.into() });
        }
    }
    (moved.then_some(state), errors)
}

/// A reporter and what it last sent.
pub(crate) struct Reporting {
    to: CacheReporter,
    last: Option<Snapshot>,
}

impl Reporting {
    pub(crate) fn new(to: CacheReporter) -> Self {
        Self { to, last: None }
    }

    /// Sends what changed since the last call (everything on the first).
    pub(crate) fn report(&mut self, now: Snapshot) {
        let (state, errors) = changes(self.last.as_ref(), &now);
        if let Some(state) = state {
            self.to.state.do_send(state);
        }
        for error in errors {
            self.to.tier_errors.do_send(error);
        }
        self.last = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_report_sends_state_and_later_ones_only_changes() {
        let now = Snapshot {
            entries: 1,
            bytes: 300,
            ..Snapshot::default()
        };
        let (state, errors) = changes(None, &now);
        assert_eq!(state.map(|s| (s.entries, s.bytes)), Some((1, 300)));
        assert!(errors.is_empty());
        assert_eq!(changes(Some(&now), &now), (None, vec![]));
        let evicted = Snapshot {
            evictions_total: 1,
            ..now
        };
        let (state, _) = changes(Some(&now), &evicted);
        assert_eq!(state.map(|s| s.evictions_total), Some(1));
    }

    #[test]
    fn each_new_tier_failure_is_one_error_event() {
        let last = Snapshot {
            redis_failures: 2,
            ..Snapshot::default()
        };
        let now = Snapshot {
            disk_failures: 1,
            redis_failures: 4,
            ..Snapshot::default()
        };
        let (state, errors) = changes(Some(&last), &now);
        assert_eq!(state, None);
        let tiers: Vec<_> = errors.iter().map(|e| e.tier.as_str()).collect();
        assert_eq!(tiers, ["disk", "redis", "redis"]);
    }
}
