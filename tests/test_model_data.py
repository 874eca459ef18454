"""The data of the VAE: line images whose labels can be read back, other microstructures, folders, splits."""

import csv

import numpy as np
import pytest
import torch

from model.data import (
    ORIENTATIONS,
    FolderDataset,
    GaussianDataset,
    LineConfig,
    LineDataset,
    parse_label_map,
    split_indices,
    write_line_images,
)
from model.metrics import count_components, orientations

SMALL_LINES = LineConfig(min_thickness=2, max_thickness=3, min_length=32, max_length=64, min_gap=3)


@pytest.mark.parametrize("size, config", [(64, SMALL_LINES), (224, LineConfig())])
def test_line_labels_are_recovered_from_the_images(size, config):
    dataset = LineDataset(60, size, config, seed=7)
    images = torch.stack([dataset[i] for i in range(len(dataset))])
    labels = [dataset.labels(i) for i in range(len(dataset))]
    lines = images == 0
    counts = count_components(lines)
    fractions = lines.flatten(1).float().mean(1)
    from spatialstats import two_point

    found = orientations(two_point(lines.float()), fractions)
    assert counts.tolist() == [label.n_lines for label in labels]
    assert [ORIENTATIONS[i] for i in found] == [label.orientation for label in labels]
    assert np.allclose(fractions.numpy(), [label.volume_fraction for label in labels])
    assert {label.n_lines for label in labels} == set(range(config.min_lines, config.max_lines + 1))
    assert {label.orientation for label in labels} == set(ORIENTATIONS)


def test_each_line_has_the_configured_thickness_and_length():
    dataset = LineDataset(40, 64, SMALL_LINES, seed=1)
    for index in range(len(dataset)):
        image, labels = dataset.image_and_labels(index)
        along = 1 if labels.orientation == "horizontal" else 0
        line = image == 0
        # across the lines, runs of line pixels are the thicknesses; along them, the lengths
        for axis, low, high in (
            (1 - along, SMALL_LINES.min_thickness, SMALL_LINES.max_thickness),
            (along, SMALL_LINES.min_length, SMALL_LINES.max_length),
        ):
            runs = np.diff(np.pad(np.moveaxis(line, axis, -1).astype(np.int8), ((0, 0), (1, 1))), axis=-1)
            starts, ends = np.nonzero(runs == 1), np.nonzero(runs == -1)
            lengths = ends[1] - starts[1]
            assert lengths.min() >= low and lengths.max() <= high


def test_line_images_depend_on_seed_and_index_only():
    a, b = LineDataset(5, 64, SMALL_LINES, seed=3), LineDataset(9, 64, SMALL_LINES, seed=3)
    assert torch.equal(a[4], b[4])
    assert not torch.equal(a[3], a[4])
    assert not torch.equal(a[4], LineDataset(5, 64, SMALL_LINES, seed=4)[4])
    with pytest.raises(IndexError):
        a[5]


@pytest.mark.parametrize(
    "config, size, words",
    [
        (LineConfig(min_lines=3, max_lines=2), 224, ["lines"]),
        (LineConfig(), 64, ["max_length", "64"]),
        (LineConfig(min_gap=0), 224, ["min_gap"]),
    ],
)
def test_impossible_line_settings_are_refused(config, size, words):
    with pytest.raises(ValueError) as error:
        LineDataset(1, size, config)
    assert all(word in str(error.value) for word in words)


def test_gaussian_three_phase_fractions():
    dataset = GaussianDataset(4, 64, volume_fractions=(0.2, 0.3), correlation_length=3.0, seed=0)
    image = dataset[2].numpy()
    assert dataset.n_phases == 3
    assert np.allclose([np.mean(image == p) for p in range(3)], [0.2, 0.3, 0.5], atol=1e-3)
    with pytest.raises(ValueError, match="volume_fractions"):
        GaussianDataset(4, 64, volume_fractions=(0.6, 0.5))


def test_folder_of_png_tiff_and_npy(tmp_path):
    from PIL import Image

    labels = np.zeros((32, 32), np.uint8)
    labels[4:8] = 1
    labels[20:] = 2
    grey = np.array([0, 128, 255], np.uint8)[labels]
    Image.fromarray(grey).save(tmp_path / "a.png")
    Image.fromarray(grey).save(tmp_path / "b.tif")
    np.save(tmp_path / "c.npy", labels.astype(np.int64))
    dataset = FolderDataset(str(tmp_path))
    assert len(dataset) == 3 and dataset.n_phases == 3 and dataset.label_map == {0: 0, 128: 1, 255: 2}
    for index in range(3):
        assert np.array_equal(dataset[index].numpy(), labels)
    swapped = FolderDataset(str(tmp_path), parse_label_map("0=2,128=1,255=0"))
    assert np.array_equal(swapped[0].numpy(), 2 - labels)
    with pytest.raises(ValueError, match="not in the label map"):
        FolderDataset(str(tmp_path), {0: 0, 255: 1})


@pytest.mark.parametrize("text", ["", "0:1", "a=1", "1/2=3", "0=-1"])
def test_bad_label_maps(text):
    with pytest.raises(ValueError, match=r"VALUE=PHASE|empty"):
        parse_label_map(text)


def test_colour_label_map():
    assert parse_label_map("255/0/0=1, 0=0") == {(255, 0, 0): 1, 0: 0}


def test_split_is_a_seeded_partition():
    parts = split_indices(1000, (0.7, 0.2, 0.1), seed=5)
    assert [len(parts[name]) for name in ("train", "validation", "test")] == [700, 200, 100]
    assert np.array_equal(np.sort(np.concatenate(list(parts.values()))), np.arange(1000))
    assert np.array_equal(split_indices(1000, (0.7, 0.2, 0.1), seed=5)["test"], parts["test"])
    assert not np.array_equal(split_indices(1000, (0.7, 0.2, 0.1), seed=6)["test"], parts["test"])
    with pytest.raises(ValueError, match="fractions"):
        split_indices(10, (0.5, 0.2), seed=0)


def test_written_line_images_read_back(tmp_path):
    write_line_images(str(tmp_path), 6, 64, SMALL_LINES, seed=2)
    folder = FolderDataset(str(tmp_path / "images"))
    generated = LineDataset(6, 64, SMALL_LINES, seed=2)
    with open(tmp_path / "labels.csv") as handle:
        rows = list(csv.DictReader(handle))
    for index in range(6):
        assert torch.equal(folder[index], generated[index])
        labels = generated.labels(index)
        assert rows[index]["LineType"] == labels.orientation
        assert int(rows[index]["NumberOfLines"]) == labels.n_lines


def test_folder_phases_come_from_every_file_and_sizes_must_agree(tmp_path):
    np.save(tmp_path / "a.npy", np.arange(64).reshape(8, 8) % 2)  # phases 0 and 1
    np.save(tmp_path / "b.npy", np.arange(64).reshape(8, 8) % 2 + 2)  # phases 2 and 3
    assert FolderDataset(str(tmp_path)).n_phases == 4
    np.save(tmp_path / "c.npy", np.zeros((9, 9), np.int64))
    with pytest.raises(ValueError, match="differs"):
        FolderDataset(str(tmp_path))[2]
