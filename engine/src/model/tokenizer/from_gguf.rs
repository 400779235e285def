//! Building a Hugging Face `tokenizers::Tokenizer` from `tokenizer.ggml.*` metadata, the way
//! Hugging Face's GGUF converters and llama.cpp's vocabulary loader read it.

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence, NFC};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, NormalizerWrapper, SplitDelimiterBehavior, Tokenizer};

use super::{dedup, tk_err, TokenizerBundle, TokenizerError};
use crate::model::gguf::GgufFile;

/// `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`).
const TYPE_NORMAL: i64 = 1;
const TYPE_CONTROL: i64 = 3;
const TYPE_USER_DEFINED: i64 = 4;

/// Qwen2's split regex (its `tokenizer.json`).
const QWEN2_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Llama 3's split regex: like Qwen2's but digits in runs of up to three.
const LLAMA3_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Texts llama.cpp also treats as end-of-generation when they are control tokens, because
/// chat models end turns with them while `eos_token_id` often names another token.
const END_OF_TURN_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "<|end_of_text|>",
];

fn meta(msg: impl Into<String>) -> TokenizerError {
    TokenizerError::Metadata(msg.into())
}

pub(super) fn bundle(g: &GgufFile) -> Result<TokenizerBundle, TokenizerError> {
    let model = g
        .get_str("tokenizer.ggml.model")
        .ok_or_else(|| meta("no tokenizer.ggml.model"))?;
    let tokens = g
        .get_str_array("tokenizer.ggml.tokens")
        .ok_or_else(|| meta("no tokenizer.ggml.tokens"))?;
    let types = g.get_i64_array("tokenizer.ggml.token_type");
    let token_id = |key: &str| {
        g.get_u64(key)
            .and_then(|id| u32::try_from(id).ok())
            .filter(|&id| (id as usize) < tokens.len())
    };
    let bos_id = token_id("tokenizer.ggml.bos_token_id");
    let eos_id = token_id("tokenizer.ggml.eos_token_id");
    let text_of = |id: Option<u32>| id.map(|i| tokens[i as usize].to_string());

    let (mut tokenizer, default_add_bos) = match model {
        "gpt2" => (byte_level_bpe(g, &tokens)?, false),
        "llama" => (sentencepiece_bpe(g, &tokens, types.as_deref())?, true),
        other => return Err(meta(format!("unsupported tokenizer model {other:?}"))),
    };
    add_special_tokens(&mut tokenizer, &tokens, types.as_deref());

    let add_bos = g
        .get_bool("tokenizer.ggml.add_bos_token")
        .unwrap_or(default_add_bos);
    if let (true, Some(bos)) = (add_bos, text_of(bos_id)) {
        let id = bos_id.unwrap_or_default();
        let post = TemplateProcessing::builder()
            .try_single(vec![bos.as_str(), "$A"])
            .and_then(|b| b.try_pair(vec![bos.as_str(), "$A", bos.as_str(), "$B:1"]))
            .map_err(tk_err)?
            .special_tokens(vec![(bos.clone(), id)])
            .build()
            .map_err(tk_err)?;
        tokenizer.with_post_processor(Some(post));
    }

    let mut eos_token_ids: Vec<u32> = eos_id.into_iter().collect();
    for key in ["tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"] {
        eos_token_ids.extend(token_id(key));
    }
    for (i, t) in tokens.iter().enumerate() {
        let control = types
            .as_deref()
            .is_some_and(|ty| ty.get(i) == Some(&TYPE_CONTROL));
        if control && END_OF_TURN_TEXTS.contains(t) {
            eos_token_ids.push(i as u32);
        }
    }
    dedup(&mut eos_token_ids);

    let named = g
        .get_str_array("tokenizer.chat_templates")
        .unwrap_or_default();
    let tool_use_template = named
        .contains(&"tool_use")
        .then(|| g.get_str("tokenizer.chat_template.tool_use"))
        .flatten()
        .map(str::to_string);

    Ok(TokenizerBundle {
        tokenizer,
        chat_template: g.get_str("tokenizer.chat_template").map(str::to_string),
        tool_use_template,
        bos_token: text_of(bos_id),
        eos_token: text_of(eos_id),
        eos_token_ids,
        add_bos,
    })
}

fn vocab_map(tokens: &[&str]) -> Vocab {
    let mut vocab = Vocab::with_capacity(tokens.len());
    for (i, t) in tokens.iter().enumerate() {
        // On duplicate texts the first id wins, as in llama.cpp's text-to-token map.
        vocab.entry(t.to_string()).or_insert(i as u32);
    }
    vocab
}

