"""Softmax attention over token sequences, shared by CGA and SHSA, and the switch to its explicit (textbook) form.

Two formulations of the same math:

* ``explicit_attention`` — the textbook form: build the N×M score matrix, add the bias, softmax, multiply by V.
  Kept as the reference the fast path is tested against and benchmarked against.
* ``sdpa_attention`` — ``torch.nn.functional.scaled_dot_product_attention``, which on CPU and CUDA uses fused
  kernels that never hold the whole score matrix (memory linear in tokens); an attention bias goes in as an
  additive ``attn_mask`` (and receives its gradient through it).

``channels_first_attention`` runs the form :func:`attention_form` picks, and ``heads_attention`` (token-major 4-D
problems, many heads or windows at once: BRA) the form :func:`heads_form` picks — the one place where the device,
dtype and shapes decide, with the reason for each rule. On CUDA that is SDPA with 4-D inputs at every size (the fused
kernels); on CPU (rules measured on 2 CPU cores) SDPA from ``SDPA_MIN_PAIRS`` query×key pairs on, a leaner explicit
form (scale and bias fused into one ``baddbmm``) below it, where SDPA's set-up cost dominates, and the explicit form
under ``torch.jit.trace`` (ONNX export maps it to plain MatMul/Softmax). On CPU with autograd recording, moderate
problems stay explicit (``CPU_GRAD_EXPLICIT_MAX_BYTES``): the fused CPU backward is the slow part there.

CPU inference adds a third form, ``chunked_attention``: the explicit math over blocks of query rows whose scores fit
in ``CHUNK_BYTES``, written into two buffers reused for every block. It is used for channels-first problems each of
whose score matrices exceeds one block (not for CGA's thousands of 49×49 window problems, which one ``baddbmm``
handles best) but for which SDPA does not pay off — the q/k vs v head-dim mismatch that SDPA has to
zero-pad away on CPU, e.g. SHSA at P4 of YOLOv8s (1,600 tokens, 16-dim q/k, 64-dim v). A whole N×M
matrix above glibc's mmap threshold is fresh memory on every call, and paging it in can cost more than the
arithmetic (1,600² scores, 2 cores: ~8.7 ms explicit in a fresh process, ~3 ms once the allocator keeps the memory);
the blocks stay cache-sized and allocated once per call, so the chunked form is not at the mercy of the allocator.

Memory: on CUDA the fused kernels hold no score matrix (training memory linear in tokens); on CPU a score matrix is
held only while all of a call's scores fit ``CPU_GRAD_EXPLICIT_MAX_BYTES`` (training; ``heads_attention`` in
inference too) or ``CHUNK_BYTES`` per problem (``channels_first_attention`` in inference, beyond which blocks or SDPA
take over).

Textbook switch: inside ``with textbook():`` every attention of this module runs in the explicit form — the score
matrix materialised, as under ``torch.jit.trace`` (the export form) — whatever the device and size. Each layer's
reference formulation (``LayerSpec.reference``, in the layer's file) is what the fast paths are tested and
benchmarked against; the switch only takes the dispatch out of the picture. It is a context variable (per thread and
asyncio task) read once per call; the fast path pays nothing else for it.
"""

from __future__ import annotations

import contextlib
import contextvars

import torch
import torch.nn.functional as F

# True while Dynamo traces (torch.compile, torch.export); torch < 2.3 has no torch.compiler.is_compiling
_is_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None) or (lambda: False)

