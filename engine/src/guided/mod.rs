//! Constrained decoding: a request's [`Constraint`] (JSON Schema, regex, Lark) compiled by
//! llguidance into a per-sequence matcher that masks the logits before each token is sampled.
//!
//! - [`GuideFactory`]: built once per model from the bytes of every token of its vocabulary
//!   (the token trie llguidance walks) and its end-of-sequence tokens; turns a constraint into
//!   a [`Guide`].
//! - [`Guide`]: one sequence's matcher. Per step: [`Guide::mask`] the logits row (disallowed
//!   tokens become `-inf`), sample, then [`Guide::advance`] with the token; once the grammar is
//!   complete only end-of-sequence remains and the engine ends the sequence.
//! - [`check`]: compiles a constraint against a byte-level vocabulary so the HTTP front can
//!   reject a bad schema (400) before anything is queued, without the model.
//! - [`vocab_bytes`]: the bytes of every token of a `tokenizers::Tokenizer`.
//!
//! JSON is generated compactly with Python's separators (`", "` and `": "`) and no free
//! whitespace, unless the schema carries its own `x-guidance` options: a small model allowed
//! arbitrary whitespace can spend its whole budget on newlines.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use llguidance::api::TopLevelGrammar;
use llguidance::{JsonCompileOptions, Matcher, ParserFactory};
use serde_json::{json, Value};
use tokenizers::Tokenizer;
use toktrie::{ApproximateTokEnv, SimpleVob, TokEnv, TokRxInfo, TokTrie};

use crate::engine::Constraint;

/// A constraint that cannot be compiled or enforced; the message names what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConstraintError(pub String);

fn err(e: impl std::fmt::Display) -> ConstraintError {
    ConstraintError(e.to_string())
}

/// The llguidance grammar for a constraint; `special` gives the id of a special token by its
/// text (markers of [`Constraint::ToolMarkup`]).
fn grammar(constraint: &Constraint, special: &dyn Fn(&str) -> Option<u32>) -> TopLevelGrammar {
    match constraint {
        Constraint::ToolMarkup { lark, markers } => {
            TopLevelGrammar::from_lark(markup_lark(lark, markers, special))
        }
        Constraint::JsonSchema(schema) => TopLevelGrammar::from_json_schema(with_layout(schema)),
        Constraint::JsonObject => {
            TopLevelGrammar::from_json_schema(with_layout(&json!({"type": "object"})))
        }
        Constraint::Regex(rx) => TopLevelGrammar::from_regex(rx),
        Constraint::Lark(lark) => TopLevelGrammar::from_lark(lark.clone()),
    }
}

/// `lark` with the marker rules it refers to defined for one vocabulary: `mkI`; `tillI` (text up
/// to and including the first marker `I`), `tillI_J…` (the same, with no marker `J…` in the
/// text either); `freeI` and `prose_I_J…` (text with none of the listed markers).
fn markup_lark(lark: &str, markers: &[String], special: &dyn Fn(&str) -> Option<u32>) -> String {
    let used: std::collections::BTreeSet<&str> = lark
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .collect();
    let mut out = lark.trim_end().to_owned();
    out.push('\n');
    let ids: Vec<Option<u32>> = markers.iter().map(|m| special(m)).collect();
    for (i, text) in markers.iter().enumerate() {
        let atom = match ids[i] {
            Some(id) => format!("<[{id}]>"),
            None => quoted(text),
        };
        out.push_str(&format!("mk{i}: {atom}\n"));
    }
    // Text without the markers `list` (a special token is never part of text anyway).
    let text_without = |list: &[usize]| {
        let alts: Vec<String> = list.iter().map(|&j| regex_escape(&markers[j])).collect();
        format!("/(?s:.*)/ & ~/(?s:.*({}).*)/", alts.join("|"))
    };
    let indexes = |rest: &str| -> Option<Vec<usize>> {
        let list: Option<Vec<usize>> = rest.split('_').map(|n| n.parse().ok()).collect();
        list.filter(|l| !l.is_empty() && l.iter().all(|&j| j < markers.len()))
    };
    for (n, name) in used.iter().enumerate() {
        if let Some(list) = name.strip_prefix("free").and_then(indexes) {
            out.push_str(&format!(
                "{name}: FREEX{n}\nFREEX{n}: {}\n",
                text_without(&list)
            ));
        } else if let Some(list) = name.strip_prefix("prose_").and_then(indexes) {
            out.push_str(&format!(
                "{name}: FREEX{n}\nFREEX{n}: {}\n",
                text_without(&list)
            ));
        } else if let Some(list) = name.strip_prefix("till").and_then(indexes) {
            let i = list[0];
            match ids[i] {
                // The text just ends where the model samples the special token.
                Some(_) => out.push_str(&format!(
                    "{name}: FREEX{n} mk{i}\nFREEX{n}: {}\n",
                    text_without(&list)
                )),
                // A lazy lexeme ends at the marker's first occurrence; where several `till`s
                // are alternatives, the first marker written wins, so no other is in the text.
                None => out.push_str(&format!(
                    "{name}[lazy]: /(?s:.*){}/\n",
                    regex_escape(&markers[i])
                )),
            }
        }
    }
    out
}

