//! The ToolParserActor: model text to OpenAI `tool_calls`, for every common model family.
//!
//! The logic is plain structs: [`StreamParser`] (the incremental parser both paths use),
//! [`parse`] (the same parser fed a whole reply), one scanner per format in `formats/`, and
//! [`ToolChoice`] handling. The HTTP layer runs a `StreamParser` inline in its stream for
//! streaming replies; the actor serves whole replies.
//!
//! Guarantees: arguments are always a valid JSON object text; truncated or malformed markup,
//! and calls to tools the request did not offer, are never calls and are kept verbatim as
//! content (visible, so nothing the model wrote silently disappears); any chunking of the same
//! text gives the same result as parsing it whole.
//!
//! Use from the HTTP layer:
//! - Resolve the format once per model: `configured.resolve(info.chat_template.as_deref())`.
//! - Build [`ParseOptions`] from the request (`tools`, `tool_choice` via
//!   [`ToolChoice::from_json`], checked with [`ToolChoice::validate`]); append
//!   [`ToolChoice::instruction`] to the system prompt, and [`tools_instruction`] when the
//!   model's template cannot render tools itself.
//! - Whole replies: send [`ParseComplete`]. Streams: a [`StreamParser`] per choice, `push` each
//!   text delta, map events with [`tool_call_delta`], `finish` at the end; its
//!   [`StreamParser::stats`] are the per-format counts for metrics. `finish_reason` is
//!   `tool_calls` when any call was emitted.
//! - `required` / named choices: [`ToolChoice::check`] the call names at the end.
//!
//! See `README.md` here for the formats, detection and guarantees.

mod cli;
mod format;
mod formats;
mod grammar;
mod json;
mod partial;
#[cfg(test)]
mod public_vectors;
mod scan;
mod stream;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;
mod tools;

use actix::{Actor, Context, Handler, Message, MessageResult};

pub use cli::{run_parse_cli, run_parse_stream_cli};
pub use format::{detect_format, ToolFormat, UnknownFormat};
pub use grammar::{call_schema, forced_call_grammar, lazy_call_grammar, MAX_PARALLEL_CALLS};
pub use json::close_json_prefix;
pub use stream::{
    new_call_id, parse, tool_call_delta, ParseOptions, ParseStats, ParsedOutput, ParsedToolCall,
    StreamEvent, StreamParser,
};
pub use tools::{tools_instruction, ToolChoice, ToolChoiceError, ToolSet};

/// Parses whole replies. Per-format counts are not kept here: each request's parse outcome goes
/// to the metrics actor (`mlx_serve_tool_calls_parsed_total` / `_failed_total`).
#[derive(Debug, Default)]
pub struct ToolParserActor;

impl ToolParserActor {
    /// A parser actor.
    pub fn new() -> Self {
        Self
    }
}

impl Actor for ToolParserActor {
    type Context = Context<Self>;
}

/// Parses a complete reply.
#[derive(Debug, Message)]
#[rtype(result = "ParsedOutput")]
pub struct ParseComplete {
    /// The model's whole reply text.
    pub text: String,
    /// Tools, format and choice of the request.
    pub options: ParseOptions,
}

impl Handler<ParseComplete> for ToolParserActor {
    type Result = MessageResult<ParseComplete>;

    fn handle(&mut self, msg: ParseComplete, _: &mut Context<Self>) -> Self::Result {
        let mut parser = StreamParser::new(&msg.options);
        let mut events = parser.push(&msg.text);
        events.extend(parser.finish());
        MessageResult(ParsedOutput::from_events(events))
    }
}
