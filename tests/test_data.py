"""Tests for the synthetic shapes dataset generator (yolo_attn.data)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from yolo_attn.data import CLASSES, image_rng, main, make_shapes, render
from yolo_attn.data.shapes import JPEG_PARAMS, classify_scene

REPO = Path(__file__).resolve().parents[1]


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for sub in ("images", "labels")
        for p in sorted((root / sub).rglob("*"))
        if p.is_file()
    }


def _read_labels(path: Path) -> np.ndarray:
    rows = [list(map(float, line.split())) for line in path.read_text().splitlines() if line.strip()]
    return np.asarray(rows, np.float64).reshape(-1, 5)


def test_classes_constant():
    assert isinstance(CLASSES, tuple) and len(CLASSES) >= 6 and len(set(CLASSES)) == len(CLASSES)
    assert {"rectangle", "ellipse", "triangle", "cross", "ring", "pair"} <= set(CLASSES)


def test_layout_and_determinism(tmp_path):
    a = make_shapes(tmp_path / "a", train=6, val=3, imgsz=64, seed=3)
    b = make_shapes(tmp_path / "b", train=6, val=3, imgsz=64, seed=3)
    assert a == (tmp_path / "a" / "data.yaml").resolve() and a.is_file()
    fa, fb = _files(a.parent), _files(b.parent)
    assert len(fa) == 2 * (6 + 3)
    assert sorted(k for k in fa if k.startswith("images/val")) == [f"images/val/00000{i}.jpg" for i in range(3)]
    assert fa == fb  # byte-identical images and labels
    strip = lambda p: [l for l in p.read_text().splitlines() if not l.startswith("path:")]  # noqa: E731
    assert strip(a) == strip(b)
    # a different seed gives different images
    c = make_shapes(tmp_path / "c", train=6, val=3, imgsz=64, seed=4)
    assert _files(c.parent)["images/train/000000.jpg"] != fa["images/train/000000.jpg"]
    # per-image rng: image i does not depend on how many images are generated
    d = make_shapes(tmp_path / "d", train=2, val=1, imgsz=64, seed=3)
    fd = _files(d.parent)
    assert all(fd[k] == fa[k] for k in fd)
    # re-running into the same directory with fewer images leaves no stale files
    make_shapes(tmp_path / "a", train=2, val=1, imgsz=64, seed=3)
    assert _files(a.parent) == fd


def test_labels_match_visible_pixels():
    s = 128
    n_obj = n_pairs = n_dropped = n_contrast = n_checked = 0
    visibility = []
    for i in range(120):
        sc = render(image_rng(0, "train", i), s)
        n_dropped += sc.dropped
        visibility += sc.visibility.tolist()
        assert sc.image.shape == (s, s, 3) and sc.image.dtype == np.uint8
        masks = sc.masks
        assert masks.shape == (len(sc.classes), s, s) and sc.boxes.shape == (len(sc.classes), 4)
        assert masks.sum(0).max(initial=0) <= 1  # visible masks are disjoint (occlusion)
        lab = sc.yolo_labels()
        assert np.all((lab[:, 1:] >= 0) & (lab[:, 1:] <= 1))
        assert np.all(lab[:, 3:] > 0)
        seen: list[int] = []
        for cls, box, m, xywh in zip(sc.classes, sc.boxes, masks, lab[:, 1:]):
            ys, xs = np.nonzero(m)
            assert len(xs) >= 3
            tight = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
            assert np.abs(box - tight).max() <= 1, (i, CLASSES[cls], box, tight)
            # normalised label -> pixel box agrees with the visible mask too
            xc, yc, w, h = xywh * s
            px = np.array([xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2])
            assert np.abs(px - tight).max() <= 1
            # the mask is what is actually drawn: it stands out from the pixels right around it
            around = cv2.dilate(m.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool) & ~m & (sc.owner == 0)
            if around.sum() >= 3:
                img = sc.image.astype(np.int64)
                n_checked += 1
                n_contrast += np.abs(np.median(img[m], 0) - np.median(img[around], 0)).sum() >= 30
            if CLASSES[cls] == "pair":
                # two marks far apart: the box spans both, so it is large and mostly empty
                assert len(sc.parts[len(seen)]) == 2
                assert np.hypot(box[2] - box[0], box[3] - box[1]) >= 0.35 * s
                assert m.sum() < 0.5 * (box[2] - box[0]) * (box[3] - box[1])
                n_pairs += 1
            seen.append(int(cls))
            n_obj += 1
    assert n_obj > 300 and n_pairs > 20
    assert n_contrast >= 0.95 * n_checked
    visibility = np.asarray(visibility)
    assert len(visibility) == n_obj and visibility.min() >= 0.3  # mostly hidden objects are dropped ...
    assert n_dropped > 0 and (visibility < 0.95).mean() > 0.1  # ... and occlusion is common


def test_written_labels_equal_render(tmp_path):
    y = make_shapes(tmp_path, train=5, val=5, imgsz=96, seed=7)
    for split in ("train", "val"):
        for i in range(5):
            sc = render(image_rng(7, split, i), 96)
            lab = _read_labels(y.parent / "labels" / split / f"{i:06d}.txt")
            assert lab.shape == (len(sc.classes), 5)
            np.testing.assert_array_equal(lab[:, 0], sc.classes)
            np.testing.assert_allclose(lab[:, 1:], sc.yolo_labels()[:, 1:], atol=1e-6)
            jpg = (y.parent / "images" / split / f"{i:06d}.jpg").read_bytes()
            assert jpg == cv2.imencode(".jpg", sc.image, list(JPEG_PARAMS))[1].tobytes()
            img = cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR)
            assert img.shape == sc.image.shape
            assert cv2.PSNR(img, sc.image) > 33  # lossy (q95, 4:4:4), but close to, but the labelled render


def test_every_class_and_size_range():
    s = 64
    counts: Counter[int] = Counter()
    sides = []
    for i in range(300):
        sc = render(image_rng(1, "val", i), s)
        counts.update(sc.classes.tolist())
        sides += (sc.boxes[:, 2:] - sc.boxes[:, :2]).max(1).tolist()
    assert set(counts) == set(range(len(CLASSES))), counts
    assert min(counts.values()) >= 50, counts
    sides = np.asarray(sides)
    assert sides.min() <= 5  # tiny objects
    assert sides.max() >= s // 2  # large objects


def test_classes_subset(tmp_path):
    y = make_shapes(tmp_path, train=8, val=2, imgsz=64, classes=["ring", "pair"])
    text = y.read_text()
    assert "  0: ring\n  1: pair\n" in text and "rectangle" not in text
    ids = np.concatenate([_read_labels(p)[:, 0] for p in (y.parent / "labels").rglob("*.txt")])
    assert len(ids) and set(ids.astype(int).tolist()) <= {0, 1}


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"imgsz": 31}, "imgsz"),
        ({"imgsz": 64.0}, "imgsz"),
        ({"train": 0}, "train"),
        ({"val": 0}, "val"),
        ({"seed": -1}, "seed"),
        ({"classes": ["rectangle", "hexagon"]}, "classes"),
        ({"classes": []}, "classes"),
    ],
)
def test_invalid_args(tmp_path, kwargs, name):
    with pytest.raises(ValueError, match=name):
        make_shapes(tmp_path, **{"train": 1, "val": 1, "imgsz": 32, **kwargs})
    assert not (tmp_path / "data.yaml").exists()


def test_main_cli(tmp_path, capsys):
    out = tmp_path / "ds"
    assert main(["--out", str(out), "--train", "3", "--val", "2", "--imgsz", "48", "--seed", "5"]) == 0
    assert str(out.resolve() / "data.yaml") in capsys.readouterr().out
    assert len(list((out / "images" / "train").glob("*.jpg"))) == 3
    assert _files(out) == _files(make_shapes(tmp_path / "api", train=3, val=2, imgsz=48, seed=5).parent)
    with pytest.raises(SystemExit) as e:
        main(["--out", str(out), "--imgsz", "16"])
    assert e.value.code == 2 and "imgsz" in capsys.readouterr().err


def test_yaml_accepted_by_ultralytics(tmp_path):
    y = make_shapes(tmp_path / "shapes", train=4, val=3, imgsz=64)
    code = textwrap.dedent(
        f"""
        from ultralytics.cfg import get_cfg
        from ultralytics.data.dataset import YOLODataset
        from ultralytics.data.utils import check_det_dataset
        d = check_det_dataset({str(y)!r})
        assert d["nc"] == {len(CLASSES)} and d["names"] == {dict(enumerate(CLASSES))!r}, d
        assert d["train"].endswith("images/train") and d["val"].endswith("images/val"), d
        ds = YOLODataset(img_path=d["val"], data=d, task="detect", imgsz=64, augment=False, hyp=get_cfg())
        n = sum(len(lb["cls"]) for lb in ds.labels)
        assert len(ds) == 3 and n > 0, (len(ds), n)
        print("OK", n)
        """
    )
    env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_CONFIG_DIR": str(tmp_path / "cfg"),
           "MPLCONFIGDIR": str(tmp_path / "mpl"), "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "OK" in r.stdout, r.stdout + r.stderr


def test_label_masks_sit_on_the_drawn_edges():
    """Pixel-exact check against the image itself, not the generator's bookkeeping: along each labelled object's
    outline, the step between the pixels just inside and just outside is larger than for the same outline moved by
    one pixel in any direction (an off-by-one in boxes or masks fails this)."""
    ring = np.ones((3, 3), np.uint8)

    def edge_step(img: np.ndarray, m: np.ndarray) -> float | None:
        inner = m & ~cv2.erode(m.astype(np.uint8), ring).astype(bool)
        outer = cv2.dilate(m.astype(np.uint8), ring).astype(bool) & ~m
        if inner.sum() < 3 or outer.sum() < 3:
            return None
        return float(np.abs(np.median(img[inner], 0) - np.median(img[outer], 0)).sum())

    aligned = checked = 0
    for i in range(60):
        sc = render(image_rng(2, "train", i), 128)
        img = sc.image.astype(np.int64)
        for m in sc.masks:
            if m.sum() < 40 or (step := edge_step(img, m)) is None:
                continue
            moved = [edge_step(img, np.roll(m, d, axis=a)) for a in (0, 1) for d in (-1, 1)]
            checked += 1
            aligned += all(step > s for s in moved if s is not None)
    assert checked >= 150 and aligned >= 0.95 * checked, (aligned, checked)


def test_same_bytes_in_another_process(tmp_path):
    """Nothing depends on process state (hash seeds, global RNGs): a fresh interpreter writes the same files."""
    here = make_shapes(tmp_path / "here", train=4, val=2, imgsz=64, seed=11)
    code = f"from yolo_attn.data import make_shapes; make_shapes({str(tmp_path / 'there')!r}, 4, 2, 64, 11)"
    env = {**os.environ, "PYTHONHASHSEED": "123", "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)
    assert _files(here.parent) == _files(tmp_path / "there")


# --- every task: segment polygons, obb corners, pose keypoints, classify folders --------------------------------------


def _rows(path: Path) -> list[np.ndarray]:
    return [np.array(line.split(), np.float64) for line in path.read_text().splitlines() if line.strip()]


def _largest_region_filled(m: np.ndarray) -> np.ndarray:
    """The largest 8-connected region of a mask with its holes filled (scipy: independent of the generator's cv2)."""
    from scipy import ndimage

    lab, n = ndimage.label(m, structure=np.ones((3, 3)))
    sizes = ndimage.sum(m, lab, range(1, n + 1))
    return ndimage.binary_fill_holes(lab == 1 + int(np.argmax(sizes)))


@pytest.mark.parametrize("task", ["segment", "obb", "pose"])
def test_task_labels_match_visible_pixels(tmp_path, task):
    s, n = 96, 12
    y = make_shapes(tmp_path, train=n, val=1, imgsz=s, seed=4, task=task)
    names = [c for c in CLASSES if c != "pair"] if task == "segment" else list(CLASSES)
    checked = 0
    for i in range(n):
        sc = render(image_rng(4, "train", i), s, names)
        rows = _rows(y.parent / "labels" / "train" / f"{i:06d}.txt")
        assert len(rows) == len(sc.classes)
        for row, cls, m, xywh in zip(rows, sc.classes, sc.masks, sc.yolo_labels()[:, 1:]):
            coords = np.concatenate([row[1:5], row[5:].reshape(4, 3)[:, :2].ravel()]) if task == "pose" else row[1:]
            assert int(row[0]) == cls and np.all((coords >= 0) & (coords <= 1))
            if task == "segment":  # the polygon, drawn, is the object's largest visible region
                pts = row[1:].reshape(-1, 2) * s - 0.5
                drawn = np.zeros((s, s), np.uint8)
                cv2.fillPoly(drawn, [np.rint(pts).astype(np.int32)], 1)
                want = _largest_region_filled(m)
                iou = (drawn.astype(bool) & want).sum() / (drawn.astype(bool) | want).sum()
                assert iou >= 0.9, (i, CLASSES[cls], iou)
            elif task == "obb":  # every visible pixel lies in the rotated box, which is no larger than the upright one
                corners = (row[1:].reshape(4, 2) * s).astype(np.float32)
                ys, xs = np.nonzero(m)
                inside = [cv2.pointPolygonTest(corners, (float(x) + 0.5, float(yy) + 0.5), True) for x, yy in
                          zip(xs, ys)]
                assert min(inside) >= -0.01, (i, CLASSES[cls], min(inside))
                assert cv2.contourArea(corners) <= (np.ptp(xs) + 1) * (np.ptp(ys) + 1) * (1 + 1e-4)
            else:  # box as for detect, then top, right, bottom, left extreme visible pixels, all visible (2)
                np.testing.assert_allclose(row[1:5], xywh, atol=1e-6)
                k = row[5:].reshape(4, 3)
                assert np.all(k[:, 2] == 2)
                px = np.floor(k[:, :2] * s + 1e-6).astype(int)
                assert all(m[yy, x] for x, yy in px), (i, CLASSES[cls])
                ys, xs = np.nonzero(m)
                assert (px[0, 1], px[1, 0], px[2, 1], px[3, 0]) == (ys.min(), xs.max(), ys.max(), xs.min())
            checked += 1
    assert checked >= 30


def test_pose_yaml_and_flip_idx(tmp_path):
    """kpt_shape and flip_idx in the YAML; flip_idx is right: a mirrored mask's keypoints are the mirrored ones,
    reordered by flip_idx."""
    import yaml

    from yolo_attn.data import FLIP_IDX, KPT_SHAPE

    y = make_shapes(tmp_path, train=2, val=1, imgsz=64, task="pose")
    d = yaml.safe_load(y.read_text())
    assert d["kpt_shape"] == list(KPT_SHAPE) == [4, 3] and d["flip_idx"] == list(FLIP_IDX)
    for i in range(10):
        sc = render(image_rng(0, "train", i), 64)
        for k in range(len(sc.classes)):
            kp = sc.keypoints(k)
            owner = sc.owner.copy()
            flipped = type(sc)(sc.image[:, ::-1], sc.classes, sc.boxes, owner[:, ::-1], sc.parts, sc.visibility, 0)
            fk = flipped.keypoints(k)
            mirrored = kp[list(FLIP_IDX)].copy()
            mirrored[:, 0] = 64 - mirrored[:, 0]
            np.testing.assert_allclose(fk[[1, 3], 0], mirrored[[1, 3], 0])  # right/left: x (y may tie)
            np.testing.assert_allclose(fk[[0, 2], 1], mirrored[[0, 2], 1])  # top/bottom: y (x may tie)


def test_classify_folders(tmp_path):
    root = make_shapes(tmp_path / "a", train=12, val=6, imgsz=64, seed=2, task="classify")
    again = make_shapes(tmp_path / "b", train=12, val=6, imgsz=64, seed=2, task="classify")
    files = {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.jpg"))}
    assert files == {str(p.relative_to(again)): p.read_bytes() for p in sorted(again.rglob("*.jpg"))}
    assert sorted(p.name for p in (root / "train").iterdir()) == sorted(CLASSES)
    assert len([k for k in files if k.startswith("train/")]) == 12 and len(files) == 18
    for key, data in files.items():
        split, name, file = key.split("/")
        i = int(file[:6])
        assert name == CLASSES[i % len(CLASSES)]  # classes in turn
        sc = classify_scene(image_rng(2, split, i), 64, name)
        assert len(sc.classes) >= 1 and set(sc.classes.tolist()) == {0}  # objects of that one class show
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        assert cv2.PSNR(img, sc.image) > 33  # and the file is that render
    # Ultralytics reads it as a classification dataset
    code = textwrap.dedent(f"""
        from ultralytics.data.utils import check_cls_dataset
        d = check_cls_dataset({str(root)!r})
        assert d["nc"] == {len(CLASSES)} and sorted(d["names"].values()) == {sorted(CLASSES)!r}, d
        print("OK")
        """)
    env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_CONFIG_DIR": str(tmp_path / "cfg"), "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "OK" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("task", ["segment", "pose", "obb"])
def test_task_datasets_deterministic_and_cli(tmp_path, task, capsys):
    a = make_shapes(tmp_path / "a", train=3, val=2, imgsz=64, seed=9, task=task)
    assert main(["--out", str(tmp_path / "b"), "--train", "3", "--val", "2", "--imgsz", "64", "--seed", "9",
                 "--task", task]) == 0
    assert _files(a.parent) == _files(tmp_path / "b")
    assert f"task={task!r}" in a.read_text()


def test_task_errors(tmp_path):
    with pytest.raises(ValueError, match="task must be one of detect, segment, pose, obb, classify"):
        make_shapes(tmp_path, train=1, val=1, imgsz=32, task="depth")
    with pytest.raises(ValueError, match="'pair' .* has no single outline"):
        make_shapes(tmp_path, train=1, val=1, imgsz=32, task="segment", classes=["pair", "ring"])
