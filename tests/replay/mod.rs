//! The hostile-client replay of issue #20, shared by the fake-engine suite (`tests/http`) and
//! the real-model suite (`tests/e2e_real_server.rs`): raw requests of every class, sent over
//! plain sockets, and the rule every answer must follow (a 2xx, or a 4xx with the error body of
//! the route's API; a half-closed client still gets its 200).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// One replayed request: raw bytes, whether the client half-closes after sending.
pub struct Case {
    pub name: &'static str,
    pub bytes: Vec<u8>,
    pub half_close: bool,
}

/// A complete HTTP/1.1 POST of `body` as JSON, on a connection closed after the answer.
pub fn raw_post(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Sends raw bytes, optionally half-closes, and reads until the server closes (blocking; run
/// it on a blocking thread).
pub fn exchange(addr: SocketAddr, request: Vec<u8>, half_close: bool) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(&request).expect("write");
    if half_close {
        s.shutdown(Shutdown::Write).expect("half-close");
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The final (non-1xx) response's status and JSON body of a raw exchange.
pub fn final_response(raw: &str) -> (u16, Option<Value>) {
    let mut rest = raw;
    loop {
        let status: u16 = rest
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {raw:?}"));
        let Some(end) = rest.find("\r\n\r\n") else {
            return (status, None);
        };
        if (100..200).contains(&status) {
            rest = &rest[end + 4..];
            continue;
        }
        let body = &rest[end + 4..];
        let json = body
            .find('{')
            .and_then(|i| serde_json::from_str(body[i..].trim_end_matches(|c| c != '}')).ok());
        return (status, json);
    }
}

fn post(name: &'static str, path: &str, body: &str) -> Case {
    Case {
        name,
        bytes: raw_post(path, body).into_bytes(),
        half_close: false,
    }
}

fn with_headers(name: &'static str, method: &str, path: &str, headers: &str, body: &[u8]) -> Case {
    let mut bytes = format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n{headers}\
         content-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(body);
    Case {
        name,
        bytes,
        half_close: false,
    }
}

/// Every class of the issue, for `model`; generations are kept to a few tokens so the real
/// model answers the whole replay in seconds.
pub fn cases(model: &str) -> Vec<Case> {
    let c = "/v1/chat/completions";
    let chat = |text: &str| json!({"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 8});
    let chat_with = |extra: Value| {
        let mut body = chat("a b c");
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        body.to_string()
    };
    let tool =
        |function: Value| chat_with(json!({"tools": [{"type": "function", "function": function}]}));
    let ok = chat("half closed").to_string();
    let completion = |extra: &str| format!(r#"{{"model":"{model}","max_tokens":8{extra}}}"#);
    let mut v = vec![
        // Wrong types.
        post(
            "logit_bias string",
            c,
            &chat_with(json!({"logit_bias": "x"})),
        ),
        post(
            "logit_bias range",
            c,
            &chat_with(json!({"logit_bias": {"3": 1e9}})),
        ),
        post(
            "response_format bool",
            c,
            &chat_with(json!({"response_format": true})),
        ),
        post(
            "stream_options array",
            c,
            &chat_with(json!({"stream_options": []})),
        ),
        post("array body", c, &format!(r#"["{model}", []]"#)),
        post("scalar body", c, "42"),
        post("empty body", c, ""),
        post("tool empty name", c, &tool(json!({"name": ""}))),
        post("tool name spaces", c, &tool(json!({"name": "a b"}))),
        post(
            "tool params string",
            c,
            &tool(json!({"name": "f", "parameters": "x"})),
        ),
        post(
            "tool params banana",
            c,
            &tool(json!({"name": "f", "parameters": {"type": "banana"}})),
        ),
        // Spec-valid oddities.
        post(
            "float ints",
            c,
            &chat_with(json!({"seed": 1.0, "max_tokens": 16.0})),
        ),
        post("top_p zero", c, &chat_with(json!({"top_p": 0}))),
        post("n two", c, &chat_with(json!({"n": 2}))),
        post(
            "role function",
            c,
            &json!({"model": model, "max_tokens": 8, "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": null,
                 "function_call": {"name": "w", "arguments": "{}"}},
                {"role": "function", "name": "w", "content": "sunny"},
            ]})
            .to_string(),
        ),
        post(
            "token prompt",
            "/v1/completions",
            &completion(r#","prompt":[1,2,3]"#),
        ),
        post(
            "suffix",
            "/v1/completions",
            &completion(r#","prompt":"x","suffix":"y""#),
        ),
        post(
            "best_of",
            "/v1/completions",
            &completion(r#","prompt":"x","best_of":3"#),
        ),
        // Content types, encodings, methods, URLs.
        with_headers(
            "text/plain",
            "POST",
            c,
            "content-type: text/plain\r\n",
            ok.as_bytes(),
        ),
        with_headers(
            "unknown encoding",
            "POST",
            c,
            "content-type: application/json\r\ncontent-encoding: compress\r\n",
            ok.as_bytes(),
        ),
        with_headers(
            "fake gzip",
            "POST",
            c,
            "content-type: application/json\r\ncontent-encoding: gzip\r\n",
            ok.as_bytes(),
        ),
        with_headers("GET chat", "GET", c, "", b""),
        with_headers("DELETE messages", "DELETE", "/v1/messages", "", b""),
        with_headers("messages batch", "POST", "/v1/messages/batches", "", b"{}"),
        with_headers("unknown url", "GET", "/v2/anything", "", b""),
        with_headers("PATCH health", "PATCH", "/health", "", b""),
        post(
            "anthropic wrong type",
            "/v1/messages",
            &format!(r#"{{"model":"{model}","max_tokens":"many","messages":[]}}"#),
        ),
        // Heads actix-http cannot parse: answered before any route runs, still in the
        // API's error shape of the path on the request line.
        raw_case(
            "non-numeric content-length",
            format!("POST {c} HTTP/1.1\r\nhost: x\r\ncontent-length: abc\r\n\r\n{{}}"),
        ),
        raw_case(
            "conflicting content-length",
            "POST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\
             content-length: 3\r\n\r\n{}"
                .to_owned(),
        ),
        raw_case(
            "length and chunked",
            format!(
                "POST {c} HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\
                 transfer-encoding: chunked\r\n\r\n{{}}"
            ),
        ),
        raw_case(
            "space in a header name",
            "GET /v1/messages/count_tokens HTTP/1.1\r\nho st: x\r\n\r\n".to_owned(),
        ),
        raw_case("request line garbage", "GARBAGE\r\n\r\n".to_owned()),
        // A corrupt chunked body, after the headers were accepted.
        Case {
            name: "bad chunk",
            bytes: format!(
                "POST {c} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
                 connection: close\r\ntransfer-encoding: chunked\r\n\r\n3\r\n{{\"m\r\nqq\r\n\r\n"
            )
            .into_bytes(),
            half_close: false,
        },
    ];
    // Half-closed clients of every generating route.
    for (path, body) in [
        (c, ok.clone()),
        ("/v1/completions", completion(r#","prompt":"half closed""#)),
        (
            "/v1/messages",
            format!(
                r#"{{"model":"{model}","max_tokens":8,"messages":[{{"role":"user","content":"hi"}}]}}"#
            ),
        ),
    ] {
        let mut case = post("half-closed", path, &body);
        case.half_close = true;
        v.push(case);
    }
    v
}

fn raw_case(name: &'static str, text: String) -> Case {
    Case {
        name,
        bytes: text.into_bytes(),
        half_close: false,
    }
}

/// The error body of the API the path belongs to.
fn has_api_error_body(path: &str, body: &Value) -> bool {
    if path.starts_with("/v1/messages") {
        body["type"] == "error" && body["error"]["type"].is_string()
    } else {
        body["error"]["message"].is_string() && body["error"]["type"].is_string()
    }
}

fn path_of(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .split(' ')
        .nth(1)
        .unwrap_or("")
        .to_owned()
}

/// Sends one case (blocking) and checks its answer against the rule.
pub fn replay(addr: SocketAddr, case: &Case) -> Result<(), String> {
    let path = path_of(&case.bytes);
    let raw = exchange(addr, case.bytes.clone(), case.half_close);
    let (status, body) = final_response(&raw);
    if !((200..300).contains(&status) || (400..500).contains(&status)) {
        return Err(format!("{}: status {status}: {raw}", case.name));
    }
    if status >= 400 {
        let Some(body) = body else {
            return Err(format!("{}: no JSON body: {raw}", case.name));
        };
        if !has_api_error_body(&path, &body) {
            return Err(format!("{}: not {path}'s error shape: {body}", case.name));
        }
    }
    if case.half_close && status != 200 {
        return Err(format!(
            "{}: half-closed client got {status}: {raw}",
            case.name
        ));
    }
    Ok(())
}

/// A body trickled after its headers (blocking): returns what the server answered within
/// `wait`, which must be its body-timeout 408.
pub fn trickle(addr: SocketAddr, wait: Duration) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let _ = s.write_all(
        b"POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
          content-length: 500\r\n\r\n{",
    );
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) if !out.is_empty() => break,
            Err(_) => {}
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A client that sends a long request and vanishes without reading the answer.
pub fn vanish(addr: SocketAddr, model: &str) {
    let mut gone = TcpStream::connect(addr).unwrap();
    let body = json!({"model": model, "messages": [{"role": "user", "content": "w ".repeat(500)}]})
        .to_string();
    gone.write_all(raw_post("/v1/chat/completions", &body).as_bytes())
        .unwrap();
}
