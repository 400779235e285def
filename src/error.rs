//! `ApiError`: every error the HTTP API returns, rendered in OpenAI's shape
//! `{"error": {"message", "type", "param", "code"}}` with the right status, or as an SSE event.
//!
//! Client mistakes are always 4xx: the official clients retry every 5xx.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use mlx_serve_actors::engine::EngineError;
use mlx_serve_actors::model::actor::SubmitError;
use serde::Serialize;

/// An error answered to a client.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or has an invalid value.
    #[error("{message}")]
    InvalidRequest {
        /// Human-readable reason.
        message: String,
        /// The offending field (`messages[0].role`), when known.
        param: Option<String>,
        /// Machine-readable code, when there is one.
        code: Option<&'static str>,
    },
    /// The requested model is not served here.
    #[error("The model `{model}` does not exist or you do not have access to it. Available models: {}.", available.join(", "))]
    ModelNotFound {
        /// The name asked for.
        model: String,
        /// The ids this server serves.
        available: Vec<String>,
    },
    /// A configured catalog model that has not been pulled (and `server.pull_on_demand` is off).
    #[error("The model `{model}` is configured but not downloaded yet: run `mlx-serve pull {name}`, or set `server.pull_on_demand = true`.")]
    ModelNotPulled {
        /// The id asked for.
        model: String,
        /// Its catalog name.
        name: String,
    },
    /// Prompt plus completion do not fit the context.
    #[error("{0}")]
    ContextLength(String),
    /// The body exceeds `server.body_limit`.
    #[error("Request body too large: the limit is {limit} bytes.")]
    PayloadTooLarge {
        /// Configured limit.
        limit: usize,
    },
    /// API keys are configured and the request had none or a wrong one.
    #[error("Incorrect API key provided. Send it as `Authorization: Bearer <key>` or `x-api-key: <key>`.")]
    InvalidApiKey,
    /// The waiting queue is full.
    #[error("The server is busy ({capacity} requests waiting). Retry after {retry_after_s} s.")]
    QueueFull {
        /// Queue size.
        capacity: usize,
        /// Seconds for `Retry-After`.
        retry_after_s: u64,
    },
    /// This client IP already has `server.max_inflight_per_ip` requests in flight.
    #[error("Too many concurrent requests from your address (the limit is {limit}). Retry after {retry_after_s} s.")]
    PeerLimit {
        /// The configured limit.
        limit: usize,
        /// Seconds for `Retry-After`.
        retry_after_s: u64,
    },
    /// The engine is loading, failed or restarting.
    #[error("The model is unavailable: {0}")]
    Unavailable(String),
    /// The generation ran past `server.request_timeout_s`.
    #[error("The request timed out after {0} s.")]
    Timeout(u64),
    /// No such route.
    #[error("Unknown request URL: {method} {path}.")]
    NotFound {
        /// HTTP method.
        method: String,
        /// Request path.
        path: String,
    },
    /// A stored response (Responses API) that does not exist or belongs to another key.
    #[error("{what} with id '{id}' not found.")]
    ResponseNotFound {
        /// The id asked for.
        id: String,
        /// `Previous response` or `Response`.
        what: &'static str,
        /// `previous_response_id` when the id came from that field.
        param: Option<&'static str>,
    },
    /// The route exists but not for this method.
    #[error("Method {method} is not allowed on {path}; allowed: {allow}.")]
    MethodNotAllowed {
        /// HTTP method.
        method: String,
        /// Request path.
        path: String,
        /// The `Allow` header value.
        allow: &'static str,
    },
    /// The key is valid but may not do this (clearing the cache without an admin key).
    #[error("{0}")]
    Forbidden(String),
    /// The body is not JSON (`Content-Type`) or is encoded in a way this server cannot decode.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The client took longer than `server.body_timeout_s` to send the body.
    #[error("The request body was not received within {0} s.")]
    BodyTimeout(u64),
    /// A bug or an engine failure.
    #[error("{0}")]
    Internal(String),
    /// The model's reply did not make the call that `tool_choice` demanded (422: retrying the
    /// same request is unlikely to help, and the official clients do not retry 4xx).
    #[error("The model did not follow tool_choice: {0}")]
    ToolChoiceUnsatisfied(String),
}

/// The `error` object of OpenAI's error body.
#[derive(Debug, Serialize)]
pub struct ErrorObject<'a> {
    /// Human-readable reason.
    pub message: String,
    /// Error class (`invalid_request_error`, `server_error`, …).
    #[serde(rename = "type")]
    pub kind: &'a str,
    /// The offending field.
    pub param: Option<String>,
    /// Machine-readable code.
    pub code: Option<&'a str>,
}

/// `{"error": {...}}`.
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    /// The error.
    pub error: ErrorObject<'a>,
}

