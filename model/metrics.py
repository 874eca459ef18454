"""The evaluation metrics of arXiv 2402.11103 (App. B), computed by rules instead of by eye.

Per image, for an original (uint8 labels) and its reconstruction (phase probabilities):

- Line pixels (Eq. 3): the original's phase-0 pixels; in the reconstruction, the pixels whose
  phase-0 probability exceeds 0.95 (for two phases: intensity below 0.05).
- Volume-fraction difference (Eq. 2): |N_line(original) - N_line(reconstruction)| / N_line(original) * 100.
- Orientation, from the statistics: with S the periodic auto-correlation of the line-phase field
  (the original's indicator, the reconstruction's probability) and f its mean, a line extends
  along the axis where S stays above f^2 longer, so the image is horizontal when
  sum_r1 (S(0, r1) - f^2) > sum_r0 (S(r0, 0) - f^2), vertical when smaller and "none" (counted as
  wrong) when the two agree within 1e-5 (an image without structure). For an indicator these
  sums are the mean squared row and column sums, so a line of length l and thickness t adds
  about t l^2 along its axis and t^2 l across it.
- Number of lines: the 8-connected components (scipy.ndimage.label) of the line pixels with at
  least ``min_line_pixels`` pixels (by default half the smallest line the generator draws).
- Preserved: the reconstruction's orientation (number of lines) equals the original's.
- Two-point statistics MSE (the paper's): the mean over the periodic window of every
  displacement of the squared difference of the line-phase statistics of the original's indicator
  and of the reconstruction's soft line indicator exp(-x^2 / (2 * 0.25^2)) of its intensity x, as
  the authors' evaluation script computes it.
- Two-point statistics MSE of the probabilities: the same with the reconstruction's phase
  probabilities (the field the "normalized" loss compares; every phase when C > 2, where the two
  MSEs coincide).
- Data-space MSE: the mean over pixels of the squared difference of the reconstruction and the
  original (two phases: intensity against the binary image; C phases: mean over the channels of
  probabilities against the one-hot labels).
"""

import numpy as np
import torch

from spatialstats import two_point_statistics

from .data import LINE_PHASE, ORIENTATIONS
from .objectives import pixel_error, statistics_fields
from .vae import one_hot

BLACK_THRESHOLD = 0.05
ORIENTATION_TOLERANCE = 1e-5
NO_ORIENTATION = -1


def line_pixels(probabilities):
    """Line pixels of phase probabilities (N, C, H, W) by Eq. 3: bool (N, H, W)."""
    return probabilities[:, LINE_PHASE] > 1 - BLACK_THRESHOLD


def statistics(probabilities, form="normalized"):
    """Periodic auto-correlations over every displacement of the fields ``form`` compares.

    (N, C, H, W) -> (N, P, h, w).
    """
    return two_point_statistics(statistics_fields(probabilities, form), periodic=True)


def orientations(line_statistics, line_fraction):
    """Index into ORIENTATIONS (or NO_ORIENTATION) per image from S (N, h, w) and the field means f (N,)."""
    covariance = line_statistics - line_fraction.reshape(-1, 1, 1).square()
    centre_row, centre_column = line_statistics.shape[1] // 2, line_statistics.shape[2] // 2
    along_rows = covariance[:, centre_row, :].sum(1)
    along_columns = covariance[:, :, centre_column].sum(1)
    result = torch.where(along_rows > along_columns, ORIENTATIONS.index("horizontal"), ORIENTATIONS.index("vertical"))
    return torch.where((along_rows - along_columns).abs() <= ORIENTATION_TOLERANCE, NO_ORIENTATION, result)


# 8-connectivity within each image of a stack (N, H, W), none across images.
EIGHT_CONNECTED = np.pad(np.ones((1, 3, 3), dtype=bool), ((1, 1), (0, 0), (0, 0)))


def count_components(mask, min_pixels=1):
    """Number of 8-connected components of at least ``min_pixels`` pixels in each bool image (N, H, W): (N,).

    scipy.ndimage.label on the CPU; returns int64 on the device of ``mask``.
    """
    from scipy import ndimage

    stack = mask.cpu().numpy()
    components, _ = ndimage.label(stack, structure=EIGHT_CONNECTED)
    sizes = np.bincount(components.ravel())
    image_of = np.zeros(len(sizes), dtype=np.int64)
    image_of[components.ravel()] = np.repeat(np.arange(len(stack)), stack[0].size)
    large = np.flatnonzero(sizes[1:] >= min_pixels) + 1
    counts = np.bincount(image_of[large], minlength=len(stack))
    return torch.from_numpy(counts).to(mask.device)


def per_image_metrics(labels, probabilities, *, line_metrics=True, min_line_pixels=1):
    """Metrics of each image (see the module docstring) as {name: numpy array (N,)}.

    ``labels``: uint8 (N, H, W) originals; ``probabilities``: float (N, C, H, W) reconstructions.
    With ``line_metrics``: also orientation_* and lines_* of original and reconstruction.
    """
    target = one_hot(labels, probabilities.shape[1]).to(probabilities.device)
    original_stats, reconstruction_stats = statistics(target), statistics(probabilities)
    original_lines, reconstruction_lines = line_pixels(target), line_pixels(probabilities)
    original_count = original_lines.flatten(1).sum(1).double()
    soft_stats = statistics(probabilities, "authors-code")
    result = {
        "statistics_mse": (original_stats - soft_stats).square().flatten(1).mean(1),
        "statistics_mse_probabilities": (original_stats - reconstruction_stats).square().flatten(1).mean(1),
        "data_mse": pixel_error(probabilities, target) / labels[0].numel(),
        "line_pixels_reconstruction": reconstruction_lines.flatten(1).sum(1),
        "volume_fraction_difference": (original_count - reconstruction_lines.flatten(1).sum(1)).abs()
        / original_count.clamp_min(1)
        * 100,
    }
    if line_metrics:
        for name, stats, fields, pixels in (
            ("original", original_stats, target, original_lines),
            ("reconstruction", reconstruction_stats, probabilities, reconstruction_lines),
        ):
            result[f"orientation_{name}"] = orientations(stats[:, 0], fields[:, LINE_PHASE].flatten(1).mean(1))
            result[f"lines_{name}"] = count_components(pixels, min_line_pixels)
    return {name: value.cpu().numpy() for name, value in result.items()}


def summarize(metrics):
    """Summary numbers of per-image metrics: {name: float} (fractions in [0, 1], percentages, MSEs)."""
    summary = {"n_images": len(metrics["data_mse"])}
    for name in ("statistics_mse", "statistics_mse_probabilities", "data_mse", "volume_fraction_difference"):
        summary[f"{name}_median"] = float(np.median(metrics[name]))
        summary[f"{name}_mean"] = float(np.mean(metrics[name]))
    summary["blank_reconstructions"] = float(np.mean(metrics["line_pixels_reconstruction"] == 0))
    for name, other in (("orientation", "reconstruction"), ("lines", "reconstruction"), ("lines", "nearest")):
        if f"{name}_{other}" in metrics:
            key = f"{name}_preserved" if other == "reconstruction" else f"{name}_{other}_preserved"
            summary[key] = float(np.mean(metrics[f"{name}_original"] == metrics[f"{name}_{other}"]))
    if "lines_original" in metrics:
        summary["lines_reconstruction_mean"] = float(np.mean(metrics["lines_reconstruction"]))
        summary["lines_original_mean"] = float(np.mean(metrics["lines_original"]))
    return summary
