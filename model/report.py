"""Evaluating trained VAEs and writing ``report.md``: the paper's metrics and analyses, and a verdict.

For each model (z = mu): the paper's metrics on the held-out images (model/metrics.py); the training
images nearest to each reconstruction in data space and in statistics space (App. C.2) and the line
counts of the nearest ones (Fig. 3); the overfitting check (Figs. 4/5); the volume-fraction
differences (Fig. 2). For a statistics-loss model and a pixel-loss baseline trained on the same data,
the verdict compares the ratios of their mean MSEs with paired bootstrap confidence intervals.
"""

import dataclasses
import os

import numpy as np
import torch

from .analysis import SPACES, bootstrap_ratio, features, scan_split, two_sample_test
from .figures import (
    plot_latent_traversal,
    plot_line_counts,
    plot_mse_histograms,
    plot_nearest_training_images,
    plot_overfitting,
    plot_reconstructions,
    plot_training_curves,
    plot_volume_fraction_difference,
)
from .metrics import count_components, line_pixels, per_image_metrics, summarize
from .train import build_splits, flat_settings, load_trained, preset_config, resolve_device
from .vae import model_input, one_hot

EXAMPLES = 6
CONFIDENCE = 0.95
SIGNIFICANCE = 0.05

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
PAPER_RATIOS = {"statistics_mse_mean": 0.50, "data_mse_mean": 3.6}

# Settings that define the data a run learns from and is evaluated on (lines/gaussian ones by dataset).
DATA_SETTINGS = ("dataset", "data_dir", "label_map", "n_images", "data_seed", "split", "image_size")
DATASET_SETTINGS = {
    "lines": ("min_lines", "max_lines", "min_thickness", "max_thickness", "min_length", "max_length", "min_gap"),
    "gaussian": ("volume_fractions", "correlation_length"),
    "folder": (),
}


@dataclasses.dataclass
class Evaluation:
    """One trained model on held-out images: metrics, examples and the analyses over its training data."""

    name: str
    kind: str  # "statistics" or "pixel": which loss it was trained with
    split: str  # the held-out split evaluated
    config: object
    n_phases: int
    split_sizes: dict  # {split: number of images} of the data actually used
    history: list
    metrics: dict  # per held-out image (model/metrics.py)
    summary: dict
    model: object
    examples: tuple  # (labels (k, H, W), probabilities (k, C, H, W)) of the first held-out images
    nearest: dict  # {space: {"nearest": training index (N,), "nearest_mse": (N,)}} per held-out image
    nearest_examples: dict  # {space: labels (k, H, W)}: the training images nearest to the examples
    nearest_lines: object  # line counts of the training images nearest in statistics (N,), or None
    overfitting: dict  # {"train" | "validation": {space: mean MSE against the split (n,)}}
    overfitting_tests: dict  # {space: (KS statistic, p-value)}: train against validation


def loss_kind(config):
    return "pixel" if config.alpha == 0 else "statistics"


@torch.no_grad()
def _reconstruct(model, subset, n_phases, device, batch_size, metrics=None):
    """Features {space: (N, D)} of the reconstructions of ``subset``, the first batch (labels,
    probabilities) and, with ``metrics`` (keyword arguments of per_image_metrics), the per-image metrics."""
    vectors, per_batch, first = {space: [] for space in SPACES}, [], None
    for labels in torch.utils.data.DataLoader(subset, batch_size=batch_size):
        labels = labels.to(device)
        probabilities = model.phase_probabilities(model(model_input(labels, n_phases))[0])
        for space, value in features(probabilities).items():
            vectors[space].append(value)
        if metrics is not None:
            per_batch.append(per_image_metrics(labels, probabilities, **metrics))
        if first is None:
            first = (labels.cpu(), probabilities.cpu())
    values = {name: np.concatenate([batch[name] for batch in per_batch]) for name in per_batch[0]} if per_batch else {}
    return {space: torch.cat(v) for space, v in vectors.items()}, first, values


def _first(subset, n):
    return torch.utils.data.Subset(subset, range(min(n, len(subset))))


