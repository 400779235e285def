//! The Anthropic Messages API (`POST /v1/messages`, `POST /v1/messages/count_tokens`) as plain
//! functions around the engine seam, so the HTTP layer only wires them into its pipeline:
//!
//! - [`request`]: wire types of the requests; [`response`]: `Message`, SSE events, count reply.
//! - [`translate`]: validation and translation into an engine `GenerateRequest`.
//! - [`render`]: a finished generation as a `Message`; [`stream`]: the SSE state machine;
//!   [`sse`]: the streaming HTTP body around it (pings included).
//! - [`error`]: `AnthropicError`, Anthropic's error shape and status codes.
//! - [`aliases`]: `claude-*` style model names mapped onto local models.
//!
//! Wiring (see `tests/anthropic_http.rs` for a runnable version over a canned generator):
//! 1. Extract `web::Json<MessagesRequest>` under `web::JsonConfig::error_handler(json_error_handler)`
//!    (or `web::Bytes` + [`parse_body`]); check [`api_key`]; map `model` through [`ModelAliases`].
//! 2. [`to_generate`] gives the engine request plus the tool policy ([`ToolMode`],
//!    `parallel_tool_calls`) for the tool parser; errors are already 400s.
//! 3. Streaming: feed engine `Started`/`Finished`/`Failed` and the tool parser's text and call
//!    pieces as [`StreamInput`]s into [`sse_response`] ([`from_seq_event`] covers the no-tools
//!    path). Non-streaming: [`render_message`] once the sequence finished.
//! 4. `count_tokens`: [`count_tokens_prompt`] → `Engine::count_prompt_tokens` → [`CountTokensResponse`].
//!
//! Accepted and ignored: `metadata`, `thinking`, `service_tier`, `cache_control` (prefix reuse is
//! automatic; cache hits are reported as `cache_read_input_tokens`). Refused with a 400: images
//! and other non-text input blocks, server tools, a trailing assistant message (prefill).

pub mod aliases;
pub mod chunks;
pub mod error;
pub mod render;
pub mod request;
pub mod response;
pub mod sse;
pub mod stream;
pub mod translate;

pub use aliases::ModelAliases;
pub use chunks::MessagesRenderer;
pub use error::{api_key, json_error_handler, parse_body, AnthropicError, ErrorResponse};
pub use render::{render_message, Completion};
pub use request::{CountTokensRequest, MessagesRequest};
pub use response::{CountTokensResponse, Message, StreamEvent};
pub use sse::{from_seq_event, sse_body, sse_response, DEFAULT_PING_INTERVAL};
pub use stream::{ping, MessageStream, StreamInput};
pub use translate::{count_tokens_prompt, to_generate, ToolMode, Translated};
