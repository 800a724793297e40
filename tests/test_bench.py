"""``yolo-attn bench`` (yolo_attn.bench: the measuring, a plain table and JSON) and the project's report writer
(scripts/bench_report.py: BENCHMARKS.md), run on CPU: the official counterparts the layers declare (the *official*
column is the official module with our weights, so it must give our outputs), the in-process runners with
``device="cpu"`` (the functions ``--device cuda`` calls), the command's table and JSON, and the GPU section of
BENCHMARKS.md (``--from-json``, the placeholder)."""

from __future__ import annotations

import copy
import json
import shutil
import types

import pytest
import torch

import bench_report
from conftest import BUILTIN, ROOT, randomize_, rel_err
from yolo_attn import bench
from yolo_attn.configs import insert
from yolo_attn.layers import fuse_layers, textbook

OFFICIAL_FILE = """
# a file of official classes under their official names (here: the layer files' restatements)
from yolo_attn.layers.cga import LocalWindowAttentionReference as LocalWindowAttention
from yolo_attn.layers.fla import FocusedLinearAttentionReference
from yolo_attn.layers.lska import LSKAReference as LSKA
from yolo_attn.layers.shsa import SHSAReference as SHSA
from yolo_attn.layers.se import SqueezeExcitationReference as SqueezeExcitation
from yolo_attn.layers.eca import ECAReference as eca_layer
from yolo_attn.layers.simam import SimAMReference as simam_module
from yolo_attn.layers.coordatt import CoordAttReference as CoordAtt
from yolo_attn.layers.ema import EMAReference as EMA
from yolo_attn.layers.triplet import TripletAttentionReference as TripletAttention
from yolo_attn.layers.lskblock import LSKblockReference as LSKblock
from yolo_attn.layers.irmb import iRMBReference as iRMB
from yolo_attn.layers.cbam import CBAMReference as CBAM
from yolo_attn.layers.bra import BiLevelRoutingAttentionReference as BiLevelRoutingAttention


class FocusedLinearAttention(FocusedLinearAttentionReference):  # the official interface: tokens on a square grid
    def forward(self, x, mask=None):
        B, N, C = x.shape
        side = int(N ** 0.5)
        return super().forward(x.transpose(1, 2).reshape(B, C, side, side)).flatten(2).transpose(1, 2)
"""
SMALL = ("n", "P5", 32, 8)  # (model, level, channels, side): a small map, every layer's per-map defaults
FAST = dict(min_reps=2, max_reps=2, budget_s=0.0)
TINY_DETECTOR = {  # a minimal detector: what the model runner needs (a Detect head, Ultralytics' loss), in a second
    "nc": 3,
    "backbone": [[-1, 1, "Conv", [16, 3, 2]], [-1, 1, "Conv", [32, 3, 2]], [-1, 1, "Conv", [32, 3, 2]],
                 [-1, 1, "SPPF", [32, 5]]],
    "head": [[[-1], 1, "Detect", ["nc"]]],
}


@pytest.fixture(scope="module")
def official():
    return bench.load_official(bench.REFERENCE)


@pytest.fixture(scope="module")
def official_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("official") / "official_classes.py"
    path.write_text(OFFICIAL_FILE)
    return bench.load_official(path)


