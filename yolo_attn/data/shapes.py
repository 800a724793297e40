"""Synthetic "shapes" object-detection dataset (an offline stand-in for coco8).

Every image is rendered from scratch with numpy + OpenCV (no fonts, no downloads) and written in
Ultralytics/YOLO layout::

    out/
      data.yaml                       # absolute `path`, train/val dirs, `names`
      images/{train,val}/000000.jpg   # BGR JPEG, quality 95, 4:4:4
      labels/{train,val}/000000.txt   # one `cls xc yc w h` line per object, normalised to [0, 1]

Classes (index order of :data:`CLASSES`):

0. ``rectangle`` - filled rectangle, aspect 0.35..1, axis-aligned or rotated.
1. ``ellipse``   - filled ellipse, axis ratio 0.4..1, any rotation.
2. ``triangle``  - filled, roughly equilateral to clearly scalene triangle.
3. ``cross``     - "+" made of two bars (arm thickness 20-35 % of its size), upright or rotated
   (so it can also look like an "x").
4. ``ring``      - elliptic annulus; the hole shows whatever lies beneath it (this is the only local
   cue separating it from ``ellipse``).
5. ``pair``      - **context class**: two small *identical* marks (same kind - square, diamond or
   dot - same size and same colour) at least 35 % of the image size apart.  The label is ONE box
   spanning the visible pixels of both marks, i.e. mostly background.  Every image also carries
   0-3 lone "decoy" marks that look exactly like pair marks locally but have no twin (their
   kind/colour differs from every other mark group) and are *not* labelled, so a detector has to
   relate distant pixels to tell a pair mark from a decoy and to find the far end of the box.

Scene statistics: 1-8 shapes plus 0-2 pairs per image (at least one labelled object is always
attempted); shape sizes are log-uniform from a few pixels (``max(min_px, 2 % of imgsz)``, ``min_px``
4-9 px depending on the class) to half the image; objects may be cut by the image border.
Objects are painted in random order, so later ones occlude earlier ones; a few thin clutter lines
are also drawn *over* the objects.  An object whose visible pixels are < 30 % of its drawn pixels
(border truncation counts as hidden) is dropped from the labels (it stays in the image), and a
pair is dropped if either mark is < 30 % visible.  Boxes are tight around the VISIBLE pixels.
Backgrounds: two-colour linear gradient + low-frequency colour noise, sometimes stripes, plus
amorphous blobs and lines in random "distractor" colours drawn from the same distribution as object
colours.  Object fills are solid, shaded or striped; finally a global per-channel gain / contrast /
brightness jitter and Gaussian pixel noise are applied.

Determinism: image ``i`` of split ``s`` is rendered from
``numpy.random.default_rng(SeedSequence([seed, split_id, i]))`` (see :func:`image_rng`), so its
bytes do not depend on how many other images are generated or in which order.  Re-running with the
same arguments gives byte-identical files on the same platform / OpenCV build (JPEG encoder output
may differ between libjpeg builds).

Example:
    >>> import tempfile
    >>> from yolo_attn.data import make_shapes, CLASSES
    >>> yaml_path = make_shapes(tempfile.mkdtemp(), train=8, val=4, imgsz=64, seed=0)
    >>> yaml_path.name, CLASSES[-1]
    ('data.yaml', 'pair')
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import cv2
import numpy as np

__all__ = ["CLASSES", "SPLITS", "TASKS", "KPT_SHAPE", "FLIP_IDX", "Scene", "image_rng", "main", "make_shapes", "render"]

CLASSES: tuple[str, ...] = ("rectangle", "ellipse", "triangle", "cross", "ring", "pair")
SPLITS: tuple[str, ...] = ("train", "val")  # split name -> id is its index (part of the image seed)

TASKS: tuple[str, ...] = ("detect", "segment", "pose", "obb", "classify")
KEYPOINTS: tuple[str, ...] = ("top", "right", "bottom", "left")  # pose: the object's extreme visible pixels
KPT_SHAPE: tuple[int, int] = (len(KEYPOINTS), 3)  # x, y, visibility
FLIP_IDX: tuple[int, ...] = (0, 3, 2, 1)  # a left-right flip swaps the rightmost and leftmost points
MIN_VISIBLE = 0.30  # drop labels of objects with less than this fraction of their pixels visible
# JPEG quality 95 without chroma subsampling (4:4:4): tiny coloured objects keep their colour
JPEG_PARAMS: tuple[int, ...] = (
    cv2.IMWRITE_JPEG_QUALITY, 95, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444,
)
_MIN_PX = {"rectangle": 4, "ellipse": 4, "triangle": 6, "cross": 7, "ring": 9}
_MARK_KINDS = ("square", "diamond", "dot")
_ID_DTYPE = np.int16  # owner-map dtype: 0 = background/clutter, k > 0 = part k
# standard-normal quantiles of the 256 byte values (constant): byte noise -> Gaussian noise via a LUT
_NORMAL_Q = np.array([NormalDist().inv_cdf((k + 0.5) / 256) for k in range(256)], np.float64)


@dataclass(frozen=True, eq=False)
class Scene:
    """One rendered image with its labels.

    Attributes:
        image: ``(H, W, 3)`` uint8 BGR image (before encoding).
        classes: ``(n,)`` int64 label ids (indices into the ``classes`` passed to :func:`render`).
        boxes: ``(n, 4)`` int64 ``x0, y0, x1, y1`` pixel-edge boxes (x1/y1 exclusive), tight around
            the visible pixels of each labelled object.
        owner: ``(H, W)`` int16 map of which drawn part is visible at each pixel (0 = none).
        parts: for each labelled object the owner ids of its parts (two for ``pair``).
        visibility: ``(n,)`` visible / drawn pixel fraction of each labelled object (minimum over its
            parts; pixels cut off by the image border count as hidden); always >= ``MIN_VISIBLE``.
        dropped: number of objects drawn but left unlabelled because they were mostly hidden
            (decoy marks are never labelled and not counted).
    """

    image: np.ndarray
    classes: np.ndarray
    boxes: np.ndarray
    owner: np.ndarray
    parts: tuple[tuple[int, ...], ...]
    visibility: np.ndarray
    dropped: int

    @property
    def masks(self) -> np.ndarray:
        """``(n, H, W)`` bool visibility masks, one per labelled object (computed on demand)."""
        h, w = self.owner.shape
        if not self.parts:
            return np.zeros((0, h, w), bool)
        return np.stack([self.mask(k) for k in range(len(self.parts))])

    def mask(self, k: int) -> np.ndarray:
        """``(H, W)`` bool visibility mask of labelled object ``k``."""
        return np.isin(self.owner, self.parts[k])

    def polygon(self, k: int) -> np.ndarray:
        """``(m, 2)`` pixel coordinates (pixel centres) of the outline of object ``k``'s largest visible region
        (segment labels; holes and smaller pieces cut off by occlusion are not part of it)."""
        contours, _ = cv2.findContours(self.mask(k).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        return max(contours, key=cv2.contourArea).reshape(-1, 2).astype(np.float64)

    def rotated_box(self, k: int) -> np.ndarray:
        """``(4, 2)`` corners (pixel-edge coordinates) of the smallest rotated rectangle around every visible pixel
        of object ``k`` (obb labels). Where that rectangle would leave the image (an object cut by the border), the
        upright tight box instead: label coordinates must stay inside the image."""
        ys, xs = np.nonzero(self.mask(k))
        corners = np.concatenate([np.stack([xs + dx, ys + dy], 1) for dx in (0, 1) for dy in (0, 1)])
        box = cv2.boxPoints(cv2.minAreaRect(corners.astype(np.float32))).astype(np.float64)
        h, w = self.owner.shape
        if box.min() < 0 or box[:, 0].max() > w or box[:, 1].max() > h:
            x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
            box = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)
        return box

    def keypoints(self, k: int) -> np.ndarray:
        """``(4, 2)`` pixel coordinates (pixel centres) of object ``k``'s topmost, rightmost, bottommost and leftmost
        visible pixels (:data:`KEYPOINTS`; ties: the first in row-major order)."""
        ys, xs = np.nonzero(self.mask(k))
        picks = (np.argmin(ys), np.argmax(xs), np.argmax(ys), np.argmin(xs))
        return np.array([[xs[i] + 0.5, ys[i] + 0.5] for i in picks])

    def task_labels(self, task: str) -> str:
        """Label file text for a task: ``cls xc yc w h`` (detect); ``cls x1 y1 ... xm ym`` (segment polygon);
        ``cls x1 y1 ... x4 y4`` (obb corners); ``cls xc yc w h`` + four ``x y 2`` keypoints (pose); normalised."""
        h, w = self.owner.shape
        scale = np.array([w, h], np.float64)
        lines = []
        for k, row in enumerate(self.yolo_labels()):
            if task == "detect":
                values = row[1:]
            elif task == "segment":
                values = ((self.polygon(k) + 0.5) / scale).ravel()
            elif task == "obb":
                values = (self.rotated_box(k) / scale).ravel()
            elif task == "pose":
                kpts = self.keypoints(k) / scale
                values = np.concatenate([row[1:], np.concatenate([kpts, np.full((len(kpts), 1), 2.0)], 1).ravel()])
            else:
                raise ValueError(f"task must be one of {', '.join(TASKS[:-1])} for label files, got {task!r}")
            lines.append(f"{int(row[0])} " + " ".join(f"{v:.6f}" for v in values) + "\n")
        return "".join(lines)

    def yolo_labels(self) -> np.ndarray:
        """``(n, 5)`` float64 rows ``cls xc yc w h`` normalised by the image size."""
        h, w = self.owner.shape
        b = self.boxes.astype(np.float64)
        out = np.empty((len(b), 5))
        out[:, 0] = self.classes
        out[:, 1] = (b[:, 0] + b[:, 2]) / (2 * w)
        out[:, 2] = (b[:, 1] + b[:, 3]) / (2 * h)
        out[:, 3] = (b[:, 2] - b[:, 0]) / w
        out[:, 4] = (b[:, 3] - b[:, 1]) / h
        return out


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """Independent generator for image ``index`` of ``split`` (``'train'`` or ``'val'``)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), SPLITS.index(split), int(index)]))


