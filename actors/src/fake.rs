//! A deterministic [`Engine`] for protocol tests and `serve --fake`.
//!
//! It "generates" by echoing the words of the last message (or of the raw prompt), one word per
//! token, then ends with end-of-sequence. Everything is a pure function of the request, so tests
//! can predict exact texts, token counts and finish reasons without a model.
//!
//! - Tokens: the rendered prompt split on whitespace; output tokens are the echoed words, the
//!   first as is and the others with a leading space (`"Hello world"` echoes `"Hello world"`).
//! - `max_tokens`, stop strings (held back while they may still match), the context length
//!   (`EngineError::ContextLength`), cancellation and logprobs behave as a real engine's do.
//! - Words in the prompt trigger faults, for tests of the failure paths:
//!   `__fail__` fails the sequence after its first token, `__panic__` panics inside `step`,
//!   `__stall_ms=N__` makes the sequence's first step take N ms (a wedged engine),
//!   `__ignore_constraint__` makes it echo even when the request has a constraint (a model that
//!   ignores its grammar, for tests of the checks behind constrained decoding).
//! - Scripted mode ([`Script`]): replies are played in order instead of the echo, one per
//!   request, as raw model text (tool-call markup included, so the real tool parser sees it).
//!   Real-client tests use it to drive an agent's loop with known replies.
//! - An unscripted request with a constraint gets text its grammar accepts instead of the echo
//!   (see [`constrained_text`]), in pieces of up to four bytes, one piece per token, ending
//!   with `Stop` once the grammar is complete (or `Length` when `max_tokens` runs out first).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::Deserialize;

use crate::engine::{
    Constraint, Engine, EngineError, EngineInfo, FinishReason, GenerateRequest, Prompt, SeqEvent,
    SeqId, SeqTimings, TokenLogprob, Usage,
};
use crate::guided::{ConstraintError, GuideFactory};

/// How the fake behaves.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// Model id it reports.
    pub model_id: String,
    /// Context length it enforces.
    pub context_length: usize,
    /// Sleep per step, to make generations take real time.
    pub token_delay: Duration,
    /// Sequences it runs at once.
    pub max_running: usize,
    /// Canned replies played instead of the echo; shared so an engine restart keeps its place.
    pub script: Option<Script>,
}

/// One canned reply of a [`Script`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum ScriptEntry {
    /// The reply, for whatever request comes next.
    Reply(String),
    /// The reply, only for a request whose rendered prompt contains `match`; other requests are
    /// echoed and leave the entry in place (clients send side requests, e.g. titles, in between).
    Matched {
        /// Text the rendered prompt must contain.
        #[serde(rename = "match")]
        matches: String,
        /// The reply.
        reply: String,
    },
}

/// Replies played in order, one per request, as raw model text.
#[derive(Debug, Clone, Default)]
pub struct Script {
    pending: Arc<Mutex<VecDeque<ScriptEntry>>>,
}

impl Script {
    /// A script from its entries.
    pub fn new(entries: Vec<ScriptEntry>) -> Self {
        Self {
            pending: Arc::new(Mutex::new(entries.into())),
        }
    }

    /// Parses a script file's JSON: an array of strings or `{"match", "reply"}` objects.
    pub fn from_json(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str::<Vec<ScriptEntry>>(json).map(Self::new)
    }

    /// Entries not yet played.
    pub fn remaining(&self) -> usize {
        self.pending.lock().map(|q| q.len()).unwrap_or(0)
    }

    /// The next reply if it applies to this prompt, taking it off the script.
    fn take(&self, rendered: &str) -> Option<String> {
        let mut queue = self.pending.lock().ok()?;
        let applies = match queue.front()? {
            ScriptEntry::Reply(_) => true,
            ScriptEntry::Matched { matches, .. } => rendered.contains(matches.as_str()),
        };
        if !applies {
            return None;
        }
        match queue.pop_front()? {
            ScriptEntry::Reply(reply) | ScriptEntry::Matched { reply, .. } => Some(reply),
        }
    }
}

