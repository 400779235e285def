use super::*;
use serde_json::json;

fn req(v: Value) -> MessagesRequest {
    serde_json::from_value(v).expect("request parses")
}

fn base(messages: Value) -> Value {
    json!({"model": "claude-sonnet-4", "max_tokens": 64, "messages": messages})
}

fn translate(v: Value) -> Translated {
    to_generate(&req(v)).expect("translates")
}

fn chat_of(t: &Translated) -> (&[ChatMessage], &[Value]) {
    match &t.request.prompt {
        Prompt::Chat {
            messages,
            tools,
            add_generation_prompt,
            ..
        } => {
            assert!(add_generation_prompt);
            (messages, tools)
        }
        Prompt::Text(_) | Prompt::Tokens(_) => panic!("expected a chat prompt"),
    }
}

fn err(v: Value) -> ApiError {
    to_generate(&req(v)).expect_err("should be rejected")
}

fn assert_invalid(v: Value, needle: &str) {
    let e = err(v);
    assert_eq!(e.anthropic_type(), "invalid_request_error", "{e}");
    assert!(
        e.to_string().contains(needle),
        "`{e}` should mention `{needle}`"
    );
}

#[test]
fn string_content_and_string_system_become_chat_messages() {
    let mut v = base(json!([{"role": "user", "content": "Hi"}]));
    v["system"] = json!("Be brief.");
    let t = translate(v);
    let (msgs, tools) = chat_of(&t);
    assert_eq!(msgs.len(), 2);
    assert_eq!(
        (msgs[0].role.as_str(), msgs[0].content.as_str()),
        ("system", "Be brief.")
    );
    assert_eq!(
        (msgs[1].role.as_str(), msgs[1].content.as_str()),
        ("user", "Hi")
    );
    assert!(tools.is_empty());
    assert_eq!(t.request.max_tokens, Some(64));
    assert_eq!(t.tool_mode, ToolMode::NoTools);
    assert!(!t.stream);
}

#[test]
fn system_text_blocks_and_user_text_blocks_are_joined() {
    let mut v = base(json!([{"role": "user", "content": [
        {"type": "text", "text": "<reminder>x</reminder>"},
        {"type": "text", "text": "Question?", "cache_control": {"type": "ephemeral"}}
    ]}]));
    v["system"] = json!([
        {"type": "text", "text": "You are Claude Code."},
        {"type": "text", "text": "Be careful.", "cache_control": {"type": "ephemeral"}}
    ]);
    let t = translate(v);
    let (msgs, _) = chat_of(&t);
    assert_eq!(msgs[0].content, "You are Claude Code.\nBe careful.");
    assert_eq!(msgs[1].content, "<reminder>x</reminder>\nQuestion?");
}

