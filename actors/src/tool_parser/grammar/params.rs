//! Grammars of the formats that write arguments parameter by parameter: Qwen3-Coder's and
//! MiniMax's XML, GLM's key/value tags, FunctionGemma's `<escape>` strings, pythonic lists.
//!
//! Each parameter of the schema's `properties` comes in schema order, the `required` ones
//! always, the others optionally; no parameter outside the schema. A value's form follows its
//! schema: raw text for strings (up to the closing tag), one of the strings of an `enum`, JSON
//! for numbers, booleans, objects and arrays (Python's `True`/`False`/`None` in pythonic lists).
//! FunctionGemma and pythonic lists spell objects and lists their own way: tools with such
//! parameters get no grammar in those formats.

use serde_json::Value;

use super::{either, lit, repeat, Allowed, Args, Builder, Reply};

/// What a parameter's value is, for writing it in a format.
enum Kind {
    /// Free text (a string, or a schema without a type).
    Text,
    /// One of these strings (`enum`, `const`).
    Choices(Vec<String>),
    /// A JSON value under the schema (numbers, objects, arrays, non-string enums).
    Json,
    /// `true` / `false`.
    Bool,
    /// `null`.
    Null,
}

fn kind(schema: &Value) -> Kind {
    let strings = |values: &[Value]| -> Option<Vec<String>> {
        values
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect()
    };
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        return strings(values).map_or(Kind::Json, Kind::Choices);
    }
    if let Some(c) = schema.get("const") {
        return c
            .as_str()
            .map_or(Kind::Json, |s| Kind::Choices(vec![s.to_owned()]));
    }
    let ty = match schema.get("type") {
        Some(Value::String(t)) => Some(t.as_str()),
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).find(|t| *t != "null"),
        _ => None,
    };
    match ty {
        None | Some("string") => Kind::Text,
        Some("boolean") => Kind::Bool,
        Some("null") => Kind::Null,
        Some(_) => Kind::Json,
    }
}

/// `(name, schema, required)` of each parameter of `params`, in schema order.
fn parameters(params: &Value) -> Vec<(String, Value, bool)> {
    let required: Vec<&str> = params
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    params
        .get("properties")
        .and_then(Value::as_object)
        .map(|props| {
            props
                .iter()
                .map(|(k, v)| (k.clone(), v.clone(), required.contains(&k.as_str())))
                .collect()
        })
        .unwrap_or_default()
}

/// The parameters of one tool in a tag format (no separators): each `param(name, schema)`,
/// optional ones wrapped in `(…)?`; `any` for a tool held to no schema.
fn tagged(
    b: &mut Builder,
    tool: &Allowed<'_>,
    param: &mut dyn FnMut(&mut Builder, &str, &Value) -> String,
    any: &str,
) -> String {
    if tool.args == Args::AnyObject {
        return format!("({any})*");
    }
    let parts: Vec<String> = parameters(&tool.params)
        .iter()
        .map(|(name, schema, required)| {
            let p = param(b, name, schema);
            if *required {
                p
            } else {
                format!("({p})?")
            }
        })
        .collect();
    if parts.is_empty() {
        "\"\"".into()
    } else {
        parts.join(" ")
    }
}

/// A value written raw, closed by `close`: text up to the closing tag, one of the choices, or
/// JSON, then the tag.
fn raw_value(b: &mut Builder, schema: &Value, close: &str) -> String {
    match kind(schema) {
        Kind::Text => b.till(close),
        Kind::Choices(c) => {
            let options: Vec<String> = c.iter().map(|s| lit(s)).collect();
            format!("{} {}", either(&options), b.mk(close))
        }
        Kind::Json | Kind::Bool | Kind::Null => {
            let v = b.json(schema);
            format!("{v} {}", b.mk(close))
        }
    }
}

/// A rule for parameter names of tools held to no schema.
fn any_name(b: &mut Builder) -> String {
    b.rule("/[A-Za-z0-9_.\\-]+/".into())
}

