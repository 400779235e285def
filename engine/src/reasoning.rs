//! Reasoning kept apart from the answer: a model's thinking (`<think>…</think>`, harmony's
//! analysis channel) split off its text before the tool parser sees it.
//!
//! [`ReasoningSplitter`] is incremental and exact: any chunking of a reply gives the same
//! pieces as the whole reply (a tail that may be the start of a marker is held until it is
//! known). Reasoning is never parsed for tool calls and never counted as content. Whitespace
//! right after the end of the reasoning is layout and dropped.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::engine::ReasoningSpec;

/// `[reasoning] parser`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasoningFormat {
    /// Chosen from the chat template ([`detect_reasoning`]).
    #[default]
    Auto,
    /// No separation: thinking stays in the text.
    #[serde(rename = "none", alias = "off")]
    Disabled,
    /// `<think>…</think>` (DeepSeek-R1 and its distills, Qwen3, GLM-4.5, MiniMax-M2, Kimi).
    #[serde(alias = "deepseek_r1", alias = "qwen3", alias = "think_tags")]
    Think,
    /// gpt-oss harmony: `<|channel|>analysis<|message|>…<|end|>`.
    #[serde(alias = "harmony")]
    GptOss,
}

impl ReasoningFormat {
    /// `Auto` resolved against a chat template; others stay as configured.
    pub fn resolve(self, chat_template: Option<&str>) -> Self {
        match self {
            Self::Auto => detect_reasoning(chat_template),
            other => other,
        }
    }

    fn markers(self) -> Option<(&'static str, &'static str)> {
        match self {
            Self::Think => Some(("<think>", "</think>")),
            Self::GptOss => Some(("<|channel|>analysis<|message|>", "<|end|>")),
            Self::Auto | Self::Disabled => None,
        }
    }

    /// What the engine feeds the model to end its reasoning early (a spent thinking budget):
    /// the closing marker and whatever the format puts before the answer.
    fn force_close(self) -> Option<&'static str> {
        match self {
            Self::Think => Some("\n</think>\n\n"),
            Self::GptOss => Some("<|end|><|start|>assistant<|channel|>final<|message|>"),
            Self::Auto | Self::Disabled => None,
        }
    }

    /// The engine's view of this format, with a thinking budget; `None` when it separates
    /// nothing.
    pub fn spec(self, budget: Option<usize>) -> Option<ReasoningSpec> {
        let (open, close) = self.markers()?;
        Some(ReasoningSpec {
            open: open.into(),
            close: close.into(),
            force_close: self.force_close()?.into(),
            budget,
        })
    }
}

/// The reasoning format a chat template renders: `<think>` → `think`, harmony channels →
/// `gpt_oss`, otherwise none.
pub fn detect_reasoning(chat_template: Option<&str>) -> ReasoningFormat {
    match chat_template {
        Some(t) if t.contains("<|channel|>") && t.contains("analysis") => ReasoningFormat::GptOss,
        Some(t) if t.contains("<think>") || t.contains("</think>") => ReasoningFormat::Think,
        _ => ReasoningFormat::Disabled,
    }
}

/// A piece of a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Thinking.
    Reasoning(String),
    /// The answer (tool-call markup included, for the tool parser).
    Content(String),
}

/// Splits one reply's text into reasoning and content as it arrives.
#[derive(Debug, Clone)]
pub struct ReasoningSplitter {
    format: ReasoningFormat,
    start: &'static str,
    end: &'static str,
    in_reasoning: bool,
    /// Drop whitespace until the next visible character (right after the reasoning ended).
    trim: bool,
    held: String,
    /// Reasoning pieces emitted so far (for a thinking budget).
    reasoning_chars: usize,
}

impl ReasoningSplitter {
    /// A splitter for `format`; `None` when it separates nothing.
    pub fn new(format: ReasoningFormat) -> Option<Self> {
        let (start, end) = format.markers()?;
        Some(Self {
            format,
            start,
            end,
            in_reasoning: false,
            trim: false,
            held: String::new(),
            reasoning_chars: 0,
        })
    }

