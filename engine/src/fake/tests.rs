//! The fake engine's behaviour, pinned.

use super::*;
use crate::engine::Constraint;
use crate::engine::{ChatMessage, SamplingParams};

fn request(text: &str, max_tokens: Option<usize>, stop: &[&str]) -> GenerateRequest {
    GenerateRequest {
        prompt: Prompt::Text(text.to_owned()),
        sampling: SamplingParams::default(),
        max_tokens,
        stop: stop.iter().map(|s| s.to_string()).collect(),
        logprobs: None,
        constraint: None,
        reasoning: None,
        encoded: None,
    }
}

fn run(engine: &mut FakeEngine, id: SeqId) -> (String, SeqEvent) {
    let mut text = String::new();
    loop {
        for (sid, ev) in engine.step() {
            assert_eq!(sid, id);
            match ev {
                SeqEvent::Text { text: t, .. } => text.push_str(&t),
                SeqEvent::Started { .. } => {}
                other => return (text, other),
            }
        }
    }
}

fn reason(ev: &SeqEvent) -> FinishReason {
    match ev {
        SeqEvent::Finished { reason, .. } => *reason,
        other => panic!("not finished: {other:?}"),
    }
}

#[test]
fn a_constrained_request_gets_text_its_grammar_accepts() {
    let mut engine = FakeEngine::new(FakeConfig::default());
    let mut req = request("Paris is nice", Some(64), &[]);
    req.constraint = Some(Constraint::JsonSchema(serde_json::json!({
        "type": "object",
        "properties": {"city": {"type": "string"}, "n": {"type": "integer"}},
        "required": ["city", "n"]
    })));
    engine.add(1, req).expect("add");
    let (text, end) = run(&mut engine, 1);
    assert_eq!(text, "{\"city\": \"Paris is nice\", \"n\": 0}");
    assert_eq!(reason(&end), FinishReason::Stop);
}

#[test]
fn a_constrained_request_that_runs_out_of_tokens_ends_with_length() {
    let mut engine = FakeEngine::new(FakeConfig::default());
    let mut req = request("a long echo that will not fit", Some(3), &[]);
    req.constraint = Some(Constraint::Regex("[a-z ]+!".into()));
    engine.add(1, req).expect("add");
    let (text, end) = run(&mut engine, 1);
    assert_eq!(text, "a long echo ");
    assert_eq!(reason(&end), FinishReason::Length);
}

#[test]
fn echoes_the_prompt_then_stops_at_eos() {
    let mut e = FakeEngine::new(FakeConfig::default());
    e.add(1, request("Hello big world", None, &[])).unwrap();
    let (text, end) = run(&mut e, 1);
    assert_eq!(text, "Hello big world");
    assert_eq!(reason(&end), FinishReason::Stop);
    assert!(!e.has_work());
}

#[test]
fn max_tokens_ends_with_length() {
    let mut e = FakeEngine::new(FakeConfig::default());
    e.add(1, request("a b c d e", Some(2), &[])).unwrap();
    let (text, end) = run(&mut e, 1);
    assert_eq!(text, "a b");
    assert_eq!(reason(&end), FinishReason::Length);
    if let SeqEvent::Finished { usage, .. } = end {
        assert_eq!(usage.completion_tokens, 2);
        assert_eq!(usage.prompt_tokens, 5);
    }
}

#[test]
fn stop_string_across_tokens_is_not_emitted() {
    let mut e = FakeEngine::new(FakeConfig::default());
    e.add(1, request("one two three four", None, &["o th"]))
        .unwrap();
    let (text, end) = run(&mut e, 1);
    assert_eq!(text, "one tw");
    assert_eq!(reason(&end), FinishReason::StopSequence);
}

#[test]
fn held_back_prefix_is_flushed_when_no_stop_matches() {
    let mut e = FakeEngine::new(FakeConfig::default());
    e.add(1, request("ab", None, &["bz"])).unwrap();
    let (text, end) = run(&mut e, 1);
    assert_eq!(text, "ab");
    assert_eq!(reason(&end), FinishReason::Stop);
}

#[test]
fn prompt_over_context_is_rejected_with_numbers() {
    let mut e = FakeEngine::new(FakeConfig {
        context_length: 4,
        ..FakeConfig::default()
    });
    let err = e.add(1, request("a b c", Some(5), &[])).unwrap_err();
    assert_eq!(
        err,
        EngineError::ContextLength {
            context_length: 4,
            prompt_tokens: 3,
            max_tokens: 5,
            requested: 8
        }
    );
}

#[test]
fn cancel_finishes_on_next_step() {
    let mut e = FakeEngine::new(FakeConfig::default());
    e.add(7, request("a b c d", None, &[])).unwrap();
    e.step();
    e.cancel(7);
    let events = e.step();
    assert_eq!(reason(&events[0].1), FinishReason::Cancelled);
    assert!(!e.has_work());
}

#[test]
fn chat_prompt_echoes_last_message_and_counts_rendered_words() {
    let mut e = FakeEngine::new(FakeConfig::default());
    let prompt = Prompt::Chat {
        messages: vec![ChatMessage {
            role: "user".into(),
            content: "hi there".into(),
            ..ChatMessage::default()
        }],
        tools: vec![],
        add_generation_prompt: true,
        template_kwargs: Default::default(),
    };
    assert_eq!(e.count_prompt_tokens(&prompt).unwrap(), 4);
    let mut req = request("", None, &[]);
    req.prompt = prompt;
    req.logprobs = Some(2);
    e.add(1, req).unwrap();
    let events = e.step();
    match &events[1].1 {
        SeqEvent::Text { text, logprobs, .. } => {
            assert_eq!(text, "hi");
            assert_eq!(logprobs[0].top.len(), 2);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn script_replies_in_order_with_exact_whitespace_then_echoes() {
    let reply = "<tool_call>\n{\"name\": \"f\",  \"arguments\": {}}\n</tool_call>";
    let script = Script::new(vec![
        ScriptEntry::Reply(reply.to_owned()),
        ScriptEntry::Reply("done".to_owned()),
    ]);
    let config = FakeConfig {
        script: Some(script.clone()),
        ..FakeConfig::default()
    };
    let mut e = FakeEngine::new(config.clone());
    e.add(1, request("hi there", None, &[])).unwrap();
    assert_eq!(run(&mut e, 1).0, reply);
    // A new engine (as after a restart) continues the same script.
    let mut e = FakeEngine::new(config);
    e.add(2, request("hi there", None, &[])).unwrap();
    assert_eq!(run(&mut e, 2).0, "done");
    assert_eq!(script.remaining(), 0);
    e.add(3, request("hi there", None, &[])).unwrap();
    assert_eq!(run(&mut e, 3).0, "hi there");
}

#[test]
fn matched_script_entry_waits_for_its_prompt() {
    let script = Script::from_json(r#"[{"match": "tool result", "reply": "final"}]"#).unwrap();
    let mut e = FakeEngine::new(FakeConfig {
        script: Some(script.clone()),
        ..FakeConfig::default()
    });
    e.add(1, request("a title please", None, &[])).unwrap();
    assert_eq!(run(&mut e, 1).0, "a title please");
    assert_eq!(script.remaining(), 1);
    e.add(2, request("the tool result is 4", None, &[]))
        .unwrap();
    assert_eq!(run(&mut e, 2).0, "final");
    assert_eq!(script.remaining(), 0);
}

#[test]
fn script_json_rejects_other_shapes() {
    assert!(Script::from_json(r#"{"reply": "x"}"#).is_err());
    assert!(Script::from_json(r#"[1]"#).is_err());
}
