"""Fast paths against the reference formulations declared in each layer's file (``LayerSpec.reference``).

Every layer's default forward (SDPA / channels-first attention, batched windows, linear-order FLA, clone-free LSKA)
must give its reference's outputs *and gradients* (input and every parameter, matched by name: the reference has the
layer's parameter names): fp32 to a relative 1e-5, in eval and train mode, at the sizes the layer declares
(``LayerTests.sizes``); in half precision close to the reference in fp32. Parametrised over the registry, so every
layer with a reference gets them. Structural tests check that each fast path really is the one taken: no N×N tensor
where the point is to avoid it, one batched window call instead of a loop, no clone, no module built per call. No
timing here: speed is measured by ``yolo-attn bench``.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

import yolo_attn.layers.attention as attention
import yolo_attn.layers.cga as cga_module
from conftest import REFERENCED, randomize_, rel_err, small, spec_of
from yolo_attn.layers import BRA, CGA, FLA, LSKA, SHSA, iRMB, textbook, textbook_enabled


def run(layer: torch.nn.Module, x: torch.Tensor, autocast_dtype=None):
    """Output, input gradient and parameter gradients (by name) of one forward/backward with a fixed cotangent."""
    layer.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=autocast_dtype or torch.bfloat16, enabled=autocast_dtype is not None):
        y = layer(x)
    cot = torch.randn(y.shape, generator=torch.Generator().manual_seed(1)).to(y.dtype)
    (y * cot).float().sum().backward()
    grads = {n: p.grad.detach().clone() for n, p in layer.named_parameters() if p.grad is not None}
    return y.detach(), x.grad.detach(), grads


def reference(layer: torch.nn.Module) -> torch.nn.Module:
    """The layer's reference formulation with its weights (``spec.reference``), in fp32, in the layer's mode."""
    return spec_of(layer).reference(copy.deepcopy(layer).float())


def assert_fast_matches_reference(layer, x, tol=1e-5, autocast_dtype=None, param_tol=None):
    """``layer`` (as it is, or under autocast) against its reference in fp32 on ``x`` in fp32."""
    ref = reference(layer)
    y_fast, gx_fast, gp_fast = run(layer, x, autocast_dtype)
    y_ref, gx_ref, gp_ref = run(ref, x.float())
    assert y_ref.abs().max() > 1e-2
    assert rel_err(y_fast, y_ref) <= tol, ("output", rel_err(y_fast, y_ref))
    assert rel_err(gx_fast, gx_ref) <= tol, ("input grad", rel_err(gx_fast, gx_ref))
    assert set(gp_fast) == set(gp_ref) == {n for n, p in layer.named_parameters() if p.requires_grad}
    tol = param_tol or tol
    scale = max((float(g.abs().max()) for g in gp_ref.values()), default=0.0)  # none: parameter-free
    for name in gp_ref:
        a, b = gp_fast[name], gp_ref[name]
        if float(b.abs().max()) < 1e-4 * scale:  # zero in exact arithmetic (a bias before train-mode BatchNorm)
            assert float((a - b).abs().max()) <= tol * scale, (name, float((a - b).abs().max()), scale)
        else:
            assert rel_err(a, b) <= tol, (name, rel_err(a, b))


def cga():
    return randomize_(CGA(16, num_heads=2, key_dim=8, window=7, kernel=3), 1)


def shsa():
    return randomize_(SHSA(16, qk_dim=8, pdim=8), 2)


def fla():
    return randomize_(FLA(16, num_heads=2, window=8), 3)


def lska():
    return randomize_(LSKA(16, k_size=11), 4)


FACTORIES = {"CGA": cga, "SHSA": shsa, "FLA": fla, "LSKA": lska}
"""Instances of the shipped layers for the structural tests of their fast paths (below)."""


# ----------------------------------------------------------------------------------------------------------------------
# fp32 parity: outputs and gradients, every layer with a reference, at its declared sizes
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("name", REFERENCED)
def test_fast_path_matches_reference_fp32(name, mode):
    layer = small(name, seed=REFERENCED.index(name) + 1).train(mode == "train")
    g = torch.Generator().manual_seed(0)
    for H, W in spec_of(layer).tests.sizes:
        x = torch.randn(2, 16, H, W, generator=g)
        # key biases before train-mode BatchNorm get gradients that are zero in exact arithmetic (a shift of all keys
        # does not change the softmax); in fp32 they carry noise of ~1e-5 of the largest bias gradient
        assert_fast_matches_reference(layer, x, param_tol=5e-5 if mode == "train" else None)


SDPA_LAYERS = {  # equal head dims, and q/k narrower (SHSA) or wider (CGA) than v: the zero-padded SDPA inputs
    "SHSA": shsa,
    "SHSA-v-wider": lambda: randomize_(SHSA(16, qk_dim=4, pdim=12), 9),
    "CGA": cga,
    "CGA-qk-wider": lambda: randomize_(CGA(16, num_heads=2, key_dim=16, window=7, kernel=3), 10),
    "iRMB": lambda: randomize_(iRMB(16, dim_head=8, window_size=3), 11),
    "iRMB-v-wider": lambda: randomize_(iRMB(16, dim_head=8, window_size=3, exp_ratio=2), 12),
}


@pytest.mark.parametrize("name", list(SDPA_LAYERS))
def test_sdpa_branch_matches_reference(name, monkeypatch):
    """The SDPA branch (bias as an additive mask for CGA, with its gradient) at test-sized maps: threshold lowered."""
    monkeypatch.setattr(attention, "SDPA_MIN_PAIRS", 1)
    monkeypatch.setattr(attention, "CPU_GRAD_EXPLICIT_MAX_BYTES", 0)  # SDPA also while recording gradients
    called = []
    original = attention.F.scaled_dot_product_attention

    def spy(*args, **kwargs):
        called.append(kwargs.get("attn_mask") is not None)
        return original(*args, **kwargs)

    monkeypatch.setattr(attention.F, "scaled_dot_product_attention", spy)
    layer = SDPA_LAYERS[name]().eval()
    ref = reference(layer)  # built before the spy counts: the reference's own attention is explicit anyway
    x = torch.randn(2, 16, 15, 17, generator=torch.Generator().manual_seed(5))
    y_ref, gx_ref, _ = run(ref, x)
    assert not called, "the reference formulation went through SDPA"
    assert_fast_matches_reference(layer, x)
    assert called and all(has_mask == name.startswith("CGA") for has_mask in called)


def test_heads_form_rules():
    """:func:`heads_form` (token-major 4-D problems, BRA): explicit below ``HEADS_SDPA_MIN_PAIRS`` pairs per problem
    on CPU, SDPA from it on, and SDPA whenever the explicit scores would pass ``CPU_GRAD_EXPLICIT_MAX_BYTES``;
    explicit under the textbook switch; CUDA: SDPA at every size (checked with fake CUDA tensors below)."""
    form = attention.heads_form

    def shapes(batch, heads, n, m, d=8):
        return torch.empty(batch, heads, n, d), torch.empty(batch, heads, m, d), torch.empty(batch, heads, m, d)

    pairs = attention.HEADS_SDPA_MIN_PAIRS
    assert form(*shapes(2, 392, 9, 36)) == "explicit"  # BRA at P5 of a 640 input
    assert form(*shapes(2, 392, 36, 144)) == "sdpa"  # BRA at P4: 5,184 pairs
    assert form(*shapes(1, 1, 1, pairs)) == "sdpa" and form(*shapes(1, 1, 1, pairs - 1)) == "explicit"
    many = attention.CPU_GRAD_EXPLICIT_MAX_BYTES // (4 * 9 * 36) + 1  # small problems, too many scores in all
    assert form(*shapes(1, many, 9, 36)) == "sdpa" and form(*shapes(1, many - 1, 9, 36)) == "explicit"
    with textbook():
        assert form(*shapes(2, 392, 36, 144)) == "explicit"
    assert form(*(t.to("meta") for t in shapes(1, 8, 1024, 1024))) == "sdpa"  # other devices: SDPA_MIN_PAIRS
    assert form(*(t.to("meta") for t in shapes(1, 8, 1024, 1023))) == "explicit"


@pytest.mark.parametrize("qk_dim", [None, 32], ids=["equal-heads", "qk-wider"])
@pytest.mark.parametrize("form", ["explicit", "sdpa"])
def test_bra_both_forms_match_reference(form, qk_dim, monkeypatch):
    """BRA's token attention in either form of :func:`heads_form` (forced), outputs and gradients against the
    reference in train mode; q/k heads wider than v heads (16 vs 8) zero-padded for SDPA."""
    sdpa = form == "sdpa"
    monkeypatch.setattr(attention, "HEADS_SDPA_MIN_PAIRS", 1 if sdpa else 1 << 40)
    monkeypatch.setattr(attention, "CPU_GRAD_EXPLICIT_MAX_BYTES", 1 << 40)
    calls = sdpa_spy(monkeypatch)
    layer = randomize_(BRA(16, num_heads=2, n_win=3, qk_dim=qk_dim), 13).train()
    x = torch.randn(2, 16, 11, 7, generator=torch.Generator().manual_seed(13))
    assert_fast_matches_reference(layer, x)
    assert bool(calls) == sdpa
    for q, k, v, mask in calls:  # (B, heads · windows, tokens, head dim), one call per forward
        assert q.shape[:2] == k.shape[:2] == v.shape[:2] == (2, 2 * 9) and mask is None
        assert q.shape[-1] == k.shape[-1] == v.shape[-1] == (qk_dim or 16) // 2  # CPU: one head dim for q, k, v


def test_bra_textbook_estimate_counts_its_score_matrices():
    """BRA declares ``textbook_bytes`` (what the benchmark skips textbook rows by): its reference's largest tensor
    softmax runs over the score matrix of every head and window, w² queries × topk · w² keys — quadratic in tokens
    — and the estimate is that matrix and its softmax in fp32 (inference); the fast path at a size where the CPU
    takes SDPA runs no softmax."""
    layer = randomize_(BRA(64), 14).eval()  # 8 heads, 7×7 windows, topk 4

    def softmax_sizes(module, x):
        return [n for name, n in op_log(module, x).ops if name == "_softmax"]

    for side in (14, 21):  # windows of 2×2 and 3×3 tokens
        x = torch.randn(2, 64, side, side, generator=torch.Generator().manual_seed(side))
        w2 = (side // 7) ** 2
        scores = 2 * 8 * 49 * w2 * 4 * w2
        assert softmax_sizes(reference(layer), x) == [2 * 49 * 4, scores]  # routing weights, then the tokens
        assert spec_of(layer).textbook_bytes(64, side, 2, False) == scores * 4 * 2
    assert softmax_sizes(layer, torch.randn(1, 64, 56, 56)) == []  # 8×8-token windows: 4,096 pairs per problem


def test_fused_sdpa_splits_calls_past_the_grid_limit(monkeypatch):
    """Where the fused kernels' CUDA grid limits the batch and head dims (65,535), calls are split along them and
    the parts concatenated: the same result as one call, a per-problem mask split with them, a broadcast one kept.
    (The limit is lowered to 3 and applied to CPU here; the CUDA tests run the real one.)"""
    monkeypatch.setattr(attention, "CUDA_MAX_GRID", 3)
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(7, 5, 6, 8, generator=g) for _ in range(3))
    masks = [None, torch.randn(7, 1, 6, 6, generator=g), torch.randn(1, 5, 6, 6, generator=g)]
    want = [F.scaled_dot_product_attention(q, k, v, attn_mask=m, scale=0.3) for m in masks]
    monkeypatch.setattr(attention, "GRID_LIMITED_DEVICES", ("cpu",))
    calls = sdpa_spy(monkeypatch)
    for mask, w in zip(masks, want):
        calls.clear()
        got = attention.fused_sdpa(q, k, v, mask, 0.3)
        assert torch.allclose(got, w, atol=1e-6, rtol=0)
        assert len(calls) == 3 * 2 and all(c[0].shape[0] <= 3 and c[0].shape[1] <= 3 for c in calls)


def test_shsa_sdpa_at_natural_threshold(monkeypatch):
    """33×32 = 1,056 tokens: past SDPA_MIN_PAIRS without lowering it."""
    assert 33 * 32 * 33 * 32 >= attention.SDPA_MIN_PAIRS > 32 * 31 * 32 * 31
    layer = randomize_(SHSA(8, qk_dim=4, pdim=4), 6).eval()
    x = torch.randn(1, 8, 33, 32, generator=torch.Generator().manual_seed(6))
    assert op_log(layer, x).largest() < 1056 * 1056 // 20  # no_grad: SDPA, no N×N tensor
    monkeypatch.setattr(attention, "CPU_GRAD_EXPLICIT_MAX_BYTES", 0)
    assert_fast_matches_reference(layer, x)


def test_cpu_training_keeps_moderate_problems_explicit(monkeypatch):
    """With autograd recording on CPU, SDPA only past CPU_GRAD_EXPLICIT_MAX_BYTES of score matrices."""
    layer = shsa().train()
    x = torch.randn(2, 16, 40, 40, requires_grad=True)  # 2 × 1600² × 4 B = 20 MB of scores
    n2 = (40 * 40) ** 2
    assert op_log(layer, x, grad=True).largest() >= n2  # explicit (cheaper backward on CPU)
    assert op_log(layer, x, grad=False).largest() < n2 // 20  # inference: SDPA
    monkeypatch.setattr(attention, "CPU_GRAD_EXPLICIT_MAX_BYTES", 2 * n2 * 4 - 1)
    assert op_log(layer, x, grad=True).largest() < n2 // 20  # past the budget: SDPA, memory bounded


# ----------------------------------------------------------------------------------------------------------------------
# low precision
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", REFERENCED)
def test_fast_path_bf16_autocast_close_to_reference(name):
    """bf16 autocast against the reference in fp32: outputs to a few 1e-2 (bf16 keeps 8 significant bits), input
    and parameter gradients to 1e-1 or no worse than the reference's own under bf16 autocast (FLA's gradients through
    the focusing power and norms are ill-conditioned: 0.14 on the input for both forms)."""
    layer = small(name, seed=7).eval()
    x = torch.randn(2, 16, 9, 13, generator=torch.Generator().manual_seed(7))
    ref = reference(layer)
    y_ref, gx_ref, gp_ref = run(ref, x)
    y_fast, gx_fast, gp_fast = run(layer, x, torch.bfloat16)
    _, gx_ref_bf16, gp_ref_bf16 = run(ref, x, torch.bfloat16)
    assert rel_err(y_fast, y_ref) <= 5e-2
    assert rel_err(gx_fast, gx_ref) <= max(5e-2, 1.25 * rel_err(gx_ref_bf16, gx_ref))
    scale = max((float(g.abs().max()) for g in gp_ref.values()), default=0.0)  # none: parameter-free
    for key, b in gp_ref.items():
        err = float((gp_fast[key] - b).abs().max())
        err_ref = float((gp_ref_bf16[key] - b).abs().max())
        assert err <= max(1e-1 * max(float(b.abs().max()), 1e-2 * scale), 1.25 * err_ref), (key, err, err_ref)


@pytest.mark.parametrize("name", REFERENCED)
def test_fast_path_fp16_close_to_reference(name):
    layer = small(name, seed=8).eval()
    ref = reference(layer)
    x = torch.randn(2, 16, 9, 13, generator=torch.Generator().manual_seed(8))
    y_fast, gx_fast, _ = run(layer.half(), x.half())
    y_ref, gx_ref, _ = run(ref, x)
    assert y_fast.dtype == torch.float16 and torch.isfinite(y_fast).all() and torch.isfinite(gx_fast).all()
    assert rel_err(y_fast, y_ref) <= 1e-2
    assert rel_err(gx_fast, gx_ref) <= 3e-2  # FLA: 2.5e-2 (its reference in fp16 overflows: NaN)


# ----------------------------------------------------------------------------------------------------------------------
# the switch itself
# ----------------------------------------------------------------------------------------------------------------------
def test_textbook_switch_nests_and_restores_on_error():
    assert not textbook_enabled()
    with textbook():
        assert textbook_enabled()
        with textbook(False):
            assert not textbook_enabled()
        assert textbook_enabled()
    assert not textbook_enabled()
    with pytest.raises(RuntimeError), textbook():
        raise RuntimeError
    assert not textbook_enabled()


class OpLog(TorchDispatchMode):
    """Records (op name, output numel) of every aten op."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        outs = out if isinstance(out, (tuple, list)) else [out]
        numel = max((t.numel() for t in outs if isinstance(t, torch.Tensor)), default=0)
        self.ops.append((str(func.overloadpacket.__name__), numel))
        return out

    def largest(self) -> int:
        return max(n for _, n in self.ops)

    def names(self) -> set[str]:
        return {n for n, _ in self.ops}


