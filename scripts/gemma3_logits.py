#!/usr/bin/env python3
"""Spot check of a Gemma 3 GGUF: the model's forward pass written out in numpy (float64) from
the `gguf` package's own dequantizers, independent of mlx-serve's reader, dequantizers and
decoder. Prints the top next-token candidates after the prompt and, with --greedy N, N greedily
generated token ids, for comparison with mlx-serve's output on the same file.

Needs `gguf` and `numpy` (pip install gguf numpy).

Usage:
  gemma3_logits.py MODEL.gguf --tokens 2,818,5279,529,7001,563      (ids, BOS included)
  gemma3_logits.py MODEL.gguf --words "The capital of France is"    (a crude word-by-word
      lookup of SentencePiece pieces, enough for plain English words)
  --norm-shift 1    add 1 to every RMSNorm weight (the Hugging Face checkpoint's convention;
                    0, the default, treats the GGUF's weights as already shifted)
  --words-file F    --words, read from a file (whitespace-separated words)
  --no-window       every layer global: how far the window moves the logits
  --greedy N        also generate N tokens greedily (full recompute each step)
  --json            one JSON object instead of text
"""
import argparse
import json
import math
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize


def field(reader, key, default=None):
    f = reader.fields.get(key)
    return default if f is None else f.contents()


