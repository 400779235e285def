//! The output state machine: pipeline events (text, tool-call fragments, the finish) into
//! output items and the Responses SSE events that build them. The JSON reply is the machine's
//! final [`ResponseObject`]; the SSE reply sends its frames, ending with `response.completed`
//! carrying that same object — so an SDK's stream accumulator rebuilds exactly the JSON reply.
//!
//! Order guaranteed: `response.created`, `response.in_progress`, then per item
//! `output_item.added`, its parts and deltas, `output_item.done` (one item open at a time,
//! output indexes consecutive from 0), then `response.completed` / `response.incomplete`; or an
//! `error` event followed by `response.failed`. Whitespace before a function call is not an
//! answer: it opens no message item (a reply with nothing else still gets one, empty).

use std::collections::HashMap;

use bytes::Bytes;
use mlx_serve_engine::engine::{FinishReason, TokenLogprob, Usage};

use super::render::{error_out, final_status};
use super::response::{new_id, Frame, OutputContent, OutputItem, ResponseObject, StreamEvent};
use super::store::Saver;
use crate::error::ApiError;
use crate::pipeline::stream::{ChunkRenderer, Ending};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Nothing,
    Text(usize),
    Reasoning(usize),
    Call(usize),
}

/// One response's output, built event by event.
#[derive(Debug)]
pub struct ResponseStream {
    response: ResponseObject,
    seq: u64,
    open: Open,
    pending_ws: String,
    calls: HashMap<usize, usize>,
    done: bool,
}

impl ResponseStream {
    /// A machine around the `in_progress` response (see `render::base_response`).
    pub fn new(response: ResponseObject) -> Self {
        Self {
            response,
            seq: 0,
            open: Open::Nothing,
            pending_ws: String::new(),
            calls: HashMap::new(),
            done: false,
        }
    }

    /// The response as it stands (final after [`Self::finish`] or [`Self::fail`]).
    pub fn response(&self) -> &ResponseObject {
        &self.response
    }

    /// True after the finish or a failure; later input produces nothing.
    pub fn is_done(&self) -> bool {
        self.done
    }

    fn frame(&mut self, event: StreamEvent, out: &mut Vec<Frame>) {
        out.push(Frame {
            event,
            sequence_number: self.seq,
        });
        self.seq += 1;
    }

    /// `response.created` and `response.in_progress`.
    pub fn begin(&mut self) -> Vec<Frame> {
        let mut out = Vec::new();
        let response = self.response.clone();
        self.frame(
            StreamEvent::Created {
                response: response.clone(),
            },
            &mut out,
        );
        self.frame(StreamEvent::InProgress { response }, &mut out);
        out
    }

    /// Assistant text.
    pub fn text(&mut self, text: &str) -> Vec<Frame> {
        let mut out = Vec::new();
        if self.done || text.is_empty() {
            return out;
        }
        let index = match self.open {
            Open::Text(index) => index,
            Open::Nothing | Open::Reasoning(_) | Open::Call(_) => {
                self.pending_ws.push_str(text);
                if self.pending_ws.trim().is_empty() {
                    return out;
                }
                self.close(FinishReason::Stop, &mut out);
                let index = self.open_message(&mut out);
                let text = std::mem::take(&mut self.pending_ws);
                self.text_delta(index, text, &mut out);
                return out;
            }
        };
        self.text_delta(index, text.to_owned(), &mut out);
        out
    }

    /// Reasoning text: a `reasoning` item ahead of the answer (a new one after other output).
    pub fn reasoning(&mut self, text: &str) -> Vec<Frame> {
        let mut out = Vec::new();
        if self.done || text.is_empty() {
            return out;
        }
        let index = match self.open {
            Open::Reasoning(index) => index,
            Open::Nothing | Open::Text(_) | Open::Call(_) => {
                self.close(FinishReason::Stop, &mut out);
                self.open_reasoning(&mut out)
            }
        };
        let OutputItem::Reasoning { id, content, .. } = &mut self.response.output[index] else {
            return out;
        };
        let item_id = id.clone();
        if let Some(OutputContent::ReasoningText { text: t }) = content.first_mut() {
            t.push_str(text);
        }
        self.frame(
            StreamEvent::ReasoningTextDelta {
                item_id,
                output_index: index,
                content_index: 0,
                delta: text.to_owned(),
            },
            &mut out,
        );
        out
    }

    fn open_reasoning(&mut self, out: &mut Vec<Frame>) -> usize {
        let item = OutputItem::Reasoning {
            id: new_id("rs"),
            summary: Vec::new(),
            content: Vec::new(),
            status: "in_progress",
        };
        let part = OutputContent::ReasoningText {
            text: String::new(),
        };
        let index = self.open_item(item, part, out);
        self.open = Open::Reasoning(index);
        index
    }

