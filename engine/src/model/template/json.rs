//! JSON text as Python's `json.dumps` writes it: `", "` and `": "` separators on one line,
//! or `indent` spaces per level with `","` line ends.

use serde_json::Value;

pub(super) fn to_python_json(v: &Value, indent: Option<usize>, ensure_ascii: bool) -> String {
    let mut out = String::new();
    write(v, indent, ensure_ascii, 0, &mut out);
    out
}

fn write(v: &Value, indent: Option<usize>, ascii: bool, level: usize, out: &mut String) {
    match v {
        Value::Array(items) if !items.is_empty() => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                separator(i, indent, level + 1, out);
                write(item, indent, ascii, level + 1, out);
            }
            close(indent, level, out);
            out.push(']');
        }
        Value::Object(map) if !map.is_empty() => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                separator(i, indent, level + 1, out);
                string(k, ascii, out);
                out.push_str(": ");
                write(item, indent, ascii, level + 1, out);
            }
            close(indent, level, out);
            out.push('}');
        }
        Value::String(s) => string(s, ascii, out),
        other => out.push_str(&other.to_string()),
    }
}

fn separator(i: usize, indent: Option<usize>, level: usize, out: &mut String) {
    match indent {
        Some(n) => {
            if i > 0 {
                out.push(',');
            }
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', n * level));
        }
        None if i > 0 => out.push_str(", "),
        None => {}
    }
}

fn close(indent: Option<usize>, level: usize, out: &mut String) {
    if let Some(n) = indent {
        out.push('\n');
        out.extend(std::iter::repeat_n(' ', n * level));
    }
}

fn string(s: &str, ascii: bool, out: &mut String) {
    // serde_json escapes exactly what Python does with ensure_ascii=False.
    let quoted = Value::String(s.to_string()).to_string();
    if !ascii {
        out.push_str(&quoted);
        return;
    }
    for c in quoted.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut buf = [0u16; 2];
            for unit in c.encode_utf16(&mut buf) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
}
