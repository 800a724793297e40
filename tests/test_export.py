"""Deployment: ONNX (static, dynamic + simplified, fp16) and TorchScript exports of plugin models through
Ultralytics' own exporter, compared with the PyTorch model (fused, eval) they came from.

Weights: every model is a checkpoint whose attention layers carry random weights (CGA and SHSA start as the
identity, FLA's positional encoding at zero: an untouched model would not exercise them) and whose BatchNorm
statistics are those of random images (a fresh model's features shrink to ~1e-8 by P5, where the attention would
see nothing but its biases).

Tolerance: outputs are compared as max |difference| / max |reference|. The bound is 1e-4, or twice PyTorch's own
float32 error against the same model in float64 where that is larger, plus that error once more (the fp32
reference is inexact itself; RT-DETR with every layer stacked after AIFI measured ONNX Runtime at 1.2-2.2x PyTorch's
error against float64): with realistic statistics, fp32 rounding
alone moves YOLO's class probabilities by ~4e-4 (measured), so no fp32 runtime can meet 1e-4 there; ONNX Runtime
must be as exact as PyTorch itself. The attention layer's own output is read from the ONNX graph by the module path
in its node names (``/model.12/...``) and compared the same way; for RT-DETR, whose head output is a top-k over
queries × classes where near-equal scores may come out in another order, see ``assert_detr_close``.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from conftest import bin_path, detr_rows_error, front, randomize_layers, rel, scaled_copy

import yolo_attn  # noqa: F401  (registers the layers in this process)
from yolo_attn.adapter import is_rtdetr
from ultralytics import YOLO

TOL = 1e-4
OPSET = 18  # what Ultralytics picks for torch >= 2.4 with onnx 1.23 (best_onnx_opset)

# One shipped config per layer for the YOLO family (v8 and 11 both covered); for RT-DETR-l one config with all
# four layers stacked after AIFI (one export instead of four, each layer's output compared on its own).
CASES = [
    "yolov8-cga.yaml",
    "yolo11-lska.yaml",
    "yolov8-fla.yaml",
    "yolo11-shsa.yaml",
    pytest.param("rtdetr-l-attn.yaml", marks=pytest.mark.slow),  # ~2 min on 2 cores (fp64 reference at 640)
]
DYNAMIC_SHAPES = [(640, 640), (480, 640), (320, 320)]


def image(h: int, w: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed))


def assert_close(got: np.ndarray, ref: dict, key: str, what: str, part=slice(None), floor=1e-12) -> float:
    """``got`` vs PyTorch fp32 ``ref[key]``; bound 1e-4 or twice PyTorch fp32's own error vs fp64 (see top)."""
    y32, y64 = ref["fp32"][key][part], ref["fp64"][key][part]
    got = got[part]
    assert got.shape == y32.shape, (what, got.shape, y32.shape)
    own = rel(y32, y64, floor)  # PyTorch fp32's own error
    bound = max(TOL, 2 * own)
    err = rel(got, y32, floor)
    # each comparison allows PyTorch fp32's own error once more: against fp32 (an inexact reference), and against
    # fp64 for a deep stack (RT-DETR with every layer after AIFI: ONNX Runtime 1.2-2.2x PyTorch's error, measured)
    assert max(err, rel(got, y64, floor)) <= bound + own, (what, err, rel(got, y64, floor), bound, own)
    return err


def assert_yolo_close(o: np.ndarray, ref: dict, what: str) -> dict:
    """(1, 4 + nc, anchors): boxes (pixels) against their largest value, class probabilities against 1.

    Probabilities are compared on their own range (0..1): ONNX Runtime's Sigmoid is exact to ~1.5e-7 absolute, not
    relative, and a random head at 320×320 may score no class above 1e-3.
    """
    box = assert_close(o, ref, "head", f"{what} boxes", (slice(None), slice(0, 4)))
    cls = assert_close(o, ref, "head", f"{what} classes", (slice(None), slice(4, None)), floor=1.0)
    return {"box": box, "cls": cls}


