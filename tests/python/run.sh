#!/usr/bin/env bash
# Start `mlx-serve serve` on a free loopback port, run the openai-client tests against it, stop it.
#
#   tests/python/run.sh [--fake] [-- extra serve args]
#
# MLX_SERVE_BIN: the binary (default: target/debug/mlx-serve under $CARGO_TARGET_DIR or ./target).
# PYTHON: an interpreter with `openai` installed (default: python3; `pip install openai`).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
fake=0
if [[ "${1:-}" == "--fake" ]]; then fake=1; shift; fi
[[ "${1:-}" == "--" ]] && shift
bin="${MLX_SERVE_BIN:-${CARGO_TARGET_DIR:-$here/../../target}/debug/mlx-serve}"
python="${PYTHON:-python3}"
port="$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
args=(serve --host 127.0.0.1 --port "$port")
[[ $fake == 1 ]] && args+=(--fake)
log="$(mktemp)"
"$bin" "${args[@]}" "$@" >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 600); do
  if curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1; then break; fi
  if ! kill -0 $pid 2>/dev/null; then echo "server exited:"; cat "$log"; exit 1; fi
  sleep 0.2
done
curl -sf "http://127.0.0.1:$port/health" >/dev/null || { echo "server never became healthy:"; cat "$log"; exit 1; }
MLX_SERVE_BASE_URL="http://127.0.0.1:$port/v1" MLX_SERVE_FAKE=$fake \
  "$python" "$here/test_openai_client.py"