#[test]
fn tool_round_trip_maps_to_tool_calls_and_tool_messages() {
    let mut v = base(json!([
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "sig"},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Rome"}}
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
            {"type": "tool_result", "tool_use_id": "toolu_2",
             "content": [{"type": "text", "text": "timeout"}], "is_error": true},
            {"type": "text", "text": "Summarize."}
        ]}
    ]));
    v["tools"] = json!([{"name": "get_weather", "description": "Weather by city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]);
    let t = translate(v);
    let (msgs, tools) = chat_of(&t);
    let roles: Vec<_> = msgs.iter().map(|m| m.role.as_str()).collect();
    assert_eq!(roles, ["user", "assistant", "tool", "tool", "user"]);
    let a = &msgs[1];
    assert_eq!(a.content, "Checking.", "thinking dropped, text kept");
    assert_eq!(a.tool_calls.len(), 2);
    assert_eq!(a.tool_calls[0].id, "toolu_1");
    assert_eq!(a.tool_calls[0].name, "get_weather");
    let args: Value = serde_json::from_str(&a.tool_calls[0].arguments).expect("JSON text");
    assert_eq!(args, json!({"city": "Paris"}));
    assert_eq!(msgs[2].tool_call_id.as_deref(), Some("toolu_1"));
    assert_eq!(msgs[2].name.as_deref(), Some("get_weather"));
    assert_eq!(msgs[2].content, "18C");
    assert_eq!(msgs[3].tool_call_id.as_deref(), Some("toolu_2"));
    assert_eq!(msgs[3].content, "Error: timeout");
    assert_eq!(msgs[4].content, "Summarize.");
    assert_eq!(
        tools,
        [
            json!({"type": "function", "function": {"name": "get_weather",
            "description": "Weather by city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}})
        ]
    );
    assert_eq!(t.tool_mode, ToolMode::Auto);
    assert!(t.parallel_tool_calls);
}

#[test]
fn tool_only_assistant_turn_has_empty_content_and_missing_result_content_is_empty() {
    let t = translate(base(json!([
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "\n"},
            {"type": "tool_use", "id": "toolu_9", "name": "ls", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9"}]}
    ])));
    let (msgs, _) = chat_of(&t);
    assert_eq!(msgs[1].content, "");
    assert_eq!(msgs[1].tool_calls[0].arguments, "{}");
    assert_eq!(msgs[2].role, "tool");
    assert_eq!(msgs[2].content, "");
}

#[test]
fn consecutive_same_role_turns_are_combined() {
    let t = translate(base(json!([
        {"role": "user", "content": "one"},
        {"role": "user", "content": [{"type": "text", "text": "two"}]},
        {"role": "assistant", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "three"}
    ])));
    let (msgs, _) = chat_of(&t);
    let flat: Vec<_> = msgs
        .iter()
        .map(|m| (m.role.as_str(), m.content.as_str()))
        .collect();
    assert_eq!(
        flat,
        [
            ("user", "one\ntwo"),
            ("assistant", "a\nb"),
            ("user", "three")
        ]
    );
}

#[test]
fn sampling_defaults_follow_anthropic_and_explicit_values_pass_through() {
    let t = translate(base(json!([{"role": "user", "content": "x"}])));
    assert_eq!(t.request.sampling.temperature, DEFAULT_TEMPERATURE);
    assert_eq!(t.request.sampling.top_p, 1.0);
    assert_eq!(t.request.sampling.top_k, 0);
    assert!(t.request.stop.is_empty());

    let mut v = base(json!([{"role": "user", "content": "x"}]));
    v["temperature"] = json!(0.2);
    v["top_p"] = json!(0.9);
    v["top_k"] = json!(40);
    v["stop_sequences"] = json!(["###", "\n\nHuman:"]);
    v["stream"] = json!(true);
    v["metadata"] = json!({"user_id": "u1"});
    v["thinking"] = json!({"type": "enabled", "budget_tokens": 1024});
    v["service_tier"] = json!("auto");
    v["some_future_field"] = json!({"x": 1});
    let t = translate(v);
    assert!((t.request.sampling.temperature - 0.2).abs() < 1e-6);
    assert!((t.request.sampling.top_p - 0.9).abs() < 1e-6);
    assert_eq!(t.request.sampling.top_k, 40);
    assert_eq!(t.request.stop, ["###", "\n\nHuman:"]);
    assert!(t.stream);
}

#[test]
fn tool_choice_maps_to_tool_modes() {
    let with = |choice: Value| {
        let mut v = base(json!([{"role": "user", "content": "x"}]));
        v["tools"] = json!([{"name": "ls", "input_schema": {"type": "object"}}]);
        v["tool_choice"] = choice;
        translate(v)
    };
    assert_eq!(with(json!({"type": "auto"})).tool_mode, ToolMode::Auto);
    assert_eq!(with(json!({"type": "any"})).tool_mode, ToolMode::Required);
    assert_eq!(with(json!({"type": "none"})).tool_mode, ToolMode::None);
    let t = with(json!({"type": "tool", "name": "ls", "disable_parallel_tool_use": true}));
    assert_eq!(t.tool_mode, ToolMode::Function("ls".into()));
    assert!(!t.parallel_tool_calls);
    assert!(!with(json!({"type": "any", "disable_parallel_tool_use": true})).parallel_tool_calls);
    let none = with(json!({"type": "none"}));
    assert_eq!(
        chat_of(&none).1.len(),
        1,
        "tool_choice none keeps the definitions in the prompt"
    );
}

#[test]
fn custom_type_tools_are_accepted_and_server_tools_rejected() {
    let mut v = base(json!([{"role": "user", "content": "x"}]));
    v["tools"] = json!([{"type": "custom", "name": "ls", "input_schema": {"type": "object"}}]);
    assert_eq!(chat_of(&translate(v)).1.len(), 1);
    let mut v = base(json!([{"role": "user", "content": "x"}]));
    v["tools"] = json!([{"name": "ls", "input_schema": {"type": "object"}},
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}]);
    assert_invalid(v, "tools[1].type: server tool `web_search_20250305`");
}

#[test]
fn missing_or_bad_fields_are_400s_naming_the_field() {
    let msgs = json!([{"role": "user", "content": "x"}]);
    assert_invalid(
        json!({"model": "m", "messages": msgs}),
        "max_tokens: Field required",
    );
    assert_invalid(
        json!({"model": "m", "max_tokens": 0, "messages": msgs}),
        "max_tokens: must be at least 1",
    );
    assert_invalid(
        json!({"max_tokens": 5, "messages": msgs}),
        "model: Field required",
    );
    assert_invalid(
        json!({"model": "m", "max_tokens": 5, "messages": []}),
        "messages: at least one",
    );
    assert_invalid(
        base(json!([{"role": "bogus", "content": "x"}])),
        "messages[0].role: must be `user`, `assistant` or `system`, got `bogus`",
    );
    let mut v = base(msgs.clone());
    v["temperature"] = json!(1.5);
    assert_invalid(v, "temperature: must be between 0 and 1");
    let mut v = base(msgs.clone());
    v["top_p"] = json!(-0.1);
    assert_invalid(v, "top_p");
    let mut v = base(msgs.clone());
    v["top_k"] = json!(-1);
    assert_invalid(v, "top_k");
    let mut v = base(msgs.clone());
    v["stop_sequences"] = json!(["ok", ""]);
    assert_invalid(v, "stop_sequences[1]");
    let mut v = base(msgs.clone());
    v["tools"] = json!([{"name": "ls"}]);
    assert_invalid(v, "tools[0].input_schema: Field required");
    let mut v = base(msgs.clone());
    v["tool_choice"] = json!({"type": "any"});
    assert_invalid(
        v,
        "tool_choice: `any` may only be specified while providing tools",
    );
    let mut v = base(msgs);
    v["tools"] = json!([{"name": "ls", "input_schema": {"type": "object"}}]);
    v["tool_choice"] = json!({"type": "tool", "name": "rm"});
    assert_invalid(v, "tool_choice.name: no tool named `rm`");
}

/// The shape of current Claude Code's first request (2.1.328): a `system` turn after the user
/// turn, adaptive thinking, output effort, context management, metadata, cache_control on blocks,
/// an empty text block, and a huge `max_tokens`.
fn claude_code_first_request() -> Value {
    json!({
        "model": "claude-opus-5-5",
        "max_tokens": 128000,
        "stream": true,
        "system": [
            {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
        ],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "<system-reminder>ctx</system-reminder>"},
                {"type": "text", "text": ""},
                {"type": "text", "text": "Fix the bug", "cache_control": {"type": "ephemeral"}}
            ]},
            {"role": "system", "content": [
                {"type": "text", "text": "Working directory: /tmp/repo", "cache_control": {"type": "ephemeral"}}
            ]}
        ],
        "tools": [{"name": "Edit", "description": "Edit a file",
                   "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}},
                   "cache_control": {"type": "ephemeral"}}],
        "metadata": {"user_id": "user_abc_account__session_123"},
        "thinking": {"type": "adaptive", "display": "omitted"},
        "output_config": {"effort": "medium"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "some_future_field": {"x": 1}
    })
}

#[test]
fn claude_code_first_request_is_accepted_with_its_system_turn_in_place() {
    let t = translate(claude_code_first_request());
    assert!(t.stream);
    assert_eq!(t.request.max_tokens, Some(128000));
    let (msgs, tools) = chat_of(&t);
    let turns: Vec<_> = msgs
        .iter()
        .map(|m| (m.role.as_str(), m.content.as_str()))
        .collect();
    assert_eq!(
        turns,
        [
            ("system", "You are Claude Code.\nBe brief."),
            (
                "user",
                "<system-reminder>ctx</system-reminder>\nFix the bug"
            ),
            ("system", "Working directory: /tmp/repo"),
        ]
    );
    assert_eq!(tools.len(), 1);
    let counted = count_tokens_prompt(
        &serde_json::from_value::<CountTokensRequest>(claude_code_first_request()).unwrap(),
    )
    .unwrap();
    assert_eq!(
        counted, t.request.prompt,
        "count_tokens sees the same prompt"
    );
}

#[test]
fn developer_turns_are_system_turns_and_empty_ones_vanish() {
    let t = translate(base(json!([
        {"role": "developer", "content": "rules"},
        {"role": "user", "content": "q"},
        {"role": "system", "content": [{"type": "text", "text": ""}]},
        {"role": "assistant", "content": "a"},
        {"role": "system", "content": "later"},
        {"role": "user", "content": "q2"}
    ])));
    let (msgs, _) = chat_of(&t);
    let roles: Vec<_> = msgs.iter().map(|m| m.role.as_str()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "system", "user"]);
    assert_eq!(msgs[3].content, "later");
}

#[test]
fn tool_result_with_several_text_blocks_is_joined() {
    let t = translate(base(json!([
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "ls", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [
            {"type": "text", "text": "a.txt"},
            {"type": "text", "text": "", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "b.txt"}
        ]}]}
    ])));
    let (msgs, _) = chat_of(&t);
    assert_eq!(msgs[2].role, "tool");
    assert_eq!(msgs[2].content, "a.txt\nb.txt");
}

