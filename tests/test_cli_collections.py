"""``spatialstats stats`` on many images: folders and globs, one phase numbering for all files, mixed shapes,
the .npz output, --radial CSV, --plot per image, and the errors of collections."""

import csv

import numpy as np
import pytest
import torch
from PIL import Image

import spatialstats as ss
from model.data import gaussian_microstructure
from spatialstats.cli import main


def grey_png(path, labels, values):
    Image.fromarray(np.array(values, dtype=np.uint8)[labels]).save(path)


@pytest.fixture
def folder(tmp_path):
    """Three grey PNGs: a (20, 24) with 0/128/255, b (20, 24) without 128, c (16, 18) without 0."""
    a = gaussian_microstructure((20, 24), volume_fractions=(0.4, 0.3), correlation_length=2, seed=1)
    b = gaussian_microstructure((20, 24), correlation_length=2, seed=2)
    c = gaussian_microstructure((16, 18), correlation_length=2, seed=3)
    grey_png(tmp_path / "a.png", a, [0, 128, 255])
    grey_png(tmp_path / "b.png", b, [0, 255])
    grey_png(tmp_path / "c.png", c, [128, 255])
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path, [a, np.array([0, 2])[b], np.array([1, 2])[c]]


def test_folder_with_mixed_shapes_and_missing_phases(folder, capsys):
    path, labels = folder
    out = path / "out" / "stats.npz"
    out.parent.mkdir()
    assert main(["stats", str(path), "--cross", "--no-periodic", "--out", str(out)]) == 0
    data = np.load(out)
    # non-periodic without --cutoff: the largest window every image has, (16 - 1, 18 - 1)
    assert tuple(data["window"]) == (15, 17) and not data["periodic"]
    assert list(data["files"]) == [str(path / name) for name in ("a.png", "b.png", "c.png")]
    assert data["shapes"].tolist() == [[20, 24], [20, 24], [16, 18]]
    assert list(data["phases"]) == ["value 0", "value 128", "value 255"]
    assert list(data["pair_names"]) == ["S00", "S11", "S22", "S01", "S02", "S12"]
    assert data["pairs"].tolist() == [[0, 0], [1, 1], [2, 2], [0, 1], [0, 2], [1, 2]]
    assert data["stats"].shape == (3, 6, 31, 35) and data["stats"].dtype == np.float64
    for i, image in enumerate(labels):
        expected = ss.two_point_all(image, n_phases=3, pairs="all", cutoff=(15, 17), periodic=False).stats
        np.testing.assert_allclose(data["stats"][i], expected, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(data["volume_fractions"][i], np.bincount(image.ravel(), minlength=3) / image.size)
    text = capsys.readouterr().out
    assert "3 images of 2 shape(s) (16x18, 20x24), 3 phases, window 31x35" in text
    assert "phase 1 (value 128): volume fraction mean" in text


def test_glob_batches_and_radial_csv(tmp_path):
    images = [gaussian_microstructure((18, 18), correlation_length=1.5, seed=s) for s in range(3)]
    for s, image in enumerate(images):
        np.save(tmp_path / f"img{s}.npy", image)
    one_by_one, together, radial = tmp_path / "one.npz", tmp_path / "all.npz", tmp_path / "radial.csv"
    pattern = str(tmp_path / "img*.npy")
    common = ["--cutoff", "6", "--phases", "1", "--device", "cpu"]
    assert main(["stats", pattern, *common, "--batch-size", "1", "--out", str(one_by_one)]) == 0
    assert (
        main(["stats", pattern, *common, "--out", str(together), "--radial", str(radial), "--voxel-size", "0.5"]) == 0
    )
    stats = np.load(together)["stats"]
    np.testing.assert_array_equal(np.load(one_by_one)["stats"], stats)
    np.testing.assert_allclose(stats[:, 0], ss.two_point(np.stack(images) == 1, cutoff=6), rtol=1e-12, atol=1e-14)
    with open(radial) as stream:
        rows = list(csv.reader(stream))
    header, values = rows[0], np.array(rows[1:], dtype=float)
    files = [str(tmp_path / f"img{s}.npy") for s in range(3)]
    assert header == ["distance (units)", "bin_start (units)", "bin_end (units)"] + [f"{f}:S11" for f in files]
    curve = ss.radial_profile(stats[:, 0], bins=6, r_max=6, voxel_size=0.5)  # r_max = min(18 // 2, 6)
    np.testing.assert_array_equal(values[:, 0], curve.distance)
    np.testing.assert_array_equal(values[:, 2], curve.bin_edges[1:])
    np.testing.assert_allclose(values[:, 3:].T, curve.probability, rtol=1e-15)


def test_volumes_and_single_image_npz(tmp_path):
    volume = gaussian_microstructure((6, 7, 8), correlation_length=1.2, seed=4)
    np.save(tmp_path / "v.npy", volume)
    out = tmp_path / "v.npz"
    assert main(["stats", str(tmp_path / "v.npy"), "--cutoff", "2", "--out", str(out)]) == 0
    data = np.load(out)
    assert data["stats"].shape == (1, 2, 5, 5, 5)
    np.testing.assert_allclose(data["stats"][0], ss.two_point_all(volume, spatial_dims=3, cutoff=2).stats, rtol=1e-12)


def test_plots_one_png_or_a_folder(folder, capsys):
    path, _ = folder
    single, figures = path / "a_s2.png", path / "figures"
    argv = ["stats", str(path / "a.png"), "--phases", "2", "--out", str(path / "a.npy"), "--plot", str(single)]
    assert main(argv) == 0
    with Image.open(single) as picture:
        assert picture.format == "PNG" and picture.size[0] > 1000
    argv = ["stats", str(path / "a.png"), str(path / "c.png"), "--phases", "2", "--cutoff", "5", "--out"]
    assert main([*argv, str(path / "ac.npz"), "--plot", str(figures)]) == 0
    assert sorted(p.name for p in figures.iterdir()) == ["a.png", "c.png"]
    assert f"wrote 2 pictures into {figures}" in capsys.readouterr().out
    argv = ["stats", str(path / "b.png"), "--phases", "1", "--out", str(path / "b.npy"), "--plot", f"{figures}/"]
    assert main(argv) == 0 and (figures / "b.png").is_file()


def test_collection_errors(folder, tmp_path, capsys):
    path, _ = folder
    np.save(path / "x.npy", np.zeros((20, 24), int))
    np.save(tmp_path / "v.npy", np.zeros((4, 4, 4), int))
    cases = [
        (["stats", str(path / "b.png"), str(path / "x.npy"), "--out", "o.npz"], "mix grey and labels"),
        (["stats", str(path / "x.npy"), str(tmp_path / "v.npy"), "--out", "o.npz"], "mix 2D images and 3D volumes"),
        (["stats", str(path / "*.png"), "--out", "o.npy"], "3 images need an .npz output"),
        (["stats", str(path / "*.tif"), "--out", "o.npz"], "no image files"),
        (["stats", str(path / "*.png"), "--plot", "p.png", "--out", str(path / "o.npz")], "need a folder"),
        (["stats", str(path / "a.png"), "--cutoff", "0", "--plot", "p.png", "--out", "o.npy"], "half-width >= 1"),
    ]
    if not torch.cuda.is_available():
        cases.append((["stats", str(path / "a.png"), "--device", "cuda", "--out", "o.npy"], "no CUDA device"))
    for argv, words in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err, (argv, err)
    np.save(path / "mask.npy", np.zeros((20, 24)))
    assert main(["stats", str(path / "a.png"), "--mask", str(path / "mask.npy"), "--out", str(path / "o.npy")]) == 2
    assert "hides every pixel" in capsys.readouterr().err
    for option in (["--batch-size", "0"], ["--voxel-size", "-1"], ["--voxel-size", "inf"]):
        with pytest.raises(SystemExit):
            main(["stats", str(path / "a.png"), "--out", "o.npy", *option])


def test_npy_collections_need_every_label_in_some_file(tmp_path, capsys):
    np.save(tmp_path / "a.npy", np.array([[0, 1], [1, 0]]))
    np.save(tmp_path / "b.npy", np.array([[0, 3], [3, 3]]))
    assert main(["stats", str(tmp_path / "*.npy"), "--cutoff", "1", "--out", str(tmp_path / "s")]) == 2
    assert "the union of the .npy files holds the labels {0, 1, 3}" in capsys.readouterr().err
    np.save(tmp_path / "c.npy", np.array([[2, 2], [0, 2]]))  # now 0..3 are all present somewhere
    assert main(["stats", str(tmp_path / "*.npy"), "--cutoff", "1", "--out", str(tmp_path / "s")]) == 0
    assert f"wrote {tmp_path / 's.npz'}" in capsys.readouterr().out  # .npz appended, as numpy.savez does
    data = np.load(tmp_path / "s.npz")
    assert list(data["phases"]) == ["0", "1", "2", "3"] and data["stats"].shape == (3, 4, 3, 3)
    np.testing.assert_allclose(data["volume_fractions"][1], [0.25, 0, 0, 0.75])
    np.testing.assert_allclose(data["stats"][1, 3], ss.two_point(np.load(tmp_path / "b.npy") == 3, cutoff=1))
