"""Deployment formats beyond ONNX/TorchScript (tests/test_export.py): NCNN, OpenVINO (fp32 and INT8), CoreML and
LiteRT (TFLite), each exported through Ultralytics' own exporter from a plugin checkpoint of every registered
layer's YOLOv8n after-SPPF config, run in the format's own runtime and compared with the PyTorch model (fused, eval).

Every runtime runs in a subprocess (NCNN can segfault: a crash is then a failed test with its signal, not a lost
test run) in which **importing yolo_attn is impossible** (a ``sys.meta_path`` finder raises, the start-up hook is
off): the exported files must stand on their own, as for a colleague without the plugin. The same process also
predicts with ``YOLO(<exported>).predict`` (Ultralytics' backend for that format).

Weights: random, with the BatchNorm statistics of random images and perturbed attention parameters
(conftest ``randomize_layers``), so no attention layer is the identity. Input: one 320×320 random image.

Tolerances (raw head output (1, 4 + nc, anchors); boxes relative to their largest value, class probabilities
absolute, i.e. relative to 1):

* TorchScript, ONNX Runtime: 1e-4 — the same float32 ops as PyTorch (measured ≤ 2e-5).
* NCNN, OpenVINO (``INFERENCE_PRECISION_HINT=f32``), LiteRT: 1e-3 — float32 too, but their own convolution kernels
  (Winograd, im2col, JIT), fused ops and approximate exp/sigmoid round differently (measured up to ~2e-4 for the
  class probabilities, which pass through a sigmoid of values ~10). OpenVINO's *default* precision on a CPU with
  bf16 support is bf16 (measured: boxes 1e-2 away for the CGA model, 1e-1 for stock YOLOv8n), so parity
  is checked in f32.
* OpenVINO INT8 (``quantize=8``, formerly ``int8=True``, calibrated on the generated shapes data): no element-wise
  bound; the boxes of the int8 model must correlate with PyTorch's (> 0.75; measured values go to the results file).
* CoreML: converted on Linux and checked as a spec (input ``image`` 1×3×320×320, one output of the head's shape);
  CoreML prediction needs macOS, so no parity here.

RT-DETR (``rtdetr-l-attn.yaml``: RT-DETR-l with every registered layer stacked after AIFI, one export for all of
them; 160×160, slow): stock ``rtdetr-l.yaml`` exports and runs in TorchScript, ONNX Runtime, OpenVINO and LiteRT,
so ours is tested there; its output (1, 300, 4 + 2) is a top-300 over queries × classes of values in 0..1, compared
as sorted scores and rows matched to the closest PyTorch row (conftest ``detr_rows_error``), same tolerances as
above. NCNN cannot run stock RT-DETR: pnnx leaves the decoder's ``torch.topk``, ``torch.gather``, ``Tensor.index``
and ``pnnx.Expression`` as layers ncnn does not have, and loading fails (``layer torch.topk not exists or
registered``); a test checks that this still holds for the stock model (it fails once NCNN can, and ours belongs
in the test then).

A layer that declares a format unsupported (``unsupported_formats``, e.g. BRA's top-k routing in NCNN) is checked
the other way round for that format: the export is refused before anything is written, with the layer and the
declared operator in the message, and the declaration is verified — exported with the refusal bypassed, the runtime
fails on the files (the test fails once the runtime can run the layer; the declaration goes then).

``YOLO_ATTN_DEPLOY_RESULTS=<file.json>`` makes the tests record what they measured (format × layer: exported, runs,
errors, runtime version) there; ``scripts/deploy_table.py`` turns that into the docs' deployment table.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import (BUILTIN, NAMES, bin_path, detr_rows_error, front, make_layer, randomize_, randomize_layers,
                      rel, rel_err, scaled_copy)

import yolo_attn  # noqa: F401  (registers the layers in this process)
from yolo_attn.adapter import UnsupportedExportError
from yolo_attn.layers import REGISTRY, fuse_layers

IMGSZ = 320
LAYER_OF = {f"yolov8-{name.lower()}.yaml": name for name in BUILTIN}  # one after-SPPF YOLOv8n config per layer
CASES = list(LAYER_OF)
DETR_CFG, DETR_IMGSZ = "rtdetr-l-attn.yaml", 160
DETR_FORMATS = ["torchscript", "onnx", "openvino", "litert"]  # those that run stock RT-DETR (see the top)
TOL = {"torchscript": 1e-4, "onnx": 1e-4, "ncnn": 1e-3, "openvino": 1e-3, "litert": 1e-3}
RESULTS: dict = {}

# Runs in a fresh interpreter: argv = format, exported path, input .npy, output .npy, predict (0/1).
RUNNER = r'''
import sys


class NoPlugin:
    """A person without yolo-attn: any import of it fails."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("yolo_attn", "yolo_attn_autoload"):
            raise ImportError(f"No module named {name!r} (yolo_attn is blocked in this process)")
        return None


