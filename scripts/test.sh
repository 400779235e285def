#!/usr/bin/env bash
# The test command: every Rust test (unit, protocol against the fake engine, end to end on the real
# default model), then the official `openai`/`anthropic` Python clients against the real server.
# Needs only Rust, Python 3 with pip and a C/C++ compiler; MLX, cmake, libclang and the model are
# fetched by the build and the tests themselves.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR=never
# The layering holds: no module-level dependency cycles in the front or the runtime.
python3 scripts/module_cycles.py src engine/src actors/src bench/src
# Pull the default model once up front, so no single test pays for it on its own clock.
cargo build --workspace --bins
./target/debug/mlx-serve pull smollm2-135m-instruct

set +e
cargo test --workspace --no-fail-fast
rust_status=$?
set -e

# The benchmark suite's scenarios against the real server (it exits non-zero when one fails).
set +e
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
./target/debug/mlx-serve serve --host 127.0.0.1 --port "$port" > target/bench-suite-server.log 2>&1 &
server=$!
for _ in $(seq 1 600); do
  curl -sf "http://127.0.0.1:$port/health" > /dev/null 2>&1 && break
  sleep 0.2
done
./target/debug/mlx-serve bench suite --url "http://127.0.0.1:$port" --out target/bench-suite.json > /dev/null
suite_status=$?
kill "$server" 2> /dev/null
wait "$server" 2> /dev/null
if [ "$suite_status" = 0 ]; then echo "bench suite: all scenarios passed"; else echo "bench suite: FAILED (target/bench-suite.json)"; fi
set -e

venv=target/pyenv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check openai anthropic pytest jsonschema
set +e
MLX_SERVE_BIN="$PWD/target/debug/mlx-serve" "$venv/bin/python" -m pytest tests/python -q -p no:cacheprovider
py_status=$?
set -e

exit $(( rust_status != 0 || py_status != 0 || suite_status != 0 ))
