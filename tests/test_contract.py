"""Contract tests: each fact about Ultralytics that the adapter (``yolo_attn/adapter/``) relies on, checked directly
against every checked Ultralytics release (``CHECKED_VERSIONS``), so an upgrade that breaks one fails in one named
test.

The facts are probed in a fresh interpreter per release with the plugin switched off (``YOLO_ATTN_AUTOLOAD=0``,
nothing of yolo_attn registered), so what is tested is Ultralytics itself; the numbering follows the adapter
package's docstring.
"""

from __future__ import annotations

import json

import pytest

from conftest import run_py, ultralytics_version_path
from yolo_attn.adapter import CHECKED_VERSIONS

PROBE = r'''
import inspect, json, sys, threading
import torch
from torch import nn
from ultralytics.nn import tasks
import ultralytics
facts = {"version": ultralytics.__version__}
seen = {}

class Probe(nn.Module):
    """Stands for a registered layer: records parse_model's locals, then rebinds its c2 like channels='out'."""
    def __new__(cls, *args):
        frame = sys._getframe(1)
        while frame is not None and frame.f_code.co_name != "parse_model":
            frame = frame.f_back
        loc = dict(frame.f_locals) if frame is not None else {}
        seen.setdefault("calls", []).append({"args": list(args), "found": frame is not None,
                                             "locals": sorted(k for k in NEEDED if k in loc),
                                             "c2_is_ch_f": bool(loc) and loc.get("c2") == loc["ch"][loc["f"]]})
        if frame is not None and args and args[0] == "out":
            from yolo_attn.adapter.rows import _set_local
            _set_local(frame, "c2", 24)
            return nn.Conv2d(loc["ch"][loc["f"]], 24, 1)
        return nn.Identity()

NEEDED = ("ch", "f", "i", "d", "nc", "depth", "width", "max_channels", "c2")
tasks.Probe = Probe  # fact 1: a class in the tasks namespace is a layer name
calls = []
original = tasks.parse_model
def counting(*a, **k):
    calls.append(1)
    return original(*a, **k)
tasks.parse_model = counting  # fact 3: internal callers look parse_model up at call time
d = {"nc": 2, "scales": {"n": [0.34, 0.25, 1024]}, "scale": "n",
     "backbone": [[-1, 1, "Conv", [100, 3, 2]], [-1, 6, "C2f", [64]], [-1, 1, "Probe", []],
                  [0, 1, "Probe", [5]], [-1, 1, "Conv", [64, 3, 2]]],
     "head": [[[2, 4], 1, "Detect", ["nc"]]]}
model = tasks.DetectionModel(d, verbose=False)
facts["1_name_resolves_in_tasks_namespace"] = len(seen.get("calls", [])) >= 2
facts["1_unknown_layer_called_with_yaml_args"] = seen["calls"][0]["args"] == []
facts["2_frame_found_with_locals"] = all(c["found"] and c["locals"] == sorted(NEEDED) for c in seen["calls"])
facts["2_c2_is_ch_f_before_the_call"] = all(c["c2_is_ch_f"] for c in seen["calls"])
facts["2_conv_channels_scaled"] = model.model[0].conv.out_channels == int(tasks.make_divisible(min(100, 1024) * 0.25, 8))
facts["2_repeats_depth_scaled"] = len(model.model[1].m) == max(round(6 * 0.34), 1)
facts["3_parse_model_looked_up_at_call_time"] = len(calls) == 1
try:
    tasks.parse_model({"nc": 2, "backbone": [[-1, 1, "NoSuchLayerXyz", []]], "head": []}, 3, False)
    facts["1_unknown_name_keyerror"] = False
except KeyError as e:
    facts["1_unknown_name_keyerror"] = e.args[:1] == ("NoSuchLayerXyz",)
tasks.parse_model = original
from ultralytics.engine import model as engine_model
facts["5_yaml_model_load_in_tasks_and_engine_model"] = (
    callable(getattr(tasks, "yaml_model_load", None)) and engine_model.yaml_model_load is tasks.yaml_model_load)
facts["5_guess_model_scale"] = tasks.guess_model_scale("yolov8s-lska.yaml") == "s"
from ultralytics.data.base import BaseDataset
from ultralytics.models.yolo.detect.train import DetectionTrainer
from ultralytics.engine.validator import BaseValidator
from ultralytics.engine.predictor import BasePredictor
facts["6_dataset_rect_keyword"] = "rect" in inspect.signature(BaseDataset.__init__).parameters
facts["6_trainer_build_dataset"] = callable(getattr(DetectionTrainer, "build_dataset", None))
facts["6_validator_call"] = list(inspect.signature(BaseValidator.__call__).parameters)[:3] == ["self", "trainer", "model"]
facts["6_predictor_pre_transform"] = list(inspect.signature(BasePredictor.pre_transform).parameters) == ["self", "im"]
facts["7_load_fuse_safe_load"] = (list(inspect.signature(tasks.BaseModel.load).parameters)[:3] == ["self", "weights", "verbose"]
                                  and callable(tasks.BaseModel.fuse) and callable(tasks.torch_safe_load))
facts["7_torch_safe_load_weight_first"] = list(inspect.signature(tasks.torch_safe_load).parameters)[0] == "weight"
import os, tempfile, logging
from ultralytics import YOLO
d_plain = {"nc": 2, "scales": {"n": [0.34, 0.25, 1024]}, "scale": "n",
           "backbone": [[-1, 1, "Conv", [16, 3, 2]], [-1, 1, "Conv", [32, 3, 2]], [-1, 1, "Conv", [64, 3, 2]]],
           "head": [[[0, 1, 2], 1, "Detect", ["nc"]]]}
facts["7_task_and_model_classes"] = (
    tasks.guess_model_task(d_plain) == "detect"
    and all(hasattr(tasks, c) for c in ("DetectionModel", "SegmentationModel", "PoseModel", "OBBModel",
                                         "ClassificationModel", "RTDETRDetectionModel"))
    and tasks.DetectionModel(d_plain, nc=5, verbose=False).model[-1].nc == 5)
os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"  # releases before 8.2 call torch.load with torch's default
with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "made.pt")
    torch.save({"model": tasks.DetectionModel(d_plain, verbose=False).half(), "train_args": {}, "date": None,
                "version": None}, path)
    facts["7_handmade_checkpoint_loads"] = (type(YOLO(path).model).__name__ == "DetectionModel"
                                            and "model" in tasks.torch_safe_load(path)[0])
from ultralytics.utils import torch_utils, LOGGER
select_params = list(inspect.signature(torch_utils.select_device).parameters)
facts["8_select_device"] = select_params[0] == "device" and "verbose" in select_params
from ultralytics.data import utils as data_utils
facts["8_dataset_and_image_formats"] = callable(data_utils.check_det_dataset) and "jpg" in data_utils.IMG_FORMATS
from ultralytics.engine.trainer import BaseTrainer
trainer_source = inspect.getsource(BaseTrainer)
facts["8_trainer_state"] = (callable(getattr(BaseTrainer, "label_loss_items", None))
                            and all(f"self.{k}" in trainer_source for k in ("loss_items", "tloss", "epoch", "epochs",
                                                                           "best", "last", "save_dir"))
                            and "results.csv" in trainer_source)
facts["8_logger"] = isinstance(LOGGER, logging.Logger)
from pathlib import Path
stock = Path(ultralytics.__file__).parent / "cfg" / "models"
facts["9_stock_model_yamls"] = any(stock.rglob("yolov8.yaml")) and any(stock.rglob("rtdetr-l.yaml"))
small = tasks.DetectionModel("yolov8n.yaml", verbose=False)
from ultralytics import cfg as ucfg
small.args = ucfg.get_cfg()
small.criterion = small.init_criterion()
batch = {"img": torch.zeros(1, 3, 64, 64), "batch_idx": torch.zeros(1), "cls": torch.zeros(1, 1),
         "bboxes": torch.tensor([[0.5, 0.5, 0.2, 0.2]])}
small.train()
facts["8_loss_outside_a_trainer"] = bool(torch.isfinite(small.loss(batch)[0].sum()))
import ultralytics.utils as uutils
facts["8_cli_entrypoint"] = callable(ucfg.entrypoint) and ("sys.argv" in inspect.getsource(ucfg.entrypoint) or (
    "ARGV" in inspect.getsource(ucfg.entrypoint) and getattr(uutils, "ARGV", None) is sys.argv))
small.eval()
g_square, g_rect = torch_utils.get_flops(small, 64), torch_utils.get_flops(small, [64, 96])
facts["10_get_flops"] = (isinstance(g_square, float) and 0 < g_square < g_rect
                         and list(inspect.signature(torch_utils.get_flops).parameters)[:2] == ["model", "imgsz"])
from ultralytics.engine.exporter import Exporter
facts["11_exporter_call_reads_args_format"] = (
    list(inspect.signature(Exporter.__call__).parameters)[:2] == ["self", "model"]
    and "self.args.format" in inspect.getsource(Exporter.__call__))
from ultralytics.nn.modules import conv as uconv
def params(cls):
    return [(p.name, p.default) for p in list(inspect.signature(cls.__init__).parameters.values())[1:]]
facts["12_attention_modules_in_conv"] = (
    [n for n, _ in params(uconv.ChannelAttention)] == ["channels"]
    and params(uconv.SpatialAttention) == [("kernel_size", 7)]
    and params(uconv.CBAM) == [("c1", inspect.Parameter.empty), ("kernel_size", 7)])
facts["12_cbam_is_no_yaml_name"] = not any(n in vars(tasks) for n in ("CBAM", "ChannelAttention", "SpatialAttention"))
# last: rebinding parse_model's c2 from the layer's constructor (our _set_local; importing it registers yolo_attn)
d["backbone"][3] = [0, 1, "Probe", ["out"]]
model = tasks.DetectionModel(d, verbose=False)
facts["2_rebound_c2_reaches_ch"] = model.model[4].conv.in_channels == 24
print(json.dumps(facts))
'''

