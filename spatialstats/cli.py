"""The ``spatialstats`` command: statistics of phase-map files, and the VAE's commands when present."""

import argparse
import os
import sys

import numpy as np

from . import _backend, ops
from .io import RELABEL, check_phase_labels, image_labels, label_array, read_array, write_label_image

DESCRIPTION = """\
Exact two-point statistics of microstructure images.

  spatialstats stats IMAGE --out S2.npy [--plot S2.png] [--cutoff K] [--no-periodic] [--mask MASK]
  spatialstats reconstruct IMAGE --out DIR [--shape N N [N]] [--n SAMPLES] [--cutoff K]

S_ij(r) is the probability that a point lies in phase i and the point r pixels away in phase j
(periodic: across the image edge; non-periodic: only pairs inside the image, each displacement
normalised by its number of pairs). The output has 2K + 1 entries per axis; index K + r holds r.
"""

STATS_EPILOG = """\
inputs:
  .npy        a 2D label image or 3D label volume of integers 0..n-1, every phase present
              (the value is the phase)
  .png/.tif   a 2D phase map (a multi-page TIFF is a 3D volume); its distinct grey values or
              colours, sorted, become phases 0..n-1 (the mapping is printed); an alpha channel
              must be opaque (give invalid regions with --mask)
output:
  OUT.npy     float64 array (P, *window), .npy appended to OUT if missing: the auto-correlation
              of each chosen phase, then with --cross the cross-correlations (i, j), i < j; the
              order is printed
examples:
  spatialstats stats alloy.png --cutoff 32 --no-periodic --out alloy_s2.npy --plot alloy_s2.png
  spatialstats stats volume.npy --phases 1 --out s2.npy
"""


def _cutoff(text):
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int or comma-separated ints, got {text!r}") from None
    return values[0] if len(values) == 1 else values


def _read_labels(path):
    """(labels, phase names) of a phase-map file."""
    array = read_array(path)
    if str(path).lower().endswith(".npy"):
        labels = label_array(array, name=str(path))
        check_phase_labels(np.unique(labels), str(path), f"{RELABEL} (a .png or .tif maps its values to phases)")
        return labels, [str(p) for p in range(int(labels.max()) + 1)]
    labels, values = image_labels(array, name=str(path))
    return labels, [f"value {v}" for v in values]


def _read_mask(path, shape):
    array = read_array(path)
    if array.ndim == len(shape) + 1 and array.shape[-1] == 3:
        array = array.max(axis=-1)
    if tuple(array.shape) != tuple(shape):
        raise ValueError(f"{path}: mask shape {tuple(array.shape)} differs from the image shape {tuple(shape)}")
    return array != 0


def run_stats(args):
    labels, names = _read_labels(args.image)
    if labels.ndim not in (2, 3):
        raise ValueError(f"{args.image}: expected a 2D image or a 3D volume, got shape {labels.shape}")
    mask = _read_mask(args.mask, labels.shape) if args.mask else None
    result = ops.two_point_all(
        labels,
        spatial_dims=labels.ndim,
        phases=args.phases,
        pairs="all" if args.cross else "auto",
        cutoff=args.cutoff,
        periodic=args.periodic,
        mask=mask,
        backend=args.backend,
    )
    stats = result.stats
    inside = mask if mask is not None else np.ones(labels.shape, dtype=bool)
    shape, window = "x".join(map(str, labels.shape)), "x".join(map(str, stats.shape[1:]))
    print(f"{args.image}: {shape}, {len(names)} phases, window {window}")
    for phase, name in enumerate(names):
        print(f"  phase {phase} ({name}): volume fraction {np.mean(labels[inside] == phase):.6f}")
    written = args.out if args.out.endswith(".npy") else f"{args.out}.npy"  # np.save appends .npy
    np.save(written, stats)
    print(f"wrote {written}: statistics {', '.join(f'S{i}{j}' for i, j in result.pairs)} along axis 0")
    if args.plot:
        from .plot import plot_statistics

        plot_statistics(stats, result.pairs, args.plot, title=str(args.image))
        print(f"wrote {args.plot}")
    return 0


RECONSTRUCT_EPILOG = """\
Samples start from noise with the example's exact volume fractions; pixel swaps chosen by the
gradient of the statistics error are kept while the error falls (spatialstats.reconstruct).
A 2D example with a 3D --shape builds a volume whose slices along each axis match it on average.
outputs (in OUT):
  labels.npy          int64 (n, *shape): phases 0..n-1 of every sample
  sample_XX.png       each sample in the example's grey values or colours (volumes: sample_XX.tif,
                      one page per slice across the first axis)
  reconstruction.png  the example and samples, their S2 maps and radial S2 curves
  errors.csv          per sample: the RMS error of the statistics and the volume fraction of each phase
examples:
  spatialstats reconstruct examples/nanoporous_gold_128.png --shape 256 256 --n 8 --out recon/
  spatialstats reconstruct examples/nanoporous_gold_128.png --shape 64 64 64 --iterations 150 --out volume/
"""


