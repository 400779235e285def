//! Anthropic's error shape: `{"type": "error", "error": {"type", "message"}}` with its status codes.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use mlx_serve_actors::engine::EngineError;
use serde::{Deserialize, Serialize};

/// Every error the Anthropic routes answer with; the variant decides `error.type` and the status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnthropicError {
    /// 400: the request is malformed or asks for something unsupported.
    #[error("{0}")]
    InvalidRequest(String),
    /// 401: missing or wrong API key.
    #[error("{0}")]
    Authentication(String),
    /// 403: the key may not do this.
    #[error("{0}")]
    Permission(String),
    /// 404: unknown model or route.
    #[error("{0}")]
    NotFound(String),
    /// 413: the body exceeds the size limit.
    #[error("{0}")]
    RequestTooLarge(String),
    /// 429: too many requests.
    #[error("{0}")]
    RateLimit(String),
    /// 500: something broke on the server.
    #[error("{0}")]
    Api(String),
    /// 529: the server is temporarily overloaded (queue full).
    #[error("{0}")]
    Overloaded(String),
}

impl AnthropicError {
    /// Anthropic's `error.type` string.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request_error",
            Self::Authentication(_) => "authentication_error",
            Self::Permission(_) => "permission_error",
            Self::NotFound(_) => "not_found_error",
            Self::RequestTooLarge(_) => "request_too_large",
            Self::RateLimit(_) => "rate_limit_error",
            Self::Api(_) => "api_error",
            Self::Overloaded(_) => "overloaded_error",
        }
    }

    /// HTTP status Anthropic uses for this error type.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::Authentication(_) => StatusCode::UNAUTHORIZED,
            Self::Permission(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::RequestTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RateLimit(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Api(_) => StatusCode::INTERNAL_SERVER_ERROR,
            // 529 is Anthropic's own code; the constant exists only for registered codes.
            Self::Overloaded(_) => {
                StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
            }
        }
    }

    /// The JSON body (also the `data` of an SSE `error` event).
    pub fn body(&self) -> ErrorResponse {
        ErrorResponse {
            kind: "error".to_owned(),
            error: ErrorDetail {
                kind: self.error_type().to_owned(),
                message: self.to_string(),
            },
        }
    }

    /// Shorthand for a 400 that names the offending field.
    pub(crate) fn field(field: impl std::fmt::Display, message: impl std::fmt::Display) -> Self {
        Self::InvalidRequest(format!("{field}: {message}"))
    }
}

impl ResponseError for AnthropicError {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status()).json(self.body())
    }
}

impl From<EngineError> for AnthropicError {
    fn from(e: EngineError) -> Self {
        match e {
            // Anthropic's wording: coding agents match "prompt is too long" to trigger compaction.
            EngineError::ContextLength {
                context_length,
                requested,
                prompt_tokens,
                max_tokens,
            } => Self::InvalidRequest(format!(
                "prompt is too long: {requested} tokens > {context_length} maximum \
                 ({prompt_tokens} in the prompt, {max_tokens} for max_tokens)"
            )),
            EngineError::InvalidRequest(m) => Self::InvalidRequest(m),
            EngineError::Internal(m) => Self::Api(format!("engine failure: {m}")),
        }
    }
}

impl From<crate::error::ApiError> for AnthropicError {
    /// The shared pipeline's errors in Anthropic's classes. A full queue is a 429
    /// `rate_limit_error` (the client retries it); an engine that is loading or gone is a 529.
    fn from(e: crate::error::ApiError) -> Self {
        use crate::error::ApiError as A;
        let message = e.to_string();
        match e {
            // The model ignored `tool_choice` (`any`/`tool`); generation is not constrained.
            A::InvalidRequest { .. } | A::ToolChoiceUnsatisfied(_) => Self::InvalidRequest(message),
            A::ModelNotFound { model, available } => Self::NotFound(format!(
                "model: {model} (available: {})",
                available.join(", ")
            )),
            A::ModelNotPulled { .. } => Self::NotFound(message),
            A::ContextLength(_) => Self::InvalidRequest(format!("prompt is too long: {message}")),
            A::PayloadTooLarge { .. } => Self::RequestTooLarge(message),
            A::InvalidApiKey => Self::Authentication(
                "invalid x-api-key: send a configured key as `x-api-key` or \
                 `Authorization: Bearer`"
                    .to_owned(),
            ),
            A::QueueFull { .. } | A::PeerLimit { .. } => Self::RateLimit(message),
            A::Unavailable(_) => Self::Overloaded(message),
            A::NotFound { .. } | A::ResponseNotFound { .. } => Self::NotFound(message),
            A::Forbidden(_) => Self::Permission(message),
            // Their own statuses (405, 415, 408) are kept by the route's error wrapper.
            A::MethodNotAllowed { .. } | A::UnsupportedMediaType(_) | A::BodyTimeout(_) => {
                Self::InvalidRequest(message)
            }
            A::Timeout(_) | A::Internal(_) => Self::Api(message),
        }
    }
}

