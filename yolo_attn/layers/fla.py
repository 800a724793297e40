"""Focused Linear Attention (FLA), from the FLatten Transformer.

Paper: Han et al., "FLatten Transformer: Vision Transformer using Focused Linear Attention", ICCV 2023
(https://arxiv.org/abs/2308.00442). Official code: LeapLabTHU/FLatten-Transformer, ``models/flatten_swin.py``
(class ``FocusedLinearAttention``, including the later "numerical instability" fix).

Linear attention with the focused kernel φ_p(x) = ‖x‖ · x^p / ‖x^p‖ applied to ReLU(q), ReLU(k) (scaled by a learned
softplus temperature), computed as φ(q) (φ(k)ᵀ v) / (φ(q) · mean φ(k)) — linear in tokens — plus a depthwise
convolution on v that restores feature diversity; keys carry a learned positional encoding.

Faithful: ``FLA(c1, ...).attn`` has the state_dict of the official ``FocusedLinearAttention(dim=c1,
window_size=(window, window), num_heads, focusing_factor, kernel_size)`` and, on the window×window grid, the same
outputs (the official module takes tokens (B, N, C); ours takes and returns B×C×H×W).

Differs:

* Any H×W: the grid is read from the input (the official code assumes ``H = W = sqrt(N)`` and silently mis-reshapes
  non-square maps) and the positional encoding (window×window) is resized bilinearly (``align_corners=False``) to
  H×W on every call — identity on the native grid, no Python branch for ``torch.jit.trace`` to freeze. Maps smaller
  than the window get the encoding downsampled the same way (plain bilinear, no antialias).
* The focusing kernel and the linear-attention products run in float32 even under fp16/bf16 (``x ** 3`` overflows
  fp16); the result is cast back to the input dtype.
* No ``print`` and no ``eval()`` override.
* Linear layers start from truncated-normal(std 0.02) weights and zero biases, as FLatten's Swin initialises them.

Fast path (default): channels-first throughout — the ``qkv`` and ``proj`` Linear weights are applied as 1×1
convolutions to the B×C×H×W map (same parameters, no token transposes), the focusing kernel runs in float32 on the
channel axis, the positional-encoding resize is skipped on the native grid (kept under ``torch.jit.trace`` so a trace
generalises; the traced form also runs the depthwise convolution of all heads as one convolution, since pnnx/NCNN
cannot fold heads into the batch axis), and the order of the products is the cheaper one, as the official code
chooses it: φ(k)ᵀv first (linear in tokens) when tokens outnumber head channels, φ(q)φ(k)ᵀ first otherwise.
Reference formulation (:class:`FocusedLinearAttentionReference`, ``spec.reference``): the official module restated,
token-major with ``nn.Linear`` and always the quadratic order (the N×N kernel matrix φ(q)φ(k)ᵀ, normalised), at any
H×W (the positional encoding resized off its grid, as here); the fast path is tested against it.

GPU path (profiled with ``scripts/profile_layers.py``): 35 operators that launch kernels per forward (fused, batch 1,
any level), 41 in half precision (the six casts to and from float32 around the focusing kernel); no score matrix,
so memory is linear in tokens on every device. It was at or under the official time at every YOLOv8n/s shape on an
H200 (0.69–1.01×); the largest kernel at P5 is the vector norm of the focusing kernel (22 % of GPU time).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import LayerArgumentError, check_divisible, check_int, check_odd_kernel
from .registry import LayerTests, OfficialName, OfficialResidual, register_module

__all__ = ["FLA", "FocusedLinearAttention", "FocusedLinearAttentionReference", "focused_kernel"]


def focused_kernel(x: torch.Tensor, scale: torch.Tensor, p: int, dim: int = -1) -> torch.Tensor:
    """φ_p(ReLU(x) / scale) over the channel dimension ``dim``, in float32: norm-preserving power ``p`` sharpening."""
    x = (F.relu(x.float()) + 1e-6) / scale
    norm = x.norm(dim=dim, keepdim=True)
    x = x**p
    return x / x.norm(dim=dim, keepdim=True) * norm


class FocusedLinearAttention(nn.Module):
    """Focused linear attention over a B×C×H×W map (global over all H·W tokens).

    Args are those of the official module; ``window_size`` is the (Wh, Ww) grid of the positional encoding.
    """

    def __init__(self, dim: int, window_size, num_heads: int, qkv_bias: bool = True, qk_scale=None,
                 attn_drop: float = 0.0, proj_drop: float = 0.0, focusing_factor: int = 3, kernel_size: int = 5):
        super().__init__()
        self.dim = dim
        self.window_size = tuple(window_size)
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.focusing_factor = focusing_factor
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)  # unused, as in the official module
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.dwc = nn.Conv2d(head_dim, head_dim, kernel_size, padding=kernel_size // 2, groups=head_dim)
        self.scale = nn.Parameter(torch.zeros(1, 1, dim))
        self.positional_encoding = nn.Parameter(torch.zeros(1, self.window_size[0] * self.window_size[1], dim))
        for lin in (self.qkv, self.proj):
            nn.init.trunc_normal_(lin.weight, std=0.02)
            if lin.bias is not None:
                nn.init.zeros_(lin.bias)

    def position(self, H, W) -> torch.Tensor:
        """Positional encoding for an H×W grid: (1, H·W, C) float32, bilinearly resized from the window grid."""
        Wh, Ww = self.window_size
        pos = self.positional_encoding.float().transpose(1, 2).reshape(1, self.dim, Wh, Ww)
        pos = F.interpolate(pos, size=(H, W), mode="bilinear", align_corners=False)
        return pos.flatten(2).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        N, heads = H * W, self.num_heads
        d = C // heads
        tracing = torch.jit.is_tracing()
        qkv = F.conv2d(x, self.qkv.weight[:, :, None, None], self.qkv.bias).flatten(2)  # (B, 3C, N)
        q, k, v = qkv.chunk(3, dim=1)  # 3 × (B, C, N)

        with torch.autocast(x.device.type, enabled=False):  # focusing power and sums in float32
            scale = F.softplus(self.scale.float()).transpose(1, 2)  # (1, C, 1)
            if not tracing and (H, W) == self.window_size:  # native grid: the resize is the identity
                pos = self.positional_encoding.float().transpose(1, 2)  # (1, C, N)
            else:
                pos = self.position(H, W).transpose(1, 2)
            q = focused_kernel(q, scale, self.focusing_factor, dim=1).view(B, heads, d, N)
            k = focused_kernel(k.float() + pos, scale, self.focusing_factor, dim=1).view(B, heads, d, N)
            vf = v.float().reshape(B, heads, d, N)
            z = 1 / (k.mean(dim=-1).unsqueeze(-2) @ q + 1e-6)  # (B, h, 1, N)
            if tracing or N > d:  # keys first: (d × d) per head, linear in N
                out = ((k @ vf.transpose(-2, -1)) / N).transpose(-2, -1) @ q  # (B, h, d, N)
            else:  # tiny maps: the N × N kernel matrix is the smaller product
                out = vf @ ((q.transpose(-2, -1) @ k) / N).transpose(-2, -1)
            out = out * z
        out = out.to(x.dtype).view(B, C, H, W)

        if tracing:  # export form: one depthwise conv over all heads, the batch axis left alone (pnnx/NCNN)
            out = out + self.depthwise_all_heads(v.reshape(B, C, H, W))
        else:
            out = out + self.dwc(v.reshape(B * heads, d, H, W)).reshape(B, C, H, W)  # depthwise conv restores rank
        return self.proj_drop(F.conv2d(out, self.proj.weight[:, :, None, None], self.proj.bias))

    def depthwise_all_heads(self, v: torch.Tensor) -> torch.Tensor:
        """``dwc`` applied to each head's channels of ``v`` (B, C, H, W) as one C-group convolution (its kernel
        repeated per head): the same output as folding the heads into the batch, without touching the batch axis."""
        dwc = self.dwc
        bias = None if dwc.bias is None else dwc.bias.repeat(self.num_heads)
        return F.conv2d(v, dwc.weight.repeat(self.num_heads, 1, 1, 1), bias, padding=dwc.padding, groups=self.dim)


class FLA(nn.Module):
    """Residual focused linear attention block: ``x + attn(x)``; output channels = input channels.

    Args:
        c1 (int): Input channels (filled in from the model YAML); divisible by ``num_heads``.
        num_heads (int): Heads.
        window (int): Side of the positional-encoding grid; set it to the feature map's native size (20 for P5 at
            640) so that grid is used as learned and other sizes get it resized.
        focusing_factor (int): Power p of the focused kernel.
        kernel_size (int): Depthwise kernel on the values.
        fixed (bool): The paper's square-window behaviour: only square maps are accepted (any other grid raises a
            ValueError naming the fix) and the layer declares ``requires_square_input``, so Ultralytics validation
            with yolo_attn registered uses square letterboxed batches instead of rect ones. The positional encoding
            is still resized when the side differs from ``window`` (Ultralytics builds every model with a 256×256
            probe, where P5 is 8×8). Default False: any H×W.

    YAML row: ``[-1, 1, FLA, [8, 20, 3, 5]]`` (num_heads, window, focusing_factor, kernel_size, fixed; all optional)

    Examples:
        >>> m = FLA(128, num_heads=8, window=20)
        >>> m(torch.randn(1, 128, 20, 15)).shape
        torch.Size([1, 128, 20, 15])
    """

    def __init__(self, c1: int, num_heads: int = 8, window: int = 20, focusing_factor: int = 3, kernel_size: int = 5,
                 fixed: bool = False):
        super().__init__()
        if not isinstance(fixed, bool):
            raise LayerArgumentError(f"FLA: fixed must be true or false, got {fixed!r}.")
        self.fixed = fixed
        self.requires_square_input = fixed  # read by the Ultralytics integration: validate with square batches
        c1 = check_int("FLA", "c1 (input channels)", c1)
        num_heads = check_int("FLA", "num_heads", num_heads, high=c1)
        window = check_int("FLA", "window", window, high=256)
        focusing_factor = check_int("FLA", "focusing_factor", focusing_factor, high=16)
        kernel_size = check_odd_kernel("FLA", "kernel_size", kernel_size)
        check_divisible("FLA", c1, "num_heads", num_heads)
        self.attn = FocusedLinearAttention(
            c1, (window, window), num_heads, focusing_factor=focusing_factor, kernel_size=kernel_size
        )

    def extra_repr(self) -> str:
        """The resolved arguments, c1 included (read from the modules, so checkpoints of any release show them)."""
        a = self.attn
        return (f"c1={a.dim}, num_heads={a.num_heads}, window={a.window_size[0]}, "
                f"focusing_factor={a.focusing_factor}, kernel_size={a.dwc.kernel_size[0]}, fixed={self.fixed}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fixed and x.shape[-2] != x.shape[-1]:
            raise ValueError(
                f"FLA(fixed=True) works on square feature maps only (the official module's H = W = sqrt(N) grid), "
                f"got {x.shape[-2]}x{x.shape[-1]}. Feed square inputs (with yolo_attn registered, Ultralytics' "
                f"validation and predict letterbox to a square imgsz automatically), or drop fixed=True: the default "
                f"FLA works at any HxW."
            )
        return x + self.attn(x)

    @torch.no_grad()
    def attention_maps(self, x: torch.Tensor, cells) -> list[torch.Tensor]:
        """The focused linear attention's weights ``φ(q)·φ(k_j) / Σ_j φ(q)·φ(k_j)`` of each query cell (row, column),
        mean over heads — the kernel matrix the linear form never builds: H×W maps. x: (1, C, H, W)."""
        H, W = x.shape[-2:]
        weights = []
        _fla_reference(self).attn(x, maps=weights)
        return [weights[0][0, :, r * W + c].mean(0).view(H, W) for r, c in cells]


# ----------------------------------------------------------------------------------------------------------------------
# reference formulation: the official module restated
# ----------------------------------------------------------------------------------------------------------------------
class FocusedLinearAttentionReference(nn.Module):
    """The official ``FocusedLinearAttention`` restated on a B×C×H×W map: same attribute names (so its state_dict
    loads strictly), the official token math written plainly in its quadratic order. The official module takes tokens
    and assumes the square ``window_size`` grid; here any H×W, the positional encoding bilinearly resized off its
    grid (as FLA does). ``forward(x, maps=list)`` appends the normalised kernel matrix (B, heads, N_query, N_key).
    """

    def __init__(self, dim: int, window_size, num_heads: int, qkv_bias: bool = True, qk_scale=None,
                 attn_drop: float = 0.0, proj_drop: float = 0.0, focusing_factor: int = 3, kernel_size: int = 5):
        super().__init__()
        self.dim, self.window_size, self.num_heads = dim, tuple(window_size), num_heads
        self.focusing_factor = focusing_factor
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)  # unused, as in the official module
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        head_dim = dim // num_heads
        self.dwc = nn.Conv2d(head_dim, head_dim, kernel_size, padding=kernel_size // 2, groups=head_dim)
        self.scale = nn.Parameter(torch.zeros(1, 1, dim))
        self.positional_encoding = nn.Parameter(torch.zeros(1, self.window_size[0] * self.window_size[1], dim))

    def focus(self, t: torch.Tensor) -> torch.Tensor:
        """φ_p: ReLU, divide by the learned softplus scale, raise to the power p keeping each token's L2 norm."""
        t = (F.relu(t) + 1e-6) / F.softplus(self.scale)
        norm = t.norm(dim=-1, keepdim=True)
        t = t**self.focusing_factor
        return t / t.norm(dim=-1, keepdim=True) * norm

    def forward(self, x: torch.Tensor, maps: list | None = None) -> torch.Tensor:
        B, C, H, W = x.shape
        N, h = H * W, self.num_heads
        tokens = x.flatten(2).transpose(1, 2)  # (B, N, C)
        q, k, v = self.qkv(tokens).chunk(3, dim=-1)  # 3 × (B, N, C)
        pos = self.positional_encoding  # (1, Wh·Ww, C): resized to H×W off its grid
        if (H, W) != self.window_size:
            Wh, Ww = self.window_size
            grid = pos.transpose(1, 2).reshape(1, C, Wh, Ww)
            pos = F.interpolate(grid, size=(H, W), mode="bilinear", align_corners=False).flatten(2).transpose(1, 2)
        q, k = self.focus(q), self.focus(k + pos)
        q, k, v = (t.reshape(B, N, h, C // h).transpose(1, 2) for t in (q, k, v))  # (B, h, N, d)
        z = 1 / (q @ k.mean(dim=-2, keepdim=True).transpose(-2, -1) + 1e-6)  # (B, h, N, 1): normaliser
        kernel = (q @ k.transpose(-2, -1)) / N  # (B, h, N, N): φ(q)φ(k)ᵀ
        if maps is not None:
            maps.append(kernel * z)  # rows sum to 1 (up to the 1e-6)
        out = (kernel @ v) * z  # (B, h, N, d)
        out = out.transpose(1, 2).reshape(B, N, C)
        vmap = v.transpose(-2, -1).reshape(B * h, C // h, H, W)  # each head's values as a map
        out = out + self.dwc(vmap).reshape(B, C, N).transpose(1, 2)  # depthwise conv restores rank
        out = self.proj_drop(self.proj(out))  # (B, N, C)
        return out.transpose(1, 2).reshape(B, C, H, W)


def _fla_reference(layer: FLA) -> OfficialResidual:
    """``spec.reference``: ``x + FocusedLinearAttentionReference(x)`` with ``layer``'s weights."""
    a = layer.attn
    return OfficialResidual(FocusedLinearAttentionReference(a.dim, a.window_size, a.num_heads,
                                                            focusing_factor=a.focusing_factor,
                                                            kernel_size=a.dwc.kernel_size[0]), a)


# ----------------------------------------------------------------------------------------------------------------------
# registry declaration
# ----------------------------------------------------------------------------------------------------------------------
def _heads_plausible(c1: int, kw: dict) -> str | None:
    if c1 // kw["num_heads"] < 4:
        return f"num_heads={kw['num_heads']} gives heads of {c1 / kw['num_heads']:g} channels (fewer than 4)"
    return None


def _official_fla(given: dict) -> dict:
    """``FocusedLinearAttention(dim, window_size, num_heads, qkv_bias, qk_scale, attn_drop, proj_drop,
    focusing_factor, kernel_size)`` arguments as FLA's. ``qk_scale`` and ``attn_drop`` are unused by the official
    module (it learns its own scale and never applies its attention dropout), so any value is honoured."""
    ours = {k: given[k] for k in ("num_heads", "focusing_factor", "kernel_size") if k in given}
    if "window_size" in given:
        size = given["window_size"]
        sides = list(size) if isinstance(size, (list, tuple)) else [size, size]
        if len(sides) != 2 or sides[0] != sides[1]:
            raise LayerArgumentError(f"window_size={size}: FLA's positional-encoding grid is square; write one side, "
                                     f"e.g. {sides[0]}.")
        ours["window"] = sides[0]
    if given.get("qkv_bias", True) is not True:
        raise LayerArgumentError("qkv_bias=False: FLA always has a qkv bias (the official default); leave it out.")
    if given.get("proj_drop", 0) not in (0, 0.0):
        raise LayerArgumentError(f"proj_drop={given['proj_drop']}: FLA has no output dropout; leave it out.")
    return ours


def _official_fla_module(ns, layer: FLA) -> OfficialResidual:
    """``x + FocusedLinearAttention(x as tokens)``: the official module (class from the namespace ``ns``; tokens
    (B, N, C) in and out) with ``layer``'s weights (``official_module``: ``yolo-attn bench --official``). Defined on
    square maps only (the official code assumes H = W = sqrt(N)); it matches ours on the window×window grid."""
    a = layer.attn
    return OfficialResidual(ns.FocusedLinearAttention(a.dim, a.window_size, a.num_heads,
                                                      focusing_factor=a.focusing_factor,
                                                      kernel_size=a.dwc.kernel_size[0]), a, tokens=True)


register_module(
    FLA,
    pickled=(FocusedLinearAttention,),
    official={"FocusedLinearAttention": OfficialName(
        ("dim", "window_size", "num_heads", "qkv_bias", "qk_scale", "attn_drop", "proj_drop", "focusing_factor",
         "kernel_size"), _official_fla)},
    defaults=lambda grid: [8, grid or 20, 3, 5],  # window = the map's native grid
    plausible=_heads_plausible,
    summary="Focused Linear Attention (residual)",
    paper="FLatten Transformer, ICCV 2023",
    official_code="LeapLabTHU/FLatten-Transformer `models/flatten_swin.py` `FocusedLinearAttention`",
    reference=_fla_reference,
    textbook_bytes=lambda c, side, batch, train: batch * 8 * (side * side) ** 2 * 4 * (3 if train else 2),
    official_module=_official_fla_module,
    maps_caption="focused linear attention weights of the query point, mean over heads",
    tests=LayerTests(
        small=lambda: FLA(16, num_heads=4, window=8),
        sizes=((9, 13), (8, 8), (2, 1)),  # off-grid, on the window grid, a tiny map (the quadratic order)
        trace=((20, 20), ((16, 24), (8, 8), (3, 50))),
        int_args={"c1": 16, "num_heads": 4, "window": 8, "focusing_factor": 3, "kernel_size": 5},
        bad_args=(({"c1": 30, "num_heads": 8}, "num_heads"), ({"c1": 12, "num_heads": 8}, "num_heads"),
                  ({"c1": 16, "num_heads": 4, "window": 8, "kernel_size": 4}, "kernel_size")),
        folds=0,  # no BatchNorm
    ),
    order=20,
    builtin=True,
)
