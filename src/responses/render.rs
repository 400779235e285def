//! The `response` object around a generation: the echo of the request's settings, the final
//! status from the engine's finish reason, and the error of a failed response. The output items
//! themselves are built by [`super::stream::ResponseStream`] for both the JSON and the SSE reply,
//! so the two are equal by construction.

use mlx_serve_engine::engine::{FinishReason, GenerateRequest};
use serde_json::{json, Value};

use super::request::ResponsesRequest;
use super::response::{new_id, IncompleteDetails, ResponseErrorOut, ResponseObject};
use crate::error::{ApiError, ErrorKind};
use mlx_serve_actors::cache::unix_now;

/// The response before any output: `in_progress`, everything the request set echoed back.
/// `request` is the translated engine request (its temperature and top_p are the ones used).
pub fn base_response(req: &ResponsesRequest, request: &GenerateRequest) -> ResponseObject {
    ResponseObject {
        id: new_id("resp"),
        object: "response",
        created_at: unix_now(),
        status: "in_progress",
        error: None,
        incomplete_details: None,
        instructions: req.instructions.clone(),
        max_output_tokens: req.max_output_tokens,
        model: req.model.clone(),
        output: Vec::new(),
        parallel_tool_calls: req.parallel_tool_calls.unwrap_or(true),
        previous_response_id: req.previous_response_id.clone(),
        reasoning: req
            .reasoning
            .clone()
            .unwrap_or_else(|| json!({"effort": null, "summary": null})),
        store: req.storing(),
        temperature: request.sampling.temperature,
        text: json!({"format": req
            .text
            .as_ref()
            .and_then(|t| t.format.clone())
            .unwrap_or_else(|| json!({"type": "text"}))}),
        tool_choice: req
            .tool_choice
            .clone()
            .unwrap_or_else(|| Value::String("auto".into())),
        tools: req.tools.clone().unwrap_or_default(),
        top_p: request.sampling.top_p,
        truncation: req.truncation.clone().unwrap_or_else(|| "disabled".into()),
        usage: None,
        user: req.user.clone(),
        metadata: req.metadata.clone().unwrap_or_else(|| json!({})),
        service_tier: req.service_tier.clone().unwrap_or_else(|| "default".into()),
    }
}

/// `status` and `incomplete_details` for an engine finish: running out of `max_output_tokens`
/// is `incomplete`, anything else `completed`.
pub fn final_status(reason: FinishReason) -> (&'static str, Option<IncompleteDetails>) {
    match reason {
        FinishReason::Length => (
            "incomplete",
            Some(IncompleteDetails {
                reason: "max_output_tokens",
            }),
        ),
        FinishReason::Stop | FinishReason::StopSequence | FinishReason::Cancelled => {
            ("completed", None)
        }
    }
}

/// The `error` of a response that failed mid-generation. The codes are those the official
/// clients know (`server_error`, `rate_limit_exceeded`, `invalid_prompt`).
pub fn error_out(e: &ApiError) -> ResponseErrorOut {
    let code = match e.kind {
        ErrorKind::QueueFull => "rate_limit_exceeded",
        ErrorKind::InvalidRequest | ErrorKind::ContextLength | ErrorKind::ToolChoiceUnsatisfied => {
            "invalid_prompt"
        }
        _ => "server_error",
    };
    ResponseErrorOut {
        code: code.into(),
        message: e.to_string(),
    }
}
