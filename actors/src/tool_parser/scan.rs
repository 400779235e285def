//! What every format scanner shares: the verdict type, the context, and the JSON call shapes.
//!
//! A scanner looks at the text from one of its trigger markers onward and returns a verdict.
//! The one rule that makes streaming equal to non-streaming: a verdict other than `NeedMore`
//! must stay the same for every longer text. So scanners wait (`NeedMore`) while the answer
//! could still change and decide as soon as it cannot.

use super::json::{self, Prefix};
use super::tools::ToolSet;

/// One call as a scanner found it; `arguments` is always a JSON object text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RawCall {
    pub name: String,
    pub arguments: String,
}

/// A scanner's verdict on the text starting at its trigger.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scan {
    /// Cannot tell yet.
    NeedMore,
    /// These calls, taking `len` bytes of markup.
    Calls { calls: Vec<RawCall>, len: usize },
    /// Not a call: the first `skip` bytes are ordinary content.
    NotCall { skip: usize },
    /// Tool-call markup that is malformed or names an unknown tool: counted, kept as content.
    Failed { skip: usize },
}

/// What a scanner may know besides the text.
pub(crate) struct ScanCtx<'a> {
    pub tools: &'a ToolSet,
    pub allow_unknown: bool,
    /// The character just before the trigger, for word-boundary checks.
    pub prev: Option<char>,
    /// No more text will come.
    pub eof: bool,
}

impl ScanCtx<'_> {
    /// Whether every call names a tool the request offered (or unknown names are allowed).
    pub fn accepts(&self, calls: &[RawCall]) -> bool {
        !calls.is_empty()
            && calls
                .iter()
                .all(|c| self.allow_unknown || self.tools.contains(&c.name))
    }

    /// The verdict for well-formed calls of `len` bytes: taken when their names are known.
    pub fn verdict(&self, calls: Vec<RawCall>, len: usize) -> Scan {
        if self.accepts(&calls) {
            Scan::Calls { calls, len }
        } else {
            Scan::Failed { skip: len }
        }
    }

    /// `NeedMore`, or `fallback` once the text is over.
    pub fn more_or(&self, fallback: Scan) -> Scan {
        if self.eof {
            fallback
        } else {
            Scan::NeedMore
        }
    }
}

/// How `text[pos..]` relates to a literal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lit {
    /// It starts with the literal, which ends at this offset.
    Match(usize),
    /// It is a proper prefix of the literal (possibly empty): the text ended too soon.
    Partial,
    /// It differs.
    No,
}

pub(crate) fn lit(text: &str, pos: usize, literal: &str) -> Lit {
    let rest = text.get(pos..).unwrap_or("");
    if rest.starts_with(literal) {
        Lit::Match(pos + literal.len())
    } else if literal.starts_with(rest) {
        Lit::Partial
    } else {
        Lit::No
    }
}

pub(crate) fn skip_ws(text: &str, pos: usize) -> usize {
    let rest = text.get(pos..).unwrap_or("");
    pos + (rest.len() - rest.trim_start().len())
}

/// A JSON value at `text[pos..]`: `Ok(end)` when complete, else the verdict to return.
pub(crate) fn json_at(text: &str, pos: usize, ctx: &ScanCtx, fail: Scan) -> Result<usize, Scan> {
    match json::scan_value(text.get(pos..).unwrap_or("")) {
        Prefix::Complete(n) => Ok(pos + n),
        Prefix::Incomplete => Err(ctx.more_or(fail)),
        Prefix::Invalid => Err(fail),
    }
}

/// A JSON object text (already complete) as arguments; `None` if it is not an object.
pub(crate) fn object_arguments(text: &str) -> Option<String> {
    let m = json::minify(text);
    m.starts_with('{').then_some(m)
}

