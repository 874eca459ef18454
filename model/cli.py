"""The VAE's commands of the ``spatialstats`` console script: ``train``, ``evaluate`` and ``data``.

Each ``add_*(subparsers, name)`` adds one command; pyproject.toml registers them in the entry-point
group ``spatialstats.commands``.
"""

import argparse
import dataclasses
import os
import sys

from .data import LineConfig, write_gaussian_images, write_line_images
from .train import (
    PRESET_HELP,
    PRESETS,
    TrainConfig,
    TrainingInterrupted,
    checkpoint_config,
    float_tuple,
    load_checkpoint,
    preset_config,
    train,
)

TRAIN_EPILOG = """\
presets:
{presets}

Every other option overrides one setting of the preset (or, with --resume, of the checkpoint).

examples:
  spatialstats train --preset demo-cpu --out runs/stats
  spatialstats train --preset paper --encoder-weights resnet152-imagenet.pth --out runs/paper
  torchrun --nproc_per_node 4 -m spatialstats.cli train --preset paper --out runs/paper
  spatialstats train --resume runs/paper/checkpoint.pt --epochs 2000
"""

EVALUATE_EPILOG = """\
writes OUT/report.md: the metrics of the model (and of --baseline) beside the paper's, a verdict on the
paper's finding with bootstrap intervals (with --baseline), the line counts of the reconstructions and of
the nearest training images, the nearest training images themselves, the overfitting check and the
volume-fraction differences, with their PNGs. The searches over the training images run on --device.

examples:
  spatialstats evaluate runs/stats/checkpoint.pt --baseline runs/pixel/checkpoint.pt --out report
  spatialstats evaluate runs/stats/checkpoint.pt --data-dir /data/moved/images --out report
"""


def add_config_arguments(parser, cls):
    """One ``--name`` option (default None: not given) for every field of the config dataclass ``cls``."""
    for field in dataclasses.fields(cls):
        if dataclasses.is_dataclass(field.default):
            add_config_arguments(parser, type(field.default))
            continue
        flag = "--" + field.name.replace("_", "-")
        parse, help = field.metadata["parse"], field.metadata["help"]
        if parse is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help)
        else:
            choices = field.metadata["choices"]
            parser.add_argument(
                flag,
                type=parse,
                default=None,
                choices=choices,
                metavar="{" + ",".join(choices) + "}" if choices else field.name.upper(),
                help=help,
            )


def given_settings(args, cls):
    """{field: value} of the options of ``cls`` given on the command line (nested configs as dicts)."""
    settings = {}
    for field in dataclasses.fields(cls):
        if dataclasses.is_dataclass(field.default):
            nested = given_settings(args, type(field.default))
            if nested:
                settings[field.name] = nested
        elif getattr(args, field.name, None) is not None:
            settings[field.name] = getattr(args, field.name)
    return settings


def with_settings(config, settings):
    """``config`` with the given settings replaced (nested configs from dicts)."""
    values = {
        name: with_settings(getattr(config, name), value) if isinstance(value, dict) else value
        for name, value in settings.items()
    }
    return dataclasses.replace(config, **values)


def run_train(args):
    settings = given_settings(args, TrainConfig)
    if args.resume:
        if args.preset:
            raise ValueError("--resume continues the run of the checkpoint with its own settings; drop --preset")
        config = checkpoint_config(load_checkpoint(args.resume), args.resume)
    elif args.preset:
        config = preset_config(args.preset)
    else:
        raise ValueError("give --preset NAME (one of " + ", ".join(PRESETS) + ") or --resume CHECKPOINT")
    config = with_settings(config, settings)
    out = args.out or (os.path.dirname(args.resume) if args.resume else os.path.join("runs", args.preset))
    first_process = int(os.environ.get("RANK", "0")) == 0
    try:
        path = train(config, out, resume=args.resume, device=args.device, progress=not args.no_progress)
    except TrainingInterrupted as stop:
        if first_process:
            print(f"\n{stop}.", file=sys.stderr)
            if stop.checkpoint:
                print(f"resume with: spatialstats train --resume {stop.checkpoint}", file=sys.stderr)
            else:
                print("no epoch was complete, so there is nothing to resume.", file=sys.stderr)
        return 130
    if first_process:
        print(f"wrote {path}")
    return 0


