"""Draw bench/sweep.py's results: OUT/sweep.png and OUT/summary.md.

sweep.png: median time over the cutoff, one panel per op (loss forward + backward, statistics
forward) and spatial shape, a line per backend (colour) and dtype (solid float32, dashed bfloat16),
at the goal's batch and number of phases. summary.md: the performance goal's checks on the goal
shapes, those bench/sweep.py gave an fft+compile baseline (the direct backends against fft and
fft+compile, auto against the best, peak extra memory against the input size) and, over every
case, how often auto is within 1.1x of the best.

    python bench/plot.py OUT
"""

import argparse
import csv
import os
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

MEASURED = ("fft", "fft+compile", "triton", "native")
COLOURS = {"fft": "tab:blue", "fft+compile": "tab:cyan", "triton": "tab:red", "native": "tab:green", "auto": "black"}
CASE_KEYS = ("op", "batch", "phases", "spatial", "cutoff", "dtype")


def read_rows(folder):
    with open(os.path.join(folder, "sweep.csv")) as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row["median_ms"] = float(row["median_ms"]) if row["median_ms"] else None
        row["cutoff"], row["batch"], row["phases"] = int(row["cutoff"]), int(row["batch"]), int(row["phases"])
    return rows


def by_case(rows):
    """{case key: {backend: row}}."""
    cases = defaultdict(dict)
    for row in rows:
        cases[tuple(row[key] for key in CASE_KEYS)][row["backend"]] = row
    return cases


def plot(rows, path):
    loss_rows = [r for r in rows if r["op"] == "loss"]
    batch = max(r["batch"] for r in loss_rows)
    phases = min(r["phases"] for r in loss_rows)
    shapes = list(dict.fromkeys(r["spatial"] for r in rows))
    ops = ("loss", "stats")
    figure, axes = plt.subplots(len(ops), len(shapes), figsize=(4 * len(shapes), 3.5 * len(ops)), squeeze=False)
    for i, op in enumerate(ops):
        for j, spatial in enumerate(shapes):
            ax = axes[i][j]
            for backend in (*MEASURED, "auto"):
                for dtype, style in (("float32", "-"), ("bfloat16", "--")):
                    points = sorted(
                        (r["cutoff"], r["median_ms"])
                        for r in rows
                        if (r["op"], r["backend"], r["spatial"], r["dtype"], r["batch"], r["phases"])
                        == (op, backend, spatial, dtype, batch, phases)
                        and r["median_ms"] is not None
                    )
                    if points:
                        ax.plot(
                            *zip(*points),
                            style,
                            marker="o",
                            markersize=3,
                            color=COLOURS[backend],
                            label=f"{backend} {dtype}",
                            linewidth=2.5 if backend == "auto" else 1.2,
                            alpha=0.5 if backend == "auto" else 1.0,
                        )
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_title(f"{op}, {spatial}, batch {batch}, {phases} phase(s)", fontsize=9)
            ax.set_xlabel("cutoff")
            ax.set_ylabel("median ms")
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=6, fontsize=8)
    figure.tight_layout(rect=(0, 0.08, 1, 1))
    figure.savefig(path, dpi=120)


def summary(rows):
    cases = by_case(rows)
    device = rows[0]["device"]
    lines = [f"# Benchmark summary ({device})", "", "## Goal shapes (the cases with an fft+compile baseline)", ""]
    lines += [
        "| case | "
        + " | ".join(MEASURED)
        + " | auto (chosen) | best auto could pick; direct vs fft, fft+compile | auto / best | extra MB / input MB |"
    ]
    lines += ["|" + "---|" * (len(MEASURED) + 5)]
    for key in sorted(key for key, row in cases.items() if "fft+compile" in row):
        row = cases[key]
        times = {b: row[b]["median_ms"] for b in MEASURED if b in row and row[b]["median_ms"] is not None}
        choices = {b: t for b, t in times.items() if b != "fft+compile"}  # what auto can pick
        best = min(choices, key=choices.get) if choices else None
        direct = {b: t for b, t in times.items() if b in ("triton", "native")}
        speedups = ", ".join(
            (
                f"{b}: {times['fft'] / t:.2f}x, {times['fft+compile'] / t:.2f}x"
                if "fft+compile" in times
                else f"{b}: {times['fft'] / t:.2f}x"
            )
            for b, t in direct.items()
            if "fft" in times
        )
        auto = row.get("auto", {})
        auto_ratio = f"{auto['median_ms'] / times[best]:.2f}" if best and auto.get("median_ms") else "-"
        memory = "; ".join(f"{b}: {row[b]['peak_extra_mb'] or '-'} / {row[b]['input_mb']}" for b in direct)
        cells = [f"{times[b]:.3f}" if b in times else "-" for b in MEASURED]
        auto_cell = f"{auto.get('median_ms') or '-'} ({auto.get('chosen', '-')})"
        cells += [auto_cell, f"{best}; {speedups or '-'}", auto_ratio, memory or "-"]
        lines.append(f"| {' '.join(map(str, key))} | " + " | ".join(cells) + " |")
    within, total, worst = 0, 0, []
    for key, row in cases.items():
        times = {
            b: row[b]["median_ms"]
            for b in MEASURED
            if b != "fft+compile" and b in row and row[b]["median_ms"] is not None
        }
        auto = row.get("auto", {}).get("median_ms")
        if times and auto:
            total += 1
            ratio = auto / min(times.values())
            within += ratio <= 1.1
            worst.append((ratio, key, row["auto"]["chosen"], min(times, key=times.get)))
    lines += ["", f"## auto within 1.1x of the best measured backend: {within} of {total} cases", ""]
    for ratio, key, chosen, best in sorted(worst, reverse=True)[:10]:
        if ratio > 1.1:
            lines.append(f"- {ratio:.2f}x: {' '.join(map(str, key))}: auto chose {chosen}, best {best}")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="the folder bench/sweep.py wrote")
    args = parser.parse_args(argv)
    rows = read_rows(args.folder)
    plot(rows, os.path.join(args.folder, "sweep.png"))
    text = summary(rows)
    with open(os.path.join(args.folder, "summary.md"), "w") as handle:
        handle.write(text)
    print(text, end="")


if __name__ == "__main__":
    main()
