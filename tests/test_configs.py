"""Shipped configs: regenerated from stock YAMLs exactly, same network plus the inserted layer, build by file name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ultralytics import RTDETR, YOLO

from yolo_attn.configs import find_after_sppf, insert, load_base

ROOT = Path(__file__).resolve().parents[1]
CFGS = sorted((ROOT / "cfg").glob("*.yaml"))


def test_cfg_dir_is_what_the_generator_writes(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_configs.py"), "--out", str(tmp_path)], check=True)
    made = {p.name: p.read_text() for p in tmp_path.glob("*.yaml")}
    shipped = {p.name: p.read_text() for p in CFGS}
    assert made == shipped, "cfg/ is stale: run python scripts/make_configs.py"
    assert len(shipped) == 12


def nparams(m) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("cfg", CFGS, ids=[p.stem for p in CFGS])
def test_config_is_stock_plus_one_layer(cfg, tmp_path):
    rtdetr = cfg.name.startswith("rtdetr")
    stem = cfg.stem.rsplit("-", 1)[0]  # yolov8 / yolo11 / rtdetr-l
    scaled = cfg if rtdetr else tmp_path / cfg.name.replace("-", "n-", 1)  # yolov8n-lska.yaml -> scale n
    if not rtdetr:
        scaled.write_text(cfg.read_text())
    model = (RTDETR if rtdetr else YOLO)(str(scaled)).model
    stock = (RTDETR if rtdetr else YOLO)(f"{stem}{'' if rtdetr else 'n'}.yaml").model
    p = find_after_sppf(load_base(f"{stem}.yaml"))
    extra = model.model[p + 1]
    assert type(extra).__name__ == cfg.stem.rsplit("-", 1)[1].upper()
    assert nparams(model) == nparams(stock) + nparams(extra)
    # Wiring: every layer after the insert reads from the renumbered index of what it read before.
    for old, new in zip(stock.model, [m for k, m in enumerate(model.model) if k != p + 1]):
        shift = lambda f: f if f < 0 or f <= p else f + 1  # noqa: E731 (f == p: now the inserted layer, p + 1)
        expect = [shift(f) if f != p else p + 1 for f in ([old.f] if isinstance(old.f, int) else old.f)]
        got = [new.f] if isinstance(new.f, int) else new.f
        assert type(old) is type(new) and got == expect, (old.i, old.f, new.f)
    model.eval()
    with torch.no_grad():
        for shape in ((160, 224), (224, 160)):
            y = model(torch.zeros(1, 3, *shape))
            assert torch.isfinite(y[0] if isinstance(y, (list, tuple)) else y).all()


def test_insert_redirects_consumers_of_the_insert_point():
    d = insert("yolov8.yaml", "LSKA", 9, [23])
    rows = d["backbone"] + d["head"]
    assert rows[10] == [-1, 1, "LSKA", [23]]
    assert rows[21][0] == [-1, 10]  # the PAN concat that read SPPF (9) now reads LSKA (10)
    assert rows[-1][0] == [16, 19, 22]
