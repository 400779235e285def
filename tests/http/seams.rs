//! The cache, tool-parser and metrics seams, exercised with small stand-ins.

use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use mlx_serve::pipeline::seams::{
    CachedResponse, MetricsSeam, Outcome, ParsedDelta, RequestRecord, ResponseCacheSeam, Seams,
    StreamingToolParser, ToolParserSeam,
};
use mlx_serve_actors::cache::{
    CacheKey, CachePolicy, CacheStats, CacheTier, LeaderGuard, LookupOutcome,
};
use mlx_serve_engine::engine::{FinishReason, Usage};
use mlx_serve_engine::fake::FakeConfig;
use serde_json::{json, Value};

use crate::common::*;

/// Text `CALL <name> <json>` becomes one tool call, sent in two fragments.
struct CallParser {
    buf: String,
}

impl StreamingToolParser for CallParser {
    fn push(&mut self, text: &str) -> Vec<ParsedDelta> {
        self.buf.push_str(text);
        Vec::new()
    }

    fn finish(&mut self) -> Vec<ParsedDelta> {
        let text = std::mem::take(&mut self.buf);
        match text.strip_prefix("CALL ").and_then(|r| r.split_once(' ')) {
            Some((name, args)) => {
                let (a, b) = args.split_at(args.len() / 2);
                vec![
                    ParsedDelta::ToolCall {
                        index: 0,
                        id: Some("call_x".into()),
                        name: Some(name.into()),
                        arguments: a.into(),
                    },
                    ParsedDelta::ToolCall {
                        index: 0,
                        id: None,
                        name: None,
                        arguments: b.into(),
                    },
                ]
            }
            None => vec![ParsedDelta::Text(text)],
        }
    }
}

struct Calls;

impl ToolParserSeam for Calls {
    fn parser(&self, _tools: &[Value]) -> Option<Box<dyn StreamingToolParser>> {
        Some(Box::new(CallParser { buf: String::new() }))
    }
}

#[derive(Default)]
struct Recorder(Mutex<Vec<RequestRecord>>);

impl MetricsSeam for Recorder {
    fn record(&self, record: RequestRecord) {
        self.0.lock().unwrap().push(record);
    }
}

#[derive(Default)]
struct MemoryCache(Mutex<Vec<(CacheKey, CachedResponse)>>);

impl ResponseCacheSeam for MemoryCache {
    fn policy(&self) -> CachePolicy {
        CachePolicy::Always
    }
    fn lookup(&self, key: CacheKey) -> BoxFuture<'static, Option<LookupOutcome>> {
        let hit = self
            .0
            .lock()
            .unwrap()
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, c)| c.clone());
        let outcome = match hit {
            Some(value) => LookupOutcome::Hit {
                value: Arc::new(value),
                tier: CacheTier::Memory,
            },
            // A detached guard stores nothing; this stand-in stores through `Direct` instead.
            None => LookupOutcome::Miss(LeaderGuard::detached(key)),
        };
        Box::pin(async move { Some(outcome) })
    }
    fn store(&self, key: CacheKey, response: CachedResponse) {
        self.0.lock().unwrap().push((key, response));
    }
    fn stats(&self) -> BoxFuture<'static, Option<CacheStats>> {
        let stats = CacheStats {
            cached_items: self.0.lock().unwrap().len(),
            ..CacheStats::default()
        };
        Box::pin(async move { Some(stats) })
    }
    fn clear(&self) -> BoxFuture<'static, Option<usize>> {
        Box::pin(async { Some(0) })
    }
}

async fn start_seams(seams: Seams) -> TestServer {
    let server = mlx_serve::start_server(
        test_settings(),
        fake_factory(FakeConfig {
            model_id: MODEL.into(),
            ..FakeConfig::default()
        }),
        seams,
    )
    .await
    .unwrap();
    let t = TestServer::new(server);
    wait_health(&t, std::time::Duration::from_secs(5), |h| {
        h["status"] == "ok"
    })
    .await;
    t
}