def op_log(module, x, grad: bool = False) -> OpLog:
    log = OpLog()
    with torch.set_grad_enabled(grad), log:
        module(x)
    return log


@pytest.mark.parametrize("name", ["SHSA", "FLA"])
def test_no_token_by_token_matrix_on_the_fast_path(name):
    """At 40×40 (1,600 tokens) the reference builds N×N = 2.56 M entries per head; the fast path never does."""
    layer = FACTORIES[name]().eval()
    x = torch.randn(1, 16, 40, 40)
    n2 = (40 * 40) ** 2
    assert op_log(reference(layer), x).largest() >= n2
    assert op_log(layer, x).largest() < n2 // 20


def test_fla_quadratic_order_only_where_cheaper():
    """2×2 map, head dim 8: N = 4 < d, so the fast path also multiplies φ(q)φ(k)ᵀ (N×N) first — and no d×d product."""
    layer = fla().eval()
    shapes = []

    class Shapes(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func.overloadpacket.__name__ in ("bmm", "matmul", "mm") and isinstance(out, torch.Tensor):
                shapes.append(tuple(out.shape[-2:]))
            return out

    with torch.no_grad(), Shapes():
        layer(torch.randn(1, 16, 2, 2))
    assert (4, 4) in shapes and (8, 8) not in shapes, shapes
    shapes.clear()
    with torch.no_grad(), Shapes():
        layer(torch.randn(1, 16, 9, 13))  # N = 117 > d = 8: keys first
    assert (8, 8) in shapes and (117, 117) not in shapes, shapes


def test_cga_windows_batched_not_looped():
    layer = cga().eval()
    calls = []
    layer.attn.attn.register_forward_hook(lambda m, a, o: calls.append(tuple(a[0].shape)))
    x = torch.randn(2, 16, 15, 17)  # padded to 21×21: 3×3 windows of 7×7
    with torch.no_grad():
        layer(x)
    assert calls == [(2 * 9, 16, 7, 7)]
    assert sum(1 for n, _ in op_log(layer, x).ops if n == "constant_pad_nd") == 1


def test_lska_fast_path_has_no_clone():
    layer = lska().eval()
    x = torch.randn(1, 16, 9, 13)
    assert "clone" in op_log(reference(layer), x).names()  # the official form's defensive clone
    assert "clone" not in op_log(layer, x).names()
    assert "clone" not in op_log(layer, x.requires_grad_(), grad=True).names()


def test_lska_in_place_gate_leaves_input_alone():
    layer = lska().eval()
    x = torch.randn(1, 16, 9, 13)
    before = x.clone()
    with torch.no_grad():
        y = layer(x)
    assert torch.equal(x, before)
    with torch.no_grad():
        assert rel_err(y, reference(layer)(x)) <= 1e-6


def test_fla_builds_no_module_per_call(monkeypatch):
    layer = fla().eval()
    built = []
    original = torch.nn.Module.__init__

    def counting_init(self, *args, **kwargs):
        built.append(type(self).__name__)
        original(self, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "__init__", counting_init)
    with torch.no_grad():
        for size in [(8, 8), (9, 13), (2, 1)]:
            layer(torch.randn(1, 16, *size))
    assert built == []


def test_fast_path_has_no_lasting_effect_on_copies():
    """The textbook switch is read per forward; a deepcopy made inside the block is an ordinary layer outside."""
    with textbook():
        layer = copy.deepcopy(shsa()).eval()
    x = torch.randn(1, 16, 40, 40)
    assert op_log(layer, x).largest() < (40 * 40) ** 2 // 20


# ----------------------------------------------------------------------------------------------------------------------
# CPU inference in query blocks (chunked_attention)
# ----------------------------------------------------------------------------------------------------------------------
CHUNKED_LAYERS = {  # v wider than q/k, where SDPA would need zero-padding; CGA: the attention bias per block
    "SHSA-v-wider": (lambda: randomize_(SHSA(16, qk_dim=4, pdim=12), 11), (2, 16, 15, 17)),
    "CGA": (cga, (2, 16, 15, 17)),
}


@pytest.mark.parametrize("name", list(CHUNKED_LAYERS))
def test_chunked_inference_matches_reference(name, monkeypatch):
    """Blocks of query rows (the last one partial) give the reference's output, and no N×M matrix is built."""
    factory, shape = CHUNKED_LAYERS[name]
    layer = factory().eval()
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(12))
    monkeypatch.setattr(attention, "CHUNK_BYTES", 2 * 40 * 4 * 7)  # 7 query rows of ≤ 40 keys per block, batch 2
    # (CGA: 49 × 49 scores per window > 2,240 bytes, so its windows go through blocks too)
    called = []
    original = attention.chunked_attention
    monkeypatch.setattr(attention, "chunked_attention", lambda *a, **k: called.append(a[0].shape) or original(*a, **k))
    ref = reference(layer)
    with torch.no_grad():
        y_fast = layer(x)
        y_ref = ref(x)
    assert called, "chunked path not taken"
    assert rel_err(y_fast, y_ref) <= 1e-5
    if name.startswith("SHSA"):  # one attention problem over all 255 tokens: blocks of 7 × 255, never 255 × 255
        n = shape[2] * shape[3]
        assert op_log(ref, x).largest() >= 2 * n * n
        assert op_log(layer, x).largest() < n * n // 4  # feature maps (2×20×255) and 2×7×255 blocks