/// `text` as a regex matching it literally, inside a Lark `/…/` (so `/` is escaped too).
fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~/".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `text` as a Lark string literal (JSON string syntax).
fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
}

/// The JSON layout options this server generates with (see the module docs).
pub fn json_layout() -> JsonCompileOptions {
    JsonCompileOptions {
        item_separator: ", ".into(),
        key_separator: ": ".into(),
        whitespace_flexible: false,
        ..JsonCompileOptions::default()
    }
}

/// `schema` with [`json_layout`] unless it brings its own `x-guidance` options. Boolean
/// schemas (`true`: anything) are wrapped so the options have an object to live in.
pub fn with_layout(schema: &Value) -> Value {
    let mut schema = match schema {
        Value::Bool(true) => json!({}),
        Value::Bool(false) => json!({"not": {}}),
        other => other.clone(),
    };
    if let Some(obj) = schema.as_object_mut() {
        if !obj.contains_key("x-guidance") {
            json_layout().apply_to(&mut schema);
        }
    }
    schema
}

/// Compiles `constraint` against a byte-level vocabulary: the same grammar errors (invalid
/// schema, unsupported JSON Schema feature, bad regex or Lark) the model's vocabulary would give.
pub fn check(constraint: &Constraint) -> Result<(), ConstraintError> {
    static BYTES: OnceLock<Result<GuideFactory, ConstraintError>> = OnceLock::new();
    let factory = BYTES
        .get_or_init(GuideFactory::byte_level)
        .as_ref()
        .map_err(Clone::clone)?;
    factory.guide(constraint).map(|_| ())
}

/// Compiles constraints for one vocabulary. Cheap to share; building it walks the vocabulary.
pub struct GuideFactory {
    factory: ParserFactory,
    vocab_size: usize,
}

impl std::fmt::Debug for GuideFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuideFactory")
            .field("vocab_size", &self.vocab_size)
            .finish()
    }
}

impl GuideFactory {
    /// A factory for a vocabulary given as the bytes of each token id (special tokens as
    /// `0xFF` followed by their text, tokens that never decode as empty) and the ids that end a
    /// sequence (at least one).
    pub fn new(tokens: &[Vec<u8>], eos: &[u32]) -> Result<Self, ConstraintError> {
        let vocab_size = tokens.len();
        let eos: Vec<u32> = eos
            .iter()
            .copied()
            .filter(|&t| (t as usize) < vocab_size)
            .collect();
        let Some(&first) = eos.first() else {
            return Err(err("constrained decoding needs an end-of-sequence token"));
        };
        let vocab = u32::try_from(vocab_size).map_err(err)?;
        let trie = TokTrie::from(&TokRxInfo::new(vocab, first), tokens).with_eos_tokens(&eos);
        let env: TokEnv = Arc::new(ApproximateTokEnv::new(trie));
        let mut factory = ParserFactory::new_simple(&env).map_err(err)?;
        factory.quiet();
        Ok(Self {
            factory,
            vocab_size,
        })
    }

