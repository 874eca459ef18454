"""Reconstruction from target statistics: spatialstats.reconstruct beside MCRpy, time and error in one run.

MCRpy (TensorFlow) is no dependency of spatialstats. Install it into an environment of its own, with
the TensorFlow and numpy of its time (MCRpy 0.2.0 calls numpy functions that numpy 2 removed):

    python -m venv mcrpy-env
    mcrpy-env/bin/pip install mcrpy==0.2.0 "tensorflow==2.16.*" "numpy<2" "ml_dtypes<0.4"
    python bench/reconstruct_vs_mcrpy.py --mcrpy-python mcrpy-env/bin/python --out bench/results/reconstruct

Each MCRpy reconstruction runs in a subprocess of that interpreter: this file with --mcrpy-worker,
which imports only numpy, TensorFlow and MCRpy, so neither environment needs the other's packages.
The worker characterises the example with MCRpy's FFTCorrelations descriptor (limit_to 17: the
window |r| <= 16 that ours matches), reconstructs with MCRpy's defaults (L-BFGS-B, 500 iterations,
single-phase encoding, random start seeded), binarises with MCRpy's own decode_phases (rounding)
and times mcrpy.reconstruct alone (wall and CPU seconds; the TensorFlow import and the
characterisation are left out). Ours run in this process after a warm-up call (one-time imports
left out). Both run on one thread (TensorFlow's intra- and inter-op pools set to 1,
torch.set_num_threads(1)), one after the other on the same target.

Errors are computed here for both in the same way, in float64: the RMS over |r| <= 16 of the
periodic S2 of phase 1 against the example's (three phases: of every auto- and cross-correlation;
a volume: of the mean statistics of its slices across each axis, over the three axes), and the
volume-fraction error |f - f_example| of phase 1 (largest phase for three), absolute in percentage
points and relative to f_example. Without an MCRpy interpreter (or when MCRpy does not import
there) its rows are left out. The machine may be shared: the load averages at the start and the
end are written with the results; compare the two methods within one run.

Writes OUT/results.csv and OUT/results.md.
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(HERE, os.pardir, "examples")
CUTOFF = 16


def mcrpy_worker(example_path, out_path, iterations, seed):
    """Run MCRpy on a 2-phase example (.npy); save the binarised result; print the timings as JSON."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import mcrpy

    example = np.load(example_path).astype(np.float64)
    np.random.seed(seed)  # noqa: NPY002 (MCRpy draws its start from numpy's global generator)
    tf.random.set_seed(seed)
    microstructure = mcrpy.Microstructure(example, use_multiphase=False)
    options = dict(descriptor_types=["FFTCorrelations"], limit_to=CUTOFF + 1, use_multiphase=False)
    descriptor = mcrpy.characterize(microstructure, mcrpy.CharacterizationSettings(**options))
    settings = mcrpy.ReconstructionSettings(max_iter=iterations, **options)
    wall, cpu = time.perf_counter(), time.process_time()
    _, result = mcrpy.reconstruct(descriptor, example.shape, settings=settings)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    np.save(out_path, result.decode_phases().astype(np.int64))
    print(json.dumps({"wall": wall, "cpu": cpu}))


def run_mcrpy(python, example, iterations, seed):
    """(labels (1, *shape), wall s, CPU s) of MCRpy in a subprocess of ``python``."""
    with tempfile.TemporaryDirectory() as folder:
        source, result = os.path.join(folder, "example.npy"), os.path.join(folder, "result.npy")
        np.save(source, example)
        command = [python, os.path.abspath(__file__), "--mcrpy-worker", source, result, str(iterations), str(seed)]
        env = dict(os.environ, OMP_NUM_THREADS="1", TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1")
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"MCRpy worker failed:\n{done.stderr[-3000:]}")
        times = json.loads(done.stdout.strip().splitlines()[-1])
        return np.load(result)[None], times["wall"], times["cpu"]


def mcrpy_available(python):
    done = subprocess.run([python, "-c", "import mcrpy"], capture_output=True, text=True, check=False)
    return done.returncode == 0


def read_example(name):
    from spatialstats.io import image_labels, read_array

    return image_labels(read_array(os.path.join(EXAMPLES, name)), name=name)[0]


def errors(samples, example, pairs):
    """(RMS per sample, volume-fraction error per sample): see the module docstring."""
    import spatialstats as ss

    n_phases = int(example.max()) + 1
    options = dict(n_phases=n_phases, pairs=pairs, cutoff=CUTOFF, backend="fft")
    target = ss.two_point_all(example, **options).stats
    if samples.ndim == example.ndim + 2:  # volumes from a 2D example: slices across each axis
        squares = []
        for axis in range(3):
            slices = np.moveaxis(samples, axis + 1, 1)
            stats = ss.two_point_all(slices, **options).stats.mean(1)
            squares.append(((stats - target) ** 2).reshape(len(samples), -1))
        rms = np.sqrt(np.concatenate(squares, axis=1).mean(1))
    else:
        stats = ss.two_point_all(samples, **options).stats
        rms = np.sqrt(((stats - target) ** 2).reshape(len(samples), -1).mean(1))
    phase = 1 if n_phases == 2 else int(np.argmax(np.bincount(example.ravel())))
    f_example = np.mean(example == phase)
    f_samples = (samples == phase).reshape(len(samples), -1).mean(1)
    return rms, np.abs(f_samples - f_example), f_example


