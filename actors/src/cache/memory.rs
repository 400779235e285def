//! `ResponseCache`: the synchronous heart of the cache. An LRU bounded by entries and bytes with
//! optional TTL, the coalescing registry, the optional disk tier and the counters. The actor is
//! a thin shell over it that adds the (async) Redis tier.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hashlink::LruCache;

use super::disk::{DiskGet, DiskTier};
use super::entry::{unix_now, CachedResponse};
use super::inflight::{Inflight, Join, LeaderId, Waiter};
use super::key::CacheKey;
use super::report::Snapshot;
use super::settings::CacheSettings;
use super::stats::{CacheStats, CacheTier, Counters};

struct MemEntry {
    value: Arc<CachedResponse>,
    bytes: u64,
    expires: Option<Instant>,
}

/// What the local tiers say about a key.
#[derive(Debug)]
pub enum LocalLookup {
    /// Found in memory or on disk (promoted to memory).
    Hit(Arc<CachedResponse>, CacheTier),
    /// An identical request is generating; wait for it.
    Wait(Waiter),
    /// Not found and nobody is generating it: the caller leads (and must later `store` or
    /// `abandon`). Not yet counted as a miss: a shared tier may still answer.
    Lead(LeaderId),
}

/// The in-process response cache.
pub struct ResponseCache {
    lru: LruCache<CacheKey, MemEntry>,
    bytes: u64,
    max_entries: usize,
    max_bytes: u64,
    ttl: Option<Duration>,
    inflight: Inflight,
    disk: Option<DiskTier>,
    counters: Counters,
}

impl ResponseCache {
    /// A memory-only cache with the bounds and TTL of `settings` (its disk and Redis tables are
    /// ignored here; see [`ResponseCache::with_disk`]).
    pub fn new(settings: &CacheSettings) -> Self {
        Self {
            lru: LruCache::new_unbounded(),
            bytes: 0,
            max_entries: settings.max_entries,
            max_bytes: settings.max_bytes,
            ttl: settings.ttl_seconds.map(Duration::from_secs),
            inflight: Inflight::default(),
            disk: None,
            counters: Counters::default(),
        }
    }

    /// Adds the persistent tier; lookups that miss memory consult it.
    pub fn with_disk(mut self, disk: DiskTier) -> Self {
        self.disk = Some(disk);
        self
    }

    /// The disk tier, for writes the actor runs off its thread.
    pub fn disk(&self) -> Option<&DiskTier> {
        self.disk.as_ref()
    }

    /// Looks `key` up in memory, then among in-flight requests, then on disk.
    pub fn lookup(&mut self, key: &CacheKey) -> LocalLookup {
        self.lookup_at(key, Instant::now())
    }

    pub(crate) fn lookup_at(&mut self, key: &CacheKey, now: Instant) -> LocalLookup {
        if let Some(value) = self.memory_get(key, now) {
            self.counters.count_hit(CacheTier::Memory);
            return LocalLookup::Hit(value, CacheTier::Memory);
        }
        // Joining before the disk read keeps a flight from starting while the value is on disk:
        // a disk hit resolves the flight at once.
        let leader = match self.inflight.join(*key, now) {
            Join::Wait(waiter) => {
                self.counters.count_hit(CacheTier::Coalesced);
                return LocalLookup::Wait(waiter);
            }
            Join::Lead(leader) => leader,
        };
        if let Some(value) = self.disk_get(key) {
            let value = Arc::new(value);
            self.fill(key, Arc::clone(&value), CacheTier::Disk, now);
            return LocalLookup::Hit(value, CacheTier::Disk);
        }
        LocalLookup::Lead(leader)
    }

    /// A leader's lookup found nothing anywhere: count the miss.
    pub fn record_miss(&mut self) {
        self.counters.misses += 1;
    }

    /// A leader found the value in a shared tier: promote it to memory, wake waiters, count a hit.
    pub fn fill(
        &mut self,
        key: &CacheKey,
        value: Arc<CachedResponse>,
        tier: CacheTier,
        now: Instant,
    ) {
        self.counters.count_hit(tier);
        self.memory_insert(*key, Arc::clone(&value), now);
        self.inflight.resolve(key, &value);
    }

    /// Stores a finished response (from the leader or anyone else) and wakes waiters. Returns
    /// false when the value is not cacheable: then the waiters are released to generate.
    pub fn store(&mut self, key: &CacheKey, value: Arc<CachedResponse>) -> bool {
        self.store_at(key, value, Instant::now())
    }

    pub(crate) fn store_at(
        &mut self,
        key: &CacheKey,
        value: Arc<CachedResponse>,
        now: Instant,
    ) -> bool {
        if !value.is_cacheable() {
            self.inflight.release_any(key);
            return false;
        }
        self.counters.stores += 1;
        self.memory_insert(*key, Arc::clone(&value), now);
        self.inflight.resolve(key, &value);
        true
    }

    /// The leader failed or gave up: release its waiters.
    pub fn abandon(&mut self, key: &CacheKey, leader: LeaderId) {
        self.inflight.release(key, leader);
    }

