use super::*;
use serde_json::json;
use tokenizers::models::bpe::BPE;
use tokenizers::AddedToken;

/// A vocabulary of a few multi-byte tokens, every single printable byte, and EOS last.
fn tiny_vocab() -> (Vec<Vec<u8>>, u32) {
    let mut tokens: Vec<Vec<u8>> = ["{\"", "\": ", "ab", "bb", "true", "}"]
        .iter()
        .map(|t| t.as_bytes().to_vec())
        .collect();
    tokens.extend((0x20..0x7Fu8).map(|b| vec![b]));
    tokens.push(b"\xFF<|im_end|>".to_vec());
    let eos = tokens.len() as u32 - 1;
    (tokens, eos)
}

fn id_of(tokens: &[Vec<u8>], text: &str) -> u32 {
    tokens
        .iter()
        .position(|t| t == text.as_bytes())
        .map(|i| i as u32)
        .unwrap_or_else(|| panic!("{text:?} is not a token"))
}

fn allowed_texts(guide: &mut Guide, tokens: &[Vec<u8>]) -> Vec<String> {
    let mask = guide.allowed().expect("mask").clone();
    (0..tokens.len())
        .filter(|&i| mask.is_allowed(i as u32))
        .map(|i| String::from_utf8_lossy(&tokens[i]).into_owned())
        .collect()
}

#[test]
fn regex_mask_allows_exactly_the_tokens_that_can_continue() {
    let (tokens, eos) = tiny_vocab();
    let factory = GuideFactory::new(&tokens, &[eos]).expect("factory");
    let mut guide = factory
        .guide(&Constraint::Regex("ab+".into()))
        .expect("guide");
    assert_eq!(allowed_texts(&mut guide, &tokens), vec!["ab", "a"]);
    assert!(!guide.advance(id_of(&tokens, "ab")).expect("advance"));
    // After "ab": more b's, or the end.
    let next = allowed_texts(&mut guide, &tokens);
    assert_eq!(next, vec!["bb", "b", "\u{FFFD}<|im_end|>"]);
    assert!(guide.is_accepting());
}

#[test]
fn masked_logits_are_neg_inf_outside_the_grammar_and_past_the_vocabulary() {
    let (tokens, eos) = tiny_vocab();
    let factory = GuideFactory::new(&tokens, &[eos]).expect("factory");
    let mut guide = factory
        .guide(&Constraint::Regex("true".into()))
        .expect("guide");
    // Logits wider than the vocabulary, as with padded embeddings.
    let mut logits = vec![1.0f32; tokens.len() + 40];
    guide.mask(&mut logits).expect("mask");
    let kept: Vec<usize> = (0..logits.len()).filter(|&i| logits[i] == 1.0).collect();
    assert_eq!(
        kept,
        vec![
            id_of(&tokens, "true") as usize,
            id_of(&tokens, "t") as usize
        ]
    );
    assert!(logits[tokens.len()..]
        .iter()
        .all(|l| *l == f32::NEG_INFINITY));
}

#[test]
fn a_complete_grammar_stops_the_guide() {
    let (tokens, eos) = tiny_vocab();
    let factory = GuideFactory::new(&tokens, &[eos]).expect("factory");
    let mut guide = factory
        .guide(&Constraint::Regex("true".into()))
        .expect("guide");
    assert!(guide.advance(id_of(&tokens, "true")).expect("advance"));
    assert_eq!(
        allowed_texts(&mut guide, &tokens),
        vec!["\u{FFFD}<|im_end|>"]
    );
}

/// What a model that tries to finish writes under `c` (the fake engine's walk).
fn walk(c: &Constraint, limit: usize) -> String {
    crate::fake::constrained_text(c, "", limit).expect("walk")
}

