//! Rendering and tokenizing prompts for an [`super::MlxEngine`]: plain shared data, handed to
//! the front as its [`PromptEncoder`] so that a long prompt is encoded (and refused when it
//! does not fit) on the caller's thread, not on the model thread between decode steps.

use crate::engine::{EncodedPrompt, EngineError, Prompt, PromptEncoder};
use crate::model::template::ChatTemplate;
use crate::model::tokenizer::TokenizerBundle;

/// How much of the rendered text an [`EncodedPrompt`] keeps: enough for any opening marker.
const TAIL_BYTES: usize = 256;

/// A model's tokenizer and chat templates.
pub struct Prompts {
    pub(super) tokenizer: TokenizerBundle,
    template: ChatTemplate,
    /// The model's separate template for requests with tools, when it has one.
    tool_template: Option<ChatTemplate>,
    context_length: usize,
}

impl Prompts {
    pub(super) fn new(
        tokenizer: TokenizerBundle,
        template: ChatTemplate,
        tool_template: Option<ChatTemplate>,
        context_length: usize,
    ) -> Self {
        Self {
            tokenizer,
            template,
            tool_template,
            context_length,
        }
    }

    fn render(&self, prompt: &Prompt) -> Result<String, EngineError> {
        match prompt {
            Prompt::Text(text) => Ok(text.clone()),
            Prompt::Tokens(ids) => self
                .tokenizer
                .tokenizer
                .decode(ids, false)
                .map_err(|e| EngineError::InvalidRequest(format!("prompt tokens: {e}"))),
            Prompt::Chat {
                messages,
                tools,
                add_generation_prompt,
                template_kwargs,
            } => {
                let template = match (&self.tool_template, tools.is_empty()) {
                    (Some(t), false) => t,
                    _ => &self.template,
                };
                template.render_with(messages, tools, *add_generation_prompt, template_kwargs)
            }
            .map_err(|e| EngineError::InvalidRequest(format!("chat template: {e}"))),
        }
    }

    fn check_ids(&self, ids: &[u32]) -> Result<(), EngineError> {
        let vocab = self.tokenizer.tokenizer.get_vocab_size(true) as u32;
        if let Some(bad) = ids.iter().find(|&&id| id >= vocab) {
            return Err(EngineError::InvalidRequest(format!(
                "prompt token {bad} is outside the vocabulary (0..{vocab})"
            )));
        }
        Ok(())
    }
}

impl PromptEncoder for Prompts {
    fn encode(&self, prompt: &Prompt) -> Result<EncodedPrompt, EngineError> {
        if let Prompt::Tokens(ids) = prompt {
            self.check_ids(ids)?;
        }
        let text = self.render(prompt)?;
        let tokens = match prompt {
            Prompt::Tokens(ids) => ids.clone(),
            // A rendered chat already carries its special tokens; raw text gets BOS when the
            // model wants one.
            _ => self
                .tokenizer
                .encode(&text, matches!(prompt, Prompt::Text(_)))
                .map_err(|e| EngineError::Internal(e.to_string()))?,
        };
        if tokens.is_empty() {
            return Err(EngineError::InvalidRequest("the prompt is empty".into()));
        }
        let mut tail_at = text.len().saturating_sub(TAIL_BYTES);
        while !text.is_char_boundary(tail_at) {
            tail_at -= 1;
        }
        Ok(EncodedPrompt {
            tokens,
            tail: text[tail_at..].to_owned(),
        })
    }

    fn context_length(&self) -> usize {
        self.context_length
    }
}
