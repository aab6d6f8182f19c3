#!/usr/bin/env bash
# Device check on a single-GPU machine, in under 8 minutes: trains the gpu_smoke model (~0.11B) with the
# real training job for a few hundred steps and prints tokens/s and MFU, exports it, compares vLLM's
# log-probs with transformers' (when vLLM is installed), serves it and sends one chat request.
#   benchmarks/gpu_check.sh                 # on the GPU machine, from the repo root
#   benchmarks/gpu_check.sh --cpu --steps 5 --model micro   # the same phases on CPU (what the tests run)
# The last line is `RESULT {json}` with every number.
#
# What it needs beyond torch + transformers: the training job imports deepspeed and omegaconf (the typed
# configs), serving needs fastapi + uvicorn (+ pydantic). On a machine without network, put wheels in
# .whl/ at the repo root; they are installed with --no-index --no-deps into /tmp/site. From a networked
# machine with the same Python (3.12 here):
#   pip wheel --no-deps -w .whl deepspeed hjson py-cpuinfo einops omegaconf antlr4-python3-runtime==4.9.3 \
#       fastapi starlette uvicorn h11 click annotated-types annotated-doc typing-inspection pydantic \
#       opentelemetry-api importlib-metadata zipp   # fastapi imports opentelemetry
#   pip download --no-deps -d .whl --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
#       pydantic-core msgpack psutil ninja
# (versions: whatever pairs with the machine's torch; pydantic-core must be the one its pydantic pins).
# vLLM itself is the `gpu` extra (pip install -e '.[gpu]'); without it the log-prob comparison is skipped
# and serving uses the transformers backend.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$(command -v python3 || command -v python)}"  # GPU images often have only python3
if compgen -G ".whl/*.whl" > /dev/null; then
  "$PYTHON" -m pip install --quiet --no-index --no-deps --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}"
export DS_BUILD_OPS=0  # DeepSpeed: no JIT-compiled ops (the loop uses torch's AdamW)
exec timeout 470 "$PYTHON" benchmarks/gpu_check.py "$@"
