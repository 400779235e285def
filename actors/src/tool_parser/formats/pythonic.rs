//! Pythonic call lists (Llama 3.2 / 4 and others): `[get_weather(city="SF"), now()]`.
//!
//! Keyword arguments only (positional ones have no parameter name to map to). Values are
//! Python literals: strings with either quote, numbers, `True`/`False`/`None`, lists, tuples
//! and dicts, nested; they are written straight to JSON text, keeping the model's order.

use crate::tool_parser::scan::{lit, skip_ws, Lit, RawCall, Scan, ScanCtx};

const MAX_DEPTH: usize = 64;

enum Stop {
    Eof,
    Bad,
}

/// Llama 4 wraps its list: `<|python_start|>[…]<|python_end|>`; the wrappers are markup.
pub(crate) const PYTHON_START: &str = "<|python_start|>";
const PYTHON_END: &str = "<|python_end|>";

pub(crate) fn scan(text: &str, ctx: &ScanCtx) -> Scan {
    let wrapped = text.starts_with(PYTHON_START);
    let (start, miss) = if wrapped {
        let skip = PYTHON_START.len();
        (skip_ws(text, skip), Scan::Failed { skip })
    } else {
        (0, Scan::NotCall { skip: 1 })
    };
    let mut p = Py {
        s: text,
        b: text.as_bytes(),
        pos: start,
    };
    match p.call_list() {
        Ok(calls) if wrapped => match lit(text, skip_ws(text, p.pos), PYTHON_END) {
            Lit::Match(len) => ctx.verdict(calls, len),
            Lit::Partial if !ctx.eof => Scan::NeedMore,
            _ => ctx.verdict(calls, p.pos),
        },
        Ok(calls) => ctx.verdict(calls, p.pos),
        Err(Stop::Eof) => ctx.more_or(miss),
        Err(Stop::Bad) => miss,
    }
}

/// A whole Python literal (`{'k': 'v'}`, `[1, True, None]`) as minified JSON; `None` when
/// the text is not exactly one literal.
pub(crate) fn python_literal(text: &str) -> Option<String> {
    let mut p = Py {
        s: text,
        b: text.as_bytes(),
        pos: 0,
    };
    p.ws();
    let mut out = String::new();
    p.value(&mut out, 0).ok()?;
    p.ws();
    (p.pos == text.len()).then_some(out)
}

struct Py<'a> {
    s: &'a str,
    b: &'a [u8],
    pos: usize,
}

