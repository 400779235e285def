//! A deterministic [`Engine`] for protocol tests and `serve --fake`.
//!
//! It "generates" by echoing the words of the last message (or of the raw prompt), one word per
//! token, then ends with end-of-sequence. Everything is a pure function of the request, so tests
//! can predict exact texts, token counts and finish reasons without a model.
//!
//! - Tokens: the rendered prompt split on whitespace; output tokens are the echoed words, the
//!   first as is and the others with a leading space (`"Hello world"` echoes `"Hello world"`).
//! - `max_tokens`, stop strings (the real engine's `StopMatcher`), the context length
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

mod constrained;
mod script;

use std::collections::VecDeque;
use std::time::Duration;

use crate::engine::{
    Engine, EngineError, EngineInfo, FinishReason, GenerateRequest, PausedSeq, Prompt, SeqEvent,
    SeqId, SeqTimings, TokenLogprob, Usage,
};

pub use constrained::constrained_text;
use constrained::pieces;
use script::{echo_pieces, script_pieces};

use crate::model::stops::StopMatcher;
pub use script::{Script, ScriptEntry};

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
    stops: StopMatcher,
    logprobs: Option<usize>,
    generated: usize,
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
                ..
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
        // The real engine's stop semantics: text is held while it may begin a stop string.
        let released = self.stops.push(&piece);
        events.push(SeqEvent::Text {
            text: released.text,
            tokens: 1,
            logprobs,
        });
        if let Some(stop) = released.stop {
            events.push(finished(self, FinishReason::StopSequence, Some(stop)));
            return (events, true);
        }
        if self.generated >= self.max_tokens {
            self.flush(&mut events, 0, Vec::new());
            events.push(finished(self, FinishReason::Length, None));
            return (events, true);
        }
        (events, false)
    }

    fn flush(&mut self, events: &mut Vec<SeqEvent>, tokens: usize, logprobs: Vec<TokenLogprob>) {
        let text = self.stops.finish();
        if !text.is_empty() {
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
            stops: StopMatcher::new(&request.stop),
            logprobs: request.logprobs,
            generated: 0,
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

    fn pause(&mut self, id: SeqId) -> Option<PausedSeq> {
        let at = self.seqs.iter().position(|s| s.id == id)?;
        Some(PausedSeq::new(id, Box::new(self.seqs.remove(at))))
    }

    fn resume(&mut self, seq: PausedSeq) -> Result<(), EngineError> {
        let id = seq.id();
        let seq = seq.into_state::<FakeSeq>().map_err(|_| {
            EngineError::Internal(format!("sequence {id} was not paused by the fake engine"))
        })?;
        self.seqs.push(*seq);
        Ok(())
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
        for seq in &mut self.seqs {
            if seq.id == id {
                seq.cancelled = true;
            }
        }
    }
}

#[cfg(test)]
mod tests;