#[test]
fn images_get_a_clear_no_vision_error() {
    assert_invalid(
        base(json!([{"role": "user", "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}
        ]}])),
        "messages[0].content[1]: image content is not supported: the served model has no vision",
    );
    assert_invalid(
        base(json!([
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "shot", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t",
                "content": [{"type": "image", "source": {}}]}]}
        ])),
        "messages[2].content[0].content[0]: image content is not supported",
    );
}

#[test]
fn unknown_block_types_and_misplaced_blocks_are_rejected() {
    assert_invalid(
        base(json!([{"role": "user", "content": [{"type": "document", "source": {}}]}])),
        "content blocks of type `document` are not supported",
    );
    assert_invalid(
        base(json!([{"role": "user", "content": [
            {"type": "tool_use", "id": "t", "name": "x", "input": {}}]}])),
        "`tool_use` blocks belong in assistant messages",
    );
    assert_invalid(
        base(json!([
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": [{"type": "tool_result", "tool_use_id": "t"}]},
            {"role": "user", "content": "y"}
        ])),
        "messages[1].content[0]: `tool_result` blocks belong in user messages",
    );
    assert_invalid(
        base(json!([
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "x", "input": [1]}]},
            {"role": "user", "content": "y"}
        ])),
        "messages[1].content[0].input: must be an object",
    );
}

