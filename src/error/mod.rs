//! `ApiError`: every error the HTTP APIs answer with. One value — a [`ErrorKind`], a message, the
//! offending field and an optional retry-after — and one rendering per API ([`render`]): OpenAI's
//! `{"error": {"message", "type", "param", "code"}}`, Anthropic's `{"type": "error", "error":
//! {"type", "message"}}`, and each one's SSE error event (as llama.cpp's server renders one error
//! with `to_json_oaicompat()` / `to_json_anthropic()`).
//!
//! Client mistakes are always 4xx: the official clients retry every 5xx.

pub mod render;

use mlx_serve_actors::model::actor::SubmitError;
use mlx_serve_engine::engine::EngineError;

pub use render::{
    AnthropicErrorBody, AnthropicErrorDetail, AnthropicShape, ErrorBody, ErrorObject,
};

/// What went wrong; decides the status and the error class in every API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed or has an invalid value.
    InvalidRequest,
    /// The requested model is not served here.
    ModelNotFound,
    /// A configured catalog model that has not been pulled (and `server.pull_on_demand` is off).
    ModelNotPulled,
    /// Prompt plus completion do not fit the context.
    ContextLength,
    /// The body exceeds `server.body_limit`.
    PayloadTooLarge,
    /// API keys are configured and the request had none or a wrong one.
    InvalidApiKey,
    /// The waiting queue is full.
    QueueFull,
    /// This client IP already has `server.max_inflight_per_ip` requests in flight.
    PeerLimit,
    /// The engine is loading, failed or restarting.
    Unavailable,
    /// The generation ran past `server.request_timeout_s`.
    Timeout,
    /// No such route.
    NotFound,
    /// A stored response (Responses API) that does not exist or belongs to another key.
    ResponseNotFound,
    /// The route exists but not for this method.
    MethodNotAllowed,
    /// The key is valid but may not do this (clearing the cache without an admin key).
    Forbidden,
    /// The body is not JSON (`Content-Type`) or is encoded in a way this server cannot decode.
    UnsupportedMediaType,
    /// The client took longer than `server.body_timeout_s` to send the body.
    BodyTimeout,
    /// A bug or an engine failure.
    Internal,
    /// The model's reply did not make the call that `tool_choice` demanded (422 for OpenAI:
    /// retrying the same request is unlikely to help, and the official clients do not retry 4xx).
    ToolChoiceUnsatisfied,
}

/// An error answered to a client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// What went wrong.
    pub kind: ErrorKind,
    /// Human-readable reason (OpenAI's wording).
    pub message: String,
    /// The offending field (`messages[0].role`), when known.
    pub param: Option<String>,
    /// Seconds for `Retry-After`, for errors that pass with time.
    pub retry_after_s: Option<u64>,
    /// OpenAI's machine-readable code where the kind's default does not fit.
    code: Option<&'static str>,
    /// The `Allow` header of a 405.
    allow: Option<&'static str>,
    /// Anthropic's wording, where its clients expect a different one (boxed: keeps the error
    /// small, since every fallible handler step returns it).
    anthropic_message: Option<Box<str>>,
}

