"""What is particular to the native backend (spatialstats._C): its CPU instruction sets, windows of
several CUDA forward chunks, torch.library.opcheck on every op, bad input raising from C++, the
cost model's choice, large-index cases. Every test runs on the CPU and, with a GPU, on CUDA; the
sweep against the reference that native shares with conv is in test_direct_backends.py."""

import pytest
import torch

import spatialstats as ss
from spatialstats import _backend, _fft, _native, _ref

from .conftest import requires_cuda

pytestmark = pytest.mark.skipif(
    _native.unavailable_reason(torch.device("cpu")) is not None,
    reason=f"native backend unavailable: {_native.unavailable_reason(torch.device('cpu'))}",
)

NATIVE_CUDA_MISSING = _native.unavailable_reason(torch.device("cuda"))
requires_native_cuda = pytest.mark.skipif(NATIVE_CUDA_MISSING is not None, reason=f"{NATIVE_CUDA_MISSING}")
DEVICES = [pytest.param("cpu"), pytest.param("cuda", marks=[requires_cuda, requires_native_cuda])]
# float32: direct sums in float32 flushed to float64 (CPU) or float32 tiles (CUDA), values in [0, 1].
TOLERANCES = {torch.float32: dict(rtol=1e-5, atol=1e-6), torch.float64: dict(rtol=1e-12, atol=1e-13)}
OPS = torch.ops.spatialstats


def random_fields(gen, *shape, dtype=torch.float64, device="cpu"):
    return torch.rand(*shape, dtype=torch.float64, generator=gen).to(device=device, dtype=dtype)


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
            args = dict(pairs=((0, 1), (1, 1)), half_widths=(1, 3, 10), periodic=periodic)
            stats = _native.two_point(fields, **args)
            (grad,) = torch.autograd.grad(stats, fields, weights)
            reference = fields.detach().double().requires_grad_()
            expected = _ref.two_point(reference, **args)
            (expected_grad,) = torch.autograd.grad(expected, reference, weights.double())
            torch.testing.assert_close(stats, expected.to(dtype), **TOLERANCES[dtype])
            torch.testing.assert_close(grad, expected_grad.to(dtype), **TOLERANCES[dtype])


def test_cpu_instruction_set_must_be_known(monkeypatch):
    monkeypatch.setenv("SPATIALSTATS_CPU_ISA", "sse9")
    with pytest.raises(RuntimeError, match="SPATIALSTATS_CPU_ISA must be avx512, avx2 or baseline"):
        _native.two_point(torch.rand(1, 1, 4, 4), pairs=((0, 0),), half_widths=(1, 1), periodic=True)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("periodic", [True, False], ids=["periodic", "open"])
def test_native_windows_of_several_chunks(periodic, device):
    """Windows of several CUDA forward chunks (32 displacements a side) on both sides of ry = 0 and
    along rx, auto and cross pairs, forward and gradient, against the fft backend in float64."""
    gen = torch.Generator().manual_seed(13)
    fields = random_fields(gen, 1, 2, 90, 84)
    weights = random_fields(gen, 1, 3, 81, 73) if periodic else random_fields(gen, 1, 3, 141, 73)
    half_widths = (40, 36) if periodic else (70, 36)
    pairs = ((0, 0), (0, 1), (1, 1))
    results = []
    for module, on in ((_fft, "cpu"), (_native, device)):
        leaf = fields.to(on).requires_grad_()
        stats = module.two_point(leaf, pairs=pairs, half_widths=half_widths, periodic=periodic)
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


def test_cost_model_prefers_native_for_small_windows_on_cpu(monkeypatch):
    """The fallback (SPATIALSTATS_AUTOTUNE=0) follows the measured CPU entry of the cost model."""
    monkeypatch.setenv("SPATIALSTATS_AUTOTUNE", "0")
    fields = torch.rand(1, 1, 256, 256)
    small = _backend.signature_of(_backend.call_key("statistics", fields, ((0, 0),), (2, 2), True, None, False))
    large = small._replace(half_widths=(64, 64))
    assert _backend.choose(small) == "native" and _backend.choose(large) == "fft"


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
    stats = _native.two_point(fields, pairs=((0, 0),), half_widths=(1, 1), periodic=True)
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
