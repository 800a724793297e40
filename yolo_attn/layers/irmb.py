"""Inverted Residual Mobile Block (iRMB), from EMO.

Paper: Zhang, Li, Tian, Wang, Wang, Huang, Wang & Tao, "Rethinking Mobile Block for Efficient Attention-based
Models", ICCV 2023 (https://arxiv.org/abs/2301.01146). Official code: zhangzjn/EMO, ``model/emo.py`` (class
``iRMB``), with its helpers ``ConvNormAct``, ``get_norm`` and ``get_act`` (``model/basic_modules.py``) and timm's
``SqueezeExcite`` and ``DropPath``.

The block: a pre-norm (BatchNorm), then windowed multi-head self-attention whose values are a 1×1 "expansion"
projection (``v``, ``c1 · exp_ratio`` channels, then the activation), a depthwise k×k convolution + BatchNorm + SiLU
added to its input (``conv_local``; optional squeeze-excitation ``se``), a 1×1 projection back to ``c1`` (``proj``),
and the outer residual: ``x + proj(a + se(silu(bn(dw(a)))))`` with ``a = attention(v(norm(x)))``. Queries and keys
(``qk``) come from a 1×1 convolution of the normalised map; the map is zero-padded at the bottom/right to a
multiple of ``window_size`` and split, as the official ``rearrange('b c (h1 n1) (w1 n2) -> (b n1 n2) c h1 w1')``
does, into ``n1 × n2`` windows of ``window_size²`` tokens each — a window is a *dilated grid*: the pixels whose
row ≡ a (mod n1) and column ≡ b (mod n2), spread over the whole map (not a contiguous tile). The padded tokens take
part in the softmax (keys and values computed from zeros), as in the official module.

Faithful: the official ``iRMB(dim_in=c1, dim_out=c1, ...)`` state_dict loads into this layer with ``strict=True``
and this layer's into it (keys ``norm.*``, ``qk.conv.weight``, ``v.conv.weight``, ``conv_local.conv.weight``,
``conv_local.norm.*``, ``se.conv_reduce.*``/``se.conv_expand.*`` when ``se_ratio > 0``, ``proj.conv.weight``), with
equal outputs and gradients in eval and train mode at any H×W, 1×1 included; same constructor defaults (dim_head 64
where it divides c1, window 7, exp_ratio 1, dw_ks 3, ReLU, BatchNorm with eps 1e-6, no SE, no qkv bias); same
initialisation (PyTorch defaults, drawn in the official order). Every official option that keeps the map's shape is
supported: ``attn_s`` (attention or a plain 1×1 ``v``), ``v_proj``, ``attn_pre`` (attention before ``v``),
``v_group``, ``qkv_bias``, ``norm_in``, ``has_skip``, ``se_ratio``, the dropouts and drop-path (timm's, restated:
timm is not needed).

Differs:

* Output channels are the input channels (``dim_out = dim_in``) and ``stride`` must be 1: the layer keeps the map's
  shape. ``dilation`` must be 1 (the official padding ``ceil((k - stride) / 2)`` ignores the dilation, so another
  value shrinks the map and the official block fails at its residual), and ``dw_ks`` must be odd (an even kernel with
  that padding grows the map).
* The YAML argument order puts the arguments one changes first: ``iRMB(c1, dim_head, window_size, exp_ratio, dw_ks,
  se_ratio, attn_s, ...)``; the names and defaults are the official ones.
* ``dim_head`` defaults to the official 64 where it divides ``c1`` and otherwise to the largest divisor of ``c1``
  below 64 (:func:`default_dim_head`): the official default cannot build at ``c1 < 64`` (no head) nor at 96, 160,
  ..., so ``[-1, 1, iRMB, []]`` builds at every scale; at 64, 128, 256, 512 ... it is the official block. A YAML row
  whose ``dim_head`` equals the input channels (above 64) is read as a channel count written first and dropped.
* ``window_size <= 0`` (the official "one window of the whole map") is refused: window sizes are 1..32.
* ``norm_layer`` is one of ``bn_2d``, ``ln_2d``, ``none`` (``in_2d`` fails on 1×1 maps in training) and
  ``act_layer`` one of the official names but ``prelu`` (a parameter of its own, left out); the official ``gn``
  cannot be built there either (``GroupNorm`` needs two sizes). Constructor arguments are checked (non-integers, 0
  and negatives refused, naming iRMB and the argument; ``c1`` must be divisible by ``dim_head`` when there is
  attention, naming the channel count); ``exp_ratio`` is capped at 16, ``se_ratio`` at 4.
* The depthwise convolution + BatchNorm (``conv_local``) is a :class:`~.conv_bn.ConvBN` (children named ``conv`` and
  ``norm``, the official keys) so that :func:`~.conv_bn.fuse_layers` folds it; ``fold_norm`` replaces the pre-norm
  BatchNorm by its eval-mode per-channel affine (buffers ``norm.scale``/``norm.shift``; it cannot go into the 1×1
  convolutions, since the windows are zero-padded after the norm). Inside an Ultralytics model every BatchNorm gets
  Ultralytics' ``eps=1e-3, momentum=0.03`` (the official module's too); the reference takes the layer's settings.

Fast path (eager): the 1×1 convolutions run on the windowed map as in the official module, but q and k as two
convolutions whose outputs are (windows·heads, d, N) *views* (no rearranged copies of q, k, v); the attention of all
windows and heads is one call of :func:`~.attention.channels_first_attention`, in the form
:func:`~.attention.attention_form` picks: on CUDA the fused SDPA kernels (one kernel, scores in fp32 without casts),
on CPU (rules measured on 2 cores) one ``bmm`` (scaled in place), softmax and one ``bmm`` for 7×7 windows; the window
reverse reads the result in place and is the only copy back (the official module makes five rearranged/
``contiguous`` copies and pads even when nothing is padded). With ``attn_drop > 0`` in training the explicit matrix
is kept (dropout acts on it). Memory: a window holds ``window_size²`` tokens whatever the map size, so the scores
are ``B · heads · H·W · window_size²`` numbers — linear in tokens on every device (none held by CUDA's fused
kernels). Without autograd the residual additions are in place. Traced (export): the same math with
tensors of at most 4 dimensions, batch first (the window split in two 4-D steps), padding always recorded so that
one trace serves every map size. Reference formulation (:class:`iRMBReference`, ``spec.reference``): the official
module restated plainly (einops rearranges written as view/permute), which the fast path is tested against.
"""

