#!/usr/bin/env bash
# Run THERE: on an offline GPU machine (Python 3.12 with torch + CUDA, no ultralytics), from a copy of this checkout,
# after `bash scripts/gpu_wheels.sh` filled .whl/ on a machine with PyPI access.
#
#   1. installs .whl/*.whl (yolo-attn, ultralytics, what else the machine lacks) --no-index --no-deps: into the
#      environment (console scripts, the .pth start-up hook), or, where that is not writable, --target /tmp/site;
#   2. runs the CUDA tests (`pytest -m cuda tests`; a failure is reported and the script goes on);
#   3. runs `python scripts/bench_report.py --device cuda` (the report writer of this
#      checkout, measuring with the installed yolo_attn.bench; extra arguments are passed on to it, e.g.
#      `--skip compile`), which writes the GPU section of BENCHMARKS.md and benchmarks/gpu_results.json;
#   4. with $OUT set, writes them there instead (BENCHMARKS.md, gpu_results.json), with the logs
#      (cuda_tests.log, gpu_bench.log); without, into the checkout.
#
# With this workplace's device tool: run(command="bash scripts/gpu_bench.sh", carry=[".whl"], timeout_s=600); then,
# here, `cp <files_at>/gpu_results.json benchmarks/ && python scripts/bench_report.py --from-json` renders the section.
# Fourteen layers × 6 shapes × 3 cases × 3 precisions and the compile rows may not fit one 600 s call: split the run,
# the figures of a call stopped by the limit are kept (the layer table is saved every 20 s, compile rows one by one):
#   1. run(command="bash scripts/gpu_bench.sh --dtypes fp32,fp16 --skip compile", carry=[".whl"], timeout_s=600)
#      then here: cp <files_at>/gpu_results.json benchmarks/   (the second call carries it with the working tree)
#   2. run(command="CUDA_TESTS=0 bash scripts/gpu_bench.sh --skip layers,models --keep benchmarks/gpu_results.json",
#          carry=[".whl"], timeout_s=600)   -> one section: this call's compile rows with the first call's parts
# Environment: PYTHON (default python3), CUDA_TESTS=0 skips step 2, TEST_TIMEOUT (s, default 150) bounds it.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export YOLO_OFFLINE=1 YOLO_AUTOINSTALL=False PYTHONUNBUFFERED=1
export YOLO_CONFIG_DIR=${YOLO_CONFIG_DIR:-$(mktemp -d)}
LOGS=${OUT:-/tmp}
mkdir -p "$LOGS"

if ! ls .whl/*.whl >/dev/null 2>&1; then
    echo "no wheels in .whl/: run scripts/gpu_wheels.sh where PyPI is reachable, and carry .whl here" >&2
    exit 2
fi
PIP=(-m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --disable-pip-version-check)
if ! "$PY" "${PIP[@]}" .whl/*.whl; then
    echo "the environment is not writable: installing into /tmp/site (PYTHONPATH)"
    "$PY" "${PIP[@]}" --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
"$PY" - <<'EOF' || exit 1
import torch, ultralytics, yolo_attn
print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), ultralytics {ultralytics.__version__}, "
      f"yolo_attn {yolo_attn.__version__} from {yolo_attn.__file__}; "
      f"GPU: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'NONE'}")
EOF

if [ "${CUDA_TESTS:-1}" != 0 ]; then
    echo "== CUDA tests (pytest -m cuda tests)"
    timeout "${TEST_TIMEOUT:-150}" "$PY" -m pytest -q -m cuda tests -p no:cacheprovider --continue-on-collection-errors \
        2>&1 | tee "$LOGS/cuda_tests.log"
    status=${PIPESTATUS[0]}
    [ "$status" = 0 ] || echo "CUDA tests did not pass (exit $status); going on with the benchmark"
fi

# With $OUT: the report and the figures are written there directly, after each part of the run (layers, models,
# every compile row), so a run stopped at the tool's time limit still brings back what it measured.
WHERE=()
if [ -n "${OUT:-}" ]; then
    cp BENCHMARKS.md "$OUT/BENCHMARKS.md"
    WHERE=(--out "$OUT/BENCHMARKS.md" --gpu-json "$OUT/gpu_results.json")
fi
echo "== python scripts/bench_report.py --device cuda $*"
"$PY" scripts/bench_report.py --device cuda ${WHERE[@]+"${WHERE[@]}"} "$@" 2>&1 \
    | tee "$LOGS/gpu_bench.log"
exit "${PIPESTATUS[0]}"
