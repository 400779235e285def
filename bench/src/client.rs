//! One OpenAI chat-completions request, measured: latency, TTFT, usage, tool calls, and a typed
//! error kind. Plain HTTP so it works against any OpenAI-compatible server.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::Serialize;
use serde_json::{json, Value};

use super::sse::{ChunkKind, SseParser, StreamSummary};

/// Where a request went wrong; the `load` report counts errors by this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "status", rename_all = "snake_case")]
pub enum ErrorKind {
    /// The server answered with a non-2xx status.
    Http(u16),
    Timeout,
    Connect,
    /// A 2xx answer that is not a chat completion (bad JSON, SSE without `[DONE]`, error event).
    Malformed,
    Other,
}

impl ErrorKind {
    /// Stable key for error tallies (`http_503`, `timeout`, ...).
    pub fn key(&self) -> String {
        match self {
            Self::Http(code) => format!("http_{code}"),
            Self::Timeout => "timeout".into(),
            Self::Connect => "connect".into(),
            Self::Malformed => "malformed".into(),
            Self::Other => "other".into(),
        }
    }

    fn of(err: &reqwest::Error) -> Self {
        if err.is_timeout() {
            Self::Timeout
        } else if err.is_connect() {
            Self::Connect
        } else if err.is_decode() || err.is_body() {
            Self::Malformed
        } else {
            Self::Other
        }
    }
}

/// A measured request.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub http_code: Option<u16>,
    pub latency_ms: f64,
    /// Time to the first content/tool-call delta (streaming only).
    pub ttft_ms: Option<f64>,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub tool_calls: usize,
    pub finish_reason: Option<String>,
    pub content: String,
    /// Content chunks in a stream: a token count where the server sends no `usage`.
    pub content_chunks: u64,
    pub error: Option<(ErrorKind, String)>,
    /// The parsed JSON body for non-streaming answers (including error bodies), for checks.
    pub body: Option<Value>,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.error.is_none()
    }

    /// Generated tokens: `usage` when given, else streamed content chunks.
    pub fn generated_tokens(&self) -> u64 {
        self.completion_tokens.unwrap_or(self.content_chunks)
    }
}

/// Connection details shared by every subcommand.
#[derive(Debug, Clone)]
pub struct Target {
    http: reqwest::Client,
    /// `http://host:port/v1`.
    base: String,
    endpoint: String,
    models_url: String,
    api_key: Option<String>,
}

/// Accepts `http://host:port`, `.../v1` or `.../v1/`: users paste all three.
pub fn normalize_base(url: &str) -> String {
    let trimmed = url.trim_end_matches('/');
    if trimmed.ends_with("/v1") {
        trimmed.to_string()
    } else {
        format!("{trimmed}/v1")
    }
}

