//! Extractors shared by the API routes: the JSON body (size limit, errors naming the field),
//! API-key authentication, the response-cache scope and the request id.

use std::time::Duration;

use actix_web::dev::{Decompress, Payload};
use actix_web::http::header::{self, ContentEncoding};
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use bytes::BytesMut;
use futures_util::future::{ready, LocalBoxFuture, Ready};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use mlx_serve_actors::cache::CacheDirectives;

use super::disconnect::PeerSocket;
use crate::error::ApiError;
use crate::pipeline::cache::{tenant_id, CacheScope};
use crate::state::AppState;

/// A JSON body parsed with OpenAI-style errors: 413 over the limit, 400 naming the field.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for ApiJson<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let server = req
            .app_data::<web::Data<AppState>>()
            .map(|s| s.settings.server.clone())
            .unwrap_or_default();
        let (limit, timeout_s) = (server.body_limit, server.body_timeout_s);
        let checked = check_content_type(req.headers()).and_then(|()| encoding(req.headers()));
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let payload = payload.take();
        let socket = req.conn_data::<PeerSocket>().copied();
        Box::pin(async move {
            let encoding = checked?;
            // A compressed body's declared length says nothing about its decoded size.
            if encoding == ContentEncoding::Identity && declared.is_some_and(|n| n > limit) {
                return Err(ApiError::payload_too_large(limit));
            }
            let read = read_body(Decompress::new(payload, encoding), limit);
            let body = match timeout_s {
                0 => read.await?,
                s => match tokio::time::timeout(Duration::from_secs(s), read).await {
                    Ok(body) => body?,
                    Err(_) => {
                        // The rest of the body would otherwise keep the connection open.
                        if let Some(socket) = socket {
                            socket.stop_reading();
                        }
                        return Err(ApiError::body_timeout(s));
                    }
                },
            };
            parse_json(&body).map(ApiJson)
        })
    }
}

/// Reads a (decoded) body, refusing it as soon as it passes `limit` bytes.
async fn read_body(mut payload: Decompress<Payload>, limit: usize) -> Result<BytesMut, ApiError> {
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::invalid_request(format!("could not read the request body: {e}"))
        })?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::payload_too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The JSON routes take `application/json` (any `+json` type too). A request without
/// `Content-Type` is read as JSON as well: `curl --data-binary` users and some scripts leave it
/// out, and nothing else could be meant. Anything else (a form, plain text) is a 415.
fn check_content_type(headers: &header::HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let essence = value
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json" || essence.ends_with("+json") {
        return Ok(());
    }
    Err(ApiError::unsupported_media_type(format!(
        "Unsupported Content-Type {:?}: send the body as JSON with \
         `Content-Type: application/json`.",
        value.to_str().unwrap_or("(not text)")
    )))
}

/// `Content-Encoding`: gzip, deflate, br and zstd are decoded (the body limit applies to the
/// decoded bytes); any other coding is a 415 rather than bytes parsed as JSON.
fn encoding(headers: &header::HeaderMap) -> Result<ContentEncoding, ApiError> {
    let Some(value) = headers.get(header::CONTENT_ENCODING) else {
        return Ok(ContentEncoding::Identity);
    };
    let text = value.to_str().unwrap_or("").trim().to_ascii_lowercase();
    let parsed = match text.as_str() {
        "" | "identity" => Some(ContentEncoding::Identity),
        "gzip" | "x-gzip" => Some(ContentEncoding::Gzip),
        "deflate" => Some(ContentEncoding::Deflate),
        "br" => Some(ContentEncoding::Brotli),
        "zstd" => Some(ContentEncoding::Zstd),
        _ => None,
    };
    parsed.ok_or_else(|| {
        ApiError::unsupported_media_type(format!(
            "Unsupported Content-Encoding {:?}: send the body uncompressed or as gzip, deflate, \
             br or zstd.",
            value.to_str().unwrap_or("(not text)")
        ))
    })
}

/// serde_json's messages end with " at line L column C"; the field path says more.
fn strip_position(msg: &str) -> &str {
    match msg.rfind(" at line ") {
        Some(i) => &msg[..i],
        None => msg,
    }
}

