//! The Anthropic Messages API (`POST /v1/messages`, `POST /v1/messages/count_tokens`) as plain
//! functions around the engine seam, so the HTTP layer only wires them into its pipeline:
//!
//! - [`request`]: wire types of the requests; [`response`]: `Message`, SSE events, count reply.
//! - [`translate`]: validation and translation into an engine `GenerateRequest`.
//! - [`render`]: a finished generation as a `Message`; [`stream`]: the SSE state machine.
//! - [`chunks`]: [`MessagesRenderer`], the SSE renderer the shared pipeline drives.
//!
//! Routed by `crate::routes::messages` through the same pipeline as the OpenAI API: body and
//! API key via the shared extractors, every error a `crate::error::ApiError` rendered in
//! Anthropic's shape (`AnthropicShape`), `model` through the `[aliases]` table
//! (`crate::config::ModelAliases`), [`to_generate`], `pipeline::start`, then `pipeline::collect`
//! with [`render_message`] or `pipeline::stream::sse_response` with [`MessagesRenderer`].
//!
//! `count_tokens`: [`count_tokens_prompt`] → the model actor's `CountTokens`.
//!
//! Accepted and ignored: `metadata`, `thinking`, `service_tier`, `cache_control` (prefix reuse is
//! automatic; cache hits are reported as `cache_read_input_tokens`). Refused with a 400: images
//! and other non-text input blocks, server tools, a trailing assistant message (prefill).

pub mod chunks;
pub mod render;
pub mod request;
pub mod response;
pub mod stream;
mod thinking;
pub mod translate;

pub use chunks::MessagesRenderer;
pub use render::{render_message, Completion};
pub use request::{CountTokensRequest, MessagesRequest};
pub use response::{CountTokensResponse, Message, StreamEvent};
pub use stream::{ping, MessageStream, StreamInput};
pub use translate::{count_tokens_prompt, to_generate, ToolMode, Translated};
