"""Every model YAML shipped in the installed Ultralytics, by config name, with every layer at every placement its
family has.

The stock YAMLs are globbed from ``ultralytics/cfg/models`` (``yolo_attn.names.stock_configs``), not listed by hand.
Each YAML × layer × placement case is the name ``<stock stem>-<layer>[-<placement>].yaml`` built at its smallest
declared scale and run forward at 64×64 and 64×96 (64×128 for P6 models) by ``scripts/coverage_table.py``'s
``check``, which also writes the docs table. The full product (about 760 builds) takes about 2.5 min on 2 CPU
cores, because each stock YAML's base build (for the row strides) is shared by its 8–12 cases; if it grows past the
suite's budget, ``cases(rotate=True)`` gives every YAML × every placement with the layers rotated over them. The one
YAML that cannot be built offline (torchvision downloads its backbone's weights) is checked to fail on that download.
The product is marked slow (end-to-end): plain ``pytest`` skips it, ``pytest --runslow`` and scripts/test.sh run it.
"""

from __future__ import annotations

import urllib.error
from collections import defaultdict
from pathlib import Path

import pytest

from conftest import NAMES
from coverage_table import OFFLINE_EXCEPTIONS, cases, check
from yolo_attn.names import stock_configs

CASES = defaultdict(list)
for _base, _layer, _at in cases():
    CASES[_base].append((_layer, _at))


def test_the_glob_finds_every_family():
    stems = {Path(b).stem for b in stock_configs()}
    assert len(stems) >= 60
    for family in ("yolo26", "yolo26-seg", "yolo26-pose", "yolo26-obb", "yolo26-cls", "yolo12", "yolo11", "yolov10n",
                   "yolov9c", "yolov8", "rtdetr-l", "rtdetr-x"):
        assert family in stems



@pytest.mark.parametrize(("base", "placements"), [
    ("yolov8.yaml", {"after-sppf", "neck", "backbone"}),  # a detector: all three
    ("rtdetr-l.yaml", {"after-sppf", "neck", "backbone"}),  # after AIFI, in the neck, in the backbone
    ("yolov8-cls.yaml", {"after-sppf", "backbone"}),  # a classifier has no neck
    ("yolo26-pose.yaml", {"after-sppf", "neck", "backbone"}),
])
def test_cases_cover_every_layer_at_the_family_placements(base, placements):
    """Written out by hand for a few families: each registered layer at each placement the family has."""
    assert sorted(CASES[base]) == sorted((layer, at) for layer in NAMES for at in placements)


@pytest.mark.slow  # ~5 min on 2 cores (about 760 builds)
@pytest.mark.parametrize("base", sorted(CASES))
def test_every_yaml_layer_and_placement_builds_and_runs(base):
    for layer, at in CASES[base]:
        if base in OFFLINE_EXCEPTIONS:
            with pytest.raises(urllib.error.URLError):  # torchvision's weight download
                check(base, layer, at)
            continue
        check(base, layer, at)  # raises unless the layer is in the model and every output is finite
