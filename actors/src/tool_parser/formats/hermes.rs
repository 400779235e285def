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
    let mut pos = skip_ws(text, OPEN.len());
    // Usually one JSON value per tag, but models do put several objects in one block.
    let mut bodies = Vec::new();
    let len = loop {
        match text.as_bytes().get(pos) {
            Some(b'{' | b'[') => {
                let end = match json_at(text, pos, ctx, fail.clone()) {
                    Ok(end) => end,
                    Err(verdict) => return verdict,
                };
                bodies.push(&text[pos..end]);
                pos = skip_ws(text, end);
                continue;
            }
            None if bodies.is_empty() => return ctx.more_or(fail),
            Some(_) if bodies.is_empty() => return fail,
            _ => {}
        }
        match lit(text, pos, CLOSE) {
            Lit::Match(len) => break len,
            Lit::Partial if ctx.eof => break text.len(),
            Lit::Partial => return Scan::NeedMore,
            Lit::No => return fail,
        }
    };
    let mut calls = Vec::new();
    for body in bodies {
        match calls_from_json(body, false) {
            Some(found) => calls.extend(found),
            None => return Scan::Failed { skip: len },
        }
    }
    ctx.verdict(calls, len)
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
        assert_eq!(out.content, "");
    }

    #[test]
    fn several_objects_in_one_block_are_several_calls() {
        let text = "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Lyon\"}}\n</tool_call>";
        let out = parse_with(ToolFormat::Hermes, text);
        assert_eq!(
            calls(&out),
            [("get_time", "{}"), ("get_weather", r#"{"city":"Lyon"}"#)]
        );
        assert_eq!(out.content, "");
    }

    #[test]
    fn tags_lost_by_the_detokenizer_still_leave_a_call() {
        let text = "\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n";
        let out = parse_with(ToolFormat::Hermes, text);
        assert_eq!(calls(&out), [("get_weather", r#"{"city":"Paris"}"#)]);
        assert_eq!(out.content, "");
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