/// Parse a body, turning serde errors into a 400 whose `param` is the field's path.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    // serde's derived structs also take arrays (`["m", [...]]` as a whole request); every body
    // of these APIs is an object.
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        None => {
            return Err(ApiError::invalid_request(
                "The request body is empty: send a JSON object.",
            ))
        }
        Some(_) => {
            return Err(ApiError::invalid_request(
                "The request body must be a JSON object.",
            ))
        }
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed: Result<T, serde_path_to_error::Error<serde_json::Error>> =
        serde_path_to_error::deserialize(&mut de);
    let result = match parsed {
        Ok(v) => de.end().map(|()| v).map_err(|e| (".".to_owned(), e)),
        Err(e) => Err((e.path().to_string(), e.into_inner())),
    };
    match result {
        Ok(v) => Ok(v),
        Err((path, inner)) => {
            if !inner.is_data() {
                return Err(ApiError::invalid_request(format!(
                    "We could not parse the JSON body of your request: {inner}. Send valid JSON."
                )));
            }
            let msg = inner.to_string();
            let msg = strip_position(&msg);
            let param = match msg
                .strip_prefix("missing field `")
                .and_then(|r| r.strip_suffix('`'))
            {
                Some(field) if path == "." => field.to_owned(),
                Some(field) => format!("{path}.{field}"),
                None => path,
            };
            Err(ApiError::invalid(
                param.clone(),
                format!("Invalid value for `{param}`: {msg}"),
            ))
        }
    }
}

/// Proof that the request carried a valid API key (or that none are configured).
pub struct Authorized;

fn digest(key: &[u8]) -> [u8; 32] {
    Sha256::digest(key).into()
}

/// Compare against every configured key in constant time (hashing hides length differences).
pub fn key_matches(presented: &str, keys: &[String]) -> bool {
    let p = digest(presented.as_bytes());
    keys.iter().fold(false, |found, k| {
        let same: bool = digest(k.as_bytes()).ct_eq(&p).into();
        found | same
    })
}

/// The API keys a request presents: `Authorization: Bearer <key>`, then `x-api-key`.
pub fn presented_keys(headers: &header::HeaderMap) -> Vec<&str> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let x_api_key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    [bearer, x_api_key].into_iter().flatten().collect()
}

impl FromRequest for Authorized {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let Some(state) = req.app_data::<web::Data<AppState>>() else {
            return ready(Err(ApiError::internal("application state missing")));
        };
        let keys = &state.settings.server.api_keys;
        if keys.is_empty() {
            return ready(Ok(Authorized));
        }
        let ok = presented_keys(req.headers())
            .into_iter()
            .any(|k| key_matches(k, keys));
        ready(if ok {
            Ok(Authorized)
        } else {
            Err(ApiError::invalid_api_key())
        })
    }
}

/// Tenant and directives of an HTTP request. With API keys configured the tenant is the key that
/// authenticated; without, whatever key the client presented (clients that send different keys
/// still do not share answers).
pub fn cache_scope(req: &HttpRequest, api_keys: &[String]) -> CacheScope {
    let presented = presented_keys(req.headers());
    let key = if api_keys.is_empty() {
        presented.first().copied()
    } else {
        presented.into_iter().find(|k| key_matches(k, api_keys))
    };
    let directives = req
        .headers()
        .get_all(header::CACHE_CONTROL)
        .filter_map(|v| v.to_str().ok())
        .map(CacheDirectives::parse)
        .fold(CacheDirectives::default(), |a, b| CacheDirectives {
            no_cache: a.no_cache || b.no_cache,
            no_store: a.no_store || b.no_store,
        });
    CacheScope {
        tenant: key.map(tenant_id).unwrap_or_default(),
        directives,
        ..CacheScope::default()
    }
}

/// The request's [`CacheScope`] under the configured API keys; routes add their side fields.
impl FromRequest for CacheScope {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(match req.app_data::<web::Data<AppState>>() {
            Some(state) => Ok(cache_scope(req, &state.settings.server.api_keys)),
            None => Err(ApiError::internal("application state missing")),
        })
    }
}

