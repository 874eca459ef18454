"""Microstructures for the VAE: seeded generators, datasets of label images and their splits.

Every dataset yields uint8 label images (H, W) holding phases 0..C-1. In the line images phase 0
is a line (black, intensity 0) and phase 1 the background (white, intensity 1), so a two-phase
label image is also its intensity image, as in the paper.
"""

import csv
import dataclasses
import os

import numpy as np
import torch

from spatialstats.generators import check_volume_fractions, gaussian_microstructure
from spatialstats.io import IMAGE_SUFFIXES, check_phase_labels, image_labels, label_array, read_array

LINE_PHASE = 0
ORIENTATIONS = ("horizontal", "vertical")
SPLITS = ("train", "validation", "test")


def config_field(default, help, parse=None, choices=None):
    """A field of a config dataclass with its command-line help, parser (default: the type of ``default``)
    and allowed values."""
    return dataclasses.field(
        default=default, metadata={"help": help, "parse": parse or type(default), "choices": choices}
    )


@dataclasses.dataclass(frozen=True)
class LineConfig:
    """How the line images are drawn (pixel sizes, ranges inclusive).

    Defaults: the paper's 224x224 images with the thickness, length and spacing of the authors'
    published generator (written for a later set; the paper's own generator is not published) and
    1 to 4 lines, the range of the paper's Fig. 3 (the authors' README says 1 to 5).

    One orientation per image (horizontal or vertical, equally likely); ``min_lines`` to ``max_lines``
    lines; each line a rectangle of thickness ``min_thickness``..``max_thickness`` and length
    ``min_length``..``max_length`` at a uniform position. No-touching rule: a line is redrawn (up to
    ``placement_attempts`` times, then dropped) when its box comes closer than ``min_gap`` pixels to another
    line's box along both axes. This is stricter than the authors' rule (which only separates lines
    whose spans overlap) so that no two lines ever merge and the line count is always recoverable.
    """

    min_lines: int = config_field(1, "fewest lines per image")
    max_lines: int = config_field(4, "most lines per image")
    min_thickness: int = config_field(5, "thinnest line in pixels")
    max_thickness: int = config_field(9, "thickest line in pixels")
    min_length: int = config_field(112, "shortest line in pixels")
    max_length: int = config_field(224, "longest line in pixels")
    min_gap: int = config_field(10, "least distance between two lines in pixels")
    placement_attempts: int = config_field(50, "tries to place a line before it is dropped")

    def check(self, size):
        """Raise ValueError naming the first setting that cannot be drawn on a ``size`` x ``size`` image."""
        ranges = (
            ("lines", self.min_lines, self.max_lines),
            ("thickness", self.min_thickness, self.max_thickness),
            ("length", self.min_length, self.max_length),
        )
        for name, low, high in ranges:
            if not 1 <= low <= high:
                raise ValueError(f"line {name}: need 1 <= min_{name} <= max_{name}, got {low}..{high}")
        if self.max_length > size or self.max_thickness > size:
            raise ValueError(
                f"max_length {self.max_length} and max_thickness {self.max_thickness} must fit the image size {size}"
            )
        if self.min_gap < 1 or self.placement_attempts < 1:
            raise ValueError(
                f"min_gap and placement_attempts must be >= 1, got {self.min_gap} and {self.placement_attempts}"
            )


@dataclasses.dataclass(frozen=True)
class LineLabels:
    orientation: str
    n_lines: int
    volume_fraction: float


def _too_close(box, others, min_gap):
    """Whether box (r0, r1, c0, c1) (ends exclusive) lies within min_gap pixels of any box in others."""
    r0, r1, c0, c1 = box
    for q0, q1, p0, p1 in others:
        row_gap = max(q0 - r1, r0 - q1)
        column_gap = max(p0 - c1, c0 - p1)
        if row_gap < min_gap and column_gap < min_gap:
            return True
    return False


