"""TwoPointLoss and two_point_loss: values against the statistics, gradients, options, compile."""

import pytest
import torch

import spatialstats as ss
from spatialstats import _fft


def make_batch(seed, shape=(3, 2, 10, 9), dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=gen, dtype=dtype), torch.rand(shape, generator=gen, dtype=dtype)


def stats_difference(pred, target, **kwargs):
    sp = ss.two_point_all(pred, backend="reference", **kwargs).stats
    st = ss.two_point_all(target, backend="reference", **kwargs).stats
    return (sp - st).flatten(1)


@pytest.mark.parametrize("periodic", [True, False])
@pytest.mark.parametrize("pairs", ["auto", "all"])
def test_l2_and_mse_values(periodic, pairs):
    pred, target = make_batch(0)
    diff = stats_difference(pred, target, cutoff=3, periodic=periodic, pairs=pairs)
    l2 = ss.two_point_loss(pred, target, cutoff=3, periodic=periodic, pairs=pairs, reduction="none")
    torch.testing.assert_close(l2, diff.norm(dim=1))
    mse = ss.two_point_loss(pred, target, cutoff=3, periodic=periodic, pairs=pairs, distance="mse", reduction="none")
    torch.testing.assert_close(mse, diff.square().mean(1))
    assert ss.two_point_loss(pred, target, cutoff=3, periodic=periodic, pairs=pairs).item() == pytest.approx(
        l2.mean().item()
    )
    assert ss.two_point_loss(
        pred, target, cutoff=3, periodic=periodic, pairs=pairs, reduction="sum"
    ).item() == pytest.approx(l2.sum().item())


def test_phases_and_weights():
    pred, target = make_batch(1)
    diff = stats_difference(pred, target, cutoff=2, phases=[1]).reshape(3, 1, 5, 5)
    weights = torch.rand(5, 5, dtype=torch.float64)
    loss = ss.two_point_loss(pred, target, cutoff=2, phases=[1], weights=weights, distance="mse", reduction="none")
    torch.testing.assert_close(loss, (weights * diff.square()).flatten(1).mean(1))
    scaled = ss.two_point_loss(pred, target, cutoff=2, phases=[1], weights=4.0, reduction="none")
    torch.testing.assert_close(scaled, 2 * diff.flatten(1).norm(dim=1))


def test_target_stats_and_precompute_equal_the_target_path():
    pred, target = make_batch(2)
    loss_fn = ss.TwoPointLoss(cutoff=3, periodic=False, pairs="all")
    direct = loss_fn(pred, target)
    stats = loss_fn.precompute(target, batch_size=2)
    assert stats.shape == (3, 3, 7, 7)
    torch.testing.assert_close(loss_fn(pred, target_stats=stats), direct)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(target, torch.zeros(3)), batch_size=2)
    torch.testing.assert_close(loss_fn.precompute(loader), stats)
    torch.testing.assert_close(loss_fn.statistics(target), stats)


@pytest.mark.parametrize("periodic", [True, False])
@pytest.mark.parametrize("distance", ["l2", "mse"])
def test_loss_gradcheck(periodic, distance):
    pred, target = make_batch(3, shape=(2, 2, 6, 5))
    mask = torch.rand(6, 5, generator=torch.Generator().manual_seed(0)) < 0.8
    pred.requires_grad_()

    def loss(p):
        return ss.two_point_loss(p, target, cutoff=2, periodic=periodic, pairs="all", distance=distance, mask=mask)

    assert torch.autograd.gradcheck(loss, (pred,))


def test_gradient_reaches_a_target_that_requires_grad():
    pred, target = make_batch(4, shape=(2, 1, 6, 6))
    target.requires_grad_()
    pred.requires_grad_()
    ss.two_point_loss(pred, target, cutoff=2).backward()
    assert target.grad is not None and target.grad.abs().sum() > 0


def test_zero_distance_has_a_finite_zero_gradient():
    pred, _ = make_batch(5, shape=(2, 1, 6, 6))
    pred.requires_grad_()
    loss = ss.two_point_loss(pred, pred.detach().clone(), cutoff=2)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().max() == 0


def test_bool_target_and_float32_result():
    pred = torch.rand(2, 1, 8, 8)
    target = torch.rand(2, 1, 8, 8) > 0.5
    loss = ss.two_point_loss(pred, target, cutoff=2)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(ss.two_point_loss(pred, target.float(), cutoff=2).item())


