//! The real binary on the real default model, over TCP on loopback.
#![cfg(feature = "mlx")]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

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
        .json(&chat_body("What is the capital of France?", 24, false))
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