# --------------------------------------------------------------------------------------------------
# drawing primitives: each returns (x0, y0, mask) with mask a uint8 canvas placed at (x0, y0) in the
# image (it may extend past the border); nonzero = pixel belongs to the shape.
# --------------------------------------------------------------------------------------------------
def _canvas(size: float) -> tuple[np.ndarray, float]:
    n = int(math.ceil(size * 1.5)) + 3
    return np.zeros((n, n), np.uint8), (n - 1) / 2.0


def _poly(m: np.ndarray, pts: np.ndarray) -> None:
    cv2.fillPoly(m, [np.rint(pts).astype(np.int32)], 255, lineType=cv2.LINE_8)


def _shape_mask(rng: np.random.Generator, name: str, size: float) -> np.ndarray:
    m, c = _canvas(size)
    if name == "rectangle":
        w, h = size, size * rng.uniform(0.35, 1.0)
        if rng.random() < 0.5:
            w, h = h, w
        angle = 0.0 if rng.random() < 0.5 else rng.uniform(0, 180)
        _poly(m, cv2.boxPoints(((c, c), (w, h), angle)))
    elif name == "ellipse":
        a, b = size / 2, max(1.0, size / 2 * rng.uniform(0.4, 1.0))
        cv2.ellipse(m, (round(c), round(c)), (round(a), round(b)), rng.uniform(0, 180), 0, 360, 255, -1,
                    cv2.LINE_8)
    elif name == "triangle":
        t0 = rng.uniform(0, 2 * math.pi)
        ang = t0 + np.array([0.0, 2 * math.pi / 3, 4 * math.pi / 3]) + np.r_[0.0, rng.uniform(-0.45, 0.45, 2)]
        r = size / 2 * rng.uniform(0.85, 1.0, 3)
        _poly(m, np.stack([c + r * np.cos(ang), c + r * np.sin(ang)], 1))
    elif name == "cross":
        t = max(1.5, size * rng.uniform(0.2, 0.35))
        angle = 0.0 if rng.random() < 0.5 else rng.uniform(0, 90)
        _poly(m, cv2.boxPoints(((c, c), (size, t), angle)))
        _poly(m, cv2.boxPoints(((c, c), (size, t), angle + 90)))
    elif name == "ring":
        a = size / 2
        b = a * rng.uniform(0.7, 1.0)
        k = 1.0 - rng.uniform(0.25, 0.5)  # inner/outer ratio
        ang, ctr = rng.uniform(0, 180), (round(c), round(c))
        cv2.ellipse(m, ctr, (round(a), round(b)), ang, 0, 360, 255, -1, cv2.LINE_8)
        ia, ib = round(a * k), round(b * k)
        if min(ia, ib) >= 1 and min(round(a) - ia, round(b) - ib) >= 1:
            cv2.ellipse(m, ctr, (ia, ib), ang, 0, 360, 0, -1, cv2.LINE_8)
    else:  # pragma: no cover - guarded by callers
        raise KeyError(name)
    return m


