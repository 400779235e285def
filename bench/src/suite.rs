//! `bench suite`: functional scenarios against a live OpenAI-compatible server, each measured, with
//! a summary; any failed scenario fails the run.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};

use super::client::{chat_body, ErrorKind, Outcome, Target};
use super::stats::{ratio, Summary};

/// `mlx-serve bench suite`.
#[derive(Debug, Clone, clap::Args)]
pub struct SuiteArgs {
    /// Server base URL (`http://127.0.0.1:8080` or `.../v1`).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Model name to request; default: the first id from `/v1/models`.
    #[arg(long)]
    pub model: Option<String>,
    /// Bearer token.
    #[arg(long, env = "MLX_SERVE_API_KEY")]
    pub api_key: Option<String>,
    /// Write the JSON report here (it is always printed to stdout too).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Per-request time limit.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// `max_tokens` for generating scenarios.
    #[arg(long, default_value_t = 32)]
    pub max_tokens: u32,
    /// Fail the identical-repeat scenario unless the repeat is at least this much faster.
    #[arg(long)]
    pub min_cache_speedup: Option<f64>,
}

/// One scenario's measurement.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    pub name: String,
    /// "PASS" or "FAIL".
    pub status: &'static str,
    pub http_code: Option<u16>,
    pub latency_ms: f64,
    pub ttft_ms: Option<f64>,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub tool_calls: usize,
    pub finish_reason: Option<String>,
    pub content_length: usize,
    pub error: Option<String>,
}

/// Suite-wide figures.
#[derive(Debug, Clone, Serialize)]
pub struct SuiteSummary {
    pub total: usize,
    pub passed: usize,
    pub failed: usize,
    pub success_rate: f64,
    /// Over every request the suite made.
    pub latency_ms: Option<Summary>,
    pub ttft_ms: Option<Summary>,
    /// First identical request's latency / the repeat's.
    pub cache_speedup: Option<f64>,
    /// TTFT of the long prompt cold / TTFT with the same prefix and a new question.
    pub prefix_speedup: Option<f64>,
}

/// The whole report (`--out` JSON).
#[derive(Debug, Clone, Serialize)]
pub struct SuiteReport {
    pub url: String,
    pub model: String,
    /// One entry per scenario; `tests` and upper-case `PASS`/`FAIL`, the layout the seeds' test
    /// guide reads with `jq '.tests[] | {name, status, latency_ms}'`.
    pub tests: Vec<ScenarioResult>,
    pub summary: SuiteSummary,
}

impl SuiteReport {
    pub fn failed(&self) -> usize {
        self.summary.failed
    }
}

type Check = fn(&Outcome) -> Result<(), String>;

fn record(name: &str, o: &Outcome, check: Check) -> ScenarioResult {
    record_with(name, o, check, false)
}

/// `expects_http_error`: an HTTP error status is the point of the scenario, so `check` judges it.
fn record_with(name: &str, o: &Outcome, check: Check, expects_http_error: bool) -> ScenarioResult {
    let verdict = match &o.error {
        Some((ErrorKind::Http(_), _)) if expects_http_error => check(o),
        Some((kind, msg)) => Err(format!("{}: {msg}", kind.key())),
        None => check(o),
    };
    ScenarioResult {
        name: name.to_string(),
        status: if verdict.is_ok() { "PASS" } else { "FAIL" },
        http_code: o.http_code,
        latency_ms: o.latency_ms,
        ttft_ms: o.ttft_ms,
        prompt_tokens: o.prompt_tokens,
        completion_tokens: o.completion_tokens,
        tool_calls: o.tool_calls,
        finish_reason: o.finish_reason.clone(),
        content_length: o.content.chars().count(),
        error: verdict.err(),
    }
}

/// A 2xx with content, or a finish reason: tiny models may legitimately say nothing.
fn answered(o: &Outcome) -> Result<(), String> {
    if o.content.is_empty() && o.tool_calls == 0 && o.finish_reason.is_none() {
        return Err("empty answer without finish_reason".into());
    }
    Ok(())
}

/// Tool calls, when made, must be complete: a name and JSON-object arguments.
fn tool_calls_well_formed(o: &Outcome) -> Result<(), String> {
    answered(o)?;
    if o.finish_reason.as_deref() == Some("tool_calls") && o.tool_calls == 0 {
        return Err("finish_reason tool_calls without tool_calls".into());
    }
    let calls = o
        .body
        .as_ref()
        .and_then(|b| b.pointer("/choices/0/message/tool_calls"));
    for call in calls.and_then(Value::as_array).into_iter().flatten() {
        let name = call.pointer("/function/name").and_then(Value::as_str);
        if name.is_none_or(str::is_empty) {
            return Err("tool call without function.name".into());
        }
        let args = call
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !serde_json::from_str::<Value>(args).is_ok_and(|v| v.is_object()) {
            return Err(format!(
                "tool call arguments are not a JSON object: {args:?}"
            ));
        }
    }
    Ok(())
}

fn streamed(o: &Outcome) -> Result<(), String> {
    answered(o)?;
    if o.ttft_ms.is_none() && !o.content.is_empty() {
        return Err("content without a timed first delta".into());
    }
    Ok(())
}

