"""``backend="auto"`` against the faster of fft and native on the CPU benchmark shapes.

    python bench/auto_check.py OUT.csv [--threads 1] [--rounds 15] [--round-ms 5] [--quick]

Cases: the shapes of the CPU benchmarks (``test_bench_native.py``: 256^2, cutoffs 1 to 8; 64^2 as
in ``test_bench_overhead.py``; 64^3 as in ``test_bench_fft.py``), small 3D volumes (4^3 to 16^3)
and 1D signals, periodic and open, statistics forward and forward + backward. Each backend runs
through ``spatialstats.two_point`` (the same per-call work); the first auto call of a case, which
measures, is not timed. Times are the process's CPU time (robust to other jobs on a shared
machine; one thread); the rounds interleave the backends (``--round-ms`` of calls of each in turn)
and each backend's time is its fastest round; ``ratio`` is auto's time over the faster of fft and native.
The summary line gives the largest ratio (goal: <= 1.15).
"""

import argparse
import csv
import itertools
import time

import torch

import spatialstats as ss
from spatialstats import _backend

BACKENDS = ("fft", "native", "auto")


def cases(quick):
    """(spatial shape, batch, cutoff, periodic) of every case."""
    if quick:
        shapes = [((64, 64), 1, (2, 8)), ((4, 4, 4), 8, (1,)), ((1024,), 4, (8,))]
    else:
        shapes = [
            ((64, 64), 1, (1, 2, 4, 8, 16)),
            ((256, 256), 1, (1, 2, 4, 8)),
            ((4, 4, 4), 8, (1, 2)),
            ((8, 8, 8), 8, (1, 2, 3)),
            ((16, 16, 16), 2, (1, 2, 4)),
            ((64, 64, 64), 1, (1, 2)),
            ((64,), 16, (2, 8, 32)),
            ((4096,), 4, (2, 8, 32)),
        ]
    for (spatial, batch, cutoffs), periodic in itertools.product(shapes, (True, False)):
        for cutoff in cutoffs:
            yield spatial, batch, cutoff, periodic


def call(x, backend, cutoff, periodic, grad):
    leaf = x.detach().requires_grad_(grad)
    stats = ss.two_point(leaf, spatial_dims=x.ndim - 1, cutoff=cutoff, periodic=periodic, backend=backend)
    if grad:
        stats.sum().backward()


def fastest(x, cutoff, periodic, grad, rounds, round_s):
    """{backend: seconds per call in its fastest round}, the backends interleaved round by round; a
    round repeats the call for about ``round_s`` seconds."""
    repeats = {}
    for backend in BACKENDS:  # warm-up; auto measures here
        call(x, backend, cutoff, periodic, grad)
        start = time.process_time()
        call(x, backend, cutoff, periodic, grad)
        repeats[backend] = max(1, int(round_s / max(time.process_time() - start, 1e-6)))
    best = dict.fromkeys(BACKENDS, float("inf"))
    for _ in range(rounds):
        for backend in BACKENDS:
            start = time.process_time()
            for _ in range(repeats[backend]):
                call(x, backend, cutoff, periodic, grad)
            best[backend] = min(best[backend], (time.process_time() - start) / repeats[backend])
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="CSV file to write")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--round-ms", type=float, default=5.0, help="CPU time of one backend's calls in a round")
    parser.add_argument("--quick", action="store_true", help="three small cases")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    fields = ["spatial", "batch", "cutoff", "periodic", "pass", "fft_ms", "native_ms", "auto_ms", "chosen", "ratio"]
    worst = 0.0
    with open(args.out, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for spatial, batch, cutoff, periodic in cases(args.quick):
            x = (torch.rand(batch, *spatial, generator=torch.Generator().manual_seed(0)) > 0.5).float()
            for grad in (False, True):
                best = fastest(x, cutoff, periodic, grad, args.rounds, args.round_ms / 1e3)
                ratio = best["auto"] / min(best["fft"], best["native"])
                worst = max(worst, ratio)
                key = _backend.call_key(
                    "statistics", x.unsqueeze(1), ((0, 0),), (cutoff,) * len(spatial), periodic, None, grad
                )
                chosen = _backend.backend_name("auto", key)
                row = dict(
                    spatial="x".join(map(str, spatial)),
                    batch=batch,
                    cutoff=cutoff,
                    periodic=periodic,
                    **{"pass": "forward+backward" if grad else "forward"},
                    fft_ms=round(best["fft"] * 1e3, 4),
                    native_ms=round(best["native"] * 1e3, 4),
                    auto_ms=round(best["auto"] * 1e3, 4),
                    chosen=chosen,
                    ratio=round(ratio, 3),
                )
                writer.writerow(row)
                handle.flush()
                print(" ".join(f"{key}={value}" for key, value in row.items()), flush=True)
    print(f"largest ratio of auto to the faster of fft and native: {worst:.3f} (goal <= 1.15)")


if __name__ == "__main__":
    main()
