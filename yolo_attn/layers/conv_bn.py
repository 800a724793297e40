"""Convolution followed by BatchNorm, with the parameter names EfficientViT and SHViT use.

EfficientViT (Liu et al., CVPR 2023) and SHViT (Yun & Ro, CVPR 2024) both build their attention projections from a
``Conv2d_BN`` block whose children are called ``c`` and ``bn``; keeping those names lets official checkpoints load
with ``strict=True``. ``fuse()`` folds the BatchNorm into the convolution for inference (as the official
``Conv2d_BN.fuse()`` does); ``fuse_layers(model)`` does it for every block inside a model, in place.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ConvBN", "fuse_conv_bn", "fuse_layers"]


class ConvBN(nn.Sequential):
    """``Conv2d(bias=False)`` then ``BatchNorm2d``: state_dict keys ``c.weight``, ``bn.weight`` ...

    Args:
        c1 (int): Input channels.
        c2 (int): Output channels.
        k (int): Kernel size.
        s (int): Stride.
        p (int): Padding.
        g (int): Groups.
        bn_weight_init (float): Initial BatchNorm scale; 0 makes the block output exactly 0 at initialisation.

    Examples:
        >>> m = ConvBN(16, 32, 3, p=1)
        >>> m(torch.randn(1, 16, 8, 8)).shape
        torch.Size([1, 32, 8, 8])
    """

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, p: int = 0, g: int = 1, bn_weight_init: float = 1.0):
        super().__init__()
        self.add_module("c", nn.Conv2d(c1, c2, k, s, p, groups=g, bias=False))
        self.add_module("bn", nn.BatchNorm2d(c2))
        nn.init.constant_(self.bn.weight, bn_weight_init)
        nn.init.constant_(self.bn.bias, 0)

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        """Return a single ``Conv2d`` (with bias) that computes this block in eval mode. Reads the two children in
        order, whatever their names: a subclass may name them as an official module does (``conv``/``bn``)."""
        conv, bn = self
        return fuse_conv_bn(conv, bn)


@torch.no_grad()
def fuse_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """Fold ``bn`` (eval statistics) into ``conv``; the result has the conv's geometry, device and dtype."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (c2,)
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        bias=True,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )
    fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
    return fused.requires_grad_(False)


@torch.no_grad()
def fuse_layers(module: nn.Module) -> int:
    """Fold, in place, every BatchNorm inside yolo_attn layers into its convolution, for inference. Idempotent.

    Every :class:`ConvBN` below ``module`` (CGA's and SHSA's projections; ``module`` may be a whole Ultralytics model)
    is replaced by the single ``Conv2d`` of :meth:`ConvBN.fuse`, and modules with a ``fold_norm()`` method (SHSA: the
    GroupNorm affine into the following 1×1 convolution) fold that too. Uses the BatchNorm running statistics, so the
    result equals the eval-mode output of the unfused module (to float rounding); fused convolutions have
    ``requires_grad=False``, as Ultralytics' fused convolutions do. Modules of other libraries are not touched.

    Returns:
        The number of folds done (0 when there was nothing left to fold).
    """
    count = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, ConvBN):
                setattr(parent, name, child.fuse())  # Sequential/ModuleList children are set by their key too
                count += 1
    for m in list(module.modules()):
        fold = getattr(m, "fold_norm", None)
        if callable(fold):
            count += fold()
    return count
