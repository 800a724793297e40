"""Softmax attention over token sequences, shared by CGA and SHSA, and the switch to the textbook formulations.

Two formulations of the same math:

* ``explicit_attention`` — the textbook form: build the N×M score matrix, add the bias, softmax, multiply by V.
  Kept as the reference the fast path is tested against and benchmarked against.
* ``sdpa_attention`` — ``torch.nn.functional.scaled_dot_product_attention``, which on CPU and CUDA uses fused
  kernels that never hold the whole score matrix (memory linear in tokens); an attention bias goes in as an
  additive ``attn_mask`` (and receives its gradient through it).

``channels_first_attention`` picks between them: SDPA from ``SDPA_MIN_PAIRS`` query×key pairs on, a leaner explicit form (scale and bias fused into one ``baddbmm``) below it, where SDPA's set-up cost
dominates, and the explicit form under ``torch.jit.trace`` (ONNX export maps it to plain MatMul/Softmax). On CPU
with autograd recording, moderate problems stay explicit (``CPU_GRAD_EXPLICIT_MAX_BYTES``): the fused CPU backward
is the slow part there.

CPU inference adds a third form, ``chunked_attention``: the explicit math over blocks of query rows whose scores fit
in ``CHUNK_BYTES``, written into two buffers reused for every block. It is used for channels-first problems each of
whose score matrices exceeds one block (not for CGA's thousands of 49×49 window problems, which one ``baddbmm``
handles best) but for which SDPA does not pay off — the q/k vs v head-dim mismatch that SDPA has to
zero-pad away (``_use_sdpa``), e.g. SHSA at P4 of YOLOv8s (1,600 tokens, 16-dim q/k, 64-dim v). A whole N×M
matrix above glibc's mmap threshold is fresh memory on every call, and paging it in can cost more than the
arithmetic (1,600² scores, 2 cores: ~8.7 ms explicit in a fresh process, ~3 ms once the allocator keeps the memory);
the blocks stay cache-sized and allocated once per call, so the chunked form is not at the mercy of the allocator.

Textbook switch: inside ``with textbook():`` every layer of this package runs its plain, unoptimised formulation —
explicit attention matrices (SHSA, CGA), a Python loop over CGA's windows, FLA in the quadratic order
(φ(q)φ(k)ᵀ first), LSKA with the official defensive ``clone()``. The benchmark (``yolo-attn bench``) and the tests
(``tests/test_fastpaths.py``) compare the fast paths against it. The switch is a context variable (per thread and asyncio
task) read once per forward; the fast path pays nothing else for it.
"""

from __future__ import annotations

import contextlib
import contextvars

import torch
import torch.nn.functional as F

__all__ = [
    "explicit_attention",
    "sdpa_attention",
    "channels_first_attention",
    "SDPA_MIN_PAIRS",
    "CPU_GRAD_EXPLICIT_MAX_BYTES",
    "CHUNK_BYTES",
    "chunked_attention",
    "textbook",
    "textbook_enabled",
]

SDPA_MIN_PAIRS = 1024 * 1024
"""Query×key pairs (per batch entry and head) from which the SDPA path is used (below it the explicit matrix is
small and cheaper). On 2 CPU cores, 16-dim q/k: SDPA is 10–20% slower than the explicit form at 400 tokens and
several times faster from ~1,000 tokens on; ``yolo-attn bench`` shows the effect at every YOLO shape."""

CPU_GRAD_EXPLICIT_MAX_BYTES = 256 * 1024 * 1024
"""On CPU with autograd recording, score matrices up to this size (all batch entries and heads, fp32) use the
explicit form even past ``SDPA_MIN_PAIRS``: torch's fused CPU attention *backward* is slower than the explicit one
for small head dims (16-dim q/k at 6,400 tokens, 2 cores: forward + backward ~1.6× the explicit time, while the
forward alone is ~7× faster). Larger problems (e.g. batch 16 at P3) still go through SDPA to keep memory bounded."""

CHUNK_BYTES = 4 * 1024 * 1024
"""Score bytes per query block of :func:`chunked_attention` (all batch entries together); about one L2/L3 slice."""

_TEXTBOOK: contextvars.ContextVar[bool] = contextvars.ContextVar("yolo_attn_textbook", default=False)
"""Per thread (and per asyncio task): a ``with textbook():`` in one thread leaves layers in other threads alone."""


@contextlib.contextmanager
def textbook(enabled: bool = True):
    """Run every yolo_attn layer in its textbook formulation inside the ``with`` block (nesting restores)."""
    token = _TEXTBOOK.set(bool(enabled))
    try:
        yield
    finally:
        _TEXTBOOK.reset(token)


def textbook_enabled() -> bool:
    """True inside ``with textbook():`` (in this thread or task)."""
    return _TEXTBOOK.get()