def line_image(size, config, rng):
    """One line image: (uint8 labels (size, size), 0 on lines and 1 elsewhere; LineLabels)."""
    image = np.ones((size, size), dtype=np.uint8)
    vertical = bool(rng.integers(2))
    boxes = []
    for _ in range(int(rng.integers(config.min_lines, config.max_lines + 1))):
        for _ in range(config.placement_attempts):
            thickness = int(rng.integers(config.min_thickness, config.max_thickness + 1))
            length = int(rng.integers(config.min_length, config.max_length + 1))
            start = int(rng.integers(0, size - length + 1))
            across = int(rng.integers(0, size - thickness + 1))
            box = (across, across + thickness, start, start + length)
            if vertical:
                box = (start, start + length, across, across + thickness)
            if not _too_close(box, boxes, config.min_gap):
                boxes.append(box)
                image[box[0] : box[1], box[2] : box[3]] = LINE_PHASE
                break
    labels = LineLabels(ORIENTATIONS[vertical], len(boxes), float(np.mean(image == LINE_PHASE)))
    return image, labels


class LineDataset(torch.utils.data.Dataset):
    """``n`` line images made on the fly; image i is a function of (seed, i) only.

    Item: uint8 labels (size, size). ``labels(i)`` gives its LineLabels.
    """

    n_phases = 2

    def __init__(self, n, size, config=LineConfig(), seed=0):
        config.check(size)
        self.n, self.size, self.config, self.seed = n, size, config, seed

    def __len__(self):
        return self.n

    def image_and_labels(self, index):
        if not 0 <= index < self.n:
            raise IndexError(f"index {index} out of range for {self.n} images")
        return line_image(self.size, self.config, np.random.default_rng([self.seed, index]))

    def labels(self, index):
        return self.image_and_labels(index)[1]

    def __getitem__(self, index):
        return torch.from_numpy(self.image_and_labels(index)[0])


class GaussianDataset(torch.utils.data.Dataset):
    """``n`` Gaussian-filtered random microstructures of len(volume_fractions) + 1 phases, made on the fly.

    Item: uint8 labels (size, size); image i is a function of (seed, i) only.
    """

    def __init__(self, n, size, volume_fractions=(0.5,), correlation_length=4.0, seed=0):
        self.n, self.size, self.seed = n, size, seed
        self.volume_fractions, self.correlation_length = tuple(volume_fractions), correlation_length
        self.n_phases = len(check_volume_fractions(volume_fractions, correlation_length)) + 1

    def __len__(self):
        return self.n

    def __getitem__(self, index):
        if not 0 <= index < self.n:
            raise IndexError(f"index {index} out of range for {self.n} images")
        labels = gaussian_microstructure(
            (self.size, self.size),
            volume_fractions=self.volume_fractions,
            correlation_length=self.correlation_length,
            seed=[self.seed, index],
        )
        return torch.from_numpy(labels.astype(np.uint8))


def parse_label_map(text):
    """{pixel value: phase} from "VALUE=PHASE,..." where VALUE is a grey level or an R/G/B colour."""
    mapping = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        value, sep, phase = item.partition("=")
        try:
            key = tuple(int(v) for v in value.split("/"))
            mapping[key[0] if len(key) == 1 else key] = int(phase)
        except ValueError:
            raise ValueError(f"label map entries must look like VALUE=PHASE or R/G/B=PHASE, got {item!r}") from None
        if not sep or len(key) not in (1, 3) or int(phase) < 0:
            raise ValueError(f"label map entries must look like VALUE=PHASE or R/G/B=PHASE, got {item!r}")
    if not mapping:
        raise ValueError("the label map is empty; give VALUE=PHASE pairs separated by commas")
    return mapping


