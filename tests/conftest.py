"""Shared fixtures. Everything runs offline: data is generated, weights are random."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# Before anything imports ultralytics: no online checks, settings in a throw-away directory.
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yolo_attn_cfg_"))
os.environ.setdefault("YOLO_AUTOINSTALL", "False")
# Under pytest-xdist (scripts/test.sh runs the suite in worker processes) each worker, and every process it starts,
# gets an equal share of the cores rather than all of them: OpenMP threads of several processes on the same cores
# spin-wait and slow each other down. Set before torch is imported, which reads it for its thread pool.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // WORKERS)))

import numpy as np
import pytest
import torch

import yolo_attn
from ultralytics import YOLO  # noqa: F401 - Ultralytics imported here: the start-up hook registers the layers
from yolo_attn.adapter import front_end
from yolo_attn.configs import dump
from yolo_attn.layers.registry import REGISTRY, builtin_specs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))  # the committed scripts the tests check (tables, coverage, int8_map)
VERSIONS_DIR = ROOT / ".venv" / "ultralytics-versions"
OLD_ULTRALYTICS = ("8.1.47", "8.2.103", "8.3.240")

yolo_attn.discover()  # layers of the modules in YOLO_ATTN_IMPORTS join every per-layer test below
BUILTIN = tuple(builtin_specs())
"""The shipped layers."""
NAMES = tuple(REGISTRY)
"""Every registered layer: the shipped ones, any layer file added to yolo_attn/layers, and any found through
YOLO_ATTN_IMPORTS or entry points."""
REFERENCED = tuple(name for name in NAMES if REGISTRY[name].reference is not None)
"""The registered layers that declare a reference formulation (every shipped one): the parity tests run on these."""


SLOW_REASON = "slow: end-to-end test; run with --runslow (the README's test command does)"


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False,
                     help="also run the tests marked slow (end-to-end: training runs, exports, subprocess loads); "
                          "scripts/test.sh passes it")


def pytest_collection_modifyitems(config, items):
    """``pytest`` alone skips the tests marked slow (the fast run); ``--runslow`` runs them, and so does any ``-m``
    marker expression, which then decides by itself (``-m slow``, ``-m "slow or not slow"``, ``-m cuda``).

    Only items carrying the ``slow`` mark are touched: nothing else is skipped, and a slow test that runs is
    reported as it is (a failure stays a failure).
    """
    if config.getoption("--runslow") or config.getoption("markexpr", default=""):
        return
    skip = pytest.mark.skip(reason=SLOW_REASON)
    for item in items:
        if item.get_closest_marker("slow") is not None:
            item.add_marker(skip)


def make_layer(name: str, c1: int = 64, grid: int | None = 20) -> torch.nn.Module:
    """A registered layer built as a model YAML row with its per-map defaults would build it (``c1`` channels)."""
    spec = REGISTRY[name]
    return spec.cls(c1, *spec.default_args(grid))


@pytest.fixture(scope="session")
def shapes_data(tmp_path_factory) -> Path:
    """A tiny generated detection dataset (YAML path): 16 train / 8 val images at 64 px."""
    from yolo_attn.data import make_shapes

    return make_shapes(tmp_path_factory.mktemp("shapes"), train=16, val=8, imgsz=64, seed=0)


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    """The package's wheel, built once from this checkout (offline: no build isolation)."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(ROOT)], check=True, capture_output=True, timeout=300)
    return next(out.glob("yolo_attn-*.whl"))


@torch.no_grad()
def randomize_(module: torch.nn.Module, seed: int, sharp: bool = False) -> torch.nn.Module:
    """Overwrite every floating parameter and buffer with seeded random values (so no branch is 0 and BatchNorm is not
    the identity): the one randomiser of the tests.

    Matrices and kernels get std 1/sqrt(fan_in), so activations stay O(1); BatchNorm running variances 0.5..1.5;
    everything else (biases, BatchNorm shifts and means, bias tables, positional encodings, temperatures) std 0.5.
    With ``sharp`` (parity tests) norm scales get magnitudes in [1, 2] and random signs, so attention logits are O(1)
    and the softmax is far from flat (a parity test with near-uniform attention barely notices a wrong scale);
    without it they get std 0.5 like the rest, which keeps bf16 attention error within a few 1e-3.
    """
    g = torch.Generator().manual_seed(seed)
    for name, t in list(module.named_parameters()) + list(module.named_buffers()):
        if not t.is_floating_point():
            continue
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "running_var":
            val = torch.rand(t.shape, generator=g) + 0.5
        elif leaf == "weight" and t.dim() >= 2:
            val = torch.randn(t.shape, generator=g) / t[0].numel() ** 0.5
        elif leaf == "weight" and sharp:
            mag = torch.rand(t.shape, generator=g) + 1.0
            val = torch.where(torch.rand(t.shape, generator=g) < 0.5, -mag, mag)
        else:
            val = torch.randn(t.shape, generator=g) * 0.5
        t.copy_(val)
    return module


def spec_of(layer: torch.nn.Module):
    """The registry spec of a layer instance."""
    return next(s for s in REGISTRY.values() if type(layer) is s.cls)


