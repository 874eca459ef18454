"""The fused Triton loss term against the unfused loss: values and gradients, custom op, training.

Runs in the Triton interpreter on the CPU (tests/conftest.py) and unchanged on a CUDA GPU.
Tolerance 1e-5 (float32, values of order 1).
"""

import pytest
import torch

import spatialstats
from spatialstats import _backend, _fft
from spatialstats._common import per_sample_distance, window_shape

pytest.importorskip("triton")
from spatialstats import _triton
from spatialstats._triton import loss as triton_loss

AUTO, MIXED = ((0, 0), (1, 1)), ((1, 0), (0, 0), (0, 1))

UNAVAILABLE = _triton.unavailable_reason("cuda" if torch.cuda.is_available() else "cpu")
pytestmark = pytest.mark.skipif(UNAVAILABLE is not None, reason=str(UNAVAILABLE))


def distance_and_gradients(pair_distance, pred, target_stats, pairs, mask, window, periodic, weights, distance):
    """(per-sample distance, d(sum of distances)/dpred, d/dtarget_stats)."""
    pred = pred.detach().requires_grad_(True)
    target_stats = target_stats.detach().requires_grad_(True)
    values = pair_distance(pred, target_stats, pairs, mask, window, periodic, weights, distance)
    return (values, *torch.autograd.grad(values.sum(), (pred, target_stats)))


def unfused(pred, target_stats, pairs, mask, window, periodic, weights, distance):
    stats = _fft.two_point(pred, pairs=pairs, mask=mask, half_widths=window, periodic=periodic)
    return per_sample_distance(stats - target_stats, weights, distance)


def triton_distance(pred, target_stats, pairs, mask, window, periodic, weights, distance):
    """The loss term as the dispatch runs it on the triton backend: fused, or statistics then distance."""
    return _backend._execute(
        _triton,
        pred,
        pairs=pairs,
        half_widths=window,
        periodic=periodic,
        mask=mask,
        counts=None,
        target=None,
        target_stats=target_stats,
        weights=weights,
        distance=distance,
    )


FUSED_CASES = [
    # spatial, window, periodic, pairs, mask kind, weights kind, distance
    ((9, 10), (3, 2), True, AUTO, None, None, "l2"),
    ((9, 10), (3, 2), True, AUTO, None, "full", "mse"),
    ((8, 7), (4, 6), False, MIXED, "shared", "window", "l2"),
    ((6, 6), (3, 3), True, MIXED, "per_sample", "scalar", "mse"),
    ((9,), (4,), False, AUTO, None, "full", "l2"),
    ((3, 4, 5), (1, 2, 2), True, AUTO, "shared", None, "l2"),
    ((3, 5, 4), (2, 3, 2), False, MIXED, None, "full", "mse"),
    ((5, 6), (5, 2), False, AUTO, None, None, "l2"),  # |r| >= n on axis 0: the unfused path
    ((5, 6), (2, 4), True, MIXED, None, "full", "l2"),  # periodic window wider than the image: unfused
]


def make_inputs(spatial, window, pairs, mask_kind, weights_kind, device, dtype=torch.float32):
    generator = torch.Generator().manual_seed(21)
    pred = torch.rand((2, 2, *spatial), generator=generator).to(device, dtype)
    target_stats = torch.rand((2, len(pairs), *window_shape(window)), generator=generator).to(device)
    masks = {
        None: None,
        "shared": torch.rand((1, *spatial), generator=generator) < 0.7,
        "per_sample": torch.rand((2, *spatial), generator=generator) < 0.7,
    }
    weights = {
        None: None,
        "full": torch.rand((len(pairs), *window_shape(window)), generator=generator),
        "window": torch.rand(window_shape(window), generator=generator),
        "scalar": torch.tensor(0.5),
    }
    mask, w = masks[mask_kind], weights[weights_kind]
    return pred, target_stats, None if mask is None else mask.to(device), None if w is None else w.to(device)


