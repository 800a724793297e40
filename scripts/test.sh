#!/usr/bin/env bash
# The README's test command: set up .venv, then run the whole test suite offline (slow tests included:
# --runslow; plain `pytest` is the fast run). Installs what the suite needs on top of the demo's environment: the test
# and deployment extras and the older Ultralytics releases of the contract tests (scripts/setup_env.sh test).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh test
export YOLO_OFFLINE=1
exec .venv/bin/python -m pytest -q --runslow "$@"