__all__ = [
    "explicit_attention",
    "sdpa_attention",
    "sdpa_inputs",
    "fused_sdpa",
    "heads_form",
    "heads_attention",
    "HEADS_SDPA_MIN_PAIRS",
    "CUDA_MAX_GRID",
    "token_major",
    "attention_form",
    "CUDA_HEAD_ALIGN",
    "channels_first_attention",
    "scores_dtype",
    "prepare_bias",
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

HEADS_SDPA_MIN_PAIRS = 4096
"""CPU rule (measured on 2 CPU cores, torch 2.14.1) of :func:`heads_form`: query×key pairs per problem from which a
batch of many token-major problems (heads × windows, 4-D) goes to SDPA. The fused CPU kernel parallelises over the
problems, so many small problems repay it far below ``SDPA_MIN_PAIRS`` (the rule for a few large ones). Median of
5, SDPA time / explicit time (matmul, softmax, matmul), inference and training: BRA at P3 of a 640 input (392
problems of 144×576 per image, 8-dim heads) 0.17–0.27; 392 × 36×144 (5,184 pairs, 32-dim) 0.79 / 0.70; 1,024 ×
81×81 (6,561, 32-dim) 0.76 / 0.77; 392 × 9×36 (324 pairs, BRA at P5) 1.00–1.11; 2,304 × 49×49 (2,401 pairs,
64-dim) 1.07 / 1.03."""

CUDA_MAX_GRID = 65535
"""The batch and head dims of one fused SDPA call on CUDA stay at or below this: the flash and memory-efficient
kernels put them in CUDA grid dimensions limited to 65,535 and fail with "invalid configuration argument" beyond it
(pytorch/pytorch#142228, #146704). Larger calls are split (:func:`fused_sdpa`); e.g. CGA's windows at P3 of a 640
input reach it from batch 456."""

GRID_LIMITED_DEVICES = ("cuda",)
"""Device types whose fused SDPA calls :func:`fused_sdpa` keeps within ``CUDA_MAX_GRID``."""

CHUNK_BYTES = 4 * 1024 * 1024
"""Score bytes per query block of :func:`chunked_attention` (all batch entries together); about one L2/L3 slice."""

_TEXTBOOK: contextvars.ContextVar[bool] = contextvars.ContextVar("yolo_attn_textbook", default=False)
"""Per thread (and per asyncio task): a ``with textbook():`` in one thread leaves layers in other threads alone."""


@contextlib.contextmanager
def textbook(enabled: bool = True):
    """Run every attention of this module in its explicit form inside the ``with`` block (nesting restores)."""
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


# ----------------------------------------------------------------------------------------------------------------------
# dispatch: which form runs, decided in one place from the device, dtype and shapes
# ----------------------------------------------------------------------------------------------------------------------
CUDA_HEAD_ALIGN = 8
"""Head dims handed to SDPA on CUDA are zero-padded to a multiple of this. The memory-efficient kernel needs q/k and
v head dims divisible by 8 in fp16/bf16 and by 4 in fp32 (``sdp_utils``: 128 bits over the element width on sm80+),
flash needs multiples of 8; a misaligned dim (e.g. SHSA with pdim 25) would silently fall back to the math kernel,
which materialises N×N. Every YOLO shape the shipped configs build is aligned already (q/k 16, v 16–128)."""


def attention_form(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> str:
    """How :func:`channels_first_attention` runs for channels-first ``q`` (B, d, N), ``k`` (B, d, M), ``v`` (B, dv, M):
    ``"explicit"`` (the token-major textbook matrix), ``"sdpa"`` (4-D), ``"chunked"`` (query blocks) or ``"bmm"`` (the
    lean channels-first explicit form: one ``baddbmm``, softmax, one ``bmm``).

    One rule per device, and why:

    * **textbook switch or** ``torch.jit.trace`` → ``"explicit"``: plain MatMul/Softmax, what ONNX and the other
      traced exports record.
    * **CUDA** → ``"sdpa"`` at every size, 4-D ``(B, 1, N, d)`` (see :func:`sdpa_inputs`). CUDA's fused kernels
      (flash, memory-efficient, cuDNN) take only 4-D inputs; 3-D inputs silently run the math kernel, which builds the
      whole N×N matrix (measured on an H200, SHSA at P3, batch 16: 10.1 GB training peak against 0.21 GB 4-D, fp16
      inference 10.4 against 1.0 ms). The fused kernels never hold the score matrix (training memory linear in
      tokens), form the scores in float32 even for fp16/bf16 inputs (no overflow where an fp16 ``q·kᵀ`` would pass
      65504), and are one kernel where the explicit form is three or four — at batch 1 the layers are launch-bound
      on a GPU. Small problems included: CGA's 49-token windows go through the memory-efficient kernel with the
      bias as an additive mask (it returns the mask's gradient). float64 has no fused kernel (math kernel).
    * **CPU** (thresholds measured on 2 CPU cores; CPU rules only): ``"sdpa"`` from ``SDPA_MIN_PAIRS`` pairs on, except
      with autograd recording up to ``CPU_GRAD_EXPLICIT_MAX_BYTES`` of scores (the fused CPU backward is the slow
      part), and in inference where q/k and v widths differ until the problem repays the zero-padding (``r`` = ratio
      of the head dims; SDPA wins from ``SDPA_MIN_PAIRS · r²`` pairs: 16-dim q/k, 6,400 tokens with 16- or 32-dim v,
      1,600 tokens with 16-dim v). Below that: ``"chunked"`` when one problem's scores exceed ``CHUNK_BYTES``
      (1,600 tokens with 32- or 64-dim v: 5.2 vs 8.1 ms at 64), else ``"bmm"``.
    * **Other devices** (MPS, XPU, ...; not measured): ``"sdpa"`` from ``SDPA_MIN_PAIRS`` pairs on, else ``"bmm"``.
    """
    if _TEXTBOOK.get() or torch.jit.is_tracing():
        return "explicit"
    device = q.device.type
    if device == "cuda":
        return "sdpa"
    (batch, dqk, n), m, dv = q.shape, k.shape[-1], v.shape[1]
    if n * m >= SDPA_MIN_PAIRS:
        if device != "cpu":
            return "sdpa"
        if _records_grad(q, k, v):
            if batch * n * m * 4 > CPU_GRAD_EXPLICIT_MAX_BYTES:
                return "sdpa"
        else:
            r = max(dqk, dv) / max(min(dqk, dv), 1)
            if n * m >= SDPA_MIN_PAIRS * r * r:
                return "sdpa"
    if device == "cpu" and not _records_grad(q, k, v) and n * m * q.element_size() > CHUNK_BYTES:
        return "chunked"  # one problem's scores exceed a block (not: many small ones, as CGA's windows)
    return "bmm"


def heads_form(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> str:
    """How :func:`heads_attention` runs for token-major 4-D ``q`` (B, H, N, d), ``k`` (B, H, M, d), ``v`` (B, H, M,
    dv) — H problems per batch entry (heads, or heads × windows as in BRA): ``"explicit"`` (``softmax(q·scale @
    kᵀ) @ v``, the N×M matrices materialised) or ``"sdpa"`` (:func:`fused_sdpa`).

    * **textbook switch or** ``torch.jit.trace`` → ``"explicit"``, as :func:`attention_form`.
    * **CUDA** → ``"sdpa"`` at every size, for :func:`attention_form`'s reasons (fused kernels, no score matrix held,
      scores in float32, one kernel instead of three or four).
    * **CPU** (rules measured on 2 CPU cores; CPU rules only): ``"sdpa"`` from ``HEADS_SDPA_MIN_PAIRS`` pairs per
      problem (the fused kernel parallelises over the problems: see the constant for the figures), and whenever the
      explicit scores of the call would exceed ``CPU_GRAD_EXPLICIT_MAX_BYTES`` (the memory bound), else
      ``"explicit"``.
    * **Other devices** (not measured): ``"sdpa"`` from ``SDPA_MIN_PAIRS`` pairs per problem, else ``"explicit"``.
    """
    if _TEXTBOOK.get() or torch.jit.is_tracing():
        return "explicit"
    device = q.device.type
    if device == "cuda":
        return "sdpa"
    (batch, heads, n, _), m = q.shape, k.shape[-2]
    if device != "cpu":
        return "sdpa" if n * m >= SDPA_MIN_PAIRS else "explicit"
    if n * m >= HEADS_SDPA_MIN_PAIRS or batch * heads * n * m * 4 > CPU_GRAD_EXPLICIT_MAX_BYTES:
        return "sdpa"
    return "explicit"


def heads_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """``softmax(q · scale @ kᵀ) @ v`` for token-major 4-D ``q`` (B, H, N, d), ``k`` (B, H, M, d), ``v`` (B, H, M, dv),
    in the form :func:`heads_form` picks; returns (B, H, N, dv).

    The explicit form scales ``q`` (N·d products, not the N×M scores), as the official BRA does; ``"sdpa"``:
    :func:`sdpa_attention`."""
    if heads_form(q, k, v) == "explicit":
        return ((q * scale) @ k.transpose(-2, -1)).softmax(dim=-1) @ v
    return sdpa_attention(q, k, v, scale)


def fused_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask, scale: float) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` on 4-D inputs laid out by :func:`sdpa_inputs`; on CUDA a call whose batch
    or head dim exceeds ``CUDA_MAX_GRID`` is split along it (results concatenated: every problem is independent)."""
    if q.device.type in GRID_LIMITED_DEVICES:
        for dim in (0, 1):
            size = q.shape[dim]
            if size > CUDA_MAX_GRID:
                parts = []
                for i in range(0, size, CUDA_MAX_GRID):
                    n = min(CUDA_MAX_GRID, size - i)
                    part = [t.narrow(dim, i, n) for t in (q, k, v)]
                    m = mask if mask is None or mask.shape[dim] == 1 else mask.narrow(dim, i, n)
                    parts.append(fused_sdpa(*part, m, scale))
                return torch.cat(parts, dim)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)


def sdpa_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias=None, device_type: str | None = None):
    """Token-major ``q`` (B, N, d), ``k`` (B, M, d), ``v`` (B, M, dv) and an optional additive bias broadcastable to
    (B, N, M), or 4-D ``(B, H, ·, ·)`` ones without a bias, laid out as the fused SDPA kernels of ``device_type``
    (default: the tensors' device) accept them.

    Returns ``(q, k, v, mask, dv)``: 4-D tensors (``(B, 1, ·, ·)`` from 3-D ones) with stride 1 on the last dim, the
    mask 4-D in q's dtype (or None), and the value width to keep of the output.

    * CUDA: q/k and v head dims zero-padded to multiples of ``CUDA_HEAD_ALIGN`` where they are not already (different
      q/k and v widths are fine for the memory-efficient kernel, so they are not equalised).
    * CPU: the narrower side zero-padded to the wider one, since the fused CPU kernel needs one head dim for q, k and
      v (SHSA: 16-dim q/k, C/4-dim v) and silently falls back to an unfused path otherwise (2 cores, 6,400 tokens,
      64-dim v: 1.7× slower than explicit).

    Zero channels appended to q and k leave every dot product unchanged; zero channels appended to v are sliced off
    the output.
    """
    device_type = device_type or q.device.type
    dqk, dv = q.shape[-1], v.shape[-1]
    if device_type == "cuda":
        pad_qk, pad_v = -dqk % CUDA_HEAD_ALIGN, -dv % CUDA_HEAD_ALIGN
    else:
        pad_qk, pad_v = max(dv - dqk, 0), max(dqk - dv, 0)
    if pad_qk:
        q, k = F.pad(q, (0, pad_qk)), F.pad(k, (0, pad_qk))
    if pad_v:
        v = F.pad(v, (0, pad_v))
    q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))
    if q.dim() == 3:
        q, k, v = q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1)
    mask = None
    if bias is not None:  # (N, M) -> (1, 1, N, M); (B, N, M) -> (B, 1, N, M): the head axis before the last two
        mask = bias.to(q.dtype)
        mask = mask.unsqueeze(-3) if mask.dim() == 3 else mask.reshape((1,) * (4 - mask.dim()) + mask.shape)
    return q, k, v, mask, dv


def token_major(*ts: torch.Tensor) -> list[torch.Tensor]:
    """Channels-first ``(B, c_i, N)`` tensors as token-major ``(B, N, c_i)`` with stride 1 on the last dim, as SDPA's
    fused kernels read them — in one copy per run of tensors that are consecutive channel slices of one contiguous
    tensor (q, k and v split from one 1×1 convolution's output: one transposed copy, not three; each copy is a kernel
    launch, and at batch 1 on a GPU launches are the cost). Under ``torch.compile`` each is copied on its own (the
    compiler fuses the copies; Dynamo does not trace ``Tensor._base``)."""
    if _is_compiling():
        return [t.transpose(1, 2).contiguous() for t in ts]
    out, i = [], 0
    while i < len(ts):
        j = i + 1
        while j < len(ts) and _next_channels(ts[j - 1], ts[j]):
            j += 1
        if j - i == 1:
            out.append(ts[i].transpose(1, 2).contiguous())
        else:
            base = ts[i]._base.flatten(2)  # (B, C, N): the tensor the run was split from
            first = (ts[i].storage_offset() - base.storage_offset()) // base.stride(1)
            run = base.narrow(1, first, sum(t.shape[1] for t in ts[i:j])).transpose(1, 2).contiguous()  # one copy
            out += list(run.split([t.shape[1] for t in ts[i:j]], dim=-1))
        i = j
    return out


def _next_channels(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether ``b`` is the channel slice right after ``a`` of one contiguous tensor (both (B, c, N) views of it)."""
    base = a._base
    return (base is not None and b._base is base and base.is_contiguous() and a.dim() == b.dim() == 3
            and a.stride() == b.stride() and a.stride(-1) == 1 and a.shape[::2] == b.shape[::2]
            and a.stride(1) == a.shape[-1] and b.storage_offset() == a.storage_offset() + a.shape[1] * a.stride(1))


def sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, bias=None) -> torch.Tensor:
    """Same result as :func:`explicit_attention` for token-major (B, N, d) inputs (or 4-D (B, H, N, d) ones without a
    bias) through :func:`fused_sdpa` on 4-D inputs laid out by :func:`sdpa_inputs`; returns (B, N, dv) (or (B, H,
    N, dv))."""
    heads = q.dim() == 4
    q, k, v, mask, dv = sdpa_inputs(q, k, v, bias)
    out = fused_sdpa(q, k, v, mask, scale)  # (B, H, N, dv')
    out = out if heads else out.squeeze(1)
    return out[..., :dv] if out.shape[-1] != dv else out


def _records_grad(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad)


def channels_first_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
                             bias=None, fp32_scores: bool = False) -> torch.Tensor:
    """Softmax attention on channels-first token maps, returning channels-first: no transposed copies.

    Args:
        q: (B, d, N) queries, k: (B, d, M) keys, v: (B, dv, M) values — e.g. ``conv_out.flatten(2)`` slices.
        scale: multiplier of the dot products.
        bias: optional additive bias broadcastable to (B, N, M).
        fp32_scores: form the scores of float16 inputs in float32 (result cast back), where the form chosen would
            form them in float16 (every form but CUDA's fused kernels, which accumulate in float32 anyway): for
            layers whose logits can pass 65504 (CGA: no normalisation before its queries and keys).

    Returns:
        (B, dv, N), equal to ``explicit_attention(qᵀ, kᵀ, vᵀ, scale, bias)ᵀ``.

    The form is :func:`attention_form`'s. ``"bmm"``: ``baddbmm`` computes ``bias + scale · qᵀk`` in one kernel; BLAS
    reads the transposed token operands in place, and the result comes back as a transposed view (no copy here).
    ``"sdpa"`` needs token-major inputs (one copy each); ``"chunked"``: :func:`chunked_attention`.
    """
    form = attention_form(q, k, v)
    if _scores_dtype(form, q, fp32_scores) != q.dtype:
        try:  # autocast would cast the products back to fp16
            ctx = torch.autocast(q.device.type, enabled=False)
        except RuntimeError:  # a device type without autocast (meta)
            ctx = contextlib.nullcontext()
        with ctx:
            return _attend(form, q.float(), k.float(), v.float(), scale, bias).to(q.dtype)
    return _attend(form, q, k, v, scale, bias)


def scores_dtype(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, fp32_scores: bool = False) -> torch.dtype:
    """The dtype :func:`channels_first_attention` forms the scores in."""
    return _scores_dtype(attention_form(q, k, v), q, fp32_scores)


def _scores_dtype(form: str, q: torch.Tensor, fp32_scores: bool) -> torch.dtype:
    if fp32_scores and q.dtype == torch.float16 and not (q.device.type == "cuda" and form == "sdpa"):
        return torch.float32
    return q.dtype


def prepare_bias(bias: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                 fp32_scores: bool = False) -> torch.Tensor:
    """``bias`` as :func:`channels_first_attention` will consume it, so a layer calling it once per head converts its
    bias once per forward. The explicit (textbook, traced) form keeps the bias as it is: added to lower-precision
    scores it promotes them, as in the official code under autocast."""
    form = attention_form(q, k, v)
    return bias if form == "explicit" else bias.to(_scores_dtype(form, q, fp32_scores))


def _attend(form: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, bias) -> torch.Tensor:
    """:func:`channels_first_attention` in the given form."""
    if form == "explicit":
        return explicit_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), scale, bias).transpose(1, 2)
    if form == "sdpa":
        return sdpa_attention(*token_major(q, k, v), scale, bias).transpose(1, 2)
    if form == "chunked":
        return chunked_attention(q, k, v, scale, bias)
    B = q.shape[0]
    qt = q.transpose(1, 2)
    if bias is None:
        attn = torch.bmm(qt, k).mul_(scale)  # bmm does not keep its output for backward: in place is safe
    else:
        bias = bias.to(q.dtype)
        attn = torch.baddbmm(bias.expand(B, *bias.shape[-2:]), qt, k, alpha=scale)
    attn = attn.softmax(dim=-1)  # (rebound: the scores are freed before the product, the probabilities kept)
    # (attn @ vᵀ)ᵀ rather than v @ attnᵀ: the N×M matrix is never read transposed (its gradient neither)
    return torch.bmm(attn, v.transpose(1, 2)).transpose(1, 2)


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
