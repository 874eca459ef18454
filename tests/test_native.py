"""The native backend (spatialstats._C) against the float64 reference: a randomized sweep over
shapes, windows, modes, masks, batch shapes, auto/cross and dtypes; gradients; torch.library.opcheck
on every op; bad input raising from C++; a large-index case. Every test runs on the CPU and, with a
GPU, on CUDA."""

import numpy as np
import pytest
import torch

import spatialstats as ss
from spatialstats import _fft, _native, _ref, ops

from .conftest import concrete_cutoff, make_mask, requires_cuda

pytestmark = pytest.mark.skipif(
    _native.unavailable_reason(torch.device("cpu")) is not None,
    reason=f"native backend unavailable: {_native.unavailable_reason(torch.device('cpu'))}",
)

NATIVE_CUDA_MISSING = _native.unavailable_reason(torch.device("cuda"))
requires_native_cuda = pytest.mark.skipif(NATIVE_CUDA_MISSING is not None, reason=f"{NATIVE_CUDA_MISSING}")
DEVICES = [pytest.param("cpu"), pytest.param("cuda", marks=[requires_cuda, requires_native_cuda])]
SHAPES = [(1,), (7,), (1, 1), (1, 7), (5, 5), (6, 4), (7, 11), (13, 8), (17, 3), (1, 1, 1), (3, 4, 5), (2, 5, 3)]
CUTOFFS = [0, 1, "size", "beyond", None, "per-axis"]
BATCHES = [(), (1,), (3, 2)]
MASKS = ["none", "all-true", "sparse", "all-false"]
# float32: direct sums in float32 flushed to float64 (CPU) or float32 tiles (CUDA), values in [0, 1].
TOLERANCES = {torch.float32: dict(rtol=1e-5, atol=1e-6), torch.float64: dict(rtol=1e-12, atol=1e-13)}
OPS = torch.ops.spatialstats


