//! `n` choices (chat and legacy completions) and `best_of`: indexes complete, each choice ends
//! once, the prompt counted once in usage, streams interleaved, every choice cancelled when the
//! client leaves.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use mlx_serve_actors::tool_parser::ToolFormat;
use mlx_serve_engine::fake::{FakeConfig, Script, ScriptEntry};
use serde_json::{json, Value};

use crate::common::*;

fn running_together(delay_ms: u64) -> FakeConfig {
    FakeConfig {
        token_delay: Duration::from_millis(delay_ms),
        max_running: 4,
        ..FakeConfig::default()
    }
}

fn words(n: usize) -> String {
    (0..n)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[actix_rt::test]
async fn n_three_chat_returns_three_indexed_choices_and_counts_the_prompt_once() {
    let t = start(|_| {}, running_together(0)).await;
    let (_, one) = t
        .post_json("/v1/chat/completions", chat("alpha beta"))
        .await;
    let r = t
        .post(
            "/v1/chat/completions",
            chat_with("alpha beta", json!({"n": 3, "logprobs": true})),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-cache"], "BYPASS", "n > 1 is never cached");
    let body: Value = r.json().await.unwrap();
    let choices = body["choices"].as_array().expect("choices");
    assert_eq!(choices.len(), 3, "{body}");
    for (i, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], i, "{body}");
        assert_eq!(c["message"]["content"], "alpha beta");
        assert_eq!(c["finish_reason"], "stop");
        assert_eq!(c["logprobs"]["content"].as_array().map(Vec::len), Some(2));
    }
    let usage = &body["usage"];
    assert_eq!(usage["prompt_tokens"], one["usage"]["prompt_tokens"]);
    assert_eq!(usage["completion_tokens"], 6);
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(one["usage"]["prompt_tokens"].as_u64().unwrap() + 6)
    );
}

/// Per choice index: content, finish reasons seen, role chunks seen.
#[derive(Debug, Default)]
struct Streamed {
    content: BTreeMap<u64, String>,
    finishes: BTreeMap<u64, Vec<String>>,
    roles: BTreeMap<u64, usize>,
    order: Vec<u64>,
    usage_chunks: Vec<Value>,
    done: bool,
}

fn read_stream(body: &str) -> Streamed {
    let mut s = Streamed::default();
    for e in sse_events(body).into_iter().flatten() {
        if e == "[DONE]" {
            s.done = true;
            continue;
        }
        assert!(!s.done, "nothing after [DONE]: {body}");
        if e.get("usage").is_some_and(|u| !u.is_null()) {
            assert_eq!(e["choices"], json!([]), "{e}");
            s.usage_chunks.push(e["usage"].clone());
            continue;
        }
        let choices = e["choices"].as_array().expect("choices");
        assert_eq!(choices.len(), 1, "one choice per chunk: {e}");
        let c = &choices[0];
        let i = c["index"].as_u64().expect("index");
        assert!(
            !s.finishes.contains_key(&i),
            "choice {i} continues after its finish: {body}"
        );
        s.order.push(i);
        let text = c["delta"]["content"]
            .as_str()
            .or_else(|| c["text"].as_str())
            .unwrap_or("");
        s.content.entry(i).or_default().push_str(text);
        if c["delta"]["role"] == "assistant" {
            *s.roles.entry(i).or_default() += 1;
        }
        if let Some(f) = c["finish_reason"].as_str() {
            s.finishes.entry(i).or_default().push(f.to_owned());
        }
    }
    s
}

#[actix_rt::test]
async fn n_three_chat_stream_interleaves_choices_and_ends_each_once() {
    let t = start(|_| {}, running_together(5)).await;
    let r = t
        .post(
            "/v1/chat/completions",
            chat_with(
                &words(6),
                json!({"n": 3, "stream": true, "stream_options": {"include_usage": true}}),
            ),
        )
        .await;
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    let s = read_stream(&body);
    assert!(s.done, "{body}");
    let all: Vec<u64> = vec![0, 1, 2];
    assert_eq!(s.content.keys().copied().collect::<Vec<_>>(), all);
    for i in 0..3 {
        assert_eq!(s.content[&i], words(6), "choice {i}");
        assert_eq!(s.finishes[&i], ["stop"], "choice {i} ends once");
        assert_eq!(s.roles[&i], 1, "one role chunk for choice {i}");
    }
    // Decoded together, their tokens alternate rather than coming choice after choice.
    let mut sorted = s.order.clone();
    sorted.sort_unstable();
    assert_ne!(s.order, sorted, "choices interleave: {:?}", s.order);
    assert_eq!(s.usage_chunks.len(), 1, "one usage chunk: {body}");
    assert_eq!(s.usage_chunks[0]["completion_tokens"], 18);
}

