"""pytest-benchmark: time and peak memory of the statistics of large volumes (fft backend, CPU).

    python -m pytest bench/test_bench_memory.py --benchmark-only -s

Peak memory growth is the process's resident-set high-water mark (VmHWM, reset through
/proc/self/clear_refs before the call) minus the resident set before it; Linux only. The goal is a
growth of at most 3 x (input + output) + 256 MiB, asserted here and stored in extra_info:

- "256^3, 3 phases, all pairs, cutoff 32, open": a float32 one-hot stack (3, 256, 256, 256), its
  6 auto- and cross-correlations over 65^3 displacements;
- "256^3, 1 phase, cutoff None, open": a float32 indicator, every displacement (511^3).
"""

import sys

import pytest
import torch

import spatialstats as ss

MIB = 2**20
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self (Linux)")


def _status(key):
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def peak_growth(function):
    """(result, bytes of resident memory at the peak of ``function()`` beyond before it)."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # reset the high-water mark to the current resident set
    before = _status("VmRSS:")
    result = function()
    return result, _status("VmHWM:") - before


def one_hot_phases():
    labels = torch.randint(0, 3, (256, 256, 256), generator=torch.Generator().manual_seed(0))
    return torch.zeros(3, 256, 256, 256).scatter_(0, labels.unsqueeze(0), 1.0)


def indicator():
    return (torch.rand(256, 256, 256, generator=torch.Generator().manual_seed(0)) > 0.5).float()


CASES = {
    "256^3, 3 phases, all pairs, cutoff 32, open": (
        one_hot_phases,
        lambda x: ss.two_point_all(x, spatial_dims=3, pairs="all", cutoff=32, periodic=False, backend="fft").stats,
    ),
    "256^3, 1 phase, cutoff None, open": (
        indicator,
        lambda x: ss.two_point(x, spatial_dims=3, periodic=False, backend="fft"),
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_large_volume(benchmark, case):
    make, statistics = CASES[case]
    x = make()
    growth = []

    def run():
        result, peak = peak_growth(lambda: statistics(x))
        growth.append(peak)
        return result

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        stats = benchmark.pedantic(run, rounds=1, iterations=1)
    finally:
        torch.set_num_threads(threads)
    sizes = (x.numel() * x.element_size(), stats.numel() * stats.element_size())
    goal = 3 * sum(sizes) + 256 * MIB
    benchmark.group = "large volumes (peak memory)"
    benchmark.extra_info.update(
        input_mib=sizes[0] / MIB, output_mib=sizes[1] / MIB, peak_growth_mib=growth[0] / MIB, goal_mib=goal / MIB
    )
    print(
        f"\n{case}: input {sizes[0] / MIB:.0f} MiB, output {sizes[1] / MIB:.1f} MiB, "
        f"peak growth {growth[0] / MIB:.0f} MiB (goal <= {goal / MIB:.0f} MiB)"
    )
    assert growth[0] <= goal