from __future__ import annotations

import contextlib
import math
import numbers
from collections import OrderedDict
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import (LayerArgumentError, check_bool, check_divisible, check_int, check_odd_kernel,
                      check_positive_float, largest_divisor)
from .attention import channels_first_attention
from .conv_bn import ConvBN
from .registry import LayerTests, load_weights, register_module

__all__ = ["iRMB", "iRMBReference", "ConvNormAct", "LocalConvBN", "LayerNorm2d", "SqueezeExcite", "ChannelAffine",
           "DropPath", "Activation", "IRMB_NORMS", "IRMB_ACTS"]

_NAME = "iRMB"

IRMB_ACTS = {
    # the official get_act names (timm's activations written out), all but prelu
    "none": lambda x: x,
    "relu": F.relu,
    "relu6": F.relu6,
    "silu": F.silu,
    "swish": lambda x: x * x.sigmoid(),
    "gelu": F.gelu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "hsigmoid": lambda x: F.relu6(x + 3.0) / 6.0,
    "hswish": lambda x: x * (F.relu6(x + 3.0) / 6.0),
    "mish": lambda x: x * F.softplus(x).tanh(),
    "hmish": lambda x: 0.5 * x * (x + 2).clamp(min=0, max=2),
}
"""Activation name (the official ``get_act`` keys) -> function."""

IRMB_NORMS = ("bn_2d", "ln_2d", "none")
"""Pre-norm names: the official ``get_norm`` keys that build a 2-D norm from the channel count alone and work at
every map size (``in_2d`` fails on a 1×1 map in training)."""

_EPS = 1e-6  # the official get_norm's eps


# ----------------------------------------------------------------------------------------------------------------------
# building blocks (the official helpers restated; shared by the layer and its reference)
# ----------------------------------------------------------------------------------------------------------------------
class Activation(nn.Module):
    """An official ``get_act(name)`` activation, by name (no state)."""

    def __init__(self, name: str):
        super().__init__()
        self.name = name

    def extra_repr(self) -> str:
        return self.name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return IRMB_ACTS[self.name](x)


