//! The OpenAI Responses API (`POST /v1/responses`, `GET`/`DELETE /v1/responses/{id}`) as
//! plain functions and types around the shared pipeline, which `crate::routes::responses`
//! wires together exactly like chat completions and messages: body and API key via the shared
//! extractors, [`translate`] into a `GenerateRequest`, `pipeline::start` (response cache, queue,
//! tool parser, metrics), then [`ResponseStream`] — drained for the JSON reply, or driven by
//! `pipeline::stream::sse_response` through [`ResponsesRenderer`] for SSE.
//!
//! - [`request`]: request wire types; [`response`]: the `response` object, items, events.
//! - [`translate`]: validation, input items and stored history into chat messages, tools.
//! - [`render`]: the echo of the request and the final status; [`stream`]: the output state
//!   machine both replies are built from; [`store`]: stored responses.
//!
//! Accepted and ignored: `include`, `reasoning`, `prompt_cache_key` (prefix reuse is automatic),
//! `client_metadata`, `service_tier`, `truncation`, `user` (echoed), `text.verbosity`; `reasoning`
//! items sent back are dropped, and so are tools other than `function` (`web_search`,
//! `namespace`, `local_shell`, `custom`, …), with a log line. Refused with a 400: `text.format`
//! `json_schema` / `json_object` (no constrained decoding yet), non-text content parts,
//! unknown item types, a `function_call_output` that answers no call of the conversation.

pub mod render;
pub mod request;
pub mod response;
pub mod store;
pub mod stream;
pub mod translate;

pub use render::base_response;
pub use request::ResponsesRequest;
pub use response::{Frame, OutputItem, ResponseObject, StreamEvent};
pub use store::{ResponseStore, Saver};
pub use stream::{ResponseStream, ResponsesRenderer};
pub use translate::{translate, Translated, Turn};
