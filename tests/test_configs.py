"""Shipped configs and the config tool: cfg/ is exactly what the tool writes, every file builds at every scale and
runs at square and non-square sizes, and every inserted config is the stock network plus the inserted layers."""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import NAMES, bin_path, n_params, run_py
from yolo_attn.check import flop_counter
from yolo_attn.configs import (
    _absolute,
    cfg_path,
    declared_scales,
    default_args,
    dump,
    insert,
    insert_rows,
    load_base,
    placement_rows,
    shipped_configs,
)
from yolo_attn.adapter import build_model, model_class

ROOT = Path(__file__).resolve().parents[1]
from config_table import RTDETR_SCALES, YOLO_SCALES, table_rows  # noqa: E402
from make_configs import PLAN, shipped_names  # noqa: E402

CFGS = sorted((ROOT / "cfg").glob("*.yaml"))


def assert_stock_plus_layers(model, stock) -> list[int]:
    """``model`` is ``stock`` with yolo_attn layers spliced in: same layers in the same order with the same
    parameter counts, every ``from`` renumbered (and redirected to a layer inserted after its source), each
    inserted layer reading the row before it. Returns the stock rows the layers were inserted after."""
    new, old = list(model.model), list(stock.model)
    inserted = [k for k, m in enumerate(new) if type(m).__name__ in NAMES]
    kept = [k for k in range(len(new)) if k not in inserted]
    assert len(kept) == len(old), "the inserted config lost or gained stock layers"
    assert n_params(model) == n_params(stock) + sum(n_params(new[k]) for k in inserted)
    for k in inserted:
        assert new[k].f == -1 and new[k].i == k, (k, new[k].f)
    for j, k in enumerate(kept):
        o, n = old[j], new[k]
        assert type(o) is type(n) and n_params(o) == n_params(n), (j, type(o).__name__, type(n).__name__)
        expected = []
        for x in _absolute(o.f, j):
            if x < 0:  # the model input
                expected.append(x)
                continue
            src = kept[x]
            while src + 1 in inserted and src + 1 < k:  # what read row x now reads the layer(s) inserted after it
                src += 1
            expected.append(src)
        assert _absolute(n.f, k) == expected, f"stock layer {j} (now {k}) reads {n.f}, expected {expected}"
    return [kept.index(k - 1) for k in inserted if k - 1 in kept]


# --- cfg/ is generated ------------------------------------------------------------------------------------------


def test_cfg_dir_is_what_the_tool_writes(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_configs.py"), "--out", str(tmp_path)], check=True,
                   capture_output=True)
    made = {p.name: p.read_text() for p in tmp_path.glob("*.yaml")}
    shipped = {p.name: p.read_text() for p in CFGS}
    assert made == shipped, "cfg/ is stale: run python scripts/make_configs.py"
    assert sorted(shipped) == sorted(name for name, *_ in shipped_names())
    assert len(shipped) >= 28
    for layer in NAMES:
        for stem in ("yolov8", "rtdetr-l"):
            for suffix in ("", "-neck", "-backbone"):
                assert f"{stem}-{layer.lower()}{suffix}.yaml" in shipped
        assert f"yolo11-{layer.lower()}.yaml" in shipped


README_ROWS = table_rows((ROOT / "docs" / "en" / "placements.md").read_text(encoding="utf-8"))  # the docs' table


def test_readme_config_table_lists_exactly_the_shipped_files():
    stock = {base for base, _ in PLAN.values()}
    assert set(README_ROWS) == {p.name for p in CFGS} | stock, "run python scripts/config_table.py"


# --- every shipped file builds and runs ----------------------------------------------------------------------------

PLACEMENT_OF = {name: (base, layer, at) for name, base, layer, at in shipped_names()}


def _family(cfg: Path) -> tuple[str, bool]:
    base, _, _ = PLACEMENT_OF[cfg.name]
    return base, model_class(base).__name__ == "RTDETRDetectionModel"  # chosen by the head, as compare does


