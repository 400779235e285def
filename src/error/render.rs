//! The renderings of one [`ApiError`]: OpenAI's and Anthropic's JSON bodies, statuses and
//! headers. OpenAI's SSE error event is [`ApiError::sse_oaicompat`]; Anthropic's is its stream's
//! `error` event around [`ApiError::anthropic_detail`]; the Responses API frames its own from the
//! OpenAI fields (it numbers its events).

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, HttpResponseBuilder, ResponseError};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{ApiError, ErrorKind};

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

/// OpenAI's `{"error": {...}}`.
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    /// The error.
    pub error: ErrorObject<'a>,
}

/// Anthropic's `{"type": "error", "error": {...}}` (also the `data` of its SSE `error` event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnthropicErrorBody {
    /// Always `error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// What went wrong.
    pub error: AnthropicErrorDetail,
}

/// The inner object of Anthropic's error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnthropicErrorDetail {
    /// `invalid_request_error`, `api_error`, … (see [`ApiError::anthropic_type`]).
    #[serde(rename = "type")]
    pub kind: String,
    /// Human-readable explanation.
    pub message: String,
}

impl ApiError {
    /// OpenAI's `type`.
    pub fn error_type(&self) -> &'static str {
        use ErrorKind as K;
        match self.kind {
            K::InvalidRequest
            | K::ModelNotFound
            | K::ModelNotPulled
            | K::ContextLength
            | K::PayloadTooLarge
            | K::InvalidApiKey
            | K::NotFound
            | K::ResponseNotFound
            | K::MethodNotAllowed
            | K::Forbidden
            | K::UnsupportedMediaType
            | K::BodyTimeout => "invalid_request_error",
            K::QueueFull | K::PeerLimit => "rate_limit_error",
            K::Unavailable | K::Timeout | K::Internal => "server_error",
            K::ToolChoiceUnsatisfied => "invalid_response_error",
        }
    }

    /// OpenAI's machine-readable `code`.
    pub fn code(&self) -> Option<&'static str> {
        use ErrorKind as K;
        if self.code.is_some() {
            return self.code;
        }
        match self.kind {
            K::InvalidRequest | K::Internal => None,
            K::ModelNotFound => Some("model_not_found"),
            K::ModelNotPulled => Some("model_not_pulled"),
            K::ContextLength => Some("context_length_exceeded"),
            K::PayloadTooLarge => Some("request_too_large"),
            K::InvalidApiKey => Some("invalid_api_key"),
            K::QueueFull | K::PeerLimit => Some("rate_limit_exceeded"),
            K::Unavailable => Some("engine_unavailable"),
            K::Timeout => Some("timeout"),
            K::NotFound => Some("unknown_url"),
            K::ResponseNotFound => Some("response_not_found"),
            K::MethodNotAllowed => Some("method_not_allowed"),
            K::Forbidden => Some("insufficient_permissions"),
            K::UnsupportedMediaType => Some("unsupported_media_type"),
            K::BodyTimeout => Some("request_timeout"),
            K::ToolChoiceUnsatisfied => Some("tool_choice_not_satisfied"),
        }
    }

    /// The status of OpenAI's rendering.
    pub fn status_oaicompat(&self) -> StatusCode {
        use ErrorKind as K;
        match self.kind {
            K::InvalidRequest | K::ContextLength => StatusCode::BAD_REQUEST,
            K::ModelNotFound | K::ModelNotPulled | K::NotFound | K::ResponseNotFound => {
                StatusCode::NOT_FOUND
            }
            K::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            K::InvalidApiKey => StatusCode::UNAUTHORIZED,
            K::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            K::Forbidden => StatusCode::FORBIDDEN,
            K::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            K::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            K::QueueFull | K::PeerLimit => StatusCode::TOO_MANY_REQUESTS,
            K::Unavailable | K::Timeout => StatusCode::SERVICE_UNAVAILABLE,
            K::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            K::ToolChoiceUnsatisfied => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }

    /// OpenAI's JSON body, `{"error": {...}}`.
    pub fn to_json_oaicompat(&self) -> ErrorBody<'static> {
        ErrorBody {
            error: ErrorObject {
                message: self.message.clone(),
                kind: self.error_type(),
                param: self.param.clone(),
                code: self.code(),
            },
        }
    }

    /// OpenAI's SSE error event (`data: {"error": …}`).
    pub fn sse_oaicompat(&self) -> Bytes {
        crate::sse::data(&self.to_json_oaicompat())
    }

    /// Anthropic's `error.type`. A full queue is a `rate_limit_error` (the client retries it);
    /// an engine that is loading or gone is `overloaded_error`.
    pub fn anthropic_type(&self) -> &'static str {
        use ErrorKind as K;
        match self.kind {
            // The model ignored `tool_choice` (`any`/`tool`); generation is not constrained.
            K::InvalidRequest
            | K::ToolChoiceUnsatisfied
            | K::ContextLength
            | K::MethodNotAllowed
            | K::UnsupportedMediaType
            | K::BodyTimeout => "invalid_request_error",
            K::InvalidApiKey => "authentication_error",
            K::Forbidden => "permission_error",
            K::ModelNotFound | K::ModelNotPulled | K::NotFound | K::ResponseNotFound => {
                "not_found_error"
            }
            K::PayloadTooLarge => "request_too_large",
            K::QueueFull | K::PeerLimit => "rate_limit_error",
            K::Timeout | K::Internal => "api_error",
            K::Unavailable => "overloaded_error",
        }
    }

    /// The status of Anthropic's rendering: the one its error type has.
    pub fn status_anthropic(&self) -> StatusCode {
        use ErrorKind as K;
        match self.kind {
            K::InvalidRequest | K::ToolChoiceUnsatisfied | K::ContextLength => {
                StatusCode::BAD_REQUEST
            }
            // Anthropic's classes have no type for these; they keep their own status.
            K::MethodNotAllowed | K::UnsupportedMediaType | K::BodyTimeout => {
                self.status_oaicompat()
            }
            K::InvalidApiKey => StatusCode::UNAUTHORIZED,
            K::Forbidden => StatusCode::FORBIDDEN,
            K::ModelNotFound | K::ModelNotPulled | K::NotFound | K::ResponseNotFound => {
                StatusCode::NOT_FOUND
            }
            K::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            K::QueueFull | K::PeerLimit => StatusCode::TOO_MANY_REQUESTS,
            K::Timeout | K::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            // 529 is Anthropic's own code; the constant exists only for registered codes.
            K::Unavailable => StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
        }
    }

    /// Anthropic's message: the same as OpenAI's except where its clients expect other words.
    fn anthropic_message(&self) -> String {
        match (&self.anthropic_message, self.kind) {
            (Some(m), _) => m.to_string(),
            (None, ErrorKind::ContextLength) => format!("prompt is too long: {}", self.message),
            (None, _) => self.message.clone(),
        }
    }

    /// Anthropic's JSON body, `{"type": "error", "error": {...}}`.
    pub fn to_json_anthropic(&self) -> AnthropicErrorBody {
        AnthropicErrorBody {
            kind: "error".to_owned(),
            error: self.anthropic_detail(),
        }
    }

    /// The `error` object of Anthropic's body and of its SSE `error` event.
    pub fn anthropic_detail(&self) -> AnthropicErrorDetail {
        AnthropicErrorDetail {
            kind: self.anthropic_type().to_owned(),
            message: self.anthropic_message(),
        }
    }

    /// The headers both renderings send.
    fn builder(&self, status: StatusCode) -> HttpResponseBuilder {
        let mut resp = HttpResponse::build(status);
        if let Some(s) = self.retry_after_s {
            resp.insert_header((header::RETRY_AFTER, s.to_string()));
        }
        if let Some(allow) = self.allow {
            resp.insert_header((header::ALLOW, allow));
        }
        if self.kind == ErrorKind::BodyTimeout {
            // The rest of a half-received body cannot be told from the next request.
            resp.force_close();
        }
        resp
    }

    /// The whole response in Anthropic's shape.
    pub fn http_anthropic(&self) -> HttpResponse {
        self.builder(self.status_anthropic())
            .json(self.to_json_anthropic())
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status_oaicompat()
    }

    fn error_response(&self) -> HttpResponse {
        let mut resp = self.builder(self.status_oaicompat());
        if self.kind == ErrorKind::InvalidApiKey {
            resp.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        resp.json(self.to_json_oaicompat())
    }
}

/// An [`ApiError`] answered in Anthropic's shape: what the Anthropic routes return.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AnthropicShape(pub ApiError);

impl From<ApiError> for AnthropicShape {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl ResponseError for AnthropicShape {
    fn status_code(&self) -> StatusCode {
        self.0.status_anthropic()
    }

    fn error_response(&self) -> HttpResponse {
        self.0.http_anthropic()
    }
}
