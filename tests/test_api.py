"""Public API: array types in and out, shapes, two_point_all's layout, backend choice."""

import numpy as np
import pytest
import torch

import spatialstats as ss
from spatialstats import _backend

from .conftest import requires_cuda


def test_readme_example_shape():
    assert ss.two_point(np.random.default_rng(0).random((64, 64)) > 0.5, cutoff=5).shape == (11, 11)


@pytest.mark.parametrize("dtype", [np.bool_, np.uint8, np.int32, np.float32, np.float64])
def test_numpy_in_numpy_float64_out(dtype):
    x = (np.random.default_rng(0).random((2, 9, 10)) > 0.5).astype(dtype)
    stats = ss.two_point(x, cutoff=3)
    assert isinstance(stats, np.ndarray) and stats.dtype == np.float64 and stats.shape == (2, 7, 7)
    expected = ss.two_point(x.astype(np.float64), cutoff=3, backend="reference")
    np.testing.assert_allclose(stats, expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    "dtype, out_dtype",
    [
        (torch.bool, torch.float32),
        (torch.uint8, torch.float32),
        (torch.float16, torch.float32),
        (torch.bfloat16, torch.float32),
        (torch.float32, torch.float32),
        (torch.float64, torch.float64),
    ],
)
def test_torch_dtypes(dtype, out_dtype):
    x = (torch.rand(3, 8, 8) > 0.5).to(dtype)
    stats = ss.two_point(x, cutoff=2)
    assert isinstance(stats, torch.Tensor) and stats.dtype == out_dtype and stats.device == x.device
    torch.testing.assert_close(
        stats.double(), ss.two_point(x.double(), cutoff=2, backend="reference"), rtol=1e-5, atol=1e-6
    )


def test_numpy_and_torch_agree_and_lists_work():
    x = np.random.default_rng(1).random((6, 6))
    from_list = ss.two_point(x.tolist(), cutoff=2)
    from_numpy = ss.two_point(x, cutoff=2)
    from_torch = ss.two_point(torch.from_numpy(x), cutoff=2)
    assert isinstance(from_list, np.ndarray)
    np.testing.assert_array_equal(from_list, from_numpy)
    np.testing.assert_allclose(from_torch.numpy(), from_numpy, rtol=1e-12)


def test_noncontiguous_input():
    x = torch.rand(10, 12, dtype=torch.float64)
    np.testing.assert_allclose(
        ss.two_point(x.T, cutoff=3).numpy(), ss.two_point(x.T.contiguous(), cutoff=3).numpy(), rtol=1e-12
    )
    flipped = np.random.default_rng(2).random((7, 9))[::-1, ::2]
    np.testing.assert_allclose(ss.two_point(flipped, cutoff=2), ss.two_point(flipped.copy(), cutoff=2))


def test_batch_dims_and_y_is_x():
    x = torch.rand(2, 3, 4, 5, 6, dtype=torch.float64)
    auto = ss.two_point(x, spatial_dims=3, cutoff=1)
    assert auto.shape == (2, 3, 3, 3, 3)
    torch.testing.assert_close(ss.two_point(x, x, spatial_dims=3, cutoff=1), auto)
    torch.testing.assert_close(ss.two_point(x, x.clone(), spatial_dims=3, cutoff=1), auto)


def test_counts_shapes_follow_the_mask():
    x = torch.rand(3, 2, 6, 6)
    _, counts = ss.two_point(x, cutoff=1, return_counts=True)
    assert counts.shape == (3, 3)
    _, counts = ss.two_point(x, cutoff=1, mask=torch.ones(6, 6, dtype=torch.bool), return_counts=True)
    assert counts.shape == (3, 3)
    mask = torch.rand(2, 6, 6) > 0.5
    stats, counts = ss.two_point(x, cutoff=1, mask=mask, return_counts=True)
    assert stats.shape == (3, 2, 3, 3) and counts.shape == (3, 2, 3, 3)
    assert torch.equal(counts[0, 1, 1, 1], mask[1].sum().float())


def test_mask_hiding_everything_gives_zero_statistics_and_counts():
    stats, counts = ss.two_point(np.ones((5, 5)), mask=np.zeros((5, 5), bool), return_counts=True, cutoff=2)
    assert np.all(stats == 0) and np.all(counts == 0)


def test_mask_excludes_pairs():
    x = np.ones((4, 4))
    x[0, 0] = 0
    mask = np.ones((4, 4), bool)
    mask[0, 0] = False
    stats = ss.two_point(x, mask=mask, cutoff=1, periodic=False)
    np.testing.assert_allclose(stats, 1.0)