def small(name: str, seed: int | None = None, sharp: bool = False) -> torch.nn.Module:
    """The layer's declared small instance (16 input channels; ``LayerTests.small``), randomised when ``seed`` is
    given: the one table of small instances."""
    torch.manual_seed(0)
    layer = REGISTRY[name].small()
    return layer if seed is None else randomize_(layer, seed, sharp)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest absolute difference relative to the largest magnitude of ``b`` (float64)."""
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def rel(a: np.ndarray, b: np.ndarray, floor: float = 1e-12) -> float:
    """Max absolute difference relative to the largest magnitude of the reference ``b`` (at least ``floor``)."""
    return float(np.abs(a - b).max() / max(float(np.abs(b).max()), floor))


def detr_rows_error(o: np.ndarray, y: np.ndarray, margin: float) -> tuple[float, float]:
    """(sorted-score error, worst row distance) of RT-DETR outputs (1, 300, 6) [cx, cy, w, h, score, class].

    The head's output is a top-k over queries × classes, where near-equal scores may come out in another order: rows
    scoring more than ``margin`` above the 300th (not at the top-k boundary) are matched with the closest reference
    row (same class: a different class is a distance >= 1); all values lie in 0..1, so absolute = relative to 1.
    """
    o, y = o[0], y[0]
    score_err = rel(np.sort(o[:, 4]), np.sort(y[:, 4]))
    inner = o[o[:, 4] > y[:, 4].min() + margin]
    assert len(inner) >= len(o) // 2, len(inner)
    dist = np.abs(inner[:, None, :] - y[None, :, :]).max(-1).min(-1)
    return score_err, float(dist.max())


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


def front(cfg: str):
    """Ultralytics' front end (``YOLO`` or ``RTDETR``) for a test config name, chosen by the adapter from the model's
    head, as the package's tools choose it — not from the name."""
    if cfg == "rtdetr-l-attn.yaml":  # the test-only config of scaled_copy below
        return front_end(all_layers_after("rtdetr-l.yaml"))
    return front_end(ROOT / "cfg" / cfg if (ROOT / "cfg" / cfg).is_file() else cfg)


def scaled_copy(cfg: str, dest: Path) -> Path:
    """Copy a shipped config under a name that carries the n scale (``yolov8-cga.yaml`` -> ``yolov8n-cga.yaml``)."""
    name = cfg.replace("yolov8-", "yolov8n-").replace("yolo11-", "yolo11n-")
    path = dest / name
    if cfg == "rtdetr-l-attn.yaml":
        path.write_text(dump(all_layers_after("rtdetr-l.yaml")))
    else:
        shutil.copy(ROOT / "cfg" / cfg, path)
    return path


@torch.no_grad()
def randomize_layers(model: torch.nn.Module, seed: int = 0, require: bool = True, calib: int = 256) -> list[int]:
    """Give ``model`` trained-like statistics; return the indices of its yolo_attn layers.

    Every parameter of the yolo_attn layers is perturbed (BatchNorm scales drawn from 0.5..1.5), then every other
    BatchNorm of the model gets the running statistics of two random ``calib``×``calib`` images (cumulative
    average, train mode). Without that the features of a fresh model shrink layer by layer (to ~1e-8 at P5 of
    YOLOv8n) and the attention would see almost nothing but its biases.
    """
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    found = []
    for i, m in enumerate(model.model):
        if not isinstance(m, tuple(spec.cls for spec in REGISTRY.values())):
            continue
        found.append(i)
        for p in m.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
        for bn in m.modules():
            if isinstance(bn, torch.nn.BatchNorm2d):
                bn.weight.copy_(0.5 + torch.rand(bn.weight.shape, generator=g))
    assert found or not require, "no yolo_attn layer in the model"
    ours = {id(bn) for i in found for bn in model.model[i].modules()}
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d) and id(m) not in ours]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the calibration batches
    model.train()
    model(torch.rand(2, 3, calib, calib, generator=g))
    model.eval()
    for bn in bns:
        bn.momentum = 0.03  # Ultralytics' value
    return found


# The temp script Ultralytics' multi-GPU launcher starts (format with cfg, data, project); prints its path.
DDP_CHILD = """
from ultralytics.models.yolo.{task} import {trainer}
from ultralytics.utils.dist import generate_ddp_file
trainer = {trainer}(overrides=dict(model={cfg!r}, data={data!r}, imgsz=64, epochs=1, batch=8, device="cpu",
                    workers=0, plots=False, project={project!r}, name="ddp", exist_ok=True))
if hasattr(trainer, "get_model"):  # what Model.train() does before trainer.train(): the built model is pickled
    trainer.model = trainer.get_model(cfg={cfg!r}, weights=None, verbose=False)
print(generate_ddp_file(trainer))
"""
TRAINERS = {"detect": "DetectionTrainer", "segment": "SegmentationTrainer", "pose": "PoseTrainer",
            "obb": "OBBTrainer", "classify": "ClassificationTrainer"}


def ddp_child_code(cfg, data, project, task: str = "detect") -> str:
    """Code printing the path of the script Ultralytics' multi-GPU launcher would start to train ``cfg`` on ``data``
    (1 epoch at 64 px on the CPU, outputs under ``project``)."""
    return DDP_CHILD.format(task=task, trainer=TRAINERS[task], cfg=str(cfg), data=str(data), project=str(project))


REDUCED_DEMO = ["--epochs", "1", "--imgsz", "64", "--train", "16", "--val", "8", "--batch", "8", "--seeds", "2",
                "--models", "yolov8n.yaml,yolov8n-shsa.yaml", "--device", "cpu", "--workers", "0"]
"""A reduced ``yolo-attn demo``: 2 models × 2 seeds, 1 epoch on 16 images at 64 px (about a minute)."""


@pytest.fixture(scope="session")
def reduced_demo(tmp_path_factory) -> tuple[Path, str]:
    """Output directory and stdout of the reduced demo, run once per session through the command."""
    out = tmp_path_factory.mktemp("demo") / "out"
    proc = subprocess.run([bin_path("yolo-attn"), "demo", *REDUCED_DEMO, "--out", str(out)], capture_output=True,
                          text=True, timeout=900, cwd=out.parent)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return out, proc.stdout