FACTS = [
    "1_name_resolves_in_tasks_namespace", "1_unknown_layer_called_with_yaml_args", "1_unknown_name_keyerror",
    "2_frame_found_with_locals", "2_c2_is_ch_f_before_the_call", "2_conv_channels_scaled", "2_repeats_depth_scaled",
    "2_rebound_c2_reaches_ch", "3_parse_model_looked_up_at_call_time", "5_yaml_model_load_in_tasks_and_engine_model",
    "5_guess_model_scale", "6_dataset_rect_keyword", "6_trainer_build_dataset", "6_validator_call",
    "6_predictor_pre_transform", "7_load_fuse_safe_load", "7_torch_safe_load_weight_first", "7_task_and_model_classes",
    "7_handmade_checkpoint_loads", "8_select_device", "8_dataset_and_image_formats", "8_trainer_state", "8_logger",
    "8_loss_outside_a_trainer", "8_cli_entrypoint", "9_stock_model_yamls", "10_get_flops",
    "11_exporter_call_reads_args_format", "12_attention_modules_in_conv", "12_cbam_is_no_yaml_name",
]
_cache: dict[str, dict] = {}


def probe(version: str) -> dict:
    if version not in _cache:
        env = {"YOLO_ATTN_AUTOLOAD": "0"}
        if version != CHECKED_VERSIONS[-1]:
            env["PYTHONPATH"] = str(ultralytics_version_path(version))
        _cache[version] = json.loads(run_py(PROBE, env=env).stdout.strip().splitlines()[-1])
    return _cache[version]


@pytest.mark.parametrize("fact", FACTS)
@pytest.mark.parametrize("version", CHECKED_VERSIONS)
def test_ultralytics_fact(version, fact):
    facts = probe(version)
    assert facts["version"] == version
    assert facts[fact] is True, f"ultralytics {version}: {fact} no longer holds ({facts})"


def test_frame_not_found_inside_parse_model_names_the_versions():
    """A future parse_model whose frame cannot be found gives a clear error, never ``cls(*yaml_args)``."""
    import ultralytics
    from ultralytics.nn import tasks

    from yolo_attn.adapter import IntegrationError
    from yolo_attn.adapter.rows import parsing as _parsing

    token = _parsing.set({"codes": set(), "n": {}, "built": {}, "noted": set()})
    try:
        with pytest.raises(IntegrationError) as e:
            tasks.CGA(64)  # built "inside parse_model" (its state is set) but from no parse_model frame
    finally:
        _parsing.reset(token)
    msg = str(e.value)
    assert f"ultralytics {ultralytics.__version__}" in msg and all(v in msg for v in CHECKED_VERSIONS)
