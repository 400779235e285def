use super::*;
use crate::error::ErrorKind;
use serde_json::json;

fn request(body: Value) -> ResponsesRequest {
    let mut body = body;
    body["model"] = json!("m");
    serde_json::from_value(body).expect("request parses")
}

fn settings() -> ModelSettings {
    ModelSettings::default()
}

fn run(body: Value) -> Result<Translated, ApiError> {
    translate(&request(body), &[], &settings())
}

fn messages(t: &Translated) -> &[ChatMessage] {
    match &t.request.prompt {
        Prompt::Chat { messages, .. } => messages,
        _ => panic!("chat prompt expected"),
    }
}

fn tools(t: &Translated) -> &[Value] {
    match &t.request.prompt {
        Prompt::Chat { tools, .. } => tools,
        _ => panic!("chat prompt expected"),
    }
}

fn param(e: ApiError) -> Option<String> {
    match e.kind {
        ErrorKind::InvalidRequest => e.param,
        _ => panic!("expected a 400, got {e:?}"),
    }
}

#[test]
fn a_string_input_is_one_user_message_after_the_instructions() {
    let t = run(json!({"input": "Hi", "instructions": "Be brief."})).expect("ok");
    let m = messages(&t);
    assert_eq!(m.len(), 2);
    assert_eq!(
        (m[0].role.as_str(), m[0].content.as_str()),
        ("system", "Be brief.")
    );
    assert_eq!((m[1].role.as_str(), m[1].content.as_str()), ("user", "Hi"));
}

#[test]
fn codex_shaped_input_becomes_one_system_message_then_the_user_turns() {
    let t = run(json!({
        "instructions": "You are Codex.",
        "input": [
            {"type": "message", "role": "developer",
             "content": [{"type": "input_text", "text": "sandbox: workspace-write"}]},
            {"type": "message", "role": "user",
             "content": [{"type": "input_text", "text": "<env/>"}]},
            {"type": "message", "role": "user",
             "content": [{"type": "input_text", "text": "touch marker"}]},
        ],
        "include": ["reasoning.encrypted_content"],
        "reasoning": {"summary": "auto"},
        "prompt_cache_key": "abc",
        "client_metadata": {"x": 1},
        "store": false,
        "parallel_tool_calls": false,
        "tool_choice": "auto",
        "some_future_field": true,
    }))
    .expect("ok");
    let m = messages(&t);
    assert_eq!(m.len(), 3, "{m:?}");
    assert_eq!(m[0].role, "system");
    assert_eq!(m[0].content, "You are Codex.\n\nsandbox: workspace-write");
    assert_eq!(m[2].content, "touch marker");
    assert!(!t.tools.parallel);
}

#[test]
fn calls_attach_to_the_assistant_turn_and_outputs_name_their_function() {
    let t = run(json!({"input": [
        {"role": "user", "content": "list files"},
        {"type": "message", "role": "assistant",
         "content": [{"type": "output_text", "text": "Looking.", "annotations": []}]},
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "xx"},
        {"type": "function_call", "call_id": "call_1", "name": "shell",
         "arguments": "{\"command\":[\"ls\"]}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "a.txt"},
    ]}))
    .expect("ok");
    let m = messages(&t);
    assert_eq!(m.len(), 3, "{m:?}");
    assert_eq!(m[1].role, "assistant");
    assert_eq!(m[1].content, "Looking.");
    assert_eq!(m[1].tool_calls.len(), 1);
    assert_eq!(m[1].tool_calls[0].id, "call_1");
    assert_eq!(m[2].role, "tool");
    assert_eq!(m[2].content, "a.txt");
    assert_eq!(m[2].tool_call_id.as_deref(), Some("call_1"));
    assert_eq!(m[2].name.as_deref(), Some("shell"));
}

#[test]
fn a_call_without_an_assistant_message_opens_one() {
    let t = run(json!({"input": [
        {"role": "user", "content": "go"},
        {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c",
         "output": [{"type": "input_text", "text": "done"}]},
    ]}))
    .expect("ok");
    let m = messages(&t);
    assert_eq!(m[1].role, "assistant");
    assert_eq!(m[1].content, "");
    assert_eq!(m[2].content, "done");
}

#[test]
fn an_output_without_its_call_is_a_400_naming_the_item() {
    let e = run(json!({"input": [
        {"role": "user", "content": "go"},
        {"type": "function_call_output", "call_id": "nope", "output": "x"},
    ]}))
    .expect_err("rejected");
    assert_eq!(param(e).as_deref(), Some("input[1].call_id"));
}

