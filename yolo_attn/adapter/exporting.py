"""Export formats a layer's runtime cannot run (fact 11 of the adapter): refused before anything is written.

A layer declares ``unsupported_formats={"ncnn": "<the operator and why>"}`` (``yolo_attn.layers.registry``). Every
export — ``yolo export``, ``YOLO.export`` — goes through ``Exporter.__call__(self, model)`` of
``ultralytics.engine.exporter``, which reads the requested format from ``self.args.format``; the wrapper looks for
registered layers in ``model`` whose spec lists that format and raises :class:`UnsupportedExportError` naming the
model layer, the operator and the formats that do run it, instead of a file that fails when it is loaded.
"""

from __future__ import annotations

from torch import nn

from ..layers.registry import REGISTRY
from .patching import patch

__all__ = ["UnsupportedExportError", "unsupported_layers", "wrap_exporter", "EXPORTER_MODULE"]

EXPORTER_MODULE = "ultralytics.engine.exporter"


class UnsupportedExportError(ValueError):
    """A model holds a layer that the requested export format's runtime cannot run (the message names both)."""


def unsupported_layers(model: nn.Module, fmt: str) -> list[str]:
    """One line per layer of ``model`` that ``fmt`` cannot run: ``"model layer 10 (BRA): <reason>"``."""
    fmt = str(fmt).lower()
    specs = [(spec.cls, spec) for spec in REGISTRY.values() if fmt in spec.unsupported_formats]
    if not specs or not isinstance(model, nn.Module):
        return []
    lines = []
    for module in model.modules():
        for cls, spec in specs:
            if isinstance(module, cls):
                index = getattr(module, "i", None)
                where = f"model layer {index}" if index is not None else "a module"
                lines.append(f"{where} ({spec.name}): {spec.unsupported_formats[fmt]}")
    return list(dict.fromkeys(lines))


def _refuse_unsupported(original):
    def __call__(self, model=None, *args, **kwargs):
        fmt = str(getattr(self.args, "format", "")).lower()
        found = unsupported_layers(model, fmt)
        if found:
            raise UnsupportedExportError(
                f"yolo_attn: format={fmt} cannot run this model: {'; '.join(found)}. Export to a format that runs "
                "the layer (the deployment table of the docs lists them), or build the model without it."
            )
        return original(self, model, *args, **kwargs)

    return __call__


def wrap_exporter(module) -> None:
    """Refuse exports to a format that a layer of the model declares unsupported (once; ``module`` is
    ``ultralytics.engine.exporter``)."""
    patch(module.Exporter, "__call__", _refuse_unsupported)
