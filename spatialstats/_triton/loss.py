"""Fused loss term: the per-sample distance between the statistics of fields and target statistics,
with its gradient.

Forward, for sample b, pairs p and the window r (shapes as in ``correlation.py``):

    S_p(r) = sums_p(r) / N(r)  (0 where N(r) = 0),   D = S - T,   E = w D,
    squares_b = sum_{p, r} w(r) D_p(r)^2 = sum_{p, r} E_p(r) D_p(r)
    distance_b = sqrt(squares_b) ("l2", the paper's norm)  or  squares_b / (P |W|) ("mse")

``correlation.py``'s forward kernel gives the sums (window-sized); one reduction kernel, a program
per sample, normalises them (times 1/N, given), compares them with T, reduces and takes the
distance: one pass over the fields, nothing materialised beyond the window and the padded copy of
the fields, which the backward reads again.

Backward, given g_b = dL/ddistance_b (and dL/dE if E is used):

    dL/dS_p(r) = s_b E_p(r) + w(r) dL/dE_p(r),   s_b = g_b / distance_b ("l2"; 0 where distance_b = 0,
                 the zero slope of sqrt at 0) or 2 g_b / (P |W|) ("mse"),
    dL/dsums = dL/dS / N (0 where N = 0),   dL/dT = -dL/dS

and dL/dfields is ``correlation.py``'s backward kernel applied to dL/dsums: one more pass over the
padded fields, with window-sized intermediates only. Every gradient order works (the backward is
made of differentiable operations and ``correlation.correlate_backward``). Weights are constants
here (the caller takes the unfused path when they need a gradient).

Accuracy: that of the correlation sums (``correlation.py``); the reduction is in float32 (float64
for float64 fields).
"""

import torch
import triton
import triton.language as tl

from .._common import DISTANCES, statistics_dtype
from . import correlation
from .correlation import correlate_backward


@triton.jit(do_not_specialize=["n_values", "window_size", "counts_batch_stride"])
def _weighted_distance_kernel(
    sums_ptr,
    target_ptr,
    weights_ptr,
    inverse_counts_ptr,
    weighted_diff_ptr,
    distance_ptr,
    n_values,
    window_size,
    counts_batch_stride,
    HAS_WEIGHTS: tl.constexpr,
    MEAN: tl.constexpr,
    BLOCK: tl.constexpr,
):
    # Program: one sample b; a loop over its P * |W| values in blocks.
    b = tl.program_id(0)
    values = b.to(tl.int64) * n_values
    counts_row = inverse_counts_ptr + b.to(tl.int64) * counts_batch_stride
    total = tl.zeros((BLOCK,), dtype=distance_ptr.dtype.element_ty)
    for first in range(0, n_values, BLOCK):
        index = first + tl.arange(0, BLOCK)
        inside = index < n_values
        diff = tl.load(sums_ptr + values + index, mask=inside, other=0.0)
        diff *= tl.load(counts_row + index % window_size, mask=inside, other=0.0)
        diff -= tl.load(target_ptr + values + index, mask=inside, other=0.0)
        weighted = diff
        if HAS_WEIGHTS:
            weighted *= tl.load(weights_ptr + index, mask=inside, other=0.0)
        tl.store(weighted_diff_ptr + values + index, weighted, mask=inside)
        total += weighted * diff
    squares = tl.sum(total, axis=0)
    if MEAN:
        tl.store(distance_ptr + b, squares / n_values)
    else:
        tl.store(distance_ptr + b, tl.sqrt(squares))


def _forward(fields, target, weights, inverse_counts, pairs, window, periodic, precision, distance):
    """(distance (B,), E (B, P, *window), padded buffer) for fields (B, C, n0, n1, n2), T (B, P, *window),
    w (P, *window) or None and 1/N (Bm, *window) (0 where N = 0), Bm in {1, B}."""
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")
    sums, padded = correlation._forward(fields, pairs, window, periodic, precision)
    batch = sums.shape[0]
    n_values, window_size = sums[0].numel(), inverse_counts[0].numel()
    distances = torch.empty(batch, dtype=sums.dtype, device=sums.device)
    weighted_diff = torch.empty_like(sums)
    with correlation._device_scope(sums.device):
        _weighted_distance_kernel[(batch,)](
            sums_ptr=sums,
            target_ptr=target.to(sums.dtype).contiguous(),
            weights_ptr=sums if weights is None else weights.to(sums.dtype).contiguous(),
            inverse_counts_ptr=inverse_counts.to(sums.dtype).contiguous(),
            weighted_diff_ptr=weighted_diff,
            distance_ptr=distances,
            n_values=n_values,
            window_size=window_size,
            counts_batch_stride=0 if inverse_counts.shape[0] == 1 else window_size,
            HAS_WEIGHTS=weights is not None,
            MEAN=distance == "mse",
            BLOCK=max(16, min(1024, triton.next_power_of_2(n_values))),
        )
    return distances, weighted_diff, padded


@torch.library.custom_op("spatialstats_triton::weighted_distance", mutates_args=())
def weighted_distance(
    fields: torch.Tensor,
    target: torch.Tensor,
    weights: torch.Tensor | None,
    inverse_counts: torch.Tensor,
    pairs: list[int],
    window: list[int],
    periodic: bool,
    precision: str,
    distance: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(distance (B,), E = w D (B, P, *window), padded buffer) with D = sums / N - T; see the module
    docstring. No gradient flows through the padded buffer."""
    return _forward(fields, target, weights, inverse_counts, pairs, window, periodic, precision, distance)


@weighted_distance.register_fake
def _weighted_distance_fake(fields, target, weights, inverse_counts, pairs, window, periodic, precision, distance):
    dtype = statistics_dtype(fields.dtype)
    return (
        fields.new_empty((fields.shape[0],), dtype=dtype),
        target.new_empty(target.shape, dtype=dtype),
        correlation._padded_like(fields, window, pairs),
    )


def _save_for_gradient(ctx, inputs, output):
    fields, _, weights, inverse_counts, *options, distance = inputs
    ctx.save_for_backward(fields, weights, inverse_counts, output[0], output[1], output[2])
    ctx.options = options
    ctx.distance = distance


def _weighted_distance_grad(ctx, grad_distance, grad_weighted_diff, _grad_padded):
    fields, weights, inverse_counts, distances, weighted_diff, padded = ctx.saved_tensors
    if ctx.distance == "mse":
        scale = grad_distance * (2 / weighted_diff[0].numel())
    else:  # sqrt has an infinite slope at 0: the zero distance gets a zero gradient instead
        positive = distances > 0
        scale = torch.where(positive, grad_distance / torch.where(positive, distances, 1.0), 0.0)
    grad_stats = scale.reshape(-1, *(1,) * (weighted_diff.ndim - 1)) * weighted_diff
    if grad_weighted_diff is not None:
        grad_stats = grad_stats + (grad_weighted_diff if weights is None else grad_weighted_diff * weights)
    grad_fields = correlate_backward(grad_stats * inverse_counts.unsqueeze(1), fields, padded, *ctx.options)
    grad_target = -grad_stats if ctx.needs_input_grad[1] else None
    return grad_fields, grad_target, None, None, None, None, None, None, None


weighted_distance.register_autograd(_weighted_distance_grad, setup_context=_save_for_gradient)
