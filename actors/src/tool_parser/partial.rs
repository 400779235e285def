//! Calls streamed while they are written: what the text so far says about a call's arguments.
//!
//! A scanner that can stream (see `ScannerKind::partial`) looks at the text from its trigger
//! and, once a call is *committed* — its name is known, is one of the request's tools, and its
//! arguments have begun — describes the calls of that markup block with the argument text known
//! so far. The contract that keeps streaming equal to parsing the whole reply: the description
//! only grows as text is appended (a committed call stays committed, its argument text is only
//! extended), and it depends on the text alone, never on how it was chunked. The parser sends
//! the growth as argument fragments.
//!
//! Once committed, a call cannot be taken back, so the end of a block is one of:
//! `Done` (well formed; the markup ends at this offset), `Broken` (malformed from this offset:
//! the calls so far end with the arguments they have, the rest is ordinary text), or still
//! `Open` when the reply ends (cut off: the calls keep the arguments written so far).

use super::json::{minify, scan_prefix, Prefix};
use super::scan::{calls_from_json, skip_ws, valid_name, ScanCtx};

/// One call of a block, as far as it has been written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartialCall {
    pub name: String,
    /// The arguments JSON text so far; complete calls have the whole object.
    pub arguments: String,
    pub complete: bool,
}

/// How far the block is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlockEnd {
    /// More text may extend it.
    Open,
    /// Well formed, taking this many bytes.
    Done(usize),
    /// Malformed from this offset on; what comes before it stays the calls it was.
    Broken(usize),
}

/// A committed block: its calls so far and how far it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Partial {
    pub calls: Vec<PartialCall>,
    pub end: BlockEnd,
}

impl Partial {
    pub fn new(calls: Vec<PartialCall>, end: BlockEnd) -> Self {
        Self { calls, end }
    }
}

/// A JSON call object at `text[pos..]`, streamed.
pub(crate) enum ObjectStep {
    /// Not a committed call (yet): its name or arguments have not begun, or it has another
    /// shape; the ordinary scanner decides.
    NotYet,
    /// A committed call; `end` is where the object ends once it has, `broken` where it went
    /// wrong if it did.
    Call {
        call: PartialCall,
        end: Option<usize>,
        broken: Option<usize>,
    },
}

const NAME_KEYS: &[&str] = &["name", "tool"];
const ARG_KEYS: &[&str] = &["arguments", "parameters", "args", "input"];

/// `{"name": "NAME", "arguments": {…` — the one shape streamed from JSON: the name must come
/// first (a call whose name comes after its arguments is sent once whole, by the scanner).
pub(crate) fn json_call_at(text: &str, pos: usize, ctx: &ScanCtx) -> ObjectStep {
    let Some(args_at) = committed_head(text, pos, ctx) else {
        return ObjectStep::NotYet;
    };
    let (name, args_at) = args_at;
    let (arguments, args_end, broken) = json_arguments(text, args_at);
    let mut end = None;
    let mut broken = broken;
    if let Some(args_end) = args_end {
        // The arguments are whole; the object around them must close too.
        match scan_prefix(&text[pos..]) {
            (Prefix::Complete(n), _) => end = Some(pos + n),
            (Prefix::Incomplete, _) => {}
            (Prefix::Invalid, _) => broken = Some(args_end),
        }
    }
    ObjectStep::Call {
        call: PartialCall {
            name,
            arguments,
            complete: args_end.is_some(),
        },
        end,
        broken,
    }
}

/// The argument object starting at `text[at]` (`{`): its minified text so far, where it ends
/// once complete, and where it went wrong if it did.
pub(crate) fn json_arguments(text: &str, at: usize) -> (String, Option<usize>, Option<usize>) {
    match scan_prefix(&text[at..]) {
        (Prefix::Complete(n), _) => (minify(&text[at..at + n]), Some(at + n), None),
        (Prefix::Incomplete, _) => (minify(&text[at..]), None, None),
        (Prefix::Invalid, bad) => {
            let bad = floor_char(text, at + bad);
            (minify(&text[at..bad]), None, Some(bad))
        }
    }
}

/// The name and the offset of the arguments' `{`, when the object's head is complete.
fn committed_head(text: &str, pos: usize, ctx: &ScanCtx) -> Option<(String, usize)> {
    let b = text.as_bytes();
    if b.get(pos) != Some(&b'{') {
        return None;
    }
    let (key, p) = json_string(text, skip_ws(text, pos + 1))?;
    if !NAME_KEYS.contains(&key.as_str()) {
        return None;
    }
    let p = colon(text, p)?;
    let (name, p) = json_string(text, p)?;
    if !valid_name(&name) || !(ctx.allow_unknown || ctx.tools.contains(&name)) {
        return None;
    }
    let p = skip_ws(text, p);
    if b.get(p) != Some(&b',') {
        return None;
    }
    let (key, p) = json_string(text, skip_ws(text, p + 1))?;
    if !ARG_KEYS.contains(&key.as_str()) {
        return None;
    }
    let p = colon(text, p)?;
    (b.get(p) == Some(&b'{')).then_some((name, p))
}

/// A complete JSON string at `text[pos..]`: its value and the offset after it.
fn json_string(text: &str, pos: usize) -> Option<(String, usize)> {
    if text.as_bytes().get(pos) != Some(&b'"') {
        return None;
    }
    match scan_prefix(&text[pos..]) {
        (Prefix::Complete(n), _) => {
            let s = serde_json::from_str(&text[pos..pos + n]).ok()?;
            Some((s, pos + n))
        }
        _ => None,
    }
}

fn colon(text: &str, pos: usize) -> Option<usize> {
    let p = skip_ws(text, pos);
    (text.as_bytes().get(p) == Some(&b':')).then(|| skip_ws(text, p + 1))
}

/// A later object of a committed block that is not streamable: taken whole once complete.
pub(crate) enum Whole {
    Calls(Vec<PartialCall>, usize),
    Wait,
    Bad,
}

pub(crate) fn whole_object_at(text: &str, pos: usize, ctx: &ScanCtx, require_args: bool) -> Whole {
    match scan_prefix(&text[pos..]) {
        (Prefix::Complete(n), _) => match calls_from_json(&text[pos..pos + n], require_args) {
            Some(calls) if ctx.accepts(&calls) => Whole::Calls(
                calls
                    .into_iter()
                    .map(|c| PartialCall {
                        name: c.name,
                        arguments: c.arguments,
                        complete: true,
                    })
                    .collect(),
                pos + n,
            ),
            _ => Whole::Bad,
        },
        (Prefix::Incomplete, _) if !ctx.eof => Whole::Wait,
        _ => Whole::Bad,
    }
}

/// The JSON string body (no quotes) for raw text: escaping is per character, so the body of a
/// prefix is a prefix of the body of the whole.
pub(crate) fn string_body(raw: &str) -> String {
    let quoted = serde_json::Value::String(raw.to_string()).to_string();
    quoted[1..quoted.len() - 1].to_string()
}

pub(crate) fn floor_char(text: &str, mut at: usize) -> usize {
    at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}
