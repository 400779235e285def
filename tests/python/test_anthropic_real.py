"""The Anthropic Messages API of mlx-serve, checked with the official `anthropic` client.

    MLX_SERVE_BIN=target/debug/mlx-serve pytest tests/python/test_anthropic_real.py

Each fixture starts its own `mlx-serve serve` from MLX_SERVE_BIN on a free loopback port (skipped
when MLX_SERVE_BIN is unset): the default model (SmolLM2) for the text, streaming, count_tokens,
error and agent-replay tests, and Qwen2.5-Coder-0.5B-Instruct for the tool round trip (pulled
with `mlx-serve pull` when it is not there yet; skipped when it cannot be had). Requests name
`claude-…` models, which the servers map through their `[aliases]` table, as for Claude Code.
"""

import os
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

anthropic = pytest.importorskip("anthropic")

BIN = os.environ.get("MLX_SERVE_BIN")
MODEL = "claude-sonnet-4-6"
TOOL_MODEL_NAME = "qwen2.5-coder-0.5b-instruct"
TOOL_MODEL = "claude-opus-4-1"
# Greedy decoding keeps replies reproducible; sent as a raw body field because newer `anthropic`
# clients no longer take `temperature` as a keyword.
GREEDY = {"temperature": 0}

pytestmark = pytest.mark.skipif(not BIN, reason="MLX_SERVE_BIN is not set")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model, tmp):
    """`serve` with a config that maps every `claude-*` name onto `model`; returns (proc, url)."""
    port = free_port()
    config = Path(tmp) / "config.toml"
    config.write_text(
        f'[server]\nport = {port}\nhost = "127.0.0.1"\n'
        f'[model]\nname = "{model}"\n'
        '[aliases]\n"claude-*" = ""\n'
    )
    log = open(Path(tmp) / "server.log", "w")
    proc = subprocess.Popen([BIN, "serve", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 600
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {(Path(tmp) / 'server.log').read_text()}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError("server never became healthy")


def stop_server(proc):
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def make_client(url, **kwargs):
    # No retries: a 5xx must show up as a failure, not be hidden by the client's retry loop.
    return anthropic.Anthropic(base_url=url, api_key="local", max_retries=0, timeout=300, **kwargs)


@pytest.fixture(scope="module")
def server_url():
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_server("smollm2-135m-instruct", tmp)
        try:
            yield url
        finally:
            stop_server(proc)


@pytest.fixture(scope="module")
def client(server_url):
    return make_client(server_url)


def models_dir():
    return Path(os.environ.get("MLX_SERVE_MODELS") or Path.home() / ".cache" / "mlx-serve" / "models")


@pytest.fixture(scope="module")
def tool_client():
    """A server on Qwen2.5-Coder (its template has tools and `<tool_call>`), pulled if missing."""
    if not (models_dir() / TOOL_MODEL_NAME).exists():
        pulled = subprocess.run([BIN, "pull", TOOL_MODEL_NAME], capture_output=True, text=True, timeout=1800)
        if pulled.returncode != 0:
            pytest.skip(f"{TOOL_MODEL_NAME} is not present and cannot be pulled: {pulled.stderr[-500:]}")
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_server(TOOL_MODEL_NAME, tmp)
        try:
            yield make_client(url)
        finally:
            stop_server(proc)


CAPITAL = [{"role": "user", "content": "What is the capital of France? Answer in one short sentence."}]

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Get the current weather for a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "City name, e.g. Paris"}},
        "required": ["city"],
    },
}


def text_of(message):
    return "".join(b.text for b in message.content if b.type == "text")


def prompt_size(usage):
    return usage.input_tokens + (usage.cache_read_input_tokens or 0) + (usage.cache_creation_input_tokens or 0)


def check_event_order(events):
    """The raw event sequence a client relies on: start, well-nested consecutive blocks, delta, stop."""
    types = [e.type for e in events]
    assert types[0] == "message_start", types
    assert types[-2:] == ["message_delta", "message_stop"], types
    open_index, next_index = None, 0
    for e in events[1:-2]:
        if e.type == "content_block_start":
            assert open_index is None and e.index == next_index, types
            open_index, next_index = e.index, next_index + 1
        elif e.type == "content_block_delta":
            assert e.index == open_index, types
        elif e.type == "content_block_stop":
            assert e.index == open_index, types
            open_index = None
        else:
            raise AssertionError(f"unexpected {e.type} inside the message: {types}")
    assert open_index is None and next_index >= 1, types


def test_plain_text_reply(client):
    m = client.messages.create(model=MODEL, max_tokens=48, extra_body=GREEDY, messages=CAPITAL)
    assert m.type == "message" and m.role == "assistant"
    assert m.id.startswith("msg_")
    assert m.content[0].type == "text"
    assert "paris" in text_of(m).lower()
    assert m.stop_reason in ("end_turn", "max_tokens")
    assert m.stop_sequence is None
    assert m.usage.input_tokens > 0 and m.usage.output_tokens > 0


