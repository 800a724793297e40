"""Ultralytics' own attention modules by YAML name (fact 12 of the adapter): ``UltralyticsChannelAttention``,
``UltralyticsSpatialAttention`` and ``UltralyticsCBAM``.

Ultralytics defines ``ChannelAttention(channels)``, ``SpatialAttention(kernel_size=7)`` and ``CBAM(c1,
kernel_size=7)`` in ``ultralytics.nn.modules.conv`` (every checked release), but ``parse_model`` cannot build them:
``tasks`` does not import them, and a YAML row would not get its input channels. These names build Ultralytics'
classes themselves, with the input channels filled in: the model holds ``ultralytics.nn.modules.conv.CBAM`` ..., so
its checkpoints load wherever Ultralytics is installed, with or without yolo_attn.

They are Ultralytics' modules, not the papers': Ultralytics' CBAM gates channels with one 1×1 convolution (with bias)
of the average-pooled map and a sigmoid — no max pooling, no reduction MLP — and its spatial gate is a 3×3 or 7×7
convolution of the channel mean and max with no BatchNorm. The paper's CBAM (Woo et al., ECCV 2018) is yolo_attn's
``CBAM`` layer. These names are not in the layer registry (``yolo-attn layers`` lists them apart): the registry
holds the layers yolo_attn implements and tests against their official code.
"""

from __future__ import annotations

import importlib

from torch import nn

from ..layers._checks import LayerArgumentError, check_int
from ..layers.registry import LayerSpec

__all__ = ["ULTRALYTICS_SPECS", "ultralytics_class", "UltralyticsChannelAttention", "UltralyticsSpatialAttention",
           "UltralyticsCBAM"]

MODULE = "ultralytics.nn.modules.conv"


def ultralytics_class(name: str) -> type[nn.Module]:
    """Ultralytics' class ``name`` from ``ultralytics.nn.modules.conv`` (imported when a model is built: the adapter
    imports no Ultralytics module until it registers)."""
    return getattr(importlib.import_module(MODULE), name)


def _kernel(layer: str, kernel_size) -> int:
    kernel_size = check_int(layer, "kernel_size", kernel_size)
    if kernel_size not in (3, 7):
        raise LayerArgumentError(f"{layer}: kernel_size must be 3 or 7 (Ultralytics' SpatialAttention), got "
                                 f"{kernel_size}.")
    return kernel_size


class UltralyticsChannelAttention(nn.Module):
    """Ultralytics' ``ChannelAttention``: ``x * sigmoid(conv1x1(avgpool(x)))``; building this name returns an
    instance of Ultralytics' class.

    Args:
        c1: input channels (filled in from the YAML).

    Examples:
        >>> m = UltralyticsChannelAttention(64)
        >>> type(m).__module__, m.fc.in_channels
        ('ultralytics.nn.modules.conv', 64)
    """

    def __new__(cls, c1: int):
        return ultralytics_class("ChannelAttention")(check_int("UltralyticsChannelAttention", "c1", c1))


class UltralyticsSpatialAttention(nn.Module):
    """Ultralytics' ``SpatialAttention``: ``x * sigmoid(conv([mean_c(x), max_c(x)]))``, kernel 3 or 7; building this
    name returns an instance of Ultralytics' class (which takes no channel count: ``c1`` is only checked).

    Args:
        c1: input channels (filled in from the YAML).
        kernel_size: 3 or 7.

    Examples:
        >>> UltralyticsSpatialAttention(64, 3).cv1.kernel_size
        (3, 3)
    """

    def __new__(cls, c1: int, kernel_size: int = 7):
        check_int("UltralyticsSpatialAttention", "c1", c1)
        return ultralytics_class("SpatialAttention")(_kernel("UltralyticsSpatialAttention", kernel_size))


class UltralyticsCBAM(nn.Module):
    """Ultralytics' ``CBAM``: its ``ChannelAttention`` then its ``SpatialAttention`` (not the paper's CBAM: see the
    module docstring); building this name returns an instance of Ultralytics' class.

    Args:
        c1: input channels (filled in from the YAML).
        kernel_size: 3 or 7, of the spatial gate.

    Examples:
        >>> m = UltralyticsCBAM(32)
        >>> type(m).__name__, m.channel_attention.fc.out_channels, m.spatial_attention.cv1.kernel_size
        ('CBAM', 32, (7, 7))
    """

    def __new__(cls, c1: int, kernel_size: int = 7):
        c1 = check_int("UltralyticsCBAM", "c1", c1)
        return ultralytics_class("CBAM")(c1, _kernel("UltralyticsCBAM", kernel_size))


_PAPER = "Woo et al., ECCV 2018 (CBAM), as simplified by Ultralytics"
ULTRALYTICS_SPECS: tuple[LayerSpec, ...] = tuple(
    LayerSpec(name=cls.__name__, cls=cls, official_code=f"ultralytics `{MODULE}.{target}`", paper=_PAPER,
              summary=summary)
    for cls, target, summary in (
        (UltralyticsChannelAttention, "ChannelAttention", "Ultralytics' channel gate: sigmoid(1×1 conv of the mean)"),
        (UltralyticsSpatialAttention, "SpatialAttention",
         "Ultralytics' spatial gate: sigmoid(k×k conv of channel mean and max), no BatchNorm"),
        (UltralyticsCBAM, "CBAM", "Ultralytics' CBAM: its channel gate, then its spatial gate (not the paper's)"),
    )
)
"""The specs that install these names into Ultralytics' ``tasks`` namespace (not registry layers)."""
