use std::str::FromStr;

use serde_json::{json, Value};
use tokenizers::Tokenizer;

use super::*;

/// GPT-2's reversible byte → printable char table.
fn byte_char(b: u8) -> char {
    let printable = |b: u8| (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
    if printable(b) {
        return char::from(b);
    }
    let shift = (0..b).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(256 + shift).unwrap_or('?')
}

fn byte_level_str(s: &str) -> String {
    s.bytes().map(byte_char).collect()
}

fn tokenizer_from(model: Value, rest: Value) -> Tokenizer {
    let mut doc = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": null, "post_processor": null, "decoder": null,
    });
    if let (Some(d), Some(r)) = (doc.as_object_mut(), rest.as_object()) {
        d.extend(r.clone());
        d.insert("model".into(), model);
    }
    Tokenizer::from_str(&doc.to_string()).expect("test tokenizer parses")
}

fn bpe_model(vocab: &[String], merges: &[(String, String)], byte_fallback: bool) -> Value {
    let vocab: serde_json::Map<String, Value> = vocab
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), json!(i)))
        .collect();
    let merges: Vec<String> = merges.iter().map(|(a, b)| format!("{a} {b}")).collect();
    json!({
        "type": "BPE", "dropout": null,
        "unk_token": if byte_fallback { json!("<unk>") } else { Value::Null },
        "continuing_subword_prefix": null, "end_of_word_suffix": null,
        "fuse_unk": byte_fallback, "byte_fallback": byte_fallback, "ignore_merges": false,
        "vocab": vocab, "merges": merges,
    })
}

/// Adds `merges` (given as plain text pairs) and their results to `vocab`.
fn with_merges(
    vocab: &mut Vec<String>,
    pairs: &[(&str, &str)],
    map: impl Fn(&str) -> String,
) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| {
            let (a, b) = (map(a), map(b));
            vocab.push(format!("{a}{b}"));
            (a, b)
        })
        .collect()
}

/// GPT-2/Qwen/SmolLM2 style: byte-level BPE with a special `<|im_end|>`.
fn byte_level_tokenizer() -> Tokenizer {
    let mut vocab: Vec<String> = (0..=255u8).map(|b| byte_char(b).to_string()).collect();
    let merges = with_merges(
        &mut vocab,
        &[
            (" ", "w"),
            ("h", "e"),
            ("l", "l"),
            ("he", "ll"),
            ("hell", "o"),
            (" w", "o"),
            ("\u{f0}", "\u{9f}"),
        ],
        |s| {
            // Two pairs name raw bytes (the first half of a 4-byte emoji).
            if s == "\u{f0}" || s == "\u{9f}" {
                byte_char(s.chars().next().map_or(0, |c| c as u32 as u8)).to_string()
            } else {
                byte_level_str(s)
            }
        },
    );
    let im_end = vocab.len();
    vocab.push("<|im_end|>".into());
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    tokenizer_from(
        bpe_model(&vocab, &merges, false),
        json!({
            "added_tokens": [{"id": im_end, "content": "<|im_end|>", "single_word": false,
                "lstrip": false, "rstrip": false, "normalized": false, "special": true}],
            "pre_tokenizer": byte_level, "decoder": byte_level,
        }),
    )
}

/// SentencePiece-converted vocabulary (Llama style): `▁` for spaces, `<0xNN>` byte fallback.
fn sentencepiece_vocab() -> (Vec<String>, Vec<(String, String)>) {
    let mut vocab: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    vocab.extend((0..=255u8).map(|b| format!("<0x{b:02X}>")));
    vocab.push("▁".into());
    vocab.extend(
        ('a'..='z')
            .chain('A'..='Z')
            .chain('0'..='9')
            .chain(".,!?'\n".chars())
            .map(String::from),
    );
    let merges = with_merges(
        &mut vocab,
        &[
            ("▁", "t"),
            ("h", "e"),
            ("▁t", "he"),
            ("▁", "H"),
            ("l", "l"),
            ("▁", "w"),
            ("o", "r"),
        ],
        str::to_owned,
    );
    (vocab, merges)
}