#[test]
fn trailing_assistant_prefill_is_refused() {
    assert_invalid(
        base(json!([{"role": "user", "content": "x"}, {"role": "assistant", "content": "{"}])),
        "messages[1]: a final assistant message (prefill) is not supported",
    );
}

#[test]
fn malformed_blocks_fail_to_parse_with_the_block_named() {
    let e = serde_json::from_value::<MessagesRequest>(base(json!([{"role": "user", "content": [
        {"type": "text", "text": "ok"}, {"type": "tool_use", "name": "x"}]}])))
    .expect_err("tool_use without id");
    let msg = e.to_string();
    assert!(
        msg.contains("content block 1") && msg.contains("`tool_use` block"),
        "{msg}"
    );
    let e =
        serde_json::from_value::<MessagesRequest>(base(json!([{"role": "user", "content": 5}])))
            .expect_err("number content");
    assert!(
        e.to_string().contains("must be a string or an array"),
        "{e}"
    );
}

#[test]
fn count_tokens_uses_the_same_prompt_as_messages() {
    let body = json!({"model": "claude-x", "system": "S",
        "messages": [{"role": "user", "content": "Hi"}],
        "tools": [{"name": "ls", "input_schema": {"type": "object"}}]});
    let count: CountTokensRequest = serde_json::from_value(body.clone()).expect("parses");
    let prompt = count_tokens_prompt(&count).expect("valid");
    let mut full = body;
    full["max_tokens"] = json!(10);
    assert_eq!(prompt, translate(full).request.prompt);
    let empty: CountTokensRequest =
        serde_json::from_value(json!({"model": "m", "messages": []})).expect("parses");
    assert!(count_tokens_prompt(&empty).is_err());
}

#[test]
fn output_config_format_and_the_beta_output_format_become_a_json_schema_constraint() {
    let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
    let user = json!([{"role": "user", "content": "hi"}]);
    let mut v = base(user.clone());
    v["output_config"] =
        json!({"effort": "low", "format": {"type": "json_schema", "schema": schema}});
    assert_eq!(
        translate(v).request.constraint,
        Some(Constraint::JsonSchema(schema.clone()))
    );
    let mut v = base(user.clone());
    v["output_format"] = json!({"type": "json_schema", "schema": schema});
    assert_eq!(
        translate(v).request.constraint,
        Some(Constraint::JsonSchema(schema))
    );
    // `effort` alone constrains nothing.
    let mut v = base(user);
    v["output_config"] = json!({"effort": "medium"});
    assert_eq!(translate(v).request.constraint, None);
}

#[test]
fn output_formats_that_cannot_be_enforced_name_the_field() {
    let user = json!([{"role": "user", "content": "hi"}]);
    let with = |key: &str, value: Value| {
        let mut v = base(user.clone());
        v[key] = value;
        v
    };
    assert_invalid(
        with(
            "output_config",
            json!({"format": {"type": "json_schema", "schema": {"type": "strng"}}}),
        ),
        "output_config.format.schema",
    );
    assert_invalid(
        with("output_format", json!({"type": "text"})),
        "output_format.type",
    );
    assert_invalid(
        with("output_format", json!({"type": "json_schema"})),
        "output_format.schema",
    );
}

#[test]
fn forced_tools_with_schemas_that_cannot_be_enforced_name_the_tool() {
    let mut v = base(json!([{"role": "user", "content": "hi"}]));
    v["tools"] = json!([
        {"name": "ok", "input_schema": {"type": "object"}},
        {"name": "bad", "input_schema": {"type": "strng"}}
    ]);
    v["tool_choice"] = json!({"type": "any"});
    assert_invalid(v.clone(), "tools[1].input_schema");
    v["tool_choice"] = json!({"type": "tool", "name": "ok"});
    assert!(to_generate(&req(v)).is_ok());
}
