//! `bench suite` and `bench load` against a tiny in-process OpenAI-compatible stub over real TCP:
//! the report has the promised shape, and a server that breaks a scenario fails the run.

use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use mlx_serve_bench::{self as bench, BenchArgs, BenchCommand, LoadArgs, SuiteArgs};
use serde_json::{json, Value};

/// `broken`: answer bad requests with 500 instead of a 4xx, as a careless server would.
#[derive(Clone, Copy)]
struct Stub {
    broken: bool,
}

async fn models() -> HttpResponse {
    HttpResponse::Ok()
        .json(json!({"object": "list", "data": [{"id": "stub-model", "object": "model"}]}))
}

async fn chat(stub: web::Data<Stub>, body: web::Json<Value>) -> HttpResponse {
    let body = body.into_inner();
    if !body.get("messages").is_some_and(Value::is_array) {
        let err = json!({"error": {"message": "messages must be an array",
                                   "type": "invalid_request_error", "param": "messages", "code": null}});
        return if stub.broken {
            HttpResponse::InternalServerError().json(err)
        } else {
            HttpResponse::BadRequest().json(err)
        };
    }
    let max_tokens = body.get("max_tokens").and_then(Value::as_u64).unwrap_or(16);
    let (content, finish, n) = if max_tokens == 1 {
        ("Once", "length", 1)
    } else {
        ("Paris is nice.", "stop", 4)
    };
    let tools = body
        .get("tools")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    if body.get("stream").and_then(Value::as_bool).unwrap_or(false) {
        let mut sse = String::new();
        let chunk = |delta: Value, finish: Value| {
            format!(
                "data: {}\n\n",
                json!({"object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
            )
        };
        sse.push_str(&chunk(json!({"role": "assistant"}), Value::Null));
        for word in content.split_inclusive(' ') {
            sse.push_str(&chunk(json!({"content": word}), Value::Null));
        }
        sse.push_str(&chunk(json!({}), json!(finish)));
        sse.push_str(&format!(
            "data: {}\n\n",
            json!({"choices": [],
            "usage": {"prompt_tokens": 10, "completion_tokens": n, "total_tokens": 10 + n}})
        ));
        sse.push_str("data: [DONE]\n\n");
        return HttpResponse::Ok()
            .content_type("text/event-stream")
            .body(sse);
    }
    let message = if tools > 0 {
        let calls: Vec<Value> = (0..tools)
            .map(|i| {
                json!({"id": format!("call_{i}"), "type": "function",
                "function": {"name": format!("tool_{i}"), "arguments": "{\"city\":\"Paris\"}"}})
            })
            .collect();
        json!({"role": "assistant", "content": null, "tool_calls": calls})
    } else {
        json!({"role": "assistant", "content": content})
    };
    let finish = if tools > 0 { "tool_calls" } else { finish };
    HttpResponse::Ok().json(json!({
        "id": "chatcmpl-stub", "object": "chat.completion", "model": "stub-model",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 10, "completion_tokens": n, "total_tokens": 10 + n}
    }))
}

fn start_stub(broken: bool) -> String {
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(Stub { broken }))
            .route("/v1/models", web::get().to(models))
            .route("/v1/chat/completions", web::post().to(chat))
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .expect("bind loopback");
    let addr = server.addrs()[0];
    actix_rt::spawn(server.run());
    format!("http://{addr}")
}

fn suite_args(url: String) -> SuiteArgs {
    SuiteArgs {
        url,
        model: None,
        api_key: None,
        out: None,
        timeout: Duration::from_secs(10),
        max_tokens: 8,
        min_cache_speedup: None,
    }
}

