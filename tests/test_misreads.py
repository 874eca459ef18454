"""Inputs that could be read two ways are errors with a way out, or are read the one sensible way."""

import time

import numpy as np
import pytest
import torch
from PIL import Image

import spatialstats as ss
from model.data import FolderDataset
from spatialstats import _fft
from spatialstats._common import computed_half_widths
from spatialstats.cli import main
from spatialstats.compat import two_point_stats


def test_label_image_with_gaps_is_an_error_not_256_phases(tmp_path, capsys):
    labels = np.where(np.random.default_rng(0).random((16, 16)) > 0.5, 255, 0).astype(np.uint8)
    with pytest.raises(ValueError, match=r"labels \{0, 255\}.*254 of 0..255 are missing.*relabel.*n_phases"):
        ss.two_point_all(labels)
    assert ss.two_point_all(labels, n_phases=256, phases=[0, 255], cutoff=1).stats.shape == (2, 3, 3)  # when meant
    relabelled = np.unique(labels, return_inverse=True)[1].reshape(labels.shape)
    np.testing.assert_allclose(ss.two_point_all(relabelled, cutoff=2).stats[1], ss.two_point(labels == 255, cutoff=2))
    np.save(tmp_path / "labels.npy", labels)
    assert main(["stats", str(tmp_path / "labels.npy"), "--out", str(tmp_path / "s2.npy")]) == 2
    assert "labels {0, 255}" in capsys.readouterr().err
    Image.fromarray(labels).save(tmp_path / "labels.png")  # an image file maps its grey values to phases
    assert main(["stats", str(tmp_path / "labels.png"), "--cutoff", "2", "--out", str(tmp_path / "s2.npy")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "s2.npy")[1], ss.two_point(labels == 255, cutoff=2))
    folder = tmp_path / "data"
    folder.mkdir()
    np.save(folder / "a.npy", labels)
    with pytest.raises(ValueError, match=r"labels \{0, 255\}"):
        FolderDataset(str(folder))


def test_loss_rejects_inputs_without_a_channel_axis():
    images = torch.rand(4, 16, 16)
    with pytest.raises(ValueError, match=r"spatial_dims=2.*4 axes.*unsqueeze\(1\)"):
        ss.TwoPointLoss(cutoff=2)(images, images)
    signals = torch.rand(3, 2, 20, dtype=torch.float64)
    loss = ss.two_point_loss(signals, signals.flip(-1), spatial_dims=1, cutoff=4, distance="mse", reduction="none")
    difference = (
        ss.two_point_all(signals, spatial_dims=1, cutoff=4).stats
        - ss.two_point_all(signals.flip(-1), spatial_dims=1, cutoff=4).stats
    )
    torch.testing.assert_close(loss, difference.square().flatten(1).mean(1))
    with pytest.raises(ValueError, match="spatial_dims=3"):
        ss.TwoPointLoss(spatial_dims=3)(torch.rand(2, 1, 4, 4), torch.rand(2, 1, 4, 4))


def test_cutoffs_beyond_the_distinct_displacements():
    pred = torch.rand(2, 1, 16, 16)
    with pytest.raises(ValueError, match="largest useful value there is 7"):
        ss.TwoPointLoss(cutoff=40)(pred, pred)
    with pytest.raises(ValueError, match="largest useful value there is 15"):
        ss.TwoPointLoss(cutoff=40, periodic=False)(pred, pred)
    started = time.perf_counter()
    with pytest.raises(ValueError, match=r"largest useful value there is 15.*cutoff=None.*\(7 there\)"):
        ss.two_point(np.ones((16, 16)), cutoff=100000)
    assert time.perf_counter() - started < 1.0  # rejected before allocating anything
    with pytest.raises(ValueError, match=r"e.g. \(3, 10\)"):
        ss.two_point(np.ones((4, 16)), cutoff=10)
    assert ss.two_point(np.ones((4, 16)), cutoff=(3, 10)).shape == (7, 21)
    assert two_point_stats(np.ones((1, 16, 16)), np.ones((1, 16, 16)), cutoff=40).shape == (1, 15, 15)  # PyMKS clips


