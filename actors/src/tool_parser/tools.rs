//! The request's side of tool calling: the offered tools, `tool_choice`, and the checks and
//! prompt text that go with it.

use serde_json::Value;

/// The tools a request offers, by name, with their JSON-schema parameters.
#[derive(Debug, Clone, Default)]
pub struct ToolSet {
    tools: Vec<(String, Value)>,
    /// Names of the tools marked `strict: true`.
    strict: Vec<String>,
}

impl ToolSet {
    /// From OpenAI tool definitions (`{"type":"function","function":{"name","parameters"}}`);
    /// bare `{"name","parameters"}` and Anthropic's `{"name","input_schema"}` are read too.
    pub fn from_definitions(tools: &[Value]) -> Self {
        let strict = tools
            .iter()
            .filter_map(|t| {
                let f = t.get("function").unwrap_or(t);
                let on = f.get("strict").or_else(|| t.get("strict"))?.as_bool()?;
                on.then(|| f.get("name")?.as_str().map(str::to_owned))?
            })
            .collect();
        let tools = tools
            .iter()
            .filter_map(|t| {
                let f = t.get("function").unwrap_or(t);
                let name = f.get("name")?.as_str()?.to_string();
                let params = f
                    .get("parameters")
                    .or_else(|| f.get("input_schema"))
                    .cloned()
                    .unwrap_or(Value::Null);
                Some((name, params))
            })
            .collect();
        Self { tools, strict }
    }

    /// Whether the tool of this name was marked `strict: true`.
    pub fn is_strict(&self, name: &str) -> bool {
        self.strict.iter().any(|n| n == name)
    }

    /// Whether a tool of this name was offered.
    pub fn contains(&self, name: &str) -> bool {
        self.tools.iter().any(|(n, _)| n == name)
    }

    /// The offered names, in request order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tools.iter().map(|(n, _)| n.as_str())
    }

    /// `(name, parameters schema)` of each offered tool, in request order.
    pub fn iter(&self) -> impl Iterator<Item = &(String, Value)> {
        self.tools.iter()
    }

    /// Whether no tool was offered.
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    /// The JSON-schema `type` of one parameter (the first non-`null` one of a type list).
    pub fn param_type(&self, function: &str, param: &str) -> Option<&str> {
        let (_, schema) = self.tools.iter().find(|(n, _)| n == function)?;
        match schema.get("properties")?.get(param)?.get("type")? {
            Value::String(t) => Some(t.as_str()),
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).find(|t| *t != "null"),
            _ => None,
        }
    }
}

/// OpenAI's `tool_choice`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ToolChoice {
    /// The model decides.
    #[default]
    Auto,
    /// No calls: whatever the model writes is returned as content.
    None,
    /// At least one call.
    Required,
    /// Calls to this function only.
    Function(String),
}

/// A `tool_choice` that cannot be honoured or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolChoiceError {
    /// The value is not one of OpenAI's `tool_choice` forms.
    #[error("invalid tool_choice: {0}")]
    Invalid(String),
    /// A named function that is not among the request's tools.
    #[error("tool_choice names function `{0}`, which is not among the request's tools")]
    UnknownFunction(String),
    /// `required` and the reply has no call.
    #[error("tool_choice is \"required\" but the model replied without calling a tool")]
    NoCall,
    /// A named function and the reply does not call (only) it.
    #[error("tool_choice requires a call to `{0}` but the model {1}")]
    WrongCall(String, String),
}

impl ToolChoiceError {
    /// OpenAI's error `type` for this error (all are the client's request or the model's reply
    /// not matching it, never a server fault).
    pub fn error_type(&self) -> &'static str {
        "invalid_request_error"
    }
}

impl ToolChoice {
    /// Reads OpenAI's forms (`"auto"`, `"none"`, `"required"`,
    /// `{"type":"function","function":{"name":…}}`) and Anthropic's (`{"type":"auto"|"any"|
    /// "none"}`, `{"type":"tool","name":…}`). A missing value is `auto`.
    pub fn from_json(value: Option<&Value>) -> Result<Self, ToolChoiceError> {
        let invalid = |v: &Value| ToolChoiceError::Invalid(v.to_string());
        let Some(v) = value else {
            return Ok(Self::Auto);
        };
        match v {
            Value::Null => Ok(Self::Auto),
            Value::String(s) => match s.as_str() {
                "auto" => Ok(Self::Auto),
                "none" => Ok(Self::None),
                "required" | "any" => Ok(Self::Required),
                _ => Err(invalid(v)),
            },
            Value::Object(o) => match o.get("type").and_then(Value::as_str) {
                Some("function") => o
                    .get("function")
                    .and_then(|f| f.get("name"))
                    .or_else(|| o.get("name"))
                    .and_then(Value::as_str)
                    .map(|n| Self::Function(n.to_string()))
                    .ok_or_else(|| invalid(v)),
                Some("tool") => o
                    .get("name")
                    .and_then(Value::as_str)
                    .map(|n| Self::Function(n.to_string()))
                    .ok_or_else(|| invalid(v)),
                Some("auto") => Ok(Self::Auto),
                Some("any") | Some("required") => Ok(Self::Required),
                Some("none") => Ok(Self::None),
                _ => Err(invalid(v)),
            },
            _ => Err(invalid(v)),
        }
    }

    /// Rejects a named function the request does not offer (checked before generating).
    pub fn validate(&self, tools: &ToolSet) -> Result<(), ToolChoiceError> {
        match self {
            Self::Function(name) if !tools.contains(name) => {
                Err(ToolChoiceError::UnknownFunction(name.clone()))
            }
            _ => Ok(()),
        }
    }

