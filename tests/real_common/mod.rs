//! What the real-model engine tests share: the default model, engine options, a chat prompt
//! and a one-request generation loop. Each test binary uses part of it.
#![allow(dead_code)]

pub use std::path::PathBuf;
use std::sync::Mutex;

pub use mlx_serve_engine::engine::{
    ChatMessage, Engine, FinishReason, GenerateRequest, Prompt, SamplingParams, SeqEvent,
};
pub use mlx_serve_engine::model::catalog;
pub use mlx_serve_engine::model::mlx::device::DeviceChoice;
pub use mlx_serve_engine::model::mlx::engine::{EngineOptions, MlxEngine};
pub use mlx_serve_engine::model::mlx::loader::ModelSource;

// MLX state is per thread and the machine has two cores: one model at a time.
pub static SERIAL: Mutex<()> = Mutex::new(());

pub fn default_model() -> PathBuf {
    let dir = catalog::default_models_dir();
    catalog::pull(catalog::DEFAULT_MODEL, &dir, &|_| {}).expect("pull the default model")
}

pub fn options(source: ModelSource) -> EngineOptions {
    EngineOptions {
        source,
        model_id: "smollm2-135m-instruct".into(),
        dtype: None,
        device: DeviceChoice::Cpu,
        context_length: None,
        prefill_chunk: 256,
        prefix_cache_bytes: 64 << 20,
        max_batch: 4,
    }
}

pub fn chat(question: &str) -> Prompt {
    Prompt::Chat {
        messages: vec![ChatMessage {
            role: "user".into(),
            content: question.into(),
            ..Default::default()
        }],
        tools: Vec::new(),
        add_generation_prompt: true,
        template_kwargs: Default::default(),
    }
}

pub struct Outcome {
    pub text: String,
    pub reason: FinishReason,
    pub cached_tokens: usize,
}

pub fn generate(
    engine: &mut MlxEngine,
    id: u64,
    prompt: Prompt,
    sampling: SamplingParams,
    max_tokens: usize,
) -> Outcome {
    engine
        .add(
            id,
            GenerateRequest {
                prompt,
                sampling,
                max_tokens: Some(max_tokens),
                stop: Vec::new(),
                logprobs: None,
                constraint: None,
                reasoning: None,
                encoded: None,
            },
        )
        .expect("admit");
    let mut text = String::new();
    loop {
        for (seq, event) in engine.step() {
            assert_eq!(seq, id);
            match event {
                SeqEvent::Text { text: t, .. } => text.push_str(&t),
                SeqEvent::Finished { reason, usage, .. } => {
                    return Outcome {
                        text,
                        reason,
                        cached_tokens: usage.cached_tokens,
                    }
                }
                SeqEvent::Failed(e) => panic!("generation failed: {e}"),
                SeqEvent::Started { .. } => {}
            }
        }
    }
}
