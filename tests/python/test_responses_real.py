"""The Responses API of mlx-serve, checked with the official `openai` client on the real model.

    MLX_SERVE_BIN=target/debug/mlx-serve pytest tests/python/test_responses_real.py

Runs against the server conftest.py starts from MLX_SERVE_BIN on the default model (or the one
MLX_SERVE_BASE_URL names); skipped when neither is set. Greedy decoding, and `Cache-Control:
no-cache` where two replies are compared, so both are really generated (not one replayed from
the response cache).
"""

import os

import pytest

openai = pytest.importorskip("openai")

BASE_URL = os.environ.get("MLX_SERVE_BASE_URL")
pytestmark = pytest.mark.skipif(not BASE_URL, reason="MLX_SERVE_BASE_URL / MLX_SERVE_BIN not set")
FRESH = {"Cache-Control": "no-cache"}


@pytest.fixture(scope="module")
def client():
    # No retries: a 5xx must show up as a failure, not be hidden by the client's retry loop.
    return openai.OpenAI(base_url=BASE_URL, api_key="not-needed", max_retries=0, timeout=300)


@pytest.fixture(scope="module")
def model(client):
    return client.models.list().data[0].id


def items(response):
    """Output items without their generated ids (and the `parsed` field the stream helper adds
    for structured outputs), for comparing two replies."""
    out = []
    for item in response.output:
        d = item.to_dict()
        d.pop("id", None)
        for part in d.get("content") or []:
            part.pop("parsed", None)
        if d.get("type") == "function_call":
            d.pop("call_id", None)
        out.append(d)
    return out


def test_create_returns_a_completed_response(client, model):
    r = client.responses.create(
        model=model,
        instructions="You are terse.",
        input="What is the capital of France?",
        max_output_tokens=24,
        temperature=0,
    )
    assert r.id.startswith("resp_")
    assert r.object == "response"
    assert r.status in ("completed", "incomplete")
    assert r.output[0].type == "message"
    assert r.output[0].content[0].type == "output_text"
    assert r.output_text.strip()
    assert r.usage.input_tokens > 0
    assert 0 < r.usage.output_tokens <= 24
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    if r.status == "incomplete":
        assert r.incomplete_details.reason == "max_output_tokens"


def test_stream_accumulator_equals_the_json_reply(client, model):
    args = dict(
        model=model,
        input="Write one sentence about the sea.",
        max_output_tokens=32,
        temperature=0,
        extra_headers=FRESH,
    )
    plain = client.responses.create(**args)
    kinds = []
    with client.responses.stream(**args) as stream:
        for event in stream:
            kinds.append(event.type)
            last = event
        # The helper only assembles a final response from `response.completed`; a reply cut off
        # by max_output_tokens ends with `response.incomplete`, whose event carries the response.
        final = stream.get_final_response() if last.type == "response.completed" else last.response
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] in ("response.completed", "response.incomplete")
    assert final.status == plain.status
    assert "response.output_text.delta" in kinds
    assert final.output_text == plain.output_text
    assert items(final) == items(plain)
    assert final.usage.output_tokens == plain.usage.output_tokens


def test_previous_response_id_reuses_the_prefix_cache(client, model):
    first = client.responses.create(
        model=model,
        instructions="You are a helpful assistant. Answer in one short sentence.",
        input="Name a primary colour.",
        max_output_tokens=16,
        temperature=0,
    )
    second = client.responses.create(
        model=model,
        previous_response_id=first.id,
        input="Name another one.",
        max_output_tokens=16,
        temperature=0,
    )
    assert second.previous_response_id == first.id
    assert second.usage.input_tokens > first.usage.input_tokens
    assert second.usage.input_tokens_details.cached_tokens > 0
    assert client.responses.retrieve(first.id).id == first.id


def test_errors_are_4xx_in_openai_shape(client, model):
    with pytest.raises(openai.NotFoundError) as e:
        client.responses.create(model=model, input="hi", previous_response_id="resp_missing")
    assert e.value.body["param"] == "previous_response_id"
    with pytest.raises(openai.BadRequestError):
        client.responses.create(
            model=model,
            input=[{"type": "function_call_output", "call_id": "call_x", "output": "1"}],
        )
