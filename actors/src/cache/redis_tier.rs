//! The shared tier on Redis, so replicas behind one load balancer share hits.
//!
//! The cache must never fail or stall a request because Redis is away: every operation runs
//! under a short timeout; the first failure marks the tier down and is logged once; while down,
//! requests skip Redis entirely and one probe is let through after an exponential backoff
//! (capped); the first success marks it up again (logged once). Failures are counted.
//!
//! This is plain state plus free async functions; the actor runs the futures and reports back.

use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::key::CacheKey;
use super::settings::RedisSettings;

const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Connecting happens in the background, so it may take longer than one lookup may wait.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const CLEAR_TIMEOUT: Duration = Duration::from_secs(10);

/// Why one Redis operation did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum RedisOpError {
    /// The server answered with an error or the connection broke.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// No answer within the configured timeout.
    #[error("redis: no answer within {0:?}")]
    Timeout(Duration),
}

/// Connection and health of the Redis tier.
pub(crate) struct RedisTier {
    client: redis::Client,
    settings: RedisSettings,
    conn: Option<ConnectionManager>,
    connecting: bool,
    available: bool,
    failures: u64,
    backoff: Duration,
    next_attempt: Instant,
}

impl RedisTier {
    /// Parses the URL; connecting is left to [`RedisTier::start_connect`].
    pub(crate) fn new(url: &str, settings: RedisSettings) -> Result<Self, redis::RedisError> {
        Ok(Self {
            client: redis::Client::open(url)?,
            settings,
            conn: None,
            connecting: false,
            available: false,
            failures: 0,
            backoff: FIRST_BACKOFF,
            next_attempt: Instant::now(),
        })
    }

    /// The per-operation timeout.
    pub(crate) fn timeout(&self) -> Duration {
        Duration::from_millis(self.settings.timeout_ms.max(1))
    }

    /// Expiry for stored entries.
    pub(crate) fn ttl_seconds(&self) -> u64 {
        self.settings.ttl_seconds.max(1)
    }

    /// The namespaced Redis key of a cache key.
    pub(crate) fn redis_key(&self, key: &CacheKey) -> String {
        format!("{}:{}", self.settings.namespace, key.to_hex())
    }

    /// The configured key prefix.
    pub(crate) fn namespace(&self) -> &str {
        &self.settings.namespace
    }

    /// The pattern matching every key of this namespace.
    pub(crate) fn namespace_pattern(&self) -> String {
        format!("{}:*", self.settings.namespace)
    }

    /// A connection to use now, or `None` when the tier is down and not due for a probe.
    pub(crate) fn connection(&self, now: Instant) -> Option<ConnectionManager> {
        let conn = self.conn.as_ref()?;
        (self.available || now >= self.next_attempt).then(|| conn.clone())
    }

    /// The client to connect with, when a (re)connection attempt is due; marks it started.
    pub(crate) fn start_connect(&mut self, now: Instant) -> Option<redis::Client> {
        if self.conn.is_some() || self.connecting || now < self.next_attempt {
            return None;
        }
        self.connecting = true;
        Some(self.client.clone())
    }

    /// Reports the end of a connection attempt.
    pub(crate) fn connected(
        &mut self,
        result: Result<ConnectionManager, RedisOpError>,
        now: Instant,
    ) {
        self.connecting = false;
        match result {
            Ok(conn) => {
                self.conn = Some(conn);
                self.record(Ok(()), now);
            }
            Err(e) => self.record(Err(e), now),
        }
    }

    /// Reports the outcome of one operation and updates health.
    pub(crate) fn record(&mut self, result: Result<(), RedisOpError>, now: Instant) {
        match result {
            Ok(()) => {
                if !self.available {
                    tracing::info!("redis cache tier available");
                }
                self.available = true;
                self.backoff = FIRST_BACKOFF;
            }
            Err(e) => {
                self.failures += 1;
                // Logged on the transition only: a dead Redis must not flood the log.
                if self.available || self.failures == 1 {
                    tracing::warn!(error = %e, "redis cache tier unavailable; serving from local tiers");
                }
                self.available = false;
                self.next_attempt = now + self.backoff;
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            }
        }
    }

    /// Whether a connection attempt is under way.
    pub(crate) fn connecting(&self) -> bool {
        self.connecting
    }

    /// Whether Redis answered the last operation.
    pub(crate) fn available(&self) -> bool {
        self.available
    }

    /// Operations that failed or timed out.
    pub(crate) fn failures(&self) -> u64 {
        self.failures
    }
}

