//! The Anthropic SSE stream, checked the way a client reads it: frames are split and parsed back,
//! every `event:` line must equal the JSON `type`, and the event order, block indexes and
//! assembled content must be what Anthropic's clients expect.

use mlx_serve::anthropic::{ping, MessageStream, StreamInput};
use mlx_serve::error::{ApiError, ErrorKind};
use mlx_serve_engine::engine::FinishReason;
use serde_json::{json, Value};

/// What a client assembles from a stream.
#[derive(Debug, Default)]
struct Assembled {
    types: Vec<String>,
    content: Vec<Value>,
    stop_reason: Option<String>,
    stop_sequence: Option<String>,
    usage: Value,
    error: Option<Value>,
    message_id: String,
}

/// Splits SSE text into frames and checks each frame and the whole order; panics on violations.
fn read_stream(sse: &str) -> Assembled {
    assert!(sse.ends_with("\n\n"), "frames end with a blank line");
    let mut a = Assembled::default();
    let mut open: Option<usize> = None;
    let mut partial_json = String::new();
    let mut finished = false;
    for frame in sse.split("\n\n").filter(|f| !f.is_empty()) {
        let lines: Vec<&str> = frame.lines().collect();
        assert_eq!(
            lines.len(),
            2,
            "one event line and one data line: {frame:?}"
        );
        let event = lines[0].strip_prefix("event: ").expect("event line first");
        let data: Value = serde_json::from_str(lines[1].strip_prefix("data: ").expect("data line"))
            .expect("JSON");
        assert_eq!(data["type"], event, "event line matches the data type");
        assert!(
            !finished,
            "nothing after message_stop or error, got {event}"
        );
        if event != "ping" && event != "error" {
            let expect_start = a.types.iter().all(|t| t == "ping");
            assert_eq!(
                event == "message_start",
                expect_start,
                "message_start first, once"
            );
        }
        match event {
            "message_start" => {
                let m = &data["message"];
                assert_eq!(m["type"], "message");
                assert_eq!(m["role"], "assistant");
                assert_eq!(m["content"], json!([]));
                assert_eq!(m["stop_reason"], Value::Null);
                a.message_id = m["id"].as_str().expect("id").to_owned();
                assert!(a.message_id.starts_with("msg_"));
                a.usage = m["usage"].clone();
            }
            "content_block_start" => {
                assert_eq!(open, None, "previous block closed first");
                let index = data["index"].as_u64().expect("index") as usize;
                assert_eq!(index, a.content.len(), "indexes are consecutive from 0");
                let block = data["content_block"].clone();
                match block["type"].as_str() {
                    Some("text") => assert_eq!(block["text"], ""),
                    Some("tool_use") => {
                        assert_eq!(block["input"], json!({}));
                        assert!(block["id"].as_str().expect("id").starts_with("toolu_"));
                    }
                    other => panic!("unexpected block type {other:?}"),
                }
                a.content.push(block);
                open = Some(index);
                partial_json.clear();
            }
            "content_block_delta" => {
                let index = data["index"].as_u64().expect("index") as usize;
                assert_eq!(open, Some(index), "delta for the open block");
                let block = &mut a.content[index];
                let delta = &data["delta"];
                match (block["type"].as_str(), delta["type"].as_str()) {
                    (Some("text"), Some("text_delta")) => {
                        let t = delta["text"].as_str().expect("text");
                        assert!(!t.is_empty(), "no empty deltas");
                        block["text"] =
                            json!(format!("{}{t}", block["text"].as_str().unwrap_or("")));
                    }
                    (Some("tool_use"), Some("input_json_delta")) => {
                        partial_json
                            .push_str(delta["partial_json"].as_str().expect("partial_json"));
                    }
                    other => panic!("delta {other:?} does not fit its block"),
                }
            }
            "content_block_stop" => {
                let index = data["index"].as_u64().expect("index") as usize;
                assert_eq!(open, Some(index), "stop closes the open block");
                if a.content[index]["type"] == "tool_use" && !partial_json.is_empty() {
                    // A call cut off by max_tokens is incomplete JSON; clients keep it partial.
                    a.content[index]["input"] = serde_json::from_str(&partial_json)
                        .unwrap_or_else(|_| json!({"partial": partial_json}));
                }
                open = None;
            }
            "message_delta" => {
                assert_eq!(open, None, "all blocks closed before message_delta");
                assert!(!a.content.is_empty(), "at least one block");
                a.stop_reason = data["delta"]["stop_reason"].as_str().map(str::to_owned);
                a.stop_sequence = data["delta"]["stop_sequence"].as_str().map(str::to_owned);
                assert!(
                    data["delta"].get("stop_sequence").is_some(),
                    "stop_sequence present"
                );
                a.usage["output_tokens"] = data["usage"]["output_tokens"].clone();
            }
            "message_stop" => {
                assert_eq!(a.types.last().map(String::as_str), Some("message_delta"));
                finished = true;
            }
            "error" => {
                assert!(data["error"]["type"].is_string() && data["error"]["message"].is_string());
                a.error = Some(data["error"].clone());
                finished = true;
            }
            "ping" => {}
            other => panic!("unknown event {other}"),
        }
        a.types.push(event.to_owned());
    }
    assert!(finished, "stream ends with message_stop or error");
    a
}

