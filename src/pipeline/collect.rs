//! A whole generation gathered for a JSON response: text, reasoning, tool calls assembled from
//! their fragments, the finish and usage; one per choice for `n` > 1.

use std::collections::BTreeMap;

use mlx_serve_engine::engine::{FinishReason, TokenLogprob, Usage};

use super::{choices, Choices, Event, Source};
use crate::error::ApiError;

/// A tool call assembled from its fragments.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AssembledToolCall {
    /// Call id.
    pub id: String,
    /// Function name.
    pub name: String,
    /// Argument JSON text.
    pub arguments: String,
}

/// A whole generation, for JSON responses.
#[derive(Debug, Clone, PartialEq)]
pub struct Collected {
    /// Assistant text.
    pub text: String,
    /// The model's reasoning, kept apart from `text` (empty when none).
    pub reasoning: String,
    /// Logprobs of every token.
    pub logprobs: Vec<TokenLogprob>,
    /// Tool calls, in index order.
    pub tool_calls: Vec<AssembledToolCall>,
    /// Why it ended.
    pub reason: FinishReason,
    /// Token counts.
    pub usage: Usage,
    /// The stop string that ended it (`FinishReason::StopSequence`).
    pub stop_sequence: Option<String>,
}

/// One choice's events gathered into a [`Collected`].
#[derive(Default)]
struct Assembly {
    text: String,
    reasoning: String,
    logprobs: Vec<TokenLogprob>,
    calls: BTreeMap<usize, AssembledToolCall>,
}

impl Assembly {
    /// Take one event; the whole generation (or its failure) once it has ended.
    fn absorb(&mut self, ev: Event) -> Option<Result<Collected, ApiError>> {
        match ev {
            Event::Started { .. } => {}
            Event::Reasoning { text } => self.reasoning.push_str(&text),
            Event::Text { text, logprobs } => {
                self.text.push_str(&text);
                self.logprobs.extend(logprobs);
            }
            Event::ToolCall {
                index,
                id,
                name,
                arguments,
            } => {
                let call = self.calls.entry(index).or_default();
                if let Some(id) = id {
                    call.id = id;
                }
                if let Some(name) = name {
                    call.name = name;
                }
                call.arguments.push_str(&arguments);
            }
            Event::Finished {
                reason,
                usage,
                stop_sequence,
            } => {
                let done = std::mem::take(self);
                return Some(Ok(Collected {
                    text: done.text,
                    reasoning: done.reasoning,
                    logprobs: done.logprobs,
                    tool_calls: done.calls.into_values().collect(),
                    reason,
                    usage,
                    stop_sequence,
                }));
            }
            Event::Error(e) => return Some(Err(e)),
        }
        None
    }
}

fn ended_without_result() -> ApiError {
    ApiError::internal("generation ended without a result")
}

/// Drain a source into one response (the JSON renderer's input).
pub async fn collect(mut source: Source) -> Result<Collected, ApiError> {
    let mut assembly = Assembly::default();
    while let Some(ev) = source.next().await {
        if let Some(done) = assembly.absorb(ev) {
            return done;
        }
    }
    Err(ended_without_result())
}

/// Drain `n` choices into one result each, in choice order; the first failure fails them all.
pub async fn collect_choices<S: choices::ChoiceSource>(
    mut choices: Choices<S>,
) -> Result<Vec<Collected>, ApiError> {
    let mut assemblies: Vec<Assembly> = (0..choices.len()).map(|_| Assembly::default()).collect();
    let mut done: Vec<Option<Collected>> = vec![None; choices.len()];
    while let Some((i, ev)) = choices.next().await {
        if let Some(result) = assemblies[i].absorb(ev) {
            done[i] = Some(result?);
        }
    }
    done.into_iter()
        .map(|c| c.ok_or_else(ended_without_result))
        .collect()
}
