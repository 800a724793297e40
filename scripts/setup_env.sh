#!/usr/bin/env bash
# Create .venv (if missing) and install yolo-attn (editable) with the tested versions from constraints.txt.
#
#   bash scripts/setup_env.sh demo   what the demo and the yolo-attn commands need: the package and its requirements
#                                    (torch, torchvision, ultralytics, numpy, opencv-python, pyyaml); scripts/main.sh
#   bash scripts/setup_env.sh [test] the above, plus what the whole test suite needs (scripts/test.sh): the test extra,
#                                    the docs extra (mkdocs build --strict), every deployment extra (the deploy
#                                    extra: ONNX, NCNN, OpenVINO, CoreML, LiteRT),
#                                    and the older Ultralytics releases the contract tests register against, into
#                                    .venv/ultralytics-versions/ (--no-deps: they share this environment's packages)
#
# Idempotent: a later run installs only what is missing (demo, then test: the rest). PYTHON=python3.11 picks the
# interpreter that creates .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
WHAT=${1:-test}
case "$WHAT" in
    demo) SPEC="." ;;
    test) SPEC=".[test,deploy,docs]" ;;  # deploy: every export format the tests run (~1 min more)
    *) echo "usage: bash scripts/setup_env.sh [demo|test]" >&2; exit 2 ;;
esac
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
.venv/bin/python -m pip install -q -c constraints.txt -e "$SPEC"
[ "$WHAT" = test ] || exit 0
for v in 8.1.47 8.2.103 8.3.240; do
    d=.venv/ultralytics-versions/$v
    if [ ! -f "$d/ultralytics/__init__.py" ]; then
        .venv/bin/python -m pip install -q --no-deps --target "$d" "ultralytics==$v"
    fi
done
