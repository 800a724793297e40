"""``yolo-attn show MODEL IMAGE``: draw what every attention layer of a model attends to over an image.

    yolo-attn show runs/yolo_attn_demo/runs/yolov8n-shsa-seed0/weights/best.pt image.jpg
    yolo-attn show yolov8n-cga.yaml image.jpg --imgsz 320 --points 0.3,0.4 0.7,0.5 --out attn/

``MODEL`` is a config (name or path; random weights) or a ``.pt`` checkpoint. The image is resized to a square
``--imgsz`` and run through the model once; forward pre-hooks capture the input of every layer of ours, and the
attention is recomputed by each layer's ``attention_maps`` method, through its reference formulation with the
layer's weights (the layers are not modified). Every registered layer with such a method is drawn; its registry
declaration says what the maps are (``maps_caption``), e.g. SHSA's softmax attention of each query point over all
positions, CGA's window attention averaged over the cascaded heads, FLA's focused linear attention weights
``φ(q)·φ(k) / Σ φ(q)·φ(k)`` (the kernel matrix the linear form never builds), LSKA's gate map.

One PNG per layer goes to ``--out`` (``<index>-<NAME>.png``): the image, then one panel per query point (the point
marked) or the gate map, overlaid on the image. Query points are fractions of the image width and height.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from . import register
from .adapter import build_model, front_end
from .layers.registry import REGISTRY, LayerSpec

__all__ = ["main", "show", "attention_maps", "drawable"]

DEFAULT_POINTS = ((0.3, 0.3), (0.5, 0.5), (0.7, 0.7))


def _cell(h: int, w: int, point: tuple[float, float]) -> tuple[int, int]:
    """(row, column) of the map cell under a point given as fractions (x, y) of the image."""
    x, y = point
    return min(int(y * h), h - 1), min(int(x * w), w - 1)


def drawable(module: torch.nn.Module) -> LayerSpec | None:
    """The registered spec of ``module`` when it is a registered layer that draws its attention maps (it has an
    ``attention_maps(x, cells)`` method, see :class:`~yolo_attn.layers.registry.LayerSpec`), else None."""
    spec = next((s for s in REGISTRY.values() if type(module) is s.cls), None)
    return spec if spec is not None and callable(getattr(module, "attention_maps", None)) else None


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
        maps = f["module"].float().attention_maps(inp, [_cell(h, w, p) for p in points])
        out.append({"index": f["index"], "name": f["name"], "caption": f["caption"], "shape": (h, w),
                    "maps": [m.float().cpu() for m in maps], "query": REGISTRY[f["name"]].maps_per_query})
    return out


def _load(model: str):
    """A checkpoint's model, or a config (name or path) built with random weights as the model class its head needs
    (RT-DETR included)."""
    register()
    if Path(model).suffix == ".pt":
        return front_end(model)(model).model.float().eval()
    return build_model(model).float().eval()


def _image(path: str, imgsz: int) -> tuple[torch.Tensor, "object"]:
    import cv2

    img = cv2.imread(str(path))
    if img is None:
        raise SystemExit(f"yolo-attn show: cannot read image {path}")
    rgb = cv2.cvtColor(cv2.resize(img, (imgsz, imgsz), interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2RGB)
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
    return x, rgb


def show(model: str, image: str, out: str | Path = "runs/yolo_attn_show", imgsz: int = 640,
         points=DEFAULT_POINTS) -> list[Path]:
    """Write one PNG per attention layer of ``model`` on ``image``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    net = _load(model)
    x, rgb = _image(image, imgsz)
    layers = attention_maps(net, x, points)
    if not layers:
        drawn = [name for name, spec in REGISTRY.items() if callable(getattr(spec.cls, "attention_maps", None))]
        raise SystemExit(f"yolo-attn show: {model} has none of the layers {', '.join(drawn)}")
    paths = []
    for layer in layers:
        maps = layer["maps"]
        fig, axes = plt.subplots(1, 1 + len(maps), figsize=(3 * (1 + len(maps)), 3.2), dpi=100, squeeze=False)
        axes[0][0].imshow(rgb)
        axes[0][0].set_title("image", fontsize=8)
        for j, m in enumerate(maps):
            ax = axes[0][j + 1]
            up = F.interpolate(m[None, None], size=(imgsz, imgsz), mode="nearest")[0, 0].numpy()
            ax.imshow(rgb)
            ax.imshow(up, cmap="jet", alpha=0.5)
            if layer["query"]:
                px, py = points[j]
                ax.plot(px * imgsz, py * imgsz, marker="x", color="white", markersize=9, mew=2)
                ax.set_title(f"query ({px:.2f}, {py:.2f})", fontsize=8)
            else:
                ax.set_title("gate map", fontsize=8)
        for ax in axes[0]:
            ax.set_xticks([])
            ax.set_yticks([])
        h, w = layer["shape"]
        fig.suptitle(f"layer {layer['index']} {layer['name']} ({h}×{w} map): {layer['caption']}", fontsize=9)
        fig.tight_layout()
        path = out / f"{layer['index']}-{layer['name']}.png"
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
        print(f"{path}  layer {layer['index']} {layer['name']} ({h}×{w} map)")
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
    ap.add_argument("--imgsz", type=int, default=640, help="square input size (default %(default)s)")
    ap.add_argument("--points", type=_point, nargs="+", default=list(DEFAULT_POINTS), metavar="X,Y",
                    help="query points as fractions of the image (default 0.3,0.3 0.5,0.5 0.7,0.7)")
    ap.add_argument("--out", default="runs/yolo_attn_show", help="output directory (default %(default)s)")
    args = ap.parse_args(argv)
    if args.imgsz < 32 or args.imgsz % 32:
        ap.error("--imgsz must be a multiple of 32 (the model's largest stride)")
    show(args.model, args.image, args.out, args.imgsz, tuple(args.points))
    return 0


if __name__ == "__main__":
    sys.exit(main())
