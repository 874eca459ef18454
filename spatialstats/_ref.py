"""Direct float64 reference of the two-point statistics: the oracle for every other backend.

Written for obviousness, not speed: one loop over the displacements of the window, each a roll
(periodic) or a pair of slices (non-periodic) of the whole grid. For a displacement r,

    S_ij(r) = (1 / N(r)) * sum_s m(s) m(s + r) f_i(s) f_j(s + r),   N(r) = sum_s m(s) m(s + r)

where s runs over the grid (periodic: s + r wraps) or over the positions with s and s + r both
inside the grid (non-periodic), and m is the mask (1 everywhere without one). N(r) = 0 gives S = 0.
Output axis a holds r_a, centred: index k_a + r_a, 2 k_a + 1 entries.

The backend contract is ``spatialstats._backend.Backend``; this backend computes in float64 (pass
float64 fields to get float64 results).
"""

import itertools

import torch

from ._common import divide_by_counts, statistics_dtype


def _shifted_product_sum(a, b, r, periodic):
    """sum_s a(s) b(s + r) over the valid s, for a, b of shape (B, *spatial): returns (B,)."""
    spatial = a.shape[1:]
    if periodic:
        b_at_s_plus_r = torch.roll(b, shifts=tuple(-ri for ri in r), dims=tuple(range(1, b.ndim)))
        return (a * b_at_s_plus_r).flatten(1).sum(1)
    if any(abs(ri) >= n for ri, n in zip(r, spatial)):
        return a.new_zeros(a.shape[0])
    s_range = tuple(slice(max(0, -ri), n - max(0, ri)) for ri, n in zip(r, spatial))
    s_plus_r_range = tuple(slice(max(0, ri), n - max(0, -ri)) for ri, n in zip(r, spatial))
    return (a[(slice(None),) + s_range] * b[(slice(None),) + s_plus_r_range]).flatten(1).sum(1)


def _correlate(a, b, half_widths, periodic):
    """sum_s a(s) b(s + r) for every r of the window: (B, *spatial) -> (B, *window)."""
    displacements = itertools.product(*(range(-k, k + 1) for k in half_widths))
    sums = [_shifted_product_sum(a, b, r, periodic) for r in displacements]
    return torch.stack(sums, dim=-1).reshape(a.shape[0], *(2 * k + 1 for k in half_widths))


def unavailable_reason(device):
    """None: plain torch runs on every device."""
    return None


def pair_counts(mask, *, spatial_shape, half_widths, periodic, device=None):
    """N(r) for every r of the window, float64: (Bm, *window), Bm = 1 without a mask."""
    if mask is None:
        m = torch.ones((1, *spatial_shape), dtype=torch.float64, device=device)
    else:
        m = mask.to(torch.float64)
    return _correlate(m, m, half_widths, periodic)


def two_point(fields, *, pairs, half_widths, periodic, mask=None, counts=None, nonnegative=False):
    """S_ij(r) for each (i, j) in pairs: (B, C, *spatial) -> (B, P, *window), computed in float64 and
    returned in the statistics dtype of the fields (float64 for float64, else float32).

    ``counts`` and ``nonnegative`` are not needed here: the counts are recomputed, and sums of
    products of non-negative numbers are non-negative.
    """
    f = fields.to(torch.float64)
    if mask is not None:
        f = f * mask.to(torch.float64).unsqueeze(1)
    n = pair_counts(mask, spatial_shape=f.shape[2:], half_widths=half_widths, periodic=periodic, device=f.device)
    sums = torch.stack([_correlate(f[:, i], f[:, j], half_widths, periodic) for i, j in pairs], dim=1)
    return divide_by_counts(sums, n.unsqueeze(1)).to(statistics_dtype(fields.dtype))
