#!/usr/bin/env bash
# Set up .venv, then lint and run the whole test suite against real brokers.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
.venv/bin/ruff check bt_sorter run.py tests bench
.venv/bin/ruff format --check bt_sorter run.py tests bench
# Three processes (pytest-xdist) on two cores: the real-process runs mostly wait on their
# line's real time, and the harness batch (at a lower priority) takes the CPU they leave;
# idle workers take queued tests from busy ones (worksteal).
.venv/bin/python -m pytest -n 3 --dist worksteal "$@"
