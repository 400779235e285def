//! Streaming renderer: a state machine from pipeline events to Anthropic's SSE events.
//!
//! Order guaranteed: `message_start`, then per block `content_block_start`, its deltas,
//! `content_block_stop` (indexes consecutive from 0, one block open at a time), then
//! `message_delta` and `message_stop`; or an `error` event, after which nothing follows.
//! `ping` may be sent at any time with [`ping`].

use std::collections::HashSet;

use mlx_serve_engine::engine::FinishReason;
use serde_json::json;

use super::render::{stop_reason, tool_use_id};
use super::response::{
    new_message_id, BlockDelta, DeltaUsage, Message, MessageDeltaBody, ResponseBlock, StopReason,
    StreamEvent, Usage,
};
use crate::error::ApiError;

/// What the pipeline feeds the stream: engine events, with the model text already split by the
/// tool parser into plain text and tool-call pieces.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamInput {
    /// Prefill done (engine `SeqEvent::Started`); sends `message_start`.
    Started {
        /// Tokens in the prompt.
        prompt_tokens: usize,
        /// Of those, served from the prefix cache.
        cached_tokens: usize,
    },
    /// Plain text for the user.
    Text(String),
    /// The model's reasoning: a `thinking` block with `thinking_delta` events.
    Thinking(String),
    /// The tool parser recognised the start of a call.
    ToolCallStart {
        /// The parser's call index (0, 1, … within this reply).
        index: usize,
        /// Call id; a non-`toolu_` id is replaced by a fresh `toolu_` one.
        id: String,
        /// Tool name.
        name: String,
    },
    /// A fragment of a call's arguments JSON. Fragments of a call must come before the next call
    /// starts (blocks cannot be reopened).
    ToolCallArgs {
        /// The parser's call index.
        index: usize,
        /// JSON text to append.
        fragment: String,
    },
    /// The sequence ended (engine `SeqEvent::Finished`).
    Finished {
        /// Why it ended.
        reason: FinishReason,
        /// The stop string that matched, for `FinishReason::StopSequence`.
        stop_sequence: Option<String>,
        /// Tokens generated.
        output_tokens: usize,
    },
    /// The sequence failed; sends an `error` event and ends the stream.
    Error(ApiError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Nothing,
    Text(usize),
    Thinking(usize),
    Tool { block: usize, call: usize },
}

/// Turns [`StreamInput`]s into [`StreamEvent`]s for one streamed message.
#[derive(Debug)]
pub struct MessageStream {
    id: String,
    model: String,
    usage: Usage,
    started: bool,
    done: bool,
    open: Open,
    next_block: usize,
    seen_calls: HashSet<usize>,
    any_tool: bool,
    // Whitespace not yet sent: dropped if a tool call follows, so a tool-only reply has no empty
    // text block; sent with the next real text otherwise.
    pending_ws: String,
}

/// A keep-alive event, e.g. every few seconds while a long prompt is prefilled.
pub fn ping() -> StreamEvent {
    StreamEvent::Ping
}

impl MessageStream {
    /// A stream for a new message reporting `model`.
    pub fn new(model: impl Into<String>) -> Self {
        Self {
            id: new_message_id(),
            model: model.into(),
            usage: Usage::default(),
            started: false,
            done: false,
            open: Open::Nothing,
            next_block: 0,
            seen_calls: HashSet::new(),
            any_tool: false,
            pending_ws: String::new(),
        }
    }

    /// The message id (`msg_…`), e.g. for logs.
    pub fn message_id(&self) -> &str {
        &self.id
    }

