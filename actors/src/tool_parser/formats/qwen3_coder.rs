//! Qwen3-Coder's XML calls:
//! `<tool_call>\n<function=NAME>\n<parameter=P>\nV\n</parameter>\n</function>\n</tool_call>`.
//!
//! Values are raw text; their JSON type comes from the tool's parameter schema (integer,
//! number, boolean, object, array, null; anything else or unknown stays a string). A value
//! ends at a `</parameter>` that is followed by the next `<parameter=` or `</function>`, so code
//! that mentions `</parameter>` survives; a missing `</parameter>` is tolerated.

use super::hermes::{CLOSE, OPEN};
use crate::tool_parser::json::{minify, scan_value, Prefix};
use crate::tool_parser::partial::{string_body, BlockEnd, Partial, PartialCall};
use crate::tool_parser::scan::{lit, skip_ws, Lit, RawCall, Scan, ScanCtx};

const FUNCTION: &str = "<function=";
const FUNCTION_END: &str = "</function>";
const PARAM: &str = "<parameter=";
const PARAM_END: &str = "</parameter>";

/// Also opens a call: Qwen3-Coder sometimes leaves out the `<tool_call>` wrapper (vLLM's suite
/// pins both a missing opening and a missing pair). Such a call must name an offered tool.
pub(crate) const BARE_OPEN: &str = FUNCTION;

pub(crate) fn scan(text: &str, ctx: &ScanCtx) -> Scan {
    let bare = text.starts_with(FUNCTION);
    if bare && !bare_name_is_offered(text, ctx) {
        return match text[FUNCTION.len()..].find('>') {
            None if !ctx.eof => Scan::NeedMore,
            _ => Scan::NotCall {
                skip: FUNCTION.len(),
            },
        };
    }
    let (fail, mut pos) = if bare {
        (
            Scan::NotCall {
                skip: FUNCTION.len(),
            },
            0,
        )
    } else {
        (Scan::Failed { skip: OPEN.len() }, skip_ws(text, OPEN.len()))
    };
    match lit(text, pos, FUNCTION) {
        Lit::Match(p) => pos = p,
        Lit::Partial => return ctx.more_or(fail),
        // Not this format's body; the Hermes scanner may still take it.
        Lit::No => return Scan::NotCall { skip: OPEN.len() },
    }
    let Some(gt) = text[pos..].find('>') else {
        return ctx.more_or(fail);
    };
    let name = text[pos..pos + gt].trim();
    if name.is_empty() || name.contains(['<', '\n']) {
        return fail;
    }
    pos += gt + 1;
    let mut args: Vec<(String, String)> = Vec::new();
    loop {
        pos = skip_ws(text, pos);
        if let Lit::Match(p) = lit(text, pos, FUNCTION_END) {
            pos = p;
            break;
        }
        match lit(text, pos, PARAM) {
            Lit::Match(p) => pos = p,
            Lit::Partial => return ctx.more_or(fail),
            Lit::No => {
                return match lit(text, pos, FUNCTION_END) {
                    Lit::Partial => ctx.more_or(fail),
                    _ => fail,
                }
            }
        }
        let Some(gt) = text[pos..].find('>') else {
            return ctx.more_or(fail);
        };
        let key = text[pos..pos + gt].trim().to_string();
        if key.is_empty() || key.contains(['<', '\n']) {
            return fail;
        }
        pos += gt + 1;
        let (value_end, next) = match value_end(text, pos) {
            Ok(v) => v,
            Err(_) => return ctx.more_or(fail),
        };
        let raw = &text[pos..value_end];
        let raw = raw.strip_prefix('\n').unwrap_or(raw);
        let raw = raw.strip_suffix('\n').unwrap_or(raw);
        let value = typed_value(raw, ctx.tools.param_type(name, &key));
        args.push((key, value));
        pos = next;
    }
    let after = skip_ws(text, pos);
    let len = match lit(text, after, CLOSE) {
        Lit::Match(len) => len,
        Lit::Partial if ctx.eof => text.len(),
        Lit::Partial => return Scan::NeedMore,
        // Without its opening wrapper a call may lack the closing one too.
        Lit::No if bare => pos,
        Lit::No => return fail,
    };
    let mut arguments = String::from("{");
    for (i, (k, v)) in args.iter().enumerate() {
        if i > 0 {
            arguments.push(',');
        }
        arguments.push_str(&serde_json::Value::String(k.clone()).to_string());
        arguments.push(':');
        arguments.push_str(v);
    }
    arguments.push('}');
    let calls = vec![RawCall {
        name: name.to_string(),
        arguments,
    }];
    ctx.verdict(calls, len)
}