    /// One token per byte value (ids 0–255) and end-of-sequence as id 256: grammar checks and
    /// the fake engine.
    pub fn byte_level() -> Result<Self, ConstraintError> {
        let mut tokens: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        tokens.push(b"\xFF<|end|>".to_vec());
        Self::new(&tokens, &[256])
    }

    /// Tokens in the vocabulary (the width of the masks).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// A fresh matcher for one sequence; compile errors of the grammar are returned here.
    pub fn guide(&self, constraint: &Constraint) -> Result<Guide, ConstraintError> {
        let trie = self.factory.tok_env().tok_trie();
        let special = |text: &str| trie.get_special_token(text);
        let parser = self.factory.create_parser(grammar(constraint, &special));
        let matcher = Matcher::new(parser);
        if let Some(e) = matcher.get_error() {
            return Err(ConstraintError(e));
        }
        Ok(Guide {
            matcher,
            mask: None,
            consumed: 0,
            last_complete: 0,
            longest_part: 0,
        })
    }
}

/// One sequence's matcher.
pub struct Guide {
    matcher: Matcher,
    /// The last mask computed, until the next token is consumed.
    mask: Option<SimpleVob>,
    /// Tokens consumed so far.
    consumed: usize,
    /// `consumed` when the output was last a complete sentence of the grammar.
    last_complete: usize,
    /// The most tokens between two complete points (from the start for the first).
    longest_part: usize,
}

impl std::fmt::Debug for Guide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guide")
            .field("stopped", &self.matcher.is_stopped())
            .finish()
    }
}

impl Guide {
    /// The tokens the grammar allows next (end-of-sequence among them once it is complete).
    pub fn allowed(&mut self) -> Result<&SimpleVob, ConstraintError> {
        if self.mask.is_none() {
            let mask = self.matcher.compute_mask_or_eos().map_err(err)?;
            if mask.is_zero() {
                return Err(err("the grammar allows no token here"));
            }
            self.mask = Some(mask);
        }
        self.mask
            .as_ref()
            .ok_or_else(|| err("the grammar mask vanished"))
    }

    /// Sets every logit the grammar does not allow to `-inf`. Positions past the vocabulary
    /// (padded embedding rows) are never allowed.
    pub fn mask(&mut self, logits: &mut [f32]) -> Result<(), ConstraintError> {
        apply_mask(self.allowed()?, logits);
        Ok(())
    }

    /// Feeds the sampled token. `Ok(true)` when the grammar is complete: nothing but
    /// end-of-sequence can follow, so the sequence should end.
    pub fn advance(&mut self, token: u32) -> Result<bool, ConstraintError> {
        self.mask = None;
        self.matcher.consume_token(token).map_err(err)?;
        self.consumed += 1;
        if self.is_accepting() {
            self.longest_part = self.longest_part.max(self.consumed - self.last_complete);
            self.last_complete = self.consumed;
        }
        Ok(self.matcher.is_stopped())
    }

    /// Whether a sequence with `budget_left` tokens to go should end here: the output is
    /// complete, and another part as long as the longest so far (half as much again, for
    /// margin) would not fit. Without it a grammar that allows more (another parallel tool
    /// call) lets a small model start one that `max_tokens` cuts in half.
    pub fn ends_within(&mut self, budget_left: usize) -> bool {
        // Parts of a token or three (prose, where every token completes a sentence) would fit
        // or lose a token or two: only longer ones (a call) end a reply early.
        const MIN_PART: usize = 4;
        self.longest_part >= MIN_PART
            && self.last_complete == self.consumed
            && budget_left < self.longest_part + self.longest_part / 2
    }

    /// Whether the output so far is a complete sentence of the grammar.
    pub fn is_accepting(&mut self) -> bool {
        self.matcher.is_accepting().unwrap_or(false)
    }
}

