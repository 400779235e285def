"""Structured outputs on the real default model (SmolLM2-135M-Instruct), sampled at temperature 1,
through the official `openai` and `anthropic` clients:

- `tool_choice: "required"` (streaming and not) and Anthropic `tool_choice: {"type": "any"}`
  always return a call to an offered tool whose arguments validate against its schema;
- `response_format: json_schema` and Anthropic `output_config.format` always return content that
  validates against the schema;
- a schema that cannot be enforced is a 400 naming `response_format`.

Each guarantee is checked on 20 sampled requests, sent 8 at a time so that they decode together
in one batch (each sequence with its own grammar matcher), which also keeps the run short on the
CI machine's two cores.

    MLX_SERVE_BIN=target/debug/mlx-serve pytest tests/python/test_structured_real.py
"""

import json
import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import start_server, stop_server

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")
jsonschema = pytest.importorskip("jsonschema")

BIN = os.environ.get("MLX_SERVE_BIN")
MODEL = "smollm2-135m-instruct"
pytestmark = pytest.mark.skipif(not BIN, reason="MLX_SERVE_BIN is not set")

WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 40},
        "unit": {"enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
TIME = {
    "type": "object",
    "properties": {"timezone": {"type": "string", "maxLength": 40}},
    "required": ["timezone"],
}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city.", "parameters": WEATHER}},
    {"type": "function", "function": {"name": "get_time", "description": "Current time in a timezone.", "parameters": TIME}},
]
SCHEMAS = {tool["function"]["name"]: tool["function"]["parameters"] for tool in TOOLS}
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 40},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "role": {"enum": ["engineer", "artist", "doctor"]},
        "skills": {"type": "array", "items": {"type": "string", "maxLength": 30}, "minItems": 1, "maxItems": 3},
        "address": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 30}, "zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
            "required": ["city", "zip"],
            "additionalProperties": False,
        },
    },
    "required": ["name", "age", "role", "skills", "address"],
    "additionalProperties": False,
}
QUESTION = [{"role": "user", "content": "What is the weather like in Paris?"}]
SAMPLED = {"temperature": 1.0, "max_tokens": 160}
COUNT = 20


def each(fn, args):
    """`fn` over `args`, 8 requests in flight at a time (the engine's default batch)."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(fn, args))


@pytest.fixture(scope="module")
def server():
    proc, url, _ = start_server(BIN, "--model", MODEL)
    yield url
    stop_server(proc)


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server + "/v1", api_key="unused", max_retries=0, timeout=300)


def check_call(name, arguments):
    assert name in SCHEMAS, name
    jsonschema.validate(json.loads(arguments), SCHEMAS[name])


def test_required_tool_choice_always_gives_a_valid_call(client):
    def ask(seed):
        return client.chat.completions.create(
            model=MODEL, messages=QUESTION, tools=TOOLS, tool_choice="required", seed=seed, **SAMPLED
        )

    for r in each(ask, range(COUNT)):
        calls = r.choices[0].message.tool_calls
        assert calls, r
        assert r.choices[0].finish_reason == "tool_calls"
        for call in calls:
            check_call(call.function.name, call.function.arguments)


def test_required_tool_choice_streams_a_valid_call(client):
    def ask(seed):
        stream = client.chat.completions.create(
            model=MODEL, messages=QUESTION, tools=TOOLS, tool_choice="required", seed=seed, stream=True, **SAMPLED
        )
        calls, finish = {}, None
        for chunk in stream:
            if not chunk.choices:
                continue
            finish = chunk.choices[0].finish_reason or finish
            for delta in chunk.choices[0].delta.tool_calls or []:
                call = calls.setdefault(delta.index, {"name": "", "arguments": ""})
                call["name"] += delta.function.name or ""
                call["arguments"] += delta.function.arguments or ""
        return calls, finish

    for calls, finish in each(ask, range(100, 100 + COUNT)):
        assert calls
        assert finish == "tool_calls"
        for call in calls.values():
            check_call(call["name"], call["arguments"])


def test_a_named_function_is_the_one_called(client):
    choice = {"type": "function", "function": {"name": "get_time"}}
    r = client.chat.completions.create(
        model=MODEL, messages=QUESTION, tools=TOOLS, tool_choice=choice, seed=7, **SAMPLED
    )
    calls = r.choices[0].message.tool_calls
    assert calls and all(c.function.name == "get_time" for c in calls)
    for call in calls:
        check_call(call.function.name, call.function.arguments)


def test_json_schema_answers_always_validate(client):
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}
    messages = [{"role": "user", "content": "Invent a person and describe them."}]

    def ask(seed):
        return client.chat.completions.create(
            model=MODEL, messages=messages, response_format=fmt, seed=seed, temperature=1.0, max_tokens=200
        )

    for r in each(ask, range(COUNT)):
        choice = r.choices[0]
        assert choice.finish_reason == "stop", choice
        jsonschema.validate(json.loads(choice.message.content), PERSON)


def test_json_object_answers_are_objects(client):
    r = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Give me a JSON object about cats."}],
        response_format={"type": "json_object"},
        seed=3,
        temperature=1.0,
        max_tokens=200,
    )
    if r.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(r.choices[0].message.content), dict)


def test_a_schema_that_cannot_be_enforced_is_a_400(client):
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "strng"}}}
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=QUESTION, response_format=fmt, max_tokens=8)
    assert e.value.body.get("param") == "response_format"


def test_anthropic_any_and_output_format(server):
    client = anthropic.Anthropic(base_url=server, api_key="unused", max_retries=0, timeout=300)
    tools = [
        {"name": t["function"]["name"], "description": t["function"]["description"], "input_schema": t["function"]["parameters"]}
        for t in TOOLS
    ]

    def ask(_):
        return client.messages.create(
            model=MODEL, max_tokens=160, messages=QUESTION, tools=tools, tool_choice={"type": "any"}
        )

    for m in each(ask, range(COUNT)):
        uses = [b for b in m.content if b.type == "tool_use"]
        assert uses, m
        assert m.stop_reason == "tool_use"
        for use in uses:
            assert use.name in SCHEMAS
            jsonschema.validate(use.input, SCHEMAS[use.name])
    for _ in range(2):
        m = client.messages.create(
            model=MODEL,
            max_tokens=200,
            messages=[{"role": "user", "content": "Invent a person and describe them."}],
            extra_body={"output_config": {"format": {"type": "json_schema", "schema": PERSON}}},
        )
        assert m.stop_reason == "end_turn", m
        text = "".join(b.text for b in m.content if b.type == "text")
        jsonschema.validate(json.loads(text), PERSON)
