//! The one pipeline both paths run: an incremental parser fed text deltas.
//!
//! Non-streaming parsing is this parser fed the whole text at once, so the two paths cannot
//! drift apart. Text is scanned for the trigger markers of the chosen format(s); text before
//! the earliest trigger is content and leaves at once; a trigger, or a tail that may be the start
//! of one, is held until its scanner decides. Because every scanner's decision is final once
//! made (see [`super::scan`]), the events do not depend on how the text was chunked.
//!
//! Whitespace touching a call is layout, not content: whitespace right before a call is dropped,
//! and so is whitespace after the last call when nothing else follows. Trailing whitespace is
//! therefore held until the next non-space character shows whether a call follows.
//!
//! Calls stream as they are written where the format allows it (see [`super::partial`]): the
//! start (index, id, name) once the name is known to be an offered tool and the arguments have
//! begun, then argument fragments as the text grows. Shapes that cannot be streamed (a JSON
//! call whose name follows its arguments, pythonic lists, …) are emitted whole once complete.
//! A streamed call cannot be taken back: cut off, it keeps the arguments written so far;
//! malformed after it began, it ends with the valid part and the rest is content.

use rand::distr::{Alphanumeric, SampleString};
use std::collections::BTreeMap;

use super::formats::ScannerKind;
use super::partial::{BlockEnd, Partial};
use super::scan::{RawCall, Scan, ScanCtx};
use super::tools::{ToolChoice, ToolSet};
use super::ToolFormat;

/// How to parse one reply.
#[derive(Debug, Clone, Default)]
pub struct ParseOptions {
    /// The request's OpenAI tool definitions; calls to other names stay content.
    pub tools: Vec<serde_json::Value>,
    /// The format; `Auto` tries every format (resolve it with the model's template first).
    pub format: ToolFormat,
    /// Turn calls to names that are not among `tools` into calls anyway.
    pub allow_unknown_tools: bool,
    /// `None` turns parsing off: the reply is returned as content, verbatim.
    pub tool_choice: ToolChoice,
}

/// What the incremental parser emits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// Text for the reply's `content`.
    Content(String),
    /// A call begins: sent once per call, before its arguments.
    ToolCallStart {
        /// Position of the call in the reply's `tool_calls`.
        index: usize,
        /// `call_…` id.
        id: String,
        /// Function name.
        name: String,
    },
    /// A piece of the call's arguments JSON; the pieces of one index concatenate to it.
    ToolCallArgs {
        /// The call's index.
        index: usize,
        /// The next piece of the arguments text.
        fragment: String,
    },
    /// The call is complete.
    ToolCallEnd {
        /// The call's index.
        index: usize,
    },
}

/// One parsed call.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ParsedToolCall {
    /// `call_` + 24 random alphanumerics.
    pub id: String,
    /// Function name.
    pub name: String,
    /// Arguments as a JSON object text (always valid JSON).
    pub arguments: String,
}

impl From<ParsedToolCall> for mlx_serve_engine::engine::ToolCall {
    fn from(c: ParsedToolCall) -> Self {
        Self {
            id: c.id,
            name: c.name,
            arguments: c.arguments,
        }
    }
}

/// A whole reply, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ParsedOutput {
    /// Text outside the calls (empty when the reply is only calls).
    pub content: String,
    /// The calls, in order.
    pub tool_calls: Vec<ParsedToolCall>,
}

impl ParsedOutput {
    /// Folds a parser's events into the final reply.
    pub fn from_events(events: impl IntoIterator<Item = StreamEvent>) -> Self {
        let mut out = Self::default();
        for event in events {
            match event {
                StreamEvent::Content(s) => out.content.push_str(&s),
                StreamEvent::ToolCallStart { id, name, .. } => {
                    out.tool_calls.push(ParsedToolCall {
                        id,
                        name,
                        arguments: String::new(),
                    })
                }
                StreamEvent::ToolCallArgs { index, fragment } => {
                    if let Some(call) = out.tool_calls.get_mut(index) {
                        call.arguments.push_str(&fragment);
                    }
                }
                StreamEvent::ToolCallEnd { .. } => {}
            }
        }
        out
    }
}

/// Calls parsed and markup failures seen, by format label.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParseStats {
    /// Calls emitted.
    pub calls: BTreeMap<&'static str, u64>,
    /// Tool-call markup that was malformed, truncated or named an unknown tool.
    pub failures: BTreeMap<&'static str, u64>,
}

