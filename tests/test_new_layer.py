"""Adding a built-in layer is one new file: a copy of this checkout gets one file in ``yolo_attn/layers/`` and nothing
else, and the layer appears everywhere the shipped ones do — ``yolo-attn layers``, model names (``yolov8n-<layer>.yaml``
builds), the README tables generator, the docs' layer pages in both languages, ``yolo-attn show``, torch's safe
globals, and the collected per-layer tests (parity with its own reference, fuzz, precision, fuse, export, compile),
which pass for it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import ROOT
from yolo_attn.layers.registry import builtin_specs

LAYER_FILE = '''
"""Toy gate: ``x * sigmoid(BN(depthwise k×k conv(x)))``, a layer that exists only in this test."""

from __future__ import annotations

import torch
from torch import nn

from ._checks import check_int, check_odd_kernel
from .conv_bn import ConvBN
from .registry import LayerTests, load_weights, register_module

__all__ = ["ToyGate", "ToyGateReference"]


class ToyGate(nn.Module):
    """A spatial gate from one depthwise convolution.

    Args:
        c1 (int): Input channels; output channels are the same.
        k (int): Depthwise kernel, odd.
    """

    def __init__(self, c1: int, k: int = 3):
        super().__init__()
        c1 = check_int("ToyGate", "c1 (input channels)", c1)
        k = check_odd_kernel("ToyGate", "k", k)
        self.dw = ConvBN(c1, c1, k, 1, k // 2, g=c1)

    def forward(self, x):
        return x * self.dw(x).sigmoid()

    @torch.no_grad()
    def attention_maps(self, x, cells):
        return [self.dw(x).sigmoid()[0].mean(0)]


class ToyGateReference(nn.Module):
    """The same math written out: convolution, batch norm, sigmoid, product."""

    def __init__(self, c1: int, k: int):
        super().__init__()
        self.dw = ConvBN(c1, c1, k, 1, k // 2, g=c1)

    def forward(self, x):
        gate = torch.sigmoid(self.dw.bn(self.dw.c(x)))
        return gate * x


register_module(
    ToyGate,
    pickled=(ConvBN,),
    summary="Toy depthwise gate",
    paper="none (a test layer)",
    official_code="none",
    reference=lambda layer: load_weights(ToyGateReference(layer.dw.c.in_channels, layer.dw.c.kernel_size[0]), layer),
    maps_caption="gate map, mean over channels",
    maps_per_query=False,
    tests=LayerTests(small=lambda: ToyGate(16, 3), int_args={"c1": 16, "k": 3},
                     bad_args=(({"c1": 16, "k": 4}, "k"),), folds=1, scale_robust=False),  # sigmoid saturates
    order=1000,  # after every shipped layer
    builtin=True,
)
'''

CHECKS = '''
import contextlib, io, sys
import torch
import yolo_attn
from ultralytics import YOLO
from yolo_attn.cli import main
from yolo_attn.layers import REGISTRY
from yolo_attn.show import attention_maps

assert yolo_attn.__file__.startswith(sys.argv[1]), yolo_attn.__file__  # the copy, not the checkout
print("registry", list(REGISTRY))
out = io.StringIO()
with contextlib.redirect_stdout(out):
    main(["layers"])
print("layers-command", "ToyGate" in out.getvalue())
model = YOLO("yolov8n-toygate.yaml")
print("names", sum(type(m).__name__ == "ToyGate" for m in model.model.modules()))
yolo_attn.register()
print("safe-global", REGISTRY["ToyGate"].cls in torch.serialization.get_safe_globals())
found = attention_maps(model.model.eval(), torch.rand(1, 3, 64, 64))
print("show", [(f["name"], len(f["maps"]), tuple(f["maps"][0].shape)) for f in found])
sys.path.insert(0, sys.argv[1] + "/scripts")
import readme_tables
from yolo_attn.layers.registry import builtin_specs
specs = builtin_specs()
tables = [readme_tables.layers_table(specs), readme_tables.args_table(specs), readme_tables.defaults_table(specs)]
print("readme-tables", ["| `ToyGate` | - | Toy depthwise gate |" in tables[0], "| `[-1, 1, ToyGate, []]` | `k=3` Depthwise"
      in tables[1], "| ToyGate | `[]` | `[]` | `[]` |" in tables[2]])
docs = {p.relative_to(readme_tables.ROOT).as_posix(): text for p, text in readme_tables.docs_files().items()}
print("docs-pages", [name in docs and "ToyGate" in docs[name] for name in ("docs/en/layers/toygate.md",
                                                                          "docs/zh/layers/toygate.md")])
print("docs-index", ["[`ToyGate`](toygate.md)" in docs[f"docs/{lang}/layers/index.md"] for lang in ("en", "zh")])
'''

PER_LAYER_TESTS = {  # file: the per-layer test that must be collected for the new layer, and pass
    "tests/test_fastpaths.py": "test_fast_path_matches_reference_fp32[ToyGate-eval]",
    "tests/test_layers.py": "test_jit_trace_reproduces_eager_at_other_sizes[ToyGate]",
    "tests/test_fuzz.py": "test_hostile_layer_rows[ToyGate]",
    "tests/test_precision.py": "test_layer_in_half_precision_matches_fp32[ToyGate-fp16-1.0]",
    "tests/test_fuse.py": "test_fused_layer_matches_unfused[ToyGate]",
    "tests/test_deploy.py": "test_traced_form_is_at_most_4d_and_generalises[ToyGate]",
    "tests/test_compile.py": "test_layer_compiles_as_one_graph_and_matches_eager[eval-ToyGate]",
}


@pytest.fixture(scope="module")
def copy_with_layer(tmp_path_factory) -> Path:
    """This checkout copied (sources, tests, scripts, configs), plus ``yolo_attn/layers/toy_gate.py`` — nothing else."""
    dest = tmp_path_factory.mktemp("copy") / "repo"
    shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(".git", ".venv", ".whl", "runs", "datasets", "site",
                                                              "__pycache__", "golden", "*.pt", "*.onnx"))
    (dest / "yolo_attn" / "layers" / "toy_gate.py").write_text(textwrap.dedent(LAYER_FILE).lstrip())
    return dest


def run_in(copy: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(copy)}  # ahead of the editable install of the checkout
    return subprocess.run([sys.executable, *args], cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_one_new_file_makes_a_layer_everywhere(copy_with_layer):
    proc = run_in(copy_with_layer, "-c", CHECKS, str(copy_with_layer))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line)
    assert lines["registry"] == str([*builtin_specs(), "ToyGate"])  # the shipped layers, then it: its declared order
    assert lines["layers-command"] == "True"
    assert lines["names"] == "1"
    assert lines["safe-global"] == "True"
    assert "('ToyGate', 1, (2, 2))" in lines["show"], lines["show"]  # one gate map at P5 of a 64 px input
    assert lines["readme-tables"] == "[True, True, True]"
    assert lines["docs-pages"] == "[True, True]"  # its own page in both languages, written by the docs generator
    assert lines["docs-index"] == "[True, True]"  # and linked from the layers index, with no edit to the docs


@pytest.mark.slow
def test_one_new_file_is_in_every_per_layer_test(copy_with_layer):
    """The per-layer tests are collected for the new layer from the registry, and pass for it."""
    files = list(PER_LAYER_TESTS)
    collected = run_in(copy_with_layer, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *files)
    assert collected.returncode == 0, collected.stdout[-3000:] + collected.stderr[-3000:]
    ids = set(collected.stdout.split())
    for file, test in PER_LAYER_TESTS.items():
        assert f"{file}::{test}" in ids, (file, test)
    new = sorted(i for i in ids if "ToyGate" in i and "yaml" not in i)
    assert len(new) >= 30, new  # parity, trace, bad arguments, fuzz, precision, fuse, export, compile ...
    # the per-layer tests (the per-config export runtimes, named after shipped cfg/ files, are not per-layer tests)
    run = run_in(copy_with_layer, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--runslow", *files, "-k",
                 "ToyGate and not yaml")
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-3000:]
    passed = int(re.search(r"(\d+) passed", run.stdout).group(1))
    assert passed == len(new) and "failed" not in run.stdout, run.stdout[-2000:]
