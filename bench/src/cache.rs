//! `bench cache`: response-cache hit latency and rate over loopback HTTP. The first request is the
//! miss that fills the cache; the identical ones after it should be hits.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};

use super::client::{chat_body, Target};
use super::load::{run_pool, summarize, Plan};
use super::stats::{ratio, Summary};

/// Issue 8's targets for a cache hit.
pub const TARGET_HIT_P50_MS: f64 = 1.0;
pub const TARGET_HITS_PER_S: f64 = 5_000.0;

/// `mlx-serve bench cache`.
#[derive(Debug, Clone, clap::Args)]
pub struct CacheArgs {
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    #[arg(long)]
    pub model: Option<String>,
    #[arg(long, env = "MLX_SERVE_API_KEY")]
    pub api_key: Option<String>,
    /// Identical requests after the first.
    #[arg(long, default_value_t = 2_000)]
    pub n: u64,
    /// Connections hitting the cache at once.
    #[arg(long, short = 'c', default_value_t = 4)]
    pub concurrency: usize,
    #[arg(long, default_value_t = 16)]
    pub max_tokens: u32,
    /// Hard cap on the hit phase.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    pub max_duration: Duration,
    /// Per-request time limit (the miss may need a full generation).
    #[arg(long, default_value = "300s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long)]
    pub quiet: bool,
}

/// Result of a cache run.
#[derive(Debug, Clone, Serialize)]
pub struct CacheReport {
    pub url: String,
    pub model: String,
    pub concurrency: usize,
    pub miss_ms: f64,
    pub hits_sent: u64,
    pub hits_ok: u64,
    pub errors: BTreeMap<String, u64>,
    pub hit_latency_ms: Option<Summary>,
    pub hits_per_s: f64,
    /// Miss latency / hit p50.
    pub hit_speedup: Option<f64>,
    /// Hits whose content differs from the miss's: a cache must not change the answer.
    pub mismatched: u64,
    pub meets_p50_target: bool,
    pub meets_rate_target: bool,
}

pub async fn run_cache(args: &CacheArgs) -> anyhow::Result<CacheReport> {
    let target = Target::new(&args.url, args.api_key.clone(), args.concurrency)?;
    let model = target.model_or_default(args.model.as_ref()).await;
    let body = chat_body(
        &model,
        json!([{"role": "user", "content": "In one sentence: what does a cache do?"}]),
        args.max_tokens,
        false,
    );
    let miss = target.chat(&body, args.timeout).await;
    if let Some((kind, msg)) = &miss.error {
        anyhow::bail!("first (miss) request failed: {}: {msg}", kind.key());
    }
    let plan = Plan {
        concurrency: args.concurrency,
        max_requests: Some(args.n),
        deadline: Instant::now() + args.max_duration,
        timeout: args.timeout,
        progress: !args.quiet,
    };
    let shared = body.clone();
    let body_for: Arc<dyn Fn(u64) -> Value + Send + Sync> = Arc::new(move |_| shared.clone());
    let (outcomes, elapsed, _) = run_pool(&target, plan, body_for).await;
    let mismatched = outcomes
        .iter()
        .filter(|o| o.ok() && o.content != miss.content)
        .count() as u64;
    let s = summarize(&outcomes, elapsed);
    let p50 = s.latency_ms.map(|l| l.p50);
    Ok(CacheReport {
        url: args.url.clone(),
        model,
        concurrency: args.concurrency,
        miss_ms: miss.latency_ms,
        hits_sent: s.sent,
        hits_ok: s.ok,
        errors: s.errors,
        hit_latency_ms: s.latency_ms,
        hits_per_s: s.requests_per_s,
        hit_speedup: p50.and_then(|p| ratio(miss.latency_ms, p)),
        mismatched,
        meets_p50_target: p50.is_some_and(|p| p < TARGET_HIT_P50_MS),
        meets_rate_target: s.requests_per_s > TARGET_HITS_PER_S,
    })
}
