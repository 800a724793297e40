"""torch.compile: every registered layer compiles as one graph (``fullgraph=True``: no graph break, no Python
fallback), in eval and train mode, at two map sizes (the second one recompiles with dynamic shapes), and gives the
eager outputs (and, in train mode, input gradients); Dynamo has nothing to warn about (CGA's cached offset index is
not consulted while Dynamo traces). Backend ``aot_eager``: Dynamo's graph capture and AOTAutograd's forward/backward
split, as inductor sees them, without inductor's C++ compile time (speed: BENCHMARKS.md).

Tolerance: 1e-5 relative — the compiled graph runs the same float32 ops (AOTAutograd may reorder the backward).
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

from conftest import NAMES, all_layers_after, make_layer, randomize_, rel_err
from yolo_attn.layers.registry import REGISTRY

SIZES = [(20, 20), (12, 18)]  # P5 of a 640 input, then a non-square map (recompiled with dynamic sizes)


def compiled(layer: torch.nn.Module) -> torch.nn.Module:
    torch._dynamo.reset()
    return torch.compile(layer, fullgraph=True, backend="aot_eager")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_layer_compiles_as_one_graph_and_matches_eager(name, mode):
    torch.manual_seed(0)
    layer = randomize_(make_layer(name, c1=64, grid=20), 3).train(mode == "train")
    eager, fast = layer, compiled(copy.deepcopy(layer))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for h, w in SIZES:
            x = torch.randn(2, 64, h, w, generator=torch.Generator().manual_seed(h * w))
            xe, xc = x.clone().requires_grad_(), x.clone().requires_grad_()
            ye, yc = eager(xe), fast(xc)
            assert rel_err(yc, ye) <= 1e-5, (name, mode, (h, w), rel_err(yc, ye))
            assert rel_err(ye, x) > 1e-2, "the layer is (nearly) the identity"
            if mode == "train":
                cot = torch.randn(ye.shape, generator=torch.Generator().manual_seed(1))
                (ye * cot).sum().backward()
                (yc * cot).sum().backward()
                assert rel_err(xc.grad, xe.grad) <= 1e-5, (name, (h, w), rel_err(xc.grad, xe.grad))
    dynamo = [str(w.message) for w in caught if "Dynamo" in str(w.message) or "lru_cache" in str(w.message)]
    assert not dynamo, dynamo


@pytest.mark.slow
def test_whole_model_with_every_layer_compiles_and_matches_eager():
    """``torch.compile(model)`` on a YOLOv8n with every registered layer after SPPF (eval, default settings)."""
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    model = DetectionModel(all_layers_after("yolov8n.yaml"), verbose=False).eval()
    ours = tuple(spec.cls for spec in REGISTRY.values())
    assert sum(isinstance(m, ours) for m in model.model) == len(NAMES)
    for m in model.model:
        if isinstance(m, ours):
            randomize_(m, 4)
    x = torch.rand(1, 3, 256, 320)
    with torch.no_grad():
        want = model(x)[0]
        torch._dynamo.reset()
        got = torch.compile(model, backend="aot_eager")(x)[0]
    assert rel_err(got, want) <= 1e-5, rel_err(got, want)
