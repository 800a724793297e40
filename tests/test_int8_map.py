"""scripts/int8_map.py end to end on a tiny model: one command exports a checkpoint to OpenVINO fp32 and INT8,
validates all three with Ultralytics' val, and writes a table that says what its JSON says; the fp32 export really
ran in f32 inside Ultralytics' OpenVINO backend (the precision OpenVINO reports for the compiled model), the INT8
export in OpenVINO's default precision, and the ``openvino.Core`` patch is gone afterwards.

Random weights on 8 generated images (mAP ~0): the figures are not the point here; README's table is the measured run.
"""

from __future__ import annotations

import json

import openvino as ov
import pytest
import torch

import int8_map
from ultralytics import YOLO


@pytest.mark.slow  # OpenVINO fp32 and INT8 exports, each validated
def test_int8_map_table_agrees_with_its_json_and_fp32_ran_in_f32(tmp_path, shapes_data, capsys):
    torch.manual_seed(0)
    pt = tmp_path / "tiny.pt"
    YOLO("yolov8n.yaml").save(str(pt))
    core = ov.Core
    assert int8_map.main([str(pt), "--data", str(shapes_data), "--imgsz", "64", "--out", str(tmp_path / "o")]) == 0
    assert ov.Core is core, "openvino.Core is still patched"
    result = json.loads((tmp_path / "o" / "int8_map.json").read_text())
    (row,) = result["rows"]
    assert row["model"] == "tiny" and row["imgsz"] == 64
    assert row["openvino_fp32"]["precision"] == ["f32"], row
    default = ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()
    assert row["openvino_int8"]["precision"] == [default], row
    assert (result["setup"]["train_images"], result["setup"]["val_images"]) == ("16", "8")
    for key in ("map50", "map50_95"):
        assert row["int8_drop"][key] == row["openvino_int8"][key] - row["pytorch"][key]
    printed = capsys.readouterr().out
    table = (tmp_path / "o" / "int8_map.md").read_text()
    assert table.split("\n\n")[0] in printed
    cells = [c.strip() for c in table.splitlines()[2].strip("|").split("|")]
    numbers = [row[k][m] for k in ("pytorch", "openvino_fp32", "openvino_int8") for m in ("map50", "map50_95")]
    numbers += [row["int8_drop"]["map50"], row["int8_drop"]["map50_95"]]
    assert cells[0] == "tiny" and [float(c) for c in cells[1:]] == [round(v, 4) for v in numbers], (cells, numbers)


def test_compare_directory_gives_each_seeds_checkpoint_data_and_imgsz(tmp_path):
    """The layout ``yolo-attn compare`` leaves: ``runs/<model>-seed<k>.json`` (settings) next to its run directory."""
    runs = tmp_path / "runs"
    layout = [("yolov8n", 0, ["best", "last"]), ("yolov8n-cga", 0, ["last"]), ("yolov8n", 1, ["best"])]
    for label, seed, files in layout:
        (runs / f"{label}-seed{seed}" / "weights").mkdir(parents=True)
        for f in files:
            (runs / f"{label}-seed{seed}" / "weights" / f"{f}.pt").write_bytes(b"")
        settings = {"data": f"/d/{label}.yaml", "imgsz": 96 + seed}
        (runs / f"{label}-seed{seed}.json").write_text(json.dumps({"settings": settings, "result": {}}))
    got = int8_map.from_compare_dir(tmp_path, [0], "best")
    assert [(i["model"], i["pt"].relative_to(runs).as_posix(), i["data"], i["imgsz"]) for i in got] == [
        ("yolov8n-cga-seed0", "yolov8n-cga-seed0/weights/last.pt", "/d/yolov8n-cga.yaml", 96),  # no best.pt: last
        ("yolov8n-seed0", "yolov8n-seed0/weights/best.pt", "/d/yolov8n.yaml", 96),
    ]
    (tmp_path / "runs.csv").write_text("model,seed,params\nyolov8n,0,1\nyolov8n-cga,0,2\nyolov8n,1,1\n")
    assert [i["model"] for i in int8_map.from_compare_dir(tmp_path, [0], "best")] == ["yolov8n-seed0",
                                                                                     "yolov8n-cga-seed0"]
    both = int8_map.from_compare_dir(tmp_path, [0, 1], "best")
    assert [(i["model"], i["imgsz"]) for i in both] == [("yolov8n-seed0", 96), ("yolov8n-cga-seed0", 96),
                                                        ("yolov8n-seed1", 97)]  # runs.csv order
    with pytest.raises(SystemExit, match="yolov8n-seed1: no last.pt under"):  # asked for last.pt: no fallback
        int8_map.from_compare_dir(tmp_path, [1], "last")
    with pytest.raises(SystemExit, match="no runs/<model>-seed<k>.json with seed in \\[2\\]"):
        int8_map.from_compare_dir(tmp_path, [2], "best")
