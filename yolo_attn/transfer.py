"""Pretrained-weight transfer matched by model structure, not by layer index.

An Ultralytics model is a list of layers (``model.model``) whose tensors are named ``model.<index>.<rest>``.
Inserting a layer shifts every later index (``model.11.*`` becomes ``model.12.*``), so loading a stock checkpoint by
name and shape — what Ultralytics does — silently drops most of it. Here the checkpoint's layer list is aligned with
the model's: an order-preserving alignment (the longest common subsequence, weighted by how many tensors agree in
name and shape) pairs each checkpoint layer with its counterpart of the same type; model layers left unpaired are the
inserted ones. Tensors are then copied layer by layer, by their name inside the layer and their shape.

Only the layer list is read: ``model.model`` and, per layer, its ``type`` (else its class name) and state_dict.

    >>> report = transfer(model, "yolov8n.pt")   # doctest: +SKIP
    >>> print(report)                            # doctest: +SKIP
    Transferred 355/375 tensors from yolov8n.pt by structure; every checkpoint tensor used ...
"""

from __future__ import annotations

import re
import sys
import types
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .configs import _absolute

__all__ = ["transfer", "TransferReport", "match_layers", "aligned_source", "source_layers"]

_KEY = re.compile(r"^(?:model\.)?(\d+)\.(.+)$")  # model.<index>.<rest> (also <index>.<rest> of a bare layer list)


@dataclass
class _Layer:
    index: int
    type: str | None  # class name; None when only a state_dict is known
    tensors: dict[str, torch.Tensor]  # name inside the layer -> tensor (parameters and buffers)
    source: int | list | None = None  # the layer's 'from' (None if unknown)
    prefix: str = "model."