fn bare_name_is_offered(text: &str, ctx: &ScanCtx) -> bool {
    let rest = &text[FUNCTION.len()..];
    match rest.find('>') {
        Some(gt) => {
            let name = rest[..gt].trim();
            !name.is_empty() && ctx.tools.contains(name)
        }
        None => false,
    }
}

/// The call streamed once `<function=NAME>` names an offered tool: the JSON object built
/// parameter by parameter. A string-typed (or untyped) value streams as it is written, minus
/// what may still turn out to be its end (a `<` not yet known to be markup, a last newline);
/// other values are sent whole once complete, typed as in [`scan`].
pub(crate) fn partial(text: &str, ctx: &ScanCtx) -> Option<Partial> {
    if text.starts_with(FUNCTION) {
        // A call without its wrapper is sent whole, once complete.
        return None;
    }
    let mut pos = skip_ws(text, OPEN.len());
    pos = match lit(text, pos, FUNCTION) {
        Lit::Match(p) => p,
        _ => return None,
    };
    let gt = text[pos..].find('>')?;
    let name = text[pos..pos + gt].trim();
    if name.is_empty()
        || name.contains(['<', '\n'])
        || !(ctx.allow_unknown || ctx.tools.contains(name))
    {
        return None;
    }
    pos += gt + 1;
    let mut args = String::from("{");
    let block = |args: String, complete: bool, end: BlockEnd| {
        let call = PartialCall {
            name: name.to_string(),
            arguments: args,
            complete,
        };
        Some(Partial::new(vec![call], end))
    };
    let mut params = 0;
    loop {
        pos = skip_ws(text, pos);
        if let Lit::Match(p) = lit(text, pos, FUNCTION_END) {
            pos = p;
            break;
        }
        let tag = pos;
        match lit(text, pos, PARAM) {
            Lit::Match(p) => pos = p,
            Lit::Partial => return block(args, false, BlockEnd::Open),
            Lit::No => {
                return match lit(text, pos, FUNCTION_END) {
                    Lit::Partial => block(args, false, BlockEnd::Open),
                    _ => block(args, false, BlockEnd::Broken(tag)),
                }
            }
        }
        let Some(gt) = text[pos..].find('>') else {
            return block(args, false, BlockEnd::Open);
        };
        let key = text[pos..pos + gt].trim();
        if key.is_empty() || key.contains(['<', '\n']) {
            return block(args, false, BlockEnd::Broken(tag));
        }
        pos += gt + 1;
        let mut head = String::from(if params > 0 { "," } else { "" });
        head.push_str(&serde_json::Value::String(key.to_string()).to_string());
        head.push(':');
        let schema_type = ctx.tools.param_type(name, key);
        match value_end(text, pos) {
            Ok((end, next)) => {
                let raw = &text[pos..end];
                let raw = raw.strip_prefix('\n').unwrap_or(raw);
                let raw = raw.strip_suffix('\n').unwrap_or(raw);
                args.push_str(&head);
                args.push_str(&typed_value(raw, schema_type));
                params += 1;
                pos = next;
            }
            Err(held) => {
                // Typed values (and their keys) wait until they are complete.
                if matches!(schema_type, None | Some("string")) {
                    let raw = &text[pos..held];
                    let raw = raw.strip_prefix('\n').unwrap_or(raw);
                    let raw = raw.strip_suffix('\n').unwrap_or(raw);
                    args.push_str(&head);
                    args.push('"');
                    args.push_str(&string_body(raw));
                }
                return block(args, false, BlockEnd::Open);
            }
        }
    }
    args.push('}');
    let after = skip_ws(text, pos);
    let end = match lit(text, after, CLOSE) {
        Lit::Match(len) => BlockEnd::Done(len),
        Lit::Partial if ctx.eof => BlockEnd::Done(text.len()),
        Lit::Partial => BlockEnd::Open,
        Lit::No => BlockEnd::Broken(after),
    };
    block(args, true, end)
}

/// Where the value starting at `pos` ends, and where scanning resumes; while unknown, `Err`
/// with the offset up to which the text is surely part of the value.
fn value_end(text: &str, pos: usize) -> Result<(usize, usize), usize> {
    let mut from = pos;
    while let Some(i) = text[from..].find('<').map(|i| from + i) {
        match lit(text, i, PARAM_END) {
            Lit::Match(p) => {
                let next = skip_ws(text, p);
                let follows = [lit(text, next, PARAM), lit(text, next, FUNCTION_END)];
                if follows.iter().any(|l| matches!(l, Lit::Match(_))) {
                    return Ok((i, next));
                }
                if follows.contains(&Lit::Partial) {
                    return Err(i);
                }
            }
            Lit::Partial => return Err(i),
            Lit::No => {
                let other = [lit(text, i, PARAM), lit(text, i, FUNCTION_END)];
                if other.iter().any(|l| matches!(l, Lit::Match(_))) {
                    return Ok((i, i));
                }
                if other.contains(&Lit::Partial) {
                    return Err(i);
                }
            }
        }
        from = i + 1;
    }
    Err(text.len())
}

