//! A real server on a loopback port over the fake engine, and helpers to talk to it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mlx_serve::config::Settings;
use mlx_serve::pipeline::seams::Seams;
use mlx_serve::{start_server, RunningServer};
use mlx_serve_actors::model::actor::EngineFactory;
use mlx_serve_engine::engine::Engine;
use mlx_serve_engine::fake::{FakeConfig, FakeEngine};
use serde_json::{json, Value};

pub const MODEL: &str = "fake-model";

pub struct TestServer {
    pub base: String,
    pub client: reqwest::Client,
    pub server: RunningServer,
}

pub fn fake_factory(config: FakeConfig) -> EngineFactory {
    Arc::new(move || Ok(Box::new(FakeEngine::new(config.clone())) as Box<dyn Engine>))
}

pub fn test_settings() -> Settings {
    let mut s = Settings::default();
    s.server.port = 0;
    s.server.workers = 1;
    s.server.shutdown_grace_s = 5;
    s.model.name = MODEL.to_owned();
    s
}

/// Start with adjusted settings and fake behaviour; returns once /health says ok.
pub async fn start(adjust: impl FnOnce(&mut Settings), fake: FakeConfig) -> TestServer {
    let mut settings = test_settings();
    adjust(&mut settings);
    start_with(
        settings,
        fake_factory(FakeConfig {
            model_id: MODEL.into(),
            ..fake
        }),
    )
    .await
}

pub async fn start_with(settings: Settings, factory: EngineFactory) -> TestServer {
    let server = start_server(settings, factory, Seams::default())
        .await
        .expect("server starts");
    let t = TestServer::new(server);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(r) = t.client.get(t.url("/health")).send().await {
            if r.status() == 200 {
                return t;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("server did not become healthy");
}

impl TestServer {
    /// A client for a started server (no proxy: the tests talk to loopback).
    pub fn new(server: RunningServer) -> Self {
        Self {
            base: format!("http://{}", server.addr),
            client: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("client"),
            server,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("request sent")
    }

    /// Posts `body` verbatim as `application/json` (for malformed-JSON cases).
    pub async fn post_raw(&self, path: &str, body: &'static str) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn post_json(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self.post(path, body).await;
        let status = r.status().as_u16();
        (status, r.json().await.expect("json body"))
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let r = self.client.get(self.url(path)).send().await.expect("sent");
        let status = r.status().as_u16();
        (status, r.json().await.expect("json body"))
    }

    pub async fn health(&self) -> Value {
        self.get_json("/health").await.1
    }
}

pub fn chat(text: &str) -> Value {
    json!({"model": MODEL, "messages": [{"role": "user", "content": text}]})
}

pub fn chat_with(text: &str, extra: Value) -> Value {
    let mut body = chat(text);
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    body
}

/// SSE body split into events: `Some(json)` for data events, `None` for comments; `[DONE]` as
/// the string value "[DONE]".
pub fn sse_events(body: &str) -> Vec<Option<Value>> {
    body.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            if e.starts_with(':') {
                return None;
            }
            let data = e
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not an SSE data event: {e:?}"));
            if data == "[DONE]" {
                Some(Value::String("[DONE]".into()))
            } else {
                Some(serde_json::from_str(data).expect("event is JSON"))
            }
        })
        .collect()
}

pub fn error_of(body: &Value) -> (&str, Option<&str>, Option<&str>) {
    let e = &body["error"];
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "error has a message: {body}"
    );
    (
        e["type"].as_str().unwrap_or(""),
        e["param"].as_str(),
        e["code"].as_str(),
    )
}

/// Poll until `cond` holds on /health (or panic after `within`).
pub async fn wait_health(t: &TestServer, within: Duration, cond: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let h = t.health().await;
        if cond(&h) {
            return h;
        }
        assert!(Instant::now() < deadline, "health never matched: {h}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Posts `body` (a streaming request) and returns the JSON object of every event's `data:` line,
/// for every API (Anthropic and Responses add `event:` lines, which are skipped).
pub async fn sse_data_events(t: &TestServer, path: &str, body: Value) -> Vec<Value> {
    let r = t.post(path, body).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.expect("body");
    text.split("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter(Value::is_object)
        .collect()
}