    /// True after `message_stop` or `error`; later inputs produce nothing.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Feeds one input; returns the events to send, in order.
    pub fn push(&mut self, input: StreamInput) -> Vec<StreamEvent> {
        let mut out = Vec::new();
        if self.done {
            return out;
        }
        match input {
            StreamInput::Started {
                prompt_tokens,
                cached_tokens,
            } => {
                self.usage = Usage::from_engine(prompt_tokens, cached_tokens, 0);
                self.start(&mut out);
            }
            StreamInput::Text(text) => {
                self.start(&mut out);
                self.text(text, &mut out);
            }
            StreamInput::Thinking(thinking) => {
                self.start(&mut out);
                let block = match self.open {
                    Open::Thinking(block) => block,
                    _ => {
                        self.close(&mut out);
                        let block = self.open_block(
                            ResponseBlock::Thinking {
                                thinking: String::new(),
                                signature: String::new(),
                            },
                            &mut out,
                        );
                        self.open = Open::Thinking(block);
                        block
                    }
                };
                if !thinking.is_empty() {
                    out.push(StreamEvent::ContentBlockDelta {
                        index: block,
                        delta: BlockDelta::ThinkingDelta { thinking },
                    });
                }
            }
            StreamInput::ToolCallStart { index, id, name } => {
                self.start(&mut out);
                if !self.seen_calls.insert(index) {
                    return self.fail(format!("tool call {index} started twice"), out);
                }
                self.pending_ws.clear();
                self.close(&mut out);
                let block = self.open_block(
                    ResponseBlock::ToolUse {
                        id: tool_use_id(&id),
                        name,
                        input: json!({}),
                    },
                    &mut out,
                );
                self.open = Open::Tool { block, call: index };
                self.any_tool = true;
            }
            StreamInput::ToolCallArgs { index, fragment } => {
                self.start(&mut out);
                match self.open {
                    Open::Tool { block, call } if call == index => {
                        if !fragment.is_empty() {
                            out.push(StreamEvent::ContentBlockDelta {
                                index: block,
                                delta: BlockDelta::InputJsonDelta {
                                    partial_json: fragment,
                                },
                            });
                        }
                    }
                    _ => {
                        return self.fail(
                            format!(
                                "arguments for tool call {index} arrived while it was not open"
                            ),
                            out,
                        )
                    }
                }
            }
            StreamInput::Finished {
                reason,
                stop_sequence,
                output_tokens,
            } => {
                self.start(&mut out);
                if self.next_block == 0 {
                    // Always at least one block, as in the non-streaming reply.
                    let ws = std::mem::take(&mut self.pending_ws);
                    let block = self.open_block(
                        ResponseBlock::Text {
                            text: String::new(),
                        },
                        &mut out,
                    );
                    self.open = Open::Text(block);
                    self.text_delta(block, ws, &mut out);
                }
                self.close(&mut out);
                let stop_reason = stop_reason(reason, self.any_tool);
                self.usage.output_tokens = output_tokens;
                out.push(StreamEvent::MessageDelta {
                    delta: MessageDeltaBody {
                        stop_reason: Some(stop_reason),
                        stop_sequence: (stop_reason == StopReason::StopSequence)
                            .then_some(stop_sequence)
                            .flatten(),
                    },
                    usage: DeltaUsage {
                        output_tokens,
                        input_tokens: self.usage.input_tokens,
                        cache_creation_input_tokens: self.usage.cache_creation_input_tokens,
                        cache_read_input_tokens: self.usage.cache_read_input_tokens,
                    },
                });
                out.push(StreamEvent::MessageStop);
                self.done = true;
            }
            StreamInput::Error(e) => {
                out.push(StreamEvent::Error {
                    error: e.anthropic_detail(),
                });
                self.done = true;
            }
        }
        out
    }

    fn start(&mut self, out: &mut Vec<StreamEvent>) {
        if self.started {
            return;
        }
        self.started = true;
        out.push(StreamEvent::MessageStart {
            message: Message {
                id: self.id.clone(),
                kind: "message".to_owned(),
                role: "assistant".to_owned(),
                content: Vec::new(),
                model: self.model.clone(),
                stop_reason: None,
                stop_sequence: None,
                usage: self.usage,
            },
        });
    }

    fn text(&mut self, text: String, out: &mut Vec<StreamEvent>) {
        if text.is_empty() {
            return;
        }
        match self.open {
            Open::Text(block) => self.text_delta(block, text, out),
            Open::Nothing | Open::Tool { .. } | Open::Thinking(_) => {
                self.pending_ws.push_str(&text);
                if self.pending_ws.trim().is_empty() {
                    return;
                }
                let text = std::mem::take(&mut self.pending_ws);
                self.close(out);
                let block = self.open_block(
                    ResponseBlock::Text {
                        text: String::new(),
                    },
                    out,
                );
                self.open = Open::Text(block);
                self.text_delta(block, text, out);
            }
        }
    }

    fn text_delta(&self, index: usize, text: String, out: &mut Vec<StreamEvent>) {
        if !text.is_empty() {
            out.push(StreamEvent::ContentBlockDelta {
                index,
                delta: BlockDelta::TextDelta { text },
            });
        }
    }

    fn open_block(&mut self, content_block: ResponseBlock, out: &mut Vec<StreamEvent>) -> usize {
        let index = self.next_block;
        self.next_block += 1;
        out.push(StreamEvent::ContentBlockStart {
            index,
            content_block,
        });
        index
    }

    fn close(&mut self, out: &mut Vec<StreamEvent>) {
        match std::mem::replace(&mut self.open, Open::Nothing) {
            Open::Nothing => {}
            Open::Text(index) | Open::Thinking(index) | Open::Tool { block: index, .. } => {
                out.push(StreamEvent::ContentBlockStop { index })
            }
        }
    }

    /// A pipeline bug (tool-call pieces out of order) ends the stream with an `api_error`.
    fn fail(&mut self, why: String, mut out: Vec<StreamEvent>) -> Vec<StreamEvent> {
        tracing::error!(message_id = %self.id, "anthropic stream: {why}");
        out.push(StreamEvent::Error {
            error: ApiError::internal(why).anthropic_detail(),
        });
        self.done = true;
        out
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