/// The JSON text for a raw value, typed by the schema; what does not fit stays a string.
pub(crate) fn typed_value(raw: &str, schema_type: Option<&str>) -> String {
    let as_string = || serde_json::Value::String(raw.to_string()).to_string();
    let t = raw.trim();
    match schema_type {
        Some("integer") => t
            .parse::<i64>()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| as_string()),
        Some("number") => match t.parse::<i64>() {
            Ok(n) => n.to_string(),
            Err(_) => t
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(|n| n.to_string())
                .unwrap_or_else(as_string),
        },
        Some("boolean") => match t.to_ascii_lowercase().as_str() {
            "true" => "true".into(),
            "false" => "false".into(),
            _ => as_string(),
        },
        Some("null") if matches!(t, "null" | "None") => "null".into(),
        // JSON, else a Python literal (`{'key': 'value'}`: vLLM's suite pins it); bad text is
        // kept as a string.
        Some("object") | Some("array") => match scan_value(t) {
            Prefix::Complete(n) if n == t.len() => minify(t),
            _ => super::pythonic::python_literal(t).unwrap_or_else(as_string),
        },
        _ => as_string(),
    }
}

#[cfg(test)]
mod tests {
    use crate::tool_parser::testutil::{calls, parse_with};
    use crate::tool_parser::ToolFormat;

    const CALL: &str = "<tool_call>\n<function=get_weather>\n<parameter=city>\nSan Francisco\n</parameter>\n<parameter=days>\n3\n</parameter>\n<parameter=metric>\nTrue\n</parameter>\n<parameter=opts>\n{\"a\": [1, 2]}\n</parameter>\n</function>\n</tool_call>";

    #[test]
    fn qwen3_coder_values_are_typed_from_the_schema() {
        let out = parse_with(ToolFormat::Qwen3Coder, &format!("I'll look.\n{CALL}"));
        assert_eq!(
            calls(&out),
            [(
                "get_weather",
                r#"{"city":"San Francisco","days":3,"metric":true,"opts":{"a":[1,2]}}"#
            )]
        );
        assert_eq!(out.content, "I'll look.");
    }