def test_cpu_inference_picks_sdpa_or_blocks_by_padding():
    """SDPA when q/k and v widths match (or the problem is large enough to repay the padding), blocks otherwise."""
    def path(dqk, dv, n):
        q, k, v = torch.randn(1, dqk, n), torch.randn(1, dqk, n), torch.randn(1, dv, n)
        calls = []
        sdpa, chunked = attention.sdpa_attention, attention.chunked_attention
        try:
            attention.sdpa_attention = lambda *a, **kw: calls.append("sdpa") or sdpa(*a, **kw)
            attention.chunked_attention = lambda *a, **kw: calls.append("chunked") or chunked(*a, **kw)
            with torch.no_grad():
                out = attention.channels_first_attention(q, k, v, 0.25)
        finally:
            attention.sdpa_attention, attention.chunked_attention = sdpa, chunked
        ref = attention.explicit_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), 0.25)
        assert rel_err(out, ref.transpose(1, 2)) <= 1e-5
        return calls or ["explicit"]

    assert path(16, 16, 1600) == ["sdpa"]  # SHSA P4 of a pdim-16 model
    assert path(16, 64, 1600) == ["chunked"]  # SHSA P4 of YOLOv8s: 4× padding does not pay at 1,600 tokens
    assert path(16, 32, 80 * 80) == ["sdpa"]  # SHSA P3 of YOLOv8s
    assert path(16, 64, 400) == ["explicit"]  # P5: 0.6 MB of scores, one block

    def cga_path(batch):
        q, k, v = torch.randn(batch, 16, 49), torch.randn(batch, 16, 49), torch.randn(batch, 64, 49)
        with torch.no_grad():
            chunked = attention.chunked_attention
            try:
                attention.chunked_attention = None  # would raise if called
                return attention.channels_first_attention(q, k, v, 0.25, torch.randn(49, 49)).shape
            finally:
                attention.chunked_attention = chunked

    assert cga_path(2304) == (2304, 64, 49)  # CGA at P3, batch 16: 22 MB of 7×7-window scores, one baddbmm