def assert_detr_close(o: np.ndarray, ref: dict, what: str) -> dict:
    """Equal-score rows may swap places, so compare sorted scores and match rows (see ``detr_rows_error``)."""
    y32, y64 = ref["fp32"]["head"], ref["fp64"]["head"]
    assert o.shape == y32.shape, (what, o.shape, y32.shape)
    base = detr_rows_error(y32, y64, 10 * TOL)
    got = detr_rows_error(o, y32, 10 * TOL)
    for name, g, b in zip(("scores", "rows"), got, base):
        assert g <= max(TOL, 2 * b), (what, name, g, b)
    return dict(zip(("score", "rows"), got))


def tap_layer_outputs(path: str, indices: list[int], dtype=onnx.TensorProto.FLOAT) -> ort.InferenceSession:
    """ONNX Runtime session that also returns the outputs of model layers ``indices`` (each its last graph node)."""
    model = onnx.load(path)
    for index in indices:
        nodes = [n for n in model.graph.node if n.name.startswith(f"/model.{index}/")]
        assert nodes, f"no node of model layer {index} in {path}"
        out = onnx.helper.make_tensor_value_info(nodes[-1].output[0], dtype, None)
        model.graph.output.append(out)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


class Reference:
    """The checkpoint loaded as PyTorch, fused, eval, in fp32 and fp64.

    ``run(x)`` returns ``{"fp32": {...}, "fp64": {...}}`` with the head output (``"head"``) and, for each attention
    layer index i, its input (``("in", i)``) and output (``i``) as float32 numpy arrays.
    """

    def __init__(self, pt: Path, name: str, indices: list[int]):
        self.models = {"fp32": front(name)(str(pt)).model.float().fuse().eval()}
        self.models["fp64"] = copy.deepcopy(self.models["fp32"]).double()
        self.indices = indices
        self.seen = {}
        for model in self.models.values():
            for i in indices:
                model.model[i].register_forward_hook(lambda m, a, o, i=i: self.seen.update({("in", i): a[0], i: o}))

    @torch.no_grad()
    def run(self, x: torch.Tensor) -> dict:
        out = {}
        for key, model in self.models.items():
            self.seen.clear()
            y = model(x.to(next(model.parameters()).dtype))
            y = y[0] if isinstance(y, (tuple, list)) else y
            out[key] = {k: v.float().numpy() for k, v in {**self.seen, "head": y}.items()}
        return out


@pytest.fixture(scope="module", params=CASES)
def exported(request, tmp_path_factory):
    """Random-weight checkpoint of one config, exported: static ONNX (YOLO only), dynamic + simplified ONNX,
    TorchScript."""
    name = request.param
    work = tmp_path_factory.mktemp(Path(name).stem)
    torch.manual_seed(0)  # the initial weights
    model = front(name)(str(scaled_copy(name, work)))
    indices = randomize_layers(model.model)
    pt = work / "w.pt"
    model.save(str(pt))
    files = {}
    detr = is_rtdetr(model.model)
    if not detr:  # RT-DETR: the dynamic export is also checked at 640 (time budget)
        static = front(name)(str(pt)).export(format="onnx", imgsz=640)
        files["static"] = shutil.move(static, work / "static.onnx")
    files["dynamic"] = front(name)(str(pt)).export(format="onnx", imgsz=640, dynamic=True, simplify=True)
    files["torchscript"] = front(name)(str(pt)).export(format="torchscript", imgsz=640)
    return {"name": name, "pt": pt, "indices": indices, "ref": Reference(pt, name, indices), "detr": detr, **files}