/// OpenAI clients expect 4xx (not 5xx: they retry those) with `{"error": {"message": ...}}`.
fn openai_client_error(o: &Outcome) -> Result<(), String> {
    match o.http_code {
        Some(c) if (400..500).contains(&c) => {}
        other => return Err(format!("expected a 4xx, got {other:?}")),
    }
    let msg = o.body.as_ref().and_then(|b| b.pointer("/error/message"));
    if !msg.is_some_and(Value::is_string) {
        return Err("error body lacks error.message".into());
    }
    Ok(())
}

fn length_limited(o: &Outcome) -> Result<(), String> {
    if o.completion_tokens.is_some_and(|n| n > 1) {
        return Err(format!(
            "max_tokens 1 but {:?} completion tokens",
            o.completion_tokens
        ));
    }
    match o.finish_reason.as_deref() {
        Some("length") | Some("stop") => Ok(()),
        other => Err(format!("finish_reason {other:?}, expected length")),
    }
}

fn weather_tool() -> Value {
    json!({"type": "function", "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]}}})
}

fn time_tool() -> Value {
    json!({"type": "function", "function": {
        "name": "get_time",
        "description": "Current local time in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]}}})
}

/// ~1,000 tokens of deterministic filler (44 notes) that a prefix cache can reuse.
pub fn long_prefix() -> String {
    let mut s = String::from("Here are notes about the town of Arden. Read them, then answer.\n");
    // ~23 tokens a note with digit-by-digit tokenizers (SmolLM2, Qwen).
    for i in 0..44 {
        s.push_str(&format!(
            "Note {i}: the bakery on street {} opens at {} o'clock and sells {} loaves.\n",
            i % 17,
            6 + i % 5,
            20 + i * 3
        ));
    }
    s
}

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

/// Runs every scenario in order (order matters: repeats follow their first request).
pub async fn run_suite(args: &SuiteArgs) -> anyhow::Result<SuiteReport> {
    let target = Target::new(&args.url, args.api_key.clone(), 8)?;
    let model = target.model_or_default(args.model.as_ref()).await;
    let t = args.timeout;
    let mt = args.max_tokens;
    let mut results = Vec::new();

    let simple = chat_body(
        &model,
        user("What is the capital of France? Answer in one word."),
        mt,
        false,
    );
    results.push(record(
        "simple_chat",
        &target.chat(&simple, t).await,
        answered,
    ));

    let repeat = chat_body(&model, user("Name three primary colors."), mt, false);
    let first = target.chat(&repeat, t).await;
    let second = target.chat(&repeat, t).await;
    let cache_speedup = (first.ok() && second.ok())
        .then(|| ratio(first.latency_ms, second.latency_ms))
        .flatten();
    results.push(record("identical_repeat_first", &first, answered));
    let mut second_result = record("identical_repeat_second", &second, answered);
    if let (Some(min), "PASS") = (args.min_cache_speedup, second_result.status) {
        if cache_speedup.is_none_or(|s| s < min) {
            second_result.status = "FAIL";
            second_result.error = Some(format!("cache speedup {cache_speedup:?} below {min}"));
        }
    }
    results.push(second_result);

    let system = chat_body(
        &model,
        json!([{"role": "system", "content": "You are a terse assistant. Reply in at most five words."},
               {"role": "user", "content": "Why is the sky blue?"}]),
        mt,
        false,
    );
    results.push(record(
        "system_prompt",
        &target.chat(&system, t).await,
        answered,
    ));

    let multi = chat_body(
        &model,
        json!([{"role": "user", "content": "My name is Alice."},
               {"role": "assistant", "content": "Nice to meet you, Alice!"},
               {"role": "user", "content": "What is my name?"}]),
        mt,
        false,
    );
    results.push(record(
        "multi_turn",
        &target.chat(&multi, t).await,
        answered,
    ));

    let mut single_tool = chat_body(
        &model,
        user("What is the weather in Paris right now?"),
        mt * 2,
        false,
    );
    single_tool["tools"] = json!([weather_tool()]);
    let o = target.chat(&single_tool, t).await;
    results.push(record("single_tool", &o, tool_calls_well_formed));

    let mut multi_tool = chat_body(
        &model,
        user("What is the weather in Paris and the local time in Tokyo?"),
        mt * 4,
        false,
    );
    multi_tool["tools"] = json!([weather_tool(), time_tool()]);
    let o = target.chat(&multi_tool, t).await;
    results.push(record("multiple_tools", &o, tool_calls_well_formed));

    let rapid = chat_body(&model, user("Count from one to five."), mt, false);
    let handles: Vec<_> = (0..5)
        .map(|_| {
            let (target, rapid) = (target.clone(), rapid.clone());
            tokio::spawn(async move { target.chat(&rapid, t).await })
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let o = h.await.unwrap_or_else(|e| Outcome {
            error: Some((ErrorKind::Other, e.to_string())),
            ..Outcome::default()
        });
        results.push(record(&format!("rapid_identical_{}", i + 1), &o, answered));
    }

    let stream = chat_body(&model, user("Write one sentence about the sea."), mt, true);
    results.push(record(
        "streaming_ttft",
        &target.chat(&stream, t).await,
        streamed,
    ));

    let prefix = long_prefix();
    let q1 = chat_body(
        &model,
        user(&format!(
            "{prefix}\nQuestion: when does the bakery on street 3 open?"
        )),
        8,
        true,
    );
    let q2 = chat_body(
        &model,
        user(&format!("{prefix}\nQuestion: how many notes are there?")),
        8,
        true,
    );
    let cold = target.chat(&q1, t).await;
    let warm = target.chat(&q2, t).await;
    let prefix_speedup = match (cold.ttft_ms, warm.ttft_ms) {
        (Some(a), Some(b)) => ratio(a, b),
        _ => None,
    };
    results.push(record("long_prefix_first", &cold, streamed));
    results.push(record("long_prefix_new_question", &warm, streamed));

    let one = chat_body(
        &model,
        user("Tell me a long story about dragons."),
        1,
        false,
    );
    results.push(record(
        "max_tokens_one",
        &target.chat(&one, t).await,
        length_limited,
    ));

    let bad = json!({"model": model, "messages": "this is not a list of messages"});
    let o = target.chat(&bad, t).await;
    results.push(record_with("error_case", &o, openai_client_error, true));

    Ok(build_report(
        &args.url,
        model,
        results,
        cache_speedup,
        prefix_speedup,
    ))
}

fn build_report(
    url: &str,
    model: String,
    scenarios: Vec<ScenarioResult>,
    cache_speedup: Option<f64>,
    prefix_speedup: Option<f64>,
) -> SuiteReport {
    let passed = scenarios.iter().filter(|s| s.status == "PASS").count();
    let lat: Vec<f64> = scenarios.iter().map(|s| s.latency_ms).collect();
    let ttft: Vec<f64> = scenarios.iter().filter_map(|s| s.ttft_ms).collect();
    let total = scenarios.len();
    SuiteReport {
        url: url.to_string(),
        model,
        summary: SuiteSummary {
            total,
            passed,
            failed: total - passed,
            success_rate: if total == 0 {
                0.0
            } else {
                passed as f64 / total as f64
            },
            latency_ms: Summary::from_samples(&lat),
            ttft_ms: Summary::from_samples(&ttft),
            cache_speedup,
            prefix_speedup,
        },
        tests: scenarios,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(code: u16, body: Value) -> Outcome {
        Outcome {
            http_code: Some(code),
            body: Some(body),
            ..Outcome::default()
        }
    }

    #[test]
    fn error_case_requires_4xx_with_openai_error_json() {
        let mut o = outcome(
            400,
            json!({"error": {"message": "bad", "type": "invalid_request_error"}}),
        );
        o.error = Some((ErrorKind::Http(400), "bad".into()));
        assert_eq!(
            record_with("error_case", &o, openai_client_error, true).status,
            "PASS"
        );
        let mut o5 = outcome(500, json!({"error": {"message": "x"}}));
        o5.error = Some((ErrorKind::Http(500), "x".into()));
        assert_eq!(
            record_with("error_case", &o5, openai_client_error, true).status,
            "FAIL"
        );
        let plain = outcome(422, json!({"detail": "x"}));
        assert_eq!(
            record_with("error_case", &plain, openai_client_error, true).status,
            "FAIL"
        );
        assert_eq!(record("simple_chat", &o, answered).status, "FAIL");
    }

    #[test]
    fn http_error_fails_ordinary_scenarios() {
        let mut o = outcome(503, json!({}));
        o.error = Some((ErrorKind::Http(503), "busy".into()));
        let r = record("simple_chat", &o, answered);
        assert_eq!(r.status, "FAIL");
        assert!(r.error.unwrap().contains("http_503"));
    }

    #[test]
    fn tool_call_with_non_object_arguments_fails() {
        let mut o = outcome(
            200,
            json!({"choices": [{"message": {"tool_calls": [
            {"function": {"name": "get_weather", "arguments": "Paris"}}]}, "finish_reason": "tool_calls"}]}),
        );
        o.tool_calls = 1;
        o.finish_reason = Some("tool_calls".into());
        assert!(tool_calls_well_formed(&o).is_err());
    }

    #[test]
    fn summary_counts_failures_and_rates() {
        let ok = record(
            "a",
            &Outcome {
                finish_reason: Some("stop".into()),
                latency_ms: 10.0,
                ..Outcome::default()
            },
            answered,
        );
        let bad = record(
            "b",
            &Outcome {
                latency_ms: 30.0,
                ..Outcome::default()
            },
            answered,
        );
        let r = build_report("u", "m".into(), vec![ok, bad], Some(2.0), None);
        assert_eq!((r.summary.passed, r.failed()), (1, 1));
        assert_eq!(r.summary.success_rate, 0.5);
        assert_eq!(r.summary.latency_ms.unwrap().p50, 20.0);
    }

    #[test]
    fn long_prefix_is_roughly_a_thousand_tokens() {
        // ~4 characters a token for English-ish text.
        let chars = long_prefix().len();
        assert!((3_000..6_000).contains(&chars), "{chars}");
    }
}
