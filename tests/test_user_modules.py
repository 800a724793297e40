"""The user's own modules through the public API: ``yolo_attn.register_module``, discovery by ``imports:``,
``YOLO_ATTN_IMPORTS`` and entry points, and a fifth layer that gets every feature of the shipped four from one file.

The user package is written to a temporary directory (``acme_blocks``): ``fifth.py`` is a whole new attention layer
declared in one file (channels kept, ConvBN inside, an alias, per-map defaults); ``blocks.py`` a C2f-like block with
``channels="out", repeats=True``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from ultralytics.nn import tasks

import yolo_attn
from conftest import ROOT, bin_path, ddp_child_code, n_params, run_py
from yolo_attn.adapter import build_model
from yolo_attn.layers.registry import REGISTRY, unregister

FIFTH = '''
"""A fifth layer: a residual bottleneck ``x + W2 relu(W1 x)``, declared in one file."""
import torch
from torch import nn

import yolo_attn
from yolo_attn.layers.conv_bn import ConvBN


@yolo_attn.register_module(aliases=("FifthBlock",), defaults=lambda grid: [4])
class Fifth(nn.Module):
    def __init__(self, c1: int, r: int = 2):
        super().__init__()
        self.c1, self.r = c1, r
        self.fc = ConvBN(c1, max(c1 // r, 1))
        self.out = ConvBN(max(c1 // r, 1), c1, 3, p=1)

    def extra_repr(self) -> str:
        return f"c1={self.c1}, r={self.r}"

    def forward(self, x):
        return x + self.out(torch.relu(self.fc(x)))  # residual bottleneck: scale-robust, so every test applies
'''

BLOCKS = '''
"""A C2f-like block: output channels from the YAML, the row's repeat count as an argument."""
import torch
from torch import nn

import yolo_attn


