"""Write the generated parts of the README and the docs site from the layer registry and the recorded results.

Usage: python scripts/readme_tables.py [--check]

Three registry tables, each between ``<!-- registry:NAME -->`` and ``<!-- /registry:NAME -->`` in README.md,
README.zh-CN.md and any page of ``docs/en`` and ``docs/zh`` that has the markers: ``layers`` (YAML name, other names,
what it is, paper, official code), ``args`` (an example row and each argument with its default and the first
sentence of its docstring) and ``defaults`` (the per-map arguments ``yolo-attn insert`` and the shipped configs use
at P3/P4/P5 of a 640 input); ``layer-pages`` (the Layers page's index, linking every layer's page). Headers follow
the page's language, cells are the registry's (code and names are the same in both languages).

The docs also get (``docs_files``): one page per shipped layer, ``docs/<lang>/layers/<name>.md``, written whole from
the registry, the layer file's module docstring (what it is, what is faithful, what differs) and the measured
config table (cost); the deployment table (``docs/<lang>/deployment.md``) from the recorded
``benchmarks/deploy_results.json`` (``scripts/deploy_table.py``); the performance tables from ``BENCHMARKS.md``; and
the measured blocks (``config-table``, ``coverage-table``: written into both languages by ``scripts/config_table.py``
and ``scripts/coverage_table.py``) copied from the English page to the Chinese one. The measured tables' fixed words
(headers, labels) are given in Chinese on the Chinese pages (``MEASURED_WORDS``); what they quote from a record,
like the docstrings on the layer pages, stays English under a Chinese label. A new layer file therefore appears in
every table and gets its page by running this script; no docs page is edited by hand.

``--check`` writes nothing and exits 1 naming every file that differs (``tests/test_readme.py``,
``tests/test_docs.py``).
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
from pathlib import Path

from markers import replace_between
from yolo_attn.layers.registry import LayerSpec, builtin_specs

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
README_ZH = ROOT / "README.zh-CN.md"
DOCS = ROOT / "docs"
LANGS = ("en", "zh")
GRIDS = {"P3": 80, "P4": 40, "P5": 20}  # map sides at a 640 input


def arg_docs(cls: type) -> dict[str, str]:
    """``{argument: first sentence of its description}`` from the class docstring's ``Args:`` section."""
    doc = inspect.getdoc(cls) or ""
    section = re.search(r"^Args:\n((?:[ \t]+.*\n?|\n)+)", doc, re.M)
    out, name = {}, None
    for line in (section.group(1).splitlines() if section else []):
        m = re.match(r"^\s{4}(\w+) \(([^)]*)\): (.*)$", line)
        if m:
            name, out[m.group(1)] = m.group(1), m.group(3)
        elif name and line.strip():
            out[name] += " " + line.strip()
    out = {k: v.replace("``", "`") for k, v in out.items()}  # short ones whole, long ones up to the first stop
    return {k: (v if len(v) <= 120 else re.split(r"(?<=[.;:])\s", v, maxsplit=1)[0]).rstrip(".;:") for k, v in out.items()}


def _default(spec: LayerSpec, arg: str, lang: str = "en") -> str:
    value = inspect.signature(spec.cls).parameters[arg].default
    return _h("required", lang) if value is inspect.Parameter.empty else repr(value)


def _row(spec: LayerSpec, args: list) -> str:
    return f"`[-1, 1, {spec.name}, [{', '.join(map(str, args))}]]`"


# Header cells in other languages (cells stay the registry's: names, code and papers are the same everywhere)
HEADERS = {
    "zh": {
        "name": "名称", "also written": "其他写法", "layer": "层", "paper": "论文",
        "official code it matches": "对应的官方代码",
        "YAML row (P5 defaults)": "YAML 行（P5 默认参数）",
        "arguments after the automatic `c1`: default, meaning":
            "自动填入的 `c1` 之后的参数：默认值、含义（含义摘自类的文档字符串，英文原文）",
        "at 640": "输入 640 时", "page": "页面", "required": "必填",
    },
}


def _h(text: str, lang: str) -> str:
    """``text`` (an English header cell) in ``lang``."""
    words = HEADERS.get(lang, {})
    if text in words:
        return words[text]
    return re.sub(r"at 640", words.get("at 640", "at 640"), text)


