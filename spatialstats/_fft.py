"""torch.fft backend of the two-point statistics: any device, differentiable through autograd.

Math (the convention of ``_ref.py``): with F_i = DFT(m f_i) on a grid of size P per axis,

    sum_s m(s) m(s + r) f_i(s) f_j(s + r) = IDFT(conj(F_i) F_j)(r mod P)

which is exact when the DFT grid wraps onto itself (periodic: P = n) or when it is zero-padded
far enough that no displacement of the window aliases another one (non-periodic: P >= n + k for
|r| <= k < n, rounded up to a size with factors 2, 3, 5, 7 only). Displacements with |r| >= n have
no pairs in the non-periodic case and are zero. The counts N(r) are analytic without a mask and the
same correlation of the mask with itself with one (computed in float64 and rounded to integers for
a boolean mask, so N(r) = 0 is exact and gives S = 0).

Shapes: fields (B, C, *spatial) -> (B, P, *window); fp16/bf16/fp32 compute in fp32, fp64 in fp64.
Accuracy: the round-off of one real FFT round trip, about 1e-6 relative to max |S| in fp32 and
1e-14 in fp64.

Gradients come from autograd through rfftn/irfftn: a custom autograd.Function that recomputes
the spectra in backward saves their memory but costs two more FFTs, and measured slower on the CPU
(see ``bench/test_bench_fft.py::test_fft_autograd_vs_recompute``), so autograd it is.
"""

import functools

import torch


@functools.lru_cache(maxsize=None)
def fast_fft_size(minimum):
    """Smallest integer >= minimum whose only prime factors are 2, 3, 5 and 7."""
    size = max(1, minimum)
    while True:
        rest = size
        for p in (2, 3, 5, 7):
            while rest % p == 0:
                rest //= p
        if rest == 1:
            return size
        size += 1


def _effective_window(spatial_shape, window, periodic):
    """Non-periodic displacements |r| >= n have no pairs: compute up to n - 1 and pad with zeros."""
    if periodic:
        return tuple(window)
    return tuple(min(k, n - 1) for k, n in zip(window, spatial_shape))


def _pad_to_window(values, computed, window):
    """Zero-pad the trailing window axes of ``values`` from ``computed`` to ``window`` half-widths."""
    pad = []
    for k, kc in zip(reversed(window), reversed(computed)):
        pad += [k - kc, k - kc]
    return torch.nn.functional.pad(values, pad) if any(pad) else values


def _correlation_sums(fields, pairs, window, periodic):
    """Unnormalised sum_s f_i(s) f_j(s + r): (B, C, *spatial) real -> (B, P, *window), same dtype."""
    spatial = fields.shape[2:]
    dims = tuple(range(-len(spatial), 0))
    computed = _effective_window(spatial, window, periodic)
    grid = spatial if periodic else tuple(fast_fft_size(n + k) for n, k in zip(spatial, computed))
    spectra = torch.fft.rfftn(fields, s=grid, dim=dims)
    first = torch.tensor([i for i, _ in pairs], device=fields.device)
    second = torch.tensor([j for _, j in pairs], device=fields.device)
    products = spectra.index_select(1, first).conj() * spectra.index_select(1, second)
    sums = torch.fft.irfftn(products, s=grid, dim=dims)
    for axis, (k, size) in enumerate(zip(computed, grid)):
        wrapped = torch.arange(-k, k + 1, device=fields.device) % size
        sums = sums.index_select(2 + axis, wrapped)
    return _pad_to_window(sums, computed, window)


@functools.lru_cache(maxsize=64)
def _counts_without_mask(spatial_shape, window, periodic, device):
    """Analytic N(r): prod_a n_a (periodic) or prod_a max(n_a - |r_a|, 0): (1, *window) float64."""
    counts = torch.ones((1,) + (1,) * len(window), dtype=torch.float64, device=device)
    for axis, (k, n) in enumerate(zip(window, spatial_shape)):
        r = torch.arange(-k, k + 1, dtype=torch.float64, device=device)
        per_axis = torch.full_like(r, float(n)) if periodic else (n - r.abs()).clamp_min(0)
        shape = [1] * (len(window) + 1)
        shape[axis + 1] = 2 * k + 1
        counts = counts * per_axis.reshape(shape)
    return counts


def pair_counts(mask, spatial_shape, window, periodic, device=None):
    """N(r) = sum_s m(s) m(s + r) over the window, float64: (Bm, *window), Bm = 1 without a mask."""
    if mask is None:
        return _counts_without_mask(tuple(spatial_shape), tuple(window), periodic, torch.device(device or "cpu"))
    weights = mask.to(torch.float64).unsqueeze(1)
    counts = _correlation_sums(weights, ((0, 0),), window, periodic).squeeze(1)
    if mask.dtype == torch.bool:
        return counts.round()
    # [0, 1] weights: a sum that is zero up to round-off is zero.
    total = weights.flatten(1).square().sum(1).reshape((-1,) + (1,) * len(window))
    return torch.where(counts.abs() <= 1e-12 * total, 0.0, counts)


def two_point(fields, pairs, mask, window, periodic):
    """S_ij(r) for each (i, j) in pairs: (B, C, *spatial) -> (B, P, *window), fp32 or fp64."""
    work = torch.float64 if fields.dtype == torch.float64 else torch.float32
    f = fields.to(work)
    if mask is not None:
        f = f * mask.to(work).unsqueeze(1)
    sums = _correlation_sums(f, pairs, window, periodic)
    counts = pair_counts(mask, f.shape[2:], window, periodic, f.device).to(work).unsqueeze(1)
    return torch.where(counts > 0, sums / torch.where(counts > 0, counts, 1.0), 0.0)
