"""Evaluating trained VAEs on held-out images and writing ``report.md`` with its figures."""

import dataclasses
import os

import numpy as np
import torch

from spatialstats.plot import subplots

from .metrics import per_image_metrics, statistics, summarize
from .train import build_splits, load_trained, preset_config, resolve_device
from .vae import model_input

EXAMPLES = 6
TRAVERSAL_STEPS = 7
TRAVERSAL_RANGE = 3.0

# arXiv 2402.11103 (synthetic lines, latent 9): 100 pairs for orientation, line count and volume
# fraction (App. B), the validation histograms (N = 1000) for the MSEs.
PAPER_RESULTS = {
    "statistics": {
        "orientation_preserved": 0.98,
        "lines_preserved": 0.63,
        "volume_fraction_difference_mean": 17.0,
        "statistics_mse_median": 1.74e-05,
        "statistics_mse_mean": 2.91e-05,
        "data_mse_median": 1.08e-01,
        "data_mse_mean": 1.08e-01,
    },
    "pixel": {
        "statistics_mse_median": 2.74e-05,
        "statistics_mse_mean": 5.87e-05,
        "data_mse_median": 2.44e-02,
        "data_mse_mean": 2.98e-02,
    },
}


@dataclasses.dataclass
class Evaluation:
    """One trained model on held-out images: its name, config, training log, metrics and examples."""

    name: str
    kind: str  # "statistics" or "pixel": which loss it was trained with
    split: str
    config: object
    history: list
    metrics: dict
    summary: dict
    model: object
    examples: tuple  # (labels (k, H, W), probabilities (k, C, H, W)) of the first images


def loss_kind(config):
    return "pixel" if config.alpha == 0 else "statistics"


@torch.no_grad()
def evaluate_checkpoint(path, *, split=None, n_images=1000, device="auto", batch_size=100, line_metrics=None):
    """Evaluate the model saved at ``path`` on the first ``n_images`` of ``split`` (z = mu).

    ``split``: default "test", or "validation" for runs without test images (the paper's preset,
    whose held-out part the paper calls its test set). ``line_metrics``: orientation and line
    counts (default: for line datasets only).
    """
    device = resolve_device(device)
    config, model, checkpoint = load_trained(path, device)
    splits, n_phases = build_splits(config)
    if split is None:
        split = "test" if len(splits["test"]) else "validation"
    if split not in splits:
        raise ValueError(f"split must be one of {list(splits)}, got {split!r}")
    subset = splits[split]
    if len(subset) == 0:
        raise ValueError(
            f"the {split} split of this run is empty (split fractions {config.split}); choose another with --split"
        )
    subset = torch.utils.data.Subset(subset, range(min(n_images, len(subset))))
    if line_metrics is None:
        line_metrics = config.dataset == "lines"
    min_line_pixels = config.lines.min_thickness * config.lines.min_length // 2
    per_batch, examples = [], None
    for labels in torch.utils.data.DataLoader(subset, batch_size=batch_size):
        labels = labels.to(device)
        logits, _, _ = model(model_input(labels, n_phases))
        probabilities = model.phase_probabilities(logits)
        per_batch.append(
            per_image_metrics(labels, probabilities, line_metrics=line_metrics, min_line_pixels=min_line_pixels)
        )
        if examples is None:
            examples = (labels[:EXAMPLES].cpu(), probabilities[:EXAMPLES].cpu())
    metrics = {name: np.concatenate([batch[name] for batch in per_batch]) for name in per_batch[0]}
    kind = loss_kind(config)
    name = f"{kind}-loss VAE"
    return Evaluation(name, kind, split, config, checkpoint["history"], metrics, summarize(metrics), model, examples)


def display_images(probabilities):
    """Expected label / (C - 1) of phase probabilities (k, C, H, W) -> (k, H, W); the intensity for two phases."""
    phases = torch.arange(probabilities.shape[1], dtype=probabilities.dtype).reshape(1, -1, 1, 1)
    return ((probabilities * phases).sum(1) / (probabilities.shape[1] - 1)).numpy()


