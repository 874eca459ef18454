"""Why the statistics-loss VAE draws one line: the loss of hand-drawn reconstructions of the demo's images.

For the demo's training images with two to four lines, the "normalized" statistics loss (as the
demo trains it, min/max normalised by the training set's range) of:

- the one line the old demo's model drew for every image (a full-width line, 3 pixels thick),
- one line with all the original's line pixels,
- the original's lines at random offsets (the right number, thicknesses and lengths),
- the original's lines at the right offsets, all of one mean length,
- the original blurred by a Gaussian of 1.5 pixels (the pixel-loss model's kind of picture),

and, for the beta argument, the loss of a blank (uniform) picture and of the best single line over
all images. Run from the repository root: python docs/vae_line_counts.py (a few seconds).
"""

import numpy as np
import torch
from scipy import ndimage

from model.train import build_objective, build_splits, preset_config, training_set_summary
from model.vae import one_hot

EIGHT = np.ones((3, 3), dtype=bool)


def draw(boxes, size=64):
    """A label image with horizontal lines (row, column, thickness, length), wrapping around the edges."""
    image = np.ones((size, size), np.uint8)
    for row, column, thickness, length in boxes:
        image[np.ix_(np.arange(row, row + thickness) % size, np.arange(column, column + length) % size)] = 0
    return image


def main():
    torch.set_num_threads(1)
    config = preset_config("demo-cpu")
    splits, n_phases = build_splits(config)
    objective = build_objective(config)
    loader = torch.utils.data.DataLoader(splits["train"], batch_size=100)
    statistics_range, fractions = training_set_summary(objective, loader, n_phases, "cpu")
    objective.statistics_range.fill_(statistics_range)
    rng = np.random.default_rng(0)
    losses, counts = {}, []
    for index in range(400):
        image = splits["train"][index].numpy()
        components, n = ndimage.label(image == 0, structure=EIGHT)
        boxes = ndimage.find_objects(components)
        if boxes[0][0].stop - boxes[0][0].start > boxes[0][1].stop - boxes[0][1].start:  # vertical: transpose
            image = np.ascontiguousarray(image.T)
            boxes = ndimage.find_objects(ndimage.label(image == 0, structure=EIGHT)[0])
        thickness = [b[0].stop - b[0].start for b in boxes]
        length = [b[1].stop - b[1].start for b in boxes]
        blurred = torch.from_numpy(ndimage.gaussian_filter(image.astype(np.float64), 1.5)).float()[None]
        pictures = {
            "the old demo's line (full width, 3 px)": one_hot(torch.from_numpy(draw([(30, 0, 3, 64)]))[None], 2),
            "one line with the original's pixels": one_hot(
                torch.from_numpy(draw([(10, 0, sum(thickness), round(np.mean(length)))]))[None], 2
            ),
            "the right lines at random offsets": one_hot(
                torch.from_numpy(draw([(*rng.integers(64, size=2), t, s) for t, s in zip(thickness, length)]))[None], 2
            ),
            "lines at the right offsets, one mean length": one_hot(
                torch.from_numpy(
                    draw([(b[0].start, boxes[0][1].start, t, round(np.mean(length))) for b, t in zip(boxes, thickness)])
                )[None],
                2,
            ),
            "the original blurred (1.5 px)": torch.cat([1 - blurred, blurred])[None],
            "blank (the training set's line fraction everywhere)": fractions.float().reshape(1, 2, 1, 1)
            * torch.ones(1, 2, 64, 64),
        }
        target = one_hot(torch.from_numpy(image)[None], 2)
        for name, picture in pictures.items():
            losses.setdefault(name, []).append(float(objective.statistics_distance(picture, target)))
        counts.append(n)
    counts = np.array(counts)
    print(f"statistics loss per image of {len(counts)} training images (range R = {statistics_range:.4f})")
    print(f"{'picture':55s} {'all':>7s} " + " ".join(f"{c} lines".rjust(8) for c in (1, 2, 3, 4)))
    for name, values in losses.items():
        values = np.array(values)
        print(
            f"{name:55s} {values.mean():7.2f} " + " ".join(f"{values[counts == c].mean():8.2f}" for c in (1, 2, 3, 4))
        )


if __name__ == "__main__":
    main()
