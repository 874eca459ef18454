"""Radial two-point curves S2(|r|): statistics averaged over rings of displacement length (PoreSpy's rule).

    s2 = ss.two_point(image, periodic=False)      # (2n_0 - 1, 2n_1 - 1): every displacement
    curve = ss.radial_profile(s2)                 # == porespy.metrics.two_point_correlation(image)
    plt.plot(curve.distance, curve.probability)   # probability == PoreSpy's probability_scaled

Bin i averages the window's entries whose displacement length |r| = sqrt(sum_a r_a^2) lies in
[e_i, e_(i+1)), every entry weighted equally (PoreSpy 3.2's ``_radial_profile``). An integer ``bins``
builds the edges 0, w, 2w, ... up to r_max (inclusive of the bin that holds it) with width
w = max(1, ceil(r_max / bins)); r_max defaults to PoreSpy's min(image shape) // 2 for the window of
every displacement of a non-periodic image (half-widths k_a = n_a - 1), that is min_a (k_a + 1) // 2
for any window. Pass ``r_max`` for other windows (up to min_a k_a every ring is whole).
"""

import functools
import math
from typing import NamedTuple

import numpy as np
import torch

from . import ops
from ._common import statistics_dtype


class RadialProfile(NamedTuple):
    """A radial curve: ``distance`` (n_bins,) bin centres and ``bin_edges`` (n_bins + 1,), both in
    ``voxel_size`` units, and ``probability`` (*batch, n_bins), the mean of the statistics per bin."""

    distance: object
    bin_edges: object
    probability: object


