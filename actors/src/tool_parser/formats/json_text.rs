//! JSON calls written as plain text: a bare object or array anywhere in the reply, the same in
//! a ``` code fence, and the seeds' `NAME({…})`.
//!
//! Because these have no markup of their own, a candidate is held only while it can still be
//! JSON (prose with a stray `{` or a fence holding code is released at the first character that
//! rules it out), must carry its arguments, and must name an offered tool.

use crate::tool_parser::json::{scan_value, Prefix};
use crate::tool_parser::partial::{json_call_at, BlockEnd, ObjectStep, Partial};
use crate::tool_parser::scan::{
    calls_from_json, json_at, lit, object_arguments, skip_ws, Lit, RawCall, Scan, ScanCtx,
};

const FENCE: &str = "```";

pub(crate) fn scan(text: &str, ctx: &ScanCtx) -> Scan {
    if text.starts_with(FENCE) {
        return scan_fence(text, ctx);
    }
    match scan_value(text) {
        Prefix::Complete(end) => match calls_from_json(&text[..end], true) {
            Some(calls) => ctx.verdict(calls, end),
            None => Scan::NotCall { skip: end },
        },
        Prefix::Incomplete => ctx.more_or(Scan::NotCall { skip: 1 }),
        Prefix::Invalid => Scan::NotCall { skip: 1 },
    }
}

/// A bare or fenced call object streamed once committed (arrays are taken whole).
pub(crate) fn partial(text: &str, ctx: &ScanCtx) -> Option<Partial> {
    let fenced = text.starts_with(FENCE);
    let at = if fenced { fence_body(text)? } else { 0 };
    let ObjectStep::Call { call, end, broken } = json_call_at(text, at, ctx) else {
        return None;
    };
    let end = match (broken, end) {
        (Some(at), _) => BlockEnd::Broken(at),
        (None, None) => BlockEnd::Open,
        (None, Some(e)) if !fenced => BlockEnd::Done(e),
        (None, Some(e)) => match lit(text, skip_ws(text, e), FENCE) {
            Lit::Match(len) => BlockEnd::Done(len),
            Lit::Partial if ctx.eof => BlockEnd::Done(text.len()),
            Lit::Partial => BlockEnd::Open,
            // No closing fence: the call ends with its object, what follows is content.
            Lit::No => BlockEnd::Done(e),
        },
    };
    Some(Partial::new(vec![call], end))
}

/// Where the JSON body of a ```` ``` ```` fence starts, once the fence line is complete.
fn fence_body(text: &str) -> Option<usize> {
    let lang_len = text[FENCE.len()..]
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-')))?;
    let mut pos = FENCE.len() + lang_len;
    pos += text[pos..].len() - text[pos..].trim_start_matches([' ', '\t']).len();
    (text.as_bytes().get(pos) == Some(&b'\n')).then(|| skip_ws(text, pos))
}

/// ```` ```json\n{…}\n``` ````: the fence line, then a JSON body, then the closing fence.
fn scan_fence(text: &str, ctx: &ScanCtx) -> Scan {
    let not_call = Scan::NotCall { skip: FENCE.len() };
    let lang_len = text[FENCE.len()..]
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-')))
        .unwrap_or(text.len() - FENCE.len());
    let mut pos = FENCE.len() + lang_len;
    pos += text[pos..].len() - text[pos..].trim_start_matches([' ', '\t']).len();
    match text.as_bytes().get(pos) {
        None => return ctx.more_or(not_call),
        Some(b'\n') => {}
        Some(_) => return not_call,
    }
    pos = skip_ws(text, pos);
    match text.as_bytes().get(pos) {
        None => return ctx.more_or(not_call),
        Some(b'{' | b'[') => {}
        Some(_) => return not_call,
    }
    let end = match json_at(text, pos, ctx, not_call.clone()) {
        Ok(end) => end,
        Err(verdict) => return verdict,
    };
    let after = skip_ws(text, end);
    let len = match lit(text, after, FENCE) {
        Lit::Match(len) => len,
        Lit::Partial if ctx.eof => text.len(),
        Lit::Partial => return Scan::NeedMore,
        Lit::No => return not_call,
    };
    match calls_from_json(&text[pos..end], true) {
        Some(calls) => ctx.verdict(calls, len),
        None => not_call,
    }
}

