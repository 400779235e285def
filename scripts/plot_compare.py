#!/usr/bin/env python3
"""Plot throughput and p95 latency against concurrency from `scripts/compare.sh` output.

Usage: scripts/plot_compare.py OUT.png SIDE_LABEL=DIR [SIDE_LABEL=DIR ...]
where DIR holds load_c1.json, load_c4.json, load_c16.json (a side's folder of a compare run).
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

out = sys.argv[1]
fig, (tput, lat) = plt.subplots(1, 2, figsize=(10, 4))
for arg in sys.argv[2:]:
    label, folder = arg.split("=", 1)
    xs, tok_s, p95 = [], [], []
    for c in (1, 4, 16):
        report = json.load(open(f"{folder}/load_c{c}.json"))
        xs.append(c)
        tok_s.append(report["generated_tokens_per_s"])
        p95.append(report["latency_ms"]["p95"] / 1000)
    tput.plot(xs, tok_s, marker="o", label=label)
    lat.plot(xs, p95, marker="o", label=label)
for ax, title, unit in ((tput, "throughput", "generated tokens/s"), (lat, "latency p95", "seconds")):
    ax.set_xscale("log", base=2)
    ax.set_xticks([1, 4, 16], ["1", "4", "16"])
    ax.set_xlabel("concurrent requests")
    ax.set_ylabel(unit)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
fig.suptitle("SmolLM2-135M-Instruct f32, 2 CPU cores, 32 tokens per request")
fig.tight_layout()
fig.savefig(out, dpi=80)