#[test]
fn an_output_may_answer_a_call_of_the_stored_history() {
    let history = vec![
        Turn::Message {
            role: "user".into(),
            text: "go".into(),
        },
        Turn::Call {
            call_id: "call_9".into(),
            name: "f".into(),
            arguments: "{}".into(),
        },
    ];
    let req = request(json!({"input": [
        {"type": "function_call_output", "call_id": "call_9", "output": "ok"}
    ]}));
    let t = translate(&req, &history, &settings()).expect("ok");
    assert_eq!(t.conversation.len(), 3);
    assert_eq!(messages(&t)[2].role, "tool");
}

#[test]
fn flat_function_tools_take_the_chat_shape_and_others_are_dropped() {
    let t = run(json!({
        "input": "hi",
        "tools": [
            {"type": "function", "name": "shell", "description": "Run a command",
             "parameters": {"type": "object", "properties": {"command": {"type": "array"}}},
             "strict": false},
            {"type": "web_search"},
            {"type": "namespace", "name": "mcp", "tools": []},
            {"type": "local_shell"},
            {"type": "custom", "name": "apply_patch"},
            {"type": "function", "function": {"name": "already_chat_shaped"}},
        ]
    }))
    .expect("ok");
    let tools = tools(&t);
    assert_eq!(tools.len(), 2);
    assert_eq!(tools[0]["function"]["name"], "shell");
    assert_eq!(tools[0]["function"]["description"], "Run a command");
    assert_eq!(tools[0]["function"]["parameters"]["type"], "object");
    assert_eq!(tools[1]["function"]["name"], "already_chat_shaped");
}

#[test]
fn tool_choice_names_a_function_in_the_responses_shape() {
    let body = json!({"input": "hi", "tools": [{"type": "function", "name": "f"}],
                      "tool_choice": {"type": "function", "name": "f"}});
    assert_eq!(
        run(body).expect("ok").tools.choice,
        ToolChoice::Function("f".into())
    );
    let e = run(
        json!({"input": "hi", "tools": [{"type": "function", "name": "f"}],
                       "tool_choice": {"type": "function", "name": "g"}}),
    )
    .expect_err("unknown function");
    assert_eq!(param(e).as_deref(), Some("tool_choice"));
    let e = run(json!({"input": "hi", "tool_choice": {"type": "web_search_preview"}}))
        .expect_err("hosted tool");
    assert_eq!(param(e).as_deref(), Some("tool_choice"));
    let t = run(
        json!({"input": "hi", "tools": [{"type": "function", "name": "f"}],
                       "tool_choice": "none"}),
    )
    .expect("ok");
    assert!(tools(&t).is_empty(), "none keeps tools out of the prompt");
}

#[test]
fn structured_text_formats_are_refused_plain_text_is_fine() {
    assert!(run(json!({"input": "hi", "text": {"format": {"type": "text"}}})).is_ok());
    for kind in ["json_schema", "json_object"] {
        let e = run(json!({"input": "hi", "text": {"format": {"type": kind, "schema": {}}}}))
            .expect_err("refused");
        assert_eq!(param(e).as_deref(), Some("text.format"), "{kind}");
    }
}

#[test]
fn limits_and_sampling_are_validated() {
    let t = run(json!({"input": "hi", "max_output_tokens": 7, "temperature": 0.0, "top_p": 0.5}))
        .expect("ok");
    assert_eq!(t.request.max_tokens, Some(7));
    assert_eq!(t.request.sampling.temperature, 0.0);
    assert_eq!(t.request.sampling.top_p, 0.5);
    let e = run(json!({"input": "hi", "max_output_tokens": 0})).expect_err("0");
    assert_eq!(param(e).as_deref(), Some("max_output_tokens"));
    let e = run(json!({"input": "hi", "temperature": 3.0})).expect_err("3");
    assert_eq!(param(e).as_deref(), Some("temperature"));
}

#[test]
fn bad_items_name_their_field() {
    for (input, at) in [
        (json!([]), "input"),
        (
            json!([{"type": "message", "role": "tool", "content": "x"}]),
            "input[0].role",
        ),
        (
            json!([{"type": "message", "role": "user"}]),
            "input[0].content",
        ),
        (
            json!([{"type": "item_reference", "id": "msg_1"}]),
            "input[0].type",
        ),
        (
            json!([{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]),
            "input[0].content[0].type",
        ),
        (
            json!([{"type": "function_call", "call_id": "c", "arguments": "{}"}]),
            "input[0].name",
        ),
        (
            json!([{"type": "function_call", "call_id": "c", "name": "f"},
                {"type": "function_call_output", "call_id": "c"}]),
            "input[1].output",
        ),
    ] {
        let e = run(json!({"input": input})).expect_err("rejected");
        assert_eq!(param(e).as_deref(), Some(at), "{input}");
    }
}
