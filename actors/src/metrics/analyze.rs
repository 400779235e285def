//! `mlx-serve analyze TRACE.jsonl`: reads a request trace back and summarizes it. Broken lines
//! (a crash mid-write, hand edits) are counted and skipped, never fatal.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use super::trace::TraceRecord;
use super::window::Percentiles;

/// Knobs for [`analyze`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnalyzeOptions {
    /// How many of the slowest requests to list.
    pub slowest: usize,
}

impl Default for AnalyzeOptions {
    fn default() -> Self {
        AnalyzeOptions { slowest: 10 }
    }
}

/// The trace could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    /// Opening or reading the file failed.
    #[error("reading trace {path}: {source}")]
    Io {
        /// The trace file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

/// Request counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestReport {
    /// Requests in the trace.
    pub total: u64,
    /// Distinct request hashes (requests without a hash count as distinct).
    pub unique: u64,
    /// Requests that succeeded.
    pub succeeded: u64,
    /// Requests that failed (status ≥ 400 or an error recorded).
    pub failed: u64,
    /// succeeded / total.
    pub success_rate: Option<f64>,
    /// total / time span.
    pub requests_per_second: Option<f64>,
}

/// Response-cache effectiveness.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CacheReport {
    /// Served from the response cache.
    pub hits: u64,
    /// Cacheable, not found.
    pub misses: u64,
    /// Skipped on request.
    pub bypass: u64,
    /// Not cacheable.
    pub uncacheable: u64,
    /// hits / total requests.
    pub hit_rate: Option<f64>,
    /// hits / (hits + misses).
    pub cacheable_hit_rate: Option<f64>,
    /// Repeated requests / total: what a perfect cache would have served.
    pub potential_hit_rate: Option<f64>,
    /// Median end-to-end latency of hits, seconds.
    pub hit_p50_s: Option<f64>,
    /// Median end-to-end latency of misses, seconds.
    pub miss_p50_s: Option<f64>,
    /// miss_p50 / hit_p50.
    pub hit_speedup: Option<f64>,
}

/// Latency distributions, seconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyReport {
    /// End to end, all requests.
    pub e2e: Percentiles,
    /// Time to first token.
    pub ttft: Percentiles,
    /// Queue wait.
    pub queue: Percentiles,
    /// End to end, response-cache hits.
    pub e2e_hits: Percentiles,
    /// End to end, everything that ran the engine.
    pub e2e_engine: Percentiles,
}

/// Token totals.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TokenReport {
    /// Prompt tokens.
    pub prompt: u64,
    /// Prompt tokens reused from the prefix cache.
    pub cached: u64,
    /// Generated tokens (cache hits included: they were served).
    pub completion: u64,
    /// cached / prompt over engine requests.
    pub prefix_reuse_ratio: Option<f64>,
    /// Mean prompt length.
    pub mean_prompt: Option<f64>,
    /// Mean generated length.
    pub mean_completion: Option<f64>,
    /// Generated tokens over time spent after the first token, engine requests only.
    pub generation_tokens_per_second: Option<f64>,
}

/// Errors grouped by shape.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorPattern {
    /// Error type and message with numbers replaced by `N`.
    pub pattern: String,
    /// How many requests failed this way.
    pub count: u64,
}

/// Per-model figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelReport {
    /// Model id.
    pub model: String,
    /// Requests.
    pub requests: u64,
    /// Failed requests.
    pub failed: u64,
    /// Response-cache hits / requests.
    pub hit_rate: Option<f64>,
    /// End-to-end latency.
    pub e2e: Percentiles,
    /// Time to first token.
    pub ttft: Percentiles,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Generated tokens.
    pub completion_tokens: u64,
}

/// One of the slowest requests.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SlowRequest {
    /// When it finished.
    pub time: String,
    /// Model.
    pub model: String,
    /// Request hash.
    pub request_hash: Option<String>,
    /// Cache outcome.
    pub cache: String,
    /// End to end, seconds.
    pub e2e_s: f64,
    /// Time to first token, seconds.
    pub ttft_s: Option<f64>,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Generated tokens.
    pub completion_tokens: u64,
}

