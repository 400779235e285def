//! `bench load`: closed-loop concurrent load. Every worker loop stops at a request count AND at a
//! deadline, so no run can hang; errors are tallied by kind.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};

use super::client::{chat_body, ErrorKind, Outcome, Target};
use super::stats::Summary;

/// `mlx-serve bench load`.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// Server base URL (`http://127.0.0.1:8080` or `.../v1`).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    #[arg(long)]
    pub model: Option<String>,
    #[arg(long, env = "MLX_SERVE_API_KEY")]
    pub api_key: Option<String>,
    /// Requests in flight at once.
    #[arg(long, short = 'c', default_value_t = 1)]
    pub concurrency: usize,
    /// Total requests to send (the --max-duration cap still applies).
    #[arg(long, short = 'n', conflicts_with = "duration")]
    pub requests: Option<u64>,
    /// Send requests for this long (e.g. `30s`).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Hard cap on the whole run, whatever else is set.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub max_duration: Duration,
    /// Stream answers and measure time to first token.
    #[arg(long)]
    pub stream: bool,
    /// Prompt text from this file (default: a short question).
    #[arg(long)]
    pub prompt_file: Option<PathBuf>,
    #[arg(long, default_value_t = 64)]
    pub max_tokens: u32,
    /// Make each prompt unique: `start` defeats response and prefix caches (cold prefill),
    /// `end` keeps the shared prefix cacheable, `none` sends identical prompts.
    #[arg(long, value_enum, default_value_t = Vary::None)]
    pub vary: Vary,
    /// Per-request time limit.
    #[arg(long, default_value = "300s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Requests sent one by one before the measured run and left out of it (e.g. to fill a
    /// prefix cache with `--vary end`).
    #[arg(long, default_value_t = 0)]
    pub warmup: u64,
    /// Write the JSON report here (it is always printed to stdout too).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// No live progress line on stderr.
    #[arg(long)]
    pub quiet: bool,
}

/// Where a per-request nonce goes in the prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Vary {
    None,
    Start,
    End,
}

/// Result of a load run.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub url: String,
    pub model: String,
    pub concurrency: usize,
    pub stream: bool,
    pub requests_sent: u64,
    pub requests_ok: u64,
    pub requests_failed: u64,
    /// Failed requests by kind (`http_503`, `timeout`, `connect`, `malformed`, ...).
    pub errors: BTreeMap<String, u64>,
    /// One example message per error kind.
    pub error_examples: BTreeMap<String, String>,
    pub elapsed_s: f64,
    pub requests_per_s: f64,
    pub generated_tokens: u64,
    pub generated_tokens_per_s: f64,
    pub latency_ms: Option<Summary>,
    pub ttft_ms: Option<Summary>,
    /// Per-request decode speed after the first token: (tokens - 1) / (latency - TTFT).
    pub decode_tokens_per_s: Option<Summary>,
    /// True when the time cap, not the request count, ended the run.
    pub stopped_by_time: bool,
}

/// How a worker pool is bounded and what it sends.
pub(crate) struct Plan {
    pub concurrency: usize,
    pub max_requests: Option<u64>,
    pub deadline: Instant,
    pub timeout: Duration,
    pub progress: bool,
}

