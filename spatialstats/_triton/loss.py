"""Fused loss term: the weighted squared distance between the statistics of fields and target
statistics, per sample, with its gradient.

Forward, for sample b, pairs p and the window r (shapes as in ``correlation.py``):

    S_p(r) = sums_p(r) / N(r)  (0 where N(r) = 0),   D = S - T,   E = w D,
    squares_b = sum_{p, r} w(r) D_p(r)^2 = sum_{p, r} E_p(r) D_p(r)

``correlation.py``'s forward kernel gives the sums (window-sized); one reduction kernel, a program
per sample, normalises them, compares them with T and reduces: one pass over the fields, nothing
materialised beyond the window. The loss's distance is sqrt(squares) ("l2") or squares / (P |W|)
("mse").

Backward, given g_b = dL/dsquares_b (and dL/dE if E is used):

    dL/dS_p(r) = 2 g_b E_p(r) + w(r) dL/dE_p(r),   dL/dsums = dL/dS / N (0 where N = 0),   dL/dT = -dL/dS

and dL/dfields is ``correlation.py``'s backward kernel applied to dL/dsums: one more pass over the
fields, with window-sized intermediates only. Weights are constants here (the caller takes the
unfused path when they need a gradient).

Accuracy: that of the correlation sums (``correlation.py``); the reduction is in float32 (float64
for float64 fields).
"""

import torch
import triton
import triton.language as tl

from .._common import divide_by_counts, statistics_dtype
from . import correlation
from .correlation import correlate_backward


@triton.jit(do_not_specialize=["n_values", "window_size", "counts_batch_stride"])
def _weighted_squares_kernel(
    sums_ptr,
    target_ptr,
    weights_ptr,
    counts_ptr,
    weighted_diff_ptr,
    squares_ptr,
    n_values,
    window_size,
    counts_batch_stride,
    HAS_WEIGHTS: tl.constexpr,
    BLOCK: tl.constexpr,
):
    # Program: one sample b; a loop over its P * |W| values in blocks.
    b = tl.program_id(0)
    values = b.to(tl.int64) * n_values
    counts_row = counts_ptr + b.to(tl.int64) * counts_batch_stride
    total = tl.zeros((BLOCK,), dtype=squares_ptr.dtype.element_ty)
    for first in range(0, n_values, BLOCK):
        index = first + tl.arange(0, BLOCK)
        inside = index < n_values
        counts = tl.load(counts_row + index % window_size, mask=inside, other=0.0)
        sums = tl.load(sums_ptr + values + index, mask=inside, other=0.0)
        diff = tl.where(counts > 0, sums / tl.where(counts > 0, counts, 1.0), 0.0)
        diff -= tl.load(target_ptr + values + index, mask=inside, other=0.0)
        weighted = diff
        if HAS_WEIGHTS:
            weighted *= tl.load(weights_ptr + index, mask=inside, other=0.0)
        tl.store(weighted_diff_ptr + values + index, weighted, mask=inside)
        total += weighted * diff
    tl.store(squares_ptr + b, tl.sum(total, axis=0))


def _forward(fields, target, weights, counts, pairs, window, periodic, precision):
    """(squares (B,), E (B, P, *window)) for fields (B, C, n0, n1, n2), T (B, P, *window),
    w (P, *window) or None and N (Bm, *window), Bm in {1, B}."""
    sums = correlation._forward(fields, pairs, window, periodic, precision)
    batch = sums.shape[0]
    n_values, window_size = sums[0].numel(), counts[0].numel()
    squares = torch.empty(batch, dtype=sums.dtype, device=sums.device)
    weighted_diff = torch.empty_like(sums)
    _weighted_squares_kernel[(batch,)](
        sums,
        target.to(sums.dtype).contiguous(),
        sums if weights is None else weights.to(sums.dtype).contiguous(),
        counts.to(sums.dtype).contiguous(),
        weighted_diff,
        squares,
        n_values,
        window_size,
        0 if counts.shape[0] == 1 else window_size,
        HAS_WEIGHTS=weights is not None,
        BLOCK=max(16, min(1024, triton.next_power_of_2(n_values))),
    )
    return squares, weighted_diff


@torch.library.custom_op("spatialstats_triton::weighted_squares", mutates_args=())
def weighted_squares(
    fields: torch.Tensor,
    target: torch.Tensor,
    weights: torch.Tensor | None,
    counts: torch.Tensor,
    pairs: list[int],
    window: list[int],
    periodic: bool,
    precision: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum_{p,r} w D^2 (B,), E = w D (B, P, *window)) with D = sums / N - T; see the module docstring."""
    return _forward(fields, target, weights, counts, pairs, window, periodic, precision)


@weighted_squares.register_fake
def _weighted_squares_fake(fields, target, weights, counts, pairs, window, periodic, precision):
    dtype = statistics_dtype(fields.dtype)
    return fields.new_empty((fields.shape[0],), dtype=dtype), target.new_empty(target.shape, dtype=dtype)


def _save_for_gradient(ctx, inputs, output):
    fields, _, weights, counts, *options = inputs
    ctx.save_for_backward(fields, weights, counts, output[1])
    ctx.options = options


def _weighted_squares_grad(ctx, grad_squares, grad_weighted_diff):
    fields, weights, counts, weighted_diff = ctx.saved_tensors
    grad_stats = 2 * grad_squares.reshape(-1, 1, 1, 1, 1) * weighted_diff
    if grad_weighted_diff is not None:
        grad_stats = grad_stats + (grad_weighted_diff if weights is None else grad_weighted_diff * weights)
    grad_sums = divide_by_counts(grad_stats, counts.unsqueeze(1))
    grad_fields = correlate_backward(grad_sums, fields, *ctx.options)
    return grad_fields, -grad_stats, None, None, None, None, None, None


weighted_squares.register_autograd(_weighted_squares_grad, setup_context=_save_for_gradient)
