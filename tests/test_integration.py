"""Registration with Ultralytics: names resolve, channels are inferred, stock models are untouched, errors are clear."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

import yolo_attn
from yolo_attn import CGA, FLA, LSKA, SHSA
from yolo_attn.configs import dump, find_after_sppf, load_base
from yolo_attn.adapter import UnknownLayerError, model_class
from yolo_attn.layers.registry import builtin_specs

from conftest import NAMES, all_layers_after, run_py

from ultralytics.nn import tasks  # noqa: E402  (after conftest set the offline environment)

def in_channels(layer: torch.nn.Module) -> int:
    """c1 a layer was built with, read from its weights (independent of how it was constructed)."""
    if isinstance(layer, LSKA):
        return layer.conv1.in_channels
    if isinstance(layer, CGA):
        return sum(q.c.in_channels for q in layer.attn.attn.qkvs)
    if isinstance(layer, FLA):
        return layer.attn.qkv.in_features
    if isinstance(layer, SHSA):
        return layer.attn.proj[1].c.in_channels
    if type(layer).__name__ == "EMA":  # factor groups share convolutions of c1 / factor channels
        return layer.groups * layer.conv1x1.in_channels
    if type(layer).__name__ == "TripletAttention":  # its convolutions see 2 pooled maps whatever c1 is
        return layer.c1
    first = next((m for m in layer.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))
                  and getattr(m, "groups", 1) == 1), None)  # depthwise ones (LSKBlock's conv0) say nothing
    if first is not None:  # SE's fc1, CoordAtt's conv1, CBAM's MLP, LSKBlock's conv1, iRMB's qk, BRA's qkv
        return first.weight.shape[1]
    return layer.c1  # no 2-D weight to read it from (ECA's 1-D conv over channels, parameter-free SimAM)


def channel_probe(model: torch.nn.Module, imgsz=(64, 96)) -> dict[int, int]:
    """Actual channel count of every layer's output, recorded by forward hooks."""
    out = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, k=k: out.__setitem__(k, o.shape[1] if torch.is_tensor(o) else None))
             for k, m in enumerate(model.model)]
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, *imgsz))
    for h in hooks:
        h.remove()
    return out


def test_register_is_idempotent_and_returns_names():
    assert yolo_attn.register() == NAMES
    assert yolo_attn.register() == NAMES
    assert yolo_attn.registered() == NAMES
    for name in NAMES:
        entry = tasks.__dict__[name]
        assert issubclass(entry, torch.nn.Module)  # restricted loading only admits nn.Module subclasses
        assert entry._yolo_attn_layer is getattr(yolo_attn, name)
    assert getattr(tasks.parse_model, "_yolo_attn", False)


def test_direct_call_of_registered_name_is_the_layer():
    layer = tasks.LSKA(32, 11)  # not from parse_model: arguments are taken as given, c1 first
    assert type(layer) is LSKA and layer.k_size == 11 and in_channels(layer) == 32


SKIP_YAML = {
    "nc": 2,
    "scales": {"n": [0.33, 0.25, 1024], "s": [0.33, 0.5, 1024]},
    "backbone": [
        [-1, 1, "Conv", [64, 3, 2]],  # 0
        [-1, 1, "Conv", [128, 3, 2]],  # 1
        [-1, 1, "C2f", [128, True]],  # 2
        [-1, 1, "Conv", [256, 3, 2]],  # 3
        [-1, 1, "LSKA", [11]],  # 4  from -1
        [2, 3, "SHSA", [8]],  # 5  skip input + n=3 repeats (-> 1 at depth 0.33)
        [2, 4, "CGA", [2, 8]],  # 6  skip input, n=4 -> 1
        [[5, 6], 1, "Concat", [1]],  # 7
        [3, 1, "FLA", [4, 4]],  # 8  skip input
    ],
    "head": [[[7, 8], 1, "Detect", ["nc"]]],
}


