//! `tool_choice` as the OpenAI API accepts it, checked against the request's `tools`.

use mlx_serve_actors::engine::Constraint;
use mlx_serve_actors::guided;
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
    if needs_tools {
        check_forced_schemas(&choice, tools)?;
    }
    Ok(choice)
}

/// A forced call is generated under its tool's `parameters` schema: one llguidance cannot
/// enforce is a 400 naming that tool, before anything is generated.
fn check_forced_schemas(choice: &ToolChoice, tools: &[Value]) -> Result<(), ApiError> {
    for (i, t) in tools.iter().enumerate() {
        let f = t.get("function").unwrap_or(t);
        let name = f.get("name").and_then(Value::as_str).unwrap_or_default();
        if matches!(choice, ToolChoice::Function(n) if n != name) {
            continue;
        }
        let (key, params) = match (f.get("parameters"), f.get("input_schema")) {
            (Some(p), _) => ("parameters", p),
            (None, Some(p)) => ("input_schema", p),
            (None, None) => continue,
        };
        if !params.is_object() {
            continue;
        }
        let param = if t.get("function").is_some() {
            format!("tools[{i}].function.{key}")
        } else {
            format!("tools[{i}].{key}")
        };
        if let Err(e) = guided::check(&Constraint::JsonSchema(params.clone())) {
            return Err(ApiError::invalid(
                &param,
                format!(
                    "the schema of tool `{name}` ({param}) cannot be enforced for tool_choice: {e}"
                ),
            ));
        }
    }
    Ok(())
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

    #[test]
    fn a_forced_tool_whose_schema_cannot_be_enforced_is_named() {
        let tools = vec![
            json!({"type": "function", "function": {"name": "ok", "parameters": {"type": "object"}}}),
            json!({"type": "function", "function": {"name": "bad", "parameters": {"type": "strng"}}}),
        ];
        let e = tool_choice(Some(&json!("required")), &tools).expect_err("bad schema");
        assert_eq!(param_of(e).as_deref(), Some("tools[1].function.parameters"));
        // Only the named function's schema matters, and `auto` constrains nothing.
        let named = json!({"type": "function", "function": {"name": "ok"}});
        assert!(tool_choice(Some(&named), &tools).is_ok());
        assert!(tool_choice(Some(&json!("auto")), &tools).is_ok());
    }
}
