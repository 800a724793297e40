"""Bi-Level Routing Attention (BRA), from BiFormer.

Paper: Zhu, Wang, Ke, Zhang & Lau, "BiFormer: Vision Transformer with Bi-Level Routing Attention", CVPR 2023
(https://arxiv.org/abs/2303.08810). Official code: rayleizhu/BiFormer, ``ops/bra_legacy.py`` (class
``BiLevelRoutingAttention``, with its ``TopkRouting``, ``KVGather`` and ``QKVLinear`` helpers).

The map is cut into ``n_win × n_win`` windows (a fixed number of windows, not a fixed window size). One linear
projection gives queries, keys and values per token. Region level: each window's mean query is compared with every
window's mean key (scaled dot product, routing detached from autograd) and the ``topk`` best windows are kept.
Token level: every query attends (multi-head softmax, ``qk_dim ** -0.5`` scaling, as in the official code: the full
``qk_dim``, not the per-head width) to all tokens of its window's ``topk`` routed windows. A 3×3 depthwise
convolution of the values (LePE, ``lepe``) is added and the output linear ``wo`` mixes channels. Output channels =
input channels; no residual (in BiFormer the residual lives in the enclosing block).

Faithful: ``BRA(c1, ...)`` has the official ``BiLevelRoutingAttention(dim=c1, ...)`` state_dict (keys
``qkv.qkv.weight``, ``qkv.qkv.bias``, ``wo.weight``, ``wo.bias``, ``lepe.weight``, ``lepe.bias``; the default router
has no parameters) in both directions with ``strict=True``, and its outputs in eval and train mode (there is no
BatchNorm) at any H×W, 1×1 included; same constructor arguments in the same order, same defaults (``num_heads=8,
n_win=7, topk=4, side_dwconv=3, param_attention='qkvo'``), same initialisation (PyTorch defaults, drawn in the
official order).

Differs: channels-first (B, C, H, W) in and out where the official module takes channels-last (N, H, W, C) tokens;
``auto_pad`` defaults to True (the official default is False, which asserts that H and W are multiples of
``n_win``): the map is padded bottom/right with zeros to whole windows, the padded tokens take part in routing and
attention exactly as in the official ``auto_pad=True`` path, and the output is cropped back to H×W; with
``auto_pad=False`` a map that is not a multiple of ``n_win`` is refused with a message. Constructor arguments are
checked (non-integers, 0 and negatives refused with a message naming the layer and the argument; ``c1`` and
``qk_dim`` must be divisible by ``num_heads``; ``topk <= n_win ** 2``; ``side_dwconv`` odd or 0). Only the official
default path is implemented: ``kv_downsample_mode`` other than ``'identity'`` and ``param_routing``/``diff_routing``/
``soft_routing`` = True are refused at construction (the official ``diff_routing=True`` without soft routing fails in
its ``forward`` as well). The window-level routing scores are formed in float32 under autocast (a few p²×p² numbers),
so that half precision picks the windows float32 picks.

Fast path: at most 4-D throughout (what every exporter records). The qkv projection runs channels last (the padded
map read transposed as (B, H·W, C) token rows: one GEMM whose output rows are the tokens in image order), so there is
no window partition copy: every query, key and value head slice is copied once, straight from those rows into the
head-major layout the attention product takes (one ``index_select`` of rows over the batch; traced, a
``torch.gather`` along the row axis with the batch axis kept), and the attention output goes back to image-ordered
token rows the same way. The token attention of every head and window is one call of
:func:`~.attention.heads_attention` on (B, heads · n_win², tokens, head dim) problems, whose form
:func:`~.attention.heads_form` picks: on CUDA the fused SDPA kernels at every size; on CPU (rules measured on 2 cores)
SDPA from 4,096 query×key pairs per window (P3 and P4 of a 640 input), the explicit matrix below (P5). LePE runs
channels last on the value channels (one copy of their rows), and the output projection is ``Wo · outᵀ``, which
lands channels first.

Memory: a window's w² queries attend to ``topk · w²`` keys, where ``w² = H·W / n_win²`` grows with the map, so the
official module's score matrices hold ``B · heads · topk · (H·W)² / n_win²`` numbers — quadratic in tokens (at P3 of
a 640 input, batch 16: 2.1 GB in fp32, its training step 6.7 GB on 2 CPU cores). The fused kernels hold none:
training memory linear in tokens on CUDA, and on CPU wherever SDPA runs (at P3 and P4 of a 640 input; the explicit
scores that remain are below 4,096 pairs per window, or 256 MB per call). Measured on 2 CPU cores (``yolo-attn
bench``, fp32): at P3 of YOLOv8n 0.20–0.36× the official module's time and 0.11–0.12× its peak memory.

Reference formulation (:class:`BiLevelRoutingAttentionReference`, ``spec.reference``): the official module restated
in plain torch (channels-last tokens, window partition, routing, ``torch.gather`` of whole windows, attention, LePE,
``wo``), which the fast path is tested against.

Export: routing is ``torch.topk`` + ``torch.gather`` (traced: index arithmetic cast through int32, which coremltools
needs; products and adds instead of ``baddbmm``). TorchScript, ONNX, OpenVINO (fp32, INT8), LiteRT and CoreML export
and run (tests/test_deploy.py). NCNN cannot: pnnx leaves ``torch.topk`` as a torch operator, and ncnn refuses to
load the model ("layer torch.topk not exists or registered"); ``yolo export format=ncnn`` is refused before writing
a file (``unsupported_formats``), and the deployment test checks that the refusal is still needed.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import LayerArgumentError, check_bool, check_divisible, check_int, check_positive_float
from .attention import heads_attention
from .registry import LayerTests, load_weights, register_module

__all__ = ["BRA", "BiLevelRoutingAttentionReference", "QKVLinear", "TopkRouting", "KVGather"]

_KV_MODES = ("identity", "ada_avgpool", "ada_maxpool", "maxpool", "avgpool", "fracpool", "conv")


class QKVLinear(nn.Module):
    """The official ``QKVLinear(dim, qk_dim)``: one ``nn.Linear`` (``qkv``) to ``qk_dim + qk_dim + dim`` channels."""

    def __init__(self, dim: int, qk_dim: int, bias: bool = True):
        super().__init__()
        self.dim = dim
        self.qk_dim = qk_dim
        self.qkv = nn.Linear(dim, qk_dim + qk_dim + dim, bias=bias)

    def forward(self, x: torch.Tensor):
        q, kv = self.qkv(x).split([self.qk_dim, self.qk_dim + self.dim], dim=-1)
        return q, kv


def _check_flag(name: str, value) -> bool:
    if check_bool("BRA", name, value):
        raise LayerArgumentError(
            f"BRA: {name}=True is not implemented; only the official default path (param_routing=False, "
            f"diff_routing=False, soft_routing=False: hard, non-differentiable top-k routing) is. Use {name}=False.")
    return value



def _take(rows: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``rows[b, index[b]]``: (B, R, d) rows, row numbers (B or 1, ...) -> (B, X, d). Eager: one ``index_select`` over
    the batch-flattened rows (a row copy each); traced: ``torch.gather`` along the row axis, the batch axis kept."""
    B, _, d = rows.shape
    index = index.expand(B, *index.shape[1:]).reshape(B, -1)
    if torch.jit.is_tracing():  # (the int32 round trip: coremltools computes index arithmetic in float otherwise)
        index = index.to(torch.int32).to(torch.int64)
        return torch.gather(rows, 1, index.unsqueeze(-1).expand(-1, -1, d))
    if B > 1:
        index = index + torch.arange(B, device=index.device).view(B, 1) * rows.shape[1]
    return rows.reshape(-1, d).index_select(0, index.reshape(-1)).view(B, -1, d)