# ----------------------------------------------------------------------------------------------------------------------
# what SDPA is handed (CUDA's fused kernels take 4-D inputs only; a CPU run cannot see the fallback, so pin the layout)
# ----------------------------------------------------------------------------------------------------------------------
def sdpa_spy(monkeypatch) -> list:
    """Record (q, k, v, attn_mask) of every ``F.scaled_dot_product_attention`` call."""
    calls = []
    original = attention.F.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, **kwargs):
        calls.append((q, k, v, attn_mask))
        return original(q, k, v, attn_mask=attn_mask, **kwargs)

    monkeypatch.setattr(attention.F, "scaled_dot_product_attention", spy)
    return calls


@pytest.mark.parametrize("name", ["SHSA", "CGA"])
@pytest.mark.parametrize("grad", [False, True])
def test_sdpa_is_handed_4d_inputs_with_unit_last_stride(name, grad, monkeypatch):
    """Every SDPA call of SHSA (no mask) and CGA (bias as a mask), inference and training: q, k, v and the mask
    4-D ``(B, heads, tokens, dim)``, stride 1 along the head dim (what the fused kernels read)."""
    monkeypatch.setattr(attention, "SDPA_MIN_PAIRS", 1)
    monkeypatch.setattr(attention, "CPU_GRAD_EXPLICIT_MAX_BYTES", 0)
    calls = sdpa_spy(monkeypatch)
    layer = FACTORIES[name]().train(grad)
    x = torch.randn(2, 16, 15, 17, requires_grad=grad)
    with torch.set_grad_enabled(grad):
        y = layer(x)
    if grad:
        y.sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()
    assert calls
    for q, k, v, mask in calls:
        assert q.dim() == k.dim() == v.dim() == 4, (q.shape, k.shape, v.shape)
        assert q.shape[1] == k.shape[1] == v.shape[1] == 1  # one head per call (CGA: per cascade step)
        assert q.stride(-1) == k.stride(-1) == v.stride(-1) == 1
        assert (mask is None) == (name == "SHSA")
        if mask is not None:
            assert mask.dim() == 4 and mask.dtype == q.dtype and mask.shape[-2:] == (q.shape[2], k.shape[2])