    /// The format this splitter separates.
    pub fn format(&self) -> ReasoningFormat {
        self.format
    }

    /// Whether the reply is inside its reasoning now.
    pub fn in_reasoning(&self) -> bool {
        self.in_reasoning
    }

    /// Characters of reasoning seen so far.
    pub fn reasoning_chars(&self) -> usize {
        self.reasoning_chars
    }

    /// Feeds the next delta.
    pub fn push(&mut self, delta: &str) -> Vec<Piece> {
        self.held.push_str(delta);
        let mut out = Vec::new();
        loop {
            let marker = if self.in_reasoning {
                self.end
            } else {
                self.start
            };
            if let Some(i) = self.held.find(marker) {
                let before: String = self.held[..i].to_string();
                self.emit(before, &mut out);
                self.held.drain(..i + marker.len());
                self.in_reasoning = !self.in_reasoning;
                self.trim = !self.in_reasoning;
                continue;
            }
            // Keep back the longest tail that may begin the marker.
            let keep = (1..marker.len())
                .rev()
                .find(|&n| self.held.ends_with(&marker[..n]))
                .unwrap_or(0);
            let cut = self.held.len() - keep;
            let ready: String = self.held.drain(..cut).collect();
            self.emit(ready, &mut out);
            return out;
        }
    }

    /// Ends the reply: what is held is released as what it was inside of.
    pub fn finish(&mut self) -> Vec<Piece> {
        let mut out = Vec::new();
        let rest = std::mem::take(&mut self.held);
        self.emit(rest, &mut out);
        out
    }

    fn emit(&mut self, mut text: String, out: &mut Vec<Piece>) {
        if self.trim && !self.in_reasoning {
            let t = text.trim_start().to_string();
            if t.is_empty() {
                return;
            }
            self.trim = false;
            text = t;
        }
        if text.is_empty() {
            return;
        }
        let piece = if self.in_reasoning {
            self.reasoning_chars += text.chars().count();
            Piece::Reasoning(text)
        } else {
            Piece::Content(text)
        };
        match (out.last_mut(), piece) {
            (Some(Piece::Reasoning(a)), Piece::Reasoning(b)) => a.push_str(&b),
            (Some(Piece::Content(a)), Piece::Content(b)) => a.push_str(&b),
            (_, piece) => out.push(piece),
        }
    }
}

/// The engine's side of reasoning: whether the sequence is inside its reasoning (the prompt may
/// have opened it: DeepSeek-R1's template ends its generation prompt with `<think>\n`), how many
/// reasoning tokens are left in the budget, and the tokens to force once it is spent.
#[derive(Debug, Clone)]
pub struct ThinkingTracker {
    spec: ReasoningSpec,
    inside: bool,
    /// The prompt opened the reasoning: its client has not seen the opening marker.
    opened_by_prompt: bool,
    /// Text not yet known to hold no marker (a tail that may begin one).
    held: String,
    left: Option<usize>,
    forced: VecDeque<u32>,
    /// The budget ran out and the closing tokens were asked for.
    spent: bool,
}

impl ThinkingTracker {
    /// A tracker for a sequence whose rendered prompt ends with `prompt_tail`; `None` when the
    /// spec has no markers.
    pub fn new(spec: &ReasoningSpec, prompt_tail: &str) -> Option<Self> {
        if spec.open.is_empty() || spec.close.is_empty() {
            return None;
        }
        let inside = match (
            prompt_tail.rfind(&spec.open),
            prompt_tail.rfind(&spec.close),
        ) {
            (Some(o), Some(c)) => o > c,
            (Some(_), None) => true,
            _ => false,
        };
        Some(Self {
            spec: spec.clone(),
            inside,
            opened_by_prompt: inside,
            held: String::new(),
            left: spec.budget,
            forced: VecDeque::new(),
            spent: false,
        })
    }

