"""The docs site (``docs/``, ``mkdocs.yml``) says what the code does, in both languages.

* Its generated parts — the registry tables, the per-layer pages, the deployment table, the benchmark tables, the
  measured tables' Chinese copies — are what ``scripts/readme_tables.py`` gives now (a new layer file fails here
  until the script has run).
* ``mkdocs build --strict`` builds both languages offline: no broken link, no page missing in either language.
* Every shell command and Python snippet on the Quickstart and Your-own-modules pages is run or checked, by the
  rules the Quickstart page states (the own-modules example: ``tests/test_readme.py``).
* Every error message the package raises through its own exception classes has an entry on the Troubleshooting page
  of both languages: each raise site's message, its literal parts in order with anything between them, must match
  an example message written in code on the page.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import readme_tables
from conftest import ROOT, run_py

DOCS = ROOT / "docs"
LANGS = ("en", "zh")


def page(lang: str, name: str) -> str:
    return (DOCS / lang / name).read_text(encoding="utf-8")


def fenced(text: str, lang: str) -> list[str]:
    """The bodies of the ``lang`` code blocks of a Markdown text."""
    return re.findall(rf"^```{lang}\n(.*?)^```", text, re.S | re.M)


# --- generated, complete -------------------------------------------------------------------------------------------

def test_generated_blocks_and_layer_pages_are_current():
    stale = [p.relative_to(ROOT).as_posix() for p, text in readme_tables.docs_files().items()
             if (p.read_text(encoding="utf-8") if p.exists() else None) != text]
    assert not stale, f"out of date: {stale}; run python scripts/readme_tables.py"


def test_every_page_exists_in_both_languages_and_every_layer_has_its_page():
    pages = {lang: {p.relative_to(DOCS / lang).as_posix() for p in (DOCS / lang).rglob("*.md")} for lang in LANGS}
    assert pages["en"] == pages["zh"], pages["en"] ^ pages["zh"]
    layers = {f"layers/{name.lower()}.md" for name in readme_tables.builtin_specs()}
    assert layers <= pages["en"]
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8").split("\nnav:", 1)[1]
    listed = set(re.findall(r":\s*(\S+\.md)", nav))
    assert listed | layers == pages["en"], "every page is in the nav (the layer pages hang off layers/index.md)"


def test_mkdocs_build_strict_both_languages(tmp_path):
    """Offline, into a temporary directory; ~3 s. Needs the docs extra (pip install ".[docs]"; the test set-up
    installs it)."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "YOLO_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for lang in ("", "zh/"):
        for name in ("quickstart", "layers", "troubleshooting", "api", *(f"layers/{n.lower()}" for n in
                                                                         readme_tables.builtin_specs())):
            assert (tmp_path / "site" / f"{lang}{name}" / "index.html").exists(), f"{lang}{name}"


# --- the Quickstart's commands and snippets ------------------------------------------------------------------------

def commands(text: str) -> list[str]:
    """Every command line of the bash blocks (comments dropped, continuation lines joined)."""
    out = []
    for body in fenced(text, "bash"):
        for line in body.replace("\\\n", " ").splitlines():
            line = line.split("  #", 1)[0].split(" # ", 1)[0].strip()
            if line and not line.startswith("#"):
                out.append(line)
    return out


def test_quickstart_code_is_the_same_in_both_languages():
    for kind in ("bash", "python"):
        en, zh = (fenced(page(lang, "quickstart.md"), kind) for lang in LANGS)
        strip = lambda blocks: [re.sub(r"\s+#.*", "", b) for b in blocks]  # noqa: E731 (comments may be translated)
        assert strip(en) == strip(zh), kind


def _check_pip(words: list[str]) -> None:
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    assert words[:2] == ["pip", "install"], words
    for i, w in enumerate(words):
        if w == "-c":
            assert (ROOT / words[i + 1]).is_file(), words[i + 1]
        m = re.fullmatch(r"\.\[([\w,]+)\]", w)
        if m:
            assert set(m.group(1).split(",")) <= extras, w


def _check_yolo(words: list[str]) -> None:
    from ultralytics.cfg import MODES, TASKS, get_cfg, smart_value

    import yolo_attn

    rest = words[1:]
    if rest[0] in TASKS:
        rest = rest[1:]
    assert rest[0] in MODES, words
    overrides = dict(w.split("=", 1) for w in rest[1:])
    get_cfg(overrides={k: smart_value(v) for k, v in overrides.items()})  # Ultralytics' own key and type check
    for key in ("model", "pretrained"):
        name = overrides.get(key, "")
        if name.endswith(".yaml"):
            assert Path(yolo_attn.cfg_path(name)).is_file(), name