def run_ours(example, shape, n_samples, seed, **options):
    import spatialstats as ss

    wall, cpu = time.perf_counter(), time.process_time()
    result = ss.reconstruct(
        example, shape=shape, n_samples=n_samples, cutoff=CUTOFF, seed=seed, progress=False, **options
    )
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return result.labels, wall, cpu, len(result.history) - 1


CASES = [
    # name, example file, sample shape, samples, MCRpy too, options of ours
    ("2-phase 128^2, micrograph crop A", "nanoporous_gold_128.png", (128, 128), 1, True, {}),
    ("2-phase 128^2, micrograph crop B", "nanoporous_gold_128b.png", (128, 128), 1, True, {}),
    ("16 samples of 128^2, crop A", "nanoporous_gold_128.png", (128, 128), 16, False, {}),
    ("3-phase 64^2 (autos and crosses)", "composite_3phase_64.png", (64, 64), 1, False, {}),
    ("3D 64^3 from the 2D crop A", "nanoporous_gold_128.png", (64, 64, 64), 1, False, {"iterations": 200}),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mcrpy-python", help="Python of an environment with MCRpy (default: this one)")
    parser.add_argument("--mcrpy-iterations", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cases", type=int, nargs="+", help="indices of CASES to run (default: all)")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "reconstruct"))
    parser.add_argument("--mcrpy-worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mcrpy_worker:
        source, result, iterations, seed = args.mcrpy_worker
        mcrpy_worker(source, result, int(iterations), int(seed))
        return
    import torch

    import spatialstats as ss

    torch.set_num_threads(1)
    python = args.mcrpy_python or sys.executable
    with_mcrpy = mcrpy_available(python)
    print(f"MCRpy: {'with ' + python if with_mcrpy else 'not importable, its rows are left out'}")
    load_start = os.getloadavg()
    ss.reconstruct(read_example("composite_3phase_64.png"), cutoff=3, shape=(8, 8, 8), iterations=2, progress=False)
    rows = []
    for index, (name, file, shape, n_samples, compare, options) in enumerate(CASES):
        if args.cases and index not in args.cases:
            continue
        example = read_example(file)
        pairs = [(1, 1)] if example.max() == 1 else "all"
        runs = []
        if compare and with_mcrpy:
            labels, wall, cpu = run_mcrpy(python, example, args.mcrpy_iterations, args.seed)
            runs.append(("MCRpy 0.2.0 FFTCorrelations, L-BFGS-B", labels, wall, cpu, args.mcrpy_iterations))
        labels, wall, cpu, steps = run_ours(example, shape, n_samples, args.seed, **options)
        runs.append((f"spatialstats.reconstruct{' ' + str(options) if options else ''}", labels, wall, cpu, steps))
        for method, labels, wall, cpu, steps in runs:
            rms, fraction_error, f_example = errors(labels, example, pairs)
            row = {
                "case": name,
                "method": method,
                "shape": "x".join(map(str, shape)),
                "samples": len(labels),
                "iterations": steps,
                "wall_s": round(wall, 3),
                "cpu_s": round(cpu, 3),
                "s2_rms_max": float(rms.max()),
                "s2_rms_mean": float(rms.mean()),
                "vf_error_points_max": float(100 * fraction_error.max()),
                "vf_error_relative_percent_max": float(100 * fraction_error.max() / f_example),
            }
            rows.append(row)
            print(
                f"{name} | {method}: {wall:.2f} s wall, {cpu:.2f} s CPU, {steps} iterations, S2 RMS max "
                f"{rms.max():.2e}, vf error {100 * fraction_error.max():.3f} points",
                flush=True,
            )
    load_end = os.getloadavg()
    write(rows, args.out, load_start, load_end, torch.__version__)


def write(rows, out, load_start, load_end, torch_version):
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "results.csv"), "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        "| case | method | samples | iterations | wall s | CPU s | S2 RMS (max over samples) | "
        "vf error, points (relative) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['case']} | {r['method']} | {r['samples']} | {r['iterations']} | {r['wall_s']:.2f} | "
        f"{r['cpu_s']:.2f} | {r['s2_rms_max']:.2e} | {r['vf_error_points_max']:.3f} "
        f"({r['vf_error_relative_percent_max']:.2f}%) |"
        for r in rows
    ]
    lines += [
        "",
        f"One thread each, torch {torch_version}, CPU. Load average (1, 5, 15 min) at the start "
        f"{tuple(round(v, 1) for v in load_start)}, at the end {tuple(round(v, 1) for v in load_end)}: "
        "wall times on a loaded machine are longer than on an idle one; compare rows of one run.",
    ]
    with open(os.path.join(out, "results.md"), "w") as handle:
        handle.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
