"""Interrupted training resumes: a ``yolo train ... epochs=3`` run of a plugin config dies right after epoch 1 has
been saved (``os._exit`` in ``on_fit_epoch_end``, as a kill would: no clean-up, no final checkpoint strip); its
``last.pt`` loads in a fresh process, and ``resume=True`` — from the plain ``yolo`` command and from Python —
finishes the run with epochs 2 and 3. Children import nothing of yolo_attn (the start-up hook registers).
"""

from __future__ import annotations

import csv
import os
import subprocess
from pathlib import Path

import pytest

from conftest import all_layers_after, bin_path, run_py
from yolo_attn.configs import dump

pytestmark = pytest.mark.slow

INTERRUPTED = """
import os
from ultralytics import YOLO
model = YOLO({cfg!r})
def die(trainer):
    if trainer.epoch == 0:  # epoch 1 is saved (last.pt) before on_fit_epoch_end runs
        os._exit(17)
model.add_callback("on_fit_epoch_end", die)
model.train(data={data!r}, imgsz=64, epochs=3, batch=8, device="cpu", workers=0, plots=False, seed=0,
            project={project!r}, name={name!r}, exist_ok=True)
"""

LOAD = """
import torch
from ultralytics import YOLO
path = {last!r}
ckpt = torch.load(path, map_location="cpu", weights_only=False)
print("epoch", ckpt["epoch"], "epochs", ckpt["train_args"]["epochs"], "optimizer", ckpt["optimizer"] is not None)
model = YOLO(path)
print("layers", sorted({{type(m).__name__ for m in model.model.modules()}} & {{"CGA", "FLA", "LSKA", "SHSA"}}))
r = model.predict({images!r}, imgsz=64, verbose=False)
print("predicted", len(r))
"""


def interrupted_run(tmp_path: Path, data: Path, name: str) -> Path:
    cfg = tmp_path / "yolov8n-attn.yaml"
    cfg.write_text(dump(all_layers_after("yolov8.yaml")))
    project = tmp_path / "runs"
    code = INTERRUPTED.format(cfg=str(cfg), data=str(data), project=str(project), name=name)
    proc = run_py(code, cwd=tmp_path, check=False)
    assert proc.returncode == 17, (proc.returncode, proc.stdout[-2000:], proc.stderr[-4000:])
    last = project / name / "weights" / "last.pt"
    assert last.is_file()
    assert epochs_done(project / name) == [1]
    return last


def epochs_done(run: Path) -> list[int]:
    with open(run / "results.csv") as f:
        return [int(float(row["epoch"])) for row in csv.DictReader(f)]


def test_interrupted_checkpoint_loads_and_resumes_from_the_yolo_command(tmp_path, shapes_data):
    last = interrupted_run(tmp_path, shapes_data, "cli")
    images = Path(shapes_data).parent / "images" / "val"
    out = run_py(LOAD.format(last=str(last), images=str(images)), cwd=tmp_path).stdout
    assert "epoch 0 epochs 3 optimizer True" in out, out[-2000:]
    assert "layers ['CGA', 'FLA', 'LSKA', 'SHSA']" in out and "predicted 8" in out, out[-2000:]

    env = {**os.environ, "YOLO_OFFLINE": "1"}
    proc = subprocess.run([bin_path("yolo"), "train", "resume", f"model={last}"], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-5000:]
    assert "from epoch 2 to 3 total epochs" in log, log[-3000:]
    assert epochs_done(last.parents[1]) == [1, 2, 3]
    assert (last.parent / "best.pt").is_file()


RESUME_PY = """
from ultralytics import YOLO
model = YOLO({last!r})
model.train(resume=True)
print("final epoch", model.trainer.epoch + 1, "of", model.trainer.epochs)
"""


def test_interrupted_run_resumes_from_python(tmp_path, shapes_data):
    last = interrupted_run(tmp_path, shapes_data, "py")
    proc = run_py(RESUME_PY.format(last=str(last)), cwd=tmp_path)
    log = proc.stdout + proc.stderr
    assert "from epoch 2 to 3 total epochs" in log, log[-3000:]
    assert "final epoch 3 of 3" in proc.stdout, proc.stdout[-2000:]
    assert epochs_done(last.parents[1]) == [1, 2, 3]
    # The finished run's checkpoints are stripped for inference: no optimizer, epoch -1 (not resumable again).
    code = ("import torch\nc = torch.load({!r}, map_location='cpu', weights_only=False)\n"
            "print(c['epoch'], c['optimizer'])")
    assert run_py(code.format(str(last)), cwd=tmp_path).stdout.split()[-2:] == ["-1", "None"]