    fn open_message(&mut self, out: &mut Vec<Frame>) -> usize {
        let item = OutputItem::Message {
            id: new_id("msg"),
            status: "in_progress",
            role: "assistant",
            content: Vec::new(),
        };
        let index = self.open_item(item, OutputContent::text(""), out);
        self.open = Open::Text(index);
        index
    }

    /// Adds an empty item with its one (empty) content part: `output_item.added`, then
    /// `content_part.added`.
    fn open_item(&mut self, item: OutputItem, part: OutputContent, out: &mut Vec<Frame>) -> usize {
        let index = self.response.output.len();
        let item_id = item.id().to_owned();
        self.response.output.push(item.clone());
        self.frame(
            StreamEvent::OutputItemAdded {
                output_index: index,
                item,
            },
            out,
        );
        if let OutputItem::Message { content, .. } | OutputItem::Reasoning { content, .. } =
            &mut self.response.output[index]
        {
            content.push(part.clone());
        }
        self.frame(
            StreamEvent::ContentPartAdded {
                item_id,
                output_index: index,
                content_index: 0,
                part,
            },
            out,
        );
        index
    }

    fn text_delta(&mut self, index: usize, delta: String, out: &mut Vec<Frame>) {
        if delta.is_empty() {
            return;
        }
        let OutputItem::Message { id, content, .. } = &mut self.response.output[index] else {
            return;
        };
        let item_id = id.clone();
        if let Some(OutputContent::OutputText { text, .. }) = content.first_mut() {
            text.push_str(&delta);
        }
        self.frame(
            StreamEvent::OutputTextDelta {
                item_id,
                output_index: index,
                content_index: 0,
                delta,
                logprobs: Vec::new(),
            },
            out,
        );
    }

    /// A tool-call fragment from the tool parser: `id` and `name` come with the first fragment
    /// of a call, then only argument text.
    pub fn call(
        &mut self,
        call: usize,
        id: Option<&str>,
        name: Option<&str>,
        arguments: &str,
    ) -> Vec<Frame> {
        let mut out = Vec::new();
        if self.done {
            return out;
        }
        let index = match self.calls.get(&call) {
            Some(&index) => index,
            None => {
                self.pending_ws.clear();
                self.close(FinishReason::Stop, &mut out);
                let index = self.response.output.len();
                let item = OutputItem::FunctionCall {
                    id: new_id("fc"),
                    call_id: id.map(str::to_owned).unwrap_or_else(|| new_id("call")),
                    name: name.unwrap_or_default().to_owned(),
                    arguments: String::new(),
                    status: "in_progress",
                };
                self.response.output.push(item.clone());
                self.calls.insert(call, index);
                self.open = Open::Call(index);
                self.frame(
                    StreamEvent::OutputItemAdded {
                        output_index: index,
                        item,
                    },
                    &mut out,
                );
                index
            }
        };
        if arguments.is_empty() {
            return out;
        }
        let OutputItem::FunctionCall {
            id, arguments: all, ..
        } = &mut self.response.output[index]
        else {
            return out;
        };
        all.push_str(arguments);
        let item_id = id.clone();
        self.frame(
            StreamEvent::FunctionCallArgumentsDelta {
                item_id,
                output_index: index,
                delta: arguments.to_owned(),
            },
            &mut out,
        );
        out
    }

    /// Close the open item: `incomplete` when the generation ran out of tokens inside it.
    fn close(&mut self, reason: FinishReason, out: &mut Vec<Frame>) {
        let status = match reason {
            FinishReason::Length => "incomplete",
            _ => "completed",
        };
        let index = match std::mem::replace(&mut self.open, Open::Nothing) {
            Open::Nothing => return,
            Open::Text(index) | Open::Reasoning(index) | Open::Call(index) => index,
        };
        match &mut self.response.output[index] {
            OutputItem::Message {
                id,
                status: s,
                content,
                ..
            } => {
                *s = status;
                let item_id = id.clone();
                let part = content
                    .first()
                    .cloned()
                    .unwrap_or_else(|| OutputContent::text(""));
                let text = part.text_of().to_owned();
                self.frame(
                    StreamEvent::OutputTextDone {
                        item_id: item_id.clone(),
                        output_index: index,
                        content_index: 0,
                        text,
                        logprobs: Vec::new(),
                    },
                    out,
                );
                self.frame(
                    StreamEvent::ContentPartDone {
                        item_id,
                        output_index: index,
                        content_index: 0,
                        part,
                    },
                    out,
                );
            }
            OutputItem::Reasoning {
                id,
                status: s,
                content,
                ..
            } => {
                *s = status;
                let item_id = id.clone();
                let part = content
                    .first()
                    .cloned()
                    .unwrap_or(OutputContent::ReasoningText {
                        text: String::new(),
                    });
                self.frame(
                    StreamEvent::ReasoningTextDone {
                        item_id: item_id.clone(),
                        output_index: index,
                        content_index: 0,
                        text: part.text_of().to_owned(),
                    },
                    out,
                );
                self.frame(
                    StreamEvent::ContentPartDone {
                        item_id,
                        output_index: index,
                        content_index: 0,
                        part,
                    },
                    out,
                );
            }
            OutputItem::FunctionCall {
                id,
                name,
                arguments,
                status: s,
                ..
            } => {
                *s = status;
                let event = StreamEvent::FunctionCallArgumentsDone {
                    item_id: id.clone(),
                    output_index: index,
                    name: name.clone(),
                    arguments: arguments.clone(),
                };
                self.frame(event, out);
            }
        }
        let item = self.response.output[index].clone();
        self.frame(
            StreamEvent::OutputItemDone {
                output_index: index,
                item,
            },
            out,
        );
    }

