"""The ``yolo-attn`` command: every sub-command answers ``--help`` with its options, in plain text (no
reStructuredText markup); ``yolo-attn --help`` (and ``layers --help``, ``data --help``, ``version --help``) import no
torch; ``yolo-attn layers`` says what each argument means, from the layer's docstring."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from conftest import ROOT
from yolo_attn import cli
from yolo_attn.layers import REGISTRY, builtin_specs

MARKUP = re.compile(r"``|:(?:func|class|data|meth|mod|attr):`")
HELP = {  # sub-command -> options its help must list
    "layers": ["NAME"],
    "insert": ["--layer", "--at", "--args", "-o"],
    "check": ["--scales", "--imgsz", "--rect"],
    "demo": ["--epochs", "--models", "--seeds", "--scratch"],
    "compare": ["--data", "--epochs", "--seeds"],
    "show": ["--imgsz", "--points", "--out"],
    "bench": ["--layers", "--device", "--official", "--models", "--compile", "--json"],
    "data": ["shapes", "--out", "--task"],
    "version": [],
}


def _run(*args: str, code: str = "") -> subprocess.CompletedProcess:
    """``yolo-attn ARGS`` in a fresh interpreter, then ``code`` (e.g. an assertion on ``sys.modules``)."""
    prog = (f"import sys\nfrom yolo_attn import cli\ntry:\n    rc = cli.main({list(args)!r})\nexcept SystemExit as e:\n"
            f"    rc = e.code\nsys.stdout.flush()\n{code}\nsys.exit(rc)\n")
    return subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_every_command_is_tested():
    assert set(HELP) == {*cli.COMMANDS, "layers", "data", "version"}


@pytest.mark.parametrize("command", sorted(HELP))
def test_help_lists_the_options_in_plain_text(command, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: yolo-attn {command}"), out[:200]
    for option in ["-h, --help", *HELP[command]]:
        assert option in out, (command, option, out)
    assert not MARKUP.search(out), (command, MARKUP.search(out), out)


def test_data_shapes_help_is_its_own():
    """``yolo-attn data --help`` names ``shapes`` with its options; ``data shapes --help`` is the full parser."""
    with pytest.raises(SystemExit) as e:
        cli.main(["data", "shapes", "--help"])
    assert e.value.code == 0


def test_top_level_help_and_light_helps_import_no_torch():
    no_torch = "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))[:5]"
    for args in (["--help"], [], ["layers", "--help"], ["data", "--help"], ["version", "--help"], ["version"]):
        proc = _run(*args, code=no_torch)
        assert proc.returncode == 0, (args, proc.stderr[-2000:])
    top = _run("--help").stdout
    assert all(f"yolo-attn {c}" in top for c in HELP), top
    assert not MARKUP.search(top), top


def test_layers_says_what_each_argument_means(capsys):
    assert cli.main(["layers"]) == 0
    out, ultralytics = capsys.readouterr().out.split("\nUltralytics' own attention modules")
    assert re.findall(r"^(Ultralytics\w+) \[", ultralytics, re.M) == [
        "UltralyticsChannelAttention", "UltralyticsSpatialAttention", "UltralyticsCBAM"], ultralytics
    assert "UltralyticsCBAM [kernel_size=7]  Ultralytics' CBAM" in ultralytics
    lska = r"^LSKA  \[k_size=7\]  registered\n(?:      .*\n)*      arguments:\n        k_size  \S"
    assert re.search(lska, out, re.M), out
    blocks = [b for b in re.split(r"^(?=\S)", out, flags=re.M) if b]
    assert {b.split()[0] for b in blocks} >= set(builtin_specs()), out  # every shipped layer
    for block in blocks:
        assert "      arguments:" in block, block
        spec = REGISTRY[block.split()[0]]
        if spec.builtin:  # the paper and the official code it matches
            assert f"      {spec.paper}; official code: {spec.official_code.replace('`', '')}\n" in block, block
        assert "not described" not in block, block  # every shipped layer documents its arguments
        assert not MARKUP.search(block), block


def test_layers_filters_by_name_and_rejects_unknown_names(capsys):
    assert cli.main(["layers", "shsa"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("SHSA ") and "\nCGA" not in out
    with pytest.raises(SystemExit) as e:
        cli.main(["layers", "NOPE"])
    assert e.value.code == 2 and "NOPE" in capsys.readouterr().err


def test_argument_docs_reads_the_args_section():
    class Block:
        """A block.

        Args:
            c1 (int): Input channels.
            k (int): Kernel size; ``k`` odd,
                at least 3 (see :func:`torch.nn.functional.conv2d`).

        Returns:
            nothing: not an argument.
        """

    assert cli.argument_docs(Block) == {"c1": "Input channels.",
                                        "k": "Kernel size; k odd, at least 3 (see torch.nn.functional.conv2d)."}
    assert cli.argument_docs(type("Bare", (), {})) == {}


def test_data_without_a_kind_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["data"])
    assert e.value.code == 2 and "usage: yolo-attn data" in capsys.readouterr().err