def test_streaming_text_is_assembled_by_the_client(client):
    # no-cache: an identical earlier request would otherwise be replayed from the response cache
    # in one delta.
    with client.messages.stream(
        model=MODEL,
        max_tokens=48,
        extra_body=GREEDY,
        messages=CAPITAL,
        extra_headers={"cache-control": "no-cache"},
    ) as s:
        pieces = list(s.text_stream)
        final = s.get_final_message()
    assert len(pieces) >= 2, "text arrives in several deltas"
    assert "".join(pieces) == text_of(final)
    assert "paris" in text_of(final).lower()
    assert final.stop_reason in ("end_turn", "max_tokens")
    assert final.usage.output_tokens > 0 and prompt_size(final.usage) > 0


def test_raw_stream_events_come_in_anthropics_order(client):
    events = list(client.messages.create(model=MODEL, max_tokens=16, extra_body=GREEDY, messages=CAPITAL, stream=True))
    check_event_order(events)
    assert events[1].content_block.type == "text"


def test_streamed_and_plain_replies_agree_when_greedy(client):
    plain = client.messages.create(model=MODEL, max_tokens=24, extra_body=GREEDY, messages=CAPITAL)
    with client.messages.stream(model=MODEL, max_tokens=24, extra_body=GREEDY, messages=CAPITAL) as s:
        streamed = s.get_final_message()
    assert text_of(plain) == text_of(streamed)
    assert plain.usage.output_tokens == streamed.usage.output_tokens


def test_max_tokens_stops_generation(client):
    m = client.messages.create(
        model=MODEL, max_tokens=3, extra_body=GREEDY,
        messages=[{"role": "user", "content": "Write a long story about a dragon."}],
    )
    assert m.stop_reason == "max_tokens"
    assert m.usage.output_tokens <= 3


def test_stop_sequence_is_reported(client):
    m = client.messages.create(model=MODEL, max_tokens=48, extra_body=GREEDY, messages=CAPITAL, stop_sequences=["Paris"])
    assert m.stop_reason == "stop_sequence"
    assert m.stop_sequence == "Paris"
    assert "Paris" not in text_of(m)


def test_system_prompt_as_text_blocks_is_accepted(client):
    m = client.messages.create(
        model=MODEL, max_tokens=16, extra_body=GREEDY, messages=CAPITAL,
        system=[{"type": "text", "text": "You are a helpful assistant.", "cache_control": {"type": "ephemeral"}}],
        metadata={"user_id": "pytest"},
    )
    assert text_of(m)


def test_count_tokens_matches_the_prompt_that_is_run(client):
    counted = client.messages.count_tokens(model=MODEL, messages=CAPITAL)
    assert counted.input_tokens > 0
    longer = client.messages.count_tokens(
        model=MODEL, messages=[{"role": "user", "content": CAPITAL[0]["content"] + " Please be precise and brief."}]
    )
    assert longer.input_tokens > counted.input_tokens
    m = client.messages.create(model=MODEL, max_tokens=4, extra_body=GREEDY, messages=CAPITAL)
    assert prompt_size(m.usage) == counted.input_tokens


def test_missing_max_tokens_is_a_400_invalid_request(client):
    # The typed client insists on max_tokens, so the body is posted through its generic `post`.
    with pytest.raises(anthropic.BadRequestError) as info:
        client.post("/v1/messages", body={"model": MODEL, "messages": CAPITAL}, cast_to=object)
    assert info.value.status_code == 400
    assert info.value.body["type"] == "error"
    assert info.value.body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in info.value.body["error"]["message"]


def test_image_input_is_a_clear_400(client):
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(
            model=MODEL, max_tokens=8,
            messages=[{"role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}},
                {"type": "text", "text": "What is this?"},
            ]}],
        )
    assert info.value.body["error"]["type"] == "invalid_request_error"
    assert "vision" in info.value.body["error"]["message"]


def test_unknown_anthropic_version_and_beta_headers_are_accepted(server_url):
    c = make_client(server_url, default_headers={
        "anthropic-version": "2099-12-31", "anthropic-beta": "claude-code-20250219"})
    m = c.messages.create(model=MODEL, max_tokens=4, messages=CAPITAL)
    assert m.type == "message"


