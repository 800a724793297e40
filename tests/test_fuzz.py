"""Hostile and sloppy model YAML rows for every registered layer (property-based, hypothesis).

Any parse-able row must give either a working model whose layer keeps the channels, or ONE clear error that names
the layer (``model layer i (NAME, args [...]): ...``) — never a hang, a crash deep in torch, or wrong channels.
Sizes need no cap in the strategy: the layers refuse absurd values at construction (CGA window <= 32, key_dim <=
1024; FLA window <= 256, focusing_factor <= 16; SHSA qk_dim <= 1024; kernels <= 31; heads / pdim <= channels), so
the largest model the strategy can build is a few MB.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from conftest import NAMES, run_py

from yolo_attn import LayerArgumentError
from yolo_attn.adapter import build_model
from yolo_attn.layers.registry import REGISTRY

C1 = 32  # channels into the layer under test
INDEX = 2  # its row in the model below

scalars = st.one_of(
    st.integers(min_value=-3, max_value=70),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.sampled_from([0, 1, 2, 3, 4, 5, 7, 8, 11, 16, 20, 23, 32, 64, 1024, 1025, 10**6, 2**63]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([4.0, 7.0, 0.5, -1.0, 1e9]),
    st.booleans(),
    st.none(),
    st.text(max_size=6),
    st.sampled_from(["7", "nc", "23", "-1", "1e9", "None", "[4]", "x", "(4, 16)"]),
)
hostile = st.one_of(st.lists(st.one_of(scalars, st.lists(scalars, max_size=3)), max_size=6), scalars)
SAME = [n for n in NAMES if REGISTRY[n].channels == "same"]  # layers that keep the channels
VALID = {n: REGISTRY[n].default_args(20) for n in SAME}  # per-map defaults, e.g. CGA [4, 16, 7, 5], LSKA [23]


@st.composite
def rows(draw, name: str):
    """(name, args, n) for layer ``name``: a valid prefix of its args (defaults fill the rest), the same with one
    value replaced by anything, or anything at all — so that models that build are drawn as well as errors."""
    kind = draw(st.sampled_from(["valid", "one-off", "one-off", "hostile"]))
    if kind == "hostile":
        args = draw(hostile)
    else:
        args = VALID[name][: draw(st.integers(0, len(VALID[name])))]
        if kind == "one-off" and args:
            args[draw(st.integers(0, len(args) - 1))] = draw(st.one_of(scalars, st.integers(-2, 40)))
    return name, args, draw(st.sampled_from([1, 2]))


def model_dict(name: str, args: list, n: int) -> dict:
    return {
        "nc": 2,
        "backbone": [
            [-1, 1, "Conv", [16, 3, 2]],
            [-1, 1, "Conv", [C1, 3, 2]],
            [-1, n, name, args],
            [-1, 1, "Conv", [C1, 3, 2]],
        ],
        "head": [[[2, 3], 1, "Detect", ["nc"]]],
    }


@pytest.mark.parametrize("name", SAME)
@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_hostile_layer_rows(name, data):
    """Every layer that keeps its channels, fed hostile YAML args: it builds and runs, or is refused naming the row."""
    name, args, n = data.draw(rows(name))
    try:
        model = build_model(model_dict(name, args, n))
    except LayerArgumentError as e:
        assert f"model layer {INDEX} ({name}" in str(e), str(e)
        event(f"{name} refused")
        return
    event(f"{name} built")
    layer = model.model[INDEX]
    blocks = list(layer) if isinstance(layer, torch.nn.Sequential) else [layer]
    assert len(blocks) == n and all(isinstance(b, REGISTRY[name].cls) for b in blocks)
    seen = {}
    layer.register_forward_hook(lambda m, a, o: seen.update(inp=a[0].shape, out=o.shape))
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, 64, 48))
    assert seen["inp"] == seen["out"] == (1, C1, 16, 12), seen


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("LSKA", [9], "model layer 2 (LSKA, args [9]): LSKA: k_size=9 is not supported; choose one of 7, 11, 23, 35, "
                      "41, 53."),
        ("CGA", [3], "model layer 2 (CGA, args [3]): CGA: input channels c1=32 are not divisible by num_heads=3"),
        ("CGA", [4, 16, 33], "model layer 2 (CGA, args [4, 16, 33]): CGA: window must be between 1 and 32, got 33."),
        ("FLA", [8, 20.0], "model layer 2 (FLA, args [8, 20.0]): FLA: window must be an integer, got 20.0 (float)."),
        ("SHSA", [16, 64], "model layer 2 (SHSA, args [16, 64]): SHSA: pdim=64 exceeds the input channels c1=32"),
        ("SHSA", [16, 8, 1], "model layer 2 (SHSA, args [16, 8, 1]): SHSA takes at most 2 YAML args (qk_dim, pdim;"),
        ("FLA", [True], "model layer 2 (FLA, args [True]): FLA: num_heads must be an integer, got True (bool)."),
        ("CGA", ["a b"], "model layer 2 (CGA, args ['a b']): argument 'a b' is neither a number nor a name; write"),
        ("LSKA", 23, "model layer 2 (LSKA, args 23): the args must be a list, e.g. [-1, 1, LSKA, []]."),
    ],
)
def test_argument_errors_read_as_documented(name, args, message):
    with pytest.raises(LayerArgumentError) as info:
        build_model(model_dict(name, args, 1))
    assert str(info.value).startswith(message), str(info.value)


DISABLED = """
from ultralytics import YOLO
try:
    YOLO({cfg!r})
except Exception as e:
    print("ERROR", type(e).__name__, repr(e))
"""


def test_plugin_disabled_gives_ultralytics_keyerror(tmp_path):
    """``YOLO_ATTN_AUTOLOAD=0`` and no ``import yolo_attn``: Ultralytics' own bare KeyError with the layer name."""
    from yolo_attn.configs import dump

    cfg = tmp_path / "yolov8n-lska.yaml"
    cfg.write_text(dump(model_dict("LSKA", [23], 1)))
    out = run_py(DISABLED.format(cfg=str(cfg)), env={"YOLO_ATTN_AUTOLOAD": "0"}).stdout
    assert out.strip().splitlines()[-1] == "ERROR KeyError KeyError('LSKA')", out[-2000:]


def test_misspelt_layer_name_names_the_row():
    with pytest.raises(KeyError) as info:
        build_model(model_dict("LKSA", [23], 1))
    assert str(info.value) == (
        "model layer 2 names 'LKSA', which is neither an Ultralytics module nor a registered layer "
        f"(registered: {', '.join(REGISTRY)}). Did you mean LSKA? If 'LKSA' is your own module, register it with "
        "@yolo_attn.register_module and make its module importable where the model is built: list it under "
        "'imports:' in the model YAML, in YOLO_ATTN_IMPORTS, or as a 'yolo_attn.modules' entry point."
    )