def explicit_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, bias=None) -> torch.Tensor:
    """``softmax(q @ kᵀ · scale + bias) @ v`` with the score matrix materialised (the textbook form).

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
    """Same result as :func:`explicit_attention` through ``F.scaled_dot_product_attention``.

    The fused CPU kernel needs one head dim for q, k and v (SHSA: 16-dim q/k, C/4-dim v) and contiguous inputs; it
    silently falls back to an unfused path otherwise (2 cores, 6,400 tokens, 64-dim v: 1.7× slower than explicit).
    So the narrower side is zero-padded: extra zero channels in q and k leave every dot product unchanged, extra zero
    channels in v are sliced off the output.
    """
    mask = None if bias is None else bias.to(q.dtype)
    dqk, dv = q.shape[-1], v.shape[-1]
    if dv > dqk:
        q, k = F.pad(q, (0, dv - dqk)), F.pad(k, (0, dv - dqk))
    elif dqk > dv:
        v = F.pad(v, (0, dqk - dv))
    out = F.scaled_dot_product_attention(q.contiguous(), k.contiguous(), v.contiguous(), attn_mask=mask, scale=scale)
    return out[..., :dv] if dqk > dv else out


def _records_grad(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad)


def _use_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> bool:
    """Whether SDPA pays off for channels-first ``q`` (B, d, N), ``k`` (B, d, M), ``v`` (B, dv, M).

    From ``SDPA_MIN_PAIRS`` pairs on, except on CPU: with autograd recording, up to ``CPU_GRAD_EXPLICIT_MAX_BYTES``
    of scores; in inference, where q/k and v widths differ, until the problem repays the zero-padding. Padding the
    narrower side to the wider multiplies SDPA's work by the ratio r of the head dims; measured on 2 CPU cores it wins
    from ``SDPA_MIN_PAIRS · r²`` pairs on (16-dim q/k: 6,400 tokens with 16- or 32-dim v, 1,600 tokens with 16-dim
    v), and :func:`chunked_attention` below that (1,600 tokens with 32- or 64-dim v: 5.2 vs 8.1 ms at 64).
    """
    (batch, dqk, n), m, dv = q.shape, k.shape[-1], v.shape[1]
    if n * m < SDPA_MIN_PAIRS:
        return False
    if q.device.type != "cpu":
        return True
    if _records_grad(q, k, v):
        return batch * n * m * 4 > CPU_GRAD_EXPLICIT_MAX_BYTES
    r = max(dqk, dv) / max(min(dqk, dv), 1)
    return n * m >= SDPA_MIN_PAIRS * r * r


def channels_first_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
                             bias=None) -> torch.Tensor:
    """Softmax attention on channels-first token maps, returning channels-first: no transposed copies.

    Args:
        q: (B, d, N) queries, k: (B, d, M) keys, v: (B, dv, M) values — e.g. ``conv_out.flatten(2)`` slices.
        scale: multiplier of the dot products.
        bias: optional additive bias broadcastable to (B, N, M).

    Returns:
        (B, dv, N), equal to ``explicit_attention(qᵀ, kᵀ, vᵀ, scale, bias)ᵀ``.

    Small problems: ``baddbmm`` computes ``bias + scale · qᵀk`` in one kernel; BLAS reads the transposed token
    operands in place, and the result comes back as a transposed view (no copy here). Large problems (see
    :func:`_use_sdpa`) go through SDPA, which needs token-major contiguous inputs; CPU inference whose score matrix
    per problem exceeds ``CHUNK_BYTES`` otherwise goes through :func:`chunked_attention`. The textbook switch and
    tracing fall back to :func:`explicit_attention`.
    """
    if _TEXTBOOK.get() or torch.jit.is_tracing():
        return explicit_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), scale, bias).transpose(1, 2)
    if _use_sdpa(q, k, v):
        return sdpa_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), scale, bias).transpose(1, 2)
    (B, _, n), m = q.shape, k.shape[-1]
    if q.device.type == "cpu" and not _records_grad(q, k, v) and n * m * q.element_size() > CHUNK_BYTES:
        return chunked_attention(q, k, v, scale, bias)  # one problem's scores exceed a block (not: many small ones)
    qt = q.transpose(1, 2)
    if bias is None:
        attn = torch.bmm(qt, k).mul_(scale)  # bmm does not keep its output for backward: in place is safe
    else:
        bias = bias.to(q.dtype)
        attn = torch.baddbmm(bias.expand(B, *bias.shape[-2:]), qt, k, alpha=scale)
    # (attn @ vᵀ)ᵀ rather than v @ attnᵀ: the N×M matrix is never read transposed (its gradient neither)
    return torch.bmm(attn.softmax(dim=-1), v.transpose(1, 2)).transpose(1, 2)


def chunked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, bias=None,
                      block_bytes: int | None = None) -> torch.Tensor:
    """:func:`channels_first_attention`'s math over blocks of query rows, for inference (no autograd graph).

    Args:
        q: (B, d, N), k: (B, d, M), v: (B, dv, M) channels-first tokens.
        scale: multiplier of the dot products.
        bias: optional additive bias broadcastable to (B, N, M).
        block_bytes: score bytes per block, all batch entries together (default ``CHUNK_BYTES``).

    Returns:
        (B, dv, N). Each block is ``softmax(scale · q_blockᵀ k + bias_block) @ vᵀ``, exactly the rows of the full
        product: softmax is per query row, so splitting the rows changes nothing but the memory held.
    """
    (B, _, n), m = q.shape, k.shape[-1]
    rows = max(1, min(n, (block_bytes or CHUNK_BYTES) // max(B * m * q.element_size(), 1)))
    qt, vt = q.transpose(1, 2), v.transpose(1, 2)  # (B, N, d), (B, M, dv): read in place by BLAS
    out = torch.empty(B, n, v.shape[1], dtype=q.dtype, device=q.device)
    scores = torch.empty(B, rows, m, dtype=q.dtype, device=q.device)
    probs = torch.empty_like(scores)
    if bias is not None:
        bias = bias.to(q.dtype).expand(B, n, m)
    for i in range(0, n, rows):
        j = min(n, i + rows)
        s, p = scores[:, : j - i], probs[:, : j - i]  # (B, rows, M)
        if bias is None:
            torch.bmm(qt[:, i:j], k, out=s).mul_(scale)
        else:
            torch.baddbmm(bias[:, i:j], qt[:, i:j], k, alpha=scale, out=s)
        torch.softmax(s, dim=-1, out=p)
        torch.bmm(p, vt, out=out[:, i:j])
    return out.transpose(1, 2)
