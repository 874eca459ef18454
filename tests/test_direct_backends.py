"""The direct backends, native (spatialstats._C) and conv (depthwise convolutions), against the
float64 reference: a randomized sweep over shapes, windows, modes, masks, batches, auto/cross and
dtypes; the convention's worked examples; masks per sample and as weights; several phases; half
precision; gradients of first and second order; the loss. Every test runs on the CPU and, with a
GPU, on CUDA. Backend-specific tests are in test_native.py; torch's transforms in test_transforms.py."""

import numpy as np
import pytest
import torch

import spatialstats as ss
from spatialstats import _backend, _ref

from .conftest import assert_matches_reference, concrete_half_widths, make_mask, requires_cuda


def _requires(backend, device):
    reason = _backend.unavailable_reason(backend, device) if device == "cpu" or torch.cuda.is_available() else None
    marks = [pytest.mark.skipif(reason is not None, reason=f"{backend}: {reason}")]
    return pytest.param(backend, device, marks=[requires_cuda, *marks] if device == "cuda" else marks)


BACKENDS = [_requires(backend, device) for backend in ("native", "conv") for device in ("cpu", "cuda")]
SHAPES = [(1,), (7,), (1, 1), (1, 7), (5, 5), (6, 4), (7, 11), (13, 8), (17, 3), (1, 1, 1), (3, 4, 5), (2, 5, 3)]
CUTOFFS = [0, 1, "size", "beyond", None, "per-axis"]
BATCHES = [1, 3]
MASKS = ["none", "all-true", "sparse", "all-false"]
# float32: direct sums of products in [0, 1] (native: float32 flushed to float64 on the CPU, float32
# tiles on CUDA; conv: the libraries' summation order).
TOLERANCES = {torch.float32: dict(rtol=1e-5, atol=1e-6), torch.float64: dict(rtol=1e-12, atol=1e-13)}
# float64 convolutions run on ATen's slow reference path on the CPU (oneDNN has no float64), 10x
# native's time per call here (a full gradcheck of the 3D case: 29 s against 2.3 s): conv's
# gradcheck compares a random projection of the Jacobian (fast mode), and
# test_gradient_equals_reference_gradient another one against the reference's.
FAST_GRADCHECK = ("conv",)


def random_fields(gen, *shape, dtype=torch.float64, device="cpu"):
    return torch.rand(*shape, dtype=torch.float64, generator=gen).to(device=device, dtype=dtype)