sys.meta_path.insert(0, NoPlugin())
sys.meta_path[:] = [f for f in sys.meta_path if type(f).__module__ != "yolo_attn_autoload"]
sys.modules.pop("yolo_attn_autoload", None)

from pathlib import Path
import numpy as np

fmt, path, x_path, out_path, predict = sys.argv[1:6]
x = np.load(x_path)
if fmt == "onnx":
    import onnxruntime as ort
    y, version = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"images": x})[0], ort.__version__
elif fmt == "torchscript":
    import torch
    with torch.no_grad():
        y = torch.jit.load(path)(torch.from_numpy(x))
    y, version = (y[0] if isinstance(y, (tuple, list)) else y).numpy(), torch.__version__
elif fmt == "openvino":
    import openvino as ov
    model = ov.Core().compile_model(next(Path(path).glob("*.xml")), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    y, version = model(x)[model.output(0)], ov.__version__.split("-")[0]
elif fmt == "ncnn":
    import ncnn
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    assert net.load_param(str(Path(path) / "model.ncnn.param")) == 0 and net.load_model(str(Path(path) / "model.ncnn.bin")) == 0
    ex = net.create_extractor()
    ex.input("in0", ncnn.Mat(x[0]).clone())
    ret, out = ex.extract("out0")
    assert ret == 0, ret
    y, version = np.array(out)[None], ncnn.__version__
elif fmt == "litert":
    import torch
    from ultralytics.nn.autobackend import AutoBackend
    from importlib.metadata import version as dist_version
    y = AutoBackend(path, device=torch.device("cpu"))(torch.from_numpy(x))
    y = y[0] if isinstance(y, (tuple, list)) else y
    y, version = (y.numpy() if hasattr(y, "numpy") else np.asarray(y)), "ai-edge-litert " + dist_version("ai-edge-litert")
else:
    raise SystemExit(f"unknown format {fmt}")
np.save(out_path, np.asarray(y, dtype=np.float32))
if predict == "1":
    from ultralytics import YOLO
    img = (np.random.default_rng(0).random((240, 320, 3)) * 255).astype(np.uint8)
    r = YOLO(path, task="detect").predict(img, imgsz=x.shape[-1], conf=0.0, verbose=False)
    print("PREDICTED", len(r[0].boxes))
assert not [m for m in sys.modules if m.split(".")[0] in ("yolo_attn", "yolo_attn_autoload")]
print("RUNTIME", version)
'''


def run_runtime(fmt: str, path: str, x: np.ndarray, work: Path, predict: bool = True) -> tuple[np.ndarray, str]:
    """Run ``path`` in its runtime in a plugin-free subprocess; (raw output, runtime version)."""
    xin, yout = work / f"{fmt}_x.npy", work / f"{fmt}_y.npy"
    np.save(xin, x)
    env = {**os.environ, "YOLO_ATTN_AUTOLOAD": "0", "YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "False"}
    proc = subprocess.run([sys.executable, "-c", RUNNER, fmt, str(path), str(xin), str(yout), str(int(predict))],
                          capture_output=True, text=True, env=env, timeout=600)
    what = f"{fmt} runtime on {path}"
    if proc.returncode < 0:
        raise AssertionError(f"{what} crashed with signal {-proc.returncode}:\n{proc.stderr[-3000:]}")
    assert proc.returncode == 0, f"{what} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    if predict:
        assert "PREDICTED" in proc.stdout, proc.stdout[-2000:]
    version = proc.stdout.rsplit("RUNTIME", 1)[1].strip()
    return np.load(yout), version


def head_errors(got: np.ndarray, want: np.ndarray) -> dict:
    """Boxes: max |diff| / max |box|; classes: max |diff| (probabilities, 0..1)."""
    assert got.shape == want.shape, (got.shape, want.shape)
    return {"box": rel(got[:, :4], want[:, :4]), "cls": rel(got[:, 4:], want[:, 4:], floor=1.0)}


def record(fmt: str, cfg: str, **values):
    RESULTS.setdefault(fmt, {})[cfg] = {**RESULTS.get(fmt, {}).get(cfg, {}), **values}


@pytest.fixture(scope="module", autouse=True)
def results_file():
    """Write what was measured to ``$YOLO_ATTN_DEPLOY_RESULTS`` (merged with what is there) at the end."""
    yield
    target = os.environ.get("YOLO_ATTN_DEPLOY_RESULTS")
    if target and RESULTS:
        path = Path(target)
        old = json.loads(path.read_text()) if path.is_file() else {}
        for fmt, rows in RESULTS.items():
            old.setdefault(fmt, {}).update(rows)
        path.write_text(json.dumps(old, indent=1, sort_keys=True))


def random_checkpoint(cfg: str, work: Path, imgsz: int) -> dict:
    """A checkpoint of ``cfg`` with seeded random weights (every layer of ours randomised and checked not to be the
    identity) and its PyTorch output (fused, eval) on one random image."""
    torch.manual_seed(0)
    model = front(cfg)(str(scaled_copy(cfg, work)))
    indices = randomize_layers(model.model)
    pt = work / "w.pt"
    model.save(str(pt))
    x = torch.rand(1, 3, imgsz, imgsz, generator=torch.Generator().manual_seed(1))
    ref = front(cfg)(str(pt)).model.float().fuse().eval()
    seen = {}
    for i in indices:
        ref.model[i].register_forward_hook(lambda m, a, o, i=i: seen.update({i: (a[0], o)}))
    with torch.no_grad():
        y = ref(x)
    for i, (inp, out) in seen.items():
        assert rel_err(out, inp) > 1e-2, f"layer {i} of {cfg} is the identity"
    y = (y[0] if isinstance(y, (tuple, list)) else y).numpy()
    return {"cfg": cfg, "pt": pt, "work": work, "x": x.numpy(), "y": y, "indices": indices}


@pytest.fixture(scope="module", params=CASES)
def checkpoint(request, tmp_path_factory):
    """A random-weight checkpoint of one config with its PyTorch (fused, eval) output on one random image."""
    return random_checkpoint(request.param, tmp_path_factory.mktemp(Path(request.param).stem), IMGSZ)


def export(ckpt: dict, fmt: str, imgsz: int = IMGSZ, **kwargs) -> str:
    path = front(ckpt["cfg"])(str(ckpt["pt"])).export(format=fmt, imgsz=imgsz, **kwargs)
    assert path and Path(path).exists(), (fmt, path)
    record(fmt + ("-int8" if kwargs.get("quantize") == 8 else ""), ckpt["cfg"], exported=True)
    return str(path)


@pytest.mark.slow  # exports to every format, each run in a subprocess
@pytest.mark.parametrize("fmt", ["torchscript", "onnx", "openvino", "ncnn",
                                 # LiteRT through litert-torch (torch.export: the eager form of each layer is converted)
                                 pytest.param("litert", marks=pytest.mark.slow)])
def test_runtime_matches_pytorch_without_the_plugin(checkpoint, fmt):
    layer = LAYER_OF[checkpoint["cfg"]]
    if fmt in REGISTRY[layer].unsupported_formats:
        check_refused(checkpoint, fmt, layer)
        return
    path = export(checkpoint, fmt)
    got, version = run_runtime(fmt, path, checkpoint["x"], checkpoint["work"], predict=fmt != "litert")
    errs = head_errors(got, checkpoint["y"])
    record(fmt, checkpoint["cfg"], runs=True, runtime=version, **errs)
    print(fmt, checkpoint["cfg"], version, {k: f"{v:.1e}" for k, v in errs.items()})
    assert errs["box"] <= TOL[fmt] and errs["cls"] <= TOL[fmt], (fmt, errs)
    record(fmt, checkpoint["cfg"], parity=True)
    if fmt == "ncnn":  # the plain command a user runs on the exported folder
        env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "False"}
        img = checkpoint["work"] / "img.jpg"
        __import__("cv2").imwrite(str(img), (np.random.default_rng(0).random((240, 320, 3)) * 255).astype(np.uint8))
        pred = subprocess.run([bin_path("yolo"), "predict", f"model={path}", f"source={img}", f"imgsz={IMGSZ}",
                               f"project={checkpoint['work']}", "name=ncnn_pred", "conf=0.0"],
                              capture_output=True, text=True, env=env, timeout=300)
        assert pred.returncode == 0, (pred.stdout + pred.stderr)[-4000:]
        assert (checkpoint["work"] / "ncnn_pred" / "img.jpg").is_file(), (pred.stdout + pred.stderr)[-2000:]


def check_refused(ckpt: dict, fmt: str, layer: str) -> None:
    """A layer that declares ``fmt`` unsupported: the export is refused, naming the layer and the declared reason,
    before anything is written; and the declaration still holds — exported with the refusal bypassed, the runtime
    fails (this test fails once the runtime can run the layer: then the declaration goes)."""
    from ultralytics.engine import exporter

    reason = REGISTRY[layer].unsupported_formats[fmt]
    model = front(ckpt["cfg"])(str(ckpt["pt"]))
    before = set(ckpt["work"].rglob("*"))
    with pytest.raises(UnsupportedExportError) as e:
        model.export(format=fmt, imgsz=IMGSZ)
    assert f"format={fmt} cannot run this model" in str(e.value) and f"({layer}): {reason}" in str(e.value)
    assert set(ckpt["work"].rglob("*")) == before, "the refused export wrote files"
    wrapped = exporter.Exporter.__call__
    exporter.Exporter.__call__ = wrapped.__wrapped__  # the exporter as Ultralytics ships it
    try:
        path = model.export(format=fmt, imgsz=IMGSZ)
        with pytest.raises(AssertionError) as failed:  # the runtime fails or crashes on the exported files
            run_runtime(fmt, path, ckpt["x"], ckpt["work"], predict=False)
    finally:
        exporter.Exporter.__call__ = wrapped
    text = str(failed.value)
    missing = sorted(set(re.findall(r"layer \S+ not exists or registered", text)))  # ncnn's load error per layer
    why = "; ".join(missing) or next((line for line in reversed(text.splitlines()) if "Error" in line), text)[:300]
    record(fmt, ckpt["cfg"], exported=False, runs=False, refused=reason, runtime_error=why)
    print(fmt, ckpt["cfg"], "refused; unguarded export fails in the runtime:", why)


@pytest.mark.slow
def test_coreml_converts_with_the_expected_interface(checkpoint):
    """CoreML conversion runs on Linux; the saved package is read back as a spec (prediction needs macOS)."""
    import coremltools as ct

    path = export(checkpoint, "coreml")
    spec = ct.utils.load_spec(path)
    (inp,) = spec.description.input
    assert inp.name == "image" and inp.type.WhichOneof("Type") == "imageType", inp
    assert (inp.type.imageType.height, inp.type.imageType.width) == (IMGSZ, IMGSZ)
    (out,) = spec.description.output
    assert list(out.type.multiArrayType.shape) == list(checkpoint["y"].shape), out
    record("coreml", checkpoint["cfg"], runtime=f"coremltools {ct.__version__} (spec only; predicts on macOS)")


@pytest.mark.slow
def test_openvino_int8_stays_close(checkpoint, shapes_data):
    """``quantize=8`` (``int8=True`` before): post-training quantisation (NNCF) calibrated on the generated shapes
    data. Measured box correlations 0.82-0.89 (random weights); a broken quantised graph correlates near 0."""
    path = export(checkpoint, "openvino", quantize=8, data=str(shapes_data), fraction=1.0)
    got, version = run_runtime("openvino", path, checkpoint["x"], checkpoint["work"], predict=False)
    want = checkpoint["y"]
    corr = float(np.corrcoef(got[:, :4].ravel(), want[:, :4].ravel())[0, 1])
    record("openvino-int8", checkpoint["cfg"], runs=True, runtime=version, box_corr=corr, **head_errors(got, want))
    print("openvino int8", checkpoint["cfg"], f"box correlation {corr:.3f}")
    assert corr > 0.75, corr


def test_every_format_package_is_installed_so_nothing_is_auto_installed():
    """The format extras satisfy what Ultralytics' exporter checks (it would try to pip-install them otherwise)."""
    from ultralytics.utils.checks import check_requirements

    for req in ("ncnn", "pnnx==20260526", "openvino>=2024.0.0", "nncf>=2.14.0", "coremltools>=9.0",
                "numpy<=2.3.5", "litert-torch>=0.10.0", "ai-edge-litert>=2.3.0"):
        assert check_requirements(req, install=False), req


@pytest.mark.parametrize("name", NAMES)
def test_traced_form_is_at_most_4d_and_generalises(name):
    """What every tracing exporter records (ONNX, TorchScript, OpenVINO, CoreML, pnnx for NCNN): no reshape, view or
    permute above 4-D (NCNN has no batch axis and at most 4-D blobs), fused (SHSA's affine-free GroupNorm included),
    and one trace at 20×20 gives the eager outputs at other sizes and batches (dynamic ONNX relies on it)."""
    layer = randomize_(make_layer(name, c1=64, grid=20), 5).eval()
    fuse_layers(layer)
    assert not any(isinstance(m, torch.nn.GroupNorm) and m.affine for m in layer.modules()), "affine left after fusing"
    with torch.no_grad():
        traced = torch.jit.trace(layer, torch.randn(1, 64, 20, 20))
        ranks = {n.kind(): [] for n in traced.inlined_graph.nodes()}
        for node in traced.inlined_graph.nodes():
            if node.kind() in ("aten::reshape", "aten::view", "aten::permute"):
                ranks[node.kind()].append(node.output().type().dim())
        shaped = [r for kind in ("aten::reshape", "aten::view", "aten::permute") for r in ranks.get(kind, [])]
        assert None not in shaped, ranks  # every rank known (the trace records complete tensor types)
        assert max(shaped, default=0) <= 4, (name, ranks)
        for shape in [(1, 64, 20, 20), (2, 64, 15, 20), (1, 64, 9, 9), (1, 64, 3, 16)]:
            x = torch.randn(shape, generator=torch.Generator().manual_seed(sum(shape)))
            assert rel_err(traced(x), layer(x)) <= 1e-5, (name, shape, rel_err(traced(x), layer(x)))


@pytest.fixture(scope="module")
def detr_checkpoint(tmp_path_factory):
    """RT-DETR-l with every registered layer after AIFI: random-weight checkpoint, its PyTorch output (fused, eval)."""
    ckpt = random_checkpoint(DETR_CFG, tmp_path_factory.mktemp("rtdetr"), DETR_IMGSZ)
    assert len(ckpt["indices"]) == len(NAMES), ckpt["indices"]
    return ckpt


@pytest.mark.slow
@pytest.mark.parametrize("fmt", DETR_FORMATS)
def test_rtdetr_runtime_matches_pytorch_without_the_plugin(detr_checkpoint, fmt):
    """Every layer inside RT-DETR-l, exported and run in each format that runs stock RT-DETR (~40 s each)."""
    ckpt = detr_checkpoint
    path = export(ckpt, fmt, imgsz=DETR_IMGSZ)
    got, version = run_runtime(fmt, path, ckpt["x"], ckpt["work"], predict=fmt != "litert")
    assert got.shape == ckpt["y"].shape, (got.shape, ckpt["y"].shape)
    # rows more than 2 tolerances above the 300th score cannot have left the top-300 while scores stay in tolerance
    score, rows = detr_rows_error(got, ckpt["y"], 2 * TOL[fmt])
    record(fmt, DETR_CFG, runs=True, runtime=version, box=rows, score=score)
    print(fmt, DETR_CFG, version, f"scores {score:.1e}, rows {rows:.1e}")
    assert score <= TOL[fmt] and rows <= TOL[fmt], (fmt, score, rows)
    record(fmt, DETR_CFG, parity=True)


@pytest.mark.slow
def test_stock_rtdetr_does_not_load_in_ncnn(tmp_path):
    """Why RT-DETR has no NCNN test: stock ``rtdetr-l.yaml`` exports (pnnx), but ncnn cannot load the result."""
    torch.manual_seed(0)
    pt = tmp_path / "rtdetr-l.pt"
    front("rtdetr-l.yaml")("rtdetr-l.yaml").save(str(pt))
    path = front("rtdetr-l.yaml")(str(pt)).export(format="ncnn", imgsz=DETR_IMGSZ)
    x = np.random.default_rng(0).random((1, 3, DETR_IMGSZ, DETR_IMGSZ), dtype=np.float32)
    with pytest.raises(AssertionError, match="layer torch.topk not exists or registered"):
        run_runtime("ncnn", path, x, tmp_path, predict=False)
    record("ncnn", DETR_CFG, unsupported="stock RT-DETR does not load either: `layer torch.topk not exists or "
                                          "registered` (pnnx leaves the decoder's top-k, gather and indexing as "
                                          "layers ncnn lacks)")
