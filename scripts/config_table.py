"""Write the docs' table of shipped configs: params and GFLOPs at 640 (attention matmuls counted), measured.

Usage: python scripts/config_table.py            # measure every cfg/ file and rewrite the docs section
       python scripts/config_table.py --stdout   # print the tables instead

The section sits between the markers ``<!-- config-table:start -->`` and ``<!-- config-table:end -->`` on the Model
names and placements page (``docs/en/placements.md``); ``scripts/readme_tables.py`` writes its Chinese copy
(``docs/zh/placements.md``, headers and fixed words in Chinese) and shows its rows on the layer pages: run it after
this script.
``tests/test_configs.py`` builds every shipped config and checks its row against the figures measured there.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "docs" / "en" / "placements.md"]  # the Chinese copy: scripts/readme_tables.py
README = PAGES[0]  # the page whose table tests/test_configs.py checks against the builds
START, END = "<!-- config-table:start -->", "<!-- config-table:end -->"
sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_configs import PLAN, shipped_names  # noqa: E402
from markers import replace_between  # noqa: E402

YOLO_SCALES = ("n", "s")
RTDETR_SCALES = ("l",)


def measure(cfg: str | Path, scale: str) -> tuple[int, float]:
    """(parameters, GFLOPs at 640×640 batch 1) of ``cfg`` built at ``scale``."""
    from yolo_attn.check import count_flops
    from yolo_attn.adapter import build_model

    model = build_model(cfg, scale=scale)
    return sum(p.numel() for p in model.parameters()), count_flops(model, 640) / 1e9


def _rows_after(name: str) -> str:
    text = (ROOT / "cfg" / name).read_text().splitlines()[0]
    return re.search(r"after (rows? [\d, ]+) of", text).group(1)


def render() -> str:
    """The markdown of both tables, measured now."""
    import yolo_attn  # noqa: F401  (registers the layers)

    out = []
    for family, scales in (("yolo", YOLO_SCALES), ("rtdetr", RTDETR_SCALES)):
        bases = [(stem, base) for stem, (base, _) in PLAN.items() if stem.startswith(family)]
        cols = " | ".join(f"params {s} | GFLOPs {s} | Δ GFLOPs {s}" for s in scales)
        out += ["", f"| config | layer | placement | {cols} |",
                "|---|---|---|" + "---:|---:|---:|" * len(scales)]
        for stem, base in bases:
            stock = {s: measure(base, s) for s in scales}
            figures = " | ".join(f"{stock[s][0]:,} | {stock[s][1]:.2f} | -" for s in scales)
            out.append(f"| `{base}` (stock) | - | - | {figures} |")
            for name, b, layer, at in shipped_names():
                if b != base:
                    continue
                cells = []
                for s in scales:
                    params, gflops = measure(ROOT / "cfg" / name, s)
                    delta = 100 * (gflops / stock[s][1] - 1)
                    cells.append(f"{params:,} | {gflops:.2f} | {delta:+.1f}%")
                out.append(f"| `{name}` | {layer} | {at} ({_rows_after(name)}) | {' | '.join(cells)} |")
    return "\n".join(out[1:])


def table_rows(readme: str) -> dict[str, list[str]]:
    """Config file name -> cells of its row in the table of ``readme`` (a page's text; for tests)."""
    section = readme.split(START, 1)[1].split(END, 1)[0]
    rows = {}
    for line in section.splitlines():
        m = re.match(r"\| `([^`]+)`(?: \(stock\))? \| (.*) \|$", line)
        if m:
            rows[m.group(1)] = [c.strip() for c in m.group(2).split("|")]
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stdout", action="store_true", help="print the tables instead of rewriting the docs pages")
    args = ap.parse_args()
    tables = render()
    if args.stdout:
        print(tables)
        return
    for page in PAGES:
        page.write_text(replace_between(page.read_text(encoding="utf-8"), START, END, tables, where=str(page)),
                        encoding="utf-8")
        print(f"updated {page}")


if __name__ == "__main__":
    main()