@pytest.mark.parametrize("spatial, window, periodic, pairs, mask_kind, weights_kind, distance", FUSED_CASES)
def test_fused_equals_unfused(spatial, window, periodic, pairs, mask_kind, weights_kind, distance, device, monkeypatch):
    pred, target_stats, mask, weights = make_inputs(spatial, window, pairs, mask_kind, weights_kind, device)
    arguments = (pred, target_stats, pairs, mask, window, periodic, weights, distance)
    fused_calls = []
    monkeypatch.setattr(
        _triton, "weighted_distance", lambda *a: fused_calls.append(a) or triton_loss.weighted_distance(*a)
    )
    fused = distance_and_gradients(triton_distance, *arguments)
    distinct = all(k <= (n // 2 if periodic else n - 1) for k, n in zip(window, spatial))
    assert len(fused_calls) == distinct  # the fused kernels run whenever the window allows
    expected = distance_and_gradients(unfused, *arguments)
    for value, reference in zip(fused, expected):
        torch.testing.assert_close(value, reference, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float64])
def test_fused_dtypes(dtype, device):
    pred, target_stats, _, weights = make_inputs((7, 8), (2, 3), MIXED, None, "full", device, dtype)
    arguments = (pred, target_stats, MIXED, None, (2, 3), False, weights, "l2")
    values, gradient, _ = distance_and_gradients(triton_distance, *arguments)
    expected, expected_gradient, _ = distance_and_gradients(unfused, pred.double(), *arguments[1:])
    tolerance = 1e-12 if dtype == torch.float64 else 1e-5
    assert values.dtype == (torch.float64 if dtype == torch.float64 else torch.float32) and gradient.dtype == dtype
    torch.testing.assert_close(values.double(), expected, atol=tolerance, rtol=tolerance)
    gradient_tolerance = tolerance if dtype == torch.float64 else 1e-2  # bf16 rounding of the gradient
    torch.testing.assert_close(gradient.double(), expected_gradient, atol=gradient_tolerance, rtol=gradient_tolerance)


def test_weights_with_gradient_take_unfused_path(device):
    pred, target_stats, _, weights = make_inputs((6, 7), (2, 2), AUTO, None, "full", device)
    weights.requires_grad_(True)
    values = triton_distance(pred, target_stats, AUTO, None, (2, 2), True, weights, "l2")
    (gradient,) = torch.autograd.grad(values.sum(), weights)
    (expected,) = torch.autograd.grad(
        unfused(pred, target_stats, AUTO, None, (2, 2), True, weights, "l2").sum(), weights
    )
    torch.testing.assert_close(gradient, expected, atol=1e-5, rtol=1e-5)


def test_rejects_unknown_distance(device):
    pred, target_stats, _, _ = make_inputs((6, 7), (2, 2), AUTO, None, None, device)
    with pytest.raises(ValueError, match="distance must be one of"):
        triton_distance(pred, target_stats, AUTO, None, (2, 2), True, None, "l1")


def test_zero_distance_has_zero_gradient(device):
    """At distance 0 (indicators on 8 x 4 pixels: every sum and count exact) the gradient is 0, not NaN."""
    pred = (torch.rand((2, 2, 8, 4), generator=torch.Generator().manual_seed(22)) < 0.5).float().to(device)
    target_stats = _triton.two_point(pred, pairs=AUTO, half_widths=(2, 2), periodic=True)
    values, gradient, _ = distance_and_gradients(
        triton_distance, pred, target_stats, AUTO, None, (2, 2), True, None, "l2"
    )
    assert torch.equal(values, torch.zeros_like(values))
    assert torch.equal(gradient, torch.zeros_like(gradient))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_two_point_loss_module(reduction, device):
    generator = torch.Generator().manual_seed(23)
    pred = torch.rand((3, 2, 8, 9), generator=generator).to(device).requires_grad_(True)
    target = (torch.rand((3, 2, 8, 9), generator=generator) < 0.5).float().to(device)
    values = {}
    for backend in ("triton", "fft"):
        loss_fn = spatialstats.TwoPointLoss(cutoff=3, periodic=False, pairs="all", reduction=reduction, backend=backend)
        value = loss_fn(pred, target)
        values[backend] = (value, *torch.autograd.grad(value.sum(), pred))
        stats = loss_fn.precompute(target, device=device)
        torch.testing.assert_close(loss_fn(pred, target_stats=stats), value)
    for value, reference in zip(values["triton"], values["fft"]):
        torch.testing.assert_close(value, reference, atol=1e-5, rtol=1e-5)


def test_opcheck(device):
    generator = torch.Generator().manual_seed(24)
    fields = torch.rand((1, 2, 1, 6, 7), generator=generator).to(device).requires_grad_(True)
    target = torch.rand((1, 2, 1, 5, 7), generator=generator).to(device).requires_grad_(True)
    counts = _fft.pair_counts(None, spatial_shape=(6, 7), half_widths=(2, 3), periodic=False, device=device)
    inverse_counts = 1 / counts.reshape(1, 1, 5, 7).float()
    for weights, distance in ((None, "l2"), (torch.rand((2, 1, 5, 7), generator=generator).to(device), "mse")):
        arguments = (fields, target, weights, inverse_counts, [0, 0, 0, 1], [0, 2, 3], False, "tf32x3", distance)
        torch.library.opcheck(triton_loss.weighted_distance, arguments)


def test_gradgradcheck_float64(device):
    """Every gradient order: the fused loss's backward is differentiable (gradgradcheck in float64)."""
    generator = torch.Generator().manual_seed(26)
    pred = torch.rand((1, 2, 3, 4), dtype=torch.float64, generator=generator).to(device).requires_grad_(True)
    target_stats = torch.rand((1, 3, 3, 5), dtype=torch.float64, generator=generator).to(device)
    weights = torch.rand((3, 3, 5), dtype=torch.float64, generator=generator).to(device)
    assert torch.autograd.gradgradcheck(
        lambda p: triton_distance(p, target_stats, MIXED, None, (1, 2), False, weights, "l2"),
        (pred,),
        fast_mode=True,
    )


def test_compiles_to_one_graph(device):
    pred, target_stats, mask, weights = make_inputs((6, 7), (2, 3), MIXED, "per_sample", "full", device)

    def pair_distance(p):
        return _triton.pair_distance(
            p,
            target_stats=target_stats,
            pairs=MIXED,
            mask=mask,
            half_widths=(2, 3),
            periodic=True,
            weights=weights,
            distance="l2",
        )

    compiled = torch.compile(pair_distance, backend="aot_eager", fullgraph=True)
    pred.requires_grad_(True)
    value = compiled(pred)
    (gradient,) = torch.autograd.grad(value.sum(), pred)
    expected = pair_distance(pred)
    (expected_gradient,) = torch.autograd.grad(expected.sum(), pred)
    torch.testing.assert_close(value, expected)
    torch.testing.assert_close(gradient, expected_gradient)


def test_training_decreases_loss(device):
    """Fit free phase logits to the statistics of a two-phase target with TwoPointLoss(backend="triton")."""
    generator = torch.Generator().manual_seed(25)
    stripes = (torch.arange(12) // 3 % 2).float()
    target = torch.stack([stripes.expand(12, 12), 1 - stripes.expand(12, 12)]).unsqueeze(0).to(device)
    logits = torch.randn((1, 2, 12, 12), generator=generator).to(device).requires_grad_(True)
    loss_fn = spatialstats.TwoPointLoss(cutoff=3, backend="triton")
    target_stats = loss_fn.precompute(target, device=device)
    optimizer = torch.optim.Adam([logits], lr=0.1)
    history = []
    for _ in range(25):
        optimizer.zero_grad()
        value = loss_fn(logits.softmax(1), target_stats=target_stats)
        value.backward()
        optimizer.step()
        history.append(value.item())
    assert history[-1] < 0.5 * history[0]