impl ApiError {
    /// An error of `kind` saying `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            param: None,
            retry_after_s: None,
            code: None,
            allow: None,
            anthropic_message: None,
        }
    }

    /// The same error naming the offending field.
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// The same error with OpenAI's machine-readable `code`.
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// A 400 without a field.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, message)
    }

    /// A 400 naming the field.
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self::invalid_request(message).with_param(param)
    }

    /// A 400 naming the field in the message too (`max_tokens: Field required`), as Anthropic's
    /// errors do: they have no `param`.
    pub fn field(field: impl std::fmt::Display, message: impl std::fmt::Display) -> Self {
        Self::invalid(field.to_string(), format!("{field}: {message}"))
    }

    /// The model asked for is not served here.
    pub fn model_not_found(model: &str, available: &[String]) -> Self {
        let available = available.join(", ");
        Self {
            anthropic_message: Some(format!("model: {model} (available: {available})").into()),
            ..Self::new(
                ErrorKind::ModelNotFound,
                format!(
                    "The model `{model}` does not exist or you do not have access to it. \
                     Available models: {available}."
                ),
            )
            .with_param("model")
        }
    }

    /// A configured catalog model (`name`) that is not downloaded yet.
    pub fn model_not_pulled(model: &str, name: &str) -> Self {
        Self::new(
            ErrorKind::ModelNotPulled,
            format!(
                "The model `{model}` is configured but not downloaded yet: run `mlx-serve pull \
                 {name}`, or set `server.pull_on_demand = true`."
            ),
        )
        .with_param("model")
    }

    /// The body exceeds `limit` bytes.
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            ErrorKind::PayloadTooLarge,
            format!("Request body too large: the limit is {limit} bytes."),
        )
    }

    /// No key or a wrong one.
    pub fn invalid_api_key() -> Self {
        Self {
            anthropic_message: Some(
                "invalid x-api-key: send a configured key as `x-api-key` or \
                 `Authorization: Bearer`"
                    .into(),
            ),
            ..Self::new(
                ErrorKind::InvalidApiKey,
                "Incorrect API key provided. Send it as `Authorization: Bearer <key>` or \
                 `x-api-key: <key>`.",
            )
        }
    }

    /// The waiting queue (of `capacity`) is full.
    pub fn queue_full(capacity: usize, retry_after_s: u64) -> Self {
        Self {
            retry_after_s: Some(retry_after_s),
            ..Self::new(
                ErrorKind::QueueFull,
                format!(
                    "The server is busy ({capacity} requests waiting). Retry after \
                     {retry_after_s} s."
                ),
            )
        }
    }

    /// This peer already has `limit` requests in flight.
    pub fn peer_limit(limit: usize, retry_after_s: u64) -> Self {
        Self {
            retry_after_s: Some(retry_after_s),
            ..Self::new(
                ErrorKind::PeerLimit,
                format!(
                    "Too many concurrent requests from your address (the limit is {limit}). \
                     Retry after {retry_after_s} s."
                ),
            )
        }
    }

    /// The engine is loading, failed or restarting.
    pub fn unavailable(why: impl std::fmt::Display) -> Self {
        Self::new(
            ErrorKind::Unavailable,
            format!("The model is unavailable: {why}"),
        )
    }

    /// The generation ran past `secs`.
    pub fn timeout(secs: u64) -> Self {
        Self::new(
            ErrorKind::Timeout,
            format!("The request timed out after {secs} s."),
        )
    }

    /// No such route.
    pub fn not_found(method: &str, path: &str) -> Self {
        Self::new(
            ErrorKind::NotFound,
            format!("Unknown request URL: {method} {path}."),
        )
    }

    /// A stored response that does not exist; `what` is `Response` or `Previous response`, and
    /// `param` names `previous_response_id` when the id came from that field.
    pub fn response_not_found(id: &str, what: &str, param: Option<&'static str>) -> Self {
        let e = Self::new(
            ErrorKind::ResponseNotFound,
            format!("{what} with id '{id}' not found."),
        );
        match param {
            Some(p) => e.with_param(p).with_code("previous_response_not_found"),
            None => e,
        }
    }

    /// The route exists, but only for `allow`.
    pub fn method_not_allowed(method: &str, path: &str, allow: &'static str) -> Self {
        Self {
            allow: Some(allow),
            ..Self::new(
                ErrorKind::MethodNotAllowed,
                format!("Method {method} is not allowed on {path}; allowed: {allow}."),
            )
        }
    }

    /// A valid key that may not do this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, message)
    }

    /// A body this server cannot decode.
    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::UnsupportedMediaType, message)
    }

    /// The body did not arrive within `secs`.
    pub fn body_timeout(secs: u64) -> Self {
        Self::new(
            ErrorKind::BodyTimeout,
            format!("The request body was not received within {secs} s."),
        )
    }

    /// A bug or an engine failure.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// The reply did not make the call `tool_choice` demanded.
    pub fn tool_choice_unsatisfied(why: impl std::fmt::Display) -> Self {
        Self::new(
            ErrorKind::ToolChoiceUnsatisfied,
            format!("The model did not follow tool_choice: {why}"),
        )
        .with_param("tool_choice")
    }

    /// Map a queue admission failure; `retry_after_s` comes from the settings.
    pub fn from_submit(e: SubmitError, retry_after_s: u64) -> Self {
        match e {
            SubmitError::QueueFull { capacity } => Self::queue_full(capacity, retry_after_s),
            SubmitError::Unavailable(why) => Self::unavailable(why),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::ContextLength {
                context_length,
                prompt_tokens,
                max_tokens,
                requested,
            } => Self {
                // Anthropic's wording: coding agents match "prompt is too long: N tokens > M
                // maximum" to trigger compaction.
                anthropic_message: Some(
                    format!(
                        "prompt is too long: {requested} tokens > {context_length} maximum \
                         ({prompt_tokens} in the prompt, {max_tokens} for max_tokens)"
                    )
                    .into(),
                ),
                ..Self::new(ErrorKind::ContextLength, e.to_string()).with_param("messages")
            },
            EngineError::InvalidRequest(message) => Self::invalid_request(message),
            EngineError::Internal(m) => Self::internal(m),
        }
    }
}

#[cfg(test)]
mod tests;
