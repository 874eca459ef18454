"""radial_profile: PoreSpy 3.2's radial two-point curve, from the library's statistics.

Checked against a numpy transcription of porespy.metrics.two_point_correlation (zero-padded FFT,
overlap normalisation, centred crop to |r_a| < n_a, ring means over [e_i, e_(i+1)) with PoreSpy's
integer-bins rule) and, when PoreSpy is installed, against PoreSpy itself.
"""

import numpy as np
import pytest
import torch

import spatialstats as ss
from spatialstats.generators import gaussian_microstructure

from .conftest import requires_cuda


def porespy_two_point_correlation(image, voxel_size=1, bins=100):
    """PoreSpy 3.2's steps in numpy: (distance, bin_edges, probability_scaled)."""
    shape = np.array(image.shape)
    if isinstance(bins, int):
        r_max = int(np.min(shape) // 2)
        bin_size = max(1, int(np.ceil(r_max / bins)))
        bins = np.arange(0, r_max + bin_size, bin_size)
    padded = tuple(2 * s for s in shape)
    field = np.asarray(image, dtype=np.float64)
    axes = tuple(range(field.ndim))
    autocorrelation = np.fft.irfftn(np.abs(np.fft.rfftn(field, s=padded, axes=axes)) ** 2, s=padded, axes=axes)
    overlap = np.fft.irfftn(np.abs(np.fft.rfftn(np.ones_like(field), s=padded, axes=axes)) ** 2, s=padded, axes=axes)
    s2 = np.fft.fftshift(autocorrelation / np.maximum(overlap, 1))
    centre = tuple(s // 2 for s in padded)
    s2 = s2[tuple(slice(c - (n - 1), c + n) for c, n in zip(centre, shape))]
    offsets = np.indices(s2.shape) - np.array(s2.shape).reshape(-1, *[1] * s2.ndim) // 2
    length = np.sqrt((offsets**2).sum(0))
    ring_means = np.zeros(len(bins) - 1)
    for i in range(len(bins) - 1):
        ring = (length >= bins[i]) & (length < bins[i + 1])
        if ring.any():
            ring_means[i] = s2[ring].mean()
    bins = np.asarray(bins)
    return (bins[1:] + bins[:-1]) / 2 * voxel_size, bins * voxel_size, ring_means


def microstructure(shape, seed):
    return gaussian_microstructure(shape, correlation_length=2.5, seed=seed) == 1


@pytest.mark.parametrize(
    "shape, bins, voxel_size",
    [
        ((40, 40), 100, 1.0),
        ((33, 47), 7, 0.5),
        ((30, 25), 1, 2.0),
        ((24, 31), [0, 0.5, 1.5, 2.5, 4.0, 7.25, 12.0], 1.0),
        ((12, 15, 10), 100, 1.0),
        ((11, 9, 14), 2, 0.25),
    ],
)
def test_matches_porespy_rule_from_non_periodic_statistics(shape, bins, voxel_size):
    image = microstructure(shape, seed=sum(shape))
    stats = ss.two_point(image, spatial_dims=len(shape), periodic=False)
    curve = ss.radial_profile(stats, spatial_dims=len(shape), bins=bins, voxel_size=voxel_size)
    distance, edges, probability = porespy_two_point_correlation(image, voxel_size, bins)
    np.testing.assert_array_equal(curve.distance, distance)
    np.testing.assert_array_equal(curve.bin_edges, edges)
    np.testing.assert_allclose(curve.probability, probability, rtol=1e-11, atol=1e-13)
    if curve.bin_edges[1] <= voxel_size:  # the first bin holds r = 0 alone: S2(0) is the volume fraction
        assert curve.probability[0] == pytest.approx(image.mean(), rel=1e-12)


@pytest.mark.parametrize("shape, bins", [((64, 48), 100), ((37, 41), 9), ((20, 18, 22), 100)])
def test_equals_porespy(shape, bins):
    porespy = pytest.importorskip("porespy", reason="PoreSpy (optional) is not installed")
    image = microstructure(shape, seed=3)
    expected = porespy.metrics.two_point_correlation(image, voxel_size=0.5, bins=bins)
    stats = ss.two_point(image, spatial_dims=len(shape), periodic=False)
    curve = ss.radial_profile(stats, spatial_dims=len(shape), bins=bins, voxel_size=0.5)
    np.testing.assert_allclose(curve.distance, expected.distance, rtol=1e-15)
    np.testing.assert_allclose(curve.bin_edges, expected.bin_edges, rtol=1e-15)
    np.testing.assert_allclose(curve.probability, expected.probability_scaled, rtol=1e-11, atol=1e-13)


def test_known_rings_of_a_3x3_window():
    stats = np.array([[1.0, 2, 3], [4, 5, 6], [7, 8, 10]])
    curve = ss.radial_profile(stats, bins=[0, 1, 1.2, 1.5])
    # centre 5; the 4 axis neighbours 2, 4, 6, 8 at length 1; the corners 1, 3, 7, 10 at sqrt(2)
    np.testing.assert_allclose(curve.probability, [5.0, 5.0, 21 / 4], rtol=1e-15)
    np.testing.assert_allclose(curve.distance, [0.5, 1.1, 1.35], rtol=1e-15)
    # one bin: r_max = (1 + 1) // 2 = 1, edges [0, 1): the centre only
    np.testing.assert_array_equal(ss.radial_profile(stats).probability, [5.0])
    np.testing.assert_allclose(ss.radial_profile(stats, bins=1, r_max=1.5).probability, [46 / 9], rtol=1e-15)


def test_r_max_and_batch_axes():
    images = np.stack([microstructure((32, 32), seed=s) for s in range(3)])
    stats = ss.two_point(images, cutoff=12)
    curve = ss.radial_profile(stats, bins=100, r_max=12)
    assert curve.probability.shape == (3, 12) and curve.bin_edges[-1] == 12
    for i in range(3):
        np.testing.assert_allclose(curve.probability[i], ss.radial_profile(stats[i], r_max=12).probability)
    np.testing.assert_allclose(curve.probability[:, 0], images.mean(axis=(1, 2)), rtol=1e-12)
    wide = ss.radial_profile(stats, bins=4, r_max=12)
    np.testing.assert_array_equal(wide.bin_edges, [0, 3, 6, 9, 12])


def test_isotropic_field_and_one_dimension():
    grid = np.indices((21, 21)) - 10
    length = np.sqrt((grid**2).sum(0))
    curve = ss.radial_profile(np.exp(-length / 3), bins=[0, 1, 2, 3, 4, 5])
    ring_means = [np.exp(-length[(length >= e) & (length < e + 1)] / 3).mean() for e in range(5)]
    np.testing.assert_allclose(curve.probability, ring_means, rtol=1e-14)
    line = ss.radial_profile(np.array([[0.0, 1, 2, 3, 4, 5, 6]]), spatial_dims=1, bins=3, r_max=3)
    np.testing.assert_allclose(line.probability, [[3.0, 3.0, 3.0]])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_torch_in_torch_out(dtype):
    stats = torch.rand(2, 3, 9, 9, dtype=torch.float64)
    curve = ss.radial_profile(stats.to(dtype), bins=3, r_max=4)
    out_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    assert all(isinstance(a, torch.Tensor) and a.dtype == out_dtype for a in curve)
    expected = ss.radial_profile(stats.numpy(), bins=3, r_max=4).probability
    tolerance = {torch.float16: 1e-3, torch.float32: 1e-6, torch.float64: 1e-14}[dtype]
    np.testing.assert_allclose(curve.probability.double().numpy(), expected, rtol=tolerance, atol=tolerance)


def test_gradients():
    stats = torch.rand(2, 7, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda s: ss.radial_profile(s, bins=[0, 1, 2.5, 3.5]).probability, (stats,))
    assert torch.autograd.gradgradcheck(lambda s: ss.radial_profile(s, bins=2).probability, (stats,))
    x = torch.rand(1, 10, 10, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: ss.radial_profile(ss.two_point(x, cutoff=3), bins=3).probability, (x,))


@requires_cuda
def test_cuda_matches_cpu():
    stats = torch.rand(4, 31, 31)
    curve = ss.radial_profile(stats.cuda(), bins=10)
    assert curve.probability.device.type == "cuda"
    torch.testing.assert_close(curve.probability.cpu(), ss.radial_profile(stats, bins=10).probability)


@pytest.mark.parametrize(
    "stats, kwargs, error, words",
    [
        (np.ones((4, 5)), {}, ValueError, "odd number of entries"),
        (np.ones(5), {}, ValueError, "2 spatial axes"),
        (np.full((5, 5), np.nan), {}, ValueError, "NaN"),
        (np.ones((1, 5)), {}, ValueError, "too small"),
        (np.ones((5, 5)), {"bins": 0}, ValueError, "bins must be >= 1"),
        (np.ones((5, 5)), {"bins": True}, TypeError, "bins must be an int"),
        (np.ones((5, 5)), {"bins": "ten"}, TypeError, "bins must be an int"),
        (np.ones((5, 5)), {"bins": [0, 1, 1]}, ValueError, "strictly increasing"),
        (np.ones((5, 5)), {"bins": [-1, 1]}, ValueError, "non-negative"),
        (np.ones((5, 5)), {"bins": [[0, 1]]}, ValueError, "1D array"),
        (np.ones((5, 5)), {"bins": [0, 0.5, 0.9]}, ValueError, "bin [0.5, 0.9) holds no displacement"),
        (np.ones((5, 5)), {"bins": [0, 1, 3, 5]}, ValueError, "bin [3, 5) holds no displacement"),
        (np.ones((5, 5)), {"bins": [0, 1], "r_max": 2}, ValueError, "r_max applies to an integer bins"),
        (np.ones((5, 5)), {"r_max": 0}, ValueError, "r_max must be a positive"),
        (np.ones((5, 5)), {"r_max": "2"}, TypeError, "r_max must be a positive number"),
        (np.ones((5, 5)), {"voxel_size": 0}, ValueError, "voxel_size"),
        (np.ones((5, 5)), {"voxel_size": None}, TypeError, "voxel_size"),
        (np.ones((5, 5)), {"spatial_dims": 4}, ValueError, "spatial_dims"),
    ],
)
def test_bad_input(stats, kwargs, error, words):
    with pytest.raises(error) as info:
        ss.radial_profile(stats, **kwargs)
    assert words in str(info.value)


def test_under_torch_compile():
    stats = torch.rand(2, 9, 9, dtype=torch.float64, requires_grad=True)
    compiled = torch.compile(lambda s: ss.radial_profile(s, bins=[0, 1, 2, 4]).probability, backend="eager")
    result = compiled(stats)
    torch.testing.assert_close(result, ss.radial_profile(stats, bins=[0, 1, 2, 4]).probability)
    result.sum().backward()
    # d(sum of ring means)/dS(r) = 1 / (entries in the ring of r): 1 at r = 0; 8 at 1 and sqrt 2; 36 in [2, 4)
    length = (torch.arange(-4, 5.0, dtype=torch.float64)[:, None] ** 2 + torch.arange(-4, 5.0) ** 2).sqrt()
    expected = torch.where(length < 1, 1.0, torch.where(length < 2, 1 / 8, torch.where(length < 4, 1 / 36, 0.0)))
    torch.testing.assert_close(stats.grad, expected.double().expand(2, 9, 9))