    /// The opening marker, when the prompt wrote it (the client's reasoning splitter needs it).
    pub fn prompt_opened(&self) -> Option<&str> {
        self.opened_by_prompt.then_some(self.spec.open.as_str())
    }

    /// The next token to feed instead of sampling, while the reasoning is being closed.
    pub fn next_forced(&mut self) -> Option<u32> {
        self.forced.pop_front()
    }

    /// Takes in one token's text. Returns the text to force (as a string for the engine to
    /// tokenize) when this token spent the budget inside the reasoning.
    pub fn observe(&mut self, piece: &str) -> Option<&str> {
        let was_inside = self.inside;
        self.held.push_str(piece);
        loop {
            let marker = if self.inside {
                &self.spec.close
            } else {
                &self.spec.open
            };
            if let Some(i) = self.held.find(marker.as_str()) {
                self.held.drain(..i + marker.len());
                self.inside = !self.inside;
                continue;
            }
            let keep = (1..marker.len())
                .rev()
                .find(|&n| {
                    marker.is_char_boundary(n)
                        && self
                            .held
                            .is_char_boundary(self.held.len().saturating_sub(n))
                        && self.held.ends_with(&marker[..n])
                })
                .unwrap_or(0);
            let cut = self.held.len() - keep;
            self.held.drain(..cut);
            break;
        }
        if !(was_inside || self.inside) || self.spent || !self.forced.is_empty() {
            return None;
        }
        let left = self.left.as_mut()?;
        *left = left.saturating_sub(1);
        if *left == 0 && self.inside {
            self.spent = true;
            return Some(&self.spec.force_close);
        }
        None
    }

    /// Queues the tokens of the text [`Self::observe`] asked for.
    pub fn force(&mut self, tokens: Vec<u32>) {
        self.forced.extend(tokens);
    }
}

/// The reasoning and the content of a whole reply.
pub fn split_reasoning(format: ReasoningFormat, text: &str) -> (String, String) {
    let Some(mut s) = ReasoningSplitter::new(format) else {
        return (String::new(), text.to_string());
    };
    let mut pieces = s.push(text);
    pieces.extend(s.finish());
    fold(pieces)
}