def _forward(model, h: int, w: int):
    model.eval()
    with torch.inference_mode():
        y = model(torch.zeros(1, 3, h, w))
    while isinstance(y, (list, tuple, dict)):  # eval output: (predictions, extras) for every head type
        y = next(iter(y.values())) if isinstance(y, dict) else y[0]
    assert torch.isfinite(y).all(), f"non-finite output at {h}x{w}"
    return y


@functools.lru_cache(maxsize=None)
def _stock(base: str, scale: str):
    """The stock model of ``base`` at ``scale``, built once: the tests below only read it (never run or change it)."""
    return build_model(base, scale=scale)


@pytest.mark.slow  # every shipped config at every scale (~2 min on 2 cores)
@pytest.mark.parametrize("cfg", CFGS, ids=[p.stem for p in CFGS])
def test_shipped_config_builds_at_every_scale_and_runs(cfg):
    """Every declared scale builds and runs; the README row's params and GFLOPs at 640 are what this build gives."""
    base, rtdetr = _family(cfg)
    _, layer, at = PLACEMENT_OF[cfg.name]
    scales = declared_scales(cfg)
    assert scales == list(load_base(base)["scales"]), "a shipped config must declare the stock scales"
    in_table = RTDETR_SCALES if rtdetr else YOLO_SCALES
    row = README_ROWS[cfg.name]
    for k, scale in enumerate(scales):
        model = build_model(cfg, scale=scale)
        if k == 0:  # smallest scale: the full check
            stock = _stock(base, scale)
            after = assert_stock_plus_layers(model, stock)
            assert after == placement_rows(base, at)
            assert sum(type(m).__name__ == layer for m in model.model) == len(after)
            for h, w in ((640, 384), (384, 640)):
                y = _forward(model, h, w)
                if not rtdetr:  # YOLO head: one prediction per cell of P3, P4, P5
                    assert y.shape[-1] == sum((h // s) * (w // s) for s in (8, 16, 32))
        if scale in in_table:  # 640×640, FLOPs counted, against the README
            with flop_counter() as counter:
                _forward(model, 640, 640)
            c = 3 * in_table.index(scale)
            assert row[2 + c] == f"{n_params(model):,}", f"README params of {cfg.name} at {scale}"
            assert row[3 + c] == f"{counter.get_total_flops() / 1e9:.2f}", f"README GFLOPs of {cfg.name} at {scale}"
        elif k == 0:
            _forward(model, 640, 640)
        else:
            _forward(model, 96, 160)


def test_per_placement_defaults_follow_the_map_size():
    d = yaml.safe_load((ROOT / "cfg" / "yolov8-fla-neck.yaml").read_text())
    fla = [row[3] for row in d["backbone"] + d["head"] if row[2] == "FLA"]
    assert [a[1] for a in fla] == [80, 40, 20]  # window = native P3, P4, P5 grid at 640
    lska = [row[3] for row in (lambda e: e["backbone"] + e["head"])(
        yaml.safe_load((ROOT / "cfg" / "yolov8-lska-backbone.yaml").read_text())) if row[2] == "LSKA"]
    assert lska == [[53], [41]]
    assert default_args("LSKA", 32) == [23] and default_args("FLA", 16) == [8, 40, 3, 5]
    assert default_args("SHSA", 8) == [16] and default_args("CGA", None) == [4, 16, 7, 5]


# --- the tool on YAMLs it has never seen ----------------------------------------------------------------------------


@pytest.mark.parametrize("base,layer,at,expected_after", [
    ("yolov8-p2.yaml", "SHSA", "neck", [18, 21, 24, 27]),  # four head inputs: P2, P3, P4, P5
    ("yolo11-seg.yaml", "CGA", "backbone", [4, 6]),
    ("yolov8-pose.yaml", "LSKA", "after-sppf", [9]),
    ("yolov8-obb.yaml", "FLA", [4, 8], [4, 8]),
])
def test_insert_into_unseen_configs_is_stock_plus_layers(base, layer, at, expected_after, tmp_path):
    assert placement_rows(base, at) == expected_after
    out = tmp_path / base.replace(".yaml", f"-{layer.lower()}.yaml")
    at_arg = at if isinstance(at, str) else ",".join(map(str, at))
    proc = subprocess.run([bin_path("yolo-attn"), "insert", base, "--layer", layer, "--at", at_arg, "-o", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    rows = [line for line in text.splitlines() if line.startswith("  - [")]
    assert [int(line.rsplit("# ", 1)[1]) for line in rows] == list(range(len(rows)))  # index comments renumbered
    model = build_model(out, scale="n")
    stock = build_model(base, scale="n")
    assert assert_stock_plus_layers(model, stock) == expected_after
    _forward(model, 160, 96)


def test_insert_renumbers_the_head_input_list_and_skips():
    d = insert("yolov8.yaml", "LSKA", at="neck")
    rows = d["backbone"] + d["head"]
    assert rows[-1][0] == [16, 20, 24]  # Detect reads the three LSKA layers
    assert rows[18][0] == [-1, 12] and rows[22][0] == [-1, 9]  # PAN concats still read C2f 12 and SPPF 9
    assert [r[3] for r in rows if r[2] == "LSKA"] == [[53], [41], [23]]
    d = insert("yolov8.yaml", "CGA", at="backbone", args=[2, 8, 5, 3])
    rows = d["backbone"] + d["head"]
    assert [i for i, r in enumerate(rows) if r[2] == "CGA"] == [5, 8]
    assert rows[13][0] == [-1, 8] and rows[16][0] == [-1, 5]  # the FPN concats read the attended P4 and P3


def test_insert_rows_accepts_per_row_args():
    d = insert_rows("yolov8.yaml", "FLA", [4, 6], {4: [8, 80], 6: [8, 40]})
    rows = d["backbone"] + d["head"]
    assert rows[5] == [-1, 1, "FLA", [8, 80]] and rows[8] == [-1, 1, "FLA", [8, 40]]


@pytest.mark.parametrize("argv,message", [
    (["yolov8.yaml", "--layer", "Nope"], "'Nope' is not a registered layer"),
    (["yolov8.yaml", "--layer", "LSKA", "--at", "middle"], "neither a placement"),
    (["yolov8.yaml", "--layer", "LSKA", "--at", "99"], "insert position 99 is outside the config's rows 0..22"),
    (["yolov8.yaml", "--layer", "LSKA", "--args", "24"], "k_size=24 is not supported; choose one of 7, 11, 23, 35, 41, 53"),
    (["yolov8.yaml", "--layer", "CGA", "--args", "3"], "num_heads"),
    (["no-such-model.yaml", "--layer", "LSKA"], "no-such-model.yaml"),
    (["yolov8.yaml", "--layer", "LSKA", "--at", "22"], "insert position 22 is the head (Detect)"),
    (["rtdetr-l.yaml", "--layer", "LSKA", "--at", "28"], "insert position 28 is the head (RTDETRDecoder)"),
    (["yolov8n.pt", "--layer", "LSKA"], "yolov8n.pt is not a model YAML"),
    (["yolov8.yaml", "--layer", "LSKA", "-o", "/proc/no-such-dir/x.yaml"], "cannot write /proc/no-such-dir/x.yaml"),
])
def test_insert_command_errors_name_the_problem(argv, message):
    proc = subprocess.run([bin_path("yolo-attn"), "insert", *argv], capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr[-2000:]


# --- yolo-attn check --------------------------------------------------------------------------------------------


def test_check_prints_per_layer_table_with_attention_flops():
    proc = subprocess.run([bin_path("yolo-attn"), "check", str(ROOT / "cfg" / "yolov8-shsa-neck.yaml"), "--scales",
                           "n", "--imgsz", "640", "--rect", "640x384"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    rows = [line for line in out.splitlines() if line.startswith("* ")]
    assert len(rows) == 3 and all("SHSA" in r for r in rows)
    first = rows[0].split()
    assert first[1:3] == ["16", "-1"] and first[4:7] == ["64", "->", "64"]  # P3 of YOLOv8n: 64 channels
    # SHSA at P3 of 640: 6,400 tokens, pdim 16, qk 16: q·k and attn·v are 2·6400²·(16 + 16) FLOPs
    attention = 2 * 6400 * 6400 * (16 + 16)
    assert float(first[-1]) * 1e9 > attention
    assert "forward 640x640: ok" in out and "forward 640x384: ok" in out


def test_check_reports_a_failing_layer_by_name(tmp_path):
    cfg = tmp_path / "bad.yaml"
    d = insert_rows("yolov8.yaml", "CGA", 9, [5])  # 5 heads do not divide 256 channels at scale n
    cfg.write_text(dump(d))
    proc = subprocess.run([bin_path("yolo-attn"), "check", str(cfg), "--scales", "n"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 1
    assert "model layer 10 (CGA, args [5])" in proc.stdout and "num_heads" in proc.stdout


# --- configs installed with the package and resolved by name -----------------------------------------------------


def test_cfg_path_returns_shipped_files():
    assert cfg_path("yolov8-lska.yaml") == shipped_configs()["yolov8-lska.yaml"]
    assert cfg_path("yolov8s-lska.yaml").name == "yolov8-lska.yaml"
    assert cfg_path("rtdetr-l-fla-neck").name == "rtdetr-l-fla-neck.yaml"
    with pytest.raises(FileNotFoundError, match="ships no config named 'yolov8-nope.yaml'.*yolov8-lska.yaml"):
        cfg_path("yolov8-nope.yaml")


def test_yolo_resolves_shipped_config_names_with_their_scale(tmp_path):
    code = (
        "from ultralytics import YOLO, RTDETR\n"
        "m = YOLO('yolov8s-lska-neck.yaml').model\n"
        "print(m.yaml['scale'], sum(type(x).__name__ == 'LSKA' for x in m.model))\n"
        "print(sum(p.numel() for p in m.parameters()))\n"
        "r = RTDETR('rtdetr-l-shsa.yaml').model\n"
        "print(type(r).__name__, type(r.model[12]).__name__)\n"
    )
    out = [line for line in run_py(code, cwd=tmp_path).stdout.strip().splitlines() if not line.startswith("WARNING")]
    assert out[0].split()[:2] == ["s", "3"]
    expected = n_params(build_model(ROOT / "cfg" / "yolov8-lska-neck.yaml", scale="s"))
    assert int(out[1]) == expected
    assert out[2] == "RTDETRDetectionModel SHSA"
    # A local file of the same name wins over the shipped one.
    (tmp_path / "yolov8n-lska.yaml").write_text(dump(insert_rows("yolov8.yaml", "CGA", 9)))
    out = run_py("from ultralytics import YOLO\nm = YOLO('yolov8n-lska.yaml').model\n"
                 "print(type(m.model[10]).__name__)\n", cwd=tmp_path).stdout.strip().splitlines()
    assert out[-1] == "CGA"


@pytest.mark.slow  # builds and installs the wheel
def test_wheel_ships_the_configs_and_they_resolve_without_the_repo(tmp_path, wheel):
    site = tmp_path / "site"
    import zipfile

    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"yolo_attn/cfg/{p.name}" for p in CFGS} <= names
    assert {"yolo_attn.pth", "yolo_attn_autoload.py"} <= names
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    work = tmp_path / "elsewhere"
    work.mkdir()
    code = (
        f"import sys; sys.path.insert(0, {str(site)!r})\n"
        "import yolo_attn\n"
        f"assert yolo_attn.__file__.startswith({str(site)!r}), yolo_attn.__file__\n"
        "print(yolo_attn.cfg_path('yolov8-lska.yaml'))\n"
        "from ultralytics import YOLO\n"
        "m = YOLO('yolov8s-lska.yaml').model\n"
        "print(m.yaml['scale'], type(m.model[10]).__name__)\n"
    )
    out = run_py(code, cwd=work).stdout.strip().splitlines()
    assert out[-2] == str(site / "yolo_attn" / "cfg" / "yolov8-lska.yaml")
    assert out[-1] == "s LSKA"
