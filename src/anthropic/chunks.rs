//! The shared pipeline's SSE driver speaking Anthropic: a [`ChunkRenderer`] over
//! [`MessageStream`], so `/v1/messages` streams through the same driver (keep-alives, disconnect
//! cancellation, error events) as the OpenAI routes.

use bytes::Bytes;
use mlx_serve_engine::engine::{FinishReason, TokenLogprob, Usage};

use super::response::StreamEvent;
use super::stream::{ping, MessageStream, StreamInput};
use crate::error::ApiError;
use crate::pipeline::stream::{ChunkRenderer, Ending};

/// Renders one streamed message. `message_start` waits for the end of prefill so it can carry
/// the real `input_tokens` / `cache_read_input_tokens`; `ping`s fill the wait.
pub struct MessagesRenderer {
    stream: MessageStream,
    parallel_tool_calls: bool,
}

impl MessagesRenderer {
    /// A renderer reporting `model`; with `parallel_tool_calls` false only the first tool call
    /// is sent (`disable_parallel_tool_use`).
    pub fn new(model: impl Into<String>, parallel_tool_calls: bool) -> Self {
        Self {
            stream: MessageStream::new(model),
            parallel_tool_calls,
        }
    }

    fn push(&mut self, input: StreamInput) -> Vec<Bytes> {
        self.stream
            .push(input)
            .iter()
            .map(StreamEvent::to_bytes)
            .collect()
    }
}

impl ChunkRenderer for MessagesRenderer {
    fn start(&mut self, _index: usize) -> Vec<Bytes> {
        Vec::new()
    }

    fn started(&mut self, _index: usize, prompt_tokens: usize, cached_tokens: usize) -> Vec<Bytes> {
        self.push(StreamInput::Started {
            prompt_tokens,
            cached_tokens,
        })
    }

    fn text(&mut self, _index: usize, text: &str, _logprobs: &[TokenLogprob]) -> Vec<Bytes> {
        if text.is_empty() {
            return Vec::new();
        }
        self.push(StreamInput::Text(text.to_owned()))
    }

    fn reasoning(&mut self, _index: usize, text: &str) -> Vec<Bytes> {
        if text.is_empty() {
            return Vec::new();
        }
        self.push(StreamInput::Thinking(text.to_owned()))
    }

    fn tool_call(
        &mut self,
        _index: usize,
        call: usize,
        id: Option<&str>,
        name: Option<&str>,
        arguments: &str,
    ) -> Vec<Bytes> {
        if !self.parallel_tool_calls && call > 0 {
            return Vec::new();
        }
        let mut out = Vec::new();
        if let Some(name) = name {
            out.extend(self.push(StreamInput::ToolCallStart {
                index: call,
                id: id.unwrap_or_default().to_owned(),
                name: name.to_owned(),
            }));
        }
        if !arguments.is_empty() {
            out.extend(self.push(StreamInput::ToolCallArgs {
                index: call,
                fragment: arguments.to_owned(),
            }));
        }
        out
    }

    fn finish(&mut self, _index: usize, reason: FinishReason, _tool_calls: bool) -> Vec<Bytes> {
        // The driver calls `finish_detailed`; this is the fallback without counts.
        self.push(StreamInput::Finished {
            reason,
            stop_sequence: None,
            output_tokens: 0,
        })
    }

    fn finish_detailed(&mut self, _index: usize, ending: &Ending<'_>) -> Vec<Bytes> {
        self.push(StreamInput::Finished {
            reason: ending.reason,
            stop_sequence: ending.stop_sequence.map(str::to_owned),
            output_tokens: ending.usage.completion_tokens,
        })
    }

    fn end(&mut self, _total: &Usage) -> Vec<Bytes> {
        // `message_stop` went out with the finish; Anthropic has no `[DONE]`.
        Vec::new()
    }

    fn error(&mut self, e: &ApiError) -> Vec<Bytes> {
        self.push(StreamInput::Error(e.clone()))
    }

    fn keep_alive(&mut self) -> Bytes {
        ping().to_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(frames: &[Bytes]) -> Vec<String> {
        frames
            .iter()
            .map(|b| {
                String::from_utf8_lossy(b)
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .trim_start_matches("event: ")
                    .to_owned()
            })
            .collect()
    }

    fn ending(usage: &Usage, reason: FinishReason) -> Ending<'_> {
        Ending {
            reason,
            stop_sequence: None,
            usage,
            tool_calls: false,
        }
    }

    #[test]
    fn message_start_carries_prefill_counts() {
        let mut r = MessagesRenderer::new("claude-x", true);
        assert!(r.start(0).is_empty());
        let frames = r.started(0, 30, 12);
        assert_eq!(names(&frames), ["message_start"]);
        let text = String::from_utf8_lossy(&frames[0]).into_owned();
        assert!(text.contains(r#""input_tokens":18"#), "{text}");
        assert!(text.contains(r#""cache_read_input_tokens":12"#), "{text}");
    }

    #[test]
    fn second_call_is_dropped_without_parallel_tool_use() {
        let mut r = MessagesRenderer::new("m", false);
        let mut all = r.started(0, 3, 0);
        all.extend(r.tool_call(0, 0, Some("call_a"), Some("f"), "{}"));
        assert!(r
            .tool_call(0, 1, Some("call_b"), Some("g"), "{}")
            .is_empty());
        let usage = Usage::default();
        all.extend(r.finish_detailed(0, &ending(&usage, FinishReason::Stop)));
        assert_eq!(
            names(&all),
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
    }

    #[test]
    fn pipeline_errors_become_anthropic_error_events() {
        let mut r = MessagesRenderer::new("m", true);
        let frames = r.error(&ApiError::queue_full(1, 1));
        let text = String::from_utf8_lossy(&frames[0]).into_owned();
        assert!(text.starts_with("event: error\n"), "{text}");
        assert!(text.contains(r#""type":"rate_limit_error""#), "{text}");
        assert!(String::from_utf8_lossy(&r.keep_alive()).starts_with("event: ping\n"));
    }
}
