"""Shared test set-up: Triton kernels run in the interpreter on a machine without a GPU."""

import os

import torch

# Must happen before any Triton kernel is imported (triton.jit reads it at decoration time).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

HAS_CUDA = torch.cuda.is_available()
requires_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture
def device():
    return torch.device("cuda" if HAS_CUDA else "cpu")
