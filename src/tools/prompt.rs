//! The prompt side of tool calling: what a request's messages gain before they are rendered.

use mlx_serve_actors::tool_parser::{tools_instruction, ToolChoice};
use mlx_serve_engine::engine::ChatMessage;
use serde_json::Value;

/// Whether a chat template renders tools itself. A model without a template is rendered with
/// the engine's built-in ChatML template, which does.
pub fn template_renders_tools(chat_template: Option<&str>) -> bool {
    chat_template.is_none_or(|t| t.contains("tools"))
}

/// Adjusts a conversation for its tools: a template that cannot render tools gets them (and
/// earlier assistant calls) as text in the `<tool_call>` markup every format parses; a
/// `required` or named `tool_choice` gets its instruction. Both go into the system message,
/// which is created first in the conversation when there is none.
pub fn steer(
    messages: &mut Vec<ChatMessage>,
    tools: &[Value],
    choice: &ToolChoice,
    template_renders_tools: bool,
) {
    let mut system = Vec::new();
    if !template_renders_tools {
        system.push(tools_instruction(tools));
        for m in messages.iter_mut() {
            inline_calls(m);
        }
    }
    system.extend(choice.instruction());
    if system.is_empty() {
        return;
    }
    let text = system.join("\n\n");
    match messages.first_mut() {
        Some(first) if first.role == "system" => {
            if !first.content.is_empty() {
                first.content.push_str("\n\n");
            }
            first.content.push_str(&text);
        }
        _ => messages.insert(
            0,
            ChatMessage {
                role: "system".to_owned(),
                content: text,
                tool_calls: Vec::new(),
                tool_call_id: None,
                name: None,
            },
        ),
    }
}

/// An assistant turn's calls written into its text, for templates that would drop them.
fn inline_calls(m: &mut ChatMessage) {
    for call in std::mem::take(&mut m.tool_calls) {
        let arguments = serde_json::from_str::<Value>(&call.arguments)
            .unwrap_or_else(|_| Value::String(call.arguments.clone()));
        // Name first, as the models were trained to write it.
        let body = format!(
            "{{\"name\": {}, \"arguments\": {arguments}}}",
            Value::from(call.name)
        );
        if !m.content.is_empty() {
            m.content.push('\n');
        }
        m.content
            .push_str(&format!("<tool_call>\n{body}\n</tool_call>"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlx_serve_engine::engine::ToolCall;
    use serde_json::json;

    fn msg(role: &str, content: &str) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
            name: None,
        }
    }

    fn weather() -> Vec<Value> {
        vec![json!({"type": "function", "function": {"name": "get_weather"}})]
    }

    #[test]
    fn tool_templates_with_auto_choice_are_left_alone() {
        let mut m = vec![msg("user", "hi")];
        steer(&mut m, &weather(), &ToolChoice::Auto, true);
        assert_eq!(m, vec![msg("user", "hi")]);
    }

    #[test]
    fn required_choice_is_appended_to_the_existing_system_message() {
        let mut m = vec![msg("system", "Be brief."), msg("user", "hi")];
        steer(&mut m, &weather(), &ToolChoice::Required, true);
        assert_eq!(m.len(), 2);
        assert!(
            m[0].content.starts_with("Be brief.\n\n"),
            "{}",
            m[0].content
        );
        assert!(m[0].content.contains("calling one or more"));
        assert_eq!(m[1].content, "hi");
    }

    #[test]
    fn templates_without_tools_get_the_tools_as_a_new_system_message() {
        let mut m = vec![msg("user", "hi")];
        let named = ToolChoice::Function("get_weather".into());
        steer(&mut m, &weather(), &named, false);
        assert_eq!(m[0].role, "system");
        assert!(m[0].content.contains("\"name\":\"get_weather\""));
        assert!(m[0].content.contains("`get_weather`"), "named instruction");
        assert_eq!(m.last().map(|x| x.content.as_str()), Some("hi"));
    }

    #[test]
    fn earlier_calls_become_markup_when_the_template_drops_them() {
        let mut call = msg("assistant", "");
        call.tool_calls.push(ToolCall {
            id: "call_1".into(),
            name: "get_weather".into(),
            arguments: "{\"city\":\"Paris\"}".into(),
        });
        let mut m = vec![msg("user", "hi"), call];
        steer(&mut m, &weather(), &ToolChoice::Auto, false);
        let inlined = &m[2];
        assert!(inlined.tool_calls.is_empty());
        assert_eq!(
            inlined.content,
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\":\"Paris\"}}\n</tool_call>"
        );
    }

    #[test]
    fn missing_template_means_the_builtin_chatml_which_renders_tools() {
        assert!(template_renders_tools(None));
        assert!(template_renders_tools(Some("{% if tools %}…{% endif %}")));
        assert!(!template_renders_tools(Some("<|im_start|>{{ m.content }}")));
    }
}
