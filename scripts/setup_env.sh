#!/usr/bin/env bash
# Create .venv (if missing) and install yolo-attn with the tested versions from constraints.txt.
# Also installs the extra Ultralytics releases the registration tests run against into .venv/ultralytics-versions/.
# Usage: bash scripts/setup_env.sh   (idempotent; PYTHON=python3.11 to pick the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
.venv/bin/python -m pip install -q -c constraints.txt -e ".[test,deploy]"  # deploy: every export format the tests run (~1 min more)
for v in 8.1.47 8.2.103 8.3.240; do
    d=.venv/ultralytics-versions/$v
    if [ ! -f "$d/ultralytics/__init__.py" ]; then
        .venv/bin/python -m pip install -q --no-deps --target "$d" "ultralytics==$v"
    fi
done
