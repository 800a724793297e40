"""Every task end to end with a plugin layer, by config name, offline and tiny (imgsz 64, 8 images, 1 epoch):
``yolo <task> train model=NAME`` (the plain command: only the start-up hook registers), validation (rect batches
where the task uses them), predict, ONNX export with output parity against PyTorch, the checkpoint loaded in a fresh
process (plain and with ``ULTRALYTICS_SAFE_LOAD=1``), and pretrained transfer from the stock model of the task by
structure (every stock tensor lands; CGA and SHSA reproduce the stock outputs at step 0). The detect case is YOLO26,
so its end-to-end (NMS-free) head is trained and exported."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import torch

from conftest import bin_path, ddp_child_code, rel_err, run_py, ultralytics_version_path
from yolo_attn import transfer
from yolo_attn.data import make_shapes
from yolo_attn.adapter import build_model
from yolo_attn.names import parse_name, resolve, stock_configs

TASKS = {  # task -> config name (each layer at least once; CGA/SHSA where step-0 reproduction is checked)
    "detect": "yolo26n-cga.yaml",
    "segment": "yolo26n-seg-fla-neck.yaml",
    "pose": "yolo11n-pose-shsa.yaml",
    "obb": "yolo26n-obb-lska-backbone.yaml",
    "classify": "yolov8n-cls-cga.yaml",
}

CHECK = """
import json, sys, numpy as np, torch, onnxruntime as ort
from pathlib import Path
from ultralytics import YOLO
best, data, image, task = sys.argv[1:5]
model = YOLO(best)
assert model.task == task, model.task
names = [type(m).__name__ for m in model.model.model]
metrics = model.val(data=data, imgsz=64, batch=4, workers=0, plots=False, device="cpu", verbose=False)
results = model.predict(image, imgsz=64, device="cpu", verbose=False)
dual = getattr(model.model.model[-1], "one2one_cv2", None) is not None  # YOLO26: one-to-one (NMS-free) head too
e2e = {"nms": False} if dual else {}  # nms=False selects the NMS-free head for val, predict and export
if dual:
    model.val(data=data, imgsz=64, batch=4, workers=0, plots=False, device="cpu", verbose=False, **e2e)
    model.predict(image, imgsz=64, device="cpu", verbose=False, **e2e)
onnx = model.export(format="onnx", imgsz=64, device="cpu", **e2e)
net = YOLO(best).model.float().eval()
if dual:
    net.end2end = True
x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    y = net(x)
while isinstance(y, (list, tuple)):  # (inference output, raw heads); segment: ((rows, prototypes), ...)
    y = y[0]
y = y.numpy()
sess = ort.InferenceSession(onnx)
o = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
if dual:  # top-k (box, class) rows: near-tied scores of an untrained head may pick and order pairs differently, so
    # compare the sorted scores, and each of the 20 best rows with its closest row of the other side
    so, sy = np.sort(o[0][:, 4]), np.sort(y[0][:, 4])
    top_o, top_y = o[0][np.argsort(-o[0][:, 4])[:20]], y[0][np.argsort(-y[0][:, 4])[:20]]
    diff = np.abs(top_o[:, None, :] - y[0][None, :, :]).max(-1).min(1).max()
    diff = max(diff, np.abs(top_y[:, None, :] - o[0][None, :, :]).max(-1).min(1).max())
    err = float(max(np.abs(so - sy).max() / max(np.abs(sy).max(), 1e-12), diff / max(np.abs(y).max(), 1e-12)))
else:
    err = float(np.abs(o - y).max() / max(np.abs(y).max(), 1e-12))
print("RESULT " + json.dumps({"names": names, "fitness": float(metrics.fitness), "n_results": len(results),
                             "onnx_shape": list(o.shape), "torch_shape": list(y.shape), "err": err,
                             "end2end": bool(getattr(net, "end2end", False))}))