class LayerNorm2d(nn.Module):
    """The official ``LayerNorm2d``: ``nn.LayerNorm`` over the channels of each pixel (key ``norm.weight``)."""

    def __init__(self, normalized_shape: int, eps: float = _EPS, elementwise_affine: bool = True):
        super().__init__()
        self.norm = nn.LayerNorm(normalized_shape, eps, elementwise_affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def make_norm(name: str, dim: int) -> nn.Module:
    """The official ``get_norm(name)(dim)`` for the supported names (eps 1e-6)."""
    if name == "bn_2d":
        return nn.BatchNorm2d(dim, eps=_EPS)
    if name == "ln_2d":
        return LayerNorm2d(dim, eps=_EPS)
    return nn.Identity()


class ConvNormAct(nn.Module):
    """The official ``ConvNormAct``: convolution (padding ``ceil((k - stride) / 2)``), norm, activation, optional
    skip; children ``conv``, ``norm``, ``act``, ``drop_path`` (the official keys)."""

    def __init__(self, dim_in: int, dim_out: int, kernel_size: int, stride: int = 1, dilation: int = 1,
                 groups: int = 1, bias: bool = False, skip: bool = False, norm_layer: str = "bn_2d",
                 act_layer: str = "relu", inplace: bool = True, drop_path_rate: float = 0.0):
        super().__init__()
        self.has_skip = skip and dim_in == dim_out
        padding = math.ceil((kernel_size - stride) / 2)
        self.conv = nn.Conv2d(dim_in, dim_out, kernel_size, stride, padding, dilation, groups, bias)
        self.norm = make_norm(norm_layer, dim_out)
        self.act = Activation(act_layer)
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.act(self.norm(self.conv(x)))
        if self.has_skip:
            x = self.drop_path(x) + shortcut
        return x


class LocalConvBN(ConvBN):
    """The layer's ``conv_local`` convolution + BatchNorm (eps 1e-6) as a :class:`ConvBN` that ``fuse_layers``
    folds, with the official child names ``conv`` and ``norm`` (keys ``conv_local.conv.weight``,
    ``conv_local.norm.*``; :meth:`ConvBN.fuse` reads the children in order). The SiLU follows
    in the layer's forward."""

    def __init__(self, dim: int, kernel_size: int):
        nn.Sequential.__init__(self, OrderedDict(
            conv=nn.Conv2d(dim, dim, kernel_size, 1, math.ceil((kernel_size - 1) / 2), 1, dim, False),
            norm=nn.BatchNorm2d(dim, eps=_EPS),
        ))


class SqueezeExcite(nn.Module):
    """timm's ``SqueezeExcite(in_chs, rd_ratio, act_layer)`` as the official block builds it: ``x * sigmoid(
    conv_expand(act(conv_reduce(mean(x)))))`` with ``round(in_chs · rd_ratio)`` hidden channels."""

    def __init__(self, in_chs: int, rd_ratio: float = 0.25, act_layer: str = "relu"):
        super().__init__()
        rd_channels = round(in_chs * rd_ratio)
        self.conv_reduce = nn.Conv2d(in_chs, rd_channels, 1, bias=True)
        self.act1 = Activation(act_layer)
        self.conv_expand = nn.Conv2d(rd_channels, in_chs, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_se = x.mean((2, 3), keepdim=True)
        x_se = self.conv_expand(self.act1(self.conv_reduce(x_se)))
        return x * x_se.sigmoid()


class DropPath(nn.Module):
    """timm's ``DropPath``: in training, zero whole samples with probability ``drop_prob`` and rescale the rest."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask.div_(keep) if keep > 0 else x * mask


class ChannelAffine(nn.Module):
    """``x · scale + shift`` per channel: an eval-mode BatchNorm folded by :meth:`iRMB.fold_norm` (buffers)."""

    def __init__(self, scale: torch.Tensor, shift: torch.Tensor):
        super().__init__()
        self.register_buffer("scale", scale.detach().clone().view(1, -1, 1, 1))
        self.register_buffer("shift", shift.detach().clone().view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift  # a multiply and an add (pnnx and CoreML have no addcmul)


class _FoldInfo(NamedTuple):
    """What :meth:`iRMB.fold_norm` folds (the ``pre_norm`` convention of ``fuse_layers``' folding modules)."""

    affine: bool
    num_channels: int


# ----------------------------------------------------------------------------------------------------------------------
# argument checks
# ----------------------------------------------------------------------------------------------------------------------
def _check_bool(name: str, value: Any) -> bool:
    return check_bool(_NAME, name, value)


def _check_fraction(name: str, value: Any, high: float, high_ok: bool) -> float:
    """A real number in ``[0, high]`` (``[0, high)`` unless ``high_ok``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)) or \
            not (0 <= float(value) <= high) or (float(value) == high and not high_ok):
        bound = f"0 <= {name} <= {high:g}" if high_ok else f"0 <= {name} < {high:g}"
        raise LayerArgumentError(f"{_NAME}: {name} must be a number with {bound}, got {value!r}; e.g. {name}=0.0.")
    return float(value)


def _check_name(name: str, value: Any, choices) -> str:
    if not isinstance(value, str) or value not in choices:
        raise LayerArgumentError(f"{_NAME}: {name}={value!r} is not supported; choose one of "
                                 f"{', '.join(map(repr, choices))}.")
    return value


def _check_one(name: str, value: Any, why: str) -> int:
    value = check_int(_NAME, name, value)
    if value != 1:
        raise LayerArgumentError(f"{_NAME}: {name}={value} is not supported; use {name}=1 ({why}).")
    return value


# ----------------------------------------------------------------------------------------------------------------------
# window split (the official rearrange) and its inverse
# ----------------------------------------------------------------------------------------------------------------------
def _windows(x: torch.Tensor, ws: int, n1: int, n2: int) -> torch.Tensor:
    """``b c (h1 n1) (w1 n2) -> (b n1 n2) c h1 w1`` (h1 = w1 = ws): one copy."""
    B, C = x.shape[:2]
    x = x.reshape(B, C, ws, n1, ws, n2).permute(0, 3, 5, 1, 2, 4).reshape(B * n1 * n2, C, ws, ws)
    return x.contiguous()  # a no-op unless the copy was skipped (one window) or x was channels-last (ln_2d)


def _unwindows(x: torch.Tensor, B: int, ws: int, n1: int, n2: int, heads: int) -> torch.Tensor:
    """``(b n1 n2 heads) d (h1 w1) -> b (heads d) (h1 n1) (w1 n2)``: one copy, whatever the strides of ``x`` (the
    attention forms return channels-first views of token-major results: splitting dims is always a view)."""
    d = x.shape[1]
    x = x.unflatten(0, (B, n1, n2, heads)).unflatten(-1, (ws, ws))  # (B, n1, n2, heads, d, ws, ws)
    return x.permute(0, 3, 4, 5, 1, 6, 2).reshape(B, heads * d, ws * n1, ws * n2)


def _windows_4d(x: torch.Tensor, ws: int) -> torch.Tensor:
    """Export form of the split: (B, C, ws·n1, ws·n2) -> (B, n2·n1, C, ws²), windows numbered (b2, a) — any order
    serves, the attention is per window — through tensors of at most 4 dimensions, batch first."""
    B, C, Hp, Wp = x.shape
    n1, n2 = Hp // ws, Wp // ws
    x = x.reshape(B, C * ws, n1, Wp).permute(0, 2, 1, 3)  # (B, a, (C i), (j b2))
    x = x.reshape(B, n1 * C * ws * ws, n2).permute(0, 2, 1)  # (B, b2, (a C i j))
    return x.reshape(B, n2 * n1, C, ws * ws)


def _unwindows_4d(x: torch.Tensor, ws: int, n1: int, n2: int) -> torch.Tensor:
    """Inverse of :func:`_windows_4d`: (B, n2·n1, C, ws²) -> (B, C, ws·n1, ws·n2)."""
    B, _, C, _ = x.shape
    x = x.reshape(B, n2, n1 * C * ws * ws).permute(0, 2, 1)  # (B, (a C i j), b2)
    x = x.reshape(B, n1, C * ws, ws * n2).permute(0, 2, 1, 3)  # (B, (C i), a, (j b2))
    return x.reshape(B, C, ws * n1, ws * n2)


# ----------------------------------------------------------------------------------------------------------------------
# the layer
# ----------------------------------------------------------------------------------------------------------------------
def default_dim_head(c1: int) -> int:
    """The official ``dim_head=64`` where it divides ``c1``; else the largest divisor of ``c1`` below 64 (the
    official default builds no head at ``c1 < 64`` and fails at 96, 160, ...).

    Examples:
        >>> [default_dim_head(c) for c in (16, 32, 64, 96, 256, 320)]
        [16, 32, 64, 48, 64, 64]
    """
    return largest_divisor(check_int(_NAME, "c1 (input channels)", c1), 64)


def _plausible(c1: int, kw: dict) -> str | None:
    """A YAML row whose dim_head is the input channel count (above 64) most likely wrote the channels first."""
    if kw["dim_head"] is not None and kw["dim_head"] == c1 and c1 > 64:
        return f"dim_head={c1} makes one head of all {c1} channels (the official default is 64)"
    return None


class iRMB(nn.Module):  # noqa: N801 - the official class name
    """Inverted residual mobile block: ``x + proj(a + se(silu(bn(dw(a)))))``, ``a`` = windowed multi-head attention
    of the pre-normalised map with values ``act(v(·))``; output channels = input channels.

    Args:
        c1 (int): Input channels (filled in from the model YAML); divisible by ``dim_head`` when ``attn_s``.
        dim_head (int): Channels per attention head (heads = ``c1 // dim_head``); default 64 (the official) where
            it divides ``c1``, else the largest divisor of ``c1`` below 64.
        window_size (int): Window side in tokens (1..32); the map is zero-padded to a multiple of it.
        exp_ratio (float): Expansion of ``v``: ``int(c1 · exp_ratio)`` channels (0 < exp_ratio <= 16).
        dw_ks (int): Depthwise kernel of ``conv_local`` (odd).
        se_ratio (float): Squeeze-excitation ratio after ``conv_local``; 0: none.
        attn_s (bool): Spatial attention; False: ``v`` alone.
        v_proj (bool): Without attention: the 1×1 ``v`` projection (False: none; needs ``exp_ratio`` giving c1).
        qkv_bias (bool): Biases of the ``qk`` and ``v`` convolutions.
        norm_in (bool): The pre-norm.
        has_skip (bool): The inner (``conv_local``) and outer residuals.
        norm_layer (str): Pre-norm: ``'bn_2d'``, ``'ln_2d'`` or ``'none'``.
        act_layer (str): Activation of ``v`` and of the squeeze-excitation (official names, e.g. ``'relu'``,
            ``'silu'``, ``'gelu'``).
        stride (int): Must be 1 (the layer keeps the map's shape).
        dilation (int): Must be 1 (the official padding ignores it).
        attn_drop (float): Dropout on the attention weights (training).
        drop (float): Dropout before ``proj`` (training).
        drop_path (float): Stochastic depth of the residual branch (training).
        v_group (bool): ``v`` as a grouped convolution, one group per head.
        attn_pre (bool): Attention on the normalised map first, ``v`` after it.

    YAML row: ``[-1, 1, iRMB, [64, 7]]`` (dim_head, window_size, exp_ratio, dw_ks, se_ratio, ...; all optional)

    Examples:
        >>> m = iRMB(128)
        >>> m(torch.randn(1, 128, 20, 15)).shape
        torch.Size([1, 128, 20, 15])
        >>> sorted(k for k in m.state_dict() if k.endswith("weight"))  # the official keys
        ['conv_local.conv.weight', 'conv_local.norm.weight', 'norm.weight', 'proj.conv.weight', 'qk.conv.weight', \
'v.conv.weight']
    """

    def __init__(self, c1: int, dim_head: int | None = None, window_size: int = 7, exp_ratio: float = 1.0,
                 dw_ks: int = 3, se_ratio: float = 0.0, attn_s: bool = True, v_proj: bool = True,
                 qkv_bias: bool = False, norm_in: bool = True, has_skip: bool = True, norm_layer: str = "bn_2d",
                 act_layer: str = "relu", stride: int = 1, dilation: int = 1, attn_drop: float = 0.0, drop: float = 0.0,
                 drop_path: float = 0.0, v_group: bool = False, attn_pre: bool = False):
        super().__init__()
        c1 = check_int(_NAME, "c1 (input channels)", c1)
        if dim_head is None:
            dim_head = default_dim_head(c1)
        dim_head = check_int(_NAME, "dim_head", dim_head)
        window_size = check_int(_NAME, "window_size", window_size, high=32)  # window_size² tokens per window
        exp_ratio = check_positive_float(_NAME, "exp_ratio", exp_ratio)
        if exp_ratio > 16:
            raise LayerArgumentError(f"{_NAME}: exp_ratio must be at most 16, got {exp_ratio:g} (EMO uses 2 to 8).")
        dw_ks = check_odd_kernel(_NAME, "dw_ks", dw_ks)
        se_ratio = _check_fraction("se_ratio", se_ratio, 4.0, True)
        attn_s, v_proj, qkv_bias, norm_in, has_skip, v_group, attn_pre = (_check_bool(n, v) for n, v in (
            ("attn_s", attn_s), ("v_proj", v_proj), ("qkv_bias", qkv_bias), ("norm_in", norm_in),
            ("has_skip", has_skip), ("v_group", v_group), ("attn_pre", attn_pre)))
        norm_layer = _check_name("norm_layer", norm_layer, IRMB_NORMS)
        act_layer = _check_name("act_layer", act_layer, tuple(IRMB_ACTS))
        stride = _check_one("stride", stride, "the layer keeps the map's shape")
        dilation = _check_one("dilation", dilation, "the official padding of conv_local ignores the dilation, so "
                                                    "another value changes the map's size")
        attn_drop, drop, drop_path = (_check_fraction(n, v, 1.0, False) for n, v in (
            ("attn_drop", attn_drop), ("drop", drop), ("drop_path", drop_path)))
        dim_mid = int(c1 * exp_ratio)
        if dim_mid < 1:
            raise LayerArgumentError(f"{_NAME}: exp_ratio={exp_ratio:g} gives int(c1 * exp_ratio) = 0 channels for "
                                     f"c1={c1}; use a larger exp_ratio.")
        num_head = 1
        if attn_s:
            check_divisible(_NAME, c1, "dim_head", dim_head)
            num_head = c1 // dim_head
            if (v_group or not attn_pre) and dim_mid % num_head:
                raise LayerArgumentError(
                    f"{_NAME}: the expanded channels int(c1 * exp_ratio) = {dim_mid} (c1={c1}, exp_ratio="
                    f"{exp_ratio:g}) are not divisible by the {num_head} heads (c1 / dim_head); change exp_ratio or "
                    f"dim_head.")
        elif not v_proj and dim_mid != c1:
            raise LayerArgumentError(f"{_NAME}: v_proj=False (no projection) needs int(c1 * exp_ratio) = c1, got "
                                     f"exp_ratio={exp_ratio:g}; use exp_ratio=1.")
        if se_ratio > 0 and round(dim_mid * se_ratio) < 1:
            raise LayerArgumentError(f"{_NAME}: se_ratio={se_ratio:g} gives round({dim_mid} * se_ratio) = 0 hidden "
                                     f"channels; use a larger se_ratio or 0 (no squeeze-excitation).")
        self.c1, self.dim_head, self.window_size, self.exp_ratio, self.dw_ks = c1, dim_head, window_size, exp_ratio, \
            dw_ks
        self.se_ratio, self.attn_s, self.v_proj, self.qkv_bias, self.norm_in = se_ratio, attn_s, v_proj, qkv_bias, \
            norm_in
        self.has_skip, self.norm_layer, self.act_layer, self.stride, self.dilation = has_skip, norm_layer, \
            act_layer, stride, dilation
        self.attn_drop, self.drop, self.drop_path = attn_drop, drop, drop_path
        self.v_group, self.attn_pre = v_group, attn_pre
        self.dim_mid, self.num_head, self.scale = dim_mid, num_head, dim_head ** -0.5
        # submodules in the official order (the same seed draws the same weights)
        self.norm = make_norm(norm_layer, c1) if norm_in else nn.Identity()
        if attn_s:
            self.qk = ConvNormAct(c1, 2 * c1, 1, bias=qkv_bias, norm_layer="none", act_layer="none")
            self.v = ConvNormAct(c1, dim_mid, 1, groups=num_head if v_group else 1, bias=qkv_bias,
                                 norm_layer="none", act_layer=act_layer)
        else:
            self.v = ConvNormAct(c1, dim_mid, 1, bias=qkv_bias, norm_layer="none", act_layer=act_layer) if v_proj \
                else nn.Identity()
        self.conv_local = LocalConvBN(dim_mid, dw_ks)
        self.se = SqueezeExcite(dim_mid, se_ratio, act_layer) if se_ratio > 0 else nn.Identity()
        self.proj = ConvNormAct(dim_mid, c1, 1, norm_layer="none", act_layer="none")

    def extra_repr(self) -> str:
        """The resolved arguments, c1 included (defaults left out)."""
        default = iRMB.__init__.__defaults__
        names = iRMB.__init__.__code__.co_varnames[2:2 + len(default)]
        given = [f"{n}={getattr(self, n)!r}" for n, d in zip(names, default) if getattr(self, n) != d]
        return ", ".join([f"c1={self.c1}", f"heads={self.num_head}" if self.attn_s else "no attention", *given])

    # --- folding (fuse_layers) -----------------------------------------------------------------------------------
    @property
    def pre_norm(self) -> _FoldInfo:
        """What :meth:`fold_norm` folds: the pre-norm BatchNorm's affine (2 per channel), while it is one."""
        return _FoldInfo(isinstance(self.norm, nn.BatchNorm2d) and self.norm.affine, self.c1)

    @torch.no_grad()
    def fold_norm(self) -> int:
        """Replace the pre-norm BatchNorm by its eval-mode per-channel affine (:class:`ChannelAffine`); returns 1 if
        done. Called by :func:`yolo_attn.layers.fuse_layers` for inference (exact: an eval BatchNorm is that affine);
        the zero padding of the windows follows the norm, so it cannot move into the 1×1 convolutions."""
        bn = self.norm
        if not isinstance(bn, nn.BatchNorm2d) or not bn.track_running_stats or bn.running_var is None:
            return 0
        inv = torch.rsqrt(bn.running_var + bn.eps)
        scale = inv * bn.weight if bn.affine else inv
        shift = -bn.running_mean * scale + (bn.bias if bn.affine else 0)
        self.norm = ChannelAffine(scale, shift).requires_grad_(False)
        return 1

    # --- forward -------------------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm(x)
        if self.attn_s:
            x = self._attention_export(x) if torch.jit.is_tracing() else self._attention(x)
        else:
            x = self.v(x)
        y = self.se(F.silu(self.conv_local(x), inplace=True))
        grad = y.requires_grad or x.requires_grad or torch.jit.is_tracing()  # else: in place into fresh outputs
        if self.has_skip:
            x = x + y if grad else y.add_(x)
        else:
            x = y
        if self.drop > 0:
            x = F.dropout(x, self.drop, self.training)
        x = self.proj.conv(x)
        if not self.has_skip:
            return x
        if self.drop_path > 0 and self.training:
            keep = 1 - self.drop_path
            x = x * x.new_empty((x.shape[0], 1, 1, 1)).bernoulli_(keep).div_(keep)
        return shortcut + x if grad or shortcut.requires_grad else x.add_(shortcut)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Channels-first windows ``q``, ``k`` (..., d, N), ``v`` (..., dv, N) -> ``(softmax(qᵀk · scale) vᵀ)ᵀ``
        (..., dv, N): no transposed copies."""
        if q.dtype == torch.float16:  # scores in fp32: unnormalised q·k passes 65504 on large inputs (NaN softmax)
            try:  # autocast would cast the product back to fp16
                ctx = torch.autocast(q.device.type, enabled=False)
            except RuntimeError:  # a device type without autocast (meta)
                ctx = contextlib.nullcontext()
            with ctx:
                attn = torch.matmul(q.float().transpose(-2, -1), k.float()).mul_(self.scale).softmax(dim=-1)
            attn = attn.to(v.dtype)
        else:
            attn = torch.matmul(q.transpose(-2, -1), k).mul_(self.scale).softmax(dim=-1)  # (..., N query, N key)
        if self.attn_drop > 0:
            attn = F.dropout(attn, self.attn_drop, self.training)
        return torch.matmul(v, attn.transpose(-2, -1))

    def _qk_v(self, xw: torch.Tensor):
        """q, k (1×1 convolutions with qk's two weight halves: contiguous outputs) and the values of ``xw``."""
        conv, c1 = self.qk.conv, self.c1
        bias = conv.bias
        q = F.conv2d(xw, conv.weight[:c1], None if bias is None else bias[:c1])
        k = F.conv2d(xw, conv.weight[c1:], None if bias is None else bias[c1:])
        return q, k, (xw if self.attn_pre else self.v(xw))

    def _attention(self, x: torch.Tensor) -> torch.Tensor:
        """Eager form: pad (only when needed), split into windows (one copy), attend, put back (one copy), crop."""
        B, C, H, W = x.shape
        ws = self.window_size
        pad_b, pad_r = (ws - H % ws) % ws, (ws - W % ws) % ws
        if pad_b or pad_r:
            x = F.pad(x, (0, pad_r, 0, pad_b))
        n1, n2 = (H + pad_b) // ws, (W + pad_r) // ws
        q, k, v = self._qk_v(_windows(x, ws, n1, n2))  # (B·n1·n2, c, ws, ws)
        bw, heads, n = q.shape[0], self.num_head, ws * ws
        # (reshape: a convolution may return channels-last strides, e.g. after a channels-last input)
        q, k, v = (t.reshape(bw * heads, -1, n) for t in (q, k, v))  # (windows·heads, d, N)
        if self.attn_drop > 0 and self.training:  # dropout on the attention weights: the explicit matrix
            out = self._attend(q, k, v)
        else:  # the form attention_form picks (CUDA: fused SDPA; CPU: one bmm, softmax, one bmm at 7×7 windows)
            out = channels_first_attention(q, k, v, self.scale, fp32_scores=True)
        out = _unwindows(out, B, ws, n1, n2, heads)
        if pad_b or pad_r:
            out = out[:, :, :H, :W]
        return self.v(out) if self.attn_pre else out

    def _attention_export(self, x: torch.Tensor) -> torch.Tensor:
        """Traced form: padding always recorded (one trace serves every size), at most 4-D tensors, batch first."""
        B, C, H, W = x.shape
        ws = self.window_size
        x = F.pad(x, (0, (ws - W % ws) % ws, 0, (ws - H % ws) % ws))
        n1, n2 = x.shape[2] // ws, x.shape[3] // ws
        heads, n = self.num_head, ws * ws
        q, k, v = self._qk_v(x)  # 1×1 convolutions on the padded map: the same values as on its windows
        q, k, v = (_windows_4d(t, ws) for t in (q, k, v))  # (B, n2·n1, c, N)
        nw = q.shape[1]
        out = self._attend(*(t.reshape(B, nw * heads, t.shape[2] // heads, n) for t in (q, k, v)))
        out = _unwindows_4d(out.reshape(B, nw, -1, n), ws, n1, n2)[:, :, :H, :W]
        return self.v(out) if self.attn_pre else out

    # --- attention maps ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def attention_maps(self, x: torch.Tensor, cells) -> list[torch.Tensor]:
        """The softmax attention of each query cell (row, column) over its window — the dilated grid of pixels that
        share its row mod n1 and column mod n2 — mean over heads, placed on the H×W map (zero elsewhere).
        x: (1, C, H, W). Without attention (``attn_s=False``) there is none to draw: zero maps."""
        H, W = x.shape[-2:]
        if not self.attn_s:
            return [x.new_zeros(H, W) for _ in cells]
        weights: list = []
        _irmb_reference(self)(x, maps=weights)  # (n1·n2, heads, N, N), windows (a, b2) row-major
        attn = weights[0].mean(1)
        ws = self.window_size
        n1, n2 = -(-H // ws), -(-W // ws)
        out = []
        for r, c in cells:
            a, b2 = r % n1, c % n2  # the query's window
            row = attn[a * n2 + b2, (r // n1) * ws + c // n2].view(ws, ws)  # its weights over the window's tokens
            full = x.new_zeros(ws * n1, ws * n2)
            full[a::n1, b2::n2] = row
            out.append(full[:H, :W])
        return out


# ----------------------------------------------------------------------------------------------------------------------
# reference formulation: the official module restated
# ----------------------------------------------------------------------------------------------------------------------
class iRMBReference(nn.Module):  # noqa: N801 - the official class name + Reference
    """The official ``iRMB(dim_in, dim_out, ...)`` restated: same constructor (arguments, defaults), submodule names
    and forward (einops rearranges as view/permute/reshape + ``contiguous``), so its state_dict is the official one.
    ``forward(x, maps=list)`` appends the attention weights (windows·B, heads, N, N) to ``maps``."""

    def __init__(self, dim_in, dim_out, norm_in=True, has_skip=True, exp_ratio=1.0, norm_layer="bn_2d",
                 act_layer="relu", v_proj=True, dw_ks=3, stride=1, dilation=1, se_ratio=0.0, dim_head=64,
                 window_size=7, attn_s=True, qkv_bias=False, attn_drop=0.0, drop=0.0, drop_path=0.0, v_group=False,
                 attn_pre=False):
        super().__init__()
        self.norm = make_norm(norm_layer, dim_in) if norm_in else nn.Identity()
        dim_mid = int(dim_in * exp_ratio)
        self.has_skip = (dim_in == dim_out and stride == 1) and has_skip
        self.attn_s = attn_s
        if self.attn_s:
            assert dim_in % dim_head == 0, "dim should be divisible by num_heads"
            self.dim_head = dim_head
            self.window_size = window_size
            self.num_head = dim_in // dim_head
            self.scale = self.dim_head ** -0.5
            self.attn_pre = attn_pre
            self.qk = ConvNormAct(dim_in, int(dim_in * 2), kernel_size=1, bias=qkv_bias, norm_layer="none",
                                  act_layer="none")
            self.v = ConvNormAct(dim_in, dim_mid, kernel_size=1, groups=self.num_head if v_group else 1,
                                 bias=qkv_bias, norm_layer="none", act_layer=act_layer)
            self.attn_drop = nn.Dropout(attn_drop)
        else:
            if v_proj:
                self.v = ConvNormAct(dim_in, dim_mid, kernel_size=1, bias=qkv_bias, norm_layer="none",
                                     act_layer=act_layer)
            else:
                self.v = nn.Identity()
        self.conv_local = ConvNormAct(dim_mid, dim_mid, kernel_size=dw_ks, stride=stride, dilation=dilation,
                                      groups=dim_mid, norm_layer="bn_2d", act_layer="silu")
        self.se = SqueezeExcite(dim_mid, rd_ratio=se_ratio, act_layer=act_layer) if se_ratio > 0.0 else nn.Identity()
        self.proj_drop = nn.Dropout(drop)
        self.proj = ConvNormAct(dim_mid, dim_out, kernel_size=1, norm_layer="none", act_layer="none")
        self.drop_path = DropPath(drop_path) if drop_path else nn.Identity()

    def forward(self, x: torch.Tensor, maps: list | None = None) -> torch.Tensor:
        shortcut = x
        x = self.norm(x)
        B, C, H, W = x.shape
        if self.attn_s:
            # padding
            if self.window_size <= 0:
                window_size_W, window_size_H = W, H
            else:
                window_size_W, window_size_H = self.window_size, self.window_size
            pad_l, pad_t = 0, 0
            pad_r = (window_size_W - W % window_size_W) % window_size_W
            pad_b = (window_size_H - H % window_size_H) % window_size_H
            x = F.pad(x, (pad_l, pad_r, pad_t, pad_b, 0, 0))
            n1, n2 = (H + pad_b) // window_size_H, (W + pad_r) // window_size_W
            # b c (h1 n1) (w1 n2) -> (b n1 n2) c h1 w1
            x = x.view(B, C, window_size_H, n1, window_size_W, n2).permute(0, 3, 5, 1, 2, 4)
            x = x.reshape(B * n1 * n2, C, window_size_H, window_size_W).contiguous()
            # attention
            b, c, h, w = x.shape
            qk = self.qk(x)
            # b (qk heads dim_head) h w -> qk b heads (h w) dim_head
            qk = qk.view(b, 2, self.num_head, self.dim_head, h * w).permute(1, 0, 2, 4, 3).contiguous()
            q, k = qk[0], qk[1]
            attn_spa = (q @ k.transpose(-2, -1)) * self.scale
            attn_spa = attn_spa.softmax(dim=-1)
            attn_spa = self.attn_drop(attn_spa)
            if maps is not None:
                maps.append(attn_spa)
            if self.attn_pre:
                # b (heads dim_head) h w -> b heads (h w) dim_head
                x = x.view(b, self.num_head, -1, h * w).transpose(-2, -1).contiguous()
                x_spa = attn_spa @ x
                # b heads (h w) dim_head -> b (heads dim_head) h w
                x_spa = x_spa.transpose(-2, -1).reshape(b, -1, h, w).contiguous()
                x_spa = self.v(x_spa)
            else:
                v = self.v(x)
                v = v.view(b, self.num_head, -1, h * w).transpose(-2, -1).contiguous()
                x_spa = attn_spa @ v
                x_spa = x_spa.transpose(-2, -1).reshape(b, -1, h, w).contiguous()
            # unpadding: (b n1 n2) c h1 w1 -> b c (h1 n1) (w1 n2)
            c = x_spa.shape[1]
            x = x_spa.view(B, n1, n2, c, h, w).permute(0, 3, 4, 1, 5, 2).reshape(B, c, h * n1, w * n2).contiguous()
            if pad_r > 0 or pad_b > 0:
                x = x[:, :, :H, :W].contiguous()
        else:
            x = self.v(x)

        x = x + self.se(self.conv_local(x)) if self.has_skip else self.se(self.conv_local(x))

        x = self.proj_drop(x)
        x = self.proj(x)

        x = (shortcut + self.drop_path(x)) if self.has_skip else x
        return x


def _official_kwargs(layer: iRMB) -> dict:
    """The official constructor's arguments for ``layer`` (``dim_out = dim_in = c1``)."""
    return dict(dim_in=layer.c1, dim_out=layer.c1, norm_in=layer.norm_in, has_skip=layer.has_skip,
                exp_ratio=layer.exp_ratio, norm_layer=layer.norm_layer, act_layer=layer.act_layer,
                v_proj=layer.v_proj, dw_ks=layer.dw_ks, stride=layer.stride, dilation=layer.dilation,
                se_ratio=layer.se_ratio, dim_head=layer.dim_head, window_size=layer.window_size, attn_s=layer.attn_s,
                qkv_bias=layer.qkv_bias, attn_drop=layer.attn_drop, drop=layer.drop, drop_path=layer.drop_path,
                v_group=layer.v_group, attn_pre=layer.attn_pre)


def _with_layer_norms(module: nn.Module, layer: iRMB) -> nn.Module:
    """``module`` with ``layer``'s normalisation settings (eps, momentum: Ultralytics sets its own in a model)."""
    ours = {n: m for n, m in layer.named_modules() if isinstance(m, (nn.BatchNorm2d, nn.LayerNorm))}
    for name, m in module.named_modules():
        if name in ours:
            m.eps = ours[name].eps
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = ours[name].momentum
    return module


def _irmb_reference(layer: iRMB) -> iRMBReference:
    """``spec.reference``: :class:`iRMBReference` with ``layer``'s weights and norm settings (the same keys: the
    layer is the official block, residual included)."""
    return load_weights(_with_layer_norms(iRMBReference(**_official_kwargs(layer)), layer), layer)


# ----------------------------------------------------------------------------------------------------------------------
# registry declaration
# ----------------------------------------------------------------------------------------------------------------------
def _official_irmb(ns, layer: iRMB) -> nn.Module:
    """The official ``iRMB(dim_in=c1, dim_out=c1, ...)`` (class from the namespace ``ns``) with ``layer``'s weights
    (``strict=True``; the same keys; residual included): ``official_module``, ``yolo-attn bench --official``."""
    return load_weights(_with_layer_norms(ns.iRMB(**_official_kwargs(layer)), layer), layer)


register_module(
    iRMB,
    pickled=(ConvNormAct, LocalConvBN, LayerNorm2d, SqueezeExcite, DropPath, ChannelAffine, Activation),
    summary="Inverted Residual Mobile Block (windowed attention + depthwise conv, residual)",
    paper="EMO, ICCV 2023",
    official_code="zhangzjn/EMO `model/emo.py` `iRMB`",
    reference=_irmb_reference,
    official_module=_official_irmb,
    plausible=_plausible,
    maps_caption="softmax attention of the query point over its (dilated) window, mean over heads",
    tests=LayerTests(
        # GELU, as EMO's attention stages use: with ReLU, rounding to fp16 flips the sign of a near-zero value
        # pre-activation and its gradient term with it (3.6e-2 on the input gradient with exact arithmetic on the
        # rounded weights, the official form alike), which the fp16 gradient test would measure instead of the layer
        small=lambda: iRMB(16, dim_head=8, act_layer="gelu"),
        sizes=((9, 13), (1, 1), (7, 14), (16, 16)),
        trace=((20, 20), ((16, 24), (1, 1), (3, 50), (7, 7))),
        int_args={"c1": 16, "dim_head": 8, "window_size": 7, "dw_ks": 3, "stride": 1, "dilation": 1},
        bad_args=(({"c1": 16, "dim_head": 6}, "dim_head"), ({"c1": 16, "dim_head": 8, "stride": 2}, "stride"),
                  ({"c1": 16, "dim_head": 8, "dilation": 2}, "dilation"), ({"c1": 16, "dim_head": 8, "dw_ks": 4},
                                                                           "dw_ks"),
                  ({"c1": 16, "dim_head": 8, "window_size": 33}, "window_size"),
                  ({"c1": 16, "dim_head": 8, "exp_ratio": 0.0}, "exp_ratio"),
                  ({"c1": 16, "dim_head": 8, "exp_ratio": 1.0625}, "exp_ratio"),
                  ({"c1": 16, "dim_head": 8, "se_ratio": -0.5}, "se_ratio"),
                  ({"c1": 16, "dim_head": 8, "drop_path": 1.0}, "drop_path"),
                  ({"c1": 16, "dim_head": 8, "norm_layer": "gn"}, "norm_layer"),
                  ({"c1": 16, "dim_head": 8, "act_layer": "prelu"}, "act_layer"),
                  ({"c1": 16, "dim_head": 8, "attn_s": 1}, "attn_s"),
                  ({"c1": 48, "dim_head": 32}, "dim_head")),
        folds=2,  # conv_local's Conv+BN, and the pre-norm BatchNorm into a per-channel affine
        scale_robust=False,  # an eval BatchNorm does not normalise inputs ×100: saturated softmax (as CGA)
    ),
    order=130,
    builtin=True,
)
