//! `POST /v1/completions` (legacy text completions) wire types and normalization.

use std::collections::BTreeMap;

use mlx_serve_actors::engine::{GenerateRequest, Prompt, TokenLogprob};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::common::{
    check_max_tokens, check_n, opt_int, Envelope, SamplingInput, StopSpec, StreamOptions,
};
use crate::config::ModelSettings;
use crate::error::ApiError;

/// OpenAI's default `max_tokens` for this endpoint.
pub const DEFAULT_MAX_TOKENS: usize = 16;
/// Most prompts served from one request (they run one after another).
pub const MAX_PROMPTS: usize = 64;

/// `prompt`: a string, a list of strings, token ids, or a list of token-id lists.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PromptIn {
    /// One prompt.
    One(String),
    /// Several prompts; one choice each.
    Many(Vec<String>),
    /// One prompt as token ids.
    Tokens(Vec<u32>),
    /// Several prompts as token ids; one choice each.
    TokenLists(Vec<Vec<u32>>),
}

/// The request body. Unknown fields are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct CompletionRequest {
    /// Model id.
    pub model: String,
    /// Prompt(s).
    pub prompt: PromptIn,
    /// Upper bound on generated tokens (default 16).
    #[serde(default, deserialize_with = "opt_int")]
    pub max_tokens: Option<i64>,
    /// Sampling temperature.
    #[serde(default)]
    pub temperature: Option<f32>,
    /// Nucleus mass.
    #[serde(default)]
    pub top_p: Option<f32>,
    /// Top-k (extension).
    #[serde(default, deserialize_with = "opt_int")]
    pub top_k: Option<i64>,
    /// Min-p (extension).
    #[serde(default)]
    pub min_p: Option<f32>,
    /// Scheduling priority: lower runs sooner (vLLM's field; default 0).
    #[serde(default)]
    pub priority: Option<i64>,
    /// Sampling seed.
    #[serde(default, deserialize_with = "opt_int")]
    pub seed: Option<i64>,
    /// Stop strings.
    #[serde(default)]
    pub stop: Option<StopSpec>,
    /// Presence penalty.
    #[serde(default)]
    pub presence_penalty: Option<f32>,
    /// Frequency penalty.
    #[serde(default)]
    pub frequency_penalty: Option<f32>,
    /// Repetition penalty (extension).
    #[serde(default)]
    pub repetition_penalty: Option<f32>,
    /// Alternatives per token to return, 0..=5.
    #[serde(default, deserialize_with = "opt_int")]
    pub logprobs: Option<i64>,
    /// Prepend the prompt to the text.
    #[serde(default)]
    pub echo: Option<bool>,
    /// Fill-in-the-middle text after the completion; only `null` or empty is supported.
    #[serde(default)]
    pub suffix: Option<String>,
    /// Completions per prompt; only 1.
    #[serde(default, deserialize_with = "opt_int")]
    pub n: Option<i64>,
    /// Only 1.
    #[serde(default, deserialize_with = "opt_int")]
    pub best_of: Option<i64>,
    /// `{"type": "text" | "json_object" | "json_schema", …}`, enforced by constrained decoding.
    #[serde(default)]
    pub response_format: Option<Value>,
    /// vLLM's extension: one of `json`, `regex`, `choice`, `grammar` (Lark), `json_object`.
    #[serde(default)]
    pub structured_outputs: Option<Value>,
    /// End-user id.
    #[serde(default)]
    pub user: Option<String>,
    /// Stream over SSE.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Streaming options.
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    /// Token id (as a string key) to a bias in [-100, 100] added to its logit.
    #[serde(default)]
    pub logit_bias: Option<BTreeMap<String, f64>>,
}

