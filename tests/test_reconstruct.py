"""reconstruct: known answers, batching, 3D from 2D slices, multiphase, precomputed statistics, bad input.

Every error is checked against an independent float64 computation with the reference backend.
"""

import numpy as np
import pytest
import torch

import spatialstats as ss


def blobs(shape, sigma, fractions, seed):
    """Level sets of a periodic Gaussian random field: phases 0..len(fractions)-1 with those fractions."""
    field = np.random.default_rng(seed).standard_normal(shape)
    frequencies = np.meshgrid(*[np.fft.fftfreq(n) for n in shape], indexing="ij")
    kernel = np.exp(-2 * np.pi**2 * sigma**2 * sum(k**2 for k in frequencies))
    field = np.fft.ifftn(np.fft.fftn(field) * kernel).real
    return np.digitize(field, np.quantile(field, np.cumsum(fractions)[:-1]))


def rms(labels, example, pairs, cutoff, periodic=True):
    """Per-sample RMS of the statistics of ``labels`` (n, *spatial) against the example's, float64 reference."""
    n_phases = int(example.max()) + 1
    options = dict(n_phases=n_phases, pairs=pairs, cutoff=cutoff, periodic=periodic, backend="reference")
    options["spatial_dims"] = example.ndim
    target = ss.two_point_all(example, **options).stats
    stats = ss.two_point_all(labels, **options).stats
    return np.sqrt(((stats - target) ** 2).reshape(len(labels), -1).mean(1))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These images are small: one thread saves the OpenMP start-up of every op (10x on a loaded machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def two_phase():
    return blobs((32, 32), 2.0, (0.6, 0.4), 0)


def test_example_reconstructed_from_its_own_statistics(two_phase):
    result = ss.reconstruct(two_phase, cutoff=4, n_samples=3, progress=False)
    labels = result.labels
    assert isinstance(labels, np.ndarray) and labels.dtype == np.int64 and labels.shape == (3, 32, 32)
    counts = np.bincount(two_phase.ravel())
    for sample in labels:
        np.testing.assert_array_equal(np.bincount(sample.ravel(), minlength=2), counts)
    error = rms(labels, two_phase, "all", 4)
    np.testing.assert_allclose(result.error, error, rtol=1e-4, atol=1e-6)
    start = rms(blobs((32, 32), 0.0, (0.6, 0.4), 1)[None], two_phase, "all", 4)
    assert error.max() < 4e-3 and error.max() < start[0] / 8
    assert result.pairs == ((0, 0), (1, 1), (0, 1))
    assert result.history.shape[1] == 3 and np.all(np.diff(result.history, axis=0) <= 1e-9)
    np.testing.assert_allclose(result.history[-1], error, rtol=1e-3)
    assert not np.array_equal(labels[0], labels[1])


def test_stripes_come_back_with_their_period_and_orientation():
    stripes = np.tile(np.arange(18) % 6 < 3, (12, 1)).astype(int)
    result = ss.reconstruct(stripes, cutoff=3, n_samples=8, progress=False)
    exact = [any(np.array_equal(np.roll(stripes, shift, axis=1), s) for shift in range(6)) for s in result.labels]
    # a sample that misses holds a slipped stripe, a local minimum of E (see the module docstring)
    assert sum(exact) >= 5
    np.testing.assert_allclose(result.error[exact], 0, atol=1e-6)
    assert (result.error[~np.array(exact)] > 0.01).all()


def test_checkerboard_comes_back():
    board = np.indices((12, 12)).sum(0) % 2
    for sample in ss.reconstruct(board, cutoff=3, n_samples=8, progress=False).labels:
        assert np.array_equal(sample, board) or np.array_equal(sample, 1 - board)


def test_batch_is_seeded_torch_in_torch_out(two_phase):
    example = torch.from_numpy(two_phase)
    first = ss.reconstruct(example, cutoff=3, n_samples=2, seed=5, iterations=15, progress=False)
    again = ss.reconstruct(example, cutoff=3, n_samples=2, seed=5, iterations=15, progress=False)
    other = ss.reconstruct(example, cutoff=3, n_samples=1, seed=6, iterations=15, progress=False)
    assert isinstance(first.labels, torch.Tensor) and first.labels.dtype == torch.int64
    assert isinstance(first.error, torch.Tensor) and first.history.shape == (16, 2)
    assert torch.equal(first.labels, again.labels)
    assert not torch.equal(first.labels[0], first.labels[1]) and not torch.equal(first.labels[0], other.labels[0])


def test_other_shape_rounds_the_volume_fractions(two_phase):
    result = ss.reconstruct(two_phase, cutoff=4, shape=(20, 44), iterations=30, progress=False)
    assert result.labels.shape == (1, 20, 44)
    assert abs(result.labels.mean() - two_phase.mean()) <= 0.5 / (20 * 44)
    np.testing.assert_allclose(result.error, rms(result.labels, two_phase, "all", 4), rtol=1e-4, atol=1e-6)


def test_volume_from_a_volume():
    example = blobs((12, 12, 12), 1.5, (0.7, 0.3), 6)
    result = ss.reconstruct(example, spatial_dims=3, cutoff=2, iterations=25, progress=False)
    error = rms(result.labels, example, "all", 2)
    np.testing.assert_allclose(result.error, error, rtol=1e-4, atol=1e-6)
    assert result.labels.shape == (1, 12, 12, 12) and error[0] < result.history[0, 0] / 4


def slice_rms(volume, examples, cutoff, pairs="all"):
    """RMS over the three axes of the mean statistics of the slices across each axis."""
    squares = []
    for axis, example in enumerate(examples):
        slices = np.moveaxis(volume, axis, 0)
        n_phases = int(max(volume.max(), example.max())) + 1
        mean = ss.two_point_all(slices, n_phases=n_phases, pairs=pairs, cutoff=cutoff, backend="reference").stats
        target = ss.two_point_all(example, n_phases=n_phases, pairs=pairs, cutoff=cutoff, backend="reference").stats
        squares.append((mean.mean(0) - target) ** 2)
    return np.sqrt(np.mean(squares))


def test_volume_from_one_2d_example(two_phase):
    result = ss.reconstruct(two_phase, cutoff=2, shape=(8, 10, 12), n_samples=2, progress=False)
    assert result.labels.shape == (2, 8, 10, 12)
    errors = [slice_rms(volume, [two_phase] * 3, 2) for volume in result.labels]
    np.testing.assert_allclose(result.error, errors, rtol=1e-4, atol=1e-6)
    assert max(errors) < 3e-3 and max(errors) < result.history[0].min() / 20


def test_volume_from_one_example_per_axis():
    examples = [blobs((24, 24), sigma, (0.7, 0.3), seed) for seed, sigma in enumerate((1.0, 1.5, 2.0))]
    result = ss.reconstruct(examples, cutoff=2, shape=(12, 12, 12), iterations=60, progress=False)
    error = slice_rms(result.labels[0], examples, 2)
    np.testing.assert_allclose(result.error, [error], rtol=1e-4, atol=1e-6)
    assert error < result.history[0, 0] / 4


def test_three_phases_with_cross_correlations():
    example = blobs((32, 32), 1.5, (0.5, 0.3, 0.2), 2)
    result = ss.reconstruct(example, cutoff=4, n_samples=2, progress=False)
    counts = np.bincount(example.ravel())
    for sample in result.labels:
        np.testing.assert_array_equal(np.bincount(sample.ravel(), minlength=3), counts)
    error = rms(result.labels, example, "all", 4)
    np.testing.assert_allclose(result.error, error, rtol=1e-4, atol=1e-6)
    assert len(result.pairs) == 6 and error.max() < 5e-3
    autos = ss.reconstruct(example, cutoff=4, pairs="auto", iterations=20, progress=False)
    assert autos.pairs == ((0, 0), (1, 1), (2, 2))
    np.testing.assert_allclose(autos.error, rms(autos.labels, example, "auto", 4), rtol=1e-4, atol=1e-6)
    mirrored = ss.reconstruct(example, cutoff=4, pairs=[(2, 1)], iterations=20, progress=False)
    np.testing.assert_allclose(mirrored.error, rms(mirrored.labels, example, [(2, 1)], 4), rtol=1e-4, atol=1e-6)


def test_non_periodic(two_phase):
    result = ss.reconstruct(two_phase, cutoff=4, periodic=False, iterations=40, progress=False)
    error = rms(result.labels, two_phase, "all", 4, periodic=False)
    np.testing.assert_allclose(result.error, error, rtol=1e-4, atol=1e-6)
    assert error[0] < result.history[0, 0] / 4


def test_statistics_in_place_of_the_example(two_phase):
    # The swap search is chaotic: targets that differ in the last bit (an FFT's round-off at another
    # window) give other samples, so both routes use the exact direct sums.
    stats = ss.two_point_all(two_phase, pairs="all", cutoff=6, backend="reference")
    options = dict(cutoff=4, seed=1, iterations=10, progress=False, backend="reference")
    from_example = ss.reconstruct(two_phase, **options)
    from_stats = ss.reconstruct(statistics=stats, shape=(32, 32), **options)
    np.testing.assert_array_equal(from_stats.labels, from_example.labels)
    fractions = [1 - two_phase.mean(), two_phase.mean()]
    given = ss.reconstruct(statistics=stats.stats, volume_fractions=fractions, shape=(32, 32), **options)
    np.testing.assert_array_equal(given.labels, from_example.labels)


def test_weights_and_tolerance(two_phase):
    weights = np.ones((3, 9, 9))
    weights[:, 4, 4] = 0  # the volume fractions are exact anyway
    weighted = ss.reconstruct(two_phase, cutoff=4, weights=weights, iterations=20, progress=False)
    np.testing.assert_allclose(weighted.error, rms(weighted.labels, two_phase, "all", 4), rtol=1e-4, atol=1e-6)
    stopped = ss.reconstruct(two_phase, cutoff=4, tolerance=0.01, progress=False)
    assert stopped.history[-1, 0] <= 0.01 < stopped.history[-2, 0]


STATS = ss.two_point_all(blobs((16, 16), 1.5, (0.6, 0.4), 0), pairs="all", cutoff=3).stats
EXAMPLE = blobs((16, 16), 1.5, (0.6, 0.4), 0)


def edited(change):
    stats = STATS.copy()
    change(stats)
    return stats


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        (dict(example=EXAMPLE, cutoff=3, shape=(6, 16)), ValueError, ["shape", "smaller than the window", "7"]),
        (dict(example=EXAMPLE[:5], cutoff=3), ValueError, ["example", "smaller than the window"]),
        (dict(example=EXAMPLE, cutoff=3, periodic=False, shape=(3, 16)), ValueError, ["smaller", "k + 1"]),
        (
            dict(statistics=edited(lambda s: s.__setitem__((0, 3, 3), 0.7)), shape=(16, 16), cutoff=3),
            ValueError,
            ["sum to"],
        ),
        (
            dict(statistics=edited(lambda s: s.__setitem__((2, 3, 3), 0.1)), shape=(16, 16), cutoff=3),
            ValueError,
            ["cross"],
        ),
        (
            dict(statistics=edited(lambda s: s.__setitem__((1, 0, 0), 0.3)), shape=(16, 16), cutoff=3),
            ValueError,
            ["sum_j S_1j"],
        ),
        (dict(statistics=STATS[:2], shape=(16, 16), cutoff=3), ValueError, ["P = n(n + 1)/2"]),
        (dict(statistics=STATS[:, :6, :6], shape=(16, 16), cutoff=3), ValueError, ["2k + 1"]),
        (
            dict(statistics=edited(lambda s: s.__setitem__((1, 0, 0), np.nan)), shape=(16, 16), cutoff=3),
            ValueError,
            ["NaN"],
        ),
        (dict(statistics=STATS * 2, shape=(16, 16), cutoff=3), ValueError, ["[0, 1]"]),
        (dict(statistics=STATS, shape=(16, 16)), ValueError, ["smaller than cutoff=16", "cutoff=3"]),
        (dict(statistics=STATS, shape=(16, 16), cutoff=3, volume_fractions=[0.5, 0.4]), ValueError, ["sum to 1"]),
        (dict(statistics=STATS, shape=(16, 16), cutoff=3, volume_fractions=[0.5, 0.5]), ValueError, ["disagree"]),
        (
            dict(statistics=STATS, shape=(16, 16), cutoff=3, volume_fractions=[0.6, 0.4, 0.0]),
            ValueError,
            ["one fraction"],
        ),
        (dict(statistics=STATS, cutoff=3), ValueError, ["shape is required"]),
        (dict(statistics=STATS.astype(int), shape=(16, 16), cutoff=3), TypeError, ["floating"]),
        (dict(example=EXAMPLE, volume_fractions=[0.6, 0.4], cutoff=3), ValueError, ["implied"]),
        (dict(example=EXAMPLE, statistics=STATS), ValueError, ["exactly one"]),
        (dict(), ValueError, ["exactly one"]),
        (dict(example=EXAMPLE.astype(float), cutoff=3), TypeError, ["integer", "label image"]),
        (dict(example=EXAMPLE - 1, cutoff=3), ValueError, ["negative"]),
        (dict(example=np.zeros((16, 16), int), cutoff=3), ValueError, ["single phase"]),
        (dict(example=np.stack([EXAMPLE] * 2), cutoff=3), ValueError, ["2D label image", "spatial_dims"]),
        (dict(example=EXAMPLE, cutoff=3, shape=16), TypeError, ["shape", "tuple"]),
        (dict(example=EXAMPLE, cutoff=3, shape=(16,)), ValueError, ["shape", "axes"]),
        (dict(example=[EXAMPLE] * 2, cutoff=3, shape=(8, 8, 8)), ValueError, ["three"]),
        (dict(example=EXAMPLE[:, :14], cutoff=None, shape=(16, 16, 16)), ValueError, ["one cutoff"]),
        (dict(example=EXAMPLE, cutoff=3, n_samples=0), ValueError, ["n_samples"]),
        (dict(example=EXAMPLE, cutoff=3, tolerance=-1.0), ValueError, ["tolerance"]),
        (dict(example=EXAMPLE, cutoff=3, pairs=[(0, 2)]), ValueError, ["pair"]),
        (dict(example=EXAMPLE, cutoff=3, weights=np.ones((3, 5, 5))), ValueError, ["weights"]),
        (dict(example=EXAMPLE, cutoff=3, weights=np.zeros((3, 7, 7))), ValueError, ["weights", "zero"]),
    ],
)
def test_bad_input_says_what_was_expected(kwargs, error, words):
    with pytest.raises(error) as info:
        ss.reconstruct(progress=False, **kwargs)
    for word in words:
        assert word in str(info.value)