def _mark_mask(kind: str, size: int) -> np.ndarray:
    """Small pair/decoy mark; deterministic given (kind, size) so both marks of a pair are identical."""
    m = np.zeros((size, size), np.uint8)
    e = size - 1
    if kind == "square":
        m[:] = 255
    elif kind == "diamond":
        h = e / 2
        _poly(m, np.array([[h, 0], [e, h], [h, e], [0, h]]))
    else:  # dot
        cv2.circle(m, (size // 2, size // 2), max(1, (size - 1) // 2), 255, -1, cv2.LINE_8)
    return m


# --------------------------------------------------------------------------------------------------
# painting
# --------------------------------------------------------------------------------------------------
def _rand_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, 3).astype(np.float32)


def _contrasting_colour(rng: np.random.Generator, img: np.ndarray, rois: Sequence[tuple[slice, slice]],
                        avoid: Sequence[np.ndarray] = (), tries: int = 8) -> np.ndarray | None:
    """Random colour that differs (L1 >= 120) from the mean image colour in every ROI and (L1 >= 150)
    from every colour in ``avoid``; ``None`` if not found and ``avoid`` is non-empty."""
    means = []
    for r in rois:
        sub = img[r]
        k = max(1, max(sub.shape[:2]) // 24)  # subsample big rois: a mean needs few pixels
        if sub.size:
            means.append(sub[::k, ::k].reshape(-1, 3).mean(0))
    col = _rand_colour(rng)
    for _ in range(tries):
        ok_bg = all(np.abs(col - mu).sum() >= 120 for mu in means)
        ok_av = all(np.abs(col - a).sum() >= 150 for a in avoid)
        if ok_bg and ok_av:
            return col
        col = _rand_colour(rng)
    return None if avoid else col


def _clip(s: int, x0: int, y0: int, m: np.ndarray) -> tuple[tuple[slice, slice], np.ndarray] | None:
    h, w = m.shape
    ax0, ay0, ax1, ay1 = max(x0, 0), max(y0, 0), min(x0 + w, s), min(y0 + h, s)
    if ax1 <= ax0 or ay1 <= ay0:
        return None
    return (slice(ay0, ay1), slice(ax0, ax1)), m[ay0 - y0:ay1 - y0, ax0 - x0:ax1 - x0] > 0


def _fill(rng: np.random.Generator, shape: tuple[int, int], col: np.ndarray) -> np.ndarray:
    """Per-pixel colour field for a shape ROI: solid (50 %), shaded (30 %) or striped (20 %)."""
    u = rng.random()
    if u < 0.5:
        return col
    h, w = shape
    th = rng.uniform(0, 2 * math.pi)
    t = (np.arange(w, dtype=np.float32)[None, :] * math.cos(th) + np.arange(h, dtype=np.float32)[:, None] * math.sin(th))
    if u < 0.8:  # linear shading towards a darker/brighter tone
        t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
        other = np.clip(col * rng.uniform(0.45, 1.5), 0, 255)
        return col + t[..., None] * (other - col)
    period = rng.uniform(2.0, max(3.0, min(h, w) / 2))
    band = (np.floor(t / period).astype(np.int64) & 1).astype(bool)
    other = col * rng.uniform(0.3, 0.65)
    return np.where(band[..., None], other, col)


def _paint(img: np.ndarray, owner: np.ndarray, pid: int, roi: tuple[slice, slice], m: np.ndarray,
           field: np.ndarray) -> None:
    sub = img[roi]
    sub[m] = field[m] if field.ndim == 3 else field
    owner[roi][m] = pid


# --------------------------------------------------------------------------------------------------
# background
# --------------------------------------------------------------------------------------------------
def _lowfreq(rng: np.random.Generator, s: int, channels: int, lo: int = 3, hi: int = 9) -> np.ndarray:
    g = int(rng.integers(lo, hi))
    small = rng.integers(0, 256, (g, g, channels), dtype=np.uint8)
    big = cv2.resize(small, (s, s), interpolation=cv2.INTER_LINEAR_EXACT)  # bit-exact fixed point
    return big.reshape(s, s, channels)


def _background(rng: np.random.Generator, s: int) -> np.ndarray:
    # two-colour linear gradient + low-frequency colour noise, built on a small grid and upsampled
    # once (bilinear interpolation reproduces a linear ramp exactly)
    c0, c1 = rng.uniform(0, 255, (2, 3))
    th = rng.uniform(0, 2 * math.pi)
    g = int(rng.integers(3, 9))
    ramp = np.linspace(0.0, 1.0, g)
    t = ramp[None, :] * math.cos(th) + ramp[:, None] * math.sin(th)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    small = c0 + t[..., None] * (c1 - c0) + (rng.random((g, g, 3)) - 0.5) * rng.uniform(25, 130)
    small = np.clip(np.rint(small), 0, 255).astype(np.uint8)
    img = cv2.resize(small, (s, s), interpolation=cv2.INTER_LINEAR_EXACT)
    if rng.random() < 0.3:  # stripes / grating texture (triangle wave, integer/arithmetic only)
        period = rng.uniform(4, max(5.0, s / 6))
        a = rng.uniform(0, 2 * math.pi)
        ar = np.arange(s, dtype=np.float32) / np.float32(period)
        z = ar[None, :] * np.float32(math.cos(a)) + ar[:, None] * np.float32(math.sin(a))
        tri = np.abs(z - np.floor(z) - np.float32(0.5))  # in [0, 0.5]
        amp = rng.uniform(20, 80) * rng.uniform(0.5, 1.0, 3)
        img = cv2.add(img, (tri[..., None] * amp.astype(np.float32)).astype(np.int16), dtype=cv2.CV_8U)
    for _ in range(int(rng.integers(0, 4))):  # amorphous distractor blobs
        field = _lowfreq(rng, s, 1, 3, 8)[..., 0]
        img[field > int(rng.integers(185, 235))] = rng.integers(0, 256, 3, dtype=np.uint8)
    for _ in range(int(rng.integers(0, 7))):  # distractor lines
        _line(rng, img, s)
    return img


def _line(rng: np.random.Generator, img: np.ndarray, s: int, mask: np.ndarray | None = None) -> None:
    p0 = tuple(int(v) for v in rng.integers(-s // 4, s + s // 4, 2))
    p1 = tuple(int(v) for v in rng.integers(-s // 4, s + s // 4, 2))
    th = int(rng.integers(1, max(2, s // 64) + 1))
    cv2.line(img, p0, p1, tuple(int(v) for v in rng.integers(0, 256, 3)), th, cv2.LINE_8)
    if mask is not None:
        cv2.line(mask, p0, p1, 255, th, cv2.LINE_8)


# --------------------------------------------------------------------------------------------------
# scene
# --------------------------------------------------------------------------------------------------
def render(rng: np.random.Generator, imgsz: int, classes: Sequence[str] = CLASSES) -> Scene:
    """Render one ``imgsz`` x ``imgsz`` scene using only ``rng`` for randomness.

    ``classes`` is the (sub)set of :data:`CLASSES` to label; label ids index into it.  The returned
    :class:`Scene` exposes per-object visibility masks (``scene.masks``) so that callers/tests can
    verify that every box is the tight bounding box of its object's visible pixels.

    Example:
        >>> import numpy as np
        >>> sc = render(np.random.default_rng(0), 64)
        >>> sc.image.shape, sc.boxes.shape[1], len(sc.masks) == len(sc.classes)
        ((64, 64, 3), 4, True)
    """
    s = _check_int("imgsz", imgsz, 32)
    classes = _check_classes(classes)
    shape_names = [c for c in classes if c != "pair"]
    with_pairs = "pair" in classes

    img = _background(rng, s)
    owner = np.zeros((s, s), _ID_DTYPE)

    # ---- plan the items to draw (kind, payload) -------------------------------------------------
    items: list[tuple[str, object]] = []
    if shape_names:
        for _ in range(int(rng.integers(1, 9))):
            items.append(("shape", shape_names[int(rng.integers(len(shape_names)))]))
    if with_pairs:
        for _ in range(int(rng.integers(0 if shape_names else 1, 3))):
            items.append(("pair", None))
    for _ in range(int(rng.integers(0, 4))):
        items.append(("decoy", None))
    order = rng.permutation(len(items))

    mark_groups: list[tuple[str, int, np.ndarray]] = []  # (kind, size, colour) of every mark group
    # (class id or -1 for decoys, [(part id, drawn px incl. off-image, clipped roi), ...])
    objects: list[tuple[int, list[tuple[int, int, tuple[slice, slice]]]]] = []
    next_pid = 1
    for i in order:
        kind, name = items[int(i)]
        if kind == "shape":
            lo = max(_MIN_PX[name], round(0.02 * s))
            size = float(math.exp(rng.uniform(math.log(lo), math.log(max(lo, 0.5 * s)))))
            m = _shape_mask(rng, name, size)
            n = m.shape[0]
            cx, cy = rng.uniform(0.15 * size, s - 0.15 * size, 2)
            x0, y0 = round(cx - n / 2), round(cy - n / 2)
            clipped = _clip(s, x0, y0, m)
            if clipped is None:
                continue
            roi, mb = clipped
            col = _contrasting_colour(rng, img, [roi])
            _paint(img, owner, next_pid, roi, mb, _fill(rng, mb.shape, col))
            objects.append((classes.index(name), [(next_pid, int(np.count_nonzero(m)), roi)]))
            next_pid += 1
        else:  # pair (two identical marks far apart) or decoy (a single unique mark)
            msize = max(4, round(s * rng.uniform(0.03, 0.06)))
            mkind = _MARK_KINDS[int(rng.integers(len(_MARK_KINDS)))]
            m = _mark_mask(mkind, msize)
            lo_, hi_ = msize, s - 2 * msize
            p = rng.uniform(lo_, hi_, 2)
            pts = [p]
            if kind == "pair":
                for _ in range(20):
                    d, a = rng.uniform(0.35 * s, 0.85 * s), rng.uniform(0, 2 * math.pi)
                    q = p + d * np.array([math.cos(a), math.sin(a)])
                    if lo_ <= q[0] <= hi_ and lo_ <= q[1] <= hi_:
                        pts.append(q)
                        break
                else:
                    continue
            placed = [_clip(s, round(q[0]), round(q[1]), m) for q in pts]
            if any(c is None for c in placed):
                continue
            same = [g[2] for g in mark_groups if g[0] == mkind and abs(g[1] - msize) <= 2]
            col = _contrasting_colour(rng, img, [c[0] for c in placed], avoid=same)
            if col is None:
                continue
            mark_groups.append((mkind, msize, col))
            full = int(np.count_nonzero(m))
            pids = []
            for roi, mb in placed:
                _paint(img, owner, next_pid, roi, mb, col)
                pids.append((next_pid, full, roi))
                next_pid += 1
            objects.append((classes.index("pair") if kind == "pair" else -1, pids))

    # ---- clutter lines over everything (they occlude objects) ----------------------------------
    n_top = int(rng.integers(0, 3))
    if n_top:
        top = np.zeros((s, s), np.uint8)
        for _ in range(n_top):
            _line(rng, img, s, top)
        owner[top > 0] = 0

    # ---- global colour jitter (per-channel gain, contrast, brightness) + Gaussian noise ----------
    gain = rng.uniform(0.8, 1.2, 3) * rng.uniform(0.7, 1.15)
    bias = 128.0 + rng.uniform(-25, 25)
    lut = np.clip(np.rint((np.arange(256.0)[:, None] - 128.0) * gain + bias), 0, 255).astype(np.uint8)
    image = cv2.LUT(img, lut.reshape(256, 1, 3))
    sigma = rng.uniform(0.0, 10.0)
    u = rng.integers(0, 256, (s, s, 3), dtype=np.uint8)  # noise via a normal-quantile lookup table
    noise = cv2.LUT(u, np.rint(_NORMAL_Q * sigma).astype(np.int16).reshape(256, 1))
    image = cv2.add(image, noise, dtype=cv2.CV_8U)  # saturating

    # ---- labels from visible pixels -------------------------------------------------------------
    cls_out, box_out, parts_out, vis_out, dropped = [], [], [], [], 0
    for cls, pids in objects:
        if cls < 0:
            continue
        box, vis = (s, s, 0, 0), 1.0
        for pid, full, roi in pids:
            ys, xs = np.nonzero(owner[roi] == pid)  # a part is only ever painted inside its roi
            vis = min(vis, len(xs) / full)
            if len(xs) < 3:
                vis = 0.0
                break
            oy, ox = roi[0].start, roi[1].start
            b = (ox + int(xs.min()), oy + int(ys.min()), ox + int(xs.max()) + 1, oy + int(ys.max()) + 1)
            box = (min(box[0], b[0]), min(box[1], b[1]), max(box[2], b[2]), max(box[3], b[3]))
        if vis < MIN_VISIBLE:
            dropped += 1
            continue
        cls_out.append(cls)
        box_out.append(box)
        parts_out.append(tuple(pid for pid, _, _ in pids))
        vis_out.append(vis)

    return Scene(
        image=image,
        classes=np.asarray(cls_out, np.int64),
        boxes=np.asarray(box_out, np.int64).reshape(-1, 4),
        owner=owner,
        parts=tuple(parts_out),
        visibility=np.asarray(vis_out, np.float64),
        dropped=dropped,
    )


# --------------------------------------------------------------------------------------------------
# dataset writer + CLI
# --------------------------------------------------------------------------------------------------
def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_classes(classes: Sequence[str] | None) -> tuple[str, ...]:
    if classes is None:
        return CLASSES
    if isinstance(classes, str):
        classes = [c.strip() for c in classes.split(",") if c.strip()]
    classes = tuple(classes)
    unknown = [c for c in classes if c not in CLASSES]
    if not classes or unknown or len(set(classes)) != len(classes):
        raise ValueError(f"classes must be a non-empty list of distinct names from {CLASSES}, got {classes!r}")
    return classes


def _check_task(task: str, classes: Sequence[str] | None) -> tuple[str, tuple[str, ...]]:
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    if classes is None and task == "segment":
        return task, tuple(c for c in CLASSES if c != "pair")
    names = _check_classes(classes)
    if task == "segment" and "pair" in names:
        raise ValueError("classes: 'pair' (two marks far apart, one label) has no single outline; leave it out for "
                         "task='segment'")
    return task, names


def classify_scene(rng: np.random.Generator, imgsz: int, name: str) -> Scene:
    """A scene showing only objects of class ``name`` (at least one labelled), for the classify task."""
    for _ in range(20):
        scene = render(rng, imgsz, (name,))
        if len(scene.classes):
            return scene
    raise RuntimeError(f"no visible {name} in 20 renders")  # pragma: no cover - never seen


def _make_classify(root: Path, counts: dict, imgsz: int, seed: int, names: tuple[str, ...]) -> Path:
    for split, n in counts.items():
        for name in names:
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for stale in folder.glob("*.jpg"):
                stale.unlink()
        for i in range(n):
            name = names[i % len(names)]
            scene = classify_scene(image_rng(seed, split, i), imgsz, name)
            _write_jpg(root / split / name / f"{i:06d}.jpg", scene.image, f"{split}/{i}")
    return root


def _write_jpg(path: Path, image: np.ndarray, what: str) -> None:
    ok, buf = cv2.imencode(".jpg", image, list(JPEG_PARAMS))
    if not ok:  # pragma: no cover
        raise RuntimeError(f"JPEG encoding failed for {what}")
    path.write_bytes(buf.tobytes())


def make_shapes(
    out: str | Path,
    train: int = 200,
    val: int = 50,
    imgsz: int = 128,
    seed: int = 0,
    classes: Sequence[str] | None = None,
    task: str = "detect",
) -> Path:
    """Generate the synthetic shapes dataset for a task in YOLO format and return its ``data.yaml``.

    Tasks (the same scenes; labels from the visible pixels of each object):

    * ``detect``: ``cls xc yc w h``, the tight box of the visible pixels.
    * ``segment``: ``cls x1 y1 ... xm ym``, the outline of the object's largest visible region (``pair`` is left out:
      its two marks have no single outline).
    * ``obb``: ``cls x1 y1 ... x4 y4``, the smallest rotated rectangle around the visible pixels.
    * ``pose``: the box plus four keypoints ``x y 2`` — the topmost, rightmost, bottommost and leftmost visible pixel
      (``kpt_shape: [4, 3]``, ``flip_idx: [0, 3, 2, 1]`` in the YAML).
    * ``classify``: ``out/{train,val}/<class>/000000.jpg``, each image showing objects of one class (classes in turn);
      returns the directory (``data=`` takes it), not a YAML.

    Args:
        out: output directory (created; existing ``*.jpg`` in ``images/{train,val}``, ``*.txt`` in
            ``labels/{train,val}`` and ``labels/*.cache`` are deleted first so no stale files remain).
        train: number of training images (>= 1).
        val: number of validation images (>= 1).
        imgsz: square image size in pixels (>= 32).
        seed: base seed (>= 0); image ``i`` of a split uses :func:`image_rng` ``(seed, split, i)``.
        classes: subset of :data:`CLASSES` to generate (names or a comma-separated string); label ids
            follow the given order.  ``None`` = all classes (all but ``pair`` for segment).
        task: one of :data:`TASKS`.

    Returns:
        Absolute path of ``out/data.yaml`` (``path`` is absolute, ``train: images/train``,
        ``val: images/val``, ``names: {0: rectangle, ...}``), accepted by
        ``ultralytics.data.utils.check_det_dataset``.

    Raises:
        ValueError: naming the offending argument (``imgsz``, ``train``, ``val``, ``seed``, ``classes``).

    Example:
        >>> import tempfile
        >>> y = make_shapes(tempfile.mkdtemp(), train=4, val=2, imgsz=64, seed=1)
        >>> sorted(p.name for p in (y.parent / "images" / "val").iterdir())
        ['000000.jpg', '000001.jpg']
        >>> # YOLO(...).train(data=str(y), imgsz=64)  # use like coco8.yaml
    """
    train = _check_int("train", train, 1)
    val = _check_int("val", val, 1)
    imgsz = _check_int("imgsz", imgsz, 32)
    seed = _check_int("seed", seed, 0)
    task, names = _check_task(task, classes)

    root = Path(out).expanduser().resolve()
    if task == "classify":
        return _make_classify(root, {"train": train, "val": val}, imgsz, seed, names)
    for split, n in (("train", train), ("val", val)):
        img_dir, lbl_dir = root / "images" / split, root / "labels" / split
        img_dir.mkdir(parents=True, exist_ok=True)
        lbl_dir.mkdir(parents=True, exist_ok=True)
        for stale in (*img_dir.glob("*.jpg"), *lbl_dir.glob("*.txt")):
            stale.unlink()
        for i in range(n):
            scene = render(image_rng(seed, split, i), imgsz, names)
            _write_jpg(img_dir / f"{i:06d}.jpg", scene.image, f"{split}/{i}")
            (lbl_dir / f"{i:06d}.txt").write_text(scene.task_labels(task))
    for cache in (root / "labels").glob("*.cache"):
        cache.unlink()

    yaml_path = root / "data.yaml"
    lines = [
        f"# yolo_attn synthetic shapes: make_shapes(train={train}, val={val}, imgsz={imgsz}, seed={seed}"
        + (f", task={task!r})" if task != "detect" else ")"),
        f"path: {json.dumps(str(root))}",
        "train: images/train",
        "val: images/val",
        f"nc: {len(names)}",
        "names:",
        *(f"  {i}: {n}" for i, n in enumerate(names)),
    ]
    if task == "pose":
        lines += [f"kpt_shape: {list(KPT_SHAPE)}", f"flip_idx: {list(FLIP_IDX)}",
                  f"# keypoints: {', '.join(KEYPOINTS)} (extreme visible pixels)"]
    yaml_path.write_text("\n".join(lines) + "\n")
    return yaml_path


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: ``--out DIR --train N --val M --imgsz S --seed K [--classes a,b]``; prints the YAML path."""
    ap = argparse.ArgumentParser(prog="yolo-attn data shapes", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--train", type=int, default=200, help="number of training images (default 200)")
    ap.add_argument("--val", type=int, default=50, help="number of validation images (default 50)")
    ap.add_argument("--imgsz", type=int, default=128, help="square image size, >= 32 (default 128)")
    ap.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    ap.add_argument("--classes", default=None, help=f"comma-separated subset of {','.join(CLASSES)}")
    ap.add_argument("--task", default="detect", choices=TASKS,
                    help="labels: boxes, polygons (segment), keypoints (pose), rotated boxes (obb), class folders "
                    "(classify); default detect")
    args = ap.parse_args(None if argv is None else list(argv))
    t0 = time.perf_counter()
    try:
        yaml_path = make_shapes(args.out, args.train, args.val, args.imgsz, args.seed, args.classes, args.task)
    except ValueError as e:
        ap.error(str(e))  # exits with status 2
    dt = time.perf_counter() - t0
    n = args.train + args.val
    print(f"wrote {n} images ({n / max(dt, 1e-9):.0f} img/s) -> {yaml_path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
