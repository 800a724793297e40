"""The README says what the code does: its registry tables are the registry's (English and Chinese README), and the
"Your own modules" example of the docs builds as the text describes (channels, repeats, aliases, ``imports:``) at
two scales, in a fresh process; the Chinese page shows the same code."""

from __future__ import annotations

import json
import re

import readme_tables
from conftest import ROOT, run_py

README = (ROOT / "README.md").read_text(encoding="utf-8")
README_ZH = (ROOT / "README.zh-CN.md").read_text(encoding="utf-8")
OWN = {lang: (ROOT / "docs" / lang / "own-modules.md").read_text(encoding="utf-8") for lang in ("en", "zh")}
EXAMPLE = r"```python\n# acme_blocks\.py[^\n]*\n(.*?)```"


def test_registry_tables_are_what_the_registry_gives():
    assert readme_tables.render(README) == README, "run python scripts/readme_tables.py"
    assert readme_tables.render(README_ZH, lang="zh") == README_ZH, "run python scripts/readme_tables.py"


def test_readme_begins_with_the_two_commands_and_stays_a_front_page():
    for text in (README, README_ZH):
        assert text.startswith("# yolo-attn\n\n```bash\nbash scripts/main.sh ")
        assert "\nbash scripts/test.sh " in text.split("```", 2)[1]
        assert len(text.splitlines()) <= 200


def test_own_modules_example_is_the_same_in_both_languages():
    assert re.search(EXAMPLE, OWN["en"], re.S).group(1) == re.search(EXAMPLE, OWN["zh"], re.S).group(1)


YAML = """imports: [acme_blocks]
nc: 3
scales:
  n: [0.33, 0.25, 1024]
  s: [0.33, 0.50, 1024]
backbone:
  - [-1, 1, Conv, [64, 3, 2]]
  - [-1, 3, AcmeC2, [128]]
  - [-1, 1, Gate, []]
  - [-1, 3, AcmeBlock, [256]]
head:
  - [-1, 1, Classify, [nc]]
"""

BUILD = r"""
import json, torch
from ultralytics import YOLO
out = {}
for scale in "ns":
    m = YOLO(f"yolov8{scale}-acme.yaml", task="classify").model
    y = m(torch.rand(1, 3, 64, 64))
    out[scale] = [[type(x).__name__ for x in m.model], m.model[1].cv1.out_channels, len(m.model[1].m),
                  m.model[2].fc.in_channels, m.model[3].cv1.out_channels, list(y.shape)]
print(json.dumps(out))
"""


def test_own_modules_example_builds_as_described(tmp_path):
    code = re.search(EXAMPLE, OWN["en"], re.S).group(1)
    (tmp_path / "acme_blocks.py").write_text(code)
    for scale in "ns":  # Ultralytics takes the scale from the file name (yolov8<scale>...)
        (tmp_path / f"yolov8{scale}-acme.yaml").write_text(YAML)
    got = json.loads(run_py(BUILD, cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)}).stdout.strip().splitlines()[-1])
    # scale n: width 0.25 -> c2 = 32 and 64; depth 0.33 -> n = round(3 * 0.33) = 1; Gate keeps its input channels
    assert got["n"] == [["Conv", "AcmeC2", "Gate", "AcmeC2", "Classify"], 32, 1, 32, 64, [1, 3]]
    assert got["s"] == [["Conv", "AcmeC2", "Gate", "AcmeC2", "Classify"], 64, 1, 64, 128, [1, 3]]
