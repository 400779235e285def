//! Tool use on `/v1/messages` through the tool-parser seam. The seam is fed by a stand-in adapter
//! over the actors' real `StreamParser` (Hermes `<tool_call>` format); the fake engine echoes the
//! user message, so a message holding a `<tool_call>` makes it "generate" that call.

use std::sync::Arc;

use mlx_serve::pipeline::seams::{ParsedDelta, Seams, StreamingToolParser, ToolParserSeam};
use mlx_serve_actors::tool_parser::{ParseOptions, StreamEvent, StreamParser, ToolFormat};
use mlx_serve_engine::fake::FakeConfig;
use serde_json::{json, Value};

use crate::anthropic::{anthropic_events, message, names};
use crate::common::*;

struct Hermes(StreamParser);

impl Hermes {
    fn map(events: Vec<StreamEvent>) -> Vec<ParsedDelta> {
        events
            .into_iter()
            .filter_map(|e| match e {
                StreamEvent::Content(t) => Some(ParsedDelta::Text(t)),
                StreamEvent::ToolCallStart { index, id, name } => Some(ParsedDelta::ToolCall {
                    index,
                    id: Some(id),
                    name: Some(name),
                    arguments: String::new(),
                }),
                StreamEvent::ToolCallArgs { index, fragment } => Some(ParsedDelta::ToolCall {
                    index,
                    id: None,
                    name: None,
                    arguments: fragment,
                }),
                StreamEvent::ToolCallEnd { .. } => None,
            })
            .collect()
    }
}

impl StreamingToolParser for Hermes {
    fn push(&mut self, text: &str) -> Vec<ParsedDelta> {
        Self::map(self.0.push(text))
    }
    fn finish(&mut self) -> Vec<ParsedDelta> {
        Self::map(self.0.finish())
    }
}

struct HermesSeam;

impl ToolParserSeam for HermesSeam {
    fn parser(&self, tools: &[Value]) -> Option<Box<dyn StreamingToolParser>> {
        let options = ParseOptions {
            tools: tools.to_vec(),
            format: ToolFormat::Hermes,
            ..ParseOptions::default()
        };
        Some(Box::new(Hermes(StreamParser::new(&options))))
    }
}

async fn start_tools() -> TestServer {
    let server = mlx_serve::start_server(
        test_settings(),
        fake_factory(FakeConfig {
            model_id: MODEL.into(),
            ..FakeConfig::default()
        }),
        Seams {
            tool_parser: Some(Arc::new(HermesSeam)),
            ..Seams::default()
        },
    )
    .await
    .expect("server starts");
    let t = TestServer::new(server);
    wait_health(&t, std::time::Duration::from_secs(5), |h| {
        h["status"] == "ok"
    })
    .await;
    t
}

const CALL: &str = r#"<tool_call>{"name":"get_weather","arguments":{"city":"Paris"}}</tool_call>"#;

fn tools() -> Value {
    json!([
        {"name": "get_weather", "description": "Weather for a city",
         "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
        {"name": "get_time", "input_schema": {"type": "object"}}
    ])
}

#[actix_rt::test]
async fn tool_call_becomes_a_tool_use_block() {
    let t = start_tools().await;
    let (status, m) = t
        .post_json(
            "/v1/messages",
            message(&format!("Checking now. {CALL}"), json!({"tools": tools()})),
        )
        .await;
    assert_eq!(status, 200, "{m}");
    assert_eq!(m["stop_reason"], "tool_use");
    let content = m["content"].as_array().unwrap();
    assert_eq!(content.len(), 2, "{m}");
    assert_eq!(content[0], json!({"type": "text", "text": "Checking now."}));
    assert_eq!(content[1]["type"], "tool_use");
    assert!(content[1]["id"].as_str().unwrap().starts_with("toolu_"));
    assert_eq!(content[1]["name"], "get_weather");
    assert_eq!(content[1]["input"], json!({"city": "Paris"}));
    // Without tools no parser runs: the markup stays text.
    let (_, plain) = t.post_json("/v1/messages", message(CALL, json!({}))).await;
    assert_eq!(plain["content"][0]["text"], CALL);
    assert_eq!(plain["stop_reason"], "end_turn");
}

#[actix_rt::test]
async fn streamed_tool_call_sends_input_json_deltas() {
    let t = start_tools().await;
    let r = t
        .post(
            "/v1/messages",
            message(CALL, json!({"tools": tools(), "stream": true})),
        )
        .await;
    let ev = anthropic_events(&r.text().await.unwrap());
    assert_eq!(
        names(&ev),
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ],
        "{ev:?}"
    );
    let block = &ev[1].1;
    assert_eq!(block["index"], 0);
    assert_eq!(block["content_block"]["type"], "tool_use");
    assert_eq!(block["content_block"]["name"], "get_weather");
    assert_eq!(block["content_block"]["input"], json!({}));
    assert!(block["content_block"]["id"]
        .as_str()
        .unwrap()
        .starts_with("toolu_"));
    let partial: String = ev
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .map(|(_, d)| {
            assert_eq!(d["delta"]["type"], "input_json_delta");
            d["delta"]["partial_json"].as_str().unwrap().to_owned()
        })
        .collect();
    let input: Value = serde_json::from_str(&partial).unwrap();
    assert_eq!(input, json!({"city": "Paris"}));
    assert_eq!(ev[4].1["delta"]["stop_reason"], "tool_use");
}

#[actix_rt::test]
async fn parallel_calls_are_separate_blocks_unless_disabled() {
    let t = start_tools().await;
    let two = format!(r#"{CALL} <tool_call>{{"name":"get_time","arguments":{{}}}}</tool_call>"#);
    let (_, m) = t
        .post_json("/v1/messages", message(&two, json!({"tools": tools()})))
        .await;
    let kinds: Vec<&str> = m["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap_or("text"))
        .collect();
    assert_eq!(kinds, ["get_weather", "get_time"], "{m}");
    let r = t
        .post(
            "/v1/messages",
            message(
                &two,
                json!({"tools": tools(), "stream": true,
                       "tool_choice": {"type": "auto", "disable_parallel_tool_use": true}}),
            ),
        )
        .await;
    let ev = anthropic_events(&r.text().await.unwrap());
    let starts: Vec<&Value> = ev
        .iter()
        .filter(|(n, _)| n == "content_block_start")
        .map(|(_, d)| &d["content_block"])
        .collect();
    assert_eq!(starts.len(), 1, "{ev:?}");
    assert_eq!(starts[0]["name"], "get_weather");
}

#[actix_rt::test]
async fn tool_result_turn_is_accepted_and_answered() {
    let t = start_tools().await;
    let body = json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 32,
        "tools": tools(),
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01",
                 "content": [{"type": "text", "text": "Sunny 18C"}]}
            ]}
        ]
    });
    let (status, m) = t.post_json("/v1/messages", body).await;
    assert_eq!(status, 200, "{m}");
    // The fake echoes the last message: the tool result.
    assert_eq!(m["content"][0]["text"], "Sunny 18C");
    assert_eq!(m["stop_reason"], "end_turn");
}