/// `<tool_call>\n<function=NAME>\n<parameter=P>\nV\n</parameter>\n…</function>\n</tool_call>`.
pub(super) fn qwen3_coder(b: &mut Builder, tools: &[Allowed<'_>], n: usize) -> Option<Reply> {
    const CLOSE: &str = "\n</parameter>";
    let pname = any_name(b);
    let any = format!("\"<parameter=\" {pname} \">\\n\" {} \"\\n\"", b.till(CLOSE));
    let options: Vec<String> = tools
        .iter()
        .map(|t| {
            let params = tagged(
                b,
                t,
                &mut |b, name, schema| {
                    let v = raw_value(b, schema, CLOSE);
                    format!("{} {v} \"\\n\"", lit(&format!("<parameter={name}>\n")))
                },
                &any,
            );
            format!(
                "{} {params} \"</function>\\n\"",
                lit(&format!("\n<function={}>\n", t.name))
            )
        })
        .collect();
    let after = format!("{} {}", either(&options), b.mk("</tool_call>"));
    let after = b.rule(after);
    let more = format!("\"\\n\" {} {after}", b.mk("<tool_call>"));
    Some(Reply {
        open: Some("<tool_call>".into()),
        rest: repeat(&after, &more, n),
        prose_first: true,
        bare_json: false,
    })
}

/// `<tool_call>NAME\n<arg_key>K</arg_key>\n<arg_value>V</arg_value>\n…</tool_call>`.
pub(super) fn glm45(b: &mut Builder, tools: &[Allowed<'_>], n: usize) -> Option<Reply> {
    let (key, key_end, value) = (b.mk("<arg_key>"), b.mk("</arg_key>"), b.mk("<arg_value>"));
    let pname = any_name(b);
    let any = format!(
        "{key} {pname} {key_end} \"\\n\" {value} {} \"\\n\"",
        b.till("</arg_value>")
    );
    let options: Vec<String> = tools
        .iter()
        .map(|t| {
            let params = tagged(
                b,
                t,
                &mut |b, name, schema| {
                    let v = raw_value(b, schema, "</arg_value>");
                    format!("{key} {} {key_end} \"\\n\" {value} {v} \"\\n\"", lit(name))
                },
                &any,
            );
            format!("{} \"\\n\" {params}", lit(t.name))
        })
        .collect();
    let after = format!("{} {}", either(&options), b.mk("</tool_call>"));
    let after = b.rule(after);
    let more = format!("\"\\n\" {} {after}", b.mk("<tool_call>"));
    Some(Reply {
        open: Some("<tool_call>".into()),
        rest: repeat(&after, &more, n),
        prose_first: true,
        bare_json: false,
    })
}

/// `<minimax:tool_call>\n<invoke name="NAME">\n<parameter name="K">V</parameter>\n…</invoke>\n
/// …</minimax:tool_call>`.
pub(super) fn minimax(b: &mut Builder, tools: &[Allowed<'_>], n: usize) -> Option<Reply> {
    const CLOSE: &str = "</parameter>";
    let pname = any_name(b);
    let any = format!(
        "\"<parameter name=\\\"\" {pname} \"\\\">\" {} \"\\n\"",
        b.till(CLOSE)
    );
    let options: Vec<String> = tools
        .iter()
        .map(|t| {
            let params = tagged(
                b,
                t,
                &mut |b, name, schema| {
                    let v = raw_value(b, schema, CLOSE);
                    format!(
                        "{} {v} \"\\n\"",
                        lit(&format!("<parameter name=\"{name}\">"))
                    )
                },
                &any,
            );
            format!(
                "{} {params} \"</invoke>\\n\"",
                lit(&format!("<invoke name=\"{}\">\n", t.name))
            )
        })
        .collect();
    let invoke = b.rule(either(&options));
    Some(Reply {
        open: Some("<minimax:tool_call>".into()),
        rest: format!(
            "\"\\n\" {} {}",
            repeat(&invoke, &invoke, n),
            b.mk("</minimax:tool_call>")
        ),
        prose_first: true,
        bare_json: false,
    })
}

/// `items` joined by `sep`, each `(expression, required)`; optional items may be left out with
/// their separator. Built as two rules per item (the list from here when nothing came before,
/// and when something did), so the size stays linear.
fn separated(b: &mut Builder, items: &[(String, bool)], sep: &str) -> String {
    let (mut first, mut rest) = ("\"\"".to_owned(), "\"\"".to_owned());
    for (item, required) in items.iter().rev() {
        let with = format!("{item} {rest}");
        let after = format!("{sep} {item} {rest}");
        let (f, r) = if *required {
            (with, after)
        } else {
            (format!("({with} | {first})"), format!("({after} | {rest})"))
        };
        first = b.rule(f);
        rest = b.rule(r);
    }
    first
}

/// A value in FunctionGemma's syntax, or `None` for objects and lists.
fn gemma_value(b: &mut Builder, schema: &Value) -> Option<String> {
    const ESCAPE: &str = "<escape>";
    Some(match kind(schema) {
        Kind::Text => format!("{} {}", b.mk(ESCAPE), b.till(ESCAPE)),
        Kind::Choices(c) => {
            let options: Vec<String> = c.iter().map(|s| lit(s)).collect();
            format!("{} {} {}", b.mk(ESCAPE), either(&options), b.mk(ESCAPE))
        }
        Kind::Bool => "(\"true\" | \"false\")".into(),
        Kind::Null => "\"null\"".into(),
        Kind::Json if is_number(schema) => b.json(schema),
        Kind::Json => return None,
    })
}

fn is_number(schema: &Value) -> bool {
    matches!(
        schema.get("type").and_then(Value::as_str),
        Some("integer" | "number")
    )
}

/// `<start_function_call>call:NAME{key:<escape>text<escape>,n:3}<end_function_call>`.
pub(super) fn functiongemma(b: &mut Builder, tools: &[Allowed<'_>]) -> Option<Reply> {
    const OPEN: &str = "<start_function_call>";
    let mut options = Vec::new();
    for t in tools {
        let args = if t.args == Args::AnyObject {
            let key = any_name(b);
            let value = gemma_value(b, &serde_json::json!({"type": "string"}))?;
            format!("({key} \":\" {value} (\",\" {key} \":\" {value})*)?")
        } else {
            let mut items = Vec::new();
            for (name, schema, required) in parameters(&t.params) {
                let value = gemma_value(b, &schema)?;
                items.push((format!("{} {value}", lit(&format!("{name}:"))), required));
            }
            separated(b, &items, "\",\"")
        };
        options.push(format!(
            "{} \"{{\" {args} \"}}\"",
            lit(&format!("call:{}", t.name))
        ));
    }
    let call = format!("{} {}", either(&options), b.mk("<end_function_call>"));
    let call = b.rule(call);
    Some(Reply {
        open: Some(OPEN.into()),
        rest: call,
        prose_first: true,
        bare_json: false,
    })
}

/// A value as a Python literal, or `None` for objects and lists.
fn python_value(b: &mut Builder, schema: &Value) -> Option<String> {
    Some(match kind(schema) {
        // JSON strings are Python string literals.
        Kind::Text => {
            let mut s = schema.clone();
            if let Some(o) = s.as_object_mut() {
                o.insert("type".into(), "string".into());
            }
            b.json(&s)
        }
        Kind::Choices(_) => b.json(schema),
        Kind::Bool => "(\"True\" | \"False\")".into(),
        Kind::Null => "\"None\"".into(),
        Kind::Json if is_number(schema) => b.json(schema),
        Kind::Json => return None,
    })
}

/// `[get_weather(city="SF", unit="c"), now()]`: keyword arguments only.
pub(super) fn pythonic(b: &mut Builder, tools: &[Allowed<'_>], n: usize) -> Option<Reply> {
    let mut options = Vec::new();
    for t in tools {
        if t.args == Args::AnyObject {
            return None; // pythonic lists have no marker to wait for: forced calls only
        }
        let mut items = Vec::new();
        for (name, schema, required) in parameters(&t.params) {
            let value = python_value(b, &schema)?;
            items.push((format!("{} {value}", lit(&format!("{name}="))), required));
        }
        let args = separated(b, &items, "\", \"");
        options.push(format!("{} {args} \")\"", lit(&format!("{}(", t.name))));
    }
    let call = b.rule(either(&options));
    Some(Reply {
        open: None,
        rest: format!(
            "\"[\" {} \"]\"",
            repeat(&call, &format!("\", \" {call}"), n)
        ),
        prose_first: false,
        bare_json: false,
    })
}
