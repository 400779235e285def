//! Cache keys: a SHA-256 over a canonical JSON rendering of everything that changes the answer.
//!
//! The input is the engine-level request (after the OpenAI or Anthropic wire format has been
//! normalized) plus the few request fields the engine does not see, so both APIs share entries.
//! Canonical means: object keys sorted at every depth, numbers with one spelling (`1.0` == `1`),
//! `-0` == `0`; so the key does not depend on how a client ordered its JSON.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{json, Number, Value};
use sha2::{Digest, Sha256};

use mlx_serve_engine::engine::{GenerateRequest, SamplingParams};

/// Bumped whenever the key layout changes, so old persisted entries are never matched.
const KEY_DOMAIN: &[u8] = b"mlx-serve/response-cache/key/v1\0";

/// Everything that identifies one cacheable answer.
#[derive(Debug, Clone, Copy)]
pub struct KeyInput<'a> {
    /// Who asks: the API key (or a tenant id derived from it); `""` when the server has no keys.
    /// Entries never cross tenants.
    pub tenant: &'a str,
    /// The served model id.
    pub model: &'a str,
    /// The normalized request: prompt (messages and tools), sampling, max_tokens, stop, logprobs.
    pub request: &'a GenerateRequest,
    /// `tool_choice` as the client sent it (`None` when absent).
    pub tool_choice: Option<&'a Value>,
    /// `response_format` (OpenAI) or its equivalent (`None` when absent).
    pub response_format: Option<&'a Value>,
    /// Any other field that changes the rendered answer (e.g. `parallel_tool_calls`, `n`,
    /// `echo`, `suffix`); pass an object. `None` when there is none.
    pub extra: Option<&'a Value>,
}

/// A 256-bit response-cache key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CacheKey([u8; 32]);

impl CacheKey {
    /// The canonical key of a request.
    pub fn compute(input: &KeyInput<'_>) -> Self {
        let request = input.request;
        let mut document = json!({
            "tenant": input.tenant,
            "model": input.model,
            "prompt": request.prompt,
            "sampling": sampling_value(&request.sampling),
            "max_tokens": request.max_tokens,
            "stop": request.stop,
            "logprobs": request.logprobs,
            "tool_choice": input.tool_choice,
            "response_format": input.response_format,
            "extra": input.extra,
        });
        // Only when present, so the keys of unconstrained requests stay what they were.
        if let Some(c) = &request.constraint {
            document["constraint"] = json!(c);
        }
        let mut canonical = String::with_capacity(256);
        write_canonical(&document, &mut canonical);
        let mut hasher = Sha256::new();
        hasher.update(KEY_DOMAIN);
        hasher.update(canonical.as_bytes());
        Self(hasher.finalize().into())
    }

    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Rebuilds a key from its digest (disk index, tests).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Lower-case hex of the digest (Redis keys, logs).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({})", &self.to_hex()[..16])
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// The sampling settings as they affect output. Greedy decoding takes the argmax of the
/// penalized logits, which `top_p`, `top_k`, `min_p` (they always keep the best token) and the
/// seed cannot change; dropping them lets greedy requests that differ only there share entries.
fn sampling_value(sampling: &SamplingParams) -> Value {
    let mut penalties = json!({
        "repetition_penalty": sampling.repetition_penalty,
        "presence_penalty": sampling.presence_penalty,
        "frequency_penalty": sampling.frequency_penalty,
    });
    // Only when set, so keys of requests without a bias stay what they were.
    if !sampling.logit_bias.is_empty() {
        penalties["logit_bias"] = json!(sampling.logit_bias);
    }
    if sampling.temperature <= 0.0 {
        return json!({ "greedy": true, "penalties": penalties });
    }
    json!({
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "top_k": sampling.top_k,
        "min_p": sampling.min_p,
        "seed": sampling.seed,
        "penalties": penalties,
    })
}

/// Writes `value` as JSON with sorted object keys and normalized numbers.
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(n, out),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            // Sorted here rather than relying on serde_json's map type: a `preserve_order`
            // feature enabled anywhere in the build would turn it into insertion order.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(k, out);
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
    }
}