#[test]
fn json_schema_walk_gives_a_document_with_the_required_keys() {
    let schema = json!({
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "minItems": 1},
            "age": {"type": "integer"}
        },
        "required": ["name", "tags", "age"],
        "additionalProperties": false
    });
    let text = walk(&Constraint::JsonSchema(schema), 400);
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    assert!(v["name"].is_string(), "{text}");
    assert!(
        v["tags"].as_array().is_some_and(|t| !t.is_empty()),
        "{text}"
    );
    assert!(v["age"].is_i64(), "{text}");
    // Python's separators, no free whitespace.
    assert!(text.starts_with("{\"name\": \""), "{text}");
}

#[test]
fn json_object_walk_gives_an_object() {
    let text = walk(&Constraint::JsonObject, 50);
    assert_eq!(text, "{}");
}

#[test]
fn lark_with_embedded_json_schema_compiles_and_walks() {
    let schema = with_layout(&json!({
        "type": "object", "properties": {"name": {"const": "f"}}, "required": ["name"]
    }));
    let lark =
        format!("start: \"<tool_call>\\n\" call \"\\n</tool_call>\"\ncall: %json {schema}\n");
    let text = walk(&Constraint::Lark(lark), 200);
    assert_eq!(text, "<tool_call>\n{\"name\": \"f\"}\n</tool_call>");
}

#[test]
fn check_rejects_broken_schemas_and_grammars() {
    assert!(check(&Constraint::JsonObject).is_ok());
    let bad_type = json!({"type": "strng"});
    let e = check(&Constraint::JsonSchema(bad_type)).expect_err("bad type");
    assert!(e.0.contains("strng"), "{e}");
    assert!(check(&Constraint::Regex("(unclosed".into())).is_err());
    assert!(check(&Constraint::Lark("start: undefined_rule".into())).is_err());
    let remote = json!({"$ref": "https://example.com/schema.json"});
    assert!(check(&Constraint::JsonSchema(remote)).is_err());
}

#[test]
fn schemas_keep_their_own_layout_options() {
    let own = json!({"type": "object", "x-guidance": {"whitespace_flexible": true}});
    assert_eq!(with_layout(&own), own);
    let plain = with_layout(&json!({"type": "object"}));
    assert_eq!(plain["x-guidance"]["key_separator"], ": ");
    assert_eq!(
        with_layout(&json!(true))["x-guidance"]["item_separator"],
        ", "
    );
}

#[test]
fn byte_level_vocabulary_bytes_undo_the_gpt2_character_map() {
    let vocab: Vec<(String, u32)> = [("h", 0), ("i", 1), ("Ġ", 2), ("Ġhi", 3), ("Ċ", 4)]
        .iter()
        .map(|(t, i)| (t.to_string(), *i))
        .collect();
    let merges = vec![("Ġ".into(), "h".into()), ("Ġh".into(), "i".into())];
    let mut vocab_map = tokenizers::models::bpe::Vocab::new();
    vocab_map.extend(vocab);
    vocab_map.insert("Ġh".into(), 5);
    let bpe = BPE::builder()
        .vocab_and_merges(vocab_map, merges)
        .build()
        .expect("bpe");
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_decoder(Some(tokenizers::decoders::byte_level::ByteLevel::default()));
    tokenizer.add_special_tokens(&[AddedToken::from("<|im_end|>", true)]);
    tokenizer.add_tokens(&[AddedToken::from("<tool_call>", false)]);
    let bytes = vocab_bytes(&tokenizer, 10).expect("bytes");
    assert_eq!(bytes.len(), 10, "padded to the model's vocabulary");
    assert_eq!(bytes[3], b" hi");
    assert_eq!(bytes[4], b"\n");
    assert_eq!(bytes[6], b"\xFF<|im_end|>");
    assert_eq!(bytes[7], b"<tool_call>");
    assert!(bytes[9].is_empty());
}

