//! Shared test helpers: a fixed tool set, and a parse that also proves chunking invariance.

use rand::{Rng, SeedableRng};
use serde_json::json;

use super::{parse, ParseOptions, ParsedOutput, StreamEvent, StreamParser, ToolFormat};

pub(crate) fn tools() -> Vec<serde_json::Value> {
    vec![
        json!({"type": "function", "function": {"name": "get_weather", "parameters": {
            "type": "object", "properties": {
                "city": {"type": "string"}, "days": {"type": "integer"},
                "metric": {"type": "boolean"}, "opts": {"type": "object"}}}}}),
        json!({"type": "function", "function": {"name": "get_time", "parameters": {}}}),
        json!({"type": "function", "function": {"name": "run_code", "parameters": {
            "type": "object", "properties": {"code": {"type": "string"}}}}}),
    ]
}

pub(crate) fn options(format: ToolFormat) -> ParseOptions {
    ParseOptions {
        tools: tools(),
        format,
        ..ParseOptions::default()
    }
}

/// The comparable part of a result (ids are random).
pub(crate) fn shape(out: &ParsedOutput) -> (String, Vec<(String, String)>) {
    let calls = out
        .tool_calls
        .iter()
        .map(|c| (c.name.clone(), c.arguments.clone()))
        .collect();
    (out.content.clone(), calls)
}

pub(crate) fn calls(out: &ParsedOutput) -> Vec<(&str, &str)> {
    out.tool_calls
        .iter()
        .map(|c| (c.name.as_str(), c.arguments.as_str()))
        .collect()
}

/// Streams `text` in the given chunks and folds the events.
pub(crate) fn stream_chunks(
    options: &ParseOptions,
    chunks: &[&str],
) -> (ParsedOutput, Vec<StreamEvent>) {
    let mut parser = StreamParser::new(options);
    let mut events = Vec::new();
    for c in chunks {
        events.extend(parser.push(c));
    }
    events.extend(parser.finish());
    (ParsedOutput::from_events(events.clone()), events)
}

fn char_splits(text: &str) -> Vec<usize> {
    text.char_indices().map(|(i, _)| i).skip(1).collect()
}

/// Asserts that every two-way split, one-character chunks and random chunkings (fixed seed)
/// all give the whole-text result.
pub(crate) fn assert_chunking_invariant(options: &ParseOptions, text: &str) -> ParsedOutput {
    let whole = parse(text, options);
    let expect = shape(&whole);
    for at in char_splits(text) {
        let (got, _) = stream_chunks(options, &[&text[..at], &text[at..]]);
        assert_eq!(shape(&got), expect, "split at byte {at} of {text:?}");
    }
    let singles: Vec<&str> = text
        .char_indices()
        .map(|(i, c)| &text[i..i + c.len_utf8()])
        .collect();
    assert_eq!(
        shape(&stream_chunks(options, &singles).0),
        expect,
        "1-char chunks of {text:?}"
    );
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x700c);
    let bounds = char_splits(text);
    for round in 0..20 {
        let mut cuts: Vec<usize> = bounds
            .iter()
            .copied()
            .filter(|_| rng.random_bool(0.2))
            .collect();
        cuts.push(text.len());
        let mut chunks = Vec::new();
        let mut from = 0;
        for c in cuts {
            chunks.push(&text[from..c]);
            from = c;
        }
        assert_eq!(
            shape(&stream_chunks(options, &chunks).0),
            expect,
            "random round {round} of {text:?}"
        );
    }
    let mut parser = StreamParser::new(options);
    parser.push(text);
    parser.finish();
    let clean = parser.stats().failures.is_empty();
    for call in &whole.tool_calls {
        // Calls cut off or broken after they began keep a JSON prefix; all others are objects.
        let complete =
            serde_json::from_str::<serde_json::Value>(&call.arguments).is_ok_and(|v| v.is_object());
        let prefix = call.arguments.starts_with('{')
            && matches!(
                super::json::scan_value(&call.arguments),
                super::json::Prefix::Incomplete
            );
        assert!(
            complete || (!clean && prefix),
            "arguments neither an object nor a cut-off prefix: {}",
            call.arguments
        );
        assert!(
            call.id.starts_with("call_") && call.id.len() == 29,
            "{}",
            call.id
        );
    }
    assert_stream_shape(&stream_chunks(options, &singles).1);
    whole
}

/// Every call starts once (index, id, name) before any of its arguments, and ends once after.
pub(crate) fn assert_stream_shape(events: &[StreamEvent]) {
    let mut started = Vec::new();
    let mut ended = Vec::new();
    for e in events {
        match e {
            StreamEvent::ToolCallStart { index, .. } => {
                assert_eq!(*index, started.len(), "calls start in order: {events:?}");
                started.push(*index);
            }
            StreamEvent::ToolCallArgs { index, .. } => {
                assert!(
                    started.contains(index) && !ended.contains(index),
                    "{events:?}"
                )
            }
            StreamEvent::ToolCallEnd { index } => {
                assert!(
                    started.contains(index) && !ended.contains(index),
                    "{events:?}"
                );
                ended.push(*index);
            }
            StreamEvent::Content(_) => {}
        }
    }
    assert_eq!(started.len(), ended.len(), "every call ends: {events:?}");
}

/// Parses with the test tools, checking chunking invariance on the way.
pub(crate) fn parse_with(format: ToolFormat, text: &str) -> ParsedOutput {
    let opts = options(format);
    let out = assert_chunking_invariant(&opts, text);
    // Auto must find the same calls wherever a specific format does.
    if format != ToolFormat::Auto && !out.tool_calls.is_empty() {
        let auto = parse(text, &options(ToolFormat::Auto));
        assert_eq!(calls(&auto), calls(&out), "auto disagrees on {text:?}");
    }
    out
}
