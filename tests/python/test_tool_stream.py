"""Streamed tool-call arguments through the official clients' own stream accumulation.

    MLX_SERVE_BIN=$PWD/target/debug/mlx-serve MLX_SERVE_BASE_URL=unused \
        target/pyenv/bin/python -m pytest tests/python/test_tool_stream.py -q

The server runs the scripted fake engine (`serve --fake --script`, one word per token), so the
model text is known: a long `write_file` call in the Hermes and the Qwen3-Coder format, and the
same call cut off by `max_tokens`. Each reply is requested streaming and not; the `openai`
client's `chat.completions.stream()` accumulator and the `anthropic` client's
`messages.stream()` (its partial `input_json` reading) must rebuild exactly the non-streaming
calls, and the arguments must have come in many fragments.
"""

import json
import os
import tempfile
from pathlib import Path

import pytest

from conftest import start_server, stop_server

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")

BIN = os.environ.get("MLX_SERVE_BIN")
pytestmark = pytest.mark.skipif(not BIN, reason="MLX_SERVE_BIN is not set")

CONTENT = "".join(f'    line {i}: "quoted" \\ and <tags>\n' for i in range(20))
HERMES = (
    "Writing it now.\n<tool_call>\n"
    + json.dumps({"name": "write_file", "arguments": {"path": "notes.txt", "content": CONTENT}})
    + "\n</tool_call>"
)
QWEN3 = (
    "<tool_call>\n<function=write_file>\n<parameter=path>\nnotes.txt\n</parameter>\n"
    f"<parameter=content>\n{CONTENT}</parameter>\n<parameter=mode>\n420\n</parameter>\n"
    "</function>\n</tool_call>"
)
SCHEMA = {
    "type": "object",
    "properties": {
        "path": {"type": "string"},
        "content": {"type": "string"},
        "mode": {"type": "integer"},
    },
    "required": ["path", "content"],
}
OPENAI_TOOLS = [{"type": "function", "function": {"name": "write_file", "parameters": SCHEMA}}]
ANTHROPIC_TOOLS = [{"name": "write_file", "input_schema": SCHEMA}]
MESSAGES = [{"role": "user", "content": "write notes.txt"}]


def serve(tmp, fmt, replies):
    script = Path(tmp) / "script.json"
    script.write_text(json.dumps(replies))
    config = Path(tmp) / "config.toml"
    config.write_text(f'[model]\nname = "fake"\n[tools]\nformat = "{fmt}"\n[cache]\nenabled = false\n')
    return start_server(BIN, "--config", str(config), "--fake", "--script", str(script))


@pytest.mark.parametrize("fmt,reply", [("hermes", HERMES), ("qwen3_coder", QWEN3)])
@pytest.mark.parametrize("max_tokens", [2000, 40])
def test_openai_stream_accumulator_rebuilds_the_non_streaming_calls(fmt, reply, max_tokens):
    with tempfile.TemporaryDirectory() as tmp:
        proc, url, _ = serve(tmp, fmt, [reply, reply])
        try:
            client = openai.OpenAI(base_url=url + "/v1", api_key="local", max_retries=0)
            args = dict(model="fake", messages=MESSAGES, tools=OPENAI_TOOLS, max_tokens=max_tokens)
            fragments = 0
            with client.chat.completions.stream(**args) as stream:
                for event in stream:
                    if event.type == "tool_calls.function.arguments.delta":
                        fragments += 1
                try:
                    streamed = stream.get_final_completion().choices[0]
                except openai.LengthFinishReasonError as cut:
                    # The helper refuses to parse a cut reply, but hands over what it accumulated.
                    streamed = cut.completion.choices[0]
            whole = client.chat.completions.create(**args).choices[0]
        finally:
            stop_server(proc)
    got = [(c.function.name, c.function.arguments) for c in streamed.message.tool_calls or []]
    want = [(c.function.name, c.function.arguments) for c in whole.message.tool_calls or []]
    assert got == want and len(got) == 1
    assert streamed.finish_reason == whole.finish_reason
    assert fragments >= 5, fragments
    if max_tokens == 2000:
        assert whole.finish_reason == "tool_calls"
        assert json.loads(got[0][1])["content"].rstrip("\n") == CONTENT.rstrip("\n")
    else:
        assert whole.finish_reason == "length"
        assert got[0][1].startswith('{"path":"notes.txt"')


@pytest.mark.parametrize("fmt,reply", [("hermes", HERMES), ("qwen3_coder", QWEN3)])
@pytest.mark.parametrize("max_tokens", [2000, 40])
def test_anthropic_stream_rebuilds_the_non_streaming_tool_use(fmt, reply, max_tokens):
    with tempfile.TemporaryDirectory() as tmp:
        proc, url, _ = serve(tmp, fmt, [reply, reply])
        try:
            client = anthropic.Anthropic(base_url=url, api_key="local", max_retries=0)
            args = dict(model="fake", messages=MESSAGES, tools=ANTHROPIC_TOOLS, max_tokens=max_tokens)
            deltas = 0
            with client.messages.stream(**args) as stream:
                for event in stream:
                    if event.type == "input_json":
                        deltas += 1
                streamed = stream.get_final_message()
            whole = client.messages.create(**args)
        finally:
            stop_server(proc)
    uses = lambda m: [(b.name, b.input) for b in m.content if b.type == "tool_use"]
    assert uses(streamed) == uses(whole) and len(uses(whole)) == 1
    assert streamed.stop_reason == whole.stop_reason
    assert deltas >= 5, deltas
    assert whole.stop_reason == ("tool_use" if max_tokens == 2000 else "max_tokens")
