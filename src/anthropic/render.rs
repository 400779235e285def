//! Non-streaming renderer: a finished generation as Anthropic's `Message`.

use mlx_serve_engine::engine::{FinishReason, ToolCall, Usage as EngineUsage};
use serde_json::Value;

use super::response::{new_message_id, new_tool_use_id, Message, ResponseBlock, StopReason, Usage};
use crate::error::ApiError;

/// Everything the pipeline knows once a sequence has finished.
#[derive(Debug, Clone, Copy)]
pub struct Completion<'a> {
    /// Model name the reply reports (the name the client sent is the least surprising).
    pub model: &'a str,
    /// Generated text with tool-call markup removed by the tool parser.
    pub text: &'a str,
    /// The model's reasoning (empty when none): a `thinking` block first.
    pub reasoning: &'a str,
    /// Tool calls the tool parser found, in order.
    pub tool_calls: &'a [ToolCall],
    /// Why the engine stopped.
    pub finish: FinishReason,
    /// The stop string that matched, for `FinishReason::StopSequence`.
    pub stop_sequence: Option<&'a str>,
    /// Engine token counts.
    pub usage: EngineUsage,
}

/// Anthropic's `stop_reason` for an engine finish. Running out of tokens wins over tool calls:
/// a call cut off by `max_tokens` is not a finished call.
pub fn stop_reason(finish: FinishReason, has_tool_calls: bool) -> StopReason {
    match finish {
        FinishReason::Length => StopReason::MaxTokens,
        _ if has_tool_calls => StopReason::ToolUse,
        FinishReason::StopSequence => StopReason::StopSequence,
        FinishReason::Stop | FinishReason::Cancelled => StopReason::EndTurn,
    }
}

/// Keeps a `toolu_` id, replaces any other (e.g. the tool parser's `call_…`) with a fresh one.
pub fn tool_use_id(id: &str) -> String {
    if id.starts_with("toolu_") {
        id.to_owned()
    } else {
        new_tool_use_id()
    }
}

/// A tool call's arguments text as the `input` object Anthropic requires.
pub fn tool_input(call: &ToolCall) -> Result<Value, ApiError> {
    if call.arguments.trim().is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    match serde_json::from_str::<Value>(&call.arguments) {
        Ok(v @ Value::Object(_)) => Ok(v),
        // A call cut off by max_tokens: its whole members, as the streaming client reads the
        // same `input_json` fragments.
        _ if call.arguments.trim_start().starts_with('{') => {
            mlx_serve_actors::tool_parser::close_json_prefix(&call.arguments).ok_or_else(|| {
                ApiError::internal(format!(
                    "the model called `{}` with broken arguments",
                    call.name
                ))
            })
        }
        Ok(_) | Err(_) => Err(ApiError::internal(format!(
            "the model called `{}` with arguments that are not a JSON object",
            call.name
        ))),
    }
}

