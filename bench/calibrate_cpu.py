"""Calibrate COST_MODEL[("native", "cpu")]: time native against fft on this CPU and fit the scale.

For every case (2D 64^2 to 512^2, 3D 32^3 and 64^3; batches 1 to 8; 1 or 3 pairs; cutoffs 1 to 16;
periodic or not) it times the statistics forward and forward + backward of both backends (the
fastest of several runs: the least disturbed on a shared machine), then prints the scale that makes
``auto`` agree with the faster backend most often and how often the current COST_MODEL agrees.

    python bench/calibrate_cpu.py [--threads N] [--quick]
"""

import argparse
import time

import torch

from spatialstats import _backend, _fft, _native


def fastest_ms(fn, repeat):
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def timings(module, fields, pairs, window, periodic, repeat):
    """(forward ms, forward + backward ms) of ``module.two_point``."""
    options = dict(pairs=pairs, half_widths=window, periodic=periodic)
    forward = fastest_ms(lambda: module.two_point(fields, **options), repeat)
    leaf = fields.clone().requires_grad_()
    both = fastest_ms(lambda: module.two_point(leaf, **options).sum().backward(), repeat)
    return forward, both


def cases(quick):
    shapes = (
        [(64, 64), (256, 256)] if quick else [(64, 64), (128, 128), (256, 256), (512, 512), (32, 32, 32), (64, 64, 64)]
    )
    for shape in shapes:
        for batch, channels, pairs in [(1, 1, ((0, 0),)), (8, 1, ((0, 0),)), (4, 2, ((0, 0), (1, 1), (0, 1)))]:
            if len(shape) == 3 and batch == 8:
                continue
            cutoffs = [1, 2, 4, 8] if quick else ([1, 2, 3, 4, 6, 8, 12, 16] if len(shape) == 2 else [1, 2, 3, 4, 6])
            for k in cutoffs:
                for periodic in (True, False):
                    yield shape, batch, channels, pairs, k, periodic


def best_scale(rows, metric):
    """(scale, agreements): the COST_MODEL scale that picks the faster backend most often."""
    thresholds = sorted(r["fft_cost"] / r["direct_cost"] for r in rows)
    best = (0, None)
    for threshold in thresholds:
        for scale in (threshold * 0.999, threshold * 1.001):
            agree = sum(
                (scale * r["direct_cost"] < r["fft_cost"]) == (r[f"native_{metric}"] < r[f"fft_{metric}"]) for r in rows
            )
            best = max(best, (agree, scale), key=lambda item: item[0])
    return best[1], best[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--quick", action="store_true", help="fewer cases")
    args = parser.parse_args()
    reason = _native.unavailable_reason(torch.device("cpu"))
    if reason:
        raise SystemExit(f"the native backend is unavailable: {reason}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    print("shape batch pairs k periodic | native fwd, fwd+bwd ms | fft fwd, fwd+bwd ms")
    for shape, batch, channels, pairs, k, periodic in cases(args.quick):
        fields = torch.rand(batch, channels, *shape)
        window = (k,) * len(shape)
        row = dict(
            direct_cost=_backend.direct_cost(batch, len(pairs), shape, window),
            fft_cost=_backend.fft_cost(batch, channels, len(pairs), shape, window, periodic),
        )
        repeat = 5 if row["direct_cost"] > 1e8 else 11
        row["native_fwd"], row["native_fwdbwd"] = timings(_native, fields, pairs, window, periodic, repeat)
        row["fft_fwd"], row["fft_fwdbwd"] = timings(_fft, fields, pairs, window, periodic, repeat)
        rows.append(row)
        print(
            f"{'x'.join(map(str, shape))} {batch} {len(pairs)} {k} {periodic} | "
            f"{row['native_fwd']:.3f}, {row['native_fwdbwd']:.3f} | {row['fft_fwd']:.3f}, {row['fft_fwdbwd']:.3f}",
            flush=True,
        )
    current = _backend.COST_MODEL[("native", "cpu")].ratio / _backend.COST_MODEL[("fft", "cpu")].ratio
    for metric in ("fwd", "fwdbwd"):
        scale, agree = best_scale(rows, metric)
        now = sum(
            (current * r["direct_cost"] < r["fft_cost"]) == (r[f"native_{metric}"] < r[f"fft_{metric}"]) for r in rows
        )
        print(
            f"{metric}: best scale {scale:.3g} agrees in {agree}/{len(rows)} cases; "
            f"current {current:.3g} in {now}/{len(rows)}"
        )


if __name__ == "__main__":
    main()
