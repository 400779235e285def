//! Server-sent events framing: `data: <json>\n\n`, `data: [DONE]\n\n` and `: comment\n\n`.

use bytes::Bytes;
use serde::Serialize;

/// One `data:` event carrying `value` as JSON.
pub fn data<T: Serialize>(value: &T) -> Bytes {
    // Serializing our own wire structs cannot fail; an empty object keeps the framing valid if it did.
    let json = serde_json::to_string(value).unwrap_or_else(|_| "{}".to_owned());
    Bytes::from(format!("data: {json}\n\n"))
}

/// The terminator OpenAI clients wait for.
pub fn done() -> Bytes {
    Bytes::from_static(b"data: [DONE]\n\n")
}

/// A comment line; clients ignore it, proxies see traffic.
pub fn comment(text: &str) -> Bytes {
    Bytes::from(format!(": {text}\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_framed_with_a_blank_line() {
        assert_eq!(data(&serde_json::json!({"a": 1})), "data: {\"a\":1}\n\n");
        assert_eq!(done(), "data: [DONE]\n\n");
        assert_eq!(comment("keep-alive"), ": keep-alive\n\n");
    }
}