fn fold(pieces: Vec<Piece>) -> (String, String) {
    let (mut r, mut c) = (String::new(), String::new());
    for p in pieces {
        match p {
            Piece::Reasoning(t) => r.push_str(&t),
            Piece::Content(t) => c.push_str(&t),
        }
    }
    (r, c)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recorded model outputs (no small reasoning model is available here).
    const R1: &str = "<think>\nThe user wants the weather. I should call get_weather with <tool_call> markup.\n</think>\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
    const HARMONY: &str = "<|channel|>analysis<|message|>Need weather; call tool.<|end|><|start|>assistant<|channel|>final<|message|>Sunny.<|return|>";

    fn every_split(format: ReasoningFormat, text: &str) -> (String, String) {
        let whole = split_reasoning(format, text);
        for (at, _) in text.char_indices().skip(1) {
            let mut s = ReasoningSplitter::new(format).expect("splitter");
            let mut p = s.push(&text[..at]);
            p.extend(s.push(&text[at..]));
            p.extend(s.finish());
            assert_eq!(fold(p), whole, "split at {at}");
        }
        let mut s = ReasoningSplitter::new(format).expect("splitter");
        let mut p = Vec::new();
        for c in text.chars() {
            p.extend(s.push(&c.to_string()));
        }
        p.extend(s.finish());
        assert_eq!(fold(p), whole, "1-char chunks");
        whole
    }

    #[test]
    fn think_block_is_reasoning_and_the_rest_content_at_every_split() {
        let (r, c) = every_split(ReasoningFormat::Think, R1);
        assert!(
            r.starts_with("\nThe user wants") && r.contains("<tool_call> markup"),
            "{r:?}"
        );
        assert!(c.starts_with("<tool_call>"), "{c:?}");
    }

    #[test]
    fn harmony_analysis_channel_is_reasoning() {
        let (r, c) = every_split(ReasoningFormat::GptOss, HARMONY);
        assert_eq!(r, "Need weather; call tool.");
        assert_eq!(
            c,
            "<|start|>assistant<|channel|>final<|message|>Sunny.<|return|>"
        );
    }

    #[test]
    fn unclosed_think_is_all_reasoning_and_text_without_it_all_content() {
        assert_eq!(
            split_reasoning(ReasoningFormat::Think, "<think>still going"),
            ("still going".into(), String::new())
        );
        assert_eq!(
            split_reasoning(ReasoningFormat::Think, "a < b <thin"),
            (String::new(), "a < b <thin".into())
        );
    }

    fn spec(budget: Option<usize>) -> ReasoningSpec {
        ReasoningFormat::Think.spec(budget).expect("think spec")
    }

    #[test]
    fn a_prompt_that_opens_the_reasoning_is_seen_as_inside_it() {
        let t = ThinkingTracker::new(&spec(None), "<|Assistant|><think>\n").unwrap();
        assert_eq!(t.prompt_opened(), Some("<think>"));
        let closed = ThinkingTracker::new(&spec(None), "<think>\n\n</think>\n\n").unwrap();
        assert_eq!(closed.prompt_opened(), None);
        let plain = ThinkingTracker::new(&spec(None), "<|im_start|>assistant\n").unwrap();
        assert_eq!(plain.prompt_opened(), None);
        assert!(ThinkingTracker::new(&ReasoningSpec::default(), "<think>").is_none());
    }

    #[test]
    fn the_budget_counts_reasoning_tokens_only_and_closes_once() {
        let mut t = ThinkingTracker::new(&spec(Some(3)), "assistant\n").unwrap();
        // Content before any reasoning does not count.
        assert_eq!(t.observe("Hi "), None);
        assert_eq!(t.observe("<th"), None);
        assert_eq!(t.observe("ink>"), None); // the opening token itself counts as the first
        assert_eq!(t.observe(" a"), None);
        assert_eq!(t.observe(" b"), Some("\n</think>\n\n"));
        t.force(vec![7, 8]);
        assert_eq!(t.next_forced(), Some(7));
        // Forced tokens are observed like any other and close the reasoning.
        assert_eq!(t.observe("\n</think>"), None);
        assert_eq!(t.next_forced(), Some(8));
        assert_eq!(t.observe("\n\n"), None);
        assert_eq!(t.next_forced(), None);
        assert_eq!(t.observe(" answer"), None);
    }

    #[test]
    fn reasoning_that_closes_within_the_budget_is_left_alone() {
        let mut t = ThinkingTracker::new(&spec(Some(4)), "<think>\n").unwrap();
        assert_eq!(t.observe("x"), None);
        assert_eq!(t.observe("</think>"), None);
        for _ in 0..10 {
            assert_eq!(t.observe(" y"), None);
        }
    }

    #[test]
    fn detection_and_names() {
        assert_eq!(
            detect_reasoning(Some("{{'<think>\\n'}}")),
            ReasoningFormat::Think
        );
        assert_eq!(
            detect_reasoning(Some("<|channel|>analysis<|message|>")),
            ReasoningFormat::GptOss
        );
        assert_eq!(
            detect_reasoning(Some("<|im_start|>")),
            ReasoningFormat::Disabled
        );
        let f: ReasoningFormat = serde_json::from_str("\"deepseek_r1\"").unwrap_or_default();
        assert_eq!(f, ReasoningFormat::Think);
        assert!(ReasoningSplitter::new(ReasoningFormat::Disabled).is_none());
    }
}
