//! gpt-oss (harmony): `<|channel|>commentary to=functions.NAME <|constrain|>json<|message|>{…}
//! <|call|>`, or the recipient in the header: `<|start|>assistant to=functions.NAME<|channel|>
//! commentary json<|message|>{…}<|call|>`.
//!
//! Headers without a recipient (`<|channel|>final<|message|>`, `<|start|>assistant`) are
//! markup: dropped, and the message after them is content. `<|end|>`, `<|return|>` and
//! `<|call|>` are dropped too. The analysis channel is the reasoning parser's (see
//! `reasoning`); with reasoning parsing off its text stays content.

use crate::tool_parser::partial::{json_arguments, BlockEnd, Partial, PartialCall};
use crate::tool_parser::scan::{lit, skip_ws, valid_name, Lit, Scan, ScanCtx};

pub(crate) const TRIGGERS: &[&str] = &[
    "<|start|>",
    "<|channel|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
];
const MESSAGE: &str = "<|message|>";
const CALL: &str = "<|call|>";
const RECIPIENT: &str = "to=functions.";

enum Header<'a> {
    Incomplete,
    Bad,
    /// Where the message begins, and the recipient function if there is one.
    Ready(usize, Option<&'a str>),
}

fn header(text: &str) -> Header<'_> {
    let Some(i) = text.find(MESSAGE) else {
        return if text.len() > 300 || text.contains('\n') {
            Header::Bad
        } else {
            Header::Incomplete
        };
    };
    let head = &text[..i];
    if head.contains('\n') {
        return Header::Bad;
    }
    let recipient = head.find(RECIPIENT).map(|r| {
        let rest = &head[r + RECIPIENT.len()..];
        let end = rest.find([' ', '<']).unwrap_or(rest.len());
        &rest[..end]
    });
    match recipient {
        Some(name) if !valid_name(name) => Header::Bad,
        _ => Header::Ready(i + MESSAGE.len(), recipient),
    }
}

pub(crate) fn scan(text: &str, ctx: &ScanCtx) -> Scan {
    for t in ["<|end|>", "<|return|>", "<|call|>"] {
        if text.starts_with(t) {
            return Scan::Calls {
                calls: Vec::new(),
                len: t.len(),
            };
        }
    }
    let trigger = TRIGGERS
        .iter()
        .find(|t| text.starts_with(**t))
        .map_or(1, |t| t.len());
    match header(text) {
        Header::Incomplete => ctx.more_or(Scan::NotCall { skip: trigger }),
        Header::Bad => Scan::NotCall { skip: trigger },
        // Plain headers are markup: consumed, nothing emitted.
        Header::Ready(len, None) => Scan::Calls {
            calls: Vec::new(),
            len,
        },
        // An offered recipient whose arguments have begun is `partial`'s.
        Header::Ready(len, Some(_)) => {
            if skip_ws(text, len) == text.len() {
                ctx.more_or(Scan::Failed { skip: len })
            } else {
                Scan::Failed { skip: len }
            }
        }
    }
}

pub(crate) fn partial(text: &str, ctx: &ScanCtx) -> Option<Partial> {
    let Header::Ready(at, Some(name)) = header(text) else {
        return None;
    };
    if !(ctx.allow_unknown || ctx.tools.contains(name)) {
        return None;
    }
    let at = skip_ws(text, at);
    if text.as_bytes().get(at) != Some(&b'{') {
        return None;
    }
    let (arguments, end, broken) = json_arguments(text, at);
    let call = PartialCall {
        name: name.to_string(),
        arguments,
        complete: end.is_some(),
    };
    let block_end = match (broken, end) {
        (Some(b), _) => BlockEnd::Broken(b),
        (None, None) => BlockEnd::Open,
        (None, Some(e)) => match lit(text, skip_ws(text, e), CALL) {
            Lit::Match(len) => BlockEnd::Done(len),
            Lit::Partial if ctx.eof => BlockEnd::Done(text.len()),
            Lit::Partial => BlockEnd::Open,
            Lit::No => BlockEnd::Done(e),
        },
    };
    Some(Partial::new(vec![call], block_end))
}

#[cfg(test)]
mod tests {
    use crate::tool_parser::testutil::{calls, parse_with};
    use crate::tool_parser::ToolFormat;

    #[test]
    fn harmony_commentary_call_after_a_final_answer_header() {
        let text = "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"city\": \"Tokyo\"}<|call|>";
        let out = parse_with(ToolFormat::GptOss, text);
        assert_eq!(calls(&out), [("get_weather", r#"{"city":"Tokyo"}"#)]);
        assert_eq!(out.content, "");
    }

    #[test]
    fn harmony_recipient_in_the_start_header() {
        let text = "<|start|>assistant to=functions.get_time<|channel|>commentary json<|message|>{}<|call|>";
        let out = parse_with(ToolFormat::GptOss, text);
        assert_eq!(calls(&out), [("get_time", "{}")]);
    }

    #[test]
    fn harmony_final_channel_is_content_without_markup() {
        let text = "<|channel|>final<|message|>It is sunny.<|return|>";
        let out = parse_with(ToolFormat::GptOss, text);
        assert!(out.tool_calls.is_empty());
        assert_eq!(out.content, "It is sunny.");
    }
}