def layers_table(specs: dict[str, LayerSpec], lang: str = "en", links: bool = False) -> str:
    head = ["name", "also written", "layer", "paper", "official code it matches"]
    lines = ["| " + " | ".join(_h(h, lang) for h in head) + " |", "|---|---|---|---|---|"]
    for s in specs.values():
        other = ", ".join(f"`{n}`" for n in (*s.aliases, *s.official)) or "-"
        name = f"[`{s.name}`]({s.name.lower()}.md)" if links else f"`{s.name}`"
        lines.append(f"| {name} | {other} | {s.summary} | {s.paper} | {s.official_code} |")
    return "\n".join(lines)


def _arg_parts(s: LayerSpec, lang: str = "en") -> list[str]:
    docs = arg_docs(s.cls)
    return [f"`{a}={_default(s, a, lang)}` {docs.get(a, '')}".rstrip() for a in s.args]


def args_table(specs: dict[str, LayerSpec], lang: str = "en") -> str:
    lines = [f"| {_h('YAML row (P5 defaults)', lang)} | {_h('arguments after the automatic `c1`: default, meaning', lang)} |",
             "|---|---|"]
    for s in specs.values():
        lines.append(f"| {_row(s, s.default_args(GRIDS['P5']))} | {'; '.join(_arg_parts(s, lang))} |")
    return "\n".join(lines)


def defaults_table(specs: dict[str, LayerSpec], lang: str = "en") -> str:
    head = " | ".join(f"{lv} ({g}×{g} {_h('at 640', lang)})" for lv, g in GRIDS.items())
    lines = [f"| {_h('layer', lang)} | {head} |", "|---|" + "---|" * len(GRIDS)]
    for s in specs.values():
        cells = " | ".join(f"`{s.default_args(g)}`" for g in GRIDS.values())
        lines.append(f"| {s.name} | {cells} |")
    return "\n".join(lines)


TABLES = {"layers": layers_table, "args": args_table, "defaults": defaults_table,
          "layer-pages": lambda specs, lang="en": layers_table(specs, lang, links=True)}


README_TABLES = ("layers", "args", "defaults")  # the README must hold these (an error names a lost one)


def render(text: str, specs: dict[str, LayerSpec] | None = None, lang: str = "en",
           required: tuple[str, ...] = README_TABLES, where: str = "README.md") -> str:
    """``text`` with every registry table it holds replaced by what the registry gives now (headers in ``lang``);
    the tables named in ``required`` must be there."""
    specs = builtin_specs() if specs is None else specs
    for key, make in TABLES.items():
        start, end = f"<!-- registry:{key} -->", f"<!-- /registry:{key} -->"
        if start in text or key in required:
            text = replace_between(text, start, end, make(specs, lang), where=where)
    return text


# --- the docs site -------------------------------------------------------------------------------------------------

