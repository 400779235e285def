//! Structured outputs on the OpenAI routes: `response_format` and vLLM's `structured_outputs`
//! extension, read into an engine [`Constraint`] and compiled once here so a schema that
//! cannot be enforced is a 400 naming the field, never a silently unconstrained answer.

use mlx_serve_engine::engine::Constraint;
use mlx_serve_engine::guided;
use serde_json::Value;

use crate::error::ApiError;

/// The constraint of a request's `response_format` and `structured_outputs` (at most one of
/// the two may constrain), checked to compile.
pub fn request_constraint(
    response_format: Option<&Value>,
    structured_outputs: Option<&Value>,
) -> Result<Option<Constraint>, ApiError> {
    let from_format = response_format_constraint(response_format)?;
    let from_vllm = structured_outputs_constraint(structured_outputs)?;
    match (from_format, from_vllm) {
        (Some(_), Some(_)) => Err(ApiError::invalid(
            "structured_outputs",
            "use either response_format or structured_outputs, not both",
        )),
        (Some(c), None) => checked(c, "response_format").map(Some),
        (None, Some(c)) => checked(c, "structured_outputs").map(Some),
        (None, None) => Ok(None),
    }
}

/// Compiles `constraint`; a failure is a 400 on `param` that says what llguidance refused.
pub fn checked(constraint: Constraint, param: &str) -> Result<Constraint, ApiError> {
    match guided::check(&constraint) {
        Ok(()) => Ok(constraint),
        Err(e) => Err(ApiError::invalid(
            param,
            format!("{param} cannot be enforced: {e}"),
        )),
    }
}

/// OpenAI's `response_format`: `text` (no constraint), `json_object`, or `json_schema` with
/// `{"name", "schema", "strict"}` (the schema is enforced whatever `strict` says).
pub fn response_format_constraint(v: Option<&Value>) -> Result<Option<Constraint>, ApiError> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let kind = v.get("type").and_then(Value::as_str).ok_or_else(|| {
        ApiError::invalid(
            "response_format.type",
            "response_format needs a `type`: text, json_object or json_schema",
        )
    })?;
    match kind {
        "text" => Ok(None),
        "json_object" => Ok(Some(Constraint::JsonObject)),
        "json_schema" => {
            let spec = v.get("json_schema").ok_or_else(|| {
                ApiError::invalid(
                    "response_format.json_schema",
                    "response_format of type json_schema needs `json_schema`",
                )
            })?;
            let schema = spec.get("schema").ok_or_else(|| {
                ApiError::invalid(
                    "response_format.json_schema.schema",
                    "response_format.json_schema needs a `schema`",
                )
            })?;
            if !(schema.is_object() || schema.is_boolean()) {
                return Err(ApiError::invalid(
                    "response_format.json_schema.schema",
                    "response_format.json_schema.schema must be a JSON Schema object",
                ));
            }
            Ok(Some(Constraint::JsonSchema(schema.clone())))
        }
        other => Err(ApiError::invalid(
            "response_format.type",
            format!("response_format type `{other}` is not supported: use text, json_object or json_schema"),
        )),
    }
}

/// vLLM's `structured_outputs`: exactly one of `json` (a schema, or its JSON text), `regex`,
/// `choice` (a list of strings), `grammar` (llguidance Lark) or `json_object: true`.
pub fn structured_outputs_constraint(v: Option<&Value>) -> Result<Option<Constraint>, ApiError> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let Some(obj) = v.as_object() else {
        return Err(ApiError::invalid(
            "structured_outputs",
            "structured_outputs must be an object",
        ));
    };
    let mut found = Vec::new();
    for (key, value) in obj {
        if value.is_null() || value == &Value::Bool(false) {
            continue;
        }
        let param = format!("structured_outputs.{key}");
        let c = match key.as_str() {
            "json" => Constraint::JsonSchema(match value {
                Value::String(text) => serde_json::from_str(text).map_err(|e| {
                    ApiError::invalid(&param, format!("{param} is not valid JSON: {e}"))
                })?,
                other => other.clone(),
            }),
            "regex" => Constraint::Regex(string_field(value, &param)?),
            "grammar" => Constraint::Lark(string_field(value, &param)?),
            "json_object" => Constraint::JsonObject,
            "choice" => {
                let choices: Vec<&str> = value
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                if choices.is_empty() {
                    return Err(ApiError::invalid(
                        &param,
                        format!("{param} must be a non-empty list of strings"),
                    ));
                }
                Constraint::Regex(choice_regex(&choices))
            }
            // Options that do not constrain by themselves (vLLM's backend knobs and friends).
            "disable_fallback" | "disable_any_whitespace" | "disable_additional_properties"
            | "whitespace_pattern" | "backend" => continue,
            other => {
                return Err(ApiError::invalid(
                    &param,
                    format!("structured_outputs.{other} is not supported: use json, regex, choice, grammar or json_object"),
                ))
            }
        };
        found.push(c);
    }
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        _ => Err(ApiError::invalid(
            "structured_outputs",
            "structured_outputs takes exactly one of json, regex, choice, grammar or json_object",
        )),
    }
}

