"""A long streamed tool call on a real model: the first argument fragment comes long before the end.

    MLX_SERVE_BIN=$PWD/target/debug/mlx-serve MLX_SERVE_BASE_URL=unused \
        target/pyenv/bin/python -m pytest tests/python/test_tool_stream_real.py -q -s

Qwen2.5-Coder-0.5B-Instruct (greedy) is asked to write a ~40-line Python file through a
`write_file` tool, streaming. The time from the request to the first `function.arguments`
fragment and to the last one are measured and printed (docs/benchmarks.md reports them); the
first must come well before the last. One request, ~1 minute on 2 CPU cores.

Environment: MLX_SERVE_BIN (the binary; unset: skipped). The model is pulled when missing
(skipped, saying why, when it cannot be had).
"""

import json
import os
import subprocess
import time

import pytest

from conftest import start_server, stop_server

openai = pytest.importorskip("openai")

BIN = os.environ.get("MLX_SERVE_BIN")
MODEL = "qwen2.5-coder-0.5b-instruct"
pytestmark = pytest.mark.skipif(not BIN, reason="MLX_SERVE_BIN is not set")

WRITE_FILE = {
    "type": "function",
    "function": {
        "name": "write_file",
        "description": "Write a text file to disk.",
        "parameters": {
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "File path"},
                "content": {"type": "string", "description": "The full file content"},
            },
            "required": ["path", "content"],
        },
    },
}
MESSAGES = [
    {
        "role": "system",
        "content": "You are a coding assistant. You never show code in your reply: you call the "
        "write_file tool with the whole file in its content argument.",
    },
    {
        "role": "user",
        "content": "Use the write_file tool to save calc.py: about 40 lines, with a module docstring, "
        "functions add, subtract, multiply, divide and power (each with a docstring), and a main() "
        "that prints an example of each.",
    },
]


def test_first_argument_fragment_arrives_long_before_the_call_ends():
    # Pulled here, not checked at collection: on a fresh machine the model arrives with the
    # suite (an earlier test may pull it too).
    pulled = subprocess.run([BIN, "pull", MODEL], capture_output=True, text=True, timeout=1800)
    if pulled.returncode != 0:
        pytest.skip(f"{MODEL} is not present and cannot be pulled: {pulled.stderr[-500:]}")
    proc, url, _ = start_server(BIN, "--model", MODEL)
    try:
        client = openai.OpenAI(base_url=url + "/v1", api_key="local", max_retries=0, timeout=900)
        start = time.monotonic()
        times, arguments, name, finish = [], "", None, None
        stream = client.chat.completions.create(
            model=MODEL, messages=MESSAGES, tools=[WRITE_FILE], stream=True, temperature=0, max_tokens=900
        )
        for chunk in stream:
            if not chunk.choices:
                continue
            choice = chunk.choices[0]
            finish = choice.finish_reason or finish
            for d in choice.delta.tool_calls or []:
                name = (d.function and d.function.name) or name
                if d.function and d.function.arguments:
                    times.append(time.monotonic() - start)
                    arguments += d.function.arguments
    finally:
        stop_server(proc)
    assert name == "write_file", (finish, arguments[:200])
    # Lines of the file as written (escaped newlines); a 0.5B model does not always close its
    # JSON string, so the arguments are not parsed here.
    lines = arguments.count("\\n") + 1
    try:
        well_formed = isinstance(json.loads(arguments), dict)
    except ValueError:
        well_formed = False
    first, last = times[0], times[-1]
    print(
        f"\nwrite_file call: {len(times)} fragments, {len(arguments)} bytes, ~{lines} lines, "
        f"finish={finish}, well-formed JSON: {well_formed}; first fragment {first:.1f} s, last {last:.1f} s, gap {last - first:.1f} s"
    )
    assert len(times) >= 10
    # Long before: the call is still being written for most of its time.
    assert last - first > first, (first, last)
