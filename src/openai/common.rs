//! Pieces shared by the chat and completions APIs: stop lists, usage, sampling validation.

use mlx_serve_engine::engine::{FinishReason, SamplingParams, Usage};
use serde::{Deserialize, Serialize};

use crate::config::SamplingDefaults;
use crate::error::ApiError;

/// `stop`: one string or a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum StopSpec {
    /// A single stop string.
    One(String),
    /// Several stop strings.
    Many(Vec<String>),
}

/// Most stop strings accepted (OpenAI allows 4; a few more cost nothing here).
pub const MAX_STOP: usize = 16;

impl StopSpec {
    /// Non-empty stop strings, validated.
    pub fn into_list(spec: Option<StopSpec>) -> Result<Vec<String>, ApiError> {
        let list = match spec {
            None => Vec::new(),
            Some(StopSpec::One(s)) => vec![s],
            Some(StopSpec::Many(v)) => v,
        };
        if list.len() > MAX_STOP {
            return Err(ApiError::invalid(
                "stop",
                format!(
                    "stop accepts at most {MAX_STOP} strings, got {}",
                    list.len()
                ),
            ));
        }
        Ok(list.into_iter().filter(|s| !s.is_empty()).collect())
    }
}

/// `stream_options`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(from = "ObjectOnly<StreamOptionsFields>")]
pub struct StreamOptions {
    /// Send a final chunk with `usage` and empty `choices` before `[DONE]`.
    #[serde(default)]
    pub include_usage: Option<bool>,
}

/// The fields of `stream_options` (serde's derived struct form, which would also take an array).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamOptionsFields {
    #[serde(default)]
    include_usage: Option<bool>,
}

impl From<ObjectOnly<StreamOptionsFields>> for StreamOptions {
    fn from(o: ObjectOnly<StreamOptionsFields>) -> Self {
        Self {
            include_usage: o.0.include_usage,
        }
    }
}

/// A struct that must arrive as a JSON object: serde's derived `Deserialize` for structs also
/// accepts an array of the fields in order (`"stream_options": []`), which OpenAI refuses.
#[derive(Debug, Clone)]
pub struct ObjectOnly<T>(pub T);

impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for ObjectOnly<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let v = serde_json::Value::deserialize(d)?;
        if !v.is_object() {
            return Err(D::Error::custom(format!(
                "invalid type: {}, expected an object",
                json_kind(&v)
            )));
        }
        serde_json::from_value(v)
            .map(ObjectOnly)
            .map_err(D::Error::custom)
    }
}

/// The JSON type of a value, as error messages name it.
pub fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

/// `Option<i64>` that also takes whole-number floats (`16.0`), as JSON Schema's `integer` does.
pub fn opt_int<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    use serde::de::Error;
    match Option::<serde_json::Number>::deserialize(d)? {
        None => Ok(None),
        Some(n) => {
            if let Some(i) = n.as_i64() {
                return Ok(Some(i));
            }
            match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(f as i64)),
                _ => Err(D::Error::custom(format!(
                    "invalid value: {n}, expected an integer"
                ))),
            }
        }
    }
}

/// Most `logit_bias` entries accepted.
pub const MAX_LOGIT_BIAS: usize = 1024;

/// `logit_bias`: token ids (as JSON object keys) to a bias in [-100, 100].
pub fn logit_bias(
    bias: Option<&std::collections::BTreeMap<String, f64>>,
) -> Result<Vec<(u32, f32)>, ApiError> {
    let Some(bias) = bias else {
        return Ok(Vec::new());
    };
    if bias.len() > MAX_LOGIT_BIAS {
        return Err(ApiError::invalid(
            "logit_bias",
            format!("logit_bias accepts at most {MAX_LOGIT_BIAS} tokens"),
        ));
    }
    let mut out = Vec::with_capacity(bias.len());
    for (k, &v) in bias {
        let Ok(id) = k.trim().parse::<u32>() else {
            return Err(ApiError::invalid(
                "logit_bias",
                format!("logit_bias keys must be token ids (integers), got `{k}`"),
            ));
        };
        if !(-100.0..=100.0).contains(&v) {
            return Err(ApiError::invalid(
                "logit_bias",
                format!("logit_bias values must be between -100 and 100, got {v} for token {id}"),
            ));
        }
        out.push((id, v as f32));
    }
    out.sort_by_key(|&(id, _)| id);
    out.dedup_by_key(|&mut (id, _)| id);
    Ok(out)
}