/// A scripted reply as tokens: each piece is a word with the whitespace that follows it, so the
/// pieces join back into the exact text.
fn script_pieces(reply: &str) -> VecDeque<String> {
    let mut pieces = VecDeque::new();
    let mut current = String::new();
    let mut in_space = false;
    for c in reply.chars() {
        if !c.is_whitespace() && in_space {
            pieces.push_back(std::mem::take(&mut current));
        }
        in_space = c.is_whitespace();
        current.push(c);
    }
    if !current.is_empty() {
        pieces.push_back(current);
    }
    pieces
}

/// The echo as tokens: the words of the source, the first as is and the others after a space.
fn echo_pieces(source: &str) -> VecDeque<String> {
    source
        .split_whitespace()
        .enumerate()
        .map(|(i, w)| {
            if i == 0 {
                w.to_owned()
            } else {
                format!(" {w}")
            }
        })
        .collect()
}

impl Default for FakeConfig {
    fn default() -> Self {
        Self {
            model_id: "fake-model".to_owned(),
            context_length: 2048,
            token_delay: Duration::ZERO,
            max_running: 1,
            script: None,
        }
    }
}

struct FakeSeq {
    id: SeqId,
    words: VecDeque<String>,
    prompt_tokens: usize,
    max_tokens: usize,
    stop: Vec<String>,
    logprobs: Option<usize>,
    generated: usize,
    text: String,
    emitted: usize,
    started: bool,
    cancelled: bool,
    fail_after_first: bool,
    panic: bool,
    stall: Option<Duration>,
}

