"""Benchmark sweep of the backends that cannot lose its data: the loss (forward + backward) and the
statistics (forward), through the library's one dispatch path (``spatialstats._backend.dispatch``).

    python bench/sweep.py OUT [--device cuda|cpu] [--quick] [--budget-s 300] [--compile]

Cases, most valuable first: the goal shapes (batch 256 of 128^2 at cutoffs 8, 16, 4 and None, then
batch 16 of 64^3; one phase, periodic; float32, then bfloat16; for each cutoff the statistics,
then the loss), then a wider grid (batches 64 and 256, 1 and 3 phases, 64^2 to 256^2 and 64^3,
cutoffs 4 to 32). ``--quick``: a few tiny shapes (the CPU; Triton there in its interpreter with
TRITON_INTERPRET=1). Backends: every available one but the reference, and "auto" (``chosen`` says
what it ran); ``--compile`` adds "fft+compile", the fft loss under torch.compile, on the goal shapes
(each shape compiles anew, so it is opt-in). A direct backend beyond a number of multiply-adds per
call is skipped (the row says so).

Each case runs what ``spatialstats.two_point_loss`` runs after its argument checks, ``dispatch``
with ``target_stats`` ("l2", mean over the batch) and its backward, or ``dispatch`` for the
statistics without gradient: a warm-up call (where "auto" measures its candidates), then up to 10 timed calls within a
fraction of a second (--quick: 2), by CUDA events on a GPU and the wall clock on the CPU; median and
minimum. Memory (CUDA): the peak allocated during a call beyond what was allocated before it and
beyond the gradient of the prediction.

It cannot lose its data: every row is appended to OUT/sweep.csv and flushed to disk when measured;
a rerun with the same OUT skips the rows already there and continues (a CSV with other columns is
moved aside first). The time budget is checked before each measurement and stops the sweep
cleanly. A failed case records its error in its row; when the error leaves the CUDA context
unusable (an illegal address, a launch failure: every later call would fail), the sweep stops with
exit status 3 and a rerun in a fresh process continues after that case (bench/gpu_check.sh does
this). ``python bench/plot.py OUT`` draws the CSV and fits the cost model to whatever it holds.
"""

import argparse
import csv
import functools
import itertools
import os
import statistics
import sys
import time
from typing import NamedTuple

import torch

import spatialstats
from spatialstats import _backend, ops

CONTEXT_LOST = 3  # exit status: the CUDA context is unusable; rerun to continue

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
FIELDS = [
    "goal",
    "op",
    "backend",
    "chosen",
    "batch",
    "phases",
    "spatial",
    "cutoff",
    "dtype",
    "median_ms",
    "min_ms",
    "calls",
    "peak_extra_mb",
    "input_mb",
    "device",
    "versions",
    "note",
]
CASE_FIELDS = ("op", "batch", "phases", "spatial", "cutoff", "dtype")
DIRECT_BACKENDS = ("triton", "native", "conv")
MAX_DIRECT_MULTIPLY_ADDS = {"cuda": 5e11, "cpu": 2e8}  # per call (the loss counts 3 passes)
# Timed calls after the warm-up: (at most, until their sum passes these seconds); --quick: the last.
TIMING = {"cuda": (10, 0.2), "cpu": (10, 0.3), "quick": (2, 1.0)}


class Case(NamedTuple):
    op: str  # "stats" (forward) or "loss" (forward + backward)
    batch: int
    phases: int
    spatial: tuple
    cutoff: object  # an int, or None for the largest window
    dtype: str

    def row(self):
        """The case's columns as the CSV writes them."""
        cutoff = "none" if self.cutoff is None else str(self.cutoff)
        return dict(
            op=self.op,
            batch=str(self.batch),
            phases=str(self.phases),
            spatial="x".join(map(str, self.spatial)),
            cutoff=cutoff,
            dtype=self.dtype,
        )


def goal_cases(quick):
    """The goal shapes in order of value: (spatial, batch, cutoffs) groups, float32 first."""
    if quick:
        groups = [((12, 12), 2, (2, None)), ((4, 4, 4), 2, (1,))]
    else:
        groups = [((128, 128), 256, (8, 16, 4, None)), ((64, 64, 64), 16, (4, 8, 16, None))]
    for dtype in DTYPES:
        for spatial, batch, cutoffs in groups:
            for cutoff in cutoffs:
                for op in ("stats", "loss"):
                    yield Case(op, batch, 1, spatial, cutoff, dtype)


