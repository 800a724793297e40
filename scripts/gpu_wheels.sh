#!/usr/bin/env bash
# Run HERE (a machine with pip access to PyPI), before `scripts/gpu_bench.sh` on an offline GPU machine.
#
# Fills .whl/ (git-ignored) with what that machine lacks, as wheels for CPython 3.12 on manylinux x86-64:
#   * the yolo-attn wheel built from this checkout;
#   * ultralytics at the version pinned in constraints.txt;
#   * every (non-extra) requirement of those that the GPU machine's image does not hold, recursively
#     (for ultralytics 8.4.190: ultralytics-thop, polars, ultralytics-platform).
# Each at the version installed in .venv when there is one (the tested one), else the newest, except polars (SIZED
# below). --no-deps, --only-binary=:all:, so nothing is built and nothing else is fetched.
# Size: the working tree and the carried .whl/ must stay under the device tool's 64 MiB together (the checkout is
# ~20 MB). polars 2.x splits into polars + polars-runtime-32 (54 MB); polars 0.20.31, the oldest line ultralytics
# 8.4 accepts (>=0.20.0), is one 29 MB wheel and does what ultralytics calls (read_csv(...).to_dict(as_series=False),
# DataFrame(..., schema=...), map_elements(return_dtype=pl.String), selectors), checked with 8.4.190.
#
# Usage: bash scripts/gpu_wheels.sh        (PYTHON=... to pick the interpreter that runs pip; default .venv's)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
export PIP_DISABLE_PIP_VERSION_CHECK=1
rm -rf .whl && mkdir -p .whl

"$PY" -m pip wheel -q --no-deps --no-build-isolation -w .whl .  # yolo-attn (pure Python)

"$PY" - <<'EOF'
"""Download ultralytics and the requirements the GPU image lacks, walking Requires-Dist of each wheel fetched."""
import re
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

# On the GPU machine's image (/work/.library/device/KINDS.md, "Python packages already there", 2026-11-17): the
# names a requirement of ultralytics or its dependencies may have. opencv-python is there as opencv-python-headless
# (the same cv2 module).
ON_GPU = {canonicalize_name(n) for n in """
    numpy matplotlib opencv-python opencv-python-headless pillow pyyaml requests torch torchvision psutil
    nvidia-ml-py httpx scipy pandas tqdm cloudpickle einops timm onnx onnxruntime packaging filelock typing-extensions
    jinja2 networkx sympy fsspec triton setuptools pyarrow pydantic""".split()}

PLATFORM = ["--python-version", "3.12", "--implementation", "cp", "--abi", "cp312", "--only-binary=:all:",
            "--no-deps", "-d", ".whl"] + [a for p in ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64",
                                                     "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
                                                     "manylinux2014_x86_64", "manylinux1_x86_64")
                                          for a in ("--platform", p)]
ENV = {**default_environment(), "python_version": "3.12", "python_full_version": "3.12.3",
       "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
       "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}


SIZED = {"polars": "0.20.31"}  # see the header: one 29 MB wheel instead of 55 MB


def pinned(name: str) -> str:
    """name==version: SIZED, else constraints.txt's pin, else the version installed here, else the newest."""
    if name in SIZED:
        return f"{name}=={SIZED[name]}"
    for line in Path("constraints.txt").read_text().splitlines():
        m = re.match(rf"\s*{re.escape(name)}==([^\s#;]+)", line, re.I)
        if m:
            return f"{name}=={m.group(1)}"
    try:
        return f"{name}=={metadata.version(name)}"
    except metadata.PackageNotFoundError:
        return name


def requirements(wheel: Path) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        lines = z.read(meta).decode().splitlines()
    reqs = [Requirement(l.split(":", 1)[1].strip()) for l in lines if l.startswith("Requires-Dist:")]
    return [r for r in reqs if r.marker is None or r.marker.evaluate(ENV)]


def wheel_of(name: str) -> Path | None:
    stem = canonicalize_name(name).replace("-", "_")
    return next((w for w in Path(".whl").glob("*.whl") if canonicalize_name(w.name.split("-")[0]).replace("-", "_")
                 == stem), None)


todo, seen = ["ultralytics"], {"yolo-attn"}
for w in Path(".whl").glob("yolo_attn-*.whl"):  # the yolo-attn wheel's own requirements (torch, ultralytics ...)
    todo += [r.name for r in requirements(w)]
while todo:
    name = canonicalize_name(todo.pop(0))
    if name in seen or name in ON_GPU:
        continue
    seen.add(name)
    spec = pinned(name)
    print(f"downloading {spec}", flush=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", *PLATFORM, spec], check=True)
    w = wheel_of(name)
    if w is None:
        sys.exit(f"no wheel of {name} in .whl after the download")
    todo += [r.name for r in requirements(w)]
EOF

ls -l .whl
du -sh .whl