def test_quickstart_shell_commands_are_valid():
    seen = set()
    for line in commands(page("en", "quickstart.md")):
        words = shlex.split(line)
        seen.add(words[0])
        if words[0] == "pip":
            _check_pip(words)
        elif words[0] == "bash":
            assert (ROOT / words[1]).is_file(), words
            if words[1].endswith("setup_env.sh"):
                assert words[2:] in ([], ["demo"], ["test"]), words
        elif words[0] == "yolo":
            _check_yolo(words)
        elif words[0] == "yolo-attn":
            long = words[1] in ("demo", "compare", "show", "bench")
            argv = [words[1], "--help"] if long else words[1:]
            proc = subprocess.run([sys.executable, "-m", "yolo_attn.cli", *argv], capture_output=True, text=True,
                                  timeout=300, cwd=ROOT)
            assert proc.returncode == 0, (line, proc.stderr[-2000:])
            assert proc.stdout.strip(), line
        else:
            raise AssertionError(f"no rule for this Quickstart command (add one to tests/test_docs.py): {line}")
    assert {"pip", "bash", "yolo", "yolo-attn"} <= seen


SUBSTITUTIONS = (  # what the Quickstart's note says the test changes in its Python snippets
    ('data="your.yaml"', "data={data!r}"), ("epochs=100", "epochs=1"), ("imgsz=640", "imgsz=64"),
    ('"yolov8n.pt"', "{weights!r}"),
)


@pytest.mark.slow
def test_quickstart_python_snippets_run(tmp_path, shapes_data):
    weights = tmp_path / "yolov8n.pt"
    run_py(f"from ultralytics import YOLO\nYOLO('yolov8n.yaml').save({str(weights)!r})", cwd=tmp_path)
    snippets = fenced(page("en", "quickstart.md"), "python")
    assert snippets
    for code in snippets:
        for old, new in SUBSTITUTIONS:
            code = code.replace(old, new.format(data=str(shapes_data), weights=str(weights)))
        assert "your.yaml" not in code and "epochs=100" not in code, code
        code = code.replace("model.train(", "model.train(workers=0, plots=False, project=" + repr(str(tmp_path)) + ", ")
        out = run_py(code, cwd=tmp_path).stdout
        assert "LSKA" in out, out[-2000:]


# --- Troubleshooting covers every error the package raises ---------------------------------------------------------

PACKAGE = ROOT / "yolo_attn"
# Raise sites whose message is assembled at run time from a list: the literal text a user reads first.
ASSEMBLED = {("yolo_attn/names.py", "ConfigNameError"): ["is not a valid yolo_attn config name"]}


def _fragments(node: ast.AST) -> list[str] | None:
    """The literal parts of a message expression, in order; None when it has none to read."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        return [v.value for v in node.values if isinstance(v, ast.Constant)]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _fragments(node.left), _fragments(node.right)
        return None if left is None and right is None else (left or []) + (right or [])
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
        return _fragments(node.func.value)
    if isinstance(node, ast.IfExp):
        return []  # a choice of texts: one of them, anything
    return None


def error_sites() -> list[tuple[str, int, str, list[str]]]:
    """(file, line, exception class, literal parts of its message) of every construction of the package's own
    exception classes (the classes ending in Error that it defines)."""
    trees = {p: ast.parse(p.read_text(encoding="utf-8")) for p in sorted(PACKAGE.rglob("*.py"))}
    own = {n.name for t in trees.values() for n in ast.walk(t) if isinstance(n, ast.ClassDef) and n.name.endswith("Error")}
    sites = []
    for path, tree in trees.items():
        rel = path.relative_to(ROOT).as_posix()
        for n in ast.walk(tree):
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in own and n.args:
                parts = _fragments(n.args[0])
                if parts is None:
                    parts = ASSEMBLED.get((rel, n.func.id))
                    assert parts, f"{rel}:{n.lineno}: add the message's literal text to ASSEMBLED in tests/test_docs.py"
                sites.append((rel, n.lineno, n.func.id, parts))
    return sites


def _pattern(parts: list[str]) -> re.Pattern:
    words = [re.sub(r"\\\s+|\s+", r"\\s+", re.escape(" ".join(p.split()))) for p in parts if p.strip()]
    return re.compile(r".*?".join(words), re.S)


def code_texts(text: str) -> list[str]:
    spans = re.findall(r"`([^`\n]+)`", re.sub(r"^```.*?^```", "", text, flags=re.S | re.M))
    return spans + fenced(text, "text")


def test_every_error_message_has_a_troubleshooting_entry():
    sites = error_sites()
    assert len(sites) >= 30 and {s[2] for s in sites} >= {"LayerArgumentError", "UnknownLayerError",
                                                         "ConfigNameError", "IntegrationError",
                                                         "CheckpointImportError", "DeclaredImportError"}
    for lang in LANGS:
        examples = [" ".join(t.split()) for t in code_texts(page(lang, "troubleshooting.md"))]
        missing = [f"{f}:{line} {cls}" for f, line, cls, parts in sites
                   if not any(_pattern(parts).search(e) for e in examples)]
        assert not missing, f"docs/{lang}/troubleshooting.md has no example message for {missing}"


def test_the_matching_tells_messages_apart():
    """A message's literal parts must all appear, in order: a near miss is no entry."""
    pat = _pattern(["", ": input channels c1=", " are not divisible by ", "=", "; use a ", " that divides "])
    assert pat.search("CGA: input channels c1=32 are not divisible by num_heads=3; use a num_heads that divides 32")
    assert not pat.search("CGA: input channels c1=32 are not divisible by num_heads=3")