PAGE = {  # words of the generated per-layer pages
    "en": {
        "generated": "Generated by `python scripts/readme_tables.py` from the layer registry and `{file}`; edit those, "
                     "not this page.",
        "name": "YAML name", "also": "also written", "paper": "paper", "code": "official code it matches",
        "file": "layer file", "summary": "layer",
        "args": "YAML arguments", "args_intro": "The input channels `c1` are filled in from the `from` layer; every "
                "other argument has a default, so `[-1, 1, {name}, []]` works. The row with the P5 defaults:",
        "defaults": "Per-map defaults", "defaults_intro": "What `yolo-attn insert`, the shipped configs and the "
                    "model names write on each map (see [Model names and placements](../placements.md)):",
        "cost": "Cost", "cost_intro": "Shipped configs with {name}, measured by `python scripts/config_table.py` "
                "(params; GFLOPs at 640×640, batch 1, attention products counted; Δ against stock). Per-layer "
                "timings: [Performance](../performance.md).",
        "doc": "What it is, what is faithful, what differs",
        "doc_intro": "From the layer file's module docstring:",
        "api": "Class reference: [API reference](../api.md).",
        "no_cost": "No shipped config holds this layer.",
        "maps": "What it attends to",
        "maps_intro": "`yolo-attn show` of the demo's fine-tuned `yolov8n-{lower}.yaml` (seed 0) on one of the demo's "
                      "validation images (drawn by `python scripts/docs_pictures.py` after `bash scripts/main.sh`; "
                      "trained weights, one run on one machine). The layer sits after SPPF, so its map is the P5 "
                      "grid; the numbers under the picture say how far the maps are from uniform and how much they "
                      "differ between query points.",
        "no_map": "{name} has no spatial map to draw: its weights depend on the channel only (one gate value per "
                  "channel, the same at every position), so `yolo-attn show` skips it.",
        "no_maps": "No picture yet: run the demo with this layer (`bash scripts/main.sh`), then "
                   "`python scripts/docs_pictures.py`; or draw it yourself with `yolo-attn show MODEL.pt IMAGE`.",
    },
    "zh": {
        "generated": "本页由 `python scripts/readme_tables.py` 根据层注册表和 `{file}` 自动生成；要修改内容，请改这两处，"
                     "不要直接改本页。",
        "name": "YAML 名称", "also": "其他写法", "paper": "论文", "code": "对应的官方代码",
        "file": "层文件", "summary": "层",
        "args": "YAML 参数", "args_intro": "输入通道数 `c1` 由 `from` 指向的层自动填入；其余参数都有默认值，所以直接写 "
                "`[-1, 1, {name}, []]` 也可以。按 P5 默认参数写的一行：",
        "args_doc": "各参数的默认值和含义（含义摘自类的文档字符串，保留英文原文）：",
        "defaults": "各特征图上的默认参数", "defaults_intro": "`yolo-attn insert`、随包提供的配置文件和模型名称在各层特征图上"
                    "写入的参数（见[模型名称与插入位置](../placements.md)）：",
        "cost": "开销", "cost_intro": "包含 {name} 的随包配置，由 `python scripts/config_table.py` 实测（参数量；输入 "
                "640×640、batch 1 时的 GFLOPs，计入注意力的矩阵乘法；Δ 为相对原版模型的变化）。各层单独的耗时见"
                "[性能](../performance.md)。",
        "doc": "原理、与官方实现一致之处、不同之处",
        "doc_intro": "以下内容摘自层文件的模块文档字符串（英文原文）：",
        "api": "类的说明见 [API 参考](../api.md)。",
        "no_cost": "没有任何随包配置包含该层。",
        "maps": "注意力图",
        "maps_intro": "演示（demo）中微调后的 `yolov8n-{lower}.yaml`（随机种子 0）在一张演示验证集图片上的 "
                      "`yolo-attn show` 结果（由 `bash scripts/main.sh` 之后运行 `python scripts/docs_pictures.py` "
                      "生成；训练过的权重，一台机器上的一次运行）。该层位于 SPPF 之后，所以图是 P5 的网格；图下方的数字"
                      "说明注意力图离均匀分布有多远、不同查询点的图相差多少（图中文字为英文）。",
        "no_map": "{name} 没有可画的空间注意力图：它的权重只取决于通道（每个通道一个门控值，在所有位置上相同），"
                  "所以 `yolo-attn show` 会跳过它。",
        "no_maps": "暂无图片：先带上该层运行演示（`bash scripts/main.sh`），再运行 "
                   "`python scripts/docs_pictures.py`；也可以自己用 `yolo-attn show MODEL.pt IMAGE` 画出来。",
    },
}


def docstring_markdown(doc: str) -> str:
    """A module docstring (reST-ish, as the layer files write them) as Markdown."""
    doc = re.sub(r":(?:class|func|data|meth|attr):`~?([^`]+)`", r"`\1`", doc)
    doc = doc.replace("``", "`")
    return re.sub(r"^\* ", "- ", doc, flags=re.M)


def module_doc(spec: LayerSpec) -> str:
    return inspect.getdoc(sys.modules[spec.cls.__module__]) or ""


def layer_file(spec: LayerSpec) -> str:
    return Path(sys.modules[spec.cls.__module__].__file__).resolve().relative_to(ROOT).as_posix()


def config_rows(page: str, name: str) -> str:
    """The rows of the measured config table (``config-table`` block of ``page``) that hold layer ``name``, under
    their table's header; "" when none does."""
    if "<!-- config-table:start -->" not in page:
        return ""
    section = page.split("<!-- config-table:start -->", 1)[1].split("<!-- config-table:end -->", 1)[0]
    out = []
    for block in section.strip().split("\n\n"):
        lines = block.strip().splitlines()
        rows = [ln for ln in lines[2:] if f"| {name} |" in ln or "(stock)" in ln]
        if any(f"| {name} |" in ln for ln in rows):
            out.append("\n".join(lines[:2] + rows))
    return "\n\n".join(out)


PICTURES = DOCS / "assets" / "show"  # scripts/docs_pictures.py draws them from a demo run


def maps_section(spec: LayerSpec, w: dict) -> list[str]:
    """The attention-map picture of a layer page, when ``scripts/docs_pictures.py`` has drawn one, else how to."""
    picture = PICTURES / f"{spec.name.lower()}.png"
    if not callable(getattr(spec.cls, "attention_maps", None)):
        return [w["no_map"].format(name=spec.name)]
    if not picture.is_file():
        return [w["no_maps"]]
    return [w["maps_intro"].format(lower=spec.name.lower()), "",
            f"![{spec.name}: yolo-attn show](../../assets/show/{picture.name})"]


