//! Anthropic's `thinking` field: what it changes in the prompt, and its budget.

use mlx_serve_engine::engine::Prompt;
use serde_json::Value;

use crate::error::ApiError;

/// `thinking` as the chat template's `enable_thinking` (Qwen3, DeepSeek V3.1, GLM read it):
/// `enabled` → true, `disabled` → false; `adaptive` leaves the template's default. Anything but
/// an object with one of those types is a 400 naming the field. Returns `budget_tokens`.
pub(super) fn apply(
    prompt: &mut Prompt,
    thinking: Option<&Value>,
) -> Result<Option<usize>, ApiError> {
    let Some(t) = thinking.filter(|t| !t.is_null()) else {
        return Ok(None);
    };
    let enable = match t.get("type").and_then(Value::as_str) {
        Some("enabled") => Some(true),
        Some("disabled") => Some(false),
        Some("adaptive") => None,
        _ => {
            return Err(ApiError::field(
                "thinking.type",
                "must be `enabled`, `disabled` or `adaptive`",
            ))
        }
    };
    let budget = match t.get("budget_tokens").filter(|b| !b.is_null()) {
        None => None,
        Some(b) => match b.as_u64().or_else(|| whole_float(b)) {
            Some(n) if n >= 1 => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            _ => {
                return Err(ApiError::field(
                    "thinking.budget_tokens",
                    "must be a positive integer",
                ))
            }
        },
    };
    if let (
        Some(enable),
        Prompt::Chat {
            template_kwargs, ..
        },
    ) = (enable, prompt)
    {
        template_kwargs
            .entry("enable_thinking")
            .or_insert(Value::Bool(enable));
    }
    // Only an enabled thinking has a budget.
    Ok(budget.filter(|_| enable == Some(true)))
}

fn whole_float(v: &Value) -> Option<u64> {
    v.as_f64()
        .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 1e15)
        .map(|f| f as u64)
}
