"""Tests of the layers against their reference formulations, each declared in the layer's own file.

The per-layer tests are parametrised over the registry: every registered layer (a layer file dropped into
``yolo_attn/layers``, a user's module) gets them, from its declarations (``LayerTests``). The layer-specific tests below
pin each shipped layer's official behaviour: the reference restatements keep the official attribute names, so a
test randomises the reference, loads its weights into the layer with ``strict=True`` and compares outputs in eval
and train mode. Parity tests randomise *every* parameter and BatchNorm statistic first (the official inits put the
output BatchNorm scales at 0, which would make both sides output exactly 0 and the comparison vacuous).
"""

from __future__ import annotations

import copy
import re
import warnings

import pytest
import torch

from conftest import BUILTIN, NAMES, REFERENCED, make_layer, randomize_, rel_err, small
from yolo_attn.layers import CGA, FLA, LSKA, REGISTRY, SHSA
from yolo_attn.layers.cga import LocalWindowAttentionReference, relative_offset_index
from yolo_attn.layers.fla import FocusedLinearAttentionReference
from yolo_attn.layers.lska import LSKAReference
from yolo_attn.layers.shsa import SHSAReference


def test_every_shipped_layer_declares_its_reference_and_tests():
    for name in BUILTIN:
        spec = REGISTRY[name]
        assert spec.reference is not None and spec.tests.small is not None, name
        assert spec.official_code and spec.paper and spec.summary, name
    assert set(BUILTIN) <= set(REFERENCED)


LSKA_SIZES = (7, 11, 23, 35, 41, 53)
SIZES = [(1, 1), (1, 5), (3, 2), (7, 7), (9, 13), (20, 20), (31, 17)]


# ----------------------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------------------
def assert_same_state_dict_layout(ours: torch.nn.Module, ref: torch.nn.Module) -> None:
    """Same keys, shapes and dtypes; then load the reference's weights into ``ours`` with strict=True."""
    sd, rsd = ours.state_dict(), ref.state_dict()
    assert sorted(sd) == sorted(rsd), (sorted(set(sd) ^ set(rsd)),)
    for key, val in rsd.items():
        assert sd[key].shape == val.shape, (key, sd[key].shape, val.shape)
        assert sd[key].dtype == val.dtype, (key, sd[key].dtype, val.dtype)
    ours.load_state_dict(rsd, strict=True)


def load_after_eval(ours: torch.nn.Module, ref: torch.nn.Module, example: torch.Tensor) -> None:
    """Put ``ours`` in eval mode and run it once *before* loading the reference's weights into the part that mirrors
    the official module (``ours.attn`` for the residual blocks, ``ours`` itself for LSKA).

    A layer that caches anything derived from its parameters at ``eval()`` (as the official CGA does with its bias
    table) would then answer with stale values; Ultralytics' EMA updates an eval-mode copy in place every step.
    """
    ours.eval()
    with torch.no_grad():
        ours(example)
    assert_same_state_dict_layout(ours if isinstance(ours, LSKA) else ours.attn, ref)


def make_layers():
    """Small, randomised instances of every registered layer (randomised so the attention branches are not 0)."""
    return {name: small(name, k + 1) for k, name in enumerate(NAMES)}


@pytest.fixture(scope="module")
def layers():
    return make_layers()


@pytest.fixture
def layer(request, layers):
    m = copy.deepcopy(layers[request.param])
    return m.eval()


# ----------------------------------------------------------------------------------------------------------------------
# reference self-check (cheap; the reference was also compared numerically with the official code, outside the repo)
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("r", [1, 2, 3, 7])
def test_reference_offset_index_matches_first_appearance_numbering(r):
    """The official numbering: scan (p1, p2) pairs row-major, number each new (|dy|, |dx|) on first sight."""
    points = [(i, j) for i in range(r) for j in range(r)]
    seen, idxs = {}, []
    for p1 in points:
        for p2 in points:
            off = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
            seen.setdefault(off, len(seen))
            idxs.append(seen[off])
    assert len(seen) == r * r
    assert torch.equal(relative_offset_index(r, r, r), torch.tensor(idxs).view(r * r, r * r))


