//! Tokenizers built from tiny GGUF vocabularies the tests write themselves.

use super::*;
use crate::model::gguf::testutil::Kv;

/// GPT-2's byte-to-character table: printable Latin-1 bytes stand for themselves, the rest
/// are shifted past 255 in order.
fn byte_chars() -> Vec<String> {
    let mut n = 0;
    (0u32..256)
        .map(|b| {
            let printable = (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
            let c = if printable {
                b
            } else {
                n += 1;
                255 + n
            };
            char::from_u32(c).map(String::from).unwrap_or_default()
        })
        .collect()
}

const CHATML: &str =
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}";

/// A byte-level vocabulary: the 256 byte characters, a few merges, ChatML control tokens and a
/// user-defined `<tool_call>`.
fn byte_level_gguf(pre: &str) -> tempfile::NamedTempFile {
    let mut tokens = byte_chars();
    let merges = ["Ġ h", "Ġh i", "1 2", "e l", "el l"];
    for m in merges {
        tokens.push(m.replace(' ', ""));
    }
    tokens.extend(["<|im_start|>", "<|im_end|>", "<tool_call>"].map(String::from));
    let mut types = vec![1; tokens.len()];
    let n = types.len();
    types[n - 3] = 3;
    types[n - 2] = 3;
    types[n - 1] = 4;
    let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
    Kv::default()
        .str("tokenizer.ggml.model", "gpt2")
        .str("tokenizer.ggml.pre", pre)
        .strs("tokenizer.ggml.tokens", &tokens)
        .i32s("tokenizer.ggml.token_type", &types)
        .strs("tokenizer.ggml.merges", &merges)
        .u32("tokenizer.ggml.bos_token_id", (n - 3) as u32)
        .u32("tokenizer.ggml.eos_token_id", (n - 2) as u32)
        .str("tokenizer.chat_template", CHATML)
        .write()
}

fn load(f: &tempfile::NamedTempFile) -> TokenizerBundle {
    let g = GgufFile::open(f.path()).expect("open gguf");
    TokenizerBundle::from_gguf(&g).expect("tokenizer")
}

const SAMPLES: &[&str] = &[
    "hello world",
    "Numbers 1234567890 and 3.14",
    "naïve café, Straße, 日本語のテキスト",
    "emoji 😀🎉👍🏽 done",
    "fn main() {\n    println!(\"hi\\t{}\", x);\n}\n",
    "  leading and trailing  ",
];

#[test]
fn byte_level_round_trips_any_text() {
    for pre in ["smollm", "qwen2", "llama-bpe", "default"] {
        let b = load(&byte_level_gguf(pre));
        for s in SAMPLES {
            let ids = b.encode(s, false).expect("encode");
            assert_eq!(b.decode(&ids, false).expect("decode"), *s, "pre {pre}");
        }
    }
}

#[test]
fn byte_level_applies_merges() {
    let b = load(&byte_level_gguf("default"));
    let ids = b.encode(" hi", false).expect("encode");
    assert_eq!(ids.len(), 1);
    assert_eq!(b.tokenizer.id_to_token(ids[0]).as_deref(), Some("Ġhi"));
}

#[test]
fn smollm_splits_digits_one_by_one() {
    let b = load(&byte_level_gguf("smollm"));
    assert_eq!(b.encode("12", false).expect("encode").len(), 2);
    // Without the digit split the merge "1 2" applies.
    let d = load(&byte_level_gguf("default"));
    assert_eq!(d.encode("12", false).expect("encode").len(), 1);
}

#[test]
fn special_and_user_defined_tokens_are_single_ids() {
    let b = load(&byte_level_gguf("qwen2"));
    let n = b.tokenizer.get_vocab_size(true) as u32;
    let ids = b
        .encode("<|im_start|>user\nhi<|im_end|><tool_call>", false)
        .expect("encode");
    assert_eq!(ids.first(), Some(&(n - 3)));
    assert!(ids.contains(&(n - 2)));
    assert_eq!(ids.last(), Some(&(n - 1)));
    // Control tokens are dropped when skipping specials; the user-defined marker stays.
    let text = b.decode(&ids, true).expect("decode");
    assert_eq!(text, "user\nhi<tool_call>");
}

#[test]
fn gguf_bundle_carries_template_and_end_tokens() {
    let b = load(&byte_level_gguf("smollm"));
    assert_eq!(b.bos_token.as_deref(), Some("<|im_start|>"));
    assert_eq!(b.eos_token.as_deref(), Some("<|im_end|>"));
    let n = b.tokenizer.get_vocab_size(true) as u32;
    assert_eq!(b.eos_token_ids, vec![n - 2]);
    assert_eq!(b.chat_template.as_deref(), Some(CHATML));
    assert!(!b.add_bos, "gpt2 vocabularies do not add BOS unless asked");
    assert_eq!(b.template_for(true), Some(CHATML));
}

/// A SentencePiece vocabulary without merges: `<unk> <s> </s>`, 256 byte tokens, and pieces
/// whose scores rank `▁h`, `el`, `lo`, `▁hel`, `▁hello`.
fn sentencepiece_gguf() -> tempfile::NamedTempFile {
    let mut tokens: Vec<String> = ["<unk>", "<s>", "</s>"].map(String::from).to_vec();
    let mut types = vec![2, 3, 3];
    let mut scores = vec![0.0f32; 3];
    for b in 0..256 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
        scores.push(0.0);
    }
    for (piece, score) in [
        ("▁", -1.0),
        ("h", -2.0),
        ("e", -2.0),
        ("l", -2.0),
        ("o", -2.0),
        ("w", -2.0),
        ("▁h", -3.0),
        ("el", -4.0),
        ("lo", -5.0),
        ("▁hel", -6.0),
        ("▁hello", -7.0),
    ] {
        tokens.push(piece.to_string());
        types.push(1);
        scores.push(score);
    }
    let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
    Kv::default()
        .str("tokenizer.ggml.model", "llama")
        .strs("tokenizer.ggml.tokens", &tokens)
        .i32s("tokenizer.ggml.token_type", &types)
        .f32s("tokenizer.ggml.scores", &scores)
        .u32("tokenizer.ggml.unknown_token_id", 0)
        .u32("tokenizer.ggml.bos_token_id", 1)
        .u32("tokenizer.ggml.eos_token_id", 2)
        .write()
}

