"""Convolution backend: the two-point statistics as depthwise convolutions of torch's vendor
libraries (oneDNN on the CPU, cuDNN or ATen's depthwise kernels on CUDA), on any device.

Math (the convention of ``_ref.py``): with g_c = m f_c and gp_c the field padded by k_a on both
sides of axis a (wrapped when periodic, zeros when not), for a pair p = (i, j)

    sums_p(r) = sum_s g_i(s) g_j(s + r) = conv(gp_j, g_i)(r + k)

a depthwise convolution of gp_j with the image g_i as its kernel and the (2k + 1)^d window as its
output: the weight gradient of a depthwise convolution of gp_j with a (2k + 1)^d kernel, written
as the forward convolution that oneDNN runs fastest (``bench/test_bench_conv.py`` times both).
One group per (sample, pair). The backward, for the upstream gradient G_p of sums_p,

    dL/dg_i(s) = sum_r G_p(r) g_j(s + r) = conv(gp_j, G_p)(s)
    dL/dg_j(t) = sum_r G_p(r) g_i(t - r) = conv(gp_i, flip(G_p))(t)

is a depthwise convolution with (2k + 1)^d kernels; an auto pair takes one, with G_p + flip(G_p).
The backward is made of differentiable convolutions, so gradients of every order exist.

The window computed is that of distinct displacements (``_common.computed_half_widths``), mapped
onto the one asked for by ``_common.to_window``. Counts: analytic without a mask, else the same
correlation of the mask (rounded to integers for a boolean mask).
Shapes: fields (B, C, *spatial) -> (B, P, *window); fp16/bf16/fp32 compute in fp32, fp64 in fp64.
Accuracy: direct float32 sums, about 1e-6 relative to max |S| (the libraries' summation order).
"""

import torch
import torch.nn.functional as F

from ._common import (
    computed_half_widths,
    counts_from_correlation,
    counts_without_mask,
    divide_by_counts,
    statistics_dtype,
    to_window,
)

_CONVOLUTIONS = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def unavailable_reason(device):
    """None when torch can convolve on ``device``, else why not."""
    if device.type == "cuda" and not torch.cuda.is_available():
        return "CUDA is not available"
    return None


def _padded(g, half_widths, periodic):
    """(N, C, *spatial) -> (N, C, *(n + 2k)): wrapped around when periodic, zeros when not."""
    if not periodic:
        return F.pad(g, [p for k in reversed(half_widths) for p in (k, k)])
    for axis, k in enumerate(half_widths):
        n = g.shape[2 + axis]
        g = g.index_select(2 + axis, torch.arange(-k, n + k, device=g.device) % n)
    return g


def _depthwise(inputs, kernels):
    """out[b, t] = conv(inputs[b, t], kernels[b, t]) (valid cross-correlation): (B, T, *) -> (B, T, *)."""
    batch, terms = kernels.shape[:2]
    spatial = inputs.shape[2:]
    groups = batch * terms
    convolve = _CONVOLUTIONS[len(spatial)]
    out = convolve(inputs.reshape(1, groups, *spatial), kernels.reshape(groups, 1, *kernels.shape[2:]), groups=groups)
    return out.reshape(batch, terms, *out.shape[2:])


def _channels(indices, device):
    return torch.tensor(indices, dtype=torch.int64, device=device)


class _CorrelationSums(torch.autograd.Function):
    """sum_s g_i(s) g_j(s + r) over the computed window: (B, C, *spatial) -> (B, P, *window)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(g, pairs, half_widths, periodic):
        first = _channels([i for i, _ in pairs], g.device)
        second = _channels([j for _, j in pairs], g.device)
        return _depthwise(_padded(g.index_select(1, second), half_widths, periodic), g.index_select(1, first))

    @staticmethod
    def setup_context(ctx, inputs, output):
        g, pairs, half_widths, periodic = inputs
        ctx.save_for_backward(g)
        ctx.pairs, ctx.half_widths, ctx.periodic = pairs, half_widths, periodic

    @staticmethod
    def backward(ctx, grad):
        (g,) = ctx.saved_tensors
        window_axes = tuple(range(1, g.ndim - 1))  # of grad[:, p]
        targets, partners, kernels = [], [], []
        for p, (i, j) in enumerate(ctx.pairs):
            mirrored = grad[:, p].flip(window_axes)
            if i == j:
                targets.append(i)
                partners.append(i)
                kernels.append(grad[:, p] + mirrored)
            else:
                targets += [i, j]
                partners += [j, i]
                kernels += [grad[:, p], mirrored]
        padded = _padded(g.index_select(1, _channels(partners, g.device)), ctx.half_widths, ctx.periodic)
        terms = _depthwise(padded, torch.stack(kernels, dim=1))
        return torch.zeros_like(g).index_add(1, _channels(targets, g.device), terms), None, None, None


def _correlation_sums(g, pairs, half_widths, periodic):
    """Unnormalised sums over the window: (B, C, *spatial) -> (B, P, *window), g's dtype."""
    spatial = tuple(g.shape[2:])
    computed = computed_half_widths(spatial, half_widths, periodic)
    sums = _CorrelationSums.apply(g, tuple(pairs), computed, periodic)
    return to_window(sums, spatial, computed, tuple(half_widths), periodic)


def pair_counts(mask, *, spatial_shape, half_widths, periodic, device=None):
    """N(r) over the window, float64: (Bm, *window), Bm = 1 without a mask (then analytic)."""
    if mask is None:
        return counts_without_mask(tuple(spatial_shape), tuple(half_widths), periodic, device)
    weights = mask.to(torch.float64).unsqueeze(1)
    return counts_from_correlation(_correlation_sums(weights, ((0, 0),), half_widths, periodic).squeeze(1), mask)


def two_point(fields, *, pairs, half_widths, periodic, mask=None, counts=None, nonnegative=False):
    """S_ij(r) for each (i, j) in pairs: (B, C, *spatial) -> (B, P, *window), fp32 or fp64.

    Direct sums of products: non-negative fields give non-negative statistics without a clamp.
    """
    work = statistics_dtype(fields.dtype)
    g = fields.to(work) if mask is None else fields.to(work) * mask.to(work).unsqueeze(1)
    if counts is None:
        counts = pair_counts(mask, spatial_shape=g.shape[2:], half_widths=half_widths, periodic=periodic)
    sums = _correlation_sums(g, pairs, half_widths, periodic)
    return divide_by_counts(sums, counts.to(device=g.device, dtype=work).unsqueeze(1))