#[actix_web::test]
async fn suite_passes_every_scenario_against_a_conforming_server() {
    let url = start_stub(false);
    let report = bench::run_suite(&suite_args(url))
        .await
        .expect("suite runs");
    let json = serde_json::to_value(&report).expect("serializes");
    let failures: Vec<_> = report.tests.iter().filter(|s| s.status != "PASS").collect();
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(report.model, "stub-model", "model comes from /v1/models");
    for name in [
        "simple_chat",
        "identical_repeat_first",
        "identical_repeat_second",
        "system_prompt",
        "multi_turn",
        "single_tool",
        "multiple_tools",
        "rapid_identical_5",
        "streaming_ttft",
        "long_prefix_first",
        "long_prefix_new_question",
        "max_tokens_one",
        "error_case",
    ] {
        assert!(
            report.tests.iter().any(|s| s.name == name),
            "missing {name}"
        );
    }
    let by_name = |n: &str| report.tests.iter().find(|s| s.name == n).expect(n);
    assert_eq!(by_name("multiple_tools").tool_calls, 2);
    assert_eq!(by_name("error_case").http_code, Some(400));
    let stream = by_name("streaming_ttft");
    assert!(stream.ttft_ms.is_some_and(|t| t <= stream.latency_ms));
    assert_eq!(stream.completion_tokens, Some(4));
    assert_eq!(json["summary"]["success_rate"], 1.0);
    assert!(json["summary"]["latency_ms"]["p95"].is_number());
    assert!(json["summary"]["cache_speedup"].is_number());
    assert!(json["tests"][0]["content_length"]
        .as_u64()
        .is_some_and(|n| n > 0));
}

#[actix_web::test]
async fn a_5xx_for_a_bad_request_fails_the_run() {
    let url = start_stub(true);
    let report = bench::run_suite(&suite_args(url.clone()))
        .await
        .expect("suite runs");
    let error_case = report
        .tests
        .iter()
        .find(|s| s.name == "error_case")
        .expect("ran");
    assert_eq!(error_case.status, "FAIL");
    assert_eq!(report.failed(), 1);
    let run = bench::run(BenchArgs {
        command: BenchCommand::Suite(suite_args(url)),
    })
    .await;
    assert!(run.is_err(), "a failed scenario must make the command fail");
}

fn load_args(url: String) -> LoadArgs {
    LoadArgs {
        url,
        model: Some("stub-model".into()),
        api_key: None,
        concurrency: 4,
        requests: Some(20),
        duration: None,
        max_duration: Duration::from_secs(30),
        stream: true,
        prompt_file: None,
        max_tokens: 8,
        vary: bench::load::Vary::Start,
        timeout: Duration::from_secs(10),
        warmup: 0,
        out: None,
        quiet: true,
    }
}

#[actix_web::test]
async fn load_sends_exactly_the_requested_count_and_measures_ttft() {
    let url = start_stub(false);
    let report = bench::run_load(&load_args(url)).await.expect("load runs");
    assert_eq!(report.requests_sent, 20);
    assert_eq!(report.requests_ok, 20);
    assert_eq!(report.generated_tokens, 80);
    assert!(report.requests_per_s > 0.0);
    assert_eq!(report.ttft_ms.map(|t| t.count), Some(20));
    assert!(!report.stopped_by_time);
}

#[actix_web::test]
async fn warmup_requests_are_sent_but_not_measured() {
    let url = start_stub(false);
    let mut args = load_args(url);
    args.warmup = 3;
    args.requests = Some(5);
    let report = bench::run_load(&args).await.expect("load runs");
    assert_eq!(report.requests_sent, 5);
    assert_eq!(report.latency_ms.map(|l| l.count), Some(5));
}

#[actix_web::test]
async fn load_stops_at_the_time_cap_and_counts_connect_errors() {
    // Nothing listens on a just-released port: every request is a connect error.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let mut args = load_args(format!("http://127.0.0.1:{port}"));
    args.requests = None;
    args.duration = Some(Duration::from_millis(300));
    args.concurrency = 2;
    let start = std::time::Instant::now();
    let report = bench::run_load(&args).await.expect("load runs");
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(report.stopped_by_time);
    assert_eq!(report.requests_ok, 0);
    assert_eq!(report.errors.get("connect"), Some(&report.requests_sent));
}

#[actix_web::test]
async fn cache_run_counts_hits_and_checks_answers_match_the_miss() {
    let url = start_stub(false);
    let args = bench::CacheArgs {
        url,
        model: None,
        api_key: None,
        n: 200,
        concurrency: 4,
        max_tokens: 8,
        max_duration: Duration::from_secs(30),
        timeout: Duration::from_secs(10),
        out: None,
        quiet: true,
    };
    let report = bench::run_cache(&args).await.expect("cache run");
    assert_eq!(
        (report.hits_sent, report.hits_ok, report.mismatched),
        (200, 200, 0)
    );
    assert_eq!(report.hit_latency_ms.map(|l| l.count), Some(200));
    assert!(report.hits_per_s > 0.0);
    eprintln!(
        "stub hits/s {:.0}, p50 {:?}",
        report.hits_per_s,
        report.hit_latency_ms.map(|l| l.p50)
    );
}
