use super::*;
use crate::responses::render::base_response;
use crate::responses::request::ResponsesRequest;
use mlx_serve_engine::engine::GenerateRequest;
use serde_json::{json, Value};

fn machine() -> ResponseStream {
    let req: ResponsesRequest =
        serde_json::from_value(json!({"model": "m", "input": "hi"})).expect("parses");
    let engine = GenerateRequest {
        prompt: mlx_serve_engine::engine::Prompt::Text(String::new()),
        sampling: Default::default(),
        max_tokens: None,
        stop: Vec::new(),
        logprobs: None,
        constraint: None,
        reasoning: None,
        encoded: None,
    };
    ResponseStream::new(base_response(&req, &engine))
}

fn usage() -> Usage {
    Usage {
        prompt_tokens: 10,
        cached_tokens: 4,
        completion_tokens: 3,
    }
}

enum In<'a> {
    Text(&'a str),
    Reasoning(&'a str),
    Call(usize, Option<&'a str>, Option<&'a str>, &'a str),
}

fn run(inputs: &[In<'_>], reason: FinishReason) -> (Vec<Value>, ResponseObject) {
    let mut m = machine();
    let mut frames = m.begin();
    for i in inputs {
        frames.extend(match i {
            In::Text(t) => m.text(t),
            In::Reasoning(t) => m.reasoning(t),
            In::Call(c, id, name, args) => m.call(*c, *id, *name, args),
        });
    }
    frames.extend(m.finish(reason, usage()));
    let events = frames
        .iter()
        .map(|f| serde_json::to_value(f).expect("serializes"))
        .collect();
    (events, m.response().clone())
}

fn types(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or(""))
        .collect()
}

/// What the official SDK's accumulator does: items from `output_item.added`, text and
/// arguments from the deltas.
fn accumulate(events: &[Value]) -> Vec<Value> {
    let mut output: Vec<Value> = Vec::new();
    for e in events {
        match e["type"].as_str().unwrap_or("") {
            "response.output_item.added" => {
                assert_eq!(e["output_index"], output.len());
                output.push(e["item"].clone());
            }
            "response.content_part.added" => {
                let i = e["output_index"].as_u64().expect("index") as usize;
                output[i]["content"]
                    .as_array_mut()
                    .expect("content")
                    .push(e["part"].clone());
            }
            "response.output_text.delta" => {
                let i = e["output_index"].as_u64().expect("index") as usize;
                let part = &mut output[i]["content"][0]["text"];
                *part = json!(format!(
                    "{}{}",
                    part.as_str().unwrap_or(""),
                    e["delta"].as_str().unwrap_or("")
                ));
            }
            "response.function_call_arguments.delta" => {
                let i = e["output_index"].as_u64().expect("index") as usize;
                let args = &mut output[i]["arguments"];
                *args = json!(format!(
                    "{}{}",
                    args.as_str().unwrap_or(""),
                    e["delta"].as_str().unwrap_or("")
                ));
            }
            "response.output_item.done" => {
                let i = e["output_index"].as_u64().expect("index") as usize;
                output[i]["status"] = e["item"]["status"].clone();
            }
            _ => {}
        }
    }
    output
}

#[test]
fn a_text_reply_streams_the_documented_sequence() {
    let (events, response) = run(&[In::Text("Hello"), In::Text(" world")], FinishReason::Stop);
    assert_eq!(
        types(&events),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    let seq: Vec<u64> = events
        .iter()
        .map(|e| e["sequence_number"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seq, (0..events.len() as u64).collect::<Vec<_>>());
    assert_eq!(events[0]["response"]["status"], "in_progress");
    assert_eq!(events[6]["text"], "Hello world");
    assert_eq!(response.status, "completed");
    let json = serde_json::to_value(&response).expect("serializes");
    assert_eq!(json["output"][0]["type"], "message");
    assert_eq!(json["output"][0]["role"], "assistant");
    assert_eq!(json["output"][0]["status"], "completed");
    assert_eq!(
        json["output"][0]["content"],
        json!([{"type": "output_text", "text": "Hello world", "annotations": [], "logprobs": []}])
    );
    assert_eq!(
        json["usage"],
        json!({"input_tokens": 10, "input_tokens_details": {"cached_tokens": 4},
               "output_tokens": 3, "output_tokens_details": {"reasoning_tokens": 0},
               "total_tokens": 13})
    );
    assert_eq!(events.last().expect("last")["response"], json);
    assert_eq!(
        accumulate(&events),
        json["output"].as_array().cloned().expect("output")
    );
}

#[test]
fn a_tool_call_after_whitespace_is_one_function_call_item() {
    let (events, response) = run(
        &[
            In::Text("\n"),
            In::Call(0, Some("call_1"), Some("shell"), ""),
            In::Call(0, None, None, "{\"command\":"),
            In::Call(0, None, None, "[\"ls\"]}"),
            In::Text("\n"),
        ],
        FinishReason::Stop,
    );
    assert_eq!(
        types(&events),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    let json = serde_json::to_value(&response).expect("serializes");
    let item = &json["output"][0];
    assert_eq!(json["output"].as_array().map(Vec::len), Some(1));
    assert_eq!(item["type"], "function_call");
    assert!(item["id"].as_str().is_some_and(|id| id.starts_with("fc_")));
    assert_eq!(item["call_id"], "call_1");
    assert_eq!(item["name"], "shell");
    assert_eq!(item["arguments"], "{\"command\":[\"ls\"]}");
    assert_eq!(item["status"], "completed");
    assert_eq!(events[5]["arguments"], "{\"command\":[\"ls\"]}");
    assert_eq!(
        accumulate(&events),
        json["output"].as_array().cloned().expect("output")
    );
}

#[test]
fn text_then_two_calls_keep_their_order() {
    let (events, response) = run(
        &[
            In::Text("Let me look."),
            In::Call(0, Some("call_a"), Some("ls"), "{}"),
            In::Call(1, Some("call_b"), Some("cat"), "{\"f\":1}"),
        ],
        FinishReason::Stop,
    );
    let json = serde_json::to_value(&response).expect("serializes");
    let kinds: Vec<&str> = json["output"]
        .as_array()
        .expect("output")
        .iter()
        .map(|i| i["type"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(kinds, ["message", "function_call", "function_call"]);
    assert_eq!(json["output"][2]["call_id"], "call_b");
    assert_eq!(
        accumulate(&events),
        json["output"].as_array().cloned().expect("output")
    );
}

#[test]
fn running_out_of_tokens_is_incomplete() {
    let (events, response) = run(&[In::Text("Once upon")], FinishReason::Length);
    assert_eq!(types(&events).last().copied(), Some("response.incomplete"));
    assert_eq!(response.status, "incomplete");
    let json = serde_json::to_value(&response).expect("serializes");
    assert_eq!(
        json["incomplete_details"],
        json!({"reason": "max_output_tokens"})
    );
    assert_eq!(json["output"][0]["status"], "incomplete");
}

#[test]
fn an_empty_reply_still_has_one_message() {
    let (events, response) = run(&[], FinishReason::Stop);
    assert_eq!(response.output.len(), 1);
    assert!(types(&events).contains(&"response.output_text.done"));
}

#[test]
fn a_failure_sends_error_then_response_failed_and_nothing_after() {
    let mut m = machine();
    m.begin();
    m.text("partial");
    let frames = m.fail(&ApiError::internal("engine failure: boom"));
    let events: Vec<Value> = frames
        .iter()
        .map(|f| serde_json::to_value(f).expect("json"))
        .collect();
    assert_eq!(types(&events), ["error", "response.failed"]);
    assert_eq!(events[0]["message"], "engine failure: boom");
    assert_eq!(events[1]["response"]["status"], "failed");
    assert_eq!(events[1]["response"]["error"]["code"], "server_error");
    assert!(m.is_done());
    assert!(m.finish(FinishReason::Stop, usage()).is_empty());
}

#[test]
fn frames_name_their_event_on_the_event_line() {
    let mut m = machine();
    let frames = m.begin();
    let text = String::from_utf8(frames[0].to_bytes().to_vec()).expect("utf-8");
    assert!(
        text.starts_with("event: response.created\ndata: {"),
        "{text}"
    );
    assert!(text.ends_with("\n\n"));
    assert!(text.contains("\"sequence_number\":0"));
}

#[test]
fn reasoning_is_an_item_of_its_own_ahead_of_the_answer() {
    let (events, done) = run(
        &[
            In::Reasoning("Two plus "),
            In::Reasoning("two."),
            In::Text("\n"),
            In::Text("4"),
        ],
        FinishReason::Stop,
    );
    assert_eq!(
        types(&events),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.reasoning_text.delta",
            "response.reasoning_text.delta",
            "response.reasoning_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    let out = serde_json::to_value(&done.output).expect("serializes");
    assert_eq!(out[0]["type"], "reasoning");
    assert_eq!(
        out[0]["content"],
        json!([{"type": "reasoning_text", "text": "Two plus two."}])
    );
    assert_eq!(out[0]["status"], "completed");
    assert_eq!(out[1]["type"], "message");
    assert_eq!(out[1]["content"][0]["text"], "\n4");
    // Sequence numbers stay consecutive through both items.
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["sequence_number"], i, "{e}");
    }
}
