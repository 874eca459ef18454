"""Reading phase maps from .npy, .png and .tif(f) files, and turning them into label images."""

import os

import numpy as np

IMAGE_SUFFIXES = (".npy", ".png", ".tif", ".tiff")
MAX_IMAGE_PHASES = 16
RELABEL = "relabel with numpy.unique(labels, return_inverse=True)[1].reshape(labels.shape)"


def read_array(path):
    """The array stored in ``path``: .npy as saved; .png/.tif(f) as (H, W) or (H, W, 3), a multi-page
    TIFF as (pages, H, W). An alpha channel that is opaque everywhere is dropped; one with
    transparent pixels is an error (a phase map has no transparency: give the valid region as a mask)."""
    suffix = os.path.splitext(str(path))[1].lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ValueError(f"{path}: unsupported file type {suffix!r}; expected one of {', '.join(IMAGE_SUFFIXES)}")
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file")
    if suffix == ".npy":
        try:
            return np.load(path, allow_pickle=False)
        except (ValueError, OSError) as error:
            raise ValueError(f"{path}: not a readable .npy file ({error})") from None
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise ImportError("reading .png/.tif files needs Pillow: pip install 'spatialstats[plot]'") from None
    try:
        with Image.open(path) as image:
            pages = []
            for index in range(getattr(image, "n_frames", 1)):
                image.seek(index)
                pages.append(_without_alpha(image, path))
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"{path}: not a readable image ({error})") from None
    return pages[0] if len(pages) == 1 else np.stack(pages)


def _without_alpha(image, path):
    """One page as (H, W) grey or (H, W, 3) colour; its alpha channel, if any, must be opaque."""
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("LA", "La", "PA", "RGBA", "RGBa"):
        alpha = np.asarray(image.getchannel("A"))
        if alpha.min() < 255:
            raise ValueError(
                f"{path}: {np.count_nonzero(alpha < 255)} pixels are (partly) transparent, but a phase map has no "
                "transparency; remove the alpha channel, or save the valid region as a separate mask file (--mask)"
            )
        image = image.convert("L" if image.mode in ("LA", "La") else "RGB")
    return np.asarray(image)


def image_labels(array, name="image"):
    """(labels, values): phases 0..n-1 numbered by the sorted distinct values (or colours) of an image.

    ``array``: (H, W), (H, W, 3) colour, or (D, H, W). ``values[p]`` is the grey value or colour of phase p.
    """
    array = np.asarray(array)
    colour = array.ndim == 3 and array.shape[-1] == 3 and array.dtype == np.uint8
    flat = array.reshape(-1, array.shape[-1]) if colour else array.reshape(-1, 1)
    values, inverse = np.unique(flat, axis=0, return_inverse=True)
    if len(values) > MAX_IMAGE_PHASES:
        raise ValueError(
            f"{name} has {len(values)} distinct values; a phase map should have a few (at most "
            f"{MAX_IMAGE_PHASES}): threshold or segment the image first"
        )
    shape = array.shape[:-1] if colour else array.shape
    return inverse.reshape(shape).astype(np.int64), [tuple(v) if colour else v[0].item() for v in values]


def label_array(array, name="image"):
    """Labels from a stored label array: integers (or integral floats) >= 0 are the phases themselves."""
    array = np.asarray(array)
    if array.dtype == bool:
        return array.astype(np.int64)
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
            raise ValueError(f"{name} holds non-integer values; expected a label image of phases 0..n-1")
    elif array.dtype.kind not in "iu":
        raise ValueError(f"{name} has dtype {array.dtype}; expected a label image of integers 0..n-1")
    if array.size and array.min() < 0:
        raise ValueError(f"{name} has negative labels; expected phases 0..n-1")
    return array.astype(np.int64)


def check_phase_labels(present, name, advice=RELABEL):
    """The labels ``present`` (integers) must be the phases 0..n-1, every one of them present: a label
    image with gaps (e.g. {0, 255}) is an error, not 256 phases."""
    present = sorted(int(v) for v in present)
    if present and present[0] < 0:
        raise ValueError(f"{name} is a label image and must hold phases 0..n-1, but it has negative labels")
    if present and present[-1] + 1 != len(present):
        shown = ", ".join(map(str, present[:8])) + (", ..." if len(present) > 8 else "")
        raise ValueError(
            f"{name} holds the labels {{{shown}}} but phase labels must be 0..n-1 with every phase present "
            f"({present[-1] + 1 - len(present)} of 0..{present[-1]} are missing); {advice}"
        )


def write_label_image(path, labels, values):
    """Save a label image as a picture: phase p drawn with ``values[p]`` (a grey value or an RGB colour).

    ``labels``: (H, W) -> PNG (or single-page TIFF); (D, H, W) -> multi-page TIFF, one page per index of axis 0.
    """
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("writing .png/.tif files needs Pillow: pip install 'spatialstats[plot]'") from None
    labels = np.asarray(labels)
    palette = np.asarray(values, dtype=np.uint8)
    pages = [Image.fromarray(palette[page]) for page in (labels[None] if labels.ndim == 2 else labels)]
    if len(pages) == 1 and str(path).lower().endswith(".png"):
        pages[0].save(path)
        return
    if not str(path).lower().endswith((".tif", ".tiff")):
        raise ValueError(f"{path}: a {labels.ndim}D label array is written as .tif (or .png for 2D)")
    pages[0].save(path, save_all=True, append_images=pages[1:])