fn special_tokens_json() -> Value {
    json!(["<unk>", "<s>", "</s>"]
        .iter()
        .enumerate()
        .map(
            |(i, t)| json!({"id": i, "content": t, "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true})
        )
        .collect::<Vec<_>>())
}

/// Llama tokenizer.json: normalizer prepends `▁` and maps spaces; decoder strips one space.
fn llama_tokenizer() -> Tokenizer {
    let (vocab, merges) = sentencepiece_vocab();
    tokenizer_from(
        bpe_model(&vocab, &merges, true),
        json!({
            "added_tokens": special_tokens_json(),
            "normalizer": {"type": "Sequence", "normalizers": [
                {"type": "Prepend", "prepend": "▁"},
                {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
            "decoder": {"type": "Sequence", "decoders": [
                {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
                {"type": "ByteFallback"}, {"type": "Fuse"},
                {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        }),
    )
}

/// Newer SentencePiece conversions: `Metaspace` pre-tokenizer and decoder.
fn metaspace_tokenizer() -> Tokenizer {
    let (vocab, merges) = sentencepiece_vocab();
    let metaspace =
        json!({"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false});
    tokenizer_from(
        bpe_model(&vocab, &merges, true),
        json!({
            "added_tokens": special_tokens_json(),
            "pre_tokenizer": metaspace,
            "decoder": {"type": "Sequence", "decoders": [{"type": "ByteFallback"}, metaspace]},
        }),
    )
}

fn encode(tok: &Tokenizer, text: &str) -> Vec<u32> {
    tok.encode(text, false)
        .expect("test text encodes")
        .get_ids()
        .to_vec()
}

/// Streams `ids`; returns every push's output and the `finish` remainder.
fn stream(tok: &Tokenizer, ids: &[u32]) -> (Vec<Option<String>>, String) {
    let mut d = IncrementalDecoder::new(tok);
    let pushes = ids
        .iter()
        .map(|&id| d.push(id).expect("decode works"))
        .collect();
    (pushes, d.finish().expect("decode works"))
}

const TEXTS: &[&str] = &[
    "hello world",
    "Hello world, the hello!",
    "  two leading spaces",
    "emoji 🙂 in the middle",
    "🙂🙃 back to back🙂",
    "naïve café",
    "日本語のテキスト",
    "trailing space ",
    "a\nnew line\n\n",
    "x",
    "",
];

fn assert_stream_equals_full_decode(tok: &Tokenizer) {
    for text in TEXTS {
        let ids = encode(tok, text);
        let (pushes, rest) = stream(tok, &ids);
        let joined: String = pushes
            .iter()
            .flatten()
            .map(String::as_str)
            .chain([rest.as_str()])
            .collect();
        let full = tok.decode(&ids, true).expect("decode works");
        assert_eq!(
            joined, full,
            "text {text:?}, ids {ids:?}, pushes {pushes:?}"
        );
        assert!(
            !pushes.iter().flatten().any(|p| p.contains('\u{FFFD}')),
            "{pushes:?}"
        );
    }
}

#[test]
fn byte_level_stream_concatenates_to_the_full_decode() {
    let tok = byte_level_tokenizer();
    assert_stream_equals_full_decode(&tok);
    assert_eq!(
        tok.decode(&encode(&tok, "hello world"), true)
            .ok()
            .as_deref(),
        Some("hello world")
    );
}

#[test]
fn llama_sentencepiece_stream_concatenates_to_the_full_decode() {
    let tok = llama_tokenizer();
    assert_stream_equals_full_decode(&tok);
    // The tokenizer really splits words on `▁` and drops the first space in a decode.
    assert_eq!(
        tok.decode(&encode(&tok, "the world"), true).ok().as_deref(),
        Some("the world")
    );
}

#[test]
fn metaspace_stream_concatenates_to_the_full_decode() {
    assert_stream_equals_full_decode(&metaspace_tokenizer());
}

#[test]
fn emoji_split_across_byte_tokens_is_emitted_once_and_whole() {
    for tok in [
        byte_level_tokenizer(),
        llama_tokenizer(),
        metaspace_tokenizer(),
    ] {
        let prefix = encode(&tok, "a");
        let ids = encode(&tok, "a🙂");
        assert!(
            ids.len() >= prefix.len() + 2,
            "emoji must span tokens: {ids:?}"
        );
        let (pushes, rest) = stream(&tok, &ids);
        let emoji_pushes: Vec<&String> = pushes[prefix.len()..].iter().flatten().collect();
        assert_eq!(emoji_pushes.len(), 1, "{pushes:?}");
        assert!(emoji_pushes[0].ends_with('🙂'));
        assert!(
            pushes.last().is_some_and(Option::is_some),
            "emitted on its last byte"
        );
        assert_eq!(rest, "");
    }
}

#[test]
fn sentencepiece_words_keep_their_spaces_when_streamed() {
    let tok = llama_tokenizer();
    let ids = encode(&tok, "the world the");
    let (pushes, _) = stream(&tok, &ids);
    let emitted: Vec<String> = pushes.into_iter().flatten().collect();
    assert_eq!(emitted.first().map(String::as_str), Some("the"));
    assert_eq!(emitted.concat(), "the world the");
    assert!(emitted.iter().skip(1).any(|p| p.starts_with(' ')));
}

#[test]
fn special_tokens_are_skipped() {
    let tok = byte_level_tokenizer();
    let im_end = tok.token_to_id("<|im_end|>").expect("special token exists");
    let mut ids = encode(&tok, "hello");
    ids.push(im_end);
    ids.extend(encode(&tok, " world"));
    let (pushes, rest) = stream(&tok, &ids);
    let joined: String = pushes.into_iter().flatten().collect::<String>() + &rest;
    assert_eq!(joined, "hello world");
}

#[test]
fn incomplete_character_at_the_end_is_released_by_finish() {
    let tok = byte_level_tokenizer();
    let ids = encode(&tok, "ok🙂");
    // Cut inside the emoji: the tail never completes.
    let (pushes, rest) = stream(&tok, &ids[..ids.len() - 1]);
    assert_eq!(pushes.into_iter().flatten().collect::<String>(), "ok");
    assert!(rest.contains('\u{FFFD}'));
}

#[test]
fn window_stays_short_on_long_outputs() {
    let tok = llama_tokenizer();
    let ids = encode(&tok, &"the world, hello! ".repeat(200));
    let mut d = IncrementalDecoder::new(Arc::new(tok));
    let mut longest = 0;
    for id in ids {
        d.push(id).expect("decode works");
        longest = longest.max(d.window_len());
    }
    assert!(longest <= 4, "window grew to {longest}");
}
