//! MiniMax-M2: `<minimax:tool_call>\n<invoke name="NAME">\n<parameter name="K">V</parameter>\n
//! </invoke>\n…</minimax:tool_call>`, several invokes per block.
//!
//! Values are raw text typed by the tool's schema; each call's object streams parameter by
//! parameter (string values as they are written).

use super::xml_args::{value_until, ArgsBuilder};
use crate::tool_parser::partial::{BlockEnd, Partial, PartialCall};
use crate::tool_parser::scan::{lit, skip_ws, valid_name, Lit, Scan, ScanCtx};

pub(crate) const OPEN: &str = "<minimax:tool_call>";
const CLOSE: &str = "</minimax:tool_call>";
const INVOKE: &str = "<invoke name=";
const INVOKE_END: &str = "</invoke>";
const PARAM: &str = "<parameter name=";
const PARAM_END: &str = "</parameter>";

/// `="NAME">` after `INVOKE` / `PARAM` at `pos`: the unquoted name and the offset after `>`.
fn attr(text: &str, pos: usize) -> Result<(&str, usize), bool> {
    let Some(gt) = text[pos..].find('>') else {
        // Still arriving, unless it is clearly not a short attribute.
        return Err(text.len() - pos > 300 || text[pos..].contains('\n'));
    };
    let name = text[pos..pos + gt].trim().trim_matches(['"', '\'']);
    if valid_name(name) {
        Ok((name, pos + gt + 1))
    } else {
        Err(true)
    }
}

pub(crate) fn scan(text: &str, ctx: &ScanCtx) -> Scan {
    let fail = Scan::Failed { skip: OPEN.len() };
    let pos = skip_ws(text, OPEN.len());
    match lit(text, pos, INVOKE) {
        Lit::Match(p) => match attr(text, p) {
            Err(false) => ctx.more_or(fail),
            // Offered names are committed by `partial`.
            _ => fail,
        },
        Lit::Partial => ctx.more_or(fail),
        Lit::No => fail,
    }
}

pub(crate) fn partial(text: &str, ctx: &ScanCtx) -> Option<Partial> {
    let mut pos = skip_ws(text, OPEN.len());
    let mut calls: Vec<PartialCall> = Vec::new();
    loop {
        pos = skip_ws(text, pos);
        if !calls.is_empty() {
            match lit(text, pos, CLOSE) {
                Lit::Match(len) => return Some(Partial::new(calls, BlockEnd::Done(len))),
                Lit::Partial if ctx.eof => {
                    return Some(Partial::new(calls, BlockEnd::Done(text.len())))
                }
                _ => {}
            }
        }
        let p = match lit(text, pos, INVOKE) {
            Lit::Match(p) => p,
            _ if calls.is_empty() => return None,
            Lit::Partial => return Some(Partial::new(calls, BlockEnd::Open)),
            Lit::No if lit(text, pos, CLOSE) == Lit::Partial => {
                return Some(Partial::new(calls, BlockEnd::Open))
            }
            Lit::No => return Some(Partial::new(calls, BlockEnd::Broken(pos))),
        };
        let (name, after) = match attr(text, p) {
            Ok((n, a)) if ctx.allow_unknown || ctx.tools.contains(n) => (n, a),
            _ if calls.is_empty() => return None,
            Err(false) => return Some(Partial::new(calls, BlockEnd::Open)),
            _ => return Some(Partial::new(calls, BlockEnd::Broken(pos))),
        };
        let (arguments, end) = invoke_args(text, after, name, ctx);
        let complete = matches!(end, BlockEnd::Done(_));
        calls.push(PartialCall {
            name: name.to_string(),
            arguments,
            complete,
        });
        match end {
            BlockEnd::Done(e) => pos = e,
            other => return Some(Partial::new(calls, other)),
        }
    }
}

/// The parameters of one invoke: its arguments so far and where it ended (`Done` after
/// `</invoke>`), is still open, or broke.
fn invoke_args(text: &str, mut pos: usize, name: &str, ctx: &ScanCtx) -> (String, BlockEnd) {
    let mut args = ArgsBuilder::new(ctx.tools, name);
    loop {
        pos = skip_ws(text, pos);
        if let Lit::Match(p) = lit(text, pos, INVOKE_END) {
            return (args.finish(), BlockEnd::Done(p));
        }
        let tag = pos;
        let p = match lit(text, pos, PARAM) {
            Lit::Match(p) => p,
            Lit::Partial => return (args.so_far(), BlockEnd::Open),
            Lit::No if lit(text, pos, INVOKE_END) == Lit::Partial => {
                return (args.so_far(), BlockEnd::Open)
            }
            Lit::No => return (args.so_far(), BlockEnd::Broken(tag)),
        };
        let (key, value_at) = match attr(text, p) {
            Ok(k) => k,
            Err(false) => return (args.so_far(), BlockEnd::Open),
            Err(true) => return (args.so_far(), BlockEnd::Broken(tag)),
        };
        match value_until(text, value_at, PARAM_END) {
            Ok(end) => {
                args.complete(key, &text[value_at..end]);
                pos = end + PARAM_END.len();
            }
            Err(safe) => return (args.in_progress(key, &text[value_at..safe]), BlockEnd::Open),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::tool_parser::testutil::{calls, parse_with};
    use crate::tool_parser::ToolFormat;

    #[test]
    fn minimax_block_with_two_invokes_typed_values() {
        let text = "Checking.\n<minimax:tool_call>\n<invoke name=\"get_weather\">\n<parameter name=\"city\">San Francisco</parameter>\n<parameter name=\"metric\">true</parameter>\n</invoke>\n<invoke name=\"get_time\">\n</invoke>\n</minimax:tool_call>";
        let out = parse_with(ToolFormat::MinimaxM2, text);
        assert_eq!(
            calls(&out),
            [
                ("get_weather", r#"{"city":"San Francisco","metric":true}"#),
                ("get_time", "{}")
            ]
        );
        assert_eq!(out.content, "Checking.");
    }

    #[test]
    fn minimax_unknown_invoke_is_content() {
        let text = "<minimax:tool_call><invoke name=\"nope\"></invoke></minimax:tool_call>";
        let out = parse_with(ToolFormat::MinimaxM2, text);
        assert!(out.tool_calls.is_empty());
        assert_eq!(out.content, text);
    }
}