    /// Drops these keys from memory (a model was unloaded); returns how many were held. The
    /// persistent tiers keep theirs: they are keyed by model and meant to outlive the process.
    pub fn forget(&mut self, keys: &[CacheKey]) -> usize {
        let mut removed = 0;
        for key in keys {
            if let Some(old) = self.lru.remove(key) {
                self.bytes -= old.bytes;
                removed += 1;
            }
        }
        removed
    }

    /// Empties memory and disk; returns entries removed from memory. Counters are kept.
    pub fn clear(&mut self) -> usize {
        let removed = self.lru.len();
        self.lru.clear();
        self.bytes = 0;
        if let Some(disk) = &self.disk {
            if let Err(e) = disk.clear() {
                self.counters.disk_failures += 1;
                tracing::warn!(error = %e, "clearing the disk cache failed");
            }
        }
        removed
    }

    /// Counts a disk write that failed (writes run outside this struct).
    pub fn record_disk_failure(&mut self) {
        self.counters.disk_failures += 1;
    }

    /// Counts entries dropped as corrupt by another tier.
    pub fn record_corrupt(&mut self, n: u64) {
        self.counters.corrupt_dropped += n;
    }

    /// Occupancy and failure counts for the metrics (Redis failures are the actor's).
    pub(crate) fn report_snapshot(&self) -> Snapshot {
        Snapshot {
            entries: self.lru.len() as u64,
            bytes: self.bytes,
            evictions_total: self.counters.evictions,
            disk_failures: self.counters.disk_failures,
            redis_failures: 0,
        }
    }

    /// A snapshot of counters and occupancy (Redis fields left at their defaults).
    pub fn stats(&self) -> CacheStats {
        let c = &self.counters;
        let hits = c.hits();
        let total = hits + c.misses + c.coalesced;
        CacheStats {
            enabled: true,
            hits,
            misses: c.misses,
            total_requests: total,
            hit_rate: if total == 0 {
                0.0
            } else {
                hits as f64 / total as f64
            },
            cached_items: self.lru.len(),
            bytes: self.bytes,
            max_entries: self.max_entries,
            max_bytes: self.max_bytes,
            evictions: c.evictions,
            expired: c.expired,
            stores: c.stores,
            coalesced: c.coalesced,
            in_flight: self.inflight.len(),
            memory_hits: c.memory_hits,
            disk_hits: c.disk_hits,
            redis_hits: c.redis_hits,
            disk_items: self.disk.as_ref().map_or(0, |d| d.items() as usize),
            disk_bytes: self.disk.as_ref().map_or(0, DiskTier::bytes),
            corrupt_dropped: c.corrupt_dropped,
            disk_failures: c.disk_failures,
            ..CacheStats::default()
        }
    }

    fn memory_get(&mut self, key: &CacheKey, now: Instant) -> Option<Arc<CachedResponse>> {
        let expired = match self.lru.get(key) {
            None => return None,
            Some(entry) => entry.expires.is_some_and(|at| now >= at),
        };
        if expired {
            if let Some(entry) = self.lru.remove(key) {
                self.bytes -= entry.bytes;
            }
            self.counters.expired += 1;
            return None;
        }
        self.lru.get(key).map(|entry| Arc::clone(&entry.value))
    }

    fn memory_insert(&mut self, key: CacheKey, value: Arc<CachedResponse>, now: Instant) {
        let bytes = value.approx_bytes() as u64;
        if let Some(old) = self.lru.remove(&key) {
            self.bytes -= old.bytes;
        }
        if bytes > self.max_bytes || self.max_entries == 0 {
            return;
        }
        while self.lru.len() >= self.max_entries || self.bytes + bytes > self.max_bytes {
            match self.lru.remove_lru() {
                Some((_, evicted)) => {
                    self.bytes -= evicted.bytes;
                    self.counters.evictions += 1;
                }
                None => break,
            }
        }
        // Entries promoted from another tier keep the age they had there.
        let age = Duration::from_secs(unix_now().saturating_sub(value.created_at));
        let expires = self
            .ttl
            .map(|ttl| now + ttl.checked_sub(age).unwrap_or_default());
        self.bytes += bytes;
        self.lru.insert(
            key,
            MemEntry {
                value,
                bytes,
                expires,
            },
        );
    }

    fn disk_get(&mut self, key: &CacheKey) -> Option<CachedResponse> {
        let disk = self.disk.as_ref()?;
        match disk.get(key, self.ttl.map(|t| t.as_secs())) {
            Ok(DiskGet::Hit(value)) => Some(value),
            Ok(DiskGet::Missing) => None,
            Ok(DiskGet::Expired) => {
                self.counters.expired += 1;
                None
            }
            Ok(DiskGet::Corrupt) => {
                self.counters.corrupt_dropped += 1;
                tracing::warn!(?key, "dropped a corrupt disk cache entry");
                None
            }
            Err(e) => {
                self.counters.disk_failures += 1;
                tracing::warn!(error = %e, "disk cache read failed; treating as a miss");
                None
            }
        }
    }
}

#[cfg(test)]
#[path = "memory_tests.rs"]
mod tests;
