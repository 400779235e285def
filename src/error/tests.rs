use actix_web::body::MessageBody;
use actix_web::http::{header, StatusCode};
use actix_web::ResponseError;
use mlx_serve_engine::engine::EngineError;

use super::*;

fn context_overflow() -> ApiError {
    ApiError::from(EngineError::ContextLength {
        context_length: 8192,
        prompt_tokens: 9000,
        max_tokens: 100,
        requested: 9100,
    })
}

#[test]
fn context_length_is_a_400_with_code_and_numbers() {
    let e = ApiError::from(EngineError::ContextLength {
        context_length: 10,
        prompt_tokens: 8,
        max_tokens: 5,
        requested: 13,
    });
    assert_eq!(e.status_code(), StatusCode::BAD_REQUEST);
    let body = serde_json::to_value(e.to_json_oaicompat()).unwrap();
    assert_eq!(body["error"]["code"], "context_length_exceeded");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("10 tokens"));
}

#[test]
fn queue_full_carries_retry_after() {
    let e = ApiError::queue_full(2, 3);
    let resp = e.error_response();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.headers().get(header::RETRY_AFTER).unwrap(), "3");
    let resp = e.http_anthropic();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.headers().get(header::RETRY_AFTER).unwrap(), "3");
}

#[test]
fn sse_event_wraps_the_error_body() {
    let e = ApiError::invalid("n", "n must be 1");
    let ev = e.sse_oaicompat();
    let text = std::str::from_utf8(&ev).unwrap();
    assert!(text.starts_with("data: {\"error\":"));
    assert!(text.ends_with("\n\n"));
    assert!(text.contains("\"param\":\"n\""));
}

#[test]
fn every_error_kind_has_anthropics_status() {
    let cases = [
        (ApiError::invalid_request("x"), 400, "invalid_request_error"),
        (ApiError::invalid_api_key(), 401, "authentication_error"),
        (ApiError::forbidden("x"), 403, "permission_error"),
        (ApiError::not_found("GET", "/x"), 404, "not_found_error"),
        (ApiError::payload_too_large(1), 413, "request_too_large"),
        (ApiError::peer_limit(1, 1), 429, "rate_limit_error"),
        (ApiError::internal("x"), 500, "api_error"),
        (ApiError::unavailable("x"), 529, "overloaded_error"),
    ];
    for (e, status, kind) in cases {
        assert_eq!(e.status_anthropic().as_u16(), status, "{kind}");
        assert_eq!(e.anthropic_type(), kind);
        assert_eq!(AnthropicShape(e).status_code().as_u16(), status);
    }
}

#[test]
fn response_body_has_anthropics_error_shape() {
    let resp = ApiError::new(ErrorKind::NotFound, "model: no such model `x`").http_anthropic();
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
    let e = context_overflow();
    assert_eq!(e.status_anthropic().as_u16(), 400);
    assert!(e
        .anthropic_detail()
        .message
        .starts_with("prompt is too long: 9100 tokens > 8192 maximum"));
    let internal = ApiError::from(EngineError::Internal("boom".into()));
    assert_eq!(internal.anthropic_type(), "api_error");
}

#[test]
fn anthropic_keeps_the_status_of_kinds_it_has_no_class_for() {
    let e = ApiError::method_not_allowed("GET", "/v1/messages", "POST");
    let resp = e.http_anthropic();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(resp.headers().get(header::ALLOW).unwrap(), "POST");
    assert_eq!(e.anthropic_type(), "invalid_request_error");
}
