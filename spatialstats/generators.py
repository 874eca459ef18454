"""Synthetic microstructures with known statistics, for tests, examples and training data."""

import numpy as np


def check_volume_fractions(volume_fractions, correlation_length):
    """The volume fractions as a float64 array; ValueError unless they are positive with a sum below 1."""
    fractions = np.asarray(volume_fractions, dtype=np.float64)
    if fractions.ndim != 1 or fractions.size == 0 or np.any(fractions <= 0) or fractions.sum() >= 1:
        raise ValueError(
            f"volume_fractions must be one or more positive numbers summing to less than 1, got {volume_fractions!r}"
        )
    if not np.isfinite(correlation_length) or correlation_length <= 0:
        raise ValueError(f"correlation_length must be a positive number of pixels, got {correlation_length!r}")
    return fractions


def gaussian_microstructure(shape, *, volume_fractions=(0.5,), correlation_length=4.0, seed=0):
    """A periodic label image of len(volume_fractions) + 1 phases from thresholded Gaussian-filtered noise.

    White noise on a periodic grid of ``shape`` (1D, 2D or 3D) is smoothed by a Gaussian of standard
    deviation ``correlation_length`` pixels and cut at the quantiles that give phase p the fraction
    ``volume_fractions[p]`` (the last phase takes the rest), so the fractions hold to within one
    pixel. ``seed``: anything ``numpy.random.default_rng`` takes. Returns int64 labels 0..n-1 of ``shape``.

    >>> labels = gaussian_microstructure((64, 64), volume_fractions=(0.2, 0.3), seed=1)  # three phases
    """
    shape = tuple(int(n) for n in np.atleast_1d(shape))
    if not 1 <= len(shape) <= 3 or min(shape) < 1:
        raise ValueError(f"shape must be 1 to 3 positive sizes, got {shape}")
    fractions = check_volume_fractions(volume_fractions, correlation_length)
    noise = np.random.default_rng(seed).standard_normal(shape)
    frequencies = np.meshgrid(*(np.fft.fftfreq(n) for n in shape), indexing="ij")
    kernel = np.exp(-2.0 * (np.pi * correlation_length) ** 2 * sum(f**2 for f in frequencies))
    smooth = np.fft.ifftn(np.fft.fftn(noise) * kernel).real
    cuts = np.quantile(smooth, np.cumsum(fractions))
    return np.searchsorted(cuts, smooth, side="right").astype(np.int64)
