//! Several models behind one server (fake engines): routing by `model`, load on demand, the
//! residency budget, keep-alive, failures that stay with their model, operator load/unload.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mlx_serve::config::{ModelSettings, Settings};
use mlx_serve::pipeline::cache::with_configured_cache;
use mlx_serve::pipeline::seams::Seams;
use mlx_serve::start_server_with_loader;
use mlx_serve::state::ModelLoader;
use mlx_serve_engine::engine::{
    Engine, EngineError, EngineInfo, EngineStats, GenerateRequest, Prompt, SeqEvent, SeqId,
};
use mlx_serve_engine::fake::{FakeConfig, FakeEngine};
use serde_json::{json, Value};

use crate::common::*;

/// The fake engine, with every reply upper-cased: tells model `upper` apart from the echo.
struct Upper(FakeEngine);

impl Engine for Upper {
    fn info(&self) -> EngineInfo {
        self.0.info()
    }
    fn count_prompt_tokens(&mut self, prompt: &Prompt) -> Result<usize, EngineError> {
        self.0.count_prompt_tokens(prompt)
    }
    fn add(&mut self, id: SeqId, request: GenerateRequest) -> Result<(), EngineError> {
        self.0.add(id, request)
    }
    fn free_slots(&self) -> usize {
        self.0.free_slots()
    }
    fn has_work(&self) -> bool {
        self.0.has_work()
    }
    fn step(&mut self) -> Vec<(SeqId, SeqEvent)> {
        let mut events = self.0.step();
        for (_, ev) in &mut events {
            if let SeqEvent::Text { text, .. } = ev {
                *text = text.to_uppercase();
            }
        }
        events
    }
    fn cancel(&mut self, id: SeqId) {
        self.0.cancel(id)
    }
    fn stats(&self) -> EngineStats {
        self.0.stats()
    }
}

fn entry(id: &str) -> ModelSettings {
    ModelSettings {
        name: id.into(),
        ..ModelSettings::default()
    }
}

/// Models `echo`, `upper` and `broken` (whose load fails); counts loads per model.
struct Fleet {
    loads: Arc<[AtomicUsize; 3]>,
}

impl Fleet {
    fn new() -> Self {
        Self {
            loads: Arc::new([
                AtomicUsize::new(0),
                AtomicUsize::new(0),
                AtomicUsize::new(0),
            ]),
        }
    }

    fn loads(&self, i: usize) -> usize {
        self.loads[i].load(Ordering::SeqCst)
    }

    fn loader(&self) -> ModelLoader {
        let loads = self.loads.clone();
        Arc::new(move |e, _| {
            let loads = loads.clone();
            let id = e.id.clone();
            Arc::new(move || {
                let i = ["echo", "upper", "broken"]
                    .iter()
                    .position(|n| *n == id)
                    .unwrap_or(0);
                loads[i].fetch_add(1, Ordering::SeqCst);
                // Loading takes a moment, so concurrent first requests overlap with it.
                std::thread::sleep(Duration::from_millis(100));
                let fake = FakeEngine::new(FakeConfig {
                    model_id: id.clone(),
                    ..FakeConfig::default()
                });
                match i {
                    1 => Ok(Box::new(Upper(fake)) as Box<dyn Engine>),
                    2 => Err(EngineError::Internal("bad magic in broken.gguf".into())),
                    _ => Ok(Box::new(fake) as Box<dyn Engine>),
                }
            })
        })
    }
}

async fn start_fleet(fleet: &Fleet, adjust: impl FnOnce(&mut Settings)) -> TestServer {
    let mut s = test_settings();
    s.models = vec![entry("echo"), entry("upper"), entry("broken")];
    s.cache.enabled = false;
    adjust(&mut s);
    let seams = with_configured_cache(Seams::default(), &s.cache);
    let server = start_server_with_loader(s, fleet.loader(), seams)
        .await
        .expect("server starts");
    let t = TestServer::new(server);
    wait_health(&t, Duration::from_secs(10), |h| h["status"] == "ok").await;
    t
}

fn ask(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}], "temperature": 0})
}

async fn answer(t: &TestServer, model: &str, text: &str) -> String {
    let (status, body) = t.post_json("/v1/chat/completions", ask(model, text)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model"], model);
    body["choices"][0]["message"]["content"]
        .as_str()
        .expect("content")
        .to_owned()
}

fn model_row<'a>(health: &'a Value, id: &str) -> &'a Value {
    health["models"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["id"] == id))
        .unwrap_or_else(|| panic!("{id} in /health: {health}"))
}

#[actix_rt::test]
async fn alternating_requests_are_answered_by_the_model_they_name() {
    let fleet = Fleet::new();
    let t = start_fleet(&fleet, |_| {}).await;
    assert_eq!(fleet.loads(0) + fleet.loads(1), 0, "nothing preloaded");
    for round in 0..2 {
        assert_eq!(answer(&t, "echo", "hello there").await, "hello there");
        assert_eq!(answer(&t, "upper", "hello there").await, "HELLO THERE");
        let h = t.health().await;
        assert_eq!(model_row(&h, "echo")["state"], "ready", "round {round}");
        assert_eq!(model_row(&h, "upper")["state"], "ready", "round {round}");
    }
    assert_eq!((fleet.loads(0), fleet.loads(1)), (1, 1));
    let (_, list) = t.get_json("/v1/models").await;
    let ids: Vec<(&str, bool)> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["id"].as_str().unwrap(), m["loaded"].as_bool().unwrap()))
        .collect();
    assert_eq!(ids, [("echo", true), ("upper", true), ("broken", false)]);
}