/// `{"type": "error", "error": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// Always `error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The inner object of an error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// `invalid_request_error`, `api_error`, … (see [`AnthropicError::error_type`]).
    #[serde(rename = "type")]
    pub kind: String,
    /// Human-readable explanation.
    pub message: String,
}

/// Parses a request body, turning serde's complaint into a 400 in Anthropic's shape.
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, AnthropicError> {
    serde_json::from_slice(body)
        .map_err(|e| AnthropicError::InvalidRequest(format!("invalid request body: {e}")))
}

/// For `web::JsonConfig::error_handler` on the Anthropic routes: body errors in Anthropic's shape
/// (413 for an oversized body, 400 for the rest).
pub fn json_error_handler(
    err: actix_web::error::JsonPayloadError,
    _req: &HttpRequest,
) -> actix_web::Error {
    use actix_web::error::JsonPayloadError as J;
    let e = match &err {
        J::Overflow { .. } | J::OverflowKnownLength { .. } => {
            AnthropicError::RequestTooLarge(format!("request body too large: {err}"))
        }
        _ => AnthropicError::InvalidRequest(format!("invalid request body: {err}")),
    };
    e.into()
}

/// The API key a client sent: `x-api-key` (Anthropic clients) or `Authorization: Bearer`.
pub fn api_key(req: &HttpRequest) -> Option<&str> {
    let headers = req.headers();
    if let Some(k) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(k.trim());
    }
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody;

    #[test]
    fn every_error_type_has_anthropics_status() {
        let cases = [
            (
                AnthropicError::InvalidRequest("x".into()),
                400,
                "invalid_request_error",
            ),
            (
                AnthropicError::Authentication("x".into()),
                401,
                "authentication_error",
            ),
            (
                AnthropicError::Permission("x".into()),
                403,
                "permission_error",
            ),
            (AnthropicError::NotFound("x".into()), 404, "not_found_error"),
            (
                AnthropicError::RequestTooLarge("x".into()),
                413,
                "request_too_large",
            ),
            (
                AnthropicError::RateLimit("x".into()),
                429,
                "rate_limit_error",
            ),
            (AnthropicError::Api("x".into()), 500, "api_error"),
            (
                AnthropicError::Overloaded("x".into()),
                529,
                "overloaded_error",
            ),
        ];
        for (e, status, kind) in cases {
            assert_eq!(e.status().as_u16(), status, "{kind}");
            assert_eq!(e.error_type(), kind);
            assert_eq!(e.status_code().as_u16(), status);
        }
    }

    #[test]
    fn response_body_has_anthropics_error_shape() {
        let resp = AnthropicError::NotFound("model: no such model `x`".into()).error_response();
        assert_eq!(resp.status().as_u16(), 404);
        let bytes = resp
            .into_body()
            .try_into_bytes()
            .expect("body is in memory");
        let v: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON body");
        assert_eq!(
            v,
            serde_json::json!({"type": "error", "error": {
                "type": "not_found_error", "message": "model: no such model `x`"}})
        );
    }

    #[test]
    fn context_overflow_is_a_400_saying_prompt_is_too_long() {
        let e = AnthropicError::from(EngineError::ContextLength {
            context_length: 8192,
            prompt_tokens: 9000,
            max_tokens: 100,
            requested: 9100,
        });
        assert_eq!(e.status().as_u16(), 400);
        assert!(e
            .to_string()
            .starts_with("prompt is too long: 9100 tokens > 8192 maximum"));
        let internal = AnthropicError::from(EngineError::Internal("boom".into()));
        assert_eq!(internal.error_type(), "api_error");
    }

    #[test]
    fn api_key_comes_from_x_api_key_or_bearer() {
        let req = actix_web::test::TestRequest::default()
            .insert_header(("x-api-key", "k1"))
            .to_http_request();
        assert_eq!(api_key(&req), Some("k1"));
        let req = actix_web::test::TestRequest::default()
            .insert_header(("authorization", "Bearer k2"))
            .to_http_request();
        assert_eq!(api_key(&req), Some("k2"));
        let req = actix_web::test::TestRequest::default().to_http_request();
        assert_eq!(api_key(&req), None);
    }

    #[test]
    fn malformed_body_is_an_invalid_request() {
        let e = parse_body::<crate::anthropic::MessagesRequest>(b"{\"model\": 3}").unwrap_err();
        assert_eq!(e.error_type(), "invalid_request_error");
        assert!(e.to_string().contains("invalid request body"), "{e}");
    }
}
