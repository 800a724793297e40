"""``yolo-attn check``: build a model config at several scales, run it at several input shapes, and report per layer.

FLOPs (:func:`count_flops`, what the README tables, ``yolo-attn compare`` and the demo report) are counted with
``torch.utils.flop_counter.FlopCounterMode`` in one forward at the real input size: convolutions, linear layers and
the attention products (``q @ kᵀ``, ``attn @ v``, linear-attention einsums, SDPA); element-wise operations and
normalisations are not counted. Each shape's line also gives Ultralytics' own figure (the GFLOPs of its model
summary, :func:`thop_flops`): the bundled ``thop`` (ultralytics-thop 2.2) counts ``matmul``/``bmm``/``einsum``/SDPA
too, but Ultralytics does not run the real size: 8.4 profiles small stride-aligned proxy images and extrapolates
(close, not exact, for layers whose cost is not a polynomial in the map size: CGA pads to whole windows, FLA's
window is fixed at build), earlier releases profile one stride-sized image and scale it by the area (quadratic
attention is undercounted: ``yolov8n-shsa-neck`` at 640 is 9.05 GFLOPs there, 11.82 counted); thop also counts
BatchNorm layers of an unfused model. As in Ultralytics, one multiply-add is 2 FLOPs.

    yolo-attn check cfg/yolov8-lska.yaml --scales n,s --imgsz 640 --rect 640x384,384x640
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from .configs import declared_scales
from . import register
from .adapter import build_model, summary_flops
from .layers.registry import REGISTRY

__all__ = ["count_flops", "thop_flops", "flop_counter", "layer_report", "layer_arguments", "LayerRow", "main"]


def flop_counter():
    """``FlopCounterMode`` that also counts the fused CPU SDPA kernel (torch has no formula for it and would count
    0: on CPU, ``scaled_dot_product_attention`` with equal q/v head sizes dispatches there)."""
    mapping = {}
    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if op is not None:
        mapping[op] = lambda q, k, v, *args, out_shape=None, **kwargs: sdpa_flop_count(q, k, v)
    return FlopCounterMode(display=False, custom_mapping=mapping)


def _as_shape(imgsz: int | tuple[int, int] | tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    if isinstance(imgsz, int):
        return (1, 3, imgsz, imgsz)
    if len(imgsz) == 2:
        return (1, 3, *imgsz)
    return tuple(imgsz)


def _counted_forward(model: nn.Module, imgsz):
    """One eval-mode, no-grad forward of zeros at ``imgsz`` under :func:`flop_counter`; returns the counter."""
    x = torch.zeros(_as_shape(imgsz), device=next(model.parameters()).device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), flop_counter() as counter:
            model(x)
    finally:
        model.train(was_training)
    return counter


def count_flops(model: nn.Module, imgsz: int | tuple = 640) -> int:
    """FLOPs (2 per multiply-add) of one eval-mode forward of ``model`` at ``imgsz`` (int, (H, W) or (B, C, H, W))."""
    return int(_counted_forward(model, imgsz).get_total_flops())


def thop_flops(model: nn.Module, imgsz: int | tuple[int, int] = 640) -> float | None:
    """Ultralytics' own FLOPs figure for ``model`` at ``imgsz`` (int or (H, W)): what its model summary prints,
    ``ultralytics.utils.torch_utils.get_flops`` (thop, see the module docstring), run on a copy; None where thop is
    not installed or profiling fails (get_flops then says 0)."""
    return summary_flops(model, imgsz)


@dataclass
class LayerRow:
    """One row of the per-layer report of an Ultralytics model."""

    index: int
    source: int | list
    name: str
    c_in: int | list | None
    c_out: int | list | None
    params: int
    flops: int


def _channels(t):
    if isinstance(t, torch.Tensor):
        return int(t.shape[1]) if t.dim() == 4 else None
    if isinstance(t, (list, tuple)):
        chans = [_channels(x) for x in t]
        return chans if chans and all(c is not None for c in chans) else None
    return None


def layer_report(model: nn.Module, imgsz: int | tuple = 640) -> list[LayerRow]:
    """Per-layer rows (index, from, type, channels in→out, params, FLOPs) of an Ultralytics model at ``imgsz``."""
    return _layer_report(model, imgsz)[0]


def _layer_report(model: nn.Module, imgsz: int | tuple) -> tuple[list[LayerRow], int]:
    """:func:`layer_report`'s rows and the whole forward's FLOPs (what :func:`count_flops` returns), one forward."""
    layers = list(model.model)
    seen: dict[int, tuple] = {}

    def hook(i):
        def fn(module, args, out):
            seen[i] = (_channels(args[0]), _channels(out))
        return fn

    handles = [m.register_forward_hook(hook(k)) for k, m in enumerate(layers)]
    try:
        counter = _counted_forward(model, imgsz)
    finally:
        for h in handles:
            h.remove()
    counts = counter.get_flop_counts()
    prefix = type(model).__name__ + ".model."
    rows = []
    for k, m in enumerate(layers):
        c_in, c_out = seen.get(k, (None, None))
        rows.append(LayerRow(
            index=getattr(m, "i", k), source=getattr(m, "f", -1), name=getattr(m, "type", type(m).__name__),
            c_in=c_in, c_out=c_out, params=sum(p.numel() for p in m.parameters()),
            flops=int(sum(counts.get(f"{prefix}{k}", {}).values())),
        ))
    return rows, int(counter.get_total_flops())


def _fmt_ch(c) -> str:
    return "-" if c is None else str(c).replace(" ", "")


def _table(rows: list[LayerRow], mark: set[str]) -> str:
    head = f"{'':2s}{'i':>4s}  {'from':<14s}{'layer':<34s}{'in -> out':<22s}{'params':>11s}{'GFLOPs':>9s}"
    lines = [head]
    for r in rows:
        name = ("nn." if r.name.startswith("torch.nn.") else "") + r.name.rsplit(".", 1)[-1]
        star = "* " if name in mark else "  "
        chans = f"{_fmt_ch(r.c_in)} -> {_fmt_ch(r.c_out)}"
        lines.append(f"{star}{r.index:>4d}  {str(r.source).replace(' ', ''):<14s}{name:<34s}{chans:<22s}"
                     f"{r.params:>11,d}{r.flops / 1e9:>9.3f}")
    total_p, total_f = sum(r.params for r in rows), sum(r.flops for r in rows)
    lines.append(f"{'':2s}{'':>4s}  {'':<14s}{'total':<34s}{'':<22s}{total_p:>11,d}{total_f / 1e9:>9.3f}")
    return "\n".join(lines)


def layer_arguments(model: nn.Module) -> list[str]:
    """One line per registered layer in ``model``: its index and resolved arguments, input channels included."""
    ours = tuple(spec.cls for spec in REGISTRY.values())
    lines = []
    for k, m in enumerate(getattr(model, "model", [])):
        for block in (m if isinstance(m, nn.Sequential) and not isinstance(m, ours) else [m]):
            if isinstance(block, ours):
                args = block.extra_repr() or ", ".join(f"{a}={v}" for a, v in
                                                       getattr(block, "yolo_attn_args", {}).items())
                lines.append(f"layer {getattr(m, 'i', k)}: {type(block).__name__}({args})")
    return lines


class _LayerTracker:
    """Records which top-level layer of a model is running, so a failed forward can name the layer that raised."""

    def __init__(self, model: nn.Module):
        self.stack: list[int] = []
        self.failed: int | None = None
        self.layers = list(getattr(model, "model", []))

    def __enter__(self):
        def pre(k):
            def enter(module, args) -> None:
                self.stack.append(k)
            return enter

        def leave(module, args, out) -> None:  # a forward hook must return None to keep the output
            self.stack.pop()

        self.handles = [h for k, m in enumerate(self.layers)
                        for h in (m.register_forward_pre_hook(pre(k)), m.register_forward_hook(leave))]
        return self

    def __exit__(self, kind, value, tb):
        for h in self.handles:
            h.remove()
        if kind is not None and self.stack:
            self.failed = self.stack[-1]
        return False

    def describe(self, e: BaseException) -> str:
        if self.failed is None:
            return f"{type(e).__name__}: {e}"
        m = self.layers[self.failed]
        name = getattr(m, "type", type(m).__name__).rsplit(".", 1)[-1]
        return f"layer {getattr(m, 'i', self.failed)} ({name}) raised {type(e).__name__}: {e}"


def _shape(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape '{text}' is not HxW (e.g. 640x384)") from None
    return h, w


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``yolo-attn check``; returns the exit code (1 if any build or forward failed)."""
    ap = argparse.ArgumentParser(
        prog="yolo-attn check", description="Build a model config at several scales, run it at several input shapes "
        "and print per layer: index, from, type, channels in -> out, params and GFLOPs.",
        epilog="GFLOPs counted: one forward at the real size (torch's FlopCounterMode; convolutions, linear layers and "
               "the attention products q @ k^T, attn @ v, einsums, SDPA; 2 FLOPs per multiply-add); the README's "
               "tables use this count. Each shape's line also gives Ultralytics' own summary figure (thop): thop "
               "counts matmul/bmm/einsum/SDPA too, but Ultralytics 8.4 extrapolates from small proxy images and "
               "earlier releases scale one stride-sized image by the area (quadratic attention undercounted), and thop "
               "counts the BatchNorm layers of an unfused model, so the two differ for attention layers.")
    ap.add_argument("cfg", help="model YAML (path or stock name such as yolov8.yaml)")
    ap.add_argument("--scales", default=None,
                    help="comma-separated scales (default: the file name's scale, else every scale the YAML declares)")
    ap.add_argument("--imgsz", type=int, default=640, help="square input size of the table (default 640)")
    ap.add_argument("--rect", default="640x384,384x640",
                    help="comma-separated HxW shapes also run (default 640x384,384x640; '' for none)")
    args = ap.parse_args(argv)

    register()
    shapes = [(args.imgsz, args.imgsz)] + [_shape(s) for s in args.rect.split(",") if s.strip()]
    scales = [s.strip() for s in args.scales.split(",")] if args.scales else declared_scales(args.cfg)
    failed = 0
    for scale in scales:
        label = f"{args.cfg} scale {scale or '-'}"
        try:
            model = build_model(args.cfg, scale=scale)
        except Exception as e:  # noqa: BLE001 - report and go on with the next scale
            print(f"{label}: build FAILED: {type(e).__name__}: {e}")
            failed += 1
            continue
        print(f"\n{label}: {type(model).__name__}")
        for line in layer_arguments(model):
            print(f"  {line}")
        for n, (h, w) in enumerate(shapes):
            tracker = _LayerTracker(model)
            try:
                with tracker:
                    if n == 0:  # the table's forward also gives the first shape's total
                        rows, flops = _layer_report(model, (h, w))
                    else:
                        flops = count_flops(model, (h, w))
                if n == 0:
                    print(_table(rows, set(REGISTRY)))
                theirs = thop_flops(model, (h, w))
                print(f"  forward {h}x{w}: ok, {flops / 1e9:.3f} GFLOPs counted (Ultralytics' summary, thop: "
                      f"{'-' if theirs is None else f'{theirs / 1e9:.3f}'})")
            except Exception as e:  # noqa: BLE001
                print(f"  forward {h}x{w}: FAILED: {tracker.describe(e)}")
                failed += 1
    print("\nGFLOPs counted: one forward at that size, attention products included (the README's figures); "
          "Ultralytics' summary (thop) extrapolates from smaller images (yolo-attn check --help)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