# ----------------------------------------------------------------------------------------------------------------------
# CGA parity
# ----------------------------------------------------------------------------------------------------------------------
def official_cga(c1, num_heads=4, key_dim=16, window=7, kernel=5):
    return LocalWindowAttentionReference(
        dim=c1,
        key_dim=key_dim,
        num_heads=num_heads,
        attn_ratio=c1 / (key_dim * num_heads),
        resolution=window,
        window_resolution=window,
        kernels=[kernel] * num_heads,
    )


CGA_CASES = [
    # (c1, num_heads, key_dim, window, kernel), sizes: multiples of the window, and both sides > window (padded)
    ((64, 4, 16, 7, 5), [(7, 7), (14, 21), (28, 14), (10, 16)]),
    ((32, 2, 8, 5, 3), [(5, 5), (10, 15), (12, 11), (6, 9)]),
    ((24, 3, 16, 4, 7), [(4, 4), (8, 12), (9, 5)]),  # attn_ratio = 0.5, kernel wider than the window
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("cfg", "sizes"), CGA_CASES, ids=lambda v: str(v))
def test_cga_matches_official_eval(cfg, sizes, dtype):
    c1, nh, kd, win, k = cfg
    ref = randomize_(official_cga(c1, nh, kd, win, k), seed=c1, sharp=True).to(dtype).eval()
    ours = CGA(c1, num_heads=nh, key_dim=kd, window=win, kernel=k).to(dtype)
    fresh_idx = ours.attn.attn.attention_bias_idxs.clone()
    assert fresh_idx.dtype == torch.int64
    assert torch.equal(fresh_idx, ref.attn.attention_bias_idxs)
    assert "attn.attention_bias_idxs" in ours.attn.state_dict()  # persistent buffer, as in the official code
    assert ours.attn.attn.d == c1 // nh
    load_after_eval(ours, ref, torch.zeros(1, c1, win, win, dtype=dtype))
    g = torch.Generator().manual_seed(7)
    for H, W in sizes:
        x = torch.randn(2, c1, H, W, generator=g, dtype=torch.float64).to(dtype)
        with torch.no_grad():
            expected = ref(x)
            got = ours.attn(x)
            full = ours(x)
        assert expected.abs().max() > 1e-2, "reference output ~0: parity would be vacuous"
        assert got.shape == expected.shape == x.shape
        assert got.dtype == dtype
        assert rel_err(got, expected) <= 1e-5, ((H, W), rel_err(got, expected))
        assert torch.equal(full, x + got)