def run_reconstruct(args):
    from .plot import plot_reconstruction
    from .reconstruct import reconstruct

    if str(args.example).lower().endswith(".npy"):
        labels = label_array(read_array(args.example), name=str(args.example))
        top = max(int(labels.max()), 1)
        values = [round(255 * p / top) for p in range(top + 1)]
    else:
        labels, values = image_labels(read_array(args.example), name=str(args.example))
    if labels.ndim not in (2, 3):
        raise ValueError(f"{args.example}: expected a 2D image or a 3D volume, got shape {labels.shape}")
    shape = tuple(args.shape) if args.shape else labels.shape
    result = reconstruct(
        labels,
        shape=shape,
        n_samples=args.n,
        spatial_dims=labels.ndim,
        cutoff=args.cutoff,
        periodic=args.periodic,
        pairs=args.pairs,
        iterations=args.iterations,
        tolerance=args.tolerance,
        device=args.device,
        seed=args.seed,
        backend=args.backend,
    )
    os.makedirs(args.out, exist_ok=True)
    np.save(os.path.join(args.out, "labels.npy"), result.labels)
    suffix = "png" if len(shape) == 2 else "tif"
    for i, sample in enumerate(result.labels):
        write_label_image(os.path.join(args.out, f"sample_{i:02d}.{suffix}"), sample, values)
    n_phases = len(values)
    options = dict(n_phases=n_phases, pairs=result.pairs, cutoff=args.cutoff, periodic=args.periodic)
    example_stats = ops.two_point_all(labels, spatial_dims=labels.ndim, **options).stats
    sample_stats = ops.two_point_all(result.labels, spatial_dims=len(shape), **options).stats
    if len(shape) > labels.ndim:  # the mean statistics of the slices across each axis: the planes r_a = 0
        k = args.cutoff
        sample_stats = (sample_stats[:, :, k] + sample_stats[:, :, :, k] + sample_stats[:, :, :, :, k]) / 3
    figure = os.path.join(args.out, "reconstruction.png")
    plot_reconstruction(labels, result.labels, example_stats, sample_stats, result.pairs, figure, errors=result.error)
    fractions = [np.bincount(sample.ravel(), minlength=n_phases) / sample.size for sample in result.labels]
    with open(os.path.join(args.out, "errors.csv"), "w") as table:
        table.write("sample,rms_error," + ",".join(f"fraction_{p}" for p in range(n_phases)) + "\n")
        for i, (error, f) in enumerate(zip(result.error, fractions)):
            table.write(f"{i},{error:.6g}," + ",".join(f"{v:.6f}" for v in f) + "\n")
    target = np.bincount(labels.ravel(), minlength=n_phases) / labels.size
    print(f"{args.example}: {'x'.join(map(str, labels.shape))}, {n_phases} phases, fractions {np.round(target, 4)}")
    print(
        f"{len(result.labels)} samples of {'x'.join(map(str, shape))} after {len(result.history) - 1} steps: "
        f"RMS error of {len(result.pairs)} statistics (|r| <= {args.cutoff}) {result.error.min():.2e} to "
        f"{result.error.max():.2e}, largest volume-fraction difference {np.abs(np.array(fractions) - target).max():.2e}"
    )
    print(f"wrote labels.npy, sample_XX.{suffix}, reconstruction.png and errors.csv to {args.out}")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="spatialstats", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    stats = commands.add_parser(
        "stats",
        help="two-point statistics of a phase-map image or volume",
        description="Two-point statistics of every phase of a phase map, written as .npy (and .png).",
        epilog=STATS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    stats.add_argument("image", help="phase map: .npy label array, or .png/.tif(f) image")
    stats.add_argument("--out", required=True, help="where to write the statistics (.npy)")
    stats.add_argument("--plot", help="also draw the S2 maps into this PNG")
    stats.add_argument(
        "--cutoff",
        type=_cutoff,
        default=None,
        help="window half-width K in pixels, or one per axis as K0,K1[,K2] (default: every distinct displacement)",
    )
    stats.add_argument(
        "--periodic",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="wrap pairs around the image edges (default) or, with --no-periodic, count only pairs inside the image",
    )
    stats.add_argument("--mask", help="file of the image's shape, non-zero where the image is valid")
    stats.add_argument("--phases", type=int, nargs="+", help="only these phases (default: all)")
    stats.add_argument("--cross", action="store_true", help="also the cross-correlations of every pair of phases")
    stats.add_argument("--backend", default="auto", choices=("auto", *_backend.BACKENDS), help="computation backend")
    stats.set_defaults(handler=run_stats)
    recon = commands.add_parser(
        "reconstruct",
        help="statistically equivalent microstructures from an example phase map",
        description="Label images whose two-point statistics (every auto- and cross-correlation) match an example's.",
        epilog=RECONSTRUCT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    recon.add_argument("example", help="phase map: .npy label array, or .png/.tif(f) image (2D, or a 3D volume)")
    recon.add_argument("--out", required=True, help="folder for the samples, the figure and the errors")
    recon.add_argument("--shape", type=int, nargs="+", help="size of a sample, 2 or 3 ints (default: the example's)")
    recon.add_argument("--n", type=int, default=1, help="number of samples, reconstructed together (default 1)")
    recon.add_argument("--cutoff", type=int, default=16, help="match displacements |r_a| <= K pixels (default 16)")
    recon.add_argument(
        "--periodic",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="periodic statistics (default) or, with --no-periodic, statistics of pairs inside the image",
    )
    recon.add_argument("--pairs", choices=("all", "auto"), default="all", help="match cross-correlations too (all)")
    recon.add_argument("--iterations", type=int, default=1000, help="largest number of swap steps (default 1000)")
    recon.add_argument("--tolerance", type=float, default=0.0, help="stop a sample at this RMS error (default 0)")
    recon.add_argument("--seed", type=int, default=0, help="seed of the random starts (default 0)")
    recon.add_argument("--device", help="torch device to compute on (default: cpu)")
    recon.add_argument("--backend", default="auto", choices=("auto", *_backend.BACKENDS), help="computation backend")
    recon.set_defaults(handler=run_reconstruct)
    try:
        from model.cli import add_commands
    except ImportError:
        add_commands = None
    if add_commands is not None:
        add_commands(commands)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.handler(args)
    except (ValueError, TypeError, ImportError, OSError, _backend.BackendUnavailableError) as error:
        print(f"spatialstats {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