impl ParseStats {
    /// Adds another parser's counts.
    pub fn merge(&mut self, other: &ParseStats) {
        for (k, v) in &other.calls {
            *self.calls.entry(k).or_default() += v;
        }
        for (k, v) in &other.failures {
            *self.failures.entry(k).or_default() += v;
        }
    }
}

/// A fresh call id: `call_` and 24 random alphanumerics.
pub fn new_call_id() -> String {
    format!("call_{}", Alphanumeric.sample_string(&mut rand::rng(), 24))
}

/// Parses a whole reply.
pub fn parse(text: &str, options: &ParseOptions) -> ParsedOutput {
    let mut parser = StreamParser::new(options);
    let mut events = parser.push(text);
    events.extend(parser.finish());
    ParsedOutput::from_events(events)
}

/// The incremental parser: `push` each text delta, then `finish` once.
#[derive(Debug)]
pub struct StreamParser {
    tools: ToolSet,
    allow_unknown: bool,
    scanners: Vec<ScannerKind>,
    /// Every trigger with the index of its scanner, in scanner priority order.
    triggers: Vec<(String, usize)>,
    trigger_starts: Vec<char>,
    /// Text not yet decided.
    buf: String,
    /// Whitespace after the last content, waiting to see whether a call follows.
    pending_ws: String,
    /// The last thing emitted was a call (trailing whitespace after it is dropped at the end).
    after_call: bool,
    prev: Option<char>,
    next_index: usize,
    /// The block being streamed (its text starts `buf`): bytes of arguments sent per call.
    open: Option<Vec<usize>>,
    finished: bool,
    stats: ParseStats,
}

/// The first characters of `triggers`, for the scan's quick rejection.
fn trigger_starts(triggers: &[(String, usize)]) -> Vec<char> {
    let mut starts: Vec<char> = triggers
        .iter()
        .filter_map(|(t, _)| t.chars().next())
        .collect();
    starts.sort_unstable();
    starts.dedup();
    starts
}

impl StreamParser {
    /// A parser for one reply. With no tools (and unknown names not allowed), with format
    /// `none`, or with `tool_choice: none`, it passes text through untouched.
    /// A parser that starts a call only where the text opens with one of `markers`, the texts
    /// a lazy grammar watches (`Constraint::ToolMarkup`): a scanner's trigger is kept, widened
    /// to the marker, when a marker begins with it, and dropped otherwise. So a `strict` tool's
    /// call can only come from text its schema held; JSON the model writes another way
    /// (pretty-printed, in a fence the grammar does not watch) stays content.
    pub fn watching(options: &ParseOptions, markers: &[String]) -> Self {
        let mut parser = Self::new(options);
        parser.triggers = std::mem::take(&mut parser.triggers)
            .into_iter()
            .filter_map(|(t, i)| {
                markers
                    .iter()
                    .find(|m| m.starts_with(t.as_str()))
                    .map(|m| (m.clone(), i))
            })
            .collect();
        parser.trigger_starts = trigger_starts(&parser.triggers);
        parser
    }

    pub fn new(options: &ParseOptions) -> Self {
        let tools = ToolSet::from_definitions(&options.tools);
        let off = options.tool_choice == ToolChoice::None
            || (tools.is_empty() && !options.allow_unknown_tools);
        let scanners: Vec<ScannerKind> = if off {
            Vec::new()
        } else {
            options.format.scanners().to_vec()
        };
        let triggers: Vec<(String, usize)> = scanners
            .iter()
            .enumerate()
            .flat_map(|(i, s)| s.triggers(&tools).into_iter().map(move |t| (t, i)))
            .filter(|(t, _)| !t.is_empty())
            .collect();
        let trigger_starts = trigger_starts(&triggers);
        Self {
            tools,
            allow_unknown: options.allow_unknown_tools,
            scanners,
            triggers,
            trigger_starts,
            buf: String::new(),
            pending_ws: String::new(),
            after_call: false,
            prev: None,
            next_index: 0,
            open: None,
            finished: false,
            stats: ParseStats::default(),
        }
    }

    /// Feeds the next delta; returns what can be emitted now.
    pub fn push(&mut self, delta: &str) -> Vec<StreamEvent> {
        let mut out = Vec::new();
        if self.finished {
            return out;
        }
        self.buf.push_str(delta);
        self.process(false, &mut out);
        out
    }

