"""The main job of ``make demo``: train the demo-cpu VAE and its pixel-loss baseline, evaluate both, write the report.

Writes OUT/statistics-vae/ and OUT/pixel-vae/ (checkpoint.pt, log.json, log.csv) and
OUT/report.md with its PNGs. The same as:

    spatialstats train --preset demo-cpu --out OUT/statistics-vae
    spatialstats train --preset demo-cpu-baseline --out OUT/pixel-vae
    spatialstats evaluate OUT/statistics-vae/checkpoint.pt --baseline OUT/pixel-vae/checkpoint.pt --out OUT
"""

import argparse
import os
import time

from .report import evaluate_checkpoint, finding, write_report
from .train import preset_config, train

RUNS = (("statistics-vae", "demo-cpu"), ("pixel-vae", "demo-cpu-baseline"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="demo_output", help="output folder (default: demo_output)")
    parser.add_argument("--epochs", type=int, help="train this many epochs instead of the preset's")
    parser.add_argument("--n-images", type=int, default=1000, help="held-out images to evaluate (default: 1000)")
    args = parser.parse_args(argv)
    overrides = {} if args.epochs is None else {"epochs": args.epochs}
    started = time.perf_counter()
    checkpoints = []
    for name, preset in RUNS:
        print(f"== training {name} (preset {preset})", flush=True)
        checkpoints.append(train(preset_config(preset, **overrides), os.path.join(args.out, name)))
    trained = time.perf_counter()
    evaluations = [evaluate_checkpoint(path, n_images=args.n_images) for path in checkpoints]
    report = write_report(args.out, evaluations)
    done = time.perf_counter()
    print(finding(*evaluations))
    print(f"wrote {report}; training {trained - started:.0f} s, evaluation and report {done - trained:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
