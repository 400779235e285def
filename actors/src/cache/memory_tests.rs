use super::*;
use crate::cache::entry::{encode, sample};
use crate::cache::settings::CachePolicy;

fn key(n: u8) -> CacheKey {
    CacheKey::from_bytes([n; 32])
}

fn settings(max_entries: usize, max_bytes: u64, ttl: Option<u64>) -> CacheSettings {
    CacheSettings {
        max_entries,
        max_bytes,
        ttl_seconds: ttl,
        policy: CachePolicy::Always,
        ..CacheSettings::default()
    }
}

fn lead(cache: &mut ResponseCache, k: &CacheKey) -> LeaderId {
    match cache.lookup(k) {
        LocalLookup::Lead(id) => id,
        other => panic!("expected to lead, got {other:?}"),
    }
}

#[test]
fn store_then_lookup_hits_memory_and_counts() {
    let mut cache = ResponseCache::new(&settings(8, 1 << 20, None));
    let _ = lead(&mut cache, &key(1));
    cache.record_miss();
    assert!(cache.store(&key(1), Arc::new(sample("hi"))));
    match cache.lookup(&key(1)) {
        LocalLookup::Hit(v, CacheTier::Memory) => assert_eq!(v.text, "hi"),
        other => panic!("expected a memory hit, got {other:?}"),
    }
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses, stats.total_requests), (1, 1, 2));
    assert_eq!(stats.memory_hits, 1);
    assert!((stats.hit_rate - 0.5).abs() < 1e-9);
    assert_eq!(stats.cached_items, 1);
    assert_eq!(stats.stores, 1);
    assert!(stats.bytes > 0);
}

#[test]
fn entry_bound_evicts_least_recently_used() {
    let mut cache = ResponseCache::new(&settings(2, 1 << 20, None));
    cache.store(&key(1), Arc::new(sample("a")));
    cache.store(&key(2), Arc::new(sample("b")));
    // Touch 1 so 2 becomes the least recently used.
    assert!(matches!(cache.lookup(&key(1)), LocalLookup::Hit(..)));
    cache.store(&key(3), Arc::new(sample("c")));
    assert!(matches!(cache.lookup(&key(1)), LocalLookup::Hit(..)));
    assert!(matches!(cache.lookup(&key(3)), LocalLookup::Hit(..)));
    assert!(matches!(cache.lookup(&key(2)), LocalLookup::Lead(_)));
    let stats = cache.stats();
    assert_eq!(stats.cached_items, 2);
    assert_eq!(stats.evictions, 1);
}

#[test]
fn byte_bound_holds_and_oversized_values_are_not_kept() {
    let one = sample(&"x".repeat(1000)).approx_bytes() as u64;
    let mut cache = ResponseCache::new(&settings(100, 3 * one, None));
    for n in 0..5 {
        cache.store(&key(n), Arc::new(sample(&"x".repeat(1000))));
        assert!(cache.stats().bytes <= 3 * one);
    }
    assert_eq!(cache.stats().cached_items, 3);
    assert_eq!(cache.stats().evictions, 2);
    cache.store(&key(9), Arc::new(sample(&"y".repeat(10_000))));
    assert!(matches!(cache.lookup(&key(9)), LocalLookup::Lead(_)));
    assert_eq!(cache.stats().cached_items, 3);
    // Replacing a key does not double-count its bytes.
    let before = cache.stats().bytes;
    cache.store(&key(4), Arc::new(sample(&"x".repeat(1000))));
    assert_eq!(cache.stats().bytes, before);
}

#[test]
fn ttl_expires_entries() {
    let mut cache = ResponseCache::new(&settings(8, 1 << 20, Some(60)));
    let now = Instant::now();
    cache.store_at(&key(1), Arc::new(sample("a")), now);
    assert!(matches!(
        cache.lookup_at(&key(1), now + Duration::from_secs(59)),
        LocalLookup::Hit(..)
    ));
    assert!(matches!(
        cache.lookup_at(&key(1), now + Duration::from_secs(61)),
        LocalLookup::Lead(_)
    ));
    let stats = cache.stats();
    assert_eq!(stats.expired, 1);
    assert_eq!(stats.cached_items, 0);
    assert_eq!(stats.bytes, 0);
}

