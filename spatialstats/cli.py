"""The ``spatialstats`` command: statistics of phase-map files, and the commands other packages add.

Other packages add commands through the entry-point group ``spatialstats.commands``: an entry point
``NAME = "package.module:function"`` makes ``spatialstats NAME``, where ``function(subparsers, name)``
adds the command's parser (the VAE's ``train``, ``evaluate`` and ``data`` come this way from ``model``).
A command whose module cannot be imported stays listed and, when run, says what is missing.
"""

import argparse
import csv
import importlib.metadata
import os
import re
import sys

import numpy as np
import torch

from . import _backend, ops
from .io import PhaseCollection, find_images, image_labels, label_array, read_array, write_label_image
from .plot import pair_name
from .radial import radial_profile

COMMAND_GROUP = "spatialstats.commands"

DESCRIPTION = """\
Exact two-point statistics of microstructure images.

  spatialstats stats IMAGES... --out S2.npz [--plot S2.png] [--radial S2.csv] [--cutoff K] [--no-periodic]
  spatialstats reconstruct IMAGE --out DIR [--shape N N [N]] [--n SAMPLES] [--cutoff K]

S_ij(r) is the probability that a point lies in phase i and the point r pixels away in phase j
(periodic: across the image edge; non-periodic: only pairs inside the image, each displacement
normalised by its number of pairs). The output has 2K + 1 entries per axis; index K + r holds r.
"""

STATS_EPILOG = """\
inputs (files, folders and glob patterns; folders and patterns give their image files, sorted):
  .npy        a 2D label image or 3D label volume of integers 0..n-1 (the value is the phase),
              every phase present (in one of the files)
  .png/.tif   a 2D phase map (a multi-page TIFF is a 3D volume); the distinct grey values or
              colours of all the images, sorted, become phases 0..n-1 (the mapping is printed);
              an alpha channel must be opaque (give invalid regions with --mask)
outputs (.npy or .npz is appended to OUT when it has neither):
  OUT.npy     one image: float64 array (P, *window), the auto-correlation of each chosen phase,
              then with --cross the cross-correlations (i, j), i < j; the order is printed
  OUT.npz     any number of images: stats (N, P, *window), pairs (P, 2), pair_names (P,),
              files (N,), shapes (N, d), volume_fractions (N, phases), phases (names),
              window (d,) half-widths, periodic
  --radial    CSV of the radial curves S(r): bins [r, r + 1 pixel) up to half the smallest image
              side (and the window), columns distance (bin centre), bin_start, bin_end, then one
              per statistic (and image)
  --plot      per image: the phase maps, the S2 maps and the radial curves with phi at r = 0 and
              the asymptote phi_i phi_j; a PNG for one image, a folder of PNGs for several
Images are computed in batches of one shape on --device; without --cutoff the window is the
largest one of distinct displacements that every image has.
examples:
  spatialstats stats alloy.png --cutoff 32 --no-periodic --out alloy_s2.npy --plot alloy_s2.png
  spatialstats stats volume.npy --phases 1 --out s2.npy --radial s2.csv --voxel-size 0.65 --unit um
  spatialstats stats "scans/*.png" --cutoff 64 --out scans.npz --plot scans_figures/
"""

# Fields and statistics of one batch stay under about this many bytes (with the FFT's work space).
BATCH_BYTES = 2**30


def _cutoff(text):
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int or comma-separated ints, got {text!r}") from None
    return values[0] if len(values) == 1 else values


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {text!r}")
    return value


def _read_mask(path, shape):
    array = read_array(path)
    if array.ndim == len(shape) + 1 and array.shape[-1] == 3:
        array = array.max(axis=-1)
    if tuple(array.shape) != tuple(shape):
        raise ValueError(f"{path}: mask shape {tuple(array.shape)} differs from the image shape {tuple(shape)}")
    if not array.any():
        raise ValueError(f"{path}: the mask hides every pixel; it should be non-zero where the image is valid")
    return array != 0


