"""The convolution backend against the float64 reference: a randomized sweep over shapes, windows,
modes, masks, batch shapes, auto/cross and dtypes; the convention's worked examples; gradients of
first and second order; torch.compile and torch.func. Every test runs on the CPU and, with a GPU,
on CUDA."""

import numpy as np
import pytest
import torch

import spatialstats as ss
from spatialstats import _conv, _ref

from .conftest import concrete_cutoff, make_mask, requires_cuda

DEVICES = [pytest.param("cpu"), pytest.param("cuda", marks=requires_cuda)]
SHAPES = [(1,), (7,), (1, 1), (1, 7), (5, 5), (6, 4), (7, 11), (13, 8), (17, 3), (1, 1, 1), (3, 4, 5), (2, 5, 3)]
CUTOFFS = [0, 1, "size", "beyond", None, "per-axis"]
BATCHES = [(), (1,), (3, 2)]
MASKS = ["none", "all-true", "sparse", "all-false"]
# float32: direct sums of products in [0, 1], in the libraries' summation order.
TOLERANCES = {torch.float32: dict(rtol=1e-5, atol=1e-6), torch.float64: dict(rtol=1e-12, atol=1e-13)}


def random_fields(gen, *shape, dtype=torch.float64, device="cpu"):
    return torch.rand(*shape, dtype=torch.float64, generator=gen).to(device=device, dtype=dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("periodic", [True, False], ids=["periodic", "open"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_conv_matches_reference(shape, periodic, device):
    rng = np.random.default_rng(SHAPES.index(shape) * 2 + periodic)
    for cutoff in CUTOFFS:
        batch = BATCHES[rng.integers(len(BATCHES))]
        mask_kind = MASKS[rng.integers(len(MASKS))]
        x = torch.from_numpy(rng.random(batch + shape))
        y = torch.from_numpy(rng.random(batch + shape)) if rng.random() < 0.5 else None
        kwargs = dict(spatial_dims=len(shape), cutoff=concrete_cutoff(cutoff, shape), periodic=periodic)
        mask = make_mask(mask_kind, shape, rng)
        expected, expected_counts = ss.two_point(x, y, mask=mask, backend="reference", return_counts=True, **kwargs)
        for dtype, tolerance in TOLERANCES.items():
            stats, counts = ss.two_point(
                x.to(device, dtype),
                None if y is None else y.to(device, dtype),
                mask=None if mask is None else mask.to(device),
                backend="conv",
                return_counts=True,
                **kwargs,
            )
            assert stats.dtype == dtype and stats.shape == expected.shape and stats.device.type == device
            torch.testing.assert_close(stats.cpu(), expected.to(dtype), **tolerance)
            torch.testing.assert_close(counts.cpu().double(), expected_counts.double(), rtol=0, atol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_worked_examples(device):
    """CONVENTIONS.md examples 1 to 3: exact values at known displacements."""
    x = torch.zeros(1, 1, 7, dtype=torch.float64, device=device)
    y = torch.zeros_like(x)
    x[..., 0], y[..., 2] = 1, 1
    for periodic, value in ((True, 1 / 7), (False, 1 / 5)):
        expected = torch.zeros(1, 2, 7, dtype=torch.float64, device=device)
        expected[0, 0, 5] = expected[0, 1, 1] = value
        both = torch.cat([x, y], dim=1)
        torch.testing.assert_close(_conv.two_point(both, ((0, 1), (1, 0)), None, (3,), periodic), expected)
    x, y = torch.zeros(2, 5, 5, dtype=torch.float64, device=device).unbind(0)
    x[0, 0], y[1, 2] = 1, 1
    expected = torch.zeros(5, 5, dtype=torch.float64, device=device)
    expected[3, 4] = 1 / 25
    torch.testing.assert_close(ss.two_point(x, y, cutoff=2, backend="conv"), expected)
    ones = torch.ones(3, 4, 5, dtype=torch.float64, device=device)
    mask = torch.rand(3, 4, 5, generator=torch.Generator().manual_seed(1)).to(device) < 0.5
    stats, counts = ss.two_point(
        ones, spatial_dims=3, cutoff=2, periodic=False, mask=mask, backend="conv", return_counts=True
    )
    torch.testing.assert_close(stats, (counts > 0).double())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("periodic", [True, False])
def test_conv_batched_and_weighted_masks(periodic, device):
    """Masks with one entry per batch element, bool and [0, 1] weights, through the backend interface."""
    gen = torch.Generator().manual_seed(3)
    fields = random_fields(gen, 3, 2, 6, 9, device=device)
    pairs = ((0, 0), (1, 0), (0, 1))
    for mask in (torch.rand(3, 6, 9, generator=gen) < 0.5, torch.rand(3, 6, 9, generator=gen).double()):
        mask = mask.to(device)
        expected = _ref.two_point(fields.cpu(), pairs, mask.cpu(), (2, 5), periodic)
        torch.testing.assert_close(_conv.two_point(fields, pairs, mask, (2, 5), periodic).cpu(), expected)
        expected_counts = _ref.pair_counts(mask.cpu(), (6, 9), (2, 5), periodic)
        torch.testing.assert_close(_conv.pair_counts(mask, (6, 9), (2, 5), periodic).cpu(), expected_counts)


@pytest.mark.parametrize("device", DEVICES)
def test_conv_multiphase_pairs(device):
    labels = torch.from_numpy(np.random.default_rng(3).integers(0, 3, (2, 9, 7))).to(device)
    for periodic in (True, False):
        expected = ss.two_point_all(labels.cpu(), pairs="all", cutoff=4, periodic=periodic, backend="reference")
        result = ss.two_point_all(labels, pairs="all", cutoff=4, periodic=periodic, backend="conv")
        assert result.pairs == expected.pairs
        torch.testing.assert_close(result.stats.cpu(), expected.stats.float(), **TOLERANCES[torch.float32])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_compute_in_float32(dtype, device):
    x = torch.rand(2, 3, 20, 17).to(device, dtype).requires_grad_()
    stats = _conv.two_point(x, ((0, 0), (1, 2)), None, (3, 4), True)
    expected = _ref.two_point(x.detach().cpu().double(), ((0, 0), (1, 2)), None, (3, 4), True)
    assert stats.dtype == torch.float32
    torch.testing.assert_close(stats.cpu().double(), expected, rtol=1e-5, atol=1e-6)
    stats.sum().backward()
    assert x.grad.dtype == dtype and x.grad.shape == x.shape


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "shape, window", [((5, 6), (2, 4)), ((3, 4, 5), (1, 2, 3)), ((7,), (9,))], ids=["2d", "3d", "1d"]
)
@pytest.mark.parametrize("periodic", [True, False], ids=["periodic", "open"])
@pytest.mark.parametrize("with_mask", [False, True], ids=["", "mask"])
def test_conv_gradcheck(shape, window, periodic, with_mask, device):
    gen = torch.Generator().manual_seed(5)
    fields = random_fields(gen, 2, 2, *shape, device=device).requires_grad_()
    mask = (torch.rand(2, *shape, generator=gen) < 0.7).to(device) if with_mask else None
    pairs = ((0, 0), (0, 1), (1, 0))
    assert torch.autograd.gradcheck(
        lambda f: _conv.two_point(f, pairs, mask, window, periodic), (fields,), fast_mode=True
    )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("periodic", [True, False], ids=["periodic", "open"])
def test_conv_second_derivatives(periodic, device):
    gen = torch.Generator().manual_seed(8)
    fields = random_fields(gen, 1, 2, 5, 4, device=device).requires_grad_()
    mask = (torch.rand(1, 5, 4, generator=gen) < 0.8).to(device)
    pairs = ((0, 0), (1, 0))
    assert torch.autograd.gradgradcheck(
        lambda f: _conv.two_point(f, pairs, mask, (2, 5), periodic), (fields,), fast_mode=True
    )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("periodic", [True, False])
def test_conv_gradient_equals_reference_gradient(periodic, device):
    gen = torch.Generator().manual_seed(12)
    x = random_fields(gen, 3, 7, 9, 5)
    weight = random_fields(gen, 3, 7, 5, 5)
    mask = torch.rand(7, 9, 5, generator=gen) < 0.8
    grads = []
    for backend, on in (("reference", "cpu"), ("conv", device)):
        leaf = x.to(on).requires_grad_()
        stats = ss.two_point(
            leaf, spatial_dims=3, cutoff=(3, 2, 2), periodic=periodic, mask=mask.to(on), backend=backend
        )
        (stats * weight.to(on)).sum().backward()
        grads.append(leaf.grad.cpu())
    torch.testing.assert_close(grads[1], grads[0], **TOLERANCES[torch.float64])


@pytest.mark.parametrize("device", DEVICES)
def test_conv_compiles_and_transforms(device):
    """torch.compile(fullgraph=True), torch.func.grad and torch.func.vmap give the reference's values."""
    gen = torch.Generator().manual_seed(9)
    fields = random_fields(gen, 2, 2, 6, 5, device=device)
    mask = (torch.rand(1, 6, 5, generator=gen) < 0.7).to(device)
    pairs = ((0, 0), (0, 1))

    def statistics(f):
        return _conv.two_point(f, pairs, mask, (2, 3), False)

    leaf = fields.detach().cpu().clone().requires_grad_()
    expected = _ref.two_point(leaf, pairs, mask.cpu(), (2, 3), False)
    (expected_grad,) = torch.autograd.grad(expected.square().sum(), leaf)
    compiled = torch.compile(statistics, fullgraph=True)
    leaf = fields.clone().requires_grad_()
    stats = compiled(leaf)
    stats.square().sum().backward()
    torch.testing.assert_close(stats.cpu(), expected.detach())
    torch.testing.assert_close(leaf.grad.cpu(), expected_grad)
    grad = torch.func.grad(lambda f: statistics(f).square().sum())(fields)
    torch.testing.assert_close(grad.cpu(), expected_grad)
    batched = torch.func.vmap(statistics)(torch.stack([fields, fields.flip(-1)]))
    torch.testing.assert_close(batched[0].cpu(), expected.detach())
    torch.testing.assert_close(
        batched[1].cpu(), _ref.two_point(fields.flip(-1).cpu(), pairs, mask.cpu(), (2, 3), False)
    )


@pytest.mark.parametrize("device", DEVICES)
def test_conv_loss_trains(device):
    gen = torch.Generator().manual_seed(6)
    pred = random_fields(gen, 4, 2, 16, 16, dtype=torch.float32, device=device).softmax(1).requires_grad_()
    target = random_fields(gen, 4, 2, 16, 16, dtype=torch.float32, device=device).round()
    loss = ss.TwoPointLoss(cutoff=3, pairs="all", backend="conv")(pred, target)
    loss.backward()
    expected = ss.TwoPointLoss(cutoff=3, pairs="all", backend="reference")(pred.detach().double(), target.double())
    torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=1e-6)
    assert pred.grad is not None and bool(torch.isfinite(pred.grad).all())
