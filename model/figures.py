"""The report's figures (matplotlib's Figure API: no pyplot state, no display needed).

Each ``plot_*`` takes Evaluations (model/report.py) and the path of the PNG to write.
"""

import numpy as np
import torch

from spatialstats.plot import subplots

from .metrics import statistics

TRAVERSAL_STEPS = 7
TRAVERSAL_RANGE = 3.0
DPI = 100


def _figure(rows, columns, size):
    return subplots(rows, columns, figsize=size, squeeze=False)


def _save(figure, path):
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)


def display_images(probabilities):
    """Expected label / (C - 1) of phase probabilities (k, C, H, W) -> (k, H, W); the intensity for two phases."""
    phases = torch.arange(probabilities.shape[1], dtype=probabilities.dtype).reshape(1, -1, 1, 1)
    return ((probabilities * phases).sum(1) / (probabilities.shape[1] - 1)).numpy()


def one_hot_float(labels, n_phases):
    return torch.nn.functional.one_hot(labels.long(), n_phases).movedim(-1, 1).float()


def _image_rows(rows, path, title):
    """Rows of (title, probabilities (k, C, H, W)): the images, then their line-phase S2 maps, one column per image.

    The S2 maps of a column share the colour scale of the first row's.
    """
    k = len(rows[0][1])
    figure, axes = _figure(2 * len(rows), k, (1.9 * k, 1.9 * 2 * len(rows)))
    reference = statistics(rows[0][1])[:, 0].numpy()
    half = reference.shape[-1] // 2
    for row, (name, probabilities) in enumerate(rows):
        images, maps = display_images(probabilities), statistics(probabilities)[:, 0].numpy()
        for column in range(k):
            axes[row, column].imshow(images[column], cmap="gray", vmin=0, vmax=1)
            axes[len(rows) + row, column].imshow(
                maps[column],
                cmap="viridis",
                vmin=0,
                vmax=reference[column].max(),
                extent=(-half - 0.5, half + 0.5, half + 0.5, -half - 0.5),
            )
        axes[row, 0].set_ylabel(name, fontsize=8)
        axes[len(rows) + row, 0].set_ylabel(f"S2: {name}", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    figure.suptitle(title, fontsize=9)
    _save(figure, path)


def plot_reconstructions(evaluations, path):
    """Originals, each model's reconstructions, and the S2 maps of all of them, one column per image."""
    labels, _ = evaluations[0].examples
    rows = [("original", one_hot_float(labels, evaluations[0].n_phases))]
    rows += [(e.name, e.examples[1]) for e in evaluations]
    _image_rows(rows, path, "held-out images, their reconstructions, and the line-phase S2 maps (colours per column)")


def plot_nearest_training_images(evaluation, path):
    """The paper's Tables 4-6: originals, reconstructions and the training images nearest to each reconstruction."""
    labels, probabilities = evaluation.examples
    n_phases = evaluation.n_phases
    rows = [
        ("original", one_hot_float(labels, n_phases)),
        ("reconstruction", probabilities),
        ("nearest in data space", one_hot_float(evaluation.nearest_examples["data"], n_phases)),
        ("nearest in statistics", one_hot_float(evaluation.nearest_examples["statistics"], n_phases)),
    ]
    _image_rows(rows, path, f"{evaluation.name}: the training images nearest to the reconstructions, with S2 maps")


def plot_mse_histograms(evaluations, path):
    """Histograms of the per-image data-space and two-point MSEs of every model (log axes)."""
    panels = {
        "data_mse": "data-space MSE",
        "statistics_mse": "two-point statistics MSE (the paper's)",
        "statistics_mse_probabilities": "two-point statistics MSE of the probabilities",
    }
    figure, axes = _figure(1, len(panels), (5 * len(panels), 3.6))
    for ax, (name, title) in zip(axes[0], panels.items()):
        values = [np.clip(e.metrics[name], 1e-12, None) for e in evaluations]
        _log_histograms(ax, values, [e.name for e in evaluations])
        ax.set_xlabel(f"{title} per image (dotted: median)", fontsize=8)
    _save(figure, path)


def _log_histograms(ax, samples, names):
    """Step histograms of positive samples on shared logarithmic bins, each with its median dotted."""
    samples = [np.clip(np.asarray(s, dtype=np.float64), 1e-12, None) for s in samples]
    low, high = min(s.min() for s in samples), max(s.max() for s in samples)
    bins = np.geomspace(low, high * 1.0001 if high > low else low * 2, 40)
    for sample, name in zip(samples, names):
        line = ax.hist(sample, bins=bins, histtype="step", linewidth=1.5, label=name)[2][0]
        ax.axvline(np.median(sample), color=line.get_edgecolor(), linestyle=":")
    ax.set_xscale("log")
    ax.set_ylabel("images")
    ax.legend(fontsize=8)


def plot_volume_fraction_difference(evaluations, path, paper_mean=None):
    """The paper's Fig. 2: histogram of the per-image volume-fraction difference (Eq. 2), means dashed."""
    figure, axes = _figure(1, 1, (6, 3.6))
    ax = axes[0, 0]
    values = [e.metrics["volume_fraction_difference"] for e in evaluations]
    bins = np.linspace(0, max(40.0, max(float(np.max(v)) for v in values)), 41)
    for evaluation, value in zip(evaluations, values):
        line = ax.hist(value, bins=bins, histtype="step", linewidth=1.5, label=evaluation.name)[2][0]
        ax.axvline(np.mean(value), color=line.get_edgecolor(), linestyle="--")
    if paper_mean is not None:
        ax.axvline(paper_mean, color="black", linestyle=":", label=f"paper's mean ({paper_mean:g}%)")
    ax.set_xlabel("volume-fraction difference per image (%), dashed: mean")
    ax.set_ylabel("images")
    ax.legend(fontsize=8)
    _save(figure, path)


def plot_line_counts(evaluations, path):
    """The paper's Fig. 3: mean line count (with its spread) of reconstructions and of the training images
    nearest to them in statistics, against the count in the original."""
    figure, axes = _figure(1, len(evaluations), (5 * len(evaluations), 3.8))
    for ax, evaluation in zip(axes[0], evaluations):
        original = evaluation.metrics["lines_original"]
        counts = np.unique(original)
        ax.plot(counts, counts, color="grey", linewidth=0.8, label="same as the original")
        for offset, (name, values) in zip(
            (-0.08, 0.08),
            (
                ("reconstruction", evaluation.metrics["lines_reconstruction"]),
                ("nearest training image in statistics", evaluation.nearest_lines),
            ),
        ):
            means = [values[original == c].mean() for c in counts]
            spreads = [values[original == c].std() for c in counts]
            ax.errorbar(counts + offset, means, yerr=spreads, marker="o", capsize=3, linestyle="none", label=name)
        ax.set_xticks(counts)
        ax.set_xlabel("number of lines in the original")
        ax.set_ylabel("number of lines (mean and standard deviation)")
        ax.set_title(evaluation.name, fontsize=9)
        ax.legend(fontsize=8)
    _save(figure, path)


def plot_overfitting(evaluations, path):
    """The paper's Figs. 4/5: per reconstruction, the mean MSE against every image of its own split,
    for training and validation reconstructions, in data space and in statistics space."""
    spaces = {"data": "data space", "statistics": "statistics space"}
    figure, axes = _figure(len(evaluations), len(spaces), (5.5 * len(spaces), 3.4 * len(evaluations)))
    for row, evaluation in zip(axes, evaluations):
        for ax, (space, title) in zip(row, spaces.items()):
            samples = [evaluation.overfitting[split][space] for split in ("train", "validation")]
            _log_histograms(ax, samples, [f"{split} ({len(s)})" for split, s in zip(("train", "validation"), samples)])
            statistic, p_value = evaluation.overfitting_tests[space]
            ax.set_title(f"{evaluation.name}, {title}: KS D = {statistic:.3f}, p = {p_value:.2g}", fontsize=8)
            ax.set_xlabel("mean MSE of a reconstruction against every image of its split (dotted: median)", fontsize=8)
    _save(figure, path)


@torch.no_grad()
def plot_latent_traversal(evaluation, path):
    """Decoded images along each latent axis from -3 to 3 (the other coordinates 0), one row per axis."""
    model = evaluation.model
    device = next(model.parameters()).device
    values = torch.linspace(-TRAVERSAL_RANGE, TRAVERSAL_RANGE, TRAVERSAL_STEPS)
    z = torch.zeros(model.latent_dim, TRAVERSAL_STEPS, model.latent_dim)
    for axis in range(model.latent_dim):
        z[axis, :, axis] = values
    decoded = model.phase_probabilities(model.decode(z.reshape(-1, model.latent_dim).to(device))).cpu()
    images = display_images(decoded).reshape(model.latent_dim, TRAVERSAL_STEPS, *decoded.shape[2:])
    figure, axes = _figure(model.latent_dim, TRAVERSAL_STEPS, (1.3 * TRAVERSAL_STEPS, 1.3 * model.latent_dim))
    for axis in range(model.latent_dim):
        for step in range(TRAVERSAL_STEPS):
            ax = axes[axis, step]
            ax.imshow(images[axis, step], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if step == 0:
                ax.set_ylabel(f"z{axis}", fontsize=8)
            if axis == model.latent_dim - 1:
                ax.set_xlabel(f"{values[step]:+.1f}", fontsize=8)
    figure.suptitle(f"{evaluation.name}: latent traversal", fontsize=9)
    _save(figure, path)


def plot_training_curves(evaluations, path):
    """Each loss term per epoch, training (solid) and validation (dashed), for every model."""
    terms = ("statistics", "pixel", "kl")
    figure, axes = _figure(1, len(terms), (4 * len(terms), 3.4))
    for ax, term in zip(axes[0], terms):
        for evaluation in evaluations:
            epochs = [record["epoch"] for record in evaluation.history]
            line = ax.plot(epochs, [r[f"train_{term}"] for r in evaluation.history], label=evaluation.name)[0]
            ax.plot(
                epochs, [r[f"validation_{term}"] for r in evaluation.history], linestyle="--", color=line.get_color()
            )
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_title(f"{term} term per image (solid: training, dashed: validation)", fontsize=8)
        ax.legend(fontsize=8)
    _save(figure, path)
