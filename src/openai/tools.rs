//! `tool_choice` as the OpenAI API accepts it, checked against the request's `tools`.

use mlx_serve_actors::tool_parser::{ToolChoice, ToolChoiceError, ToolSet};
use mlx_serve_engine::engine::Constraint;
use mlx_serve_engine::guided;
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

/// OpenAI's rule for function names: `^[a-zA-Z0-9_-]{1,64}$`.
pub fn valid_function_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The request's `tools`, checked as OpenAI checks them: each is
/// `{"type": "function", "function": {"name", "description"?, "parameters"?}}` with a valid
/// name and, when given, `parameters` that is a JSON Schema object (`"type": "object"`).
pub fn check_tools(tools: &[Value]) -> Result<(), ApiError> {
    for (i, t) in tools.iter().enumerate() {
        let Some(tool) = t.as_object() else {
            return Err(ApiError::invalid(
                format!("tools[{i}]"),
                "each tool must be an object",
            ));
        };
        match tool.get("type") {
            None => {}
            Some(Value::String(k)) if k == "function" => {}
            Some(other) => {
                return Err(ApiError::invalid(
                    format!("tools[{i}].type"),
                    format!("tool type must be `function`, got {other}"),
                ))
            }
        }
        let Some(function) = tool.get("function").and_then(Value::as_object) else {
            return Err(ApiError::invalid(
                format!("tools[{i}].function"),
                "each tool needs a `function` object",
            ));
        };
        let name = match function.get("name") {
            Some(Value::String(n)) => n,
            _ => {
                return Err(ApiError::invalid(
                    format!("tools[{i}].function.name"),
                    "each tool needs `function.name` (a string)",
                ))
            }
        };
        if !valid_function_name(name) {
            return Err(ApiError::invalid(
                format!("tools[{i}].function.name"),
                format!(
                    "invalid function name {name:?}: use 1 to 64 characters from a-z, A-Z, \
                     0-9, `_` and `-`"
                ),
            ));
        }
        if let Some(d) = function.get("description") {
            if !d.is_string() && !d.is_null() {
                return Err(ApiError::invalid(
                    format!("tools[{i}].function.description"),
                    "`description` must be a string",
                ));
            }
        }
        match function.get("parameters") {
            None | Some(Value::Null) => {}
            Some(Value::Object(schema)) => match schema.get("type") {
                None => {}
                Some(Value::String(k)) if k == "object" => {}
                Some(other) => {
                    return Err(ApiError::invalid(
                        format!("tools[{i}].function.parameters"),
                        format!(
                            "invalid schema for function {name:?}: parameters must be a JSON \
                             Schema of `\"type\": \"object\"`, got `\"type\": {other}`"
                        ),
                    ))
                }
            },
            Some(_) => {
                return Err(ApiError::invalid(
                    format!("tools[{i}].function.parameters"),
                    format!(
                        "invalid schema for function {name:?}: parameters must be a JSON Schema \
                         object"
                    ),
                ))
            }
        }
    }
    Ok(())
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
    use crate::error::ErrorKind;
    use serde_json::json;

    fn tools() -> Vec<Value> {
        vec![json!({"type": "function", "function": {"name": "get_weather"}})]
    }

    fn param_of(e: ApiError) -> Option<String> {
        match e.kind {
            ErrorKind::InvalidRequest => e.param,
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
    fn malformed_tools_name_the_field() {
        let f = |function: Value| json!([{"type": "function", "function": function}]);
        for (tools, param) in [
            (f(json!({"name": ""})), "tools[0].function.name"),
            (f(json!({"name": "get weather"})), "tools[0].function.name"),
            (f(json!({"name": "x".repeat(65)})), "tools[0].function.name"),
            (
                f(json!({"name": "ok", "parameters": "{}"})),
                "tools[0].function.parameters",
            ),
            (
                f(json!({"name": "ok", "parameters": {"type": "banana"}})),
                "tools[0].function.parameters",
            ),
            (json!(["x"]), "tools[0]"),
            (
                json!([{"type": "retrieval", "function": {"name": "a"}}]),
                "tools[0].type",
            ),
        ] {
            let e = check_tools(tools.as_array().unwrap()).expect_err("rejected");
            assert_eq!(param_of(e).as_deref(), Some(param), "{tools}");
        }
        let good = f(json!({"name": "get_weather-2", "parameters": {"type": "object"}}));
        assert!(check_tools(good.as_array().unwrap()).is_ok());
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
