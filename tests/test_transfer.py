"""Pretrained transfer by structure (yolo_attn.transfer and the wrapped ``BaseModel.load``), offline: the stock
checkpoints are randomly initialised models saved the way Ultralytics saves them (``Model.save``)."""

from __future__ import annotations

import io
import logging
import re
import subprocess
from pathlib import Path

import pytest
import torch

from conftest import NAMES, OLD_ULTRALYTICS, bin_path, run_py, ultralytics_version_path
from yolo_attn.configs import cfg_path, dump, insert, load_base, placement_rows
from yolo_attn.adapter import build_model
from yolo_attn.transfer import TransferReport, match_layers, transfer

NC = 6  # classes of the generated shapes data
SCALE = {"yolov8.yaml": "n", "rtdetr-l.yaml": "l"}
EXACT = ("CGA", "SHSA")  # zero-initialised output projection, residual outside: identity at step 0
SHAPE = {"yolov8.yaml": (1, 3, 96, 128), "rtdetr-l.yaml": (1, 3, 128, 128)}  # RT-DETR: >= 300 tokens for 300 queries


def _variant(base: str, layer: str, placement: str) -> Path:
    """The shipped config of a placement (cfg/ ships every base x layer x placement used here)."""
    stem = base.removesuffix(".yaml")
    name = f"{stem}-{layer.lower()}.yaml" if placement == "after-sppf" else f"{stem}-{layer.lower()}-{placement}.yaml"
    return cfg_path(name)


def _randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every BatchNorm non-trivial statistics and affine terms (convolutions keep their random init), so a
    tensor landing in the wrong place changes the outputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.2)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
    return model


def _save_stock(base: str, path: Path, nc: int) -> Path:
    """A stock model with random weights, saved with Ultralytics' ``Model.save`` (half precision, as a checkpoint)."""
    from ultralytics import YOLO

    front = YOLO("yolov8n.yaml")  # Model.save writes whatever model the front-end holds
    front.model = _randomise(build_model({**load_base(base), "nc": nc}, scale=SCALE[base]))
    front.save(str(path))
    return path


def _stock_from(path: Path) -> torch.nn.Module:
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    return ckpt["model"].float().eval()


