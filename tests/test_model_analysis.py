"""The report's analyses: nearest training images, the overfitting check, bootstrap ratios and the verdict."""

import dataclasses

import numpy as np
import pytest
import torch

from model.analysis import bootstrap_ratio, features, scan_split, two_sample_test
from model.data import LineDataset
from model.metrics import per_image_metrics, summarize
from model.report import Evaluation, comparability_problems, verdict
from model.train import preset_config
from model.vae import one_hot

from .test_model_data import SMALL_LINES


@pytest.fixture(scope="module")
def lines():
    dataset = LineDataset(50, 64, SMALL_LINES, seed=5)
    return torch.stack([dataset[i] for i in range(len(dataset))])


def test_scan_split_against_a_float64_brute_force(lines):
    training, queries_labels = lines[:37], lines[37:]  # 37 images: two batches of 16 and one of 5
    probabilities = one_hot(queries_labels, 2) * 0.8 + 0.1  # soft, so nothing is at distance 0
    probabilities[3] = one_hot(training[11:12], 2)[0]  # one query is a training image itself
    queries = features(probabilities)
    result = scan_split(training, queries, 2, device="cpu", batch_size=16)
    for space, query in queries.items():
        targets = features(one_hot(training, 2))[space].double()
        mse = (query.double()[:, None, :] - targets[None]).square().mean(2)  # (queries, training)
        chosen = mse[torch.arange(len(mse)), torch.from_numpy(result[space]["nearest"])]
        np.testing.assert_allclose(chosen.numpy(), mse.min(1).values.numpy(), rtol=1e-5)  # ties may go either way
        np.testing.assert_allclose(result[space]["nearest_mse"], mse.min(1).values.numpy(), rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(result[space]["mean_mse"], mse.mean(1).numpy(), rtol=1e-9, atol=1e-12)
        assert result[space]["nearest"][3] == 11


def test_bootstrap_ratio_covers_the_true_ratio_and_narrows_with_more_images():
    rng = np.random.default_rng(0)
    small, large = (rng.exponential(1.0, n) for n in (50, 2000))
    ratio, (low, high) = bootstrap_ratio(2 * small + rng.normal(0, 0.01, 50), small)
    assert ratio == pytest.approx(2, rel=0.05) and low < ratio < high
    _, (low_large, high_large) = bootstrap_ratio(2 * large + rng.normal(0, 0.01, 2000), large)
    assert low_large <= 2 <= high_large and high_large - low_large < high - low
    a, b = rng.exponential(1.0, 400), rng.exponential(1.0, 400)  # unpaired, same distribution
    _, (low, high) = bootstrap_ratio(a, b)
    assert low < 1 < high
    with pytest.raises(ValueError, match="paired"):
        bootstrap_ratio(a, b[:10])


def test_two_sample_test_tells_shifted_samples_apart():
    rng = np.random.default_rng(1)
    assert two_sample_test(rng.normal(0, 1, 500), rng.normal(0, 1, 500))[1] > 0.01
    assert two_sample_test(rng.normal(0, 1, 500), rng.normal(0.5, 1, 500))[1] < 1e-6


def _evaluation(originals, kind, reconstruction, **settings):
    metrics = per_image_metrics(originals, reconstruction, line_metrics=False)
    config = preset_config("demo-cpu" if kind == "statistics" else "demo-cpu-baseline", **settings)
    sizes = {"train": 3000, "validation": 200, "test": 800}
    return Evaluation(
        f"{kind}-loss VAE", kind, "test", config, 2, sizes, [], metrics, summarize(metrics), *([None] * 7)
    )


def test_the_verdict_follows_the_confidence_intervals(lines):
    target = one_hot(lines, 2)
    shifted = one_hot(lines.roll(7, dims=2), 2)  # the same statistics, other pixels
    blurred = target * 0.7 + 0.15  # the right pixels, other statistics
    ours, pixel = _evaluation(lines, "statistics", shifted), _evaluation(lines, "pixel", blurred)
    word, text = verdict(ours, pixel)
    assert word == "reproduced" and "**Reproduced**" in text and "[" in text
    word, text = verdict(_evaluation(lines, "statistics", blurred), _evaluation(lines, "pixel", shifted))
    assert word == "not reproduced"
    same = _evaluation(lines, "pixel", blurred)
    word, _ = verdict(_evaluation(lines, "statistics", blurred), same)
    assert word in ("inconclusive", "not reproduced")  # identical models: never "reproduced"


@pytest.mark.parametrize(
    "ours_settings, baseline_settings, kind, words",
    [
        ({}, {"n_images": 64}, "pixel", ["n_images differs"]),
        ({}, {"image_size": 48, "lines": dataclasses.replace(SMALL_LINES, max_length=48)}, "pixel", ["image_size"]),
        ({}, {"split": (0.7, 0.3, 0.0)}, "pixel", ["split differs"]),
        ({}, {"dataset": "gaussian"}, "pixel", ["dataset differs"]),
        ({}, {}, "statistics", ["not a pixel-loss model"]),
    ],
)
def test_runs_that_differ_are_not_comparable(lines, ours_settings, baseline_settings, kind, words):
    target = one_hot(lines, 2)
    ours = _evaluation(lines, "statistics", target, **ours_settings)
    baseline = _evaluation(lines, kind, target, **baseline_settings)
    problems = comparability_problems(ours, baseline)
    assert all(any(word in problem for problem in problems) for word in words), problems
    word, text = verdict(ours, baseline)
    assert word == "not comparable" and "No ratio" in text
