#!/usr/bin/env python3
"""Time to first token of a long agent prompt: ours vs llama.cpp's server, same GGUF, one run.

Sends a captured Anthropic Messages request (Claude Code's first request: ~11.8k tokens,
12 tools) to mlx-serve's /v1/messages, and the same conversation rendered with the GGUF's own
chat template to both servers' /v1/completions, each with max_tokens 1 (the time is the prefill
plus one token). A fresh nonce opens the system prompt of every attempt, so no prompt or prefix
cache can serve it: every figure is a cold prefill.

Usage:
  long_prompt_ttft.py --request req.json --gguf model.gguf [--ours http://127.0.0.1:18080] \
      [--llamacpp http://127.0.0.1:18082] [--repeat 1] [--json out.json]
(at least one of --ours and --llamacpp). The request is ~11.8k tokens: llama.cpp needs
`--n_ctx 16384` (scripts/compare.sh starts it with 4096).

Needs jinja2 and the gguf package (both in the llama-cpp-python venv of scripts/compare.sh).
"""

import argparse
import json
import os
import sys
import time
import urllib.request
import uuid


def post(url, body, timeout=3600):
    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", "cache-control": "no-cache",
                 "authorization": "Bearer local", "x-api-key": "local"},
    )
    t0 = time.monotonic()
    with urllib.request.urlopen(req, timeout=timeout) as r:
        out = json.loads(r.read())
    return time.monotonic() - t0, out


def chat_template(gguf_path):
    from gguf import GGUFReader

    reader = GGUFReader(gguf_path)
    field = reader.fields["tokenizer.chat_template"]
    return bytes(field.parts[field.data[0]]).decode()


def text_of(content):
    if isinstance(content, str):
        return content
    parts = []
    for block in content:
        if block.get("type") == "text":
            parts.append(block.get("text", ""))
        elif block.get("type") == "tool_result":
            parts.append(text_of(block.get("content", "")))
    return "\n".join(p for p in parts if p)


def as_chat(request, nonce):
    """The Anthropic request as chat-template messages and tools (how mlx-serve translates it:
    the system blocks joined into one leading system message, `system` turns kept in place)."""
    system = request.get("system", "")
    system = text_of(system) if not isinstance(system, str) else system
    messages = [{"role": "system", "content": f"[{nonce}]\n{system}"}]
    for m in request["messages"]:
        messages.append({"role": m["role"], "content": text_of(m["content"])})
    tools = [
        {"type": "function",
         "function": {"name": t["name"], "description": t.get("description", ""),
                      "parameters": t.get("input_schema", {})}}
        for t in request.get("tools", [])
    ]
    return messages, tools


def render(template, messages, tools):
    import jinja2

    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson"] = lambda v, indent=None: json.dumps(v, ensure_ascii=False, indent=indent)
    return env.from_string(template).render(
        messages=messages, tools=tools, add_generation_prompt=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--request", required=True)
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--ours")
    ap.add_argument("--ours-model", default="qwen2.5-coder-0.5b-instruct")
    ap.add_argument("--llamacpp")
    ap.add_argument("--llamacpp-model", default="qwen2.5-coder-0.5b-instruct")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--json")
    args = ap.parse_args()
    if not args.ours and not args.llamacpp:
        ap.error("give --ours, --llamacpp or both")

    request = json.load(open(args.request))
    template = chat_template(args.gguf)
    rows = []
    load_before = os.getloadavg()
    for i in range(args.repeat):
        nonce = uuid.uuid4().hex[:12]
        messages, tools = as_chat(request, nonce)
        prompt = render(template, messages, tools)

        if args.ours:
            anth = dict(request, model=args.ours_model, max_tokens=1, stream=False)
            sys_blocks = anth.get("system")
            if isinstance(sys_blocks, list) and sys_blocks:
                anth["system"] = [{"type": "text", "text": f"[{nonce}]"}] + sys_blocks
            else:
                anth["system"] = f"[{nonce}]\n{sys_blocks or ''}"
            secs, out = post(f"{args.ours}/v1/messages", anth)
            rows.append({"server": "mlx-serve", "route": "/v1/messages (Claude Code request)",
                         "prompt_tokens": out.get("usage", {}).get("input_tokens"),
                         "seconds": secs})
            print(json.dumps(rows[-1]), file=sys.stderr)

        for name, url, model in [("mlx-serve", args.ours, args.ours_model),
                                 ("llama.cpp", args.llamacpp, args.llamacpp_model)]:
            if not url:
                continue
            # Another nonce: the messages request above must not serve this one's prefix.
            p = prompt.replace(nonce, nonce[::-1])
            secs, out = post(f"{url}/v1/completions",
                             {"model": model, "prompt": p, "max_tokens": 1, "temperature": 0})
            rows.append({"server": name, "route": "/v1/completions (same rendered text)",
                         "prompt_tokens": out.get("usage", {}).get("prompt_tokens"),
                         "seconds": secs})
            print(json.dumps(rows[-1]), file=sys.stderr)

    print("| server | route | prompt tokens | time to first token (s) | prompt tok/s |")
    print("|---|---|---|---|---|")
    for r in rows:
        tps = (r["prompt_tokens"] or 0) / r["seconds"] if r["seconds"] else 0
        print(f"| {r['server']} | {r['route']} | {r['prompt_tokens']} | {r['seconds']:.1f} | {tps:.0f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"load_average_before": load_before, "load_average": os.getloadavg(),
                       "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
