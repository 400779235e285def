//! Stored-response tiers: persistence across reopening, one file shared with the cache, the
//! byte bound, corrupt values, deletion, and Redis shared by two replicas and away.

use std::time::{Duration, Instant};

use super::*;
use crate::cache::actor_tests::RedisServer;
use crate::cache::entry::{seal, unseal};
use crate::cache::settings::{DiskSettings, RedisSettings};

const MAGIC: &[u8; 4] = b"TEST";

fn key(n: u8) -> CacheKey {
    CacheKey::from_bytes([n; 32])
}

fn value(text: &str) -> Vec<u8> {
    seal(MAGIC, 1, text.as_bytes())
}

fn text(bytes: &[u8]) -> Option<String> {
    let payload = unseal(MAGIC, 1, bytes).ok()?;
    String::from_utf8(payload.to_vec()).ok()
}

fn on_disk(path: &std::path::Path, max_bytes: u64) -> CacheSettings {
    CacheSettings {
        disk: DiskSettings {
            enabled: true,
            path: path.to_owned(),
            stored_responses_max_bytes: max_bytes,
            ..DiskSettings::default()
        },
        ..CacheSettings::default()
    }
}

fn with_redis(url: &str) -> CacheSettings {
    CacheSettings {
        redis: RedisSettings {
            url: Some(url.to_owned()),
            timeout_ms: 200,
            ..RedisSettings::default()
        },
        ..CacheSettings::default()
    }
}

#[actix::test]
async fn a_value_survives_reopening_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sub/cache.redb");
    {
        let tiers = StoredTiers::open(&on_disk(&path, 1 << 20));
        assert!(tiers.has_disk());
        tiers.put(key(1), value("turn one")).await;
    }
    let tiers = StoredTiers::open(&on_disk(&path, 1 << 20));
    assert_eq!(
        tiers.get(&key(1), text).await,
        Some(("turn one".to_owned(), CacheTier::Disk))
    );
    assert_eq!(tiers.get(&key(2), text).await, None);
}

#[actix::test]
async fn stored_values_share_the_cache_file_and_outlive_clearing_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cache.redb");
    let (cache, _) = DiskTier::open(&path, 1 << 20).expect("cache tier opens");
    let tiers = StoredTiers::open(&on_disk(&path, 1 << 20));
    assert!(tiers.has_disk(), "the second table shares the open file");
    cache
        .put(
            &key(1),
            &super::super::entry::encode(&super::super::entry::sample("cached")),
        )
        .expect("cache put");
    tiers.put(key(1), value("stored")).await;
    assert_eq!(cache.clear().expect("clear"), 1);
    assert_eq!(
        tiers.get(&key(1), text).await,
        Some(("stored".to_owned(), CacheTier::Disk))
    );
}

#[actix::test]
async fn the_disk_bound_evicts_the_oldest_value() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = value(&"x".repeat(300));
    // Room for three values with their sequence header.
    let bound = 3 * (one.len() as u64 + 8);
    let tiers = StoredTiers::open(&on_disk(&dir.path().join("c.redb"), bound));
    for n in 1..=4 {
        tiers.put(key(n), value(&"x".repeat(300))).await;
    }
    assert_eq!(tiers.get(&key(1), text).await, None);
    for n in 2..=4 {
        assert!(tiers.get(&key(n), text).await.is_some(), "value {n} kept");
    }
}

#[actix::test]
async fn a_corrupt_value_is_a_miss_and_is_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tiers = StoredTiers::open(&on_disk(&dir.path().join("c.redb"), 1 << 20));
    let mut bad = value("hello");
    let last = bad.len() - 1;
    bad[last] ^= 1;
    tiers.put(key(1), bad).await;
    tiers.put(key(2), b"not sealed at all".to_vec()).await;
    assert_eq!(tiers.get(&key(1), text).await, None);
    assert_eq!(tiers.get(&key(2), text).await, None);
    // Dropped, not just skipped: nothing is left to delete.
    assert!(!tiers.remove(key(1)).await);
    assert!(!tiers.remove(key(2)).await);
}

#[actix::test]
async fn remove_deletes_and_says_whether_it_was_there() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tiers = StoredTiers::open(&on_disk(&dir.path().join("c.redb"), 1 << 20));
    tiers.put(key(1), value("gone soon")).await;
    assert!(tiers.remove(key(1)).await);
    assert!(!tiers.remove(key(1)).await);
    assert_eq!(tiers.get(&key(1), text).await, None);
}

#[actix::test]
async fn without_tiers_nothing_is_found_and_nothing_fails() {
    let tiers = StoredTiers::open(&CacheSettings::default());
    assert!(!tiers.has_disk() && !tiers.has_redis());
    tiers.put(key(1), value("memory only")).await;
    assert_eq!(tiers.get(&key(1), text).await, None);
    assert!(!tiers.remove(key(1)).await);
}

#[actix::test]
async fn an_unreachable_redis_is_skipped_quickly() {
    // Port 1: connection refused at once; every operation must still return promptly.
    let tiers = StoredTiers::open(&with_redis("redis://127.0.0.1:1/"));
    assert!(tiers.has_redis());
    let started = Instant::now();
    tiers.put(key(1), value("nowhere")).await;
    assert_eq!(tiers.get(&key(1), text).await, None);
    assert!(!tiers.remove(key(1)).await);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[actix::test]
async fn replicas_share_stored_values_through_redis_and_survive_its_death() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let url = server.url();
    let a = StoredTiers::open(&with_redis(&url));
    let b = StoredTiers::open(&with_redis(&url));
    a.put(key(1), value("from replica a")).await;
    assert_eq!(
        b.get(&key(1), text).await,
        Some(("from replica a".to_owned(), CacheTier::Redis))
    );
    // The keys stay out of the cache's namespace, which `DELETE /v1/cache` empties.
    let name = stored_redis_key(&RedisSettings::default().namespace, &key(1));
    assert!(!name.starts_with(&format!("{}:", RedisSettings::default().namespace)));

    assert!(b.remove(key(1)).await);
    assert_eq!(a.get(&key(1), text).await, None);

    server.kill();
    let started = Instant::now();
    a.put(key(2), value("redis is gone")).await;
    assert_eq!(b.get(&key(2), text).await, None);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}
