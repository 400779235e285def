//! The response cache wired into the pipeline: `x-cache`, replay through both renderers,
//! tenant isolation, `Cache-Control`, policy, coalescing, and the cache routes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mlx_serve::config::Settings;
use mlx_serve::pipeline::cache::ActorCache;
use mlx_serve::pipeline::seams::Seams;
use mlx_serve_actors::model::actor::EngineFactory;
use mlx_serve_engine::engine::{
    Engine, EngineError, EngineInfo, GenerateRequest, Prompt, SeqEvent, SeqId,
};
use mlx_serve_engine::fake::{FakeConfig, FakeEngine};
use serde_json::{json, Value};

use crate::common::*;

/// The fake engine, counting the sequences it is asked to generate.
struct Counting {
    inner: FakeEngine,
    adds: Arc<AtomicUsize>,
}

impl Engine for Counting {
    fn info(&self) -> EngineInfo {
        self.inner.info()
    }
    fn count_prompt_tokens(&mut self, prompt: &Prompt) -> Result<usize, EngineError> {
        self.inner.count_prompt_tokens(prompt)
    }
    fn add(&mut self, id: SeqId, request: GenerateRequest) -> Result<(), EngineError> {
        self.adds.fetch_add(1, Ordering::SeqCst);
        self.inner.add(id, request)
    }
    fn free_slots(&self) -> usize {
        self.inner.free_slots()
    }
    fn has_work(&self) -> bool {
        self.inner.has_work()
    }
    fn step(&mut self) -> Vec<(SeqId, SeqEvent)> {
        self.inner.step()
    }
    fn cancel(&mut self, id: SeqId) {
        self.inner.cancel(id)
    }
}

struct Cached {
    t: TestServer,
    adds: Arc<AtomicUsize>,
}

impl Cached {
    fn runs(&self) -> usize {
        self.adds.load(Ordering::SeqCst)
    }

    async fn chat(&self, body: Value, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut r = self
            .t
            .client
            .post(self.t.url("/v1/chat/completions"))
            .json(&body);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.send().await.expect("request sent")
    }

    /// `(x-cache, body)` of a non-streaming chat request.
    async fn chat_json(&self, body: Value, headers: &[(&str, &str)]) -> (String, Value) {
        let r = self.chat(body, headers).await;
        assert_eq!(r.status(), 200);
        let x = x_cache(&r);
        (x, r.json().await.expect("json"))
    }

    async fn stats(&self) -> Value {
        let (status, body) = self.t.get_json("/v1/cache/stats").await;
        assert_eq!(status, 200, "{body}");
        body
    }
}

