"""Configs by name (``yolo_attn.names``): ``<stock model name>-<layer>[-<placement>].yaml`` resolves in ``YOLO(...)``
/ ``RTDETR(...)`` from the installed Ultralytics' stock YAMLs, with the scale and the task of the stock name; a
checkpoint rebuilds without the resolver; invalid names are refused with what is valid; the shipped names still
resolve to the shipped files; ``yolo-attn insert NAME -o FILE`` writes the same config."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from conftest import BUILTIN, NAMES, bin_path, front, n_params, run_py
from coverage_table import tensors
from yolo_attn.configs import insert, placement_rows, shipped_configs
from yolo_attn.layers.registry import builtin_specs
from yolo_attn.adapter import build_model
from yolo_attn.names import ConfigNameError, parse_name, resolve, stock_configs

# name -> (stock YAML, layer, placement, task) written out by hand: the parse is checked against it
EXAMPLES = {
    "yolo26n-lska.yaml": ("yolo26.yaml", "LSKA", "after-sppf", "detect"),
    "yolo26s-seg-cga-neck.yaml": ("yolo26-seg.yaml", "CGA", "neck", "segment"),
    "yolo11n-pose-shsa.yaml": ("yolo11-pose.yaml", "SHSA", "after-sppf", "pose"),
    "yolo26n-obb-fla-backbone.yaml": ("yolo26-obb.yaml", "FLA", "backbone", "obb"),
    "yolov8n-cls-lska.yaml": ("yolov8-cls.yaml", "LSKA", "after-sppf", "classify"),
    "yolo12n-shsa.yaml": ("yolo12.yaml", "SHSA", "after-sppf", "detect"),
    "yolo11n-cga-neck.yaml": ("yolo11.yaml", "CGA", "neck", "detect"),
    "yolov10n-lska.yaml": ("yolov10n.yaml", "LSKA", "after-sppf", "detect"),
    "yolov9c-shsa-neck.yaml": ("yolov9c.yaml", "SHSA", "neck", "detect"),
    "rtdetr-x-cga-neck.yaml": ("rtdetr-x.yaml", "CGA", "neck", "detect"),
}


def attention_rows(model) -> list[int]:
    return [k for k, m in enumerate(model.model) if type(m).__name__ in NAMES]


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n.startswith(("rtdetr-x", "yolov9c"))
                                  else n for n in EXAMPLES])
def test_example_names_build_and_run(name):
    base, layer, placement, task = EXAMPLES[name]
    parsed = parse_name(name)
    assert (parsed.base, parsed.layer, parsed.placement) == (base, layer, placement)
    model = front(name)(name)
    assert model.task == task
    net = model.model
    rows = placement_rows(stock_configs()[base], placement)
    inserted = attention_rows(net)
    assert [type(net.model[k]).__name__ for k in inserted] == [layer] * len(rows)
    # each layer follows its base row: base row r sits at r + (inserts before it) in the new numbering
    assert inserted == [r + 1 + j for j, r in enumerate(rows)]
    if placement == "after-sppf" and "cls" not in name and "yolo12" not in name:
        assert type(net.model[inserted[0] - 1]).__name__ in ("SPPF", "SPPELAN", "AIFI")
    net.eval()
    with torch.no_grad():
        y = net(torch.rand(1, 3, 64, 96))
    assert tensors(y) and all(torch.isfinite(t).all() for t in tensors(y))


def test_scale_letter_picks_the_scale():
    n, s = (build_model(resolve(f"yolo26{k}-seg-lska.yaml"), scale=k) for k in "ns")
    stock = {k: build_model("yolo26-seg.yaml", scale=k) for k in "ns"}
    for model, k in ((n, "n"), (s, "s")):
        (i,) = attention_rows(model)
        assert n_params(model) == n_params(stock[k]) + n_params(model.model[i])
    assert n_params(n) < n_params(s)
    # and through Ultralytics' own front end, the scale comes from the name
    assert n_params(front("yolo26s-seg-lska.yaml")("yolo26s-seg-lska.yaml").model) == n_params(s)


def test_local_file_wins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    d = insert("yolov8.yaml", "SHSA", at="neck")
    Path("yolov8n-lska.yaml").write_text(yaml.safe_dump(d))
    model = front("yolov8n-lska.yaml")("yolov8n-lska.yaml").model
    assert {type(model.model[k]).__name__ for k in attention_rows(model)} == {"SHSA"}


def test_shipped_names_resolve_to_the_shipped_files():
    from ultralytics.nn.tasks import yaml_model_load

    files = shipped_configs()
    assert len(files) == 7 * len(builtin_specs())  # YOLOv8 and RT-DETR-l at 3 placements, YOLO11 after SPPF
    for name, path in files.items():
        shipped = yaml.safe_load(path.read_text())
        assert resolve(name) == shipped, f"{name}: the generated config differs from the shipped file"
        scaled = name.replace("yolov8-", "yolov8s-").replace("yolo11-", "yolo11s-")
        d = yaml_model_load(scaled)
        assert {k: v for k, v in d.items() if k not in ("scale", "yaml_file")} == shipped
        assert d["scale"] == ("s" if scaled != name else "")


@pytest.mark.parametrize("name, message", [
    ("yolo26n-lksa.yaml", ["'lksa' after yolo26n is not <layer>[-<placement>]", "Layers: cga, fla, lska, shsa",
                           "Placements of yolo26.yaml: (none: after the P5 context block), neck, backbone",
                           "Did you mean yolo26n-lska.yaml?"]),
    ("yolov8n-cls-lska-neck.yaml", ["yolov8-cls.yaml is a classification model, which has no neck",
                                    "Placements of yolov8-cls.yaml: (none: after the P5 context block), backbone.",
                                    "Did you mean yolov8n-cls-lska.yaml?"]),
    ("yolo99n-lska.yaml", ["'yolo99n' is not a stock model of the installed Ultralytics", "yolo26-seg, yolo26-sem",
                           "rtdetr-x"]),
    ("yolo26n-seg-cga-head.yaml", ["'cga-head' after yolo26n-seg", "Did you mean yolo26n-seg-cga.yaml?"]),
])
def test_invalid_names_say_what_is_valid(name, message):
    with pytest.raises(ConfigNameError) as e:
        front(name)(name)
    for part in message:
        assert part in str(e.value)
    assert isinstance(e.value, FileNotFoundError)  # what Ultralytics raises for a missing config


def test_other_names_are_left_to_ultralytics():
    for name in ("yolov8n.yaml", "yolo26s-seg.yaml", "rtdetr-l.yaml", "my-model.yaml", "dir/yolo26n-lska.yaml",
                 "yolo26n-lska.pt"):
        assert parse_name(name) is None
        assert resolve(name) is None


def test_checkpoint_rebuilds_without_the_resolver(tmp_path):
    name = "yolo26n-pose-cga-neck.yaml"
    model = front(name)(name)
    ckpt = tmp_path / "model.pt"
    model.save(ckpt)
    expected = {k: tuple(v.shape) for k, v in model.model.state_dict().items()}
    code = f"""