@torch.no_grad()
def evaluate_checkpoint(
    path, *, split=None, n_images=1000, device="auto", batch_size=100, line_metrics=None, data_dir=None
):
    """Evaluate the model saved at ``path`` on the first ``n_images`` of ``split`` and run the analyses.

    ``split``: default "test", or "validation" for runs without test images (the paper's preset,
    whose held-out part the paper calls its test set). ``line_metrics``: orientation and line
    counts (default: for line datasets only). ``data_dir`` replaces the run's data folder. The
    overfitting check uses the first ``n_images`` of the training and of the validation split.
    The searches run on ``device`` (default: a GPU when there is one).
    """
    device = resolve_device(device)
    config, model, checkpoint = load_trained(path, device, data_dir)
    splits, n_phases = build_splits(config)
    if split is None:
        split = "test" if len(splits["test"]) else "validation"
    if split not in splits:
        raise ValueError(f"split must be one of {list(splits)}, got {split!r}")
    if len(splits[split]) == 0:
        raise ValueError(
            f"the {split} split of this run is empty (split fractions {config.split}); choose another with --split"
        )
    for needed in ("train", "validation"):
        if len(splits[needed]) == 0:
            raise ValueError(f"the analyses need training and validation images; the {needed} split is empty")
    if line_metrics is None:
        line_metrics = config.dataset == "lines"
    min_line_pixels = config.lines.min_thickness * config.lines.min_length // 2
    metric_options = {"line_metrics": line_metrics, "min_line_pixels": min_line_pixels}
    held_out, examples, metrics = _reconstruct(
        model, _first(splits[split], n_images), n_phases, device, batch_size, metric_options
    )
    examples = (examples[0][:EXAMPLES], examples[1][:EXAMPLES])
    recalled = {
        name: _reconstruct(model, _first(splits[name], n_images), n_phases, device, batch_size)[0]
        for name in ("train", "validation")
        if name != split
    }
    recalled[split] = held_out
    # One pass over the training images serves the held-out images' nearest neighbours and the
    # training reconstructions' mean MSEs; one over the validation images the validation ones'.
    queries = {space: torch.cat([held_out[space], recalled["train"][space]]) for space in SPACES}
    found = scan_split(splits["train"], queries, n_phases, device=device, batch_size=batch_size)
    n_held_out = len(held_out["data"])
    nearest = {space: {key: found[space][key][:n_held_out] for key in ("nearest", "nearest_mse")} for space in SPACES}
    overfitting = {"train": {space: found[space]["mean_mse"][n_held_out:] for space in SPACES}}
    found = scan_split(splits["validation"], recalled["validation"], n_phases, device=device, batch_size=batch_size)
    overfitting["validation"] = {space: found[space]["mean_mse"] for space in SPACES}
    training = splits["train"]
    nearest_examples = {
        space: torch.stack([training[int(i)] for i in nearest[space]["nearest"][:EXAMPLES]]) for space in SPACES
    }
    nearest_lines = None
    if line_metrics:
        images = torch.stack([training[int(i)] for i in nearest["statistics"]["nearest"]])
        nearest_lines = count_components(line_pixels(one_hot(images, n_phases)), min_line_pixels).numpy()
        metrics["lines_nearest"] = nearest_lines
    kind = loss_kind(config)
    return Evaluation(
        name=f"{kind}-loss VAE",
        kind=kind,
        split=split,
        config=config,
        n_phases=n_phases,
        split_sizes={name: len(part) for name, part in splits.items()},
        history=checkpoint["history"],
        metrics=metrics,
        summary=summarize(metrics),
        model=model,
        examples=examples,
        nearest=nearest,
        nearest_examples=nearest_examples,
        nearest_lines=nearest_lines,
        overfitting=overfitting,
        overfitting_tests={space: two_sample_test(*(overfitting[s][space] for s in overfitting)) for space in SPACES},
    )


# ----------------------------------------------------------------------------------------------
# The verdict
# ----------------------------------------------------------------------------------------------


def comparability_problems(ours, baseline):
    """Why two Evaluations cannot be compared as the paper compares its models ([] when they can)."""
    problems = []
    if ours.kind != "statistics":
        problems.append("the first model is not trained with the statistics loss (alpha is 0)")
    if baseline.config.alpha != 0 or baseline.config.pixel_weight <= 0:
        problems.append(
            f"the baseline is not a pixel-loss model (alpha {baseline.config.alpha:g}, "
            f"pixel weight {baseline.config.pixel_weight:g}; the paper's baseline has alpha 0 and a pixel loss)"
        )
    a, b = flat_settings(ours.config), flat_settings(baseline.config)
    names = DATA_SETTINGS + DATASET_SETTINGS.get(a["dataset"], ())
    problems += [f"{name} differs ({a[name]} against {b[name]})" for name in names if a[name] != b[name]]
    if ours.n_phases != baseline.n_phases:
        problems.append(f"the number of phases differs ({ours.n_phases} against {baseline.n_phases})")
    if (ours.split, ours.summary["n_images"]) != (baseline.split, baseline.summary["n_images"]):
        problems.append(
            f"they were evaluated on different images ({ours.summary['n_images']} {ours.split} images against "
            f"{baseline.summary['n_images']} {baseline.split} images)"
        )
    return problems


