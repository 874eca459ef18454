"""Shared test set-up: Triton kernels run in the interpreter on a machine without a GPU."""

import os

import torch

# Must happen before any Triton kernel is imported (triton.jit reads it at decoration time).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np
import pytest

HAS_CUDA = torch.cuda.is_available()
requires_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture
def device():
    return torch.device("cuda" if HAS_CUDA else "cpu")


# Shared by the backend sweeps (test_fft, test_native): the window and mask variants of a case, and
# the comparison with the reference through the backend contract (which takes any window; the
# public functions stop at n - 1).


def concrete_half_widths(cutoff, shape, periodic):
    if cutoff is None:
        return tuple((n - 1) // 2 if periodic else n - 1 for n in shape)
    if cutoff == "size":
        return tuple(n - 1 for n in shape)
    if cutoff == "beyond":
        return tuple(n + 1 for n in shape)
    if cutoff == "per-axis":
        return tuple((n + a) % 4 for a, n in enumerate(shape))
    return (cutoff,) * len(shape)


def make_mask(kind, shape, rng):
    if kind == "none":
        return None
    if kind == "all-true":
        return torch.ones(shape, dtype=torch.bool)
    if kind == "all-false":
        return torch.zeros(shape, dtype=torch.bool)
    return torch.from_numpy(rng.random(shape) < 0.3)


def assert_matches_reference(backend, fields, pairs, half_widths, periodic, mask, tolerance, device="cpu"):
    """Statistics and counts of ``backend`` (fields in their dtype) equal the reference's (float64)."""
    from spatialstats._backend import dispatch

    kwargs = dict(pairs=pairs, half_widths=half_widths, periodic=periodic)
    expected, expected_counts = dispatch(fields.double(), mask=mask, backend="reference", return_counts=True, **kwargs)
    stats, counts = dispatch(
        fields.to(device), mask=None if mask is None else mask.to(device), backend=backend, return_counts=True, **kwargs
    )
    dtype = torch.float64 if fields.dtype == torch.float64 else torch.float32
    assert stats.dtype == dtype and stats.shape == expected.shape and stats.device.type == torch.device(device).type
    torch.testing.assert_close(stats.cpu(), expected.to(dtype), **tolerance)
    torch.testing.assert_close(counts.cpu(), expected_counts, rtol=0, atol=0)