def _out(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        y = model.eval()(x)
    return y[0] if isinstance(y, (list, tuple)) else y


@pytest.fixture(scope="module")
def stock(tmp_path_factory) -> dict[str, Path]:
    """Stock yolov8n and rtdetr-l checkpoints with the shapes data's class count, plus an 80-class yolov8n."""
    d = tmp_path_factory.mktemp("stock")
    return {
        "yolov8.yaml": _save_stock("yolov8.yaml", d / "yolov8n.pt", NC),
        "rtdetr-l.yaml": _save_stock("rtdetr-l.yaml", d / "rtdetr-l.pt", NC),
        "coco": _save_stock("yolov8.yaml", d / "yolov8n-80.pt", 80),
    }


@pytest.mark.parametrize("base", ["yolov8.yaml", "rtdetr-l.yaml"])
@pytest.mark.parametrize("placement", ["after-sppf", "neck", "backbone"])
def test_every_stock_tensor_transfers(stock, base, placement):
    """Every tensor of the stock checkpoint lands in its counterpart; outputs at step 0 equal the stock model's for
    CGA and SHSA (exactly) and differ for LSKA and FLA."""
    src = _stock_from(stock[base])
    n_stock = len(src.state_dict())
    torch.manual_seed(0)
    x = torch.rand(SHAPE[base])
    ref = _out(src, x)
    for layer in NAMES:
        torch.manual_seed(1)
        model = build_model({**load_base(_variant(base, layer, placement)), "nc": NC}, scale=SCALE[base])
        report = transfer(model, src)
        inserted = [i for i, m in enumerate(model.model) if type(m).__name__ == layer]
        assert len(inserted) == len(placement_rows(base, placement))
        n_new = sum(len(model.model[i].state_dict()) for i in inserted)
        assert report.n_transferred == n_stock, (layer, placement, str(report))
        assert report.total == len(model.state_dict()) == n_stock + n_new
        assert not report.unused and not report.warnings, str(report)
        assert {r for _, r in report.skipped} == ({f"new layer ({layer})"} if n_new else set())  # SimAM: no tensors
        assert [i for i, _ in report.new_layers] == (inserted if n_new else [])
        # the counterpart of stock layer k is k shifted by the layers inserted before it
        assert report.layer_map == {j: j - sum(i < j for i in inserted)
                                    for j in range(len(model.model)) if j not in inserted}
        got, want = model.state_dict(), src.state_dict()
        assert all(torch.equal(got[key], want[skey]) for key, skey in report.transferred)
        if layer in EXACT:
            y = _out(model, x)
            assert torch.equal(y, ref), (layer, placement, (y - ref).abs().max())
        elif base == "yolov8.yaml":  # LSKA gates (x * attn), FLA adds a randomly initialised branch: not the identity
            seen = []
            hook = model.model[inserted[0]].register_forward_hook(lambda m, a, y: seen.append((a[0], y)))
            assert not torch.equal(_out(model, x), ref), (layer, placement)
            hook.remove()
            feat, changed = seen[0]
            assert (changed - feat).abs().mean() > 0.01 * feat.abs().mean(), (layer, placement)  # features change


def _captured_load(front, weights) -> str:
    """Ultralytics' log lines while ``front.load(weights)`` runs."""
    from ultralytics.utils import LOGGER

    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    level = LOGGER.level
    LOGGER.addHandler(handler)
    LOGGER.setLevel(logging.INFO)
    try:
        front.load(weights)
    finally:
        LOGGER.removeHandler(handler)
        LOGGER.setLevel(level)
    return buf.getvalue()


def _transferred(log: str) -> tuple[int, int]:
    hits = re.findall(r"Transferred (\d+)/(\d+) items", log)
    assert len(hits) == 1, log
    return int(hits[0][0]), int(hits[0][1])


@pytest.mark.parametrize("layer", ["CGA", "LSKA"])
def test_model_load_reports_real_count(stock, layer, tmp_path):
    """``YOLO(cfg).load(ckpt)`` goes through the structural pairing; Ultralytics' own line gives the real count,
    where its plain name-and-shape matching would have dropped most of the checkpoint."""
    from ultralytics import YOLO
    from ultralytics.nn.tasks import BaseModel

    cfg = tmp_path / f"yolov8n-{layer.lower()}.yaml"
    cfg.write_text(dump(insert("yolov8.yaml", layer, 9)))
    src = _stock_from(stock["yolov8.yaml"])
    n_stock = len(src.state_dict())

    front = YOLO(str(cfg))  # 80 classes, as yolov8n.pt
    log = _captured_load(front, str(stock["coco"]))
    plain = YOLO("yolov8n.yaml")
    stock_count = _transferred(_captured_load(plain, str(stock["coco"])))[0]
    assert _transferred(log) == (stock_count, len(front.model.state_dict()))  # as many as into the stock model
    assert stock_count == n_stock
    assert "paired with this model's by structure" in log and f"10 {layer}" in log

    # the same load without the structural pairing (Ultralytics' own): much of the checkpoint is silently dropped
    naive, wrapped = YOLO(str(cfg)), BaseModel.load
    BaseModel.load = wrapped.__wrapped__
    try:
        dropped = _transferred(_captured_load(naive, str(stock["coco"])))[0]
    finally:
        BaseModel.load = wrapped
    assert dropped < n_stock
    print(f"{layer}: structural {n_stock}/{n_stock}, by index {dropped}/{n_stock}")

    if layer == "CGA":  # the loaded model computes the stock function
        torch.manual_seed(0)
        x = torch.rand(1, 3, 96, 96)
        assert torch.equal(_out(front.model, x), _out(_stock_from(stock["coco"]), x))


def test_class_count_change_matches_stock_behaviour(stock):
    """Into a 6-class model from an 80-class checkpoint: the same tensors transfer as into the stock config."""
    from ultralytics.nn.tasks import DetectionModel

    counts = {}
    for name, cfg in (("stock", "yolov8n.yaml"), ("shsa", insert("yolov8.yaml", "SHSA", [15, 18, 21]))):
        model = DetectionModel(cfg if isinstance(cfg, str) else {**cfg, "scale": "n"}, nc=NC, verbose=False)
        counts[name] = _transferred(_captured_load(model, {"model": _stock_from(stock["coco"])}))
    assert counts["shsa"][0] == counts["stock"][0]
    assert counts["stock"][1] < counts["shsa"][1]


def test_checkpoint_forms_and_report(stock):
    """Path, checkpoint dict, state_dict and model give the same pairing; the report names what it skipped."""
    src = _stock_from(stock["yolov8.yaml"])
    cfg = {**insert("yolov8.yaml", "FLA", 9), "nc": NC}
    reports = {}
    for form, ckpt in (("path", stock["yolov8.yaml"]), ("dict", {"ema": None, "model": src}),
                       ("state_dict", src.state_dict()), ("model", src)):
        reports[form] = transfer(build_model(cfg, scale="n"), ckpt)
    with_tensors = [j for j, m in enumerate(build_model(cfg, scale="n").model) if len(m.state_dict())]
    for form, r in reports.items():
        assert isinstance(r, TransferReport)
        assert r.n_transferred == len(src.state_dict()), form
        # a bare state_dict has no parameterless layers (Upsample, Concat) to pair
        assert [r.layer_map.get(j) for j in with_tensors] == [reports["path"].layer_map.get(j) for j in with_tensors]
    text = str(reports["path"])
    assert f"Transferred {len(src.state_dict())}/" in text and "10 FLA" in text
    assert match_layers(build_model(cfg, scale="n"), src) == reports["path"].layer_map

    # 80-class checkpoint into a 6-class model: the class rows are skipped with the shapes, and reported unused
    r = transfer(build_model({**cfg, "nc": 80}, scale="n"), stock["yolov8.yaml"])
    shape_skips = [k for k, reason in r.skipped if reason.startswith("shape")]
    assert shape_skips and all(".cv3." in k for k in shape_skips)
    assert len(r.unused) == len(shape_skips)


def test_reverse_and_identity(stock, tmp_path):
    """An attention checkpoint into the stock model (its extra layer is left over), and into its own config."""
    cfg = insert("yolov8.yaml", "LSKA", [4, 9])
    trained = _randomise(build_model(cfg, scale="n"), seed=3)
    back = transfer(build_model("yolov8n.yaml"), trained)
    n_stock = len(build_model("yolov8n.yaml").state_dict())
    assert back.n_transferred == n_stock == back.total
    assert {r for _, r in back.unused} == {"checkpoint layer 5 (LSKA) has no counterpart",
                                           "checkpoint layer 11 (LSKA) has no counterpart"}
    same = build_model(cfg, scale="n")
    r = transfer(same, trained)
    assert r.n_transferred == r.total and r.layer_map == {j: j for j in range(len(same.model))}
    assert all(torch.equal(a, b) for a, b in zip(same.state_dict().values(), trained.state_dict().values()))


def test_rtdetr_load(stock):
    from ultralytics import RTDETR

    front = RTDETR("rtdetr-l.yaml")
    front.model = build_model({**load_base(_variant("rtdetr-l.yaml", "SHSA", "neck")), "nc": NC}, scale="l")
    log = _captured_load(front, str(stock["rtdetr-l.yaml"]))
    src = _stock_from(stock["rtdetr-l.yaml"])
    assert _transferred(log) == (len(src.state_dict()), len(front.model.state_dict()))
    x = torch.rand(SHAPE["rtdetr-l.yaml"])
    assert torch.equal(_out(front.model, x), _out(src, x))


@pytest.mark.slow  # a real `yolo train`
def test_pretrained_cli(stock, shapes_data, tmp_path):
    """``yolo train model=<cfg with LSKA> pretrained=stock.pt``: the log reports every stock tensor transferred."""
    cfg = tmp_path / "yolov8n-lska.yaml"
    cfg.write_text(dump(insert("yolov8.yaml", "LSKA", 9)))
    n_stock = len(_stock_from(stock["yolov8.yaml"]).state_dict())
    n_total = len(build_model(str(cfg)).state_dict())
    cmd = [bin_path("yolo"), "train", f"model={cfg}", f"pretrained={stock['yolov8.yaml']}", f"data={shapes_data}",
           "imgsz=64", "epochs=1", "batch=8", "device=cpu", "workers=0", "plots=False", "val=False",
           f"project={tmp_path / 'runs'}", "name=t", "exist_ok=True"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert f"Transferred {n_stock}/{n_total} items from pretrained weights" in out, out[-4000:]
    assert "new layers: 10 LSKA" in out


OLD_LOAD = """
import torch, ultralytics
from ultralytics import YOLO
from ultralytics.nn.tasks import DetectionModel
stock = YOLO("yolov8n.yaml")
stock.model.half().float()  # the checkpoint is saved in half precision: compare with what it holds
stock.ckpt = {{"model": stock.model}}  # before 8.4, Model.save writes self.ckpt: empty for a YAML-built model
stock.save({ckpt!r})
model = YOLO({cfg!r})
model.load({ckpt!r})
x = torch.rand(1, 3, 64, 64)
with torch.no_grad():
    a, b = stock.model.eval()(x), model.model.eval()(x)
print(ultralytics.__version__, bool(torch.equal(a[0], b[0])))
"""


@pytest.mark.parametrize("version", [OLD_ULTRALYTICS[0], OLD_ULTRALYTICS[-1]])
def test_older_ultralytics(version, tmp_path):
    """The wrapped load on the oldest and newest older release (their ``load`` is plain name-and-shape matching)."""
    cfg = tmp_path / "yolov8n-cga.yaml"
    cfg.write_text(dump(insert("yolov8.yaml", "CGA", 9)))
    env = {"PYTHONPATH": str(ultralytics_version_path(version)), "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1",
           "YOLO_CONFIG_DIR": str(tmp_path / "ucfg")}
    proc = run_py(OLD_LOAD.format(ckpt=str(tmp_path / "stock.pt"), cfg=str(cfg)), env=env, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    n_total = len(build_model(str(cfg)).state_dict())
    assert f"Transferred 355/{n_total} items" in out, out[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == f"{version} True"  # the stock function, as loaded