    /// Ends the reply: everything still held is decided (incomplete markup becomes content).
    pub fn finish(&mut self) -> Vec<StreamEvent> {
        let mut out = Vec::new();
        if self.finished {
            return out;
        }
        self.process(true, &mut out);
        self.finished = true;
        if !self.after_call && !self.pending_ws.is_empty() {
            let ws = std::mem::take(&mut self.pending_ws);
            push_content(&mut out, ws);
        }
        out
    }

    /// How many calls have been emitted so far.
    pub fn calls_emitted(&self) -> usize {
        self.next_index
    }

    /// Calls and failures seen so far, by format.
    pub fn stats(&self) -> &ParseStats {
        &self.stats
    }

    fn process(&mut self, eof: bool, out: &mut Vec<StreamEvent>) {
        let buf = std::mem::take(&mut self.buf);
        let mut start = 0;
        while start < buf.len() {
            let rest = &buf[start..];
            let Some((at, full, partial)) = self.find_trigger(rest, eof) else {
                self.content(rest, out);
                start = buf.len();
                break;
            };
            self.content(&rest[..at], out);
            start += at;
            let text = &buf[start..];
            match self.decide(text, &full, partial, eof) {
                Decision::Wait => break,
                Decision::Calls(label, calls, len) => {
                    let len = char_ceil(text, len.max(1));
                    self.emit_calls(label, calls, out);
                    self.prev = text[..len].chars().next_back();
                    start += len;
                }
                Decision::Stream(label, partial) => {
                    let Some(len) = self.stream_block(label, partial, text.len(), eof, out) else {
                        break;
                    };
                    let len = char_ceil(text, len.max(1));
                    self.prev = text[..len].chars().next_back();
                    start += len;
                }
                Decision::Skip(len) => {
                    let len = char_ceil(text, len.max(1));
                    self.content(&text[..len], out);
                    start += len;
                }
            }
        }
        self.buf = buf[start..].to_string();
    }

    /// The earliest position where a trigger matches fully, or where the text ends inside a
    /// trigger (only while more text may come); with the scanners whose trigger matched.
    fn find_trigger(&self, rest: &str, eof: bool) -> Option<(usize, Vec<usize>, bool)> {
        if self.triggers.is_empty() {
            return None;
        }
        for (at, ch) in rest.char_indices() {
            // A full or partial match starts with a trigger's first character: most text
            // never reaches the comparisons below.
            if !self.trigger_starts.contains(&ch) {
                continue;
            }
            let tail = &rest[at..];
            let mut full: Vec<usize> = Vec::new();
            let mut partial = false;
            for (t, i) in &self.triggers {
                if tail.starts_with(t.as_str()) {
                    if !full.contains(i) {
                        full.push(*i);
                    }
                } else if !eof && t.starts_with(tail) {
                    partial = true;
                }
            }
            if !full.is_empty() || partial {
                full.sort_unstable();
                return Some((at, full, partial));
            }
        }
        None
    }

    /// Asks the matching scanners in priority order; the first call found wins, but only once
    /// every scanner before it has ruled itself out, so the answer cannot depend on chunking.
    fn decide(&mut self, text: &str, full: &[usize], partial: bool, eof: bool) -> Decision {
        let ctx = ScanCtx {
            tools: &self.tools,
            allow_unknown: self.allow_unknown,
            prev: self.prev,
            eof,
        };
        let mut skip = 0;
        let mut failed = None;
        for &i in full {
            let kind = self.scanners[i];
            // A committed call streams; the whole-markup verdict is for what cannot.
            if let Some(partial) = kind.partial(text, &ctx) {
                return Decision::Stream(kind.label(), partial);
            }
            match kind.scan(text, &ctx) {
                Scan::NeedMore => return Decision::Wait,
                Scan::Calls { calls, len } => return Decision::Calls(kind.label(), calls, len),
                Scan::NotCall { skip: s } => skip = skip.max(s),
                Scan::Failed { skip: s } => {
                    skip = skip.max(s);
                    failed.get_or_insert(kind.label());
                }
            }
        }
        if partial {
            return Decision::Wait;
        }
        if let Some(label) = failed {
            *self.stats.failures.entry(label).or_default() += 1;
        }
        Decision::Skip(skip)
    }

