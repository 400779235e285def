//! Cache statistics, as `/health` and `GET /v1/cache/stats` show them.

use serde::{Deserialize, Serialize};

/// Where a hit came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheTier {
    /// The in-process LRU.
    Memory,
    /// The embedded on-disk store.
    Disk,
    /// The shared Redis tier.
    Redis,
    /// Another request's generation that this one waited for.
    Coalesced,
}

/// A snapshot of the cache's counters and occupancy. Counters are since start or the last
/// `Clear` (which resets occupancy, not counters).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CacheStats {
    /// Whether caching is on at all.
    pub enabled: bool,
    /// Lookups answered from a tier (memory, disk or Redis).
    pub hits: u64,
    /// Lookups that had to generate (the caller became the leader).
    pub misses: u64,
    /// All lookups: `hits + misses + coalesced`.
    pub total_requests: u64,
    /// `hits / total_requests` (0 when there were none).
    pub hit_rate: f64,
    /// Responses in memory now.
    pub cached_items: usize,
    /// Estimated bytes of responses in memory now.
    pub bytes: u64,
    /// Memory bound on entries.
    pub max_entries: usize,
    /// Memory bound on bytes.
    pub max_bytes: u64,
    /// Entries pushed out of memory by the entry or byte bound.
    pub evictions: u64,
    /// Entries found past their TTL and dropped (all tiers).
    pub expired: u64,
    /// Responses stored.
    pub stores: u64,
    /// Lookups that waited for an identical in-flight request instead of generating.
    pub coalesced: u64,
    /// Identical requests generating right now.
    pub in_flight: usize,
    /// Hits by tier.
    pub memory_hits: u64,
    /// Hits by tier.
    pub disk_hits: u64,
    /// Hits by tier.
    pub redis_hits: u64,
    /// Entries on disk now (0 without a disk tier).
    pub disk_items: usize,
    /// Encoded bytes on disk now.
    pub disk_bytes: u64,
    /// Disk or Redis entries that failed their checksum or did not parse, and were dropped.
    pub corrupt_dropped: u64,
    /// Disk reads or writes that failed.
    pub disk_failures: u64,
    /// Whether a Redis tier is configured.
    pub redis_configured: bool,
    /// Whether Redis is currently considered reachable.
    pub redis_available: bool,
    /// Redis operations that failed or timed out.
    pub redis_failures: u64,
}

/// Running counters owned by [`super::ResponseCache`].
#[derive(Debug, Default, Clone)]
pub(crate) struct Counters {
    pub memory_hits: u64,
    pub disk_hits: u64,
    pub redis_hits: u64,
    pub misses: u64,
    pub coalesced: u64,
    pub evictions: u64,
    pub expired: u64,
    pub stores: u64,
    pub corrupt_dropped: u64,
    pub disk_failures: u64,
}

impl Counters {
    pub(crate) fn hits(&self) -> u64 {
        self.memory_hits + self.disk_hits + self.redis_hits
    }

    pub(crate) fn count_hit(&mut self, tier: CacheTier) {
        match tier {
            CacheTier::Memory => self.memory_hits += 1,
            CacheTier::Disk => self.disk_hits += 1,
            CacheTier::Redis => self.redis_hits += 1,
            CacheTier::Coalesced => self.coalesced += 1,
        }
    }
}