impl ApiError {
    /// A 400 naming the field.
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidRequest {
            message: message.into(),
            param: Some(param.into()),
            code: None,
        }
    }

    /// OpenAI's `type`.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::InvalidRequest { .. }
            | Self::ModelNotFound { .. }
            | Self::ModelNotPulled { .. }
            | Self::ContextLength(_)
            | Self::PayloadTooLarge { .. }
            | Self::InvalidApiKey
            | Self::NotFound { .. }
            | Self::ResponseNotFound { .. }
            | Self::MethodNotAllowed { .. }
            | Self::Forbidden(_)
            | Self::UnsupportedMediaType(_)
            | Self::BodyTimeout(_) => "invalid_request_error",
            Self::QueueFull { .. } | Self::PeerLimit { .. } => "rate_limit_error",
            Self::Unavailable(_) | Self::Timeout(_) | Self::Internal(_) => "server_error",
            Self::ToolChoiceUnsatisfied(_) => "invalid_response_error",
        }
    }

    fn code(&self) -> Option<&'static str> {
        match self {
            Self::InvalidRequest { code, .. } => *code,
            Self::ModelNotFound { .. } => Some("model_not_found"),
            Self::ModelNotPulled { .. } => Some("model_not_pulled"),
            Self::ContextLength(_) => Some("context_length_exceeded"),
            Self::PayloadTooLarge { .. } => Some("request_too_large"),
            Self::InvalidApiKey => Some("invalid_api_key"),
            Self::QueueFull { .. } | Self::PeerLimit { .. } => Some("rate_limit_exceeded"),
            Self::Unavailable(_) => Some("engine_unavailable"),
            Self::Timeout(_) => Some("timeout"),
            Self::NotFound { .. } => Some("unknown_url"),
            Self::ResponseNotFound { param: Some(_), .. } => Some("previous_response_not_found"),
            Self::ResponseNotFound { .. } => Some("response_not_found"),
            Self::MethodNotAllowed { .. } => Some("method_not_allowed"),
            Self::Forbidden(_) => Some("insufficient_permissions"),
            Self::UnsupportedMediaType(_) => Some("unsupported_media_type"),
            Self::BodyTimeout(_) => Some("request_timeout"),
            Self::Internal(_) => None,
            Self::ToolChoiceUnsatisfied(_) => Some("tool_choice_not_satisfied"),
        }
    }

    fn param(&self) -> Option<String> {
        match self {
            Self::InvalidRequest { param, .. } => param.clone(),
            Self::ModelNotFound { .. } | Self::ModelNotPulled { .. } => Some("model".to_owned()),
            Self::ContextLength(_) => Some("messages".to_owned()),
            Self::ToolChoiceUnsatisfied(_) => Some("tool_choice".to_owned()),
            Self::ResponseNotFound { param, .. } => param.map(str::to_owned),
            _ => None,
        }
    }

    /// The JSON body, `{"error": {...}}`.
    pub fn body(&self) -> ErrorBody<'static> {
        ErrorBody {
            error: ErrorObject {
                message: self.to_string(),
                kind: self.error_type(),
                param: self.param(),
                code: self.code(),
            },
        }
    }

    /// The same error as one SSE event (`data: {"error": …}`).
    pub fn sse_event(&self) -> bytes::Bytes {
        crate::sse::data(&self.body())
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::InvalidRequest { .. } | Self::ContextLength(_) => StatusCode::BAD_REQUEST,
            Self::ModelNotFound { .. }
            | Self::ModelNotPulled { .. }
            | Self::NotFound { .. }
            | Self::ResponseNotFound { .. } => StatusCode::NOT_FOUND,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::InvalidApiKey => StatusCode::UNAUTHORIZED,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::QueueFull { .. } | Self::PeerLimit { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) | Self::Timeout(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::ToolChoiceUnsatisfied(_) => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut resp = HttpResponse::build(self.status_code());
        if let Self::QueueFull { retry_after_s, .. } | Self::PeerLimit { retry_after_s, .. } = self
        {
            resp.insert_header((header::RETRY_AFTER, retry_after_s.to_string()));
        }
        if let Self::InvalidApiKey = self {
            resp.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        if let Self::MethodNotAllowed { allow, .. } = self {
            resp.insert_header((header::ALLOW, *allow));
        }
        if let Self::BodyTimeout(_) = self {
            // The rest of a half-received body cannot be told from the next request.
            resp.force_close();
        }
        resp.json(self.body())
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::ContextLength { .. } => Self::ContextLength(e.to_string()),
            EngineError::InvalidRequest(message) => Self::InvalidRequest {
                message,
                param: None,
                code: None,
            },
            EngineError::Internal(m) => Self::Internal(m),
        }
    }
}

impl ApiError {
    /// Map a queue admission failure; `retry_after_s` comes from the settings.
    pub fn from_submit(e: SubmitError, retry_after_s: u64) -> Self {
        match e {
            SubmitError::QueueFull { capacity } => Self::QueueFull {
                capacity,
                retry_after_s,
            },
            SubmitError::Unavailable(why) => Self::Unavailable(why),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_length_is_a_400_with_code_and_numbers() {
        let e = ApiError::from(EngineError::ContextLength {
            context_length: 10,
            prompt_tokens: 8,
            max_tokens: 5,
            requested: 13,
        });
        assert_eq!(e.status_code(), StatusCode::BAD_REQUEST);
        let body = serde_json::to_value(e.body()).unwrap();
        assert_eq!(body["error"]["code"], "context_length_exceeded");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("10 tokens"));
    }

    #[test]
    fn queue_full_carries_retry_after() {
        let e = ApiError::QueueFull {
            capacity: 2,
            retry_after_s: 3,
        };
        let resp = e.error_response();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers().get(header::RETRY_AFTER).unwrap(), "3");
    }

    #[test]
    fn sse_event_wraps_the_error_body() {
        let e = ApiError::invalid("n", "n must be 1");
        let ev = e.sse_event();
        let text = std::str::from_utf8(&ev).unwrap();
        assert!(text.starts_with("data: {\"error\":"));
        assert!(text.ends_with("\n\n"));
        assert!(text.contains("\"param\":\"n\""));
    }
}
