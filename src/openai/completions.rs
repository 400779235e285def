//! `POST /v1/completions` (legacy text completions) wire types and normalization.

use std::collections::BTreeMap;

use mlx_serve_engine::engine::{GenerateRequest, Prompt, TokenLogprob};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::common::{
    check_max_tokens, choice_count, opt_int, Envelope, SamplingInput, StopSpec, StreamOptions,
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
    /// How long the model stays loaded after this request (Ollama's `keep_alive`).
    #[serde(default)]
    pub keep_alive: Option<crate::keep_alive::KeepAlive>,
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
    /// Completions returned per prompt, 1 ..= `MAX_CHOICES` (default 1).
    #[serde(default, deserialize_with = "opt_int")]
    pub n: Option<i64>,
    /// Completions generated per prompt, `n` ..= `MAX_CHOICES` (default `n`); the `n` with the
    /// highest summed logprob are returned. Not with `stream` when above `n`.
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

    /// `n` and `best_of`, validated: choices returned and choices generated per prompt.
    pub fn choices(&self) -> Result<ChoicePlan, ApiError> {
        let n = choice_count("n", self.n)?;
        let best_of = match self.best_of {
            None => n,
            Some(_) => choice_count("best_of", self.best_of)?,
        };
        if best_of < n {
            return Err(ApiError::invalid(
                "best_of",
                format!("best_of must be at least n ({n}), got {best_of}"),
            ));
        }
        if best_of > n && self.streaming() {
            return Err(ApiError::invalid(
                "best_of",
                "best_of greater than n cannot be streamed: the best choices are known only at the end",
            ));
        }
        Ok(ChoicePlan { n, best_of })
    }

    /// Validate and build one engine request per prompt (one choice's; see [`Self::choices`]).
    pub fn normalize(&self, model: &ModelSettings) -> Result<Vec<GenerateRequest>, ApiError> {
        let plan = self.choices()?;
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
            // Ranking `best_of` choices needs every token's logprob.
            None if plan.ranks() => Some(0),
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
                reasoning: None,
                encoded: None,
            })
            .collect())
    }
}

/// How many choices a completion request generates and returns per prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChoicePlan {
    /// Returned (`n`).
    pub n: usize,
    /// Generated (`best_of`, at least `n`).
    pub best_of: usize,
}

impl ChoicePlan {
    /// Whether choices are generated beyond those returned, to be ranked.
    pub fn ranks(&self) -> bool {
        self.best_of > self.n
    }
}

/// The `n` best of one prompt's generated choices: highest summed token logprob first (ties
/// keep generation order). Choices without logprobs sum to 0.
pub fn best_choices<T>(
    mut choices: Vec<T>,
    n: usize,
    logprobs: impl Fn(&T) -> &[TokenLogprob],
) -> Vec<T> {
    let score = |c: &T| -> f64 { logprobs(c).iter().map(|l| f64::from(l.logprob)).sum() };
    let mut scored: Vec<(f64, usize)> = choices.iter().map(score).zip(0..).collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let keep: Vec<usize> = scored.into_iter().take(n).map(|(_, i)| i).collect();
    let mut slots: Vec<Option<T>> = choices.drain(..).map(Some).collect();
    keep.into_iter().filter_map(|i| slots[i].take()).collect()
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
    use crate::error::ErrorKind;

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

    fn request(body: serde_json::Value) -> CompletionRequest {
        serde_json::from_value(body).unwrap()
    }

    fn param_of(e: ApiError) -> Option<String> {
        match e.kind {
            ErrorKind::InvalidRequest => e.param,
            _ => None,
        }
    }

    #[test]
    fn best_of_below_n_or_streamed_above_it_is_rejected() {
        let below = request(serde_json::json!({"model": "m", "prompt": "a", "n": 3, "best_of": 2}));
        assert_eq!(
            param_of(below.choices().unwrap_err()).as_deref(),
            Some("best_of")
        );
        let streamed =
            request(serde_json::json!({"model": "m", "prompt": "a", "best_of": 2, "stream": true}));
        assert_eq!(
            param_of(streamed.choices().unwrap_err()).as_deref(),
            Some("best_of")
        );
        let equal = request(
            serde_json::json!({"model": "m", "prompt": "a", "n": 2, "best_of": 2, "stream": true}),
        );
        assert_eq!(equal.choices().unwrap(), ChoicePlan { n: 2, best_of: 2 });
    }

    #[test]
    fn ranked_best_of_asks_the_engine_for_logprobs() {
        let r = request(serde_json::json!({"model": "m", "prompt": "a", "best_of": 3}));
        assert_eq!(r.choices().unwrap(), ChoicePlan { n: 1, best_of: 3 });
        let reqs = r.normalize(&ModelSettings::default()).unwrap();
        assert_eq!(reqs[0].logprobs, Some(0));
        let plain = request(serde_json::json!({"model": "m", "prompt": "a", "n": 3}));
        assert_eq!(
            plain.normalize(&ModelSettings::default()).unwrap()[0].logprobs,
            None
        );
    }

    #[test]
    fn best_choices_keep_the_highest_summed_logprobs_in_rank_order() {
        let tok = |lp: f32| TokenLogprob {
            token: "t".into(),
            bytes: b"t".to_vec(),
            logprob: lp,
            top: Vec::new(),
        };
        let choices = vec![
            ("a", vec![tok(-1.0), tok(-1.0)]),
            ("b", vec![tok(-0.5)]),
            ("c", vec![tok(-3.0)]),
            ("d", vec![tok(-0.25), tok(-0.25)]),
        ];
        let best = best_choices(choices, 2, |c| &c.1);
        let names: Vec<_> = best.iter().map(|c| c.0).collect();
        assert_eq!(names, ["b", "d"], "ties keep generation order");
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
