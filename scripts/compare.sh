#!/usr/bin/env bash
# Side-by-side benchmark: mlx-serve vs mlx_lm.server on the same machine and the same weights,
# and optionally vs llama.cpp's OpenAI-compatible server (llama-cpp-python) on the model's GGUF,
# measured with `mlx-serve bench` against each. Prints a markdown table of ours/theirs (and
# ours/llama.cpp) ratios and writes every raw report plus compare.json under $OUT.
#
# Usage: scripts/compare.sh            (ours and mlx_lm)
#        MODEL=gemma3-270m MEASURE=decode scripts/compare.sh   (another catalog model; only the
#            decode measurement)
#        SIDES=theirs scripts/compare.sh   (only mlx_lm; SIDES=ours for only ours)
#        SIDES="ours theirs llamacpp" scripts/compare.sh   (all three)
#        SIDES=llamacpp OUT=target/compare/<earlier run> scripts/compare.sh
#            (adds the llama.cpp column to an earlier run's table)
#
# Sides: ours = mlx-serve on MODEL_DIR; theirs = mlx_lm.server on the same float32 weights;
# llamacpp = llama_cpp.server on the Q4_1 GGUF, the way users run llama.cpp (4-bit weights and
# its own quantized CPU kernels: a different, smaller model file than the other two read). It is
# not in the default SIDES: its venv compiles llama.cpp from source (minutes) on first use.
#
# Environment (all optional):
#   MLX_SERVE     our binary                         [target/release/mlx-serve]
#                 (`cargo build --release --workspace --bins`: `bench load|suite|cache` run the
#                 mlx-serve-bench binary beside it)
#   BENCH         command that runs `bench`          ["$MLX_SERVE bench"]
#   MODEL         catalog model to compare on        [smollm2-135m-instruct]
#   MODEL_DIR     Hugging Face model directory       [target/compare/$MODEL, converted from it]
#   MEASURE       measurements to run, space-separated, from: decode ttft_short ttft_long prefix
#                 cache load suite                   [all of them]
#   MODEL_GGUF    convert this GGUF with scripts/gguf_to_hf.py instead of `mlx-serve convert`
#   OURS_CMD      command that starts our server; $PORT and $MODEL_DIR are substituted
#   OURS_MODEL    model name sent to ours            [first id of its /v1/models]
#   THEIRS_MODEL  model name sent to mlx_lm          [default_model]
#   VENV          throw-away venv for mlx_lm         [/tmp/venv-mlxlm]
#   MLX_LM_VERSION / MLX_VERSION                     [0.32.2 / 0.32.2]
#   OPENBLAS      library LD_PRELOADed into mlx_lm   [Debian's libopenblas.so.0]
#   OURS_PORT / THEIRS_PORT / LLAMACPP_PORT          [18080 / 18081 / 18082]
#   LLAMACPP_VENV  throw-away venv for llama.cpp     [/tmp/venv-llamacpp]
#   LLAMA_CPP_PYTHON_VERSION  llama-cpp-python pin   [0.3.36] (PyPI sdist: cmake builds llama.cpp)
#   LLAMACPP_CMAKE_ARGS  CMAKE_ARGS for that build   [x86_64: GGML_NATIVE=OFF with AVX2/FMA/F16C,
#                  plus AVX-512F/VNNI where /proc/cpuinfo has them, AMX and AVX512-BF16 off;
#                  elsewhere none (llama.cpp's default, -march=native). The -march=native build
#                  crashed (SIGSEGV / general protection fault in libggml-cpu.so) on every
#                  multi-token batch on a Sapphire Rapids-class Xeon (AVX-512, AMX); this one
#                  does not. The args are stamped into the venv: other args rebuild it.]
#   LLAMACPP_GGUF  GGUF served by llama.cpp          [the *.gguf in the models dir's
#                  $MODEL/ ($MLX_SERVE_MODELS or ~/.cache/mlx-serve/models), pulled
#                  with `mlx-serve pull $MODEL` when missing]
#   LLAMACPP_MODEL model alias it serves and bench sends   [$MODEL]
#   LLAMACPP_THREADS  decode and batch threads       [nproc]
#   LLAMACPP_N_CTX    context window                 [4096]
#   LLAMACPP_CACHE    its prompt (KV state) cache, true|false   [true]
#   LLAMACPP_ARGS     more llama_cpp.server arguments
#   QUICK=1       fewer requests (plumbing check, not numbers to publish)
#   ENGINE=0      skip our in-process engine figures and profiles (ours/engine.json, profile*.json)
#   OUT           output directory                   [target/compare/<timestamp>]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
MLX_SERVE=${MLX_SERVE:-$ROOT/target/release/mlx-serve}
BENCH=${BENCH:-"$MLX_SERVE bench"}
MODEL=${MODEL:-smollm2-135m-instruct}
MODEL_DIR=${MODEL_DIR:-$ROOT/target/compare/$MODEL}
MEASURE=${MEASURE:-"decode ttft_short ttft_long prefix cache load suite"}
VENV=${VENV:-/tmp/venv-mlxlm}
MLX_LM_VERSION=${MLX_LM_VERSION:-0.32.2}
MLX_VERSION=${MLX_VERSION:-0.32.2}
OURS_PORT=${OURS_PORT:-18080}
THEIRS_PORT=${THEIRS_PORT:-18081}
LLAMACPP_PORT=${LLAMACPP_PORT:-18082}
LLAMACPP_VENV=${LLAMACPP_VENV:-/tmp/venv-llamacpp}
LLAMA_CPP_PYTHON_VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
# Explicit x86 features instead of -march=native (see LLAMACPP_CMAKE_ARGS above). Each AVX-512
# option only where the CPU has it: a flag the CPU lacks would build code that dies with SIGILL.
default_llamacpp_cmake_args() {
    [ "$(uname -m)" = x86_64 ] && [ -r /proc/cpuinfo ] || return 0
    local flags on512=OFF vnni=OFF f
    flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
    on512=ON
    for f in avx512f avx512cd avx512vl avx512dq avx512bw; do
        case $flags in *" $f "*) ;; *) on512=OFF ;; esac
    done
    if [ "$on512" = ON ]; then case $flags in *" avx512_vnni "*) vnni=ON ;; esac; fi
    echo "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" \
        "-DGGML_AVX512=$on512 -DGGML_AVX512_VNNI=$vnni -DGGML_AVX512_BF16=OFF" \
        "-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
}
LLAMACPP_CMAKE_ARGS=${LLAMACPP_CMAKE_ARGS-$(default_llamacpp_cmake_args)}
LLAMACPP_MODEL=${LLAMACPP_MODEL:-$MODEL}
LLAMACPP_THREADS=${LLAMACPP_THREADS:-$(nproc)}
LLAMACPP_N_CTX=${LLAMACPP_N_CTX:-4096}
LLAMACPP_CACHE=${LLAMACPP_CACHE:-true}
LLAMACPP_ARGS=${LLAMACPP_ARGS:-}
OURS_CMD=${OURS_CMD:-"$MLX_SERVE serve --model \$MODEL_DIR --host 127.0.0.1 --port \$PORT"}
OURS_MODEL=${OURS_MODEL:-}
THEIRS_MODEL=${THEIRS_MODEL:-default_model}
SIDES=${SIDES:-"ours theirs"}
QUICK=${QUICK:-0}
READY_TIMEOUT=${READY_TIMEOUT:-600}
OUT=${OUT:-$ROOT/target/compare/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"

log() { echo "[compare] $*" >&2; }

if [ -z "${OPENBLAS:-}" ]; then
    for lib in /usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0 \
        /usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0 \
        /usr/lib/x86_64-linux-gnu/libopenblas.so.0; do
        if [ -e "$lib" ]; then OPENBLAS=$lib; break; fi
    done
fi
if [ -z "${OPENBLAS:-}" ]; then
    log "WARNING: no OpenBLAS found; mlx_lm will run on the wheel's reference BLAS (~3x slower)"
fi

ensure_venv() {
    if [ -x "$VENV/bin/mlx_lm.server" ]; then return; fi
    log "creating $VENV with mlx-lm==$MLX_LM_VERSION mlx==$MLX_VERSION mlx-cpu==$MLX_VERSION"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "mlx==$MLX_VERSION" "mlx-cpu==$MLX_VERSION" \
        "mlx-lm==$MLX_LM_VERSION" gguf
}

# llama-cpp-python is an sdist: pip compiles llama.cpp with cmake and a C/C++ compiler (~12
# minutes on 2 cores). Without a cmake on PATH its build backend fetches cmake from PyPI.
# --no-cache-dir: pip's wheel cache is keyed by the sdist, not by CMAKE_ARGS, so a wheel built
# earlier with other flags (the crashing -march=native one) would otherwise be reinstalled.
# gguf (and jinja2, a llama-cpp-python dependency) serve scripts/long_prompt_ttft.py.
ensure_llamacpp_venv() {
    local stamp=$LLAMACPP_VENV/.mlx-serve-cmake-args
    if "$LLAMACPP_VENV/bin/python" -c 'import llama_cpp.server, gguf, jinja2' 2>/dev/null; then
        if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$LLAMACPP_CMAKE_ARGS" ]; then return; fi
        log "$LLAMACPP_VENV was built with other CMAKE_ARGS (or unknown ones): rebuilding"
    fi
    command -v c++ >/dev/null || log "WARNING: no C++ compiler on PATH; the build will fail"
    log "creating $LLAMACPP_VENV with llama-cpp-python[server]==$LLAMA_CPP_PYTHON_VERSION" \
        "(compiles llama.cpp with CMAKE_ARGS='$LLAMACPP_CMAKE_ARGS';" \
        "log: $LLAMACPP_VENV.install.log)"
    python3 -m venv "$LLAMACPP_VENV"
    rm -f "$stamp"
    if ! CMAKE_ARGS=$LLAMACPP_CMAKE_ARGS "$LLAMACPP_VENV/bin/pip" install --no-cache-dir \
        --force-reinstall "llama-cpp-python[server]==$LLAMA_CPP_PYTHON_VERSION" jinja2 gguf \
        >"$LLAMACPP_VENV.install.log" 2>&1; then
        tail -n 30 "$LLAMACPP_VENV.install.log" >&2
        log "llama-cpp-python install failed; full log: $LLAMACPP_VENV.install.log"
        return 1
    fi
    printf '%s' "$LLAMACPP_CMAKE_ARGS" >"$stamp"
}

find_gguf() {
    local dir=${MLX_SERVE_MODELS:-}
    if [ -z "$dir" ]; then
        local cache=${XDG_CACHE_HOME:-}
        case $cache in /*) ;; *) cache=$HOME/.cache ;; esac
        dir=$cache/mlx-serve/models
    fi
    find "$dir/$MODEL" -maxdepth 1 -name '*.gguf' 2>/dev/null | sort | head -n 1 ||
        true
}

ensure_gguf() {
    if [ -n "${LLAMACPP_GGUF:-}" ]; then return; fi
    LLAMACPP_GGUF=$(find_gguf)
    if [ -z "$LLAMACPP_GGUF" ]; then
        "$MLX_SERVE" pull "$MODEL" >&2 || log "mlx-serve pull failed"
        LLAMACPP_GGUF=$(find_gguf)
    fi
    if [ -z "$LLAMACPP_GGUF" ]; then
        log "no GGUF for llama.cpp; set LLAMACPP_GGUF"
        return 1
    fi
}

ensure_weights() {
    if [ -f "$MODEL_DIR/config.json" ]; then return; fi
    if [ -n "${MODEL_GGUF:-}" ]; then
        ensure_venv
        "$VENV/bin/python" "$ROOT/scripts/gguf_to_hf.py" "$MODEL_GGUF" "$MODEL_DIR"
    else
        "$MLX_SERVE" convert --model "$MODEL" --out "$MODEL_DIR"
    fi
}

SERVER_PID=""
stop_server() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.2
        done
        kill -9 "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
}
trap stop_server EXIT

wait_ready() {
    local url=$1 deadline=$((SECONDS + READY_TIMEOUT))
    while [ $SECONDS -lt $deadline ]; do
        if curl -sf -m 5 "$url/v1/models" >/dev/null 2>&1; then return 0; fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            log "server exited before becoming ready"
            return 1
        fi
        sleep 1
    done
    log "server not ready after ${READY_TIMEOUT}s"
    return 1
}

start_server() {
    local side=$1
    if [ "$side" = ours ]; then
        local cmd=${OURS_CMD//\$MODEL_DIR/$MODEL_DIR}
        cmd=${cmd//\$PORT/$OURS_PORT}
        log "starting ours: $cmd"
        # `env` so that OURS_CMD may start with VAR=value assignments.
        bash -c "exec env $cmd" >"$OUT/ours/server.log" 2>&1 &
        SERVER_PID=$!
        URL=http://127.0.0.1:$OURS_PORT
    elif [ "$side" = llamacpp ]; then
        ensure_llamacpp_venv
        ensure_gguf
        # No --chat_format: the server then uses the GGUF's own chat template. --cache keeps the
        # KV state of earlier prompts in RAM for prefix reuse (llama.cpp's prompt cache).
        local args=(--model "$LLAMACPP_GGUF" --model_alias "$LLAMACPP_MODEL"
            --host 127.0.0.1 --port "$LLAMACPP_PORT" --n_ctx "$LLAMACPP_N_CTX"
            --n_threads "$LLAMACPP_THREADS" --n_threads_batch "$LLAMACPP_THREADS"
            --cache "$LLAMACPP_CACHE" $LLAMACPP_ARGS)
        log "starting llama_cpp.server: ${args[*]}"
        "$LLAMACPP_VENV/bin/python" -m llama_cpp.server "${args[@]}" \
            >"$OUT/llamacpp/server.log" 2>&1 &
        SERVER_PID=$!
        URL=http://127.0.0.1:$LLAMACPP_PORT
    elif [ "$side" = theirs ]; then
        ensure_venv
        log "starting mlx_lm.server (LD_PRELOAD=${OPENBLAS:-none})"
        LD_PRELOAD=${OPENBLAS:-} "$VENV/bin/mlx_lm.server" --model "$MODEL_DIR" \
            --host 127.0.0.1 --port "$THEIRS_PORT" >"$OUT/theirs/server.log" 2>&1 &
        SERVER_PID=$!
        URL=http://127.0.0.1:$THEIRS_PORT
    else
        log "unknown side '$side' (ours, theirs or llamacpp)"
        return 1
    fi
    wait_ready "$URL"
}

# The long prompt: ~1,000 tokens that a prefix cache can reuse.
python3 - "$OUT/long_prompt.txt" "$OUT/decode_prompt.txt" <<'PY'
import sys
notes = ["Here are notes about the town of Arden. Read them, then answer."]
for i in range(44):
    notes.append(f"Note {i}: the bakery on street {i % 17} opens at {6 + i % 5} o'clock "
                 f"and sells {20 + i * 3} loaves.")
notes.append("Question: which street has the bakery that sells the most loaves?")
open(sys.argv[1], "w").write("\n".join(notes))
open(sys.argv[2], "w").write("Write a long, detailed essay about the history of bread, "
                             "from ancient Egypt to modern bakeries.")
PY

if [ "$QUICK" = 1 ]; then N_DECODE=1; N_TTFT=2; N_CACHE=50; PER_C=1; else N_DECODE=3; N_TTFT=3; N_CACHE=500; PER_C=2; fi

# One measurement (when MEASURE names its kind); a failure is logged and leaves a gap in the
# table instead of ending the run.
step() {
    local name=$1 kind=${1#* }
    kind=${kind%% *}
    shift
    case " $MEASURE " in *" $kind "*) ;; *) return 0 ;; esac
    "$@" >/dev/null || log "$name failed (exit $?)"
}

measure() {
    local side=$1 url=$2 dir=$OUT/$1
    # mlx_lm.server maps the model name "default_model" to the one it was started with; other
    # names make it look for a Hugging Face repo. Ours answers /v1/models, so bench asks it.
    local m=()
    if [ "$side" = theirs ]; then m=(--model "$THEIRS_MODEL"); fi
    if [ "$side" = ours ] && [ -n "$OURS_MODEL" ]; then m=(--model "$OURS_MODEL"); fi
    if [ "$side" = llamacpp ]; then m=(--model "$LLAMACPP_MODEL"); fi
    local b=($BENCH)
    local common=(--url "$url" "${m[@]}" --quiet)
    # Every run is bounded by a request count and --max-duration. One unmeasured request first
    # (a distinct prompt: --vary start) so that no side's first-request start-up lands in a
    # three-request median.
    step "$side decode" "${b[@]}" load "${common[@]}" -c 1 --warmup 1 --requests "$N_DECODE" --stream \
        --max-tokens 128 --vary start --prompt-file "$OUT/decode_prompt.txt" --max-duration 10m \
        --out "$dir/decode.json"
    step "$side ttft_short" "${b[@]}" load "${common[@]}" -c 1 --warmup 1 --requests "$N_TTFT" --stream \
        --max-tokens 1 --vary start --max-duration 5m --out "$dir/ttft_short.json"
    step "$side ttft_long" "${b[@]}" load "${common[@]}" -c 1 --warmup 1 --requests 2 --stream \
        --max-tokens 1 --vary start --prompt-file "$OUT/long_prompt.txt" --max-duration 10m \
        --out "$dir/ttft_long.json"
    # vary=end: the warm-up request fills the prefix cache; the measured ones share its prefix.
    step "$side prefix" "${b[@]}" load "${common[@]}" -c 1 --warmup 1 --requests "$N_TTFT" \
        --stream --max-tokens 1 --vary end --prompt-file "$OUT/long_prompt.txt" \
        --max-duration 10m --out "$dir/prefix.json"
    step "$side cache" "${b[@]}" cache "${common[@]}" --n "$N_CACHE" -c 4 --max-duration 2m \
        --out "$dir/cache.json"
    for c in 1 4 8 16; do
        step "$side load c=$c" "${b[@]}" load "${common[@]}" -c "$c" --requests $((PER_C * c)) \
            --max-tokens 32 --vary start --max-duration 5m --out "$dir/load_c$c.json"
    done
    step "$side suite" "${b[@]}" suite --url "$url" "${m[@]}" --out "$dir/suite.json"
}

# llama.cpp reads the GGUF, not MODEL_DIR.
case " $SIDES " in *" ours "* | *" theirs "*) ensure_weights ;; esac
# Our engine alone, in-process, before our server starts (nothing else running): its decode rate
# is what the HTTP + actor overhead is measured against, and the per-operation profiles (ours, and
# with MLX's stock operations) show where prefill and decode time goes.
measure_engine() {
    local dir=$OUT/ours engine=("$MLX_SERVE" bench engine --model "$MODEL_DIR" --long-prompt 1000)
    "${engine[@]}" --prompt-file "$OUT/decode_prompt.txt" --json >"$dir/engine.json" ||
        log "ours engine failed (exit $?)"
    "${engine[@]}" --profile --tokens 32 --json >"$dir/profile.json" ||
        log "ours profile failed (exit $?)"
    MLX_SERVE_STOCK_OPS=all "${engine[@]}" --profile --tokens 32 --json \
        >"$dir/profile_stock.json" || log "stock-ops profile failed (exit $?)"
}

for side in $SIDES; do
    mkdir -p "$OUT/$side"
    if [ "$side" = ours ] && [ "${ENGINE:-1}" = 1 ]; then measure_engine; fi
    start_server "$side"
    log "measuring $side at $URL"
    measure "$side" "$URL"
    stop_server
done

{
    echo "mlx_lm: $("$VENV/bin/pip" show mlx-lm 2>/dev/null | grep -i '^version' || echo unknown)"
    echo "mlx: $("$VENV/bin/pip" show mlx-cpu 2>/dev/null | grep -i '^version' || echo unknown)"
    echo "ours: $("$MLX_SERVE" --version 2>/dev/null || echo unknown)"
    echo "openblas: ${OPENBLAS:-none}"
    if [ -x "$LLAMACPP_VENV/bin/pip" ]; then
        echo "llama-cpp-python: $("$LLAMACPP_VENV/bin/pip" show llama-cpp-python 2>/dev/null |
            grep -i '^version' || echo unknown)"
        echo "llama.cpp gguf: ${LLAMACPP_GGUF:-$(find_gguf)}"
        echo "llama.cpp threads: $LLAMACPP_THREADS, n_ctx: $LLAMACPP_N_CTX, cache: $LLAMACPP_CACHE"
        echo "llama.cpp CMAKE_ARGS: $(cat "$LLAMACPP_VENV/.mlx-serve-cmake-args" 2>/dev/null ||
            echo unknown)"
    fi
} >"$OUT/versions.txt"
python3 "$ROOT/scripts/compare_report.py" "$OUT"
