//! GLM-4.5 / 4.6 / 4.7: `<tool_call>NAME\n<arg_key>K</arg_key>\n<arg_value>V</arg_value>\n…
//! </tool_call>` (4.7 writes the same without the newlines).
//!
//! Values are raw text typed by the tool's schema, as in Qwen3-Coder; the object is streamed
//! parameter by parameter. A `<tool_call>` followed by JSON is Hermes's, not this format's.

use super::hermes::{CLOSE, OPEN};
use super::xml_args::{value_until, ArgsBuilder};
use crate::tool_parser::partial::{BlockEnd, Partial, PartialCall};
use crate::tool_parser::scan::{lit, skip_ws, valid_name, Lit, Scan, ScanCtx};

const KEY: &str = "<arg_key>";
const KEY_END: &str = "</arg_key>";
const VALUE: &str = "<arg_value>";
const VALUE_END: &str = "</arg_value>";

enum Name<'a> {
    Incomplete,
    NotThis,
    /// The name and where the parameters begin.
    Found(&'a str, usize),
}

fn name(text: &str) -> Name<'_> {
    let p = skip_ws(text, OPEN.len());
    let rest = &text[p..];
    if rest.is_empty() {
        return Name::Incomplete;
    }
    if rest.starts_with(['{', '[', '<']) {
        return Name::NotThis;
    }
    let end = [rest.find('\n'), rest.find('<')]
        .into_iter()
        .flatten()
        .min();
    match end {
        Some(e) if valid_name(rest[..e].trim()) => Name::Found(rest[..e].trim(), p + e),
        Some(_) => Name::NotThis,
        None if rest.len() > 256 || !valid_name(rest.trim_end()) => Name::NotThis,
        None => Name::Incomplete,
    }
}

pub(crate) fn scan(text: &str, ctx: &ScanCtx) -> Scan {
    let fail = Scan::Failed { skip: OPEN.len() };
    match name(text) {
        Name::Incomplete => ctx.more_or(fail),
        Name::NotThis => Scan::NotCall { skip: OPEN.len() },
        // Offered names are committed by `partial`; this one is not offered.
        Name::Found(..) => fail,
    }
}

pub(crate) fn partial(text: &str, ctx: &ScanCtx) -> Option<Partial> {
    let Name::Found(name, mut pos) = name(text) else {
        return None;
    };
    if !(ctx.allow_unknown || ctx.tools.contains(name)) {
        return None;
    }
    let mut args = ArgsBuilder::new(ctx.tools, name);
    let call = |arguments, complete| PartialCall {
        name: name.to_string(),
        arguments,
        complete,
    };
    let open = |arguments| Some(Partial::new(vec![call(arguments, false)], BlockEnd::Open));
    let broken = |arguments, at| {
        Some(Partial::new(
            vec![call(arguments, false)],
            BlockEnd::Broken(at),
        ))
    };
    loop {
        pos = skip_ws(text, pos);
        match lit(text, pos, CLOSE) {
            Lit::Match(len) => {
                return Some(Partial::new(
                    vec![call(args.finish(), true)],
                    BlockEnd::Done(len),
                ))
            }
            Lit::Partial if ctx.eof => {
                return Some(Partial::new(
                    vec![call(args.finish(), true)],
                    BlockEnd::Done(text.len()),
                ))
            }
            _ => {}
        }
        let tag = pos;
        match lit(text, pos, KEY) {
            Lit::Match(p) => pos = p,
            Lit::Partial => return open(args.so_far()),
            Lit::No if lit(text, pos, CLOSE) == Lit::Partial => return open(args.so_far()),
            Lit::No => return broken(args.so_far(), tag),
        }
        let key_end = match value_until(text, pos, KEY_END) {
            Ok(e) => e,
            Err(_) => return open(args.so_far()),
        };
        let key = text[pos..key_end].trim();
        if key.is_empty() || key.contains(['<', '\n']) {
            return broken(args.so_far(), tag);
        }
        pos = skip_ws(text, key_end + KEY_END.len());
        match lit(text, pos, VALUE) {
            Lit::Match(p) => pos = p,
            Lit::Partial => return open(args.so_far()),
            Lit::No => return broken(args.so_far(), tag),
        }
        match value_until(text, pos, VALUE_END) {
            Ok(end) => {
                args.complete(key, &text[pos..end]);
                pos = end + VALUE_END.len();
            }
            Err(safe) => return open(args.in_progress(key, &text[pos..safe])),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::tool_parser::testutil::{calls, parse_with};
    use crate::tool_parser::ToolFormat;

    #[test]
    fn glm45_values_are_typed_and_several_calls_follow_each_other() {
        let text = "I'll check.\n<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Beijing</arg_value>\n<arg_key>days</arg_key>\n<arg_value>3</arg_value>\n<arg_key>opts</arg_key>\n<arg_value>{\"a\": [1, 2]}</arg_value>\n</tool_call>\n<tool_call>get_time\n</tool_call>";
        let out = parse_with(ToolFormat::Glm45, text);
        assert_eq!(
            calls(&out),
            [
                (
                    "get_weather",
                    r#"{"city":"Beijing","days":3,"opts":{"a":[1,2]}}"#
                ),
                ("get_time", "{}")
            ]
        );
        assert_eq!(out.content, "I'll check.");
    }

    #[test]
    fn glm47_without_newlines_and_multiline_code_value() {
        let text = "<tool_call>run_code<arg_key>code</arg_key><arg_value>def f():\n    return \"<x>\"\n</arg_value></tool_call>";
        let out = parse_with(ToolFormat::Glm45, text);
        assert_eq!(
            calls(&out),
            [("run_code", r#"{"code":"def f():\n    return \"<x>\""}"#)]
        );
    }

    #[test]
    fn glm45_format_still_reads_hermes_json() {
        let out = parse_with(
            ToolFormat::Glm45,
            "<tool_call>{\"name\": \"get_time\", \"arguments\": {}}</tool_call>",
        );
        assert_eq!(calls(&out), [("get_time", "{}")]);
    }
}
