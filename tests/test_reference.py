"""The float64 reference against the worked examples of the convention, closed forms and a
pair-by-pair brute force (independent of ``_ref.py``'s roll/slice formulation)."""

import itertools

import numpy as np
import pytest
import torch

import spatialstats as ss
from spatialstats import _ref


def brute_force(x, y, mask, window, periodic):
    """S(r) and N(r) by visiting every pair (s, s + r) one at a time: x, y, mask (*spatial) numpy."""
    shape = x.shape
    mask = np.ones(shape, bool) if mask is None else mask
    stats = np.zeros([2 * k + 1 for k in window])
    counts = np.zeros_like(stats)
    for r in itertools.product(*(range(-k, k + 1) for k in window)):
        total = pairs = 0.0
        for s in itertools.product(*(range(n) for n in shape)):
            t = tuple(si + ri for si, ri in zip(s, r))
            if periodic:
                t = tuple(ti % n for ti, n in zip(t, shape))
            elif any(ti < 0 or ti >= n for ti, n in zip(t, shape)):
                continue
            if mask[s] and mask[t]:
                total += x[s] * y[t]
                pairs += 1
        index = tuple(k + ri for k, ri in zip(window, r))
        counts[index] = pairs
        stats[index] = total / pairs if pairs else 0.0
    return stats, counts


def reference(x, y=None, **kwargs):
    return ss.two_point(x, y, backend="reference", **kwargs)


# ---------------------------------------------------------------- worked examples of CONVENTIONS.md


@pytest.mark.parametrize("spatial_dims", [1, 2])
def test_example_1_one_dimensional(spatial_dims):
    x = np.zeros(7)
    y = np.zeros(7)
    x[0], y[2] = 1, 1
    if spatial_dims == 2:
        x, y, cutoff = x[None], y[None], (0, 3)
    else:
        cutoff = 3
    expected_periodic = np.zeros(7)
    expected_periodic[5] = 1 / 7
    expected_open = np.zeros(7)
    expected_open[5] = 1 / 5
    mirrored = np.zeros(7)
    mirrored[1] = 1 / 7
    kw = dict(spatial_dims=spatial_dims, cutoff=cutoff)
    np.testing.assert_allclose(reference(x, y, **kw).reshape(7), expected_periodic, atol=1e-15)
    np.testing.assert_allclose(reference(x, y, periodic=False, **kw).reshape(7), expected_open, atol=1e-15)
    np.testing.assert_allclose(reference(y, x, **kw).reshape(7), mirrored, atol=1e-15)


def test_example_2_five_by_five():
    x = np.zeros((5, 5))
    y = np.zeros((5, 5))
    x[0, 0], y[1, 2] = 1, 1
    expected = np.zeros((5, 5))
    expected[3, 4] = 1 / 25
    np.testing.assert_allclose(reference(x, y, cutoff=2), expected, atol=1e-15)


@pytest.mark.parametrize("periodic", [True, False])
@pytest.mark.parametrize("shape", [(4, 6), (3, 2, 5)])
def test_example_3_all_ones(periodic, shape):
    ones = np.ones(shape)
    mask = np.random.default_rng(0).random(shape) < 0.7
    cutoff = tuple(n - 1 for n in shape)  # the largest window two_point accepts
    for m in (None, mask):
        stats, counts = reference(
            ones, spatial_dims=len(shape), cutoff=cutoff, periodic=periodic, mask=m, return_counts=True
        )
        np.testing.assert_allclose(stats[counts > 0], 1.0, rtol=1e-15)
        assert np.all(stats[counts == 0] == 0)


