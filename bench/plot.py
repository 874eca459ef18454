"""Draw and summarise whatever bench/sweep.py measured: OUT/sweep.png and OUT/summary.md.

sweep.png: median time over the cutoff ("none", the largest window, at its half-width), one panel
per op (loss forward + backward, statistics forward) and spatial shape, a line per backend (colour)
and dtype (solid float32, dashed bfloat16), at the largest batch and fewest phases measured there.
summary.md: the goal shapes (every backend, the best, its speed-up over fft and fft+compile, auto
against the best, peak extra memory against the input); over every case, how often auto is within
1.1x of the best measured backend; the COST_MODEL ratios fitted to the statistics rows; the rows
that failed. A partial CSV (a sweep stopped by its time budget or a lost CUDA context) gives a
partial summary.

    python bench/plot.py OUT
"""

import argparse
import csv
import os
import statistics
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from spatialstats import _backend, ops

CHOICES = ("fft", "triton", "native", "conv")  # the backends auto can pick
MEASURED = (*CHOICES, "fft+compile")
COLOURS = {
    "fft": "tab:blue",
    "fft+compile": "tab:cyan",
    "triton": "tab:red",
    "native": "tab:green",
    "conv": "tab:purple",
    "auto": "black",
}
CASE_KEYS = ("op", "batch", "phases", "spatial", "cutoff", "dtype")


def read_rows(folder):
    """The rows of OUT/sweep.csv (none if there is no such file), with shapes and times parsed
    (median_ms None where not measured)."""
    path = os.path.join(folder, "sweep.csv")
    if not os.path.exists(path):
        return []
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row["median_ms"] = float(row["median_ms"]) if row["median_ms"] else None
        row["batch"], row["phases"] = int(row["batch"]), int(row["phases"])
        row["shape"] = tuple(int(n) for n in row["spatial"].split("x"))
        cutoff = None if row["cutoff"] == "none" else int(row["cutoff"])
        row["half_width"] = max(ops.resolve_window(cutoff, row["shape"], True))
    return rows


def by_case(rows):
    """{case key: {backend: row}}, in the order the sweep measured the cases."""
    cases = defaultdict(dict)
    for row in rows:
        cases[tuple(row[key] for key in CASE_KEYS)][row["backend"]] = row
    return cases


def times_of(case_rows, backends):
    return {b: case_rows[b]["median_ms"] for b in backends if b in case_rows and case_rows[b]["median_ms"] is not None}


def plot(rows, path):
    """Draw the measured rows; False when there is nothing to draw."""
    measured = [r for r in rows if r["median_ms"] is not None]
    if not measured:
        return False
    ops_seen = [op for op in ("loss", "stats") if any(r["op"] == op for r in measured)]
    shapes = list(dict.fromkeys(r["spatial"] for r in measured))
    figure, axes = plt.subplots(
        len(ops_seen), len(shapes), figsize=(4 * len(shapes), 3.5 * len(ops_seen)), squeeze=False
    )
    for i, op in enumerate(ops_seen):
        for j, spatial in enumerate(shapes):
            ax = axes[i][j]
            panel = [r for r in measured if r["op"] == op and r["spatial"] == spatial]
            if not panel:
                ax.set_axis_off()
                continue
            batch = max(r["batch"] for r in panel)
            phases = min(r["phases"] for r in panel if r["batch"] == batch)
            for backend in (*MEASURED, "auto"):
                for dtype, style in (("float32", "-"), ("bfloat16", "--")):
                    points = sorted(
                        (r["half_width"], r["median_ms"])
                        for r in panel
                        if (r["backend"], r["dtype"], r["batch"], r["phases"]) == (backend, dtype, batch, phases)
                    )
                    if points:
                        ax.plot(
                            *zip(*points),
                            style,
                            marker="o",
                            markersize=3,
                            color=COLOURS.get(backend, "tab:gray"),
                            label=f"{backend} {dtype}",
                            linewidth=2.5 if backend == "auto" else 1.2,
                            alpha=0.5 if backend == "auto" else 1.0,
                        )
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_title(f"{op}, {spatial}, batch {batch}, {phases} phase(s)", fontsize=9)
            ax.set_xlabel("cutoff (half-width)")
            ax.set_ylabel("median ms")
    labels = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            labels.setdefault(label, handle)
    figure.legend(labels.values(), labels.keys(), loc="lower center", ncol=6, fontsize=8)
    figure.tight_layout(rect=(0, 0.1, 1, 1))
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True


