"""CUDA: the fast paths on a GPU, where users train. Marked ``cuda``; skipped with the reason where no CUDA device is
present (the CI machines have none), so ``pytest -m cuda`` on a GPU machine runs exactly these.

What is checked, every registered layer unless named:

* fp32 parity of the fast path with the layer's reference formulation (``spec.reference``), outputs and gradients
  (TF32 off: cuDNN convolutions would otherwise round to 10 bits on Ampere and later, differently on each side);
* fp16 / bf16 autocast and ``.half()`` against fp32 with the CPU suite's tolerances (``test_precision.TOL``);
* finite outputs and gradients under autocast in training mode, on inputs 8× unit scale (where the official FLA
  and CGA overflow in fp16);
* the fused SDPA kernels are what runs: SHSA, CGA, BRA and iRMB forward and backward inside ``sdpa_kernel``
  restricted to flash / memory-efficient / cuDNN, which raises "No available kernel" if the inputs made SDPA fall
  back to the math kernel (the N×N one); a call past the kernels' grid limit (65,535 problems) is split and correct;
* peak memory at P3 of YOLOv8n (80×80, 64 channels), batch 16, one training step: SHSA ≤ 0.3 GB (the math kernel
  took 10.1 GB on an H200), CGA no more than its reference's (the official ``LocalWindowAttention`` restated), BRA
  under half of its explicit scores (2.1 GB) and under the official's;
* a one-epoch ``yolo train ... device=0 amp=True`` with SHSA in the neck (slow).
"""

from __future__ import annotations

import copy
import subprocess

import pytest
import torch

from conftest import NAMES, REFERENCED, bin_path, make_layer, randomize_, rel_err
from test_precision import TOL, random_layer
from yolo_attn.layers import BRA, CGA, SHSA
from yolo_attn.layers.attention import fused_sdpa
from yolo_attn.layers.registry import REGISTRY

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is False "
                       "here); run `pytest -m cuda` on a machine with one"),
]

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
GB = 1e9


@pytest.fixture(autouse=True)
def exact_fp32():
    """No TF32 in convolutions or matmuls while a test runs (restored afterwards)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def step(layer: torch.nn.Module, x: torch.Tensor, dtype=None):
    """Output, input gradient and parameter gradients (by name) of one forward/backward with a fixed cotangent."""
    layer.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(True)
    with torch.autocast("cuda", dtype=dtype or torch.float16, enabled=dtype is not None):
        y = layer(x)
    cot = torch.randn(y.shape, generator=torch.Generator().manual_seed(1)).to(y)
    (y * cot).float().sum().backward()
    return y.detach(), x.grad.detach(), {n: p.grad.detach() for n, p in layer.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("name", REFERENCED)
def test_fast_path_matches_reference_fp32_on_cuda(name, mode):
    """Tolerance 1e-4: at 64 channels and 300 tokens the orders of the products differ (FLA's linear order against
    the quadratic one gives 4e-5 on the input gradient on CPU too)."""
    layer = randomize_(make_layer(name, 64, grid=20), 3).cuda().train(mode == "train")
    ref = REGISTRY[name].reference(layer)  # the same weights, parameters of the same names, on the GPU
    x = torch.randn(2, 64, 20, 15, generator=torch.Generator().manual_seed(4)).cuda()
    y, gx, gp = step(layer, x)
    y_ref, gx_ref, gp_ref = step(ref, x)
    assert rel_err(y_ref, x) > 1e-3, "the layer is (nearly) the identity"
    assert rel_err(y, y_ref) <= 1e-4, rel_err(y, y_ref)
    assert rel_err(gx, gx_ref) <= 1e-4, rel_err(gx, gx_ref)
    assert set(gp) == set(gp_ref)
    scale = max(float(g.abs().max()) for g in gp_ref.values())
    for n in gp_ref:  # relative to the largest gradient: some are 0 in exact arithmetic (bias before train BN)
        assert float((gp[n] - gp_ref[n]).abs().max()) <= 1e-4 * scale, n


@pytest.mark.parametrize("name", ["SHSA", "CGA"])
@pytest.mark.parametrize("side", [80, 20])
def test_shsa_and_cga_at_yolo_shapes_match_the_official_on_cuda(name, side):
    """At P3 and P5 of YOLOv8n, fp32 eval: the official module (the reference restatement, same weights) agrees."""
    torch.manual_seed(0)
    c = 64 if side == 80 else 256
    ours = randomize_(SHSA(c) if name == "SHSA" else CGA(c), 6)
    ref = REGISTRY[name].reference(ours)  # x + the official module restated, with our weights (strict)
    ours, ref = ours.cuda().eval(), ref.cuda().eval()
    x = torch.randn(2, c, side, side, generator=torch.Generator().manual_seed(7)).cuda()
    with torch.no_grad():
        want = ref(x)
        got = ours(x)
    assert rel_err(got, want) <= 2e-5, rel_err(got, want)


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("name", NAMES)
def test_half_precision_matches_fp32_on_cuda(name, dtype):
    """Autocast and a cast of the whole module, inference: finite, within the CPU suite's tolerance of fp32."""
    layer = random_layer(name).cuda()
    x = torch.randn(2, 64, 20, 15, generator=torch.Generator().manual_seed(2)).cuda()
    dt = DTYPES[dtype]
    with torch.no_grad():
        want = layer(x)
        with torch.autocast("cuda", dtype=dt):
            auto = layer(x)
        cast = copy.deepcopy(layer).to(dt)(x.to(dt))
    assert torch.isfinite(auto).all() and torch.isfinite(cast).all()
    assert rel_err(auto, want) < TOL[dtype], rel_err(auto, want)
    assert rel_err(cast, want) < TOL[dtype], rel_err(cast, want)


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("name", NAMES)
def test_autocast_training_is_finite_on_large_inputs(name, dtype):
    layer = random_layer(name).cuda().train()
    x = 8 * torch.randn(4, 64, 40, 40, generator=torch.Generator().manual_seed(3)).cuda()
    y, gx, gp = step(layer, x, dtype=DTYPES[dtype])
    assert torch.isfinite(y).all()
    assert torch.isfinite(gx).all() and gx.abs().max() > 0
    assert all(torch.isfinite(g).all() for g in gp.values())