def layer_page(spec: LayerSpec, lang: str, placements_page: str = "") -> str:
    w = PAGE[lang]
    other = ", ".join(f"`{n}`" for n in (*spec.aliases, *spec.official)) or "-"
    cost = measured(config_rows(placements_page, spec.name), lang)
    defaults = "\n".join([f"| {' | '.join(GRIDS)} |", "|" + "---|" * len(GRIDS),
                          "| " + " | ".join(f"`{spec.default_args(g)}`" for g in GRIDS.values()) + " |"])
    parts = [
        f"# {spec.name}: {spec.summary}", "",
        f"<!-- {w['generated'].format(file=layer_file(spec))} -->", "",
        "| | |", "|---|---|",
        f"| {w['name']} | `{spec.name}` |", f"| {w['also']} | {other} |", f"| {w['summary']} | {spec.summary} |",
        f"| {w['paper']} | {spec.paper} |", f"| {w['code']} | {spec.official_code} |",
        f"| {w['file']} | `{layer_file(spec)}` |", "",
        f"## {w['args']}", "", w["args_intro"].format(name=spec.name), "", "```yaml",
        f"- {_row(spec, spec.default_args(GRIDS['P5']))[1:-1]}", "```", "",
        *([w["args_doc"], ""] if "args_doc" in w else []), *[f"- {part}" for part in _arg_parts(spec, lang)], "",
        f"## {w['defaults']}", "", w["defaults_intro"], "", defaults, "",
        f"## {w['cost']}", "", w["cost_intro"].format(name=spec.name), "", cost or w["no_cost"], "",
        f"## {w['maps']}", "", *maps_section(spec, w), "",
        f"## {w['doc']}", "", w["doc_intro"], "", docstring_markdown(module_doc(spec)), "", w["api"], "",
    ]
    return "\n".join(parts)


BENCH_SKIP = ("Latency against feature-map size",)  # sections with pictures, which live next to BENCHMARKS.md


def benchmark_tables(text: str) -> str:
    """``BENCHMARKS.md`` from its first section on, headings one level down, without its pictures and markers."""
    body = text.split("\n## ", 1)[1]
    sections = [s for s in ("## " + body).split("\n## ") if not s.lstrip("# ").startswith(BENCH_SKIP)]
    out = "\n## ".join(sections)
    out = re.sub(r"^<!-- /?[\w-]+ -->\n?", "", out, flags=re.M)
    return re.sub(r"^(#+) ", r"#\1 ", out, flags=re.M).strip()


# The fixed words of the measured tables in other languages (scripts/config_table.py, coverage_table.py and
# deploy_table.py write them in English): (pattern, replacement), applied in order, line by line. What the tables
# quote from a record (an error, the reason a case or format is not run) stays as recorded, under a label saying so.
MEASURED_WORDS = {
    "zh": [
        # config-table (the Model names and placements page; the layer pages' Cost)
        (r"^\| config \| layer \| placement \|", "| 配置文件 | 层 | 插入位置 |"),
        (r"\| params (\w+) \|", r"| 参数量 \1 |"),
        (r" \(stock\)", "（原版）"),
        (r" \(rows? ([\d, ]+)\)", lambda m: f"（第 {m.group(1).replace(', ', '、')} 行）"),
        # coverage-table
        (r"^(\d+) of (\d+) cases pass \(", r"\2 个用例中 \1 个通过（"),
        (r"(\d+) stock YAMLs of the installed Ultralytics × ", r"已安装的 Ultralytics 中的 \1 个原版 YAML × "),
        (r"every placement with the (\d+) layers rotated over the cases", r"每个插入位置，\1 个层在各用例间轮换"),
        (r"(\d+) layers × every placement", r"\1 个层 × 每个插入位置"),
        (r"; smallest scale, forward at (\S+) and (\S+), P6 models (\S+)\)\.$",
         r"；最小缩放尺度，前向输入 \1 和 \2，P6 模型 \3）。"),
        (r"^\| stock YAML \| placements \| cases ok \|$", "| 原版 YAML | 插入位置 | 通过用例 |"),
        (r"^Exceptions:$", "例外（原因照录英文原文）："),
        (r"^- (`[^`]+`) \((\d+) cases?\): ", r"- \1（\2 个用例）："),
        # deploy-table (the Deployment page)
        (r"^\| format \|", "| 格式 |"),
        (r"RT-DETR-l, every layer after AIFI", "RT-DETR-l，AIFI 之后接入全部注意力层"),
        (r"\| runtime tested \|$", "| 测试所用的运行时 |"),
        (r"stock RT-DETR fails too ¹", "原版 RT-DETR 同样失败 ¹"),
        (r"\bnot measured\b", "未测"),
        (r"\bexport fails\b", "导出失败"),
        (r"\bexports ✓ · spec ✓", "导出 ✓ · 模型规格 ✓"),
        (r"\bexports ✓ · does not run", "导出 ✓ · 无法运行"),
        (r"\bbox corr ", "框相关系数 "),
        (r"\*\*no parity\*\*", "**结果不一致**"),
        (r", f32 precision hint \|", "，f32 精度提示 |"),
        (r", and `yolo predict` \|", "，以及 `yolo predict` |"),
        (r" interpreter \|$", " 解释器 |"),
        (r"none: spec read back on Linux; predicts on macOS only", "无：在 Linux 上读回模型规格；仅在 macOS 上能推理"),
        (r"^¹ ", "¹ 测试记录的原因（英文原文）："),
    ],
}