/// Reads the call shapes models write as JSON: `{"name", "arguments"|"parameters"}`, the seeds'
/// `{"tool", "arguments"}`, OpenAI's `{"type":"function","function":{…}}`, `{"tool_calls":[…]}`,
/// or an array of those. `require_args` guards bare JSON in prose, where `{"name": …}` alone is
/// far more often data than a call.
pub(crate) fn calls_from_json(text: &str, require_args: bool) -> Option<Vec<RawCall>> {
    let m = json::minify(text);
    if m.starts_with('[') {
        let items = json::elements(&m)?;
        if items.is_empty() {
            return None;
        }
        return items
            .iter()
            .map(|item| call_from_object(item, require_args))
            .collect();
    }
    let members = json::members(&m)?;
    if let Some((_, list)) = members.iter().find(|(k, _)| k == "tool_calls") {
        let items = json::elements(list)?;
        if items.is_empty() {
            return None;
        }
        return items
            .iter()
            .map(|item| call_from_object(item, require_args))
            .collect();
    }
    Some(vec![call_from_members(&members, require_args)?])
}

fn call_from_object(text: &str, require_args: bool) -> Option<RawCall> {
    call_from_members(&json::members(text)?, require_args)
}

fn call_from_members(members: &[(String, &str)], require_args: bool) -> Option<RawCall> {
    let get = |keys: &[&str]| {
        members
            .iter()
            .find(|(k, _)| keys.contains(&k.as_str()))
            .map(|(_, v)| *v)
    };
    if let Some(inner) = get(&["function"]).filter(|v| v.starts_with('{')) {
        return call_from_object(inner, require_args);
    }
    let name: String =
        serde_json::from_str(get(&["name", "tool", "function", "tool_name"])?).ok()?;
    if !valid_name(&name) {
        return None;
    }
    let arguments = match get(&["arguments", "parameters", "args", "input"]) {
        None if require_args => return None,
        None | Some("null") => "{}".to_string(),
        Some(v) if v.starts_with('{') => v.to_string(),
        // Some models double-encode: `"arguments": "{\"city\": \"Paris\"}"`.
        Some(v) if v.starts_with('"') => {
            let inner: String = serde_json::from_str(v).ok()?;
            let inner = inner.trim();
            match json::scan_value(inner) {
                Prefix::Complete(n) if n == inner.len() => object_arguments(inner)?,
                _ => return None,
            }
        }
        Some(_) => return None,
    };
    Some(RawCall { name, arguments })
}

/// Function names as OpenAI allows them, loosely: no spaces, quotes or markup.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_shapes_are_all_understood() {
        let one = |t: &str| calls_from_json(t, true).unwrap_or_default();
        let c = one(r#"{"name": "f", "arguments": {"a": 1}}"#);
        assert_eq!(c[0].name, "f");
        assert_eq!(c[0].arguments, r#"{"a":1}"#);
        assert_eq!(one(r#"{"tool": "f", "arguments": {}}"#)[0].name, "f");
        assert_eq!(
            one(r#"{"name": "f", "parameters": {"b": true}}"#)[0].arguments,
            r#"{"b":true}"#
        );
        let oa =
            one(r#"{"type": "function", "function": {"name": "g", "arguments": "{\"x\": 2}"}}"#);
        assert_eq!(
            (oa[0].name.as_str(), oa[0].arguments.as_str()),
            ("g", r#"{"x":2}"#)
        );
        assert_eq!(
            one(r#"[{"name": "a", "arguments": {}}, {"name": "b", "arguments": {}}]"#).len(),
            2
        );
    }

    #[test]
    fn data_that_is_not_a_call_is_refused() {
        assert!(calls_from_json(r#"{"name": "Bob", "age": 3}"#, true).is_none());
        assert!(calls_from_json(r#"{"name": "f", "arguments": [1]}"#, true).is_none());
        assert!(calls_from_json(r#"{"name": "two words", "arguments": {}}"#, true).is_none());
        assert!(calls_from_json("[]", false).is_none());
        assert!(calls_from_json(r#"{"name": "f", "arguments": "not json"}"#, false).is_none());
    }

    #[test]
    fn lit_reports_partial_prefixes() {
        assert_eq!(lit("ab</to", 2, "</tool_call>"), Lit::Partial);
        assert_eq!(lit("ab</tool_call>x", 2, "</tool_call>"), Lit::Match(14));
        assert_eq!(lit("ab<x", 2, "</tool_call>"), Lit::No);
    }
}
