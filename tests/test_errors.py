"""Bad input raises ValueError/TypeError whose message names the argument and what was expected."""

import numpy as np
import pytest
import torch

import spatialstats as ss
from spatialstats import _backend
from spatialstats.compat import two_point_stats

from .conftest import requires_cuda

IMAGE = np.random.default_rng(0).random((8, 8))


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda: ss.two_point(np.zeros(5)), ValueError, ["x", "spatial axes", "(5,)"]),
        (lambda: ss.two_point(IMAGE, spatial_dims=0), ValueError, ["spatial_dims", "1, 2 or 3"]),
        (lambda: ss.two_point(IMAGE, spatial_dims=4), ValueError, ["spatial_dims", "1, 2 or 3"]),
        (lambda: ss.two_point(IMAGE, spatial_dims=2.0), TypeError, ["spatial_dims"]),
        (lambda: ss.two_point(IMAGE, np.zeros((8, 7))), ValueError, ["y", "shape", "(8, 7)"]),
        (lambda: ss.two_point(IMAGE, mask=np.ones((8, 7), bool)), ValueError, ["mask", "shape"]),
        (lambda: ss.two_point(np.zeros((3, 8, 8)), mask=np.ones((2, 8, 8), bool)), ValueError, ["mask", "batch"]),
        (lambda: ss.two_point(IMAGE, mask=np.ones((8, 8))), TypeError, ["mask", "boolean"]),
        (lambda: ss.two_point(np.where(IMAGE > 0.5, np.nan, 0.0)), ValueError, ["x", "NaN"]),
        (lambda: ss.two_point(np.where(IMAGE > 0.5, np.inf, 0.0)), ValueError, ["x", "infinite"]),
        (lambda: ss.two_point(IMAGE, IMAGE * np.nan), ValueError, ["y", "NaN"]),
        (lambda: ss.two_point(IMAGE, cutoff=-1), ValueError, ["cutoff", ">= 0"]),
        (lambda: ss.two_point(IMAGE, cutoff=2.5), TypeError, ["cutoff", "int"]),
        (lambda: ss.two_point(IMAGE, cutoff=(2, 3, 4)), ValueError, ["cutoff", "per spatial axis"]),
        (lambda: ss.two_point(IMAGE, cutoff=True), TypeError, ["cutoff"]),
        (lambda: ss.two_point(np.zeros((0, 8))), ValueError, ["x", "empty"]),
        (lambda: ss.two_point(IMAGE + 1j), TypeError, ["x", "complex"]),
        (lambda: ss.two_point(torch.zeros(4, 4, dtype=torch.complex64)), TypeError, ["x", "complex"]),
        (lambda: ss.two_point(np.array(["a", "b"])), TypeError, ["x", "numeric"]),
        (lambda: ss.two_point(IMAGE, backend="cuda-magic"), ValueError, ["backend", "fft"]),
        (lambda: ss.two_point(IMAGE, periodic="yes"), TypeError, ["periodic", "True or False"]),
        (lambda: ss.two_point(np.arange(64).reshape(8, 8)), ValueError, ["x", "0 and 1", "two_point_all"]),
        (lambda: ss.two_point(IMAGE, torch.from_numpy(IMAGE)), TypeError, ["y", "numpy", "torch"]),
        (lambda: ss.two_point(torch.rand(4, 4), torch.rand(4, 4, dtype=torch.float64)), TypeError, ["y", "dtype"]),
        (lambda: ss.two_point_all(np.array([[0, 1], [-1, 2]])), ValueError, ["x", "negative"]),
        (lambda: ss.two_point_all(np.array([[0, 1], [3, 2]]), n_phases=3), ValueError, ["x", "label 3", "n_phases"]),
        (lambda: ss.two_point_all(np.zeros((2, 3, 4, 4)), n_phases=2), ValueError, ["n_phases", "phase axis"]),
        (lambda: ss.two_point_all(np.zeros((4, 4), int), pairs="some"), ValueError, ["pairs"]),
        (lambda: ss.two_point_all(np.zeros((4, 4), int), pairs=[(0, 5)]), ValueError, ["pair", "phase"]),
        (lambda: ss.two_point_all(np.zeros((4, 4), int), n_phases=2, phases=[2]), ValueError, ["phases"]),
        (
            lambda: two_point_stats(IMAGE[None], IMAGE[None], mask=np.full((1, 8, 8), 2.0)),
            ValueError,
            ["mask", "[0, 1]"],
        ),
        (lambda: two_point_stats(IMAGE, IMAGE[None]), ValueError, ["arr2", "shape"]),
        (lambda: two_point_stats(np.zeros(4), np.zeros(4)), ValueError, ["arr1", "n_samples"]),
    ],
)
def test_bad_input_names_the_argument(call, error, words):
    with pytest.raises(error) as info:
        call()
    for word in words:
        assert word in str(info.value), f"{word!r} not in {info.value!s}"


