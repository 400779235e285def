//! Kimi-K2: `<|tool_calls_section_begin|><|tool_call_begin|>functions.NAME:0
//! <|tool_call_argument_begin|>{…}<|tool_call_end|>…<|tool_calls_section_end|>`.
//!
//! The call id `functions.NAME:IDX` carries the name; the arguments are a JSON object, streamed
//! as they are written. The section markers are optional (some outputs start at the call).

use crate::tool_parser::partial::{json_arguments, BlockEnd, Partial, PartialCall};
use crate::tool_parser::scan::{lit, skip_ws, valid_name, Lit, Scan, ScanCtx};

pub(crate) const SECTION_BEGIN: &str = "<|tool_calls_section_begin|>";
const SECTION_END: &str = "<|tool_calls_section_end|>";
pub(crate) const CALL_BEGIN: &str = "<|tool_call_begin|>";
const ARG_BEGIN: &str = "<|tool_call_argument_begin|>";
const CALL_END: &str = "<|tool_call_end|>";

enum Head {
    Incomplete,
    Bad,
    /// The name, whether it is offered, and where the arguments' `{` is.
    Call(String, bool, usize),
}

/// The head of the call at `pos` (which starts with `CALL_BEGIN`).
fn head(text: &str, pos: usize, ctx: &ScanCtx) -> Head {
    let p = pos + CALL_BEGIN.len();
    let Some(i) = text[p..].find(ARG_BEGIN) else {
        // An id is short and has no markup; longer text is not a head. Whitespace may come
        // before it (`<|tool_call_begin|>\nfunctions.f:0`).
        let rest = text[p..].trim_start();
        let other_marker = rest
            .find("<|")
            .is_some_and(|j| !ARG_BEGIN.starts_with(&rest[j..]));
        return if rest.len() > 300 || rest.contains('\n') || other_marker {
            Head::Bad
        } else {
            Head::Incomplete
        };
    };
    let id = text[p..p + i].trim();
    let id = id.strip_prefix("functions.").unwrap_or(id);
    let name = match id.rsplit_once(':') {
        Some((n, idx)) if idx.chars().all(|c| c.is_ascii_digit()) => n,
        _ => id,
    };
    if !valid_name(name) {
        return Head::Bad;
    }
    let a = skip_ws(text, p + i + ARG_BEGIN.len());
    match text.as_bytes().get(a) {
        None => Head::Incomplete,
        Some(b'{') => Head::Call(
            name.to_string(),
            ctx.allow_unknown || ctx.tools.contains(name),
            a,
        ),
        Some(_) => Head::Bad,
    }
}

pub(crate) fn scan(text: &str, ctx: &ScanCtx) -> Scan {
    let start = if text.starts_with(SECTION_BEGIN) {
        skip_ws(text, SECTION_BEGIN.len())
    } else {
        0
    };
    let fail = Scan::Failed {
        skip: if start > 0 {
            SECTION_BEGIN.len()
        } else {
            CALL_BEGIN.len()
        },
    };
    match lit(text, start, CALL_BEGIN) {
        Lit::Match(_) => {}
        Lit::Partial => return ctx.more_or(fail),
        Lit::No => return fail,
    }
    // Committed calls are `partial`'s; what reaches here is not (yet) one.
    match head(text, start, ctx) {
        Head::Incomplete => ctx.more_or(fail),
        _ => fail,
    }
}

pub(crate) fn partial(text: &str, ctx: &ScanCtx) -> Option<Partial> {
    let sectioned = text.starts_with(SECTION_BEGIN);
    let mut pos = if sectioned { SECTION_BEGIN.len() } else { 0 };
    let mut calls: Vec<PartialCall> = Vec::new();
    let mut last_end = pos;
    loop {
        pos = skip_ws(text, pos);
        let done = |calls, at| Some(Partial::new(calls, BlockEnd::Done(at)));
        if !calls.is_empty() {
            if sectioned {
                match lit(text, pos, SECTION_END) {
                    Lit::Match(len) => return done(calls, len),
                    Lit::Partial if ctx.eof => return done(calls, text.len()),
                    Lit::Partial => return Some(Partial::new(calls, BlockEnd::Open)),
                    Lit::No => {}
                }
            }
            match lit(text, pos, CALL_BEGIN) {
                Lit::Match(_) => {}
                Lit::Partial if ctx.eof => return done(calls, text.len()),
                Lit::Partial => return Some(Partial::new(calls, BlockEnd::Open)),
                Lit::No if sectioned => return Some(Partial::new(calls, BlockEnd::Broken(pos))),
                Lit::No => return done(calls, last_end),
            }
        } else if lit(text, pos, CALL_BEGIN) != Lit::Match(pos + CALL_BEGIN.len()) {
            return None;
        }
        let (name, args_at) = match head(text, pos, ctx) {
            Head::Call(name, true, at) => (name, at),
            _ if calls.is_empty() => return None,
            Head::Incomplete => return Some(Partial::new(calls, BlockEnd::Open)),
            _ => return Some(Partial::new(calls, BlockEnd::Broken(pos))),
        };
        let (arguments, end, broken) = json_arguments(text, args_at);
        calls.push(PartialCall {
            name,
            arguments,
            complete: end.is_some(),
        });
        if let Some(at) = broken {
            return Some(Partial::new(calls, BlockEnd::Broken(at)));
        }
        let Some(end) = end else {
            return Some(Partial::new(calls, BlockEnd::Open));
        };
        let after = skip_ws(text, end);
        pos = match lit(text, after, CALL_END) {
            Lit::Match(p) => p,
            Lit::Partial if ctx.eof => {
                return Some(Partial::new(calls, BlockEnd::Done(text.len())))
            }
            Lit::Partial => return Some(Partial::new(calls, BlockEnd::Open)),
            Lit::No => return Some(Partial::new(calls, BlockEnd::Broken(after))),
        };
        last_end = pos;
    }
}

#[cfg(test)]
mod tests {
    use crate::tool_parser::testutil::{calls, parse_with};
    use crate::tool_parser::ToolFormat;

    #[test]
    fn kimi_k2_section_with_two_calls_and_prose_before() {
        let text = "Let me check.<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>{\"city\": \"Beijing\"}<|tool_call_end|><|tool_call_begin|>functions.get_time:1<|tool_call_argument_begin|>{}<|tool_call_end|><|tool_calls_section_end|>";
        let out = parse_with(ToolFormat::KimiK2, text);
        assert_eq!(
            calls(&out),
            [("get_weather", r#"{"city":"Beijing"}"#), ("get_time", "{}")]
        );
        assert_eq!(out.content, "Let me check.");
    }

    #[test]
    fn kimi_k2_unknown_function_stays_content() {
        let text = "<|tool_calls_section_begin|><|tool_call_begin|>functions.rm:0<|tool_call_argument_begin|>{}<|tool_call_end|><|tool_calls_section_end|>";
        let out = parse_with(ToolFormat::KimiK2, text);
        assert!(out.tool_calls.is_empty());
        assert_eq!(out.content, text);
    }

    #[test]
    fn kimi_k2_call_without_section_and_cut_off() {
        let out = parse_with(
            ToolFormat::KimiK2,
            "<|tool_call_begin|>functions.run_code:0 <|tool_call_argument_begin|> {\"code\": \"x = 1\\ny",
        );
        assert_eq!(calls(&out), [("run_code", r#"{"code":"x = 1\ny"#)]);
    }
}
