//! `bench soak`: a mixed load for a given time — chat streamed and not, Anthropic messages,
//! streams the client abandons mid-way, malformed requests — while the server's resident memory
//! is sampled. Reports RSS samples, answers by status class and by kind, what was unexpected
//! (any 5xx or transport failure, a 4xx to a valid request, a 2xx to a malformed one) and
//! latency percentiles of the completed answers; after the run, whether the server is idle.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};

use super::client::{chat_body, ErrorKind, Target};
use super::stats::Summary;

/// `mlx-serve bench soak`.
#[derive(Debug, Clone, clap::Args)]
pub struct SoakArgs {
    /// Server base URL (`http://127.0.0.1:8080` or `.../v1`); ignored with `--serve`.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    #[arg(long)]
    pub model: Option<String>,
    #[arg(long, env = "MLX_SERVE_API_KEY")]
    pub api_key: Option<String>,
    /// How long to keep the load on (e.g. `3m`).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Clients sending at once, each in a closed loop.
    #[arg(long, short = 'c', default_value_t = 4)]
    pub concurrency: usize,
    /// The server's process id, for RSS samples (from /proc; Linux).
    #[arg(long, conflicts_with = "serve")]
    pub pid: Option<u32>,
    /// Start `mlx-serve serve` (this binary) on a free loopback port, soak it, stop it.
    #[arg(long)]
    pub serve: bool,
    /// With `--serve`: one more argument for `serve` (repeat it: `--serve-arg=--fake`).
    #[arg(long = "serve-arg", requires = "serve", allow_hyphen_values = true)]
    pub serve_args: Vec<String>,
    /// Time between RSS samples.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub sample_every: Duration,
    /// `max_tokens` of the generating requests.
    #[arg(long, default_value_t = 32)]
    pub max_tokens: u32,
    /// Per-request time limit.
    #[arg(long, default_value = "300s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Print the report as JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON report here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// No live progress line on stderr.
    #[arg(long)]
    pub quiet: bool,
}

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

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

const QUESTIONS: [&str; 4] = [
    "Name three rivers in Europe.",
    "What is the capital of France?",
    "Write one sentence about the sea.",
    "Count from one to five.",
];

