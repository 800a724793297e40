"""torch.compile: every registered layer compiles as one graph (``fullgraph=True``: no graph break, no Python
fallback), in eval and train mode, at two map sizes (the second one recompiles with dynamic shapes), and gives the
eager outputs (and, in train mode, input gradients), and calls at a size already compiled for compile nothing
more (no recompiles after warm-up); Dynamo has nothing to warn about (CGA's cached offset index is
not consulted while Dynamo traces). Backend ``aot_eager``: Dynamo's graph capture and AOTAutograd's forward/backward
split, as inductor sees them, without inductor's C++ compile time (speed: BENCHMARKS.md).

Tolerance: 1e-5 relative — the compiled graph runs the same float32 ops (AOTAutograd may reorder the backward).

``yolo train ... compile=True``: Ultralytics' trainer wraps its model in ``torch.compile(model, backend="inductor")``
(``utils/torch_utils.attempt_compile``) and, when compiling, calls the model on the images and the loss apart. The
slow test trains every registered layer in one model that way, in a fresh interpreter, with the backend Ultralytics
asks for (recorded and checked: inductor) swapped for ``aot_eager``: the same Dynamo capture and AOTAutograd
forward/backward graphs, without inductor's code generation, which took 180 s of the test's 183 s alone on 2 cores
(268 s inside the suite) against 12 s. Inductor's code generation is checked apart, for every layer's forward in
one model (``test_inductor_compiles_every_layer_and_matches_eager``, ~40 s). The stock part is a minimal detector
(four stride-2 convs, SPPF, the layers, a Detect head at stride 16: at 64 px, 16 anchors, above the assigner's
top-k of 10).
"""

from __future__ import annotations

import copy
import json
import warnings

import pytest
import torch
from torch._dynamo.utils import counters

from conftest import NAMES, all_layers_after, make_layer, randomize_, rel_err, run_py
from yolo_attn.configs import dump
from yolo_attn.layers.registry import REGISTRY

SIZES = [(20, 20), (12, 18)]  # P5 of a 640 input, then a non-square map (recompiled with dynamic sizes)


def compiled(layer: torch.nn.Module) -> torch.nn.Module:
    torch._dynamo.reset()
    return torch.compile(layer, fullgraph=True, backend="aot_eager")


@pytest.mark.slow  # torch.compile of every layer (~45 s on 2 cores)
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
    graphs = counters["stats"]["unique_graphs"]
    for h, w in SIZES:  # warmed up at both sizes: calls at either size reuse what was compiled
        fast(torch.randn(2, 64, h, w, requires_grad=True))  # (as above: requires_grad is part of the guards)
    assert counters["stats"]["unique_graphs"] == graphs, "recompiled at a size it had already compiled for"


# A minimal detector: the stock ops inductor has to compile are few, every registered layer follows SPPF.
TINY_BASE = {
    "nc": 6,
    "backbone": [[-1, 1, "Conv", [16, 3, 2]], [-1, 1, "Conv", [32, 3, 2]], [-1, 1, "Conv", [64, 3, 2]],
                 [-1, 1, "Conv", [64, 3, 2]], [-1, 1, "SPPF", [64, 5]]],
    "head": [[[-1], 1, "Detect", ["nc"]]],
}


@pytest.mark.slow  # ~40 s on 2 cores: inductor's C++ code generation for every layer
def test_inductor_compiles_every_layer_and_matches_eager():
    """``torch.compile(model)`` with its default backend, inductor (as Ultralytics' ``compile=True`` uses it), on a
    minimal detector holding every registered layer: one graph, no graph break, the eager outputs. Tolerance 1e-4
    relative: inductor's generated kernels may sum in another order (measured 3e-5 absolute)."""
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    model = DetectionModel(all_layers_after(TINY_BASE), verbose=False).eval()
    for m in model.model:
        if isinstance(m, tuple(spec.cls for spec in REGISTRY.values())):
            randomize_(m, 4)
    x = torch.rand(1, 3, 128, 160)
    torch._dynamo.reset()
    counters.clear()
    with torch.no_grad():
        want = model(x)[0]
        got = torch.compile(model)(x)[0]
    assert rel_err(got, want) <= 1e-4, rel_err(got, want)
    assert dict(counters["graph_break"]) == {} and counters["stats"]["unique_graphs"] == 1, dict(counters["stats"])


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