@pytest.mark.parametrize("scale", ["n", "s"])
def test_c1_comes_from_the_from_layer(scale):
    d = {**SKIP_YAML, "scale": scale}
    model = tasks.DetectionModel(d, verbose=False)
    probe = channel_probe(model)
    for i, row in enumerate(d["backbone"]):
        if row[2] in NAMES:
            layer = model.model[i]
            layers = list(layer) if isinstance(layer, torch.nn.Sequential) else [layer]
            for sub in layers:
                assert in_channels(sub) == probe[row[0] if row[0] >= 0 else i - 1], (i, row)
            assert probe[i] == in_channels(layers[0])  # output channels = input channels
    assert model.model[5].type == "yolo_attn.SHSA"


def test_n_repeats_build_independent_layers():
    d = {**SKIP_YAML, "scale": "n", "depth_multiple": 1.0}
    d = {k: v for k, v in d.items() if k != "scales"}  # depth 1.0: n=3 stays 3
    model = tasks.DetectionModel(d, verbose=False)
    rep = model.model[5]
    assert isinstance(rep, torch.nn.Sequential) and len(rep) == 3
    assert all(type(m) is SHSA and in_channels(m) == 128 for m in rep)  # C2f(128) at width 1.0
    assert len({id(m.attn.qkv.c.weight) for m in rep}) == 3


@pytest.mark.parametrize("scale", ["n", "s", "m", "l", "x"])
def test_every_yolov8_scale_builds_and_runs(scale):
    d = all_layers_after(f"yolov8{scale}.yaml")
    model = tasks.DetectionModel(d, verbose=False)
    p = find_after_sppf(load_base("yolov8.yaml"))
    sppf_out = model.model[p].cv2.conv.out_channels
    for k, name in enumerate(NAMES, start=p + 1):
        assert type(model.model[k]).__name__ == name and in_channels(model.model[k]) == sppf_out
    model.eval()
    with torch.no_grad():
        y = model(torch.zeros(1, 3, 96, 64))[0]
    assert y.shape[0] == 1 and torch.isfinite(y).all()


def test_rtdetr_builds_with_layers_after_aifi(tmp_path):
    from ultralytics import RTDETR

    d = all_layers_after("rtdetr-l.yaml")
    model = tasks.RTDETRDetectionModel(d, verbose=False)
    p = find_after_sppf(load_base("rtdetr-l.yaml"))
    assert type(model.model[p]).__name__ == "AIFI"
    for k, name in enumerate(NAMES, start=p + 1):
        assert type(model.model[k]).__name__ == name and in_channels(model.model[k]) == 256
    model.eval()
    with torch.no_grad():
        y = model(torch.zeros(1, 3, 64, 96))
    assert torch.isfinite(y[0]).all()
    cfg = tmp_path / "rtdetr-l-attn.yaml"  # the RTDETR front end, from a file, builds the same layers
    cfg.write_text(dump(d))
    front = RTDETR(str(cfg)).model
    assert [type(front.model[k]).__name__ for k in range(p + 1, p + 1 + len(NAMES))] == list(NAMES)


STOCK = ("yolov8n.yaml", "yolo11n.yaml", "rtdetr-l.yaml", "yolov8n-seg.yaml")


def stock_summary(model) -> list:
    return [sum(p.numel() for p in model.parameters()), [type(m).__name__ for m in model.modules()]]


def test_stock_models_unchanged_by_the_plugin():
    """Same layers and parameter counts with the plugin as in a process where it never loaded."""
    classes = {cfg: model_class(cfg).__name__ for cfg in STOCK}  # chosen by the head, as everywhere
    code = (
        "import json, sys\n"
        "from ultralytics.nn.tasks import DetectionModel, SegmentationModel, RTDETRDetectionModel\n"
        "out = {}\n"
        f"for cfg, cls in {classes!r}.items():\n"
        "    m = globals()[cls](cfg, verbose=False)\n"
        "    out[cfg] = [sum(p.numel() for p in m.parameters()), [type(x).__name__ for x in m.modules()]]\n"
        "assert 'yolo_attn' not in sys.modules\n"
        "print(json.dumps(out))\n"
    )
    without = json.loads(run_py(code, env={"YOLO_ATTN_AUTOLOAD": "0"}).stdout.strip().splitlines()[-1])
    for cfg in STOCK:
        assert stock_summary(model_class(cfg)(cfg, verbose=False)) == without[cfg], cfg