@pytest.mark.parametrize("size", [(14, 21), (10, 16)])
def test_cga_matches_official_train(size):
    """Train mode: BatchNorm uses batch statistics (padded zeros included, as in the official code)."""
    c1 = 32
    ref = randomize_(official_cga(c1, 2, 8, 7, 5), seed=11, sharp=True).double().train()
    ours = CGA(c1, num_heads=2, key_dim=8, window=7, kernel=5).double().train()
    assert_same_state_dict_layout(ours.attn, ref)
    x = torch.randn(2, c1, *size, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    expected, got = ref(x), ours.attn(x)
    assert expected.abs().max() > 1e-2
    assert rel_err(got, expected) <= 1e-5
    # running statistics moved identically
    for key, val in ref.state_dict().items():
        if key.endswith(("running_mean", "running_var")):
            assert torch.allclose(ours.attn.state_dict()[key], val, rtol=1e-9, atol=1e-12), key


def test_cga_matches_official_sdpa_sized_window():
    """A 32×32 window has 1024² query/key pairs: exercises the project's large-window attention path."""
    c1, win = 8, 32
    ref = randomize_(official_cga(c1, 2, 4, win, 3), seed=5, sharp=True).eval()
    ours = CGA(c1, num_heads=2, key_dim=4, window=win, kernel=3)
    load_after_eval(ours, ref, torch.zeros(1, c1, 4, 4))
    g = torch.Generator().manual_seed(9)
    for H, W in [(32, 32), (33, 40)]:
        x = torch.randn(1, c1, H, W, generator=g)
        with torch.no_grad():
            expected, got = ref(x), ours.attn(x)
        assert expected.abs().max() > 1e-2
        assert rel_err(got, expected) <= 1e-5, ((H, W), rel_err(got, expected))


@pytest.mark.parametrize("size", [(3, 5), (1, 1), (7, 2), (6, 7)])
def test_cga_small_map_is_one_window_of_its_own_size(size):
    """Not an official behaviour (the official module only runs at exactly window×window when H, W <= window):
    the layer documents that a smaller map is a single window of its own size, with each head's bias for offset
    (|dy|, |dx|) read from the same table entry |dy| * window + |dx|, and no zero padding."""
    c1, win = 16, 7
    H, W = size
    ys, xs = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    ys, xs = ys.reshape(-1), xs.reshape(-1)
    expected_idx = (ys[:, None] - ys[None, :]).abs() * win + (xs[:, None] - xs[None, :]).abs()
    assert torch.equal(relative_offset_index(H, W, win), expected_idx)
    ref = randomize_(official_cga(c1, 2, 8, win, 3), seed=13, sharp=True).double().eval()
    ours = CGA(c1, num_heads=2, key_dim=8, window=win, kernel=3).double()
    load_after_eval(ours, ref, torch.zeros(1, c1, win, win, dtype=torch.float64))
    x = torch.randn(2, c1, H, W, dtype=torch.float64)
    with torch.no_grad():
        expected, got = ref.attn(x), ours.attn(x)  # the reference's cascade on the map as one window
    assert expected.abs().max() > 1e-2
    assert rel_err(got, expected) <= 1e-9


def test_cga_eval_output_follows_in_place_parameter_updates():
    """EMA-style in-place updates in eval mode must show up in the next forward (no stale cached bias)."""
    m = randomize_(CGA(16, num_heads=2, key_dim=8, window=7), 0).eval()
    x = torch.randn(1, 16, 14, 14)
    with torch.no_grad():
        before = m(x)
        m.attn.attn.attention_biases.mul_(-3.0).add_(1.0)
        after = m(x)
    assert not torch.allclose(before, after)
    ref = official_cga(16, 2, 8, 7, 5).eval()
    ref.load_state_dict(m.attn.state_dict(), strict=True)
    with torch.no_grad():
        assert rel_err(m.attn(x), ref(x)) <= 1e-5


# ----------------------------------------------------------------------------------------------------------------------
# LSKA parity
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k_size", LSKA_SIZES)
def test_lska_is_the_official_lska(k_size):
    c1 = 8
    ref = randomize_(LSKAReference(c1, k_size), seed=k_size, sharp=True).eval()
    ours = LSKA(c1, k_size=k_size)
    for name in ("conv0h", "conv0v", "conv_spatial_h", "conv_spatial_v", "conv1"):
        a, b = getattr(ours, name), getattr(ref, name)
        assert (a.kernel_size, a.padding, a.dilation, a.groups, a.stride) == (
            b.kernel_size, b.padding, b.dilation, b.groups, b.stride
        ), name
    load_after_eval(ours, ref, torch.zeros(1, c1, 5, 5))
    g = torch.Generator().manual_seed(k_size)
    for H, W in [(9, 13), (20, 20), (1, 1)]:
        x = torch.randn(2, c1, H, W, generator=g)
        with torch.no_grad():
            expected, got = ref(x), ours(x)
        assert expected.abs().max() > 1e-3
        assert rel_err(got, expected) <= 1e-5, ((H, W), rel_err(got, expected))


def test_lska_default_k_size_is_7():
    assert LSKA(8).k_size == 7
    assert LSKA(8).conv_spatial_h.dilation == LSKAReference(8, 7).conv_spatial_h.dilation


# ----------------------------------------------------------------------------------------------------------------------
# FLA parity
# ----------------------------------------------------------------------------------------------------------------------
def official_fla(c1, num_heads=8, window=20, focusing_factor=3, kernel_size=5):
    return FocusedLinearAttentionReference(
        dim=c1, window_size=(window, window), num_heads=num_heads, focusing_factor=focusing_factor,
        kernel_size=kernel_size,
    )


FLA_CASES = [(32, 8, 20, 3, 5), (32, 8, 8, 3, 5), (16, 2, 5, 2, 3), (24, 3, 6, 4, 7)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("cfg", FLA_CASES, ids=str)
def test_fla_matches_official_on_window_grid(cfg, dtype):
    c1, nh, win, ff, ks = cfg
    ref = randomize_(official_fla(c1, nh, win, ff, ks), seed=win, sharp=True).to(dtype).eval()
    ours = FLA(c1, num_heads=nh, window=win, focusing_factor=ff, kernel_size=ks).to(dtype)
    load_after_eval(ours, ref, torch.zeros(1, c1, win, win, dtype=dtype))
    x = torch.randn(2, c1, win, win, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(dtype)
    with torch.no_grad():
        expected = ref(x)
        got = ours.attn(x)
        full = ours(x)
    assert expected.abs().max() > 1e-2
    assert got.shape == x.shape and got.dtype == dtype
    assert rel_err(got, expected) <= 1e-5, rel_err(got, expected)
    assert torch.equal(full, x + got)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fla_resizes_positional_encoding_off_grid(dtype):
    """Off the window grid the positional encoding is resized bilinearly (align_corners=False) to H×W."""
    c1, win = 16, 8
    ref = randomize_(official_fla(c1, 4, win, 3, 5), seed=21, sharp=True).to(dtype).eval()
    ours = FLA(c1, num_heads=4, window=win).to(dtype)
    load_after_eval(ours, ref, torch.zeros(1, c1, 3, 3, dtype=dtype))
    g = torch.Generator().manual_seed(2)
    for H, W in [(16, 24), (5, 9), (1, 1), (31, 17), (8, 8), (8, 3)]:
        x = torch.randn(2, c1, H, W, generator=g, dtype=torch.float64).to(dtype)
        with torch.no_grad():
            expected, got = ref(x), ours.attn(x)
        assert expected.abs().max() > 1e-2
        assert rel_err(got, expected) <= 1e-5, ((H, W), rel_err(got, expected))


def test_fla_positional_encoding_matters_off_grid():
    """The resized encoding is really used: changing the table changes the output at 16×24."""
    m = randomize_(FLA(16, num_heads=4, window=8), 0).eval()
    x = torch.randn(1, 16, 16, 24)
    with torch.no_grad():
        before = m(x)
        m.attn.positional_encoding.add_(1.0)
        after = m(x)
    assert not torch.allclose(before, after)


# ----------------------------------------------------------------------------------------------------------------------
# SHSA parity
# ----------------------------------------------------------------------------------------------------------------------
SHSA_CASES = [
    # (c1, qk_dim, pdim given, pdim used)
    (32, 16, None, 8),
    (32, 8, 32, 32),
    (32, 8, 1, 1),
    (3, 4, None, 1),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("cfg", SHSA_CASES, ids=str)
def test_shsa_matches_official(cfg, dtype):
    c1, qk, pdim, pdim_used = cfg
    ref = randomize_(SHSAReference(c1, qk, pdim_used), seed=c1 + qk, sharp=True).to(dtype).eval()
    ours = SHSA(c1, qk_dim=qk) if pdim is None else SHSA(c1, qk_dim=qk, pdim=pdim)
    ours = ours.to(dtype)
    assert ours.attn.pdim == pdim_used
    load_after_eval(ours, ref, torch.zeros(1, c1, 2, 2, dtype=dtype))
    g = torch.Generator().manual_seed(4)
    for H, W in [(1, 1), (9, 13), (20, 20), (32, 33)]:  # 32×33: over a million query/key pairs
        x = torch.randn(2, c1, H, W, generator=g, dtype=torch.float64).to(dtype)
        with torch.no_grad():
            expected, got, full = ref(x), ours.attn(x), ours(x)
        assert expected.abs().max() > 1e-2
        assert got.shape == x.shape and got.dtype == dtype
        assert rel_err(got, expected) <= 1e-5, ((H, W), rel_err(got, expected))
        assert torch.equal(full, x + got)


def test_shsa_matches_official_train():
    ref = randomize_(SHSAReference(16, 8, 4), seed=1, sharp=True).double().train()
    ours = SHSA(16, qk_dim=8).double().train()
    assert_same_state_dict_layout(ours.attn, ref)
    x = torch.randn(2, 16, 7, 9, dtype=torch.float64)
    expected, got = ref(x), ours.attn(x)
    assert expected.abs().max() > 1e-2
    assert rel_err(got, expected) <= 1e-5


def test_shsa_default_pdim():
    for c1, pdim in [(1, 1), (3, 1), (4, 1), (16, 4), (30, 7), (256, 64)]:
        m = SHSA(c1)
        assert m.attn.pdim == pdim
        assert m.attn.state_dict()["pre_norm.weight"].shape == (pdim,)


# ----------------------------------------------------------------------------------------------------------------------
# every layer: shapes, modes, gradients
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("layer", NAMES, indirect=True)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_any_size_forward_backward(layer, mode):
    layer.train(mode == "train")
    g = torch.Generator().manual_seed(0)
    for H, W in SIZES:
        x = torch.randn(2, 16, H, W, generator=g, requires_grad=True)
        y = layer(x)
        assert y.shape == x.shape, (H, W)
        assert torch.isfinite(y).all(), (H, W)
        layer.zero_grad(set_to_none=True)
        (y * torch.randn(y.shape, generator=g)).sum().backward()
        assert torch.isfinite(x.grad).all(), (H, W)
        for name, p in layer.named_parameters():
            assert p.grad is not None, (H, W, name)
            assert torch.isfinite(p.grad).all(), (H, W, name)


@pytest.mark.parametrize("layer", NAMES, indirect=True)
@pytest.mark.parametrize("size", [(5, 11), (1, 1)])
def test_batch_of_one_eval(layer, size):
    """One image, also a 1×1 map (a 64-px image at P6): a GroupNorm over one value per channel is refused by torch
    for a batch of one, so a layer must not hand it one."""
    x = torch.randn(1, 16, *size)
    with torch.no_grad():
        y = layer(x)
    assert y.shape == x.shape and torch.isfinite(y).all()


@pytest.mark.parametrize("layer", NAMES, indirect=True)
@pytest.mark.parametrize("size", [(5, 11), (1, 1), (7, 7)])
def test_channels_last_input_gives_the_same_output(layer, size):
    """A channels-last map (what a convolution returns for channels-last or 1×1 inputs) is no error and no other
    result: no ``view`` that assumes contiguous strides."""
    x = torch.randn(2, 16, *size, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = layer(x.contiguous())
        got = layer(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-6), (got - want).abs().max()


# ----------------------------------------------------------------------------------------------------------------------
# module mechanics
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("layer", NAMES, indirect=True)
def test_deepcopy_and_float64(layer):
    x = torch.randn(2, 16, 9, 13)
    with torch.no_grad():
        y = layer(x)
        assert torch.equal(copy.deepcopy(layer)(x), y)
        m64 = copy.deepcopy(layer).to(torch.float64)
        y64 = m64(x.double())
    assert y64.dtype == torch.float64
    assert all(t.dtype == torch.float64 for t in m64.state_dict().values() if t.is_floating_point())
    assert rel_err(y64, y) <= 1e-5
    with torch.no_grad():  # the original is untouched by the conversion of its copy
        assert torch.equal(layer(x), y)


@pytest.mark.parametrize("layer", NAMES, indirect=True)
def test_jit_trace_reproduces_eager_at_other_sizes(layer, request):
    name = request.node.callspec.params["layer"]
    traced_at, others = REGISTRY[name].tests.trace
    g = torch.Generator().manual_seed(6)
    x0 = torch.randn(1, 16, *traced_at, generator=g)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(layer, x0, check_trace=False)
    for H, W in [traced_at, *others]:
        x = torch.randn(2, 16, H, W, generator=g)
        with torch.no_grad():
            expected, got = layer(x), traced(x)
        assert got.shape == expected.shape, (H, W)
        assert rel_err(got, expected) <= 1e-5, ((H, W), rel_err(got, expected))


@pytest.mark.parametrize("name", NAMES)
def test_construction_and_use_print_nothing(name, capsys):
    m = make_layers()[name]
    m.eval()
    m.train()
    with torch.no_grad():
        m(torch.randn(2, 16, 6, 6))
    out, err = capsys.readouterr()
    assert out == "" and err == ""


@pytest.mark.parametrize("layer", NAMES, indirect=True)
def test_state_dict_only_tensors_and_round_trips(layer, request):
    sd = layer.state_dict()
    assert all(isinstance(v, torch.Tensor) for v in sd.values())
    assert sd or not list(layer.parameters()), "a layer with parameters saves them"  # SimAM has none
    other = small(request.node.callspec.params["layer"]).eval()
    other.load_state_dict(sd, strict=True)
    x = torch.randn(1, 16, 9, 13)
    with torch.no_grad():
        assert torch.equal(other(x), layer(x))


def test_residual_layers_are_identity_at_init():
    """The official output projections start with BatchNorm scale 0, so the residual blocks start as identity."""
    x = torch.randn(2, 16, 9, 13)
    for m in (CGA(16, num_heads=2, key_dim=8), SHSA(16)):
        with torch.no_grad():
            assert torch.equal(m.eval()(x), x)


# ----------------------------------------------------------------------------------------------------------------------
# constructor argument errors
# ----------------------------------------------------------------------------------------------------------------------
def msg(layer: str, arg: str) -> str:
    """Case-insensitive regex: the message names the layer and the argument, anywhere, in any order."""
    return rf"(?is)^(?=.*\b{re.escape(layer)}\b)(?=.*\b{re.escape(arg)}\b)"


NON_INTEGERS = [7.5, "7", True]

BAD_ARGS = []  # (layer, kwargs, argument the error must name), from each layer's declarations (LayerTests)
for _layer in NAMES:
    _tests = REGISTRY[_layer].tests
    for _arg in _tests.int_args:
        for _bad in (*NON_INTEGERS, 0, -1):
            BAD_ARGS.append((_layer, {**_tests.int_args, _arg: _bad}, _arg))
    BAD_ARGS += [(_layer, dict(_kwargs), _arg) for _kwargs, _arg in _tests.bad_args]


def _bad_id(case):
    layer, kwargs, arg = case
    return f"{layer}-{arg}={kwargs[arg]!r}" + ("" if kwargs.get("c1", 16) == 16 or arg == "c1" else f"-c1={kwargs['c1']}")


@pytest.mark.parametrize("case", BAD_ARGS, ids=[_bad_id(c) for c in BAD_ARGS])
def test_bad_constructor_args_raise_naming_layer_and_argument(case):
    layer, kwargs, arg = case
    with pytest.raises((ValueError, TypeError), match=msg(layer, arg)):
        REGISTRY[layer].cls(**kwargs)


def test_lska_unsupported_k_size_lists_choices():
    with pytest.raises((ValueError, TypeError), match=msg("LSKA", "k_size")) as info:
        LSKA(16, k_size=9)
    listed = {int(n) for n in re.findall(r"\d+", str(info.value))}
    assert set(LSKA_SIZES) <= listed, str(info.value)


@pytest.mark.parametrize(("cls", "layer", "kwargs", "arg"), [
    (CGA, "CGA", {"c1": 16, "num_heads": 2, "kernel": 4}, "kernel"),
    (CGA, "CGA", {"c1": 16, "num_heads": 2, "kernel": 2}, "kernel"),
    (FLA, "FLA", {"c1": 16, "num_heads": 4, "window": 8, "kernel_size": 4}, "kernel_size"),
])
def test_even_kernel_is_refused_by_name(cls, layer, kwargs, arg):
    """An even depthwise kernel with k//2 padding would grow the map: it is refused, naming the argument."""
    with pytest.raises(ValueError) as e:
        cls(**kwargs)
    assert re.search(msg(layer, arg), str(e.value)), str(e.value)
    assert "must be odd" in str(e.value)


def test_keyword_and_positional_arguments_agree():
    """The YAML passes arguments positionally after c1: they must land on the documented names."""
    assert CGA(16, 2, 8, 5, 3).state_dict()["attn.attn.dws.0.c.weight"].shape == (8, 1, 3, 3)
    assert CGA(16, 2, 8, 5, 3).attn.window_resolution == 5
    assert LSKA(16, 23).k_size == 23
    fla = FLA(16, 2, 6, 2, 3)
    assert fla.attn.num_heads == 2 and tuple(fla.attn.window_size) == (6, 6)
    assert fla.attn.focusing_factor == 2 and fla.attn.dwc.kernel_size == (3, 3)
    shsa = SHSA(16, 8, 5)
    assert shsa.attn.qk_dim == 8 and shsa.attn.pdim == 5


@pytest.mark.parametrize("name", NAMES)
def test_training_after_inference_mode_in_the_same_process(name):
    """predict/val run under torch.inference_mode(); training afterwards must not trip over anything cached then."""
    m = make_layer(name, 64)
    with torch.inference_mode():
        m.eval()(torch.randn(1, 64, 20, 20))
    m.train()
    x = torch.randn(2, 64, 20, 20, requires_grad=True)
    m(x).square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad)
