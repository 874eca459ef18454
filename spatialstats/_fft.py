"""torch.fft backend of the two-point statistics: any device, differentiable to any order.

Math (the convention of ``_ref.py``): with F_i = DFT(m f_i) on a grid of size P per axis,

    sums_ij(r) = sum_s m(s) m(s + r) f_i(s) f_j(s + r) = IDFT(conj(F_i) F_j)(r mod P)

exact when the grid wraps onto itself (periodic: P = n) or is zero-padded so that no displacement
of the window aliases another (non-periodic: P >= n + k, k <= n - 1, rounded up to a size with
factors 2, 3, 5, 7 only). The window is read without an index: multiplying the product spectrum by
e^{-2 pi i K k / P} moves displacement -k to index 0, so the window is a narrow of the inverse
transform, scaled by 1 / N(r) into a fresh tensor (the only copy). Pairs are transformed back a
chunk at a time, so large volumes never hold all pair spectra at once.

Backward (``_Correlation``): for upstream G_p(r) placed on the grid as H_p (the adjoint of narrow,
shift and scale),

    dL/df_i(s) = sum_r H_p(r) f_j(s + r)  ->  conj(H^_p) F_j,     dL/df_j(u) = sum_r H_p(r) f_i(u - r)  ->  H^_p F_i

It saves the fields (and, periodic, their spectra, which are no larger) instead of autograd's
complex spectra of every pair, and is itself differentiable (second and higher derivatives).

Fused loss (``pair_distance``): with a target image the difference of the statistics is one
inverse transform of the difference of the spectra; over the full periodic window no inverse
transform is needed at all (Parseval: sum_r D(r)^2 = (1/N) sum_K |D^(K)|^2 over the torus, rfft
bins weighted 2 except the zero and Nyquist columns, minus the displacements r_a = n_a / 2 of even
axes that the window of distinct displacements leaves out, computed from the spectrum as well).

Shapes: fields (B, C, *spatial) -> (B, P, *window); fp16/bf16/fp32 compute in fp32, fp64 in fp64.
Accuracy: the round-off of one real FFT round trip, about 1e-6 relative to max |S| in fp32 and
1e-14 in fp64.
"""

import functools
import itertools
import math
from typing import NamedTuple

import torch

from ._common import (
    analytic_counts,
    cached,
    computed_half_widths,
    counts_from_correlation,
    counts_without_mask,
    distance_from_squares,
    eager_twin,
    fast_fft_size,
    per_sample_distance,
    statistics_dtype,
    to_window,
    window_shape,
)

# Pair products and their inverse transforms are made this many bytes at a time at most.
PAIR_CHUNK_BYTES = 256 * 2**20
# Per-axis factors (shift phases, 1 / N(r)) are multiplied out into one tensor up to this many elements.
FULL_FACTOR_ELEMENTS = 1 << 16


def unavailable_reason(device):
    """None: torch.fft runs on every device."""
    return None


def fft_grid(spatial_shape, computed, periodic):
    """DFT size per axis: the image itself (periodic) or zero-padded to a fast size >= n + k."""
    return tuple(spatial_shape) if periodic else tuple(fast_fft_size(n + c) for n, c in zip(spatial_shape, computed))


def _factors(vectors):
    """One tensor (small) or the per-axis vectors themselves (large): what to multiply by, in turn."""
    if not vectors:
        return ()
    if math.prod([max(v.shape) for v in vectors]) <= FULL_FACTOR_ELEMENTS:
        return (functools.reduce(torch.mul, vectors),)
    return tuple(vectors)


def _along_axis(vector, axis, d):
    shape = [1] * d
    shape[axis] = -1
    return vector.reshape(shape)


