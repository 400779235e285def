//! The streaming HTTP body: pipeline inputs in, SSE bytes out, with `ping`s while the pipeline is
//! quiet (a long prefill), so clients and proxies do not give up on the connection.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::time::Duration;

use actix_web::HttpResponse;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use mlx_serve_actors::engine::SeqEvent;

use super::error::AnthropicError;
use super::stream::{ping, MessageStream, StreamInput};

/// Anthropic's clients wait minutes for the first byte; a ping every few seconds keeps proxies
/// with idle timeouts from cutting a long prefill.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(5);

/// An engine event as a stream input, for replies without tool parsing (with tools, the tool
/// parser splits `Text` into text and tool-call inputs instead).
pub fn from_seq_event(event: SeqEvent) -> StreamInput {
    match event {
        SeqEvent::Started {
            prompt_tokens,
            cached_tokens,
        } => StreamInput::Started {
            prompt_tokens,
            cached_tokens,
        },
        SeqEvent::Text { text, .. } => StreamInput::Text(text),
        SeqEvent::Finished {
            reason,
            stop_sequence,
            usage,
            ..
        } => StreamInput::Finished {
            reason,
            stop_sequence,
            output_tokens: usage.completion_tokens,
        },
        SeqEvent::Failed(e) => StreamInput::Error(AnthropicError::from(e)),
    }
}

struct BodyState {
    machine: MessageStream,
    inputs: Pin<Box<dyn Stream<Item = StreamInput>>>,
    ready: VecDeque<Bytes>,
    ping_every: Duration,
}

/// SSE bytes for one message: every event [`MessageStream`] makes from `inputs`, plus a `ping`
/// after each `ping_every` without output. Ends after `message_stop` or `error`; if `inputs` ends
/// before `Finished`, the stream ends with an `api_error` event instead of just stopping.
pub fn sse_body(
    model: String,
    inputs: impl Stream<Item = StreamInput> + 'static,
    ping_every: Duration,
) -> impl Stream<Item = Result<Bytes, Infallible>> {
    let state = BodyState {
        machine: MessageStream::new(model),
        inputs: Box::pin(inputs),
        ready: VecDeque::new(),
        ping_every,
    };
    futures_util::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(bytes) = s.ready.pop_front() {
                return Some((Ok(bytes), s));
            }
            if s.machine.is_done() {
                return None;
            }
            let input = tokio::select! {
                next = s.inputs.next() => next,
                () = tokio::time::sleep(s.ping_every) => {
                    s.ready.push_back(ping().to_bytes());
                    continue;
                }
            };
            let input = input.unwrap_or_else(|| {
                StreamInput::Error(AnthropicError::Api(
                    "generation ended without a finish event".to_owned(),
                ))
            });
            s.ready
                .extend(s.machine.push(input).iter().map(|e| e.to_bytes()));
        }
    })
}

/// The `200 text/event-stream` response around [`sse_body`].
pub fn sse_response(
    model: String,
    inputs: impl Stream<Item = StreamInput> + 'static,
    ping_every: Duration,
) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        // Tells nginx-style proxies not to buffer the stream.
        .insert_header(("x-accel-buffering", "no"))
        .streaming(sse_body(model, inputs, ping_every))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlx_serve_actors::engine::{EngineError, FinishReason, SeqTimings, Usage};

    async fn collect(body: impl Stream<Item = Result<Bytes, Infallible>>) -> Vec<String> {
        body.map(|b| {
            let b = b.unwrap_or_else(|never| match never {});
            let frame = String::from_utf8_lossy(&b).into_owned();
            frame.lines().next().unwrap_or_default().to_owned()
        })
        .collect()
        .await
    }

    fn finished() -> SeqEvent {
        SeqEvent::Finished {
            reason: FinishReason::Stop,
            stop_sequence: None,
            usage: Usage {
                prompt_tokens: 5,
                cached_tokens: 0,
                completion_tokens: 1,
            },
            timings: SeqTimings::default(),
        }
    }

    #[tokio::test]
    async fn seq_events_become_a_complete_stream() {
        let events = vec![
            SeqEvent::Started {
                prompt_tokens: 5,
                cached_tokens: 0,
            },
            SeqEvent::Text {
                text: "hi".into(),
                tokens: 1,
                logprobs: vec![],
            },
            finished(),
        ];
        let inputs = futures_util::stream::iter(events.into_iter().map(from_seq_event));
        let lines = collect(sse_body("m".into(), inputs, Duration::from_secs(60))).await;
        assert_eq!(
            lines,
            [
                "event: message_start",
                "event: content_block_start",
                "event: content_block_delta",
                "event: content_block_stop",
                "event: message_delta",
                "event: message_stop"
            ]
        );
    }

    #[tokio::test]
    async fn quiet_prefill_is_filled_with_pings() {
        let slow = futures_util::stream::once(async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            from_seq_event(SeqEvent::Started {
                prompt_tokens: 5,
                cached_tokens: 0,
            })
        })
        .chain(futures_util::stream::iter([from_seq_event(finished())]));
        let lines = collect(sse_body("m".into(), slow, Duration::from_millis(20))).await;
        let first_start = lines.iter().position(|l| l == "event: message_start");
        assert!(first_start.is_some_and(|i| i >= 1), "{lines:?}");
        assert!(lines[..first_start.unwrap_or(0)]
            .iter()
            .all(|l| l == "event: ping"));
        assert_eq!(
            lines.last().map(String::as_str),
            Some("event: message_stop")
        );
    }

    #[tokio::test]
    async fn engine_failure_and_early_end_become_error_events() {
        let failed = futures_util::stream::iter([from_seq_event(SeqEvent::Failed(
            EngineError::Internal("boom".into()),
        ))]);
        assert_eq!(
            collect(sse_body("m".into(), failed, Duration::from_secs(60))).await,
            ["event: error"]
        );
        let cut = futures_util::stream::iter([StreamInput::Text("x".into())]);
        let lines = collect(sse_body("m".into(), cut, Duration::from_secs(60))).await;
        assert_eq!(
            lines.last().map(String::as_str),
            Some("event: error"),
            "{lines:?}"
        );
    }

    #[tokio::test]
    async fn response_is_an_unbuffered_event_stream() {
        let inputs = futures_util::stream::iter([from_seq_event(finished())]);
        let resp = sse_response("m".into(), inputs, Duration::from_secs(60));
        assert_eq!(resp.status().as_u16(), 200);
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        assert_eq!(header("content-type").as_deref(), Some("text/event-stream"));
        assert_eq!(header("cache-control").as_deref(), Some("no-cache"));
        let body = actix_web::body::to_bytes(resp.into_body())
            .await
            .unwrap_or_default();
        let body = String::from_utf8_lossy(&body);
        assert!(body.starts_with("event: message_start\n"), "{body}");
        assert!(body.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));
    }
}