/// `NAME({…})` where NAME is an offered tool (the trigger) standing as a whole word.
pub(crate) fn scan_name_call(text: &str, ctx: &ScanCtx) -> Scan {
    let not_call = Scan::NotCall { skip: 1 };
    if ctx
        .prev
        .is_some_and(|c| c.is_alphanumeric() || matches!(c, '_' | '.'))
    {
        return not_call;
    }
    let Some(open) = text.find('(') else {
        return not_call;
    };
    let name = text[..open].to_string();
    let pos = skip_ws(text, open + 1);
    match text.as_bytes().get(pos) {
        None => return ctx.more_or(not_call),
        Some(b'{') => {}
        Some(_) => return not_call,
    }
    let end = match json_at(text, pos, ctx, not_call.clone()) {
        Ok(end) => end,
        Err(verdict) => return verdict,
    };
    let close = skip_ws(text, end);
    match text.as_bytes().get(close) {
        None => ctx.more_or(not_call),
        Some(b')') => match object_arguments(&text[pos..end]) {
            Some(arguments) => ctx.verdict(vec![RawCall { name, arguments }], close + 1),
            None => not_call,
        },
        Some(_) => not_call,
    }
}

#[cfg(test)]
mod tests {
    use crate::tool_parser::testutil::{calls, parse_with};
    use crate::tool_parser::ToolFormat;

    #[test]
    fn fenced_call_streams_and_its_fence_stays_out_of_the_content() {
        let text = "Here:\n```json\n{\"name\": \"run_code\", \"arguments\": {\"code\": \"a\\nb\"}}\n```\nDone.";
        let out = parse_with(ToolFormat::Hermes, text);
        assert_eq!(calls(&out), [("run_code", r#"{"code":"a\nb"}"#)]);
        assert_eq!(out.content, "Here:\nDone.");
        let cut =
            "```json\n{\"name\": \"run_code\", \"arguments\": {\"code\": \"class A:\n    }\n}\n```";
        let out = parse_with(ToolFormat::Hermes, cut);
        assert_eq!(
            calls(&out),
            [("run_code", r#"{"code":"class A:\n    }\n}\n```"#)]
        );
    }

    #[test]
    fn bare_json_call_in_prose() {
        let text = "Calling now: {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}} — wait.";
        let out = parse_with(ToolFormat::Json, text);
        assert_eq!(calls(&out), [("get_weather", r#"{"city":"Paris"}"#)]);
        assert_eq!(out.content, "Calling now: — wait.");
    }

    #[test]
    fn fenced_json_array_of_calls() {
        let text = "```json\n[{\"name\": \"get_time\", \"arguments\": {}}, {\"tool\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}]\n```";
        let out = parse_with(ToolFormat::Json, text);
        assert_eq!(
            calls(&out),
            [("get_time", "{}"), ("get_weather", r#"{"city":"Rome"}"#)]
        );
        assert_eq!(out.content, "");
    }

    #[test]
    fn code_fences_that_are_not_calls_stay_content() {
        let text =
            "Here:\n```python\nd = {\"name\": \"get_time\"}\n```\nand ```json\n{\"a\": 1}\n```";
        let out = parse_with(ToolFormat::Json, text);
        assert!(out.tool_calls.is_empty());
        assert_eq!(out.content, text);
    }

    #[test]
    fn seeds_name_paren_json_form() {
        let text = "get_weather({\"city\": \"Kyiv\"}) and not_get_time({}) nor get_time(now)";
        let out = parse_with(ToolFormat::Json, text);
        assert_eq!(calls(&out), [("get_weather", r#"{"city":"Kyiv"}"#)]);
        assert_eq!(out.content, " and not_get_time({}) nor get_time(now)");
    }

    #[test]
    fn json_without_arguments_key_is_data() {
        let text = "User: {\"name\": \"get_time\"}";
        let out = parse_with(ToolFormat::Json, text);
        assert!(out.tool_calls.is_empty());
        assert_eq!(out.content, text);
    }
}