/// The reply of a non-streaming `/v1/messages`.
pub fn render_message(c: Completion<'_>) -> Result<Message, ApiError> {
    let mut content = Vec::with_capacity(2 + c.tool_calls.len());
    if !c.reasoning.is_empty() {
        content.push(ResponseBlock::Thinking {
            thinking: c.reasoning.to_owned(),
            signature: String::new(),
        });
    }
    // Whitespace around tool-call markup is not an answer; an all-text reply is kept as is.
    if c.tool_calls.is_empty() || !c.text.trim().is_empty() {
        content.push(ResponseBlock::Text {
            text: c.text.to_owned(),
        });
    }
    for call in c.tool_calls {
        content.push(ResponseBlock::ToolUse {
            id: tool_use_id(&call.id),
            name: call.name.clone(),
            input: tool_input(call)?,
        });
    }
    let stop_reason = stop_reason(c.finish, !c.tool_calls.is_empty());
    Ok(Message {
        id: new_message_id(),
        kind: "message".to_owned(),
        role: "assistant".to_owned(),
        content,
        model: c.model.to_owned(),
        stop_reason: Some(stop_reason),
        stop_sequence: (stop_reason == StopReason::StopSequence)
            .then(|| c.stop_sequence.map(str::to_owned))
            .flatten(),
        usage: Usage::from_engine(
            c.usage.prompt_tokens,
            c.usage.cached_tokens,
            c.usage.completion_tokens,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn usage() -> EngineUsage {
        EngineUsage {
            prompt_tokens: 30,
            cached_tokens: 12,
            completion_tokens: 7,
        }
    }

    fn call(id: &str, name: &str, args: &str) -> ToolCall {
        ToolCall {
            id: id.into(),
            name: name.into(),
            arguments: args.into(),
        }
    }

    fn completion<'a>(
        text: &'a str,
        calls: &'a [ToolCall],
        finish: FinishReason,
    ) -> Completion<'a> {
        Completion {
            model: "claude-sonnet-4",
            text,
            reasoning: "",
            tool_calls: calls,
            finish,
            stop_sequence: None,
            usage: usage(),
        }
    }

    #[test]
    fn text_reply_serializes_in_anthropics_shape() {
        let m = render_message(completion("Paris.", &[], FinishReason::Stop)).expect("renders");
        let v = serde_json::to_value(&m).expect("serializes");
        assert!(v["id"].as_str().is_some_and(|id| id.starts_with("msg_")));
        assert_eq!(v["type"], "message");
        assert_eq!(v["role"], "assistant");
        assert_eq!(v["model"], "claude-sonnet-4");
        assert_eq!(v["content"], json!([{"type": "text", "text": "Paris."}]));
        assert_eq!(v["stop_reason"], "end_turn");
        assert_eq!(
            v["stop_sequence"],
            Value::Null,
            "present and null, not missing"
        );
        assert_eq!(
            v["usage"],
            json!({"input_tokens": 18, "output_tokens": 7,
                   "cache_creation_input_tokens": 0, "cache_read_input_tokens": 12})
        );
    }

    #[test]
    fn tool_calls_become_tool_use_blocks_with_object_input() {
        let calls = [
            call("call_1", "get_weather", r#"{"city":"Paris"}"#),
            call("toolu_keep", "now", ""),
        ];
        let m = render_message(completion("\n", &calls, FinishReason::Stop)).expect("renders");
        assert_eq!(m.stop_reason, Some(StopReason::ToolUse));
        assert_eq!(
            m.content.len(),
            2,
            "whitespace-only text is dropped: {:?}",
            m.content
        );
        match &m.content[0] {
            ResponseBlock::ToolUse { id, name, input } => {
                assert!(id.starts_with("toolu_"), "{id}");
                assert_eq!(name, "get_weather");
                assert_eq!(input, &json!({"city": "Paris"}));
            }
            other => panic!("expected tool_use, got {other:?}"),
        }
        assert_eq!(
            m.content[1],
            ResponseBlock::ToolUse {
                id: "toolu_keep".into(),
                name: "now".into(),
                input: json!({})
            }
        );
    }

    #[test]
    fn text_before_a_tool_call_is_kept_first() {
        let calls = [call("c", "ls", "{}")];
        let m = render_message(completion("Let me look.", &calls, FinishReason::Stop)).expect("ok");
        assert_eq!(
            m.content[0],
            ResponseBlock::Text {
                text: "Let me look.".into()
            }
        );
        assert!(matches!(m.content[1], ResponseBlock::ToolUse { .. }));
    }

    #[test]
    fn finish_reasons_map_to_stop_reasons() {
        let m = render_message(completion("a", &[], FinishReason::Length)).expect("ok");
        assert_eq!(m.stop_reason, Some(StopReason::MaxTokens));
        let calls = [call("c", "ls", "{}")];
        let m = render_message(completion("", &calls, FinishReason::Length)).expect("ok");
        assert_eq!(
            m.stop_reason,
            Some(StopReason::MaxTokens),
            "a cut-off call is not tool_use"
        );
        let mut c = completion("a", &[], FinishReason::StopSequence);
        c.stop_sequence = Some("###");
        let m = render_message(c).expect("ok");
        assert_eq!(m.stop_reason, Some(StopReason::StopSequence));
        assert_eq!(m.stop_sequence.as_deref(), Some("###"));
        let mut c = completion("a", &[], FinishReason::Stop);
        c.stop_sequence = Some("###");
        assert_eq!(render_message(c).expect("ok").stop_sequence, None);
    }

    #[test]
    fn non_object_arguments_are_an_api_error() {
        let calls = [call("c", "ls", "[1,2]")];
        let e = render_message(completion("", &calls, FinishReason::Stop)).unwrap_err();
        assert_eq!(e.anthropic_type(), "api_error");
    }

    #[test]
    fn cut_off_arguments_give_their_whole_members() {
        let calls = [call("c", "ls", r#"{"path":"/tmp","glob":"*.r"#)];
        let m = render_message(completion("", &calls, FinishReason::Length)).expect("ok");
        let v = serde_json::to_value(&m).unwrap_or_default();
        assert_eq!(
            v["content"][0]["input"],
            serde_json::json!({"path": "/tmp"})
        );
        assert_eq!(v["stop_reason"], "max_tokens");
    }

    #[test]
    fn empty_reply_still_has_one_text_block() {
        let m = render_message(completion("", &[], FinishReason::Stop)).expect("ok");
        assert_eq!(
            m.content,
            vec![ResponseBlock::Text {
                text: String::new()
            }]
        );
    }
}
