//! The real binary on the real default model, over TCP on loopback.
#![cfg(feature = "mlx")]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

#[path = "replay/mod.rs"]
mod replay;

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn start(extra_env: &[(&str, &str)]) -> Server {
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mlx-serve"));
    cmd.args(["serve", "--host", "127.0.0.1", "--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("start mlx-serve");
    let server = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let client = http();
    let deadline = Instant::now() + Duration::from_secs(300);
    while Instant::now() < deadline {
        if let Ok(r) = client.get(format!("{}/health", server.base)).send() {
            if r.status().is_success() {
                return server;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("server never became healthy");
}

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .expect("client")
}

fn chat_body(question: &str, max_tokens: usize, stream: bool) -> Value {
    json!({
        "model": "smollm2-135m-instruct",
        "messages": [{"role": "user", "content": question}],
        "temperature": 0,
        "max_tokens": max_tokens,
        "stream": stream,
        "stream_options": {"include_usage": true},
    })
}

#[test]
fn chat_streaming_and_health_during_a_long_generation() {
    let server = start(&[]);
    let client = http();

    let resp: Value = client
        .post(format!("{}/v1/chat/completions", server.base))
        .json(&chat_body(
            "What is the capital of France? Answer in one word.",
            24,
            false,
        ))
        .send()
        .expect("chat")
        .json()
        .expect("json");
    let content = resp["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default();
    assert!(content.contains("Paris"), "{resp}");
    assert!(resp["usage"]["prompt_tokens"].as_u64().unwrap_or(0) > 0);

    // A long streamed generation in the background; health must keep answering quickly.
    let base = server.base.clone();
    let streamer = std::thread::spawn(move || {
        let resp = http()
            .post(format!("{base}/v1/chat/completions"))
            .json(&chat_body(
                "Tell me a long story about a dragon.",
                200,
                true,
            ))
            .send()
            .expect("stream");
        let mut chunks = 0;
        let mut saw_usage = false;
        let mut saw_done = false;
        for line in BufReader::new(resp).lines() {
            let line = line.expect("line");
            let Some(data) = line.strip_prefix("data: ") else {
                continue;
            };
            if data == "[DONE]" {
                saw_done = true;
                break;
            }
            let v: Value = serde_json::from_str(data).expect("chunk json");
            if v["choices"].as_array().is_some_and(|c| c.is_empty()) {
                saw_usage = v["usage"]["completion_tokens"].as_u64().unwrap_or(0) > 0;
            } else {
                chunks += 1;
            }
        }
        (chunks, saw_usage, saw_done)
    });
    std::thread::sleep(Duration::from_millis(500));
    let mut worst = Duration::ZERO;
    for _ in 0..10 {
        let t = Instant::now();
        let r = client
            .get(format!("{}/health", server.base))
            .send()
            .expect("health");
        assert!(r.status().is_success());
        worst = worst.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(100));
    }
    // Generous bound: one engine step is ~30 ms; a blocked HTTP layer would take seconds.
    assert!(
        worst < Duration::from_secs(1),
        "health took {worst:?} during generation"
    );
    let (chunks, saw_usage, saw_done) = streamer.join().expect("streamer");
    assert!(chunks > 10, "only {chunks} chunks");
    assert!(saw_usage && saw_done);
}

#[test]
fn context_overflow_is_a_400_naming_both_numbers() {
    let server = start(&[("MLX_SERVE__MODEL__CONTEXT_LENGTH", "64")]);
    let long = "word ".repeat(100);
    let resp = http()
        .post(format!("{}/v1/chat/completions", server.base))
        .json(&chat_body(&long, 8, false))
        .send()
        .expect("chat");
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = resp.json().expect("json");
    assert_eq!(body["error"]["code"], "context_length_exceeded", "{body}");
    let msg = body["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("64"), "{msg}");
}

/// Prompts are encoded off the model thread before they take a queue place: with the one slot
/// busy and the one queue place taken, a prompt too long for the context is still told so (400,
/// not 429), and token counting answers while the generation runs.
#[test]
fn a_too_long_prompt_is_refused_before_the_queue_and_counting_does_not_wait() {
    let server = start(&[
        ("MLX_SERVE__MODEL__CONTEXT_LENGTH", "300"),
        ("MLX_SERVE__MODEL__MAX_BATCH", "1"),
        ("MLX_SERVE__SERVER__QUEUE_SIZE", "1"),
    ]);
    let spawn = |question: &'static str, max_tokens: usize| {
        let base = server.base.clone();
        std::thread::spawn(move || {
            http()
                .post(format!("{base}/v1/chat/completions"))
                .json(&chat_body(question, max_tokens, false))
                .send()
                .map(|r| r.status().as_u16())
        })
    };
    let running = spawn("Tell me a long story about a dragon.", 160);
    let health = |server: &Server| -> Value {
        http()
            .get(format!("{}/health", server.base))
            .send()
            .and_then(|r| r.json())
            .expect("health")
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while health(&server)["running"] != 1 {
        assert!(Instant::now() < deadline, "the first request never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    let queued = spawn("Tell me a long story about a castle.", 8);
    while health(&server)["queue_depth"] != 1 {
        assert!(Instant::now() < deadline, "the second request never queued");
        std::thread::sleep(Duration::from_millis(20));
    }
    // A fitting request now finds the queue full ...
    let resp = http()
        .post(format!("{}/v1/chat/completions", server.base))
        .json(&chat_body("Hi", 8, false))
        .send()
        .expect("chat");
    assert_eq!(resp.status().as_u16(), 429);
    // ... but one that could never run is told why at once.
    let resp = http()
        .post(format!("{}/v1/chat/completions", server.base))
        .json(&chat_body(&"word ".repeat(400), 8, false))
        .send()
        .expect("chat");
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = resp.json().expect("json");
    assert_eq!(body["error"]["code"], "context_length_exceeded", "{body}");
    let counted: Value = http()
        .post(format!("{}/v1/messages/count_tokens", server.base))
        .json(&json!({
            "model": "smollm2-135m-instruct",
            "messages": [{"role": "user", "content": "How many tokens is this?"}],
        }))
        .send()
        .and_then(|r| r.json())
        .expect("count_tokens");
    assert!(
        counted["input_tokens"].as_u64().unwrap_or(0) > 5,
        "{counted}"
    );
    assert_eq!(
        health(&server)["running"],
        1,
        "counted only after the generation"
    );
    assert_eq!(running.join().unwrap().expect("first"), 200);
    assert_eq!(queued.join().unwrap().expect("second"), 200);
}

/// Words that tokenize to roughly one token each, varied so nothing collapses.
fn long_question(words: usize) -> String {
    let vocab = [
        "river", "stone", "garden", "window", "engine", "copper", "lantern", "meadow", "harbor",
        "violet", "summit", "canvas", "orbit", "timber", "velvet", "signal",
    ];
    let mut out = String::from("Summarize this list in one word: ");
    for i in 0..words {
        out.push_str(vocab[(i * 7 + i / 16) % vocab.len()]);
        out.push(' ');
    }
    out
}

#[test]
fn prefill_cut_off_by_the_client_keeps_its_prefix_for_the_retry() {
    // Small chunks make a ~3,000-token prompt take many steps, so the client's timeout lands in
    // the middle of the prefill, as Claude Code's does on a long first prompt.
    let server = start(&[("MLX_SERVE__MODEL__PREFILL_CHUNK", "64")]);
    let body = chat_body(&long_question(3000), 4, false);
    let cut = reqwest::blocking::Client::builder()
        .timeout(Duration::from_millis(1500))
        .build()
        .expect("client");
    let first = cut
        .post(format!("{}/v1/chat/completions", server.base))
        .json(&body)
        .send();
    assert!(
        first.is_err(),
        "the first request should time out mid-prefill"
    );
    // The retry (no-cache: the response cache must not answer it) starts from what the
    // cancelled prefill computed.
    let r = http()
        .post(format!("{}/v1/chat/completions", server.base))
        .header("cache-control", "no-cache")
        .json(&body)
        .send()
        .expect("retry");
    assert_eq!(r.status(), 200);
    let json: Value = r.json().expect("json");
    let usage = &json["usage"];
    let prompt = usage["prompt_tokens"].as_u64().expect("prompt_tokens");
    let cached = usage["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .expect("cached_tokens");
    assert!(prompt > 2500, "{usage}");
    assert!(
        cached >= 64 && cached < prompt,
        "the retry reuses the cut-off prefill's chunks: {usage}"
    );
}

/// `n` choices on the real model: sampled with a seed they are reproducible (and choices 1 and
/// 2 start from choice 0's prompt KV, as the engine's prefix-cache counters show); greedy ones
/// are all the greedy answer.
#[test]
fn n_choices_are_reproducible_with_a_seed_and_all_greedy_without_sampling() {
    let server = start(&[]);
    let client = http();
    let post = |body: &Value| -> Value {
        let r = client
            .post(format!("{}/v1/chat/completions", server.base))
            .header("cache-control", "no-cache")
            .json(body)
            .send()
            .expect("chat");
        assert_eq!(r.status(), 200);
        r.json().expect("json")
    };
    let prefix_counters = || -> (u64, u64) {
        let h: Value = client
            .get(format!("{}/health", server.base))
            .send()
            .and_then(|r| r.json())
            .expect("health");
        let s = &h["engine_stats"];
        (
            s["prefix_hits"].as_u64().unwrap_or(0),
            s["prefix_tokens_saved"].as_u64().unwrap_or(0),
        )
    };
    let texts = |resp: &Value| -> Vec<String> {
        let choices = resp["choices"].as_array().expect("choices");
        choices
            .iter()
            .enumerate()
            .map(|(i, c)| {
                assert_eq!(c["index"], i, "{resp}");
                assert!(c["finish_reason"].is_string(), "{resp}");
                c["message"]["content"].as_str().unwrap_or("").to_owned()
            })
            .collect()
    };
    let mut sampled = chat_body("Tell me one fun fact about cats.", 12, false);
    sampled["n"] = json!(3);
    sampled["temperature"] = json!(1.0);
    sampled["seed"] = json!(7);
    let (hits_before, saved_before) = prefix_counters();
    let first = post(&sampled);
    let (hits_after, saved_after) = prefix_counters();
    let a = texts(&first);
    assert_eq!(a.len(), 3);
    let prompt = first["usage"]["prompt_tokens"]
        .as_u64()
        .expect("prompt_tokens");
    assert!(
        hits_after - hits_before >= 2 && saved_after - saved_before >= 2 * (prompt - 1),
        "choices 1 and 2 reuse choice 0's prompt KV: hits {hits_before}->{hits_after}, \
         saved {saved_before}->{saved_after}, prompt {prompt}"
    );
    let distinct: std::collections::BTreeSet<_> = a.iter().collect();
    assert!(
        distinct.len() >= 2,
        "derived seeds give different choices: {a:?}"
    );
    assert_eq!(
        texts(&post(&sampled)),
        a,
        "the same seed gives the same choices"
    );

    let greedy_one = post(&chat_body("What is the capital of France?", 12, false));
    let mut greedy = chat_body("What is the capital of France?", 12, false);
    greedy["n"] = json!(2);
    let two = texts(&post(&greedy));
    let one = texts(&greedy_one);
    assert_eq!(
        two,
        [one[0].clone(), one[0].clone()],
        "greedy choices are the n = 1 answer"
    );
}

/// Issue #20's replay and a short soak on the real model: every answer is a 2xx or the API's
/// 4xx error body, half-closed clients get their completions, a trickled body gets its 408,
/// and afterwards the server is healthy, idle and still answers correctly.
#[test]
fn hostile_clients_and_a_short_soak_leave_the_real_server_healthy() {
    let server = start(&[("MLX_SERVE__SERVER__BODY_TIMEOUT_S", "2")]);
    let addr: std::net::SocketAddr = server
        .base
        .trim_start_matches("http://")
        .parse()
        .expect("addr");
    for case in replay::cases("smollm2-135m-instruct") {
        replay::replay(addr, &case).unwrap_or_else(|e| panic!("{e}"));
    }
    let raw = replay::trickle(addr, Duration::from_secs(10));
    assert_eq!(replay::final_response(&raw).0, 408, "{raw}");
    replay::vanish(addr, "smollm2-135m-instruct");

    let args = mlx_serve_bench::SoakArgs {
        url: server.base.clone(),
        model: Some("smollm2-135m-instruct".into()),
        api_key: None,
        duration: Duration::from_secs(15),
        concurrency: 3,
        pid: Some(server.child.id()),
        serve: false,
        server: None,
        serve_args: Vec::new(),
        sample_every: Duration::from_secs(5),
        max_tokens: 8,
        timeout: Duration::from_secs(120),
        json: false,
        out: None,
        quiet: true,
    };
    let report = tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(mlx_serve_bench::run_soak(&args))
        .expect("soak runs");
    assert_eq!(report.unexpected, 0, "{:?}", report.unexpected_examples);
    for kind in ["chat", "chat_stream", "messages", "disconnect", "malformed"] {
        assert!(
            report.by_kind.contains_key(kind),
            "{kind}: {:?}",
            report.by_kind
        );
    }
    let after = report.after.expect("health after the soak");
    assert_eq!((after.running, after.queue_depth), (0, 0));

    let resp: Value = http()
        .post(format!("{}/v1/chat/completions", server.base))
        .header("cache-control", "no-cache")
        .json(&chat_body(
            "What is the capital of France? Answer in one word.",
            24,
            false,
        ))
        .send()
        .expect("chat")
        .json()
        .expect("json");
    let content = resp["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default();
    assert!(content.contains("Paris"), "{resp}");
}