impl Py<'_> {
    fn peek(&self) -> Result<u8, Stop> {
        self.b.get(self.pos).copied().ok_or(Stop::Eof)
    }

    fn ws(&mut self) {
        while matches!(self.b.get(self.pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), Stop> {
        if self.peek()? == c {
            self.pos += 1;
            Ok(())
        } else {
            Err(Stop::Bad)
        }
    }

    /// An identifier, dotted when `dotted`; it is only over once a byte follows it.
    fn ident(&mut self, dotted: bool) -> Result<&str, Stop> {
        let start = self.pos;
        let c = self.peek()?;
        if !(c.is_ascii_alphabetic() || c == b'_') {
            return Err(Stop::Bad);
        }
        while {
            let c = self.peek()?;
            c.is_ascii_alphanumeric() || c == b'_' || (dotted && c == b'.')
        } {
            self.pos += 1;
        }
        Ok(&self.s[start..self.pos])
    }

    fn call_list(&mut self) -> Result<Vec<RawCall>, Stop> {
        self.expect(b'[')?;
        let mut calls = Vec::new();
        loop {
            self.ws();
            if self.peek()? == b']' && !calls.is_empty() {
                self.pos += 1;
                return Ok(calls);
            }
            calls.push(self.call()?);
            self.ws();
            match self.peek()? {
                b',' => self.pos += 1,
                b']' => {
                    self.pos += 1;
                    return Ok(calls);
                }
                _ => return Err(Stop::Bad),
            }
        }
    }

    fn call(&mut self) -> Result<RawCall, Stop> {
        let name = self.ident(true)?.to_string();
        self.ws();
        self.expect(b'(')?;
        let mut arguments = String::from("{");
        loop {
            self.ws();
            if self.peek()? == b')' {
                self.pos += 1;
                break;
            }
            let key = self.ident(false)?.to_string();
            self.ws();
            self.expect(b'=')?;
            self.ws();
            if arguments.len() > 1 {
                arguments.push(',');
            }
            arguments.push_str(&serde_json::Value::String(key).to_string());
            arguments.push(':');
            self.value(&mut arguments, 0)?;
            self.ws();
            match self.peek()? {
                b',' => self.pos += 1,
                b')' => {
                    self.pos += 1;
                    break;
                }
                _ => return Err(Stop::Bad),
            }
        }
        arguments.push('}');
        Ok(RawCall { name, arguments })
    }

    fn value(&mut self, out: &mut String, depth: usize) -> Result<(), Stop> {
        if depth > MAX_DEPTH {
            return Err(Stop::Bad);
        }
        match self.peek()? {
            b'"' | b'\'' => {
                let s = self.string()?;
                out.push_str(&serde_json::Value::String(s).to_string());
            }
            b'[' => self.sequence(b']', out, depth)?,
            b'(' => self.sequence(b')', out, depth)?,
            b'{' => self.dict(out, depth)?,
            b'-' | b'+' | b'.' | b'0'..=b'9' => self.number(out)?,
            _ => {
                let word = match self.ident(false)? {
                    "True" | "true" => "true",
                    "False" | "false" => "false",
                    "None" | "null" => "null",
                    _ => return Err(Stop::Bad),
                };
                out.push_str(word);
            }
        }
        Ok(())
    }

    fn sequence(&mut self, close: u8, out: &mut String, depth: usize) -> Result<(), Stop> {
        self.pos += 1;
        out.push('[');
        let mut first = true;
        loop {
            self.ws();
            if self.peek()? == close {
                self.pos += 1;
                out.push(']');
                return Ok(());
            }
            if !first {
                out.push(',');
            }
            first = false;
            self.value(out, depth + 1)?;
            self.ws();
            match self.peek()? {
                b',' => self.pos += 1,
                c if c == close => {}
                _ => return Err(Stop::Bad),
            }
        }
    }

    fn dict(&mut self, out: &mut String, depth: usize) -> Result<(), Stop> {
        self.pos += 1;
        out.push('{');
        let mut first = true;
        loop {
            self.ws();
            if self.peek()? == b'}' {
                self.pos += 1;
                out.push('}');
                return Ok(());
            }
            if !first {
                out.push(',');
            }
            first = false;
            let mut key = String::new();
            self.value(&mut key, depth + 1)?;
            if key.starts_with('"') {
                out.push_str(&key);
            } else {
                // JSON keys are strings; Python's `{1: "a"}` becomes `{"1": "a"}`.
                out.push_str(&serde_json::Value::String(key).to_string());
            }
            self.ws();
            self.expect(b':')?;
            self.ws();
            out.push(':');
            self.value(out, depth + 1)?;
            self.ws();
            match self.peek()? {
                b',' => self.pos += 1,
                b'}' => {}
                _ => return Err(Stop::Bad),
            }
        }
    }

    fn number(&mut self, out: &mut String) -> Result<(), Stop> {
        let start = self.pos;
        while matches!(
            self.peek()?,
            b'-' | b'+' | b'.' | b'_' | b'e' | b'E' | b'0'..=b'9'
        ) {
            self.pos += 1;
        }
        let t = self.s[start..self.pos].replace('_', "");
        let t = t.strip_prefix('+').unwrap_or(&t);
        if let Ok(n) = t.parse::<i64>() {
            out.push_str(&n.to_string());
        } else {
            let n = t
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .ok_or(Stop::Bad)?;
            out.push_str(&n.to_string());
        }
        Ok(())
    }

    fn string(&mut self) -> Result<String, Stop> {
        let quote = self.peek()?;
        self.pos += 1;
        let mut out = String::new();
        loop {
            let rest = &self.s[self.pos..];
            let Some(ch) = rest.chars().next() else {
                return Err(Stop::Eof);
            };
            self.pos += ch.len_utf8();
            match ch {
                c if c as u32 == quote as u32 => return Ok(out),
                '\\' => {
                    let e = self.peek()?;
                    self.pos += 1;
                    match e {
                        b'n' => out.push('\n'),
                        b't' => out.push('\t'),
                        b'r' => out.push('\r'),
                        b'0' => out.push('\0'),
                        b'\\' | b'\'' | b'"' => out.push(e as char),
                        b'u' | b'x' => {
                            let n = if e == b'u' { 4 } else { 2 };
                            let hex = self.s.get(self.pos..self.pos + n).ok_or(Stop::Eof)?;
                            let code = u32::from_str_radix(hex, 16).map_err(|_| Stop::Bad)?;
                            out.push(char::from_u32(code).ok_or(Stop::Bad)?);
                            self.pos += n;
                        }
                        _ => {
                            out.push('\\');
                            self.pos -= 1;
                        }
                    }
                }
                '\n' => return Err(Stop::Bad),
                c => out.push(c),
            }
        }
    }
}

#[cfg(test)]
mod wrapper_tests {
    use crate::tool_parser::testutil::{calls, parse_with};
    use crate::tool_parser::ToolFormat;

    #[test]
    fn python_start_wrappers_and_prose_around_are_handled() {
        let text = "Let me look.\n<|python_start|>[get_weather(city=\"SF\"), get_time()]<|python_end|>\nOne moment.";
        let out = parse_with(ToolFormat::Pythonic, text);
        assert_eq!(
            calls(&out),
            [("get_weather", r#"{"city":"SF"}"#), ("get_time", "{}")]
        );
        assert_eq!(out.content, "Let me look.\nOne moment.");
    }
}

#[cfg(test)]
mod tests {
    use crate::tool_parser::testutil::{calls, parse_with};
    use crate::tool_parser::ToolFormat;

    #[test]
    fn pythonic_list_with_literals_and_nesting() {
        let text = "[get_weather(city=\"SF\", days=3, metric=True, opts={'a': [1, 2.5, None], 'b': (1, 'x')}), get_time()]";
        let out = parse_with(ToolFormat::Pythonic, text);
        assert_eq!(
            calls(&out),
            [
                (
                    "get_weather",
                    r#"{"city":"SF","days":3,"metric":true,"opts":{"a":[1,2.5,null],"b":[1,"x"]}}"#
                ),
                ("get_time", "{}")
            ]
        );
        assert_eq!(out.content, "");
    }

    #[test]
    fn pythonic_strings_keep_brackets_quotes_and_unicode() {
        let text = "Voilà: [run_code(code='print(\"[x]\")\\n# été ☀')]";
        let out = parse_with(ToolFormat::Pythonic, text);
        assert_eq!(
            calls(&out),
            [("run_code", "{\"code\":\"print(\\\"[x]\\\")\\n# été ☀\"}")]
        );
        assert_eq!(out.content, "Voilà:");
    }

    #[test]
    fn python_literals_become_json() {
        assert_eq!(
            super::python_literal(" {'key': 'value', 'n': [1, True, None]} ").as_deref(),
            Some(r#"{"key":"value","n":[1,true,null]}"#)
        );
        assert_eq!(super::python_literal("{'a': 1} trailing"), None);
        assert_eq!(super::python_literal("not a literal"), None);
    }

    #[test]
    fn brackets_in_prose_are_content() {
        let text = "See [1] and [the docs](http://x) or [get_time] [get_time(1)]";
        let out = parse_with(ToolFormat::Pythonic, text);
        assert!(out.tool_calls.is_empty());
        assert_eq!(out.content, text);
    }

    #[test]
    fn truncated_pythonic_list_is_content() {
        let text = "[get_weather(city=\"S";
        let out = parse_with(ToolFormat::Pythonic, text);
        assert!(out.tool_calls.is_empty());
        assert_eq!(out.content, text);
    }
}