def _progress(total, description):
    """A tqdm progress bar on stderr when there is more than one item (and stderr is a terminal)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit="image", disable=None if total > 1 else True, leave=False)


def _common_window(shapes, cutoff, periodic):
    """The window of every image: ``cutoff`` as given, else the largest of distinct displacements in all of them."""
    if len({len(shape) for shape in shapes}) > 1:
        raise ValueError("the images mix 2D images and 3D volumes; compute their statistics separately")
    smallest = tuple(min(sizes) for sizes in zip(*shapes))
    return ops.resolve_window(cutoff, smallest, periodic)


def _batch_size(args, n_phases, n_pairs, shape, window):
    if args.batch_size is not None:
        return args.batch_size
    # float64 fields and statistics, and about three times as much again for the FFT's spectra
    per_image = 8 * 4 * (n_phases * np.prod(shape) + n_pairs * np.prod(ops.window_shape(window)))
    return max(1, int(BATCH_BYTES // per_image))


def _compute(collection, args, window, mask, device):
    """(stats (N, P, *window), pairs, volume fractions (N, phases)): the images in batches of one shape."""
    n, n_phases = len(collection.files), len(collection.names)
    pairs = ops.check_pairs("all" if args.cross else "auto", ops.check_phases(args.phases, n_phases))
    stats = np.zeros((n, len(pairs), *ops.window_shape(window)))
    fractions = np.zeros((n, n_phases))
    groups = {}
    for index, shape in enumerate(collection.shapes):
        groups.setdefault(shape, []).append(index)
    if mask is not None and set(groups) != {mask.shape}:
        raise ValueError(f"{args.mask}: mask shape {mask.shape} differs from the image shapes {sorted(groups)}")
    mask_t = torch.from_numpy(mask).to(device) if mask is not None else None
    with _progress(n, "statistics") as bar:
        for shape, indices in groups.items():
            size = _batch_size(args, n_phases, len(pairs), shape, window)
            for start in range(0, len(indices), size):
                batch = indices[start : start + size]
                labels = torch.from_numpy(np.stack([collection.labels(i) for i in batch])).to(device)
                fields = torch.zeros(len(batch), n_phases, *shape, dtype=torch.float64, device=device)
                fields.scatter_(1, labels.unsqueeze(1), 1.0)
                result = ops.two_point_all(
                    fields,
                    spatial_dims=len(shape),
                    pairs=pairs,
                    cutoff=window,
                    periodic=args.periodic,
                    mask=mask_t,
                    backend=args.backend,
                )
                stats[batch] = result.stats.cpu().numpy()
                inside = fields if mask_t is None else fields[:, :, mask_t]
                fractions[batch] = inside.flatten(2).mean(2).cpu().numpy()
                bar.update(len(batch))
    return stats, pairs, fractions


def _radial_r_max(shapes, window):
    """Largest radius of the radial curves: half the smallest image side, within the window."""
    r_max = min(min(min(shape) // 2 for shape in shapes), *window)
    if r_max < 1:
        raise ValueError(
            f"--radial and --plot need a window half-width >= 1 and images of >= 2 pixels per axis, window {window}"
        )
    return r_max


def _write_radial(path, curves, pair_names, files, unit):
    columns = [f"{name}" for name in pair_names]
    if len(files) > 1:
        columns = [f"{file}:{name}" for file in files for name in pair_names]
    values = curves.probability.reshape(-1, curves.probability.shape[-1])
    with open(path, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow([f"distance ({unit})", f"bin_start ({unit})", f"bin_end ({unit})", *columns])
        for b in range(len(curves.distance)):
            row = [curves.distance[b], curves.bin_edges[b], curves.bin_edges[b + 1], *values[:, b]]
            writer.writerow([f"{v:.17g}" for v in row])


def _plot_paths(target, files):
    """One PNG path per image: the file ``target`` for one image, else (or when ``target`` is a folder)
    a PNG per image stem in the folder ``target``."""
    folder = os.path.isdir(target) or target.endswith(("/", os.sep))
    if len(files) == 1 and not folder:
        return [target]
    if target.lower().endswith(".png"):
        raise ValueError(f"--plot {target}: several images need a folder for their pictures, not one .png")
    os.makedirs(target, exist_ok=True)
    paths, used = [], set()
    for file in files:
        stem = os.path.splitext(os.path.basename(file))[0]
        name, count = stem, 1
        while name in used:
            count += 1
            name = f"{stem}-{count}"
        used.add(name)
        paths.append(os.path.join(target, f"{name}.png"))
    return paths


def run_stats(args):
    files = find_images(args.images)
    single = len(files) == 1
    out = args.out
    if not out.lower().endswith((".npy", ".npz")):
        out += ".npy" if single else ".npz"  # as numpy's save and savez do
    suffix = out[-4:].lower()
    if suffix == ".npy" and not single:
        raise ValueError(f"--out {args.out}: {len(files)} images need an .npz output (e.g. --out stats.npz)")
    with _progress(len(files), "reading") as bar:
        collection = PhaseCollection(files, on_read=bar.update)
    if any(len(shape) not in (2, 3) for shape in collection.shapes):
        bad = next(f for f, s in zip(files, collection.shapes) if len(s) not in (2, 3))
        raise ValueError(f"{bad}: expected a 2D image or a 3D volume, got shape {collection.shapes[files.index(bad)]}")
    window = _common_window(collection.shapes, args.cutoff, args.periodic)
    r_max = _radial_r_max(collection.shapes, window) if args.radial or args.plot else None
    mask = _read_mask(args.mask, collection.shapes[0]) if args.mask else None
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available here")
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    stats, pairs, fractions = _compute(collection, args, window, mask, device)
    names = [pair_name(pair) for pair in pairs]
    window_text = "x".join(map(str, ops.window_shape(window)))
    shapes = sorted(set(collection.shapes))
    shapes_text = ", ".join("x".join(map(str, shape)) for shape in shapes)
    if single:
        print(f"{files[0]}: {shapes_text}, {len(collection.names)} phases, window {window_text}")
        for phase, name in enumerate(collection.names):
            print(f"  phase {phase} ({name}): volume fraction {fractions[0, phase]:.6f}")
    else:
        print(
            f"{len(files)} images of {len(shapes)} shape(s) ({shapes_text}), "
            f"{len(collection.names)} phases, window {window_text} on {device}"
        )
        for phase, name in enumerate(collection.names):
            column = fractions[:, phase]
            print(
                f"  phase {phase} ({name}): volume fraction mean {column.mean():.6f}, min {column.min():.6f}, "
                f"max {column.max():.6f}"
            )
    if suffix == ".npy":
        np.save(out, stats[0])
    else:
        np.savez(
            out,
            stats=stats,
            pairs=np.array(pairs, dtype=np.int64).reshape(-1, 2),
            pair_names=np.array(names),
            files=np.array(files),
            shapes=np.array(collection.shapes, dtype=np.int64),
            volume_fractions=fractions,
            phases=np.array(collection.names),
            window=np.array(window, dtype=np.int64),
            periodic=np.array(args.periodic),
        )
    print(f"wrote {out}: statistics {', '.join(names)} along axis {0 if suffix == '.npy' else 1}")
    unit = args.unit or ("pixels" if args.voxel_size == 1 else "units")
    if args.radial:
        curves = radial_profile(stats, spatial_dims=len(window), bins=r_max, r_max=r_max, voxel_size=args.voxel_size)
        _write_radial(args.radial, curves, names, files, unit)
        print(f"wrote {args.radial}: radial curves, {len(curves.distance)} bins of 1 pixel")
    if args.plot:
        from .plot import statistics_figure

        paths = _plot_paths(args.plot, files)
        with _progress(len(files), "plots") as bar:
            for index, path in enumerate(paths):
                figure = statistics_figure(
                    collection.labels(index),
                    stats[index],
                    pairs,
                    volume_fractions=fractions[index],
                    phase_names=collection.names,
                    voxel_size=args.voxel_size,
                    unit=unit,
                    map_cutoff=args.cutoff,
                    title=files[index],
                )
                figure.savefig(path, dpi=100)
                bar.update()
        print(f"wrote {args.plot}" if paths == [args.plot] else f"wrote {len(paths)} pictures into {args.plot}")
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
        help="two-point statistics of phase-map images or volumes (files, folders, glob patterns)",
        description="Two-point statistics of every phase of one or many phase maps, written as .npy or .npz "
        "(with radial curves as CSV and pictures as PNG).",
        epilog=STATS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    stats.add_argument(
        "images", nargs="+", help="phase maps: .npy label arrays or .png/.tif(f) images, folders of them, glob patterns"
    )
    stats.add_argument("--out", required=True, help="where to write the statistics: .npy (one image) or .npz")
    stats.add_argument("--plot", help="also draw the phase maps, S2 maps and radial curves (a PNG, or a folder)")
    stats.add_argument("--radial", help="also write the radial curves S(r) to this CSV file")
    stats.add_argument(
        "--voxel-size", type=_positive_float, default=1.0, help="length of a pixel for the radial distances"
    )
    stats.add_argument("--unit", help="unit of --voxel-size for the CSV header and the plots (e.g. um)")
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
    stats.add_argument("--mask", help="file of the images' shape, non-zero where the images are valid")
    stats.add_argument("--phases", type=int, nargs="+", help="only these phases (default: all)")
    stats.add_argument("--cross", action="store_true", help="also the cross-correlations of every pair of phases")
    stats.add_argument("--backend", default="auto", choices=("auto", *_backend.BACKENDS), help="computation backend")
    stats.add_argument(
        "--device", default="auto", choices=("auto", "cpu", "cuda"), help="where to compute (default: cuda if present)"
    )
    stats.add_argument(
        "--batch-size", type=_positive_int, help="images per batch (default: as many as fit in about 1 GiB of fields)"
    )
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
    for entry_point in sorted(importlib.metadata.entry_points(group=COMMAND_GROUP), key=lambda e: e.name):
        add_command(commands, entry_point)
    return parser


def add_command(commands, entry_point):
    """Add the command of an entry point; one whose module fails to import gets a parser that reports why."""
    try:
        add_parser = entry_point.load()
    except ImportError as error:
        reason = import_failure(entry_point, error)
        unavailable = commands.add_parser(entry_point.name, help=f"(unavailable: {reason})", add_help=False)
        unavailable.set_defaults(handler=lambda args: _unavailable(entry_point.name, reason), any_arguments=True)
        return
    add_parser(commands, entry_point.name)


def import_failure(entry_point, error):
    """Why the module of ``entry_point`` did not import: the missing package, or the file in its way."""
    module = entry_point.value.partition(":")[0]
    top = module.partition(".")[0]
    found = sys.modules.get(top)
    if found is not None and module != top and not hasattr(found, "__path__"):
        where = getattr(found, "__file__", None) or "a module"
        return f"{top!r} is {where}, not the package {module} belongs to (rename it or run from another folder)"
    if isinstance(error, ModuleNotFoundError) and error.name:
        missing = error.name.partition(".")[0]
        extra = _extra_requiring(entry_point.dist, missing, preferred=top)
        hint = f" (pip install '{entry_point.dist.name}[{extra}]')" if extra else ""
        return f"{module} needs the package {missing!r}, which is not installed{hint}"
    return f"{module} failed to import: {error}"


def _extra_requiring(dist, package, preferred):
    """The optional-dependency group of distribution ``dist`` that lists ``package`` (``preferred`` if it
    does), or None."""
    extras = []
    for requirement in (dist.requires or []) if dist is not None else []:
        name = re.match(r"[A-Za-z0-9._-]*", requirement).group(0)
        extra = re.search(r"extra\s*==\s*[\"']([^\"']+)", requirement)
        if extra and re.sub(r"[-_.]+", "-", name).lower() == re.sub(r"[-_.]+", "-", package).lower():
            extras.append(extra.group(1))
    return preferred if preferred in extras else next(iter(extras), None)


def _unavailable(name, reason):
    raise ImportError(f"the command {name!r} cannot run: {reason}")


def main(argv=None):
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and not getattr(args, "any_arguments", False):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
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