/// `response_format`: an object whose `type` is `text`, `json_object` or `json_schema`.
pub fn check_response_format(v: Option<&serde_json::Value>) -> Result<(), ApiError> {
    let Some(v) = v else { return Ok(()) };
    if v.is_null() {
        return Ok(());
    }
    let Some(obj) = v.as_object() else {
        return Err(ApiError::invalid(
            "response_format",
            format!(
                "response_format must be an object such as {{\"type\": \"text\"}}, got {}",
                json_kind(v)
            ),
        ));
    };
    match obj.get("type").and_then(serde_json::Value::as_str) {
        Some("text" | "json_object") => Ok(()),
        Some("json_schema") => match obj.get("json_schema") {
            Some(s) if s.is_object() => Ok(()),
            _ => Err(ApiError::invalid(
                "response_format.json_schema",
                "response_format of type `json_schema` needs a `json_schema` object",
            )),
        },
        _ => Err(ApiError::invalid(
            "response_format.type",
            "response_format.type must be one of `text`, `json_object`, `json_schema`",
        )),
    }
}

/// `usage.prompt_tokens_details`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PromptTokensDetails {
    /// Prompt tokens served from the prefix cache.
    pub cached_tokens: usize,
}

/// What every completion object and streamed chunk carries around its choices:
/// `chat.completion`, `chat.completion.chunk` and `text_completion` differ only in `object` and
/// in their choice type.
#[derive(Debug, Clone, Serialize)]
pub struct Envelope<C> {
    /// `chatcmpl-…` / `cmpl-…`, the same in every chunk of a response.
    pub id: String,
    /// `chat.completion`, `chat.completion.chunk` or `text_completion`.
    pub object: &'static str,
    /// Unix seconds.
    pub created: u64,
    /// Model id.
    pub model: String,
    /// Build fingerprint.
    pub system_fingerprint: String,
    /// The choices (none in a usage chunk).
    pub choices: Vec<C>,
    /// Token counts: in responses and in the usage chunk, absent from other chunks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<UsageOut>,
}

/// `usage`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct UsageOut {
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Tokens generated.
    pub completion_tokens: usize,
    /// Sum of the two.
    pub total_tokens: usize,
    /// Cache detail.
    pub prompt_tokens_details: PromptTokensDetails,
}

impl From<Usage> for UsageOut {
    fn from(u: Usage) -> Self {
        Self {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.prompt_tokens + u.completion_tokens,
            prompt_tokens_details: PromptTokensDetails {
                cached_tokens: u.cached_tokens,
            },
        }
    }
}

/// Add one prompt's usage to a running total (completions with several prompts).
pub fn add_usage(total: &mut Usage, u: &Usage) {
    total.prompt_tokens += u.prompt_tokens;
    total.cached_tokens += u.cached_tokens;
    total.completion_tokens += u.completion_tokens;
}

/// OpenAI's `finish_reason` string. `length` wins over `tool_calls`: a call cut off by
/// `max_tokens` keeps the arguments written so far, and the client must know they are cut.
pub fn finish_reason(reason: FinishReason, tool_calls: bool) -> &'static str {
    match reason {
        FinishReason::Length => "length",
        _ if tool_calls => "tool_calls",
        FinishReason::Stop | FinishReason::StopSequence | FinishReason::Cancelled => "stop",
    }
}

/// Sampling fields as a request carries them (all optional).
#[derive(Debug, Clone, Default)]
pub struct SamplingInput {
    /// `temperature`.
    pub temperature: Option<f32>,
    /// `top_p`.
    pub top_p: Option<f32>,
    /// `top_k`.
    pub top_k: Option<i64>,
    /// `min_p`.
    pub min_p: Option<f32>,
    /// `seed`.
    pub seed: Option<i64>,
    /// `presence_penalty`.
    pub presence_penalty: Option<f32>,
    /// `frequency_penalty`.
    pub frequency_penalty: Option<f32>,
    /// `repetition_penalty`.
    pub repetition_penalty: Option<f32>,
    /// `logit_bias`.
    pub logit_bias: Option<std::collections::BTreeMap<String, f64>>,
}

fn in_range(name: &str, v: f32, ok: bool, range: &str) -> Result<f32, ApiError> {
    if ok && v.is_finite() {
        Ok(v)
    } else {
        Err(ApiError::invalid(
            name,
            format!("{name} must be {range}, got {v}"),
        ))
    }
}