@pytest.mark.parametrize("backend, device", BACKENDS)
@pytest.mark.parametrize("periodic", [True, False], ids=["periodic", "open"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_matches_reference(shape, periodic, backend, device):
    rng = np.random.default_rng(SHAPES.index(shape) * 2 + periodic)
    for cutoff in CUTOFFS:
        batch = BATCHES[rng.integers(len(BATCHES))]
        mask = make_mask(MASKS[rng.integers(len(MASKS))], shape, rng)
        pairs = ((0, 0),) if rng.random() < 0.5 else ((0, 1), (1, 1))
        fields = torch.from_numpy(rng.random((batch, 2, *shape)))
        half_widths = concrete_half_widths(cutoff, shape, periodic)
        for dtype, tolerance in TOLERANCES.items():
            mask_batch = None if mask is None else mask[None]
            assert_matches_reference(
                backend, fields.to(dtype), pairs, half_widths, periodic, mask_batch, tolerance, device
            )


@pytest.mark.parametrize("backend, device", BACKENDS)
def test_worked_examples(backend, device):
    """CONVENTIONS.md examples 1 to 3: exact values at known displacements."""
    module = _backend.load(backend)
    both = torch.zeros(1, 2, 7, dtype=torch.float64, device=device)
    both[0, 0, 0] = both[0, 1, 2] = 1
    for periodic, value in ((True, 1 / 7), (False, 1 / 5)):
        expected = torch.zeros(1, 2, 7, dtype=torch.float64, device=device)
        expected[0, 0, 5] = expected[0, 1, 1] = value
        stats = module.two_point(both, pairs=((0, 1), (1, 0)), half_widths=(3,), periodic=periodic)
        torch.testing.assert_close(stats, expected)
    x, y = torch.zeros(2, 5, 5, dtype=torch.float64, device=device).unbind(0)
    x[0, 0], y[1, 2] = 1, 1
    expected = torch.zeros(5, 5, dtype=torch.float64, device=device)
    expected[3, 4] = 1 / 25
    torch.testing.assert_close(ss.two_point(x, y, cutoff=2, backend=backend), expected)
    ones = torch.ones(3, 4, 5, dtype=torch.float64, device=device)
    mask = (torch.rand(3, 4, 5, generator=torch.Generator().manual_seed(1)) < 0.5).to(device)
    options = dict(spatial_dims=3, cutoff=2, periodic=False, mask=mask, backend=backend)
    stats, counts = ss.two_point(ones, return_counts=True, **options)
    torch.testing.assert_close(stats, (counts > 0).double())


@pytest.mark.parametrize("backend, device", BACKENDS)
@pytest.mark.parametrize("periodic", [True, False])
def test_batched_and_weighted_masks(periodic, backend, device):
    """Masks with one entry per batch element, bool and [0, 1] weights, through the backend interface."""
    module = _backend.load(backend)
    gen = torch.Generator().manual_seed(3)
    fields = random_fields(gen, 3, 2, 6, 9, device=device)
    pairs = ((0, 0), (1, 0), (0, 1))
    for mask in (torch.rand(3, 6, 9, generator=gen) < 0.5, torch.rand(3, 6, 9, generator=gen).double()):
        mask = mask.to(device)
        options = dict(half_widths=(2, 5), periodic=periodic)
        expected = _ref.two_point(fields.cpu(), pairs=pairs, mask=mask.cpu(), **options)
        torch.testing.assert_close(module.two_point(fields, pairs=pairs, mask=mask, **options).cpu(), expected)
        expected_counts = _ref.pair_counts(mask.cpu(), spatial_shape=(6, 9), **options)
        torch.testing.assert_close(module.pair_counts(mask, spatial_shape=(6, 9), **options).cpu(), expected_counts)


@pytest.mark.parametrize("backend, device", BACKENDS)
def test_multiphase_pairs(backend, device):
    labels = torch.from_numpy(np.random.default_rng(3).integers(0, 3, (2, 9, 7))).to(device)
    for periodic in (True, False):
        expected = ss.two_point_all(labels.cpu(), pairs="all", cutoff=4, periodic=periodic, backend="reference")
        result = ss.two_point_all(labels, pairs="all", cutoff=4, periodic=periodic, backend=backend)
        assert result.pairs == expected.pairs
        torch.testing.assert_close(result.stats.cpu(), expected.stats.float(), **TOLERANCES[torch.float32])


@pytest.mark.parametrize("backend, device", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_compute_in_float32(dtype, backend, device):
    module = _backend.load(backend)
    x = torch.rand(2, 3, 40, 37).to(device, dtype).requires_grad_()
    options = dict(pairs=((0, 0), (1, 2)), half_widths=(3, 4), periodic=True)
    stats = module.two_point(x, **options)
    expected = _ref.two_point(x.detach().cpu().double(), **options)
    assert stats.dtype == torch.float32
    torch.testing.assert_close(stats.cpu().double(), expected, rtol=1e-5, atol=1e-6)
    stats.sum().backward()
    assert x.grad.dtype == dtype and x.grad.shape == x.shape


@pytest.mark.parametrize("backend, device", BACKENDS)
@pytest.mark.parametrize(
    "shape, window", [((5, 6), (2, 4)), ((3, 4, 5), (1, 2, 3)), ((7,), (9,))], ids=["2d", "3d", "1d"]
)
@pytest.mark.parametrize("periodic", [True, False], ids=["periodic", "open"])
@pytest.mark.parametrize("with_mask", [False, True], ids=["", "mask"])
def test_gradcheck(shape, window, periodic, with_mask, backend, device):
    module = _backend.load(backend)
    gen = torch.Generator().manual_seed(5)
    fields = random_fields(gen, 2, 2, *shape, device=device).requires_grad_()
    mask = (torch.rand(2, *shape, generator=gen) < 0.7).to(device) if with_mask else None
    pairs = ((0, 0), (0, 1), (1, 0))

    def statistics(f):
        return module.two_point(f, pairs=pairs, mask=mask, half_widths=window, periodic=periodic)

    assert torch.autograd.gradcheck(statistics, (fields,), fast_mode=backend in FAST_GRADCHECK)


@pytest.mark.parametrize("backend, device", BACKENDS)
@pytest.mark.parametrize("periodic", [True, False], ids=["periodic", "open"])
def test_second_derivatives(periodic, backend, device):
    module = _backend.load(backend)
    gen = torch.Generator().manual_seed(8)
    fields = random_fields(gen, 1, 2, 5, 4, device=device).requires_grad_()
    mask = (torch.rand(1, 5, 4, generator=gen) < 0.8).to(device)
    pairs = ((0, 0), (1, 0))
    assert torch.autograd.gradgradcheck(
        lambda f: module.two_point(f, pairs=pairs, mask=mask, half_widths=(2, 5), periodic=periodic),
        (fields,),
        fast_mode=backend in FAST_GRADCHECK,
    )


@pytest.mark.parametrize("backend, device", BACKENDS)
@pytest.mark.parametrize("periodic", [True, False])
def test_gradient_equals_reference_gradient(periodic, backend, device):
    gen = torch.Generator().manual_seed(12)
    x = random_fields(gen, 3, 7, 9, 5)
    weight = random_fields(gen, 3, 7, 5, 5)
    mask = torch.rand(7, 9, 5, generator=gen) < 0.8
    grads = []
    for name, on in (("reference", "cpu"), (backend, device)):
        leaf = x.to(on).requires_grad_()
        stats = ss.two_point(leaf, spatial_dims=3, cutoff=(3, 2, 2), periodic=periodic, mask=mask.to(on), backend=name)
        (stats * weight.to(on)).sum().backward()
        grads.append(leaf.grad.cpu())
    torch.testing.assert_close(grads[1], grads[0], **TOLERANCES[torch.float64])


@pytest.mark.parametrize("backend, device", BACKENDS)
def test_loss_trains(backend, device):
    gen = torch.Generator().manual_seed(6)
    pred = random_fields(gen, 4, 2, 16, 16, dtype=torch.float32, device=device).softmax(1).requires_grad_()
    target = random_fields(gen, 4, 2, 16, 16, dtype=torch.float32, device=device).round()
    loss = ss.TwoPointLoss(cutoff=3, pairs="all", backend=backend)(pred, target)
    loss.backward()
    expected = ss.TwoPointLoss(cutoff=3, pairs="all", backend="reference")(pred.detach().double(), target.double())
    torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=1e-6)
    assert pred.grad is not None and bool(torch.isfinite(pred.grad).all())
