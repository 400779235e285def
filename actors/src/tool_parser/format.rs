//! Which tool-call format a model writes, chosen from its chat template or from config.

use serde::{Deserialize, Serialize};

use super::formats::ScannerKind;

/// A model family's tool-call format. Deserializes from snake_case (`"hermes"`, `"auto"`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolFormat {
    /// Resolved from the chat template by [`detect_format`]; unresolved, every format is tried.
    #[default]
    Auto,
    /// Hermes, Qwen2.5, Qwen3: `<tool_call>{json}</tool_call>`.
    #[serde(alias = "qwen", alias = "qwen2_5", alias = "qwen3")]
    Hermes,
    /// Qwen3-Coder: `<tool_call><function=NAME><parameter=P>V</parameter></function></tool_call>`.
    Qwen3Coder,
    /// Mistral: `[TOOL_CALLS][{…}]` and `[TOOL_CALLS]name{args}`.
    Mistral,
    /// Llama 3.x: `{"name", "parameters"}` objects, optional `<|python_tag|>`, `;`-separated.
    #[serde(alias = "llama3", alias = "llama")]
    Llama3Json,
    /// Pythonic lists: `[get_weather(city="SF"), now()]`.
    Pythonic,
    /// DeepSeek V3 / V3.1 `<｜tool▁calls▁begin｜>` markers.
    #[serde(alias = "deepseek", alias = "deepseek_v31")]
    DeepseekV3,
    /// Kimi-K2: `<|tool_calls_section_begin|><|tool_call_begin|>functions.NAME:0…`.
    #[serde(alias = "kimi")]
    KimiK2,
    /// GLM-4.5 / 4.6 / 4.7: `<tool_call>NAME<arg_key>K</arg_key><arg_value>V</arg_value>…`.
    #[serde(alias = "glm", alias = "glm4_moe", alias = "glm46", alias = "glm47")]
    Glm45,
    /// gpt-oss harmony: `<|channel|>commentary to=functions.NAME …<|message|>{…}<|call|>`.
    #[serde(alias = "harmony", alias = "openai")]
    GptOss,
    /// MiniMax-M2: `<minimax:tool_call><invoke name="NAME"><parameter name="K">V</parameter>…`.
    #[serde(alias = "minimax")]
    MinimaxM2,
    /// FunctionGemma: `<start_function_call>call:NAME{k:<escape>v<escape>}<end_function_call>`.
    #[serde(alias = "function_gemma")]
    Functiongemma,
    /// JSON objects or arrays in plain text or code fences, `{"tool": …}`, `NAME({…})`, and
    /// `<tool_call>` tags: for models whose template has no tool markup.
    Json,
    /// No parsing: everything is content.
    #[serde(rename = "none", alias = "off")]
    Disabled,
}

impl ToolFormat {
    /// The config / CLI spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Hermes => "hermes",
            Self::Qwen3Coder => "qwen3_coder",
            Self::Mistral => "mistral",
            Self::Llama3Json => "llama3_json",
            Self::Pythonic => "pythonic",
            Self::DeepseekV3 => "deepseek_v3",
            Self::Json => "json",
            Self::KimiK2 => "kimi_k2",
            Self::Glm45 => "glm45",
            Self::GptOss => "gpt_oss",
            Self::MinimaxM2 => "minimax_m2",
            Self::Functiongemma => "functiongemma",
            Self::Disabled => "none",
        }
    }

    /// `Auto` resolved against a chat template; other formats stay as configured.
    pub fn resolve(self, chat_template: Option<&str>) -> Self {
        match self {
            Self::Auto => detect_format(chat_template),
            other => other,
        }
    }

    /// The scanners tried, in priority order. Tag-based formats also accept bare JSON calls
    /// because small models often drop the tags; the tags themselves are never ambiguous.
    pub(crate) fn scanners(self) -> &'static [ScannerKind] {
        use ScannerKind::*;
        match self {
            Self::Auto => &[
                Qwen3Coder,
                Hermes,
                Glm45,
                KimiK2,
                Minimax,
                Functiongemma,
                GptOss,
                Mistral,
                DeepSeek,
                Llama,
                Pythonic,
                JsonText,
                NameCall,
            ],
            Self::Hermes => &[Hermes, JsonText],
            Self::Qwen3Coder => &[Qwen3Coder, Hermes, JsonText],
            Self::Mistral => &[Mistral],
            Self::Llama3Json => &[Llama, JsonText],
            Self::Pythonic => &[Pythonic],
            Self::DeepseekV3 => &[DeepSeek],
            Self::Json => &[Hermes, JsonText, NameCall],
            Self::KimiK2 => &[KimiK2],
            Self::Glm45 => &[Glm45, Hermes, JsonText],
            Self::GptOss => &[GptOss],
            Self::MinimaxM2 => &[Minimax],
            Self::Functiongemma => &[Functiongemma],
            Self::Disabled => &[],
        }
    }
}

impl std::fmt::Display for ToolFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A format name that is not one of [`ToolFormat`]'s spellings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown tool format `{0}` (expected auto, hermes, qwen3_coder, mistral, llama3_json, pythonic, deepseek_v3, kimi_k2, glm45, gpt_oss, minimax_m2, functiongemma, json or none)")]
pub struct UnknownFormat(pub String);

