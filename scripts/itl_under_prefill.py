#!/usr/bin/env python3
"""Inter-token latency of a running stream while a long prompt prefills (issue #14, item 2).

Starts one streamed chat completion, waits until it is decoding steadily, then sends a second
request with a long prompt (default ~4,000 tokens, max_tokens 1) and records when each chunk of
the first stream arrives. Prints the stream's inter-token gaps before, during and after the
other prompt's prefill, the largest gap, and the long prompt's own time to first token. With
mixed steps the largest gap is about one prefill chunk's time, not the whole prefill.

Usage: itl_under_prefill.py --url http://127.0.0.1:18080 [--model ID] [--words 4000]
"""

import argparse
import json
import statistics
import threading
import time
import urllib.request


def stream_times(url, model, out, started):
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Tell me a long story about a lighthouse keeper."}],
        "max_tokens": 400,
        "temperature": 0,
        "stream": True,
    }
    req = urllib.request.Request(
        f"{url}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", "cache-control": "no-cache"},
    )
    with urllib.request.urlopen(req, timeout=3600) as r:
        for line in r:
            line = line.strip()
            if not line.startswith(b"data: ") or line == b"data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            choices = chunk.get("choices") or []
            if choices and choices[0].get("delta", {}).get("content"):
                out.append(time.monotonic())
                started.set()


def long_prompt(words):
    vocab = ["river", "stone", "garden", "window", "engine", "copper", "lantern", "meadow",
             "harbor", "violet", "summit", "canvas", "orbit", "timber", "velvet", "signal"]
    body = " ".join(vocab[(i * 7 + i // 16) % len(vocab)] for i in range(words))
    return f"[{time.time_ns()}] Summarize this list in one word: {body}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--words", type=int, default=4000)
    ap.add_argument("--json")
    args = ap.parse_args()

    times, started = [], threading.Event()
    t = threading.Thread(target=stream_times, args=(args.url, args.model, times, started))
    t.start()
    started.wait(600)
    time.sleep(2.0)  # steady decoding first
    body = {"model": args.model, "max_tokens": 1, "temperature": 0,
            "messages": [{"role": "user", "content": long_prompt(args.words)}]}
    req = urllib.request.Request(
        f"{args.url}/v1/chat/completions", data=json.dumps(body).encode(),
        headers={"content-type": "application/json", "cache-control": "no-cache"})
    sent = time.monotonic()
    with urllib.request.urlopen(req, timeout=3600) as r:
        usage = json.loads(r.read()).get("usage", {})
    done = time.monotonic()
    t.join()

    gaps = [(b, b - a) for a, b in zip(times, times[1:])]
    before = [g for at, g in gaps if at < sent]
    during = [g for at, g in gaps if sent <= at <= done]
    after = [g for at, g in gaps if at > done]
    ms = lambda xs: f"{1000 * statistics.median(xs):.0f}" if xs else "-"
    report = {
        "long_prompt_tokens": usage.get("prompt_tokens"),
        "long_prompt_ttft_s": round(done - sent, 2),
        "median_gap_ms": {"before": ms(before), "during": ms(during), "after": ms(after)},
        "max_gap_during_ms": round(1000 * max(during), 0) if during else None,
        "tokens_during": len(during),
    }
    print(json.dumps(report, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
