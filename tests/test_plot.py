"""spatialstats.plot: figures through matplotlib's object API (no pyplot state, no backend switch), the
S2 map's default window, phi and the phi_i phi_j asymptote on the radial curves."""

import sys

import matplotlib
import numpy as np
import pytest
from matplotlib.figure import Figure

import spatialstats as ss
from model.data import gaussian_microstructure
from spatialstats.plot import DECAY_LENGTHS_SHOWN, MIN_MAP_CUTOFF, decay_cutoff, statistics_figure, subplots


def legend_texts(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_figure_api_leaves_pyplot_and_the_backend_alone(tmp_path):
    backend, had_pyplot = matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules
    labels = gaussian_microstructure((40, 36), volume_fractions=(0.3,), correlation_length=2, seed=0)
    result = ss.two_point_all(labels, pairs=[(1, 1), (0, 1)], cutoff=12)
    figure = statistics_figure(labels, result.stats, result.pairs, voxel_size=0.5, unit="um", title="sample")
    assert isinstance(figure, Figure) and figure.get_suptitle() == "sample"
    figure.savefig(tmp_path / "f.png")
    assert matplotlib.get_backend() == backend and ("matplotlib.pyplot" in sys.modules) == had_pyplot
    map_ax, curve_ax = figure.axes[1:3]
    phi = np.mean(labels == 1)
    assert legend_texts(curve_ax) == ["S11(r)", f"$\\phi_{{1}}^2$ = {phi**2:.4g}", f"$\\phi_{{1}}$ = S(0) = {phi:.4g}"]
    assert curve_ax.get_xlabel() == "r (um)" and map_ax.get_xlabel() == "r_1 (um)"
    cross_curve = figure.axes[5]
    assert legend_texts(cross_curve)[1] == f"$\\phi_{{0}}\\phi_{{1}}$ = {phi * (1 - phi):.4g}"
    # the curve: 1-pixel bins up to min(36 // 2, 12) = 12, drawn at the bin centres in um
    x, y = curve_ax.get_lines()[0].get_data()
    curve = ss.radial_profile(result.stats[0], bins=12, r_max=12, voxel_size=0.5)
    np.testing.assert_array_equal(x, curve.distance)
    np.testing.assert_array_equal(y, curve.probability)


def test_default_map_window_follows_the_decay_and_is_named():
    labels = gaussian_microstructure((64, 64), correlation_length=1.5, seed=1)
    stats = ss.two_point(labels == 1)  # window 31 x 31
    figure = statistics_figure(labels, stats[None], [(1, 1)])
    phi = np.mean(labels == 1)
    curve = ss.radial_profile(stats, bins=31, r_max=31)
    shown = decay_cutoff(curve.distance, curve.probability, phi**2, 31)
    assert MIN_MAP_CUTOFF <= shown < 31
    map_ax = figure.axes[1]
    assert f"|r| <= {shown} pixels" in map_ax.get_title() and "default" in map_ax.get_title()
    assert map_ax.get_images()[0].get_array().shape == (2 * shown + 1, 2 * shown + 1)
    given = statistics_figure(labels, stats[None], [(1, 1)], map_cutoff=(3, 5))
    assert "|r_a| <= 3, 5 pixels" in given.axes[1].get_title() and "default" not in given.axes[1].get_title()
    assert given.axes[1].get_images()[0].get_array().shape == (7, 11)


def test_decay_cutoff_known_answers():
    distance = np.arange(100) + 0.5
    # exp(-r / 5) falls to 1/e of its r = 0.5 value at r = 5.5: the window is 4 * 5.5 = 22 pixels
    assert decay_cutoff(distance, np.exp(-distance / 5), 0.0, 100) == DECAY_LENGTHS_SHOWN * 5.5
    assert decay_cutoff(distance, np.exp(-distance / 0.3), 0.0, 100) == MIN_MAP_CUTOFF
    assert decay_cutoff(distance, np.exp(-distance / 5), 0.0, 15) == 15
    assert decay_cutoff(distance, np.full(100, 0.25), 0.25, 40) == 40  # nothing decays: the whole window
    assert decay_cutoff(distance, 1 - distance / 1000, 0.0, 60) == 60  # never reaches 1/e


def test_volume_figure_shows_a_slice_and_the_plane():
    volume = gaussian_microstructure((10, 12, 14), correlation_length=1.5, seed=2)
    stats = ss.two_point_all(volume, spatial_dims=3, cutoff=3).stats
    figure = statistics_figure(volume, stats, [(0, 0), (1, 1)], phase_names=["pore", "solid"])
    assert figure.axes[0].get_title() == "phase 0 (pore), slice 5 of axis 0"
    assert "plane r_0 = 0" in figure.axes[1].get_title()
    assert figure.axes[1].get_images()[0].get_array().shape == (7, 7)


def test_subplots_helper():
    figure, axes = subplots(2, 3, figsize=(6, 4), squeeze=False)
    assert isinstance(figure, Figure) and axes.shape == (2, 3) and tuple(figure.get_size_inches()) == (6, 4)


@pytest.mark.parametrize(
    "labels, stats, pairs, words",
    [
        (np.zeros((8, 8), int), np.zeros((1, 1, 1)), [(0, 0)], "half-width >= 1"),
        (np.zeros((8, 8), int), np.zeros((2, 5, 5)), [(0, 0)], "P = 1 pairs"),
        (np.zeros(8, int), np.zeros((1, 5)), [(0, 0)], "2D image or a 3D volume"),
    ],
)
def test_bad_input(labels, stats, pairs, words):
    with pytest.raises(ValueError) as info:
        statistics_figure(labels, stats, pairs)
    assert words in str(info.value)