def random_fields(gen, *shape, dtype=torch.float64, device="cpu"):
    return torch.rand(*shape, dtype=torch.float64, generator=gen).to(device=device, dtype=dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("periodic", [True, False], ids=["periodic", "open"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_native_matches_reference(shape, periodic, device):
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
                backend="native",
                return_counts=True,
                **kwargs,
            )
            assert stats.dtype == dtype and stats.shape == expected.shape and stats.device.type == device
            torch.testing.assert_close(stats.cpu(), expected.to(dtype), **tolerance)
            torch.testing.assert_close(counts.cpu().double(), expected_counts.double(), rtol=0, atol=0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("periodic", [True, False])
def test_native_batched_and_weighted_masks(periodic, device):
    """Masks with one entry per batch element, bool and [0, 1] weights, through the backend interface."""
    gen = torch.Generator().manual_seed(3)
    fields = random_fields(gen, 3, 2, 6, 9, device=device)
    pairs = ((0, 0), (1, 0), (0, 1))
    for mask in (torch.rand(3, 6, 9, generator=gen) < 0.5, torch.rand(3, 6, 9, generator=gen).double()):
        mask = mask.to(device)
        expected = _ref.two_point(fields.cpu(), pairs, mask.cpu(), (2, 5), periodic)
        torch.testing.assert_close(_native.two_point(fields, pairs, mask, (2, 5), periodic).cpu(), expected)
        expected_counts = _ref.pair_counts(mask.cpu(), (6, 9), (2, 5), periodic)
        torch.testing.assert_close(_native.pair_counts(mask, (6, 9), (2, 5), periodic).cpu(), expected_counts)


@pytest.mark.parametrize("device", DEVICES)
def test_native_multiphase_pairs(device):
    labels = torch.from_numpy(np.random.default_rng(3).integers(0, 3, (2, 9, 7))).to(device)
    for periodic in (True, False):
        expected = ss.two_point_all(labels.cpu(), pairs="all", cutoff=4, periodic=periodic, backend="reference")
        result = ss.two_point_all(labels, pairs="all", cutoff=4, periodic=periodic, backend="native")
        assert result.pairs == expected.pairs
        torch.testing.assert_close(result.stats.cpu(), expected.stats.float(), **TOLERANCES[torch.float32])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_compute_in_float32(dtype, device):
    x = torch.rand(2, 3, 40, 37).to(device, dtype).requires_grad_()
    stats = _native.two_point(x, ((0, 0), (1, 2)), None, (3, 4), True)
    expected = _ref.two_point(x.detach().cpu().double(), ((0, 0), (1, 2)), None, (3, 4), True)
    assert stats.dtype == torch.float32
    torch.testing.assert_close(stats.cpu().double(), expected, rtol=1e-5, atol=1e-6)
    stats.sum().backward()
    assert x.grad.dtype == dtype and x.grad.shape == x.shape


@pytest.mark.parametrize("isa", ["avx512", "avx2", "baseline"])
def test_cpu_instruction_sets_agree(isa, monkeypatch):
    """Each vector width (capped by SPATIALSTATS_CPU_ISA) gives the reference's numbers."""
    monkeypatch.setenv("SPATIALSTATS_CPU_ISA", isa)
    gen = torch.Generator().manual_seed(4)
    for dtype in TOLERANCES:
        # 37 columns: full vectors and a tail for every width; 3D with a window wider than 8.
        fields = random_fields(gen, 2, 2, 3, 11, 37, dtype=dtype).requires_grad_()
        weights = random_fields(gen, 2, 2, 3, 7, 21, dtype=dtype)
        for periodic in (True, False):
            args = (((0, 1), (1, 1)), None, (1, 3, 10), periodic)
            stats = _native.two_point(fields, *args)
            (grad,) = torch.autograd.grad(stats, fields, weights)
            reference = fields.detach().double().requires_grad_()
            expected = _ref.two_point(reference, *args)
            (expected_grad,) = torch.autograd.grad(expected, reference, weights.double())
            torch.testing.assert_close(stats, expected.to(dtype), **TOLERANCES[dtype])
            torch.testing.assert_close(grad, expected_grad.to(dtype), **TOLERANCES[dtype])


def test_cpu_instruction_set_must_be_known(monkeypatch):
    monkeypatch.setenv("SPATIALSTATS_CPU_ISA", "sse9")
    with pytest.raises(RuntimeError, match="SPATIALSTATS_CPU_ISA must be avx512, avx2 or baseline"):
        _native.two_point(torch.rand(1, 1, 4, 4), ((0, 0),), None, (1, 1), True)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "shape, window", [((5, 6), (2, 4)), ((3, 4, 5), (1, 2, 3)), ((7,), (9,))], ids=["2d", "3d", "1d"]
)
@pytest.mark.parametrize("periodic", [True, False], ids=["periodic", "open"])
@pytest.mark.parametrize("with_mask", [False, True], ids=["", "mask"])
def test_native_gradcheck(shape, window, periodic, with_mask, device):
    gen = torch.Generator().manual_seed(5)
    fields = random_fields(gen, 2, 2, *shape, device=device).requires_grad_()
    mask = (torch.rand(2, *shape, generator=gen) < 0.7).to(device) if with_mask else None
    pairs = ((0, 0), (0, 1), (1, 0))

    def statistics(f):
        return _native.two_point(f, pairs, mask, window, periodic)

    assert torch.autograd.gradcheck(statistics, (fields,))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("periodic", [True, False], ids=["periodic", "open"])
def test_native_second_derivatives(periodic, device):
    gen = torch.Generator().manual_seed(8)
    fields = random_fields(gen, 1, 2, 5, 4, device=device).requires_grad_()
    mask = (torch.rand(1, 5, 4, generator=gen) < 0.8).to(device)
    pairs = ((0, 0), (1, 0))
    assert torch.autograd.gradgradcheck(lambda f: _native.two_point(f, pairs, mask, (2, 5), periodic), (fields,))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("periodic", [True, False])
def test_native_gradient_equals_reference_gradient(periodic, device):
    gen = torch.Generator().manual_seed(12)
    x = random_fields(gen, 3, 7, 9, 5)
    weight = random_fields(gen, 3, 7, 5, 5)
    mask = torch.rand(7, 9, 5, generator=gen) < 0.8
    grads = []
    for backend, on in (("reference", "cpu"), ("native", device)):
        leaf = x.to(on).requires_grad_()
        stats = ss.two_point(
            leaf, spatial_dims=3, cutoff=(3, 2, 2), periodic=periodic, mask=mask.to(on), backend=backend
        )
        (stats * weight.to(on)).sum().backward()
        grads.append(leaf.grad.cpu())
    torch.testing.assert_close(grads[1], grads[0], **TOLERANCES[torch.float64])


@pytest.mark.parametrize("device", DEVICES)
def test_native_loss_trains(device):
    gen = torch.Generator().manual_seed(6)
    pred = random_fields(gen, 4, 2, 16, 16, dtype=torch.float32, device=device).softmax(1).requires_grad_()
    target = random_fields(gen, 4, 2, 16, 16, dtype=torch.float32, device=device).round()
    loss_fn = ss.TwoPointLoss(cutoff=3, pairs="all", backend="native")
    loss = loss_fn(pred, target)
    loss.backward()
    expected = ss.TwoPointLoss(cutoff=3, pairs="all", backend="reference")(pred.detach().double(), target.double())
    torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=1e-6)
    assert pred.grad is not None and bool(torch.isfinite(pred.grad).all())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("periodic", [True, False], ids=["periodic", "open"])
def test_native_windows_of_several_chunks(periodic, device):
    """Windows of several CUDA forward chunks (32 displacements a side) on both sides of ry = 0 and
    along rx, auto and cross pairs, forward and gradient, against the fft backend in float64."""
    gen = torch.Generator().manual_seed(13)
    fields = random_fields(gen, 1, 2, 90, 84)
    weights = random_fields(gen, 1, 3, 81, 73) if periodic else random_fields(gen, 1, 3, 141, 73)
    window = (40, 36) if periodic else (70, 36)
    pairs = ((0, 0), (0, 1), (1, 1))
    results = []
    for module, on in ((_fft, "cpu"), (_native, device)):
        leaf = fields.to(on).requires_grad_()
        stats = module.two_point(leaf, pairs, None, window, periodic)
        (grad,) = torch.autograd.grad(stats, leaf, weights.to(on))
        results.append((stats.cpu(), grad.cpu()))
    torch.testing.assert_close(results[1], results[0], rtol=1e-10, atol=1e-12)


def opcheck_arguments(device):
    """(op, args) for every op: with and without mask and counts, auto and cross, 1D to 3D."""
    gen = torch.Generator().manual_seed(7)
    cases = []
    for shape, window in (((9,), [3]), ((6, 5), [2, 1]), ((3, 4, 5), [1, 2, 7])):
        mask = (torch.rand(2, *shape, generator=gen) < 0.6).to(device)
        counts = OPS.pair_counts(mask, window, False)
        fields = random_fields(gen, 2, 2, *shape, device=device).requires_grad_()
        stats_shape = (2, 2, *(2 * k + 1 for k in window))
        grad = random_fields(gen, *stats_shape, device=device)
        cases += [
            (OPS.pair_counts, (mask, window, True)),
            (OPS.two_point, (fields, None, None, [0, 0, 0, 1], window, True)),
            (OPS.two_point, (fields, mask, counts, [1, 0, 1, 1], window, False)),
            (OPS.two_point_backward, (grad, fields.detach(), None, None, [0, 0, 0, 1], window, True)),
            (OPS.two_point_backward, (grad.requires_grad_(), fields, mask, counts, [1, 0, 1, 1], window, False)),
        ]
    return cases


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_every_op(device):
    cases = opcheck_arguments(device)
    assert {op for op, _ in cases} == {OPS.pair_counts, OPS.two_point, OPS.two_point_backward}
    for op, args in cases:
        torch.library.opcheck(op, args)


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda f: OPS.two_point(f, None, None, [0, 2], [1, 1], True),
            "pairs names channel 2 but fields has 2 channels",
        ),
        (lambda f: OPS.two_point(f, None, None, [0, 1, 0], [1, 1], True), "pairs must be a flat list"),
        (
            lambda f: OPS.two_point(f, None, None, [0, 0], [1], True),
            r"window must have one half-width per spatial axis \(2\)",
        ),
        (lambda f: OPS.two_point(f, None, None, [0, 0], [1, -1], True), "window half-widths must be >= 0"),
        (lambda f: OPS.two_point(f[0, 0], None, None, [0, 0], [1, 1], True), "fields must have shape"),
        (lambda f: OPS.two_point(f.int(), None, None, [0, 0], [1, 1], True), "fields must be float16, bfloat16"),
        (
            lambda f: OPS.two_point(f, torch.ones(3, 5, 6, dtype=torch.bool), None, [0, 0], [1, 1], True),
            "mask batch size must be 1 or 2",
        ),
        (
            lambda f: OPS.two_point(f, torch.ones(1, 6, 5, dtype=torch.bool), None, [0, 0], [1, 1], True),
            "mask must have shape",
        ),
        (
            lambda f: OPS.two_point(f, torch.ones(1, 5, 6, dtype=torch.int32), None, [0, 0], [1, 1], True),
            "mask must be bool or floating",
        ),
        (
            lambda f: OPS.two_point(f, None, torch.ones(1, 3, 4, dtype=torch.float64), [0, 0], [1, 1], True),
            "counts must have shape",
        ),
        (
            lambda f: OPS.two_point_backward(torch.ones(2, 1, 3, 4), f, None, None, [0, 0], [1, 1], True),
            "grad must have the shape",
        ),
        (lambda f: OPS.pair_counts(torch.ones(5, dtype=torch.bool), [1], True), "mask must have shape"),
    ],
)
def test_bad_input_raises_from_cpp(call, message):
    fields = torch.rand(2, 2, 5, 6)
    with pytest.raises(RuntimeError, match=message):
        call(fields)