@pytest.mark.parametrize("source", ["reference", "file"])
@pytest.mark.parametrize("name", BUILTIN)
def test_official_counterpart_gives_our_output(name, source, official, official_file):
    """The official column, built with our randomised weights (loaded strictly) — from the layer file's restatement
    (``spec.reference``, the default) or from a file of official classes through the layer's ``official_module``
    declaration — gives our output in eval mode: it times the same function. For the residual layers the attention
    branch is compared on its own (the residual would hide it)."""
    c, side = 32, 14  # CGA: 2×2 windows of 7; FLA: window = the map's side (the official grid); LSKA k = 23
    layer = randomize_(bench.make_layer(name, c, side), seed=3).eval()
    counterpart, note = bench.official_counterpart(name, layer, official if source == "reference" else official_file)
    assert counterpart is not None, note
    assert any(type(m).__name__.endswith("Reference") or type(m).__module__.startswith("yolo_attn_official")
               for m in counterpart.modules()), "not the official classes"
    counterpart.eval()
    x = torch.randn(2, c, side, side, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, theirs = layer(x), counterpart(x)
    assert theirs.shape == x.shape
    assert (theirs - x).abs().max() > 1e-2, "the branch is ~0: the comparison would be vacuous"
    assert rel_err(ours - x, theirs - x) <= 1e-5


def test_official_counterpart_reports_what_it_cannot_build():
    layer = bench.make_layer("SHSA", 32, 8)
    module, note = bench.official_counterpart("SHSA", layer, types.SimpleNamespace())  # no official classes in it
    assert module is None and "not built" in note and "AttributeError" in note


@pytest.mark.slow  # a benchmark run of two layers (~20 s)
def test_inprocess_layer_rows_have_all_three_variants(official):
    """The runner ``--device cuda`` uses (every row in this process), with device="cpu", each shipped layer at one
    small shape: rows with fast, textbook and official timings and peaks."""
    layers = ("CGA", "SHSA")  # the runner is the same for every layer; each layer's counterpart: the parity test
    seen = []  # what a run stopped by a time limit has kept: the rows so far, after each row
    rows = bench.run_layers_inprocess("cpu", [SMALL], ["fp32"], layers, cases=((1, "infer"), (2, "train")),
                                      official=official, max_textbook_gb=1.0, log=lambda s: None,
                                      on_row=lambda so_far: seen.append(list(so_far)), **FAST)
    assert [len(s) for s in seen] == [1, 2, 3, 4] and seen[-1] == rows
    assert [(r.layer, r.batch, r.mode) for r in rows] == [(n, b, m) for n in layers for b, m in ((1, "infer"),
                                                                                                  (2, "train"))]
    for r in rows:
        assert isinstance(r, bench.OfficialLayerRow) and r.device == "cpu", r
        for variant in ("fast", "textbook", "official"):
            assert getattr(r, f"{variant}_s") > 0 and len(getattr(r, f"{variant}_samples")) == 2, (r, variant)
            assert isinstance(getattr(r, f"{variant}_peak"), int), (r, variant)
        assert r.official_ratio == r.fast_s / r.official_s and not r.official_note, r


def test_official_skipped_with_the_textbook_when_too_large(official):
    row = bench.measure_layer("cpu", "fp32", *SMALL[:2], 32, 16, "SHSA", 1, "infer", max_textbook_gb=0.0,
                              official=official, **FAST)
    assert row.textbook_s is None and row.official_s is None and row.fast_s > 0
    assert row.note.startswith("textbook and official not run")


def test_a_textbook_that_runs_the_fast_code_is_not_skipped_for_size():
    """FLA's textbook form is its fast path (linear attention: no score matrix to materialise), so the quadratic
    estimate of its reference does not skip it; the official (here the quadratic reference) still is skipped."""
    row = bench.measure_layer("cpu", "fp32", *SMALL[:2], 32, 16, "FLA", 1, "infer", max_textbook_gb=0.0, **FAST)
    assert row.same_code is True and row.textbook_s > 0 and row.note == ""


@pytest.mark.parametrize("name, c, side, batch, mode, same", [
    ("SE", 64, 20, 2, "infer", True),  # no attention form: textbook() changes nothing, no BatchNorm to fold
    ("LSKA", 64, 20, 2, "train", True),
    ("TripletAttention", 32, 20, 1, "infer", False),  # inference folds its BatchNorm into the convolutions
    ("TripletAttention", 32, 20, 1, "train", True),  # training does not
    ("SHSA", 64, 80, 1, "infer", False),  # SDPA against the explicit N×N matrix
    ("BRA", 256, 20, 1, "infer", True),  # 9×36 per problem on CPU: the explicit form either way (heads_form)
    ("BRA", 64, 80, 1, "infer", False),  # 144×576 per problem: SDPA
])
def test_same_operators_tells_identical_code(name, c, side, batch, mode, same):
    """``same_operators`` (fake tensors at the row's shape) against what the layers do; where it says the code is the
    same, the real fast and textbook outputs are bit-identical at a small size."""
    assert bench.same_operators(name, c, side, batch, mode) is same
    if same:
        torch.manual_seed(0)
        layer, x = bench.make_layer(name, c, side).train(mode == "train"), torch.randn(batch, c, side, side)
        fast = copy.deepcopy(layer)
        if mode == "infer":
            fuse_layers(fast)
        with torch.no_grad(), textbook():
            expected = layer(x)
        with torch.no_grad():
            assert torch.equal(fast(x), expected)


def test_same_operators_is_unknown_for_a_layer_that_reads_values(monkeypatch):
    """A user's layer that reads a value (``.item()``) cannot run on fake tensors: unknown (None), so its rows are
    judged like those of a layer with a textbook form, and the benchmark still measures it."""
    class Reads(torch.nn.Module):
        def forward(self, x):
            return x * float(x.mean().item() > 0)

    monkeypatch.setattr(bench, "make_layer", lambda *args: Reads())
    monkeypatch.setattr(bench, "textbook_bytes", lambda *args: 0)  # (not registered: no declaration to read)
    assert bench.same_operators("Reads", 8, 4, 1, "infer") is None
    row = bench.measure_layer("cpu", "fp32", "n", "P5", 8, 4, "Reads", 1, "infer", max_textbook_gb=1.0, **FAST)
    assert row.same_code is None and row.textbook_s > 0


def _row(layer, speedup, same_code, mode="infer"):
    return bench.LayerRow("cpu", "fp32", layer, "yolov8n", "P5", 256, 20, 16, mode, fast_s=1.0, fast_iqr_s=0.0,
                          fast_peak=1, textbook_s=speedup, textbook_iqr_s=0.0, textbook_peak=1, reps=5,
                          same_code=same_code)


def test_rows_of_identical_code_are_not_judged():
    """The no-slower-than-textbook target judges rows whose textbook form differs; a row of identical code is listed
    apart with its speed-up range (the timing's noise), never re-run, and marked in the table."""
    same, faster = _row("SE", 0.5, True), _row("SHSA", 1.2, False)
    (target,) = [t for t in bench_report.evaluate_targets([same, faster], [], None) if "no slower" in t["target"]]
    assert target["met"] and target["figures"].startswith("1 of 1 measured rows at or above 1.00×")
    assert "not judged: 1 rows whose fast path and textbook form dispatch the same operators" in target["figures"]
    assert "SE" in target["figures"] and "0.50×–0.50×" in target["figures"]
    assert not bench_report._recheck(same) and bench_report._recheck(_row("SHSA", 0.5, False))
    (target,) = [t for t in bench_report.evaluate_targets([same, _row("SHSA", 0.5, False)], [], None)
                 if "no slower" in t["target"]]
    assert not target["met"] and "slower: SHSA" in target["figures"]
    table = "\n".join(bench_report._layer_table([same, faster]))
    assert "| 0.50× (same code) |" in table and "| 1.20× |" in table


def test_committed_cpu_report_is_what_the_code_renders(tmp_path):
    """BENCHMARKS.md (its CPU part) and the targets in benchmarks/results.json are what the code renders and judges
    from the recorded figures (``python scripts/bench_report.py --render-cpu`` after changing how they are judged)."""
    data = json.loads((ROOT / "benchmarks/results.json").read_text(encoding="utf-8"))
    report = tmp_path / "BENCHMARKS.md"
    shutil.copy(ROOT / "BENCHMARKS.md", report)
    resident = data["shsa_p3_resident"]
    bench_report._write_cpu(report, tmp_path / "benchmarks/latency.png", tmp_path / "results.json",
                            ROOT / bench_report.GPU_JSON, data["meta"], [bench.LayerRow(**r) for r in data["layers"]],
                            [bench.ModelRow(**r) for r in data["models"]], data["startup"],
                            resident and bench.LayerRow(**resident), log=lambda s: None)
    assert report.read_text(encoding="utf-8") == (ROOT / "BENCHMARKS.md").read_text(encoding="utf-8")
    assert json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))["targets"] == data["targets"]