def test_two_point_all_labels_equal_one_hot_and_two_point():
    labels = np.random.default_rng(3).integers(0, 3, (2, 10, 9))
    result = ss.two_point_all(labels, pairs="all", cutoff=3)
    assert result.pairs == ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))
    assert result.stats.shape == (2, 6, 7, 7)
    one_hot = np.stack([labels == p for p in range(3)], axis=1).astype(np.float64)
    np.testing.assert_allclose(
        ss.two_point_all(one_hot, pairs="all", cutoff=3).stats, result.stats, rtol=1e-12, atol=1e-14
    )
    for p, (i, j) in enumerate(result.pairs):
        np.testing.assert_allclose(
            result.stats[:, p], ss.two_point(labels == i, labels == j, cutoff=3), rtol=1e-12, atol=1e-14
        )
    # every point is in some phase: sum over ordered pairs of S_ij(r) is one; S_ji(r) = S_ij(-r)
    crosses = result.stats[:, 3:]
    total = result.stats[:, :3].sum(1) + crosses.sum(1) + crosses[:, :, ::-1, ::-1].sum(1)
    np.testing.assert_allclose(total, 1.0, rtol=1e-12)


def test_two_point_all_options():
    labels = np.random.default_rng(4).integers(0, 2, (12, 12))
    default = ss.two_point_all(labels, cutoff=2)
    assert default.pairs == ((0, 0), (1, 1)) and default.stats.shape == (2, 5, 5)
    assert ss.two_point_all(labels, n_phases=4, cutoff=2).stats.shape == (4, 5, 5)
    chosen = ss.two_point_all(labels, phases=[1], cutoff=2)
    assert chosen.pairs == ((1, 1),)
    np.testing.assert_allclose(chosen.stats[0], default.stats[1])
    explicit = ss.two_point_all(labels, pairs=[(1, 0)], cutoff=2)
    np.testing.assert_allclose(
        explicit.stats[0], ss.two_point(labels == 1, labels == 0, cutoff=2), rtol=1e-12, atol=1e-14
    )
    assert ss.two_point_all(labels.astype(bool), cutoff=2).pairs == ((0, 0), (1, 1))
    stats, _ = ss.two_point_all(torch.from_numpy(labels), cutoff=2)
    assert isinstance(stats, torch.Tensor) and stats.dtype == torch.float32


def test_one_dimensional_statistics():
    x = np.random.default_rng(5).random((4, 17))
    stats = ss.two_point(x, spatial_dims=1, cutoff=5, periodic=False)
    expected = ss.two_point(x[:, None, :], spatial_dims=2, cutoff=(0, 5), periodic=False)
    np.testing.assert_allclose(stats, expected[:, 0], rtol=1e-12)


def test_available_backends_lists_every_backend():
    backends = ss.available_backends("cpu")
    assert set(backends) == set(_backend.BACKENDS)
    assert backends["reference"] is None and backends["fft"] is None
    assert all(reason is None or (isinstance(reason, str) and reason) for reason in backends.values())


def test_environment_override_applies_to_auto(monkeypatch):
    calls = []
    original = _backend.load

    def spy(name):
        calls.append(name)
        return original(name)

    monkeypatch.setattr(_backend, "load", spy)
    monkeypatch.setenv("SPATIALSTATS_BACKEND", "reference")
    ss.two_point(np.ones((4, 4)), cutoff=1)
    assert calls[-1] == "reference"
    ss.two_point(np.ones((4, 4)), cutoff=1, backend="fft")
    assert calls[-1] == "fft"


def test_auto_uses_an_available_backend_and_matches_reference():
    x = torch.rand(4, 20, 20, dtype=torch.float64)
    torch.testing.assert_close(ss.two_point(x, cutoff=4), ss.two_point(x, cutoff=4, backend="reference"))


def test_gradients_flow_through_the_public_function():
    x = torch.rand(2, 6, 6, requires_grad=True)
    y = torch.rand(2, 6, 6, requires_grad=True)
    ss.two_point(x, y, cutoff=2, periodic=False).sum().backward()
    assert x.grad is not None and y.grad is not None and x.grad.abs().sum() > 0


@requires_cuda
def test_torch_cuda_round_trip():
    x = torch.rand(2, 16, 16, device="cuda")
    stats = ss.two_point(x, cutoff=3)
    assert stats.device == x.device
    torch.testing.assert_close(
        stats.cpu().double(), ss.two_point(x.cpu().double(), cutoff=3, backend="reference"), rtol=1e-4, atol=1e-5
    )


@requires_cuda
def test_cupy_round_trip_without_host_copy():
    cupy = pytest.importorskip("cupy")
    x = cupy.random.random((2, 16, 16)).astype(cupy.float32)
    stats = ss.two_point(x, cutoff=3)
    assert isinstance(stats, cupy.ndarray) and stats.dtype == cupy.float32
    expected = ss.two_point(cupy.asnumpy(x).astype(np.float64), cutoff=3)
    np.testing.assert_allclose(cupy.asnumpy(stats), expected, rtol=1e-4, atol=1e-5)
