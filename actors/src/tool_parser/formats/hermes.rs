//! Hermes / Qwen2.5 / Qwen3: `<tool_call>\n{"name": …, "arguments": {…}}\n</tool_call>`.
//!
//! The JSON is walked structurally, so a `</tool_call>` inside an argument string does not end
//! the call. A complete JSON body at the very end of the text without its closing tag is still a
//! call (models often stop right after the JSON); a truncated body never is.

use crate::tool_parser::scan::{calls_from_json, json_at, lit, skip_ws, Lit, Scan, ScanCtx};

pub(crate) const OPEN: &str = "<tool_call>";
pub(crate) const CLOSE: &str = "</tool_call>";

pub(crate) fn scan(text: &str, ctx: &ScanCtx) -> Scan {
    let fail = Scan::Failed { skip: OPEN.len() };
    let pos = skip_ws(text, OPEN.len());
    match text.as_bytes().get(pos) {
        None => return ctx.more_or(fail),
        Some(b'{' | b'[') => {}
        Some(_) => return fail,
    }
    let end = match json_at(text, pos, ctx, fail.clone()) {
        Ok(end) => end,
        Err(verdict) => return verdict,
    };
    let after = skip_ws(text, end);
    let len = match lit(text, after, CLOSE) {
        Lit::Match(len) => len,
        Lit::Partial if ctx.eof => text.len(),
        Lit::Partial => return Scan::NeedMore,
        Lit::No => return fail,
    };
    match calls_from_json(&text[pos..end], false) {
        Some(calls) => ctx.verdict(calls, len),
        None => Scan::Failed { skip: len },
    }
}

#[cfg(test)]
mod tests {
    use crate::tool_parser::testutil::{calls, parse_with};
    use crate::tool_parser::ToolFormat;

    #[test]
    fn hermes_call_with_prose_before_and_after() {
        let out = parse_with(
            ToolFormat::Hermes,
            "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\nDone.",
        );
        assert_eq!(calls(&out), [("get_weather", r#"{"city":"Paris"}"#)]);
        assert_eq!(out.content, "Let me check.\nDone.");
    }

    #[test]
    fn parallel_hermes_calls() {
        let text = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>";
        let out = parse_with(ToolFormat::Hermes, text);
        assert_eq!(
            calls(&out),
            [("get_weather", r#"{"city":"Paris"}"#), ("get_time", "{}")]
        );
        assert_eq!(out.content, "");
    }

    #[test]
    fn markers_and_braces_inside_argument_strings_do_not_end_the_call() {
        let text = r#"<tool_call>{"name": "run_code", "arguments": {"code": "print('</tool_call>{')", "name": "x\"}"}}</tool_call>"#;
        let out = parse_with(ToolFormat::Hermes, text);
        assert_eq!(
            calls(&out),
            [(
                "run_code",
                r#"{"code":"print('</tool_call>{')","name":"x\"}"}"#
            )]
        );
        assert_eq!(out.content, "");
    }

    #[test]
    fn truncated_hermes_call_stays_visible_as_content() {
        let text = "Sure <tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Par";
        let out = parse_with(ToolFormat::Hermes, text);
        assert!(out.tool_calls.is_empty());
        assert_eq!(out.content, text);
    }

    #[test]
    fn missing_close_tag_at_end_is_still_a_call() {
        let out = parse_with(
            ToolFormat::Hermes,
            "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n",
        );
        assert_eq!(calls(&out), [("get_time", "{}")]);
    }

    #[test]
    fn unknown_tool_name_is_not_a_call() {
        let text = "<tool_call>{\"name\": \"rm_rf\", \"arguments\": {}}</tool_call>";
        let out = parse_with(ToolFormat::Hermes, text);
        assert!(out.tool_calls.is_empty());
        assert_eq!(out.content, text);
    }

    #[test]
    fn malformed_json_body_is_kept_verbatim() {
        let text = "<tool_call>{\"name\": get_weather}</tool_call> ok";
        let out = parse_with(ToolFormat::Hermes, text);
        assert!(out.tool_calls.is_empty());
        assert_eq!(out.content, text);
    }
}
