//! Incremental detokenization: turning a stream of token ids into a stream of final text.
//!
//! Decoding one token at a time is wrong for two reasons: a character can span several tokens
//! (byte-level BPE and SentencePiece byte fallback split an emoji into up to four byte tokens),
//! and a token's text depends on its left neighbour (SentencePiece drops the `▁` space of the
//! first token of a decode). Decoding the whole output on each step is right but O(n) per token.
//!
//! The decoder keeps a short window: `tokens[..read]` is text already emitted, and
//! `tokens[..]` is that plus the pending tokens. Each step decodes both and emits the
//! difference, unless the result ends in U+FFFD (a character still incomplete), in which case it
//! waits for more tokens. After emitting, the window slides so that it starts at the first token
//! just emitted: the window keeps enough left context for spaces to come out right and stays a
//! few tokens long, so each step costs O(1).

use std::sync::Arc;

/// Why a decode failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("detokenization failed: {0}")]
pub struct DetokError(pub String);

/// Something that turns token ids into text, skipping special tokens (`<|im_end|>`).
pub trait TokenDecoder {
    /// Text of `ids`, as one decode call (decoders may treat the first token specially).
    fn decode_ids(&self, ids: &[u32]) -> Result<String, DetokError>;
}

impl TokenDecoder for tokenizers::Tokenizer {
    fn decode_ids(&self, ids: &[u32]) -> Result<String, DetokError> {
        self.decode(ids, true)
            .map_err(|e| DetokError(e.to_string()))
    }
}

impl<T: TokenDecoder + ?Sized> TokenDecoder for Arc<T> {
    fn decode_ids(&self, ids: &[u32]) -> Result<String, DetokError> {
        (**self).decode_ids(ids)
    }
}

impl<T: TokenDecoder + ?Sized> TokenDecoder for &T {
    fn decode_ids(&self, ids: &[u32]) -> Result<String, DetokError> {
        (**self).decode_ids(ids)
    }
}

/// Streams the text of one sequence's generated tokens.
#[derive(Debug, Clone)]
pub struct IncrementalDecoder<D> {
    decoder: D,
    /// The window: already emitted context, then pending tokens.
    tokens: Vec<u32>,
    /// `tokens[..read]` has been emitted.
    read: usize,
    /// Cached decode of `tokens[..read]`.
    prefix_text: String,
}

impl<D: TokenDecoder> IncrementalDecoder<D> {
    /// A decoder for a new sequence; pass `Arc<Tokenizer>` or `&Tokenizer`.
    pub fn new(decoder: D) -> Self {
        Self {
            decoder,
            tokens: Vec::new(),
            read: 0,
            prefix_text: String::new(),
        }
    }

    /// Adds one token; returns the text that became final, if any.
    pub fn push(&mut self, token: u32) -> Result<Option<String>, DetokError> {
        self.tokens.push(token);
        let text = self.decoder.decode_ids(&self.tokens)?;
        if text.len() <= self.prefix_text.len() || text.ends_with('\u{FFFD}') {
            return Ok(None);
        }
        let Some(new) = text
            .strip_prefix(self.prefix_text.as_str())
            .map(str::to_owned)
        else {
            // The decoder rewrote already emitted text (rare normalizations); emitted text
            // cannot be taken back, so wait until the window agrees with it again.
            return Ok(None);
        };
        // Slide: the tokens just emitted become the left context of the next step.
        self.tokens.drain(..self.read);
        self.read = self.tokens.len();
        self.prefix_text = self.decoder.decode_ids(&self.tokens)?;
        Ok(Some(new))
    }

    /// Returns whatever is still pending (an incomplete character comes out as U+FFFD, as a
    /// full decode would show it) and resets the decoder.
    pub fn finish(&mut self) -> Result<String, DetokError> {
        let text = self.decoder.decode_ids(&self.tokens)?;
        let rest = match text.strip_prefix(self.prefix_text.as_str()) {
            Some(rest) => rest.to_owned(),
            None => {
                let common = text
                    .char_indices()
                    .zip(self.prefix_text.chars())
                    .find(|((_, a), b)| a != b)
                    .map_or(text.len().min(self.prefix_text.len()), |((i, _), _)| i);
                text[common..].to_owned()
            }
        };
        self.tokens.clear();
        self.read = 0;
        self.prefix_text.clear();
        Ok(rest)
    }

    /// Tokens held in the window (emitted context plus pending); stays small.
    pub fn window_len(&self) -> usize {
        self.tokens.len()
    }
}

#[cfg(test)]
mod tests;
