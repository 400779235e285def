//! On the real Qwen2.5-Coder tokenizer (skipped when the model is not pulled): the tool-call
//! markers, user-defined tokens in Qwen's vocabulary, survive detokenization, streamed token by
//! token as the engine does, so the tool parser sees the tags.

use std::sync::Arc;

use mlx_serve_engine::model::catalog::default_models_dir;
use mlx_serve_engine::model::detok::IncrementalDecoder;
use mlx_serve_engine::model::gguf::GgufFile;
use mlx_serve_engine::model::tokenizer::TokenizerBundle;

#[test]
fn qwen_tool_call_markers_survive_streamed_detokenization() {
    let dir = default_models_dir().join("qwen2.5-coder-0.5b-instruct");
    let gguf = std::fs::read_dir(&dir).ok().and_then(|entries| {
        entries
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "gguf"))
    });
    let Some(path) = gguf else {
        eprintln!(
            "skipped: qwen2.5-coder-0.5b-instruct is not pulled into {}",
            dir.display()
        );
        return;
    };
    let file = GgufFile::open(&path).expect("GGUF opens");
    let bundle = TokenizerBundle::from_gguf(&file).expect("tokenizer");
    let text = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
    let ids = bundle.encode(text, false).expect("encodes");
    let open = bundle
        .tokenizer
        .token_to_id("<tool_call>")
        .expect("marker in vocab");
    assert_eq!(ids.first(), Some(&open), "the marker is one token");
    let tokenizer = Arc::new(bundle.tokenizer.clone());
    let mut decoder = IncrementalDecoder::new(tokenizer);
    let mut streamed = String::new();
    for id in ids {
        if let Some(piece) = decoder.push(id).expect("decodes") {
            streamed.push_str(&piece);
        }
    }
    assert_eq!(streamed, text);
    // The end-of-turn token, a control token, is still dropped.
    let end = bundle.tokenizer.token_to_id("<|im_end|>").expect("im_end");
    assert_eq!(bundle.decode(&[end], true).expect("decodes"), "");
}
