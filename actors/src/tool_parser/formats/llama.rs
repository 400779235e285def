//! Llama 3.x JSON calls: `{"name": …, "parameters": {…}}`, optionally after `<|python_tag|>`,
//! several separated by `;`.
//!
//! Without the tag the object may sit anywhere in the text, so it must carry its arguments
//! (`parameters` or `arguments`) and name an offered tool to count; otherwise it is content.

use crate::tool_parser::partial::{
    json_call_at, whole_object_at, BlockEnd, ObjectStep, Partial, Whole,
};
use crate::tool_parser::scan::{calls_from_json, json_at, skip_ws, Scan, ScanCtx};

pub(crate) const PYTHON_TAG: &str = "<|python_tag|>";

pub(crate) fn scan(text: &str, ctx: &ScanCtx) -> Scan {
    let tagged = text.starts_with(PYTHON_TAG);
    let mut pos = if tagged {
        skip_ws(text, PYTHON_TAG.len())
    } else {
        0
    };
    let mut calls = Vec::new();
    let mut end = pos;
    loop {
        // What to do when the object at `pos` is not (yet) a call.
        let stop = |skip: usize| {
            if tagged {
                Scan::Failed {
                    skip: PYTHON_TAG.len(),
                }
            } else {
                Scan::NotCall { skip }
            }
        };
        match text.as_bytes().get(pos) {
            None if calls.is_empty() => return ctx.more_or(stop(1)),
            Some(b'{') => {}
            _ if calls.is_empty() => return stop(1),
            _ => break,
        }
        let obj_end = match json_at(text, pos, ctx, stop(1)) {
            Ok(e) => e,
            Err(_) if !calls.is_empty() && ctx.eof => break,
            Err(Scan::NeedMore) => return Scan::NeedMore,
            Err(_) if !calls.is_empty() => break,
            Err(verdict) => return verdict,
        };
        let found = calls_from_json(&text[pos..obj_end], !tagged)
            .filter(|c| c.len() == 1 && ctx.accepts(c));
        match found {
            Some(found) => calls.extend(found),
            None if calls.is_empty() && tagged => {
                return Scan::Failed {
                    skip: PYTHON_TAG.len(),
                }
            }
            None if calls.is_empty() => return Scan::NotCall { skip: obj_end },
            None => break,
        }
        end = obj_end;
        let after = skip_ws(text, end);
        match text.as_bytes().get(after) {
            None if ctx.eof => break,
            None => return Scan::NeedMore,
            Some(b';') => pos = skip_ws(text, after + 1),
            Some(_) => break,
        }
        if pos == text.len() && !ctx.eof {
            return Scan::NeedMore;
        }
    }
    Scan::Calls { calls, len: end }
}

/// The `;`-separated calls streamed once the first is committed; a later object that does not
/// become a call ends the block before it, as in [`scan`].
pub(crate) fn partial(text: &str, ctx: &ScanCtx) -> Option<Partial> {
    let tagged = text.starts_with(PYTHON_TAG);
    let mut pos = if tagged {
        skip_ws(text, PYTHON_TAG.len())
    } else {
        0
    };
    let mut calls = Vec::new();
    let mut end = pos;
    loop {
        match json_call_at(text, pos, ctx) {
            ObjectStep::NotYet if calls.is_empty() => return None,
            ObjectStep::NotYet => match whole_object_at(text, pos, ctx, !tagged) {
                Whole::Calls(found, e) if found.len() == 1 => {
                    calls.extend(found);
                    end = e;
                }
                Whole::Wait => return Some(Partial::new(calls, BlockEnd::Open)),
                Whole::Calls(..) | Whole::Bad => {
                    return Some(Partial::new(calls, BlockEnd::Done(end)))
                }
            },
            ObjectStep::Call {
                call,
                end: e,
                broken,
            } => {
                calls.push(call);
                if let Some(at) = broken {
                    return Some(Partial::new(calls, BlockEnd::Broken(at)));
                }
                match e {
                    Some(e) => end = e,
                    None => return Some(Partial::new(calls, BlockEnd::Open)),
                }
            }
        }
        let after = skip_ws(text, end);
        match text.as_bytes().get(after) {
            None if ctx.eof => return Some(Partial::new(calls, BlockEnd::Done(end))),
            None => return Some(Partial::new(calls, BlockEnd::Open)),
            Some(b';') => pos = skip_ws(text, after + 1),
            Some(_) => return Some(Partial::new(calls, BlockEnd::Done(end))),
        }
        if pos == text.len() && !ctx.eof {
            return Some(Partial::new(calls, BlockEnd::Open));
        }
        if text.as_bytes().get(pos) != Some(&b'{') {
            return Some(Partial::new(calls, BlockEnd::Done(end)));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::tool_parser::testutil::{calls, parse_with};
    use crate::tool_parser::ToolFormat;

    #[test]
    fn llama_json_with_parameters_key() {
        let text = "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\", \"name\": \"not the function\"}}";
        let out = parse_with(ToolFormat::Llama3Json, text);
        assert_eq!(
            calls(&out),
            [(
                "get_weather",
                r#"{"city":"Paris","name":"not the function"}"#
            )]
        );
        assert_eq!(out.content, "");
    }

    #[test]
    fn llama_python_tag_and_semicolon_separated_calls() {
        let text = "<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}; {\"name\": \"get_time\", \"parameters\": {}}";
        let out = parse_with(ToolFormat::Llama3Json, text);
        assert_eq!(
            calls(&out),
            [("get_weather", r#"{"city":"Oslo"}"#), ("get_time", "{}")]
        );
        assert_eq!(out.content, "");
    }

    #[test]
    fn llama_json_data_in_prose_is_content() {
        let text = "The config is {\"name\": \"server\", \"port\": 80}; edit {it} as needed.";
        let out = parse_with(ToolFormat::Llama3Json, text);
        assert!(out.tool_calls.is_empty());
        assert_eq!(out.content, text);
    }

    #[test]
    fn llama_second_call_truncated_keeps_the_first() {
        let text =
            "{\"name\": \"get_time\", \"parameters\": {}}; {\"name\": \"get_weather\", \"param";
        let out = parse_with(ToolFormat::Llama3Json, text);
        assert_eq!(calls(&out), [("get_time", "{}")]);
        assert_eq!(out.content, "; {\"name\": \"get_weather\", \"param");
    }
}
