//! What a soak found: answers by class and kind, the unexpected ones, latency, RSS samples,
//! and the text rendering of it all.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::super::client::ErrorKind;
use super::super::stats::Summary;

/// What one request of the mix is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A streamed chat completion, read to `[DONE]`.
    ChatStream,
    /// A non-streamed chat completion.
    Chat,
    /// A non-streamed Anthropic message.
    Messages,
    /// A streamed chat completion the client hangs up on after its first bytes.
    Disconnect,
    /// A request the server must refuse with a 4xx.
    Malformed,
}

impl Kind {
    /// The name reports use.
    pub fn key(self) -> &'static str {
        match self {
            Self::ChatStream => "chat_stream",
            Self::Chat => "chat",
            Self::Messages => "messages",
            Self::Disconnect => "disconnect",
            Self::Malformed => "malformed",
        }
    }
}

/// The mix, played in a loop: half the traffic generates to the end, a tenth hangs up, a fifth
/// is malformed.
pub const MIX: [Kind; 10] = [
    Kind::ChatStream,
    Kind::Chat,
    Kind::Malformed,
    Kind::ChatStream,
    Kind::Messages,
    Kind::Disconnect,
    Kind::Chat,
    Kind::Malformed,
    Kind::Messages,
    Kind::ChatStream,
];

/// One request's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Shot {
    pub kind: Kind,
    /// `2xx`, `4xx`, `5xx`, `timeout`, `transport`, … (see [`class_of`]).
    pub class: &'static str,
    /// Until the answer was complete (or the client hung up).
    pub latency_ms: f64,
    /// Why it failed, when it did.
    pub detail: Option<String>,
}

/// The status class of an answer, or of its absence.
pub fn class_of(status: Option<u16>, error: Option<&ErrorKind>) -> &'static str {
    match (error, status) {
        (Some(ErrorKind::Timeout), _) => "timeout",
        (Some(ErrorKind::Malformed), Some(s)) if (200..300).contains(&s) => "2xx_malformed",
        (_, Some(s)) => match s / 100 {
            1 => "1xx",
            2 => "2xx",
            3 => "3xx",
            4 => "4xx",
            _ => "5xx",
        },
        (_, None) => "transport",
    }
}

/// Whether a result is what a healthy server answers to that kind of request.
pub fn expected(kind: Kind, class: &str) -> bool {
    match kind {
        Kind::Malformed => class == "4xx",
        _ => class == "2xx",
    }
}

/// One RSS sample of the server.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RssSample {
    /// Seconds since the load started.
    pub t_s: f64,
    /// Resident set size, MiB.
    pub rss_mib: f64,
}

/// The server's state once the load stopped.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct After {
    /// `/health`'s `status`.
    pub health: String,
    /// Sequences still generating.
    pub running: u64,
    /// Requests still queued.
    pub queue_depth: u64,
    /// What the engine's prefix cache holds, MiB (`engine_stats.prefix_bytes`; mlx-serve only):
    /// RSS grows with it up to its cap.
    pub prefix_cache_mib: Option<f64>,
}

/// Result of a soak run.
#[derive(Debug, Clone, Serialize)]
pub struct SoakReport {
    pub url: String,
    pub model: String,
    pub pid: Option<u32>,
    pub concurrency: usize,
    pub duration_s: f64,
    pub requests: u64,
    /// Answers by status class, all kinds together.
    pub by_class: BTreeMap<String, u64>,
    /// Answers by kind, then status class.
    pub by_kind: BTreeMap<String, BTreeMap<String, u64>>,
    /// Answers a healthy server does not give (see [`expected`]).
    pub unexpected: u64,
    /// A few of them, `kind class: detail`.
    pub unexpected_examples: Vec<String>,
    /// Completed answers to generating requests (disconnects and malformed left out).
    pub latency_ms: Option<Summary>,
    pub rss: Vec<RssSample>,
    /// Last sample minus first, MiB.
    pub rss_growth_mib: Option<f64>,
    /// Largest sample, MiB.
    pub rss_max_mib: Option<f64>,
    pub after: Option<After>,
}