import torch
import yolo_attn
from ultralytics import YOLO  # registers: yolo_attn.register() passes the resolvers to the adapter
from yolo_attn.adapter import config_files
config_files._config_resolvers.clear()  # no config names from here on
from ultralytics.nn.tasks import yaml_model_load
try:
    yaml_model_load({name!r})
    raise SystemExit("the name still resolved")
except FileNotFoundError:
    pass
m = YOLO({str(ckpt)!r})
assert m.task == "pose", m.task
net = m.model
rebuilt = type(net)(net.yaml, verbose=False)  # from the config the checkpoint records
shapes = {{k: tuple(v.shape) for k, v in rebuilt.state_dict().items()}}
assert shapes == {expected!r}
print("OK", net.yaml["yaml_file"], [type(x).__name__ for x in rebuilt.model].count("CGA"))
"""
    out = run_py(code).stdout
    assert f"OK {name} 3" in out


def test_insert_writes_the_config_of_a_name(tmp_path):
    out = tmp_path / "mine.yaml"
    proc = subprocess.run([bin_path("yolo-attn"), "insert", "yolo26n-obb-fla-backbone.yaml", "-o", str(out)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert yaml.safe_load(out.read_text()) == resolve("yolo26n-obb-fla-backbone.yaml")
    assert out.read_text().startswith("# yolo26n-obb-fla-backbone.yaml: yolo26-obb.yaml with FLA, placement backbone")
    bad = subprocess.run([bin_path("yolo-attn"), "insert", "yolo26n-cls-fla-neck.yaml"], capture_output=True,
                         text=True, cwd=tmp_path)
    assert bad.returncode == 1
    assert "classification model, which has no neck" in bad.stderr and "Did you mean" in bad.stderr


def test_insert_still_takes_a_base_and_layer(tmp_path):
    out = tmp_path / "x.yaml"
    proc = subprocess.run([bin_path("yolo-attn"), "insert", "yolo12.yaml", "--layer", "LSKA", "-o", str(out),
                           "--no-check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert yaml.safe_load(out.read_text()) == resolve("yolo12-lska.yaml")


def test_yolo_command_reports_invalid_names(tmp_path):
    """The plain ``yolo`` command (start-up hook only) goes through the resolver too."""
    proc = subprocess.run([bin_path("yolo"), "detect", "val", "model=yolo26n-shsa-nope.yaml"], capture_output=True,
                          text=True, cwd=tmp_path)
    assert proc.returncode != 0
    assert "Did you mean yolo26n-shsa-neck.yaml?" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_example_names_train_with_the_plain_yolo_command_after_a_non_editable_install(tmp_path, wheel):
    """The wheel installed as a user installs it (not editable, its ``.pth`` hook processed by ``site``): in an empty
    directory the plain ``yolo`` command trains example names of three tasks, YOLO26's NMS-free head among them."""
    import sys
    import sysconfig

    from yolo_attn.data import make_shapes

    env_dir = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, timeout=120)
    py = env_dir / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    # torch and ultralytics come from the test venv's site-packages as a plain path entry: its .pth files (the
    # editable install of this checkout among them) are not processed in the new environment.
    (site / "_test_venv_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    where = subprocess.run([str(py), "-c", "import yolo_attn; print(yolo_attn.__file__)"], check=True,
                           capture_output=True, text=True, cwd=tmp_path).stdout.strip()
    assert where == str(site / "yolo_attn" / "__init__.py")

    cases = {"yolo26n-lska.yaml": ("detect", "LSKA"), "yolo26n-obb-fla-backbone.yaml": ("obb", "FLA"),
             "yolov8n-cls-lska.yaml": ("classify", "LSKA")}
    for name, (task, layer) in cases.items():
        data = make_shapes(tmp_path / f"data-{task}", train=8, val=4, imgsz=64, seed=0, task=task)
        work = tmp_path / f"empty-{task}"
        work.mkdir()
        yolo = "import sys; from ultralytics.cfg import entrypoint; sys.exit(entrypoint())"  # the `yolo` script
        proc = subprocess.run([str(py), "-c", yolo, task, "train", f"model={name}", f"data={data}", "epochs=1",
                               "imgsz=64", "batch=4", "workers=0", "plots=False", "device=cpu", f"project={work / 'runs'}",
                               "name=r"], cwd=work, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, (name, proc.stdout[-3000:], proc.stderr[-3000:])
        assert sorted(p.name for p in work.iterdir()) == ["runs"], name  # no config was written next to the user
        out = subprocess.run([str(py), "-c", "import sys, torch; ck = torch.load(sys.argv[1], weights_only=False); "
                              "m = ck['model']; print(m.yaml['yaml_file'], ck['train_args']['task'], "
                              "' '.join(sorted({type(x).__name__ for x in m.modules()})))",
                              str(work / "runs" / "r" / "weights" / "last.pt")],
                             check=True, capture_output=True, text=True, cwd=work).stdout.split()
        assert out[0] == name and out[1] == task and layer in out[2:], (name, out[:2])


@pytest.mark.parametrize("family", ["yolov8", "yolo11", "yolo26"])
@pytest.mark.parametrize("layer", BUILTIN)
def test_every_layer_by_name_at_scales_n_and_s(layer, family):
    """``<family>n-<layer>.yaml`` and ``<family>s-<layer>.yaml``: the layer after the P5 block with the channels of
    its scale (s is twice as wide as n at P5 in these families), and the model runs."""
    built = {}
    for scale in "ns":
        model = front(f"{family}{scale}-{layer.lower()}.yaml")(f"{family}{scale}-{layer.lower()}.yaml").model
        (k,) = attention_rows(model)
        assert type(model.model[k]).__name__ == layer
        seen = []
        model.model[k].register_forward_hook(lambda m, a, out: seen.append((a[0].shape[1], out.shape)))
        model.eval()
        with torch.no_grad():
            model(torch.rand(1, 3, 64, 64))
        (c_in, out_shape), = seen
        assert out_shape[1] == c_in  # same channels out
        built[scale] = c_in
    assert built["s"] == 2 * built["n"], built
