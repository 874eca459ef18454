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

import torch

from ._common import (
    analytic_counts,
    cached,
    computed_half_widths,
    counts_from_correlation,
    counts_without_mask,
    distance_from_squares,
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


def _narrowed_lengths(grid, computed):
    """Entries read per axis from the shifted inverse transform: 2k + 1, at most the grid."""
    return tuple(min(2 * c + 1, size) for c, size in zip(computed, grid))


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


@cached()
def _shift_factors(grid, computed, inverse, device, dtype):
    """Factors of e^{-+2 pi i K k / P} on the rfft grid (last axis halved): forward, index 0 of the
    inverse transform then holds displacement -k; ``inverse`` undoes it."""
    d, sign = len(grid), 1.0 if inverse else -1.0
    vectors = []
    for axis, (size, c) in enumerate(zip(grid, computed)):
        if c:
            frequency = torch.arange(size // 2 + 1 if axis == d - 1 else size, dtype=torch.float64)
            phase = sign * 2 * math.pi * ((frequency * c) % size) / size
            vectors.append(_along_axis(torch.polar(torch.ones_like(phase), phase), axis, d).to(device, dtype))
    return _factors(vectors)


@cached()
def _analytic_scale(spatial_shape, computed, periodic, device, dtype):
    """Factors of 1 / N(r) over the computed window without a mask (periodic: the number 1 / prod(n))."""
    if periodic:
        return (1.0 / math.prod(spatial_shape),)
    d = len(spatial_shape)
    vectors = [
        _along_axis(1.0 / v, a, d).to(device, dtype)
        for a, v in enumerate(analytic_counts(spatial_shape, computed, False))
    ]
    return _factors(vectors)


def _mask_scale(counts, computed, half_widths, grid, dtype):
    """(1 / N(r) where N > 0, else 0,): counts (Bm, *window) cropped to the narrowed window -> (Bm, 1, *m)."""
    crop = tuple(slice(k - c, k - c + m) for k, c, m in zip(half_widths, computed, _narrowed_lengths(grid, computed)))
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


def _select(spectra, channels):
    if channels == tuple(range(spectra.shape[1])):
        return spectra
    return spectra.index_select(1, _channel_index(channels, spectra.device))


def _products(spectra, pairs):
    """conj(F_i) F_j for each pair (i, j): (B, C, *half grid) -> (B, P, *half grid), a fresh tensor."""
    return _select(spectra, tuple(i for i, _ in pairs)).conj() * _select(spectra, tuple(j for _, j in pairs))


def _statistics_from_products(products, grid, computed, scale):
    """scale * sums(r) over the narrowed window from the product spectra (multiplied in place)."""
    for factor in _shift_factors(grid, computed, False, products.device, products.dtype):
        products.mul_(factor)
    dims = tuple(range(-len(grid), 0))
    sums = torch.fft.irfftn(products, s=grid, dim=dims)
    narrowed = sums[(..., *(slice(0, m) for m in _narrowed_lengths(grid, computed)))]
    return _scaled(narrowed, scale)


def _pair_chunks(pairs, spectra, grid):
    """The pairs in chunks whose products and inverse transforms take at most PAIR_CHUNK_BYTES."""
    per_pair = spectra[:, :1].numel() * spectra.element_size() * 3 // 2 + math.prod(grid) * spectra.shape[0] * 8
    size = max(1, PAIR_CHUNK_BYTES // max(per_pair, 1))
    return [pairs[start : start + size] for start in range(0, len(pairs), size)]


def _correlate(spectra, pairs, grid, computed, scale):
    """scale * sums_p(r) over the narrowed window for every pair: (B, P, *m)."""
    chunks = [
        _statistics_from_products(_products(spectra, chunk), grid, computed, scale)
        for chunk in _pair_chunks(pairs, spectra, grid)
    ]
    return chunks[0] if len(chunks) == 1 else torch.cat(chunks, 1)


def _gradient_spectra(placed, spectra, pairs):
    """Spectrum of dL/df: sum over pairs (i, j) of conj(H_p) F_j into channel i and H_p F_i into j."""
    if pairs == tuple((c, c) for c in range(spectra.shape[1])):
        return spectra * placed.real  # conj(H) F + H F = 2 Re(H) F; the 2 is in ``placed``
    first = _channel_index(tuple(i for i, _ in pairs), spectra.device)
    second = _channel_index(tuple(j for _, j in pairs), spectra.device)
    total = torch.zeros_like(spectra).index_add(1, first, placed.conj() * spectra.index_select(1, second))
    return total.index_add(1, second, placed * spectra.index_select(1, first))


class _Correlation(torch.autograd.Function):
    """S_p = sums_p / N over the narrowed window: (B, C, *spatial) -> (B, P, *m), and the fields'
    spectra (not differentiable; saved for the backward when periodic)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(fields, nonnegative, pairs, computed, periodic, scale):
        spatial = fields.shape[2:]
        grid = fft_grid(spatial, computed, periodic)
        spectra = torch.fft.rfftn(fields, s=grid, dim=tuple(range(-len(spatial), 0)))
        stats = _correlate(spectra, pairs, grid, computed, scale)
        if isinstance(nonnegative, torch.Tensor):
            stats = torch.where(nonnegative, stats.clamp_min(0), stats)
        elif nonnegative:
            stats.clamp_min_(0)  # round-off below 0; the gradient passes through unchanged
        return stats, spectra

    @staticmethod
    def setup_context(ctx, inputs, output):
        fields, _, pairs, computed, periodic, scale = inputs
        ctx.mark_non_differentiable(output[1])
        ctx.save_for_backward(fields, output[1] if periodic else None)
        ctx.pairs, ctx.computed, ctx.periodic, ctx.scale = pairs, computed, periodic, scale

    @staticmethod
    def backward(ctx, grad, _):
        fields, spectra = ctx.saved_tensors
        spatial = fields.shape[2:]
        dims = tuple(range(-len(spatial), 0))
        grid = fft_grid(spatial, ctx.computed, ctx.periodic)
        if spectra is None or torch.is_grad_enabled():  # higher derivatives need the spectra's graph
            spectra = torch.fft.rfftn(fields, s=grid, dim=dims)
        auto = ctx.pairs == tuple((c, c) for c in range(fields.shape[1]))
        placed = torch.fft.rfftn(_scaled(grad, ctx.scale, 2.0 if auto else 1.0), s=grid, dim=dims)
        for factor in _shift_factors(grid, ctx.computed, True, placed.device, placed.dtype):
            placed = placed * factor
        grad_fields = torch.fft.irfftn(_gradient_spectra(placed, spectra, ctx.pairs), s=grid, dim=dims)
        return grad_fields[(..., *(slice(0, n) for n in spatial))], None, None, None, None, None


def pair_counts(mask, *, spatial_shape, half_widths, periodic, device=None):
    """N(r) = sum_s m(s) m(s + r) over the window, float64: (Bm, *window), Bm = 1 without a mask."""
    spatial, half_widths = tuple(spatial_shape), tuple(half_widths)
    if mask is None:
        return counts_without_mask(spatial, half_widths, periodic, device)
    computed = computed_half_widths(spatial, half_widths, periodic)
    grid = fft_grid(spatial, computed, periodic)
    weights = mask.to(torch.float64).unsqueeze(1)
    spectra = torch.fft.rfftn(weights, s=grid, dim=tuple(range(-len(spatial), 0)))
    counts = _correlate(spectra, ((0, 0),), grid, computed, (1.0,)).squeeze(1)
    return counts_from_correlation(to_window(counts, spatial, computed, half_widths, periodic), mask)


def _prepare(fields, mask, counts, half_widths, periodic):
    """(masked fields in the compute dtype, computed half-widths, grid, scale factors)."""
    spatial = tuple(fields.shape[2:])
    work = statistics_dtype(fields.dtype)
    computed = computed_half_widths(spatial, half_widths, periodic)
    grid = fft_grid(spatial, computed, periodic)
    f = fields.to(work)
    if mask is None:
        return f, computed, grid, _analytic_scale(spatial, computed, periodic, fields.device, work)
    if counts is None:
        counts = pair_counts(mask, spatial_shape=spatial, half_widths=half_widths, periodic=periodic)
    return f * mask.to(work).unsqueeze(1), computed, grid, _mask_scale(counts, computed, half_widths, grid, work)


def two_point(fields, *, pairs, half_widths, periodic, mask=None, counts=None, nonnegative=False):
    """S_ij(r) for each (i, j) in pairs: (B, C, *spatial) -> (B, P, *window), fp32 or fp64."""
    f, computed, _, scale = _prepare(fields, mask, counts, half_widths, periodic)
    stats, _ = _Correlation.apply(f, nonnegative, tuple(pairs), computed, periodic, scale)
    return to_window(stats, fields.shape[2:], computed, tuple(half_widths), periodic)


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
    f, computed, grid, scale = _prepare(fields, mask, counts, half_widths, periodic)
    t = target.to(f.dtype) if mask is None else target.to(f.dtype) * mask.to(f.dtype).unsqueeze(1)
    dims = tuple(range(-len(spatial), 0))
    products = _products(torch.fft.rfftn(f, s=grid, dim=dims), pairs)
    products = products - _products(torch.fft.rfftn(t, s=grid, dim=dims), pairs)
    diff = _statistics_from_products(products, grid, computed, scale)
    return per_sample_distance(to_window(diff, spatial, computed, tuple(half_widths), periodic), weights, distance)


def _spectral_statistics(spectra, pairs):
    """DFT of S_p for spectra scaled by 1/sqrt(N) (rfftn norm="ortho"): conj(F_i) F_j, real |F_i|^2
    when every pair is an auto-correlation."""
    if all(i == j for i, j in pairs):
        return torch.view_as_real(_select(spectra, tuple(i for i, _ in pairs))).square().sum(-1)
    return _products(spectra, pairs)


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
        placed = torch.fft.rfftn(target_stats.to(work), s=spatial, dim=dims)
        for factor in _shift_factors(spatial, half_widths, True, placed.device, placed.dtype):
            placed = placed * factor
        squares = _torus_squares(pred - placed, spatial) - _nyquist_squares(pred, spatial)
    n_values = len(pairs) * math.prod(window_shape((n - 1) // 2 for n in spatial))
    return distance_from_squares(squares, n_values, distance)


def _squared_magnitude(values):
    return torch.view_as_real(values).square().sum(-1) if values.is_complex() else values.square()


@cached()
def _half_spectrum_weights(n, device, dtype):
    """How often each rfft bin occurs in the full spectrum: 1 for 0 and (n even) n / 2, else 2."""
    weights = torch.full((n // 2 + 1,), 2.0, dtype=dtype)
    weights[0] = 1.0
    if n % 2 == 0:
        weights[-1] = 1.0
    return weights.to(device)


@cached()
def _alternating(length, skip_ends, device, dtype):
    """(-1)^K for K < length (0 at both ends with ``skip_ends``)."""
    signs = torch.ones(length, dtype=torch.float64)
    signs[1::2] = -1.0
    if skip_ends:
        signs[0] = signs[-1] = 0.0
    return signs.to(device, dtype)


def _torus_squares(spectrum, spatial):
    """sum over every displacement of the torus of D(r)^2, per sample: (B, P, *half grid) DFT of D -> (B,)."""
    per_bin = _squared_magnitude(spectrum).flatten(1, -2).sum(1)
    return per_bin @ _half_spectrum_weights(spatial[-1], per_bin.device, per_bin.dtype) / math.prod(spatial)


def _nyquist_squares(spectrum, spatial):
    """sum of D(r)^2 over the displacements with r_a = n_a / 2 on some even axis a (inclusion-exclusion
    over the sets A of such axes), per sample, from the DFT of D on the rfft grid: (B,)."""
    even = [a for a, n in enumerate(spatial) if n % 2 == 0]
    total = 0.0
    for size in range(1, len(even) + 1):
        for axes in itertools.combinations(even, size):
            total = total + (-1) ** (size + 1) * _line_squares(spectrum, spatial, axes)
    return total


def _line_squares(spectrum, spatial, axes):
    """sum of D(r)^2 over r with r_a = n_a / 2 for a in ``axes``: reduce those frequency axes with (-1)^K,
    which gives the DFT of D on that line, and apply Parseval over the remaining axes."""
    d, offset = len(spatial), spectrum.ndim - len(spatial)
    values, last = spectrum, d - 1
    half_weights = last not in axes
    if not half_weights:
        # The full last axis: bins n - K hold conj(F(-K_other, K)).
        n = spatial[last]
        kept = torch.tensordot(values, _alternating(n // 2 + 1, False, values.device, values.dtype), dims=([-1], [0]))
        mirrored = torch.tensordot(
            values, _alternating(n // 2 + 1, True, values.device, values.dtype), dims=([-1], [0])
        )
        for axis in range(offset, offset + d - 1):
            mirrored = mirrored.flip(axis).roll(1, axis)
        values = kept + (mirrored.conj() if mirrored.is_complex() else mirrored)
    for axis in sorted((a for a in axes if a != last), reverse=True):
        signs = _alternating(spatial[axis], False, values.device, values.dtype)
        values = torch.tensordot(values, signs, dims=([offset + axis], [0]))
    squares = _squared_magnitude(values)
    if half_weights:
        squares = squares.flatten(1, -2).sum(1) @ _half_spectrum_weights(spatial[last], squares.device, squares.dtype)
    else:
        squares = squares.flatten(1).sum(1)
    # The reduced DFT is N_A times the line's DFT, and Parseval divides by the N / N_A other points.
    return squares / (math.prod(spatial[a] for a in axes) * math.prod(spatial))