# Trains in a fresh interpreter ($COMPILE_TRAIN_ARGS: JSON [cfg, data, project]); prints a line "RESULT {...}".
COMPILE_TRAIN = r"""
import json, logging, os, warnings
import torch
import torch._dynamo
from ultralytics import YOLO
from yolo_attn.layers.registry import REGISTRY

cfg, data, project = json.loads(os.environ["COMPILE_TRAIN_ARGS"])
asked = []  # what Ultralytics' attempt_compile asks torch.compile for; compiled with aot_eager (module docstring)
_compile = torch.compile
def compile_aot_eager(model, **kwargs):
    asked.append({k: kwargs.get(k) for k in ("mode", "backend")})
    return _compile(model, **{**kwargs, "backend": "aot_eager"})
torch.compile = compile_aot_eager
torch._logging.set_logs(graph_breaks=True, recompiles=True)  # Dynamo logs every graph break and recompile
records = []
handler = logging.Handler()
handler.emit = records.append
for name in ("torch", "torch._dynamo", "torch._inductor"):  # torch._logging stops propagation at its own loggers
    logging.getLogger(name).addHandler(handler)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    model = YOLO(cfg)
    model.train(data=data, epochs=1, imgsz=64, batch=8, device="cpu", workers=0, compile=True, plots=False,
                amp=False, project=project, name="c", exist_ok=True)
trainer = model.trainer
trained = trainer.model
inner = getattr(trained, "_orig_mod", trained)
ours = tuple(spec.cls for spec in REGISTRY.values())
last = YOLO(str(trainer.last))
boxes = last.predict(torch.rand(1, 3, 64, 64), imgsz=64, conf=0.0, verbose=False)[0].boxes
counters = torch._dynamo.utils.counters
print("RESULT " + json.dumps({
    "compiled": isinstance(trained, torch._dynamo.eval_frame.OptimizedModule),
    "asked": asked,
    "layers_compiled": sorted(type(m).__name__ for m in inner.modules() if isinstance(m, ours)),
    "losses": {k: float(v) for k, v in trainer.tloss.items()},
    "graph_breaks": dict(counters["graph_break"]),
    "frames": dict(counters["frames"]),
    "graphs": counters["stats"]["unique_graphs"],
    "dynamo_logs": [f"{r.name} {r.levelname}: {r.getMessage()}" for r in records
                    if ("graph_breaks" in r.name or "recompiles" in r.name or r.levelno >= logging.WARNING)
                    and r.name.startswith(("torch._dynamo", "torch._inductor", "torch.__"))],
    "dynamo_warnings": [str(w.message) for w in caught if "dynamo" in str(w.message).lower()
                        or "graph break" in str(w.message).lower() or "recompile" in str(w.message).lower()],
    "last_layers": sorted(type(m).__name__ for m in last.model.modules() if isinstance(m, ours)),
    "last_keys_wrapped": [k for k in last.model.state_dict() if "_orig_mod" in k][:3],
    "boxes": len(boxes),
}))
"""


@pytest.mark.slow
def test_yolo_train_with_compile_true_compiles_every_layer_in_one_graph(tmp_path):
    """``YOLO(cfg).train(..., compile=True)`` (Ultralytics' trainer, inductor) with every registered layer in one
    model: 1 epoch on 8 generated images at 64 px. The trainer really trained the compiled module, Dynamo captured
    the whole training forward as one graph (no graph break, no recompile, no Dynamo warning), the losses are
    finite, and the saved ``last.pt`` is a plain (unwrapped) model that loads and predicts."""
    from yolo_attn.data import make_shapes

    data = make_shapes(tmp_path / "shapes", train=8, val=4, imgsz=64, seed=0)
    cfg = tmp_path / "tiny-attn.yaml"
    cfg.write_text(dump(all_layers_after(TINY_BASE)))
    env = {"TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor"), "YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "False",
           "COMPILE_TRAIN_ARGS": json.dumps([str(cfg), str(data), str(tmp_path / "runs")])}
    proc = run_py(COMPILE_TRAIN, env=env, timeout=900)
    assert "starting torch.compile with 'default' mode" in proc.stdout + proc.stderr, proc.stderr[-3000:]
    result = json.loads(proc.stdout.rsplit("RESULT ", 1)[1].splitlines()[0])
    want = sorted(spec.cls.__name__ for spec in REGISTRY.values())
    assert result["compiled"] and result["asked"] == [{"mode": "default", "backend": "inductor"}], result
    assert result["layers_compiled"] == want, result
    assert result["losses"] and all(v == v and abs(v) < float("inf") for v in result["losses"].values()), result
    assert sum(result["losses"].values()) > 0, result
    assert result["graph_breaks"] == {}, result["graph_breaks"]
    assert result["graphs"] == 1 and result["frames"].get("ok") == result["frames"].get("total") == 1, result
    assert result["dynamo_logs"] == [] and result["dynamo_warnings"] == [], result
    assert result["last_layers"] == want and result["last_keys_wrapped"] == [], result
    assert result["boxes"] > 0, result