/// Runs `plan.concurrency` closed loops; returns every outcome and the wall time.
pub(crate) async fn run_pool(
    target: &Target,
    plan: Plan,
    body_for: Arc<dyn Fn(u64) -> Value + Send + Sync>,
) -> (Vec<Outcome>, Duration, bool) {
    let start = Instant::now();
    let issued = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stopped_by_time = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..plan.concurrency.max(1) {
        let (target, body_for) = (target.clone(), body_for.clone());
        let (issued, done, failed, by_time) = (
            issued.clone(),
            done.clone(),
            failed.clone(),
            stopped_by_time.clone(),
        );
        let (deadline, max, timeout) = (plan.deadline, plan.max_requests, plan.timeout);
        workers.push(tokio::spawn(async move {
            let mut outs = Vec::new();
            loop {
                let now = Instant::now();
                if now >= deadline {
                    by_time.store(true, Ordering::Relaxed);
                    break;
                }
                let i = issued.fetch_add(1, Ordering::Relaxed);
                if max.is_some_and(|m| i >= m) {
                    break;
                }
                // A request never outlives the run's deadline by more than its own timeout.
                let left = deadline
                    .saturating_duration_since(now)
                    .max(Duration::from_millis(1));
                let o = target
                    .chat(&body_for(i), timeout.min(left + timeout / 4))
                    .await;
                if !o.ok() {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                done.fetch_add(1, Ordering::Relaxed);
                outs.push(o);
            }
            outs
        }));
    }
    let ticker = plan.progress.then(|| {
        let (done, failed) = (done.clone(), failed.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let secs = start.elapsed().as_secs_f64();
                let d = done.load(Ordering::Relaxed);
                eprint!(
                    "\r[bench] {secs:7.1}s  done {d:6}  failed {:5}  {:7.2} req/s ",
                    failed.load(Ordering::Relaxed),
                    d as f64 / secs.max(1e-9)
                );
                let _ = std::io::stderr().flush();
            }
        })
    });
    let mut outcomes = Vec::new();
    for w in workers {
        match w.await {
            Ok(mut outs) => outcomes.append(&mut outs),
            Err(e) => outcomes.push(Outcome {
                error: Some((ErrorKind::Other, format!("worker died: {e}"))),
                ..Outcome::default()
            }),
        }
    }
    if let Some(t) = ticker {
        t.abort();
        eprintln!();
    }
    (
        outcomes,
        start.elapsed(),
        stopped_by_time.load(Ordering::Relaxed),
    )
}

/// Puts a per-request nonce where `vary` says. `run` tells runs apart, so that a later run
/// (another concurrency level, say) is not answered from the response cache the earlier one
/// filled.
pub fn vary_prompt(prompt: &str, vary: Vary, run: u32, i: u64) -> String {
    match vary {
        Vary::None => prompt.to_string(),
        Vary::Start => format!("[request {run:08x}.{i}] {prompt}"),
        Vary::End => format!("{prompt}\n[request {run:08x}.{i}]"),
    }
}

/// A tag that differs between runs (low bits of the wall clock).
fn run_tag() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() ^ d.as_secs() as u32)
}

/// Aggregates outcomes into a report.
pub fn summarize(outcomes: &[Outcome], elapsed: Duration) -> LoadSummaryParts {
    let mut errors = BTreeMap::new();
    let mut examples = BTreeMap::new();
    let (mut lat, mut ttft, mut decode) = (Vec::new(), Vec::new(), Vec::new());
    let mut tokens = 0;
    for o in outcomes {
        match &o.error {
            Some((kind, msg)) => {
                *errors.entry(kind.key()).or_insert(0) += 1;
                examples.entry(kind.key()).or_insert_with(|| msg.clone());
            }
            None => {
                lat.push(o.latency_ms);
                tokens += o.generated_tokens();
                if let Some(t) = o.ttft_ms {
                    ttft.push(t);
                    let n = o.generated_tokens();
                    let span = (o.latency_ms - t) / 1e3;
                    if n > 1 && span > 0.0 {
                        decode.push((n - 1) as f64 / span);
                    }
                }
            }
        }
    }
    let secs = elapsed.as_secs_f64().max(1e-9);
    let ok = lat.len() as u64;
    LoadSummaryParts {
        sent: outcomes.len() as u64,
        ok,
        errors,
        examples,
        elapsed_s: secs,
        requests_per_s: ok as f64 / secs,
        tokens,
        tokens_per_s: tokens as f64 / secs,
        latency_ms: Summary::from_samples(&lat),
        ttft_ms: Summary::from_samples(&ttft),
        decode: Summary::from_samples(&decode),
    }
}

/// The numbers shared by `load` and `cache` reports.
pub struct LoadSummaryParts {
    pub sent: u64,
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
    pub examples: BTreeMap<String, String>,
    pub elapsed_s: f64,
    pub requests_per_s: f64,
    pub tokens: u64,
    pub tokens_per_s: f64,
    pub latency_ms: Option<Summary>,
    pub ttft_ms: Option<Summary>,
    pub decode: Option<Summary>,
}

const DEFAULT_PROMPT: &str = "Write a short paragraph about the history of bread.";

