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


# Shared by the backend sweeps (test_fft, test_native): the cutoff and mask variants of a case.


def concrete_cutoff(cutoff, shape):
    if cutoff == "size":
        return max(shape)
    if cutoff == "beyond":
        return max(shape) + 2
    if cutoff == "per-axis":
        return tuple((n + a) % 4 for a, n in enumerate(shape))
    return cutoff


def make_mask(kind, shape, rng):
    if kind == "none":
        return None
    if kind == "all-true":
        return torch.ones(shape, dtype=torch.bool)
    if kind == "all-false":
        return torch.zeros(shape, dtype=torch.bool)
    return torch.from_numpy(rng.random(shape) < 0.3)
