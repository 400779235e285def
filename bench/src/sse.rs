//! Incremental Server-Sent Events parsing for streamed chat completions: bytes arrive in arbitrary
//! chunks (a network read can split a line, even a UTF-8 character), so the parser buffers until a
//! blank line ends an event. TTFT is taken at the first chunk that carries content.

use serde_json::Value;

/// Splits a byte stream into SSE events and yields each event's `data` payload.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    data: Option<String>,
}

impl SseParser {
    /// Feeds bytes; returns the `data` payloads of every event completed by them.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<String> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line);
            self.take_line(&line, &mut out);
        }
        out
    }

    /// Flushes an event left open when the stream ends without its closing blank line.
    pub fn finish(&mut self) -> Option<String> {
        let mut out = Vec::new();
        if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            let line = String::from_utf8_lossy(&rest)
                .trim_end_matches('\r')
                .to_string();
            self.take_line(&line, &mut out);
        }
        out.extend(self.data.take());
        out.pop()
    }

    fn take_line(&mut self, line: &str, out: &mut Vec<String>) {
        if line.is_empty() {
            out.extend(self.data.take());
            return;
        }
        if line.starts_with(':') {
            return; // comment / keep-alive
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        if field == "data" {
            match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            }
        }
    }
}

/// What a streamed chat completion added up to.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct StreamSummary {
    pub content: String,
    /// Distinct tool calls seen (by `index`).
    pub tool_calls: usize,
    pub finish_reason: Option<String>,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    /// Chunks that carried content or tool-call deltas: a token count fallback without `usage`.
    pub content_chunks: u64,
    pub done: bool,
    /// A mid-stream `{"error": ...}` payload.
    pub error: Option<String>,
}

/// Outcome of one SSE `data` payload for the accumulator.
#[derive(Debug, PartialEq)]
pub enum ChunkKind {
    /// The first payload that carried generated output (content or a tool-call delta): TTFT.
    FirstOutput,
    Other,
}

impl StreamSummary {
    /// Applies one `data` payload. Errors only on JSON that is not a chat chunk at all.
    pub fn apply(&mut self, data: &str) -> Result<ChunkKind, String> {
        if data.trim() == "[DONE]" {
            self.done = true;
            return Ok(ChunkKind::Other);
        }
        let v: Value = serde_json::from_str(data).map_err(|e| format!("bad SSE JSON: {e}"))?;
        if let Some(err) = v.get("error") {
            self.error = Some(
                err.get("message")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| err.to_string()),
            );
            return Ok(ChunkKind::Other);
        }
        if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
            self.prompt_tokens = u.get("prompt_tokens").and_then(Value::as_u64);
            self.completion_tokens = u.get("completion_tokens").and_then(Value::as_u64);
        }
        let had_output = self.content_chunks > 0;
        let mut output_here = false;
        let choices = v.get("choices").and_then(Value::as_array);
        for choice in choices.into_iter().flatten() {
            if let Some(fr) = choice.get("finish_reason").and_then(Value::as_str) {
                self.finish_reason = Some(fr.to_string());
            }
            let Some(delta) = choice.get("delta") else {
                continue;
            };
            if let Some(c) = delta.get("content").and_then(Value::as_str) {
                if !c.is_empty() {
                    self.content.push_str(c);
                    output_here = true;
                }
            }
            for tc in delta
                .get("tool_calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let index = tc.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
                self.tool_calls = self.tool_calls.max(index + 1);
                output_here = true;
            }
        }
        if output_here {
            self.content_chunks += 1;
        }
        Ok(if output_here && !had_output {
            ChunkKind::FirstOutput
        } else {
            ChunkKind::Other
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = concat!(
        ": keep-alive\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Par\"}}]}\r\n\r\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"is é\"}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":3}}\n\n",
        "data: [DONE]\n\n",
    );

    fn parse_in_chunks(bytes: &[u8], size: usize) -> Vec<String> {
        let mut p = SseParser::default();
        let mut out = Vec::new();
        for chunk in bytes.chunks(size) {
            out.extend(p.feed(chunk));
        }
        out.extend(p.finish());
        out
    }

    #[test]
    fn events_are_identical_whatever_the_chunk_size() {
        let whole = parse_in_chunks(STREAM.as_bytes(), STREAM.len());
        assert_eq!(whole.len(), 6);
        assert_eq!(whole[5], "[DONE]");
        for size in 1..40 {
            assert_eq!(
                parse_in_chunks(STREAM.as_bytes(), size),
                whole,
                "chunk size {size}"
            );
        }
    }

    #[test]
    fn split_utf8_character_survives() {
        let events = parse_in_chunks(STREAM.as_bytes(), 1);
        assert!(events[2].contains("is é"));
    }

    #[test]
    fn multi_line_data_is_joined_with_newline() {
        let events = parse_in_chunks(b"data: a\ndata: b\n\n", 3);
        assert_eq!(events, vec!["a\nb".to_string()]);
    }

    #[test]
    fn unterminated_last_event_is_flushed_by_finish() {
        let mut p = SseParser::default();
        assert!(p.feed(b"data: [DONE]").is_empty());
        assert_eq!(p.finish(), Some("[DONE]".to_string()));
    }

    #[test]
    fn first_content_delta_marks_ttft_not_the_role_chunk() {
        let mut s = StreamSummary::default();
        let kinds: Vec<ChunkKind> = parse_in_chunks(STREAM.as_bytes(), 7)
            .iter()
            .map(|d| s.apply(d).unwrap())
            .collect();
        assert_eq!(kinds[0], ChunkKind::Other);
        assert_eq!(kinds[1], ChunkKind::FirstOutput);
        assert!(kinds[2..].iter().all(|k| *k == ChunkKind::Other));
        assert_eq!(s.content, "Paris é");
        assert_eq!(s.finish_reason.as_deref(), Some("stop"));
        assert_eq!((s.prompt_tokens, s.completion_tokens), (Some(9), Some(3)));
        assert_eq!(s.content_chunks, 2);
        assert!(s.done);
    }

    #[test]
    fn tool_call_deltas_count_distinct_indices() {
        let mut s = StreamSummary::default();
        let first = s
            .apply(r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"a","function":{"name":"f","arguments":""}}]}}]}"#)
            .unwrap();
        assert_eq!(first, ChunkKind::FirstOutput);
        s.apply(
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{}"}}]}}]}"#,
        )
        .unwrap();
        s.apply(r#"{"choices":[{"delta":{"tool_calls":[{"index":1,"id":"b","function":{"name":"g"}}]}}]}"#)
            .unwrap();
        assert_eq!(s.tool_calls, 2);
    }

    #[test]
    fn mid_stream_error_is_recorded_and_garbage_is_rejected() {
        let mut s = StreamSummary::default();
        s.apply(r#"{"error":{"message":"boom","type":"server_error"}}"#)
            .unwrap();
        assert_eq!(s.error.as_deref(), Some("boom"));
        assert!(s.apply("not json").is_err());
    }
}