def test_existing_ultralytics_name_is_kept(monkeypatch):
    class TheirLSKA(torch.nn.Module):
        pass

    monkeypatch.setitem(tasks.__dict__, "LSKA", TheirLSKA)
    with pytest.warns(RuntimeWarning, match="already defines 'LSKA'"):
        names = yolo_attn.register()
    assert "LSKA" not in names and tasks.LSKA is TheirLSKA
    monkeypatch.undo()
    assert yolo_attn.register() == NAMES


def test_unknown_layer_lists_registered_names():
    d = {**SKIP_YAML, "scale": "n"}
    d["backbone"] = [*d["backbone"][:4], [-1, 1, "LKSA", [7]]]
    d["head"] = [[[3, 4], 1, "Detect", ["nc"]]]
    with pytest.raises(KeyError) as e:
        tasks.DetectionModel(d, verbose=False)
    assert isinstance(e.value, UnknownLayerError)
    msg = str(e.value)
    assert "model layer 4" in msg and "'LKSA'" in msg
    listed = msg.split("(registered: ")[1].split(")")[0].split(", ")
    assert set(builtin_specs()) <= set(listed)  # the shipped layers; others may be registered too


BAD_ROWS = [
    # (row, regex the message must match)
    ([-1, 1, "LSKA", [9]], r"model layer 4 \(LSKA.*k_size=9 is not supported; choose one of 7, 11, 23, 35, 41, 53"),
    ([-1, 1, "LSKA", [7, 3]], r"model layer 4 \(LSKA.*at most 1 YAML args \(k_size"),
    ([-1, 1, "CGA", [3]], r"model layer 4 \(CGA.*c1=64 are not divisible by num_heads=3"),
    ([-1, 1, "FLA", [6]], r"model layer 4 \(FLA.*c1=64 are not divisible by num_heads=6"),
    ([-1, 1, "SHSA", [16, 100]], r"model layer 4 \(SHSA.*pdim=100 exceeds the input channels c1=64"),
    ([-1, 1, "SHSA", [16, 0]], r"model layer 4 \(SHSA.*pdim must be >= 1, got 0"),
    ([-1, 1, "SHSA", [16, -4]], r"model layer 4 \(SHSA.*pdim must be >= 1, got -4"),
    ([-1, 1, "CGA", [4, 16, 7.5]], r"model layer 4 \(CGA.*window must be an integer, got 7.5"),
    ([-1, 1, "FLA", [8, "big"]], r"model layer 4 \(FLA.*window must be an integer, got 'big'"),
    ([-1, 1, "CGA", [[4]]], r"model layer 4 \(CGA.*num_heads must be an integer, got \[4\]"),
    ([-1, 1, "CGA", [True]], r"model layer 4 \(CGA.*num_heads must be an integer, got True"),
    ([-1, 1, "CGA", [4, 16, 7, 4]], r"model layer 4 \(CGA.*kernel must be odd"),
    ([-1, 1, "LSKA", [10**9]], r"model layer 4 \(LSKA.*k_size=1000000000 is not supported"),
    ([-1, 1, "CGA", [4, 16, 10**6]], r"model layer 4 \(CGA.*window must be between 1 and 32"),
    ([[-1, 2], 1, "LSKA", []], r"model layer 4 \(LSKA.*takes one input but 'from' is \[-1, 2\]"),
]


@pytest.mark.parametrize("row,pattern", BAD_ROWS, ids=[str(r[0]) for r in BAD_ROWS])
def test_bad_yaml_rows_give_a_clear_error(row, pattern):
    d = {**SKIP_YAML, "scale": "n"}
    d["backbone"] = [*d["backbone"][:4], row]
    d["head"] = [[[3, 4], 1, "Detect", ["nc"]]]
    with pytest.raises(ValueError, match=pattern):
        tasks.DetectionModel(d, verbose=False)


def test_layers_warn_nothing_on_build():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tasks.DetectionModel({**SKIP_YAML, "scale": "n"}, verbose=False)