#[actix_rt::test]
async fn concurrent_first_requests_load_the_model_once() {
    let fleet = Fleet::new();
    let t = start_fleet(&fleet, |_| {}).await;
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let client = t.client.clone();
            let url = t.url("/v1/chat/completions");
            actix_rt::spawn(async move {
                let r = client
                    .post(url)
                    .json(&ask("upper", &format!("q{i}")))
                    .send();
                let r = r.await.unwrap();
                (r.status().as_u16(), r.json::<Value>().await.unwrap())
            })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["choices"][0]["message"]["content"], format!("Q{i}"));
    }
    assert_eq!(fleet.loads(1), 1);
}

#[actix_rt::test]
async fn one_resident_model_unloads_and_reloads_and_still_answers() {
    let fleet = Fleet::new();
    let t = start_fleet(&fleet, |s| s.server.max_loaded_models = 1).await;
    for _ in 0..2 {
        assert_eq!(answer(&t, "echo", "a b").await, "a b");
        assert_eq!(answer(&t, "upper", "a b").await, "A B");
        let h = t.health().await;
        assert_eq!(model_row(&h, "echo")["state"], "unloaded", "{h}");
        assert_eq!(model_row(&h, "upper")["state"], "ready", "{h}");
    }
    assert_eq!((fleet.loads(0), fleet.loads(1)), (2, 2));
    let h = t.health().await;
    assert_eq!(model_row(&h, "echo")["unloads"], 2);
    assert_eq!(model_row(&h, "echo")["resident_bytes"], 0);
}

#[actix_rt::test]
async fn keep_alive_zero_unloads_after_the_request() {
    let fleet = Fleet::new();
    let t = start_fleet(&fleet, |_| {}).await;
    let mut body = ask("upper", "bye");
    body["keep_alive"] = json!(0);
    let (status, resp) = t.post_json("/v1/chat/completions", body).await;
    assert_eq!(status, 200, "{resp}");
    wait_health(&t, Duration::from_secs(2), |h| {
        model_row(h, "upper")["state"] == "unloaded"
    })
    .await;
    // A duration string that is not one is the client's mistake.
    let mut body = ask("upper", "x");
    body["keep_alive"] = json!("soon");
    let (status, resp) = t.post_json("/v1/chat/completions", body).await;
    assert_eq!(status, 400, "{resp}");
    assert_eq!(error_of(&resp).1, Some("keep_alive"));
}

#[actix_rt::test]
async fn a_configured_keep_alive_unloads_an_idle_model() {
    let fleet = Fleet::new();
    let t = start_fleet(&fleet, |s| s.models[1].keep_alive = 0.3).await;
    assert_eq!(answer(&t, "upper", "x").await, "X");
    let h = t.health().await;
    assert_eq!(model_row(&h, "upper")["state"], "ready");
    wait_health(&t, Duration::from_secs(3), |h| {
        model_row(h, "upper")["state"] == "unloaded"
    })
    .await;
    assert_eq!(model_row(&t.health().await, "echo")["state"], "unloaded");
}

#[actix_rt::test]
async fn a_broken_model_fails_its_own_requests_and_the_others_keep_serving() {
    let fleet = Fleet::new();
    let t = start_fleet(&fleet, |_| {}).await;
    let (status, body) = t
        .post_json("/v1/chat/completions", ask("broken", "x"))
        .await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("bad magic"),
        "{body}"
    );
    let anthropic = json!({"model": "broken", "max_tokens": 8,
        "messages": [{"role": "user", "content": "x"}]});
    let (status, body) = t.post_json("/v1/messages", anthropic).await;
    assert_eq!(status, 529, "{body}");
    assert_eq!(body["error"]["type"], "overloaded_error");
    assert_eq!(answer(&t, "echo", "still here").await, "still here");
    let h = t.health().await;
    assert_eq!(h["status"], "ok", "the default model serves: {h}");
    assert_eq!(model_row(&h, "broken")["state"], "failed");
    assert!(model_row(&h, "broken")["error"]
        .as_str()
        .unwrap()
        .contains("bad magic"));
    // The failure is not retried on every request.
    let _ = t
        .post_json("/v1/chat/completions", ask("broken", "y"))
        .await;
    assert_eq!(fleet.loads(2), 1);
}

