"""Ultralytics' own attention modules by YAML name (``UltralyticsChannelAttention``, ``UltralyticsSpatialAttention``,
``UltralyticsCBAM``; ``yolo_attn/adapter/ultralytics_layers.py``): built as Ultralytics' classes with the input
channels of the map they are placed on, at every scale and family; wrong arguments refused naming the name and the
argument; their checkpoints load with Ultralytics alone (no yolo_attn), plainly and with safe loading; ONNX parity.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import randomize_, rel, run_py

import yolo_attn  # noqa: F401  (registers the names)
from yolo_attn.adapter import build_model, save_checkpoint
from yolo_attn.adapter.ultralytics_layers import ULTRALYTICS_SPECS
from yolo_attn.configs import find_after_sppf, insert_rows, load_base
from yolo_attn.layers import LayerArgumentError, REGISTRY

NAMES = [spec.name for spec in ULTRALYTICS_SPECS]
TARGET = {"UltralyticsChannelAttention": "ChannelAttention", "UltralyticsSpatialAttention": "SpatialAttention",
          "UltralyticsCBAM": "CBAM"}


def model_with(name: str, base: str = "yolov8.yaml", scale: str = "n", args=()):
    """``base`` at ``scale`` with one row ``name`` after SPPF; returns (model, index of the row, its input channels)."""
    after = find_after_sppf(load_base(base))
    d = insert_rows(base, name, after, list(args))
    d["scale"] = scale
    model = build_model(d)
    probe, seen = build_model({**load_base(base), "scale": scale}).eval(), []
    probe.model[after].register_forward_hook(lambda m, i, out: seen.append(out.shape[1]))
    with torch.no_grad():
        probe(torch.zeros(1, 3, 64, 64))  # the new row's input channels: what the stock row before it outputs
    return model, after + 1, seen[0]


def test_names_are_apart_from_the_registry():
    """They are Ultralytics' modules, not layers yolo_attn implements: not in the registry, and nothing registered
    shadows them (Ultralytics' own CBAM is reachable only as UltralyticsCBAM; 'CBAM' is the paper's)."""
    assert NAMES == list(TARGET)
    assert not set(NAMES) & set(REGISTRY)


@pytest.mark.parametrize("scale", ["n", "s"])
@pytest.mark.parametrize("base", ["yolov8.yaml", "yolo11.yaml", "yolo26.yaml"])
@pytest.mark.parametrize("name", NAMES)
def test_built_by_name_as_ultralytics_class_with_the_maps_channels(name, base, scale):
    model, i, c = model_with(name, base, scale)
    m = model.model[i]
    assert type(m).__module__ == "ultralytics.nn.modules.conv" and type(m).__name__ == TARGET[name]
    convs = [mod for mod in m.modules() if isinstance(mod, torch.nn.Conv2d)]
    if name != "UltralyticsSpatialAttention":  # the channel gate's 1x1 conv is c -> c
        gate = m.fc if name == "UltralyticsChannelAttention" else m.channel_attention.fc
        assert (gate.in_channels, gate.out_channels) == (c, c)
    if name != "UltralyticsChannelAttention":
        assert convs[-1].in_channels == 2 and convs[-1].kernel_size == (7, 7)  # the default kernel
    x = torch.randn(2, c, 5, 7)
    randomize_(m, seed=1)
    ref = type(m)(c) if name != "UltralyticsSpatialAttention" else type(m)()
    ref.load_state_dict(m.state_dict(), strict=True)
    with torch.no_grad():
        assert torch.equal(m(x), ref(x))  # Ultralytics' forward, unchanged
    model.eval()(torch.zeros(1, 3, 64, 64))  # the whole model runs


def test_rtdetr_takes_them():
    model, i, c = model_with("UltralyticsCBAM", "rtdetr-l.yaml", "l", [3])
    assert type(model).__name__ == "RTDETRDetectionModel"
    assert model.model[i].channel_attention.fc.in_channels == c
    assert model.model[i].spatial_attention.cv1.kernel_size == (3, 3)


@pytest.mark.parametrize("name,args,message", [
    ("UltralyticsSpatialAttention", [5], "UltralyticsSpatialAttention: kernel_size must be 3 or 7"),
    ("UltralyticsCBAM", [7.0], "UltralyticsCBAM: kernel_size must be an integer"),
    ("UltralyticsChannelAttention", [256], "UltralyticsChannelAttention takes at most 0 YAML args"),
])
def test_wrong_rows_are_refused_by_name(name, args, message):
    with pytest.raises(LayerArgumentError, match=message):
        model_with(name, args=args)


@pytest.mark.slow
@pytest.mark.parametrize("safe", ["0", "1"])
def test_checkpoint_loads_with_ultralytics_alone(safe, tmp_path):
    """The model holds only Ultralytics' classes: the checkpoint loads where yolo_attn cannot be imported, and gives
    the same output."""
    model, i, _ = model_with("UltralyticsCBAM")
    randomize_(model.model[i], seed=2)
    model.eval()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    path = tmp_path / "cbam.pt"
    save_checkpoint(model, path)
    with torch.no_grad():
        expected = model.float()(x)[0]
    np.save(tmp_path / "x.npy", x.numpy())
    code = (
        "import sys\n"
        "class NoPlugin:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('yolo_attn', 'yolo_attn_autoload'):\n"
        "            raise ImportError('yolo_attn is blocked in this process')\n"
        "sys.meta_path.insert(0, NoPlugin())\n"
        "import numpy as np, torch\n"
        "from ultralytics import YOLO\n"
        f"m = YOLO({str(path)!r}).model.float().eval()\n"
        f"print(type(m.model[{i}]).__module__, type(m.model[{i}]).__name__)\n"
        f"x = torch.from_numpy(np.load({str(tmp_path / 'x.npy')!r}))\n"
        "with torch.no_grad():\n"
        f"    np.save({str(tmp_path / 'y.npy')!r}, m(x)[0].numpy())\n"
    )
    out = run_py(code, env={"YOLO_ATTN_AUTOLOAD": "0", "ULTRALYTICS_SAFE_LOAD": safe}).stdout.split()
    assert out[-2:] == ["ultralytics.nn.modules.conv", "CBAM"], out
    assert rel(np.load(tmp_path / "y.npy"), expected.numpy()) < 1e-3  # the checkpoint is half precision


@pytest.mark.slow
def test_onnx_export_parity(tmp_path):
    import onnxruntime as ort

    model, i, _ = model_with("UltralyticsCBAM")
    randomize_(model.model[i], seed=3)
    path = tmp_path / "cbam.pt"
    save_checkpoint(model, path)
    from ultralytics import YOLO

    yolo = YOLO(str(path))
    onnx = yolo.export(format="onnx", imgsz=64, simplify=False)
    net = yolo.model.float().eval()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = net(x)[0].numpy()
    got = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"]).run(None, {"images": x.numpy()})[0]
    assert rel(got, expected) < 1e-4
