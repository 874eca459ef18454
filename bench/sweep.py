"""Benchmark sweep of the backends: the loss (forward + backward) and the statistics (forward).

Backends: every available one of ``spatialstats._backend.BACKENDS`` but the float64 reference;
"fft+compile", the fft backend's loss under torch.compile (a baseline, on the goal shapes only:
each shape compiles anew); and "auto", a copy of the row of the backend it picks (``chosen``).
Shapes: batch {64, 256} x phases {1, 3} x {64^2, 128^2, 256^2, 64^3} x cutoff {4, 8, 16, 32} x
{float32, bfloat16}, periodic, auto-correlation pairs; the goal shapes first (loss, batch 256,
1 phase, 128^2, cutoff 8 and 16). ``--quick``: a few small shapes, for the CPU (Triton there in
the interpreter: TRITON_INTERPRET=1).

Each case runs what ``spatialstats.two_point_loss`` runs after its argument checks,
``spatialstats._backend.dispatch`` with the backend named: "l2", mean over the batch, then backward.
Time: the median of CUDA-event timings after a warm-up call (wall clock on the CPU). Memory (CUDA):
the peak allocated during one call beyond what was allocated before it (the inputs, the target
statistics) and beyond the gradient of the prediction.

    python bench/sweep.py OUT [--device cuda|cpu] [--quick] [--budget-s 300]

writes OUT/sweep.csv and OUT/cost_model.txt (the COST_MODEL ratios fitted to the statistics rows);
``python bench/plot.py OUT`` draws the CSV.
"""

import argparse
import csv
import itertools
import os
import statistics
import sys
import time

import torch

from spatialstats import _backend

FULL = dict(
    batches=(64, 256), phases=(1, 3), spatial=((64, 64), (128, 128), (256, 256), (64, 64, 64)), cutoffs=(4, 8, 16, 32)
)
QUICK = dict(batches=(2,), phases=(1, 2), spatial=((12, 12), (4, 4, 4)), cutoffs=(1, 2))
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
FIELDS = [
    "op",
    "backend",
    "chosen",
    "device",
    "batch",
    "phases",
    "spatial",
    "cutoff",
    "dtype",
    "median_ms",
    "peak_extra_mb",
    "input_mb",
    "note",
]
DIRECT_BACKENDS = ("triton", "native")
MAX_DIRECT_MULTIPLY_ADDS = {"cuda": 3e12, "cpu": 1e8}  # skip a direct backend beyond this


def is_goal(case, quick):
    """The goal shapes: the loss at batch 256, 1 phase, 128^2, cutoff 8 and 16 (quick: the first shape)."""
    op, batch, phases, spatial, cutoff, _ = case
    if quick:
        return (op, batch, phases, spatial, cutoff) == ("loss", 2, 1, QUICK["spatial"][0], QUICK["cutoffs"][0])
    return (op, batch, phases, spatial) == ("loss", 256, 1, (128, 128)) and cutoff in (8, 16)


def cases(quick):
    grid = QUICK if quick else FULL
    product = itertools.product(
        ("loss", "stats"), grid["batches"], grid["phases"], grid["spatial"], grid["cutoffs"], DTYPES
    )
    return sorted(product, key=lambda case: not is_goal(case, quick))


def step_function(backend, op, pred, target_stats, pairs, window):
    """A callable running one case on ``backend`` (a backend name, or "fft+compile")."""
    options = dict(pairs=pairs, half_widths=window, periodic=True)
    if backend == "fft+compile":
        compiled = torch.compile(lambda p, t: _backend.dispatch(p, target_stats=t, backend="fft", **options).mean())
        return lambda: compiled(pred, target_stats).backward()
    if op == "stats":
        return lambda: _backend.dispatch(pred, backend=backend, **options)
    return lambda: _backend.dispatch(pred, target_stats=target_stats, backend=backend, **options).mean().backward()


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(step, device):
    """Seconds of one call: CUDA events on a GPU, wall clock on the CPU."""
    if device.type != "cuda":
        start = time.perf_counter()
        step()
        return time.perf_counter() - start
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    step()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3


def measure(step, device, pred, seconds_per_case):
    """(median seconds, peak extra bytes or None): a warm-up call, then up to 10 timed calls."""
    pred.grad = None
    step()
    synchronize(device)
    peak = None
    if device.type == "cuda":
        pred.grad = None
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        first = timed(step, device)
        gradient = 0 if pred.grad is None else pred.grad.numel() * pred.grad.element_size()
        peak = torch.cuda.max_memory_allocated(device) - before - gradient
    else:
        first = timed(step, device)
    times = [first]
    for _ in range(max(0, min(9, int(seconds_per_case / max(first, 1e-6))))):
        pred.grad = None
        times.append(timed(step, device))
    return statistics.median(times), peak