/// Runs the load test described by `args`.
pub async fn run_load(args: &LoadArgs) -> anyhow::Result<LoadReport> {
    let target = Target::new(&args.url, args.api_key.clone(), args.concurrency)?;
    let model = target.model_or_default(args.model.as_ref()).await;
    let prompt = match &args.prompt_file {
        Some(p) => std::fs::read_to_string(p)
            .map_err(|e| anyhow::anyhow!("reading --prompt-file {}: {e}", p.display()))?,
        None => DEFAULT_PROMPT.to_string(),
    };
    // Neither --requests nor --duration: a short default run rather than an endless one.
    let max_requests = match (args.requests, args.duration) {
        (None, None) => Some(10 * args.concurrency.max(1) as u64),
        (n, _) => n,
    };
    let (m, vary, mt, stream) = (model.clone(), args.vary, args.max_tokens, args.stream);
    let run = run_tag();
    let make_body = move |i: u64| {
        let text = vary_prompt(&prompt, vary, run, i);
        chat_body(&m, json!([{"role": "user", "content": text}]), mt, stream)
    };
    let hard_stop = Instant::now() + args.max_duration;
    for i in 0..args.warmup {
        let left = hard_stop.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let o = target.chat(&make_body(i), args.timeout.min(left)).await;
        if let Some((kind, msg)) = o.error {
            anyhow::bail!("warm-up request failed: {}: {msg}", kind.key());
        }
    }
    // Measured requests follow the warm-up indices, so `--vary` never repeats a prompt.
    let warmup = args.warmup;
    let body_for: Arc<dyn Fn(u64) -> Value + Send + Sync> =
        Arc::new(move |i| make_body(i + warmup));
    let span = args.duration.unwrap_or(args.max_duration);
    let span = span.min(hard_stop.saturating_duration_since(Instant::now()));
    let plan = Plan {
        concurrency: args.concurrency,
        max_requests,
        deadline: Instant::now() + span,
        timeout: args.timeout,
        progress: !args.quiet,
    };
    let (outcomes, elapsed, stopped_by_time) = run_pool(&target, plan, body_for).await;
    let s = summarize(&outcomes, elapsed);
    Ok(LoadReport {
        url: args.url.clone(),
        model,
        concurrency: args.concurrency,
        stream: args.stream,
        requests_sent: s.sent,
        requests_ok: s.ok,
        requests_failed: s.sent - s.ok,
        errors: s.errors,
        error_examples: s.examples,
        elapsed_s: s.elapsed_s,
        requests_per_s: s.requests_per_s,
        generated_tokens: s.tokens,
        generated_tokens_per_s: s.tokens_per_s,
        latency_ms: s.latency_ms,
        ttft_ms: s.ttft_ms,
        decode_tokens_per_s: s.decode,
        stopped_by_time,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_position_follows_vary() {
        assert_eq!(vary_prompt("p", Vary::None, 7, 3), "p");
        assert!(vary_prompt("p", Vary::Start, 7, 3).starts_with("[request 00000007.3]"));
        assert!(vary_prompt("p", Vary::End, 7, 3).starts_with("p\n"));
        assert_ne!(
            vary_prompt("p", Vary::End, 7, 1),
            vary_prompt("p", Vary::End, 7, 2)
        );
        // The same request index in another run is another prompt.
        assert_ne!(
            vary_prompt("p", Vary::Start, 7, 1),
            vary_prompt("p", Vary::Start, 8, 1)
        );
    }

    #[test]
    fn summary_tallies_errors_by_kind_and_rates_only_successes() {
        let ok = |lat: f64, ttft: f64, n: u64| Outcome {
            latency_ms: lat,
            ttft_ms: Some(ttft),
            completion_tokens: Some(n),
            ..Outcome::default()
        };
        let err = |k: ErrorKind| Outcome {
            error: Some((k, "x".into())),
            ..Outcome::default()
        };
        let outs = vec![
            ok(1100.0, 100.0, 11),
            ok(2100.0, 100.0, 21),
            err(ErrorKind::Http(503)),
            err(ErrorKind::Http(503)),
            err(ErrorKind::Timeout),
        ];
        let s = summarize(&outs, Duration::from_secs(2));
        assert_eq!((s.sent, s.ok, s.tokens), (5, 2, 32));
        assert_eq!(s.errors.get("http_503"), Some(&2));
        assert_eq!(s.errors.get("timeout"), Some(&1));
        assert_eq!(s.requests_per_s, 1.0);
        assert_eq!(s.tokens_per_s, 16.0);
        let d = s.decode.unwrap();
        assert_eq!((d.min, d.max), (10.0, 10.0));
        assert_eq!(s.latency_ms.unwrap().p50, 1600.0);
    }
}
