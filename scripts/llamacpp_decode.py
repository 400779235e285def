#!/usr/bin/env python3
"""Single-stream greedy decode rate of llama.cpp (llama-cpp-python) on a GGUF, measured like
`mlx-serve bench engine`'s decode: a short prompt, then the gaps between streamed tokens.
Usage: /tmp/venv-llamacpp/bin/python scripts/llamacpp_decode.py MODEL.gguf [TOKENS] [THREADS]
Prints the time to the first token and the decode rate (tokens after the first / their time).
The prompt is evaluated one token per batch: on this machine llama-cpp-python 0.3.36's build
crashed (SIGSEGV in libggml-cpu) on every multi-token batch; decode is one token per batch anyway."""
import sys
import time

from llama_cpp import Llama

path = sys.argv[1]
tokens = int(sys.argv[2]) if len(sys.argv) > 2 else 64
threads = int(sys.argv[3]) if len(sys.argv) > 3 else 2
llm = Llama(model_path=path, n_ctx=2048, n_threads=threads, n_threads_batch=threads,
            n_batch=1, n_ubatch=1, verbose=False)
prompt = "Write a short story about a lighthouse keeper who finds a message in a bottle."
t0 = time.perf_counter()
stamps = []
# The end-of-text token is barred so that every run decodes `tokens` tokens.
no_eos = {llm.token_eos(): -1e9}
for _ in llm.create_completion(prompt, max_tokens=tokens, temperature=0.0, stream=True,
                               logit_bias=no_eos):
    stamps.append(time.perf_counter())
n = len(stamps) - 1
print(f"first token {stamps[0] - t0:.3f} s; decode {n} tokens: "
      f"{n / (stamps[-1] - stamps[0]):.1f} tok/s")