def _shift_factors(grid, computed, sign, device, dtype):
    """Factors of e^{sign 2 pi i K k / P} on the rfft grid (last axis halved): with sign -1, index 0 of
    the inverse transform then holds displacement -k; +1 undoes it."""
    d, vectors = len(grid), []
    for axis, (size, c) in enumerate(zip(grid, computed)):
        if c:
            frequency = torch.arange(size // 2 + 1 if axis == d - 1 else size, dtype=torch.float64)
            phase = sign * 2 * math.pi * ((frequency * c) % size) / size
            vectors.append(_along_axis(torch.polar(torch.ones_like(phase), phase), axis, d).to(device, dtype))
    return _factors(vectors)


class _Plan(NamedTuple):
    """What the FFT path derives from (spatial shape, half-widths, periodic, pairs, device, dtype)."""

    pairs: tuple
    periodic: bool
    computed: tuple  # the half-widths computed before _common.to_window
    grid: tuple  # DFT size per axis
    dims: tuple  # the spatial axes
    window: tuple  # index of the window in the shifted inverse transform: (..., slice(0, m_a), ...)
    image: tuple  # index of the image in a grid-sized inverse transform: (..., slice(0, n_a), ...)
    shift: tuple  # complex factors moving displacement -k to index 0
    unshift: tuple  # their inverse
    scale: tuple  # factors of 1 / N(r) over the window without a mask (periodic: one number)
    auto: bool  # the pairs are (c, c) for every channel c, in order


@cached()
def _plan(spatial_shape, half_widths, periodic, channels, pairs, device, dtype):
    computed = computed_half_widths(spatial_shape, half_widths, periodic)
    grid = fft_grid(spatial_shape, computed, periodic)
    d = len(grid)
    complex_dtype = torch.complex128 if dtype == torch.float64 else torch.complex64
    if periodic:
        scale = (1.0 / math.prod(spatial_shape),)
    else:
        counts = analytic_counts(spatial_shape, computed, False)
        scale = _factors([_along_axis(1.0 / v, a, d).to(device, dtype) for a, v in enumerate(counts)])
    return _Plan(
        pairs=pairs,
        periodic=periodic,
        computed=computed,
        grid=grid,
        dims=tuple(range(-d, 0)),
        window=(Ellipsis, *(slice(0, min(2 * c + 1, size)) for c, size in zip(computed, grid))),
        image=(Ellipsis, *(slice(0, n) for n in spatial_shape)),
        shift=_shift_factors(grid, computed, -1.0, device, complex_dtype),
        unshift=_shift_factors(grid, computed, 1.0, device, complex_dtype),
        scale=scale,
        auto=pairs == tuple((c, c) for c in range(channels)),
    )


def plan_for(fields, pairs, half_widths, periodic):
    """The cached :class:`_Plan` of a call (fields in the compute dtype)."""
    spatial = tuple(fields.shape[2:])
    return _plan(spatial, tuple(half_widths), periodic, fields.shape[1], tuple(pairs), fields.device, fields.dtype)


def _mask_scale(counts, plan, half_widths, dtype):
    """(1 / N(r) where N > 0, else 0,): counts (Bm, *window) cropped to the computed window -> (Bm, 1, *m)."""
    lengths = [index.stop for index in plan.window[1:]]
    crop = tuple(slice(k - c, k - c + m) for k, c, m in zip(half_widths, plan.computed, lengths))
    counts = counts[(slice(None), *crop)].to(dtype)
    return (torch.where(counts > 0, 1.0 / torch.where(counts > 0, counts, 1.0), 0.0).unsqueeze(1),)


def _scaled(values, scale, multiplier=1.0):
    """values * (product of the scale factors) * multiplier, into a fresh contiguous tensor."""
    first, *rest = scale
    if isinstance(first, float):
        out = values * (first * multiplier)
    else:
        out = values * first
        if multiplier != 1.0:
            out.mul_(multiplier)
    for factor in rest:
        out.mul_(factor)
    return out


@cached()
def _channel_index(channels, device):
    return torch.tensor(channels, dtype=torch.int64, device=device)


def _products(spectra, pairs, auto, consume=False):
    """conj(F_i) F_j for each pair (i, j): (B, C, *half grid) -> (B, P, *half grid), a fresh tensor, or
    with ``consume`` and ``auto`` (every channel's auto-correlation, in order) ``spectra`` overwritten."""
    if auto:
        return spectra.mul_(spectra.conj()) if consume else spectra.conj() * spectra
    first = spectra.index_select(1, _channel_index(tuple(i for i, _ in pairs), spectra.device))
    return first.conj() * spectra.index_select(1, _channel_index(tuple(j for _, j in pairs), spectra.device))


def _statistics_from_products(products, plan, scale):
    """scale * sums(r) over the narrowed window from the product spectra (multiplied in place)."""
    for factor in plan.shift:
        products.mul_(factor)
    return _scaled(torch.fft.irfftn(products, s=plan.grid, dim=plan.dims)[plan.window], scale)


def _correlate(spectra, plan, scale, consume=False):
    """scale * sums_p(r) over the narrowed window for every pair: (B, P, *m). ``consume``: the spectra
    are not needed afterwards and may be overwritten (no second spectrum-sized buffer). The pairs are
    transformed back in chunks of at most PAIR_CHUNK_BYTES of products and inverse transforms."""
    if len(plan.pairs) == 1:
        return _statistics_from_products(_products(spectra, plan.pairs, plan.auto, consume), plan, scale)
    per_pair = spectra.shape[0] * (spectra[0, 0].numel() * spectra.element_size() + math.prod(plan.grid) * 8)
    size = max(1, PAIR_CHUNK_BYTES // per_pair)
    if size >= len(plan.pairs):
        return _statistics_from_products(_products(spectra, plan.pairs, plan.auto, consume), plan, scale)
    chunks = [plan.pairs[start : start + size] for start in range(0, len(plan.pairs), size)]
    return torch.cat([_statistics_from_products(_products(spectra, c, False), plan, scale) for c in chunks], 1)


def _gradient_spectra(placed, spectra, plan):
    """Spectrum of dL/df: sum over pairs (i, j) of conj(H_p) F_j into channel i and H_p F_i into j."""
    if plan.auto:
        return spectra * placed.real  # conj(H) F + H F = 2 Re(H) F; the 2 is in ``placed``
    first = _channel_index(tuple(i for i, _ in plan.pairs), spectra.device)
    second = _channel_index(tuple(j for _, j in plan.pairs), spectra.device)
    total = torch.zeros_like(spectra).index_add(1, first, placed.conj() * spectra.index_select(1, second))
    return total.index_add(1, second, placed * spectra.index_select(1, first))


class _Correlation(torch.autograd.Function):
    """S_p = sums_p / N over the narrowed window: (B, C, *spatial) -> (B, P, *m), and the fields'
    spectra where the backward reuses them (periodic, so no larger than the fields, and a gradient
    is needed; else an empty tensor and the backward transforms the fields again)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(fields, nonnegative, plan, scale):
        spectra = torch.fft.rfftn(fields, s=plan.grid, dim=plan.dims)
        keep = plan.periodic and fields.requires_grad
        stats = _correlate(spectra, plan, scale, consume=not keep)
        if isinstance(nonnegative, torch.Tensor):
            stats = torch.where(nonnegative, stats.clamp_min(0), stats)
        elif nonnegative:
            stats.clamp_min_(0)  # round-off below 0; the gradient passes through unchanged
        return stats, spectra if keep else spectra.new_empty(0)

    @staticmethod
    def setup_context(ctx, inputs, output):
        fields, _, plan, scale = inputs
        ctx.mark_non_differentiable(output[1])
        ctx.set_materialize_grads(False)  # no zeros for the spectra's (absent) gradient
        ctx.save_for_backward(fields, output[1] if output[1].numel() else None)
        ctx.plan, ctx.scale = plan, scale

    @staticmethod
    def backward(ctx, grad, _):
        if grad is None:  # only the spectra were used (set_materialize_grads(False) passes no zeros)
            return None, None, None, None
        fields, spectra = ctx.saved_tensors
        plan = ctx.plan
        if spectra is None or torch.is_grad_enabled():  # higher derivatives need the spectra's graph
            spectra = torch.fft.rfftn(fields, s=plan.grid, dim=plan.dims)
        placed = torch.fft.rfftn(_scaled(grad, ctx.scale, 2.0 if plan.auto else 1.0), s=plan.grid, dim=plan.dims)
        for factor in plan.unshift:
            placed = placed * factor
        grad_fields = torch.fft.irfftn(_gradient_spectra(placed, spectra, plan), s=plan.grid, dim=plan.dims)
        return grad_fields[plan.image], None, None, None


_correlation = eager_twin(_Correlation)


def pair_counts(mask, *, spatial_shape, half_widths, periodic, device=None):
    """N(r) = sum_s m(s) m(s + r) over the window, float64: (Bm, *window), Bm = 1 without a mask."""
    spatial, half_widths = tuple(spatial_shape), tuple(half_widths)
    if mask is None:
        return counts_without_mask(spatial, half_widths, periodic, device)
    weights = mask.to(torch.float64).unsqueeze(1)
    plan = plan_for(weights, ((0, 0),), half_widths, periodic)
    counts = _correlate(torch.fft.rfftn(weights, s=plan.grid, dim=plan.dims), plan, (1.0,), consume=True)
    return counts_from_correlation(to_window(counts.squeeze(1), spatial, plan.computed, half_widths, periodic), mask)


def _prepare(fields, pairs, mask, counts, half_widths, periodic):
    """(masked fields in the compute dtype, plan, scale factors)."""
    f = fields.to(statistics_dtype(fields.dtype))
    plan = plan_for(f, pairs, half_widths, periodic)
    if mask is None:
        return f, plan, plan.scale
    if counts is None:
        counts = pair_counts(mask, spatial_shape=f.shape[2:], half_widths=half_widths, periodic=periodic)
    return f * mask.to(f.dtype).unsqueeze(1), plan, _mask_scale(counts, plan, half_widths, f.dtype)


def two_point(fields, *, pairs, half_widths, periodic, mask=None, counts=None, nonnegative=False):
    """S_ij(r) for each (i, j) in pairs: (B, C, *spatial) -> (B, P, *window), fp32 or fp64."""
    f, plan, scale = _prepare(fields, pairs, mask, counts, half_widths, periodic)
    stats, _ = _correlation(f, nonnegative, plan, scale)
    return to_window(stats, fields.shape[2:], plan.computed, tuple(half_widths), periodic)


# ----------------------------------------------------------------------------------------------
# The fused loss term
# ----------------------------------------------------------------------------------------------


def pair_distance(
    fields,
    *,
    pairs,
    half_widths,
    periodic,
    distance,
    target=None,
    target_stats=None,
    mask=None,
    counts=None,
    weights=None,
):
    """Per-sample distance (B,) between the statistics of ``fields`` and of ``target`` (B, C, *spatial)
    or ``target_stats`` (B, P, *window); None where it would not be faster than the statistics.

    The full periodic window without mask or weights is computed from the spectra alone (Parseval);
    with a target image, any other window takes one inverse transform of the difference of spectra.
    """
    spatial = tuple(fields.shape[2:])
    pairs = tuple(pairs)
    if periodic and mask is None and weights is None and tuple(half_widths) == tuple((n - 1) // 2 for n in spatial):
        return _parseval_distance(fields, target, target_stats, pairs, distance)
    if target is None:
        return None
    f, plan, scale = _prepare(fields, pairs, mask, counts, half_widths, periodic)
    t = target.to(f.dtype) if mask is None else target.to(f.dtype) * mask.to(f.dtype).unsqueeze(1)
    products = _products(torch.fft.rfftn(f, s=plan.grid, dim=plan.dims), pairs, plan.auto)
    products = products - _products(torch.fft.rfftn(t, s=plan.grid, dim=plan.dims), pairs, plan.auto)
    diff = to_window(_statistics_from_products(products, plan, scale), spatial, plan.computed, half_widths, periodic)
    return per_sample_distance(diff, weights, distance)


def _spectral_statistics(spectra, pairs):
    """DFT of S_p for spectra scaled by 1/sqrt(N) (rfftn norm="ortho"): conj(F_i) F_j, real |F_i|^2
    when every pair is an auto-correlation."""
    if all(i == j for i, j in pairs):
        if pairs != tuple((c, c) for c in range(spectra.shape[1])):
            spectra = spectra.index_select(1, _channel_index(tuple(i for i, _ in pairs), spectra.device))
        return (spectra * spectra.conj()).real
    return _products(spectra, pairs, False)


def _parseval_distance(fields, target, target_stats, pairs, distance):
    """The distance over the full periodic window |r_a| <= (n_a - 1) // 2 from spectra only."""
    spatial = tuple(fields.shape[2:])
    work = statistics_dtype(fields.dtype)
    dims = tuple(range(-len(spatial), 0))
    pred = _spectral_statistics(torch.fft.rfftn(fields.to(work), dim=dims, norm="ortho"), pairs)
    if target is not None:
        difference = pred - _spectral_statistics(torch.fft.rfftn(target.to(work), dim=dims, norm="ortho"), pairs)
        squares = _torus_squares(difference, spatial) - _nyquist_squares(difference, spatial)
    else:
        # The window holds every displacement but r_a = n_a / 2 of even axes, where the placed target is 0.
        half_widths = tuple((n - 1) // 2 for n in spatial)
        plan = _plan(spatial, half_widths, True, fields.shape[1], pairs, fields.device, work)
        placed = torch.fft.rfftn(target_stats.to(work), s=spatial, dim=dims)
        for factor in plan.unshift:
            placed = placed * factor
        squares = _torus_squares(pred - placed, spatial) - _nyquist_squares(pred, spatial)
    n_values = len(pairs) * math.prod(window_shape((n - 1) // 2 for n in spatial))
    return distance_from_squares(squares, n_values, distance)


def _squares_per_sample(values):
    """sum of |values|^2 over every axis but the first: (B, ...) -> (B,), one pass."""
    return torch.linalg.vector_norm(values.flatten(1), dim=1).square()


@cached()
def _alternating(length, skip_ends, device, dtype):
    """(-1)^K for K < length (0 at both ends with ``skip_ends``)."""
    signs = torch.ones(length, dtype=torch.float64)
    signs[1::2] = -1.0
    if skip_ends:
        signs[0] = signs[-1] = 0.0
    return signs.to(device, dtype)


def _torus_squares(spectrum, spatial):
    """sum over every displacement of the torus of D(r)^2, per sample: (B, P, *half grid) DFT of D -> (B,).

    Parseval over the full spectrum: each rfft bin counts twice but the zero and (n even) Nyquist columns.
    """
    total = 2 * _squares_per_sample(spectrum) - _squares_per_sample(spectrum[..., 0])
    if spatial[-1] % 2 == 0:
        total = total - _squares_per_sample(spectrum[..., -1])
    return total / math.prod(spatial)


def _nyquist_squares(spectrum, spatial):
    """sum of D(r)^2 over the displacements with r_a = n_a / 2 on some even axis a (inclusion-exclusion
    over the sets A of such axes), per sample, from the DFT of D on the rfft grid: (B,)."""
    even = [a for a, n in enumerate(spatial) if n % 2 == 0]
    total = 0.0
    for size in range(1, len(even) + 1):
        for axes in itertools.combinations(even, size):
            total = total + (-1) ** (size + 1) * _line_squares(spectrum, spatial, axes)
    return total


def _contract(values, axis, vector):
    """sum_K vector[K] values[..., K, ...] over ``axis``, which goes away (a matrix-vector product)."""
    vector = vector.to(values.dtype)
    if axis == values.ndim - 1:
        return values @ vector
    return torch.matmul(vector, values.movedim(axis, -2))


def _line_squares(spectrum, spatial, axes):
    """sum of D(r)^2 over r with r_a = n_a / 2 for a in ``axes``: reduce those frequency axes with (-1)^K,
    which gives the DFT of D on that line, and apply Parseval over the remaining axes."""
    d, offset = len(spatial), spectrum.ndim - len(spatial)
    values, last = spectrum, d - 1
    if last in axes:
        # The full last axis: bins n - K hold conj(F(-K_other, K)).
        n = spatial[last]
        kept = _contract(values, values.ndim - 1, _alternating(n // 2 + 1, False, values.device, torch.float64))
        mirrored = _contract(values, values.ndim - 1, _alternating(n // 2 + 1, True, values.device, torch.float64))
        for axis in range(offset, offset + d - 1):
            mirrored = mirrored.flip(axis).roll(1, axis)
        values = kept + (mirrored.conj() if mirrored.is_complex() else mirrored)
    for axis in sorted((a for a in axes if a != last), reverse=True):
        values = _contract(values, offset + axis, _alternating(spatial[axis], False, values.device, torch.float64))
    if last in axes:
        squares = _squares_per_sample(values)
    else:
        squares = _torus_squares(values, [spatial[a] for a in range(d) if a not in axes]) * math.prod(
            [spatial[a] for a in range(d) if a not in axes]
        )
    # The reduced DFT is N_A times the line's DFT, and Parseval divides by the N / N_A other points.
    return squares / (math.prod(spatial[a] for a in axes) * math.prod(spatial))
