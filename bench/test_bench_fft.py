"""pytest-benchmark: the fft backend of ``two_point`` beside a plain numpy FFT of the same statistic.

python -m pytest bench/test_bench_fft.py --benchmark-only [--benchmark-columns=median,iqr]
"""

import numpy as np
import pytest
import torch

import spatialstats as ss
from spatialstats._common import fast_fft_size

CASES = {
    "256x256-periodic-full": ((256, 256), None, True),
    "256x256-open-cutoff20": ((256, 256), 20, False),
    "64^3-periodic-full": ((64, 64, 64), None, True),
    "64^3-open-cutoff8": ((64, 64, 64), 8, False),
}


def numpy_two_point(x, cutoff, periodic):
    """The same S2 with numpy.fft: auto-correlation by rfftn, counts analytic, centred crop."""
    shape = x.shape
    window = (
        [(n - 1) // 2 if periodic else n - 1 for n in shape] if cutoff is None else [min(cutoff, n - 1) for n in shape]
    )
    grid = shape if periodic else [fast_fft_size(n + k) for n, k in zip(shape, window)]
    axes = tuple(range(x.ndim))
    spectrum = np.fft.rfftn(x, s=grid, axes=axes)
    sums = np.fft.irfftn(spectrum * spectrum.conj(), s=grid, axes=axes)
    index = np.ix_(*[np.arange(-k, k + 1) % g for k, g in zip(window, grid)])
    counts = np.ones(1)
    for n, k in zip(shape, window):
        per_axis = np.full(2 * k + 1, float(n)) if periodic else n - np.abs(np.arange(-k, k + 1))
        counts = np.multiply.outer(counts, per_axis)
    return sums[index] / counts[0]


def image(shape):
    return (np.random.default_rng(0).random(shape) > 0.5).astype(np.float64)


@pytest.mark.parametrize("case", CASES)
def test_plain_numpy_fft(benchmark, case):
    shape, cutoff, periodic = CASES[case]
    x = image(shape)
    benchmark.group = case
    result = benchmark(numpy_two_point, x, cutoff, periodic)
    np.testing.assert_allclose(
        result, ss.two_point(x, spatial_dims=len(shape), cutoff=cutoff, periodic=periodic), atol=1e-12
    )


@pytest.mark.parametrize("case", CASES)
def test_fft_backend_numpy_input(benchmark, case):
    shape, cutoff, periodic = CASES[case]
    x = image(shape)
    benchmark.group = case
    benchmark(ss.two_point, x, spatial_dims=len(shape), cutoff=cutoff, periodic=periodic, backend="fft")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("case", CASES)
def test_fft_backend_torch_input(benchmark, case, dtype):
    shape, cutoff, periodic = CASES[case]
    x = torch.from_numpy(image(shape)).to(dtype)
    benchmark.group = case
    benchmark(ss.two_point, x, spatial_dims=len(shape), cutoff=cutoff, periodic=periodic, backend="fft")
