"""``yolo-attn show MODEL IMAGE``: draw what every attention layer of a model attends to over an image.

    yolo-attn show runs/yolo_attn_demo/runs/yolov8n-shsa-seed0/weights/best.pt image.jpg
    yolo-attn show yolov8n-cga.yaml image.jpg --imgsz 320 --points 0.3,0.4 0.7,0.5 --out attn/

``MODEL`` is a config (name or path; random weights) or a ``.pt`` checkpoint. The image is resized to a square
``--imgsz`` and run through the model once; forward pre-hooks capture the input of every layer of ours, and the
attention is recomputed from the layer's own submodules (the layers are not modified):

* ``SHSA``: the softmax attention weights of each query point over all positions (its single head).
* ``CGA``: the attention weights of each query point over its local window, averaged over the cascaded heads.
* ``FLA``: the focused linear attention's weights ``φ(q)·φ(k) / Σ φ(q)·φ(k)`` of each query point, averaged over
  heads (the kernel matrix the linear form never builds).
* ``LSKA``: the gate map (the attention the input is multiplied by), averaged over channels.

One PNG per layer goes to ``--out`` (``<index>-<NAME>.png``): the image, then one panel per query point (the point
marked) or the gate map, overlaid on the image. Query points are fractions of the image width and height.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from ultralytics import YOLO

from .integration import build_model, register
from .layers.cga import CGA, relative_offset_index
from .layers.fla import FLA, focused_kernel
from .layers.lska import LSKA
from .layers.registry import REGISTRY
from .layers.shsa import SHSA

__all__ = ["main", "show", "attention_maps", "DRAWERS"]

DEFAULT_POINTS = ((0.3, 0.3), (0.5, 0.5), (0.7, 0.7))


def _cell(h: int, w: int, point: tuple[float, float]) -> tuple[int, int]:
    """(row, column) of the map cell under a point given as fractions (x, y) of the image."""
    x, y = point
    return min(int(y * h), h - 1), min(int(x * w), w - 1)


@torch.no_grad()
def _shsa(layer: SHSA, x: torch.Tensor, points) -> list[torch.Tensor]:
    a = layer.attn
    _, _, h, w = x.shape
    x1 = x[:, :a.pdim]
    q, k, _ = a.qkv(a.pre_norm(x1)).flatten(2).split([a.qk_dim, a.qk_dim, a.pdim], dim=1)  # (1, d, N)
    maps = []
    for p in points:
        r, c = _cell(h, w, p)
        scores = (q[0, :, r * w + c] @ k[0]) * a.scale  # (N,)
        maps.append(scores.softmax(-1).view(h, w))
    return maps


@torch.no_grad()
def _cga(layer: CGA, x: torch.Tensor, points) -> list[torch.Tensor]:
    lwa, a = layer.attn, layer.attn.attn
    _, C, H, W = x.shape
    wh, ww = min(H, lwa.window_resolution), min(W, lwa.window_resolution)
    pH, pW = H + (wh - H % wh) % wh, W + (ww - W % ww) % ww
    xp = F.pad(x, (0, pW - W, 0, pH - H))
    idx = relative_offset_index(wh, ww, a.resolution, x.device)
    bias = a.attention_biases[:, idx]  # (heads, n, n)
    maps = []
    for p in points:
        r, c = _cell(H, W, p)
        r0, c0 = r // wh * wh, c // ww * ww
        win = xp[:, :, r0:r0 + wh, c0:c0 + ww]
        t = (r - r0) * ww + (c - c0)
        chunks = win.chunk(a.num_heads, dim=1)
        feat, heads = chunks[0], []
        for i, (qkv, dw) in enumerate(zip(a.qkvs, a.dws)):  # the cascade, as the layer runs it
            if i > 0:
                feat = feat + chunks[i]
            q, k, v = qkv(feat).split([a.key_dim, a.key_dim, a.d], dim=1)
            q, k, v = dw(q).flatten(2)[0], k.flatten(2)[0], v.flatten(2)[0]  # (d, n)
            attn = ((q.T @ k) * a.scale + bias[i]).softmax(-1)  # (n, n)
            heads.append(attn[t])
            feat = (v @ attn.T).view(1, a.d, wh, ww)
        full = torch.zeros(pH, pW, dtype=x.dtype, device=x.device)
        full[r0:r0 + wh, c0:c0 + ww] = torch.stack(heads).mean(0).view(wh, ww)
        maps.append(full[:H, :W])
    return maps


@torch.no_grad()
def _fla(layer: FLA, x: torch.Tensor, points) -> list[torch.Tensor]:
    a = layer.attn
    _, C, H, W = x.shape
    heads, n = a.num_heads, H * W
    tokens = x.flatten(2).transpose(1, 2).float()  # (1, N, C)
    q, k, _ = F.linear(tokens, a.qkv.weight.float(), a.qkv.bias.float() if a.qkv.bias is not None else None).chunk(
        3, dim=-1)
    scale = F.softplus(a.scale.float())
    q = focused_kernel(q, scale, a.focusing_factor)[0].view(n, heads, -1).transpose(0, 1)  # (h, N, d)
    k = focused_kernel(k + a.position(H, W), scale, a.focusing_factor)[0].view(n, heads, -1).transpose(0, 1)
    maps = []
    for p in points:
        r, c = _cell(H, W, p)
        kernel = k @ q[:, r * W + c, :, None]  # (h, N, 1): φ(q)·φ(k_j)
        weights = kernel[..., 0] / (kernel[..., 0].sum(-1, keepdim=True) + 1e-6)
        maps.append(weights.mean(0).view(H, W))
    return maps


@torch.no_grad()
def _lska(layer: LSKA, x: torch.Tensor, points) -> list[torch.Tensor]:
    return [layer.gate(x)[0].mean(0)]


DRAWERS: dict[str, tuple[type, Callable, str]] = {
    "SHSA": (SHSA, _shsa, "softmax attention of the query point"),
    "CGA": (CGA, _cga, "window attention of the query point, mean over heads"),
    "FLA": (FLA, _fla, "focused linear attention weights of the query point, mean over heads"),
    "LSKA": (LSKA, _lska, "gate map (x is multiplied by it), mean over channels"),
}
"""Registered layer name -> (class, function(layer, input, points) -> maps, caption)."""


def attention_maps(model: torch.nn.Module, x: torch.Tensor, points=DEFAULT_POINTS) -> list[dict]:
    """Run ``model`` on ``x`` (1×3×S×S) once; for every layer of ours return
    ``{"index", "name", "maps": [H×W tensors], "caption", "shape"}`` (``maps`` empty for a layer without a drawer)."""
    found = []
    for i, m in enumerate(getattr(model, "model", model).modules()):
        for name, (cls, fn, caption) in DRAWERS.items():
            if name in REGISTRY and isinstance(m, cls):
                found.append({"index": getattr(m, "i", i), "name": name, "module": m, "fn": fn, "caption": caption})
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
        out.append({"index": f["index"], "name": f["name"], "caption": f["caption"], "shape": tuple(inp.shape[-2:]),
                    "maps": [m.float().cpu() for m in f["fn"](f["module"].float(), inp, points)]})
    return out


def _load(model: str):
    """A checkpoint's model, or a config (name or path) built with random weights as the model class its head needs
    (RT-DETR included)."""
    register()
    if Path(model).suffix == ".pt":
        return YOLO(model).model.float().eval()
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
        raise SystemExit(f"yolo-attn show: {model} has none of the layers {', '.join(DRAWERS)}")
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
            if layer["name"] != "LSKA":
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