impl SamplingInput {
    /// Validate ranges and fill defaults.
    pub fn resolve(&self, d: &SamplingDefaults) -> Result<SamplingParams, ApiError> {
        let t = self.temperature.unwrap_or(d.temperature);
        let temperature = in_range(
            "temperature",
            t,
            (0.0..=2.0).contains(&t),
            "between 0 and 2",
        )?;
        let p = self.top_p.unwrap_or(d.top_p);
        let top_p = in_range("top_p", p, (0.0..=1.0).contains(&p), "between 0 and 1")?;
        // A nucleus of mass 0 keeps only the most likely token: greedy decoding.
        let (temperature, top_p) = if top_p == 0.0 {
            (0.0, 1.0)
        } else {
            (temperature, top_p)
        };
        let min_p = self.min_p.unwrap_or(d.min_p);
        let min_p = in_range(
            "min_p",
            min_p,
            (0.0..=1.0).contains(&min_p),
            "between 0 and 1",
        )?;
        let top_k = match self.top_k {
            None => d.top_k,
            // OpenAI-compatible servers commonly send -1 for "disabled".
            Some(k) if k <= 0 => 0,
            Some(k) => {
                usize::try_from(k).map_err(|_| ApiError::invalid("top_k", "top_k is too large"))?
            }
        };
        let pp = self.presence_penalty.unwrap_or(0.0);
        let presence_penalty = in_range(
            "presence_penalty",
            pp,
            (-2.0..=2.0).contains(&pp),
            "between -2 and 2",
        )?;
        let fp = self.frequency_penalty.unwrap_or(0.0);
        let frequency_penalty = in_range(
            "frequency_penalty",
            fp,
            (-2.0..=2.0).contains(&fp),
            "between -2 and 2",
        )?;
        let rp = self.repetition_penalty.unwrap_or(d.repetition_penalty);
        let repetition_penalty = in_range(
            "repetition_penalty",
            rp,
            rp > 0.0 && rp <= 10.0,
            "greater than 0 and at most 10",
        )?;
        Ok(SamplingParams {
            temperature,
            top_p,
            top_k,
            min_p,
            repetition_penalty,
            presence_penalty,
            frequency_penalty,
            // Negative seeds are legal in OpenAI's API; reinterpret the bits.
            seed: self.seed.map(|s| s as u64),
            logit_bias: logit_bias(self.logit_bias.as_ref())?,
        })
    }
}

/// Most choices one request may ask for (`n`, and `best_of` on completions): each is an engine
/// sequence of its own, generated together.
pub const MAX_CHOICES: usize = 16;

/// `n` (or `best_of`): how many choices, 1 when absent, at most [`MAX_CHOICES`].
pub fn choice_count(name: &str, n: Option<i64>) -> Result<usize, ApiError> {
    match n {
        None => Ok(1),
        Some(n) if (1..=MAX_CHOICES as i64).contains(&n) => Ok(n as usize),
        Some(n) => Err(ApiError::invalid(
            name,
            format!("{name} must be between 1 and {MAX_CHOICES}, got {n}"),
        )),
    }
}

/// `max_tokens`: at least 1 when given.
pub fn check_max_tokens(name: &str, v: Option<i64>) -> Result<Option<usize>, ApiError> {
    match v {
        None => Ok(None),
        Some(v) if v >= 1 => usize::try_from(v)
            .map(Some)
            .map_err(|_| ApiError::invalid(name, format!("{name} is too large"))),
        Some(v) => Err(ApiError::invalid(
            name,
            format!("{name} must be at least 1, got {v}"),
        )),
    }
}

/// `chat_template_kwargs`: an object (or null) of extra template variables.
pub(crate) fn template_kwargs(
    v: Option<&serde_json::Value>,
) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    match v {
        None | Some(serde_json::Value::Null) => Ok(Default::default()),
        Some(serde_json::Value::Object(m)) => Ok(m.clone()),
        Some(_) => Err(ApiError::invalid(
            "chat_template_kwargs",
            "chat_template_kwargs must be an object of template variables",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn out_of_range_temperature_names_the_field() {
        let input = SamplingInput {
            temperature: Some(3.0),
            ..SamplingInput::default()
        };
        let err = input.resolve(&SamplingDefaults::default()).unwrap_err();
        assert!(
            err.kind == ErrorKind::InvalidRequest && err.param.as_deref() == Some("temperature")
        );
    }

    #[test]
    fn defaults_fill_missing_values_and_negative_top_k_disables() {
        let input = SamplingInput {
            top_k: Some(-1),
            seed: Some(-1),
            ..SamplingInput::default()
        };
        let d = SamplingDefaults {
            temperature: 0.5,
            ..SamplingDefaults::default()
        };
        let s = input.resolve(&d).unwrap();
        assert_eq!(s.temperature, 0.5);
        assert_eq!(s.top_k, 0);
        assert_eq!(s.seed, Some(u64::MAX));
    }

    #[test]
    fn choice_count_defaults_to_one_and_names_the_field_out_of_range() {
        assert_eq!(choice_count("n", None).unwrap(), 1);
        assert_eq!(choice_count("n", Some(16)).unwrap(), 16);
        for bad in [0, -1, 17] {
            let err = choice_count("best_of", Some(bad)).unwrap_err();
            assert!(
                err.kind == ErrorKind::InvalidRequest && err.param.as_deref() == Some("best_of")
            );
        }
    }

    #[test]
    fn stop_list_drops_empty_strings_and_caps_length() {
        let one = StopSpec::into_list(Some(StopSpec::One("x".into()))).unwrap();
        assert_eq!(one, vec!["x"]);
        let many = StopSpec::into_list(Some(StopSpec::Many(vec!["".into(), "y".into()]))).unwrap();
        assert_eq!(many, vec!["y"]);
        let too_many = StopSpec::into_list(Some(StopSpec::Many(vec!["a".into(); 17])));
        assert!(too_many.is_err());
    }
}
