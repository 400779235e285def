//! The Anthropic routes wired into actix-web the way the server does it, over a canned generator
//! instead of the model: checks status codes, error bodies, JSON-extractor errors, aliases and
//! both reply formats at the HTTP level.

use actix_web::{test, web, App, HttpRequest, HttpResponse};
use mlx_serve::anthropic::{
    api_key, count_tokens_prompt, from_seq_event, json_error_handler, render_message, sse_response,
    to_generate, AnthropicError, Completion, CountTokensRequest, CountTokensResponse,
    MessagesRequest, ModelAliases, DEFAULT_PING_INTERVAL,
};
use mlx_serve_actors::engine::{
    FinishReason, GenerateRequest, Prompt, SeqEvent, SeqTimings, Usage,
};
use serde_json::{json, Value};

const LOCAL_MODEL: &str = "smollm2-135m-instruct";

/// Stands in for the model pipeline: echoes the last message word by word.
fn canned(req: &GenerateRequest) -> Vec<SeqEvent> {
    let Prompt::Chat { messages, .. } = &req.prompt else {
        return vec![];
    };
    let prompt_tokens = messages
        .iter()
        .map(|m| m.content.split_whitespace().count())
        .sum();
    let words: Vec<String> = messages
        .last()
        .map(|m| {
            m.content
                .split_whitespace()
                .map(|w| format!("{w} "))
                .collect()
        })
        .unwrap_or_default();
    let limit = req.max_tokens.unwrap_or(usize::MAX);
    let mut events = vec![SeqEvent::Started {
        prompt_tokens,
        cached_tokens: 0,
    }];
    events.extend(words.iter().take(limit).map(|w| SeqEvent::Text {
        text: w.clone(),
        tokens: 1,
        logprobs: vec![],
    }));
    events.push(SeqEvent::Finished {
        reason: if words.len() > limit {
            FinishReason::Length
        } else {
            FinishReason::Stop
        },
        stop_sequence: None,
        usage: Usage {
            prompt_tokens,
            cached_tokens: 0,
            completion_tokens: words.len().min(limit),
        },
        timings: SeqTimings::default(),
    });
    events
}

fn resolve(aliases: &ModelAliases, name: &str) -> Result<(), AnthropicError> {
    if name == LOCAL_MODEL || aliases.resolve(name).is_some() {
        Ok(())
    } else {
        Err(AnthropicError::NotFound(format!("model: {name}")))
    }
}

async fn messages(
    http: HttpRequest,
    aliases: web::Data<ModelAliases>,
    body: web::Json<MessagesRequest>,
) -> Result<HttpResponse, AnthropicError> {
    if api_key(&http) != Some("secret") {
        return Err(AnthropicError::Authentication("invalid x-api-key".into()));
    }
    resolve(&aliases, &body.model)?;
    let t = to_generate(&body)?;
    let events = canned(&t.request);
    if t.stream {
        let inputs = futures_util::stream::iter(events.into_iter().map(from_seq_event));
        return Ok(sse_response(
            body.model.clone(),
            inputs,
            DEFAULT_PING_INTERVAL,
        ));
    }
    let mut text = String::new();
    for event in events {
        match event {
            SeqEvent::Text { text: t, .. } => text.push_str(&t),
            SeqEvent::Finished {
                reason,
                stop_sequence,
                usage,
                ..
            } => {
                let message = render_message(Completion {
                    model: &body.model,
                    text: &text,
                    reasoning: "",
                    tool_calls: &[],
                    finish: reason,
                    stop_sequence: stop_sequence.as_deref(),
                    usage,
                })?;
                return Ok(HttpResponse::Ok().json(message));
            }
            SeqEvent::Failed(e) => return Err(e.into()),
            SeqEvent::Started { .. } => {}
        }
    }
    Err(AnthropicError::Api("no finish event".into()))
}

async fn count_tokens(
    aliases: web::Data<ModelAliases>,
    body: web::Json<CountTokensRequest>,
) -> Result<HttpResponse, AnthropicError> {
    resolve(&aliases, &body.model)?;
    let prompt = count_tokens_prompt(&body)?;
    let Prompt::Chat { messages, .. } = prompt else {
        return Err(AnthropicError::Api("not a chat prompt".into()));
    };
    let input_tokens = messages
        .iter()
        .map(|m| m.content.split_whitespace().count())
        .sum();
    Ok(HttpResponse::Ok().json(CountTokensResponse { input_tokens }))
}

macro_rules! app {
    () => {
        test::init_service(
            App::new()
                .app_data(web::Data::new(ModelAliases::new([(
                    "claude-*".to_owned(),
                    LOCAL_MODEL.to_owned(),
                )])))
                .app_data(
                    web::JsonConfig::default()
                        .limit(1 << 16)
                        .error_handler(json_error_handler),
                )
                .route("/v1/messages", web::post().to(messages))
                .route("/v1/messages/count_tokens", web::post().to(count_tokens)),
        )
        .await
    };
}