def plot_reconstructions(evaluations, path):
    """Originals, each model's reconstructions, and the S2 maps of all of them, one column per image."""
    labels, _ = evaluations[0].examples
    n_phases = evaluations[0].model.n_phases
    originals = torch.nn.functional.one_hot(labels.long(), n_phases).movedim(-1, 1).float()
    rows = [("original", originals)] + [(e.name, e.examples[1]) for e in evaluations]
    k = len(labels)
    figure, axes = subplots(2 * len(rows), k, figsize=(1.9 * k, 1.9 * 2 * len(rows)), squeeze=False)
    original_stats = statistics(originals)[:, 0].numpy()
    half = original_stats.shape[-1] // 2
    for row, (title, probabilities) in enumerate(rows):
        images, maps = display_images(probabilities), statistics(probabilities)[:, 0].numpy()
        for column in range(k):
            axes[row, column].imshow(images[column], cmap="gray", vmin=0, vmax=1)
            axes[len(rows) + row, column].imshow(
                maps[column],
                cmap="viridis",
                vmin=0,
                vmax=original_stats[column].max(),
                extent=(-half - 0.5, half + 0.5, half + 0.5, -half - 0.5),
            )
        axes[row, 0].set_ylabel(title, fontsize=8)
        axes[len(rows) + row, 0].set_ylabel(f"S2: {title}", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    figure.suptitle(
        "held-out images, their reconstructions, and the line-phase S2 maps (same colour scale per column)", fontsize=9
    )
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def plot_mse_histograms(evaluations, path):
    """Histograms of the per-image data-space and two-point MSEs of every model (log axes)."""
    panels = {
        "data_mse": "data-space MSE",
        "statistics_mse": "two-point statistics MSE (the paper's)",
        "statistics_mse_probabilities": "two-point statistics MSE of the probabilities",
    }
    figure, axes = subplots(1, len(panels), figsize=(5 * len(panels), 3.6))
    for ax, (name, title) in zip(axes, panels.items()):
        values = [np.clip(e.metrics[name], 1e-12, None) for e in evaluations]
        bins = np.geomspace(min(v.min() for v in values), max(v.max() for v in values), 40)
        for evaluation, v in zip(evaluations, values):
            line = ax.hist(v, bins=bins, histtype="step", linewidth=1.5, label=evaluation.name)[2][0]
            ax.axvline(np.median(v), color=line.get_edgecolor(), linestyle=":")
        ax.set_xscale("log")
        ax.set_xlabel(f"{title} per image (dotted: median)", fontsize=8)
        ax.set_ylabel("images")
        ax.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


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
    figure, axes = subplots(
        model.latent_dim, TRAVERSAL_STEPS, figsize=(1.3 * TRAVERSAL_STEPS, 1.3 * model.latent_dim), squeeze=False
    )
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
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def plot_training_curves(evaluations, path):
    """Each loss term per epoch, training (solid) and validation (dashed), for every model."""
    terms = ("statistics", "pixel", "kl")
    figure, axes = subplots(1, len(terms), figsize=(4 * len(terms), 3.4))
    for ax, term in zip(axes, terms):
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
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def _percent(value):
    return f"{100 * value:.1f}%"


def _number(value):
    return f"{value:.2e}"


# (row title, summary keys, formatter): one table row each.
TABLE_ROWS = (
    ("orientation preserved", ("orientation_preserved",), _percent),
    ("number of lines preserved", ("lines_preserved",), _percent),
    (
        "mean number of lines, reconstruction / original",
        ("lines_reconstruction_mean", "lines_original_mean"),
        lambda v: f"{v:.2f}",
    ),
    (
        "volume-fraction difference (Eq. 2), mean / median",
        ("volume_fraction_difference_mean", "volume_fraction_difference_median"),
        lambda v: f"{v:.1f}%",
    ),
    (
        "two-point statistics MSE (the paper's, soft indicator), median / mean",
        ("statistics_mse_median", "statistics_mse_mean"),
        _number,
    ),
    (
        "two-point statistics MSE of the probabilities, median / mean",
        ("statistics_mse_probabilities_median", "statistics_mse_probabilities_mean"),
        _number,
    ),
    ("data-space MSE, median / mean", ("data_mse_median", "data_mse_mean"), _number),
)


def _cell(summary, keys, formatter):
    return " / ".join(formatter(summary[key]) if key in summary else "n/r" for key in keys)


def finding(ours, baseline):
    """Whether the run shows the paper's finding (by the mean MSEs, the paper's definitions), with the ratios."""

    def ratio(key):
        return ours.summary[key] / baseline.summary[key]

    statistics_ratio, data_ratio = ratio("statistics_mse_mean"), ratio("data_mse_mean")
    ratios = (
        f"ratios statistics-loss / pixel-loss of the mean MSEs: two-point {statistics_ratio:.2f} (paper 0.50), "
        f"data space {data_ratio:.2f} (paper 3.6)"
    )
    probabilities = (
        f"Compared on the phase probabilities instead of the soft indicator, the two-point ratio is "
        f"{ratio('statistics_mse_probabilities_mean'):.2f} (medians: "
        f"{ratio('statistics_mse_probabilities_median'):.2f})."
    )
    if statistics_ratio < 1 < data_ratio:
        head = (
            "**The paper's finding is reproduced**: the statistics-loss VAE has the lower two-point statistics "
            "MSE and the higher data-space MSE"
        )
    else:
        missing = [
            text
            for ok, text in (
                (statistics_ratio < 1, "a lower two-point MSE"),
                (data_ratio > 1, "a higher data-space MSE"),
            )
            if not ok
        ]
        head = (
            f"**The paper's finding is not fully reproduced**: the statistics-loss VAE does not have "
            f"{' and '.join(missing)} than the pixel-loss VAE"
        )
    return f"{head} ({ratios}). {probabilities}"


def _setup_rows(evaluations):
    """Rows describing each run's data, model and training."""
    rows = []
    for e in evaluations:
        c = e.config
        seconds = sum(r["seconds"] for r in e.history)
        terms = (
            [f"{c.alpha:g} * {c.statistics} two-point distance (periodic {c.periodic}, cutoff {c.cutoff})"]
            if c.alpha
            else []
        )
        terms += [f"{c.pixel_weight:g} * summed squared pixel error"] if c.pixel_weight else []
        lines = c.lines
        data = f"{c.dataset}, {c.n_images} images {c.image_size}x{c.image_size}, split {c.split}" + (
            f"; {lines.min_lines}-{lines.max_lines} lines, thickness {lines.min_thickness}-{lines.max_thickness}, "
            f"length {lines.min_length}-{lines.max_length}, gap {lines.min_gap}"
            if c.dataset == "lines"
            else ""
        )
        encoder = (
            f"{c.encoder} ({'frozen' if c.freeze_encoder else 'trained'}, "
            f"{'weights ' + os.path.basename(c.encoder_weights) if c.encoder_weights else 'random start'}), "
            f"latent {c.latent_dim}"
        )
        training = (
            f"{' + '.join(terms)} + {c.beta:g} * KL; {len(e.history)} epochs, "
            f"batch {c.batch_size}, Adam {c.lr:g} (halved after {c.lr_halve_at:g} of the epochs), seed {c.seed}"
        )
        rows.append(
            (e.name, data, encoder, training, f"{seconds:.0f} s ({seconds / max(len(e.history), 1):.1f} s/epoch)")
        )
    return rows


def _flat_settings(config):
    values = dataclasses.asdict(config)
    return values | values.pop("lines")


def differences_from_paper(evaluation):
    """ "name value (paper: value)" for every setting of the run that differs from the paper's preset."""
    paper = _flat_settings(preset_config("paper" if evaluation.kind == "statistics" else "paper-baseline"))
    ours = _flat_settings(evaluation.config)
    ignored = {"workers", "checkpoint_every", "encoder_weights"}
    if ours["dataset"] == "lines":
        ignored |= {"volume_fractions", "correlation_length"}
    if ours["alpha"] == 0:
        ignored |= {"statistics", "periodic", "cutoff"}
    changed = [
        f"{name} {ours[name]} (paper: {paper[name]})"
        for name in paper
        if name not in ignored and ours[name] != paper[name]
    ]
    if ours["encoder_weights"] is None:
        changed.append("encoder weights: random start (paper: ImageNet)")
    return changed


def write_report(out, evaluations):
    """Write ``report.md`` and its PNGs under ``out`` for one or two Evaluations (ours first); return its path."""
    os.makedirs(out, exist_ok=True)
    figures = {
        "reconstructions.png": "Held-out images and reconstructions with their S2 maps",
        "mse_histograms.png": "Per-image MSE histograms",
        "training_curves.png": "Training curves",
    }
    plot_reconstructions(evaluations, os.path.join(out, "reconstructions.png"))
    plot_mse_histograms(evaluations, os.path.join(out, "mse_histograms.png"))
    plot_training_curves(evaluations, os.path.join(out, "training_curves.png"))
    for e in evaluations:
        name = f"latent_traversal_{e.kind}.png"
        plot_latent_traversal(e, os.path.join(out, name))
        figures[name] = f"Latent traversal of the {e.name}"
    n = evaluations[0].summary["n_images"]
    text = ["# Spatial-statistics VAE: evaluation report", ""]
    if len(evaluations) == 2:
        text += [finding(*evaluations), ""]
    header = (
        ["metric"] + [f"{e.name} (this run)" for e in evaluations] + ["paper: statistics loss", "paper: pixel loss"]
    )
    text += ["## Metrics", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for title, keys, formatter in TABLE_ROWS:
        cells = [_cell(e.summary, keys, formatter) for e in evaluations]
        cells += [_cell(PAPER_RESULTS[kind], keys, formatter) for kind in ("statistics", "pixel")]
        text.append(f"| {title} | " + " | ".join(cells) + " |")
    text += [
        "",
        f"This run: the first {n} images of the {evaluations[0].split} split (z = mu). Paper: 100 image pairs for "
        "orientation, line count and volume fraction (judged by eye), 1000 validation images for the MSEs; "
        "n/r = not reported. The rules that replace the paper's judgement by eye are in `model/metrics.py` "
        "(orientation from the line-phase S2, lines as 8-connected components of the thresholded reconstruction). "
        "The paper's two-point MSE compares the original's "
        "indicator with the soft indicator exp(-x^2 / 0.125) of the reconstruction's intensity x, as the authors' "
        "script does; the next row uses the reconstruction's phase probabilities (what the normalized loss "
        "compares). The absolute MSEs depend on the image and line sizes "
        "(the paper: 224x224), so compare the two models of a run, and the ratios, rather than the absolute values.",
        "",
        "## Runs",
        "",
        "| model | data | encoder | objective and training | training time |",
        "|---|---|---|---|---|",
    ]
    text += ["| " + " | ".join(row) + " |" for row in _setup_rows(evaluations)]
    text += ["", "Settings that differ from the paper's (the demo presets explain theirs in `model/train.py`):", ""]
    text += [f"- {e.name}: " + ("; ".join(differences_from_paper(e)) or "none") for e in evaluations]
    text += ["", "## Figures", ""]
    for name, caption in figures.items():
        text += [f"{caption}:", "", f"![{caption}]({name})", ""]
    path = os.path.join(out, "report.md")
    with open(path, "w") as handle:
        handle.write("\n".join(text))
    return path