def test_shsa_at_p3_uses_the_fused_cpu_kernel():
    """SHSA at P3 of YOLOv8n (6,400 tokens, 16-dim q/k and v) in inference: the fused kernel (flash on CPU) accepts
    the inputs — ``sdpa_kernel`` restricted to it raises "No available kernel" if the layout made SDPA fall back."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    layer = randomize_(SHSA(64), 5).eval()  # pdim 16
    x = torch.randn(1, 64, 80, 80, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert attention.attention_form(*(torch.empty(1, d, 6400) for d in (16, 16, 16))) == "sdpa"
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
            fused = layer(x)
        want = reference(layer)(x)
    assert rel_err(fused, want) <= 1e-5


@pytest.mark.parametrize("dqk,dv", [(16, 16), (16, 64), (12, 25), (8, 4), (3, 3)])
def test_cuda_layout_aligns_head_dims_and_keeps_the_math(dqk, dv):
    """The CUDA layout (built here on CPU tensors): head dims zero-padded to multiples of 8 only where they are not
    (the memory-efficient kernel's alignment), q/k and v widths left different (it accepts that), 4-D with unit last
    stride; SDPA on the padded inputs (any kernel) gives the explicit attention of the unpadded ones."""
    g = torch.Generator().manual_seed(dqk * 100 + dv)
    q, k, v = torch.randn(3, 20, dqk, generator=g), torch.randn(3, 30, dqk, generator=g), torch.randn(3, 30, dv, generator=g)
    bias = torch.randn(20, 30, generator=g)
    q4, k4, v4, mask, keep = attention.sdpa_inputs(q.transpose(1, 2).contiguous().transpose(1, 2), k, v, bias,
                                                   device_type="cuda")
    align = attention.CUDA_HEAD_ALIGN
    assert q4.shape == (3, 1, 20, -(-dqk // align) * align) and k4.shape[-1] == q4.shape[-1]
    assert v4.shape == (3, 1, 30, -(-dv // align) * align) and keep == dv
    if dqk % align == 0 and dv % align == 0:
        assert q4.shape[-1] == dqk and v4.shape[-1] == dv  # nothing padded, widths not equalised
    assert all(t.stride(-1) == 1 for t in (q4, k4, v4)) and mask.shape == (1, 1, 20, 30)
    out = F.scaled_dot_product_attention(q4, k4, v4, attn_mask=mask, scale=0.3).squeeze(1)[..., :keep]
    assert rel_err(out, attention.explicit_attention(q, k, v, 0.3, bias)) <= 1e-5
    cpu = attention.sdpa_inputs(q, k, v, bias, device_type="cpu")  # CPU: one head dim for all three
    assert cpu[0].shape[-1] == cpu[1].shape[-1] == cpu[2].shape[-1] == max(dqk, dv)
    per_image = torch.randn(3, 20, 30, generator=g)  # a (B, N, M) bias: one head axis, after the batch
    *_, mask3, _ = attention.sdpa_inputs(q, k, v, per_image, device_type="cuda")
    assert mask3.shape == (3, 1, 20, 30)
    out = F.scaled_dot_product_attention(q4, k4, v4, attn_mask=mask3, scale=0.3).squeeze(1)[..., :keep]
    assert rel_err(out, attention.explicit_attention(q, k, v, 0.3, per_image)) <= 1e-5


def test_cga_converts_its_bias_once_per_forward(monkeypatch):
    """Under bf16 autocast the bias table (fp32) is converted to the scores' dtype once per forward, not per head:
    every attention call receives a bias already in q's dtype."""
    layer = FACTORIES["CGA"]().eval()  # 2 heads
    seen = []
    original = attention.channels_first_attention

    def spy(q, k, v, scale, bias=None, fp32_scores=False):
        seen.append((q.dtype, bias.dtype))
        return original(q, k, v, scale, bias, fp32_scores)

    monkeypatch.setattr(cga_module, "channels_first_attention", spy)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        layer(torch.randn(1, 16, 15, 17))
    assert len(seen) == 2 and all(qd == bd == torch.bfloat16 for qd, bd in seen), seen
    seen.clear()
    with torch.no_grad(), textbook(), torch.autocast("cpu", dtype=torch.bfloat16):  # the explicit form: promotes
        layer(torch.randn(1, 16, 15, 17))
    assert all(bd == torch.float32 for _, bd in seen), seen


def test_token_major_copies_consecutive_channel_slices_once():
    """q, k, v split from one convolution output: one transposed copy for all three (each copy is a kernel launch),
    the same values and gradients as three copies; slices that are not consecutive are copied on their own."""
    x = torch.randn(2, 40, 7, 9, requires_grad=True)
    conv_out = (x * 2).flatten(2)  # (B, 40, N), a fresh contiguous tensor
    q, k, v = conv_out.split([8, 8, 24], dim=1)
    log = OpLog()
    with log:
        got = attention.token_major(q, k, v)
    assert sum(name in ("clone", "copy_", "_to_copy") for name, _ in log.ops) == 1, log.ops
    want = [t.transpose(1, 2).contiguous() for t in (q, k, v)]
    assert all(g.stride(-1) == 1 and torch.equal(g, w) for g, w in zip(got, want))
    weights = [torch.randn(w.shape, generator=torch.Generator().manual_seed(i)) for i, w in enumerate(want)]
    (gx,) = torch.autograd.grad(sum((g * w).sum() for g, w in zip(got, weights)), x, retain_graph=True)
    (gx_ref,) = torch.autograd.grad(sum((t * w).sum() for t, w in zip(want, weights)), x)
    assert torch.equal(gx, gx_ref)
    log = OpLog()
    with log:
        apart = attention.token_major(q, v)  # k between them: two copies
    assert sum(name == "clone" for name, _ in log.ops) == 2 and torch.equal(apart[1], want[2])


# ----------------------------------------------------------------------------------------------------------------------
# the CUDA code path without a GPU: fake CUDA tensors (shapes, dtypes and dispatch; no data)
# ----------------------------------------------------------------------------------------------------------------------
def test_a_forward_on_fake_tensors_leaves_nothing_real_calls_pick_up(monkeypatch):
    """CGA memoises its bias index per window size and device. A forward on fake tensors (``FakeTensorMode``: the
    benchmark's operator trace, the fake-CUDA tests below) builds a fake index, which must not reach the cache real
    calls read: they would index the biases with it and return a fake tensor (as they did, timing nothing)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    monkeypatch.setattr(cga_module, "_OFFSET_INDEX", {})  # empty: the fake calls below would fill it
    layer = randomize_(CGA(32).eval(), 3)
    x = torch.randn(1, 32, 20, 20)
    with FakeTensorMode(allow_non_fake_inputs=True) as mode:
        with torch.no_grad():
            assert type(layer(mode.from_tensor(x))).__name__ == "FakeTensor"  # a fake input
            layer(x)  # a real input under the active mode: the index it builds is fake too
    assert all(type(t) is torch.Tensor for t in cga_module._OFFSET_INDEX.values()), cga_module._OFFSET_INDEX
    with torch.no_grad():
        y = layer(x)
    assert type(y) is torch.Tensor and rel_err(y, reference(layer)(x)) <= 1e-5
    assert all(type(t) is torch.Tensor for t in cga_module._OFFSET_INDEX.values()) and cga_module._OFFSET_INDEX


def fake_cuda_forward(layer, shape, dtype, monkeypatch):
    """``layer`` (fused, eval) on a fake CUDA input of ``shape``: (SDPA calls, aten operators of the forward)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from yolo_attn.layers import fuse_layers

    fuse_layers(layer.eval())
    with FakeTensorMode(allow_non_fake_inputs=True):
        layer = layer.to("cuda", dtype)
        x = torch.randn(*shape, device="cuda", dtype=dtype)
        with torch.no_grad():
            layer(x)  # per-size caches filled
            calls = []

            def fused(q, k, v, attn_mask=None, **kwargs):  # what a fused kernel returns; fake tensors pick no kernel
                calls.append((q, k, v, attn_mask))
                return q.new_empty(*q.shape[:-1], v.shape[-1])

            monkeypatch.setattr(attention.F, "scaled_dot_product_attention", fused)
            log = OpLog()
            with log:
                layer(x)
    return calls, [name for name, _ in log.ops]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_path_cga_one_fused_call_per_head_no_fp32_round_trip(dtype, monkeypatch):
    """CGA at P5 of YOLOv8n on CUDA: every head's attention is one SDPA call on 4-D inputs in the model's dtype (the
    fused kernels form the scores in fp32 themselves: no casts of q, k, v to fp32 and back), the bias in that dtype;
    q and the k|v pair each made token-major in one copy."""
    calls, ops = fake_cuda_forward(CGA(256), (1, 256, 20, 20), dtype, monkeypatch)
    assert len(calls) == 4  # heads
    for q, k, v, mask in calls:
        assert q.device.type == "cuda" and q.dim() == k.dim() == v.dim() == mask.dim() == 4
        assert q.dtype == k.dtype == v.dtype == mask.dtype == dtype
    assert "_to_copy" not in ops, ops
    assert ops.count("clone") == 2 * 4 + 2  # per head q and k|v; the window partition in and out


def test_cuda_path_shsa_is_one_fused_call_at_every_size(monkeypatch):
    """SHSA on CUDA takes SDPA at every map size (no CPU threshold), with q, k and v made token-major in one copy."""
    for side in (80, 20, 3):
        calls, ops = fake_cuda_forward(SHSA(64), (2, 64, side, side), torch.float16, monkeypatch)
        assert len(calls) == 1 and calls[0][0].shape == (2, 1, side * side, 16)
        assert ops.count("clone") == 1 and "bmm" not in ops and "_softmax" not in ops


def test_cuda_path_bra_one_fused_call(monkeypatch):
    """BRA on CUDA: the token attention of every head and window in one SDPA call on 4-D inputs (B, heads · n_win²,
    tokens, head dim) in the model's dtype, at every map size; no token-level score matrix built (no softmax: the
    window-level routing is a top-k of plain products)."""
    for side, dtype in ((80, torch.float16), (20, torch.float32), (5, torch.bfloat16)):
        calls, ops = fake_cuda_forward(BRA(64), (2, 64, side, side), dtype, monkeypatch)
        w2 = (-(-side // 7)) ** 2  # tokens per window
        assert len(calls) == 1
        q, k, v, mask = calls[0]
        assert q.shape == (2, 8 * 49, w2, 8) and k.shape == v.shape == (2, 8 * 49, 4 * w2, 8) and mask is None
        assert q.dtype == k.dtype == v.dtype == dtype
        assert "_softmax" not in ops, ops


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_path_irmb_one_fused_call_no_fp32_round_trip(dtype, monkeypatch):
    """iRMB on CUDA: the windows' attention in one SDPA call (every window and head a problem, 4-D), in the model's
    dtype (the fused kernels form the scores in fp32: no casts to fp32 and back, as the CPU form needs in fp16)."""
    calls, ops = fake_cuda_forward(iRMB(128), (2, 128, 20, 20), dtype, monkeypatch)  # 2 heads, 3×3 windows of 49
    assert len(calls) == 1
    q, k, v, mask = calls[0]
    assert q.shape == (2 * 9 * 2, 1, 49, 64) and v.shape == (2 * 9 * 2, 1, 49, 64) and mask is None
    assert q.dtype == dtype and "_to_copy" not in ops and "_softmax" not in ops, ops