def grid_cases(quick):
    if quick:
        product = itertools.product(DTYPES, [(9,)], [3], [2], [2], ("stats", "loss"))
    else:
        spatial = [(64, 64), (128, 128), (256, 256), (64, 64, 64)]
        product = itertools.product(DTYPES, spatial, (1, 3), (64, 256), (4, 8, 16, 32), ("stats", "loss"))
    for dtype, shape, phases, batch, cutoff, op in product:
        yield Case(op, batch, phases, shape, cutoff, dtype)


def cases(quick):
    """Every case once, the goal shapes first."""
    return list(dict.fromkeys(itertools.chain(goal_cases(quick), grid_cases(quick))))


def window_of(case):
    return ops.resolve_window(case.cutoff, case.spatial, True)


def backend_names(device):
    """The backends to time on ``device``: every available one but the reference, then "auto"."""
    reasons = _backend.available_backends(device)
    return [*(name for name, reason in reasons.items() if reason is None and name != "reference"), "auto"]


def options(case):
    """The dispatch arguments of a case: its auto-correlation pairs, window, periodic."""
    return dict(pairs=tuple((p, p) for p in range(case.phases)), half_widths=window_of(case), periodic=True)


def step_function(name, case, pred, target_stats):
    """A callable running one case with backend ``name`` ("fft+compile": the fft loss compiled)."""
    if case.op == "stats":

        def stats_step():
            with torch.no_grad():
                _backend.dispatch(pred, backend=name, **options(case))

        return stats_step
    distance = functools.partial(_backend.dispatch, backend=name, **options(case))
    if name == "fft+compile":
        distance = torch.compile(functools.partial(_backend.dispatch, backend="fft", **options(case)))

    def loss_step():
        distance(pred, target_stats=target_stats).mean().backward()

    return loss_step


def timed(step, device):
    """Seconds of one call: CUDA events on a GPU, the wall clock on the CPU."""
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


def measure(step, device, pred, timing):
    """(seconds of each timed call, peak extra bytes or None): a warm-up call, then ``timing`` calls."""
    pred.grad = None
    step()
    peak = None
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        pred.grad = None
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    times = [timed(step, device)]
    if device.type == "cuda":
        gradient = 0 if pred.grad is None else pred.grad.numel() * pred.grad.element_size()
        peak = torch.cuda.max_memory_allocated(device) - before - gradient
    most, seconds = timing
    while len(times) < most and sum(times) < seconds:
        pred.grad = None
        times.append(timed(step, device))
    return times, peak


def inputs(case, device):
    """(prediction, target statistics) of a case: uniform probabilities against a random indicator."""
    generator = torch.Generator().manual_seed(0)
    shape = (case.batch, case.phases, *case.spatial)
    pred = torch.rand(shape, generator=generator).to(device, DTYPES[case.dtype]).requires_grad_(case.op == "loss")
    target = (torch.rand(shape, generator=generator) < 0.5).to(device, torch.float32)
    return pred, _backend.dispatch(target, backend="fft", **options(case))


def chosen_backend(case, pred):
    """The backend "auto" ran for the case (chosen, and cached, by its first call)."""
    kind = "distance:stats:l2:unweighted" if case.op == "loss" else "statistics"
    arguments = options(case)
    key = _backend.call_key(kind, pred, arguments["pairs"], arguments["half_widths"], True, None, case.op == "loss")
    return _backend.backend_name("auto", key)


def context_usable(device):
    """Whether the device still runs work after an error (a sticky CUDA error makes every call fail)."""
    if device.type != "cuda":
        return True
    try:
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        return torch.ones(1, device=device).add_(1).item() == 2.0
    except Exception:  # any failure here means the context is gone
        return False


def describe(error):
    lines = str(error).strip().splitlines() or [""]
    return f"{type(error).__name__}: {lines[0][:160]}"


def versions(device):
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = "none"
    text = f"spatialstats {spatialstats.__version__}, torch {torch.__version__}, triton {triton_version}"
    return text + (f", CUDA {torch.version.cuda}" if device.type == "cuda" else "")


class Sheet:
    """OUT/sweep.csv, appended to and flushed to disk row by row; the (case, backend) rows it holds."""

    def __init__(self, folder):
        os.makedirs(folder, exist_ok=True)
        self.path = os.path.join(folder, "sweep.csv")
        self.done = set()
        if os.path.exists(self.path):
            with open(self.path, newline="") as handle:
                reader = csv.DictReader(handle)
                if reader.fieldnames == FIELDS:
                    self.done = {self.key(row) for row in reader}
                else:
                    aside = f"{self.path}.{time.strftime('%Y%m%d-%H%M%S')}"
                    print(f"{self.path} has other columns: moved to {aside}", flush=True)
                    os.replace(self.path, aside)
        fresh = not os.path.exists(self.path) or os.path.getsize(self.path) == 0
        self.handle = open(self.path, "a", newline="")  # noqa: SIM115 -- open for the whole sweep
        self.writer = csv.DictWriter(self.handle, fieldnames=FIELDS)
        if fresh:
            self.writer.writeheader()
            self.sync()

    @staticmethod
    def key(row):
        return (*(row[field] for field in CASE_FIELDS), row["backend"])

    def sync(self):
        self.handle.flush()
        os.fsync(self.handle.fileno())

    def append(self, row):
        self.writer.writerow(row)
        self.sync()
        self.done.add(self.key(row))

    def close(self):
        self.handle.close()