fn x_cache(r: &reqwest::Response) -> String {
    r.headers()
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

fn tier(r: &reqwest::Response) -> String {
    r.headers()
        .get("x-cache-tier")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

async fn start_cached(adjust: impl FnOnce(&mut Settings), token_delay: Duration) -> Cached {
    let mut settings = test_settings();
    adjust(&mut settings);
    let adds = Arc::new(AtomicUsize::new(0));
    let counter = adds.clone();
    let config = FakeConfig {
        model_id: MODEL.into(),
        token_delay,
        ..FakeConfig::default()
    };
    let factory: EngineFactory = Arc::new(move || {
        Ok(Box::new(Counting {
            inner: FakeEngine::new(config.clone()),
            adds: counter.clone(),
        }) as Box<dyn Engine>)
    });
    let seams = Seams {
        cache: Some(ActorCache::start(&settings.cache)),
        ..Seams::default()
    };
    let server = mlx_serve::start_server(settings, factory, seams)
        .await
        .expect("server starts");
    let t = TestServer::new(server);
    wait_health(&t, Duration::from_secs(5), |h| h["status"] == "ok").await;
    Cached { t, adds }
}

fn greedy(text: &str) -> Value {
    chat_with(text, json!({"temperature": 0}))
}

/// Concatenated `delta.content`, the finish reason and the usage chunk of a chat stream.
fn stream_parts(body: &str) -> (String, Value, Value, bool, Value) {
    let events = sse_events(body);
    let data: Vec<Value> = events.into_iter().flatten().collect();
    let role = data
        .first()
        .map(|c| c["choices"][0]["delta"]["role"].clone())
        .unwrap_or(Value::Null);
    let content: String = data
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    let finish = data
        .iter()
        .map(|c| c["choices"][0]["finish_reason"].clone())
        .find(|f| !f.is_null())
        .unwrap_or(Value::Null);
    let usage = data
        .iter()
        .find(|c| c["choices"].as_array().is_some_and(Vec::is_empty))
        .map(|c| c["usage"].clone())
        .unwrap_or(Value::Null);
    let done = data.last() == Some(&Value::String("[DONE]".into()));
    (content, finish, usage, done, role)
}

#[actix_rt::test]
async fn identical_greedy_request_is_a_hit_with_the_same_answer_and_a_fresh_id() {
    let c = start_cached(|_| {}, Duration::ZERO).await;
    let (x1, first) = c.chat_json(greedy("cache me please"), &[]).await;
    let (x2, second) = c.chat_json(greedy("cache me please"), &[]).await;
    assert_eq!((x1.as_str(), x2.as_str()), ("MISS", "HIT"));
    assert_eq!(c.runs(), 1, "the hit must not reach the engine");
    assert_eq!(first["choices"], second["choices"]);
    // Usage on a hit is the original generation's.
    assert_eq!(first["usage"], second["usage"]);
    assert_ne!(first["id"], second["id"]);
    assert_eq!(second["object"], "chat.completion");
    // Key order inside the JSON body does not matter.
    let reordered: Value = serde_json::from_str(
        r#"{"temperature":0,"messages":[{"content":"cache me please","role":"user"}],"model":"fake-model"}"#,
    )
    .expect("json");
    let (x3, _) = c.chat_json(reordered, &[]).await;
    assert_eq!(x3, "HIT");
    // Anything that changes the answer is a different entry.
    let (x4, _) = c
        .chat_json(
            chat_with(
                "cache me please",
                json!({"temperature": 0, "max_tokens": 1}),
            ),
            &[],
        )
        .await;
    assert_eq!(x4, "MISS");
    assert_eq!(c.runs(), 2);
}

#[actix_rt::test]
async fn streamed_hit_replays_the_same_chunks_as_the_original_stream() {
    let c = start_cached(|_| {}, Duration::ZERO).await;
    let body = chat_with(
        "stream me twice",
        json!({"temperature": 0, "stream": true, "stream_options": {"include_usage": true}}),
    );
    let r1 = c.chat(body.clone(), &[]).await;
    assert_eq!(x_cache(&r1), "MISS");
    let s1 = r1.text().await.expect("body");
    let r2 = c.chat(body.clone(), &[]).await;
    assert_eq!(x_cache(&r2), "HIT");
    assert_eq!(tier(&r2), "memory");
    let s2 = r2.text().await.expect("body");
    let (content1, finish1, usage1, done1, role1) = stream_parts(&s1);
    let (content2, finish2, usage2, done2, role2) = stream_parts(&s2);
    assert_eq!(content1, "stream me twice");
    assert_eq!(content2, content1);
    assert_eq!((finish1, finish2), (json!("stop"), json!("stop")));
    assert!(
        usage1["total_tokens"].as_u64().is_some_and(|n| n > 0),
        "{s1}"
    );
    assert_eq!(usage2, usage1);
    assert!(done1 && done2, "{s2}");
    assert_eq!((role1, role2), (json!("assistant"), json!("assistant")));
    assert_eq!(c.runs(), 1);
    // The non-streaming form of the same request is answered from the same entry.
    let (x, whole) = c.chat_json(greedy("stream me twice"), &[]).await;
    assert_eq!(x, "HIT");
    assert_eq!(whole["choices"][0]["message"]["content"], content1.as_str());
}

#[actix_rt::test]
async fn tenants_with_different_api_keys_never_share_entries() {
    let c = start_cached(
        |s| s.server.api_keys = vec!["sk-alice".into(), "sk-bob".into()],
        Duration::ZERO,
    )
    .await;
    let alice = [("authorization", "Bearer sk-alice")];
    let bob = [("x-api-key", "sk-bob")];
    assert_eq!(c.chat_json(greedy("secret"), &alice).await.0, "MISS");
    assert_eq!(c.chat_json(greedy("secret"), &alice).await.0, "HIT");
    assert_eq!(c.chat_json(greedy("secret"), &bob).await.0, "MISS");
    assert_eq!(c.chat_json(greedy("secret"), &bob).await.0, "HIT");
    assert_eq!(c.runs(), 2);
}

#[actix_rt::test]
async fn cache_control_no_cache_bypasses_and_no_store_stores_nothing() {
    let c = start_cached(|_| {}, Duration::ZERO).await;
    assert_eq!(c.chat_json(greedy("fresh"), &[]).await.0, "MISS");
    let no_cache = [("cache-control", "no-cache")];
    assert_eq!(c.chat_json(greedy("fresh"), &no_cache).await.0, "BYPASS");
    assert_eq!(c.runs(), 2, "no-cache must reach the engine");
    let no_store = [("cache-control", "no-store")];
    assert_eq!(c.chat_json(greedy("private"), &no_store).await.0, "BYPASS");
    assert_eq!(c.chat_json(greedy("private"), &[]).await.0, "MISS");
    assert_eq!(c.runs(), 4);
}

#[actix_rt::test]
async fn sampled_requests_are_not_cached_unless_seeded() {
    let c = start_cached(|_| {}, Duration::ZERO).await;
    let sampled = chat_with("roll the dice", json!({"temperature": 0.9}));
    assert_eq!(c.chat_json(sampled.clone(), &[]).await.0, "BYPASS");
    assert_eq!(c.chat_json(sampled, &[]).await.0, "BYPASS");
    assert_eq!(c.runs(), 2);
    let seeded = chat_with("roll the dice", json!({"temperature": 0.9, "seed": 7}));
    assert_eq!(c.chat_json(seeded.clone(), &[]).await.0, "MISS");
    assert_eq!(c.chat_json(seeded, &[]).await.0, "HIT");
    assert_eq!(c.runs(), 3);
}

#[actix_rt::test]
async fn concurrent_identical_requests_coalesce_into_one_generation() {
    let c = start_cached(|_| {}, Duration::from_millis(40)).await;
    let body = greedy("one two three four five six");
    let (a, b) = futures_util::join!(c.chat(body.clone(), &[]), async {
        // Let the first become the leader.
        tokio::time::sleep(Duration::from_millis(30)).await;
        c.chat(body.clone(), &[]).await
    });
    let (xa, xb) = (x_cache(&a), x_cache(&b));
    let tier_b = tier(&b);
    let (ja, jb): (Value, Value) = (a.json().await.expect("a"), b.json().await.expect("b"));
    assert_eq!((xa.as_str(), xb.as_str()), ("MISS", "HIT"));
    assert_eq!(tier_b, "coalesced");
    assert_eq!(ja["choices"], jb["choices"]);
    assert_eq!(c.runs(), 1, "the waiter must not generate");
    let stats = c.stats().await;
    assert_eq!(stats["coalesced"], 1, "{stats}");
    assert_eq!(stats["misses"], 1, "{stats}");
}

#[actix_rt::test]
async fn stats_route_and_health_report_counters_and_delete_clears() {
    let c = start_cached(|_| {}, Duration::ZERO).await;
    c.chat_json(greedy("count me"), &[]).await;
    c.chat_json(greedy("count me"), &[]).await;
    let stats = c.stats().await;
    assert_eq!(stats["hits"], 1, "{stats}");
    assert_eq!(stats["misses"], 1);
    assert_eq!(stats["total_requests"], 2);
    assert_eq!(stats["hit_rate"], 0.5);
    assert_eq!(stats["cached_items"], 1);
    assert!(stats["bytes"].as_u64().is_some_and(|b| b > 0));
    assert_eq!(stats["evictions"], 0);
    let health = c.t.health().await;
    for field in [
        "hits",
        "misses",
        "total_requests",
        "hit_rate",
        "cached_items",
        "evictions",
        "bytes",
    ] {
        assert_eq!(health["cache"][field], stats[field], "health.cache.{field}");
    }
    let r =
        c.t.client
            .delete(c.t.url("/v1/cache"))
            .send()
            .await
            .expect("sent");
    assert_eq!(r.status(), 200);
    let cleared: Value = r.json().await.expect("json");
    assert_eq!(cleared["removed"], 1);
    assert_eq!(c.stats().await["cached_items"], 0);
    assert_eq!(c.chat_json(greedy("count me"), &[]).await.0, "MISS");
}

#[actix_rt::test]
async fn clearing_needs_a_valid_key_and_an_admin_key_when_configured() {
    let c = start_cached(
        |s| {
            s.server.api_keys = vec!["sk-user".into(), "sk-admin".into()];
            s.server.admin_keys = vec!["sk-admin".into()];
        },
        Duration::ZERO,
    )
    .await;
    let delete = |key: Option<&'static str>| {
        let mut r = c.t.client.delete(c.t.url("/v1/cache"));
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        async move { r.send().await.expect("sent").status().as_u16() }
    };
    assert_eq!(delete(None).await, 401);
    // A valid key that is not an admin key is authenticated but not allowed.
    assert_eq!(delete(Some("sk-user")).await, 403);
    assert_eq!(delete(Some("sk-nobody")).await, 401);
    assert_eq!(delete(Some("sk-admin")).await, 200);
    // The stats route is an ordinary authenticated route.
    let r =
        c.t.client
            .get(c.t.url("/v1/cache/stats"))
            .send()
            .await
            .expect("sent");
    assert_eq!(r.status(), 401);
}

#[actix_rt::test]
async fn a_constrained_answer_replays_exactly_and_response_formats_never_share_entries() {
    let c = start_cached(|_| {}, Duration::ZERO).await;
    let schema = json!({"type": "json_schema", "json_schema": {"name": "c", "schema": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}});
    let body = |format: Value| {
        chat_with(
            "Paris",
            json!({"temperature": 0, "response_format": format}),
        )
    };
    let (x1, first) = c.chat_json(body(schema.clone()), &[]).await;
    let (x2, again) = c.chat_json(body(schema), &[]).await;
    assert_eq!((x1.as_str(), x2.as_str()), ("MISS", "HIT"));
    assert_eq!(first["choices"], again["choices"]);
    assert_eq!(
        first["choices"][0]["message"]["content"],
        "{\"city\": \"Paris\"}"
    );
    // Differing only in response_format: never another's entry.
    let (x3, object) = c.chat_json(body(json!({"type": "json_object"})), &[]).await;
    assert_eq!(x3, "MISS");
    assert_eq!(object["choices"][0]["message"]["content"], "{}");
    let (x4, _) = c.chat_json(body(json!({"type": "text"})), &[]).await;
    assert_eq!(x4, "MISS");
    assert_eq!(c.runs(), 3);
}
