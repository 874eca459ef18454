"""The paper's metrics on hand-made reconstructions."""

import numpy as np
import pytest
import torch

from model.data import LineDataset
from model.metrics import NO_ORIENTATION, count_components, per_image_metrics, summarize
from model.vae import one_hot

from .test_model_data import SMALL_LINES


@pytest.fixture(scope="module")
def originals():
    dataset = LineDataset(40, 64, SMALL_LINES, seed=11)
    return torch.stack([dataset[i] for i in range(len(dataset))])


def test_a_perfect_reconstruction_has_no_error(originals):
    summary = summarize(per_image_metrics(originals, one_hot(originals, 2)))
    assert summary["orientation_preserved"] == 1.0 and summary["lines_preserved"] == 1.0
    for name in ("statistics_mse_probabilities", "data_mse", "volume_fraction_difference"):
        assert summary[f"{name}_mean"] == 0.0
    assert summary["statistics_mse_mean"] < 1e-8  # the soft indicator of white is exp(-8), not 0


def test_a_rotated_reconstruction_has_the_wrong_orientation(originals):
    rotated = one_hot(originals.transpose(1, 2).contiguous(), 2)
    metrics = per_image_metrics(originals, rotated)
    assert np.all(metrics["orientation_reconstruction"] != metrics["orientation_original"])
    assert np.all(metrics["orientation_reconstruction"] != NO_ORIENTATION)
    assert np.all(metrics["lines_reconstruction"] == metrics["lines_original"])
    assert np.all(metrics["volume_fraction_difference"] == 0) and np.all(metrics["statistics_mse"] > 0)


def test_a_blank_reconstruction(originals):
    blank = one_hot(torch.ones_like(originals), 2) * 0.9 + 0.05
    metrics = per_image_metrics(originals, blank)
    assert np.all(metrics["orientation_reconstruction"] == NO_ORIENTATION)
    assert np.all(metrics["lines_reconstruction"] == 0)
    assert np.all(metrics["volume_fraction_difference"] == 100)
    expected = ((blank - one_hot(originals, 2)) ** 2).mean((1, 2, 3)).numpy()
    assert np.allclose(metrics["data_mse"], expected)


def test_volume_fraction_difference_uses_the_005_threshold():
    original = torch.ones(1, 8, 8, dtype=torch.uint8)
    original[0, 2, :] = 0  # 8 line pixels
    reconstruction = one_hot(original, 2)
    reconstruction[0, :, 2, :2] = torch.tensor([0.06, 0.94]).reshape(2, 1)  # intensity 0.94: not black
    reconstruction[0, :, 5, :4] = torch.tensor([0.96, 0.04]).reshape(2, 1)  # intensity 0.04: black
    metrics = per_image_metrics(original, reconstruction, line_metrics=False)
    assert metrics["volume_fraction_difference"][0] == pytest.approx(abs(8 - (6 + 4)) / 8 * 100)
    assert "orientation_original" not in metrics


def test_components_are_8_connected_and_small_ones_are_ignored():
    mask = torch.zeros(3, 10, 10, dtype=torch.bool)
    mask[0, 1, 1] = mask[0, 2, 2] = True  # diagonal neighbours: one component
    mask[1, 0:2, 0:9] = True  # 18 pixels
    mask[1, 5, 5] = True  # 1 pixel
    mask[1, 8:10, 0:10] = True  # 20 pixels
    assert count_components(mask).tolist() == [1, 3, 0]
    assert count_components(mask, min_pixels=2).tolist() == [1, 2, 0]
    snake = torch.zeros(1, 9, 9, dtype=torch.bool)
    snake[0, ::2, :] = True
    snake[0, 1::4, -1] = True
    snake[0, 3::4, 0] = True
    assert count_components(snake).tolist() == [1]
