"""Softmax attention over token sequences, shared by CGA and SHSA.

Two formulations of the same math:

* ``explicit_attention`` — the textbook form: build the N×M score matrix, add the bias, softmax, multiply by V.
  Kept as the reference the fast path is tested against.
* ``sdpa_attention`` — ``torch.nn.functional.scaled_dot_product_attention``, which on CPU and CUDA uses fused
  kernels that never hold the whole score matrix (memory linear in tokens).

``softmax_attention`` picks between them: SDPA for large token counts, the explicit form for small ones (where
SDPA's set-up cost dominates) and under ``torch.jit.trace`` (ONNX export maps it to plain MatMul/Softmax).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["explicit_attention", "sdpa_attention", "softmax_attention", "SDPA_MIN_PAIRS"]

SDPA_MIN_PAIRS = 1024 * 1024
"""Query×key pairs from which the SDPA path is used (below it the explicit matrix is small and cheaper)."""


def explicit_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, bias=None) -> torch.Tensor:
    """``softmax(q @ kᵀ · scale + bias) @ v`` with the score matrix materialised.

    Args:
        q: (..., N, d) queries.
        k: (..., M, d) keys.
        v: (..., M, dv) values.
        scale: multiplier of the dot products.
        bias: optional additive bias broadcastable to (..., N, M).

    Returns:
        (..., N, dv)
    """
    attn = (q @ k.transpose(-2, -1)) * scale  # (..., N, M)
    if bias is not None:
        attn = attn + bias
    return attn.softmax(dim=-1) @ v


def sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, bias=None) -> torch.Tensor:
    """Same result as :func:`explicit_attention` through ``F.scaled_dot_product_attention``."""
    mask = None if bias is None else bias.to(q.dtype)
    # CPU kernels take the fused path only for contiguous inputs.
    return F.scaled_dot_product_attention(q.contiguous(), k.contiguous(), v.contiguous(), attn_mask=mask, scale=scale)


def softmax_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, bias=None) -> torch.Tensor:
    """Dispatch to the cheaper of the two formulations (see module docstring)."""
    if torch.jit.is_tracing() or q.shape[-2] * k.shape[-2] < SDPA_MIN_PAIRS:
        return explicit_attention(q, k, v, scale, bias)
    return sdpa_attention(q, k, v, scale, bias)
