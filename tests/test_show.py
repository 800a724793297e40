"""``yolo-attn show``: the drawn attention weights are the ones the layers use (they rebuild each layer's output), one
picture per layer type with a colour scale and numbers that say how much the maps show, a warning for untrained
weights, the image's own size by default, and Ultralytics' own ``visualize=True`` heatmaps work with our layers."""

from __future__ import annotations

import subprocess

import matplotlib
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import BUILTIN, NAMES, all_layers_after, bin_path, randomize_
from yolo_attn.configs import dump
from yolo_attn.layers import REGISTRY
from yolo_attn.layers.cga import CGA
from yolo_attn.layers.fla import FLA
from yolo_attn.layers.lska import LSKA
from yolo_attn.layers.shsa import SHSA
from yolo_attn.show import (NEARLY_UNIFORM, SAME_QUERIES, attention_maps, default_imgsz, drawable, figure, map_stats,
                             show, untrained)

PNG = b"\x89PNG\r\n\x1a\n"


def _every_cell(h: int, w: int) -> list[tuple[float, float]]:
    return [((c + 0.5) / w, (r + 0.5) / h) for r in range(h) for c in range(w)]


def _weights(layer: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(N, N) weights: row i = the drawn map of the query at cell i."""
    h, w = x.shape[-2:]
    (found,) = attention_maps(torch.nn.Sequential(layer), x, _every_cell(h, w))
    return torch.stack([m.flatten() for m in found["maps"]])


DRAWN = tuple(n for n in BUILTIN if callable(getattr(REGISTRY[n].cls, "attention_maps", None)))
"""The shipped layers with a spatial map to draw (a channel-only gate such as SE or ECA has none)."""


def test_every_builtin_layer_with_maps_draws_them_and_the_others_are_not_drawn():
    assert {"CGA", "FLA", "LSKA", "SHSA"} <= set(DRAWN)
    for name in BUILTIN:
        spec = REGISTRY[name]
        if name in DRAWN:
            assert drawable(spec.small()) is spec and spec.maps_caption, name
        else:
            assert drawable(spec.small()) is None and not spec.maps_caption, name


def test_a_layer_configured_without_a_spatial_map_is_not_drawn():
    """CBAM(no_spatial=True) gates channels only: show skips it (its attention_maps says why when called)."""
    spatial, channels_only = REGISTRY["CBAM"].cls(16), REGISTRY["CBAM"].cls(16, no_spatial=True)
    assert drawable(spatial) is REGISTRY["CBAM"] and drawable(channels_only) is None
    with pytest.raises(ValueError, match="no spatial map"):
        channels_only.attention_maps(torch.randn(1, 16, 4, 4), [(0, 0)])
    x = torch.randn(1, 16, 6, 6)
    drawn = attention_maps(torch.nn.Sequential(channels_only, spatial), x, [(0.5, 0.5)])
    assert [(d["name"], len(d["maps"])) for d in drawn] == [("CBAM", 1)]  # the spatial one only


@pytest.mark.parametrize("name", [n for n in NAMES if callable(getattr(REGISTRY[n].cls, "attention_maps", None))])
@torch.no_grad()
def test_every_drawing_layer_gives_one_finite_map_per_query(name):
    """Through the registry: one H×W map per query point (one map for a gate), finite, on a non-square map."""
    spec = REGISTRY[name]
    layer = randomize_(spec.small(), 5).eval()
    points = [(0.1, 0.2), (0.9, 0.6), (0.5, 0.5)]
    (found,) = attention_maps(torch.nn.Sequential(layer), torch.randn(1, 16, 9, 13), points)
    assert found["name"] == name and found["caption"] == spec.maps_caption and found["query"] == spec.maps_per_query
    assert len(found["maps"]) == (len(points) if spec.maps_per_query else 1)
    assert all(m.shape == (9, 13) and torch.isfinite(m).all() for m in found["maps"])


@torch.no_grad()
def test_shsa_weights_rebuild_its_output():
    layer = randomize_(SHSA(32, 16, 8), 0).eval()
    x = torch.randn(1, 32, 5, 6)
    a, w = layer.attn, _weights(layer, x)
    assert torch.allclose(w.sum(1), torch.ones(30), atol=1e-5)
    v = a.qkv(a.pre_norm(x[:, :8])).flatten(2)[:, 2 * 16:]  # (1, pdim, N)
    attended = (v[0] @ w.T).view(1, 8, 5, 6)
    assert torch.allclose(x + a.proj(torch.cat([attended, x[:, 8:]], 1)), layer(x), atol=1e-4)


@torch.no_grad()
def test_cga_weights_rebuild_its_output_and_stay_in_the_window():
    layer = randomize_(CGA(32, num_heads=1, key_dim=16, window=7), 1).eval()
    x = torch.randn(1, 32, 7, 7)
    a, w = layer.attn.attn, _weights(layer, x)
    assert torch.allclose(w.sum(1), torch.ones(49), atol=1e-5)
    _, _, v = a.qkvs[0](x).split([16, 16, 32], dim=1)
    assert torch.allclose(x + a.proj((v.flatten(2)[0] @ w.T).view(1, 32, 7, 7)), layer(x), atol=1e-4)
    big = randomize_(CGA(32, num_heads=4, key_dim=8, window=4), 2).eval()
    (found,) = attention_maps(torch.nn.Sequential(big), torch.randn(1, 32, 10, 10), [(0.05, 0.05), (0.95, 0.05)])
    inner, edge = found["maps"]  # windows of 4×4 cells; the last row/column of windows is padded with zeros
    assert inner.sum() == pytest.approx(1, abs=1e-5) and inner[:4, :4].sum() == pytest.approx(1, abs=1e-5)
    # query at row 0, column 9: its window spans rows 0..3, columns 8..11, of which 10 and 11 are padding
    assert 0 < edge[:4, 8:].sum() < 1 and edge.sum() == pytest.approx(float(edge[:4, 8:].sum()), abs=1e-6)


@torch.no_grad()
def test_fla_weights_rebuild_its_output():
    layer = randomize_(FLA(16, num_heads=1, window=6), 3).eval()
    x = torch.randn(1, 16, 6, 6)
    a, w = layer.attn, _weights(layer, x)
    assert torch.allclose(w.sum(1), torch.ones(36), atol=1e-4) and (w >= 0).all()
    _, _, v = F.conv2d(x, a.qkv.weight[:, :, None, None], a.qkv.bias).chunk(3, dim=1)
    out = (v.flatten(2)[0] @ w.T).view(1, 16, 6, 6) + a.dwc(v)
    out = F.conv2d(out, a.proj.weight[:, :, None, None], a.proj.bias)
    assert torch.allclose(x + out, layer(x), rtol=1e-3, atol=1e-3)


@torch.no_grad()
def test_lska_gate_map_is_its_channel_mean_gate():
    layer = randomize_(LSKA(16, 7), 4).eval()
    x = torch.rand(1, 16, 9, 9) + 0.5  # away from 0: the gate is output / input
    (found,) = attention_maps(torch.nn.Sequential(layer), x)
    assert torch.allclose(found["maps"][0], (layer(x) / x)[0].mean(0), atol=1e-4)


@pytest.fixture(scope="module")
def all_layers(tmp_path_factory, shapes_data):
    path = tmp_path_factory.mktemp("cfg") / "yolov8n-all.yaml"
    path.write_text(dump(all_layers_after("yolov8n.yaml")))
    image = sorted((shapes_data.parent / "images" / "val").glob("*.jpg"))[0]
    return path, image


def test_show_command_draws_every_layer_of_the_model(all_layers, tmp_path):
    cfg, image = all_layers
    proc = subprocess.run([bin_path("yolo-attn"), "show", str(cfg), str(image), "--imgsz", "64", "--out",
                           str(tmp_path), "--points", "0.2,0.2", "0.8,0.6"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "is a config, so its weights are random (untrained)" in proc.stderr
    pngs = sorted(tmp_path.glob("*.png"))
    assert sorted(p.stem.split("-", 1)[1] for p in pngs) == sorted(DRAWN)  # one picture per layer with maps
    for p in pngs:
        assert p.read_bytes()[:8] == PNG and str(p) in proc.stdout
    bad = subprocess.run([bin_path("yolo-attn"), "show", str(cfg), str(image), "--points", "2,0.5"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "fractions in [0, 1]" in bad.stderr


def test_show_builds_an_rtdetr_config_as_rtdetr(all_layers, tmp_path):
    """A config by name is built as the model class its head needs (RT-DETR's decoder is no YOLO head)."""
    _, image = all_layers
    (path,) = show("rtdetr-l-cga.yaml", image, tmp_path, imgsz=64, points=[(0.5, 0.5)])
    assert path.name == "12-CGA.png" and path.read_bytes()[:8] == PNG  # AIFI is row 11, the layer follows it


def test_ultralytics_visualize_works_with_our_layers(all_layers, tmp_path):
    from ultralytics import YOLO

    cfg, image = all_layers
    model = YOLO(str(cfg))
    assert {type(m).__name__ for m in model.model.modules()} >= set(BUILTIN)
    plain = model.predict(str(image), imgsz=64, conf=0.0, verbose=False)[0]
    shown = model.predict(str(image), imgsz=64, conf=0.0, verbose=False, visualize=True, project=str(tmp_path),
                          name="vis")[0]
    written = [p for p in tmp_path.rglob("*") if p.suffix in (".png", ".jpg")]
    assert written, "visualize=True wrote no heatmap"
    assert torch.allclose(plain.boxes.data, shown.boxes.data, atol=1e-4)


def _texts(fig) -> str:
    return "\n".join(t.get_text() for t in fig.findobj(matplotlib.text.Text))


@pytest.mark.parametrize("layer, channels", [(lambda: SHSA(32, 16, 8), 32), (lambda: FLA(16, num_heads=1, window=8), 16)])
@torch.no_grad()
def test_query_maps_of_a_trained_like_layer_differ_and_share_one_colour_scale(layer, channels):
    """With weights that do not vanish (randomised like trained ones, on an input that varies over the map) the maps
    of different query points differ, and the picture draws them on one scale that a colorbar shows: a difference in
    colour between two panels is a difference in weight."""
    torch.manual_seed(0)
    module = randomize_(layer(), 6, sharp=True).eval()
    points = [(0.1, 0.1), (0.5, 0.5), (0.9, 0.8)]
    (found,) = attention_maps(torch.nn.Sequential(module), torch.randn(1, channels, 8, 8), points)
    stats = map_stats(found)
    assert stats["spread_rel"] > SAME_QUERIES and stats["entropy"] < NEARLY_UNIFORM, stats
    assert stats["total"] == pytest.approx(1, abs=1e-3) and stats["input_std"] > 0.5
    fig = figure(found, np.zeros((64, 64, 3), np.uint8), points)
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(bars) == 1 and "attention weight" in bars[0].get_ylabel() and "1/64" in bars[0].get_ylabel()
    overlays = [ax.images[-1] for ax in fig.axes[1:1 + len(points)]]
    assert all(im.get_clim() == pytest.approx((stats["low"], stats["high"])) for im in overlays)
    assert not np.allclose(overlays[0].get_array(), overlays[1].get_array())
    assert "UNTRAINED" not in _texts(fig) and "hardly depend on the query" not in _texts(fig)
    matplotlib.pyplot.close(fig)


@torch.no_grad()
def test_a_layer_on_a_constant_map_draws_uniform_query_independent_maps_and_says_so():
    """Deep in an untrained model the features vanish (a P5 input of std about 1e-9): SHSA's softmax then sees equal
    logits, the maps are uniform and the same for every query, and the picture says so, with the untrained warning."""
    module = randomize_(SHSA(32, 16, 8), 7).eval()
    x = torch.randn(1, 32, 1, 1).expand(1, 32, 6, 6) * 1e-9  # one vector everywhere, as tiny as in a random model
    (found,) = attention_maps(torch.nn.Sequential(module), x, [(0.2, 0.2), (0.8, 0.8)])
    stats = map_stats(found)
    assert stats["spread"] < 1e-6 and stats["entropy"] > 0.9999 and stats["input_std"] < 1e-6
    fig = figure(found, np.zeros((96, 96, 3), np.uint8), [(0.2, 0.2), (0.8, 0.8)], untrained_model=True)
    text = _texts(fig)
    for says in ("UNTRAINED", "random weights", "constant over the map", "nearly uniform", "hardly depend on the query"):
        assert says in text, says
    assert any(ax.get_label() == "<colorbar>" for ax in fig.axes)
    matplotlib.pyplot.close(fig)


@torch.no_grad()
def test_a_gate_map_gets_a_gate_scale():
    module = randomize_(LSKA(16, 7), 4).eval()
    (found,) = attention_maps(torch.nn.Sequential(module), torch.rand(1, 16, 9, 9) + 0.5)
    fig = figure(found, np.zeros((64, 64, 3), np.uint8))
    (bar,) = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert "gate value" in bar.get_ylabel() and "gate map" in _texts(fig)
    matplotlib.pyplot.close(fig)


def test_default_size_is_the_images_own_rounded_to_32_and_capped():
    assert default_imgsz(128, 128) == 128 and default_imgsz(64, 64) == 64
    assert default_imgsz(100, 70) == 96 and default_imgsz(120, 300) == 288
    assert default_imgsz(10, 12) == 32 and default_imgsz(1080, 1920) == 640 and default_imgsz(900, 900, cap=1280) == 896
    assert untrained("yolov8n-shsa.yaml") and untrained("cfg/my.yaml") and not untrained("runs/x/weights/best.pt")


def test_show_of_a_config_warns_and_keeps_a_small_image_small(all_layers, tmp_path, capsys):
    """A config is drawn with random weights: a warning on the console and in the picture; without ``imgsz`` the
    64-px image runs at 64 px (2×2 at P5), not 640."""
    _, image = all_layers
    (path,) = show("yolov8n-shsa.yaml", image, tmp_path)
    out, err = capsys.readouterr()
    assert "WARNING" in err and "random (untrained)" in err
    assert path.read_bytes()[:8] == PNG and "(2×2 map at 64 px;" in out
