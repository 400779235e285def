//! Hands a request with tools to the tool-parser seam before it is generated.
//!
//! The seam needs the loaded model's chat template (the tool-call format and whether the
//! template can render tools depend on it), so a request with tools that arrives while the
//! model is still loading waits for the load, as it would wait in the queue anyway.

use std::time::Duration;

use mlx_serve_actors::model::actor::ModelHandle;
use mlx_serve_engine::engine::{EngineInfo, GenerateRequest, Prompt};
use mlx_serve_engine::reasoning::{ReasoningFormat, ReasoningSplitter};

use super::seams::{StreamingToolParser, ToolOptions};
use super::Pipeline;

const LOAD_POLL: Duration = Duration::from_millis(50);

/// The request's tool parser (its prompt adjusted by the seam), or `None` when the request
/// offers no tools or no tool parser is plugged in.
pub async fn prepare(
    state: &Pipeline,
    model: &ModelHandle,
    request: &mut GenerateRequest,
    options: &ToolOptions,
) -> Option<Box<dyn StreamingToolParser>> {
    let seam = state.seams.tool_parser.as_ref()?;
    let has_tools = matches!(&request.prompt, Prompt::Chat { tools, .. } if !tools.is_empty());
    let template = if has_tools {
        loaded_info(state, model)
            .await
            .and_then(|i| i.chat_template)
    } else {
        None
    };
    seam.prepare(request, options, template.as_deref())
}

/// The request's reasoning splitter: chat prompts only, with `[reasoning] parser` resolved
/// against the model's chat template (`auto`).
pub async fn reasoning_splitter(
    state: &Pipeline,
    model: &ModelHandle,
    request: &GenerateRequest,
) -> Option<ReasoningSplitter> {
    let configured = state.settings.reasoning.parser;
    if !matches!(request.prompt, Prompt::Chat { .. }) || configured == ReasoningFormat::Disabled {
        return None;
    }
    let format = match configured {
        ReasoningFormat::Auto => {
            let template = loaded_info(state, model)
                .await
                .and_then(|i| i.chat_template);
            configured.resolve(template.as_deref())
        }
        other => other,
    };
    ReasoningSplitter::new(format)
}

/// The model's facts once it has loaded; `None` when it failed to load or did not load within
/// the request timeout (the request then fails in the queue).
pub async fn loaded_info(state: &Pipeline, model: &ModelHandle) -> Option<EngineInfo> {
    let timeout = Duration::from_secs(state.settings.server.request_timeout_s);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let health = model.health().snapshot(Duration::MAX);
        if let Some(info) = health.info {
            return Some(info);
        }
        if health.failure.is_some() || tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(LOAD_POLL).await;
    }
}
