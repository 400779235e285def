//! Reasoning on the real default model: a prompt that opens the reasoning, and a thinking
//! budget that the engine closes by feeding the closing marker. SmolLM2 does not think on its
//! own, so the prompt opens a `<think>` block as DeepSeek-R1's chat template does.
#![cfg(feature = "mlx")]

use mlx_serve_engine::engine::{
    Engine, FinishReason, GenerateRequest, Prompt, SamplingParams, SeqEvent,
};
use mlx_serve_engine::model::catalog;
use mlx_serve_engine::model::mlx::device::DeviceChoice;
use mlx_serve_engine::model::mlx::engine::{EngineOptions, MlxEngine};
use mlx_serve_engine::model::mlx::loader::ModelSource;
use mlx_serve_engine::reasoning::{split_reasoning, ReasoningFormat};

const PROMPT: &str = "<|im_start|>user\nWhat is the capital of France? Think first.<|im_end|>\n\
                      <|im_start|>assistant\n<think>\n";

fn engine() -> MlxEngine {
    let dir = catalog::default_models_dir();
    let path = catalog::pull(catalog::DEFAULT_MODEL, &dir, &|_| {}).expect("pull");
    MlxEngine::load(&EngineOptions {
        source: ModelSource::Gguf(path),
        model_id: "smollm2-135m-instruct".into(),
        dtype: None,
        device: DeviceChoice::Cpu,
        context_length: None,
        prefill_chunk: 256,
        prefix_cache_bytes: 0,
        max_batch: 1,
    })
    .expect("load")
}

/// Every text event (with its token count) and the finish reason.
fn run(
    engine: &mut MlxEngine,
    id: u64,
    budget: Option<usize>,
) -> (Vec<(String, usize)>, FinishReason) {
    let request = GenerateRequest {
        prompt: Prompt::Text(PROMPT.into()),
        sampling: SamplingParams::default(),
        max_tokens: Some(24),
        stop: Vec::new(),
        logprobs: None,
        constraint: None,
        reasoning: ReasoningFormat::Think.spec(budget),
        encoded: None,
    };
    engine.add(id, request).expect("admit");
    let mut texts = Vec::new();
    loop {
        for (_, event) in engine.step() {
            match event {
                SeqEvent::Text { text, tokens, .. } => texts.push((text, tokens)),
                SeqEvent::Finished { reason, .. } => return (texts, reason),
                SeqEvent::Failed(e) => panic!("generation failed: {e}"),
                SeqEvent::Started { .. } => {}
            }
        }
    }
}

#[test]
fn a_spent_thinking_budget_closes_the_reasoning_and_the_answer_follows() {
    let mut engine = engine();
    // Unbounded: the reply starts inside the reasoning the prompt opened.
    let (free, _) = run(&mut engine, 1, None);
    assert_eq!(free[0], ("<think>".to_owned(), 0), "{free:?}");
    let free_text: String = free.iter().map(|(t, _)| t.as_str()).collect();
    let (free_reasoning, _) = split_reasoning(ReasoningFormat::Think, &free_text);
    assert!(!free_reasoning.is_empty(), "{free_text:?}");

    // A budget of 4 tokens: the same greedy start, then the engine's closing marker.
    let (bounded, reason) = run(&mut engine, 2, Some(4));
    let text: String = bounded.iter().map(|(t, _)| t.as_str()).collect();
    let close = text
        .find("\n</think>\n\n")
        .unwrap_or_else(|| panic!("no forced close: {text:?}"));
    let before: String = text["<think>".len()..close].to_owned();
    assert!(
        free_text["<think>".len()..].starts_with(&before),
        "the reasoning before the close is the unbounded one's start: {before:?} vs {free_text:?}"
    );
    // Four reasoning tokens (the budget), then the forced close.
    let mut at = 0;
    let mut sampled = 0;
    for (t, k) in &bounded {
        if at + t.len() > close {
            break;
        }
        at += t.len();
        sampled += k;
    }
    assert_eq!(sampled, 4, "tokens before the close: {bounded:?}");
    let (reasoning, content) = split_reasoning(ReasoningFormat::Think, &text);
    assert_eq!(reasoning.trim_end(), before.trim_end(), "{text:?}");
    assert!(
        !content.is_empty() || reason == FinishReason::Stop,
        "the model answers after the close: {text:?} ({reason:?})"
    );
}