    #[test]
    fn qwen3_coder_multiline_code_value_and_parameter_tag_inside_it() {
        let text = "<tool_call>\n<function=run_code>\n<parameter=code>\nx = '</parameter>'\nprint(x)\n</parameter>\n</function>\n</tool_call>";
        let out = parse_with(ToolFormat::Qwen3Coder, text);
        assert_eq!(
            calls(&out),
            [("run_code", r#"{"code":"x = '</parameter>'\nprint(x)"}"#)]
        );
    }

    #[test]
    fn qwen3_coder_untyped_value_that_does_not_fit_stays_a_string() {
        let text = "<tool_call><function=get_weather><parameter=days>three</parameter><parameter=extra>7</parameter></function></tool_call>";
        let out = parse_with(ToolFormat::Qwen3Coder, text);
        assert_eq!(
            calls(&out),
            [("get_weather", r#"{"days":"three","extra":"7"}"#)]
        );
    }

    #[test]
    fn qwen3_coder_call_cut_off_keeps_the_parameters_written_so_far() {
        let text = "<tool_call>\n<function=get_weather>\n<parameter=days>\n2\n</parameter>\n<parameter=city>\nPar";
        let out = parse_with(ToolFormat::Qwen3Coder, text);
        assert_eq!(calls(&out), [("get_weather", r#"{"days":2,"city":"Par"#)]);
        assert_eq!(out.content, "");
    }

    #[test]
    fn qwen3_coder_call_without_its_wrapper_is_still_a_call() {
        let body = "<function=get_weather>\n<parameter=city>\nDallas\n</parameter>\n</function>";
        for text in [
            body.to_string(),
            format!("I'll check.\n\n{body}\n</tool_call>"),
        ] {
            let out = parse_with(ToolFormat::Qwen3Coder, &text);
            assert_eq!(
                calls(&out),
                [("get_weather", r#"{"city":"Dallas"}"#)],
                "{text:?}"
            );
            assert!(!out.content.contains("<function="), "{:?}", out.content);
        }
        // Only an offered tool: anything else stays text.
        let other = "<function=rm_rf>\n<parameter=p>\n/\n</parameter>\n</function>";
        assert!(calls(&parse_with(ToolFormat::Qwen3Coder, other)).is_empty());
    }

    #[test]
    fn qwen3_coder_object_value_written_as_a_python_literal() {
        let text = "<tool_call>\n<function=get_weather>\n<parameter=opts>\n{'unit': 'c', 'hourly': True}\n</parameter>\n</function>\n</tool_call>";
        let out = parse_with(ToolFormat::Qwen3Coder, text);
        assert_eq!(
            calls(&out),
            [("get_weather", r#"{"opts":{"unit":"c","hourly":true}}"#)]
        );
    }

    #[test]
    fn qwen3_coder_unknown_function_stays_content() {
        let text = "<tool_call>\n<function=rm_rf>\n<parameter=p>\n/\n</parameter>\n</function>\n</tool_call>";
        let out = parse_with(ToolFormat::Qwen3Coder, text);
        assert!(out.tool_calls.is_empty());
        assert_eq!(out.content, text);
    }

    #[test]
    fn qwen3_coder_string_values_stream_typed_values_wait() {
        let opts = crate::tool_parser::testutil::options(ToolFormat::Qwen3Coder);
        let mut p = crate::tool_parser::StreamParser::new(&opts);
        let mut got = Vec::new();
        for piece in [
            "<tool_call>\n<function=get_weather>\n",
            "<parameter=days>\n",
            "3",
            "\n</parameter>\n<parameter=city>\n",
            "Lo",
            "s An",
            "geles\n",
            "</param",
            "eter>\n</function>\n</tool_call>",
        ] {
            got.push(
                p.push(piece)
                    .into_iter()
                    .filter_map(|e| match e {
                        crate::tool_parser::StreamEvent::ToolCallArgs { fragment, .. } => {
                            Some(fragment)
                        }
                        _ => None,
                    })
                    .collect::<String>(),
            );
        }
        assert_eq!(
            got,
            [
                "{",
                "",
                "",
                r#""days":3,"city":""#,
                "Lo",
                "s An",
                "geles",
                "",
                "\"}"
            ]
        );
    }

    /// The hard cases other servers' parser suites pin (vLLM, SGLang): indented and multi-line
    /// values, nested JSON, quotes and markup inside strings, every schema type, several calls.
    #[test]
    fn qwen3_coder_real_model_shapes() {
        let tools = vec![
            serde_json::json!({"type": "function", "function": {"name": "f", "parameters": {
            "type": "object", "properties": {
                "s": {"type": "string"}, "i": {"type": "integer"}, "n": {"type": "number"},
                "b": {"type": "boolean"}, "o": {"type": "object"}, "a": {"type": "array"},
                "z": {"type": ["null", "integer"]}, "u": {}}}}}),
        ];
        let opts = crate::tool_parser::ParseOptions {
            tools,
            format: ToolFormat::Qwen3Coder,
            ..Default::default()
        };
        let text = "Sure.\n<tool_call>\n<function=f>\n<parameter=s>\n  indented \"quoted\" <b>\n    second line\n</parameter>\n<parameter=i>\n -7 \n</parameter>\n<parameter=n>\n2.5\n</parameter>\n<parameter=b>\nfalse\n</parameter>\n<parameter=o>\n{\n  \"k\": {\"x\": [1, \"</parameter>\"]}\n}\n</parameter>\n<parameter=a>\n[1, 2]\n</parameter>\n<parameter=z>\n5\n</parameter>\n<parameter=u>\nfree text\n</parameter>\n</function>\n</tool_call>\n<tool_call>\n<function=f>\n<parameter=i>\nnot a number\n</parameter>\n</function>\n</tool_call>";
        let out = crate::tool_parser::testutil::assert_chunking_invariant(&opts, text);
        assert_eq!(
            calls(&out),
            [
                (
                    "f",
                    r#"{"s":"  indented \"quoted\" <b>\n    second line","i":-7,"n":2.5,"b":false,"o":{"k":{"x":[1,"</parameter>"]}},"a":[1,2],"z":5,"u":"free text"}"#
                ),
                ("f", r#"{"i":"not a number"}"#),
            ]
        );
        assert_eq!(out.content, "Sure.");
    }

    #[test]
    fn qwen3_coder_format_still_reads_json_tool_calls() {
        let out = parse_with(
            ToolFormat::Qwen3Coder,
            "<tool_call>{\"name\": \"get_time\", \"arguments\": {}}</tool_call>",
        );
        assert_eq!(calls(&out), [("get_time", "{}")]);
    }
}
