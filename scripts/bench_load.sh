#!/usr/bin/env bash
# Load-time benchmark: per catalog model, the time `mlx-serve generate` reports for loading it
# (reading the GGUF, dequantizing to float32, building the model, one warm-up pass), cold (the
# GGUF evicted from the page cache first, with posix_fadvise DONTNEED on that file only) and from
# the page cache; then the time to the first token of a request that makes a running server
# load the model (a [[models]] table, nothing preloaded: non-streamed, max_tokens 1).
#
# Usage: scripts/bench_load.sh [MODEL...]   [smollm2-135m-instruct qwen2.5-coder-0.5b-instruct
#                                             gemma3-270m]
# Environment: MLX_SERVE (binary) [target/release/mlx-serve], PORT [18090].
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
MLX_SERVE=${MLX_SERVE:-$ROOT/target/release/mlx-serve}
PORT=${PORT:-18090}
MODELS=("$@")
[ ${#MODELS[@]} -gt 0 ] || MODELS=(smollm2-135m-instruct qwen2.5-coder-0.5b-instruct gemma3-270m)

models_dir() {
    if [ -n "${MLX_SERVE_MODELS:-}" ]; then echo "$MLX_SERVE_MODELS"; return; fi
    local cache=${XDG_CACHE_HOME:-}
    case $cache in /*) ;; *) cache=$HOME/.cache ;; esac
    echo "$cache/mlx-serve/models"
}

gguf_of() { find "$(models_dir)/$1" -maxdepth 1 -name '*.gguf' | head -n 1; }

evict() {
    python3 - "$1" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
os.fsync(fd)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
os.close(fd)
PY
}

cached_share() { fincore --noheadings --bytes --output RES,SIZE "$1" | awk '{printf "%.0f%%", 100 * $1 / $2}'; }

load_once() {
    # `generate` prints "… loaded in N.NNs" on stderr.
    "$MLX_SERVE" generate --model "$1" --raw -p "Hello" --max-tokens 1 2>&1 >/dev/null |
        sed -n 's/.*loaded in \([0-9.]*\)s.*/\1/p'
}

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| model | GGUF | cold load | page-cache load |"
echo "|---|---:|---:|---:|"
for m in "${MODELS[@]}"; do
    "$MLX_SERVE" pull "$m" >/dev/null 2>&1
    f=$(gguf_of "$m")
    evict "$f"
    before=$(cached_share "$f")
    cold=$(load_once "$m")
    warm=$(load_once "$m")
    size=$(du -m "$f" | cut -f1)
    echo "| $m | $size MB (cached before the cold run: $before) | ${cold} s | ${warm} s |"
done

# Time to first token of a request that loads its model.
conf=$(mktemp --suffix .toml)
{
    echo "[server]"
    echo "host = \"127.0.0.1\""
    echo "port = $PORT"
    echo "max_loaded_models = 1"
    for m in "${MODELS[@]}"; do
        printf '\n[[models]]\nname = "%s"\n' "$m"
    done
} >"$conf"
log=$(mktemp)
"$MLX_SERVE" serve --config "$conf" >"$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; rm -f "$conf"; true' EXIT
for _ in $(seq 1 300); do
    curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
    sleep 0.2
done
echo
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| model | TTFT, request that loads it (page cache) | TTFT, model resident |"
echo "|---|---:|---:|"
for m in "${MODELS[@]}"; do
    # Two different prompts, so that the response cache cannot answer the second.
    t() {
        curl -s -o /dev/null -w '%{time_total}' "http://127.0.0.1:$PORT/v1/completions" \
            -H 'content-type: application/json' \
            -d "{\"model\": \"$m\", \"prompt\": \"$1\", \"max_tokens\": 1, \"temperature\": 0}"
    }
    first=$(t "The capital of France is")
    again=$(t "The capital of Spain is")
    echo "| $m | ${first} s | ${again} s |"
done
kill $server 2>/dev/null || true
wait $server 2>/dev/null || true