async fn bounded<T>(
    timeout: Duration,
    op: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, RedisOpError> {
    match tokio::time::timeout(timeout, op).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(RedisOpError::Timeout(timeout)),
    }
}

/// Opens a managed connection (which reconnects by itself after errors).
pub(crate) async fn connect(
    client: redis::Client,
    op_timeout: Duration,
) -> Result<ConnectionManager, RedisOpError> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(CONNECT_TIMEOUT)
        .set_response_timeout(op_timeout)
        .set_number_of_retries(1)
        .set_max_delay(1000);
    bounded(
        CONNECT_TIMEOUT * 2,
        ConnectionManager::new_with_config(client, config),
    )
    .await
}

/// `GET key` as raw bytes.
pub(crate) async fn get(
    mut conn: ConnectionManager,
    key: String,
    timeout: Duration,
) -> Result<Option<Vec<u8>>, RedisOpError> {
    bounded(
        timeout,
        redis::cmd("GET")
            .arg(&key)
            .query_async::<Option<Vec<u8>>>(&mut conn),
    )
    .await
}

/// `SET key value EX ttl`.
pub(crate) async fn set(
    mut conn: ConnectionManager,
    key: String,
    value: Vec<u8>,
    ttl_seconds: u64,
    timeout: Duration,
) -> Result<(), RedisOpError> {
    bounded(
        timeout,
        redis::cmd("SET")
            .arg(&key)
            .arg(value)
            .arg("EX")
            .arg(ttl_seconds)
            .query_async::<()>(&mut conn),
    )
    .await
}

/// `DEL key`; whether it existed.
pub(crate) async fn del(
    mut conn: ConnectionManager,
    key: String,
    timeout: Duration,
) -> Result<bool, RedisOpError> {
    bounded(
        timeout,
        redis::cmd("DEL").arg(&key).query_async::<u64>(&mut conn),
    )
    .await
    .map(|n| n > 0)
}

/// Deletes every key matching `pattern` (SCAN + DEL, so Redis is never blocked by KEYS).
/// Returns how many were deleted.
pub(crate) async fn clear_namespace(
    mut conn: ConnectionManager,
    pattern: String,
    timeout: Duration,
) -> Result<u64, RedisOpError> {
    let work = async move {
        let mut cursor: u64 = 0;
        let mut deleted: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = bounded(
                timeout,
                redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(500)
                    .query_async(&mut conn),
            )
            .await?;
            if !keys.is_empty() {
                deleted += bounded(
                    timeout,
                    redis::cmd("DEL").arg(&keys).query_async::<u64>(&mut conn),
                )
                .await?;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    };
    match tokio::time::timeout(CLEAR_TIMEOUT, work).await {
        Ok(result) => result,
        Err(_) => Err(RedisOpError::Timeout(CLEAR_TIMEOUT)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tier() -> RedisTier {
        RedisTier::new("redis://127.0.0.1:1/", RedisSettings::default()).expect("valid url")
    }

    #[test]
    fn failures_back_off_exponentially_and_success_resets() {
        let mut t = tier();
        let now = Instant::now();
        assert!(t.start_connect(now).is_some());
        assert!(t.start_connect(now).is_none(), "one attempt at a time");
        t.connected(Err(RedisOpError::Timeout(Duration::from_millis(1))), now);
        assert_eq!(t.failures(), 1);
        assert!(!t.available());
        assert!(t.start_connect(now).is_none(), "backing off");
        assert!(t.start_connect(now + FIRST_BACKOFF).is_some());
        t.connected(Err(RedisOpError::Timeout(Duration::from_millis(1))), now);
        assert!(
            t.start_connect(now + FIRST_BACKOFF).is_none(),
            "backoff doubled"
        );
        assert!(t.start_connect(now + FIRST_BACKOFF * 2).is_some());
        t.record(Ok(()), now);
        assert!(t.available());
        assert_eq!(t.backoff, FIRST_BACKOFF);
        assert_eq!(t.failures(), 2);
    }

    #[test]
    fn keys_are_namespaced() {
        let t = tier();
        let key = CacheKey::from_bytes([0xab; 32]);
        assert_eq!(
            t.redis_key(&key),
            format!("mlx-serve:v1:{}", "ab".repeat(32))
        );
        assert_eq!(t.namespace_pattern(), "mlx-serve:v1:*");
    }

    #[test]
    fn invalid_url_is_an_error() {
        assert!(RedisTier::new("not a url", RedisSettings::default()).is_err());
    }
}
