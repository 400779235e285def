"""The official `openai` client against a running mlx-serve.

Needs MLX_SERVE_BASE_URL (e.g. http://127.0.0.1:8080/v1). With MLX_SERVE_FAKE=1 the server is
`serve --fake` and exact texts are checked (the fake echoes the last message); against a real
model only shapes and invariants are checked. MLX_SERVE_API_KEY is sent when set.
"""

import os
import unittest

import openai

BASE_URL = os.environ.get("MLX_SERVE_BASE_URL")
if not BASE_URL:
    raise unittest.SkipTest("MLX_SERVE_BASE_URL (or MLX_SERVE_BIN, see conftest.py) is not set")
FAKE = os.environ.get("MLX_SERVE_FAKE") == "1"
API_KEY = os.environ.get("MLX_SERVE_API_KEY", "not-needed")


def client():
    # max_retries=0: a client error must be a 4xx the first time, not something retried.
    return openai.OpenAI(base_url=BASE_URL, api_key=API_KEY, max_retries=0, timeout=120)


def model_id():
    return client().models.list().data[0].id


class OpenAIClientTest(unittest.TestCase):
    def test_models_list_and_retrieve(self):
        models = client().models.list()
        self.assertGreaterEqual(len(models.data), 1)
        first = models.data[0]
        self.assertEqual(first.object, "model")
        self.assertEqual(client().models.retrieve(first.id).id, first.id)

    def test_chat_completion(self):
        resp = client().chat.completions.create(
            model=model_id(),
            messages=[
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Say hello world"},
            ],
            max_tokens=8,
            temperature=0,
        )
        self.assertTrue(resp.id.startswith("chatcmpl-"))
        self.assertEqual(resp.object, "chat.completion")
        choice = resp.choices[0]
        self.assertEqual(choice.message.role, "assistant")
        self.assertIn(choice.finish_reason, ("stop", "length"))
        self.assertGreater(resp.usage.prompt_tokens, 0)
        self.assertGreater(resp.usage.completion_tokens, 0)
        self.assertLessEqual(resp.usage.completion_tokens, 8)
        self.assertEqual(
            resp.usage.total_tokens, resp.usage.prompt_tokens + resp.usage.completion_tokens
        )
        if FAKE:
            self.assertEqual(choice.message.content, "Say hello world")
            self.assertEqual(choice.finish_reason, "stop")

    def test_chat_streaming_with_usage(self):
        stream = client().chat.completions.create(
            model=model_id(),
            messages=[{"role": "user", "content": "Count one two three"}],
            max_tokens=6,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        self.assertGreaterEqual(len(chunks), 3)
        self.assertEqual(chunks[0].choices[0].delta.role, "assistant")
        usage_chunk = chunks[-1]
        self.assertEqual(usage_chunk.choices, [])
        self.assertIsNotNone(usage_chunk.usage)
        finishes = [c.choices[0].finish_reason for c in chunks[:-1] if c.choices]
        self.assertIn(finishes[-1], ("stop", "length"))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        self.assertGreater(usage_chunk.usage.completion_tokens, 0)
        self.assertEqual(len({c.id for c in chunks}), 1)
        if FAKE:
            self.assertEqual(text, "Count one two three")
            self.assertEqual(usage_chunk.usage.completion_tokens, 4)

    def test_completions(self):
        resp = client().completions.create(
            model=model_id(), prompt="The capital of France is", max_tokens=5, temperature=0
        )
        self.assertEqual(resp.object, "text_completion")
        self.assertIn(resp.choices[0].finish_reason, ("stop", "length"))
        self.assertLessEqual(resp.usage.completion_tokens, 5)
        if FAKE:
            self.assertEqual(resp.choices[0].text, "The capital of France is")

    def test_completions_streaming(self):
        stream = client().completions.create(
            model=model_id(), prompt="one two", max_tokens=4, stream=True
        )
        text = "".join(c.choices[0].text for c in stream if c.choices)
        if FAKE:
            self.assertEqual(text, "one two")

    def test_unknown_model_is_not_found(self):
        with self.assertRaises(openai.NotFoundError) as ctx:
            client().chat.completions.create(
                model="no-such-model", messages=[{"role": "user", "content": "hi"}]
            )
        self.assertEqual(ctx.exception.code, "model_not_found")

    def test_invalid_parameter_is_a_400_naming_it(self):
        with self.assertRaises(openai.BadRequestError) as ctx:
            client().chat.completions.create(
                model=model_id(), messages=[{"role": "user", "content": "hi"}], temperature=7
            )
        self.assertEqual(ctx.exception.param, "temperature")

    def test_empty_messages_is_a_400(self):
        with self.assertRaises(openai.BadRequestError):
            client().chat.completions.create(model=model_id(), messages=[])


if __name__ == "__main__":
    unittest.main(verbosity=2)