/// Everything `mlx-serve analyze` reports; serializes as the `--json` output.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AnalysisReport {
    /// Non-empty lines read.
    pub lines: u64,
    /// Lines that were valid trace records.
    pub records: u64,
    /// Lines skipped because they were not valid records.
    pub malformed_lines: u64,
    /// Earliest request time (RFC 3339).
    pub first_time: Option<String>,
    /// Latest request time (RFC 3339).
    pub last_time: Option<String>,
    /// Seconds between them.
    pub span_seconds: Option<f64>,
    /// Request counts.
    pub requests: RequestReport,
    /// Response cache.
    pub cache: CacheReport,
    /// Latencies.
    pub latency: LatencyReport,
    /// Tokens.
    pub tokens: TokenReport,
    /// Calls per tool name.
    pub tools: BTreeMap<String, u64>,
    /// Requests that called at least one tool.
    pub requests_with_tools: u64,
    /// Tool calls that failed to parse.
    pub tool_failures: u64,
    /// Requests per finish reason.
    pub finish_reasons: BTreeMap<String, u64>,
    /// Requests per HTTP status.
    pub statuses: BTreeMap<String, u64>,
    /// Requests per route.
    pub routes: BTreeMap<String, u64>,
    /// Error patterns, most frequent first.
    pub errors: Vec<ErrorPattern>,
    /// Per-model breakdown, busiest first.
    pub models: Vec<ModelReport>,
    /// Slowest requests, slowest first.
    pub slowest: Vec<SlowRequest>,
}

/// Reads and summarizes the trace at `path`.
pub fn analyze(path: &Path, opts: &AnalyzeOptions) -> Result<AnalysisReport, AnalyzeError> {
    analyze_files(&[path], opts)
}

/// Summarizes several traces as one, e.g. `trace.jsonl` with its rotated `trace.jsonl.1`, ….
pub fn analyze_files<P: AsRef<Path>>(
    paths: &[P],
    opts: &AnalyzeOptions,
) -> Result<AnalysisReport, AnalyzeError> {
    let mut report = AnalysisReport::default();
    let mut records = Vec::new();
    for path in paths {
        let path = path.as_ref();
        let io = |source| AnalyzeError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        read_records(BufReader::new(file), &mut report, &mut records).map_err(io)?;
    }
    report.records = records.len() as u64;
    summarize(&mut report, &records, opts);
    Ok(report)
}

/// [`analyze`] over any reader.
pub fn analyze_reader(
    reader: impl BufRead,
    opts: &AnalyzeOptions,
) -> std::io::Result<AnalysisReport> {
    let mut report = AnalysisReport::default();
    let mut records = Vec::new();
    read_records(reader, &mut report, &mut records)?;
    report.records = records.len() as u64;
    summarize(&mut report, &records, opts);
    Ok(report)
}

fn read_records(
    reader: impl BufRead,
    report: &mut AnalysisReport,
    records: &mut Vec<TraceRecord>,
) -> std::io::Result<()> {
    for line in reader.split(b'\n') {
        let line = line?;
        let Ok(text) = std::str::from_utf8(&line) else {
            report.lines += 1;
            report.malformed_lines += 1;
            continue;
        };
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        report.lines += 1;
        match serde_json::from_str::<TraceRecord>(text) {
            Ok(r) if r.e2e_s.is_finite() => records.push(r),
            _ => report.malformed_lines += 1,
        }
    }
    Ok(())
}