class Gemma3:
    def __init__(self, path, norm_shift):
        r = GGUFReader(path)
        self.reader = r
        a = "gemma3"
        self.hidden = int(field(r, f"{a}.embedding_length"))
        self.layers = int(field(r, f"{a}.block_count"))
        self.heads = int(field(r, f"{a}.attention.head_count"))
        self.kv_heads = int(field(r, f"{a}.attention.head_count_kv"))
        self.head_dim = int(field(r, f"{a}.attention.key_length"))
        self.eps = float(field(r, f"{a}.attention.layer_norm_rms_epsilon"))
        self.window = int(field(r, f"{a}.attention.sliding_window"))
        self.global_base = float(field(r, f"{a}.rope.freq_base"))
        # llama.cpp's gemma3 graph: local layers use base 10000, every 6th layer is global.
        self.local_base = 10000.0
        self.pattern = 6
        self.scale = self.head_dim ** -0.5  # query_pre_attn_scalar = head_dim below 27B
        self.tokens = field(r, "tokenizer.ggml.tokens")
        self.t = {}
        for t in r.tensors:
            w = dequantize(t.data, t.tensor_type).astype(np.float64)
            if "norm" in t.name:
                w = w + norm_shift
            self.t[t.name] = w

    def rms(self, x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * w

    def rope(self, x, base):
        # x: [heads, T, d]; Hugging Face rotate-half layout.
        d = x.shape[-1]
        inv = base ** (-np.arange(0, d, 2) / d)
        ang = np.arange(x.shape[1])[:, None] * inv[None, :]
        cos = np.concatenate([np.cos(ang)] * 2, -1)
        sin = np.concatenate([np.sin(ang)] * 2, -1)
        x1, x2 = x[..., : d // 2], x[..., d // 2 :]
        return x * cos + np.concatenate([-x2, x1], -1) * sin

    def logits(self, ids):
        T, d = len(ids), self.head_dim
        emb = self.t["token_embd.weight"]
        h = emb[ids] * math.sqrt(self.hidden)
        pos = np.arange(T)
        diff = pos[:, None] - pos[None, :]
        for i in range(self.layers):
            p = f"blk.{i}."
            sliding = (i + 1) % self.pattern != 0
            x = self.rms(h, self.t[p + "attn_norm.weight"])
            q = (x @ self.t[p + "attn_q.weight"].T).reshape(T, self.heads, d).transpose(1, 0, 2)
            k = (x @ self.t[p + "attn_k.weight"].T).reshape(T, self.kv_heads, d).transpose(1, 0, 2)
            v = (x @ self.t[p + "attn_v.weight"].T).reshape(T, self.kv_heads, d).transpose(1, 0, 2)
            q = self.rms(q, self.t[p + "attn_q_norm.weight"])
            k = self.rms(k, self.t[p + "attn_k_norm.weight"])
            base = self.local_base if sliding else self.global_base
            q, k = self.rope(q, base), self.rope(k, base)
            group = self.heads // self.kv_heads
            k = np.repeat(k, group, axis=0)
            v = np.repeat(v, group, axis=0)
            s = q @ k.transpose(0, 2, 1) * self.scale
            allowed = diff >= 0
            if sliding:
                allowed &= diff < self.window
            s = np.where(allowed[None], s, -np.inf)
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            o = (s @ v).transpose(1, 0, 2).reshape(T, self.heads * d)
            o = o @ self.t[p + "attn_output.weight"].T
            h = h + self.rms(o, self.t[p + "post_attention_norm.weight"])
            x = self.rms(h, self.t[p + "ffn_norm.weight"])
            g = x @ self.t[p + "ffn_gate.weight"].T
            u = x @ self.t[p + "ffn_up.weight"].T
            g = 0.5 * g * (1 + np.tanh(math.sqrt(2 / math.pi) * (g + 0.044715 * g**3)))
            m = (g * u) @ self.t[p + "ffn_down.weight"].T
            h = h + self.rms(m, self.t[p + "post_ffw_norm.weight"])
        h = self.rms(h[-1], self.t["output_norm.weight"])
        return emb @ h

    def words_to_ids(self, text):
        index = {t: i for i, t in enumerate(self.tokens)}
        ids = [int(field(self.reader, "tokenizer.ggml.bos_token_id"))]
        for n, word in enumerate(text.split(" ")):
            piece = word if n == 0 else "\u2581" + word
            if piece not in index:
                sys.exit(f"no single token for {piece!r}; pass --tokens")
            ids.append(index[piece])
        return ids


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("gguf")
    ap.add_argument("--tokens")
    ap.add_argument("--words")
    ap.add_argument("--words-file", help="like --words, the text read from a file")
    ap.add_argument("--no-window", action="store_true",
                    help="attend globally in every layer (to see how much the window matters)")
    ap.add_argument("--norm-shift", type=float, default=0.0)
    ap.add_argument("--greedy", type=int, default=0)
    ap.add_argument("--top", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    m = Gemma3(args.gguf, args.norm_shift)
    if args.no_window:
        m.window = 1 << 30
    if args.tokens:
        ids = [int(x) for x in args.tokens.split(",")]
    elif args.words_file:
        with open(args.words_file) as f:
            ids = m.words_to_ids(" ".join(f.read().split()))
    else:
        ids = m.words_to_ids(args.words or "The capital of France is")
    logits = m.logits(ids)
    top = np.argsort(-logits)[: args.top]
    generated = []
    seq = list(ids)
    for n in range(args.greedy):
        nxt = int(np.argmax(logits if n == 0 else m.logits(seq)))
        generated.append(nxt)
        seq.append(nxt)
    out = {
        "prompt_ids": ids,
        "norm_shift": args.norm_shift,
        "first_logits": [float(x) for x in logits[:8]],
        "top": [
            {"id": int(i), "piece": m.tokens[i], "logit": float(logits[i])} for i in top
        ],
        "greedy": generated,
        "greedy_text": "".join(m.tokens[i] for i in generated).replace("\u2581", " "),
    }
    if args.json:
        print(json.dumps(out))
        return
    print("prompt ids:", ids)
    print("first logits:", " ".join(f"{x:.5f}" for x in out["first_logits"]))
    for t in out["top"]:
        print(f"  {t['id']:>7} {t['piece']!r:>16} {t['logit']:.5f}")
    if generated:
        print("greedy:", generated)
        print("greedy text:", out["greedy_text"])


if __name__ == "__main__":
    main()
