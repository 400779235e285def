//! The `CacheActor`: the response cache that answers identical requests without the model.
//!
//! It owns three tiers, consulted in order on a lookup: an in-memory LRU (bounded by entries and
//! bytes, optional TTL), an embedded on-disk store that survives restarts, and a Redis tier that
//! replicas share. Hits from slower tiers are promoted into memory. Concurrent identical requests
//! coalesce: the first leads (generates and stores), the others wait for its answer.
//!
//! The HTTP layer owns the request side: it computes the [`CacheKey`], decides with
//! [`should_cache`] and `Cache-Control` whether to look up at all, and re-renders a
//! [`CachedResponse`] with a fresh id as JSON or as replayed SSE. Typical use:
//!
//! ```ignore
//! match cache.send(Lookup { key }).await? {
//!     LookupOutcome::Hit { value, .. } => render(value),          // x-cache: HIT
//!     LookupOutcome::Wait(waiter) => match waiter.wait().await {
//!         Some(value) => render(value),                          // coalesced
//!         None => generate_and(|v| cache.do_send(Store { key, value: v })),
//!     },
//!     LookupOutcome::Miss(guard) => generate_and(|v| guard.store(v)), // dropping it = Abandon
//! }
//! ```
//!
//! The memory path never leaves the actor's thread; a disk read is a few microseconds and runs
//! inline, disk writes (fsync) run on the blocking pool, Redis calls are futures with short
//! timeouts that never hold up other messages.
//!
//! Beside the actor, [`StoredTiers`] keeps stored Responses API responses in the same tiers
//! (another table of the redb file, other Redis keys): state the server keeps, not answers it
//! replays, so clearing the cache leaves them.

mod control;
mod disk;
mod entry;
mod inflight;
mod key;
mod memory;
mod redis_tier;
mod report;
mod settings;
mod stats;
mod stored;

#[cfg(test)]
mod actor_tests;

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;

pub use control::CacheDirectives;
pub use disk::{DiskError, DiskGet, DiskTier};
pub use entry::{decode, encode, seal, unix_now, unseal, CachedResponse, DecodeError};
pub use inflight::{LeaderId, Waiter};
pub use key::{CacheKey, KeyInput};
pub use memory::{LocalLookup, ResponseCache};
pub use redis_tier::RedisOpError;
pub use report::CacheReporter;
pub use settings::{should_cache, CachePolicy, CacheSettings, DiskSettings, RedisSettings};
pub use stats::{CacheStats, CacheTier};
pub use stored::{stored_redis_key, StoredTiers, STORED_TABLE};

use redis_tier::RedisTier;
use report::Reporting;

/// The cache actor: a thin shell over [`ResponseCache`] that adds the Redis tier.
pub struct CacheActor {
    enabled: bool,
    ttl_seconds: Option<u64>,
    cache: ResponseCache,
    redis: Option<RedisTier>,
    reporting: Option<Reporting>,
}

impl CacheActor {
    /// Builds the actor from its settings. Never fails: a tier that cannot be opened (disk file
    /// locked by another process, bad Redis URL) is logged and left out, so the server runs on.
    pub fn new(settings: &CacheSettings) -> Self {
        let mut cache = ResponseCache::new(settings);
        if settings.enabled && settings.disk.enabled {
            match DiskTier::open(&settings.disk.path, settings.disk.max_bytes) {
                Ok((disk, dropped)) => {
                    if dropped > 0 {
                        tracing::warn!(dropped, "dropped malformed disk cache entries");
                        cache.record_corrupt(dropped);
                    }
                    tracing::info!(path = %disk.path().display(), items = disk.items(),
                        "disk cache tier opened");
                    cache = cache.with_disk(disk);
                }
                Err(e) => {
                    tracing::warn!(path = %settings.disk.path.display(), error = %e,
                        "disk cache tier unavailable; running without it");
                }
            }
        }
        let redis = match (&settings.redis.url, settings.enabled) {
            (Some(url), true) => match RedisTier::new(url, settings.redis.clone()) {
                Ok(tier) => Some(tier),
                Err(e) => {
                    tracing::warn!(error = %e, "invalid redis URL; running without the redis tier");
                    None
                }
            },
            _ => None,
        };
        Self {
            enabled: settings.enabled,
            ttl_seconds: settings.ttl_seconds,
            cache,
            redis,
            reporting: None,
        }
    }

    /// Tells the reporter (if any) what changed: call after anything that may change memory
    /// occupancy or count a tier failure.
    fn report(&mut self) {
        let Some(reporting) = self.reporting.as_mut() else {
            return;
        };
        let mut now = self.cache.report_snapshot();
        now.redis_failures = self.redis.as_ref().map_or(0, RedisTier::failures);
        reporting.report(now);
    }

    fn maybe_connect(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let Some(tier) = self.redis.as_mut() else {
            return;
        };
        let Some(client) = tier.start_connect(now) else {
            return;
        };
        let timeout = tier.timeout();
        ctx.spawn(
            actix::fut::wrap_future::<_, Self>(redis_tier::connect(client, timeout)).map(
                |result, act, _| {
                    if let Some(tier) = act.redis.as_mut() {
                        tier.connected(result, Instant::now());
                    }
                    act.report();
                },
            ),
        );
    }