fn run(inputs: Vec<StreamInput>) -> Assembled {
    let mut s = MessageStream::new("claude-sonnet-4");
    let mut sse = String::new();
    for input in inputs {
        for e in s.push(input) {
            sse.push_str(&e.to_sse());
        }
    }
    assert!(s.is_done());
    let a = read_stream(&sse);
    if a.types.iter().any(|t| t == "message_start") {
        assert_eq!(a.message_id, s.message_id());
    }
    a
}

fn started() -> StreamInput {
    StreamInput::Started {
        prompt_tokens: 100,
        cached_tokens: 60,
    }
}

fn text(t: &str) -> StreamInput {
    StreamInput::Text(t.to_owned())
}

fn tool(index: usize, name: &str) -> StreamInput {
    StreamInput::ToolCallStart {
        index,
        id: format!("call_{index}"),
        name: name.to_owned(),
    }
}

fn args(index: usize, fragment: &str) -> StreamInput {
    StreamInput::ToolCallArgs {
        index,
        fragment: fragment.to_owned(),
    }
}

fn finished(reason: FinishReason, output_tokens: usize) -> StreamInput {
    StreamInput::Finished {
        reason,
        stop_sequence: None,
        output_tokens,
    }
}

#[test]
fn text_only_stream_has_one_text_block_and_end_turn() {
    let a = run(vec![
        started(),
        text("Hel"),
        text(""),
        text("lo!"),
        finished(FinishReason::Stop, 3),
    ]);
    assert_eq!(
        a.types,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(a.content, [json!({"type": "text", "text": "Hello!"})]);
    assert_eq!(a.stop_reason.as_deref(), Some("end_turn"));
    assert_eq!(
        a.usage,
        json!({"input_tokens": 40, "output_tokens": 3,
               "cache_creation_input_tokens": 0, "cache_read_input_tokens": 60})
    );
}

#[test]
fn tool_only_stream_has_no_empty_text_block() {
    let a = run(vec![
        started(),
        text("\n"),
        tool(0, "get_weather"),
        args(0, "{\"ci"),
        args(0, "ty\": \"Par"),
        args(0, "is\"}"),
        text("\n"),
        finished(FinishReason::Stop, 12),
    ]);
    assert_eq!(a.content.len(), 1, "{:?}", a.content);
    assert_eq!(a.content[0]["type"], "tool_use");
    assert_eq!(a.content[0]["name"], "get_weather");
    assert_eq!(a.content[0]["input"], json!({"city": "Paris"}));
    assert_eq!(a.stop_reason.as_deref(), Some("tool_use"));
    assert!(
        !a.types
            .iter()
            .skip_while(|t| *t != "content_block_stop")
            .any(|t| t == "content_block_start"),
        "trailing whitespace after the call opens no block: {:?}",
        a.types
    );
}

#[test]
fn text_then_tool_closes_the_text_block_first() {
    let a = run(vec![
        started(),
        text("Let me check."),
        tool(0, "ls"),
        args(0, "{\"path\": \".\"}"),
        finished(FinishReason::Stop, 9),
    ]);
    assert_eq!(
        a.types,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(
        a.content[0],
        json!({"type": "text", "text": "Let me check."})
    );
    assert_eq!(a.content[1]["input"], json!({"path": "."}));
    assert_eq!(a.stop_reason.as_deref(), Some("tool_use"));
}

#[test]
fn two_tools_get_consecutive_indexes_and_distinct_ids() {
    let a = run(vec![
        started(),
        tool(0, "read"),
        args(0, "{\"f\": 1}"),
        tool(1, "write"),
        args(1, "{\"f\":"),
        args(1, " 2}"),
        finished(FinishReason::Stop, 20),
    ]);
    assert_eq!(a.content.len(), 2);
    assert_eq!(a.content[0]["input"], json!({"f": 1}));
    assert_eq!(a.content[1]["name"], "write");
    assert_eq!(a.content[1]["input"], json!({"f": 2}));
    assert_ne!(a.content[0]["id"], a.content[1]["id"]);
}

#[test]
fn tool_call_without_arguments_keeps_the_empty_input() {
    let a = run(vec![
        started(),
        tool(0, "now"),
        finished(FinishReason::Stop, 2),
    ]);
    assert_eq!(a.content[0]["input"], json!({}));
}

#[test]
fn error_mid_stream_ends_with_an_error_event() {
    let a = run(vec![
        started(),
        text("partial"),
        StreamInput::Error(ApiError::internal("engine failure: out of memory")),
        text("ignored"),
        finished(FinishReason::Stop, 1),
    ]);
    assert_eq!(a.types.last().map(String::as_str), Some("error"));
    assert_eq!(
        a.error,
        Some(json!({"type": "api_error", "message": "engine failure: out of memory"}))
    );
    assert_eq!(a.stop_reason, None);
}

#[test]
fn error_before_prefill_is_the_only_event() {
    let a = run(vec![StreamInput::Error(ApiError::new(
        ErrorKind::Unavailable,
        "queue full",
    ))]);
    assert_eq!(a.types, ["error"]);
    assert_eq!(a.error.expect("error")["type"], "overloaded_error");
}

#[test]
fn stop_sequence_and_max_tokens_are_reported() {
    let a = run(vec![
        started(),
        text("a"),
        StreamInput::Finished {
            reason: FinishReason::StopSequence,
            stop_sequence: Some("###".into()),
            output_tokens: 1,
        },
    ]);
    assert_eq!(a.stop_reason.as_deref(), Some("stop_sequence"));
    assert_eq!(a.stop_sequence.as_deref(), Some("###"));
    let a = run(vec![
        started(),
        tool(0, "ls"),
        args(0, "{\"pa"),
        finished(FinishReason::Length, 5),
    ]);
    assert_eq!(a.stop_reason.as_deref(), Some("max_tokens"));
    assert_eq!(a.content[0]["input"], json!({"partial": "{\"pa"}));
}

#[test]
fn pings_may_precede_message_start_during_prefill() {
    let mut s = MessageStream::new("m");
    let mut sse = ping().to_sse();
    sse.push_str(&ping().to_sse());
    for input in [started(), text("ok"), finished(FinishReason::Stop, 1)] {
        for e in s.push(input) {
            sse.push_str(&e.to_sse());
        }
    }
    let a = read_stream(&sse);
    assert_eq!(&a.types[..3], ["ping", "ping", "message_start"]);
    assert_eq!(
        ping().to_sse(),
        "event: ping\ndata: {\"type\":\"ping\"}\n\n"
    );
}

#[test]
fn empty_reply_still_sends_one_text_block() {
    let a = run(vec![started(), finished(FinishReason::Stop, 0)]);
    assert_eq!(a.content, [json!({"type": "text", "text": ""})]);
}

#[test]
fn out_of_order_tool_fragments_end_the_stream_with_an_api_error() {
    let a = run(vec![started(), tool(0, "a"), tool(1, "b"), args(0, "{}")]);
    assert_eq!(a.error.expect("error")["type"], "api_error");
}
