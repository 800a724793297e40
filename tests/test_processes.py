"""End to end in fresh processes: the start-up hook, the plain ``yolo`` command, checkpoints, DDP children and
older Ultralytics releases. Nothing here imports yolo_attn in the child unless the test says so."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import (NAMES, OLD_ULTRALYTICS, all_layers_after, bin_path, ddp_child_code, run_py,
                      ultralytics_version_path)
from yolo_attn.configs import dump


def write_cfg(path: Path, base: str = "yolov8.yaml") -> Path:
    """All four layers stacked after the P5 context block of ``base``, as a YAML file."""
    path.write_text(dump(all_layers_after(base)))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shapes_data):
    """A real ``yolo train`` run (plain command, nothing imported by the user): returns its best.pt."""
    work = tmp_path_factory.mktemp("train")
    cfg = write_cfg(work / "yolov8n-attn.yaml")
    cmd = [bin_path("yolo"), "train", f"model={cfg}", f"data={shapes_data}", "imgsz=64", "epochs=1", "batch=8",
           "device=cpu", "workers=0", "plots=False", f"project={work / 'runs'}", "name=t", "exist_ok=True"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=work)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    best = work / "runs" / "t" / "weights" / "best.pt"
    assert best.is_file()
    return best


def test_startup_hook_is_light_and_registers_lazily():
    code = (
        "import sys\n"
        "assert 'torch' not in sys.modules and 'yolo_attn' not in sys.modules, 'heavy import at start-up'\n"
        "assert any(type(f).__name__ == '_ImportHookFinder' for f in sys.meta_path)\n"
        "from ultralytics.nn import tasks\n"
        f"print([n for n in {list(NAMES)!r} if n in vars(tasks)])\n"
        "import yolo_attn_autoload as a\n"
        "a.flush()\n"
        "assert not [n for n in a._hooks if n in sys.modules], 'hooks of imported modules still pending'\n"
    )
    assert run_py(code).stdout.strip().splitlines()[-1] == str(list(NAMES))


def test_autoload_can_be_switched_off_and_explicit_import_still_registers():
    code = "import sys\nfrom ultralytics.nn import tasks\nprint('LSKA' in vars(tasks), 'yolo_attn' in sys.modules)\n"
    assert run_py(code, env={"YOLO_ATTN_AUTOLOAD": "0"}).stdout.split()[-2:] == ["False", "False"]
    code = "import yolo_attn\nfrom ultralytics.nn import tasks\nprint('LSKA' in vars(tasks))\n"
    assert run_py(code, env={"YOLO_ATTN_AUTOLOAD": "0"}).stdout.split()[-1] == "True"


def test_yolo_attn_command_registers_when_the_hook_is_off(tmp_path, shapes_data):
    """Without the hook, plain ``yolo`` cannot parse the config; ``yolo-attn`` registers and passes through."""
    cfg = write_cfg(tmp_path / "yolov8n-attn.yaml")
    env = {**os.environ, "YOLO_ATTN_AUTOLOAD": "0"}
    args = ["val", f"model={cfg}", f"data={shapes_data}", "imgsz=64", "batch=8", "device=cpu", "workers=0",
            "plots=False", f"project={tmp_path}", "name=v"]
    plain = subprocess.run([bin_path("yolo"), *args], capture_output=True, text=True, env=env, timeout=300)
    assert plain.returncode != 0 and "KeyError: 'CGA'" in plain.stdout + plain.stderr
    ours = subprocess.run([bin_path("yolo-attn"), *args], capture_output=True, text=True, env=env, timeout=300)
    assert ours.returncode == 0, ours.stdout[-2000:] + ours.stderr[-3000:]
    assert "mAP50-95" in ours.stdout + ours.stderr
    listing = subprocess.run([bin_path("yolo-attn"), "layers"], capture_output=True, text=True, env=env, timeout=300)
    assert listing.returncode == 0
    assert "LSKA  [k_size=7]  registered" in listing.stdout and "CGA   [num_heads=4" in listing.stdout


@pytest.mark.slow  # uses the `trained` fixture: a real `yolo train`
def test_plain_yolo_train_and_fresh_process_predict(trained, shapes_data):
    images = Path(shapes_data).parent / "images" / "val"
    code = (
        "from ultralytics import YOLO\n"
        f"m = YOLO({str(trained)!r})\n"
        "names = {type(x).__name__ for x in m.model.modules()}\n"
        "assert {'CGA', 'FLA', 'LSKA', 'SHSA'} <= names, names\n"
        f"r = m.predict({str(images)!r}, imgsz=64, verbose=False)\n"
        "print(len(r))\n"
    )
    for safe in ("0", "1"):
        out = run_py(code, env={"ULTRALYTICS_SAFE_LOAD": safe}).stdout.split()
        assert out[-1] == "8", (safe, out)


@pytest.mark.slow  # uses the `trained` fixture: a real `yolo train`
def test_plain_yolo_predict_with_safe_load(trained, shapes_data, tmp_path):
    images = Path(shapes_data).parent / "images" / "val"
    env = {**os.environ, "ULTRALYTICS_SAFE_LOAD": "1"}
    proc = subprocess.run([bin_path("yolo"), "predict", f"model={trained}", f"source={images}", "imgsz=64",
                           f"project={tmp_path}", "name=p"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert len(list((tmp_path / "p").glob("*.jpg"))) == 8


@pytest.mark.slow  # uses the `trained` fixture: a real `yolo train`
def test_checkpoint_without_safe_globals_is_refused_then_accepted(trained):
    """The allow-list matters: restricted loading rejects our classes until registration adds them; then it loads."""
    code = (
        "from ultralytics.nn.tasks import torch_safe_load\n"
        f"path = {str(trained)!r}\n"
        "try:\n"
        "    torch_safe_load(path)\n"
        "    print('LOADED BEFORE REGISTRATION')\n"
        "except Exception as e:\n"
        "    print('REFUSED', type(e).__name__, 'yolo_attn.layers' in f'{e} {e.__cause__}')\n"
        "import yolo_attn\n"
        "ckpt = torch_safe_load(path)[0]\n"
        "net = ckpt.get('ema') or ckpt['model']\n"
        "print('ACCEPTED', sorted({type(m).__name__ for m in net.modules() if type(m).__module__.startswith('yolo_attn')}))\n"
    )
    out = run_py(code, env={"YOLO_ATTN_AUTOLOAD": "0", "ULTRALYTICS_SAFE_LOAD": "1"}).stdout.strip().splitlines()
    refused = next(line for line in out if line.startswith(("REFUSED", "LOADED")))
    assert refused.startswith("REFUSED") and refused.endswith("True"), out[-20:]
    assert out[-1].startswith("ACCEPTED") and all(n in out[-1] for n in ("'CGA'", "'ConvBN'", "'LSKA'", "'SHSA'")), out
    from yolo_attn.adapter import SAFE_GLOBALS  # what registration allows: exactly the classes checkpoints hold

    names = {c.__name__ for c in SAFE_GLOBALS}
    assert {"CGA", "FLA", "LSKA", "SHSA", "ConvBN", "LocalWindowAttention", "FocusedLinearAttention"} <= names


@pytest.mark.slow  # the DDP child trains one epoch
@pytest.mark.parametrize("version", ["installed", OLD_ULTRALYTICS[-1]])
def test_ddp_child_rebuilds_the_model(version, tmp_path, shapes_data):
    """Run the temp script Ultralytics' multi-GPU launcher would start, in a fresh process (CPU, one worker).

    8.4.140+ cloudpickles trainer + model (the child unpickles our classes); older releases re-parse the YAML in the
    child, where only the start-up hook can register the layers.
    """
    cfg = write_cfg(tmp_path / "yolov8n-attn.yaml")
    env = {"YOLO_CONFIG_DIR": str(tmp_path / "ucfg")}
    if version != "installed":
        env["PYTHONPATH"] = str(ultralytics_version_path(version))
        env["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
    code = ddp_child_code(cfg, shapes_data, tmp_path / "runs")
    script = run_py(code, env=env).stdout.strip().splitlines()[-1]
    assert script.endswith(".py") and Path(script).is_file()
    text = Path(script).read_text()
    assert "yolo_attn" not in text  # the child script itself knows nothing of the plugin
    child = subprocess.run([sys.executable, script], capture_output=True, text=True, timeout=600,
                           env={**os.environ, **env}, cwd=tmp_path)
    out = child.stdout + child.stderr
    assert child.returncode == 0, out[-5000:]
    assert list((tmp_path / "runs").rglob("last.pt")), out[-3000:]
    if version != "installed":  # the re-parse path really depends on the hook
        off = subprocess.run([sys.executable, script], capture_output=True, text=True, timeout=600,
                             env={**os.environ, **env, "YOLO_ATTN_AUTOLOAD": "0"}, cwd=tmp_path)
        assert off.returncode != 0 and "KeyError: 'CGA'" in off.stdout + off.stderr


VERSION_CHECK = """
import json, torch, ultralytics
from ultralytics import YOLO, RTDETR
from ultralytics.nn import tasks
out = {{"version": ultralytics.__version__}}
for cfg, front in (({yolo!r}, YOLO), ({detr!r}, RTDETR)):
    model = front(cfg).model
    rows = model.yaml["backbone"] + model.yaml["head"]
    got = {{}}
    for i, row in enumerate(rows):
        if row[2] in {names!r}:
            m = model.model[i]
            got[i] = [type(m).__name__, type(m).__module__, sum(p.numel() for p in m.parameters())]
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, 160, 224))  # RT-DETR < 8.4 needs >= 300 tokens for its 300 queries
    out[cfg] = got
