//! One scanner per tool-call format. Each knows its trigger markers and judges the text from a
//! trigger onward (see [`super::scan`] for the contract that keeps streaming exact).

mod deepseek;
mod hermes;
mod json_text;
mod llama;
mod mistral;
mod pythonic;
mod qwen3_coder;

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
}

impl ScannerKind {
    /// The strings that may open a call in this format.
    pub fn triggers(self, tools: &ToolSet) -> Vec<String> {
        let fixed: &[&str] = match self {
            Self::Hermes | Self::Qwen3Coder => &[hermes::OPEN],
            Self::Mistral => &[mistral::OPEN],
            Self::Llama => &[llama::PYTHON_TAG, "{"],
            Self::Pythonic => &["["],
            Self::DeepSeek => &[deepseek::CALLS_BEGIN],
            Self::JsonText => &["{", "[", "```"],
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
            Self::Mistral | Self::Pythonic | Self::DeepSeek | Self::NameCall => None,
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
        }
    }
}