    /// The end: close the open item, set status and usage, `response.completed` (or
    /// `response.incomplete` after `max_output_tokens`).
    pub fn finish(&mut self, reason: FinishReason, usage: Usage) -> Vec<Frame> {
        let mut out = Vec::new();
        if self.done {
            return out;
        }
        if self.response.output.is_empty() {
            // Always at least one item, as for a reply of only whitespace.
            let ws = std::mem::take(&mut self.pending_ws);
            let index = self.open_message(&mut out);
            self.text_delta(index, ws, &mut out);
        }
        self.close(reason, &mut out);
        let (status, incomplete) = final_status(reason);
        self.response.status = status;
        self.response.incomplete_details = incomplete;
        self.response.usage = Some(usage.into());
        let response = self.response.clone();
        let event = if status == "incomplete" {
            StreamEvent::Incomplete { response }
        } else {
            StreamEvent::Completed { response }
        };
        self.frame(event, &mut out);
        self.done = true;
        out
    }

    /// A failure: an `error` event, then `response.failed` with the output so far.
    pub fn fail(&mut self, e: &ApiError) -> Vec<Frame> {
        let mut out = Vec::new();
        if self.done {
            return out;
        }
        let body = e.to_json_oaicompat().error;
        self.frame(
            StreamEvent::Error {
                code: body.code.map(str::to_owned),
                message: body.message,
                param: body.param,
            },
            &mut out,
        );
        self.response.status = "failed";
        self.response.error = Some(error_out(e));
        let response = self.response.clone();
        self.frame(StreamEvent::Failed { response }, &mut out);
        self.done = true;
        out
    }
}

/// The shared SSE driver speaking Responses: a [`ChunkRenderer`] over [`ResponseStream`] that
/// stores the finished response when the request asked for it.
pub struct ResponsesRenderer {
    stream: ResponseStream,
    saver: Option<Saver>,
}

impl ResponsesRenderer {
    /// A renderer around the `in_progress` response; `saver` keeps the finished one.
    pub fn new(stream: ResponseStream, saver: Option<Saver>) -> Self {
        Self { stream, saver }
    }
}

fn frames(frames: Vec<Frame>) -> Vec<Bytes> {
    frames.iter().map(Frame::to_bytes).collect()
}

impl ChunkRenderer for ResponsesRenderer {
    fn start(&mut self, _index: usize) -> Vec<Bytes> {
        frames(self.stream.begin())
    }

    fn text(&mut self, _index: usize, text: &str, _logprobs: &[TokenLogprob]) -> Vec<Bytes> {
        frames(self.stream.text(text))
    }

    fn reasoning(&mut self, _index: usize, text: &str) -> Vec<Bytes> {
        frames(self.stream.reasoning(text))
    }

    fn tool_call(
        &mut self,
        _index: usize,
        call: usize,
        id: Option<&str>,
        name: Option<&str>,
        arguments: &str,
    ) -> Vec<Bytes> {
        frames(self.stream.call(call, id, name, arguments))
    }

    fn finish(&mut self, _index: usize, reason: FinishReason, _tool_calls: bool) -> Vec<Bytes> {
        // The driver calls `finish_detailed`; this is the fallback without counts.
        frames(self.stream.finish(reason, Usage::default()))
    }

    fn finish_detailed(&mut self, _index: usize, ending: &Ending<'_>) -> Vec<Bytes> {
        let out = frames(self.stream.finish(ending.reason, *ending.usage));
        if let Some(saver) = self.saver.take() {
            // Memory holds it now; the final event does not wait for the disk and Redis writes.
            let write = saver.save(self.stream.response());
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(write);
            }
        }
        out
    }

    fn end(&mut self, _total: &Usage) -> Vec<Bytes> {
        // The lifecycle event went out with the finish; Responses has no `[DONE]`.
        Vec::new()
    }

    fn error(&mut self, e: &ApiError) -> Vec<Bytes> {
        frames(self.stream.fail(e))
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
