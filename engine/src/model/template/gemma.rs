//! Gemma's turn format, for Gemma checkpoints that ship no chat template (the base models, such
//! as gemma-3-270m, whose GGUF has none): `<start_of_turn>user\n…<end_of_turn>\n` and
//! `<start_of_turn>model\n…`, as Google documents it. Gemma has no system role: a leading
//! system (or developer) message becomes the start of the first user turn, a later one a user
//! turn of its own; tool results are user turns too (Gemma 3 has no tool-call format).

use super::ChatTemplate;

/// The template source (our own; renders the documented format).
pub const GEMMA_TURN_TEMPLATE: &str = r#"{{- bos_token or '' -}}
{%- set ns = namespace(prefix='') -%}
{%- for message in messages -%}
{%- if loop.first and message.role in ['system', 'developer'] -%}
{%- set ns.prefix = (message.content | trim) + '\n\n' -%}
{%- else -%}
{{- '<start_of_turn>' + ('model' if message.role == 'assistant' else 'user') + '\n' -}}
{{- ns.prefix + (message.content | trim) + '<end_of_turn>\n' -}}
{%- set ns.prefix = '' -%}
{%- endif -%}
{%- endfor -%}
{%- if ns.prefix -%}{{- '<start_of_turn>user\n' + (ns.prefix | trim) + '<end_of_turn>\n' -}}{%- endif -%}
{%- if add_generation_prompt -%}{{- '<start_of_turn>model\n' -}}{%- endif -%}"#;

impl ChatTemplate {
    /// The template for a model that has none: Gemma's turns for Gemma models, ChatML otherwise.
    pub fn fallback_for(model_type: &str, bos: Option<String>, eos: Option<String>) -> Self {
        if !model_type.starts_with("gemma") {
            return Self::chatml(bos, eos);
        }
        match Self::new(GEMMA_TURN_TEMPLATE, bos, eos) {
            Ok(t) => t,
            // The constant is covered by tests; failing to compile it is a build defect.
            Err(e) => panic!("Gemma turn template does not compile: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ChatMessage;

    fn msg(role: &str, text: &str) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content: text.into(),
            ..Default::default()
        }
    }

    #[test]
    fn gemma_fallback_renders_documented_turns_with_system_folded_into_first_user_turn() {
        let t = ChatTemplate::fallback_for("gemma3_text", Some("<bos>".into()), None);
        let got = t
            .render(
                &[
                    msg("system", "Be brief."),
                    msg("user", "knock knock"),
                    msg("assistant", "who is there "),
                    msg("user", "Gemma"),
                ],
                &[],
                true,
            )
            .unwrap();
        assert_eq!(
            got,
            "<bos><start_of_turn>user\nBe brief.\n\nknock knock<end_of_turn>\n\
             <start_of_turn>model\nwho is there<end_of_turn>\n\
             <start_of_turn>user\nGemma<end_of_turn>\n<start_of_turn>model\n"
        );
        // A later system message is kept, as a user turn.
        let got = t
            .render(&[msg("user", "a"), msg("system", "b")], &[], false)
            .unwrap();
        assert_eq!(
            got,
            "<bos><start_of_turn>user\na<end_of_turn>\n<start_of_turn>user\nb<end_of_turn>\n"
        );
    }

    #[test]
    fn non_gemma_models_without_a_template_keep_chatml() {
        let t = ChatTemplate::fallback_for("llama", None, None);
        let got = t.render(&[msg("user", "hi")], &[], true).unwrap();
        assert_eq!(
            got,
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        );
    }
}
