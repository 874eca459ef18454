"""pytest-benchmark: the library's cost per call beside hand-written torch (and PyMKS's algorithm).

    python -m pytest bench/test_bench_overhead.py --benchmark-only --benchmark-columns=min,median,rounds

One thread (``torch.set_num_threads(1)``). Each group holds a hand-written baseline and the library
doing the same work; compare the minimum times within one run (the least disturbed by other jobs):

- "64x64 statistics": one 64 x 64 image, cutoff 8, periodic, forward + backward: a hand-written
  rfft2 version, ``two_point(backend="fft")`` and ``two_point`` with auto;
- "64x64 loss": ``TwoPointLoss(cutoff=8)`` and a hand-written loss (the same l2 distance);
- "256x256 numpy periodic full" and "256x256 numpy open cutoff 20": a numpy image, PyMKS 0.4.1's
  algorithm (the numpy transcription of ``tests/test_compat.py``; PyMKS itself when installed), the
  same statistic hand-written in torch, and ``two_point``;
- "paper loss": batch 32, 224 x 224, the full periodic window, summed squared error, forward +
  backward: a hand-written rfft loss, the authors' computation pattern (their soft indicator, complex128
  fft2/ifft2, roll, normalisation, MSELoss(reduction="sum")) and ``TwoPointLoss(distance="mse",
  reduction="sum")`` (the summed squared error divided by the window size, a constant).

On a machine shared with other jobs, time CPU rather than wall clock: ``--benchmark-timer
time.process_time``. With PyMKS importable (``pip install pymks==0.4.1``, in its own environment or
on PYTHONPATH) the numpy groups time PyMKS itself, else the transcription of its algorithm.
"""

import numpy as np
import pytest
import torch

import spatialstats as ss

K = 8
# Sub-millisecond calls: many rounds of a few calls, after a warm-up that includes auto's measurement.
SMALL = dict(rounds=300, iterations=3, warmup_rounds=10)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def image(shape, seed=0):
    return (np.random.default_rng(seed).random(shape) > 0.5).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Hand-written baselines
# ----------------------------------------------------------------------------------------------


def hand_statistics(x, index):
    """Periodic auto-correlation of (..., H, W), the window |r| <= k read with an index."""
    spectrum = torch.fft.rfft2(x)
    sums = torch.fft.irfft2(spectrum * spectrum.conj(), s=x.shape[-2:])
    return sums[..., index[:, None], index] / (x.shape[-1] * x.shape[-2])


def hand_loss(pred, target, index):
    difference = hand_statistics(pred, index) - hand_statistics(target, index)
    return difference.flatten(1).square().sum(1).sqrt().mean()