@dataclass
class TransferReport:
    """What :func:`transfer` did.

    Attributes:
        transferred: ``(model key, checkpoint key)`` of every copied tensor.
        skipped: ``(model key, reason)`` of every model tensor left as it was.
        unused: ``(checkpoint key, reason)`` of every checkpoint tensor not copied.
        layer_map: model layer index -> checkpoint layer index of the paired layers.
        new_layers: ``(index, type)`` of the model layers with no counterpart in the checkpoint.
        warnings: structural differences beyond inserted layers (a paired layer reads other inputs).
        total: tensors in the model's state_dict.
        source: where the weights came from (path or type).
    """

    transferred: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    unused: list[tuple[str, str]] = field(default_factory=list)
    layer_map: dict[int, int] = field(default_factory=dict)
    new_layers: list[tuple[int, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    total: int = 0
    source: str = ""

    @property
    def n_transferred(self) -> int:
        return len(self.transferred)

    @property
    def n_checkpoint(self) -> int:
        """Tensors in the checkpoint (used + unused)."""
        return len(self.transferred) + len(self.unused)

    def __str__(self) -> str:
        lines = [f"Transferred {self.n_transferred}/{self.total} tensors from {self.source or 'checkpoint'} by "
                 f"structure; " + ("every checkpoint tensor used" if not self.unused else
                                   f"{len(self.unused)}/{self.n_checkpoint} checkpoint tensors unused")]
        if self.new_layers:
            lines.append("  new layers (no counterpart in the checkpoint, keep their initialisation): "
                         + ", ".join(f"{i} {t}" for i, t in self.new_layers))
        for title, rows in (("skipped", self.skipped), ("unused", self.unused)):
            for reason, n in Counter(r for _, r in rows).most_common():
                example = next(k for k, r in rows if r == reason)
                lines.append(f"  {title}: {n} × {reason} (e.g. {example})")
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------------------------------
# reading layer lists
# --------------------------------------------------------------------------------------------------------------------
def _layer_list_owner(obj: Any) -> nn.Module | None:
    """The module whose ``.model`` is the layer list (unwraps a ``YOLO(...)`` front-end), or None."""
    for _ in range(3):
        seq = getattr(obj, "model", None)
        if isinstance(seq, (nn.Sequential, nn.ModuleList)):
            return obj
        if not isinstance(seq, nn.Module):
            return None
        obj = seq
    return None


def _type_name(m: nn.Module) -> str:
    t = getattr(m, "type", None)
    return t.rsplit(".", 1)[-1] if isinstance(t, str) and t else type(m).__name__


def _module_layers(owner: nn.Module) -> list[_Layer]:
    return [_Layer(k, _type_name(m), dict(m.state_dict()), getattr(m, "f", None))
            for k, m in enumerate(owner.model)]


def _state_dict_layers(sd: dict[str, torch.Tensor]) -> tuple[list[_Layer], dict[str, torch.Tensor]]:
    """Group ``model.<i>.<rest>`` keys into layers; other keys are returned apart."""
    by_index: dict[int, dict[str, torch.Tensor]] = {}
    prefix, other = "model.", {}
    for key, value in sd.items():
        m = _KEY.match(key)
        if m and isinstance(value, torch.Tensor):
            by_index.setdefault(int(m.group(1)), {})[m.group(2)] = value
            if not key.startswith("model."):
                prefix = ""
        else:
            other[key] = value
    n = max(by_index, default=-1) + 1
    return [_Layer(k, None, by_index.get(k, {}), None, prefix) for k in range(n)], other


def _load(ckpt: Any) -> tuple[Any, str]:
    if isinstance(ckpt, (str, Path)):
        path = Path(ckpt)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {ckpt} not found (yolo_attn.transfer downloads nothing)")
        # a full Ultralytics checkpoint pickles the model classes: as trusted as Ultralytics' own loader treats it
        return torch.load(path, map_location="cpu", weights_only=False), str(path)
    return ckpt, type(ckpt).__name__


def source_layers(ckpt: Any) -> tuple[list[_Layer], nn.Module | None, str]:
    """Layer list of a checkpoint given as a path, checkpoint dict, state_dict or model.

    Returns ``(layers, owner module or None, description)``; a checkpoint dict yields its ``ema`` model if present,
    else its ``model`` (as Ultralytics does).
    """
    obj, desc = _load(ckpt)
    if isinstance(obj, dict):
        module = obj.get("ema") or obj.get("model")
        if isinstance(module, nn.Module):
            obj = module
        elif isinstance(module, dict):
            obj = module
        elif isinstance(obj.get("state_dict"), dict):
            obj = obj["state_dict"]
    if isinstance(obj, nn.Module):
        owner = _layer_list_owner(obj)
        if owner is not None:
            return _module_layers(owner), owner, desc
        obj = obj.state_dict()
    if isinstance(obj, dict) and all(isinstance(k, str) for k in obj):
        layers, _ = _state_dict_layers(obj)
        if layers:
            return layers, None, desc
    raise TypeError(f"cannot read a layer list from {desc}: expected a .pt path, an Ultralytics checkpoint dict, a "
                    "state_dict with 'model.<i>.' keys, or a model with a .model layer list")


# --------------------------------------------------------------------------------------------------------------------
# alignment
# --------------------------------------------------------------------------------------------------------------------
def _pair_score(s: _Layer, d: _Layer) -> int:
    """How well checkpoint layer ``s`` fits model layer ``d``; 0 = they cannot be counterparts."""
    if s.type is not None and d.type is not None:
        if s.type != d.type:
            return 0
    elif not s.tensors or set(s.tensors) != set(d.tensors):  # only a state_dict: the tensor names must agree
        return 0
    same_name = sum(k in d.tensors for k in s.tensors)
    same_shape = sum(k in d.tensors and d.tensors[k].shape == v.shape for k, v in s.tensors.items())
    return 1 + same_name + 4 * same_shape


def _align(src: list[_Layer], dst: list[_Layer]) -> dict[int, int]:
    """Order-preserving pairing of ``src`` with ``dst`` layers of maximal total score: model index -> ckpt index."""
    n, m = len(src), len(dst)
    best = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            s = _pair_score(src[i], dst[j])
            best[i][j] = max(best[i + 1][j], best[i][j + 1], s + best[i + 1][j + 1] if s else 0)
    pairs, i, j = {}, 0, 0
    while i < n and j < m:
        s = _pair_score(src[i], dst[j])
        if s and best[i][j] == s + best[i + 1][j + 1]:
            pairs[dst[j].index] = src[i].index
            i, j = i + 1, j + 1
        elif best[i][j] == best[i][j + 1]:
            j += 1  # a model layer with no counterpart (inserted)
        else:
            i += 1  # a checkpoint layer with no counterpart (removed)
    return pairs


def _structure_warnings(src: list[_Layer], dst: list[_Layer], pairs: dict[int, int]) -> list[str]:
    """Paired layers whose inputs are not paired too (looking through inserted single-input layers)."""
    if any(layer.source is None for layer in (*src, *dst)):
        return []
    dst_by_index = {layer.index: layer for layer in dst}

    def through_inserted(k: int) -> int:
        while k not in pairs and k in dst_by_index and isinstance(dst_by_index[k].source, int) and k > 0:
            k = _absolute(dst_by_index[k].source, k)[0]
        return k

    out = []
    for j, k in pairs.items():
        want = _absolute(src[k].source, k)
        got = [pairs.get(through_inserted(x), None) if x >= 0 else None for x in _absolute(dst_by_index[j].source, j)]
        want = [x if x >= 0 else None for x in want]
        if got != want:
            out.append(f"model layer {j} ({dst_by_index[j].type}) reads {got} in checkpoint numbering, its "
                       f"counterpart {k} reads {want}")
    return out


def match_layers(model: nn.Module, ckpt: Any) -> dict[int, int]:
    """Model layer index -> checkpoint layer index for every pair of counterpart layers."""
    owner = _layer_list_owner(model)
    if owner is None:
        raise TypeError(f"{type(model).__name__} has no .model layer list")
    return _align(source_layers(ckpt)[0], _module_layers(owner))


def aligned_source(model: nn.Module, source: nn.Module) -> nn.Module | None:
    """A shallow copy of the model ``source`` whose layer list is laid out like ``model``'s, or None.

    Position ``j`` of the copy's layer list holds the counterpart of ``model.model[j]`` (an empty module where there
    is none), so name-and-shape matching (``model.<j>.<rest>``) pairs the right tensors. The copy shares its layers
    with ``source``. None when ``source`` has no layer list or is already laid out like ``model``.
    """
    owner, src_owner = _layer_list_owner(model), _layer_list_owner(source)
    if owner is None or src_owner is None:
        return None
    dst_layers, src_layers = _module_layers(owner), _module_layers(src_owner)
    pairs = _align(src_layers, dst_layers)
    if len(src_layers) == len(dst_layers) and all(pairs.get(j) == j for j, d in enumerate(dst_layers) if d.tensors):
        return None
    seq = nn.Sequential(*(src_owner.model[pairs[j]] if j in pairs else nn.Module() for j in range(len(dst_layers))))
    view = object.__new__(type(src_owner))
    view.__dict__ = dict(src_owner.__dict__)
    view._modules = dict(src_owner._modules)
    view._modules["model"] = seq
    return view


# --------------------------------------------------------------------------------------------------------------------
# transfer
# --------------------------------------------------------------------------------------------------------------------
def _shape(t: torch.Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


def transfer(model: nn.Module, ckpt: Any, verbose: bool = False) -> TransferReport:
    """Copy the tensors of ``ckpt`` into ``model``, pairing layers by structure; returns a :class:`TransferReport`.

    Args:
        model: an Ultralytics model (``DetectionModel``, ``RTDETRDetectionModel``, ... or a ``YOLO(...)``
            front-end): anything with a ``.model`` layer list.
        ckpt: a ``.pt`` path, a checkpoint dict (``ema`` / ``model``), a state_dict (``model.<i>.<rest>`` keys) or a
            model.
        verbose: print the report.

    Tensors of a paired layer are copied when their name inside the layer and their shape agree; everything else is
    left as initialised and listed in the report with the reason (for example the class-count dependent rows of the
    detection head when the checkpoint has another number of classes).
    """
    owner = _layer_list_owner(model)
    if owner is None:
        raise TypeError(f"{type(model).__name__} has no .model layer list")
    src, _, desc = source_layers(ckpt)
    dst = _module_layers(owner)
    pairs = _align(src, dst)
    report = TransferReport(layer_map=dict(pairs), source=desc, total=len(owner.state_dict()))
    report.warnings = _structure_warnings(src, dst, pairs)
    paired_src = set(pairs.values())
    new_sd: dict[str, torch.Tensor] = {}
    for layer in dst:
        k = pairs.get(layer.index)
        if k is None:
            if layer.tensors:
                report.new_layers.append((layer.index, layer.type or "?"))
            for name in layer.tensors:
                report.skipped.append((f"model.{layer.index}.{name}", f"new layer ({layer.type})"))
            continue
        s = src[k]
        for name, t in layer.tensors.items():
            key, skey = f"model.{layer.index}.{name}", f"{s.prefix}{k}.{name}"
            if name not in s.tensors:
                report.skipped.append((key, f"not in checkpoint layer {k} ({s.type or 'state_dict'})"))
            elif s.tensors[name].shape != t.shape:
                report.skipped.append((key, f"shape {_shape(t)} here, {_shape(s.tensors[name])} in the checkpoint"))
                report.unused.append((skey, "shape differs from its counterpart"))
            else:
                new_sd[key] = s.tensors[name].detach().to(device=t.device, dtype=t.dtype)
                report.transferred.append((key, skey))
        for name in s.tensors:
            if name not in layer.tensors:
                report.unused.append((f"{s.prefix}{k}.{name}", f"no such tensor in model layer {layer.index}"))
    for s in src:
        if s.index not in paired_src:
            for name in s.tensors:
                report.unused.append((f"{s.prefix}{s.index}.{name}",
                                      f"checkpoint layer {s.index} ({s.type or 'state_dict'}) has no counterpart"))
    with torch.no_grad():
        owner.load_state_dict(new_sd, strict=False)
    if verbose:
        print(report)
    return report


class _CallableModule(types.ModuleType):
    """This module, callable as :func:`transfer`. ``from yolo_attn import transfer`` must give something that
    transfers, whatever was imported first; but the package imports its exports lazily (so ``yolo-attn --help``
    imports no torch), and Python binds ``yolo_attn.transfer`` to this module the moment it is first imported, so a
    function of that name on the package would be replaced by the module from then on."""

    def __call__(self, model: nn.Module, ckpt: Any, verbose: bool = False) -> TransferReport:
        return transfer(model, ckpt, verbose)


sys.modules[__name__].__class__ = _CallableModule