/// `logits[i] = -inf` for every token `i` not in `allowed`, 32 tokens per mask word.
pub fn apply_mask(allowed: &SimpleVob, logits: &mut [f32]) {
    let n = allowed.len().min(logits.len());
    let (inside, past) = logits.split_at_mut(n);
    let words = allowed.as_slice();
    for (i, chunk) in inside.chunks_mut(32).enumerate() {
        let word = words.get(i).copied().unwrap_or(0);
        if word == u32::MAX {
            continue;
        }
        for (bit, logit) in chunk.iter_mut().enumerate() {
            if (word >> bit) & 1 == 0 {
                *logit = f32::NEG_INFINITY;
            }
        }
    }
    past.fill(f32::NEG_INFINITY);
}

/// GPT-2's byte-to-character table inverted: the byte each character of a byte-level BPE
/// token stands for. Printable Latin-1 bytes stand for themselves; the other 68 bytes were
/// moved to U+0100 onwards, in byte order.
fn byte_level_table() -> HashMap<char, u8> {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut table = HashMap::with_capacity(256);
    let mut shifted = 0x100u32;
    for b in 0..=255u8 {
        let c = if printable(b) {
            char::from(b)
        } else {
            let c = char::from_u32(shifted).unwrap_or('\u{FFFD}');
            shifted += 1;
            c
        };
        table.insert(c, b);
    }
    table
}

/// How a tokenizer spells bytes in its vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spelling {
    /// GPT-2 byte-level BPE: each character is one byte (see [`byte_level_table`]).
    ByteLevel,
    /// SentencePiece style: `▁` is a space, `<0xNN>` a raw byte, the rest UTF-8.
    Metaspace,
}

fn spelling(tokenizer: &Tokenizer) -> Result<Spelling, ConstraintError> {
    let decoder = serde_json::to_value(tokenizer.get_decoder()).map_err(err)?;
    let kinds: Vec<&str> = match decoder["type"].as_str() {
        Some("Sequence") => decoder["decoders"]
            .as_array()
            .map(|d| d.iter().filter_map(|d| d["type"].as_str()).collect())
            .unwrap_or_default(),
        Some(kind) => vec![kind],
        None => Vec::new(),
    };
    if kinds.contains(&"ByteLevel") {
        Ok(Spelling::ByteLevel)
    } else if kinds.contains(&"ByteFallback") || kinds.contains(&"Metaspace") {
        Ok(Spelling::Metaspace)
    } else {
        Err(err(format!(
            "constrained decoding does not know this tokenizer's decoder ({kinds:?})"
        )))
    }
}

/// The bytes of token ids `0..vocab_size` (at least the tokenizer's vocabulary): special
/// tokens as `0xFF` + text, added plain tokens (Qwen's `<tool_call>`) as their text, ids the
/// tokenizer does not know (padded embedding rows) as empty, never produced.
pub fn vocab_bytes(
    tokenizer: &Tokenizer,
    vocab_size: usize,
) -> Result<Vec<Vec<u8>>, ConstraintError> {
    let spelling = spelling(tokenizer)?;
    let table = byte_level_table();
    let vocab = tokenizer.get_vocab(true);
    let size = vocab
        .values()
        .map(|&id| id as usize + 1)
        .max()
        .unwrap_or(0)
        .max(vocab_size);
    let mut bytes = vec![Vec::new(); size];
    let added = tokenizer.get_added_tokens_decoder();
    for (text, &id) in &vocab {
        let slot = &mut bytes[id as usize];
        if let Some(token) = added.get(&id) {
            if token.special {
                slot.push(TokTrie::SPECIAL_TOKEN_MARKER);
            }
            slot.extend_from_slice(token.content.as_bytes());
            continue;
        }
        *slot = match spelling {
            Spelling::ByteLevel => text
                .chars()
                .flat_map(|c| match table.get(&c) {
                    Some(&b) => vec![b],
                    None => c.to_string().into_bytes(),
                })
                .collect(),
            Spelling::Metaspace => match byte_token(text) {
                Some(b) => vec![b],
                None => text.replace('\u{2581}', " ").into_bytes(),
            },
        };
    }
    Ok(bytes)
}

/// `<0xNN>` → the byte `NN`.
fn byte_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    (hex.len() == 2)
        .then(|| u8::from_str_radix(hex, 16).ok())
        .flatten()
}

#[cfg(test)]
mod tests;