@pytest.mark.slow  # the `exported` fixture: ONNX and TorchScript exports of each config
def test_onnx_graph_uses_standard_ops_only(exported):
    for key in ("static", "dynamic"):
        if key not in exported:
            continue
        model = onnx.load(exported[key])
        onnx.checker.check_model(model)
        assert [(o.domain, o.version) for o in model.opset_import] == [("", OPSET)], (key, model.opset_import)
        assert {n.domain for n in model.graph.node} <= {"", "ai.onnx"}, key
        inputs = [[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input]
        expected = [["batch", 3, "height", "width"]] if key == "dynamic" else [[1, 3, 640, 640]]
        assert inputs == expected, (key, inputs)


@pytest.mark.slow  # the `exported` fixture
@pytest.mark.parametrize("kind", ["static", "dynamic"])
def test_onnx_runtime_matches_pytorch(exported, kind):
    name = exported["name"]
    if kind not in exported:
        assert exported["detr"] and kind == "static"
        pytest.skip("RT-DETR exports dynamic only here (time budget); 640x640 is checked on the dynamic export")
    ref, indices = exported["ref"], exported["indices"]
    session = tap_layer_outputs(exported[kind], indices)
    for h, w in DYNAMIC_SHAPES if kind == "dynamic" else DYNAMIC_SHAPES[:1]:
        x = image(h, w)
        want = ref.run(x)
        got = session.run(None, {"images": x.numpy()})
        what = f"{name} {kind} {h}x{w}"
        for i, o_layer in zip(indices, got[1:]):
            y32 = want["fp32"]
            assert rel(y32[i], y32[("in", i)]) > 1e-2, f"{what}: layer {i} is (nearly) the identity"
        errs = {i: assert_close(o_layer, want, i, f"{what} layer {i}") for i, o_layer in zip(indices, got[1:])}
        errs.update((assert_detr_close if exported["detr"] else assert_yolo_close)(got[0], want, what))
        print(what, {k: f"{v:.1e}" for k, v in errs.items()})


@pytest.mark.slow  # the `exported` fixture
def test_torchscript_matches_pytorch(exported):
    name = exported["name"]
    traced = torch.jit.load(exported["torchscript"])
    x = image(640, 640)
    want = exported["ref"].run(x)
    with torch.no_grad():
        o = traced(x)
    o = (o[0] if isinstance(o, (tuple, list)) else o).numpy()
    errs = (assert_detr_close if exported["detr"] else assert_yolo_close)(o, want, f"{name} torchscript")
    print(f"{name} torchscript", {k: f"{v:.1e}" for k, v in errs.items()})


def test_export_requirements_are_installed_so_nothing_is_auto_installed():
    """The ``export`` extra satisfies what Ultralytics' ONNX exporter checks (it would pip-install otherwise)."""
    from ultralytics.utils.checks import check_requirements

    for req in ("onnx>=1.12.0,<2.0.0", "onnxslim>=0.1.82", "onnxruntime"):
        assert check_requirements(req, install=False), req


def fp16_errors(cfg: Path, work: Path) -> dict:
    """Export ``cfg`` (random weights, calibrated statistics) with ``half=True`` on CPU and return the errors of
    its head and of its attention layer, if any, against PyTorch fp32."""
    torch.manual_seed(0)
    model = YOLO(str(cfg))
    indices = randomize_layers(model.model, require=False)
    pt = work / f"{cfg.stem}.pt"
    model.save(str(pt))
    path = YOLO(str(pt)).export(format="onnx", imgsz=640, half=True)
    graph = onnx.load(path)
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in graph.graph.initializer), "not converted to fp16"
    ref = Reference(pt, cfg.name, indices)
    session = tap_layer_outputs(path, indices, onnx.TensorProto.FLOAT16)  # inside the graph: fp16
    errors = {}
    # unscaled: images ×100 overflow fp16 in stock YOLOv8n itself (layer 8 reaches 7e4 > 65504)
    x = image(640, 640)
    want = ref.run(x)["fp32"]
    o, *layers = session.run(None, {"images": x.numpy()})
    assert o.dtype == np.float32  # keep_io_types: fp32 in and out
    assert np.isfinite(o).all() and all(np.isfinite(t).all() for t in layers), cfg.name
    errors["x1 boxes"] = rel(o[:, :4], want["head"][:, :4])
    errors["x1 classes"] = rel(o[:, 4:], want["head"][:, 4:], floor=1.0)
    for i, y in zip(indices, layers):
        errors["x1 layer"] = rel(y.astype(np.float32), want[i])
    print(f"fp16 onnx {cfg.name}", {k: f"{v:.1e}" for k, v in errors.items()})
    return errors