/// The request id the logging middleware assigned.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// This request's id (`x-request-id`), or a fresh one.
/// Priorities a request may ask for: lower runs sooner, 0 by default (vLLM's meaning).
pub const PRIORITY_RANGE: std::ops::RangeInclusive<i64> = -1000..=1000;

/// The request's priority: the body's `priority` field where the API has one, else the
/// `x-priority` header, else 0. Out of range or not an integer: a 400 naming `priority`.
pub fn priority(req: &HttpRequest, body: Option<i64>) -> Result<i32, crate::error::ApiError> {
    let bad = |what: String| {
        crate::error::ApiError::invalid(
            "priority",
            format!(
                "{what}: priority must be an integer from {} to {} (lower runs sooner)",
                PRIORITY_RANGE.start(),
                PRIORITY_RANGE.end()
            ),
        )
    };
    let value = match body {
        Some(v) => v,
        None => match req.headers().get("x-priority") {
            None => return Ok(0),
            Some(h) => h
                .to_str()
                .ok()
                .and_then(|t| t.trim().parse::<i64>().ok())
                .ok_or_else(|| bad(format!("x-priority header {h:?}")))?,
        },
    };
    if !PRIORITY_RANGE.contains(&value) {
        return Err(bad(format!("got {value}")));
    }
    Ok(value as i32)
}

pub fn request_id(req: &HttpRequest) -> String {
    req.extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use actix_web::test::TestRequest;

    #[test]
    fn tenant_is_the_hashed_key_that_authenticated() {
        let keys = vec!["sk-a".to_owned(), "sk-b".to_owned()];
        let req = TestRequest::default()
            .insert_header(("authorization", "Bearer sk-b"))
            .to_http_request();
        let scope = cache_scope(&req, &keys);
        assert_eq!(scope.tenant, tenant_id("sk-b"));
        assert!(!scope.tenant.contains("sk-b"));
        let other = TestRequest::default()
            .insert_header(("x-api-key", "sk-a"))
            .to_http_request();
        assert_ne!(cache_scope(&other, &keys).tenant, scope.tenant);
        let anonymous = TestRequest::default().to_http_request();
        assert_eq!(cache_scope(&anonymous, &[]).tenant, "");
    }

    #[test]
    fn cache_control_directives_are_read_from_every_header() {
        let req = TestRequest::default()
            .insert_header(("cache-control", "max-age=0"))
            .append_header(("cache-control", "no-store"))
            .to_http_request();
        let scope = cache_scope(&req, &[]);
        assert!(scope.directives.no_store && !scope.directives.no_cache);
    }

    use crate::openai::chat::ChatCompletionRequest;

    fn param_of(body: &str) -> Option<String> {
        match parse_json::<ChatCompletionRequest>(body.as_bytes()) {
            Err(e) if e.kind == ErrorKind::InvalidRequest => e.param,
            other => panic!("expected a 400, got {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn wrong_type_names_the_nested_field() {
        let p = param_of(
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#,
        );
        assert_eq!(p.as_deref(), Some("temperature"));
        let p = param_of(r#"{"model":"m","messages":[{"role":5,"content":"x"}]}"#);
        assert_eq!(p.as_deref(), Some("messages[0].role"));
    }

    #[test]
    fn missing_field_is_named() {
        assert_eq!(param_of(r#"{"messages":[]}"#).as_deref(), Some("model"));
        let p = param_of(r#"{"model":"m","messages":[{"content":"x"}]}"#);
        assert_eq!(p.as_deref(), Some("messages[0].role"));
    }

    #[test]
    fn malformed_json_has_no_param() {
        assert_eq!(param_of(r#"{"model": "m", "#), None);
        assert_eq!(param_of(r#"{"model":"m","messages":[]} trailing"#), None);
    }

    #[test]
    fn key_comparison_accepts_only_configured_keys() {
        let keys = vec!["secret-1".to_owned(), "secret-2".to_owned()];
        assert!(key_matches("secret-2", &keys));
        assert!(!key_matches("secret-3", &keys));
        assert!(!key_matches("", &keys));
    }
}
