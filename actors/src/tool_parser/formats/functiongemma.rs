//! FunctionGemma: `<start_function_call>call:NAME{key:<escape>text<escape>,n:3}<end_function_call>`.
//!
//! Strings are wrapped in `<escape>`; numbers, booleans and `null` are bare; objects `{…}` and
//! lists `[…]` nest with the same syntax. Calls are sent whole once complete (the arguments are
//! not JSON as written, and a bare value is only known to be over at the next delimiter).

use crate::tool_parser::scan::{lit, valid_name, Lit, RawCall, Scan, ScanCtx};

pub(crate) const OPEN: &str = "<start_function_call>";
const CLOSE: &str = "<end_function_call>";
const ESCAPE: &str = "<escape>";
const MAX_DEPTH: usize = 32;

enum Stop {
    More,
    Bad,
}

struct Reader<'a> {
    text: &'a str,
    pos: usize,
}

impl Reader<'_> {
    fn peek(&self) -> Result<u8, Stop> {
        self.text
            .as_bytes()
            .get(self.pos)
            .copied()
            .ok_or(Stop::More)
    }

    /// One value as JSON text.
    fn value(&mut self, depth: usize) -> Result<String, Stop> {
        if depth > MAX_DEPTH {
            return Err(Stop::Bad);
        }
        match self.peek()? {
            b'{' => self.object(depth),
            b'[' => self.list(depth),
            b'<' => match lit(self.text, self.pos, ESCAPE) {
                Lit::Match(p) => {
                    let Some(i) = self.text[p..].find(ESCAPE) else {
                        return Err(Stop::More);
                    };
                    self.pos = p + i + ESCAPE.len();
                    Ok(serde_json::Value::String(self.text[p..p + i].to_string()).to_string())
                }
                Lit::Partial => Err(Stop::More),
                Lit::No => Err(Stop::Bad),
            },
            _ => {
                let rest = &self.text[self.pos..];
                let Some(n) = rest.find([',', '}', ']']) else {
                    return Err(Stop::More);
                };
                let raw = rest[..n].trim();
                self.pos += n;
                Ok(match serde_json::from_str::<serde_json::Value>(raw) {
                    Ok(v) if !v.is_object() && !v.is_array() => v.to_string(),
                    _ => serde_json::Value::String(raw.to_string()).to_string(),
                })
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<String, Stop> {
        self.pos += 1;
        let mut out = String::from("{");
        if self.peek()? == b'}' {
            self.pos += 1;
            return Ok("{}".into());
        }
        loop {
            let rest = &self.text[self.pos..];
            let Some(colon) = rest.find(':') else {
                return Err(if rest.contains(['}', '<']) {
                    Stop::Bad
                } else {
                    Stop::More
                });
            };
            let key = rest[..colon].trim();
            if key.is_empty() || key.contains(['{', '}', ',', '<']) {
                return Err(Stop::Bad);
            }
            self.pos += colon + 1;
            out.push_str(&serde_json::Value::String(key.to_string()).to_string());
            out.push(':');
            out.push_str(&self.value(depth + 1)?);
            match self.peek()? {
                b',' => {
                    self.pos += 1;
                    out.push(',');
                }
                b'}' => {
                    self.pos += 1;
                    out.push('}');
                    return Ok(out);
                }
                _ => return Err(Stop::Bad),
            }
        }
    }

    fn list(&mut self, depth: usize) -> Result<String, Stop> {
        self.pos += 1;
        let mut out = String::from("[");
        if self.peek()? == b']' {
            self.pos += 1;
            return Ok("[]".into());
        }
        loop {
            out.push_str(&self.value(depth + 1)?);
            match self.peek()? {
                b',' => {
                    self.pos += 1;
                    out.push(',');
                }
                b']' => {
                    self.pos += 1;
                    out.push(']');
                    return Ok(out);
                }
                _ => return Err(Stop::Bad),
            }
        }
    }
}

pub(crate) fn scan(text: &str, ctx: &ScanCtx) -> Scan {
    let fail = Scan::Failed { skip: OPEN.len() };
    let pos = match lit(text, OPEN.len(), "call:") {
        Lit::Match(p) => p,
        Lit::Partial => return ctx.more_or(fail),
        Lit::No => return fail,
    };
    let Some(brace) = text[pos..].find('{') else {
        return if text.len() - pos > 256 {
            fail
        } else {
            ctx.more_or(fail)
        };
    };
    let name = text[pos..pos + brace].trim();
    if !valid_name(name) {
        return fail;
    }
    let mut r = Reader {
        text,
        pos: pos + brace,
    };
    let arguments = match r.object(0) {
        Ok(a) => a,
        Err(Stop::More) => return ctx.more_or(fail),
        Err(Stop::Bad) => return fail,
    };
    let len = match lit(text, r.pos, CLOSE) {
        Lit::Match(len) => len,
        Lit::Partial if ctx.eof => text.len(),
        Lit::Partial => return Scan::NeedMore,
        Lit::No => return fail,
    };
    ctx.verdict(
        vec![RawCall {
            name: name.to_string(),
            arguments,
        }],
        len,
    )
}

#[cfg(test)]
mod tests {
    use crate::tool_parser::testutil::{calls, parse_with};
    use crate::tool_parser::ToolFormat;

    #[test]
    fn functiongemma_escaped_strings_bare_numbers_and_nesting() {
        let text = "<start_function_call>call:get_weather{city:<escape>New York, NY<escape>,days:3,metric:true,opts:{tags:[<escape>a<escape>,2]}}<end_function_call>";
        let out = parse_with(ToolFormat::Functiongemma, text);
        assert_eq!(
            calls(&out),
            [(
                "get_weather",
                r#"{"city":"New York, NY","days":3,"metric":true,"opts":{"tags":["a",2]}}"#
            )]
        );
        assert_eq!(out.content, "");
    }

    #[test]
    fn functiongemma_truncated_call_is_content() {
        let text = "<start_function_call>call:get_weather{city:<escape>Par";
        let out = parse_with(ToolFormat::Functiongemma, text);
        assert!(out.tool_calls.is_empty());
        assert_eq!(out.content, text);
    }
}
