//! The ToolParserActor: model text to OpenAI `tool_calls`, for every common model family.
//!
//! The logic is plain structs: [`StreamParser`] (the incremental parser both paths use),
//! [`parse`] (the same parser fed a whole reply), one scanner per format in `formats/`, and
//! [`ToolChoice`] handling. The HTTP layer runs a `StreamParser` inline in its stream for
//! streaming replies; the actor serves whole replies and keeps counters by format for metrics.
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
//!   text delta, map events with [`tool_call_delta`], `finish` at the end, then send
//!   [`RecordStreamStats`]. `finish_reason` is `tool_calls` when any call was emitted.
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

use std::collections::BTreeMap;

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

/// Counters for one format label.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FormatCounters {
    /// Calls parsed.
    pub calls: u64,
    /// Tool-call markup that could not be turned into calls.
    pub failures: u64,
}

/// All counters, by format label (`hermes`, `json`, …).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolParserStats {
    /// Per-format counters.
    pub by_format: BTreeMap<String, FormatCounters>,
    /// Replies parsed, streaming and not.
    pub replies: u64,
}

impl ToolParserStats {
    fn record(&mut self, stats: &ParseStats) {
        self.replies += 1;
        for (label, n) in &stats.calls {
            self.by_format.entry(label.to_string()).or_default().calls += n;
        }
        for (label, n) in &stats.failures {
            self.by_format
                .entry(label.to_string())
                .or_default()
                .failures += n;
        }
    }
}

/// Parses whole replies and keeps the counters.
#[derive(Debug, Default)]
pub struct ToolParserActor {
    stats: ToolParserStats,
}

impl ToolParserActor {
    /// A parser actor with zeroed counters.
    pub fn new() -> Self {
        Self::default()
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

/// Adds a streamed reply's counters (from [`StreamParser::stats`] after `finish`).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct RecordStreamStats(pub ParseStats);

/// Reads the counters.
#[derive(Debug, Message)]
#[rtype(result = "ToolParserStats")]
pub struct GetStats;

impl Handler<ParseComplete> for ToolParserActor {
    type Result = MessageResult<ParseComplete>;

    fn handle(&mut self, msg: ParseComplete, _: &mut Context<Self>) -> Self::Result {
        let mut parser = StreamParser::new(&msg.options);
        let mut events = parser.push(&msg.text);
        events.extend(parser.finish());
        self.stats.record(parser.stats());
        MessageResult(ParsedOutput::from_events(events))
    }
}

impl Handler<RecordStreamStats> for ToolParserActor {
    type Result = ();

    fn handle(&mut self, msg: RecordStreamStats, _: &mut Context<Self>) {
        self.stats.record(&msg.0);
    }
}

impl Handler<GetStats> for ToolParserActor {
    type Result = MessageResult<GetStats>;

    fn handle(&mut self, _: GetStats, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.stats.clone())
    }
}