def hand_numpy_statistics_torch(x, cutoff, periodic):
    """The same statistic as ``two_point`` of a numpy image, hand-written in torch (float64)."""
    t = torch.from_numpy(x).double()
    n0, n1 = t.shape
    k0, k1 = ((n0 - 1) // 2, (n1 - 1) // 2) if cutoff is None else (cutoff, cutoff)
    grid = (n0, n1) if periodic else (n0 + k0, n1 + k1)
    spectrum = torch.fft.rfft2(t, s=grid)
    sums = torch.fft.irfft2(spectrum * spectrum.conj(), s=grid)
    rows, columns = torch.arange(-k0, k0 + 1) % grid[0], torch.arange(-k1, k1 + 1) % grid[1]
    sums = sums[rows[:, None], columns]
    if periodic:
        return (sums / (n0 * n1)).numpy()
    counts = torch.outer(n0 - torch.arange(-k0, k0 + 1).abs(), n1 - torch.arange(-k1, k1 + 1).abs())
    return (sums / counts).numpy()


def pymks_two_point(x, cutoff, periodic):
    """PyMKS 0.4.1's two_point_stats of one image with itself (its own code when installed)."""
    try:
        import pymks
    except ImportError:
        from tests.test_compat import pymks_algorithm

        sums, norm = pymks_algorithm(x[None], x[None], periodic, cutoff, None)
        return (sums / norm)[0]
    return np.asarray(pymks.two_point_stats(x[None], x[None], periodic_boundary=periodic, cutoff=cutoff))[0]


def hand_paper_loss(pred, target):
    """Summed squared error of the full periodic auto-correlations, hand-written with rfft."""

    def statistics(x):
        spectrum = torch.fft.rfft2(x)
        return torch.fft.irfft2(spectrum * spectrum.conj(), s=x.shape[-2:]) / (x.shape[-1] * x.shape[-2])

    return (statistics(pred) - statistics(target)).square().sum()


# The authors' normalisation of the statistics: the range of their dataset's hard statistics.
AUTHORS_MIN, AUTHORS_MAX = -1.877e-09, 0.040178571647572284


def authors_paper_loss(pred, target):
    """The authors' pattern (PAPER.md, section 2): the soft line indicator exp(-x^2 / (2 0.25^2)), complex128
    fft2, ifft2 of conj(M) M / S, its real part rolled to the centre, min/max-normalised, MSELoss(sum)."""

    def statistics(x):
        indicator = torch.exp(-(x**2) / (2 * 0.25**2))
        spectrum = torch.fft.fft2(indicator.to(torch.complex128))
        size = x.shape[-1] * x.shape[-2]
        correlation = torch.fft.ifft2(spectrum.conj() * spectrum / size).real
        correlation = torch.roll(correlation, (x.shape[-2] // 2, x.shape[-1] // 2), dims=(-2, -1))
        return (correlation - AUTHORS_MIN) / (AUTHORS_MAX - AUTHORS_MIN + 1e-6)

    return torch.nn.functional.mse_loss(statistics(pred), statistics(target), reduction="sum")


# ----------------------------------------------------------------------------------------------
# Benchmarks
# ----------------------------------------------------------------------------------------------


STATISTICS = {
    "hand-written": lambda x: hand_statistics(x, torch.arange(-K, K + 1) % 64),
    "two_point fft": lambda x: ss.two_point(x, cutoff=K, backend="fft"),
    "two_point auto": lambda x: ss.two_point(x, cutoff=K),
}


@pytest.mark.parametrize("method", STATISTICS)
def test_64x64_statistics(benchmark, method):
    benchmark.group = "64x64 statistics, cutoff 8, periodic, forward + backward"
    x = torch.from_numpy(image((64, 64)))
    weight = torch.rand(2 * K + 1, 2 * K + 1)
    function = STATISTICS[method]

    def step():
        leaf = x.detach().requires_grad_()
        (function(leaf) * weight).sum().backward()

    benchmark.pedantic(step, **SMALL)


@pytest.mark.parametrize("method", ["hand-written", "TwoPointLoss"])
def test_64x64_loss(benchmark, method):
    benchmark.group = "64x64 loss, cutoff 8, periodic, forward + backward"
    pred = torch.rand(1, 1, 64, 64)
    target = torch.from_numpy(image((1, 1, 64, 64)))
    index = torch.arange(-K, K + 1) % 64
    loss_fn = ss.TwoPointLoss(cutoff=K)
    function = (lambda p: hand_loss(p, target, index)) if method == "hand-written" else (lambda p: loss_fn(p, target))
    torch.testing.assert_close(loss_fn(pred, target), hand_loss(pred, target, index), rtol=1e-4, atol=1e-6)

    def step():
        function(pred.detach().requires_grad_()).backward()

    benchmark.pedantic(step, **SMALL)


NUMPY_CASES = {"256x256 numpy periodic full": (None, True), "256x256 numpy open cutoff 20": (20, False)}
NUMPY_METHODS = {
    "PyMKS algorithm": pymks_two_point,
    "hand-written torch": hand_numpy_statistics_torch,
    "two_point": lambda x, cutoff, periodic: ss.two_point(x, cutoff=cutoff, periodic=periodic),
}


@pytest.mark.parametrize("method", NUMPY_METHODS)
@pytest.mark.parametrize("case", NUMPY_CASES)
def test_256x256_numpy(benchmark, case, method):
    benchmark.group = case
    cutoff, periodic = NUMPY_CASES[case]
    x = image((256, 256)).astype(np.float64)
    expected = ss.two_point(x, cutoff=cutoff if cutoff is not None else 127, periodic=periodic)
    np.testing.assert_allclose(NUMPY_METHODS[method](x, cutoff, periodic), expected, atol=1e-12)
    benchmark(NUMPY_METHODS[method], x, cutoff, periodic)


PAPER_METHODS = {
    "hand-written rfft": hand_paper_loss,
    "authors' pattern": authors_paper_loss,
    "TwoPointLoss": ss.TwoPointLoss(distance="mse", reduction="sum"),
}


@pytest.mark.parametrize("method", PAPER_METHODS)
def test_paper_loss(benchmark, method):
    benchmark.group = "paper loss: batch 32, 224x224, full periodic window, summed squared error"
    generator = torch.Generator().manual_seed(0)
    pred = torch.rand(32, 1, 224, 224, generator=generator)
    target = (torch.rand(32, 1, 224, 224, generator=generator) > 0.5).float()
    function = PAPER_METHODS[method]

    def step():
        function(pred.detach().requires_grad_(), target).backward()

    benchmark.pedantic(step, rounds=5, warmup_rounds=1)