@pytest.mark.parametrize("dtype", [None, torch.float16, torch.bfloat16], ids=["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("name", ["SHSA", "CGA", "BRA", "iRMB"])
def test_fused_sdpa_kernel_runs(name, dtype):
    """Forward and backward with SDPA restricted to the fused kernels: no fallback to the math kernel."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    layer = random_layer(name).cuda().train()
    x = torch.randn(2, 64, 40, 40, generator=torch.Generator().manual_seed(3)).cuda()
    fused = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION]
    with sdpa_kernel(fused):
        y, gx, _ = step(layer, x, dtype=dtype)
    assert torch.isfinite(y).all() and torch.isfinite(gx).all()


def training_peak(module: torch.nn.Module, x: torch.Tensor) -> int:
    """Bytes allocated during one forward + backward beyond what was allocated before it (inputs, weights)."""
    x = x.detach().clone().requires_grad_(True)
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    module(x).float().mean().backward()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


P3 = (16, 64, 80, 80)  # YOLOv8n P3 at 640, batch 16


def test_shsa_p3_batch16_training_memory_is_linear_in_tokens():
    """6,400 tokens: one N×N fp32 score matrix per image would be 16 × 164 MB = 2.6 GB; the bound is 0.3 GB."""
    layer = random_layer("SHSA").cuda().train()
    x = torch.randn(*P3, device="cuda")
    for dtype in (None, torch.float16):
        with torch.autocast("cuda", dtype=dtype or torch.float16, enabled=dtype is not None):
            peak = training_peak(layer, x)
        assert peak <= 0.3 * GB, (dtype, peak / GB)


def test_cga_p3_batch16_training_memory_at_most_the_officials():
    ours = randomize_(CGA(64), 1)
    official = REGISTRY["CGA"].reference(ours)  # the official module restated in our residual: like for like
    ours.cuda().train(), official.cuda().train()
    x = torch.randn(*P3, device="cuda")
    for dtype in (None, torch.float16):
        with torch.autocast("cuda", dtype=dtype or torch.float16, enabled=dtype is not None):
            mine, theirs = training_peak(ours, x), training_peak(official, x)
        assert mine <= theirs, (dtype, mine / GB, theirs / GB)


def test_bra_p3_batch16_training_memory_holds_no_score_matrix():
    """BRA at P3 (84×84 padded: 49 windows of 144 tokens, each attending to 4 × 144 routed tokens, 8 heads): the
    explicit scores of one step are 16 × 392 × 144 × 576 × 4 B = 2.1 GB (fp32), held by the official module; the
    fused kernels hold none, so the step's peak stays under half of that and under the official's."""
    ours = randomize_(BRA(64), 1)
    official = REGISTRY["BRA"].reference(ours)
    ours.cuda().train(), official.cuda().train()
    x = torch.randn(*P3, device="cuda")
    scores = 16 * 8 * 49 * 144 * 576 * 4
    for dtype in (None, torch.float16):
        with torch.autocast("cuda", dtype=dtype or torch.float16, enabled=dtype is not None):
            mine, theirs = training_peak(ours, x), training_peak(official, x)
        assert mine <= theirs and mine < scores / 2, (dtype, mine / GB, theirs / GB)


def test_fused_sdpa_past_the_grid_limit():
    """70,000 problems in one call (e.g. CGA's windows at P3 from batch 456): split at 65,535 along the batch dim,
    the result equal to the math kernel's, which has no such limit."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    q, k, v = (torch.randn(70_000, 1, 49, 16, device="cuda", dtype=torch.float16) for _ in range(3))
    got = fused_sdpa(q, k, v, None, 0.25)
    with sdpa_kernel([SDPBackend.MATH]):
        want = torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=0.25)
    assert rel_err(got.float(), want.float()) <= 2e-3


@pytest.mark.slow
def test_yolo_train_on_gpu_with_amp_and_a_layer_in_the_neck(shapes_data, tmp_path):
    cmd = [bin_path("yolo"), "train", "model=yolov8n-shsa-neck.yaml", f"data={shapes_data}", "imgsz=64", "epochs=1",
           "batch=8", "device=0", "amp=True", "workers=0", "plots=False", f"project={tmp_path / 'runs'}", "name=t",
           "exist_ok=True"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]
    assert "CUDA:0" in log, "did not train on the GPU"
    ckpt = torch.load(tmp_path / "runs" / "t" / "weights" / "last.pt", map_location="cpu", weights_only=False)
    assert ckpt["train_args"]["amp"] is True and ckpt["train_args"]["device"] in ("0", 0)
    assert sum(type(m).__name__ == "SHSA" for m in ckpt["model"].modules()) >= 1