def test_render_cpu_judges_recorded_rows_again(tmp_path):
    """``--render-cpu`` rewrites the report from recorded figures without measuring; rows recorded before
    ``same_code`` existed get it."""
    data = json.loads((ROOT / "benchmarks/results.json").read_text(encoding="utf-8"))
    rows = [r for r in data["layers"] if r["layer"] in ("SE", "SHSA") and r["model"] == "yolov8n"
            and r["level"] == "P3" and r["batch"] == 1 and r["dtype"] == "fp32"]
    for r in rows:
        del r["same_code"]
    js = tmp_path / "results.json"
    js.write_text(json.dumps({**data, "layers": rows, "models": [], "startup": None, "shsa_p3_resident": None}))
    out = tmp_path / "BENCHMARKS.md"
    assert bench_report.main(["--render-cpu", str(js), "--out", str(out), "--plot", str(tmp_path / "p.png"),
                              "--gpu-json", str(tmp_path / "none.json")]) == 0
    judged = {(r["layer"], r["mode"]): r["same_code"] for r in json.loads(js.read_text())["layers"]}
    assert judged == {("SE", "infer"): True, ("SE", "train"): True, ("SHSA", "infer"): False,
                      ("SHSA", "train"): False}
    text = out.read_text(encoding="utf-8")
    assert "rendered again by `python scripts/bench_report.py --render-cpu`" in text and "(same code)" in text
    assert bench_report.GPU_SECTION[0] in text and "not measured" in text