def _window_half_widths(shape, spatial_dims):
    if any(n % 2 == 0 for n in shape):
        raise ValueError(
            f"stats must be a centred window with an odd number of entries (2k + 1) on each of its last "
            f"{spatial_dims} axes, got {tuple(shape)}"
        )
    return tuple((n - 1) // 2 for n in shape)


def _check_voxel_size(voxel_size):
    if isinstance(voxel_size, (bool, np.bool_)) or not isinstance(voxel_size, (int, float, np.integer, np.floating)):
        raise TypeError(f"voxel_size must be a positive number, got {voxel_size!r}")
    if not math.isfinite(voxel_size) or voxel_size <= 0:
        raise ValueError(f"voxel_size must be a positive finite number, got {voxel_size!r}")
    return float(voxel_size)


def _bin_edges(bins, window, r_max):
    """Bin edges in pixels (float64), from a number of bins or from the edges themselves."""
    if isinstance(bins, (int, np.integer)) and not isinstance(bins, (bool, np.bool_)):
        if bins < 1:
            raise ValueError(f"bins must be >= 1 (or an increasing array of bin edges), got {bins}")
        if r_max is None:
            r_max = min((k + 1) // 2 for k in window)
            if r_max == 0:
                raise ValueError(
                    f"the window of half-widths {window} is too small for a radial profile (PoreSpy's "
                    "r_max = min (k + 1) // 2 is 0); pass r_max or statistics with a larger window"
                )
        elif isinstance(r_max, (bool, np.bool_)) or not isinstance(r_max, (int, float, np.integer, np.floating)):
            raise TypeError(f"r_max must be a positive number, got {r_max!r}")
        elif not math.isfinite(r_max) or r_max <= 0:
            raise ValueError(f"r_max must be a positive finite number of pixels, got {r_max!r}")
        width = max(1, math.ceil(r_max / int(bins)))
        return np.arange(0, r_max + width, width, dtype=np.float64)
    if r_max is not None:
        raise ValueError("r_max applies to an integer bins; with explicit bin edges leave it None")
    if isinstance(bins, (bool, np.bool_, str, bytes)):
        raise TypeError(f"bins must be an int or an increasing array of bin edges in pixels, got {bins!r}")
    try:
        edges = np.asarray(bins, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"bins must be an int or an increasing array of bin edges in pixels, got {bins!r}") from None
    if edges.ndim != 1 or edges.size < 2:
        raise ValueError(f"bin edges must be a 1D array of at least 2 edges, got shape {edges.shape}")
    if not np.all(np.isfinite(edges)) or edges[0] < 0 or np.any(np.diff(edges) <= 0):
        raise ValueError(f"bin edges must be finite, non-negative and strictly increasing, got {edges.tolist()}")
    return edges


@torch.compiler.disable  # host-side geometry: torch.compile calls it rather than tracing numpy
@functools.lru_cache(maxsize=16)
def _ring_index(window, edges, device):
    """(bin of each window entry (W,) on ``device``, entries per bin (n_bins,) float64 numpy).

    Entries outside every bin go to the extra bin n_bins, which the caller drops.
    """
    axes = np.meshgrid(*[np.arange(-k, k + 1, dtype=np.int64) for k in window], indexing="ij", sparse=True)
    length = np.sqrt(sum(r * r for r in axes).astype(np.float64)).reshape(-1)
    edges = np.asarray(edges)
    n_bins = len(edges) - 1
    index = np.searchsorted(edges, length, side="right") - 1
    index[(index < 0) | (index >= n_bins)] = n_bins
    counts = np.bincount(index, minlength=n_bins + 1)[:n_bins]
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        i = int(empty[0])
        raise ValueError(
            f"bin [{edges[i]:g}, {edges[i + 1]:g}) holds no displacement of the window of half-widths {window} "
            f"({empty.size} empty bins); use wider bins or statistics with a larger window"
        )
    return torch.from_numpy(index).to(device), counts.astype(np.float64)


def radial_profile(stats, *, spatial_dims=2, bins=100, voxel_size=1.0, r_max=None):
    """Radial average of two-point statistics over rings of displacement length.

    Args:
        stats: (*batch, *window) statistics with an odd, centred window (2k_a + 1 per axis), as
            ``two_point`` returns them; numpy, torch or cupy (differentiable for torch).
        spatial_dims: number of trailing window axes (1, 2 or 3).
        bins: number of bins (PoreSpy's rule, see the module docstring) or the bin edges in pixels.
        voxel_size: length of a pixel; scales ``distance`` and ``bin_edges`` (not the bins given).
        r_max: largest radius in pixels covered by an integer ``bins`` (default min_a (k_a + 1) // 2).

    Returns:
        RadialProfile(distance (n_bins,), bin_edges (n_bins + 1,), probability (*batch, n_bins)) of the
        input's array type: numpy float64; torch on the input's device, float64 for float64 input
        and float32 otherwise; cupy on the input's device. For ``stats = two_point(image,
        periodic=False)`` it equals PoreSpy 3.2's ``two_point_correlation(image, voxel_size, bins)``
        (``distance``, ``bin_edges``, ``probability_scaled``). A bin without displacements raises.
    """
    d = ops.check_spatial_dims(spatial_dims)
    t, kind = ops.as_unmasked_tensor(stats, "stats")
    ops.check_shape(t, "stats", d)
    ops.check_values(t, "stats", indicator_ints=False)
    batch, shape = tuple(t.shape[: t.ndim - d]), tuple(t.shape[t.ndim - d :])
    window = _window_half_widths(shape, d)
    voxel_size = _check_voxel_size(voxel_size)
    edges = _bin_edges(bins, window, r_max)
    index, counts = _ring_index(window, tuple(edges.tolist()), t.device)
    values = ops.working_fields(t, kind)
    values = values.to(statistics_dtype(values.dtype)).reshape(-1, index.numel())
    sums = values.new_zeros(values.shape[0], len(counts) + 1).index_add(1, index, values)
    probability = sums[:, : len(counts)] / torch.from_numpy(counts).to(values)
    distance = torch.from_numpy((edges[1:] + edges[:-1]) / 2 * voxel_size)
    return RadialProfile(
        ops.to_kind(distance.to(values), kind),
        ops.to_kind(torch.from_numpy(edges * voxel_size).to(values), kind),
        ops.to_kind(probability.reshape(*batch, len(counts)), kind),
    )
