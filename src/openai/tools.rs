//! `tool_choice` as the OpenAI API accepts it, checked against the request's `tools`.

use mlx_serve_actors::tool_parser::{ToolChoice, ToolChoiceError, ToolSet};
use serde_json::Value;

use crate::error::ApiError;

/// The request's `tool_choice` (absent: `auto`). Errors are 400s naming `tool_choice`: an
/// unknown value, a named function that `tools` does not offer, or `required` / a named
/// function without any `tools`.
pub fn tool_choice(value: Option<&Value>, tools: &[Value]) -> Result<ToolChoice, ApiError> {
    let choice = ToolChoice::from_json(value).map_err(|e| invalid(&e))?;
    let needs_tools = matches!(choice, ToolChoice::Required | ToolChoice::Function(_));
    if needs_tools && tools.is_empty() {
        return Err(ApiError::invalid(
            "tool_choice",
            "tool_choice `required` or a named function needs `tools`",
        ));
    }
    choice
        .validate(&ToolSet::from_definitions(tools))
        .map_err(|e| invalid(&e))?;
    Ok(choice)
}

fn invalid(e: &ToolChoiceError) -> ApiError {
    let message = match e {
        ToolChoiceError::Invalid(v) => format!(
            "invalid tool_choice {v}: expected \"none\", \"auto\", \"required\" or \
             {{\"type\": \"function\", \"function\": {{\"name\": …}}}}"
        ),
        other => other.to_string(),
    };
    ApiError::invalid("tool_choice", message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tools() -> Vec<Value> {
        vec![json!({"type": "function", "function": {"name": "get_weather"}})]
    }

    fn param_of(e: ApiError) -> Option<String> {
        match e {
            ApiError::InvalidRequest { param, .. } => param,
            _ => None,
        }
    }

    #[test]
    fn openai_choices_are_accepted() {
        assert_eq!(tool_choice(None, &tools()), Ok(ToolChoice::Auto));
        assert_eq!(
            tool_choice(Some(&json!("required")), &tools()),
            Ok(ToolChoice::Required)
        );
        let named = json!({"type": "function", "function": {"name": "get_weather"}});
        assert_eq!(
            tool_choice(Some(&named), &tools()),
            Ok(ToolChoice::Function("get_weather".into()))
        );
        assert_eq!(tool_choice(Some(&json!("none")), &[]), Ok(ToolChoice::None));
    }

    #[test]
    fn bad_choices_name_the_field() {
        let unknown = json!({"type": "function", "function": {"name": "launch"}});
        for (v, tools) in [
            (json!("sometimes"), tools()),
            (json!(3), tools()),
            (unknown, tools()),
            (json!("required"), Vec::new()),
        ] {
            let e = tool_choice(Some(&v), &tools).expect_err("rejected");
            assert_eq!(param_of(e).as_deref(), Some("tool_choice"), "{v}");
        }
    }
}