def test_tool_call_round_trip(tool_client):
    client = tool_client
    messages = [{"role": "user", "content": "What is the weather in Paris right now? Use the get_weather tool."}]
    raw_types = []
    with client.messages.stream(
        model=TOOL_MODEL, max_tokens=128, extra_body=GREEDY, tools=[WEATHER_TOOL], messages=messages
    ) as s:
        for event in s:
            raw_types.append(event.type)
        first = s.get_final_message()
    assert "input_json" in raw_types, f"tool input streamed as input_json_delta: {raw_types}"
    assert first.stop_reason == "tool_use"
    calls = [b for b in first.content if b.type == "tool_use"]
    assert len(calls) >= 1
    call = calls[0]
    assert call.id.startswith("toolu_")
    assert call.name == "get_weather"
    assert isinstance(call.input, dict)
    assert "paris" in str(call.input.get("city", "")).lower()

    messages += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": c.id, "content": "Sunny, 18 degrees Celsius."} for c in calls
        ]},
    ]
    second = client.messages.create(
        model=TOOL_MODEL, max_tokens=64, extra_body=GREEDY, tools=[WEATHER_TOOL], messages=messages
    )
    # The tool_result turn is rendered and answered from the result. A 0.5B model sometimes
    # calls the tool again after answering, so any valid stop reason is accepted here.
    assert second.stop_reason in ("end_turn", "max_tokens", "tool_use")
    answer = text_of(second).lower()
    assert "18" in answer or "sunny" in answer, answer


def test_non_streaming_tool_call_has_object_input(tool_client):
    client = tool_client
    m = client.messages.create(
        model=TOOL_MODEL, max_tokens=128, extra_body=GREEDY, tools=[WEATHER_TOOL],
        messages=[{"role": "user", "content": "Use the get_weather tool for Rome."}],
    )
    calls = [b for b in m.content if b.type == "tool_use"]
    assert m.stop_reason == "tool_use" and calls
    assert calls[0].name == "get_weather" and isinstance(calls[0].input, dict)
    assert "rome" in str(calls[0].input.get("city", "")).lower()


def agent_tools(n=15):
    """Tool definitions in the size and shape a coding agent sends."""
    names = ["Read", "Write", "Edit", "Bash", "Glob", "Grep", "LS", "WebFetch", "TodoWrite",
             "NotebookEdit", "Task", "MultiEdit", "ExitPlanMode", "BashOutput", "KillShell"]
    return [
        {
            "name": name,
            "description": f"{name}: a tool of the coding agent. " + "It takes the arguments below. " * 4,
            "input_schema": {
                "type": "object",
                "properties": {
                    "path": {"type": "string", "description": "Absolute path of the file or folder."},
                    "command": {"type": "string", "description": "Command or pattern to run."},
                },
                "required": ["path"],
            },
        }
        for name in names[:n]
    ]


def test_agent_session_replay_reuses_the_prompt_prefix(client):
    """A scripted multi-turn session shaped like a coding agent's: long system prompt, ~15 tools, a
    history that grows by a tool round trip per turn. Later turns must report prefix reuse."""
    system = [{"type": "text", "text": "You are a coding agent working in a repository. "
               + "Follow the user's instructions carefully and keep answers short. " * 20,
               "cache_control": {"type": "ephemeral"}}]
    tools = agent_tools()
    messages = [{"role": "user", "content": "List the files in the project root."}]
    previous_prompt = None
    for turn in range(3):
        m = client.messages.create(
            model=MODEL, max_tokens=8, extra_body=GREEDY, system=system, tools=tools, messages=messages
        )
        size = prompt_size(m.usage)
        if previous_prompt is not None:
            assert size > previous_prompt, "the history grows"
            assert m.usage.cache_read_input_tokens >= previous_prompt // 2, (
                f"turn {turn}: {m.usage.cache_read_input_tokens} of {size} prompt tokens reused, "
                f"previous prompt was {previous_prompt}"
            )
        previous_prompt = size
        call_id = f"toolu_replay{turn:02d}"
        messages += [
            {"role": "assistant", "content": [
                {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": call_id, "name": "LS", "input": {"path": f"/repo/dir{turn}"}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": call_id, "content": f"src/\ntests/\nREADME{turn}.md"},
                {"type": "text", "text": f"Now describe dir{turn} in one sentence."},
            ]},
        ]


def test_unknown_model_is_a_404_not_found(client):
    with pytest.raises(anthropic.NotFoundError) as info:
        client.messages.create(model="gpt-4o", max_tokens=4, messages=CAPITAL)
    assert info.value.body["error"]["type"] == "not_found_error"


def test_prompt_over_the_context_is_prompt_is_too_long(client):
    words = " ".join(f"w{i}" for i in range(9000))
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(model=MODEL, max_tokens=4, messages=[{"role": "user", "content": words}])
    assert info.value.body["error"]["message"].startswith("prompt is too long")


def test_aliases_are_listed_under_the_served_model(server_url):
    import json

    with urllib.request.urlopen(server_url + "/v1/models", timeout=10) as r:
        listed = json.load(r)
    assert "claude-*" in listed["data"][0]["aliases"]