    /// Checks a finished reply's call names against the choice. Generation is not constrained,
    /// so `required` and named choices are steered by the prompt and enforced here.
    pub fn check<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), ToolChoiceError> {
        let names: Vec<&str> = names.into_iter().collect();
        match self {
            Self::Auto | Self::None => Ok(()),
            Self::Required if names.is_empty() => Err(ToolChoiceError::NoCall),
            Self::Required => Ok(()),
            Self::Function(want) => {
                if names.is_empty() {
                    Err(ToolChoiceError::WrongCall(
                        want.clone(),
                        "called no tool".into(),
                    ))
                } else if let Some(other) = names.iter().find(|n| *n != want) {
                    Err(ToolChoiceError::WrongCall(
                        want.clone(),
                        format!("called `{other}`"),
                    ))
                } else {
                    Ok(())
                }
            }
        }
    }

    /// A system-prompt line that steers the model toward the choice; `None` when the choice
    /// needs no steering. The HTTP layer appends it to the system message.
    pub fn instruction(&self) -> Option<String> {
        match self {
            Self::Auto | Self::None => None,
            Self::Required => Some(
                "You must answer this message by calling one or more of the available tools. \
                 Do not answer in plain text."
                    .to_string(),
            ),
            Self::Function(name) => Some(format!(
                "You must answer this message by calling the tool `{name}`. Do not call any \
                 other tool and do not answer in plain text."
            )),
        }
    }
}

/// A system-prompt text that offers tools to a model whose chat template has no tool support;
/// it asks for the `<tool_call>` markup that every format choice still recognises.
pub fn tools_instruction(tools: &[Value]) -> String {
    let mut out = String::from(
        "You can call functions (tools). Their signatures, as JSON schema:\n<tools>\n",
    );
    for t in tools {
        out.push_str(&t.get("function").unwrap_or(t).to_string());
        out.push('\n');
    }
    out.push_str(
        "</tools>\nTo call a function, reply with one JSON object per call inside <tool_call> \
         tags, and nothing else:\n<tool_call>\n{\"name\": \"<function-name>\", \"arguments\": \
         {<arguments as JSON>}}\n</tool_call>",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tool_choice_reads_openai_and_anthropic_forms() {
        let p = |v: Value| ToolChoice::from_json(Some(&v));
        assert_eq!(p(json!("none")), Ok(ToolChoice::None));
        assert_eq!(p(json!("required")), Ok(ToolChoice::Required));
        assert_eq!(
            p(json!({"type": "function", "function": {"name": "f"}})),
            Ok(ToolChoice::Function("f".into()))
        );
        assert_eq!(p(json!({"type": "any"})), Ok(ToolChoice::Required));
        assert_eq!(
            p(json!({"type": "tool", "name": "g"})),
            Ok(ToolChoice::Function("g".into()))
        );
        assert_eq!(ToolChoice::from_json(None), Ok(ToolChoice::Auto));
        assert!(matches!(
            p(json!("sometimes")),
            Err(ToolChoiceError::Invalid(_))
        ));
        assert!(matches!(
            p(json!({"type": "function"})),
            Err(ToolChoiceError::Invalid(_))
        ));
    }

    #[test]
    fn required_and_named_choices_reject_replies_without_matching_calls() {
        assert_eq!(ToolChoice::Required.check([]), Err(ToolChoiceError::NoCall));
        assert_eq!(ToolChoice::Required.check(["f"]), Ok(()));
        let named = ToolChoice::Function("f".into());
        assert!(named.check(["g"]).is_err());
        assert!(named.check([]).is_err());
        assert_eq!(named.check(["f", "f"]), Ok(()));
        assert_eq!(ToolChoice::Auto.check([]), Ok(()));
        let msg = named
            .check(["g"])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains("`f`") && msg.contains("`g`"), "{msg}");
    }

    #[test]
    fn named_choice_must_be_offered() {
        let tools =
            ToolSet::from_definitions(&[json!({"type": "function", "function": {"name": "f"}})]);
        assert!(ToolChoice::Function("f".into()).validate(&tools).is_ok());
        assert!(ToolChoice::Function("g".into()).validate(&tools).is_err());
        assert!(ToolChoice::Required.instruction().is_some());
        assert!(ToolChoice::Auto.instruction().is_none());
        let named = ToolChoice::Function("f".into())
            .instruction()
            .unwrap_or_default();
        assert!(named.contains("`f`"), "{named}");
    }

    #[test]
    fn tools_instruction_lists_tools_and_asks_for_parsable_markup() {
        let text =
            tools_instruction(&[json!({"type": "function", "function": {"name": "get_time"}})]);
        assert!(text.contains("{\"name\":\"get_time\"}"), "{text}");
        assert!(text.contains("<tool_call>") && text.contains("</tool_call>"));
    }

    #[test]
    fn param_types_come_from_the_schema() {
        let tools = ToolSet::from_definitions(&[json!({"type": "function", "function": {
            "name": "f", "parameters": {"type": "object", "properties": {
                "n": {"type": "integer"}, "o": {"type": ["null", "object"]}}}}})]);
        assert_eq!(tools.param_type("f", "n"), Some("integer"));
        assert_eq!(tools.param_type("f", "o"), Some("object"));
        assert_eq!(tools.param_type("f", "zz"), None);
        assert_eq!(tools.param_type("g", "n"), None);
    }
}