fn ratio(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

fn failed(r: &TraceRecord) -> bool {
    r.status >= 400 || r.error_type.is_some() || r.error.is_some()
}

fn summarize(report: &mut AnalysisReport, records: &[TraceRecord], opts: &AnalyzeOptions) {
    let total = records.len() as u64;
    let times: Vec<DateTime<FixedOffset>> = records
        .iter()
        .filter_map(|r| DateTime::parse_from_rfc3339(&r.time).ok())
        .collect();
    if let (Some(first), Some(last)) = (times.iter().min(), times.iter().max()) {
        report.first_time = Some(first.to_rfc3339());
        report.last_time = Some(last.to_rfc3339());
        report.span_seconds = Some((*last - *first).num_microseconds().unwrap_or(0) as f64 / 1e6);
    }
    let span = report.span_seconds.filter(|s| *s > 0.0);

    let mut hashes = HashSet::new();
    let unhashed = records
        .iter()
        .filter(|r| match &r.request_hash {
            Some(h) => {
                hashes.insert(h.as_str());
                false
            }
            None => true,
        })
        .count() as u64;
    let unique = hashes.len() as u64 + unhashed;
    let failed_n = records.iter().filter(|r| failed(r)).count() as u64;
    report.requests = RequestReport {
        total,
        unique,
        succeeded: total - failed_n,
        failed: failed_n,
        success_rate: ratio(total - failed_n, total),
        requests_per_second: span.map(|s| total as f64 / s),
    };

    let is = |r: &&TraceRecord, c: &str| r.cache == c;
    let count = |c: &str| records.iter().filter(|r| is(r, c)).count() as u64;
    let (hits, misses) = (count("hit"), count("miss"));
    let e2e_of = |pred: &dyn Fn(&TraceRecord) -> bool| -> Vec<f64> {
        records
            .iter()
            .filter(|r| pred(r))
            .map(|r| r.e2e_s)
            .collect()
    };
    let hit_e2e = Percentiles::of(&e2e_of(&|r| r.cache == "hit"));
    let miss_e2e = Percentiles::of(&e2e_of(&|r| r.cache == "miss"));
    report.cache = CacheReport {
        hits,
        misses,
        bypass: count("bypass"),
        uncacheable: count("uncacheable"),
        hit_rate: ratio(hits, total),
        cacheable_hit_rate: ratio(hits, hits + misses),
        potential_hit_rate: ratio(total - unique, total),
        hit_p50_s: hit_e2e.p50,
        miss_p50_s: miss_e2e.p50,
        hit_speedup: match (hit_e2e.p50, miss_e2e.p50) {
            (Some(h), Some(m)) if h > 0.0 => Some(m / h),
            _ => None,
        },
    };

    report.latency = LatencyReport {
        e2e: Percentiles::of(&e2e_of(&|_| true)),
        ttft: Percentiles::of(&records.iter().filter_map(|r| r.ttft_s).collect::<Vec<_>>()),
        queue: Percentiles::of(&records.iter().filter_map(|r| r.queue_s).collect::<Vec<_>>()),
        e2e_hits: hit_e2e,
        e2e_engine: Percentiles::of(&e2e_of(&|r| r.cache != "hit")),
    };

    let engine: Vec<&TraceRecord> = records.iter().filter(|r| r.cache != "hit").collect();
    let engine_prompt: u64 = engine.iter().map(|r| r.prompt_tokens).sum();
    let engine_cached: u64 = engine
        .iter()
        .map(|r| r.cached_tokens.min(r.prompt_tokens))
        .sum();
    let (gen_tokens, gen_secs) = engine
        .iter()
        .filter_map(|r| {
            r.ttft_s
                .map(|t| (r.completion_tokens.saturating_sub(1), r.e2e_s - t))
        })
        .filter(|(_, s)| *s > 0.0)
        .fold((0u64, 0.0), |(t, s), (rt, rs)| (t + rt, s + rs));
    let prompt: u64 = records.iter().map(|r| r.prompt_tokens).sum();
    let completion: u64 = records.iter().map(|r| r.completion_tokens).sum();
    report.tokens = TokenReport {
        prompt,
        cached: records.iter().map(|r| r.cached_tokens).sum(),
        completion,
        prefix_reuse_ratio: ratio(engine_cached, engine_prompt),
        mean_prompt: ratio(prompt, total),
        mean_completion: ratio(completion, total),
        generation_tokens_per_second: (gen_secs > 0.0).then(|| gen_tokens as f64 / gen_secs),
    };

    for r in records {
        for t in &r.tools {
            *report.tools.entry(t.clone()).or_default() += 1;
        }
        report.requests_with_tools += u64::from(!r.tools.is_empty());
        report.tool_failures += r.tool_failures;
        if let Some(f) = &r.finish_reason {
            *report.finish_reasons.entry(f.clone()).or_default() += 1;
        }
        *report.statuses.entry(r.status.to_string()).or_default() += 1;
        *report.routes.entry(r.route.clone()).or_default() += 1;
    }

    report.errors = error_patterns(records);
    report.models = model_reports(records);

    let mut slow: Vec<&TraceRecord> = records.iter().collect();
    slow.sort_by(|a, b| b.e2e_s.total_cmp(&a.e2e_s));
    report.slowest = slow
        .into_iter()
        .take(opts.slowest)
        .map(|r| SlowRequest {
            time: r.time.clone(),
            model: r.model.clone(),
            request_hash: r.request_hash.clone(),
            cache: r.cache.clone(),
            e2e_s: r.e2e_s,
            ttft_s: r.ttft_s,
            prompt_tokens: r.prompt_tokens,
            completion_tokens: r.completion_tokens,
        })
        .collect();
}

/// Messages differ by ids and sizes; grouping on their shape shows what actually goes wrong.
fn error_pattern(r: &TraceRecord) -> String {
    let mut shape = String::new();
    let mut in_digits = false;
    for c in r.error.as_deref().unwrap_or("").chars().take(160) {
        if c.is_ascii_digit() {
            if !in_digits {
                shape.push('N');
            }
            in_digits = true;
        } else {
            in_digits = false;
            shape.push(c);
        }
    }
    let kind = r
        .error_type
        .clone()
        .unwrap_or_else(|| format!("http_{}", r.status));
    if shape.is_empty() {
        kind
    } else {
        format!("{kind}: {shape}")
    }
}

fn error_patterns(records: &[TraceRecord]) -> Vec<ErrorPattern> {
    let mut counts: HashMap<String, u64> = HashMap::new();
    for r in records.iter().filter(|r| failed(r)) {
        *counts.entry(error_pattern(r)).or_default() += 1;
    }
    let mut out: Vec<ErrorPattern> = counts
        .into_iter()
        .map(|(pattern, count)| ErrorPattern { pattern, count })
        .collect();
    out.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.pattern.cmp(&b.pattern))
    });
    out
}

