"""The suite's own switches (tests/conftest.py): plain ``pytest`` is the fast run and skips the tests marked slow,
saying how to run them; ``--runslow`` runs everything; a ``-m`` marker expression decides by itself. Only tests
marked slow are ever skipped this way, a failure is reported as a failure, and doctests stay in the fast run.

The two hooks of tests/conftest.py are loaded into a pytest run on a generated test file in a fresh process (one
process, several runs: the heavy imports of conftest happen once).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from conftest import ROOT, SLOW_REASON

TESTS = '''
import pytest


def test_fast():
    pass


def test_fast_fails():
    assert False, "a failure of an unmarked test"


@pytest.mark.slow
def test_slow():
    pass


@pytest.mark.slow
def test_slow_fails():
    assert False, "a failure of a slow test"


@pytest.mark.parametrize("case", ["a", pytest.param("b", marks=pytest.mark.slow)])
def test_param(case):
    pass
'''

DOCTEST = '''
def twice(x):
    """
    >>> twice(2)
    4
    """
    return 2 * x
'''

CONFTEST = f'''
import importlib.util

_spec = importlib.util.spec_from_file_location("yolo_attn_suite_conftest", {str(ROOT / "tests" / "conftest.py")!r})
_repo = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_repo)
pytest_addoption = _repo.pytest_addoption
pytest_collection_modifyitems = _repo.pytest_collection_modifyitems
'''

RUNS = {
    "default": [],
    "runslow": ["--runslow"],
    "m-slow": ["-m", "slow"],
    "m-either": ["-m", "slow or not slow"],
    "m-not-slow": ["-m", "not slow"],
}

DRIVER = '''
import json, sys, pytest
base, out, runs = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
codes = {name: int(pytest.main([base, "-q", "-p", "no:cacheprovider", "--doctest-modules",
                                f"--junitxml={out}/{name}.xml", *args])) for name, args in runs.items()}
print(json.dumps(codes))
'''


def outcomes(xml: Path) -> dict[str, tuple[str, str]]:
    """test name -> (outcome, message) from a JUnit XML report; a failure's message is its assertion's text."""
    got = {}
    for case in ET.parse(xml).getroot().iter("testcase"):
        kind = next((c for c in case if c.tag in ("skipped", "failure", "error")), None)
        message = "" if kind is None else kind.get("message", "")
        if kind is not None and kind.tag == "failure":
            message = message.split("AssertionError: ", 1)[-1].split("\n")[0]
        got[case.get("name")] = ("passed", "") if kind is None else (kind.tag, message)
    return got


def test_slow_tests_are_skipped_by_default_and_run_with_runslow_or_a_marker_expression(tmp_path):
    work = tmp_path / "suite"
    work.mkdir()
    (work / "pytest.ini").write_text("[pytest]\nmarkers =\n    slow: end-to-end\n")
    (work / "conftest.py").write_text(CONFTEST)
    (work / "test_mix.py").write_text(TESTS)
    (work / "helpers.py").write_text(DOCTEST)
    out = tmp_path / "xml"
    out.mkdir()
    env = {**os.environ, "YOLO_CONFIG_DIR": str(tmp_path / "ucfg"), "YOLO_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", DRIVER, str(work), str(out), json.dumps(RUNS)], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    codes = json.loads(proc.stdout.strip().splitlines()[-1])
    assert codes == {name: 1 for name in RUNS}, codes  # every run has a failing test: none of them hides it
    got = {name: outcomes(out / f"{name}.xml") for name in RUNS}

    assert SLOW_REASON == "slow: end-to-end test; run with --runslow (the README's test command does)"
    skipped, ok = ("skipped", SLOW_REASON), ("passed", "")
    failed = ("failure", "a failure of an unmarked test")
    failed_slow = ("failure", "a failure of a slow test")
    doctest = "helpers.twice"
    assert got["default"] == {doctest: ok, "test_fast": ok, "test_fast_fails": failed, "test_slow": skipped,
                              "test_slow_fails": skipped, "test_param[a]": ok, "test_param[b]": skipped}
    everything = {doctest: ok, "test_fast": ok, "test_fast_fails": failed, "test_slow": ok,
                  "test_slow_fails": failed_slow, "test_param[a]": ok, "test_param[b]": ok}
    assert got["runslow"] == everything
    assert got["m-either"] == everything
    assert got["m-slow"] == {"test_slow": ok, "test_slow_fails": failed_slow, "test_param[b]": ok}
    assert got["m-not-slow"] == {doctest: ok, "test_fast": ok, "test_fast_fails": failed, "test_param[a]": ok}


FAKE_PYTHON = """#!/usr/bin/env bash
echo "$*" >> "$(dirname "$0")/../../pip.log"
"""


def _setup(tmp_path, *args: str) -> list[str]:
    """scripts/setup_env.sh run in a copy of the checkout's scripts with a stand-in .venv/bin/python that logs the
    pip commands it is given: what each mode installs, without installing anything."""
    work = tmp_path / "checkout"
    (work / "scripts").mkdir(parents=True, exist_ok=True)
    (work / "scripts" / "setup_env.sh").write_text((ROOT / "scripts" / "setup_env.sh").read_text())
    fake = work / ".venv" / "bin" / "python"
    fake.parent.mkdir(parents=True, exist_ok=True)
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    log = work / "pip.log"
    log.unlink(missing_ok=True)
    proc = subprocess.run(["bash", str(work / "scripts" / "setup_env.sh"), *args], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return log.read_text().splitlines()


def test_main_job_installs_what_the_demo_needs_and_the_test_command_the_rest(tmp_path):
    """The README's main command (scripts/main.sh) sets up the demo's environment only: the package and its
    requirements; the test command (scripts/test.sh, which CI runs) adds the test, deployment and docs extras and the
    older Ultralytics releases of the contract tests."""
    demo = _setup(tmp_path, "demo")
    assert demo == ["-m pip install -q -c constraints.txt -e ."], demo
    test = _setup(tmp_path, "test")
    assert test[0] == "-m pip install -q -c constraints.txt -e .[test,deploy,docs]", test
    assert [line.split()[-1] for line in test[1:]] == [f"ultralytics=={v}" for v in ("8.1.47", "8.2.103", "8.3.240")]
    assert all("--no-deps --target .venv/ultralytics-versions/" in line for line in test[1:]), test
    assert _setup(tmp_path) == test  # the default is the whole set-up (what conftest's hints ask for)
    main, tests = ((ROOT / "scripts" / f).read_text() for f in ("main.sh", "test.sh"))
    assert "bash scripts/setup_env.sh demo\n" in main and "bash scripts/setup_env.sh test\n" in tests
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text()
    wrong = subprocess.run(["bash", str(ROOT / "scripts" / "setup_env.sh"), "everything"], capture_output=True,
                           text=True, timeout=60)
    assert wrong.returncode == 2 and "usage: bash scripts/setup_env.sh [demo|test]" in wrong.stderr
