"""The ``spatialstats stats`` command: file types, outputs, and one-line errors for bad files."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import spatialstats as ss
from spatialstats.cli import main


@pytest.fixture
def labels():
    return np.random.default_rng(0).integers(0, 3, (20, 24))


def test_npy_label_image(tmp_path, labels, capsys):
    np.save(tmp_path / "img.npy", labels)
    out = tmp_path / "s2.npy"
    assert main(["stats", str(tmp_path / "img.npy"), "--cutoff", "4", "--cross", "--out", str(out)]) == 0
    stats = np.load(out)
    np.testing.assert_allclose(stats, ss.two_point_all(labels, cutoff=4, pairs="all").stats)
    text = capsys.readouterr().out
    for phase in range(3):
        assert f"phase {phase} ({phase}): volume fraction {np.mean(labels == phase):.6f}" in text
    assert "S00, S11, S22, S01, S02, S12" in text


def test_png_grey_values_become_phases(tmp_path, labels, capsys):
    grey = np.array([0, 128, 255], dtype=np.uint8)[labels]
    Image.fromarray(grey).save(tmp_path / "img.png")
    out = tmp_path / "s2.npy"
    assert (
        main(
            ["stats", str(tmp_path / "img.png"), "--no-periodic", "--cutoff", "3,5", "--phases", "2", "--out", str(out)]
        )
        == 0
    )
    np.testing.assert_allclose(np.load(out)[0], ss.two_point(labels == 2, cutoff=(3, 5), periodic=False))
    assert "phase 2 (value 255)" in capsys.readouterr().out


def test_colour_png_and_mask(tmp_path, labels, capsys):
    colours = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=np.uint8)[labels]
    Image.fromarray(colours).save(tmp_path / "img.png")
    mask = np.random.default_rng(1).random(labels.shape) > 0.3
    Image.fromarray((mask * 255).astype(np.uint8)).save(tmp_path / "mask.png")
    out = tmp_path / "s2.npy"
    assert (
        main(
            [
                "stats",
                str(tmp_path / "img.png"),
                "--mask",
                str(tmp_path / "mask.png"),
                "--cutoff",
                "2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    # sorted colours: (0,0,255) is phase 0 = label 2, (0,255,0) phase 1 = label 1, (255,0,0) phase 2 = label 0
    np.testing.assert_allclose(np.load(out)[0], ss.two_point(labels == 2, cutoff=2, mask=mask))
    assert "phase 0 (value (0, 0, 255))" in capsys.readouterr().out


def test_multipage_tiff_is_a_volume(tmp_path):
    volume = np.random.default_rng(2).integers(0, 2, (5, 8, 9)).astype(np.uint8) * 255
    pages = [Image.fromarray(page) for page in volume]
    pages[0].save(tmp_path / "vol.tif", save_all=True, append_images=pages[1:])
    out = tmp_path / "s2.npy"
    assert main(["stats", str(tmp_path / "vol.tif"), "--cutoff", "2", "--out", str(out)]) == 0
    np.testing.assert_allclose(np.load(out)[1], ss.two_point(volume == 255, spatial_dims=3, cutoff=2))


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda p: None, "no such file"),
        (lambda p: (p / "img.jpg").write_bytes(b"x"), "unsupported file type"),
        (lambda p: (p / "img.png").write_bytes(b"not a png"), "not a readable image"),
        (lambda p: (p / "img.npy").write_bytes(b"garbage"), "not a readable .npy"),
        (lambda p: np.save(p / "img.npy", np.random.default_rng(0).random((6, 6))), "non-integer values"),
        (lambda p: np.save(p / "img.npy", np.zeros((2, 2, 2, 2), int)), "2D image or a 3D volume"),
        (lambda p: np.save(p / "img.npy", -np.ones((4, 4), int)), "negative labels"),
        (
            lambda p: Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16)).save(p / "img.png"),
            "distinct values",
        ),
    ],
)
def test_bad_files_give_one_line_errors(tmp_path, make, words, capsys):
    make(tmp_path)
    name = next((f.name for f in tmp_path.iterdir()), "img.npy")
    assert main(["stats", str(tmp_path / name), "--out", str(tmp_path / "o.npy")]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and "\n" not in err and "Traceback" not in err


def test_bad_cutoff_and_mask_shape(tmp_path, labels, capsys):
    np.save(tmp_path / "img.npy", labels)
    np.save(tmp_path / "mask.npy", np.ones((3, 3), bool))
    assert (
        main(
            ["stats", str(tmp_path / "img.npy"), "--mask", str(tmp_path / "mask.npy"), "--out", str(tmp_path / "o.npy")]
        )
        == 2
    )
    assert "mask shape" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["stats", str(tmp_path / "img.npy"), "--cutoff", "two", "--out", "o.npy"])


def test_console_script_help():
    result = subprocess.run(
        [sys.executable, "-m", "spatialstats.cli", "stats", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0
    for words in ("--cutoff", "--no-periodic", "--mask", "--phases", "--plot", ".tif"):
        assert words in result.stdout
