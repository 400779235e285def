//! The response cache end to end on the real binary and the real default model: a repeated
//! greedy request is a faster HIT with the same answer, the disk tier survives a restart, and two
//! servers sharing one `redis-server` share hits (skipped when `redis-server` is not on PATH).
#![cfg(feature = "mlx")]

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

// Two cores: one test (one or two model servers) at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("addr").port()
}

struct Server {
    child: Child,
    base: String,
}

impl Server {
    /// Start `mlx-serve serve` with a config file; returns once `/health` answers 200.
    fn start(config: &Path) -> Self {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_mlx-serve"))
            .args(["serve", "--host", "127.0.0.1", "--port", &port.to_string()])
            .arg("--config")
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn mlx-serve");
        let mut server = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let client = client();
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            if let Ok(r) = client.get(format!("{}/health", server.base)).send() {
                if r.status() == 200 {
                    return server;
                }
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("mlx-serve exited during start-up: {status}");
            }
            assert!(Instant::now() < deadline, "mlx-serve never became healthy");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `(x-cache, x-cache-tier, body, seconds)` of one chat request.
    fn chat(&self, body: &Value) -> (String, String, Value, f64) {
        let t0 = Instant::now();
        let r = client()
            .post(format!("{}/v1/chat/completions", self.base))
            .json(body)
            .send()
            .expect("request sent");
        let header = |name: &str| {
            r.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        let (x, tier) = (header("x-cache"), header("x-cache-tier"));
        assert_eq!(r.status(), 200);
        let json: Value = r.json().expect("json body");
        (x, tier, json, t0.elapsed().as_secs_f64())
    }

    /// SIGTERM, then wait: a graceful stop closes the disk tier cleanly.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(300))
        .build()
        .expect("client")
}

fn config_file(dir: &Path, cache: &str) -> std::path::PathBuf {
    let path = dir.join("config.toml");
    let mut f = std::fs::File::create(&path).expect("config file");
    writeln!(f, "[server]\nworkers = 1\n{cache}").expect("write config");
    path
}

fn question(q: &str) -> Value {
    json!({
        "model": "smollm2-135m-instruct",
        "messages": [{"role": "user", "content": q}],
        "temperature": 0,
        "max_tokens": 12,
    })
}

fn content(body: &Value) -> &str {
    body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
}

#[test]
fn repeated_greedy_request_is_a_faster_identical_hit_and_survives_a_restart_on_disk() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("responses.redb");
    let config = config_file(
        dir.path(),
        &format!(
            "[cache.disk]\nenabled = true\npath = {:?}\n",
            db.display().to_string()
        ),
    );
    let q = question("What is the capital of France?");

    let server = Server::start(&config);
    let (x1, _, first, miss_s) = server.chat(&q);
    let (x2, tier2, second, hit_s) = server.chat(&q);
    assert_eq!((x1.as_str(), x2.as_str()), ("MISS", "HIT"));
    assert_eq!(tier2, "memory");
    assert!(!content(&first).is_empty());
    assert_eq!(content(&second), content(&first));
    assert_eq!(second["usage"], first["usage"]);
    assert_ne!(second["id"], first["id"]);
    assert!(
        hit_s < miss_s,
        "a hit ({hit_s:.4} s) must be faster than generating ({miss_s:.4} s)"
    );
    // The disk write runs in the background after the response.
    std::thread::sleep(Duration::from_millis(500));
    server.stop();

    let restarted = Server::start(&config);
    let (x3, tier3, third, _) = restarted.chat(&q);
    assert_eq!((x3.as_str(), tier3.as_str()), ("HIT", "disk"));
    assert_eq!(content(&third), content(&first));
    restarted.stop();
}

/// `redis-server` on a free port with no persistence; killed on drop.
struct Redis(Child);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

#[test]
fn two_servers_sharing_redis_share_hits_and_survive_redis_going_away() {
    if !on_path("redis-server") {
        eprintln!("skipped: redis-server is not on PATH (install redis-server to run this test)");
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let port = free_port();
    let redis = Redis(
        Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn redis-server"),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_file(
        dir.path(),
        &format!(
            "[cache.redis]\nurl = \"redis://127.0.0.1:{port}/0\"\ntimeout_ms = 500\nnamespace = \"mlx-serve-test-{port}\"\n"
        ),
    );
    let a = Server::start(&config);
    let b = Server::start(&config);
    let q = question("Name a color of the sky.");
    let (xa, _, on_a, _) = a.chat(&q);
    assert_eq!(xa, "MISS");
    // The Redis write is sent right after the response; give it a moment.
    std::thread::sleep(Duration::from_millis(500));
    let (xb, tier_b, on_b, _) = b.chat(&q);
    assert_eq!((xb.as_str(), tier_b.as_str()), ("HIT", "redis"));
    assert_eq!(content(&on_b), content(&on_a));

    drop(redis);
    let (x, _, body, _) = b.chat(&question("Say hello."));
    assert_eq!(x, "MISS", "Redis down: served by the model, never an error");
    assert!(!content(&body).is_empty());
    let stats: Value = client()
        .get(format!("{}/v1/cache/stats", b.base))
        .send()
        .expect("stats")
        .json()
        .expect("json");
    assert_eq!(stats["redis_configured"], true);
    a.stop();
    b.stop();
}