class FolderDataset(torch.utils.data.Dataset):
    """The 2D phase maps of a folder (.png, .tif, .tiff, .npy), sorted by name, all of one square size.

    .npy files hold labels 0..C-1. Images are mapped to phases by ``label_map`` ({grey value or
    (R, G, B): phase}); without one, the distinct values of all images, sorted, become phases 0..C-1.
    Every file is read once here to find the phases (the mapping is in ``self.label_map``).
    Item: uint8 labels (H, W).
    """

    def __init__(self, root, label_map=None):
        if not os.path.isdir(root):
            raise ValueError(f"data folder {root!r} does not exist")
        self.paths = sorted(
            os.path.join(root, name) for name in os.listdir(root) if os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES
        )
        if not self.paths:
            raise ValueError(f"data folder {root!r} holds no {', '.join(IMAGE_SUFFIXES)} files")
        values, labels = set(), set()
        for path in self.paths:
            if _is_label_file(path):
                labels.update(np.unique(label_array(read_array(path), name=path)).tolist())
            elif label_map is None:
                values.update(image_labels(read_array(path), name=path)[1])
        check_phase_labels(labels, f"the .npy files of {root}")
        self.label_map = label_map if label_map is not None else {v: p for p, v in enumerate(sorted(values))}
        self.n_phases = max([max(labels, default=-1) + 1, *(p + 1 for p in self.label_map.values())])
        if self.n_phases > 256:
            raise ValueError(f"{root}: at most 256 phases are supported, found {self.n_phases}")
        self.size = None
        self.size = self._read(0).shape[0]

    def _read(self, index):
        path = self.paths[index]
        array = read_array(path)
        if _is_label_file(path):
            labels = label_array(array, name=path)
        else:
            found, values = image_labels(array, name=path)
            missing = [v for v in values if v not in self.label_map]
            if missing:
                raise ValueError(f"{path}: values {missing} are not in the label map {self.label_map}")
            labels = np.asarray([self.label_map[v] for v in values], dtype=np.int64)[found]
        if labels.ndim != 2 or labels.shape[0] != labels.shape[1]:
            raise ValueError(f"{path}: expected a square 2D phase map, got shape {labels.shape}")
        if self.size is not None and labels.shape[0] != self.size:
            raise ValueError(f"{path}: size {labels.shape[0]} differs from the folder's first image ({self.size})")
        return labels

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        return torch.from_numpy(self._read(index).astype(np.uint8))


def _is_label_file(path):
    return path.lower().endswith(".npy")


def split_indices(n, fractions, seed):
    """{"train", "validation", "test": sorted index arrays}: a seeded partition of range(n) by ``fractions``."""
    fractions = np.asarray(fractions, dtype=np.float64)
    if fractions.shape != (3,) or np.any(fractions < 0) or not np.isclose(fractions.sum(), 1.0):
        raise ValueError(f"split fractions must be three non-negative numbers summing to 1, got {tuple(fractions)}")
    order = np.random.default_rng([seed, n]).permutation(n)
    ends = np.round(np.cumsum(fractions) * n).astype(int)
    parts = np.split(order, ends[:2])
    return {name: np.sort(part) for name, part in zip(SPLITS, parts)}


def progress_bar(iterable, description, enabled=True, total=None):
    """``iterable`` with a tqdm progress bar on terminals when ``enabled``."""
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=description, total=total, leave=False, disable=None, dynamic_ncols=True)


def write_line_images(out, n, size, config=LineConfig(), seed=0, progress=True):
    """Write images/NNNNNN.png and labels.csv (ImageName, LineType, NumberOfLines, VolumeFraction) under ``out``."""
    from PIL import Image

    dataset = LineDataset(n, size, config, seed)
    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    with open(os.path.join(out, "labels.csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["ImageName", "LineType", "NumberOfLines", "VolumeFraction"])
        for index in progress_bar(range(n), "writing line images", progress):
            image, labels = dataset.image_and_labels(index)
            name = f"{index:06d}.png"
            Image.fromarray(image * 255).save(os.path.join(out, "images", name))
            writer.writerow([name, labels.orientation, labels.n_lines, f"{labels.volume_fraction:.6f}"])


def write_gaussian_images(out, n, size, volume_fractions, correlation_length, seed=0, progress=True):
    """Write images/NNNNNN.npy label images (phases 0..len(volume_fractions)) under ``out``."""
    dataset = GaussianDataset(n, size, volume_fractions, correlation_length, seed)
    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    for index in progress_bar(range(n), "writing gaussian images", progress):
        np.save(os.path.join(out, "images", f"{index:06d}.npy"), dataset[index].numpy())