impl Target {
    pub fn new(url: &str, api_key: Option<String>, pool: usize) -> anyhow::Result<Self> {
        let base = normalize_base(url);
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(pool.max(1))
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self {
            http,
            base: base.clone(),
            endpoint: format!("{base}/chat/completions"),
            models_url: format!("{base}/models"),
            api_key,
        })
    }

    /// First model id from `/v1/models`, so `--model` can be left out against one-model servers.
    /// The model to send: the one asked for, else the first the server lists, else `default`.
    pub async fn model_or_default(&self, asked: Option<&String>) -> String {
        match asked {
            Some(m) => m.clone(),
            None => self
                .default_model()
                .await
                .unwrap_or_else(|| "default".into()),
        }
    }

    async fn default_model(&self) -> Option<String> {
        let mut req = self
            .http
            .get(&self.models_url)
            .timeout(Duration::from_secs(10));
        if let Some(k) = &self.api_key {
            req = req.bearer_auth(k);
        }
        let v: Value = req.send().await.ok()?.json().await.ok()?;
        v.get("data")?
            .get(0)?
            .get("id")?
            .as_str()
            .map(str::to_string)
    }

    /// Sends `body` as-is (`stream` is read from it) and measures the answer within `timeout`.
    pub async fn chat(&self, body: &Value, timeout: Duration) -> Outcome {
        let start = Instant::now();
        let streaming = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
        let mut out =
            match tokio::time::timeout(timeout, self.chat_inner(body, streaming, start)).await {
                Ok(o) => o,
                Err(_) => Outcome {
                    error: Some((
                        ErrorKind::Timeout,
                        format!("no complete answer within {timeout:?}"),
                    )),
                    ..Outcome::default()
                },
            };
        out.latency_ms = start.elapsed().as_secs_f64() * 1e3;
        out
    }

    async fn chat_inner(&self, body: &Value, streaming: bool, start: Instant) -> Outcome {
        let mut out = Outcome::default();
        let mut req = self.http.post(&self.endpoint).json(body);
        if let Some(k) = &self.api_key {
            req = req.bearer_auth(k);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                out.error = Some((ErrorKind::of(&e), e.to_string()));
                return out;
            }
        };
        let status = resp.status();
        out.http_code = Some(status.as_u16());
        if !status.is_success() || !streaming {
            let bytes = match resp.bytes().await {
                Ok(b) => b,
                Err(e) => {
                    out.error = Some((ErrorKind::of(&e), e.to_string()));
                    return out;
                }
            };
            out.body = serde_json::from_slice(&bytes).ok();
            if !status.is_success() {
                let msg = out
                    .body
                    .as_ref()
                    .and_then(|b| b.pointer("/error/message"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(200).collect());
                out.error = Some((ErrorKind::Http(status.as_u16()), msg));
            } else {
                read_completion(&mut out);
            }
            return out;
        }
        let mut parser = SseParser::default();
        let mut summary = StreamSummary::default();
        let mut stream = resp.bytes_stream();
        let mut malformed = None;
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    out.error = Some((ErrorKind::of(&e), e.to_string()));
                    break;
                }
            };
            for data in parser.feed(&chunk) {
                match summary.apply(&data) {
                    Ok(ChunkKind::FirstOutput) => {
                        out.ttft_ms = Some(start.elapsed().as_secs_f64() * 1e3)
                    }
                    Ok(ChunkKind::Other) => {}
                    Err(e) => malformed = Some(e),
                }
            }
        }
        if let Some(data) = parser.finish() {
            if let Err(e) = summary.apply(&data) {
                malformed = Some(e);
            }
        }
        if out.error.is_none() {
            if let Some(e) = summary.error.clone() {
                out.error = Some((ErrorKind::Malformed, format!("error event: {e}")));
            } else if let Some(e) = malformed {
                out.error = Some((ErrorKind::Malformed, e));
            } else if !summary.done {
                out.error = Some((ErrorKind::Malformed, "stream ended without [DONE]".into()));
            }
        }
        out.content = summary.content;
        out.tool_calls = summary.tool_calls;
        out.finish_reason = summary.finish_reason;
        out.prompt_tokens = summary.prompt_tokens;
        out.completion_tokens = summary.completion_tokens;
        out.content_chunks = summary.content_chunks;
        out
    }
}

/// What a request sent verbatim got back: the status and body, or why there was none.
#[derive(Debug, Clone)]
pub struct RawAnswer {
    pub status: Option<u16>,
    pub body: Vec<u8>,
    pub error: Option<(ErrorKind, String)>,
    pub latency_ms: f64,
}

impl Target {
    /// The server's root (`http://host:port`, without `/v1`).
    pub fn root(&self) -> &str {
        self.base.trim_end_matches("/v1")
    }

    /// POSTs `body` verbatim to `path` under `/v1` (`/messages`, …) with `content_type`, and
    /// reads the whole answer within `timeout`.
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> RawAnswer {
        let start = Instant::now();
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .timeout(timeout)
            .body(body);
        if let Some(k) = &self.api_key {
            req = req.bearer_auth(k);
        }
        let mut out = RawAnswer {
            status: None,
            body: Vec::new(),
            error: None,
            latency_ms: 0.0,
        };
        match req.send().await {
            Ok(resp) => {
                out.status = Some(resp.status().as_u16());
                match resp.bytes().await {
                    Ok(b) => out.body = b.to_vec(),
                    Err(e) => out.error = Some((ErrorKind::of(&e), e.to_string())),
                }
            }
            Err(e) => out.error = Some((ErrorKind::of(&e), e.to_string())),
        }
        out.latency_ms = start.elapsed().as_secs_f64() * 1e3;
        out
    }