def goal_table(cases):
    header = [
        *MEASURED,
        "auto (chosen)",
        "best; its speed-up over fft, fft+compile",
        "auto / best",
        "peak MB / input MB",
    ]
    lines = ["| case | " + " | ".join(header) + " |", "|" + "---|" * (len(header) + 1)]
    for key, case_rows in cases.items():
        if next(iter(case_rows.values()))["goal"] != "yes":
            continue
        times = times_of(case_rows, MEASURED)
        choices = times_of(case_rows, CHOICES)
        best = min(choices, key=choices.get) if choices else None
        speedups = "-"
        if best is not None:
            over = [f"{times[base] / times[best]:.2f}x" if base in times else "-" for base in ("fft", "fft+compile")]
            speedups = f"{best}; {', '.join(over)}"
        auto = case_rows.get("auto", {})
        auto_time = auto.get("median_ms")
        ratio = f"{auto_time / times[best]:.2f}" if best and auto_time else "-"
        memory = "; ".join(
            f"{b}: {case_rows[b]['peak_extra_mb']} / {case_rows[b]['input_mb']}"
            for b in MEASURED
            if b in case_rows and case_rows[b]["peak_extra_mb"]
        )
        cells = [f"{times[b]:.3f}" if b in times else "-" for b in MEASURED]
        cells += [
            f"{auto_time:.3f} ({auto.get('chosen') or '-'})" if auto_time else "-",
            speedups,
            ratio,
            memory or "-",
        ]
        lines.append(f"| {' '.join(map(str, key))} | " + " | ".join(cells) + " |")
    return lines


def auto_check(cases):
    """How often auto is within 1.1x of the best measured backend, and the worst misses."""
    ratios = []
    for key, case_rows in cases.items():
        choices = times_of(case_rows, CHOICES)
        auto = case_rows.get("auto", {}).get("median_ms")
        if choices and auto:
            best = min(choices, key=choices.get)
            ratios.append((auto / choices[best], key, case_rows["auto"]["chosen"], best))
    within = sum(ratio <= 1.1 for ratio, *_ in ratios)
    lines = [f"auto within 1.1x of the best measured backend: {within} of {len(ratios)} cases", ""]
    for ratio, key, chosen, best in sorted(ratios, reverse=True)[:10]:
        if ratio > 1.1:
            lines.append(f"- {ratio:.2f}x: {' '.join(map(str, key))}: auto chose {chosen}, best {best}")
    return lines


def fitted_cost_model(rows):
    """COST_MODEL ratios: per direct backend and dtype, the median over the statistics rows of
    (seconds / direct cost) / (fft seconds / fft cost), as ``spatialstats._backend`` models them."""
    stats = [r for r in rows if r["op"] == "stats" and r["median_ms"] is not None]
    fft = {tuple(r[k] for k in CASE_KEYS): r["median_ms"] for r in stats if r["backend"] == "fft"}
    device = rows[0]["device"] if rows else "-"
    lines = [f"COST_MODEL ratios fitted to {len(fft)} fft statistics rows on {device}:", ""]
    groups = defaultdict(list)
    for r in stats:
        key = tuple(r[k] for k in CASE_KEYS)
        if r["backend"] not in ("triton", "native", "conv") or key not in fft:
            continue
        window = ops.resolve_window(None if r["cutoff"] == "none" else int(r["cutoff"]), r["shape"], True)
        pairs = tuple((p, p) for p in range(r["phases"]))
        direct = _backend.direct_cost(r["batch"], len(pairs), r["shape"], window)
        fft_cost = _backend.fft_cost(r["batch"], r["phases"], len(pairs), r["shape"], window, True)
        groups[r["backend"], r["dtype"]].append((r["median_ms"] / direct) / (fft[key] / fft_cost))
    for (backend, dtype), ratios in sorted(groups.items()):
        lines.append(
            f"- {backend}, {dtype}: {statistics.median(ratios):.3g} "
            f"(median of {len(ratios)} rows, range {min(ratios):.3g} to {max(ratios):.3g})"
        )
    return lines


def summary(rows):
    cases = by_case(rows)
    measured = sum(r["median_ms"] is not None for r in rows)
    device = rows[0]["device"] if rows else "-"
    versions = rows[0]["versions"] if rows else "-"
    lines = [f"# Benchmark summary: {device}", "", f"{versions}; {measured} of {len(rows)} rows measured.", ""]
    lines += ["## Goal shapes (median ms)", "", *goal_table(cases), ""]
    lines += ["## auto", "", *auto_check(cases), ""]
    lines += ["## Fitted cost model", "", *fitted_cost_model(rows), ""]
    failed = [r for r in rows if r["median_ms"] is None and not r["note"].startswith("skipped")]
    if failed:
        lines += ["## Failed", ""]
        lines += [f"- {' '.join(str(r[k]) for k in CASE_KEYS)} {r['backend']}: {r['note']}" for r in failed]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="the folder bench/sweep.py wrote")
    args = parser.parse_args(argv)
    rows = read_rows(args.folder)
    if not plot(rows, os.path.join(args.folder, "sweep.png")):
        print("nothing measured to plot")
    text = summary(rows)
    with open(os.path.join(args.folder, "summary.md"), "w") as handle:
        handle.write(text)
    print(text, end="")


if __name__ == "__main__":
    main()