/// Token ids as the fake's words: `[1, 2]` is `"t1 t2"`.
fn token_words(ids: &[u32]) -> String {
    ids.iter()
        .map(|id| format!("t{id}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The deterministic engine. See the module docs for what it generates.
pub struct FakeEngine {
    config: FakeConfig,
    seqs: Vec<FakeSeq>,
}

impl FakeEngine {
    /// An engine with the given behaviour.
    pub fn new(config: FakeConfig) -> Self {
        Self {
            config,
            seqs: Vec::new(),
        }
    }

    fn render(prompt: &Prompt) -> String {
        match prompt {
            Prompt::Text(text) => text.clone(),
            Prompt::Tokens(ids) => token_words(ids),
            Prompt::Chat {
                messages,
                tools,
                add_generation_prompt,
            } => {
                let mut out = String::new();
                if !tools.is_empty() {
                    out.push_str("<|im_start|>tools\n");
                    out.push_str(&serde_json::Value::Array(tools.clone()).to_string());
                    out.push_str("<|im_end|>\n");
                }
                for m in messages {
                    out.push_str(&format!(
                        "<|im_start|>{}\n{}<|im_end|>\n",
                        m.role, m.content
                    ));
                }
                if *add_generation_prompt {
                    out.push_str("<|im_start|>assistant\n");
                }
                out
            }
        }
    }

    fn echo_source(prompt: &Prompt) -> String {
        match prompt {
            Prompt::Text(text) => text.clone(),
            Prompt::Tokens(ids) => token_words(ids),
            Prompt::Chat { messages, .. } => messages
                .last()
                .map(|m| m.content.clone())
                .unwrap_or_default(),
        }
    }

    fn token_logprob(word: &str, position: usize, top_n: usize) -> TokenLogprob {
        // A fixed, position-dependent value keeps logprobs deterministic and never positive.
        let logprob = -0.125 * (position % 4) as f32;
        let mut top = vec![(word.to_owned(), word.as_bytes().to_vec(), logprob)];
        for k in 1..top_n {
            let alt = format!(" alt{k}");
            top.push((alt.clone(), alt.into_bytes(), logprob - k as f32));
        }
        top.truncate(top_n);
        TokenLogprob {
            token: word.to_owned(),
            bytes: word.as_bytes().to_vec(),
            logprob,
            top,
        }
    }
}

/// Text that can be emitted now: everything except a tail that may still grow into a stop string.
fn safe_len(text: &str, emitted: usize, stop: &[String]) -> usize {
    let pending = &text[emitted..];
    let hold = stop
        .iter()
        .flat_map(|s| {
            (1..s.len()).filter(move |&k| s.is_char_boundary(k) && pending.ends_with(&s[..k]))
        })
        .max()
        .unwrap_or(0);
    text.len() - hold
}

fn finished(seq: &FakeSeq, reason: FinishReason, stop_sequence: Option<String>) -> SeqEvent {
    SeqEvent::Finished {
        reason,
        stop_sequence,
        usage: Usage {
            prompt_tokens: seq.prompt_tokens,
            cached_tokens: 0,
            completion_tokens: seq.generated,
        },
        timings: SeqTimings::default(),
    }
}

impl FakeSeq {
    /// One decode step: the events it produces and whether the sequence is done.
    fn step(&mut self) -> (Vec<SeqEvent>, bool) {
        let mut events = Vec::new();
        if self.cancelled {
            return (vec![finished(self, FinishReason::Cancelled, None)], true);
        }
        if !self.started {
            self.started = true;
            events.push(SeqEvent::Started {
                prompt_tokens: self.prompt_tokens,
                cached_tokens: 0,
            });
        }
        if self.fail_after_first && self.generated >= 1 {
            events.push(SeqEvent::Failed(EngineError::Internal(
                "injected failure".to_owned(),
            )));
            return (events, true);
        }
        if self.generated >= self.max_tokens {
            self.flush(&mut events, 0, Vec::new());
            events.push(finished(self, FinishReason::Length, None));
            return (events, true);
        }
        let Some(piece) = self.words.pop_front() else {
            self.flush(&mut events, 0, Vec::new());
            events.push(finished(self, FinishReason::Stop, None));
            return (events, true);
        };
        let logprobs = match self.logprobs {
            Some(n) => vec![FakeEngine::token_logprob(&piece, self.generated, n)],
            None => Vec::new(),
        };
        self.generated += 1;
        self.text.push_str(&piece);
        // A stop string may straddle tokens: search the tail that could contain a new match.
        let longest = self.stop.iter().map(String::len).max().unwrap_or(0);
        let mut from = self.emitted.saturating_sub(longest);
        while !self.text.is_char_boundary(from) {
            from -= 1;
        }
        let hit = self
            .stop
            .iter()
            .filter_map(|s| self.text[from..].find(s.as_str()).map(|p| (from + p, s)))
            .min_by_key(|(p, _)| *p);
        if let Some((pos, s)) = hit {
            let s = s.clone();
            let text = self.text[self.emitted.min(pos)..pos].to_owned();
            self.emitted = pos;
            events.push(SeqEvent::Text {
                text,
                tokens: 1,
                logprobs,
            });
            events.push(finished(self, FinishReason::StopSequence, Some(s)));
            return (events, true);
        }
        let safe = safe_len(&self.text, self.emitted, &self.stop);
        let text = self.text[self.emitted..safe].to_owned();
        self.emitted = safe;
        events.push(SeqEvent::Text {
            text,
            tokens: 1,
            logprobs,
        });
        if self.generated >= self.max_tokens {
            self.flush(&mut events, 0, Vec::new());
            events.push(finished(self, FinishReason::Length, None));
            return (events, true);
        }
        (events, false)
    }

    fn flush(&mut self, events: &mut Vec<SeqEvent>, tokens: usize, logprobs: Vec<TokenLogprob>) {
        if self.emitted < self.text.len() {
            let text = self.text[self.emitted..].to_owned();
            self.emitted = self.text.len();
            events.push(SeqEvent::Text {
                text,
                tokens,
                logprobs,
            });
        }
    }
}

impl Engine for FakeEngine {
    fn info(&self) -> EngineInfo {
        EngineInfo {
            model_id: self.config.model_id.clone(),
            architecture: "fake".to_owned(),
            context_length: self.config.context_length,
            backend: "fake".to_owned(),
            dtype: "float32".to_owned(),
            chat_template: None,
            load_seconds: 0.0,
            weight_bytes: 0,
        }
    }

    fn count_prompt_tokens(&mut self, prompt: &Prompt) -> Result<usize, EngineError> {
        Ok(Self::render(prompt).split_whitespace().count())
    }

    fn add(&mut self, id: SeqId, request: GenerateRequest) -> Result<(), EngineError> {
        let rendered = Self::render(&request.prompt);
        let prompt_tokens = rendered.split_whitespace().count();
        let context_length = self.config.context_length;
        let room = context_length.saturating_sub(prompt_tokens);
        if prompt_tokens >= context_length || request.max_tokens.is_some_and(|m| m > room) {
            let max_tokens = request.max_tokens.unwrap_or(0);
            return Err(EngineError::ContextLength {
                context_length,
                prompt_tokens,
                max_tokens,
                requested: prompt_tokens + max_tokens,
            });
        }
        let scripted = self.config.script.as_ref().and_then(|s| s.take(&rendered));
        let stall = rendered.split_whitespace().find_map(|w| {
            w.strip_prefix("__stall_ms=")
                .and_then(|r| r.strip_suffix("__"))
                .and_then(|n| n.parse::<u64>().ok())
                .map(Duration::from_millis)
        });
        let max_tokens = request.max_tokens.unwrap_or(room).min(room);
        let constraint = request
            .constraint
            .as_ref()
            .filter(|_| !rendered.contains("__ignore_constraint__"));
        let source = Self::echo_source(&request.prompt);
        let words = match (scripted, constraint) {
            (Some(reply), _) => script_pieces(&reply),
            (None, Some(c)) => pieces(&constrained_text(c, &source, max_tokens.saturating_mul(4))?),
            (None, None) => echo_pieces(&source),
        };
        self.seqs.push(FakeSeq {
            id,
            words,
            prompt_tokens,
            max_tokens,
            stop: request.stop.into_iter().filter(|s| !s.is_empty()).collect(),
            logprobs: request.logprobs,
            generated: 0,
            text: String::new(),
            emitted: 0,
            started: false,
            cancelled: false,
            fail_after_first: rendered.contains("__fail__"),
            panic: rendered.contains("__panic__"),
            stall,
        });
        Ok(())
    }

    fn free_slots(&self) -> usize {
        self.config.max_running.saturating_sub(self.seqs.len())
    }

    fn has_work(&self) -> bool {
        !self.seqs.is_empty()
    }

    fn step(&mut self) -> Vec<(SeqId, SeqEvent)> {
        if self.seqs.is_empty() {
            return Vec::new();
        }
        if !self.config.token_delay.is_zero() {
            std::thread::sleep(self.config.token_delay);
        }
        let mut out = Vec::new();
        let mut done = Vec::new();
        for seq in &mut self.seqs {
            if seq.panic {
                panic!("fake engine: injected panic");
            }
            if let Some(stall) = seq.stall.take() {
                std::thread::sleep(stall);
            }
            let (events, finished) = seq.step();
            out.extend(events.into_iter().map(|e| (seq.id, e)));
            if finished {
                done.push(seq.id);
            }
        }
        self.seqs.retain(|s| !done.contains(&s.id));
        out
    }

    fn cancel(&mut self, id: SeqId) {
        if let Some(seq) = self.seqs.iter_mut().find(|s| s.id == id) {
            seq.cancelled = true;
        }
    }
}

/// Text the constraint accepts, byte by byte on a one-byte-per-token vocabulary, like a model
/// that wants to finish: end as soon as the grammar allows; else the next byte of `echo` when
/// allowed; else, inside a JSON string, its closing `"`; outside one, `}`, `]` or `0`; else the
/// lowest allowed byte that is not whitespace. At most `budget` bytes (cut at a character
/// boundary). Deterministic.
pub fn constrained_text(
    constraint: &Constraint,
    echo: &str,
    budget: usize,
) -> Result<String, EngineError> {
    static FACTORY: OnceLock<Result<GuideFactory, ConstraintError>> = OnceLock::new();
    let invalid =
        |e: ConstraintError| EngineError::InvalidRequest(format!("invalid constraint: {e}"));
    let factory = FACTORY
        .get_or_init(GuideFactory::byte_level)
        .as_ref()
        .map_err(|e| invalid(e.clone()))?;
    let mut guide = factory.guide(constraint).map_err(invalid)?;
    let eos = 256;
    let mut echo = echo.bytes().peekable();
    let mut out: Vec<u8> = Vec::new();
    let mut in_string = false;
    while out.len() < budget {
        let allowed = guide.allowed().map_err(invalid)?;
        if allowed.is_allowed(eos) {
            break;
        }
        let ok = |b: u8| allowed.is_allowed(u32::from(b));
        let next_echo = echo.peek().copied().filter(|&b| ok(b));
        let closers: &[u8] = if in_string { b"\"" } else { b"}]0" };
        let pick = next_echo
            .or_else(|| closers.iter().copied().find(|&b| ok(b)))
            .or_else(|| (0..=255u8).find(|&b| ok(b) && !b.is_ascii_whitespace()))
            .or_else(|| (0..=255u8).find(|&b| ok(b)))
            .ok_or_else(|| invalid(ConstraintError("no byte allowed".into())))?;
        if next_echo.is_some() {
            echo.next();
        }
        if pick == b'"' && out.last() != Some(&b'\\') {
            in_string = !in_string;
        }
        out.push(pick);
        if guide.advance(u32::from(pick)).map_err(invalid)? {
            break;
        }
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    Ok(text.trim_end_matches('\u{FFFD}').to_owned())
}

/// `text` in pieces of up to four bytes, cut at character boundaries.
fn pieces(text: &str) -> VecDeque<String> {
    let mut out = VecDeque::new();
    let mut start = 0;
    while start < text.len() {
        let mut end = (start + 4).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        out.push_back(text[start..end].to_owned());
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{ChatMessage, SamplingParams};

    fn request(text: &str, max_tokens: Option<usize>, stop: &[&str]) -> GenerateRequest {
        GenerateRequest {
            prompt: Prompt::Text(text.to_owned()),
            sampling: SamplingParams::default(),
            max_tokens,
            stop: stop.iter().map(|s| s.to_string()).collect(),
            logprobs: None,
            constraint: None,
        }
    }

    fn run(engine: &mut FakeEngine, id: SeqId) -> (String, SeqEvent) {
        let mut text = String::new();
        loop {
            for (sid, ev) in engine.step() {
                assert_eq!(sid, id);
                match ev {
                    SeqEvent::Text { text: t, .. } => text.push_str(&t),
                    SeqEvent::Started { .. } => {}
                    other => return (text, other),
                }
            }
        }
    }

    fn reason(ev: &SeqEvent) -> FinishReason {
        match ev {
            SeqEvent::Finished { reason, .. } => *reason,
            other => panic!("not finished: {other:?}"),
        }
    }

    #[test]
    fn a_constrained_request_gets_text_its_grammar_accepts() {
        let mut engine = FakeEngine::new(FakeConfig::default());
        let mut req = request("Paris is nice", Some(64), &[]);
        req.constraint = Some(Constraint::JsonSchema(serde_json::json!({
            "type": "object",
            "properties": {"city": {"type": "string"}, "n": {"type": "integer"}},
            "required": ["city", "n"]
        })));
        engine.add(1, req).expect("add");
        let (text, end) = run(&mut engine, 1);
        assert_eq!(text, "{\"city\": \"Paris is nice\", \"n\": 0}");
        assert_eq!(reason(&end), FinishReason::Stop);
    }

    #[test]
    fn a_constrained_request_that_runs_out_of_tokens_ends_with_length() {
        let mut engine = FakeEngine::new(FakeConfig::default());
        let mut req = request("a long echo that will not fit", Some(3), &[]);
        req.constraint = Some(Constraint::Regex("[a-z ]+!".into()));
        engine.add(1, req).expect("add");
        let (text, end) = run(&mut engine, 1);
        assert_eq!(text, "a long echo ");
        assert_eq!(reason(&end), FinishReason::Length);
    }

    #[test]
    fn echoes_the_prompt_then_stops_at_eos() {
        let mut e = FakeEngine::new(FakeConfig::default());
        e.add(1, request("Hello big world", None, &[])).unwrap();
        let (text, end) = run(&mut e, 1);
        assert_eq!(text, "Hello big world");
        assert_eq!(reason(&end), FinishReason::Stop);
        assert!(!e.has_work());
    }

    #[test]
    fn max_tokens_ends_with_length() {
        let mut e = FakeEngine::new(FakeConfig::default());
        e.add(1, request("a b c d e", Some(2), &[])).unwrap();
        let (text, end) = run(&mut e, 1);
        assert_eq!(text, "a b");
        assert_eq!(reason(&end), FinishReason::Length);
        if let SeqEvent::Finished { usage, .. } = end {
            assert_eq!(usage.completion_tokens, 2);
            assert_eq!(usage.prompt_tokens, 5);
        }
    }

    #[test]
    fn stop_string_across_tokens_is_not_emitted() {
        let mut e = FakeEngine::new(FakeConfig::default());
        e.add(1, request("one two three four", None, &["o th"]))
            .unwrap();
        let (text, end) = run(&mut e, 1);
        assert_eq!(text, "one tw");
        assert_eq!(reason(&end), FinishReason::StopSequence);
    }

    #[test]
    fn held_back_prefix_is_flushed_when_no_stop_matches() {
        let mut e = FakeEngine::new(FakeConfig::default());
        e.add(1, request("ab", None, &["bz"])).unwrap();
        let (text, end) = run(&mut e, 1);
        assert_eq!(text, "ab");
        assert_eq!(reason(&end), FinishReason::Stop);
    }

    #[test]
    fn prompt_over_context_is_rejected_with_numbers() {
        let mut e = FakeEngine::new(FakeConfig {
            context_length: 4,
            ..FakeConfig::default()
        });
        let err = e.add(1, request("a b c", Some(5), &[])).unwrap_err();
        assert_eq!(
            err,
            EngineError::ContextLength {
                context_length: 4,
                prompt_tokens: 3,
                max_tokens: 5,
                requested: 8
            }
        );
    }

    #[test]
    fn cancel_finishes_on_next_step() {
        let mut e = FakeEngine::new(FakeConfig::default());
        e.add(7, request("a b c d", None, &[])).unwrap();
        e.step();
        e.cancel(7);
        let events = e.step();
        assert_eq!(reason(&events[0].1), FinishReason::Cancelled);
        assert!(!e.has_work());
    }

    #[test]
    fn chat_prompt_echoes_last_message_and_counts_rendered_words() {
        let mut e = FakeEngine::new(FakeConfig::default());
        let prompt = Prompt::Chat {
            messages: vec![ChatMessage {
                role: "user".into(),
                content: "hi there".into(),
                ..ChatMessage::default()
            }],
            tools: vec![],
            add_generation_prompt: true,
        };
        assert_eq!(e.count_prompt_tokens(&prompt).unwrap(), 4);
        let mut req = request("", None, &[]);
        req.prompt = prompt;
        req.logprobs = Some(2);
        e.add(1, req).unwrap();
        let events = e.step();
        match &events[1].1 {
            SeqEvent::Text { text, logprobs, .. } => {
                assert_eq!(text, "hi");
                assert_eq!(logprobs[0].top.len(), 2);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn script_replies_in_order_with_exact_whitespace_then_echoes() {
        let reply = "<tool_call>\n{\"name\": \"f\",  \"arguments\": {}}\n</tool_call>";
        let script = Script::new(vec![
            ScriptEntry::Reply(reply.to_owned()),
            ScriptEntry::Reply("done".to_owned()),
        ]);
        let config = FakeConfig {
            script: Some(script.clone()),
            ..FakeConfig::default()
        };
        let mut e = FakeEngine::new(config.clone());
        e.add(1, request("hi there", None, &[])).unwrap();
        assert_eq!(run(&mut e, 1).0, reply);
        // A new engine (as after a restart) continues the same script.
        let mut e = FakeEngine::new(config);
        e.add(2, request("hi there", None, &[])).unwrap();
        assert_eq!(run(&mut e, 2).0, "done");
        assert_eq!(script.remaining(), 0);
        e.add(3, request("hi there", None, &[])).unwrap();
        assert_eq!(run(&mut e, 3).0, "hi there");
    }

    #[test]
    fn matched_script_entry_waits_for_its_prompt() {
        let script = Script::from_json(r#"[{"match": "tool result", "reply": "final"}]"#).unwrap();
        let mut e = FakeEngine::new(FakeConfig {
            script: Some(script.clone()),
            ..FakeConfig::default()
        });
        e.add(1, request("a title please", None, &[])).unwrap();
        assert_eq!(run(&mut e, 1).0, "a title please");
        assert_eq!(script.remaining(), 1);
        e.add(2, request("the tool result is 4", None, &[]))
            .unwrap();
        assert_eq!(run(&mut e, 2).0, "final");
        assert_eq!(script.remaining(), 0);
    }

    #[test]
    fn script_json_rejects_other_shapes() {
        assert!(Script::from_json(r#"{"reply": "x"}"#).is_err());
        assert!(Script::from_json(r#"[1]"#).is_err());
    }
}
