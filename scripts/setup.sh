#!/usr/bin/env bash
# Create .venv with everything bt_sorter needs, idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# torch first and pinned. The pin fixes the version, not the build: public PyPI serves the
# CUDA build on Linux x86_64 (over 1.5 GB with its nvidia packages). A .venv that already
# holds 2.13.0+cpu keeps it (README, "Which PyTorch you get").
.venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -e ".[dev]"