fn post(path: &str, body: Value) -> test::TestRequest {
    test::TestRequest::post()
        .uri(path)
        .insert_header(("x-api-key", "secret"))
        .insert_header(("anthropic-version", "2099-01-01"))
        .set_json(body)
}

fn hello(extra: Value) -> Value {
    let mut v = json!({"model": "claude-sonnet-4-5", "max_tokens": 16,
        "messages": [{"role": "user", "content": "say hello world"}]});
    if let (Some(v), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
        v.extend(extra.clone());
    }
    v
}

async fn error_of(resp: actix_web::dev::ServiceResponse) -> (u16, Value) {
    let status = resp.status().as_u16();
    let body: Value = test::read_body_json(resp).await;
    assert_eq!(body["type"], "error", "{body}");
    (status, body["error"].clone())
}

#[actix_web::test]
async fn aliased_model_gets_a_message_reply() {
    let app = app!();
    let resp = test::call_service(
        &app,
        post("/v1/messages?beta=true", hello(json!({}))).to_request(),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = test::read_body_json(resp).await;
    assert_eq!(body["type"], "message");
    assert_eq!(body["model"], "claude-sonnet-4-5");
    assert_eq!(body["content"][0]["text"], "say hello world ");
    assert_eq!(body["stop_reason"], "end_turn");
    assert_eq!(body["usage"]["output_tokens"], 3);
}

#[actix_web::test]
async fn streamed_reply_is_an_event_stream() {
    let app = app!();
    let req = post(
        "/v1/messages",
        hello(json!({"stream": true, "max_tokens": 2})),
    )
    .to_request();
    let resp = test::call_service(&app, req).await;
    assert_eq!(resp.status().as_u16(), 200);
    let body = test::read_body(resp).await;
    let body = String::from_utf8_lossy(&body);
    let events: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(events.first(), Some(&"message_start"));
    assert_eq!(
        events
            .iter()
            .filter(|e| **e == "content_block_delta")
            .count(),
        2
    );
    assert!(body.contains("\"stop_reason\":\"max_tokens\""), "{body}");
    assert_eq!(events.last(), Some(&"message_stop"));
}

#[actix_web::test]
async fn validation_errors_are_400_invalid_request() {
    let app = app!();
    let mut body = hello(json!({}));
    body.as_object_mut().map(|o| o.remove("max_tokens"));
    let (status, error) =
        error_of(test::call_service(&app, post("/v1/messages", body).to_request()).await).await;
    assert_eq!(status, 400);
    assert_eq!(error["type"], "invalid_request_error");
    assert_eq!(error["message"], "max_tokens: Field required");
}

#[actix_web::test]
async fn malformed_json_is_400_in_anthropics_shape() {
    let app = app!();
    let req = test::TestRequest::post()
        .uri("/v1/messages")
        .insert_header(("content-type", "application/json"))
        .set_payload("{\"model\": ")
        .to_request();
    let (status, error) = error_of(test::call_service(&app, req).await).await;
    assert_eq!(status, 400);
    assert_eq!(error["type"], "invalid_request_error");
}

#[actix_web::test]
async fn oversized_body_is_413_request_too_large() {
    let app = app!();
    let big = "x ".repeat(40_000);
    let body = hello(json!({"messages": [{"role": "user", "content": big}]}));
    let (status, error) =
        error_of(test::call_service(&app, post("/v1/messages", body).to_request()).await).await;
    assert_eq!(status, 413);
    assert_eq!(error["type"], "request_too_large");
}

#[actix_web::test]
async fn unknown_model_is_404_and_bad_key_is_401() {
    let app = app!();
    let body = hello(json!({"model": "gpt-4o"}));
    let (status, error) =
        error_of(test::call_service(&app, post("/v1/messages", body).to_request()).await).await;
    assert_eq!(
        (status, error["type"].as_str()),
        (404, Some("not_found_error"))
    );
    let req = post("/v1/messages", hello(json!({})))
        .insert_header(("x-api-key", "wrong"))
        .to_request();
    let (status, error) = error_of(test::call_service(&app, req).await).await;
    assert_eq!(
        (status, error["type"].as_str()),
        (401, Some("authentication_error"))
    );
}

#[actix_web::test]
async fn count_tokens_answers_input_tokens() {
    let app = app!();
    let body = json!({"model": "claude-haiku-4-5", "system": "be nice",
        "messages": [{"role": "user", "content": "one two three"}]});
    let resp = test::call_service(&app, post("/v1/messages/count_tokens", body).to_request()).await;
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = test::read_body_json(resp).await;
    assert_eq!(body, json!({"input_tokens": 5}));
}