def test_command_line_writes_samples_figure_and_errors(tmp_path, capsys):
    from PIL import Image

    from spatialstats.cli import main

    example = blobs((24, 24), 1.5, (0.5, 0.3, 0.2), 4)
    Image.fromarray(np.array([0, 128, 255], dtype=np.uint8)[example]).save(tmp_path / "three.png")
    out = tmp_path / "flat"
    argv = ["reconstruct", str(tmp_path / "three.png"), "--shape", "20", "28", "--n", "2", "--cutoff", "3"]
    assert main([*argv, "--iterations", "30", "--out", str(out)]) == 0
    labels = np.load(out / "labels.npy")
    assert labels.shape == (2, 20, 28)
    for i in range(2):
        grey = np.asarray(Image.open(out / f"sample_{i:02d}.png"))
        np.testing.assert_array_equal(grey, np.array([0, 128, 255])[labels[i]])
    rows = (out / "errors.csv").read_text().splitlines()
    assert rows[0] == "sample,rms_error,fraction_0,fraction_1,fraction_2" and len(rows) == 3
    np.testing.assert_allclose([float(r.split(",")[1]) for r in rows[1:]], rms(labels, example, "all", 3), rtol=1e-4)
    assert Image.open(out / "reconstruction.png").size[0] > 600
    assert "2 samples of 20x28" in capsys.readouterr().out

    np.save(tmp_path / "two.npy", blobs((24, 24), 1.5, (0.6, 0.4), 5))
    volume = tmp_path / "volume"
    assert (
        main(
            [
                "reconstruct",
                str(tmp_path / "two.npy"),
                "--shape",
                "8",
                "8",
                "8",
                "--cutoff",
                "2",
                "--out",
                str(volume),
                "--iterations",
                "5",
            ]
        )
        == 0
    )
    pages = Image.open(volume / "sample_00.tif")
    assert pages.n_frames == 8
    np.testing.assert_array_equal(np.asarray(pages), 255 * np.load(volume / "labels.npy")[0, 0])
    assert main(["reconstruct", str(tmp_path / "two.npy"), "--cutoff", "20", "--out", str(volume)]) == 2
    assert "smaller than the window" in capsys.readouterr().err