#[actix_rt::test]
async fn completions_n_two_over_two_prompts_index_prompt_major_streamed_or_not() {
    let t = start(|_| {}, running_together(0)).await;
    let body = json!({"model": MODEL, "prompt": ["a b", "c"], "n": 2, "echo": true});
    let (status, resp) = t.post_json("/v1/completions", body.clone()).await;
    assert_eq!(status, 200, "{resp}");
    let texts: Vec<(u64, &str)> = resp["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["index"].as_u64().unwrap(), c["text"].as_str().unwrap()))
        .collect();
    assert_eq!(
        texts,
        [(0, "a ba b"), (1, "a ba b"), (2, "cc"), (3, "cc")],
        "{resp}"
    );
    assert_eq!(resp["usage"]["completion_tokens"], 6);
    let mut streamed = body;
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let r = t.post("/v1/completions", streamed).await;
    let s = read_stream(&r.text().await.unwrap());
    let got: Vec<(u64, String)> = s.content.into_iter().collect();
    assert_eq!(
        got,
        [
            (0, "a ba b".to_owned()),
            (1, "a ba b".to_owned()),
            (2, "cc".to_owned()),
            (3, "cc".to_owned())
        ]
    );
    assert!(s.finishes.values().all(|f| f.len() == 1) && s.finishes.len() == 4);
    assert_eq!(s.usage_chunks[0]["completion_tokens"], 6);
}

#[actix_rt::test]
async fn best_of_generates_more_returns_n_and_bills_every_choice() {
    let t = start(|_| {}, running_together(0)).await;
    let (status, resp) = t
        .post_json(
            "/v1/completions",
            json!({"model": MODEL, "prompt": "x y", "n": 2, "best_of": 4}),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    let choices = resp["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 2);
    assert_eq!(
        (choices[0]["index"].as_u64(), choices[1]["index"].as_u64()),
        (Some(0), Some(1))
    );
    // Logprobs were needed to rank, not asked for: none in the answer.
    assert!(choices.iter().all(|c| c["logprobs"].is_null()), "{resp}");
    assert_eq!(
        resp["usage"]["completion_tokens"], 8,
        "four generated, two tokens each"
    );
}

#[actix_rt::test]
async fn each_choice_has_its_own_text_tool_calls_and_finish_reason() {
    let call = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>";
    let entries = ["It is sunny.", call, "No idea."]
        .iter()
        .map(|r| ScriptEntry::Reply(r.to_string()))
        .collect();
    let t = start(
        |s| {
            s.tools.format = ToolFormat::Hermes;
            s.cache.enabled = false;
        },
        FakeConfig {
            script: Some(Script::new(entries)),
            ..FakeConfig::default()
        },
    )
    .await;
    let tools = json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    let (status, resp) = t
        .post_json(
            "/v1/chat/completions",
            chat_with("weather?", json!({"n": 3, "tools": tools})),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    let c = &resp["choices"];
    assert_eq!(c[0]["message"]["content"], "It is sunny.");
    assert_eq!(c[0]["finish_reason"], "stop");
    assert_eq!(c[1]["finish_reason"], "tool_calls", "{resp}");
    assert_eq!(
        c[1]["message"]["tool_calls"][0]["function"]["name"],
        "get_weather"
    );
    assert_eq!(c[2]["message"]["content"], "No idea.");
    assert!(c[2]["message"].get("tool_calls").is_none());
}

#[actix_rt::test]
async fn a_streaming_client_that_leaves_cancels_every_choice() {
    let t = start(|_| {}, running_together(50)).await;
    // 200 tokens at 50 ms would take 10 s per choice if nobody cancelled them.
    let r = t
        .post(
            "/v1/chat/completions",
            chat_with(&words(200), json!({"n": 3, "stream": true})),
        )
        .await;
    assert_eq!(r.status(), 200);
    wait_health(&t, Duration::from_secs(5), |h| h["running"] == 3).await;
    let mut body = r.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("w1") {
        let chunk = body.next().await.expect("stream open").unwrap();
        seen.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    drop(body);
    let t0 = Instant::now();
    wait_health(&t, Duration::from_secs(3), |h| {
        h["running"] == 0 && h["queue_depth"] == 0
    })
    .await;
    assert!(t0.elapsed() < Duration::from_secs(3));
}

#[actix_rt::test]
async fn a_non_streaming_client_that_leaves_cancels_every_choice() {
    let t = start(|_| {}, running_together(50)).await;
    let impatient = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(600))
        .build()
        .unwrap();
    let gone = impatient
        .post(t.url("/v1/chat/completions"))
        .json(&chat_with(&words(200), json!({"n": 3})))
        .send()
        .await;
    assert!(gone.is_err(), "the client gives up first");
    wait_health(&t, Duration::from_secs(3), |h| {
        h["running"] == 0 && h["queue_depth"] == 0
    })
    .await;
    let (status, resp) = t.post_json("/v1/chat/completions", chat("next")).await;
    assert_eq!(status, 200);
    assert_eq!(resp["choices"][0]["message"]["content"], "next");
}