def test_fp16_onnx_export_on_cpu(tmp_path):
    """``half=True`` on CPU: Ultralytics converts the fp32 graph to fp16 (float32 inputs/outputs kept).

    FLA is the layer that would overflow in fp16 (``x ** 3``; large activations: tests/test_precision.py). A random
    network in fp16 moves boxes by a few percent whatever its layers (fp16 has 11 bits), so the bound is the stock
    model's own fp16 error (same weights scheme, same export), with some slack: the attention must not make fp16
    worse.
    On CUDA, ``half=True`` traces ``model.half()`` instead; that path cannot run here (no GPU).
    """
    ours = fp16_errors(scaled_copy("yolov8-fla.yaml", tmp_path), tmp_path)
    stock = tmp_path / "yolov8n.yaml"
    shutil.copy(Path(__import__("ultralytics").__file__).parent / "cfg/models/v8/yolov8.yaml", stock)
    base = fp16_errors(stock, tmp_path)
    for key in base:
        assert ours[key] <= max(2 * base[key], 1e-2), (key, ours[key], base[key])
    assert ours["x1 layer"] < 3e-2, ours


@pytest.mark.slow  # `yolo export` and `yolo predict` subprocesses
def test_yolo_export_from_yaml_and_predict_with_the_onnx_file(tmp_path, shapes_data):
    """The plain commands: ``yolo export model=<cfg> format=onnx dynamic=True simplify=True`` then
    ``yolo predict model=<file>.onnx`` (no yolo_attn import in either process; the start-up hook registers)."""
    cfg = scaled_copy("yolo11-shsa.yaml", tmp_path)
    env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "False"}
    exp = subprocess.run([bin_path("yolo"), "export", f"model={cfg}", "format=onnx", "dynamic=True", "simplify=True",
                          "imgsz=640"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    out = exp.stdout + exp.stderr
    assert exp.returncode == 0, out[-4000:]
    assert "AutoUpdate" not in out, out[-2000:]  # Ultralytics did not try to pip-install anything
    path = cfg.with_suffix(".onnx")
    assert path.is_file(), out[-2000:]
    images = Path(shapes_data).parent / "images" / "val"
    pred = subprocess.run([bin_path("yolo"), "predict", f"model={path}", f"source={images}", "imgsz=320",
                           f"project={tmp_path}", "name=p", "save_txt=True"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert pred.returncode == 0, (pred.stdout + pred.stderr)[-4000:]
    assert len(list((tmp_path / "p").glob("*.jpg"))) == 8, (pred.stdout + pred.stderr)[-2000:]


class RoutedGate(torch.nn.Module):
    """A gate whose runtime support is declared: format=ncnn cannot run it (as BRA's top-k routing)."""

    def __init__(self, c1: int):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(c1, 1, 1))

    def forward(self, x):
        return x * self.w


def test_export_to_a_format_a_layer_cannot_run_is_refused_before_writing(tmp_path):
    """``unsupported_formats`` of a layer's spec: ``YOLO.export(format=...)`` raises naming the model layer, the
    layer, the format and the declared operator, before the exporter writes anything; other formats are not
    touched."""
    from yolo_attn.adapter import UnsupportedExportError, build_model, save_checkpoint
    from yolo_attn.adapter.exporting import unsupported_layers
    from yolo_attn.configs import insert_rows
    from yolo_attn.layers.registry import register_module, unregister

    register_module(RoutedGate, unsupported_formats={"ncnn": "torch.topk (the routing) is no NCNN layer"})
    try:
        d = insert_rows({"nc": 2, "backbone": [[-1, 1, "Conv", [16, 3, 2]], [-1, 1, "Conv", [32, 3, 2]]],
                         "head": [[[-1], 1, "Detect", ["nc"]]]}, "RoutedGate", 1)
        model = build_model(d)
        assert unsupported_layers(model, "onnx") == [] and unsupported_layers(model, "NCNN") == [
            "model layer 2 (RoutedGate): torch.topk (the routing) is no NCNN layer"]
        save_checkpoint(model, tmp_path / "routed.pt")
        before = set(tmp_path.rglob("*"))
        with pytest.raises(UnsupportedExportError, match=r"format=ncnn cannot run this model: model layer 2 "
                           r"\(RoutedGate\): torch\.topk \(the routing\) is no NCNN layer\. Export to a format"):
            YOLO(str(tmp_path / "routed.pt")).export(format="ncnn", imgsz=64)
        assert set(tmp_path.rglob("*")) == before
    finally:
        unregister("RoutedGate")
