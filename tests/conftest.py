"""Shared fixtures. Everything runs offline: data is generated, weights are random."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

# Before anything imports ultralytics: no online checks, settings in a throw-away directory.
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yolo_attn_cfg_"))
os.environ.setdefault("YOLO_AUTOINSTALL", "False")

import pytest
import torch

import yolo_attn
from yolo_attn.layers.registry import REGISTRY, builtin_specs

ROOT = Path(__file__).resolve().parents[1]
VERSIONS_DIR = ROOT / ".venv" / "ultralytics-versions"
OLD_ULTRALYTICS = ("8.1.47", "8.2.103", "8.3.240")

yolo_attn.discover()  # layers of the modules in YOLO_ATTN_IMPORTS join every per-layer test below
BUILTIN = tuple(builtin_specs())
"""The shipped layers (those with an independent reference formulation in ``reference.py``)."""
NAMES = tuple(REGISTRY)
"""Every registered layer: the shipped ones and any found through YOLO_ATTN_IMPORTS or entry points."""


def make_layer(name: str, c1: int = 64, grid: int | None = 20) -> torch.nn.Module:
    """A registered layer built as a model YAML row with its per-map defaults would build it (``c1`` channels)."""
    spec = REGISTRY[name]
    return spec.cls(c1, *spec.default_args(grid))


@pytest.fixture(scope="session")
def shapes_data(tmp_path_factory) -> Path:
    """A tiny generated detection dataset (YAML path): 16 train / 8 val images at 64 px."""
    from yolo_attn.data import make_shapes

    return make_shapes(tmp_path_factory.mktemp("shapes"), train=16, val=8, imgsz=64, seed=0)


@torch.no_grad()
def randomize_(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Seeded random parameters and BatchNorm statistics (so no branch is 0 and BN is not the identity)."""
    g = torch.Generator().manual_seed(seed)
    for name, t in list(module.named_parameters()) + list(module.named_buffers()):
        if not t.is_floating_point():
            continue
        if name.endswith("running_var"):
            val = torch.rand(t.shape, generator=g) + 0.5
        elif t.dim() >= 2 and name.endswith("weight"):
            val = torch.randn(t.shape, generator=g) / t[0].numel() ** 0.5
        else:
            val = torch.randn(t.shape, generator=g) * 0.5
        t.copy_(val)
    return module


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest absolute difference relative to the largest magnitude of ``b`` (float64)."""
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def run_py(code: str, *, env: dict | None = None, cwd: Path | None = None, timeout: int = 600,
           check: bool = True) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (the test venv's), return the completed process (text output)."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([sys.executable, "-c", code], env=full_env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"subprocess failed ({proc.returncode}):\nSTDOUT:\n{proc.stdout[-4000:]}\n"
                             f"STDERR:\n{proc.stderr[-6000:]}")
    return proc


def bin_path(name: str) -> str:
    """A console script of the test venv (``yolo``, ``yolo-attn``)."""
    return str(Path(sys.executable).with_name(name))


def ultralytics_version_path(version: str) -> Path:
    """Directory holding an extra Ultralytics release, installed by scripts/setup_env.sh."""
    path = VERSIONS_DIR / version
    if not (path / "ultralytics" / "__init__.py").is_file():
        raise AssertionError(f"ultralytics {version} is not installed under {path}; run: bash scripts/setup_env.sh")
    return path


def all_layers_after(base: str) -> dict:
    """Config dict of ``base`` with every registered layer stacked (in registry order) after its P5 context block."""
    from yolo_attn.configs import find_after_sppf, insert_rows, load_base

    d = load_base(base)
    p = find_after_sppf(d)
    for name in reversed(NAMES):
        d = insert_rows(d, name, p)  # each lands at p + 1, pushing the previous ones down (layer defaults)
    return d
