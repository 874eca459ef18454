"""pytest-benchmark: the native backend beside the fft backend on this machine's CPU, on a 256 x 256
indicator for cutoffs 1 to 8, forward and forward + backward (one group per case and pass):

    python -m pytest bench/test_bench_native.py --benchmark-only --benchmark-columns=median,iqr,rounds

The median of each group says where native wins; ``COST_MODEL[("native", "cpu")]`` in
``spatialstats/ops.py`` is calibrated on such measurements.
"""

import pytest
import torch

from spatialstats import _fft, _native

BACKENDS = {"native": _native, "fft": _fft}
CUTOFFS = range(1, 9)

pytestmark = pytest.mark.skipif(
    _native.unavailable_reason(torch.device("cpu")) is not None, reason="the native extension is not built"
)


def indicator():
    return (torch.rand(1, 1, 256, 256, generator=torch.Generator().manual_seed(0)) > 0.5).float()


@pytest.mark.parametrize("periodic", [True, False], ids=["periodic", "open"])
@pytest.mark.parametrize("cutoff", CUTOFFS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_forward(benchmark, backend, cutoff, periodic):
    benchmark.group = f"256x256 forward cutoff {cutoff} {'periodic' if periodic else 'open'}"
    options = dict(pairs=((0, 0),), half_widths=(cutoff, cutoff), periodic=periodic)
    benchmark(BACKENDS[backend].two_point, indicator(), **options)


@pytest.mark.parametrize("periodic", [True, False], ids=["periodic", "open"])
@pytest.mark.parametrize("cutoff", CUTOFFS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_forward_backward(benchmark, backend, cutoff, periodic):
    benchmark.group = f"256x256 forward+backward cutoff {cutoff} {'periodic' if periodic else 'open'}"
    fields = indicator().requires_grad_()
    module = BACKENDS[backend]

    def forward_backward():
        module.two_point(fields, pairs=((0, 0),), half_widths=(cutoff, cutoff), periodic=periodic).sum().backward()

    benchmark(forward_backward)