def ratio_intervals(ours, baseline):
    """{metric: (ratio of the means, (low, high))}: ours / baseline with paired bootstrap intervals."""
    return {
        key: bootstrap_ratio(
            ours.metrics[key.removesuffix("_mean")], baseline.metrics[key.removesuffix("_mean")], level=CONFIDENCE
        )
        for key in PAPER_RATIOS
    }


def verdict(ours, baseline):
    """(word, Markdown paragraph): "reproduced", "not reproduced", "inconclusive" or "not comparable"."""
    problems = comparability_problems(ours, baseline)
    if problems:
        return "not comparable", "**Not comparable**: " + "; ".join(problems) + ". No ratio is reported."
    intervals = ratio_intervals(ours, baseline)
    (s_low, s_high), (d_low, d_high) = (interval for _, interval in intervals.values())
    if s_high < 1 < d_low:
        word = "reproduced"
        head = "the statistics-loss VAE has the lower two-point statistics MSE and the higher data-space MSE"
    elif s_low >= 1 or d_high <= 1:
        word = "not reproduced"
        wrong = [
            text
            for ok, text in ((s_low < 1, "a lower two-point MSE"), (d_high > 1, "a higher data-space MSE"))
            if not ok
        ]
        head = f"the statistics-loss VAE does not have {' or '.join(wrong)} than the pixel-loss VAE"
    else:
        word = "inconclusive"
        head = "a confidence interval of a ratio contains 1, so these images cannot tell the models apart there"
    described = []
    for (key, paper), (ratio, (low, high)) in zip(PAPER_RATIOS.items(), intervals.values()):
        where = "inside" if low <= paper <= high else "outside"
        name = "two-point statistics" if key.startswith("statistics") else "data space"
        described.append(f"{name} {ratio:.2f} [{low:.2f}, {high:.2f}] (the paper's {paper:g} lies {where})")
    text = (
        f"**{word.capitalize()}**: {head}. Ratios statistics-loss / pixel-loss of the mean MSEs over the same "
        f"{ours.summary['n_images']} {ours.split} images, with {CONFIDENCE:.0%} paired bootstrap intervals: "
        + "; ".join(described)
        + "."
    )
    blank = [e.name for e in (ours, baseline) if e.summary.get("blank_reconstructions", 0) > 0.5]
    if blank:
        text += f" Most reconstructions of the {' and the '.join(blank)} hold no line pixel at all."
    if ours.config.pixel_warmup:
        text += (
            f" The statistics-loss VAE started with a pixel term that faded to 0 over the first "
            f"{ours.config.pixel_warmup:.0%} of its epochs (a warm start; the paper has none)."
        )
    return word, text


# ----------------------------------------------------------------------------------------------
# The report
# ----------------------------------------------------------------------------------------------


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
    ("nearest training image in statistics has the original's number of lines", ("lines_nearest_preserved",), _percent),
    ("reconstructions without line pixels", ("blank_reconstructions",), _percent),
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


def metrics_table(evaluations):
    """The Markdown table of the metrics of each model beside the paper's."""
    header = (
        ["metric"] + [f"{e.name} (this run)" for e in evaluations] + ["paper: statistics loss", "paper: pixel loss"]
    )
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for title, keys, formatter in TABLE_ROWS:
        if not any(key in e.summary for e in evaluations for key in keys):
            continue
        cells = [_cell(e.summary, keys, formatter) for e in evaluations]
        cells += [_cell(PAPER_RESULTS[kind], keys, formatter) for kind in ("statistics", "pixel")]
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    return lines