    fn write_through(&mut self, key: CacheKey, value: &CachedResponse, ctx: &mut Context<Self>) {
        let disk = self.cache.disk().cloned();
        let redis = self
            .redis
            .as_ref()
            .and_then(|t| t.connection(Instant::now()).map(|c| (c, t)));
        if disk.is_none() && redis.is_none() {
            return;
        }
        let encoded = encode(value);
        if let Some((conn, tier)) = redis {
            let op = redis_tier::set(
                conn,
                tier.redis_key(&key),
                encoded.clone(),
                tier.ttl_seconds(),
                tier.timeout(),
            );
            ctx.spawn(
                actix::fut::wrap_future::<_, Self>(op).map(|result, act, _| {
                    if let Some(tier) = act.redis.as_mut() {
                        tier.record(result, Instant::now());
                    }
                    act.report();
                }),
            );
        }
        if let Some(disk) = disk {
            let write = tokio::task::spawn_blocking(move || disk.put(&key, &encoded));
            ctx.spawn(
                actix::fut::wrap_future::<_, Self>(write).map(|joined, act, _| {
                    match joined {
                        Ok(Ok(_evicted)) => {}
                        Ok(Err(e)) => {
                            act.cache.record_disk_failure();
                            tracing::warn!(error = %e, "disk cache write failed");
                        }
                        Err(e) => {
                            act.cache.record_disk_failure();
                            tracing::warn!(error = %e, "disk cache write task failed");
                        }
                    }
                    act.report();
                }),
            );
        }
    }
}

impl Actor for CacheActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Waiters queue in the mailbox behind a burst of lookups; keep it roomy.
        ctx.set_mailbox_capacity(4096);
        self.maybe_connect(ctx);
    }
}

/// Looks a key up in memory, then disk, then Redis; joins or starts a flight on a miss.
#[derive(Message)]
#[rtype(result = "LookupOutcome")]
pub struct Lookup {
    /// The request's key.
    pub key: CacheKey,
}

/// The answer to a [`Lookup`].
#[derive(Debug)]
pub enum LookupOutcome {
    /// A stored answer.
    Hit {
        /// The response to render.
        value: Arc<CachedResponse>,
        /// Which tier had it.
        tier: CacheTier,
    },
    /// Nobody has it: generate, then `guard.store(value)`; dropping the guard abandons.
    Miss(LeaderGuard),
    /// An identical request is generating: await [`Waiter::wait`]; `None` means generate.
    Wait(Waiter),
}

/// Leadership of one in-flight key. Store through it, or drop it to release the waiters.
#[derive(Debug)]
pub struct LeaderGuard {
    key: CacheKey,
    leader: LeaderId,
    addr: Option<Addr<CacheActor>>,
}

impl LeaderGuard {
    /// A guard tied to no cache (caching disabled): storing and dropping do nothing.
    pub fn detached(key: CacheKey) -> Self {
        Self {
            key,
            leader: 0,
            addr: None,
        }
    }

    /// The key this guard leads.
    pub fn key(&self) -> CacheKey {
        self.key
    }

    /// Stores the finished response and wakes the waiters. A non-cacheable value (cancelled)
    /// is refused by the cache and releases them instead.
    pub fn store(mut self, value: CachedResponse) {
        if let Some(addr) = self.addr.take() {
            addr.do_send(Store {
                key: self.key,
                value,
            });
        }
    }
}

impl Drop for LeaderGuard {
    fn drop(&mut self) {
        if let Some(addr) = self.addr.take() {
            addr.do_send(Abandon {
                key: self.key,
                leader: self.leader,
            });
        }
    }
}

impl Handler<Lookup> for CacheActor {
    type Result = ActorResponse<Self, LookupOutcome>;

