"""Direct float64 reference of the two-point statistics: the oracle for every other backend.

Written for obviousness, not speed: one loop over the displacements of the window, each a roll
(periodic) or a pair of slices (non-periodic) of the whole grid. For a displacement r,

    S_ij(r) = (1 / N(r)) * sum_s m(s) m(s + r) f_i(s) f_j(s + r),   N(r) = sum_s m(s) m(s + r)

where s runs over the grid (periodic: s + r wraps) or over the positions with s and s + r both
inside the grid (non-periodic), and m is the mask (1 everywhere without one). N(r) = 0 gives S = 0.
Output axis a holds r_a, centred: index k_a + r_a, 2 k_a + 1 entries.

Every backend module exposes the same two functions with the same shapes:
    two_point(fields, pairs, mask, window, periodic) -> (B, P, *window)
    pair_counts(mask, spatial_shape, window, periodic, device) -> (Bm, *window)
fields: (B, C, *spatial) real (fp16, bf16, fp32 or fp64; compute in at least fp32); pairs:
((i, j), ...) channel pairs; mask: None, or (Bm, *spatial) bool (or [0, 1] weights), Bm in {1, B};
window: k_a per spatial axis (any k_a >= 0). Results are differentiable with respect to the fields.
A backend that can be missing also has ``unavailable_reason(device) -> str | None``, and one with a
fused loss has ``pair_distance(fields, target_stats, pairs, mask, window, periodic, weights,
distance) -> (B,)``, equal to ``loss._distance(two_point(...) - target_stats, weights, distance)``.
This one computes in float64.
"""

import itertools

import torch


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


def _correlate(a, b, window, periodic):
    """sum_s a(s) b(s + r) for every r of the window: (B, *spatial) -> (B, *window)."""
    displacements = itertools.product(*(range(-k, k + 1) for k in window))
    sums = [_shifted_product_sum(a, b, r, periodic) for r in displacements]
    return torch.stack(sums, dim=-1).reshape(a.shape[0], *(2 * k + 1 for k in window))


def pair_counts(mask, spatial_shape, window, periodic, device=None):
    """N(r) for every r of the window, float64: (Bm, *window), Bm = 1 without a mask."""
    if mask is None:
        m = torch.ones((1, *spatial_shape), dtype=torch.float64, device=device)
    else:
        m = mask.to(torch.float64)
    return _correlate(m, m, window, periodic)


def two_point(fields, pairs, mask, window, periodic):
    """S_ij(r) for each (i, j) in pairs: (B, C, *spatial) -> (B, P, *window), float64."""
    f = fields.to(torch.float64)
    if mask is not None:
        f = f * mask.to(torch.float64).unsqueeze(1)
    counts = pair_counts(mask, f.shape[2:], window, periodic, f.device).unsqueeze(1)
    sums = torch.stack([_correlate(f[:, i], f[:, j], window, periodic) for i, j in pairs], dim=1)
    return torch.where(counts > 0, sums / torch.where(counts > 0, counts, 1.0), 0.0)
