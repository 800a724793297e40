"""FLA rect validation: the adaptive FLA validates on rect batches; FLA(fixed=True) declares that it needs square
inputs, and training-time validation, ``yolo val``, ``model.val()`` and predict then use square letterboxed
batches (one log line says so) instead of crashing on the first non-square map."""

from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import pytest
import torch

from conftest import bin_path
from yolo_attn import FLA, LayerArgumentError
from yolo_attn.configs import dump, insert_rows
from yolo_attn.adapter import build_model, square_layers

SQUARE_LOG = "FLA needs square inputs (fixed=True)"


def test_fixed_fla_accepts_square_maps_and_names_the_fix_otherwise():
    m = FLA(64, num_heads=8, window=4, fixed=True).eval()
    assert m.requires_square_input is True and FLA(64).requires_square_input is False
    assert m(torch.randn(1, 64, 4, 4)).shape == (1, 64, 4, 4)
    assert m(torch.randn(1, 64, 8, 8)).shape == (1, 64, 8, 8)  # other square sizes: encoding resized
    with pytest.raises(ValueError, match=r"FLA\(fixed=True\) works on square feature maps only.*got 3x5.*drop "
                                         r"fixed=True"):
        m(torch.randn(1, 64, 3, 5))
    assert FLA(64, window=4)(torch.randn(1, 64, 3, 5)).shape == (1, 64, 3, 5)  # the default adapts
    with pytest.raises(LayerArgumentError, match="FLA: fixed must be true or false, got 1"):
        FLA(64, fixed=1)


def test_square_layers_finds_fixed_fla_in_a_model():
    fixed = build_model(insert_rows("yolov8.yaml", "FLA", 9, [8, 4, 3, 5, True]), scale="n")
    adaptive = build_model(insert_rows("yolov8.yaml", "FLA", 9, [8, 4]), scale="n")
    assert square_layers(fixed) == ("FLA",) and square_layers(adaptive) == ()


@pytest.fixture(scope="module")
def wide_data(tmp_path_factory) -> Path:
    """The generated dataset with every image padded to twice its width (64×128), labels moved to match, so
    Ultralytics' rect val batches are 96×160 at imgsz 128 (P5 3×5, not square)."""
    from yolo_attn.data import make_shapes

    root = tmp_path_factory.mktemp("wide")
    data = make_shapes(root, train=8, val=4, imgsz=64, seed=3)
    for img in root.glob("images/*/*.jpg"):
        im = cv2.imread(str(img))
        cv2.imwrite(str(img), cv2.copyMakeBorder(im, 0, 0, 0, im.shape[1], cv2.BORDER_CONSTANT, value=(114,) * 3))
        label = root / "labels" / img.parent.name / f"{img.stem}.txt"
        rows = [line.split() for line in label.read_text().splitlines() if line.strip()]
        label.write_text("".join(f"{c} {float(x) / 2:.6f} {y} {float(w) / 2:.6f} {h}\n" for c, x, y, w, h in rows))
    return data


def _val(cfg: Path, data: Path):
    """model.val() in this process; returns (rect flag, batch shapes) of the val dataset it used."""
    from ultralytics import YOLO

    seen = {}
    model = YOLO(str(cfg))
    model.add_callback("on_val_start", lambda v: seen.update(
        rect=v.dataloader.dataset.rect, shapes=getattr(v.dataloader.dataset, "batch_shapes", None)))
    model.val(data=str(data), imgsz=128, batch=4, device="cpu", workers=0, plots=False, verbose=False)
    return seen


def test_adaptive_fla_validates_with_rect_batches(wide_data, tmp_path):
    cfg = tmp_path / "yolov8n-fla.yaml"
    cfg.write_text(dump(insert_rows("yolov8.yaml", "FLA", 9, [8, 4])))
    seen = _val(cfg, wide_data)
    assert seen["rect"] is True and {tuple(s) for s in seen["shapes"]} == {(96, 160)}


def test_fixed_fla_validates_with_square_batches(wide_data, tmp_path):
    cfg = tmp_path / "yolov8n-flafixed.yaml"
    cfg.write_text(dump(insert_rows("yolov8.yaml", "FLA", 9, [8, 4, 3, 5, True])))
    seen = _val(cfg, wide_data)
    assert seen["rect"] is False


@pytest.mark.slow  # a real `yolo train`
def test_fixed_fla_trains_validates_and_predicts_with_default_settings(wide_data, tmp_path):
    """The community's '294 != 289' crash: rect val batches reach a square-only layer. Default settings here."""
    cfg = tmp_path / "yolov8n-flafixed.yaml"
    cfg.write_text(dump(insert_rows("yolov8.yaml", "FLA", 9, [8, 4, 3, 5, True])))
    common = [f"data={wide_data}", "imgsz=128", "device=cpu", "workers=0", "plots=False"]
    train = subprocess.run([bin_path("yolo"), "train", f"model={cfg}", "epochs=1", "batch=4", *common,
                            f"project={tmp_path / 'runs'}", "name=t", "exist_ok=True"],
                           capture_output=True, text=True, timeout=600, cwd=tmp_path)
    log = train.stdout + train.stderr
    assert train.returncode == 0, log[-5000:]
    assert SQUARE_LOG in log and "square letterboxed batches" in log
    best = tmp_path / "runs" / "t" / "weights" / "best.pt"
    val = subprocess.run([bin_path("yolo"), "val", f"model={best}", *common], capture_output=True, text=True,
                         timeout=600, cwd=tmp_path)
    assert val.returncode == 0 and SQUARE_LOG in val.stdout + val.stderr, (val.stdout + val.stderr)[-5000:]
    image = next((Path(str(wide_data)).parent / "images" / "val").glob("*.jpg"))  # 64×128, not square
    pred = subprocess.run([bin_path("yolo"), "predict", f"model={best}", f"source={image}", "imgsz=128",
                           "device=cpu", "save=False"], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    out = pred.stdout + pred.stderr
    assert pred.returncode == 0 and "letterboxing images to [128, 128]" in out, out[-5000:]
    assert "128x128" in out  # the network saw a square input
