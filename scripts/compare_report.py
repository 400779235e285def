#!/usr/bin/env python3
"""Turn the `bench` reports under OUT/{ours,theirs}/ into a markdown table (stdout) and
OUT/compare.json. Ratios are ours/theirs; the "better" column says which side the ratio favours.
When OUT/llamacpp/ exists (llama.cpp's server, `SIDES=... llamacpp`), the table gains its values,
the ratio ours/llama.cpp and which of the two that favours; compare.json rows gain "llamacpp",
"ratio_ours_over_llamacpp" and "ours_better_than_llamacpp"."""
import json
import os
import platform
import sys

# (label, file, JSON path, higher_is_better)
METRICS = [
    ("decode tok/s (p50, 1 stream)", "decode.json", ["decode_tokens_per_s", "p50"], True),
    ("TTFT short prompt ms (p50)", "ttft_short.json", ["ttft_ms", "p50"], False),
    ("TTFT ~1,000-token prompt ms (p50)", "ttft_long.json", ["ttft_ms", "p50"], False),
    ("TTFT shared prefix, new question ms (p50)", "prefix.json", ["ttft_ms", "p50"], False),
    ("cache hit latency ms (p50)", "cache.json", ["hit_latency_ms", "p50"], False),
    ("cache hit latency ms (p99)", "cache.json", ["hit_latency_ms", "p99"], False),
    ("cache hits/s (4 connections)", "cache.json", ["hits_per_s"], True),
    ("throughput c=1 tok/s", "load_c1.json", ["generated_tokens_per_s"], True),
    ("throughput c=4 tok/s", "load_c4.json", ["generated_tokens_per_s"], True),
    ("throughput c=8 tok/s", "load_c8.json", ["generated_tokens_per_s"], True),
    ("throughput c=16 tok/s", "load_c16.json", ["generated_tokens_per_s"], True),
    ("throughput c=16 req/s", "load_c16.json", ["requests_per_s"], True),
    ("latency c=16 ms (p95)", "load_c16.json", ["latency_ms", "p95"], False),
    ("suite success rate", "suite.json", ["summary", "success_rate"], True),
]


def value(out, side, fname, path):
    try:
        with open(os.path.join(out, side, fname)) as f:
            v = json.load(f)
    except (OSError, ValueError):
        return None
    for key in path:
        if not isinstance(v, dict):
            return None
        v = v.get(key)
    return v if isinstance(v, (int, float)) else None


def compare(ours, other, higher):
    """(ours/other, whether that favours ours: None when missing or within 2%)."""
    ratio = ours / other if ours is not None and other not in (None, 0) else None
    if ratio is None or abs(ratio - 1.0) < 0.02:
        return ratio, None  # missing, or within noise: no winner
    return ratio, (ratio > 1.0 if higher else ratio < 1.0)


def fmt(v):
    if v is None:
        return "–"
    return f"{v:.3g}" if abs(v) < 100 else f"{v:,.0f}"


def main(out):
    llamacpp = os.path.isdir(os.path.join(out, "llamacpp"))
    rows = []
    for label, fname, path, higher in METRICS:
        ours = value(out, "ours", fname, path)
        theirs = value(out, "theirs", fname, path)
        ratio, wins = compare(ours, theirs, higher)
        row = {"metric": label, "ours": ours, "theirs": theirs,
               "ratio_ours_over_theirs": ratio, "higher_is_better": higher,
               "ours_better": wins}
        if llamacpp:
            lc = value(out, "llamacpp", fname, path)
            lc_ratio, lc_wins = compare(ours, lc, higher)
            row.update({"llamacpp": lc, "ratio_ours_over_llamacpp": lc_ratio,
                        "ours_better_than_llamacpp": lc_wins})
        rows.append(row)
    machine = {"platform": platform.platform(), "machine": platform.machine(),
               "cpus": os.cpu_count(),
               # The box may be shared: a high load average means slower numbers on both sides.
               "loadavg_at_report": os.getloadavg()}
    versions = os.path.join(out, "versions.txt")
    if os.path.exists(versions):
        with open(versions) as f:
            machine["versions"] = f.read().strip().splitlines()
    print(f"Machine: {machine['platform']}, {machine['cpus']} CPUs, load average "
          f"{machine['loadavg_at_report'][0]:.1f}. Raw reports: {out}\n")
    with open(os.path.join(out, "compare.json"), "w") as f:
        json.dump({"machine": machine, "rows": rows}, f, indent=2)
    head = "| metric | mlx-serve | mlx_lm.server | ours/theirs | better |"
    rule = "|---|---:|---:|---:|---|"
    if llamacpp:
        head += " llama.cpp | ours/llama.cpp | better |"
        rule += "---:|---:|---|"
    print(head)
    print(rule)
    for r in rows:
        better = {None: "–", True: "ours", False: "theirs"}[r["ours_better"]]
        line = (f"| {r['metric']} | {fmt(r['ours'])} | {fmt(r['theirs'])} | "
                f"{fmt(r['ratio_ours_over_theirs'])} | {better} |")
        if llamacpp:
            lc_better = {None: "–", True: "ours", False: "llama.cpp"}[
                r["ours_better_than_llamacpp"]]
            line += (f" {fmt(r['llamacpp'])} | {fmt(r['ratio_ours_over_llamacpp'])} |"
                     f" {lc_better} |")
        print(line)

    engine_section(out)


def load(out, side, fname):
    try:
        with open(os.path.join(out, side, fname)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def engine_section(out):
    """Our server's decode against our engine's own (HTTP + actor overhead), and the profiles."""
    engine = load(out, "ours", "engine.json")
    http = value(out, "ours", "decode.json", ["decode_tokens_per_s", "p50"])
    if engine:
        bare = engine["bare"]["decode_tok_s"]
        print(f"\nEngine alone: bare forward {bare:.1f} tok/s "
              f"(graph building {engine['bare'].get('graph_build_ms_per_token', 0):.2f} ms/token), "
              f"engine {engine['engine']['decode_tok_s']:.1f} tok/s; cold prefill "
              f"{engine['long_prompt']['cold_prefill_tok_s']:.0f} tok/s "
              f"({engine['long_prompt']['prompt_tokens']} tokens).")
        if http:
            print(f"HTTP + actor overhead on decode: server {http:.1f} tok/s vs bare forward "
                  f"{bare:.1f} tok/s = {(1 - http / bare) * 100:+.1f}% of decode time.")
    ours, stock = load(out, "ours", "profile.json"), load(out, "ours", "profile_stock.json")
    if not ours:
        return
    for phase in ("prefill", "decode"):
        print(f"\nProfile, {phase} ({ours['prompt_tokens']}-token prompt, ms per pass):\n")
        mine = {g["group"]: g["ms_per_pass"] for g in ours[phase]["groups"]}
        theirs = {g["group"]: g["ms_per_pass"] for g in (stock or {}).get(phase, {}).get("groups", [])}
        print("| operations | ours | MLX stock ops |\n|---|---:|---:|")
        for group in list(dict.fromkeys(list(theirs) + list(mine))):
            print(f"| {group} | {fmt(mine.get(group))} | {fmt(theirs.get(group))} |")
        total = lambda p: p[phase]["total_ms"] / max(p[phase]["passes"], 1)
        print(f"| **total** | **{fmt(total(ours))}** | **{fmt(total(stock) if stock else None)}** |")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
