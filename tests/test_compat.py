"""spatialstats.compat.two_point_stats reproduces PyMKS 0.4.1's two_point_stats.

Checked three ways: PyMKS's own documented answers, a numpy transcription of PyMKS's algorithm
(FFT, fftshift, centre slice, normalisation by the padded mask's auto-correlation), and, when
PyMKS is installed, PyMKS itself on generated microstructures.
"""

import numpy as np
import pytest
import torch

from spatialstats.compat import two_point_stats
from spatialstats.generators import gaussian_microstructure


def pymks_algorithm(arr1, arr2, periodic, cutoff, mask):
    """PyMKS 0.4.1's steps in numpy: returns (stats, normalisation) both cropped to the window."""
    largest = int((np.min(arr1.shape[1:]) - 1) / 2)
    cutoff = largest if cutoff is None else min(cutoff, largest)
    axes = tuple(range(1, arr1.ndim))
    pad = [(0, 0)] + [(cutoff, cutoff)] * (arr1.ndim - 1)
    weights = np.ones_like(arr1, dtype=float) if mask is None else np.broadcast_to(mask, arr1.shape).astype(float)
    padder = (lambda a: a) if periodic else (lambda a: np.pad(a, pad))

    def correlate(a, b):
        spectrum = np.conj(np.fft.fftn(a, axes=axes)) * np.fft.fftn(b, axes=axes)
        return np.fft.fftshift(np.fft.ifftn(spectrum, axes=axes), axes=axes).real

    sums = correlate(padder(arr1 * weights), padder(arr2 * weights))
    norm = correlate(padder(weights), padder(weights))
    centre = tuple(slice(n // 2 - cutoff, n // 2 + cutoff + 1) for n in sums.shape[1:])
    return sums[(slice(None),) + centre], norm[(slice(None),) + centre]


def test_pymks_documented_answers():
    data = np.arange(10).reshape(2, 5)
    np.testing.assert_allclose(two_point_stats(data, data), [[3, 4, 6, 4, 3], [48, 49, 51, 49, 48]], rtol=1e-12)
    array = np.array([[[1, 0, 0], [0, 1, 1], [1, 1, 0]]])
    mask = np.array([[[1, 1, 1], [1, 1, 1], [1, 0, 0]]])
    norm_mask = np.array([[[2, 4, 3], [4, 7, 4], [3, 4, 2]]])
    expected = np.array([[[1, 0, 1], [1, 4, 1], [1, 0, 1]]]) / norm_mask
    np.testing.assert_allclose(two_point_stats(array, array, mask=mask, periodic_boundary=False), expected, rtol=1e-12)


@pytest.mark.parametrize("periodic", [True, False])
@pytest.mark.parametrize("cutoff", [None, 0, 2, 100])
@pytest.mark.parametrize("shape", [(3, 12), (2, 9, 9), (2, 8, 11), (2, 6, 5, 7)])
@pytest.mark.parametrize("mask_kind", ["none", "bool", "weights"])
def test_matches_pymks_algorithm(shape, cutoff, periodic, mask_kind):
    rng = np.random.default_rng(sum(shape))
    arr1 = rng.random(shape) > 0.5
    arr2 = rng.random(shape)
    mask = {"none": None, "bool": rng.random(shape) > 0.2, "weights": rng.random(shape)}[mask_kind]
    expected_sums, norm = pymks_algorithm(arr1, arr2, periodic, cutoff, mask)
    result = two_point_stats(arr1, arr2, periodic_boundary=periodic, cutoff=cutoff, mask=mask)
    assert result.shape == expected_sums.shape and result.dtype == np.float64
    has_pairs = norm > 1e-9
    np.testing.assert_allclose(result[has_pairs], expected_sums[has_pairs] / norm[has_pairs], rtol=1e-10, atol=1e-12)
    assert np.all(result[~has_pairs] == 0)


def test_auto_correlation_when_both_arguments_are_one_array():
    x = np.random.default_rng(0).random((2, 10, 10))
    np.testing.assert_allclose(two_point_stats(x, x), two_point_stats(x, x.copy()), rtol=1e-12)


def test_torch_in_torch_out():
    x = torch.rand(2, 9, 9)
    result = two_point_stats(x, x, cutoff=3)
    assert isinstance(result, torch.Tensor) and result.shape == (2, 7, 7)
    np.testing.assert_allclose(
        result.double().numpy(), two_point_stats(x.double().numpy(), x.double().numpy(), cutoff=3), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("periodic", [True, False])
@pytest.mark.parametrize("cutoff", [None, 10])
def test_equals_pymks_on_microstructures(periodic, cutoff):
    pymks = pytest.importorskip("pymks", reason="PyMKS (optional) is not installed")
    labels = np.stack([gaussian_microstructure((48, 40), correlation_length=3, seed=s) for s in range(3)])
    mask = np.random.default_rng(1).random(labels.shape) > 0.1
    for m in (None, mask):
        expected = np.asarray(
            pymks.two_point_stats(labels == 1, labels == 0, periodic_boundary=periodic, cutoff=cutoff, mask=m)
        )
        result = two_point_stats(labels == 1, labels == 0, periodic_boundary=periodic, cutoff=cutoff, mask=m)
        np.testing.assert_allclose(result, expected, rtol=1e-10, atol=1e-12)
