//! A JSON prefix scanner for text that is still arriving.
//!
//! The streaming parser must tell, at every moment, a JSON value that is complete from one that
//! is still arriving and from text that can never become JSON (so prose with a stray `{` is
//! released at once instead of being held to the end). serde_json cannot say "valid so far", so
//! this walks the grammar itself. Strings may carry raw control characters (models put real
//! newlines in code arguments); [`minify`] escapes them, so what leaves here is strict JSON.

/// How far a text is from being one JSON value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prefix {
    /// A whole value ends at this byte offset.
    Complete(usize),
    /// Valid so far; more text may complete it.
    Incomplete,
    /// No continuation can make this JSON.
    Invalid,
}

/// Deep nesting is refused rather than recursed into, so hostile text cannot overflow the stack.
const MAX_DEPTH: usize = 64;

#[derive(Debug)]
enum Stop {
    Eof,
    Bad,
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Result<u8, Stop> {
        self.b.get(self.pos).copied().ok_or(Stop::Eof)
    }

    fn skip_ws(&mut self) {
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

    fn value(&mut self, depth: usize) -> Result<(), Stop> {
        if depth > MAX_DEPTH {
            return Err(Stop::Bad);
        }
        match self.peek()? {
            b'{' => self.object(depth),
            b'[' => self.array(depth),
            b'"' => self.string(),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => Err(Stop::Bad),
        }
    }

    fn object(&mut self, depth: usize) -> Result<(), Stop> {
        self.pos += 1;
        self.skip_ws();
        if self.peek()? == b'}' {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.skip_ws();
            if self.peek()? != b'"' {
                return Err(Stop::Bad);
            }
            self.string()?;
            self.skip_ws();
            self.expect(b':')?;
            self.skip_ws();
            self.value(depth + 1)?;
            self.skip_ws();
            match self.peek()? {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(Stop::Bad),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<(), Stop> {
        self.pos += 1;
        self.skip_ws();
        if self.peek()? == b']' {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.skip_ws();
            self.value(depth + 1)?;
            self.skip_ws();
            match self.peek()? {
                b',' => self.pos += 1,
                b']' => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(Stop::Bad),
            }
        }
    }

    fn string(&mut self) -> Result<(), Stop> {
        self.pos += 1;
        loop {
            match self.peek()? {
                b'"' => {
                    self.pos += 1;
                    return Ok(());
                }
                b'\\' => {
                    self.pos += 1;
                    match self.peek()? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.pos += 1,
                        b'u' => {
                            self.pos += 1;
                            for _ in 0..4 {
                                if !self.peek()?.is_ascii_hexdigit() {
                                    return Err(Stop::Bad);
                                }
                                self.pos += 1;
                            }
                        }
                        _ => return Err(Stop::Bad),
                    }
                }
                _ => self.pos += 1,
            }
        }
    }

    fn literal(&mut self, lit: &[u8]) -> Result<(), Stop> {
        for &c in lit {
            self.expect(c)?;
        }
        Ok(())
    }

    fn digits(&mut self) -> Result<(), Stop> {
        if !self.peek()?.is_ascii_digit() {
            return Err(Stop::Bad);
        }
        while self.peek()?.is_ascii_digit() {
            self.pos += 1;
        }
        Ok(())
    }

    /// A number is only known to be over when the next byte arrives, hence `Eof` at the end.
    fn number(&mut self) -> Result<(), Stop> {
        if self.peek()? == b'-' {
            self.pos += 1;
        }
        if self.peek()? == b'0' {
            self.pos += 1;
        } else {
            self.digits()?;
        }
        if self.peek()? == b'.' {
            self.pos += 1;
            self.digits()?;
        }
        if matches!(self.peek()?, b'e' | b'E') {
            self.pos += 1;
            if matches!(self.peek()?, b'+' | b'-') {
                self.pos += 1;
            }
            self.digits()?;
        }
        Ok(())
    }
}

/// Scans one JSON value at the very start of `s`.
pub(crate) fn scan_value(s: &str) -> Prefix {
    let mut c = Cursor {
        b: s.as_bytes(),
        pos: 0,
    };
    match c.value(0) {
        Ok(()) => Prefix::Complete(c.pos),
        Err(Stop::Eof) => Prefix::Incomplete,
        Err(Stop::Bad) => Prefix::Invalid,
    }
}

/// [`scan_value`], with the offset of the byte that made the text invalid (for an invalid one:
/// everything before it is a valid JSON prefix).
pub(crate) fn scan_prefix(s: &str) -> (Prefix, usize) {
    let mut c = Cursor {
        b: s.as_bytes(),
        pos: 0,
    };
    match c.value(0) {
        Ok(()) => (Prefix::Complete(c.pos), c.pos),
        Err(Stop::Eof) => (Prefix::Incomplete, c.pos),
        Err(Stop::Bad) => (Prefix::Invalid, c.pos),
    }
}

/// Drops whitespace outside strings and escapes raw control characters inside them; `s` must
/// be a complete value as found by [`scan_value`]. Key order is kept as the model wrote it.
pub(crate) fn minify(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_string = false;
    let mut escaped = false;
    for ch in s.chars() {
        if in_string {
            if escaped {
                escaped = false;
                out.push(ch);
            } else if ch == '\\' {
                escaped = true;
                out.push(ch);
            } else if ch == '"' {
                in_string = false;
                out.push(ch);
            } else if (ch as u32) < 0x20 {
                match ch {
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    _ => out.push_str(&format!("\\u{:04x}", ch as u32)),
                }
            } else {
                out.push(ch);
            }
        } else if ch == '"' {
            in_string = true;
            out.push(ch);
        } else if !ch.is_ascii_whitespace() {
            out.push(ch);
        }
    }
    out
}

/// The object a cut-off arguments text stands for, as far as its members are whole: an
/// unfinished string, literal or key is left out, and open containers are closed (the reading
/// the official clients give a partial `input_json`). `None` when it does not start an object.
pub fn close_json_prefix(text: &str) -> Option<serde_json::Value> {
    let t = text.trim_start();
    if !t.starts_with('{') {
        return None;
    }
    // `good`: where the text last stood right after an opener or a whole value, with the
    // closers needed there.
    let mut stack: Vec<u8> = Vec::new();
    let mut good = (0usize, Vec::new());
    let mut in_string = false;
    let mut escaped = false;
    let mut is_key = false;
    let mut expect_key = false;
    for (i, &c) in t.as_bytes().iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_string = false;
                if !is_key {
                    good = (i + 1, stack.clone());
                }
            }
            continue;
        }
        match c {
            b'{' | b'[' => {
                stack.push(if c == b'{' { b'}' } else { b']' });
                expect_key = c == b'{';
                good = (i + 1, stack.clone());
            }
            b'}' | b']' => {
                stack.pop();
                good = (i + 1, stack.clone());
                if stack.is_empty() {
                    break;
                }
            }
            b'"' => {
                in_string = true;
                is_key = expect_key;
                expect_key = false;
            }
            b',' => expect_key = stack.last() == Some(&b'}'),
            b'0'..=b'9' => good = (i + 1, stack.clone()),
            b'e' | b'l'
                if ["true", "false", "null"]
                    .iter()
                    .any(|l| t[..=i].ends_with(l)) =>
            {
                good = (i + 1, stack.clone())
            }
            _ => {}
        }
    }
    let (at, closers) = good;
    let mut out = t[..at].to_string();
    out.extend(closers.iter().rev().map(|&c| c as char));
    serde_json::from_str::<serde_json::Value>(&out)
        .ok()
        .filter(serde_json::Value::is_object)
}

