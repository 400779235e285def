//! Typed settings of the response cache, as the `[cache]` table of `config.toml` carries them.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use mlx_serve_engine::engine::SamplingParams;

/// Which requests are worth caching.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CachePolicy {
    /// Only requests whose output is reproducible: temperature 0 (greedy) or a fixed `seed`.
    #[default]
    DeterministicOnly,
    /// Every request, sampled ones included (a hit replays one earlier sample).
    Always,
    /// Nothing; lookups always miss and stores are ignored.
    Never,
}

/// Whether a request with these sampling settings may be answered from, and stored into, the cache.
pub fn should_cache(sampling: &SamplingParams, policy: CachePolicy) -> bool {
    match policy {
        CachePolicy::Always => true,
        CachePolicy::Never => false,
        CachePolicy::DeterministicOnly => sampling.temperature <= 0.0 || sampling.seed.is_some(),
    }
}

/// The whole cache configuration. Every field has a default, so an empty `[cache]` table works.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheSettings {
    /// Master switch; off, the actor answers every lookup with a miss and stores nothing.
    pub enabled: bool,
    /// Most responses kept in memory.
    pub max_entries: usize,
    /// Most bytes of responses kept in memory (estimated payload size).
    pub max_bytes: u64,
    /// Entries older than this are not served (all tiers); `None` keeps them until evicted.
    pub ttl_seconds: Option<u64>,
    /// Which requests are cached.
    pub policy: CachePolicy,
    /// The persistent on-disk tier.
    pub disk: DiskSettings,
    /// The shared Redis tier.
    pub redis: RedisSettings,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            max_entries: 1024,
            max_bytes: 256 * 1024 * 1024,
            ttl_seconds: None,
            policy: CachePolicy::DeterministicOnly,
            disk: DiskSettings::default(),
            redis: RedisSettings::default(),
        }
    }
}

/// The embedded on-disk tier (a `redb` file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiskSettings {
    /// Off by default: persistence is opt-in because it writes to the file system.
    pub enabled: bool,
    /// Database file; its directory is created when missing.
    pub path: PathBuf,
    /// Most bytes of encoded entries kept; the oldest are evicted first.
    pub max_bytes: u64,
    /// Most bytes of stored Responses API responses (`previous_response_id`) kept in the same
    /// file, in their own table, apart from `max_bytes`; the oldest are evicted first.
    pub stored_responses_max_bytes: u64,
}

impl Default for DiskSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            path: PathBuf::from("cache/responses.redb"),
            max_bytes: 1024 * 1024 * 1024,
            stored_responses_max_bytes: 256 * 1024 * 1024,
        }
    }
}

/// The shared tier on Redis, for several replicas behind one load balancer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSettings {
    /// `redis://host:port/db`; `None` disables the tier.
    pub url: Option<String>,
    /// Expiry set on every stored entry, in seconds.
    pub ttl_seconds: u64,
    /// Longest wait for one Redis operation before it counts as a failure and is skipped.
    pub timeout_ms: u64,
    /// Prefix of every key, so several deployments can share one Redis.
    pub namespace: String,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: None,
            ttl_seconds: 24 * 60 * 60,
            timeout_ms: 50,
            namespace: "mlx-serve:v1".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_policy_caches_greedy_and_seeded_only() {
        let greedy = SamplingParams::default();
        let sampled = SamplingParams {
            temperature: 0.7,
            ..SamplingParams::default()
        };
        let seeded = SamplingParams {
            seed: Some(7),
            ..sampled.clone()
        };
        assert!(should_cache(&greedy, CachePolicy::DeterministicOnly));
        assert!(!should_cache(&sampled, CachePolicy::DeterministicOnly));
        assert!(should_cache(&seeded, CachePolicy::DeterministicOnly));
        assert!(should_cache(&sampled, CachePolicy::Always));
        assert!(!should_cache(&greedy, CachePolicy::Never));
    }

    #[test]
    fn empty_table_deserializes_to_documented_defaults() {
        let parsed: CacheSettings = serde_json::from_str("{}").expect("empty table parses");
        assert_eq!(parsed, CacheSettings::default());
        assert_eq!(parsed.max_entries, 1024);
        assert_eq!(parsed.policy, CachePolicy::DeterministicOnly);
        let partial: CacheSettings =
            serde_json::from_str(r#"{"policy":"always","redis":{"url":"redis://x"}}"#)
                .expect("partial table parses");
        assert_eq!(partial.policy, CachePolicy::Always);
        assert_eq!(partial.redis.timeout_ms, 50);
        assert_eq!(partial.redis.url.as_deref(), Some("redis://x"));
    }
}