def test_grey_and_alpha_png(tmp_path):
    grey = np.where(np.random.default_rng(1).random((12, 14)) > 0.5, 200, 10).astype(np.uint8)
    opaque = np.stack([grey, np.full_like(grey, 255)], axis=-1)
    Image.fromarray(opaque, mode="LA").save(tmp_path / "opaque.png")
    assert main(["stats", str(tmp_path / "opaque.png"), "--cutoff", "2", "--out", str(tmp_path / "s2.npy")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "s2.npy")[1], ss.two_point(grey == 200, cutoff=2))
    transparent = opaque.copy()
    transparent[0, :3, 1] = 0
    Image.fromarray(transparent, mode="LA").save(tmp_path / "transparent.png")
    with pytest.raises(ValueError, match=r"3 pixels are .*transparent.*--mask"):
        ss.io.read_array(tmp_path / "transparent.png")


def test_masked_numpy_arrays_use_their_mask():
    rng = np.random.default_rng(2)
    x = rng.random((2, 9, 8))
    hidden = rng.random((2, 9, 8)) < 0.2
    masked = np.ma.masked_array(np.where(hidden, np.nan, x), mask=hidden)
    expected = ss.two_point(np.where(hidden, 0.0, x), cutoff=2, mask=~hidden, periodic=False)
    np.testing.assert_allclose(ss.two_point(masked, cutoff=2, periodic=False), expected, rtol=1e-12)
    shared = rng.random((9, 8)) < 0.9
    both = ss.two_point(masked, cutoff=2, periodic=False, mask=shared)
    np.testing.assert_allclose(
        both, ss.two_point(np.where(hidden, 0.0, x), cutoff=2, periodic=False, mask=~hidden & shared)
    )
    labels = np.ma.masked_array(rng.integers(0, 2, (9, 8)), mask=hidden[0])
    expected = ss.two_point_all(labels.filled(0), cutoff=1, mask=~hidden[0]).stats
    np.testing.assert_allclose(ss.two_point_all(labels, cutoff=1).stats, expected)


def test_big_endian_arrays_are_read():
    x = np.random.default_rng(3).random((7, 9))
    np.testing.assert_array_equal(ss.two_point(x.astype(">f8"), cutoff=2), ss.two_point(x, cutoff=2))
    labels = (x > 0.5).astype(">i4")
    np.testing.assert_array_equal(
        ss.two_point_all(labels, cutoff=2).stats, ss.two_point_all(labels.astype(int), cutoff=2).stats
    )


def test_statistics_of_non_negative_fields_are_not_negative():
    """The fft backend's round-off below 0 is clamped; the gradient passes through unchanged."""
    gen = torch.Generator().manual_seed(4)
    indicator = (torch.rand(4, 48, 48, generator=gen) > 0.97).float()
    spatial, half_widths = (48, 48), (23, 23)
    computed = computed_half_widths(spatial, half_widths, True)
    scale = _fft._analytic_scale(spatial, computed, True, indicator.device, torch.float32)
    raw, _ = _fft._Correlation.apply(indicator.unsqueeze(1), False, ((0, 0),), computed, True, scale)
    assert raw.min() < 0  # what the clamp is for
    leaf = indicator.clone().requires_grad_()
    stats = ss.two_point(leaf, backend="fft")
    assert stats.min() == 0
    weight = torch.rand(stats.shape, generator=gen)
    (stats * weight).sum().backward()
    reference = indicator.double().requires_grad_()
    (ss.two_point(reference, backend="reference") * weight.double()).sum().backward()
    torch.testing.assert_close(leaf.grad.double(), reference.grad, rtol=1e-4, atol=1e-6)
    signed = torch.randn(2, 16, 16, generator=gen)
    assert ss.two_point(signed, backend="fft").min() < 0  # signed fields are not clamped


def test_cli_says_what_it_wrote(tmp_path, capsys):
    np.save(tmp_path / "img.npy", np.random.default_rng(5).integers(0, 2, (10, 10)))
    assert main(["stats", str(tmp_path / "img.npy"), "--cutoff", "2", "--out", str(tmp_path / "s2.txt")]) == 0
    assert f"wrote {tmp_path / 's2.txt.npy'}" in capsys.readouterr().out
    assert np.load(tmp_path / "s2.txt.npy").shape == (2, 5, 5)
