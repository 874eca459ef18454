"""The FFT backend against the float64 reference: a sweep over shapes, windows, modes, masks,
batch shapes, auto/cross and dtypes, plus gradients."""

import itertools

import numpy as np
import pytest
import torch

import spatialstats as ss
from spatialstats._common import fast_fft_size

from .conftest import assert_matches_reference, concrete_half_widths, make_mask

SHAPES = [(1,), (7,), (1, 1), (1, 7), (5, 5), (6, 4), (7, 11), (13, 8), (1, 1, 1), (3, 4, 5), (2, 5, 3)]
CUTOFFS = [0, 2, "size", "beyond", None, "per-axis"]
BATCHES = [1, 3]
MASKS = ["none", "all-true", "sparse", "all-false"]
# float32: the error of one FFT round trip relative to the values (in [0, 1]); float64: 1e-10.
TOLERANCES = {torch.float32: dict(rtol=1e-4, atol=1e-5), torch.float64: dict(rtol=1e-10, atol=1e-12)}


@pytest.mark.parametrize("periodic", [True, False], ids=["periodic", "open"])
@pytest.mark.parametrize("cutoff", CUTOFFS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_fft_matches_reference(shape, cutoff, periodic):
    case = SHAPES.index(shape) * len(CUTOFFS) + CUTOFFS.index(cutoff)
    rng = np.random.default_rng(case)
    batch = BATCHES[case % len(BATCHES)]
    half_widths = concrete_half_widths(cutoff, shape, periodic)
    for mask_kind, dtype, pairs in itertools.product(MASKS, TOLERANCES, (((0, 0),), ((0, 1), (1, 1)))):
        fields = torch.from_numpy(rng.random((batch, 2, *shape))).to(dtype)
        mask = make_mask(mask_kind, shape, rng)
        mask = None if mask is None else mask[None]
        assert_matches_reference("fft", fields, pairs, half_widths, periodic, mask, TOLERANCES[dtype])


@pytest.mark.parametrize("periodic", [True, False])
def test_fft_batched_masks(periodic):
    rng = np.random.default_rng(7)
    fields = torch.from_numpy(rng.random((6, 1, 6, 5)))
    mask = torch.from_numpy(rng.random((6, 6, 5)) < 0.5)
    for dtype in TOLERANCES:
        assert_matches_reference("fft", fields.to(dtype), ((0, 0),), (2, 3), periodic, mask, TOLERANCES[dtype])


@pytest.mark.parametrize("periodic", [True, False])
def test_fft_multiphase_pairs(periodic):
    labels = torch.from_numpy(np.random.default_rng(3).integers(0, 3, (2, 9, 7)))
    expected = ss.two_point_all(labels, pairs="all", cutoff=4, periodic=periodic, backend="reference")
    result = ss.two_point_all(labels, pairs="all", cutoff=4, periodic=periodic, backend="fft")
    assert result.pairs == expected.pairs == ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))
    torch.testing.assert_close(result.stats, expected.stats.float(), **TOLERANCES[torch.float32])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_compute_in_float32(dtype):
    x = torch.rand(2, 16, 16).to(dtype)
    stats = ss.two_point(x, cutoff=3, backend="fft")
    expected = ss.two_point(x.double(), cutoff=3, backend="reference")
    assert stats.dtype == torch.float32
    torch.testing.assert_close(stats.double(), expected, rtol=1e-4, atol=1e-5)


def test_large_nonperiodic_counts_are_exact_integers():
    mask = torch.from_numpy(np.random.default_rng(5).random((300, 300)) < 0.5)
    _, counts = ss.two_point(
        torch.ones(300, 300), cutoff=299, periodic=False, mask=mask, return_counts=True, backend="fft"
    )
    assert torch.equal(counts, counts.round())
    assert counts[299, 299] == mask.sum()
    assert counts[0, 0] == (mask[0, 0] & mask[-1, -1])


def test_counts_without_mask_are_analytic():
    _, counts = ss.two_point(torch.ones(256, 256), cutoff=None, periodic=False, return_counts=True, backend="fft")
    r = torch.arange(-255, 256, dtype=torch.float32)
    torch.testing.assert_close(counts, torch.outer(256 - r.abs(), 256 - r.abs()), rtol=0, atol=0)


@pytest.mark.parametrize(
    "minimum, expected", [(1, 1), (11, 12), (13, 14), (17, 18), (127, 128), (211, 216), (1031, 1050)]
)
def test_fast_fft_size(minimum, expected):
    assert fast_fft_size(minimum) == expected


@pytest.mark.parametrize("periodic", [True, False])
@pytest.mark.parametrize("with_mask", [False, True])
def test_fft_gradcheck_x_and_y(periodic, with_mask):
    gen = torch.Generator().manual_seed(11)
    x = torch.rand(2, 5, 6, dtype=torch.float64, generator=gen, requires_grad=True)
    y = torch.rand(2, 5, 6, dtype=torch.float64, generator=gen, requires_grad=True)
    mask = torch.rand(5, 6, generator=gen) < 0.7 if with_mask else None

    def cross(a, b):
        return ss.two_point(a, b, cutoff=(2, 3), periodic=periodic, mask=mask, backend="fft")

    def auto(a):
        return ss.two_point(a, cutoff=(3, 2), periodic=periodic, mask=mask, backend="fft")

    assert torch.autograd.gradcheck(cross, (x, y))
    assert torch.autograd.gradcheck(auto, (x,))


@pytest.mark.parametrize("periodic", [True, False])
def test_fft_gradient_equals_reference_gradient(periodic):
    gen = torch.Generator().manual_seed(12)
    x = torch.rand(3, 7, 9, 5, dtype=torch.float64, generator=gen)
    weight = torch.rand(3, 7, 5, 5, dtype=torch.float64, generator=gen)
    mask = torch.rand(7, 9, 5, generator=gen) < 0.8
    grads = []
    for backend in ("reference", "fft"):
        leaf = x.clone().requires_grad_()
        stats = ss.two_point(leaf, spatial_dims=3, cutoff=(3, 2, 2), periodic=periodic, mask=mask, backend=backend)
        (stats * weight).sum().backward()
        grads.append(leaf.grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-10, atol=1e-12)


def test_fft_second_derivatives():
    x = torch.rand(1, 5, 4, dtype=torch.float64, requires_grad=True)
    y = torch.rand(1, 5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(
        lambda a, b: ss.two_point(a, b, cutoff=(2, 3), periodic=False, backend="fft"), (x, y)
    )
    assert torch.autograd.gradgradcheck(lambda a: ss.two_point(a, cutoff=(3, 1), backend="fft"), (x,))