PRED = torch.rand(2, 1, 8, 8)


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda: ss.two_point_loss(PRED, torch.rand(2, 1, 8, 7)), ValueError, ["target", "shape"]),
        (lambda: ss.two_point_loss(PRED.long(), PRED), TypeError, ["pred", "floating"]),
        (lambda: ss.two_point_loss(PRED, PRED.long()), TypeError, ["target", "floating"]),
        (lambda: ss.two_point_loss(PRED.numpy(), PRED), TypeError, ["pred", "torch.Tensor"]),
        (lambda: ss.two_point_loss(PRED[0, 0], PRED[0, 0]), ValueError, ["pred", "(N, C, *spatial)"]),
        (lambda: ss.two_point_loss(PRED), ValueError, ["target", "target_stats"]),
        (lambda: ss.two_point_loss(PRED, PRED, target_stats=PRED), ValueError, ["exactly one"]),
        (
            lambda: ss.two_point_loss(PRED, target_stats=torch.zeros(2, 1, 3, 3), cutoff=2),
            ValueError,
            ["target_stats", "(2, 1, 5, 5)"],
        ),
        (lambda: ss.two_point_loss(PRED, PRED, distance="l1"), ValueError, ["distance", "l2"]),
        (lambda: ss.two_point_loss(PRED, PRED, reduction="max"), ValueError, ["reduction", "mean"]),
        (
            lambda: ss.two_point_loss(PRED, PRED, cutoff=2, weights=torch.ones(3, 3)),
            ValueError,
            ["weights", "(1, 5, 5)"],
        ),
        (
            lambda: ss.two_point_loss(PRED, PRED, cutoff=2, weights=-torch.ones(5, 5)),
            ValueError,
            ["weights", "non-negative"],
        ),
        (lambda: ss.two_point_loss(PRED * float("nan"), PRED), ValueError, ["pred", "NaN"]),
        (lambda: ss.two_point_loss(PRED, PRED, phases=[1]), ValueError, ["phases"]),
        (lambda: ss.TwoPointLoss(cutoff=-3), ValueError, ["cutoff"]),
    ],
)
def test_bad_loss_input_names_the_argument(call, error, words):
    with pytest.raises(error) as info:
        call()
    for word in words:
        assert word in str(info.value), f"{word!r} not in {info.value!s}"


@requires_cuda
def test_device_mismatch():
    with pytest.raises(ValueError, match="y is on"):
        ss.two_point(torch.rand(4, 4), torch.rand(4, 4, device="cuda"))
    with pytest.raises(ValueError, match="mask is on"):
        ss.two_point(torch.rand(4, 4), mask=torch.ones(4, 4, dtype=torch.bool, device="cuda"))
    with pytest.raises(ValueError, match="target"):
        ss.two_point_loss(PRED, PRED.cuda())


def test_unavailable_backend_says_why(monkeypatch):
    monkeypatch.setitem(_backend._MODULES, "native", "spatialstats._missing_for_test")
    _backend.clear_caches()
    try:
        with pytest.raises(ss.BackendUnavailableError, match=r"native.*cannot import"):
            ss.two_point(IMAGE, backend="native")
        assert "cannot import" in ss.available_backends("cpu")["native"]
    finally:
        monkeypatch.undo()
        _backend.clear_caches()


def test_environment_backend_must_be_known(monkeypatch):
    monkeypatch.setenv("SPATIALSTATS_BACKEND", "warp-drive")
    with pytest.raises(ValueError, match="SPATIALSTATS_BACKEND"):
        ss.two_point(IMAGE)