fn write_number(n: &Number, out: &mut String) {
    use std::fmt::Write;
    if let Some(i) = n.as_i64() {
        let _ = write!(out, "{i}");
    } else if let Some(u) = n.as_u64() {
        let _ = write!(out, "{u}");
    } else if let Some(f) = n.as_f64() {
        // Integral floats are spelled as integers so `1.0` and `1` hash alike; `-0.0` becomes 0.
        if f.fract() == 0.0 && f.abs() < 9.0e15 {
            let _ = write!(out, "{}", f as i64);
        } else {
            let _ = write!(out, "{f:e}");
        }
    } else {
        out.push_str(&n.to_string());
    }
}

fn write_string(s: &str, out: &mut String) {
    // serde_json's escaping is canonical (one spelling per string).
    match serde_json::to_string(s) {
        Ok(quoted) => out.push_str(&quoted),
        Err(_) => out.push_str("\"\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlx_serve_engine::engine::{ChatMessage, Prompt};

    fn chat(content: &str, tools: Vec<Value>) -> GenerateRequest {
        GenerateRequest {
            prompt: Prompt::Chat {
                messages: vec![
                    ChatMessage {
                        role: "system".into(),
                        content: "be brief".into(),
                        ..ChatMessage::default()
                    },
                    ChatMessage {
                        role: "user".into(),
                        content: content.into(),
                        ..ChatMessage::default()
                    },
                ],
                tools,
                add_generation_prompt: true,
                template_kwargs: Default::default(),
            },
            sampling: SamplingParams::default(),
            max_tokens: Some(64),
            stop: vec![],
            logprobs: None,
            constraint: None,
            reasoning: None,
            encoded: None,
        }
    }

    fn key(req: &GenerateRequest) -> CacheKey {
        CacheKey::compute(&KeyInput {
            tenant: "",
            model: "m",
            request: req,
            tool_choice: None,
            response_format: None,
            extra: None,
        })
    }

    fn canonical(text: &str) -> String {
        let value: Value = serde_json::from_str(text).expect("test JSON parses");
        let mut out = String::new();
        write_canonical(&value, &mut out);
        out
    }

    #[test]
    fn json_key_order_and_number_spelling_do_not_change_the_key() {
        assert_eq!(
            canonical(r#"{"b":{"y":1,"x":[1.0,{"q":2,"p":-0.0}]},"a":0.5}"#),
            canonical(r#"{"a":0.5,"b":{"x":[1,{"p":0,"q":2.0}],"y":1}}"#)
        );
        let tool_a = json!({"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"integer"}}}}});
        let tool_b: Value = serde_json::from_str(
            r#"{"function":{"parameters":{"properties":{"b":{"type":"integer"},"a":{"type":"string"}},"type":"object"},"name":"f"},"type":"function"}"#,
        )
        .expect("parses");
        assert_eq!(
            key(&chat("hi", vec![tool_a])),
            key(&chat("hi", vec![tool_b]))
        );
    }

    #[test]
    fn array_order_and_values_do_change_the_key() {
        assert_ne!(canonical("[1,2]"), canonical("[2,1]"));
        assert_ne!(canonical(r#"{"a":"1"}"#), canonical(r#"{"a":1}"#));
        assert_ne!(canonical("0.5"), canonical("0.25"));
    }

    #[test]
    fn every_output_changing_parameter_changes_the_key() {
        let base = chat("hi", vec![]);
        let k0 = key(&base);
        let mut variants = Vec::new();
        variants.push(chat("hi!", vec![]));
        variants.push(chat(
            "hi",
            vec![json!({"type":"function","function":{"name":"f"}})],
        ));
        let mut v = base.clone();
        v.max_tokens = Some(65);
        variants.push(v);
        let mut v = base.clone();
        v.stop = vec!["\n".into()];
        variants.push(v);
        let mut v = base.clone();
        v.logprobs = Some(2);
        variants.push(v);
        let mut v = base.clone();
        v.sampling.temperature = 0.5;
        variants.push(v);
        let mut v = base.clone();
        v.sampling.repetition_penalty = 1.1;
        variants.push(v);
        let mut v = base.clone();
        v.sampling.frequency_penalty = 0.3;
        variants.push(v);
        let mut v = base.clone();
        if let Prompt::Chat {
            add_generation_prompt,
            ..
        } = &mut v.prompt
        {
            *add_generation_prompt = false;
        }
        variants.push(v);
        let mut v = base.clone();
        v.prompt = Prompt::Text("hi".into());
        variants.push(v);
        for (i, variant) in variants.iter().enumerate() {
            assert_ne!(key(variant), k0, "variant {i} must change the key");
        }

        let sampled = |seed: Option<u64>, top_p: f32| {
            let mut v = base.clone();
            v.sampling.temperature = 0.7;
            v.sampling.seed = seed;
            v.sampling.top_p = top_p;
            key(&v)
        };
        assert_ne!(sampled(Some(1), 1.0), sampled(Some(2), 1.0));
        assert_ne!(sampled(Some(1), 1.0), sampled(Some(1), 0.9));
    }

    #[test]
    fn side_fields_and_model_change_the_key() {
        let req = chat("hi", vec![]);
        let with = |model: &str, tc: Option<&Value>, rf: Option<&Value>, extra: Option<&Value>| {
            CacheKey::compute(&KeyInput {
                tenant: "",
                model,
                request: &req,
                tool_choice: tc,
                response_format: rf,
                extra,
            })
        };
        let auto = json!("auto");
        let none = json!("none");
        let json_mode = json!({"type":"json_object"});
        let extra = json!({"parallel_tool_calls": false});
        let base = with("m", None, None, None);
        assert_ne!(base, with("other", None, None, None));
        assert_ne!(base, with("m", Some(&auto), None, None));
        assert_ne!(
            with("m", Some(&auto), None, None),
            with("m", Some(&none), None, None)
        );
        assert_ne!(base, with("m", None, Some(&json_mode), None));
        assert_ne!(base, with("m", None, None, Some(&extra)));
        assert_eq!(base, with("m", None, None, None));
    }

    #[test]
    fn tenants_never_share_a_key() {
        let req = chat("hi", vec![]);
        let for_tenant = |tenant: &str| {
            CacheKey::compute(&KeyInput {
                tenant,
                model: "m",
                request: &req,
                tool_choice: None,
                response_format: None,
                extra: None,
            })
        };
        assert_ne!(for_tenant("sk-a"), for_tenant("sk-b"));
        assert_ne!(for_tenant(""), for_tenant("sk-a"));
        assert_eq!(for_tenant("sk-a"), for_tenant("sk-a"));
    }

    #[test]
    fn greedy_requests_ignore_filters_and_seed_that_cannot_change_argmax() {
        let base = chat("hi", vec![]);
        let mut filtered = base.clone();
        filtered.sampling.top_p = 0.9;
        filtered.sampling.top_k = 40;
        filtered.sampling.seed = Some(3);
        assert_eq!(key(&base), key(&filtered));
        let mut negative_zero = base.clone();
        negative_zero.sampling.temperature = -0.0;
        assert_eq!(key(&base), key(&negative_zero));
    }

    #[test]
    fn hex_round_trips_and_debug_is_short() {
        let k = key(&chat("hi", vec![]));
        assert_eq!(k.to_hex().len(), 64);
        assert_eq!(CacheKey::from_bytes(*k.as_bytes()), k);
        assert!(format!("{k:?}").len() < 30);
    }
}