def line_count_table(evaluations):
    """Per number of lines in the original: how often each model's reconstruction and the training image
    nearest to it in statistics have the same number, and their mean numbers."""
    header = ["lines in the original", "images"]
    for e in evaluations:
        header += [f"{e.name}: reconstruction", f"{e.name}: nearest training image in statistics"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    original = evaluations[0].metrics["lines_original"]
    for count in np.unique(original):
        chosen = original == count
        cells = [str(count), str(int(chosen.sum()))]
        cells += [
            f"{np.mean(values[chosen] == count):.0%} same, mean {values[chosen].mean():.2f}"
            for e in evaluations
            for values in (e.metrics["lines_reconstruction"], e.nearest_lines)
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def overfitting_lines(evaluations):
    """The overfitting check as a table and one conclusion per model."""
    lines = [
        "| model | space | training reconstructions: median / mean | validation reconstructions: median / mean "
        "| KS statistic | p-value |",
        "|---|---|---|---|---|---|",
    ]
    conclusions = []
    for e in evaluations:
        differing = []
        for space in SPACES:
            train, validation = e.overfitting["train"][space], e.overfitting["validation"][space]
            statistic, p_value = e.overfitting_tests[space]
            lines.append(
                f"| {e.name} | {space} | {np.median(train):.3e} / {np.mean(train):.3e} | "
                f"{np.median(validation):.3e} / {np.mean(validation):.3e} | {statistic:.3f} | {p_value:.2g} |"
            )
            if p_value < SIGNIFICANCE:
                differing.append(space)
        conclusions.append(
            f"- {e.name}: the training and validation distributions differ (p < {SIGNIFICANCE:g}) in "
            f"{' and '.join(differing)}."
            if differing
            else f"- {e.name}: no evidence that the training and validation distributions differ "
            f"(p >= {SIGNIFICANCE:g} in both spaces), as the paper reports for its model."
        )
    return lines + [""] + conclusions


def _data_description(e):
    c, sizes = e.config, e.split_sizes
    counts = f"{sum(sizes.values())} images {c.image_size}x{c.image_size}, {e.n_phases} phases: " + " / ".join(
        f"{sizes[name]} {name}" for name in ("train", "validation", "test")
    )
    if c.dataset == "folder":
        return f"folder {os.path.basename(os.path.normpath(c.data_dir))}, {counts}"
    if c.dataset == "gaussian":
        return f"gaussian (generated), {counts}; fractions {c.volume_fractions}, correlation {c.correlation_length:g}"
    lines = c.lines
    return (
        f"lines (generated), {counts}; {lines.min_lines}-{lines.max_lines} lines, thickness "
        f"{lines.min_thickness}-{lines.max_thickness}, length {lines.min_length}-{lines.max_length}, "
        f"gap {lines.min_gap}"
    )


def _setup_rows(evaluations):
    """Rows describing each run's data, model and training, from the data and the log actually used."""
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
        terms += [f"a pixel term fading from 1 to 0 over {c.pixel_warmup:.0%} of the epochs"] if c.pixel_warmup else []
        encoder = (
            f"{c.encoder} ({'frozen' if c.freeze_encoder else 'trained'}, "
            f"{'weights ' + os.path.basename(c.encoder_weights) if c.encoder_weights else 'random start'}), "
            f"latent {c.latent_dim}"
        )
        training = (
            f"{' + '.join(terms)} + {c.beta:g} * KL; {len(e.history)} epochs of {e.history[-1]['train_images']} "
            f"images, batch {c.batch_size}, Adam {c.lr:g} (halved after {c.lr_halve_at:g} of the epochs), seed {c.seed}"
        )
        time = f"{seconds:.0f} s ({seconds / len(e.history):.1f} s/epoch)"
        rows.append((e.name, _data_description(e), encoder, training, time))
    return rows


def differences_from_paper(evaluation):
    """ "name value (paper: value)" for every setting of the run that differs from the paper's preset."""
    paper = flat_settings(preset_config("paper" if evaluation.kind == "statistics" else "paper-baseline"))
    ours = flat_settings(evaluation.config)
    ignored = {"workers", "checkpoint_every", "encoder_weights", "data_dir", "label_map"}
    if ours["dataset"] != "lines":
        ignored |= set(DATASET_SETTINGS["lines"])
    if ours["dataset"] != "gaussian":
        ignored |= set(DATASET_SETTINGS["gaussian"])
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
    lines_run = "lines_original" in evaluations[0].metrics
    plot_reconstructions(evaluations, os.path.join(out, "reconstructions.png"))
    plot_mse_histograms(evaluations, os.path.join(out, "mse_histograms.png"))
    plot_training_curves(evaluations, os.path.join(out, "training_curves.png"))
    plot_overfitting(evaluations, os.path.join(out, "overfitting.png"))
    plot_volume_fraction_difference(
        evaluations,
        os.path.join(out, "volume_fraction_difference.png"),
        PAPER_RESULTS["statistics"]["volume_fraction_difference_mean"],
    )
    for e in evaluations:
        plot_nearest_training_images(e, os.path.join(out, f"nearest_training_images_{e.kind}.png"))
        plot_latent_traversal(e, os.path.join(out, f"latent_traversal_{e.kind}.png"))
    if lines_run:
        plot_line_counts(evaluations, os.path.join(out, "line_counts.png"))
    first = evaluations[0]
    n, split = first.summary["n_images"], first.split
    text = ["# Spatial-statistics VAE: evaluation report", ""]
    if len(evaluations) == 2:
        text += ["## Verdict", "", verdict(*evaluations)[1], ""]
    text += ["## Metrics", "", *metrics_table(evaluations), ""]
    text += [
        f"This run: the first {n} images of the {split} split (z = mu). Paper: 100 image pairs for "
        "orientation, line count and volume fraction (judged by eye), 1000 validation images for the MSEs; "
        "n/r = not reported. The rules that replace the paper's judgement by eye are in `model/metrics.py` "
        "(orientation from the line-phase S2, lines as 8-connected components of the thresholded reconstruction). "
        "The paper's two-point MSE compares the original's indicator with the soft indicator exp(-x^2 / 0.125) of "
        "the reconstruction's intensity x, as the authors' script does; the next row uses the reconstruction's "
        "phase probabilities (what the normalized loss compares). The absolute MSEs depend on the image and line "
        "sizes (the paper: 224x224), so compare the two models of a run, and the ratios, rather than the absolute "
        "values.",
        "",
    ]
    if lines_run:
        text += [
            "## Line counts (the paper's Fig. 3)",
            "",
            *line_count_table(evaluations),
            "",
            "The nearest training image in statistics is the training image whose S2 has the least MSE to the "
            "reconstruction's (the paper finds that it has the original's number of lines more often than the "
            "reconstruction itself).",
            "",
            "![line counts](line_counts.png)",
            "",
        ]
    text += [
        "## Volume-fraction difference (the paper's Fig. 2)",
        "",
        "Mean "
        + ", ".join(f"{e.name} {e.summary['volume_fraction_difference_mean']:.1f}%" for e in evaluations)
        + " (paper: 17%).",
        "",
        "![volume-fraction difference](volume_fraction_difference.png)",
        "",
        "## Nearest training images (the paper's Tables 4-6)",
        "",
        f"For the first {EXAMPLES} held-out images: the reconstruction and the training images nearest to it by the "
        f"MSE of the images and by the MSE of their S2 maps (searched over all {first.split_sizes['train']} training "
        "images), each with its S2 map.",
        "",
    ]
    text += [f"![{e.name}: nearest training images](nearest_training_images_{e.kind}.png)\n" for e in evaluations]
    text += [
        "## Overfitting check (the paper's Figs. 4/5)",
        "",
        "For the reconstructions of the first training images and of the first validation images: the mean MSE "
        "against every image of their own split, in data space and in statistics space (S2 of the probabilities), "
        "compared by a two-sample Kolmogorov-Smirnov test.",
        "",
        *overfitting_lines(evaluations),
        "",
        "![overfitting check](overfitting.png)",
        "",
        "## Runs",
        "",
        "| model | data | encoder | objective and training | training time |",
        "|---|---|---|---|---|",
    ]
    text += ["| " + " | ".join(row) + " |" for row in _setup_rows(evaluations)]
    text += ["", "Settings that differ from the paper's (the presets explain theirs in `model/train.py`):", ""]
    text += [f"- {e.name}: " + ("; ".join(differences_from_paper(e)) or "none") for e in evaluations]
    text += [
        "",
        "## More figures",
        "",
        "![reconstructions with their S2 maps](reconstructions.png)",
        "",
        "![per-image MSE histograms](mse_histograms.png)",
        "",
        "![training curves](training_curves.png)",
        "",
    ]
    text += [f"![{e.name}: latent traversal](latent_traversal_{e.kind}.png)\n" for e in evaluations]
    path = os.path.join(out, "report.md")
    with open(path, "w") as handle:
        handle.write("\n".join(text))
    return path