#[test]
fn sentencepiece_merges_by_score_with_prefix_space() {
    let b = load(&sentencepiece_gguf());
    let ids = b.encode("hello", false).expect("encode");
    let pieces: Vec<String> = ids
        .iter()
        .filter_map(|&i| b.tokenizer.id_to_token(i))
        .collect();
    assert_eq!(pieces, vec!["▁hello"]);
    let ids = b.encode("hello hello", false).expect("encode");
    assert_eq!(ids.len(), 2);
}

#[test]
fn sentencepiece_falls_back_to_bytes_and_round_trips() {
    let b = load(&sentencepiece_gguf());
    for s in SAMPLES.iter().filter(|s| !s.starts_with(' ')) {
        let ids = b.encode(s, false).expect("encode");
        assert_eq!(b.decode(&ids, false).expect("decode"), *s);
    }
    // "é" has no piece: its two UTF-8 bytes come out as byte tokens.
    let ids = b.encode("é", false).expect("encode");
    let pieces: Vec<String> = ids
        .iter()
        .filter_map(|&i| b.tokenizer.id_to_token(i))
        .collect();
    assert_eq!(pieces, vec!["▁", "<0xC3>", "<0xA9>"]);
}

#[test]
fn sentencepiece_adds_bos_with_special_tokens() {
    let b = load(&sentencepiece_gguf());
    assert!(b.add_bos);
    let ids = b.encode("hello", true).expect("encode");
    assert_eq!(ids.first(), Some(&1));
    assert_eq!(
        b.encode("<s>hello", false).expect("encode").first(),
        Some(&1)
    );
    assert_eq!(b.decode(&ids, true).expect("decode"), "hello");
}

#[test]
fn hf_files_round_trip() {
    for f in [byte_level_gguf("qwen2"), sentencepiece_gguf()] {
        let b = load(&f);
        let dir = tempfile::tempdir().expect("tempdir");
        b.write_hf_files(dir.path()).expect("write");
        let r = TokenizerBundle::from_hf_dir(dir.path()).expect("reload");
        for s in SAMPLES {
            assert_eq!(r.encode(s, true).ok(), b.encode(s, true).ok(), "{s:?}");
        }
        assert_eq!(r.chat_template, b.chat_template);
        assert_eq!(r.bos_token, b.bos_token);
        assert_eq!(r.eos_token, b.eos_token);
        assert_eq!(r.eos_token_ids, b.eos_token_ids);
        assert_eq!(r.add_bos, b.add_bos);
    }
}

#[test]
fn hf_dir_reads_named_templates_token_objects_and_eos_lists() {
    let f = byte_level_gguf("default");
    let dir = tempfile::tempdir().expect("tempdir");
    load(&f).write_hf_files(dir.path()).expect("write");
    let config = json!({
        "chat_template": [
            {"name": "tool_use", "template": "TOOLS"},
            {"name": "default", "template": "PLAIN"},
        ],
        "bos_token": {"content": "<|im_start|>", "special": true},
        "eos_token": {"content": "<|im_end|>", "special": true},
    });
    write_json(&dir.path().join("tokenizer_config.json"), &config).expect("config");
    write_json(
        &dir.path().join("generation_config.json"),
        &json!({"eos_token_id": [5, 6]}),
    )
    .expect("gen");
    let r = TokenizerBundle::from_hf_dir(dir.path()).expect("load");
    assert_eq!(r.template_for(false), Some("PLAIN"));
    assert_eq!(r.template_for(true), Some("TOOLS"));
    assert_eq!(r.bos_token.as_deref(), Some("<|im_start|>"));
    let im_end = r.tokenizer.token_to_id("<|im_end|>").expect("id");
    assert_eq!(r.eos_token_ids, vec![5, 6, im_end]);
    assert!(!r.add_bos);
}

/// Development check against real models (not run by default): prints the token ids of each
/// line of `$TOKENIZER_CHECK_TEXTS` (JSON list of strings) for the GGUF at
/// `$TOKENIZER_CHECK_FILE`, as JSON, for comparison with Hugging Face's GGUF tokenizer.
#[test]
#[ignore]
fn tokenize_with_real_file() {
    let (Ok(path), Ok(texts)) = (
        std::env::var("TOKENIZER_CHECK_FILE"),
        std::env::var("TOKENIZER_CHECK_TEXTS"),
    ) else {
        return;
    };
    let g = GgufFile::open(path).expect("open");
    let b = TokenizerBundle::from_gguf(&g).expect("tokenizer");
    let texts: Vec<String> = serde_json::from_str(&texts).expect("texts");
    let ids: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| b.encode(t, false).expect("encode"))
        .collect();
    for (t, i) in texts.iter().zip(&ids) {
        assert_eq!(b.decode(i, false).expect("decode"), *t, "round trip");
    }
    println!("IDS {}", json!(ids));
    println!("BUNDLE {b:?}");
    if let Ok(dir) = std::env::var("TOKENIZER_CHECK_OUT") {
        b.write_hf_files(dir).expect("write hf files");
    }
}