#[test]
fn sentencepiece_vocabulary_bytes_read_spaces_and_byte_tokens() {
    let mut vocab_map = tokenizers::models::bpe::Vocab::new();
    for (i, t) in ["<unk>", "\u{2581}hi", "<0x0A>", "h", "i", "\u{2581}"]
        .iter()
        .enumerate()
    {
        vocab_map.insert(t.to_string(), i as u32);
    }
    let bpe = BPE::builder()
        .vocab_and_merges(vocab_map, Vec::new())
        .byte_fallback(true)
        .build()
        .expect("bpe");
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_decoder(Some(tokenizers::decoders::sequence::Sequence::new(vec![
        tokenizers::decoders::byte_fallback::ByteFallback::new().into(),
    ])));
    let bytes = vocab_bytes(&tokenizer, 0).expect("bytes");
    assert_eq!(bytes[1], b" hi");
    assert_eq!(bytes[2], b"\n");
    assert_eq!(bytes[5], b" ");
}

#[test]
fn a_complete_output_ends_when_another_part_would_not_fit() {
    let factory = GuideFactory::byte_level().expect("factory");
    let mut guide = factory
        .guide(&Constraint::Regex("(abcd)+".into()))
        .expect("guide");
    for b in *b"abc" {
        guide.advance(u32::from(b)).expect("advance");
        assert!(!guide.ends_within(0), "incomplete output never ends early");
    }
    guide.advance(u32::from(b'd')).expect("advance");
    // The first part took 4 tokens: 6 left would fit another with margin, 5 would not.
    assert!(guide.ends_within(5));
    assert!(!guide.ends_within(6));
    guide.advance(u32::from(b'a')).expect("advance");
    assert!(!guide.ends_within(0), "mid-part is not a place to end");
}

/// Feeds `text` byte by byte (and special tokens by id); false as soon as one is refused.
fn accepts_bytes(guide: &mut Guide, text: &[u32]) -> bool {
    for &t in text {
        if !guide.allowed().expect("mask").is_allowed(t) {
            return false;
        }
        guide.advance(t).expect("advance");
    }
    true
}

fn bytes_of(text: &str) -> Vec<u32> {
    text.bytes().map(u32::from).collect()
}

#[test]
fn a_lazy_markup_grammar_allows_prose_until_the_text_marker_opens_a_call() {
    let factory = GuideFactory::byte_level().expect("factory");
    let markup = Constraint::ToolMarkup {
        lark: "start: free0 | till0 \" CALL\" mk1\n".into(),
        markers: vec!["<tc>".into(), "</tc>".into()],
    };
    let mut prose = factory.guide(&markup).expect("compiles");
    assert!(accepts_bytes(
        &mut prose,
        &bytes_of("just words, a < and a <t")
    ));
    assert!(prose.is_accepting(), "prose alone is a complete reply");
    let mut call = factory.guide(&markup).expect("compiles");
    assert!(accepts_bytes(&mut call, &bytes_of("ok <tc> CALL</tc>")));
    assert!(call.is_accepting());
    let mut bad = factory.guide(&markup).expect("compiles");
    assert!(!accepts_bytes(&mut bad, &bytes_of("ok <tc> nope")));
}

#[test]
fn markers_that_are_special_tokens_are_matched_as_those_tokens() {
    let mut tokens: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
    tokens.push(b"\xFF<|tc|>".to_vec());
    tokens.push(b"\xFF<|end|>".to_vec());
    let factory = GuideFactory::new(&tokens, &[257]).expect("factory");
    let markup = Constraint::ToolMarkup {
        lark: "start: free0 | till0 \"{}\"\n".into(),
        markers: vec!["<|tc|>".into()],
    };
    let mut call = factory.guide(&markup).expect("compiles");
    let mut text = bytes_of("hi ");
    text.push(256);
    text.extend(bytes_of("{}"));
    assert!(accepts_bytes(&mut call, &text));
    assert!(call.is_accepting());
    // Spelled out in bytes it is prose's marker no more: refused.
    let mut spelled = factory.guide(&markup).expect("compiles");
    assert!(!accepts_bytes(&mut spelled, &bytes_of("hi <|tc|>{}")));
    let forced = Constraint::ToolMarkup {
        lark: "start: mk0 \"{}\"\n".into(),
        markers: vec!["<|tc|>".into()],
    };
    let mut guide = factory.guide(&forced).expect("compiles");
    assert!(!accepts_bytes(&mut guide, &bytes_of("<")));
}
