"""Make the example phase maps of this folder (see README.md here for their source and licence).

    pip install aquami==1.1.0 --no-deps   # only for its sample micrograph
    python examples/make_examples.py [--sample PATH/TO/aquami/micrographs/Sample.tif]

nanoporous_gold_128.png: AQUAMI's SEM micrograph of nanoporous gold (1024 x 768, 556 nm wide),
the info bar cut off (rows 690 and below), averaged over 3 x 3 blocks, smoothed (Gaussian,
sigma 1 pixel), thresholded by Otsu's method (pores dark), and cropped at rows 50..177,
columns 100..227: pores white (phase 1), gold black (phase 0).
nanoporous_gold_128b.png: the same, cropped at rows 100..227, columns 200..327 (a denser region).
composite_3phase_64.png: a generated three-phase composite: the level sets of a Gaussian random
field (white noise smoothed with sigma 2.5 pixels, periodic) at its 50% and 75% quantiles: matrix
(black, phase 0), an interphase (grey, phase 1) and the particles it coats (white, phase 2).
"""

import argparse
import importlib.util
import os

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))


def gaussian_smooth(image, sigma):
    """Periodic Gaussian smoothing by FFT."""
    k0 = np.fft.fftfreq(image.shape[0])[:, None]
    k1 = np.fft.fftfreq(image.shape[1])[None, :]
    kernel = np.exp(-2 * np.pi**2 * sigma**2 * (k0**2 + k1**2))
    return np.fft.ifft2(np.fft.fft2(image) * kernel).real


def otsu_threshold(values):
    """The grey value that maximises the between-class variance of a 256-bin histogram."""
    counts, edges = np.histogram(values, 256)
    centres = (edges[:-1] + edges[1:]) / 2
    below = np.cumsum(counts)
    above = below[-1] - below
    mean_below = np.cumsum(counts * centres) / np.maximum(below, 1)
    mean_above = (np.sum(counts * centres) - np.cumsum(counts * centres)) / np.maximum(above, 1)
    return centres[np.argmax(below * above * (mean_below - mean_above) ** 2)]


def nanoporous_gold(sample_path, top, left):
    """The segmented micrograph's 128 x 128 crop at (top, left): 1 in the pores."""
    grey = np.asarray(Image.open(sample_path).convert("L"), dtype=np.float64)[:690]
    rows, cols = grey.shape[0] // 3 * 3, grey.shape[1] // 3 * 3
    small = grey[:rows, :cols].reshape(rows // 3, 3, cols // 3, 3).mean((1, 3))
    smooth = gaussian_smooth(small, 1.0)
    pores = smooth < otsu_threshold(smooth)
    return pores[top : top + 128, left : left + 128].astype(np.uint8)


def three_phase_composite(size=64, sigma=2.5, seed=3):
    field = gaussian_smooth(np.random.default_rng(seed).standard_normal((size, size)), sigma)
    return np.digitize(field, np.quantile(field, [0.5, 0.75])).astype(np.uint8)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sample", help="AQUAMI's micrographs/Sample.tif (default: from the installed aquami)")
    args = parser.parse_args()
    sample = args.sample
    if sample is None:
        spec = importlib.util.find_spec("aquami")
        if spec is None:
            parser.error("aquami is not installed: pip install aquami==1.1.0 --no-deps, or pass --sample")
        sample = os.path.join(spec.submodule_search_locations[0], "micrographs", "Sample.tif")
    gold = nanoporous_gold(sample, 50, 100)
    Image.fromarray(gold * 255).save(os.path.join(HERE, "nanoporous_gold_128.png"))
    other = nanoporous_gold(sample, 100, 200)
    Image.fromarray(other * 255).save(os.path.join(HERE, "nanoporous_gold_128b.png"))
    composite = three_phase_composite()
    Image.fromarray((composite * 127.5).astype(np.uint8)).save(os.path.join(HERE, "composite_3phase_64.png"))
    fractions = np.bincount(composite.ravel()) / composite.size
    print(f"pore fractions {gold.mean():.4f}, {other.mean():.4f}; composite fractions {fractions}")


if __name__ == "__main__":
    main()
