#!/usr/bin/env bash
# Set up .venv, then lint and run the whole test suite against real brokers.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
.venv/bin/ruff check bt_sorter run.py tests bench
.venv/bin/ruff format --check bt_sorter run.py tests bench
# Two processes (pytest-xdist): the harness batch and the real-process runs share the cores.
.venv/bin/python -m pytest -n 2 "$@"
