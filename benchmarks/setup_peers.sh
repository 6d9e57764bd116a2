#!/usr/bin/env bash
# setup_peers.sh — (re)create the benchmark venv with the peer engines edgert is measured against.
#
# Creates $BENCH_VENV (default /work/bench-venv) from scratch: llama-cpp-python built from source
# (its wheel cached in $BENCH_CACHE, default /work/bench-cache, so a second run is fast),
# ctranslate2, onnxruntime-genai, gguf, transformers, torch (CPU), matplotlib, psutil, and edgert
# itself when the repo's native code builds. Logs go to $BENCH_CACHE/*.log.
#
# llama.cpp is built for a portable AVX-512 target without AMX (GGML_NATIVE=OFF): ggml's AMX path
# crashed on the first benchmark machine, and a -march=native build would not be comparable with
# edgert's runtime-dispatched kernels anyway. Override with LLAMA_CMAKE_ARGS.
#
# Usage: bash benchmarks/setup_peers.sh [--no-edgert]
set -euo pipefail

BENCH_VENV=${BENCH_VENV:-/work/bench-venv}
BENCH_CACHE=${BENCH_CACHE:-/work/bench-cache}
PYTHON=${PYTHON:-python3}
LLAMA_CPP_VERSION=${LLAMA_CPP_VERSION:-0.3.36}
REPO=$(cd "$(dirname "$0")/.." && pwd)
WITH_EDGERT=1
[[ "${1:-}" == "--no-edgert" ]] && WITH_EDGERT=0

mkdir -p "$BENCH_CACHE/wheels"
log() { echo "[setup_peers $(date +%H:%M:%S)] $*"; }

LLAMA_CMAKE_ARGS=${LLAMA_CMAKE_ARGS:-"-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX_VNNI=ON -DGGML_AVX512_BF16=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DLLAMA_CURL=OFF -DGGML_OPENMP=ON"}

if [[ ! -x "$BENCH_VENV/bin/python" ]]; then
    log "creating $BENCH_VENV"
    "$PYTHON" -m venv "$BENCH_VENV"
fi
PIP="$BENCH_VENV/bin/python -m pip"

log "installing the Python peers (log: $BENCH_CACHE/pip-peers.log)"
$PIP install -q --upgrade pip wheel setuptools >"$BENCH_CACHE/pip-peers.log" 2>&1
$PIP install torch==2.13.0 numpy gguf matplotlib psutil transformers safetensors tokenizers \
    sentencepiece ctranslate2 onnxruntime onnxruntime-genai onnx onnx-ir pybind11 scikit-build-core \
    cmake ninja >>"$BENCH_CACHE/pip-peers.log" 2>&1

# llama-cpp-python: build its wheel once, then install from the cache.
wheel=$(ls "$BENCH_CACHE"/wheels/llama_cpp_python-"$LLAMA_CPP_VERSION"-*.whl 2>/dev/null | head -1 || true)
if [[ -z "$wheel" ]]; then
    log "building llama-cpp-python $LLAMA_CPP_VERSION from source (slow; log: $BENCH_CACHE/llama-cpp-build.log)"
    CMAKE_ARGS="$LLAMA_CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2} \
        nice -n 19 $PIP wheel --no-deps --no-binary llama-cpp-python -w "$BENCH_CACHE/wheels" -v \
        "llama-cpp-python==$LLAMA_CPP_VERSION" >"$BENCH_CACHE/llama-cpp-build.log" 2>&1
    wheel=$(ls "$BENCH_CACHE"/wheels/llama_cpp_python-"$LLAMA_CPP_VERSION"-*.whl | head -1)
fi
log "installing $wheel"
$PIP install "$wheel" >>"$BENCH_CACHE/pip-peers.log" 2>&1
$PIP install typing-extensions diskcache jinja2 >>"$BENCH_CACHE/pip-peers.log" 2>&1

if [[ $WITH_EDGERT == 1 ]]; then
    if [[ -f "$REPO/setup.py" || -f "$REPO/pyproject.toml" ]]; then
        log "installing edgert from $REPO (log: $BENCH_CACHE/edgert-build.log)"
        if ! nice -n 19 $PIP install "$REPO" >"$BENCH_CACHE/edgert-build.log" 2>&1; then
            log "edgert did not build; see $BENCH_CACHE/edgert-build.log (peers are installed)"
        fi
    else
        log "no setup.py/pyproject.toml in $REPO yet: edgert not installed (peers are)"
    fi
fi

(cd / && "$BENCH_VENV/bin/python" - <<'PY'
import importlib
for name in ["llama_cpp", "ctranslate2", "onnxruntime_genai", "gguf", "torch", "transformers",
             "matplotlib", "psutil", "edgert"]:
    try:
        m = importlib.import_module(name)
        print(f"  {name:18s} {getattr(m, '__version__', 'ok')}")
    except Exception as e:  # report, do not fail: edgert may not exist yet
        print(f"  {name:18s} MISSING ({type(e).__name__}: {e})")
PY
)
log "done"