stock = tasks.DetectionModel("yolov8n.yaml", verbose=False)
out["stock"] = sum(p.numel() for p in stock.parameters())
print(json.dumps(out))
"""


@pytest.mark.parametrize("version", [*OLD_ULTRALYTICS, "installed"])
def test_registration_on_each_ultralytics_release(version, tmp_path):
    import json

    yolo_cfg = write_cfg(tmp_path / "yolov8n-attn.yaml")
    detr_cfg = write_cfg(tmp_path / "rtdetr-l-attn.yaml", base="rtdetr-l.yaml")
    env = {"YOLO_CONFIG_DIR": str(tmp_path / "ucfg")}
    if version != "installed":
        env["PYTHONPATH"] = str(ultralytics_version_path(version))
        env["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
    out = run_py(VERSION_CHECK.format(yolo=str(yolo_cfg), detr=str(detr_cfg), names=NAMES), env=env,
                 cwd=tmp_path).stdout
    res = json.loads(out.strip().splitlines()[-1])
    if version != "installed":
        assert res["version"] == version
    from ultralytics.nn.tasks import DetectionModel

    from yolo_attn import LAYERS

    for cfg, c1 in ((str(yolo_cfg), 256), (str(detr_cfg), 256)):
        got = res[cfg]
        assert [v[0] for v in got.values()] == list(NAMES)  # resolved to our classes, in order
        for name, module, nparams in got.values():
            assert module.startswith("yolo_attn.layers.")
            assert nparams == sum(p.numel() for p in LAYERS[name](c1).parameters()), (cfg, name)
    stock = DetectionModel("yolov8n.yaml", verbose=False)
    assert res["stock"] == sum(p.numel() for p in stock.parameters())  # stock yolov8n untouched on every release
