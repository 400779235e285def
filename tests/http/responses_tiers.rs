//! Stored Responses API responses in the cache's lower tiers, over the fake engine (which
//! echoes the last message): a conversation continues after a restart with the disk tier on,
//! and on another replica behind the same Redis; tenants stay apart and `DELETE` reaches
//! every tier.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mlx_serve::config::Settings;
use mlx_serve_engine::fake::FakeConfig;
use serde_json::{json, Value};

use crate::common::*;

const ALICE: &str = "sk-alice";
const BOB: &str = "sk-bob";

fn keys(s: &mut Settings) {
    s.server.api_keys = vec![ALICE.into(), BOB.into()];
}

fn on_disk(path: &Path) -> impl Fn(&mut Settings) + '_ {
    move |s| {
        keys(s);
        s.cache.disk.enabled = true;
        s.cache.disk.path = path.to_owned();
    }
}

async fn call(
    t: &TestServer,
    method: reqwest::Method,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = t.client.request(method, t.url(path)).bearer_auth(key);
    if let Some(body) = body {
        r = r.json(&body);
    }
    let r = r.send().await.expect("sent");
    let status = r.status().as_u16();
    (status, r.json().await.expect("json body"))
}

async fn respond(t: &TestServer, key: &str, input: &str, previous: Option<&str>) -> (u16, Value) {
    let mut body = json!({"model": MODEL, "input": input});
    if let Some(id) = previous {
        body["previous_response_id"] = json!(id);
    }
    call(t, reqwest::Method::POST, "/v1/responses", key, Some(body)).await
}

async fn stop(t: TestServer) {
    t.server.handle.stop(true).await;
    drop(t);
}

#[actix_rt::test]
async fn a_conversation_continues_after_a_restart_with_the_disk_tier() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cache.redb");
    let t = start(on_disk(&path), FakeConfig::default()).await;
    let (status, first) = respond(&t, ALICE, "The first turn", None).await;
    assert_eq!(status, 200, "{first}");
    let id = first["id"].as_str().expect("id").to_owned();
    stop(t).await;

    let t = start(on_disk(&path), FakeConfig::default()).await;
    let (status, got) = call(
        &t,
        reqwest::Method::GET,
        &format!("/v1/responses/{id}"),
        ALICE,
        None,
    )
    .await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got, first, "read back exactly as it was returned");

    // Another key sees nothing, neither to continue, read nor delete.
    let (status, e) = respond(&t, BOB, "Mine now?", Some(&id)).await;
    assert_eq!(status, 404, "{e}");
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let (status, _) = call(&t, method, &format!("/v1/responses/{id}"), BOB, None).await;
        assert_eq!(status, 404);
    }

    let (status, second) = respond(&t, ALICE, "The second turn", Some(&id)).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["previous_response_id"], id.as_str());
    assert_eq!(second["output"][0]["content"][0]["text"], "The second turn");
    assert!(
        second["usage"]["input_tokens"].as_u64() > first["usage"]["input_tokens"].as_u64(),
        "the stored history is in the prompt: {first} {second}"
    );

    let (status, deleted) = call(
        &t,
        reqwest::Method::DELETE,
        &format!("/v1/responses/{id}"),
        ALICE,
        None,
    )
    .await;
    assert_eq!((status, &deleted["deleted"]), (200, &json!(true)));
    stop(t).await;

    // Deleted from disk too: gone after another restart, while the second turn is not.
    let t = start(on_disk(&path), FakeConfig::default()).await;
    let (status, _) = respond(&t, ALICE, "Again", Some(&id)).await;
    assert_eq!(status, 404);
    let second_id = second["id"].as_str().expect("id");
    let (status, _) = respond(&t, ALICE, "The third turn", Some(second_id)).await;
    assert_eq!(status, 200);
}

/// `redis-server` on a free port with no persistence; killed on drop.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start() -> Option<Self> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .ok()?
            .port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Self { child, port })
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[actix_rt::test]
async fn another_replica_behind_the_same_redis_continues_a_conversation() {
    let Some(redis) = Redis::start() else {
        eprintln!("skipped: redis-server is not on PATH");
        return;
    };
    let url = format!("redis://127.0.0.1:{}/0", redis.port);
    let replica = |s: &mut Settings| {
        keys(s);
        s.cache.redis.url = Some(url.clone());
        s.cache.redis.timeout_ms = 500;
    };
    let a = start(replica, FakeConfig::default()).await;
    let b = start(replica, FakeConfig::default()).await;
    let (status, first) = respond(&a, ALICE, "Asked on replica a", None).await;
    assert_eq!(status, 200, "{first}");
    let id = first["id"].as_str().expect("id");

    let (status, _) = respond(&b, BOB, "Not yours", Some(id)).await;
    assert_eq!(status, 404);
    let (status, second) = respond(&b, ALICE, "Continued on replica b", Some(id)).await;
    assert_eq!(status, 200, "{second}");
    assert!(
        second["usage"]["input_tokens"].as_u64() > first["usage"]["input_tokens"].as_u64(),
        "replica b had the history: {second}"
    );

    // Redis gone: replicas still answer from memory, and an unknown id is a 404, never a 5xx.
    drop(redis);
    let second_id = second["id"].as_str().expect("id");
    let (status, third) = respond(&b, ALICE, "Still here", Some(second_id)).await;
    assert_eq!(status, 200, "{third}");
    let (status, _) = respond(&a, ALICE, "From a", Some(second_id)).await;
    assert_eq!(status, 404);
}
