//! DeepSeek V3 and V3.1 tool-call markers.
//!
//! V3: `<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n```json\n{…}\n```
//! <｜tool▁call▁end｜>…<｜tool▁calls▁end｜>`. V3.1 drops the type and the fence:
//! `<｜tool▁call▁begin｜>NAME<｜tool▁sep｜>{…}<｜tool▁call▁end｜>`. Complete calls at the very end of
//! the text are kept even when the closing `tool▁calls▁end` never came.

use crate::tool_parser::scan::{
    json_at, lit, object_arguments, skip_ws, Lit, RawCall, Scan, ScanCtx,
};

pub(crate) const CALLS_BEGIN: &str = "<\u{ff5c}tool\u{2581}calls\u{2581}begin\u{ff5c}>";
const CALLS_END: &str = "<\u{ff5c}tool\u{2581}calls\u{2581}end\u{ff5c}>";
const CALL_BEGIN: &str = "<\u{ff5c}tool\u{2581}call\u{2581}begin\u{ff5c}>";
const CALL_END: &str = "<\u{ff5c}tool\u{2581}call\u{2581}end\u{ff5c}>";
const SEP: &str = "<\u{ff5c}tool\u{2581}sep\u{ff5c}>";

pub(crate) fn scan(text: &str, ctx: &ScanCtx) -> Scan {
    let fail = Scan::Failed {
        skip: CALLS_BEGIN.len(),
    };
    let mut pos = CALLS_BEGIN.len();
    let mut calls = Vec::new();
    loop {
        pos = skip_ws(text, pos);
        let at_end = |calls: Vec<RawCall>, pos: usize| {
            if ctx.eof && !calls.is_empty() {
                ctx.verdict(calls, text.len().max(pos))
            } else {
                ctx.more_or(fail.clone())
            }
        };
        match lit(text, pos, CALLS_END) {
            Lit::Match(end) if !calls.is_empty() => return ctx.verdict(calls, end),
            Lit::Match(_) => return fail,
            Lit::Partial => return at_end(calls, pos),
            Lit::No => {}
        }
        match lit(text, pos, CALL_BEGIN) {
            Lit::Match(p) => pos = p,
            Lit::Partial => return at_end(calls, pos),
            Lit::No => return fail,
        }
        let Some(sep) = text[pos..].find(SEP) else {
            return ctx.more_or(fail);
        };
        let head = text[pos..pos + sep].trim().to_string();
        pos = skip_ws(text, pos + sep + SEP.len());
        let name = match text.as_bytes().get(pos) {
            None => return ctx.more_or(fail),
            Some(b'{') => head,
            Some(_) => {
                let Some(nl) = text[pos..].find('\n') else {
                    return ctx.more_or(fail);
                };
                let name = text[pos..pos + nl].trim().to_string();
                pos = skip_ws(text, pos + nl);
                let fence_end = match lit(text, pos, "```") {
                    Lit::Match(p) => p,
                    Lit::Partial => return ctx.more_or(fail),
                    Lit::No => return fail,
                };
                let Some(nl) = text[fence_end..].find('\n') else {
                    return ctx.more_or(fail);
                };
                pos = skip_ws(text, fence_end + nl);
                name
            }
        };
        if name.is_empty() || text.as_bytes().get(pos) != Some(&b'{') {
            // Wait only while nothing follows the name yet.
            return if pos >= text.len() {
                ctx.more_or(fail.clone())
            } else {
                fail.clone()
            };
        }
        let end = match json_at(text, pos, ctx, fail.clone()) {
            Ok(end) => end,
            Err(verdict) => return verdict,
        };
        let Some(arguments) = object_arguments(&text[pos..end]) else {
            return fail;
        };
        pos = skip_ws(text, end);
        match lit(text, pos, "```") {
            Lit::Match(p) => pos = skip_ws(text, p),
            Lit::Partial if pos < text.len() => return ctx.more_or(fail),
            _ => {}
        }
        calls.push(RawCall { name, arguments });
        match lit(text, pos, CALL_END) {
            Lit::Match(p) => pos = p,
            Lit::Partial => return at_end(calls, pos),
            Lit::No => return fail,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tool_parser::testutil::{calls, parse_with};
    use crate::tool_parser::ToolFormat;

    fn v3_call(name: &str, json: &str) -> String {
        format!("{CALL_BEGIN}function{SEP}{name}\n```json\n{json}\n```{CALL_END}")
    }

    #[test]
    fn deepseek_v3_parallel_calls() {
        let text = format!(
            "Let me see.{CALLS_BEGIN}{}\n{}{CALLS_END}",
            v3_call("get_weather", "{\"city\": \"東京\"}"),
            v3_call("get_time", "{}")
        );
        let out = parse_with(ToolFormat::DeepseekV3, &text);
        assert_eq!(
            calls(&out),
            [("get_weather", r#"{"city":"東京"}"#), ("get_time", "{}")]
        );
        assert_eq!(out.content, "Let me see.");
    }

    #[test]
    fn deepseek_v31_form_without_fence() {
        let text = format!(
            "{CALLS_BEGIN}{CALL_BEGIN}get_weather{SEP}{{\"city\": \"Lima\"}}{CALL_END}{CALLS_END}"
        );
        let out = parse_with(ToolFormat::DeepseekV3, &text);
        assert_eq!(calls(&out), [("get_weather", r#"{"city":"Lima"}"#)]);
    }

    #[test]
    fn deepseek_truncated_call_is_content() {
        let text =
            format!("{CALLS_BEGIN}{CALL_BEGIN}function{SEP}get_weather\n```json\n{{\"city\"");
        let out = parse_with(ToolFormat::DeepseekV3, &text);
        assert!(out.tool_calls.is_empty());
        assert_eq!(out.content, text);
    }
}