    fn handle(&mut self, msg: Lookup, ctx: &mut Self::Context) -> Self::Result {
        let key = msg.key;
        if !self.enabled {
            return ActorResponse::reply(LookupOutcome::Miss(LeaderGuard::detached(key)));
        }
        let local = self.cache.lookup(&key);
        // Expiry or a disk hit's promotion may have changed memory.
        self.report();
        let leader = match local {
            LocalLookup::Hit(value, tier) => {
                return ActorResponse::reply(LookupOutcome::Hit { value, tier })
            }
            LocalLookup::Wait(waiter) => return ActorResponse::reply(LookupOutcome::Wait(waiter)),
            LocalLookup::Lead(leader) => leader,
        };
        let guard = LeaderGuard {
            key,
            leader,
            addr: Some(ctx.address()),
        };
        self.maybe_connect(ctx);
        let Some((conn, tier)) = self
            .redis
            .as_ref()
            .and_then(|t| t.connection(Instant::now()).map(|c| (c, t)))
        else {
            self.cache.record_miss();
            return ActorResponse::reply(LookupOutcome::Miss(guard));
        };
        let op = redis_tier::get(conn, tier.redis_key(&key), tier.timeout());
        ActorResponse::r#async(
            actix::fut::wrap_future::<_, Self>(op).map(move |result, act, _| {
                let now = Instant::now();
                let found = match result {
                    Ok(found) => {
                        if let Some(tier) = act.redis.as_mut() {
                            tier.record(Ok(()), now);
                        }
                        found
                    }
                    Err(e) => {
                        if let Some(tier) = act.redis.as_mut() {
                            tier.record(Err(e), now);
                        }
                        None
                    }
                };
                let outcome = match found.map(|bytes| decode(&bytes)) {
                    // Redis expires by its own TTL; a shorter local TTL still applies.
                    Some(Ok(value)) if disk::is_expired(value.created_at, act.ttl_seconds) => {
                        act.cache.record_miss();
                        LookupOutcome::Miss(guard)
                    }
                    Some(Ok(value)) if value.is_cacheable() => {
                        let value = Arc::new(value);
                        act.cache
                            .fill(&key, Arc::clone(&value), CacheTier::Redis, now);
                        // The guard's flight was just resolved by `fill`; its drop is a no-op.
                        drop(guard);
                        LookupOutcome::Hit {
                            value,
                            tier: CacheTier::Redis,
                        }
                    }
                    // Written by a build with another entry format: a miss, not damage.
                    Some(Err(DecodeError::Version(_))) => {
                        act.cache.record_miss();
                        LookupOutcome::Miss(guard)
                    }
                    Some(_) => {
                        act.cache.record_corrupt(1);
                        act.cache.record_miss();
                        LookupOutcome::Miss(guard)
                    }
                    None => {
                        act.cache.record_miss();
                        LookupOutcome::Miss(guard)
                    }
                };
                act.report();
                outcome
            }),
        )
    }
}

/// Stores a finished response under `key` in every tier and wakes waiters on it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Store {
    /// The request's key.
    pub key: CacheKey,
    /// The finished response.
    pub value: CachedResponse,
}

impl Handler<Store> for CacheActor {
    type Result = ();

    fn handle(&mut self, msg: Store, ctx: &mut Self::Context) {
        if !self.enabled {
            return;
        }
        let value = Arc::new(msg.value);
        if self.cache.store(&msg.key, Arc::clone(&value)) {
            self.report();
            self.write_through(msg.key, &value, ctx);
        }
    }
}

/// The leader of `key` failed or gave up; its waiters go generate themselves.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Abandon {
    /// The key that was being generated.
    pub key: CacheKey,
    /// The leadership being given up (from the [`LeaderGuard`]).
    pub leader: LeaderId,
}

impl Handler<Abandon> for CacheActor {
    type Result = ();

    fn handle(&mut self, msg: Abandon, _: &mut Self::Context) {
        self.cache.abandon(&msg.key, msg.leader);
    }
}

/// A snapshot of the cache statistics.
#[derive(Message)]
#[rtype(result = "CacheStats")]
pub struct Stats;

impl Handler<Stats> for CacheActor {
    type Result = MessageResult<Stats>;

    fn handle(&mut self, _: Stats, _: &mut Self::Context) -> Self::Result {
        let mut stats = self.cache.stats();
        stats.enabled = self.enabled;
        if let Some(tier) = &self.redis {
            stats.redis_configured = true;
            stats.redis_available = tier.available();
            stats.redis_failures = tier.failures();
        }
        MessageResult(stats)
    }
}

/// Empties every tier (memory, disk, and this deployment's Redis namespace, in the background).
/// Returns the number of entries removed from memory.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Clear;

impl Handler<Clear> for CacheActor {
    type Result = usize;

    fn handle(&mut self, _: Clear, ctx: &mut Self::Context) -> usize {
        let removed = self.cache.clear();
        self.report();
        if let Some(tier) = &self.redis {
            if let Some(conn) = tier.connection(Instant::now()) {
                let op =
                    redis_tier::clear_namespace(conn, tier.namespace_pattern(), tier.timeout());
                ctx.spawn(
                    actix::fut::wrap_future::<_, Self>(op).map(|result, act, _| {
                        let result = result.map(|deleted| {
                            tracing::info!(deleted, "cleared the redis cache namespace");
                        });
                        if let Some(tier) = act.redis.as_mut() {
                            tier.record(result, Instant::now());
                        }
                        act.report();
                    }),
                );
            }
        }
        removed
    }
}

/// Drop these keys from the memory tier (their model was unloaded); the number removed.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Forget(pub Vec<CacheKey>);

impl Handler<Forget> for CacheActor {
    type Result = usize;

    fn handle(&mut self, msg: Forget, _: &mut Self::Context) -> usize {
        let removed = self.cache.forget(&msg.0);
        self.report();
        removed
    }
}

/// Report occupancy and tier failures to `0` from now on, starting with the current state.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReportTo(pub CacheReporter);

impl Handler<ReportTo> for CacheActor {
    type Result = ();

    fn handle(&mut self, msg: ReportTo, _: &mut Self::Context) {
        self.reporting = Some(Reporting::new(msg.0));
        self.report();
    }
}