/// The members of a minified object, keys decoded, values as JSON text.
pub(crate) fn members(s: &str) -> Option<Vec<(String, &str)>> {
    let mut c = Cursor {
        b: s.as_bytes(),
        pos: 0,
    };
    c.expect(b'{').ok()?;
    let mut out = Vec::new();
    if c.peek().ok()? == b'}' {
        return Some(out);
    }
    loop {
        let key_start = c.pos;
        if c.peek().ok()? != b'"' {
            return None;
        }
        c.string().ok()?;
        let key: String = serde_json::from_str(s.get(key_start..c.pos)?).ok()?;
        c.expect(b':').ok()?;
        let value_start = c.pos;
        c.value(1).ok()?;
        out.push((key, s.get(value_start..c.pos)?));
        match c.peek().ok()? {
            b',' => c.pos += 1,
            b'}' => return Some(out),
            _ => return None,
        }
    }
}

/// The elements of a minified array, as JSON text.
pub(crate) fn elements(s: &str) -> Option<Vec<&str>> {
    let mut c = Cursor {
        b: s.as_bytes(),
        pos: 0,
    };
    c.expect(b'[').ok()?;
    let mut out = Vec::new();
    if c.peek().ok()? == b']' {
        return Some(out);
    }
    loop {
        let start = c.pos;
        c.value(1).ok()?;
        out.push(s.get(start..c.pos)?);
        match c.peek().ok()? {
            b',' => c.pos += 1,
            b']' => return Some(out),
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_value_tells_complete_incomplete_and_invalid_apart() {
        assert_eq!(
            scan_value(r#"{"a": [1, 2.5e3, "x}"]} tail"#),
            Prefix::Complete(23)
        );
        assert_eq!(scan_value(r#"{"a": "br{ace"#), Prefix::Incomplete);
        assert_eq!(scan_value(r#"{"a": tr"#), Prefix::Incomplete);
        assert_eq!(scan_value("{curly braces}"), Prefix::Invalid);
        assert_eq!(scan_value(r#"{"a": 01}"#), Prefix::Invalid);
        assert_eq!(scan_value("[1"), Prefix::Incomplete);
    }

    #[test]
    fn cut_off_objects_close_with_their_whole_members() {
        let close = |t: &str| close_json_prefix(t).map(|v| v.to_string());
        assert_eq!(close(r#"{"a":1,"b":"Par"#).as_deref(), Some(r#"{"a":1}"#));
        assert_eq!(
            close(r#"{"a":[1,{"x":"y"},"#).as_deref(),
            Some(r#"{"a":[1,{"x":"y"}]}"#)
        );
        assert_eq!(close(r#"{"a":"q\"","b"#).as_deref(), Some(r#"{"a":"q\""}"#));
        assert_eq!(close(r#"{"a":12"#).as_deref(), Some(r#"{"a":12}"#));
        assert_eq!(
            close(r#"{"a":true,"b":"x"#).as_deref(),
            Some(r#"{"a":true}"#)
        );
        assert_eq!(close("{").as_deref(), Some("{}"));
        assert_eq!(close(r#"{"a":tr"#).as_deref(), Some("{}"));
        assert_eq!(close("[1]"), None);
    }

    #[test]
    fn deep_nesting_is_refused_not_recursed() {
        let deep = "[".repeat(10_000);
        assert_eq!(scan_value(&deep), Prefix::Invalid);
    }

    #[test]
    fn minify_keeps_order_and_escapes_raw_newlines() {
        let m = minify("{ \"z\": 1,\n \"a\": \"line1\nline2 \" }");
        assert_eq!(m, r#"{"z":1,"a":"line1\nline2 "}"#);
        assert!(serde_json::from_str::<serde_json::Value>(&m).is_ok());
    }

    #[test]
    fn members_split_nested_values() {
        let m = minify(r#"{"name": "f", "arguments": {"name": "inner", "l": [1, {"x": "}"}]}}"#);
        let got = members(&m).unwrap_or_default();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].0, "arguments");
        assert_eq!(got[1].1, r#"{"name":"inner","l":[1,{"x":"}"}]}"#);
    }
}