impl std::str::FromStr for ToolFormat {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        serde_json::from_value(serde_json::Value::String(s.trim().to_ascii_lowercase()))
            .map_err(|_| UnknownFormat(s.to_string()))
    }
}

/// Picks the format from the markers a chat template renders tool calls with. Templates with
/// no tool markup (and no template) get [`ToolFormat::Json`].
pub fn detect_format(chat_template: Option<&str>) -> ToolFormat {
    let Some(t) = chat_template else {
        return ToolFormat::Json;
    };
    if t.contains("<|channel|>") && t.contains("<|message|>") {
        ToolFormat::GptOss
    } else if t.contains("<|tool_calls_section_begin|>") || t.contains("<|tool_call_begin|>") {
        ToolFormat::KimiK2
    } else if t.contains("<minimax:tool_call>") {
        ToolFormat::MinimaxM2
    } else if t.contains("<arg_key>") {
        ToolFormat::Glm45
    } else if t.contains("<start_function_call>") {
        ToolFormat::Functiongemma
    } else if t.contains("<function=") && t.contains("<parameter=") {
        ToolFormat::Qwen3Coder
    } else if t.contains("<tool_call>") {
        ToolFormat::Hermes
    } else if t.contains("[TOOL_CALLS]") {
        ToolFormat::Mistral
    } else if t.contains("tool\u{2581}calls\u{2581}begin")
        || t.contains("tool\u{2581}call\u{2581}begin")
    {
        ToolFormat::DeepseekV3
    } else if t.contains("[func_name1(") || t.contains("<|python_start|>") {
        // Llama 3.2 / 4 templates spell out the pythonic list form in their instructions.
        ToolFormat::Pythonic
    } else if t.contains("<|python_tag|>")
        || (t.contains("<|start_header_id|>") && t.contains("parameters"))
    {
        ToolFormat::Llama3Json
    } else {
        ToolFormat::Json
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_deserialize_from_snake_case_and_aliases() {
        let f = |s: &str| s.parse::<ToolFormat>();
        assert_eq!(f("auto"), Ok(ToolFormat::Auto));
        assert_eq!(f("qwen3_coder"), Ok(ToolFormat::Qwen3Coder));
        assert_eq!(f("Qwen2_5"), Ok(ToolFormat::Hermes));
        assert_eq!(f("none"), Ok(ToolFormat::Disabled));
        assert_eq!(f("deepseek"), Ok(ToolFormat::DeepseekV3));
        assert!(f("xml").is_err());
        let from_toml: ToolFormat = serde_json::from_str("\"llama3_json\"").unwrap_or_default();
        assert_eq!(from_toml, ToolFormat::Llama3Json);
        for fmt in [
            ToolFormat::Pythonic,
            ToolFormat::Disabled,
            ToolFormat::Mistral,
        ] {
            assert_eq!(fmt.as_str().parse::<ToolFormat>(), Ok(fmt));
        }
    }

    #[test]
    fn detection_reads_template_markers() {
        let qwen25 = "{%- if tools %}...<tool_call>\\n{\"name\": <function-name>}\\n</tool_call>";
        assert_eq!(detect_format(Some(qwen25)), ToolFormat::Hermes);
        let coder = "<tool_call>\n<function=example>\n<parameter=x>\nvalue\n</parameter>";
        assert_eq!(detect_format(Some(coder)), ToolFormat::Qwen3Coder);
        assert_eq!(
            detect_format(Some("[AVAILABLE_TOOLS]...[TOOL_CALLS]")),
            ToolFormat::Mistral
        );
        assert_eq!(
            detect_format(Some(
                "{{'<\u{ff5c}tool\u{2581}calls\u{2581}begin\u{ff5c}>'}}"
            )),
            ToolFormat::DeepseekV3
        );
        assert_eq!(
            detect_format(Some("<|start_header_id|>ipython<|python_tag|>")),
            ToolFormat::Llama3Json
        );
        assert_eq!(
            detect_format(Some("[func_name1(params_name1=params_value1)]")),
            ToolFormat::Pythonic
        );
        assert_eq!(
            detect_format(Some("<|im_start|>{{ message.content }}")),
            ToolFormat::Json
        );
        assert_eq!(detect_format(None), ToolFormat::Json);
        let glm = "{% for tc in m.tool_calls %}<tool_call>{{ tc.name }}<arg_key>{{ k }}</arg_key>";
        assert_eq!(detect_format(Some(glm)), ToolFormat::Glm45);
        assert_eq!(
            detect_format(Some("<|tool_calls_section_begin|>")),
            ToolFormat::KimiK2
        );
        assert_eq!(
            detect_format(Some("<|start|>assistant<|channel|>final<|message|>")),
            ToolFormat::GptOss
        );
        assert_eq!(
            detect_format(Some("<minimax:tool_call>\n<invoke name=")),
            ToolFormat::MinimaxM2
        );
        assert_eq!(
            detect_format(Some("<start_function_call>call:")),
            ToolFormat::Functiongemma
        );
        for f in [
            "kimi_k2",
            "glm45",
            "gpt_oss",
            "minimax_m2",
            "functiongemma",
            "harmony",
        ] {
            assert!(f.parse::<ToolFormat>().is_ok(), "{f}");
        }
        assert_eq!(
            ToolFormat::Mistral.resolve(Some("<tool_call>")),
            ToolFormat::Mistral
        );
    }
}
