"""``yolo-attn show MODEL IMAGE``: draw what every attention layer of a model attends to over an image.

    yolo-attn show runs/yolo_attn_demo/runs/yolov8n-shsa-seed0/weights/best.pt image.jpg
    yolo-attn show yolov8n-cga.yaml image.jpg --imgsz 320 --points 0.3,0.4 0.7,0.5 --out attn/

``MODEL`` is a config (name or path; random weights, and a warning says so on the console and in every picture) or
a ``.pt`` checkpoint. The image is resized to a square ``--imgsz`` (default: its own longer side rounded to a multiple
of 32, at most 640: a small image is not upsampled) and run through the model once; forward pre-hooks capture the
input of every layer of ours, and the attention is recomputed by each layer's ``attention_maps`` method, through its
reference formulation with the layer's weights (the layers are not modified). Every registered layer with such a
method is drawn; its registry declaration says what the maps are (``maps_caption``), e.g. SHSA's softmax attention of
each query point over all positions, CGA's window attention averaged over the cascaded heads, FLA's focused linear
attention weights ``φ(q)·φ(k) / Σ φ(q)·φ(k)`` (the kernel matrix the linear form never builds), LSKA's gate map.

One PNG per layer goes to ``--out`` (``<index>-<NAME>.png``): the image, then one panel per query point (the point
marked) or the gate map, one colour per map cell over the image in grey. The panels of a layer share one colour
scale, drawn as a colorbar in the map's units (attention weight; uniform = 1/N), so a colour difference between two
query points is a difference in weight. Under the panels: the range of the weights, their entropy relative to
uniform attention, how much the query points' maps differ, and the spatial spread of the layer's input, with words
when the maps are nearly uniform or hardly depend on the query. (In an untrained model the features vanish before the
P5 layers: their input is constant over the map, SHSA's softmax sees equal logits and draws exactly uniform maps, and
FLA's weights fall below its normaliser's ε; the maps are then the same for every query point, which the picture
says.) Query points are fractions of the image width and height.
"""

from __future__ import annotations

import argparse
import math
import sys
import textwrap
from pathlib import Path

import torch

from . import register
from .adapter import build_model, front_end
from .layers.registry import REGISTRY, LayerSpec

__all__ = ["main", "show", "attention_maps", "drawable", "figure", "map_stats", "default_imgsz", "untrained"]

DEFAULT_POINTS = ((0.3, 0.3), (0.5, 0.5), (0.7, 0.7))
MAX_IMGSZ = 640
"""The largest input size ``show`` picks by itself (a larger image is scaled down to it)."""


def _cell(h: int, w: int, point: tuple[float, float]) -> tuple[int, int]:
    """(row, column) of the map cell under a point given as fractions (x, y) of the image."""
    x, y = point
    return min(int(y * h), h - 1), min(int(x * w), w - 1)


def drawable(module: torch.nn.Module) -> LayerSpec | None:
    """The registered spec of ``module`` when it is a registered layer that draws its attention maps (it has an
    ``attention_maps(x, cells)`` method, see :class:`~yolo_attn.layers.registry.LayerSpec`, and this instance has a
    map: ``has_maps`` is not False), else None."""
    spec = next((s for s in REGISTRY.values() if type(module) is s.cls), None)
    ok = callable(getattr(module, "attention_maps", None)) and getattr(module, "has_maps", True)
    return spec if spec is not None and ok else None