def run_case(case, name, device, pred, target_stats, timing):
    """The measured columns of one (case, backend), or the reason it is skipped."""
    direct = _backend.direct_cost(case.batch, case.phases, case.spatial, window_of(case))
    direct *= 3 if case.op == "loss" else 1
    if name in DIRECT_BACKENDS and direct > MAX_DIRECT_MULTIPLY_ADDS[device.type]:
        return dict(note=f"skipped: {direct:.1e} multiply-adds per call")
    times, peak = measure(step_function(name, case, pred, target_stats), device, pred, timing)
    row = dict(chosen=chosen_backend(case, pred) if name == "auto" else "")
    row.update(
        median_ms=f"{statistics.median(times) * 1e3:.4f}",
        min_ms=f"{min(times) * 1e3:.4f}",
        calls=str(len(times)),
        peak_extra_mb="" if peak is None else f"{peak / 2**20:.3f}",
    )
    return row


def report(row):
    print(
        f"{row['op']:5s} {row['backend']:12s} b{row['batch']} c{row['phases']} {row['spatial']:>9s} "
        f"k{row['cutoff']:<4s} {row['dtype']:8s} {row.get('median_ms') or '-':>10} ms "
        f"{row.get('peak_extra_mb') or '-':>9} MB {row.get('chosen') or ''} {row.get('note', '')}",
        flush=True,
    )


def run(out, device, quick, budget_s, compile_fft):
    """Measure every case not yet in OUT/sweep.csv; returns the exit status (0, or CONTEXT_LOST)."""
    device = torch.device(device)
    if os.environ.pop(_backend.BACKEND_ENV, None):
        print(f"ignoring {_backend.BACKEND_ENV}: auto is measured as it chooses", flush=True)
    deadline = time.perf_counter() + budget_s
    names, goals = backend_names(device), set(goal_cases(quick))
    timing = TIMING["quick" if quick else device.type]
    sheet = Sheet(out)
    common = dict(
        device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu", versions=versions(device)
    )
    print(f"{common['device']} ({common['versions']}): backends {names}; {len(sheet.done)} rows done", flush=True)
    measured = 0
    try:
        for case in cases(quick):
            todo = [*names, "fft+compile"] if compile_fft and case.op == "loss" and case in goals else names
            todo = [name for name in todo if Sheet.key({**case.row(), "backend": name}) not in sheet.done]
            if todo and time.perf_counter() > deadline:
                print(f"time budget of {budget_s:.0f} s reached; rerun with the same OUT to continue", flush=True)
                break
            pred = target_stats = input_error = None
            if todo:
                try:
                    pred, target_stats = inputs(case, device)
                except Exception as error:  # recorded in the case's rows, never raised
                    input_error = f"inputs: {describe(error)}"
            for name in todo:
                if time.perf_counter() > deadline:
                    break
                row = dict(case.row(), backend=name, goal="yes" if case in goals else "no", **common)
                failed = input_error is not None
                if failed:
                    row["note"] = input_error
                else:
                    row["input_mb"] = f"{pred.numel() * pred.element_size() / 2**20:.3f}"
                    try:
                        row.update(run_case(case, name, device, pred, target_stats, timing))
                    except Exception as error:  # recorded in its row, never raised
                        row["note"], failed = describe(error), True
                sheet.append(row)
                measured += 1
                report(row)
                if failed and not context_usable(device):
                    print("the CUDA context is unusable after this error; rerun to continue", flush=True)
                    return CONTEXT_LOST
            del pred, target_stats
    finally:
        sheet.close()
        print(f"{measured} rows appended to {sheet.path}", flush=True)
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="folder of sweep.csv (appended to; a rerun continues it)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="a few tiny shapes (for the CPU)")
    parser.add_argument("--budget-s", type=float, default=300.0, help="start no measurement after this many seconds")
    parser.add_argument("--compile", action="store_true", help="also time the fft loss under torch.compile")
    args = parser.parse_args(argv)
    return run(args.out, args.device, args.quick, args.budget_s, args.compile)


if __name__ == "__main__":
    sys.exit(main())
