//! Stored Responses API responses (`previous_response_id`, `GET /v1/responses/{id}`) in the
//! persistent and shared tiers the response cache has, so a conversation survives a restart
//! and any replica can continue it:
//!
//! - disk: the table `stored_responses_v1` of the cache's redb file (`[cache.disk] path`),
//!   bounded by `[cache.disk] stored_responses_max_bytes`, oldest written first out;
//! - Redis: the keys `{namespace}/responses:{hex}` (`[cache.redis] namespace`), expiring after
//!   `[cache.redis] ttl_seconds`.
//!
//! They are state the server must keep, not answers it may replay: `DELETE /v1/cache` leaves
//! them alone (another table, keys outside the cache's `{namespace}:*`), and they use each tier
//! whenever it is configured, `[cache] enabled` or not.
//!
//! Values are opaque here: the owner (the server's response store, which also holds the memory
//! tier) seals and checks them and derives each key from tenant and id. A failing tier
//! degrades like the cache's: logged (Redis once per outage), counted as a tier error
//! (`disk`, `redis`), skipped; never an error for the caller.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use actix::Recipient;
use redis::aio::ConnectionManager;
use tokio::sync::Notify;

use super::disk::DiskTier;
use super::key::CacheKey;
use super::redis_tier::{self, RedisTier};
use super::settings::CacheSettings;
use super::stats::CacheTier;
use crate::metrics::CacheTierError;

/// The redb table of stored responses.
pub const STORED_TABLE: &str = "stored_responses_v1";

/// What the key of a stored value is in Redis, under a namespace.
pub fn stored_redis_key(namespace: &str, key: &CacheKey) -> String {
    format!("{namespace}/responses:{}", key.to_hex())
}

/// The disk and Redis tiers of stored responses; either may be absent. Cheap to share behind
/// an `Arc`; every method may be called from any thread of the runtime.
#[derive(Default)]
pub struct StoredTiers {
    disk: Option<DiskTier>,
    redis: Option<Arc<Mutex<RedisTier>>>,
    /// Woken when a connection attempt ends.
    connected: Arc<Notify>,
    errors: Arc<OnceLock<Recipient<CacheTierError>>>,
}

impl std::fmt::Debug for StoredTiers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredTiers")
            .field("disk", &self.disk.as_ref().map(DiskTier::path))
            .field("redis", &self.redis.is_some())
            .finish()
    }
}

