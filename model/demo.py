"""The main job of ``make demo``: statistics of a generated two-phase microstructure."""

import argparse
import os

import numpy as np

from spatialstats.cli import main as spatialstats_main

from .data import gaussian_microstructure


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="demo_output", help="output folder")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    labels = gaussian_microstructure((256, 256), volume_fractions=(0.35,), correlation_length=5.0, seed=0)
    image = os.path.join(args.out, "microstructure.npy")
    np.save(image, labels)
    return spatialstats_main(
        ["stats", image, "--cutoff", "40", "--cross", "--out", os.path.join(args.out, "s2.npy"),
         "--plot", os.path.join(args.out, "s2.png")]
    )


if __name__ == "__main__":
    raise SystemExit(main())