def test_unavailable_reason_says_how_to_build(monkeypatch):
    assert ss.available_backends("cpu")["native"] is None
    monkeypatch.setattr(_native, "_C", None)
    reason = _native.unavailable_reason(torch.device("cpu"))
    assert "pip install --no-build-isolation -e ." in reason


def test_auto_prefers_native_for_small_windows_on_cpu():
    pairs = ((0, 0),)
    assert ops.choose_backend("cpu", 1, 1, pairs, (256, 256), (2, 2), True) == "native"
    assert ops.choose_backend("cpu", 1, 1, pairs, (256, 256), (64, 64), True) == "fft"


def two_dots(batch, height, width, dtype, device):
    """Fields (batch, 1, height, width), zero but for 1 at (0, 0) and at (height - 1, width - 1) of
    the last batch element: their periodic auto-correlation is 1/n at r = 0 twice and at r = +-(1, 1)
    (the pair wraps around the corner), 0 elsewhere."""
    fields = torch.zeros(batch, 1, height, width, dtype=dtype, device=device)
    fields[-1, 0, 0, 0] = fields[-1, 0, -1, -1] = 1
    return fields


def assert_two_dots_statistics(fields):
    """Forward and gradient of the corner pair at the end of a large tensor."""
    n = fields.shape[-1] * fields.shape[-2]
    stats = _native.two_point(fields, ((0, 0),), None, (1, 1), True)
    expected = torch.zeros(3, 3, dtype=torch.float64)
    expected[1, 1], expected[0, 0], expected[2, 2] = 2 / n, 1 / n, 1 / n
    torch.testing.assert_close(stats[-1, 0].double().cpu(), expected, rtol=1e-6, atol=0)
    assert not bool(stats[:-1].any())
    grad = OPS.two_point_backward(torch.ones_like(stats), fields, None, None, [0, 0], [1, 1], True)
    # d/dx(s) of sum_r S(r) is (2/n) times the dots in the 3 x 3 neighbourhood of s: 4/n on a dot
    # (itself and the other one, across the corner), 2/n beside one, 0 elsewhere.
    corner = grad[-1, 0, :2, :2].double().cpu()
    torch.testing.assert_close(corner, torch.tensor([[4.0, 2.0], [2.0, 2.0]], dtype=torch.float64) / n, rtol=0, atol=0)
    assert not bool(grad[:-1].any())


def test_large_index_arithmetic_cpu():
    """Offsets are int64 in every kernel. A tensor of more than 2^31 elements (4 GiB in bfloat16, plus
    the CPU kernels' 8 GiB float32 halo copy) does not fit this machine beside the other tests, so this
    is the largest case that does: 5 x 8192^2 bfloat16 elements (640 MiB; a 1.25 GiB halo), whose last
    batch element lies beyond 2^28 elements of the input and 2^30 bytes of the halo, with a periodic
    pair that wraps around the corner of that element. bfloat16 holds the powers of two 2/n and 4/n
    of the gradient exactly. The CUDA test below crosses 2^31 elements."""
    assert_two_dots_statistics(two_dots(5, 8192, 8192, torch.bfloat16, "cpu"))


@requires_cuda
@requires_native_cuda
def test_large_index_arithmetic_cuda():
    """2^31 + 2^16 bfloat16 elements (4 GiB): offsets into the last batch element exceed int32."""
    assert_two_dots_statistics(two_dots(2, 32768, 32769, torch.bfloat16, "cuda"))
