"""Every model YAML shipped in the installed Ultralytics, by config name, with every layer at every placement its
family has.

The stock YAMLs are globbed from ``ultralytics/cfg/models`` (``yolo_attn.names.stock_configs``), not listed by hand.
Each YAML × layer × placement case is the name ``<stock stem>-<layer>[-<placement>].yaml`` built at its smallest
declared scale and run forward at 64×64 and 64×96 (64×128 for P6 models) by ``scripts/coverage_table.py``'s
``check``, which also writes the docs table from the whole product (2,674 builds with 14 layers). Here, to stay
within the suite's budget: every layer at every placement of the smallest YAML of each size family, and every
placement of its larger sizes (yolov10s/m/b/l/x, yolov9s/m/c/e, yolov9e-seg, rtdetr-x, the ResNet-101 variants:
the same architecture at more channels) with the layers rotated over them — 2,180 builds; the larger sizes' full
product took 306 s of 758 s on 2 cores. The one YAML that cannot be built offline (torchvision downloads its
backbone's weights) is checked to fail on that download. The product is marked slow (end-to-end): plain ``pytest``
skips it, ``pytest --runslow`` and scripts/test.sh run it.
"""

from __future__ import annotations

import urllib.error
from collections import defaultdict
from pathlib import Path

import pytest

from conftest import NAMES
from coverage_table import OFFLINE_EXCEPTIONS, cases, check, size_family
from yolo_attn.names import stock_configs, valid_placements

CASES = defaultdict(list)
for _base, _layer, _at in cases(larger_sizes_rotated=True):
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


@pytest.mark.parametrize(("stem", "family"), [
    ("yolov10x", ("yolov10*", (0, 7))), ("yolov9c-seg", ("yolov9*-seg", (0, 4))), ("rtdetr-l", ("rtdetr-*", (0, 6))),
    ("yolov8-cls-resnet101", ("yolov8-cls-resnet*", (1, 101))),
    ("yolov8-seg-p6", ("yolov8-seg-p6", (0, 0))), ("yolo26-p2", ("yolo26-p2", (0, 0))),  # no size: a family each
    ("yolov3-tiny", ("yolov3-tiny", (0, 0))), ("yoloe-v8-seg", ("yoloe-v8-seg", (0, 0))),
])
def test_size_family(stem, family):
    assert size_family(stem) == family


def test_larger_sizes_get_every_placement_with_the_layers_rotated():
    """The smallest size of a family gets every layer at every placement; a larger size every placement, one layer
    each, the layers rotated so that over the larger sizes each layer is built."""
    larger = {"yolov10s.yaml", "yolov10m.yaml", "yolov10b.yaml", "yolov10l.yaml", "yolov10x.yaml", "yolov9s.yaml",
              "yolov9m.yaml", "yolov9c.yaml", "yolov9e.yaml", "yolov9e-seg.yaml", "rtdetr-x.yaml",
              "rtdetr-resnet101.yaml", "yolov8-cls-resnet101.yaml"}
    for base, found in CASES.items():
        placements = valid_placements(base)
        if base in larger:
            assert sorted(at for _, at in found) == sorted(placements), base
        else:
            assert sorted(found) == sorted((layer, at) for layer in NAMES for at in placements), base
    assert {layer for base in larger for layer, _ in CASES[base]} == set(NAMES)
    assert len(CASES) == len(stock_configs())


@pytest.mark.slow  # ~8 min on 2 cores (2,180 builds)
@pytest.mark.parametrize("base", sorted(CASES))
def test_every_yaml_layer_and_placement_builds_and_runs(base):
    for layer, at in CASES[base]:
        if base in OFFLINE_EXCEPTIONS:
            with pytest.raises(urllib.error.URLError):  # torchvision's weight download
                check(base, layer, at)
            continue
        check(base, layer, at)  # raises unless the layer is in the model and every output is finite