@pytest.fixture(scope="module")
def model_rows():
    cfgs = {"tiny (stock)": TINY_DETECTOR, "tiny-shsa": insert(TINY_DETECTOR, "SHSA", "after-sppf")}
    return bench.run_models_inprocess("cpu", cfgs, imgsz=64, dtype_name="fp32", train_amp="fp32",
                                      after_sppf=["tiny-shsa"], tp_batch=2, tp_reps=1, train_batch=2, train_reps=1,
                                      log=lambda s: None, **FAST)


def test_inprocess_model_rows(model_rows):
    """Latency, throughput and a training step with Ultralytics' own loss on a synthetic batch, ratios to stock."""
    stock, shsa = model_rows
    assert (stock.kind, shsa.kind) == ("stock", "after-sppf")
    for r in model_rows:
        assert r.loss == "ultralytics", r
        assert r.latency_s > 0 and r.throughput > 0 and r.train_s > 0 and r.train_peak > 0, r
    assert stock.overhead == 0 and stock.memory_ratio == 1 and stock.throughput_loss == 0
    assert shsa.params > stock.params and shsa.memory_ratio == shsa.train_peak / stock.train_peak


def test_train_step_falls_back_without_an_ultralytics_loss():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    step, kind = bench.train_step(net, bench.synthetic_batch(2, 16, "cpu"))
    step()
    assert kind == "sum of output means" and net[0].weight.grad is not None


@pytest.fixture(scope="module")
def compile_rows():
    subjects = bench.compile_subjects("cpu", ["SHSA"], [SMALL], {"tiny (stock)": TINY_DETECTOR}, fuse=True, imgsz=64)
    return bench.run_compile("cpu", subjects, backend="eager", log=lambda s: None, **FAST)


def test_compile_rows_count_no_recompile_at_a_fixed_shape(compile_rows):
    assert [r["what"] for r in compile_rows] == ["SHSA P5 (32×8×8)", "tiny (stock) 64 (fused)"]
    for r in compile_rows:
        assert set(r["modes"]) == {"default", "reduce-overhead"}
        for f in r["modes"].values():
            assert f["recompiles"] == 0 and f["graphs"] >= 1 and f["s"] > 0 and f["eager_s"] > 0, r