@yolo_attn.register_module(channels="out", repeats=True)
class AcmeC2(nn.Module):
    def __init__(self, c1: int, c2: int, n: int = 1, k: int = 3):
        super().__init__()
        self.c1, self.c2, self.n = c1, c2, n
        self.cv1 = nn.Conv2d(c1, c2, 1)
        self.m = nn.Sequential(*(nn.Conv2d(c2, c2, k, padding=k // 2) for _ in range(n)))

    def forward(self, x):
        y = self.cv1(x)
        return y + self.m(y)
'''


@pytest.fixture(scope="module")
def pkgroot(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("userpkg")
    pkg = root / "acme_blocks"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "fifth.py").write_text(FIFTH)
    (pkg / "blocks.py").write_text(BLOCKS)
    return root


@pytest.fixture
def on_path(pkgroot, monkeypatch):
    monkeypatch.syspath_prepend(str(pkgroot))
    yield pkgroot
    for name in ("AcmeC2", "Fifth"):
        if name in REGISTRY:
            unregister(name)
    for mod in [m for m in sys.modules if m.startswith("acme_blocks")]:
        del sys.modules[mod]


def user_env(pkgroot: Path, **extra) -> dict:
    path = os.pathsep.join([str(pkgroot), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {"PYTHONPATH": path, **extra}


# ----------------------------------------------------------------------------------------------------------------------
# the decorator
# ----------------------------------------------------------------------------------------------------------------------
def test_register_module_bare_and_with_options():
    @yolo_attn.register_module
    class BareGate(torch.nn.Module):
        def __init__(self, c1: int, k: int = 3):
            super().__init__()

    @yolo_attn.register_module(name="OutBlock", channels="out", repeats=True, aliases=("OutBlockAlias",))
    class Whatever(torch.nn.Module):
        def __init__(self, c1: int, c2: int, n: int = 1, e: float = 0.5):
            super().__init__()

    try:
        assert BareGate.__name__ == "BareGate" and Whatever.__name__ == "Whatever"  # classes returned unchanged
        bare, out = REGISTRY["BareGate"], REGISTRY["OutBlock"]
        assert (bare.channels, bare.repeats, bare.args) == ("same", False, ("k",))
        assert (out.channels, out.repeats, out.args, out.names) == ("out", True, ("e",), ("OutBlock", "OutBlockAlias"))
        assert "BareGate" in yolo_attn.registered() and tasks.OutBlockAlias._yolo_attn_spec is out
    finally:
        unregister("BareGate")
        unregister("OutBlock")


def test_register_module_refuses_what_cannot_work():
    with pytest.raises(TypeError, match="is not an nn.Module subclass"):
        yolo_attn.register_module(int)
    with pytest.raises(ValueError, match=r"channels must be one of \('same', 'out'\), got 'in'"):
        yolo_attn.register_module(torch.nn.Identity, name="X1", channels="in")

    class NoC2(torch.nn.Module):
        def __init__(self, c1):
            super().__init__()

    with pytest.raises(TypeError, match=r"must take \(c1, c2, n, \.\.\.\) first for channels='out', repeats=True"):
        yolo_attn.register_module(NoC2, channels="out", repeats=True)
    with pytest.raises(ValueError, match="'CGA' is already registered by yolo_attn.layers.cga.CGA"):
        yolo_attn.register_module(NoC2, name="CGA")
    with pytest.raises(ValueError, match="must be a Python identifier"):
        yolo_attn.register_module(NoC2, name="my layer")


def test_never_shadows_an_ultralytics_name():
    class MyC2f(torch.nn.Module):
        def __init__(self, c1: int):
            super().__init__()

    stock = tasks.C2f
    try:
        with pytest.warns(RuntimeWarning, match="Ultralytics already defines 'C2f'; keeping Ultralytics' version"):
            yolo_attn.register_module(MyC2f, name="C2f")
        assert tasks.C2f is stock and "C2f" not in yolo_attn.registered()
    finally:
        unregister("C2f")


# ----------------------------------------------------------------------------------------------------------------------
# channels="out", repeats=True, imports:
# ----------------------------------------------------------------------------------------------------------------------
def acme_model(imports=("acme_blocks.blocks",)) -> dict:
    return {
        "nc": 2,
        "imports": list(imports),
        "scales": {"n": [0.34, 0.25, 1024], "s": [0.67, 0.5, 1024]},
        "backbone": [
            [-1, 1, "Conv", [64, 3, 2]],  # 0
            [-1, 1, "Conv", [128, 3, 2]],  # 1
            [-1, 6, "AcmeC2", [128, 5]],  # 2: c2 = 128 scaled, n = 6 depth-scaled, k = 5
            [-1, 1, "Conv", [256, 3, 2]],  # 3
            [1, 1, "AcmeC2", [64]],  # 4: skip input (row 1)
            [-1, 2, "AcmeC2", [96]],  # 5: repeated
        ],
        "head": [[[2, 5, 3], 1, "Detect", ["nc"]]],
    }


@pytest.mark.parametrize("scale,width,depth", [("n", 0.25, 0.34), ("s", 0.5, 0.67)])
def test_out_channels_and_repeats_at_each_scale(on_path, scale, width, depth):
    model = build_model({**acme_model(), "scale": scale})  # imports: registers AcmeC2 before the model is parsed
    c = lambda v: int(tasks.make_divisible(v * width, 8))  # noqa: E731 - Ultralytics' channel rule
    m2, m3, m4, m5 = (model.model[k] for k in (2, 3, 4, 5))
    assert type(m2).__name__ == "AcmeC2" and not isinstance(m2, torch.nn.Sequential)  # built once
    assert (m2.c1, m2.c2, m2.n, len(m2.m), m2.m[0].kernel_size) == (c(128), c(128), round(6 * depth), round(6 * depth),
                                                                    (5, 5))
    assert m3.conv.in_channels == c(128)  # the next layer reads AcmeC2's output channels
    assert (m4.c1, m4.c2, m4.n) == (c(128), c(64), 1)  # c1 of the skip input, not of the previous row
    assert (m5.c1, m5.c2, m5.n) == (c(64), c(96), max(round(2 * depth), 1))
    assert model.model[-1].cv2[1][0].conv.in_channels == c(96)
    assert m2.yolo_attn_args == {"c1": c(128), "c2": c(128), "n": round(6 * depth), "k": 5}
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, 64, 96))


def test_imports_key_that_fails_names_the_module():
    with pytest.raises(ImportError, match="'imports:' lists 'acme_nowhere.blocks', which is not installed and not "
                       "found in .* Put acme_nowhere.py next to the model YAML or in the working directory"):
        build_model({**acme_model(imports=["acme_nowhere.blocks"]), "scale": "n"})


# ----------------------------------------------------------------------------------------------------------------------
# the rows users write: channel count first, official names, typos
# ----------------------------------------------------------------------------------------------------------------------
def after_sppf(name: str, args: list, scale: str) -> torch.nn.Module:
    """yolov8 at ``scale`` with the row ``[-1, 1, name, args]`` after SPPF; returns the built layer."""
    from yolo_attn.configs import find_after_sppf, insert_rows, load_base

    d = load_base("yolov8.yaml")
    p = find_after_sppf(d)
    d = insert_rows(d, name, p, args)
    return build_model(d, scale=scale).model[p + 1]


C1 = {"n": 256, "s": 512}  # yolov8's SPPF output channels


@pytest.mark.parametrize("scale", ["n", "s"])
@pytest.mark.parametrize("name,args,expected", [
    ("CGA", [256], "CGA(c1={c1}, num_heads=4, key_dim=16, window=7, kernel=5)"),  # tutorial row, written at n
    ("CGA", [1024, 8], "CGA(c1={c1}, num_heads=8, key_dim=16, window=7, kernel=5)"),  # nominal count
    ("SHSA", [1024], "SHSA(c1={c1}, qk_dim=16, pdim={p})"),
    ("FLA", [256], "FLA(c1={c1}, num_heads=8, window=20, focusing_factor=3, kernel_size=5, fixed=False)"),
    ("LSKA", [256, 23], "LSKA(c1={c1}, k_size=23)"),
    ("LSKA", [1024], "LSKA(c1={c1}, k_size=7)"),
    ("SHSA", [512], "SHSA(c1={c1}, qk_dim=16, pdim={p})"),  # SPPF's channels at scale s, built at n too
    ("FocusedLinearAttention", [256], "FLA(c1={c1}, num_heads=8, window=20, focusing_factor=3, kernel_size=5, "
                                      "fixed=False)"),
    ("FocusedLinearAttention", [256, 20, 4], "FLA(c1={c1}, num_heads=4, window=20, focusing_factor=3, "
                                             "kernel_size=5, fixed=False)"),
    ("CascadedGroupAttention", [256, 16, 4, 4, 7, [5, 5, 5, 5]], "CGA(c1={c1}, num_heads=4, key_dim=16, window=7, "
                                                                 "kernel=5)"),
    ("LocalWindowAttention", [256, 16, 8], "CGA(c1={c1}, num_heads=8, key_dim=16, window=7, kernel=5)"),
    ("SingleHeadSelfAttention", [256, 16, 64], "SHSA(c1={c1}, qk_dim=16, pdim=64)"),
])
def test_tutorial_and_channel_first_rows_build_the_intended_layer(name, args, expected, scale):
    layer = after_sppf(name, args, scale)
    c1 = C1[scale]
    assert f"{type(layer).__name__}({layer.extra_repr()})" == expected.format(c1=c1, p=c1 // 4)
    same = yolo_attn.create_layer(type(layer).__name__, c1, **{k: v for k, v in layer.yolo_attn_args.items()
                                                               if k != "c1"})
    assert n_params(layer) == n_params(same)


@pytest.mark.parametrize("name,args,pattern", [
    ("CGA", [128], r"model layer 10 \(CGA, args \[128\]\): num_heads=128 gives heads of 2 channels \(fewer than 4\) "
                   r"for input channels c1=256; if 128 is a channel count, drop it"),
    ("SHSA", [300], r"qk_dim=300 is wider than half the input channels \(c1=256; SHViT uses 16\) for input channels "
                    r"c1=256; if 300 is a channel count, drop it"),
    ("FLA", [100], r"FLA: input channels c1=256 are not divisible by num_heads=100"),
    ("FocusedLinearAttention", [256, 20, 8, False], r"FocusedLinearAttention is FLA here, and qkv_bias=False: FLA "
                                                    r"always has a qkv bias"),
    ("FocusedLinearAttention", [256, [20, 10]], r"window_size=\[20, 10\]: FLA's positional-encoding grid is square"),
    ("CascadedGroupAttention", [256, 16, 4, 2], r"attn_ratio=2: CGA sets each head's value channels to c1 / "
                                                r"num_heads"),
    ("LocalWindowAttention", [256, 16, 4, 4, 14, 7, [3, 5, 5, 5]], r"kernels=\[3, 5, 5, 5\]: CGA uses one query "
                                                                   r"kernel for every head"),
])
def test_implausible_or_unhonourable_rows_are_refused_with_the_fix(name, args, pattern):
    with pytest.raises(ValueError, match=pattern):
        after_sppf(name, args, "n")


def test_dropped_channel_count_is_logged_once_naming_the_layer(caplog):
    caplog.set_level("INFO")
    after_sppf("CGA", [256], "n")
    lines = [r.getMessage() for r in caplog.records if "yolo_attn: model layer 10" in r.getMessage()]
    assert lines == ["yolo_attn: model layer 10: CGA: the first argument 256 is the channel count; dropped (input "
                     "channels c1=256 are filled in), building CGA(c1=256)"]


def test_typo_gets_a_suggestion():
    with pytest.raises(KeyError, match="Did you mean FocusedLinearAttention"):
        after_sppf("FocusedLinearAtention", [], "n")


# ----------------------------------------------------------------------------------------------------------------------
# a fifth layer in one file gets every feature
# ----------------------------------------------------------------------------------------------------------------------
FEATURES = r'''
import json, sys, torch, yaml, numpy as np
from pathlib import Path
import yolo_attn
from ultralytics import YOLO
from yolo_attn.configs import insert, dump
from yolo_attn.transfer import transfer
from yolo_attn.layers.conv_bn import ConvBN
work = Path(sys.argv[1])
out = {"registered": "Fifth" in yolo_attn.registered()}
cfg = work / "yolov8n-fifth.yaml"
cfg.write_text(dump(insert("yolov8.yaml", "Fifth")))  # after SPPF, per-map defaults from the declaration
d = yaml.safe_load(cfg.read_text())
out["row"] = [r for r in d["backbone"] + d["head"] if r[2] == "Fifth"]
model = YOLO(str(cfg))
layer = model.model.model[10]
out["layer"] = f"{type(layer).__name__}({layer.extra_repr()})"
alias = {**d, "head": [[f, n, "FifthBlock" if m == "Fifth" else m, a] for f, n, m, a in d["head"]]}
out["alias"] = type(yolo_attn.adapter.build_model(alias, scale="n").model[10]).__name__
# pretrained transfer from the stock model: every stock tensor lands
stock = YOLO("yolov8n.yaml")
report = transfer(model.model, stock.model)
out["transfer"] = [report.n_transferred, report.n_checkpoint]
# save, then load in a fresh process with restricted loading
torch.manual_seed(0)
for p in model.model.parameters():
    p.data.add_(0.05 * torch.randn_like(p))
model.model.eval()
x = torch.rand(1, 3, 96, 128)
with torch.no_grad():
    ref = model.model(x)[0]
model.save(str(work / "fifth.pt"))
torch.save({"x": x, "y": ref}, work / "ref.pt")
# fuse: the ConvBN blocks inside Fifth are folded, outputs unchanged
fused = YOLO(str(work / "fifth.pt")).model.float().eval().fuse()
with torch.no_grad():
    y = fused(x)[0]
out["fuse"] = [sum(isinstance(m, ConvBN) for m in fused.modules()), float((y - ref).abs().max() / ref.abs().max())]
# export to ONNX and run it
onnx = YOLO(str(work / "fifth.pt")).export(format="onnx", imgsz=[96, 128], simplify=False)
import onnxruntime as ort
sess = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
o = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
out["onnx"] = float(np.abs(o - ref.numpy()).max() / np.abs(ref.numpy()).max())
print(json.dumps(out))
'''

LOAD = r'''
import json, sys, torch
from ultralytics import YOLO
work = sys.argv[1]
rec = torch.load(work + "/ref.pt", weights_only=True)
model = YOLO(work + "/fifth.pt").model.float().eval()
with torch.no_grad():
    y = model(rec["x"])[0]
print(json.dumps({"err": float((y - rec["y"]).abs().max() / rec["y"].abs().max()),
                  "layer": type(model.model[10]).__name__}))
'''


@pytest.mark.slow
def test_fifth_layer_in_one_file_gets_every_feature(pkgroot, tmp_path, shapes_data):
    env = user_env(pkgroot, YOLO_ATTN_IMPORTS="acme_blocks.fifth")
    # YAML name, per-map defaults, alias, transfer, fuse, ONNX export
    proc = run_py(f"import sys; sys.argv = ['x', {str(tmp_path)!r}]\n" + FEATURES, env=env, cwd=tmp_path)
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["registered"] and got["row"] == [[-1, 1, "Fifth", [4]]]
    assert got["layer"] == "Fifth(c1=256, r=4)" and got["alias"] == "Fifth"
    assert got["transfer"][0] == got["transfer"][1]  # every stock tensor landed
    assert got["fuse"][0] == 0 and got["fuse"][1] < 1e-4
    assert got["onnx"] < 1e-4
    # checkpoint in a fresh process: plain, and restricted loading with the module found through YOLO_ATTN_IMPORTS
    for safe in ("0", "1"):
        res = json.loads(run_py(f"import sys; sys.argv = ['x', {str(tmp_path)!r}]\n" + LOAD,
                                env={**env, "ULTRALYTICS_SAFE_LOAD": safe}).stdout.strip().splitlines()[-1])
        assert res["layer"] == "Fifth" and res["err"] < 1e-4, (safe, res)  # as the golden checkpoints: fp32 across processes
    # the tools: layers, insert, check
    layers = subprocess.run([bin_path("yolo-attn"), "layers"], capture_output=True, text=True, timeout=300,
                            env={**os.environ, **env})
    assert re.search(r"Fifth +\[r=2\]  registered  \(acme_blocks\.fifth\.Fifth\)\n +aliases \(same arguments\): "
                     r"FifthBlock", layers.stdout), layers.stdout
    out_cfg = tmp_path / "inserted.yaml"
    ins = subprocess.run([bin_path("yolo-attn"), "insert", "yolov8.yaml", "--layer", "Fifth", "--at", "neck", "-o",
                          str(out_cfg)], capture_output=True, text=True, timeout=600, env={**os.environ, **env})
    assert ins.returncode == 0, ins.stderr[-3000:]
    rows = [r for r in yaml.safe_load(out_cfg.read_text())["head"] if r[2] == "Fifth"]
    assert rows == [[-1, 1, "Fifth", [4]]] * 3
    chk = subprocess.run([bin_path("yolo-attn"), "check", str(out_cfg), "--scales", "n", "--imgsz", "128", "--rect",
                          "96x128"], capture_output=True, text=True, timeout=600, env={**os.environ, **env})
    assert chk.returncode == 0, chk.stdout[-3000:] + chk.stderr[-3000:]
    assert len(re.findall(r"layer \d+: Fifth\(c1=\d+, r=4\)", chk.stdout)) == 3, chk.stdout
    # the generic per-layer tests (fuzzed YAML rows, half precision, layer behaviour) pick the fifth layer up
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--runslow", "-k",
                            "Fifth", "tests/test_fuzz.py", "tests/test_precision.py", "tests/test_layers.py"],
                           capture_output=True, text=True, timeout=900, cwd=ROOT, env={**os.environ, **env})
    summary = tests.stdout.strip().splitlines()[-1]
    assert tests.returncode == 0 and re.search(r"(\d+) passed", summary), tests.stdout[-3000:]
    assert int(re.search(r"(\d+) passed", summary).group(1)) >= 10, summary


# ----------------------------------------------------------------------------------------------------------------------
# a user's module end to end: plain ``yolo train`` through imports:, safe loading, entry points
# ----------------------------------------------------------------------------------------------------------------------
WRITE_FIFTH_CFG = r"""
import sys
import yolo_attn
from yolo_attn.configs import dump, insert
open(sys.argv[1], "w").write(dump(insert("yolov8.yaml", "Fifth", "neck")))
"""


@pytest.mark.slow
def test_fifth_layer_in_a_ddp_child(pkgroot, tmp_path, shapes_data):
    """The script Ultralytics' multi-GPU launcher starts knows nothing of the plugin or the user's module; the child
    finds the layer through YOLO_ATTN_IMPORTS and trains."""
    env = user_env(pkgroot, YOLO_ATTN_IMPORTS="acme_blocks.fifth", YOLO_CONFIG_DIR=str(tmp_path / "ucfg"))
    cfg = tmp_path / "yolov8n-fifth-neck.yaml"
    run_py(f"import sys; sys.argv = ['x', {str(cfg)!r}]\n" + WRITE_FIFTH_CFG, env=env)
    assert yaml.safe_load(cfg.read_text())["head"].count([-1, 1, "Fifth", [4]]) == 3
    script = run_py(ddp_child_code(cfg, shapes_data, tmp_path / "runs"),
                    env=env).stdout.strip().splitlines()[-1]
    assert "acme_blocks" not in Path(script).read_text() and "yolo_attn" not in Path(script).read_text()
    child = subprocess.run([sys.executable, script], capture_output=True, text=True, timeout=600,
                           env={**os.environ, **env}, cwd=tmp_path)
    assert child.returncode == 0, (child.stdout + child.stderr)[-5000:]
    last = list((tmp_path / "runs").rglob("last.pt"))
    assert last
    probe = "import sys, torch; m = torch.load(sys.argv[1], weights_only=False)['model']; " \
            "print(sum(type(x).__name__ == 'Fifth' for x in m.modules()))"
    assert run_py(probe.replace("sys.argv[1]", repr(str(last[0]))), env=env).stdout.strip().splitlines()[-1] == "3"


@pytest.fixture(scope="module")
def acme_best(pkgroot, tmp_path_factory, shapes_data) -> Path:
    work = tmp_path_factory.mktemp("acme_train")
    cfg = work / "acme-n.yaml"
    cfg.write_text(yaml.safe_dump({**acme_model(), "scale": "n"}, default_flow_style=None))
    cmd = [bin_path("yolo"), "train", f"model={cfg}", f"data={shapes_data}", "imgsz=64", "epochs=1", "batch=8",
           "device=cpu", "workers=0", "plots=False", f"project={work / 'runs'}", "name=t", "exist_ok=True"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=work,
                          env={**os.environ, **user_env(pkgroot)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    best = work / "runs" / "t" / "weights" / "best.pt"
    assert best.is_file()
    return best


PREDICT = r'''
import json, sys, torch
from ultralytics import YOLO
model = YOLO(sys.argv[1])
block = model.model.model[2]
res = model.predict(torch.rand(1, 3, 64, 64), verbose=False)
print(json.dumps({"type": type(block).__name__, "n": block.n, "c2": block.c2, "ok": len(res) == 1}))
'''


@pytest.mark.slow
def test_user_module_trains_with_plain_yolo_and_loads_in_a_fresh_process(pkgroot, acme_best):
    code = f"import sys; sys.argv = ['x', {str(acme_best)!r}]\n" + PREDICT
    plain = json.loads(run_py(code, env=user_env(pkgroot)).stdout.strip().splitlines()[-1])
    assert plain == {"type": "AcmeC2", "n": 2, "c2": 32, "ok": True}
    safe = run_py(code, env=user_env(pkgroot, ULTRALYTICS_SAFE_LOAD="1", YOLO_ATTN_IMPORTS="acme_blocks.blocks"))
    assert json.loads(safe.stdout.strip().splitlines()[-1]) == plain
    refused = run_py(code, env=user_env(pkgroot, ULTRALYTICS_SAFE_LOAD="1"), check=False)
    assert refused.returncode != 0 and "acme_blocks.blocks.AcmeC2" in refused.stdout + refused.stderr


@pytest.mark.slow
def test_entry_point_of_an_installed_package(pkgroot, acme_best, tmp_path):
    """A tiny distribution declaring a ``yolo_attn.modules`` entry point, built and installed offline."""
    src = tmp_path / "src"
    (src / "acme_blocks").mkdir(parents=True)
    for f in (pkgroot / "acme_blocks").glob("*.py"):
        (src / "acme_blocks" / f.name).write_text(f.read_text())
    (src / "pyproject.toml").write_text(textwrap.dedent('''
        [build-system]
        requires = ["hatchling"]
        build-backend = "hatchling.build"
        [project]
        name = "acme-blocks"
        version = "0.0.1"
        [project.entry-points."yolo_attn.modules"]
        acme = "acme_blocks.blocks"
        [tool.hatch.build.targets.wheel]
        packages = ["acme_blocks"]
    '''))
    site = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--no-build-isolation",
           "--target", str(site), str(src)]
    proc = subprocess.run(pip, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list(site.glob("acme_blocks-0.0.1.dist-info/entry_points.txt"))
    code = f"import sys; sys.argv = ['x', {str(acme_best)!r}]\n" + PREDICT
    env = {"PYTHONPATH": str(site), "ULTRALYTICS_SAFE_LOAD": "1"}  # no YOLO_ATTN_IMPORTS, not the source tree
    got = json.loads(run_py(code, env=env).stdout.strip().splitlines()[-1])
    assert got == {"type": "AcmeC2", "n": 2, "c2": 32, "ok": True}


# ----------------------------------------------------------------------------------------------------------------------
# the edges a user meets: imports: files beside the YAML or in the working directory, checkpoints whose module is
# missing or (safe loading) not imported, and the package's errors under the plain ``yolo`` command
# ----------------------------------------------------------------------------------------------------------------------
GATE = '''
import torch
from torch import nn
import yolo_attn


@yolo_attn.register_module
class EdgeGate(nn.Module):
    def __init__(self, c1: int):
        super().__init__()
        self.fc = nn.Conv2d(c1, c1, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.fc(x))
'''


def gate_yaml(layer: str = "EdgeGate", imports=("edge_gate",), args=()) -> str:
    d = {"nc": 2, **({"imports": list(imports)} if imports else {}),
         "backbone": [[-1, 1, "Conv", [16, 3, 2]], [-1, 1, layer, list(args)], [-1, 1, "Conv", [32, 3, 2]]],
         "head": [[[1, 2], 1, "Detect", ["nc"]]]}
    return yaml.safe_dump(d, default_flow_style=None)


def yolo_export(cfg: Path, cwd: Path, **env) -> subprocess.CompletedProcess:
    """The plain ``yolo`` console command (no working directory on sys.path) building ``cfg``, cheaply."""
    cmd = [bin_path("yolo"), "export", f"model={cfg}", "format=torchscript", "imgsz=64"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=cwd,
                          env={**os.environ, "YOLO_OFFLINE": "1", **env})


@pytest.fixture(scope="module")
def gate_dirs(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("edges")
    dirs = {k: root / k for k in ("cfg", "yamls", "cwd", "elsewhere")}
    for p in dirs.values():
        p.mkdir()
    (dirs["cfg"] / "edge_gate.py").write_text(GATE)  # the module next to the YAML
    (dirs["cfg"] / "gate.yaml").write_text(gate_yaml())
    (dirs["cwd"] / "edge_gate.py").write_text(GATE)  # the module in the working directory, the YAML elsewhere
    (dirs["yamls"] / "gate.yaml").write_text(gate_yaml())
    return dirs


def test_yolo_command_finds_imports_next_to_the_yaml_and_in_the_working_directory(gate_dirs):
    beside = yolo_export(gate_dirs["cfg"] / "gate.yaml", cwd=gate_dirs["elsewhere"])
    assert beside.returncode == 0, beside.stderr[-3000:]
    assert f"'imports: edge_gate' found in {gate_dirs['cfg'].resolve()}" in beside.stdout + beside.stderr
    in_cwd = yolo_export(gate_dirs["yamls"] / "gate.yaml", cwd=gate_dirs["cwd"])
    assert in_cwd.returncode == 0, in_cwd.stderr[-3000:]
    assert f"'imports: edge_gate' found in {gate_dirs['cwd'].resolve()}" in in_cwd.stdout + in_cwd.stderr
    nowhere = yolo_export(gate_dirs["yamls"] / "gate.yaml", cwd=gate_dirs["elsewhere"])
    err = nowhere.stderr
    assert nowhere.returncode == 1 and "Traceback" not in err
    assert ("DeclaredImportError: the model YAML's 'imports:' lists 'edge_gate', which is not installed and not "
            f"found in {gate_dirs['yamls'].resolve()} or {gate_dirs['elsewhere'].resolve()}") in err
    assert "Put edge_gate.py next to the model YAML or in the working directory" in err


def test_yolo_command_shows_the_package_errors_first_and_the_traceback_on_request(gate_dirs):
    bad = gate_dirs["yamls"] / "typo.yaml"
    bad.write_text(gate_yaml("LKSA", imports=()))
    short = yolo_export(bad, cwd=gate_dirs["elsewhere"])
    assert short.returncode == 1 and "Traceback" not in short.stderr
    lines = [line for line in short.stderr.splitlines() if line.strip() and "Warning" not in line
             and "warnings.warn" not in line]
    assert lines[0].startswith("UnknownLayerError: model layer 1 names 'LKSA'") and "Did you mean LSKA?" in lines[0]
    assert lines[1] == "(yolo_attn: set YOLO_ATTN_TRACEBACK=1 for the full traceback)" and len(lines) == 2
    full = yolo_export(bad, cwd=gate_dirs["elsewhere"], YOLO_ATTN_TRACEBACK="1")
    assert full.returncode == 1 and "Traceback (most recent call last)" in full.stderr
    assert full.stderr.strip().splitlines()[0].startswith("UnknownLayerError: model layer 1 names 'LKSA'")
    bad.write_text(gate_yaml("FLA", imports=(), args=[6]))  # a bad argument
    arg = yolo_export(bad, cwd=gate_dirs["elsewhere"])
    assert arg.returncode == 1 and "Traceback" not in arg.stderr, arg.stderr[-3000:]
    assert "LayerArgumentError: model layer 1 (FLA, args [6]): " in arg.stderr and "num_heads=6" in arg.stderr


SAVE_GATE = r'''
import sys
from ultralytics import YOLO
from yolo_attn.adapter import save_checkpoint
save_checkpoint(YOLO(sys.argv[1]).model, sys.argv[2])
'''
LOAD_GATE = "import sys\nfrom ultralytics import YOLO\nprint(type(YOLO(sys.argv[1]).model.model[1]).__name__)\n"


def test_checkpoint_whose_module_is_missing_or_not_imported_names_it_and_the_fix(gate_dirs, tmp_path):
    pt = tmp_path / "gate.pt"
    run_py(f"import sys; sys.argv = ['x', {str(gate_dirs['cfg'] / 'gate.yaml')!r}, {str(pt)!r}]\n" + SAVE_GATE,
           cwd=gate_dirs["elsewhere"])
    code = f"import sys; sys.argv = ['x', {str(pt)!r}]\n" + LOAD_GATE
    env = {"YOLO_OFFLINE": "1", "PYTHONPATH": ""}
    missing = run_py(code, env=env, cwd=gate_dirs["elsewhere"], check=False)
    out = missing.stdout + missing.stderr
    assert missing.returncode != 0 and "AutoInstall" not in out
    assert (f"yolo_attn: {pt} holds edge_gate.EdgeGate from the module 'edge_gate', which cannot be imported here "
            "(no module named 'edge_gate')") in out and "PYTHONPATH" in out
    beside = {**env, "PYTHONPATH": str(gate_dirs["cfg"])}
    assert run_py(code, env=beside, cwd=gate_dirs["elsewhere"]).stdout.split()[-1] == "EdgeGate"  # importable: loads
    safe = run_py(code, env={**beside, "ULTRALYTICS_SAFE_LOAD": "1"}, cwd=gate_dirs["elsewhere"], check=False)
    out = safe.stdout + safe.stderr
    assert safe.returncode != 0 and "references types outside" not in out
    assert "from the module 'edge_gate', which is not imported. Safe loading (ULTRALYTICS_SAFE_LOAD=1) never" in out
    assert f"YOLO_ATTN_IMPORTS=edge_gate yolo predict model={pt}" in out
    fixed = run_py(code, env={**beside, "ULTRALYTICS_SAFE_LOAD": "1", "YOLO_ATTN_IMPORTS": "edge_gate"},
                   cwd=gate_dirs["elsewhere"])
    assert fixed.stdout.split()[-1] == "EdgeGate"