fn tool_request(text: &str, stream: bool) -> Value {
    chat_with(
        text,
        json!({"stream": stream, "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]}),
    )
}

#[actix_rt::test]
async fn parsed_tool_calls_render_as_openai_tool_calls() {
    let t = start_seams(Seams {
        tool_parser: Some(Arc::new(Calls)),
        ..Seams::default()
    })
    .await;
    let (status, body) = t
        .post_json(
            "/v1/chat/completions",
            tool_request(r#"CALL get_weather {"city":"Paris"}"#, false),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert!(choice["message"]["content"].is_null());
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["id"], "call_x");
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(call["function"]["arguments"], r#"{"city":"Paris"}"#);
    // Without tools in the request, no parser runs.
    let (_, plain) = t.post_json("/v1/chat/completions", chat("CALL x {}")).await;
    assert_eq!(plain["choices"][0]["message"]["content"], "CALL x {}");
}

#[actix_rt::test]
async fn streamed_tool_call_sends_id_and_name_once() {
    let t = start_seams(Seams {
        tool_parser: Some(Arc::new(Calls)),
        ..Seams::default()
    })
    .await;
    let r = t
        .post(
            "/v1/chat/completions",
            tool_request(r#"CALL f {"a":1}"#, true),
        )
        .await;
    let body = r.text().await.unwrap();
    let calls: Vec<Value> = sse_events(&body)
        .into_iter()
        .flatten()
        .filter_map(|e| e["choices"][0]["delta"]["tool_calls"].get(0).cloned())
        .collect();
    assert_eq!(calls.len(), 2, "{body}");
    assert_eq!(calls[0]["function"]["name"], "f");
    assert_eq!(calls[0]["type"], "function");
    assert!(calls[1].get("id").is_none() && calls[1]["function"].get("name").is_none());
    let args: String = calls
        .iter()
        .map(|c| c["function"]["arguments"].as_str().unwrap())
        .collect();
    assert_eq!(args, r#"{"a":1}"#);
    assert!(body.contains(r#""finish_reason":"tool_calls""#));
}

#[actix_rt::test]
async fn cache_hit_replays_without_the_engine_and_metrics_see_both() {
    let cache = Arc::new(MemoryCache::default());
    let metrics = Arc::new(Recorder::default());
    let t = start_seams(Seams {
        cache: Some(cache.clone()),
        metrics: Some(metrics.clone()),
        ..Seams::default()
    })
    .await;
    let (_, first) = t
        .post_json("/v1/chat/completions", chat("remember me"))
        .await;
    assert_eq!(first["choices"][0]["message"]["content"], "remember me");
    // Tamper with the stored text: a hit must come from the cache, not the engine.
    {
        let mut stored = cache.0.lock().unwrap();
        assert_eq!(stored.len(), 1);
        stored[0].1.text = "from cache".into();
        assert_eq!(stored[0].1.finish_reason, FinishReason::Stop);
        assert_eq!(
            stored[0].1.usage,
            Usage {
                prompt_tokens: 4,
                cached_tokens: 0,
                completion_tokens: 2
            }
        );
    }
    let (_, second) = t
        .post_json("/v1/chat/completions", chat("remember me"))
        .await;
    assert_eq!(second["choices"][0]["message"]["content"], "from cache");
    assert_eq!(t.health().await["cache"]["cached_items"], 1);
    let records = metrics.0.lock().unwrap().clone();
    assert_eq!(records.len(), 2);
    assert!(!records[0].cache_hit && records[1].cache_hit);
    assert_eq!(records[0].outcome, Outcome::Stop);
    assert_eq!(records[0].usage.completion_tokens, 2);
}

#[actix_rt::test]
async fn cached_raw_text_is_parsed_into_the_same_tool_calls_on_a_hit() {
    let t = start_seams(Seams {
        tool_parser: Some(Arc::new(Calls)),
        cache: Some(mlx_serve::pipeline::cache::ActorCache::start(
            &mlx_serve_actors::cache::CacheSettings::default(),
        )),
        ..Seams::default()
    })
    .await;
    let mut body = tool_request(r#"CALL get_weather {"city":"Oslo"}"#, false);
    body["temperature"] = json!(0);
    let first = t.post("/v1/chat/completions", body.clone()).await;
    assert_eq!(first.headers()["x-cache"], "MISS");
    let first: Value = first.json().await.unwrap();
    let second = t.post("/v1/chat/completions", body.clone()).await;
    assert_eq!(second.headers()["x-cache"], "HIT");
    let second: Value = second.json().await.unwrap();
    assert_eq!(second["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        second["choices"][0]["message"]["tool_calls"],
        first["choices"][0]["message"]["tool_calls"]
    );
    // Streamed from the cache: the same call, fragments and all.
    body["stream"] = json!(true);
    let r = t.post("/v1/chat/completions", body).await;
    assert_eq!(r.headers()["x-cache"], "HIT");
    let text = r.text().await.unwrap();
    let args: String = sse_events(&text)
        .into_iter()
        .flatten()
        .filter_map(|e| {
            e["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(args, r#"{"city":"Oslo"}"#);
    assert!(text.contains(r#""finish_reason":"tool_calls""#));
}