impl StoredTiers {
    /// The tiers `settings` configure. Never fails: a tier that cannot be opened is logged and
    /// left out. Inside a Tokio runtime the Redis connection is started at once.
    pub fn open(settings: &CacheSettings) -> Self {
        let disk = settings.disk.enabled.then(|| {
            let path = &settings.disk.path;
            match DiskTier::open_table(path, STORED_TABLE, settings.disk.stored_responses_max_bytes)
            {
                Ok((disk, dropped)) => {
                    if dropped > 0 {
                        tracing::warn!(dropped, "dropped malformed stored responses on disk");
                    }
                    tracing::info!(path = %path.display(), items = disk.items(),
                        "stored responses kept on disk");
                    Some(disk)
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e,
                        "stored responses cannot use the disk tier; keeping them in memory");
                    None
                }
            }
        });
        let disk = disk.flatten();
        let redis = settings.redis.url.as_ref().and_then(|url| {
            match RedisTier::new(url, settings.redis.clone()) {
                Ok(tier) => Some(Arc::new(Mutex::new(tier))),
                Err(e) => {
                    tracing::warn!(error = %e,
                        "invalid redis URL; stored responses stay on this replica");
                    None
                }
            }
        });
        let tiers = Self {
            disk,
            redis,
            connected: Arc::default(),
            errors: Arc::default(),
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            drop(tiers.start_connect());
        }
        tiers
    }

    /// Whether a disk tier is open.
    pub fn has_disk(&self) -> bool {
        self.disk.is_some()
    }

    /// Whether a Redis tier is configured.
    pub fn has_redis(&self) -> bool {
        self.redis.is_some()
    }

    /// Count failed operations as `CacheTierError` events sent to `to` from now on (the first
    /// recipient given is kept).
    pub fn report_errors_to(&self, to: Recipient<CacheTierError>) {
        let _ = self.errors.set(to);
    }

    /// The value under `key`: from disk, else from Redis, with the tier it came from. `decode`
    /// checks a value; one it refuses is a miss (and is deleted from disk).
    pub async fn get<T>(
        &self,
        key: &CacheKey,
        decode: impl Fn(&[u8]) -> Option<T>,
    ) -> Option<(T, CacheTier)> {
        if let Some(disk) = &self.disk {
            // A read is microseconds against the page cache: done inline, like the cache's.
            match disk.get_bytes(key) {
                Ok(None) => {}
                Ok(Some(bytes)) => match decode(&bytes) {
                    Some(value) => return Some((value, CacheTier::Disk)),
                    None => {
                        tracing::warn!("a stored response on disk is corrupt; dropped");
                        self.disk_remove(disk.clone(), *key).await;
                    }
                },
                Err(e) => self.disk_failed(&e),
            }
        }
        let (conn, name, timeout) = self.redis_op(key).await?;
        let bytes = self.redis_record(redis_tier::get(conn, name, timeout).await)??;
        let value = decode(&bytes);
        if value.is_none() {
            tracing::warn!("a stored response in redis is corrupt; ignored");
        }
        Some((value?, CacheTier::Redis))
    }

    /// Writes `value` under `key` to every tier; returns once each has answered (or failed).
    pub async fn put(&self, key: CacheKey, value: Vec<u8>) {
        let disk = async {
            let Some(disk) = self.disk.clone() else {
                return;
            };
            let value = value.clone();
            match tokio::task::spawn_blocking(move || disk.put(&key, &value)).await {
                Ok(Ok(_evicted)) => {}
                Ok(Err(e)) => self.disk_failed(&e),
                Err(e) => self.disk_failed(&e),
            }
        };
        let redis = async {
            let Some((conn, name, timeout)) = self.redis_op(&key).await else {
                return;
            };
            let ttl = self.redis_ttl();
            let stored = redis_tier::set(conn, name, value.clone(), ttl, timeout).await;
            self.redis_record(stored);
        };
        tokio::join!(disk, redis);
    }

    /// Deletes `key` from every tier; whether any tier held it.
    pub async fn remove(&self, key: CacheKey) -> bool {
        let disk = async {
            match self.disk.clone() {
                Some(disk) => self.disk_remove(disk, key).await,
                None => false,
            }
        };
        let redis = async {
            let Some((conn, name, timeout)) = self.redis_op(&key).await else {
                return false;
            };
            let deleted = redis_tier::del(conn, name, timeout).await;
            self.redis_record(deleted).unwrap_or(false)
        };
        let (on_disk, in_redis) = tokio::join!(disk, redis);
        on_disk || in_redis
    }

    async fn disk_remove(&self, disk: DiskTier, key: CacheKey) -> bool {
        match tokio::task::spawn_blocking(move || disk.remove(&key)).await {
            Ok(Ok(present)) => present,
            Ok(Err(e)) => {
                self.disk_failed(&e);
                false
            }
            Err(e) => {
                self.disk_failed(&e);
                false
            }
        }
    }

    fn disk_failed(&self, e: &dyn std::fmt::Display) {
        tracing::warn!(error = %e, "stored responses: disk tier operation failed");
        report(&self.errors, "disk");
    }

    fn redis_ttl(&self) -> u64 {
        self.redis.as_ref().map_or(1, |r| lock(r).ttl_seconds())
    }

    /// A connection, the Redis name of `key` and the operation timeout; `None` when there is
    /// no Redis tier or it is down (not due for a probe). A connection being made is waited
    /// for at most one operation's timeout.
    async fn redis_op(&self, key: &CacheKey) -> Option<(ConnectionManager, String, Duration)> {
        let redis = self.redis.as_ref()?;
        let ready = |t: &RedisTier| {
            t.connection(Instant::now())
                .map(|c| (c, stored_redis_key(t.namespace(), key), t.timeout()))
        };
        // Made before looking, so the end of an attempt under way cannot be missed.
        let attempt_ended = self.connected.notified();
        let (op, connecting, timeout) = {
            let tier = lock(redis);
            (ready(&tier), tier.connecting(), tier.timeout())
        };
        if op.is_some() {
            return op;
        }
        if !connecting && self.start_connect().is_none() {
            return None;
        }
        let _ = tokio::time::timeout(timeout, attempt_ended).await;
        ready(&lock(redis))
    }

    /// Starts connecting in the background when an attempt is due; the task to wait on.
    fn start_connect(&self) -> Option<tokio::task::JoinHandle<()>> {
        let redis = self.redis.clone()?;
        let (client, timeout) = {
            let mut tier = lock(&redis);
            (tier.start_connect(Instant::now())?, tier.timeout())
        };
        let errors = self.errors.clone();
        let connected = self.connected.clone();
        Some(tokio::spawn(async move {
            let result = redis_tier::connect(client, timeout).await;
            if result.is_err() {
                report(&errors, "redis");
            }
            lock(&redis).connected(result, Instant::now());
            connected.notify_waiters();
        }))
    }

    /// Records an operation's outcome in the tier's health; its value when it succeeded.
    fn redis_record<T>(&self, result: Result<T, redis_tier::RedisOpError>) -> Option<T> {
        let redis = self.redis.as_ref()?;
        let now = Instant::now();
        match result {
            Ok(value) => {
                lock(redis).record(Ok(()), now);
                Some(value)
            }
            Err(e) => {
                lock(redis).record(Err(e), now);
                report(&self.errors, "redis");
                None
            }
        }
    }
}

fn lock(redis: &Mutex<RedisTier>) -> MutexGuard<'_, RedisTier> {
    // Health bookkeeping only; a panic elsewhere leaves nothing worse than a stale backoff.
    redis
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn report(errors: &OnceLock<Recipient<CacheTierError>>, tier: &str) {
    if let Some(to) = errors.get() {
        to.do_send(CacheTierError { tier: tier.into() });
    }
}

#[cfg(test)]
#[path = "stored_tests.rs"]
mod tests;