def test_autocast_computes_in_float32():
    pred, target = make_batch(6, dtype=torch.float32)
    expected = ss.two_point_loss(pred, target, cutoff=3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = ss.two_point_loss(pred, target, cutoff=3)
        half_pred = ss.two_point_loss(pred.bfloat16(), target.bfloat16(), cutoff=3)
    assert inside.dtype == torch.float32 and half_pred.dtype == torch.float32
    torch.testing.assert_close(inside, expected)
    torch.testing.assert_close(half_pred, expected, rtol=2e-2, atol=1e-3)


def test_fitting_statistics_decreases_the_loss():
    torch.manual_seed(0)
    target = (torch.rand(1, 1, 16, 16) > 0.6).float()
    logits = torch.zeros(1, 1, 16, 16, requires_grad=True)
    optimizer = torch.optim.Adam([logits], lr=0.1)
    loss_fn = ss.TwoPointLoss(cutoff=4)
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = loss_fn(torch.sigmoid(logits + 0.01 * torch.randn_like(logits)), target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]


def test_torch_compile_matches_eager():
    pred, target = make_batch(7, shape=(2, 1, 12, 12), dtype=torch.float32)
    loss_fn = ss.TwoPointLoss(cutoff=3, periodic=False)
    compiled = torch.compile(loss_fn, fullgraph=False)
    leaf_eager = pred.clone().requires_grad_()
    leaf_compiled = pred.clone().requires_grad_()
    eager = loss_fn(leaf_eager, target)
    result = compiled(leaf_compiled, target)
    eager.backward()
    result.backward()
    torch.testing.assert_close(result, eager, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(leaf_compiled.grad, leaf_eager.grad, rtol=1e-4, atol=1e-6)


def test_module_repr_and_buffers():
    loss_fn = ss.TwoPointLoss(cutoff=4, weights=torch.ones(9, 9), distance="mse")
    assert "cutoff=4" in repr(loss_fn) and "mse" in repr(loss_fn)
    assert "weights" in dict(loss_fn.named_buffers())


def reference_distances(pred, target, distance, **options):
    """Per-sample distances from the reference backend's statistics: (N,)."""
    difference = (
        ss.two_point_all(pred, backend="reference", **options).stats
        - ss.two_point_all(target, backend="reference", **options).stats
    )
    squares = difference.flatten(1).square()
    return squares.sum(1).sqrt() if distance == "l2" else squares.mean(1)


@pytest.mark.parametrize("shape", [(6, 8), (7, 5), (8,), (9,), (4, 6, 5), (3, 5, 4)], ids=str)
@pytest.mark.parametrize("pairs", ["auto", "all"])
def test_full_periodic_window_from_spectra(shape, pairs, monkeypatch):
    """The fft loss over the full periodic window (Parseval, the r_a = n_a / 2 lines of even axes
    left out) equals the distance of the reference statistics, from target images and statistics."""
    calls = []
    parseval = _fft._parseval_distance
    monkeypatch.setattr(_fft, "_parseval_distance", lambda *a: calls.append(1) or parseval(*a))
    gen = torch.Generator().manual_seed(len(shape))
    pred, target = torch.rand(2, 3, 2, *shape, dtype=torch.float64, generator=gen).unbind(0)
    options = dict(spatial_dims=len(shape), pairs=pairs, periodic=True)
    stats = ss.TwoPointLoss(**options).statistics(target)
    for distance in ("l2", "mse"):
        expected = reference_distances(pred, target, distance, **options)
        for given in (dict(target=target), dict(target_stats=stats)):
            value = ss.two_point_loss(pred, **given, distance=distance, reduction="none", backend="fft", **options)
            torch.testing.assert_close(value, expected, rtol=1e-10, atol=1e-12)
    assert len(calls) == 4
    leaf = pred.clone().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda p: ss.two_point_loss(p, target, backend="fft", **options), (leaf,), fast_mode=True
    )


@pytest.mark.parametrize("periodic", [True, False])
def test_windowed_loss_from_the_difference_of_spectra(periodic):
    gen = torch.Generator().manual_seed(9)
    pred, target = torch.rand(2, 2, 2, 9, 8, dtype=torch.float64, generator=gen).unbind(0)
    mask = torch.rand(9, 8, generator=gen) > 0.2
    weights = torch.rand(3, 5, 7, dtype=torch.float64, generator=gen)
    options = dict(cutoff=(2, 3), periodic=periodic, pairs="all", mask=mask, weights=weights, reduction="none")
    for distance in ("l2", "mse"):
        expected = ss.two_point_loss(pred, target, distance=distance, backend="reference", **options)
        value = ss.two_point_loss(pred, target, distance=distance, backend="fft", **options)
        torch.testing.assert_close(value, expected, rtol=1e-10, atol=1e-12)
    leaf, target_leaf = pred.clone().requires_grad_(), target.clone().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda p, t: ss.two_point_loss(p, t, backend="fft", **{**options, "reduction": "sum"}),
        (leaf, target_leaf),
        fast_mode=True,
    )


def test_pairs_transformed_in_chunks_give_the_same_statistics(monkeypatch):
    labels = torch.randint(0, 4, (2, 11, 10), generator=torch.Generator().manual_seed(10))
    expected = ss.two_point_all(labels, pairs="all", cutoff=3, backend="fft").stats
    monkeypatch.setattr(_fft, "PAIR_CHUNK_BYTES", 1)  # one pair at a time
    torch.testing.assert_close(ss.two_point_all(labels, pairs="all", cutoff=3, backend="fft").stats, expected)