#[actix_rt::test]
async fn an_unknown_model_is_a_404_that_lists_the_served_ids() {
    let fleet = Fleet::new();
    let t = start_fleet(&fleet, |s| s.aliases.0.clear()).await;
    let (status, body) = t.post_json("/v1/chat/completions", ask("gpt-9", "x")).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(error_of(&body).2, Some("model_not_found"));
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("echo, upper, broken"), "{message}");
    let anthropic = json!({"model": "claude-x", "max_tokens": 8,
        "messages": [{"role": "user", "content": "x"}]});
    let (status, body) = t.post_json("/v1/messages", anthropic).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "not_found_error");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("echo, upper, broken"));
}

#[actix_rt::test]
async fn aliases_route_to_their_model() {
    let fleet = Fleet::new();
    let t = start_fleet(&fleet, |s| {
        s.models[1].aliases = vec!["shouty".into()];
        s.aliases.0.insert("claude-haiku-*".into(), "upper".into());
    })
    .await;
    assert_eq!(answer(&t, "shouty", "hi").await, "HI");
    assert_eq!(answer(&t, "claude-haiku-4", "hi").await, "HI");
    // The default pattern (`claude-*` → "") goes to the first model.
    assert_eq!(answer(&t, "claude-opus-5", "hi").await, "hi");
}

#[actix_rt::test]
async fn operators_load_and_unload_models_with_an_admin_key() {
    let fleet = Fleet::new();
    let t = start_fleet(&fleet, |s| {
        s.server.api_keys = vec!["user".into()];
        s.server.admin_keys = vec!["root".into()];
    })
    .await;
    let post = |path: &str, key: &str| t.client.post(t.url(path)).bearer_auth(key).send();
    let r = post("/v1/models/upper/load", "user").await.unwrap();
    assert_eq!(r.status(), 403);
    let r = post("/v1/models/upper/load", "nobody").await.unwrap();
    assert_eq!(r.status(), 401);
    let r = post("/v1/models/nope/load", "root").await.unwrap();
    assert_eq!(r.status(), 404);
    let r = post("/v1/models/upper/load", "root").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["started"], true);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let h = t.health().await;
        if model_row(&h, "upper")["state"] == "ready" {
            break;
        }
        assert!(Instant::now() < deadline, "{h}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = post("/v1/models/upper/unload", "root").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["unloaded"], true);
    let h = t.health().await;
    assert_eq!(model_row(&h, "upper")["state"], "unloaded");
    assert_eq!(fleet.loads(1), 1);
}

#[actix_rt::test]
async fn a_catalog_model_that_is_not_pulled_is_a_404_saying_how_to_pull() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::new();
    let t = start_fleet(&fleet, |s| {
        let mut qwen = entry("qwen2.5-coder-0.5b-instruct");
        qwen.models_dir = dir.path().display().to_string();
        s.models.push(qwen);
    })
    .await;
    let (status, body) = t
        .post_json(
            "/v1/chat/completions",
            ask("qwen2.5-coder-0.5b-instruct", "x"),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(error_of(&body).2, Some("model_not_pulled"));
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("mlx-serve pull qwen2.5-coder-0.5b-instruct"));
}

#[actix_rt::test]
async fn metrics_count_loads_and_unloads_per_model() {
    let fleet = Fleet::new();
    let t = start_fleet(&fleet, |s| {
        s.server.max_loaded_models = 1;
        s.metrics.publish_interval_ms = 20;
    })
    .await;
    assert_eq!(answer(&t, "echo", "a").await, "a");
    assert_eq!(answer(&t, "upper", "a").await, "A");
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let text = t
            .client
            .get(t.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let has = |line: &str| text.lines().any(|l| l == line);
        if has("mlx_serve_model_unloads_total{model=\"echo\"} 1")
            && has("mlx_serve_model_loads_total{model=\"upper\"} 1")
            && has("mlx_serve_model_loaded{model=\"echo\"} 0")
            && has("mlx_serve_model_loaded{model=\"upper\"} 1")
        {
            break;
        }
        assert!(Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

#[actix_rt::test]
async fn an_unloaded_model_takes_its_response_cache_entries_with_it() {
    let fleet = Fleet::new();
    let t = start_fleet(&fleet, |s| s.cache.enabled = true).await;
    let x_cache = |r: &reqwest::Response| r.headers()["x-cache"].to_str().unwrap().to_owned();
    let first = t.post("/v1/chat/completions", ask("echo", "same")).await;
    assert_eq!(x_cache(&first), "MISS");
    let other = t.post("/v1/chat/completions", ask("upper", "same")).await;
    assert_eq!(x_cache(&other), "MISS", "keys are per model");
    let again = t.post("/v1/chat/completions", ask("echo", "same")).await;
    assert_eq!(x_cache(&again), "HIT");
    let r = t
        .client
        .post(t.url("/v1/models/echo/unload"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The sweeper drops the entries shortly after the unload.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let (_, stats) = t.get_json("/v1/cache/stats").await;
        if stats["cached_items"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "{stats}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = t.post("/v1/chat/completions", ask("echo", "same")).await;
    assert_eq!(x_cache(&after), "MISS");
    let kept = t.post("/v1/chat/completions", ask("upper", "same")).await;
    assert_eq!(x_cache(&kept), "HIT", "the other model's entries stay");
    assert_eq!(fleet.loads(0), 2);
}