impl CompletionRequest {
    /// True when the client asked for SSE.
    pub fn streaming(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// True when the client asked for the usage chunk.
    pub fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false)
    }

    /// The text prompts, in order (none for token-id prompts).
    pub fn prompts(&self) -> Vec<String> {
        match &self.prompt {
            PromptIn::One(p) => vec![p.clone()],
            PromptIn::Many(v) => v.clone(),
            PromptIn::Tokens(_) | PromptIn::TokenLists(_) => Vec::new(),
        }
    }

    /// The engine prompts, in order.
    fn engine_prompts(&self) -> Vec<Prompt> {
        match &self.prompt {
            PromptIn::One(p) => vec![Prompt::Text(p.clone())],
            PromptIn::Many(v) => v.iter().cloned().map(Prompt::Text).collect(),
            PromptIn::Tokens(ids) => vec![Prompt::Tokens(ids.clone())],
            PromptIn::TokenLists(v) => v.iter().cloned().map(Prompt::Tokens).collect(),
        }
    }

    /// Validate and build one engine request per prompt.
    pub fn normalize(&self, model: &ModelSettings) -> Result<Vec<GenerateRequest>, ApiError> {
        check_n("n", self.n)?;
        check_n("best_of", self.best_of)?;
        if self.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
            return Err(ApiError::invalid(
                "suffix",
                "suffix (fill-in-the-middle) is not supported by this server; leave it out",
            ));
        }
        let prompts = self.engine_prompts();
        let token_ids = matches!(self.prompt, PromptIn::Tokens(_) | PromptIn::TokenLists(_));
        if token_ids && self.echo.unwrap_or(false) {
            return Err(ApiError::invalid(
                "echo",
                "echo is not supported with token-id prompts; send the prompt as text",
            ));
        }
        if prompts
            .iter()
            .any(|p| matches!(p, Prompt::Tokens(ids) if ids.is_empty()))
        {
            return Err(ApiError::invalid(
                "prompt",
                "a token-id prompt must not be empty",
            ));
        }
        if prompts.is_empty() {
            return Err(ApiError::invalid(
                "prompt",
                "prompt must not be an empty list",
            ));
        }
        if prompts.len() > MAX_PROMPTS {
            return Err(ApiError::invalid(
                "prompt",
                format!("at most {MAX_PROMPTS} prompts per request"),
            ));
        }
        let logprobs = match self.logprobs {
            None => None,
            Some(k) if (0..=5).contains(&k) => Some(k as usize),
            Some(k) => {
                return Err(ApiError::invalid(
                    "logprobs",
                    format!("logprobs must be between 0 and 5, got {k}"),
                ))
            }
        };
        let max_tokens =
            check_max_tokens("max_tokens", self.max_tokens)?.unwrap_or(DEFAULT_MAX_TOKENS);
        let sampling = SamplingInput {
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            min_p: self.min_p,
            seed: self.seed,
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            repetition_penalty: self.repetition_penalty,
            logit_bias: self.logit_bias.clone(),
        }
        .resolve(&model.sampling)?;
        let stop = StopSpec::into_list(self.stop.clone())?;
        let constraint = super::structured::request_constraint(
            self.response_format.as_ref(),
            self.structured_outputs.as_ref(),
        )?;
        Ok(prompts
            .into_iter()
            .map(|prompt| GenerateRequest {
                prompt,
                sampling: sampling.clone(),
                max_tokens: Some(max_tokens),
                stop: stop.clone(),
                logprobs,
                constraint: constraint.clone(),
            })
            .collect())
    }
}

/// `choices[].logprobs` in the legacy format.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CompletionLogprobs {
    /// Token texts.
    pub tokens: Vec<String>,
    /// Their logprobs.
    pub token_logprobs: Vec<f32>,
    /// Alternatives per position.
    pub top_logprobs: Vec<BTreeMap<String, f32>>,
    /// Character offset of each token in the text.
    pub text_offset: Vec<usize>,
}

impl CompletionLogprobs {
    /// Append engine logprobs; `offset` is the text length before these tokens.
    pub fn extend(&mut self, lps: &[TokenLogprob], mut offset: usize) {
        for lp in lps {
            self.tokens.push(lp.token.clone());
            self.token_logprobs.push(lp.logprob);
            self.top_logprobs
                .push(lp.top.iter().map(|(t, _, l)| (t.clone(), *l)).collect());
            self.text_offset.push(offset);
            offset += lp.token.len();
        }
    }
}

/// One choice.
#[derive(Debug, Clone, Serialize)]
pub struct CompletionChoice {
    /// Generated text.
    pub text: String,
    /// Which prompt it answers.
    pub index: usize,
    /// Logprobs when requested.
    pub logprobs: Option<CompletionLogprobs>,
    /// `stop` or `length`; null in intermediate chunks.
    pub finish_reason: Option<&'static str>,
}

/// The response, and each streamed chunk (same object type).
pub type Completion = Envelope<CompletionChoice>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_of_prompts_becomes_one_request_each_with_default_max_tokens() {
        let r: CompletionRequest =
            serde_json::from_value(serde_json::json!({"model": "m", "prompt": ["a", "b"]}))
                .unwrap();
        let reqs = r.normalize(&ModelSettings::default()).unwrap();
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[1].prompt, Prompt::Text("b".into()));
        assert_eq!(reqs[0].max_tokens, Some(DEFAULT_MAX_TOKENS));
    }

    #[test]
    fn best_of_above_one_is_rejected() {
        let r: CompletionRequest =
            serde_json::from_value(serde_json::json!({"model": "m", "prompt": "a", "best_of": 2}))
                .unwrap();
        let e = r.normalize(&ModelSettings::default()).unwrap_err();
        assert!(matches!(e, ApiError::InvalidRequest { param: Some(p), .. } if p == "best_of"));
    }

    #[test]
    fn logprob_offsets_follow_token_lengths() {
        let mut lp = CompletionLogprobs::default();
        let tok = |t: &str| TokenLogprob {
            token: t.into(),
            bytes: t.as_bytes().to_vec(),
            logprob: -0.5,
            top: vec![(t.into(), t.as_bytes().to_vec(), -0.5)],
        };
        lp.extend(&[tok("ab"), tok(" c")], 3);
        assert_eq!(lp.text_offset, vec![3, 5]);
        assert_eq!(lp.top_logprobs[1].get(" c"), Some(&-0.5));
    }
}
