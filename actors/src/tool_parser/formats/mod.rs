//! One scanner per tool-call format. Each knows its trigger markers and judges the text from a
//! trigger onward (see [`super::scan`] for the contract that keeps streaming exact).

mod deepseek;
mod functiongemma;
mod glm45;
mod gpt_oss;
mod hermes;
mod json_text;
mod kimi_k2;
mod llama;
mod minimax;
mod mistral;
mod pythonic;
mod qwen3_coder;
mod xml_args;

use super::partial::Partial;
use super::scan::{Scan, ScanCtx};
use super::tools::ToolSet;

/// The scanners, dispatched by value so a parser is a plain `Send` struct.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScannerKind {
    Hermes,
    Qwen3Coder,
    Mistral,
    Llama,
    Pythonic,
    DeepSeek,
    JsonText,
    NameCall,
    KimiK2,
    Glm45,
    GptOss,
    Minimax,
    Functiongemma,
}

impl ScannerKind {
    /// The strings that may open a call in this format.
    pub fn triggers(self, tools: &ToolSet) -> Vec<String> {
        let fixed: &[&str] = match self {
            Self::Hermes => &[hermes::OPEN],
            Self::Qwen3Coder => &[hermes::OPEN, qwen3_coder::BARE_OPEN],
            Self::Mistral => &[mistral::OPEN],
            Self::Llama => &[llama::PYTHON_TAG, "{"],
            Self::Pythonic => &["[", pythonic::PYTHON_START],
            Self::DeepSeek => &[deepseek::CALLS_BEGIN],
            Self::JsonText => &["{", "[", "```"],
            Self::KimiK2 => &[kimi_k2::SECTION_BEGIN, kimi_k2::CALL_BEGIN],
            Self::Glm45 => &[hermes::OPEN],
            Self::GptOss => gpt_oss::TRIGGERS,
            Self::Minimax => &[minimax::OPEN],
            Self::Functiongemma => &[functiongemma::OPEN],
            Self::NameCall => return tools.names().map(|n| format!("{n}(")).collect(),
        };
        fixed.iter().map(|s| s.to_string()).collect()
    }

    /// Judges `text`, which starts with one of this scanner's triggers.
    pub fn scan(self, text: &str, ctx: &ScanCtx) -> Scan {
        match self {
            Self::Hermes => hermes::scan(text, ctx),
            Self::Qwen3Coder => qwen3_coder::scan(text, ctx),
            Self::Mistral => mistral::scan(text, ctx),
            Self::Llama => llama::scan(text, ctx),
            Self::Pythonic => pythonic::scan(text, ctx),
            Self::DeepSeek => deepseek::scan(text, ctx),
            Self::JsonText => json_text::scan(text, ctx),
            Self::NameCall => json_text::scan_name_call(text, ctx),
            Self::KimiK2 => kimi_k2::scan(text, ctx),
            Self::Glm45 => glm45::scan(text, ctx),
            Self::GptOss => gpt_oss::scan(text, ctx),
            Self::Minimax => minimax::scan(text, ctx),
            Self::Functiongemma => functiongemma::scan(text, ctx),
        }
    }

    /// The committed calls of the block at `text` (which starts with a trigger), as far as they
    /// are written; `None` while no call is committed or for shapes this format sends whole.
    pub fn partial(self, text: &str, ctx: &ScanCtx) -> Option<Partial> {
        match self {
            Self::Hermes => hermes::partial(text, ctx),
            Self::Qwen3Coder => qwen3_coder::partial(text, ctx),
            Self::Llama => llama::partial(text, ctx),
            Self::JsonText => json_text::partial(text, ctx),
            Self::KimiK2 => kimi_k2::partial(text, ctx),
            Self::Glm45 => glm45::partial(text, ctx),
            Self::GptOss => gpt_oss::partial(text, ctx),
            Self::Minimax => minimax::partial(text, ctx),
            Self::Mistral
            | Self::Pythonic
            | Self::DeepSeek
            | Self::NameCall
            | Self::Functiongemma => None,
        }
    }

    /// The label parse statistics are kept under.
    pub fn label(self) -> &'static str {
        match self {
            Self::Hermes => "hermes",
            Self::Qwen3Coder => "qwen3_coder",
            Self::Mistral => "mistral",
            Self::Llama => "llama3_json",
            Self::Pythonic => "pythonic",
            Self::DeepSeek => "deepseek_v3",
            Self::JsonText | Self::NameCall => "json",
            Self::KimiK2 => "kimi_k2",
            Self::Glm45 => "glm45",
            Self::GptOss => "gpt_oss",
            Self::Minimax => "minimax_m2",
            Self::Functiongemma => "functiongemma",
        }
    }
}
