//! Hermes / Qwen2.5 / Qwen3: `<tool_call>\n{"name": …, "arguments": {…}}\n</tool_call>`.
//!
//! The JSON is walked structurally, so a `</tool_call>` inside an argument string does not end
//! the call. A complete JSON body at the very end of the text without its closing tag is still a
//! call (models often stop right after the JSON); a truncated body never is.

use crate::tool_parser::partial::{
    json_call_at, whole_object_at, BlockEnd, ObjectStep, Partial, Whole,
};
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

/// The block streamed once its first object is a committed call (see [`json_call_at`]); later
/// objects in the same block stream too, or are taken whole when they have another shape.
pub(crate) fn partial(text: &str, ctx: &ScanCtx) -> Option<Partial> {
    let mut pos = skip_ws(text, OPEN.len());
    let mut calls = Vec::new();
    loop {
        if matches!(text.as_bytes().get(pos), Some(b'{' | b'[')) {
            match json_call_at(text, pos, ctx) {
                ObjectStep::NotYet if calls.is_empty() => return None,
                ObjectStep::NotYet => match whole_object_at(text, pos, ctx, false) {
                    Whole::Calls(found, end) => {
                        calls.extend(found);
                        pos = skip_ws(text, end);
                        continue;
                    }
                    Whole::Wait => return Some(Partial::new(calls, BlockEnd::Open)),
                    Whole::Bad => return Some(Partial::new(calls, BlockEnd::Broken(pos))),
                },
                ObjectStep::Call { call, end, broken } => {
                    calls.push(call);
                    if let Some(at) = broken {
                        return Some(Partial::new(calls, BlockEnd::Broken(at)));
                    }
                    match end {
                        Some(end) => pos = skip_ws(text, end),
                        None => return Some(Partial::new(calls, BlockEnd::Open)),
                    }
                    continue;
                }
            }
        }
        if calls.is_empty() {
            return None;
        }
        let end = match lit(text, pos, CLOSE) {
            Lit::Match(len) => BlockEnd::Done(len),
            Lit::Partial if ctx.eof => BlockEnd::Done(text.len()),
            Lit::Partial => BlockEnd::Open,
            Lit::No => BlockEnd::Broken(pos),
        };
        return Some(Partial::new(calls, end));
    }
}

#[cfg(test)]
mod tests {
    use crate::tool_parser::testutil::{calls, parse_with};
    use crate::tool_parser::{StreamEvent, ToolFormat};

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
    fn hermes_call_cut_off_keeps_the_arguments_written_so_far() {
        let text = "Sure <tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Par";
        let out = parse_with(ToolFormat::Hermes, text);
        assert_eq!(calls(&out), [("get_weather", r#"{"city":"Par"#)]);
        assert_eq!(out.content, "Sure");
    }

    #[test]
    fn hermes_call_cut_off_before_its_arguments_stays_content() {
        let text = "Sure <tool_call>\n{\"name\": \"get_weather\", \"argum";
        let out = parse_with(ToolFormat::Hermes, text);
        assert!(out.tool_calls.is_empty());
        assert_eq!(out.content, text);
    }

    #[test]
    fn hermes_arguments_stream_as_they_are_written() {
        let opts = crate::tool_parser::testutil::options(ToolFormat::Hermes);
        let mut p = crate::tool_parser::StreamParser::new(&opts);
        assert!(p
            .push("<tool_call>\n{\"name\": \"run_code\", \"arguments\": ")
            .is_empty());
        let ev = p.push("{\"code\": \"print(");
        assert!(
            matches!(&ev[0], StreamEvent::ToolCallStart { index: 0, name, .. } if name == "run_code"),
            "{ev:?}"
        );
        assert_eq!(ev[1], args(r#"{"code":"print("#));
        // A raw newline in a string is escaped on the way out.
        assert_eq!(p.push("1)\n"), [args(r"1)\n")]);
        assert_eq!(
            p.push("\"}}\n</tool_call>"),
            [args(r#""}"#), StreamEvent::ToolCallEnd { index: 0 }]
        );
    }

    fn args(fragment: &str) -> StreamEvent {
        StreamEvent::ToolCallArgs {
            index: 0,
            fragment: fragment.into(),
        }
    }

    #[test]
    fn hermes_arguments_that_break_after_they_began_end_the_call_and_stay_visible() {
        let text =
            "<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": Paris}}</tool_call>";
        let out = parse_with(ToolFormat::Hermes, text);
        assert_eq!(calls(&out), [("get_weather", r#"{"city":"#)]);
        assert_eq!(out.content, "Paris}}</tool_call>");
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