def attention_maps(model: torch.nn.Module, x: torch.Tensor, points=DEFAULT_POINTS) -> list[dict]:
    """Run ``model`` on ``x`` (1×3×S×S) once; for every registered layer in it that draws its attention maps, return
    ``{"index", "name", "maps": [H×W tensors], "caption", "shape", "query": bool}``: one map per query point, or one
    map for a layer whose attention has no query (a gate: ``query`` False, ``maps_per_query=False`` in its spec)."""
    found = []
    for i, m in enumerate(getattr(model, "model", model).modules()):
        spec = drawable(m)
        if spec is not None:
            found.append({"index": getattr(m, "i", i), "name": spec.name, "module": m,
                          "caption": spec.maps_caption or "attention maps"})
    captured: dict[int, torch.Tensor] = {}
    hooks = [f["module"].register_forward_pre_hook(lambda mod, args, k=k: captured.__setitem__(k, args[0]))
             for k, f in enumerate(found)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    out = []
    for k, f in enumerate(found):
        inp = captured[k].float()
        h, w = inp.shape[-2:]
        std = float(inp[0].flatten(1).std(1).mean()) if h * w > 1 else 0.0
        maps = f["module"].float().attention_maps(inp, [_cell(h, w, p) for p in points])
        out.append({"index": f["index"], "name": f["name"], "caption": f["caption"], "shape": (h, w),
                    "maps": [m.float().cpu() for m in maps], "query": REGISTRY[f["name"]].maps_per_query,
                    "input_std": std})
    return out


def _load(model: str):
    """A checkpoint's model, or a config (name or path) built with random weights as the model class its head needs
    (RT-DETR included)."""
    register()
    if Path(model).suffix == ".pt":
        return front_end(model)(model).model.float().eval()
    return build_model(model).float().eval()


def untrained(model: str) -> bool:
    """Whether ``model`` is a config (a ``.yaml`` or a name), i.e. is drawn with random weights."""
    return Path(str(model)).suffix != ".pt"


def default_imgsz(h: int, w: int, cap: int = MAX_IMGSZ) -> int:
    """The input size ``show`` uses without ``--imgsz``: the image's longer side rounded to a multiple of 32 (the
    largest stride), at least 32 and at most ``cap`` (a 128-px image stays 128 px, it is not upsampled to 640)."""
    return max(32, min(cap, round(max(h, w) / 32) * 32))


def _image(path: str, imgsz: int | None) -> tuple[torch.Tensor, "object", int]:
    """The image as a 1×3×S×S input, its resized RGB array and ``S`` (``imgsz``, or :func:`default_imgsz`)."""
    import cv2

    img = cv2.imread(str(path))
    if img is None:
        raise SystemExit(f"yolo-attn show: cannot read image {path}")
    imgsz = imgsz or default_imgsz(*img.shape[:2])
    rgb = cv2.cvtColor(cv2.resize(img, (imgsz, imgsz), interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2RGB)
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
    return x, rgb, imgsz


def map_stats(layer: dict) -> dict:
    """Numbers that say how much a layer's maps show: ``n`` positions; ``low``/``high``: the smallest and largest
    value over its maps; for query maps ``spread`` (largest difference between the maps of two query points),
    ``spread_rel`` (that over ``high``) and ``entropy`` (mean entropy of the maps, each normalised to sum 1, over
    log n: 1.0 = uniform attention) and ``total`` (mean sum of a map's weights, 1 but where an ε dominates a
    normaliser); ``input_std``: the layer input's spatial standard deviation, mean over channels
    (about 0: the layer sees a constant map, as deep in an untrained model, and its attention cannot depend on
    position)."""
    maps = [m.double().flatten() for m in layer["maps"]]
    n = maps[0].numel()
    s = {"n": n, "low": min(float(m.min()) for m in maps), "high": max(float(m.max()) for m in maps),
         "input_std": layer.get("input_std", math.nan)}
    if layer["query"]:
        s["spread"] = max((float((a - b).abs().max()) for a in maps for b in maps), default=0.0)
        s["spread_rel"] = s["spread"] / s["high"] if s["high"] > 0 else 0.0
        ent = []
        for m in maps:
            p = m.clamp_min(0)
            p = p / p.sum() if p.sum() > 0 else torch.full_like(p, 1 / n)
            ent.append(float(-(p * p.clamp_min(1e-300).log()).sum()) / math.log(n) if n > 1 else 1.0)
        s["entropy"] = sum(ent) / len(ent)
        s["total"] = sum(float(m.sum()) for m in maps) / len(maps)
    return s


NEARLY_UNIFORM = 0.99
"""Normalised entropy above which ``show`` calls a map nearly uniform."""
SAME_QUERIES = 0.05
"""Largest difference between two query points' maps, relative to the largest weight, below which ``show`` says the
maps hardly depend on the query."""
CONSTANT_INPUT = 1e-4
"""Spatial standard deviation of a layer's input below which ``show`` says the layer sees a constant map."""


def notes(layer: dict, stats: dict, untrained_model: bool) -> list[str]:
    """The lines under a layer's picture: the untrained warning, the numbers of :func:`map_stats` and what they mean."""
    lines = []
    if untrained_model:
        lines.append("UNTRAINED: a config, drawn with random weights; these maps show no learned attention. "
                     "Draw a trained checkpoint (.pt) to see what a layer learned.")
    if layer["query"]:
        lines.append(f"weights {stats['low']:.3g}..{stats['high']:.3g} (uniform 1/{stats['n']} = "
                     f"{1 / stats['n']:.3g}); entropy {stats['entropy']:.3f} of uniform's 1; the query points' maps "
                     f"differ by at most {stats['spread']:.2g} ({100 * stats['spread_rel']:.1f} % of the largest "
                     f"weight); layer input's spatial std {stats['input_std']:.2g}")
        said = []
        if abs(stats["total"] - 1) > 0.01:
            said.append(f"each query's weights sum to {stats['total']:.2g}, not 1 (the attention's normaliser is "
                        f"smaller than its ε)")
        if stats["input_std"] < CONSTANT_INPUT:
            said.append("the layer's input is constant over the map (features vanish in an untrained backbone), so "
                        "its attention cannot depend on position")
        if stats["entropy"] > NEARLY_UNIFORM:
            said.append("the attention is nearly uniform: the colours stretch a small range, read the scale")
        if stats["spread_rel"] < SAME_QUERIES:
            said.append("the maps hardly depend on the query point (a pattern set by the keys alone)")
        if said:
            lines.append("; ".join(said).capitalize() + ".")
    else:
        lines.append(f"gate {stats['low']:.3g}..{stats['high']:.3g}; layer input's spatial std "
                     f"{stats['input_std']:.2g}")
    return lines


def figure(layer: dict, rgb, points=DEFAULT_POINTS, untrained_model: bool = False):
    """The picture of one layer (a matplotlib Figure): the image, then one panel per query point (marked) or the gate
    map, each overlaid on the image at its cells; the panels of one layer share one colour scale, shown by a
    colorbar, and the notes of :func:`notes` under them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    maps, size = layer["maps"], rgb.shape[0]
    stats = map_stats(layer)
    low, high = stats["low"], stats["high"]
    if high - low <= 1e-4 * max(abs(high), 1e-30):  # one value everywhere (up to rounding): centre it on the scale
        low, high = (high - 1, high + 1) if high == 0 else (high * 0.5, high * 1.5)
    fig, axes = plt.subplots(1, 1 + len(maps), figsize=(3 * (1 + len(maps)) + 1.2, 4.3), dpi=100, squeeze=False,
                             layout="constrained")
    gray = rgb.mean(2)  # under the colour map: the image in grey, so that every colour is the scale's
    axes[0][0].imshow(rgb)
    axes[0][0].set_title(f"image ({size}×{size} input)", fontsize=8)
    im = None
    for j, m in enumerate(maps):
        ax = axes[0][j + 1]
        ax.imshow(gray, cmap="gray", vmin=0, vmax=255)
        im = ax.imshow(m.numpy(), cmap="turbo", alpha=0.65, vmin=low, vmax=high, interpolation="nearest",
                       extent=(0, size, size, 0))  # one colour per map cell, the cells over the image they cover
        if layer["query"]:
            px, py = points[j]
            ax.plot(px * size, py * size, marker="x", color="white", markersize=9, mew=2.5)
            ax.plot(px * size, py * size, marker="x", color="black", markersize=7, mew=1)
            ax.set_title(f"query ({px:.2f}, {py:.2f})", fontsize=8)
        else:
            ax.set_title("gate map", fontsize=8)
    for ax in axes[0]:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlim(0, size)
        ax.set_ylim(size, 0)
    n = stats["n"]
    what = (f"attention weight of each position for the query\n(uniform over the map: 1/{n} = {1 / n:.3g})"
            if layer["query"] else "gate value of each position")
    # the default tick formatter: enough digits (or an offset) for a narrow range such as a gate of 0.2482..0.2487
    bar = fig.colorbar(im, ax=list(axes[0][1:]), shrink=0.85, pad=0.02)
    bar.set_label(what, fontsize=8)
    bar.ax.tick_params(labelsize=7)
    h, w = layer["shape"]
    fig.suptitle(f"layer {layer['index']} {layer['name']} ({h}×{w} map): {layer['caption']}", fontsize=9)
    fig.supxlabel("\n".join(textwrap.fill(t, 150) for t in notes(layer, stats, untrained_model)), fontsize=7,
                  color="firebrick" if untrained_model else "black")
    return fig


def show(model: str, image: str, out: str | Path = "runs/yolo_attn_show", imgsz: int | None = None,
         points=DEFAULT_POINTS) -> list[Path]:
    """Write one PNG per attention layer of ``model`` on ``image``; returns their paths. ``imgsz`` None: the image's
    own size (:func:`default_imgsz`). A config (random weights) is drawn with a warning, on the console and in every
    picture."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    random_weights = untrained(model)
    if random_weights:
        print(f"yolo-attn show: WARNING: {model} is a config, so its weights are random (untrained): the maps show no "
              f"learned attention (deep in an untrained model the features vanish and attention is uniform). Give a "
              f"trained checkpoint (.pt) to see what the layers learned.", file=sys.stderr, flush=True)
    net = _load(model)
    x, rgb, imgsz = _image(image, imgsz)
    layers = attention_maps(net, x, points)
    if not layers:
        drawn = [name for name, spec in REGISTRY.items() if callable(getattr(spec.cls, "attention_maps", None))]
        raise SystemExit(f"yolo-attn show: {model} has none of the layers {', '.join(drawn)}")
    paths = []
    for layer in layers:
        fig = figure(layer, rgb, points, random_weights)
        path = out / f"{layer['index']}-{layer['name']}.png"
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
        h, w = layer["shape"]
        s = map_stats(layer)
        extra = (f"entropy {s['entropy']:.3f} of uniform, query maps differ by ≤ {100 * s['spread_rel']:.1f} %"
                 if layer["query"] else f"gate {s['low']:.3g}..{s['high']:.3g}")
        print(f"{path}  layer {layer['index']} {layer['name']} ({h}×{w} map at {imgsz} px; {extra})")
    return paths


def _point(text: str) -> tuple[float, float]:
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a query point is x,y (fractions of the image), got {text!r}") from None
    if not (0 <= x <= 1 and 0 <= y <= 1):
        raise argparse.ArgumentTypeError(f"a query point's x and y are fractions in [0, 1], got {text!r}")
    return x, y


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``yolo-attn show``; returns the exit code."""
    ap = argparse.ArgumentParser(prog="yolo-attn show", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="config name/path or .pt checkpoint")
    ap.add_argument("image", help="image file")
    ap.add_argument("--imgsz", type=int, default=None,
                    help=f"square input size, a multiple of 32 (default: the image's longer side rounded to a multiple "
                         f"of 32, at most {MAX_IMGSZ}; a small image is not upsampled)")
    ap.add_argument("--points", type=_point, nargs="+", default=list(DEFAULT_POINTS), metavar="X,Y",
                    help="query points as fractions of the image (default 0.3,0.3 0.5,0.5 0.7,0.7)")
    ap.add_argument("--out", default="runs/yolo_attn_show", help="output directory (default %(default)s)")
    args = ap.parse_args(argv)
    if args.imgsz is not None and (args.imgsz < 32 or args.imgsz % 32):
        ap.error("--imgsz must be a multiple of 32 (the model's largest stride)")
    show(args.model, args.image, args.out, args.imgsz, tuple(args.points))
    return 0


if __name__ == "__main__":
    sys.exit(main())