    fn emit_calls(&mut self, label: &'static str, calls: Vec<RawCall>, out: &mut Vec<StreamEvent>) {
        self.pending_ws.clear();
        self.after_call = true;
        *self.stats.calls.entry(label).or_default() += calls.len() as u64;
        for call in calls {
            let index = self.next_index;
            self.next_index += 1;
            out.push(StreamEvent::ToolCallStart {
                index,
                id: new_call_id(),
                name: call.name,
            });
            out.push(StreamEvent::ToolCallArgs {
                index,
                fragment: call.arguments,
            });
            out.push(StreamEvent::ToolCallEnd { index });
        }
    }

    /// Sends what a streamed block has grown by; the bytes it took once it is over.
    fn stream_block(
        &mut self,
        label: &'static str,
        partial: Partial,
        text_len: usize,
        eof: bool,
        out: &mut Vec<StreamEvent>,
    ) -> Option<usize> {
        if self.open.is_none() {
            self.pending_ws.clear();
            self.after_call = true;
        }
        let sent = self.open.get_or_insert_with(Vec::new);
        for (i, call) in partial.calls.iter().enumerate() {
            if i == sent.len() {
                out.push(StreamEvent::ToolCallStart {
                    index: self.next_index + i,
                    id: new_call_id(),
                    name: call.name.clone(),
                });
                sent.push(0);
            }
            let Some(done) = sent.get_mut(i) else {
                continue;
            };
            if let Some(fragment) = call.arguments.get(*done..).filter(|f| !f.is_empty()) {
                out.push(StreamEvent::ToolCallArgs {
                    index: self.next_index + i,
                    fragment: fragment.to_string(),
                });
                *done = call.arguments.len();
            }
        }
        let (len, failed) = match partial.end {
            BlockEnd::Open if !eof => return None,
            // Cut off: the calls keep what was written.
            BlockEnd::Open => (text_len, true),
            BlockEnd::Done(n) => (n, false),
            BlockEnd::Broken(n) => (n, true),
        };
        let n = self.open.take().map_or(0, |sent| sent.len());
        for i in 0..n {
            out.push(StreamEvent::ToolCallEnd {
                index: self.next_index + i,
            });
        }
        self.next_index += n;
        *self.stats.calls.entry(label).or_default() += n as u64;
        if failed {
            *self.stats.failures.entry(label).or_default() += 1;
        }
        Some(len)
    }

    /// Emits content, holding trailing whitespace back until it is known not to touch a call.
    fn content(&mut self, s: &str, out: &mut Vec<StreamEvent>) {
        if s.is_empty() {
            return;
        }
        self.prev = s.chars().next_back();
        if self.triggers.is_empty() {
            // No call can follow, so there is nothing to hold whitespace back for.
            push_content(out, s.to_string());
            return;
        }
        let body = s.trim_end();
        if body.is_empty() {
            self.pending_ws.push_str(s);
            return;
        }
        let mut text = std::mem::take(&mut self.pending_ws);
        text.push_str(body);
        self.pending_ws.push_str(&s[body.len()..]);
        self.after_call = false;
        push_content(out, text);
    }
}

enum Decision {
    Wait,
    Stream(&'static str, Partial),
    Calls(&'static str, Vec<RawCall>, usize),
    Skip(usize),
}

/// Merges adjacent content so callers see one event per burst.
fn push_content(out: &mut Vec<StreamEvent>, text: String) {
    if let Some(StreamEvent::Content(last)) = out.last_mut() {
        last.push_str(&text);
    } else {
        out.push(StreamEvent::Content(text));
    }
}

/// `len` moved up to a char boundary and capped at the text's end.
fn char_ceil(text: &str, mut len: usize) -> usize {
    len = len.min(text.len());
    while !text.is_char_boundary(len) {
        len += 1;
    }
    len
}

/// The OpenAI `delta.tool_calls[]` entry for an event: `id`, `type` and the name only in the
/// call's first delta, then only `function.arguments` pieces, `index` on every one.
pub fn tool_call_delta(event: &StreamEvent) -> Option<serde_json::Value> {
    use serde_json::json;
    match event {
        StreamEvent::ToolCallStart { index, id, name } => Some(json!({
            "index": index,
            "id": id,
            "type": "function",
            "function": {"name": name, "arguments": ""}
        })),
        StreamEvent::ToolCallArgs { index, fragment } => Some(json!({
            "index": index,
            "function": {"arguments": fragment}
        })),
        StreamEvent::Content(_) | StreamEvent::ToolCallEnd { .. } => None,
    }
}
