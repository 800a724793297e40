"""Inference fusing: ``yolo_attn.layers.fuse_layers`` and the ``BaseModel.fuse`` hook installed by ``register()``.

Fused outputs must equal unfused eval-mode outputs (1e-5 relative) for every layer and for whole models built from
configs; folding is idempotent; the summary Ultralytics prints from ``fuse()`` must count the folded parameters.
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn

from conftest import NAMES, n_params, randomize_, rel_err
from yolo_attn.layers import CGA, REGISTRY, SHSA, fuse_layers
from yolo_attn.layers.conv_bn import ConvBN


def norm_affine_drop(layer: nn.Module) -> int:
    """Parameters a layer's ``fold_norm()`` removes: the affine (2 per channel) of the GroupNorm it folds (SHSA)."""
    return sum(2 * m.pre_norm.num_channels for m in layer.modules() if hasattr(m, "fold_norm") and m.pre_norm.affine)


@pytest.mark.parametrize("name", NAMES)
def test_fused_layer_matches_unfused(name):
    layer = randomize_(REGISTRY[name].small(), seed=3).eval()
    fused = copy.deepcopy(layer)
    conv_bn = [m for m in layer.modules() if isinstance(m, ConvBN)]
    declared = REGISTRY[name].tests.folds  # the layer's declaration; else every ConvBN inside it folds
    assert fuse_layers(fused) == (len(conv_bn) if declared is None else declared)
    assert fuse_layers(fused) == 0  # idempotent
    assert not any(isinstance(m, (ConvBN, nn.BatchNorm2d)) for m in fused.modules())
    # m = (conv, BatchNorm) in order, whatever the names; per BatchNorm of c channels: 2c go, the conv gains a c bias
    drop = sum(m[1].num_features for m in conv_bn)
    assert n_params(layer) - n_params(fused) == drop + norm_affine_drop(layer)
    g = torch.Generator().manual_seed(4)
    for size in [(14, 21), (9, 13), (8, 8), (1, 1)]:
        x = torch.randn(2, 16, *size, generator=g)
        with torch.no_grad():
            expected, got = layer(x), fused(x)
        assert expected.abs().max() > 1e-2
        assert rel_err(got, expected) <= 1e-5, (size, rel_err(got, expected))


def test_fold_counts_of_the_shipped_layers():
    """The declared counts, by hand: CGA 2 heads × (qkv, dw) + proj; SHSA qkv + proj + GroupNorm affine; FLA and
    LSKA have no BatchNorm."""
    for name, folds in {"CGA": 5, "SHSA": 3, "FLA": 0, "LSKA": 0}.items():
        assert REGISTRY[name].tests.folds == folds, name
    assert n_params(SHSA(16, qk_dim=8)) - n_params(fuse_model_copy(SHSA(16, qk_dim=8))) == (2 * 8 + 4) + 16 + 2 * 4


def fuse_model_copy(layer: nn.Module) -> nn.Module:
    fused = copy.deepcopy(layer).eval()
    fuse_layers(fused)
    return fused


def test_shsa_group_norm_fold_keeps_normalisation():
    """Only the affine moves into the convolution: the statistics are still taken over the input."""
    layer = randomize_(SHSA(32, qk_dim=8), seed=5).eval()
    fused = copy.deepcopy(layer)
    fuse_layers(fused)
    assert isinstance(fused.attn.pre_norm, nn.GroupNorm) and not fused.attn.pre_norm.affine
    x = torch.randn(1, 32, 9, 9) * 7 + 3  # far from the BatchNorm running statistics
    with torch.no_grad():
        assert rel_err(fused(x), layer(x)) <= 1e-5


@pytest.mark.parametrize("name", ["CGA", "SHSA"])
def test_fused_layer_traces(name):
    layer = randomize_(REGISTRY[name].small(), seed=6).eval()
    fuse_layers(layer)
    x0, x1 = torch.randn(1, 16, 14, 14), torch.randn(2, 16, 10, 17)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(layer, x0, check_trace=False)
        assert rel_err(traced(x1), layer(x1)) <= 1e-5


def test_fuse_layers_leaves_foreign_batchnorm_alone():
    seq = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), randomize_(SHSA(8, qk_dim=4), 1))
    fuse_layers(seq)
    assert isinstance(seq[1], nn.BatchNorm2d)


# ----------------------------------------------------------------------------------------------------------------------
# the Ultralytics hook
# ----------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tasks():
    import yolo_attn

    yolo_attn.register()
    from ultralytics.nn import tasks

    return tasks


def test_hook_active_after_registration_and_not_stacked(tasks):
    import yolo_attn

    fuse = tasks.BaseModel.fuse
    assert getattr(fuse, "_yolo_attn", False)
    assert not getattr(fuse.__wrapped__, "_yolo_attn", False)
    yolo_attn.register()
    assert tasks.BaseModel.fuse is fuse


@pytest.mark.parametrize("cfg", ["cfg/yolov8-cga.yaml", "cfg/yolov8-shsa.yaml"])
def test_model_fuse_folds_our_layers_and_reports_right_params(tasks, cfg, monkeypatch):
    from yolo_attn.adapter import build_model

    model = build_model(cfg, scale="n").eval()
    ours = [m for m in model.modules() if isinstance(m, (CGA, SHSA))]
    assert len(ours) == 1
    randomize_(ours[0], seed=7)  # the residual branches start at 0: make them count
    x = torch.rand(1, 3, 96, 128, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        expected = model(x)[0]
    fused = copy.deepcopy(model)
    reported = []
    monkeypatch.setattr(type(fused), "info", lambda self, *a, **k: reported.append(n_params(self)), raising=False)
    assert fused.fuse() is fused
    assert not any(isinstance(m, (ConvBN, nn.BatchNorm2d)) for m in fused.modules())
    assert reported == [n_params(fused)] and n_params(fused) < n_params(model)
    with torch.no_grad():
        got = fused(x)[0]
        assert rel_err(got, expected) <= 1e-5
        fused.fuse()  # again: nothing left to do
        assert torch.equal(fused(x)[0], got)
