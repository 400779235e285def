//! Mistral: `[TOOL_CALLS][{"name": …, "arguments": {…}}, …]` (v3 tokenizers) and
//! `[TOOL_CALLS]name[ARGS]{…}` / `[TOOL_CALLS]name{…}` (v11+), one marker per call.

use crate::tool_parser::scan::{
    calls_from_json, json_at, lit, object_arguments, skip_ws, Lit, RawCall, Scan, ScanCtx,
};

pub(crate) const OPEN: &str = "[TOOL_CALLS]";
const ARGS: &str = "[ARGS]";
const CALL_ID: &str = "[CALL_ID]";

pub(crate) fn scan(text: &str, ctx: &ScanCtx) -> Scan {
    let fail = Scan::Failed { skip: OPEN.len() };
    let mut pos = skip_ws(text, OPEN.len());
    match text.as_bytes().get(pos) {
        None => return ctx.more_or(fail),
        Some(b'[' | b'{') => {
            let end = match json_at(text, pos, ctx, fail.clone()) {
                Ok(end) => end,
                Err(verdict) => return verdict,
            };
            return match calls_from_json(&text[pos..end], false) {
                Some(calls) => ctx.verdict(calls, end),
                None => Scan::Failed { skip: end },
            };
        }
        Some(_) => {}
    }
    let name_len = text[pos..]
        .find(|c: char| !(c.is_alphanumeric() || matches!(c, '_' | '-' | '.')))
        .unwrap_or(text.len() - pos);
    if pos + name_len == text.len() {
        return ctx.more_or(fail);
    }
    if name_len == 0 {
        return fail;
    }
    let name = text[pos..pos + name_len].to_string();
    pos += name_len;
    if let Lit::Match(p) = lit(text, pos, CALL_ID) {
        let id_len = text[p..]
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(text.len() - p);
        pos = p + id_len;
    }
    for marker in [CALL_ID, ARGS] {
        match lit(text, pos, marker) {
            Lit::Match(p) if marker == ARGS => pos = p,
            Lit::Partial if !ctx.eof => return Scan::NeedMore,
            _ => {}
        }
    }
    pos = skip_ws(text, pos);
    match text.as_bytes().get(pos) {
        None => return ctx.more_or(fail),
        Some(b'{') => {}
        Some(_) => return fail,
    }
    let end = match json_at(text, pos, ctx, fail.clone()) {
        Ok(end) => end,
        Err(verdict) => return verdict,
    };
    match object_arguments(&text[pos..end]) {
        Some(arguments) => ctx.verdict(vec![RawCall { name, arguments }], end),
        None => Scan::Failed { skip: end },
    }
}

#[cfg(test)]
mod tests {
    use crate::tool_parser::testutil::{calls, parse_with};
    use crate::tool_parser::ToolFormat;

    #[test]
    fn mistral_array_form_with_parallel_calls() {
        let text = "[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}, {\"name\": \"get_time\", \"arguments\": {}}]";
        let out = parse_with(ToolFormat::Mistral, text);
        assert_eq!(
            calls(&out),
            [("get_weather", r#"{"city":"Paris"}"#), ("get_time", "{}")]
        );
        assert_eq!(out.content, "");
    }

    #[test]
    fn mistral_name_args_form_with_several_markers() {
        let text =
            "Checking.[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Paris\"}[TOOL_CALLS]get_time{}";
        let out = parse_with(ToolFormat::Mistral, text);
        assert_eq!(
            calls(&out),
            [("get_weather", r#"{"city":"Paris"}"#), ("get_time", "{}")]
        );
        assert_eq!(out.content, "Checking.");
    }

    #[test]
    fn mistral_truncated_arguments_are_content() {
        let text = "[TOOL_CALLS]get_weather{\"city\": ";
        let out = parse_with(ToolFormat::Mistral, text);
        assert!(out.tool_calls.is_empty());
        assert_eq!(out.content, text);
    }
}