/// GPT-2-style byte-level BPE; the pre-tokenizer follows `tokenizer.ggml.pre`.
fn byte_level_bpe(g: &GgufFile, tokens: &[&str]) -> Result<Tokenizer, TokenizerError> {
    let merges: Vec<(String, String)> = g
        .get_str_array("tokenizer.ggml.merges")
        .ok_or_else(|| meta("gpt2 tokenizer without tokenizer.ggml.merges"))?
        .iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| meta(format!("merge {m:?} has no space")))
        })
        .collect::<Result<_, _>>()?;
    let pre = g.get_str("tokenizer.ggml.pre").unwrap_or("default");
    let llama3 = matches!(pre, "llama-bpe" | "llama3");
    let bpe = BPE::builder()
        .vocab_and_merges(vocab_map(tokens), merges)
        .ignore_merges(llama3)
        .build()
        .map_err(tk_err)?;
    let mut tokenizer = Tokenizer::new(bpe);

    let split = |pattern: &str| -> Result<PreTokenizerWrapper, TokenizerError> {
        Split::new(
            SplitPattern::Regex(pattern.to_string()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map(PreTokenizerWrapper::from)
        .map_err(tk_err)
    };
    let pre_tokenizer: PreTokenizerWrapper = match pre {
        "smollm" => PreSequence::new(vec![
            Digits::new(true).into(),
            ByteLevel::new(false, true, true).into(),
        ])
        .into(),
        "qwen2" => {
            tokenizer.with_normalizer(Some(NFC));
            PreSequence::new(vec![
                split(QWEN2_PATTERN)?,
                ByteLevel::new(false, false, false).into(),
            ])
            .into()
        }
        _ if llama3 => PreSequence::new(vec![
            split(LLAMA3_PATTERN)?,
            ByteLevel::new(false, true, false).into(),
        ])
        .into(),
        _ => ByteLevel::new(false, true, true).into(),
    };
    tokenizer.with_pre_tokenizer(Some(pre_tokenizer));
    tokenizer.with_decoder(Some(ByteLevel::default()));
    Ok(tokenizer)
}

/// SentencePiece-style BPE with byte fallback (`<0xNN>` tokens) and `▁` for spaces, as
/// Hugging Face's Llama converter builds it (legacy Llama 2 behaviour: a `▁` is prepended to
/// the text unless `tokenizer.ggml.add_space_prefix` is false).
fn sentencepiece_bpe(
    g: &GgufFile,
    tokens: &[&str],
    types: Option<&[i64]>,
) -> Result<Tokenizer, TokenizerError> {
    let scores = g
        .get_f32_array("tokenizer.ggml.scores")
        .ok_or_else(|| meta("llama tokenizer without tokenizer.ggml.scores"))?;
    if scores.len() != tokens.len() {
        return Err(meta("tokenizer.ggml.scores and tokens differ in length"));
    }
    let vocab = vocab_map(tokens);
    let merges = match g.get_str_array("tokenizer.ggml.merges") {
        Some(m) => m
            .iter()
            .filter_map(|m| m.split_once(' '))
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        None => merges_from_scores(tokens, &scores, types, &vocab),
    };
    let mut builder = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .byte_fallback(true)
        .fuse_unk(true);
    let unk = g
        .get_u64("tokenizer.ggml.unknown_token_id")
        .and_then(|id| tokens.get(id as usize));
    if let Some(unk) = unk {
        builder = builder.unk_token(unk.to_string());
    }
    let mut tokenizer = Tokenizer::new(builder.build().map_err(tk_err)?);

    let add_prefix_space = g
        .get_bool("tokenizer.ggml.add_space_prefix")
        .unwrap_or(true);
    let replace = Replace::new(" ", "▁").map_err(tk_err)?;
    let normalizer: NormalizerWrapper = if add_prefix_space {
        NormalizerSequence::new(vec![Prepend::new("▁".into()).into(), replace.into()]).into()
    } else {
        replace.into()
    };
    tokenizer.with_normalizer(Some(normalizer));
    let mut decoders: Vec<DecoderWrapper> = vec![
        Replace::new("▁", " ").map_err(tk_err)?.into(),
        ByteFallback::new().into(),
        Fuse::new().into(),
    ];
    if add_prefix_space {
        decoders.push(Strip::new(' ', 1, 0).into());
    }
    tokenizer.with_decoder(Some(DecoderSequence::new(decoders)));
    Ok(tokenizer)
}

/// BPE merges recovered from a SentencePiece vocabulary: every split of a piece into two
/// pieces of the vocabulary is a merge, ranked by the merged piece's score (higher merges
/// first), ties by the ids of the two halves — what Hugging Face's `SentencePieceExtractor`
/// does. Only normal pieces are merge results: control, byte and unknown tokens never come
/// out of SentencePiece's merging.
fn merges_from_scores(
    tokens: &[&str],
    scores: &[f32],
    types: Option<&[i64]>,
    vocab: &Vocab,
) -> Vec<(String, String)> {
    let mut ranked: Vec<(f32, u32, u32)> = Vec::new();
    for (i, piece) in tokens.iter().enumerate() {
        if types.is_some_and(|t| t.get(i).is_some_and(|&ty| ty != TYPE_NORMAL)) {
            continue;
        }
        let start = ranked.len();
        for (split, _) in piece.char_indices().skip(1) {
            let (l, r) = piece.split_at(split);
            if let (Some(&li), Some(&ri)) = (vocab.get(l), vocab.get(r)) {
                ranked.push((scores[i], li, ri));
            }
        }
        ranked[start..].sort_by_key(|&(_, l, r)| (l, r));
    }
    // Stable: equal scores keep vocabulary order.
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    ranked
        .into_iter()
        .map(|(_, l, r)| {
            (
                tokens[l as usize].to_string(),
                tokens[r as usize].to_string(),
            )
        })
        .collect()
}

/// Control tokens become special added tokens (never split, skipped when decoding with
/// `skip_special_tokens`); user-defined ones become plain added tokens — never split, but kept
/// in decoded text, which matters for markers such as Qwen's `<tool_call>`.
fn add_special_tokens(tokenizer: &mut Tokenizer, tokens: &[&str], types: Option<&[i64]>) {
    let Some(types) = types else { return };
    let mut special = Vec::new();
    let mut user = Vec::new();
    for (t, &ty) in tokens.iter().zip(types) {
        match ty {
            TYPE_CONTROL => special.push(AddedToken::from(t.to_string(), true).normalized(false)),
            TYPE_USER_DEFINED => {
                user.push(AddedToken::from(t.to_string(), false).normalized(false))
            }
            _ => {}
        }
    }
    tokenizer.add_special_tokens(&special);
    tokenizer.add_tokens(&user);
}