/// The malformed requests, in turn: `(path, content type, body)`. Each is a 4xx on a server
/// that validates its input.
fn malformed(i: u64, model: &str) -> (&'static str, &'static str, Vec<u8>) {
    let chat = |extra: Value| {
        let mut b = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
        if let (Some(b), Some(e)) = (b.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        b.to_string().into_bytes()
    };
    let json_type = "application/json";
    match i % 6 {
        0 => ("/chat/completions", json_type, b"{\"model\": ".to_vec()),
        1 => (
            "/chat/completions",
            json_type,
            chat(json!({"messages": "hi"})),
        ),
        2 => (
            "/chat/completions",
            json_type,
            chat(json!({"logit_bias": "x"})),
        ),
        3 => ("/chat/completions", json_type, b"[1, 2, 3]".to_vec()),
        4 => ("/chat/completions", "text/plain", chat(json!({}))),
        _ => (
            "/messages",
            json_type,
            json!({"model": model}).to_string().into_bytes(),
        ),
    }
}

/// Everything a worker needs to send the mix.
struct Mix {
    target: Target,
    model: String,
    max_tokens: u32,
    timeout: Duration,
}

impl Mix {
    fn question(&self, i: u64) -> String {
        let q = QUESTIONS[(i / 2) as usize % QUESTIONS.len()];
        // Every other prompt is new (a cold prefill that the prefix cache keeps), the rest
        // repeat (response-cache and prefix-cache hits).
        if i % 2 == 0 {
            format!("[soak {i}] {q}")
        } else {
            q.to_owned()
        }
    }

    async fn send(&self, i: u64) -> Shot {
        let kind = MIX[(i % MIX.len() as u64) as usize];
        let start = Instant::now();
        let messages = json!([{"role": "user", "content": self.question(i)}]);
        let (class, detail) = match kind {
            Kind::ChatStream | Kind::Chat => {
                let body = chat_body(
                    &self.model,
                    messages,
                    self.max_tokens,
                    kind == Kind::ChatStream,
                );
                let o = self.target.chat(&body, self.timeout).await;
                let class = class_of(o.http_code, o.error.as_ref().map(|e| &e.0));
                (class, o.error.map(|e| e.1))
            }
            Kind::Messages => {
                let body = json!({
                    "model": self.model,
                    "max_tokens": self.max_tokens,
                    "temperature": 0,
                    "messages": messages,
                });
                let a = self
                    .target
                    .post_raw(
                        "/messages",
                        "application/json",
                        body.to_string().into_bytes(),
                        self.timeout,
                    )
                    .await;
                let error = a.error.clone().or_else(|| {
                    let ok = a.status.is_some_and(|s| (200..300).contains(&s));
                    let v: Option<Value> = serde_json::from_slice(&a.body).ok();
                    let has_content = v.as_ref().is_some_and(|v| v["content"].is_array());
                    (ok && !has_content)
                        .then(|| (ErrorKind::Malformed, "no content in the message".into()))
                });
                let class = class_of(a.status, error.as_ref().map(|e| &e.0));
                let detail = error
                    .map(|e| e.1)
                    .or_else(|| (class != "2xx").then(|| snippet(&a.body)));
                (class, detail)
            }
            Kind::Disconnect => {
                let body = chat_body(&self.model, messages, self.max_tokens.max(64), true);
                match self
                    .target
                    .chat_then_hang_up(&body, 200, self.timeout)
                    .await
                {
                    Ok(status) => (class_of(Some(status), None), None),
                    Err((kind, msg)) => (class_of(None, Some(&kind)), Some(msg)),
                }
            }
            Kind::Malformed => {
                let (path, ctype, body) = malformed(i / MIX.len() as u64, &self.model);
                let a = self.target.post_raw(path, ctype, body, self.timeout).await;
                let class = class_of(a.status, a.error.as_ref().map(|e| &e.0));
                let detail = a.error.map(|e| e.1).or_else(|| Some(snippet(&a.body)));
                (class, detail)
            }
        };
        Shot {
            kind,
            class,
            latency_ms: start.elapsed().as_secs_f64() * 1e3,
            detail,
        }
    }
}

fn snippet(body: &[u8]) -> String {
    String::from_utf8_lossy(body).chars().take(160).collect()
}

/// A server this command started; stopped when dropped.
struct Spawned {
    child: tokio::process::Child,
    url: String,
}

async fn spawn_server(extra: &[String]) -> anyhow::Result<Spawned> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let exe = std::env::current_exe()?;
    let child = tokio::process::Command::new(exe)
        .args(["serve", "--host", "127.0.0.1", "--port", &port.to_string()])
        .args(extra)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let spawned = Spawned {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let health = format!("{}/health", spawned.url);
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(600);
    while Instant::now() < deadline {
        if let Ok(r) = http.get(&health).send().await {
            if r.status().is_success() {
                return Ok(spawned);
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    anyhow::bail!("the server started with --serve never became healthy")
}

async fn after_state(target: &Target) -> Option<After> {
    // Cancelled sequences end at the engine's next step: give them a moment.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let h = target.get_root_json("/health").await?;
        let after = After {
            health: h["status"].as_str().unwrap_or("?").to_owned(),
            running: h["running"].as_u64().unwrap_or(0),
            queue_depth: h["queue_depth"].as_u64().unwrap_or(0),
            prefix_cache_mib: h["engine_stats"]["prefix_bytes"]
                .as_u64()
                .map(|b| b as f64 / (1024.0 * 1024.0)),
        };
        if (after.running == 0 && after.queue_depth == 0) || Instant::now() >= deadline {
            return Some(after);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs the soak described by `args`.
pub async fn run_soak(args: &SoakArgs) -> anyhow::Result<SoakReport> {
    let spawned = if args.serve {
        Some(spawn_server(&args.serve_args).await?)
    } else {
        None
    };
    let url = spawned.as_ref().map_or(args.url.clone(), |s| s.url.clone());
    let pid = args
        .pid
        .or_else(|| spawned.as_ref().and_then(|s| s.child.id()));
    let target = Target::new(&url, args.api_key.clone(), args.concurrency)?;
    let model = target.model_or_default(args.model.as_ref()).await;
    let mix = Arc::new(Mix {
        target: target.clone(),
        model: model.clone(),
        max_tokens: args.max_tokens,
        timeout: args.timeout,
    });
    let start = Instant::now();
    let deadline = start + args.duration;
    let sampler = pid.map(|pid| {
        let every = args.sample_every.max(Duration::from_millis(100));
        tokio::spawn(async move {
            let mut samples = Vec::new();
            loop {
                if let Some(b) = rss_bytes(pid) {
                    samples.push(RssSample {
                        t_s: start.elapsed().as_secs_f64(),
                        rss_mib: b as f64 / (1024.0 * 1024.0),
                    });
                }
                if Instant::now() >= deadline {
                    return samples;
                }
                let left = deadline.saturating_duration_since(Instant::now());
                tokio::time::sleep(every.min(left.max(Duration::from_millis(1)))).await;
            }
        })
    });
    let issued = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let (mix, issued, done) = (mix.clone(), issued.clone(), done.clone());
        workers.push(tokio::spawn(async move {
            let mut shots = Vec::new();
            while Instant::now() < deadline {
                let i = issued.fetch_add(1, Ordering::Relaxed);
                shots.push(mix.send(i).await);
                done.fetch_add(1, Ordering::Relaxed);
            }
            shots
        }));
    }
    let ticker = (!args.quiet).then(|| {
        let done = done.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                eprint!(
                    "\r[soak] {:6.0}s  done {:6}",
                    start.elapsed().as_secs_f64(),
                    done.load(Ordering::Relaxed)
                );
                let _ = std::io::stderr().flush();
            }
        })
    });
    let mut shots = Vec::new();
    for w in workers {
        shots.extend(w.await.unwrap_or_default());
    }
    let elapsed = start.elapsed();
    if let Some(t) = ticker {
        t.abort();
        eprintln!();
    }
    let mut rss = match sampler {
        Some(s) => s.await.unwrap_or_default(),
        None => Vec::new(),
    };
    let after = after_state(&target).await;
    // One last sample once the server is idle again.
    if let Some(b) = pid.and_then(rss_bytes) {
        rss.push(RssSample {
            t_s: start.elapsed().as_secs_f64(),
            rss_mib: b as f64 / (1024.0 * 1024.0),
        });
    }
    drop(spawned);
    let facts = RunFacts {
        url,
        model,
        pid,
        concurrency: args.concurrency,
        elapsed,
    };
    Ok(report(facts, &shots, rss, after))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shot(kind: Kind, class: &'static str, latency_ms: f64) -> Shot {
        Shot {
            kind,
            class,
            latency_ms,
            detail: Some("why".into()),
        }
    }

    fn facts() -> RunFacts {
        RunFacts {
            url: "http://h".into(),
            model: "m".into(),
            pid: Some(7),
            concurrency: 2,
            elapsed: Duration::from_secs(60),
        }
    }

    #[test]
    fn status_classes_cover_answers_and_their_absence() {
        assert_eq!(class_of(Some(200), None), "2xx");
        assert_eq!(class_of(Some(429), None), "4xx");
        assert_eq!(class_of(Some(503), None), "5xx");
        assert_eq!(class_of(None, Some(&ErrorKind::Timeout)), "timeout");
        assert_eq!(class_of(None, Some(&ErrorKind::Connect)), "transport");
        assert_eq!(
            class_of(Some(200), Some(&ErrorKind::Malformed)),
            "2xx_malformed"
        );
    }

    #[test]
    fn report_counts_by_class_and_kind_and_flags_what_a_healthy_server_never_answers() {
        let shots = vec![
            shot(Kind::Chat, "2xx", 100.0),
            shot(Kind::ChatStream, "2xx", 300.0),
            shot(Kind::Messages, "2xx", 200.0),
            shot(Kind::Disconnect, "2xx", 5.0),
            shot(Kind::Malformed, "4xx", 1.0),
            // Unexpected: a 5xx, a 2xx to a malformed request, a 4xx to a valid one.
            shot(Kind::Chat, "5xx", 50.0),
            shot(Kind::Malformed, "2xx", 1.0),
            shot(Kind::Messages, "4xx", 1.0),
        ];
        let rss = vec![
            RssSample {
                t_s: 0.0,
                rss_mib: 500.0,
            },
            RssSample {
                t_s: 5.0,
                rss_mib: 540.0,
            },
            RssSample {
                t_s: 10.0,
                rss_mib: 520.0,
            },
        ];
        let r = report(facts(), &shots, rss, None);
        assert_eq!(r.requests, 8);
        assert_eq!(r.by_class["2xx"], 5);
        assert_eq!(r.by_class["4xx"], 2);
        assert_eq!(r.by_class["5xx"], 1);
        assert_eq!(r.by_kind["malformed"]["4xx"], 1);
        assert_eq!(r.by_kind["malformed"]["2xx"], 1);
        assert_eq!(r.unexpected, 3);
        assert_eq!(r.unexpected_examples.len(), 3);
        assert!(
            r.unexpected_examples[0].starts_with("chat 5xx"),
            "{:?}",
            r.unexpected_examples
        );
        // Latency only of completed generating answers: 100, 300, 200.
        let l = r.latency_ms.expect("latency");
        assert_eq!((l.count, l.p50, l.max), (3, 200.0, 300.0));
        assert_eq!(r.rss_growth_mib, Some(20.0));
        assert_eq!(r.rss_max_mib, Some(540.0));
        let text = render_text(&r);
        assert!(text.contains("unexpected: 3"), "{text}");
        assert!(text.contains("p50 200  p90 280  p99 298"), "{text}");
        assert!(
            text.contains("rss MiB (pid 7): 0s 500.0, 5s 540.0, 10s 520.0"),
            "{text}"
        );
    }

    #[test]
    fn a_run_without_samples_says_so() {
        let r = report(facts(), &[], Vec::new(), None);
        assert_eq!((r.requests, r.unexpected), (0, 0));
        assert!(r.latency_ms.is_none() && r.rss_growth_mib.is_none());
        let text = render_text(&r);
        assert!(
            text.contains("no completed request") && text.contains("not sampled"),
            "{text}"
        );
    }

    #[test]
    fn vm_rss_is_read_in_bytes() {
        let status = "Name:\tmlx-serve\nVmPeak:\t  900 kB\nVmRSS:\t  2048 kB\nThreads: 9\n";
        assert_eq!(parse_vm_rss(status), Some(2048 * 1024));
        assert_eq!(parse_vm_rss("Name: x\n"), None);
    }

    #[test]
    fn the_mix_has_every_kind_and_malformed_bodies_rotate() {
        for kind in [
            Kind::ChatStream,
            Kind::Chat,
            Kind::Messages,
            Kind::Disconnect,
            Kind::Malformed,
        ] {
            assert!(MIX.contains(&kind), "{kind:?}");
        }
        let bodies: std::collections::BTreeSet<_> = (0..6).map(|i| malformed(i, "m").2).collect();
        assert_eq!(bodies.len(), 6);
    }
}