def run(out, device, quick, budget_s):
    device = torch.device(device)
    names = [
        name for name in _backend.BACKENDS if name != "reference" and _backend.unavailable_reason(name, device) is None
    ]
    print(f"device {device}: backends {names}", flush=True)
    rows, started = [], time.perf_counter()
    seconds_per_case = 0.05 if quick else 0.1
    for op, batch, phases, spatial, cutoff, dtype_name in cases(quick):
        window = (cutoff,) * len(spatial)
        pairs = tuple((p, p) for p in range(phases))
        generator = torch.Generator().manual_seed(0)
        pred = torch.rand((batch, phases, *spatial), generator=generator).to(device, DTYPES[dtype_name])
        pred.requires_grad_(op == "loss")
        target = (torch.rand((batch, phases, *spatial), generator=generator) < 0.5).to(device, torch.float32)
        target_stats = _backend.dispatch(target, pairs=pairs, half_widths=window, periodic=True, backend="fft")
        del target
        base = dict(
            op=op,
            device=str(device),
            batch=batch,
            phases=phases,
            spatial="x".join(map(str, spatial)),
            cutoff=cutoff,
            dtype=dtype_name,
            input_mb=round(pred.numel() * pred.element_size() / 2**20, 3),
        )
        backends = {name: name for name in names}
        if op == "loss" and is_goal((op, batch, phases, spatial, cutoff, dtype_name), quick):
            backends["fft+compile"] = "fft+compile"
        for name, backend in backends.items():
            row = dict(base, backend=name, chosen="", median_ms="", peak_extra_mb="", note="")
            direct = _backend.direct_cost(batch, phases, spatial, window) * (3 if op == "loss" else 1)
            if time.perf_counter() - started > budget_s:
                row["note"] = "time budget"
            elif name in DIRECT_BACKENDS and direct > MAX_DIRECT_MULTIPLY_ADDS[device.type]:
                row["note"] = f"skipped: {direct:.1e} multiply-adds"
            else:
                try:
                    step = step_function(backend, op, pred, target_stats, pairs, window)
                    with torch.no_grad() if op == "stats" else torch.enable_grad():
                        seconds, peak = measure(step, device, pred, seconds_per_case)
                    row["median_ms"] = round(seconds * 1e3, 4)
                    row["peak_extra_mb"] = "" if peak is None else round(peak / 2**20, 3)
                except Exception as error:
                    row["note"] = f"{type(error).__name__}: {str(error).splitlines()[0][:120]}"
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
            rows.append(row)
            print(
                f"{op:5s} {name:12s} b{batch} c{phases} {base['spatial']:>9s} k{cutoff:<2d} {dtype_name:8s} "
                f"{row['median_ms'] or '-':>10} ms  {row['peak_extra_mb'] or '-':>9} MB  {row['note']}",
                flush=True,
            )
        kind = "distance:stats:l2:unweighted" if op == "loss" else "statistics"
        chosen = _backend.backend_name("auto", _backend.call_key(kind, pred, pairs, window, True, None, op == "loss"))
        auto = next(
            (dict(r) for r in rows[-len(backends) :] if r["backend"] == chosen),
            dict(base, median_ms="", peak_extra_mb="", note="not measured"),
        )
        rows.append(dict(auto, backend="auto", chosen=chosen))
        del pred, target_stats
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "sweep.csv"), "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    fitted = fit_cost_model(rows, device)
    with open(os.path.join(out, "cost_model.txt"), "w") as handle:
        handle.write(fitted)
    print(fitted, end="")
    print(f"wrote {os.path.join(out, 'sweep.csv')} ({len(rows)} rows) in {time.perf_counter() - started:.0f} s")


def fit_cost_model(rows, device):
    """COST_MODEL ratios: the median over the statistics rows of
    (seconds / direct cost) / (fft seconds / fft cost), per direct backend."""
    fft_seconds = {}
    for row in rows:
        if row["op"] == "stats" and row["backend"] == "fft" and row["median_ms"] != "":
            fft_seconds[(row["batch"], row["phases"], row["spatial"], row["cutoff"], row["dtype"])] = (
                row["median_ms"] / 1e3
            )
    lines = [f"# COST_MODEL ratios fitted to {len(fft_seconds)} fft statistics rows on {device}\n"]
    for name in DIRECT_BACKENDS:
        ratios = []
        for row in rows:
            key = (row["batch"], row["phases"], row["spatial"], row["cutoff"], row["dtype"])
            if row["op"] != "stats" or row["backend"] != name or row["median_ms"] == "" or key not in fft_seconds:
                continue
            spatial = tuple(int(n) for n in row["spatial"].split("x"))
            window = (row["cutoff"],) * len(spatial)
            pairs = [(p, p) for p in range(row["phases"])]
            direct = _backend.direct_cost(row["batch"], len(pairs), spatial, window)
            fft = _backend.fft_cost(row["batch"], row["phases"], len(pairs), spatial, window, True)
            ratios.append((row["median_ms"] / 1e3 / direct) / (fft_seconds[key] / fft))
        if ratios:
            spread = f"median of {len(ratios)} rows, range {min(ratios):.3g} to {max(ratios):.3g}"
            lines.append(f'("{name}", "{device.type}"): {statistics.median(ratios):.3g}  # {spread}\n')
    return "".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="folder for sweep.csv and cost_model.txt")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="a few small shapes (for the CPU)")
    parser.add_argument("--budget-s", type=float, default=300.0, help="stop measuring after this many seconds")
    args = parser.parse_args(argv)
    run(args.out, args.device, args.quick, args.budget_s)


if __name__ == "__main__":
    sys.exit(main())