fn model_reports(records: &[TraceRecord]) -> Vec<ModelReport> {
    let mut by_model: BTreeMap<&str, Vec<&TraceRecord>> = BTreeMap::new();
    for r in records {
        by_model.entry(r.model.as_str()).or_default().push(r);
    }
    let mut out: Vec<ModelReport> = by_model
        .into_iter()
        .map(|(model, rs)| {
            let n = rs.len() as u64;
            ModelReport {
                model: model.to_string(),
                requests: n,
                failed: rs.iter().filter(|r| failed(r)).count() as u64,
                hit_rate: ratio(rs.iter().filter(|r| r.cache == "hit").count() as u64, n),
                e2e: Percentiles::of(&rs.iter().map(|r| r.e2e_s).collect::<Vec<_>>()),
                ttft: Percentiles::of(&rs.iter().filter_map(|r| r.ttft_s).collect::<Vec<_>>()),
                prompt_tokens: rs.iter().map(|r| r.prompt_tokens).sum(),
                completion_tokens: rs.iter().map(|r| r.completion_tokens).sum(),
            }
        })
        .collect();
    out.sort_by_key(|m| std::cmp::Reverse(m.requests));
    out
}

#[path = "analyze_text.rs"]
mod text;
pub use text::render_text;

#[cfg(test)]
#[path = "analyze_tests.rs"]
mod tests;