def measured(text: str, lang: str) -> str:
    """A measured table (config, coverage or deployment) with its fixed English words in ``lang``."""
    for pattern, new in MEASURED_WORDS.get(lang, ()):
        text = re.sub(pattern, new, text, flags=re.M)
    return text


MEASURED = (("<!-- config-table:start -->", "<!-- config-table:end -->", "placements.md"),
            ("<!-- coverage-table:start -->", "<!-- coverage-table:end -->", "placements.md"))


def block(text: str, start: str, end: str) -> str:
    return text.split(start, 1)[1].split(end, 1)[0].strip("\n")


def docs_files(specs: dict[str, LayerSpec] | None = None) -> dict[Path, str]:
    """Every generated file of the README and the docs site -> its text as generated now (the files it rewrites)."""
    import json

    from deploy_table import RESULTS, table as deploy_table
    specs = builtin_specs() if specs is None else specs
    out = {README: render(README.read_text(encoding="utf-8"), specs)}
    if README_ZH.exists():
        out[README_ZH] = render(README_ZH.read_text(encoding="utf-8"), specs, "zh", where=README_ZH.name)
    en = {p.relative_to(DOCS / "en"): p.read_text(encoding="utf-8") for p in sorted((DOCS / "en").rglob("*.md"))}
    for lang in LANGS:
        for rel in sorted({*en, *(p.relative_to(DOCS / lang) for p in (DOCS / lang).rglob("*.md"))}):
            path = DOCS / lang / rel
            if rel.parts[0] == "layers" and rel.name != "index.md":
                continue  # written whole below
            if not path.exists():
                continue  # a page missing in one language: mkdocs build --strict says so (tests/test_docs.py)
            text = path.read_text(encoding="utf-8")
            text = render(text, specs, lang, required=(), where=str(path))
            if "<!-- deploy-table -->" in text:
                text = replace_between(text, "<!-- deploy-table -->", "<!-- /deploy-table -->",
                                       measured(deploy_table(json.loads(RESULTS.read_text())), lang), where=str(path))
            if "<!-- benchmarks -->" in text:
                text = replace_between(text, "<!-- benchmarks -->", "<!-- /benchmarks -->",
                                       benchmark_tables((ROOT / "BENCHMARKS.md").read_text(encoding="utf-8")),
                                       where=str(path))
            if lang != "en":
                for start, end, page in MEASURED:
                    if start in text and rel.as_posix() == page:
                        text = replace_between(text, start, end, measured(block(en[rel], start, end), lang),
                                               where=str(path))
            out[path] = text
        placements = en.get(Path("placements.md"), "")
        pages = {DOCS / lang / "layers" / f"{s.name.lower()}.md": layer_page(s, lang, placements) for s in specs.values()}
        for stale in (DOCS / lang / "layers").glob("*.md"):
            if stale.name != "index.md" and stale not in pages:
                out[stale] = None  # a layer that is no longer registered: its page goes
        out.update(pages)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="write nothing; exit 1 if the README or a docs page is not what the registry and the "
                         "recorded results give")
    args = ap.parse_args(argv)
    stale = []
    for path, new in docs_files().items():
        old = path.read_text(encoding="utf-8") if path.exists() else None
        if new == old:
            continue
        stale.append(path.relative_to(ROOT).as_posix())
        if args.check:
            continue
        if new is None:
            path.unlink()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(new, encoding="utf-8")
    if args.check and stale:
        print("generated blocks out of date in " + ", ".join(stale) + ": run python scripts/readme_tables.py",
              file=sys.stderr)
        return 1
    if not args.check:
        print("\n".join(f"wrote {p}" for p in stale) or "up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
