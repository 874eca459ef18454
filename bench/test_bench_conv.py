"""pytest-benchmark: the convolution backend beside fft and native on this machine's CPU, forward and
forward + backward, one group per case and pass; the forward group also times the weight-gradient
form of the same convolution (``torch.ops.aten.convolution_backward``), which ``spatialstats._conv``
does not use on the CPU:

    OMP_NUM_THREADS=1 python -m pytest bench/test_bench_conv.py --benchmark-only \\
        --benchmark-columns=median,iqr,rounds --benchmark-sort=name

Cases: one 256 x 256 indicator, 8 of 64 x 64, one 32^3 volume and 4 signals of 4096, each periodic
and not, at small and medium cutoffs.
"""

import pytest
import torch

from spatialstats import _conv, _fft, _native

BACKENDS = {"conv": _conv, "fft": _fft, "native": _native}
CASES = {
    "256x256-b1": ((1, 256, 256), (1, 2, 4, 8)),
    "64x64-b8": ((8, 64, 64), (2, 4, 8)),
    "32^3-b1": ((1, 32, 32, 32), (1, 2, 4)),
    "4096-b4": ((4, 4096), (4, 16)),
}
PARAMS = [(case, cutoff) for case, (_, cutoffs) in CASES.items() for cutoff in cutoffs]

pytestmark = pytest.mark.skipif(
    _native.unavailable_reason(torch.device("cpu")) is not None, reason="the native extension is not built"
)


def indicator(case):
    shape = CASES[case][0]
    return (torch.rand(shape[0], 1, *shape[1:], generator=torch.Generator().manual_seed(0)) > 0.5).float()


def weight_gradient_sums(fields, window, periodic):
    """The forward as the weight gradient of a depthwise convolution with a (2k + 1)^d kernel."""
    batch, spatial = fields.shape[0], fields.shape[2:]
    padded = _conv._padded(fields, window, periodic).reshape(1, batch, *(n + 2 * k for n, k in zip(spatial, window)))
    kernel_shape = (batch, 1, *(2 * k + 1 for k in window))
    d = len(spatial)
    _, weight_grad, _ = torch.ops.aten.convolution_backward(
        fields.reshape(1, batch, *spatial),
        padded,
        fields.new_empty(kernel_shape),
        None,
        [1] * d,
        [0] * d,
        [1] * d,
        False,
        [0] * d,
        batch,
        [False, True, False],
    )
    return weight_grad


@pytest.mark.parametrize("periodic", [True, False], ids=["periodic", "open"])
@pytest.mark.parametrize("case, cutoff", PARAMS)
@pytest.mark.parametrize("backend", [*BACKENDS, "conv-weight-gradient"])
def test_forward(benchmark, backend, case, cutoff, periodic):
    benchmark.group = f"{case} forward cutoff {cutoff} {'periodic' if periodic else 'open'}"
    fields = indicator(case)
    window = (cutoff,) * (fields.ndim - 2)
    if backend == "conv-weight-gradient":
        sums = benchmark(weight_gradient_sums, fields, window, periodic)
        expected = _conv._correlation_sums(fields, ((0, 0),), window, periodic)
        torch.testing.assert_close(sums.reshape(expected.shape), expected, rtol=1e-5, atol=1e-2)
    else:
        benchmark(BACKENDS[backend].two_point, fields, pairs=((0, 0),), half_widths=window, periodic=periodic)


@pytest.mark.parametrize("periodic", [True, False], ids=["periodic", "open"])
@pytest.mark.parametrize("case, cutoff", PARAMS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_forward_backward(benchmark, backend, case, cutoff, periodic):
    benchmark.group = f"{case} forward+backward cutoff {cutoff} {'periodic' if periodic else 'open'}"
    fields = indicator(case).requires_grad_()
    window = (cutoff,) * (fields.ndim - 2)
    module = BACKENDS[backend]

    def forward_backward():
        module.two_point(fields, pairs=((0, 0),), half_widths=window, periodic=periodic).sum().backward()

    benchmark(forward_backward)
