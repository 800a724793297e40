"""Every model YAML shipped in the installed Ultralytics, by config name, at every placement its family has.

The stock YAMLs are globbed from ``ultralytics/cfg/models`` (``yolo_attn.names.stock_configs``), not listed by hand.
Each YAML × placement case is the name ``<stock stem>-<layer>[-<placement>].yaml`` built at its smallest declared
scale and run forward at 64×64 and 64×96 (``scripts/coverage_table.py``'s ``check``). The full product with every
layer (about 760 builds) is too slow for the suite; here the layers are rotated over the cases
(``cases(rotate=True)``): every YAML × every placement is built, consecutive cases get the next registered layer, so
each layer meets each family (and each task). ``python scripts/coverage_table.py`` runs the full product and writes
the README table. The one YAML that cannot be built offline (torchvision downloads its backbone's weights) is checked
to fail on that download and nothing else.
"""

from __future__ import annotations

import sys
import urllib.error
from collections import defaultdict
from pathlib import Path

import pytest

from conftest import NAMES
from yolo_attn.names import stock_configs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from coverage_table import OFFLINE_EXCEPTIONS, cases, check, name_of  # noqa: E402

ROTATED = defaultdict(list)
for _base, _layer, _at in cases(rotate=True):
    ROTATED[_base].append((_layer, _at))


def test_the_glob_finds_every_family():
    stems = {Path(b).stem for b in stock_configs()}
    assert len(stems) >= 60
    for family in ("yolo26", "yolo26-seg", "yolo26-pose", "yolo26-obb", "yolo26-cls", "yolo12", "yolo11", "yolov10n",
                   "yolov9c", "yolov8", "rtdetr-l", "rtdetr-x"):
        assert family in stems
    # the rotation reaches every layer in every family directory
    by_dir = defaultdict(set)
    for base, pairs in ROTATED.items():
        by_dir[stock_configs()[base].parent.name].update(layer for layer, _ in pairs)
    assert all(layers == set(NAMES) for d, layers in by_dir.items() if sum(
        len(ROTATED[b]) for b in ROTATED if stock_configs()[b].parent.name == d) >= len(NAMES)), dict(by_dir)


@pytest.mark.parametrize("base", sorted(ROTATED))
def test_every_yaml_and_placement_builds_and_runs(base):
    for layer, at in ROTATED[base]:
        if base in OFFLINE_EXCEPTIONS:
            with pytest.raises((urllib.error.URLError, OSError)):
                check(base, layer, at)
            continue
        info = check(base, layer, at)
        assert info["rows"], name_of(base, layer, at)