#[test]
fn promoted_entries_keep_their_age_against_ttl() {
    let mut cache = ResponseCache::new(&settings(8, 1 << 20, Some(60)));
    let now = Instant::now();
    let mut old = sample("a");
    old.created_at = unix_now() - 50;
    cache.fill(&key(1), Arc::new(old), CacheTier::Redis, now);
    assert!(matches!(
        cache.lookup_at(&key(1), now),
        LocalLookup::Hit(..)
    ));
    assert!(matches!(
        cache.lookup_at(&key(1), now + Duration::from_secs(15)),
        LocalLookup::Lead(_)
    ));
}

#[test]
fn identical_lookups_coalesce_until_the_leader_stores() {
    let mut cache = ResponseCache::new(&settings(8, 1 << 20, None));
    let leader = lead(&mut cache, &key(1));
    let LocalLookup::Wait(waiter) = cache.lookup(&key(1)) else {
        panic!("second lookup must wait");
    };
    assert_eq!(cache.stats().in_flight, 1);
    assert_eq!(cache.stats().coalesced, 1);
    cache.store(&key(1), Arc::new(sample("shared")));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    assert_eq!(
        rt.block_on(waiter.wait()).map(|v| v.text.clone()),
        Some("shared".to_owned())
    );
    assert_eq!(cache.stats().in_flight, 0);
    // A late abandon from the finished leader changes nothing.
    cache.abandon(&key(1), leader);
    assert!(matches!(cache.lookup(&key(1)), LocalLookup::Hit(..)));
}

#[test]
fn uncacheable_store_is_refused_and_abandon_releases_waiters() {
    let mut cache = ResponseCache::new(&settings(8, 1 << 20, None));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let _ = lead(&mut cache, &key(1));
    let LocalLookup::Wait(waiter) = cache.lookup(&key(1)) else {
        panic!("wait");
    };
    let mut partial = sample("par");
    partial.finish_reason = mlx_serve_engine::engine::FinishReason::Cancelled;
    assert!(!cache.store(&key(1), Arc::new(partial)));
    assert_eq!(rt.block_on(waiter.wait()), None);
    assert_eq!(cache.stats().cached_items, 0);
    assert_eq!(cache.stats().in_flight, 0);

    let leader = lead(&mut cache, &key(2));
    let LocalLookup::Wait(waiter) = cache.lookup(&key(2)) else {
        panic!("wait");
    };
    cache.abandon(&key(2), leader);
    assert_eq!(rt.block_on(waiter.wait()), None);
}

#[test]
fn disk_hits_are_promoted_to_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (disk, _) = DiskTier::open(&dir.path().join("c.redb"), 1 << 20).expect("open");
    disk.put(&key(1), &encode(&sample("from disk")))
        .expect("put");
    let mut cache = ResponseCache::new(&settings(8, 1 << 20, None)).with_disk(disk);
    match cache.lookup(&key(1)) {
        LocalLookup::Hit(v, CacheTier::Disk) => assert_eq!(v.text, "from disk"),
        other => panic!("expected a disk hit, got {other:?}"),
    }
    assert!(matches!(
        cache.lookup(&key(1)),
        LocalLookup::Hit(_, CacheTier::Memory)
    ));
    let stats = cache.stats();
    assert_eq!((stats.disk_hits, stats.memory_hits), (1, 1));
    assert_eq!(stats.in_flight, 0);
    assert_eq!(stats.disk_items, 1);
    assert_eq!(cache.clear(), 1);
    assert_eq!(cache.stats().disk_items, 0);
    assert!(matches!(cache.lookup(&key(1)), LocalLookup::Lead(_)));
}
