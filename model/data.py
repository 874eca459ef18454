"""Synthetic microstructures: seeded generators of phase maps."""

import numpy as np


def gaussian_microstructure(shape, *, volume_fractions=(0.5,), correlation_length=4.0, seed=0):
    """A label image of len(volume_fractions) + 1 phases from thresholded Gaussian-filtered noise.

    White noise on a periodic grid of ``shape`` (2D or 3D) is smoothed by a Gaussian of standard
    deviation ``correlation_length`` pixels and cut at the quantiles that give phase p the
    fraction ``volume_fractions[p]`` (the last phase takes the rest). Returns int64 labels 0..n-1.
    """
    fractions = np.asarray(volume_fractions, dtype=np.float64)
    if fractions.ndim != 1 or np.any(fractions <= 0) or fractions.sum() >= 1:
        raise ValueError(f"volume_fractions must be positive and sum to less than 1, got {volume_fractions!r}")
    if correlation_length <= 0:
        raise ValueError(f"correlation_length must be positive, got {correlation_length!r}")
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(shape)
    frequencies = np.meshgrid(*(np.fft.fftfreq(n) for n in shape), indexing="ij")
    squared = sum(f**2 for f in frequencies)
    kernel = np.exp(-2.0 * (np.pi * correlation_length) ** 2 * squared)
    smooth = np.fft.ifftn(np.fft.fftn(noise) * kernel).real
    cuts = np.quantile(smooth, np.cumsum(fractions))
    return np.searchsorted(cuts, smooth, side="right").astype(np.int64)
