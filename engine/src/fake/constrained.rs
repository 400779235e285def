//! What the fake writes under a constraint: text its grammar accepts, decided byte by byte.

use std::collections::VecDeque;
use std::sync::OnceLock;

use crate::engine::{Constraint, EngineError};
use crate::guided::{ConstraintError, GuideFactory};

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
pub(super) fn pieces(text: &str) -> VecDeque<String> {
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
