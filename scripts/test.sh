#!/usr/bin/env bash
# The README's test command: set up .venv, then run the whole test suite offline (slow tests included:
# --runslow; plain `pytest` is the fast run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export YOLO_OFFLINE=1
exec .venv/bin/python -m pytest -q --runslow "$@"