/// What [`report`] needs besides the results.
pub struct RunFacts {
    pub url: String,
    pub model: String,
    pub pid: Option<u32>,
    pub concurrency: usize,
    pub elapsed: Duration,
}

/// Most unexpected answers quoted in a report.
const EXAMPLES: usize = 8;

/// Aggregates the results of a run.
pub fn report(
    facts: RunFacts,
    shots: &[Shot],
    rss: Vec<RssSample>,
    after: Option<After>,
) -> SoakReport {
    let mut by_class: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_kind: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let mut unexpected = 0;
    let mut examples = Vec::new();
    let mut latencies = Vec::new();
    for s in shots {
        *by_class.entry(s.class.to_owned()).or_default() += 1;
        *by_kind
            .entry(s.kind.key().to_owned())
            .or_default()
            .entry(s.class.to_owned())
            .or_default() += 1;
        if !expected(s.kind, s.class) {
            unexpected += 1;
            if examples.len() < EXAMPLES {
                let detail = s.detail.as_deref().unwrap_or("");
                examples.push(format!("{} {}: {detail}", s.kind.key(), s.class));
            }
        } else if !matches!(s.kind, Kind::Disconnect | Kind::Malformed) {
            latencies.push(s.latency_ms);
        }
    }
    let first = rss.first().map(|s| s.rss_mib);
    let last = rss.last().map(|s| s.rss_mib);
    SoakReport {
        url: facts.url,
        model: facts.model,
        pid: facts.pid,
        concurrency: facts.concurrency,
        duration_s: facts.elapsed.as_secs_f64(),
        requests: shots.len() as u64,
        by_class,
        by_kind,
        unexpected,
        unexpected_examples: examples,
        latency_ms: Summary::from_samples(&latencies),
        rss_growth_mib: first.zip(last).map(|(a, b)| b - a),
        rss_max_mib: rss.iter().map(|s| s.rss_mib).reduce(f64::max),
        rss,
        after,
    }
}

fn counts(map: &BTreeMap<String, u64>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The report as text for a terminal (and the README).
pub fn render_text(r: &SoakReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "soak {} ({}), {} clients, {:.0} s: {} requests",
        r.url, r.model, r.concurrency, r.duration_s, r.requests
    );
    let _ = writeln!(out, "answers: {}", counts(&r.by_class));
    for (kind, classes) in &r.by_kind {
        let _ = writeln!(out, "  {kind:<12} {}", counts(classes));
    }
    let _ = writeln!(out, "unexpected: {}", r.unexpected);
    for e in &r.unexpected_examples {
        let _ = writeln!(out, "  {e}");
    }
    match &r.latency_ms {
        Some(l) => {
            let _ = writeln!(
                out,
                "latency ms (completed, n={}): p50 {:.0}  p90 {:.0}  p99 {:.0}  max {:.0}",
                l.count, l.p50, l.p90, l.p99, l.max
            );
        }
        None => out.push_str("latency: no completed request\n"),
    }
    match r.pid {
        Some(pid) if !r.rss.is_empty() => {
            let samples: Vec<String> = r
                .rss
                .iter()
                .map(|s| format!("{:.0}s {:.1}", s.t_s, s.rss_mib))
                .collect();
            let _ = writeln!(out, "rss MiB (pid {pid}): {}", samples.join(", "));
            let _ = writeln!(
                out,
                "rss growth first to last: {:+.1} MiB, max {:.1} MiB",
                r.rss_growth_mib.unwrap_or(0.0),
                r.rss_max_mib.unwrap_or(0.0)
            );
        }
        _ => out.push_str("rss: not sampled (give --pid or --serve)\n"),
    }
    if let Some(a) = &r.after {
        let _ = write!(
            out,
            "after: health {}, running {}, queued {}",
            a.health, a.running, a.queue_depth
        );
        match a.prefix_cache_mib {
            Some(mib) => {
                let _ = writeln!(out, ", prefix cache {mib:.1} MiB");
            }
            None => out.push('\n'),
        }
    }
    out
}

/// Resident set size of a process, bytes (`VmRSS` in `/proc/PID/status`; Linux only).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_rss(&status)
}

pub(super) fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