def run_evaluate(args):
    from .report import evaluate_checkpoint, write_report

    if args.n_images < 1:
        raise ValueError(f"--n-images must be >= 1, got {args.n_images}")
    paths = [args.checkpoint] + ([args.baseline] if args.baseline else [])
    evaluations = [
        evaluate_checkpoint(
            path,
            split=args.split,
            n_images=args.n_images,
            device=args.device,
            line_metrics=args.line_metrics,
            data_dir=args.data_dir,
        )
        for path in paths
    ]
    path = write_report(args.out, evaluations)
    print(f"wrote {path}")
    return 0


def run_data(args):
    if args.n < 1:
        raise ValueError(f"--n must be >= 1, got {args.n}")
    if args.kind == "lines":
        lines = with_settings(LineConfig(), given_settings(args, LineConfig))
        write_line_images(args.out, args.n, args.size, lines, args.seed, progress=not args.no_progress)
    else:
        write_gaussian_images(
            args.out,
            args.n,
            args.size,
            args.volume_fractions,
            args.correlation_length,
            args.seed,
            progress=not args.no_progress,
        )
    print(f"wrote {args.n} {args.kind} images under {args.out}")
    return 0


def add_train(subparsers, name="train"):
    presets = "\n".join(f"  {preset:18s} {text}" for preset, text in PRESET_HELP.items())
    parser = subparsers.add_parser(
        name,
        help="train the spatial-statistics VAE (or its pixel-loss baseline)",
        description="Train the VAE of arXiv 2402.11103 from a preset.",
        epilog=TRAIN_EPILOG.format(presets=presets),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--preset", choices=list(PRESETS), help="starting settings (see below)")
    parser.add_argument("--resume", metavar="CHECKPOINT", help="continue the run saved in this checkpoint")
    parser.add_argument("--out", help="output folder (default: runs/PRESET, or the checkpoint's folder)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (epoch lines only)")
    add_config_arguments(parser.add_argument_group("settings"), TrainConfig)
    parser.set_defaults(handler=run_train)


def add_evaluate(subparsers, name="evaluate"):
    parser = subparsers.add_parser(
        name,
        help="the paper's metrics and a report of a trained VAE",
        description="Evaluate a trained VAE (and a baseline) on held-out images.",
        epilog=EVALUATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("checkpoint", help="checkpoint.pt of the model (the statistics-loss VAE)")
    parser.add_argument("--baseline", metavar="CHECKPOINT", help="checkpoint of the model to compare with")
    parser.add_argument("--out", default="report", help="output folder (default: report)")
    parser.add_argument(
        "--split",
        choices=("train", "validation", "test"),
        help="images to use (default: test, or validation for runs without test images, as the paper preset's)",
    )
    parser.add_argument("--n-images", type=int, default=1000, help="how many of them (default: 1000)")
    parser.add_argument(
        "--data-dir",
        help="the data folder of folder datasets, when it moved (default: the checkpoint's, resolved from its folder)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    parser.add_argument(
        "--line-metrics",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="orientation and line counts (default: for line datasets)",
    )
    parser.set_defaults(handler=run_evaluate)


def add_data(subparsers, name="data"):
    parser = subparsers.add_parser(
        name,
        help="write generated microstructures to a folder",
        description="Write generated images (and labels.csv for lines) to a folder.",
    )
    kinds = parser.add_subparsers(dest="kind", metavar="KIND", required=True)
    for kind, help in (
        ("lines", "the paper's line images (PNG, white background, black lines)"),
        ("gaussian", "Gaussian-filtered random microstructures (NPY label images)"),
    ):
        sub = kinds.add_parser(kind, help=help, description=help)
        sub.add_argument("--n", type=int, required=True, help="number of images")
        sub.add_argument("--out", required=True, help="output folder")
        sub.add_argument("--size", type=int, default=224, help="image side in pixels (default: 224)")
        sub.add_argument("--seed", type=int, default=0, help="image i is a function of (seed, i) (default: 0)")
        sub.add_argument("--no-progress", action="store_true", help="no progress bar")
        if kind == "lines":
            add_config_arguments(sub, LineConfig)
        else:
            sub.add_argument(
                "--volume-fractions",
                type=float_tuple,
                default=(0.5,),
                help="fractions of phases 0..n-2, comma-separated (default: 0.5)",
            )
            sub.add_argument("--correlation-length", type=float, default=4.0, help="in pixels (default: 4)")
        sub.set_defaults(handler=run_data)