def test_compile_rows_count_recompiles():
    """A module that changes a Python attribute Dynamo guards on recompiles on every call: counted."""
    class Counting(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            return x * self.calls

    f = bench.measure_compiled(Counting(), torch.ones(2), "cpu", modes=("default",), backend="eager", warmup=0,
                               **FAST)["default"]
    assert f["recompiles"] >= 1


@pytest.fixture(scope="module")
def gpu_json(tmp_path_factory, model_rows, compile_rows):
    """A GPU run's figures as ``--device cuda`` stores them: run_gpu's layer part on CPU (its meta too), with the
    model and compile rows above."""
    data = bench.run_gpu("cpu", ["SHSA"], dict(bench_report.GPU_RUNS["quick"], **FAST), skip={"models", "compile"},
                         official_path=bench.REFERENCE, dtypes=["fp32"], command="yolo-attn bench --device cuda",
                         shapes=[SMALL], log=lambda s: None)
    data["models"] = [bench.asdict(r) for r in model_rows]
    data["compile"] = compile_rows
    path = tmp_path_factory.mktemp("gpu") / "gpu_results.json"
    path.write_text(json.dumps(data))
    return path


def _outside(text: str) -> tuple[str, str]:
    start, end = bench_report.GPU_SECTION
    before, rest = text.split(start, 1)
    return before, rest.split(end, 1)[1]


def test_from_json_replaces_only_the_gpu_section(gpu_json, tmp_path):
    report = tmp_path / "BENCHMARKS.md"
    shutil.copy(ROOT / "BENCHMARKS.md", report)
    original = report.read_text(encoding="utf-8")
    assert bench_report.main(["--from-json", str(gpu_json), "--out", str(report)]) == 0
    text = report.read_text(encoding="utf-8")
    assert _outside(text) == _outside(original)  # the rest byte-identical
    section = text.split(bench_report.GPU_SECTION[0], 1)[1].split(bench_report.GPU_SECTION[1], 1)[0]
    assert section.strip() == bench_report.render_gpu_section(json.loads(gpu_json.read_text()), gpu_json)
    assert "### What was checked" in section and "fast/official" in section and "not measured" in section
    assert "| SHSA | yolov8n | P5 | 32 @ 8×8 | 1 | infer |" in section and "tiny-shsa" in section
    assert "torch.compile against eager" in section and "as each layer file restates them" in section
    assert bench_report.main(["--from-json", str(gpu_json), "--out", str(report)]) == 0
    assert report.read_text(encoding="utf-8") == text  # idempotent


def test_a_run_split_over_two_calls_renders_one_section(gpu_json):
    """``--skip layers,models --keep PATH`` (a second call within a device's time limit): the parts this call
    skipped come from the first call's figures, the section says so, and the checks read all parts."""
    first = json.loads(gpu_json.read_text())
    second = {**first, "meta": {**first["meta"], "command": "bench_report.py --device cuda --skip layers,models",
                                "date": "later", "wall_parts_s": {"compile": 61.0}}, "layers": [], "models": []}
    merged = bench_report.keep_parts(second, first, {"layers", "models"}, gpu_json)
    assert merged["layers"] == first["layers"] and merged["models"] == first["models"]
    assert merged["compile"] == second["compile"] and second["layers"] == []  # this call's data untouched
    assert merged["meta"]["wall_parts_s"] == {"compile": 61.0, **{p: first["meta"]["wall_parts_s"][p]
                                                                  for p in ("layers",) if p in
                                                                  first["meta"]["wall_parts_s"]}}
    section = bench_report.render_gpu_section(merged, gpu_json)
    assert "| SHSA | yolov8n | P5 | 32 @ 8×8 | 1 | infer |" in section
    assert (f"The layers and models parts come from an earlier call on the same device, "
            f"`{first['meta']['command']}` on {first['meta']['date']}") in section
    assert bench_report.gpu_checks(merged) == bench_report.gpu_checks(first)  # same figures, same verdicts
    assert "earlier call" not in bench_report.render_gpu_section(first, gpu_json)


def test_from_json_adds_the_markers_at_the_end_when_missing(gpu_json, tmp_path):
    report = tmp_path / "r.md"
    report.write_text("# Benchmarks\n\nCPU tables\n", encoding="utf-8")
    bench_report.main(["--from-json", str(gpu_json), "--out", str(report)])
    text = report.read_text(encoding="utf-8")
    assert text.startswith("# Benchmarks\n\nCPU tables\n\n" + bench_report.GPU_SECTION[0] + "\n## GPU\n")
    assert text.endswith(bench_report.GPU_SECTION[1] + "\n")


def test_placeholder_says_not_measured(tmp_path):
    body = bench_report.render_gpu_section(None)
    assert "**Not measured.**" in body and "ms" not in body.replace("msg", "")
    assert all(f"{t}: not measured" in body for t in bench_report.GPU_TARGETS.values())
    report = tmp_path / "BENCHMARKS.md"
    shutil.copy(ROOT / "BENCHMARKS.md", report)
    bench_report.main(["--from-json", str(tmp_path / "missing.json"), "--out", str(report)])  # no recorded GPU run
    assert "**Not measured.**" in report.read_text(encoding="utf-8").split(bench_report.GPU_SECTION[0], 1)[1]


def test_committed_gpu_section_is_what_the_code_renders():
    """BENCHMARKS.md's GPU section is rendered from benchmarks/gpu_results.json, or is the placeholder without it
    (run ``python scripts/bench_report.py --from-json`` after changing either)."""
    path = ROOT / bench_report.GPU_JSON
    text = (ROOT / "BENCHMARKS.md").read_text(encoding="utf-8")
    section = text.split(bench_report.GPU_SECTION[0], 1)[1].split(bench_report.GPU_SECTION[1], 1)[0].strip()
    assert section == bench_report.render_gpu_section(bench_report.read_gpu_json(path), bench_report.GPU_JSON)


def test_cpu_report_keeps_the_generated_sections(tmp_path, gpu_json):
    """The CPU run rewrites the whole report; the torch.compile and GPU sections the file had go back at its end."""
    report = tmp_path / "BENCHMARKS.md"
    shutil.copy(ROOT / "BENCHMARKS.md", report)
    old = report.read_text(encoding="utf-8")
    report.write_text("# Benchmarks\n\nnew CPU tables\n", encoding="utf-8")  # what write_report leaves
    bench_report._carry_sections(report, old, gpu_json)
    text = report.read_text(encoding="utf-8")
    for start, end in (bench_report.COMPILE_SECTION, bench_report.GPU_SECTION):
        assert start + old.split(start, 1)[1].split(end, 1)[0] + end in text
    report.write_text("# Benchmarks\n", encoding="utf-8")
    bench_report._carry_sections(report, "", gpu_json)  # a report without them: the GPU section from the recorded run
    assert "### What was checked" in report.read_text(encoding="utf-8")


def test_command_prints_a_plain_table_and_writes_the_json(tmp_path, capsys):
    """``yolo-attn bench`` on one small shape: a plain table (fast, textbook and, by default from the layer file's
    restatement of the official module, official) on stdout and every figure in the JSON; no report file is
    written."""
    out = tmp_path / "bench.json"
    assert bench.main(["--layers", "shsa", "--levels", "P5", "--modes", "infer", "--reps", "2,2", "--budget", "0",
                       "--json", str(out)]) == 0
    text = capsys.readouterr().out
    head, row = text.splitlines()[:2]
    assert head.split()[:3] == ["layer", "shape", "batch"] and "official ms" in head and "textbook ms" in head
    assert row.split()[:5] == ["SHSA", "yolov8n", "P5", "256@20x20", "1"], row
    assert "|" not in text and "**" not in text  # plain text, not Markdown
    data = json.loads(out.read_text())
    (r,) = data["layers"]
    assert (r["layer"], r["level"], r["mode"], len(r["fast_samples"])) == ("SHSA", "P5", "infer", 2)
    assert r["textbook_s"] > 0 and r["official_s"] > 0 and data["meta"]["official"] == bench.REFERENCE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.json"]


def test_command_rejects_what_it_does_not_know(capsys):
    for argv, message in ((["--layers", "NOPE"], "NOPE"), (["--levels", "P9"], "--levels: choose from"),
                          (["--dtypes", "fp8"], "--dtypes: choose from"), (["--reps", "3"], "--reps")):
        with pytest.raises(SystemExit) as e:
            bench.main(argv)
        assert e.value.code == 2 and message in capsys.readouterr().err, argv


@pytest.mark.slow  # a fresh interpreter per row (~10 s)
def test_command_isolated_rows(capsys):
    assert bench.main(["--isolate", "--layers", "LSKA", "--levels", "P5", "--modes", "infer", "--reps", "1,1",
                       "--budget", "0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:2] == ["LSKA", "yolov8n"] and "official ms" not in lines[0]
    assert lines[1].split()[9].endswith("x=") and "note: '=' after a speed-up: fast and textbook run the same" \
        in "\n".join(lines)  # LSKA has no separate textbook form: its speed-up is marked


def test_the_package_carries_no_report():
    """The report (targets, verdicts, BENCHMARKS.md sections) lives in scripts/bench_report.py, not in the wheel."""
    for name in ("GPU_TARGETS", "evaluate_targets", "gpu_checks", "write_report", "render_gpu_section",
                 "write_section", "GPU_SECTION", "NOISE_FLOOR"):
        assert not hasattr(bench, name) and hasattr(bench_report, name), name


def test_write_section_replaces_between_markers(tmp_path):
    p = tmp_path / "r.md"
    p.write_text("a\n<!-- t -->\nold\n<!-- /t -->\nb\n")
    bench_report.write_section(p, "new", ("<!-- t -->", "<!-- /t -->"))
    assert p.read_text() == "a\n<!-- t -->\nnew\n<!-- /t -->\nb\n"
