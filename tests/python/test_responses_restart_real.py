"""Stored Responses API responses survive a server restart with the disk tier on, on the real
default model (SmolLM2-135M-Instruct), through the official `openai` client.

    MLX_SERVE_BIN=target/debug/mlx-serve MLX_SERVE_BASE_URL=unused \
        python -m pytest tests/python/test_responses_restart_real.py -q -p no:cacheprovider

One server with `[cache.disk]` in a temporary directory answers the first turn and stops; a
second one on the same directory continues the conversation through `previous_response_id`
(its memory is empty: the history comes from the redb file), and a further turn within that run
reuses the prefix the continuation left (`cached_tokens` > 0). Greedy, a few tokens per turn.
"""

import os

import pytest

from conftest import start_server, stop_server

openai = pytest.importorskip("openai")

BIN = os.environ.get("MLX_SERVE_BIN")
MODEL = "smollm2-135m-instruct"
pytestmark = pytest.mark.skipif(not BIN, reason="MLX_SERVE_BIN is not set")
TURN = {"max_output_tokens": 12, "temperature": 0}


def serve(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(
        f'[cache.disk]\nenabled = true\npath = "{tmp_path / "cache" / "responses.redb"}"\n'
    )
    proc, url, log = start_server(BIN, "--config", str(config), "--model", MODEL)
    client = openai.OpenAI(base_url=url + "/v1", api_key="local", max_retries=0, timeout=300)
    return proc, client, log


def test_a_conversation_continues_after_a_restart(tmp_path):
    proc, client, _ = serve(tmp_path)
    try:
        first = client.responses.create(model=MODEL, input="Name a primary colour.", **TURN)
        assert first.output_text.strip()
    finally:
        stop_server(proc)

    proc, client, log = serve(tmp_path)
    try:
        assert client.responses.retrieve(first.id).output_text == first.output_text
        second = client.responses.create(
            model=MODEL, previous_response_id=first.id, input="Name another one.", **TURN
        )
        assert second.status in ("completed", "incomplete")
        assert second.previous_response_id == first.id
        assert second.output_text.strip()
        # The first turn (question and answer) is in the continued prompt.
        assert second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens
        third = client.responses.create(
            model=MODEL, previous_response_id=second.id, input="And a third?", **TURN
        )
        assert third.usage.input_tokens_details.cached_tokens > 0, open(log).read()[-4000:]
    finally:
        stop_server(proc)
