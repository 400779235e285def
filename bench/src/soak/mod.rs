//! `bench soak`: a mixed load for a given time — chat streamed and not, Anthropic messages,
//! streams the client abandons mid-way, malformed requests — while the server's resident memory
//! is sampled. Reports RSS samples, answers by status class and by kind, what was unexpected
//! (any 5xx or transport failure, a 4xx to a valid request, a 2xx to a malformed one) and
//! latency percentiles of the completed answers; after the run, whether the server is idle.

mod report;
#[cfg(test)]
mod tests;

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::client::{chat_body, ErrorKind, Target};

pub use report::*;

const QUESTIONS: [&str; 4] = [
    "Name three rivers in Europe.",
    "What is the capital of France?",
    "Write one sentence about the sea.",
    "Count from one to five.",
];

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
    /// Start `mlx-serve serve` on a free loopback port, soak it, stop it.
    #[arg(long)]
    pub serve: bool,
    /// With `--serve`: the `mlx-serve` binary to start (default: the one beside this binary,
    /// else on PATH).
    #[arg(long, env = "MLX_SERVE_BIN", requires = "serve")]
    pub server: Option<std::path::PathBuf>,
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

/// `mlx-serve` beside this executable (a cargo build puts both in one folder), else on PATH.
fn server_binary() -> std::path::PathBuf {
    let name = format!("mlx-serve{}", std::env::consts::EXE_SUFFIX);
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(&name)))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| name.into())
}

async fn spawn_server(exe: std::path::PathBuf, extra: &[String]) -> anyhow::Result<Spawned> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
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
        Some(
            spawn_server(
                args.server.clone().unwrap_or_else(server_binary),
                &args.serve_args,
            )
            .await?,
        )
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
