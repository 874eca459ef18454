"""The main job of ``make demo``: train the statistics-loss VAE and its pixel-loss baseline of a preset
pair, evaluate both, write the report.

Writes OUT/statistics-vae/ and OUT/pixel-vae/ (checkpoint.pt, log.json, log.csv) and
OUT/report.md with its PNGs. For the demo-cpu pair, the same as:

    spatialstats train --preset demo-cpu --out OUT/statistics-vae
    spatialstats train --preset demo-cpu-baseline --out OUT/pixel-vae
    spatialstats evaluate OUT/statistics-vae/checkpoint.pt --baseline OUT/pixel-vae/checkpoint.pt --out OUT

``--preset hour-cpu`` runs the longer pair (about an hour on an idle 2-core machine).
"""

import argparse
import os
import sys
import time

from .report import evaluate_checkpoint, verdict, write_report
from .train import TrainingInterrupted, preset_config, train

PAIRS = ("demo-cpu", "hour-cpu")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=PAIRS, default="demo-cpu", help="the preset pair (default: demo-cpu)")
    parser.add_argument("--out", default="demo_output", help="output folder (default: demo_output)")
    parser.add_argument("--epochs", type=int, help="train this many epochs instead of the preset's")
    parser.add_argument("--n-images", type=int, default=1000, help="held-out images to evaluate (default: 1000)")
    args = parser.parse_args(argv)
    overrides = {} if args.epochs is None else {"epochs": args.epochs}
    started = time.perf_counter()
    checkpoints = []
    for name, preset in (("statistics-vae", args.preset), ("pixel-vae", f"{args.preset}-baseline")):
        print(f"== training {name} (preset {preset})", flush=True)
        try:
            checkpoints.append(train(preset_config(preset, **overrides), os.path.join(args.out, name)))
        except TrainingInterrupted as stop:
            print(f"\n{stop}; run `make demo` again to start over", file=sys.stderr)
            return 130
    trained = time.perf_counter()
    evaluations = [evaluate_checkpoint(path, n_images=args.n_images) for path in checkpoints]
    report = write_report(args.out, evaluations)
    done = time.perf_counter()
    print(verdict(*evaluations)[1])
    print(f"wrote {report}; training {trained - started:.0f} s, evaluation and report {done - trained:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