@pytest.mark.parametrize("n", [9, 10])
def test_example_4_volume_fraction_and_mean(n):
    x = np.random.default_rng(n).random((n, n)) < 0.3
    f = x.mean()
    stats = reference(x, cutoff=n // 2)
    assert stats[n // 2, n // 2] == pytest.approx(f, rel=1e-14)
    distinct = stats[:n, :n]  # displacements -k..k-1 (odd n: also k), each class mod n once
    assert distinct.mean() == pytest.approx(f**2, rel=1e-12)


def test_example_5_nonperiodic_counts():
    _, counts = reference(np.ones((256, 256)), cutoff=3, periodic=False, return_counts=True)
    r = np.arange(-3, 4)
    np.testing.assert_array_equal(counts, np.outer(256 - np.abs(r), 256 - np.abs(r)))


# ---------------------------------------------------------------- closed forms


def test_all_zeros_gives_zero():
    for periodic in (True, False):
        assert np.all(reference(np.zeros((6, 5)), cutoff=4, periodic=periodic) == 0)


@pytest.mark.parametrize("periodic", [True, False])
def test_single_pixel(periodic):
    x = np.zeros((6, 7))
    x[2, 3] = 1
    stats = reference(x, cutoff=2, periodic=periodic)
    expected = np.zeros((5, 5))
    expected[2, 2] = 1 / 42
    np.testing.assert_allclose(stats, expected, atol=1e-16)


def test_checkerboard():
    x = np.indices((8, 8)).sum(0) % 2
    stats = reference(x, cutoff=3)
    r0, r1 = np.meshgrid(np.arange(-3, 4), np.arange(-3, 4), indexing="ij")
    np.testing.assert_allclose(stats, np.where((r0 + r1) % 2 == 0, 0.5, 0.0), atol=1e-15)


def test_periodic_line():
    x = np.zeros((8, 8))
    x[3, :] = 1
    stats = reference(x, cutoff=3)
    expected = np.zeros((7, 7))
    expected[3, :] = 1 / 8
    np.testing.assert_allclose(stats, expected, atol=1e-16)


@pytest.mark.parametrize("periodic", [True, False])
def test_swapping_mirrors_through_centre(periodic):
    rng = np.random.default_rng(1)
    x, y = rng.random((2, 3, 6, 5))
    mask = rng.random((6, 5)) < 0.8
    forward = reference(x, y, cutoff=3, periodic=periodic, mask=mask)
    backward = reference(y, x, cutoff=3, periodic=periodic, mask=mask)
    np.testing.assert_allclose(forward, backward[..., ::-1, ::-1], rtol=1e-13)
    auto = reference(x, cutoff=3, periodic=periodic, mask=mask)
    np.testing.assert_allclose(auto, auto[..., ::-1, ::-1], rtol=1e-13)


@pytest.mark.parametrize("periodic", [True, False])
def test_centre_is_volume_fraction(periodic):
    x = np.random.default_rng(2).random((4, 9, 7)) < 0.4
    stats = reference(x, cutoff=2, periodic=periodic)
    np.testing.assert_allclose(stats[:, 2, 2], x.mean(axis=(1, 2)), rtol=1e-14)


# ---------------------------------------------------------------- pair by pair


@pytest.mark.parametrize("periodic", [True, False])
@pytest.mark.parametrize(
    "shape, window, with_mask",
    [((5,), (6,), True), ((4, 5), (2, 3), False), ((4, 5), (5, 1), True), ((3, 4, 2), (1, 2, 3), True)],
)
def test_reference_equals_brute_force(periodic, shape, window, with_mask):
    """Through the backend contract, which takes any window (public functions stop at n - 1)."""
    rng = np.random.default_rng(len(shape) + sum(window))
    x, y = rng.random((2, *shape))
    mask = rng.random(shape) < 0.6 if with_mask else None
    expected, expected_counts = brute_force(x, y, mask, window, periodic)
    fields = torch.from_numpy(np.stack([x, y]))[None]
    m = None if mask is None else torch.from_numpy(mask)[None]
    stats = _ref.two_point(fields, pairs=((0, 1),), half_widths=window, periodic=periodic, mask=m)
    counts = _ref.pair_counts(m, spatial_shape=shape, half_widths=window, periodic=periodic)
    np.testing.assert_allclose(stats[0, 0].numpy(), expected, rtol=1e-13, atol=1e-15)
    np.testing.assert_array_equal(counts[0].numpy(), expected_counts)


def test_reference_is_float64_and_differentiable():
    x = torch.rand(2, 1, 5, 5, dtype=torch.float64, requires_grad=True)
    stats = _ref.two_point(x, pairs=((0, 0),), half_widths=(2, 2), periodic=False)
    assert stats.dtype == torch.float64 and stats.shape == (2, 1, 5, 5)
    assert torch.autograd.gradcheck(
        lambda a: _ref.two_point(a, pairs=((0, 0),), half_widths=(1, 2), periodic=True), (x,)
    )