fn string_field(v: &Value, param: &str) -> Result<String, ApiError> {
    v.as_str()
        .map(str::to_owned)
        .ok_or_else(|| ApiError::invalid(param, format!("{param} must be a string")))
}

/// A regex matching exactly one of `choices`.
pub fn choice_regex(choices: &[&str]) -> String {
    let escaped: Vec<String> = choices.iter().map(|c| regex_escape(c)).collect();
    format!("({})", escaped.join("|"))
}

/// `text` with every regex meta character escaped.
fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use serde_json::json;

    fn param(e: &ApiError) -> Option<String> {
        match e.kind {
            ErrorKind::InvalidRequest => e.param.clone(),
            _ => None,
        }
    }

    #[test]
    fn text_and_absent_formats_do_not_constrain() {
        assert_eq!(request_constraint(None, None).ok(), Some(None));
        let text = json!({"type": "text"});
        assert_eq!(request_constraint(Some(&text), None).ok(), Some(None));
    }

    #[test]
    fn json_object_and_json_schema_become_constraints() {
        let obj = json!({"type": "json_object"});
        assert_eq!(
            request_constraint(Some(&obj), None).ok(),
            Some(Some(Constraint::JsonObject))
        );
        let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
        let rf = json!({"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": true}});
        assert_eq!(
            request_constraint(Some(&rf), None).ok(),
            Some(Some(Constraint::JsonSchema(schema)))
        );
    }

    #[test]
    fn a_schema_that_cannot_be_enforced_is_a_400_on_response_format() {
        let rf = json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "strng"}}});
        let e = request_constraint(Some(&rf), None).expect_err("bad schema");
        assert_eq!(param(&e).as_deref(), Some("response_format"));
        assert!(e.to_string().contains("strng"), "{e}");
        let missing = json!({"type": "json_schema", "json_schema": {"name": "x"}});
        let e = request_constraint(Some(&missing), None).expect_err("no schema");
        assert_eq!(
            param(&e).as_deref(),
            Some("response_format.json_schema.schema")
        );
        let odd = json!({"type": "yaml"});
        let e = request_constraint(Some(&odd), None).expect_err("unknown type");
        assert_eq!(param(&e).as_deref(), Some("response_format.type"));
    }

    #[test]
    fn vllm_structured_outputs_read_each_kind() {
        let so = |v: Value| request_constraint(None, Some(&v));
        assert_eq!(
            so(json!({"regex": "[0-9]+"})).ok(),
            Some(Some(Constraint::Regex("[0-9]+".into())))
        );
        assert_eq!(
            so(json!({"choice": ["yes", "no (1.5)"]})).ok(),
            Some(Some(Constraint::Regex("(yes|no \\(1\\.5\\))".into())))
        );
        assert_eq!(
            so(json!({"json": "{\"type\": \"object\"}"})).ok(),
            Some(Some(Constraint::JsonSchema(json!({"type": "object"}))))
        );
        assert!(so(json!({"regex": "a", "choice": ["b"]})).is_err());
        let e = so(json!({"structural_tag": "x"})).expect_err("unsupported");
        assert_eq!(
            param(&e).as_deref(),
            Some("structured_outputs.structural_tag")
        );
        let both = json!({"type": "json_object"});
        assert!(request_constraint(Some(&both), Some(&json!({"regex": "a"}))).is_err());
    }
}
