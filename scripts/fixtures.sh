#!/usr/bin/env bash
# Generate test fixtures into .cache/ (ONNX node cases + exported test models + torch.export .pt2 models).
# Works from nothing on a fresh Debian machine (root): creates .venv, installs wheels, runs generators.
# Usage: scripts/fixtures.sh [model names for gen_models.py ...]
set -euo pipefail
cd "$(dirname "$0")/.."

PY=.venv/bin/python
if [ ! -x "$PY" ]; then
  if ! python3 -m venv .venv >/dev/null 2>&1; then
    rm -rf .venv
    echo "fixtures: installing python3-venv" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv) >/dev/null
    python3 -m venv .venv
  fi
fi

PKGS="onnx onnxruntime numpy torch torchvision transformers"
# find_spec, not import: torchvision 0.28 cannot be imported plainly with torch 2.13 (see gen_models.py)
if ! "$PY" -c "import importlib.util as u, sys; sys.exit(any(u.find_spec(m) is None for m in sys.argv[1:]))" \
    onnx onnxruntime numpy torch torchvision transformers; then
  echo "fixtures: pip install $PKGS" >&2
  LOG=$(mktemp)
  if ! "$PY" -m pip install -q --disable-pip-version-check --retries 0 --timeout 3 $PKGS >"$LOG" 2>&1; then
    tail -n 30 "$LOG" >&2; exit 1
  fi
  rm -f "$LOG"
fi

"$PY" scripts/gen_onnx_node_cases.py
"$PY" scripts/gen_models.py "$@"
# quantized and float16 variants of the small models (issue 16); they need the float32 models of a full run
if [ $# -eq 0 ]; then "$PY" scripts/gen_quantized_models.py; fi
"$PY" scripts/gen_pytorch_models.py
"$PY" scripts/gen_control_flow_models.py