    /// Starts a streamed chat request and hangs up once `bytes` bytes of the body have come
    /// (a client that disconnects mid-stream); the status, or why there was none.
    pub async fn chat_then_hang_up(
        &self,
        body: &Value,
        bytes: usize,
        timeout: Duration,
    ) -> Result<u16, (ErrorKind, String)> {
        let work = async {
            let mut req = self.http.post(&self.endpoint).json(body);
            if let Some(k) = &self.api_key {
                req = req.bearer_auth(k);
            }
            let resp = req
                .send()
                .await
                .map_err(|e| (ErrorKind::of(&e), e.to_string()))?;
            let status = resp.status().as_u16();
            let mut stream = resp.bytes_stream();
            let mut seen = 0;
            while seen < bytes {
                match stream.next().await {
                    Some(Ok(chunk)) => seen += chunk.len(),
                    Some(Err(e)) => return Err((ErrorKind::of(&e), e.to_string())),
                    None => break,
                }
            }
            // Dropping the body stream closes the connection under the server's feet.
            Ok(status)
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err((ErrorKind::Timeout, format!("no answer within {timeout:?}"))),
        }
    }

    /// `GET` a path under the root (`/health`) as JSON.
    pub async fn get_root_json(&self, path: &str) -> Option<Value> {
        let req = self
            .http
            .get(format!("{}{path}", self.root()))
            .timeout(Duration::from_secs(10));
        req.send().await.ok()?.json().await.ok()
    }
}

fn read_completion(out: &mut Outcome) {
    let Some(body) = &out.body else {
        out.error = Some((ErrorKind::Malformed, "2xx answer is not JSON".into()));
        return;
    };
    let Some(msg) = body.pointer("/choices/0/message") else {
        out.error = Some((ErrorKind::Malformed, "no choices[0].message".into()));
        return;
    };
    out.content = msg
        .get("content")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    out.tool_calls = msg
        .get("tool_calls")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    out.finish_reason = body
        .pointer("/choices/0/finish_reason")
        .and_then(Value::as_str)
        .map(str::to_string);
    out.prompt_tokens = body.pointer("/usage/prompt_tokens").and_then(Value::as_u64);
    out.completion_tokens = body
        .pointer("/usage/completion_tokens")
        .and_then(Value::as_u64);
}

/// A deterministic chat request (greedy, fixed seed) so repeats are cacheable and comparable.
pub fn chat_body(model: &str, messages: Value, max_tokens: u32, stream: bool) -> Value {
    let mut body = json!({
        "model": model,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "seed": 0,
        "stream": stream,
    });
    if stream {
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_forms_all_point_at_v1() {
        assert_eq!(normalize_base("http://h:1"), "http://h:1/v1");
        assert_eq!(normalize_base("http://h:1/"), "http://h:1/v1");
        assert_eq!(normalize_base("http://h:1/v1/"), "http://h:1/v1");
    }

    #[test]
    fn error_kind_keys_are_stable() {
        assert_eq!(ErrorKind::Http(503).key(), "http_503");
        assert_eq!(ErrorKind::Timeout.key(), "timeout");
    }

    #[test]
    fn completion_body_fields_are_read() {
        let mut o = Outcome {
            body: Some(json!({
                "choices": [{"message": {"content": "hi", "tool_calls": [{}, {}]},
                             "finish_reason": "tool_calls"}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 2}
            })),
            ..Outcome::default()
        };
        read_completion(&mut o);
        assert!(o.ok());
        assert_eq!((o.content.as_str(), o.tool_calls), ("hi", 2));
        assert_eq!(o.finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(o.generated_tokens(), 2);
    }

    #[test]
    fn completion_without_choices_is_malformed() {
        let mut o = Outcome {
            body: Some(json!({"x": 1})),
            ..Outcome::default()
        };
        read_completion(&mut o);
        assert_eq!(o.error.map(|e| e.0), Some(ErrorKind::Malformed));
    }
}
