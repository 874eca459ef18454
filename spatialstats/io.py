"""Reading phase maps from .npy, .png and .tif(f) files, and turning them into label images."""

import glob
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
    return inverse.reshape(shape).astype(np.int64), [tuple(v.tolist()) if colour else v[0].item() for v in values]


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


def find_images(sources):
    """The image files named by ``sources``: files as given, folders (their image files, sorted by name)
    and glob patterns ("data/*.png", "runs/**/*.tif"; the sorted matching image files), without repeats."""
    files = []
    for source in map(str, sources):
        if os.path.isdir(source):
            found = sorted(os.path.join(source, name) for name in os.listdir(source))
        elif any(c in source for c in "*?["):
            found = sorted(glob.glob(source, recursive=True))
        else:
            files.append(source)
            continue
        found = [f for f in found if os.path.isfile(f) and os.path.splitext(f)[1].lower() in IMAGE_SUFFIXES]
        if not found:
            raise ValueError(f"{source}: no image files ({', '.join(IMAGE_SUFFIXES)}) found there")
        files += found
    return list(dict.fromkeys(files))


def read_phase_map(path):
    """(labels, values) of a phase-map file: a .npy label array gives values None (the labels are the
    phases); an image gives its sorted distinct grey values or colours, ``labels`` indexing them."""
    array = read_array(path)
    if str(path).lower().endswith(".npy"):
        return label_array(array, name=str(path)), None
    return image_labels(array, name=str(path))


class PhaseCollection:
    """Phase maps of many files numbered alike: phase p is the same label (.npy) or the same grey value
    or colour (images) in every file, even in a file where it is absent (the .npy files together must
    hold every label 0..n-1).

    ``shapes[i]`` is the label shape of ``files[i]``; ``names[p]`` says what phase p is; ``labels(i)``
    reads file i again (or keeps it from the first reading while the kept files stay small).
    ``on_read()`` is called after each file of the first reading (a progress bar).
    """

    KEEP_BYTES = 256 * 2**20

    def __init__(self, files, on_read=None):
        self.files = list(files)
        self.shapes, self._kept, self._values = [], {}, []
        kept_bytes, present, kinds = 0, set(), set()
        for index, path in enumerate(self.files):
            labels, values = read_phase_map(path)
            if labels.size == 0:
                raise ValueError(f"{path} is empty (shape {labels.shape}); every axis needs at least one pixel")
            kinds.add("labels" if values is None else "colour" if isinstance(values[0], tuple) else "grey")
            self.shapes.append(labels.shape)
            self._values.append(values)
            if values is None:
                present.update(np.unique(labels).tolist())
            if kept_bytes + labels.nbytes <= self.KEEP_BYTES:
                self._kept[index] = labels
                kept_bytes += labels.nbytes
            if on_read is not None:
                on_read()
        if len(kinds) > 1:
            raise ValueError(
                f"the files mix {' and '.join(sorted(kinds))} phase maps, whose phases cannot be matched; "
                "give files of one kind (.npy label arrays, grey images or colour images)"
            )
        if kinds == {"labels"}:
            name = str(self.files[0]) if len(self.files) == 1 else "the union of the .npy files"
            check_phase_labels(present, name, f"{RELABEL} (a .png or .tif maps its values to phases)")
            self.values = None
            self.names = [str(p) for p in range(len(present))]
        else:
            self.values = sorted(set().union(*self._values))
            self.names = [f"value {v}" for v in self.values]
        if len(self.names) > MAX_IMAGE_PHASES:
            raise ValueError(
                f"the files hold {len(self.names)} distinct phases together; a phase map should have a few "
                f"(at most {MAX_IMAGE_PHASES}): threshold or segment the images first"
            )

    def labels(self, index):
        """Labels of file ``index`` in the collection's phase numbering, int64."""
        labels = self._kept.get(index)
        if labels is None:
            labels, values = read_phase_map(self.files[index])
            if labels.shape != self.shapes[index] or values != self._values[index]:
                raise ValueError(f"{self.files[index]} changed between its first and second reading")
        if self.values is None:
            return labels
        lookup = np.array([self.values.index(v) for v in self._values[index]], dtype=np.int64)
        return lookup[labels]


def _read_like(path, shape, dtype):
    array = read_array(path)
    if array.shape != shape or array.dtype != dtype:
        raise ValueError(
            f"{path}: shape {array.shape} and dtype {array.dtype} differ from the first file's {shape} and {dtype}; "
            "a stack needs files of one shape and type"
        )
    return array


def lazy_stack(sources):
    """A lazy dask array (n_files, *shape) of the image files of ``sources`` (files, folders, glob patterns),
    one chunk per file, read where the chunk is computed: on the workers of a dask cluster (which need
    the files at the same paths). Arrays as :func:`read_array` gives them, e.g. uint8 grey values of
    PNGs: discretise them with ``compat.PrimitiveTransformer(n_state, min_=0, max_=255)``.

    The first file is read here for the shape and dtype; every file must share them.
    """
    import dask
    import dask.array as da

    files = find_images(sources)
    first = read_array(files[0])
    read = dask.delayed(_read_like, pure=True)
    chunks = [da.from_delayed(read(f, first.shape, first.dtype), first.shape, dtype=first.dtype) for f in files]
    return da.stack(chunks)


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