class BRA(nn.Module):
    """Bi-level routing attention: top-k window routing, then token attention inside the routed windows, + LePE.

    Args:
        c1 (int): Input channels (filled in from the model YAML, the official ``dim``); output channels are the same.
        num_heads (int): Attention heads; must divide ``c1`` and ``qk_dim``.
        n_win (int): Windows per side (the map is cut into ``n_win × n_win`` windows, padded to whole windows).
        qk_dim (int | None): Query/key channels; default ``c1``.
        qk_scale (float | None): Multiplier of the dot products (routing and attention); default ``qk_dim ** -0.5``.
        kv_per_win (int): Official argument of the ``ada_*pool`` modes; unused by ``'identity'``.
        kv_downsample_ratio (int): Official argument of the ``maxpool``/``avgpool`` modes; unused by ``'identity'``.
        kv_downsample_kernel (int | None): Official argument, unused.
        kv_downsample_mode (str): Only ``'identity'`` (the official default: no key/value downsampling).
        topk (int): Routed windows per window, ``1..n_win ** 2``.
        param_attention (str): ``'qkvo'`` (output linear ``wo``) or ``'qkv'`` (no output linear).
        param_routing (bool): Must be False (official default).
        diff_routing (bool): Must be False (official default).
        soft_routing (bool): Must be False (official default).
        side_dwconv (int): LePE depthwise kernel, odd; 0 for none.
        auto_pad (bool): Pad the map to whole windows (crop the output back); False refuses other map sizes.

    YAML row: ``[-1, 1, BRA, [8, 7]]`` (num_heads, n_win, ...: the official arguments after ``dim``)

    Examples:
        >>> m = BRA(64)
        >>> m(torch.randn(1, 64, 20, 12)).shape
        torch.Size([1, 64, 20, 12])
        >>> sorted(m.state_dict())  # the official module's keys
        ['lepe.bias', 'lepe.weight', 'qkv.qkv.bias', 'qkv.qkv.weight', 'wo.bias', 'wo.weight']
    """

    def __init__(self, c1: int, num_heads: int = 8, n_win: int = 7, qk_dim: int | None = None,
                 qk_scale: float | None = None, kv_per_win: int = 4, kv_downsample_ratio: int = 4,
                 kv_downsample_kernel: int | None = None, kv_downsample_mode: str = "identity", topk: int = 4,
                 param_attention: str = "qkvo", param_routing: bool = False, diff_routing: bool = False,
                 soft_routing: bool = False, side_dwconv: int = 3, auto_pad: bool = True):
        super().__init__()
        c1 = check_int("BRA", "c1 (input channels)", c1)
        num_heads = check_int("BRA", "num_heads", num_heads, high=c1)
        check_divisible("BRA", c1, "num_heads", num_heads)
        n_win = check_int("BRA", "n_win", n_win, high=64)
        qk_dim = c1 if qk_dim is None else check_int("BRA", "qk_dim", qk_dim, high=4096)
        if qk_dim % num_heads:
            raise LayerArgumentError(f"BRA: qk_dim={qk_dim} is not divisible by num_heads={num_heads}; use a "
                                     f"multiple of {num_heads} (default qk_dim = c1 = {c1}).")
        self.qk_scale = None if qk_scale is None else check_positive_float("BRA", "qk_scale", qk_scale)
        self.kv_per_win = check_int("BRA", "kv_per_win", kv_per_win)
        self.kv_downsample_ratio = check_int("BRA", "kv_downsample_ratio", kv_downsample_ratio)
        self.kv_downsample_kernel = (None if kv_downsample_kernel is None else
                                     check_int("BRA", "kv_downsample_kernel", kv_downsample_kernel))
        if kv_downsample_mode != "identity":
            known = kv_downsample_mode in _KV_MODES
            raise LayerArgumentError(
                f"BRA: kv_downsample_mode={kv_downsample_mode!r} is "
                + ("not implemented here" if known else f"not an official mode ({', '.join(map(repr, _KV_MODES))})")
                + "; only the official default 'identity' (no key/value downsampling) is. Use 'identity'.")
        self.kv_downsample_mode = kv_downsample_mode
        self.topk = check_int("BRA", "topk", topk, high=n_win * n_win)
        if param_attention not in ("qkvo", "qkv"):
            raise LayerArgumentError(f"BRA: param_attention={param_attention!r} is not supported; use 'qkvo' "
                                     "(with the output linear wo, the official default) or 'qkv' (without).")
        for name, flag in (("param_routing", param_routing), ("diff_routing", diff_routing),
                           ("soft_routing", soft_routing)):
            _check_flag(name, flag)
        side_dwconv = check_int("BRA", "side_dwconv", side_dwconv, low=0, high=31)
        if side_dwconv and side_dwconv % 2 == 0:
            raise LayerArgumentError(f"BRA: side_dwconv must be odd to keep the map size (or 0 for no LePE), got "
                                     f"{side_dwconv}; use e.g. 3 or 5.")
        check_bool("BRA", "auto_pad", auto_pad)
        self.dim, self.num_heads, self.n_win, self.qk_dim = c1, num_heads, n_win, qk_dim
        self.scale = self.qk_scale or qk_dim**-0.5
        self.param_attention, self.side_dwconv, self.auto_pad = param_attention, side_dwconv, auto_pad
        # parameters created in the official order (same seed, same weights)
        self.lepe = nn.Conv2d(c1, c1, side_dwconv, 1, side_dwconv // 2, groups=c1) if side_dwconv else None
        self.qkv = QKVLinear(c1, qk_dim)
        self.wo = nn.Linear(c1, c1) if param_attention == "qkvo" else nn.Identity()

    def extra_repr(self) -> str:
        """The resolved arguments, c1 included."""
        return (f"c1={self.dim}, num_heads={self.num_heads}, n_win={self.n_win}, qk_dim={self.qk_dim}, "
                f"topk={self.topk}, side_dwconv={self.side_dwconv}, param_attention={self.param_attention!r}")

    def _padded(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` padded bottom/right with zeros to multiples of ``n_win`` (always a pad op under tracing)."""
        H, W = x.shape[-2:]
        n = self.n_win
        if not self.auto_pad:
            if not torch.jit.is_tracing() and (H % n or W % n):
                raise ValueError(f"BRA: with auto_pad=False the map must be a multiple of n_win={n} on both "
                                 f"sides, got {H}×{W}; use auto_pad=True (the default) to pad it.")
            return x
        pad_b, pad_r = (n - H % n) % n, (n - W % n) % n
        if torch.jit.is_tracing() or pad_b or pad_r:  # F.pad copies even with nothing to pad
            x = F.pad(x, (0, pad_r, 0, pad_b))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        n, m, qk = self.n_win, self.num_heads, self.qk_dim
        x = self._padded(x)
        Hp, Wp = x.shape[-2:]
        h, w = Hp // n, Wp // n  # window side
        p2, w2, N = n * n, h * w, Hp * Wp  # windows, tokens per window, tokens
        dq, dv = qk // m, C // m  # head widths
        d = math.gcd(dq, dv)  # the row width every head slice is made of
        R, eq, ev = (2 * qk + C) // d, dq // d, dv // d  # rows per token, per query/key head, per value head
        wqkv = self.qkv.qkv
        # the linear on every token, channels last: (B, Hp·Wp, C) @ Wᵀ (the map read transposed, no copy), image order
        qkv = F.linear(x.reshape(B, C, N).transpose(1, 2), wqkv.weight, wqkv.bias)  # (B, N, 2·qk + C)
        # region level: mean query/key per window, scaled dot products, top-k windows (detached, float32)
        # (a window's mean query/key is the projection of its mean token: mean and linear map commute, so the means
        # are taken over the C input channels, in float32, and projected in float32 even under autocast)
        xm = x.detach().reshape(B, C * n, h, Wp).sum(2, dtype=torch.float32).reshape(B, C, p2, w).sum(-1) / w2
        with torch.autocast("cuda" if x.is_cuda else "cpu", enabled=False):
            wqk, bqk = wqkv.weight[:2 * qk].detach().float(), wqkv.bias[:2 * qk].detach().float()
            win = torch.matmul(wqk, xm) + bqk.view(1, -1, 1)  # (B, 2·qk, p²) (no baddbmm: pnnx/NCNN lack it)
            logits = (win[:, :qk].transpose(1, 2) * self.scale) @ win[:, qk:]  # (B, p², p²)
        idx = torch.topk(logits, k=self.topk, dim=-1).indices  # (B, p², topk)
        # window order -> image order: image token of the j-th token of the windows taken row-major, and back
        ar = torch.arange(N, device=x.device)
        perm = ar.view(n, h, n, w).transpose(1, 2).reshape(N)
        inv = ar.view(n, n, h, w).transpose(1, 2).reshape(N)
        # token level, head-major: every query/key/value head slice taken straight from the image-ordered token rows
        # (rows of d channels) into the layout of the attention product, (B, heads·p², tokens, head width)
        rows = qkv.reshape(B, N * R, d)
        heads = torch.arange(m, device=x.device).view(1, m, 1, 1)

        def part(first: int, e: int) -> torch.Tensor:  # the rows of each head's slice within a token: (1, m, 1, e)
            return first + heads * e + torch.arange(e, device=x.device)

        q = _take(rows, perm.view(1, 1, N, 1) * R + part(0, eq)).view(B, m * p2, w2, dq)
        kv_tok = perm[idx.unsqueeze(-1) * w2 + torch.arange(w2, device=x.device)].reshape(B, 1, -1, 1) * R
        L = self.topk * w2  # keys per query
        k = _take(rows, kv_tok + part(qk // d, eq)).view(B, m * p2, L, dq)  # routed windows' keys, window by window
        v = _take(rows, kv_tok + part(2 * qk // d, ev)).view(B, m * p2, L, dv)
        out = heads_attention(q, k, v, self.scale)  # softmax(q·scale @ kᵀ) @ v: (B, m·p², w², dv)
        # back to image-ordered token rows, channels last: (B, N, C)
        back = (heads.view(1, 1, m, 1) * N + inv.view(1, N, 1, 1)) * ev + torch.arange(ev, device=x.device)
        out = _take(out.reshape(B, m * N * ev, d), back).view(B, N, C)
        if self.lepe is not None:
            # LePE on the values, channels last (the convolution reads and writes token rows)
            vmap = qkv.view(B, Hp, Wp, -1)[..., 2 * qk:].permute(0, 3, 1, 2)
            vmap = vmap.contiguous(memory_format=torch.channels_last)
            lepe = self.lepe(vmap).permute(0, 2, 3, 1).reshape(B, N, C)
            out = out + lepe if (out.requires_grad or lepe.requires_grad or torch.jit.is_tracing()) else out.add_(lepe)
        if isinstance(self.wo, nn.Linear) and torch.jit.is_tracing():  # export: a product and an add
            out = torch.matmul(self.wo.weight, out.transpose(1, 2)) + self.wo.bias.view(1, C, 1)
        elif isinstance(self.wo, nn.Linear):  # Wo · outᵀ: the product lands channels first
            out = torch.baddbmm(self.wo.bias.view(1, C, 1), self.wo.weight.expand(B, -1, -1), out.transpose(1, 2))
        else:
            out = out.transpose(1, 2)
        return out.reshape(B, C, Hp, Wp)[:, :, :H, :W]

    @torch.no_grad()
    def attention_maps(self, x: torch.Tensor, cells) -> list[torch.Tensor]:
        """The softmax attention of each query cell (row, column) over the tokens of its window's top-k routed windows,
        mean over heads, placed on the H×W map (zero elsewhere; padded tokens dropped). x: (1, C, H, W)."""
        H, W = x.shape[-2:]
        found: list = []
        _bra_reference(self)(x, maps=found)
        attn, r_idx = found[0]  # (p², heads, w², topk·w²), (1, p², topk)
        n = self.n_win
        Hp, Wp = -(-H // n) * n, -(-W // n) * n
        h, w = Hp // n, Wp // n
        out = []
        for r, c in cells:
            win = (r // h) * n + c // w
            row = attn[win, :, (r % h) * w + c % w].mean(0).view(self.topk, h, w)  # over the routed windows' tokens
            full = x.new_zeros(Hp, Wp)
            for t, j in enumerate(r_idx[0, win].tolist()):
                full[(j // n) * h:(j // n + 1) * h, (j % n) * w:(j % n + 1) * w] = row[t]
            out.append(full[:H, :W])
        return out


# ----------------------------------------------------------------------------------------------------------------------
# reference formulation: the official module restated
# ----------------------------------------------------------------------------------------------------------------------
class TopkRouting(nn.Module):
    """The official ``TopkRouting``: scaled window-level scores, top-k, softmax of the kept scores (the routing weights,
    used only by soft routing). ``emb`` is ``nn.Identity`` unless ``param_routing``."""

    def __init__(self, qk_dim: int, topk: int = 4, qk_scale: float | None = None, param_routing: bool = False,
                 diff_routing: bool = False):
        super().__init__()
        self.topk = topk
        self.qk_dim = qk_dim
        self.scale = qk_scale or qk_dim**-0.5
        self.diff_routing = diff_routing
        self.emb = nn.Linear(qk_dim, qk_dim) if param_routing else nn.Identity()
        self.routing_act = nn.Softmax(dim=-1)

    def forward(self, query: torch.Tensor, key: torch.Tensor):
        if not self.diff_routing:
            query, key = query.detach(), key.detach()
        query_hat, key_hat = self.emb(query), self.emb(key)  # (n, p², c_qk)
        attn_logit = (query_hat * self.scale) @ key_hat.transpose(-2, -1)  # (n, p², p²)
        topk_attn_logit, topk_index = torch.topk(attn_logit, k=self.topk, dim=-1)
        return self.routing_act(topk_attn_logit), topk_index  # (n, p², topk) each


class KVGather(nn.Module):
    """The official ``KVGather``: the routed windows' keys/values, (n, p², topk, w², c_kv) (``'none'``: unweighted)."""

    def __init__(self, mul_weight: str = "none"):
        super().__init__()
        self.mul_weight = mul_weight

    def forward(self, r_idx: torch.Tensor, r_weight: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        n, p2, w2, c_kv = kv.size()
        topk = r_idx.size(-1)
        topk_kv = torch.gather(kv.view(n, 1, p2, w2, c_kv).expand(-1, p2, -1, -1, -1), dim=2,
                               index=r_idx.view(n, p2, topk, 1, 1).expand(-1, -1, -1, w2, c_kv))
        if self.mul_weight == "soft":
            topk_kv = r_weight.view(n, p2, topk, 1, 1) * topk_kv
        return topk_kv


class BiLevelRoutingAttentionReference(nn.Module):
    """The official ``BiLevelRoutingAttention`` restated (default path): same constructor, attribute names (so its
    state_dict loads strictly), channels-last (N, H, W, C) tokens in and out, the official forward written with plain
    torch reshapes/permutes where the official uses einops. ``forward(x, maps=list)`` appends
    ``(attention weights, routing indices)`` to ``maps`` (``yolo-attn show``)."""

    def __init__(self, dim: int, num_heads: int = 8, n_win: int = 7, qk_dim: int | None = None,
                 qk_scale: float | None = None, kv_per_win: int = 4, kv_downsample_ratio: int = 4,
                 kv_downsample_kernel: int | None = None, kv_downsample_mode: str = "identity", topk: int = 4,
                 param_attention: str = "qkvo", param_routing: bool = False, diff_routing: bool = False,
                 soft_routing: bool = False, side_dwconv: int = 3, auto_pad: bool = False):
        super().__init__()
        self.dim = dim
        self.n_win = n_win
        self.num_heads = num_heads
        self.qk_dim = qk_dim or dim
        assert self.qk_dim % num_heads == 0 and self.dim % num_heads == 0
        self.scale = qk_scale or self.qk_dim**-0.5
        self.lepe = nn.Conv2d(dim, dim, kernel_size=side_dwconv, stride=1, padding=side_dwconv // 2,
                              groups=dim) if side_dwconv > 0 else (lambda x: torch.zeros_like(x))
        self.topk = topk
        self.param_routing, self.diff_routing, self.soft_routing = param_routing, diff_routing, soft_routing
        assert not (param_routing and not diff_routing)
        self.router = TopkRouting(qk_dim=self.qk_dim, qk_scale=self.scale, topk=topk, diff_routing=diff_routing,
                                  param_routing=param_routing)
        self.kv_gather = KVGather(mul_weight="soft" if soft_routing else "hard" if diff_routing else "none")
        self.param_attention = param_attention
        self.qkv = QKVLinear(self.dim, self.qk_dim)
        self.wo = nn.Linear(dim, dim) if param_attention == "qkvo" else nn.Identity()
        assert kv_downsample_mode == "identity", "only the default kv_downsample_mode is restated"
        self.kv_downsample_mode = kv_downsample_mode
        self.kv_per_win, self.kv_downsample_ratio, self.kv_downsample_kenel = (kv_per_win, kv_downsample_ratio,
                                                                              kv_downsample_kernel)
        self.kv_down = nn.Identity()
        self.attn_act = nn.Softmax(dim=-1)
        self.auto_pad = auto_pad

    def forward(self, x: torch.Tensor, ret_attn_mask: bool = False, maps: list | None = None):
        if self.auto_pad:
            N, H_in, W_in, C = x.size()
            pad_r = (self.n_win - W_in % self.n_win) % self.n_win
            pad_b = (self.n_win - H_in % self.n_win) % self.n_win
            x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
            _, H, W, _ = x.size()
        else:
            N, H, W, C = x.size()
            assert H % self.n_win == 0 and W % self.n_win == 0
        j = i = self.n_win
        h, w = H // j, W // i
        # patchify: n (j h) (i w) c -> n (j i) h w c
        x = x.view(N, j, h, i, w, C).permute(0, 1, 3, 2, 4, 5).reshape(N, j * i, h, w, C)
        q, kv = self.qkv(x)  # (n, p², h, w, c_qk), (n, p², h, w, c_qk + c_v)
        q_pix = q.reshape(N, j * i, h * w, self.qk_dim)  # n p2 h w c -> n p2 (h w) c
        kv_pix = self.kv_down(kv.permute(0, 1, 4, 2, 3).reshape(N * j * i, -1, h, w))  # -> (n p2) c h w
        kv_pix = kv_pix.reshape(N, j * i, -1, h * w).transpose(2, 3)  # (n j i) c h w -> n (j i) (h w) c
        q_win, k_win = q.mean([2, 3]), kv[..., 0:self.qk_dim].mean([2, 3])  # (n, p², c_qk) each
        # LePE: n (j i) h w c -> n c (j h) (i w), depthwise conv, -> n (j h) (i w) c
        v_img = kv[..., self.qk_dim:].reshape(N, j, i, h, w, C).permute(0, 5, 1, 3, 2, 4).reshape(N, C, H, W)
        lepe = self.lepe(v_img.contiguous()).permute(0, 2, 3, 1)
        r_weight, r_idx = self.router(q_win, k_win)  # (n, p², topk) each
        kv_pix_sel = self.kv_gather(r_idx=r_idx, r_weight=r_weight, kv=kv_pix)  # (n, p², topk, h·w, c_qk + c_v)
        k_pix_sel, v_pix_sel = kv_pix_sel.split([self.qk_dim, self.dim], dim=-1)
        m, topk = self.num_heads, r_idx.size(-1)
        # n p2 k w2 (m c) -> (n p2) m c (k w2); n p2 k w2 (m c) -> (n p2) m (k w2) c; n p2 w2 (m c) -> (n p2) m w2 c
        k_pix_sel = k_pix_sel.reshape(N * j * i, topk, h * w, m, -1).permute(0, 3, 4, 1, 2).reshape(
            N * j * i, m, -1, topk * h * w)
        v_pix_sel = v_pix_sel.reshape(N * j * i, topk, h * w, m, -1).permute(0, 3, 1, 2, 4).reshape(
            N * j * i, m, topk * h * w, -1)
        q_pix = q_pix.reshape(N * j * i, h * w, m, -1).permute(0, 2, 1, 3)
        attn_weight = (q_pix * self.scale) @ k_pix_sel  # (n·p², m, w², topk·w²)
        attn_weight = self.attn_act(attn_weight)
        if maps is not None:
            maps.append((attn_weight, r_idx))
        out = attn_weight @ v_pix_sel  # (n·p², m, w², c_v / m)
        # (n j i) m (h w) c -> n (j h) (i w) (m c)
        out = out.reshape(N, j, i, m, h, w, -1).permute(0, 1, 4, 2, 5, 3, 6).reshape(N, H, W, C)
        out = out + lepe
        out = self.wo(out)
        if self.auto_pad and (pad_r > 0 or pad_b > 0):
            out = out[:, :H_in, :W_in, :].contiguous()
        if ret_attn_mask:
            return out, r_weight, r_idx, attn_weight
        return out


class _ChannelsFirstReference(BiLevelRoutingAttentionReference):
    """:class:`BiLevelRoutingAttentionReference` (``auto_pad=True``) with (B, C, H, W) in and out: ``spec.reference``
    (the layer's parameter names, no prefix)."""

    def forward(self, x: torch.Tensor, maps: list | None = None) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1), maps=maps).permute(0, 3, 1, 2)


class _OfficialChannelsFirst(nn.Module):
    """An official (channels-last) module with (B, C, H, W) in and out (``official_module``)."""

    def __init__(self, official: nn.Module):
        super().__init__()
        self.attn = official

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _official_args(layer: BRA) -> dict:
    return dict(num_heads=layer.num_heads, n_win=layer.n_win, qk_dim=layer.qk_dim, qk_scale=layer.qk_scale,
                kv_per_win=layer.kv_per_win, kv_downsample_ratio=layer.kv_downsample_ratio,
                kv_downsample_kernel=layer.kv_downsample_kernel, kv_downsample_mode=layer.kv_downsample_mode,
                topk=layer.topk, param_attention=layer.param_attention, side_dwconv=layer.side_dwconv, auto_pad=True)


def _bra_reference(layer: BRA) -> _ChannelsFirstReference:
    """``spec.reference``: the restated official module (``auto_pad=True``) with ``layer``'s weights (the same keys)."""
    return load_weights(_ChannelsFirstReference(layer.dim, **_official_args(layer)), layer)


# ----------------------------------------------------------------------------------------------------------------------
# registry declaration
# ----------------------------------------------------------------------------------------------------------------------
def _official_bra(ns, layer: BRA) -> nn.Module:
    """The official ``BiLevelRoutingAttention(dim, ..., auto_pad=True)`` (class from the namespace ``ns``) with
    ``layer``'s weights (``strict=True``; the same keys), channels-first around it: ``official_module``,
    ``yolo-attn bench --official``."""
    return _OfficialChannelsFirst(load_weights(ns.BiLevelRoutingAttention(layer.dim, **_official_args(layer)), layer))


def _bra_plausible(c1: int, kw: dict) -> str | None:
    if c1 // kw["num_heads"] < 4:
        return f"num_heads={kw['num_heads']} leaves {c1 // kw['num_heads']} channels per head (c1={c1})"
    return None


register_module(
    BRA,
    aliases=("BiLevelRoutingAttention",),
    pickled=(QKVLinear,),
    plausible=_bra_plausible,
    summary="Bi-Level Routing Attention (top-k routed windows + LePE)",
    paper="BiFormer, CVPR 2023",
    official_code="rayleizhu/BiFormer `ops/bra_legacy.py` `BiLevelRoutingAttention`",
    reference=_bra_reference,
    # scores (and their softmax; training keeps a third) of the default 8 heads × 7² windows, each w² queries over
    # topk · w² = 4 · w² keys: quadratic in tokens (P3 of a 640 input, batch 16: 4.2 GB inference, 6.2 GB training)
    textbook_bytes=lambda c, side, batch, train: batch * 8 * 49 * (-(-side // 7)) ** 4 * 4 * 4 * (3 if train else 2),
    official_module=_official_bra,
    maps_caption="softmax attention of the query point over its top-k routed windows, mean over heads",
    unsupported_formats={"ncnn": "torch.topk, the top-k window routing (pnnx leaves it as a torch operator; ncnn has "
                                 "no layer for it)"},
    tests=LayerTests(
        small=lambda: BRA(16, num_heads=2),
        sizes=((9, 13), (14, 14), (1, 1), (3, 16)),
        trace=((20, 20), ((16, 24), (1, 1), (3, 50))),
        int_args={"c1": 16, "num_heads": 2, "n_win": 7, "topk": 4, "qk_dim": 16, "kv_per_win": 4,
                  "kv_downsample_ratio": 4},
        bad_args=(({"c1": 16, "num_heads": 3}, "num_heads"), ({"c1": 16, "num_heads": 2, "topk": 50}, "topk"),
                  ({"c1": 16, "num_heads": 2, "qk_dim": 9}, "qk_dim"),
                  ({"c1": 16, "kv_downsample_mode": "avgpool"}, "kv_downsample_mode"),
                  ({"c1": 16, "soft_routing": True}, "soft_routing"),
                  ({"c1": 16, "diff_routing": True}, "diff_routing"),
                  ({"c1": 16, "side_dwconv": 4}, "side_dwconv"), ({"c1": 16, "side_dwconv": -3}, "side_dwconv"),
                  ({"c1": 16, "qk_scale": -1.0}, "qk_scale"), ({"c1": 16, "param_attention": "none"},
                                                               "param_attention")),
        folds=0,  # no BatchNorm
        scale_robust=False,  # ×100 inputs: scores ~1e4, a saturated softmax and near-tied routing scores
        flips=0.05,  # a bf16 cast flipped 1 of 98 top-k choices: 9 of 600 positions (1.5 %) moved by up to 0.11
    ),
    order=140,
    builtin=True,
)
