//! What the XML-parameter formats (glm45, minimax_m2) share: values typed by the tool's schema,
//! the arguments object built parameter by parameter, and string values streamed as written.
//!
//! A raw value loses one leading and one trailing newline (models put the value on its own
//! line); while a string value is still arriving, a last newline is held back because it may be
//! that trailing one, so what is sent is always a prefix of the final value.

use super::qwen3_coder::typed_value;
use crate::tool_parser::partial::string_body;
use crate::tool_parser::tools::ToolSet;

/// The arguments object of one call, as far as it is written.
pub(crate) struct ArgsBuilder<'a> {
    tools: &'a ToolSet,
    function: &'a str,
    text: String,
    params: usize,
}

impl<'a> ArgsBuilder<'a> {
    pub fn new(tools: &'a ToolSet, function: &'a str) -> Self {
        Self {
            tools,
            function,
            text: String::from("{"),
            params: 0,
        }
    }

    fn head(&self, key: &str) -> String {
        let mut head = String::from(if self.params > 0 { "," } else { "" });
        head.push_str(&serde_json::Value::String(key.to_string()).to_string());
        head.push(':');
        head
    }

    /// A parameter whose value is complete.
    pub fn complete(&mut self, key: &str, raw: &str) {
        let head = self.head(key);
        self.text.push_str(&head);
        let t = self.tools.param_type(self.function, key);
        self.text.push_str(&typed_value(strip_newlines(raw), t));
        self.params += 1;
    }

    /// The arguments so far with a parameter still being written: a string (or untyped) value
    /// streams, a typed one waits (key and all) until it is complete.
    pub fn in_progress(&self, key: &str, raw_so_far: &str) -> String {
        let mut out = self.text.clone();
        if matches!(
            self.tools.param_type(self.function, key),
            None | Some("string")
        ) {
            let raw = raw_so_far.strip_prefix('\n').unwrap_or(raw_so_far);
            let raw = raw.strip_suffix('\n').unwrap_or(raw);
            out.push_str(&self.head(key));
            out.push('"');
            out.push_str(&string_body(raw));
        }
        out
    }

    /// The arguments so far, between parameters.
    pub fn so_far(&self) -> String {
        self.text.clone()
    }

    /// The whole object.
    pub fn finish(mut self) -> String {
        self.text.push('}');
        self.text
    }
}

fn strip_newlines(raw: &str) -> &str {
    let raw = raw.strip_prefix('\n').unwrap_or(raw);
    raw.strip_suffix('\n').unwrap_or(raw)
}

/// A value at `text[pos..]` that ends at `close`: `Ok(end)` once the close tag is there, else
/// `Err(safe)`, the end of what is surely value (a possible start of the tag is held back).
pub(crate) fn value_until(text: &str, pos: usize, close: &str) -> Result<usize, usize> {
    let rest = &text[pos..];
    if let Some(i) = rest.find(close) {
        return Ok(pos + i);
    }
    let held = (1..close.len().min(rest.len() + 1))
        .rev()
        .find(|&n| rest.ends_with(&close[..n]))
        .unwrap_or(0);
    Err(text.len() - held)
}
