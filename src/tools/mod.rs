//! The tool-parser seam: the `ToolParserActor`'s parser plugged into the request pipeline.
//!
//! Per request: the format comes from `[tools] format` (`auto`: detected from the model's chat
//! template), the prompt is steered toward `tool_choice` (and offered the tools when the
//! template cannot render them), and a [`StreamParser`] turns the generated text into content
//! and tool-call deltas, the same way streaming or not. At the end the reply is checked
//! against `tool_choice`, and its outcome (format, calls, failures) goes to the metrics record.

mod prompt;

use mlx_serve_actors::tool_parser::{
    forced_call_grammar, lazy_call_grammar, ParseOptions, StreamEvent, StreamParser, ToolChoice,
    ToolFormat, ToolSet,
};
use mlx_serve_engine::engine::{Constraint, GenerateRequest, Prompt};
use serde_json::Value;

use crate::config::ToolsSettings;
use crate::error::ApiError;
use crate::pipeline::seams::{
    ParsedDelta, StreamingToolParser, ToolOptions, ToolParseOutcome, ToolParserSeam,
};

pub use prompt::template_renders_tools;

/// The real [`ToolParserSeam`].
pub struct ToolCalling {
    settings: ToolsSettings,
}

impl ToolCalling {
    /// The seam for `[tools]`.
    pub fn new(settings: &ToolsSettings) -> Self {
        Self {
            settings: settings.clone(),
        }
    }

    fn build(
        &self,
        tools: &[Value],
        options: &ToolOptions,
        format: ToolFormat,
        watched: Option<&[String]>,
    ) -> Option<Box<dyn StreamingToolParser>> {
        if format == ToolFormat::Disabled {
            return None;
        }
        let parse = ParseOptions {
            tools: tools.to_vec(),
            format,
            allow_unknown_tools: self.settings.allow_unknown_tools,
            tool_choice: options.choice.clone(),
        };
        let inner = match watched {
            Some(markers) => StreamParser::watching(&parse, markers),
            None => StreamParser::new(&parse),
        };
        Some(Box::new(RequestParser {
            inner,
            format,
            choice: options.choice.clone(),
            parallel: options.parallel,
            names: Vec::new(),
        }))
    }
}

impl ToolParserSeam for ToolCalling {
    fn parser(&self, tools: &[Value]) -> Option<Box<dyn StreamingToolParser>> {
        let format = self.settings.format.resolve(None);
        self.build(tools, &ToolOptions::default(), format, None)
    }

    fn prepare(
        &self,
        request: &mut GenerateRequest,
        options: &ToolOptions,
        chat_template: Option<&str>,
    ) -> Option<Box<dyn StreamingToolParser>> {
        let Prompt::Chat {
            messages, tools, ..
        } = &mut request.prompt
        else {
            return None;
        };
        if tools.is_empty() {
            return None;
        }
        let format = self.settings.format.resolve(chat_template);
        if format == ToolFormat::Disabled {
            return None;
        }
        if options.choice == ToolChoice::None {
            // Calls stay out: no tools offered in text, and the parser passes text through.
            return self.build(tools, options, format, None);
        }
        prompt::steer(
            messages,
            tools,
            &options.choice,
            template_renders_tools(chat_template),
        );
        // A forced call is guaranteed by constraining the reply to the call markup; the
        // instruction stays (it helps the model pick arguments) and so does the check after
        // the reply, for formats without a grammar.
        let set = ToolSet::from_definitions(tools);
        if let Some(grammar) = forced_call_grammar(
            format,
            &set,
            &options.choice,
            options.parallel,
            chat_template,
        ) {
            request.constraint = Some(grammar);
        } else if options.choice == ToolChoice::Auto && request.constraint.is_none() {
            // `strict: true` tools: prose stays free, a call the model opens is held to its
            // tool's schema — so only text opening with a marker the grammar watches may
            // become a call.
            let lazy = lazy_call_grammar(format, &set, options.parallel, chat_template);
            if let Some(Constraint::ToolMarkup { markers, .. }) = &lazy {
                let parser = self.build(tools, options, format, Some(markers));
                request.constraint = lazy;
                return parser;
            }
        }
        self.build(tools, options, format, None)
    }
}

/// One reply's parser: the actor crate's [`StreamParser`] plus the request's tool options.
struct RequestParser {
    inner: StreamParser,
    format: ToolFormat,
    choice: ToolChoice,
    parallel: bool,
    /// Names of the calls passed on, in order.
    names: Vec<String>,
}

impl RequestParser {
    fn map(&mut self, events: Vec<StreamEvent>) -> Vec<ParsedDelta> {
        let mut out = Vec::with_capacity(events.len());
        for event in events {
            match event {
                StreamEvent::Content(text) => out.push(ParsedDelta::Text(text)),
                // `parallel_tool_calls: false`: later calls are dropped, markup and all.
                StreamEvent::ToolCallStart { index, .. }
                | StreamEvent::ToolCallArgs { index, .. }
                    if !self.parallel && index > 0 => {}
                StreamEvent::ToolCallStart { index, id, name } => {
                    self.names.push(name.clone());
                    out.push(ParsedDelta::ToolCall {
                        index,
                        id: Some(id),
                        name: Some(name),
                        arguments: String::new(),
                    });
                }
                StreamEvent::ToolCallArgs { index, fragment } => out.push(ParsedDelta::ToolCall {
                    index,
                    id: None,
                    name: None,
                    arguments: fragment,
                }),
                StreamEvent::ToolCallEnd { .. } => {}
            }
        }
        out
    }

    fn check(&self) -> Result<(), ApiError> {
        self.choice
            .check(self.names.iter().map(String::as_str))
            .map_err(ApiError::tool_choice_unsatisfied)
    }
}

impl StreamingToolParser for RequestParser {
    fn push(&mut self, text: &str) -> Vec<ParsedDelta> {
        let events = self.inner.push(text);
        self.map(events)
    }

    fn finish(&mut self) -> Vec<ParsedDelta> {
        let events = self.inner.finish();
        self.map(events)
    }

    fn verdict(&self) -> Result<(), ApiError> {
        self.check()
    }

    fn outcome(&self) -> Option<ToolParseOutcome> {
        let malformed = self.inner.stats().failures.values().sum::<u64>() > 0;
        Some(ToolParseOutcome {
            format: self.format.as_str(),
            calls: self.names.len(),
            ok: !malformed && self.check().is_ok(),
        })
    }
}

#[cfg(test)]
mod tests;