"""

SAFE = """
import sys
from ultralytics import YOLO
m = YOLO(sys.argv[1])
r = m.predict(sys.argv[2], imgsz=64, device="cpu", verbose=False)
print("SAFE", m.task, len(r))
"""


def _data(tmp_path, task):
    made = make_shapes(tmp_path / f"shapes-{task}", train=8, val=4, imgsz=64, seed=0, task=task)
    if task == "classify":
        return made, next((made / "val").rglob("*.jpg"))
    return made, made.parent / "images" / "val" / "000000.jpg"


@pytest.mark.slow
@pytest.mark.parametrize("task", list(TASKS))
def test_task_end_to_end(task, tmp_path):
    name = TASKS[task]
    layer = parse_name(name).layer
    data, image = _data(tmp_path, task)
    cmd = [bin_path("yolo"), task, "train", f"model={name}", f"data={data}", "imgsz=64", "epochs=1", "batch=8",
           "device=cpu", "workers=0", "plots=False", f"project={tmp_path / 'runs'}", "name=t", "exist_ok=True"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    best = tmp_path / "runs" / "t" / "weights" / "best.pt"
    assert best.is_file()

    (script := tmp_path / "check.py").write_text(CHECK)
    out = subprocess.run([bin_path("python"), str(script), str(best), str(data), str(image),
                          task], capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert out.returncode == 0, (out.stdout + out.stderr)[-6000:]
    result = json.loads(out.stdout.split("RESULT ", 1)[1].splitlines()[0])
    assert layer in result["names"]
    assert result["n_results"] == 1
    assert result["onnx_shape"] == result["torch_shape"]
    assert result["err"] < 1e-3, result
    if task == "detect":  # YOLO26's NMS-free head: (batch, top-k, 6) boxes straight out of the model and the export
        anchors = 8 * 8 + 4 * 4 + 2 * 2  # P3-P5 cells at 64 px
        assert result["end2end"] and result["onnx_shape"] == [1, min(300, anchors), 6]

    (safe := tmp_path / "safe.py").write_text(SAFE)
    for env in ({}, {"ULTRALYTICS_SAFE_LOAD": "1"}):
        p = subprocess.run([bin_path("python"), str(safe), str(best), str(image)], capture_output=True, text=True,
                           timeout=600, cwd=tmp_path, env={**os.environ, **env})
        assert p.returncode == 0 and f"SAFE {task} 1" in p.stdout, (env, (p.stdout + p.stderr)[-4000:])


@pytest.mark.parametrize("task", list(TASKS))
def test_transfer_from_the_stock_model_of_the_task(task):
    name = TASKS[task]
    parsed = parse_name(name)
    scale = "n"
    stock = build_model(str(stock_configs()[parsed.base]), scale=scale)
    model = build_model(resolve(name), scale=scale)
    report = transfer(model, stock)
    assert not report.unused, report.unused[:5]  # every stock tensor landed
    assert len(report.transferred) == len(stock.state_dict())
    if parsed.layer in ("CGA", "SHSA"):  # identity at init: the stock outputs, bit for bit
        stock.eval(), model.eval()
        x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            a, b = stock(x), model(x)
        a, b = (t[0] if isinstance(t, (list, tuple)) else t for t in (a, b))
        assert rel_err(b, a) == 0.0


@pytest.mark.slow
@pytest.mark.parametrize("version", ["installed", "8.3.240"])
def test_ddp_child_of_a_named_config(version, tmp_path):
    """The script Ultralytics' multi-GPU launcher starts, run in a fresh process (CPU, one worker), for a segment
    model given by name: 8.4.140+ unpickles the model; 8.3 re-parses the name in the child, where only the start-up
    hook registers the layers and the name resolver (against that release's own stock YAMLs)."""
    data, _ = _data(tmp_path, "segment")
    env = {"YOLO_CONFIG_DIR": str(tmp_path / "ucfg")}
    if version != "installed":
        env["PYTHONPATH"] = str(ultralytics_version_path(version))
        env["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
    name = "yolo11n-seg-cga-neck.yaml"
    code = ddp_child_code(name, data, tmp_path / "runs", task="segment")
    script = run_py(code, env=env, cwd=tmp_path).stdout.strip().splitlines()[-1]
    child = subprocess.run([bin_path("python"), script], capture_output=True, text=True, timeout=600,
                           env={**os.environ, **env}, cwd=tmp_path)
    out = child.stdout + child.stderr
    assert child.returncode == 0, out[-5000:]
    assert list((tmp_path / "runs").rglob("last.pt")), out[-3000:]
