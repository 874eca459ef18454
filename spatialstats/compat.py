"""PyMKS 0.4.1 drop-ins: change the import, keep the pipeline, get the same numbers from the spatialstats backends.

    from pymks import two_point_stats, PrimitiveTransformer, TwoPointCorrelation, FlattenTransformer
    ->  from spatialstats.compat import two_point_stats, PrimitiveTransformer, TwoPointCorrelation, FlattenTransformer

    pipeline = Pipeline([
        ("discretize", PrimitiveTransformer(n_state=2, max_=1)),   # (n, *spatial) -> (n, *spatial, 2)
        ("correlations", TwoPointCorrelation(cutoff=15)),          # -> (n, 31, 31, 2): S_00, S_01
        ("flatten", FlattenTransformer()),                         # -> (n, 1922)
        ("pca", PCA(n_components=3)),
    ])

Same arguments, windows and values as PyMKS. A dask array in gives a lazy dask array out, chunked like
the input along the samples (one task per chunk of samples), so it runs on any dask scheduler: threads,
processes, or a ``dask.distributed`` cluster across machines (dask arrays of cupy chunks run on the
workers' GPUs). numpy in gives numpy out, torch gives torch, cupy gives cupy.

Differences from PyMKS: ``PrimitiveTransformer`` returns numpy for numpy input (PyMKS returns a dask
array); where a masked displacement has no pair at all (N(r) = 0) PyMKS divides by zero (or by
round-off) and we return 0; bad input (a mask outside [0, 1], NaN, a correlation pair naming a
missing state) raises ``ValueError``/``TypeError``, for dask input when the chunk is computed.
The transformers need scikit-learn (``pip install 'spatialstats[pymks]'``); ``two_point_stats`` does not.
"""

import functools

import numpy as np
import torch

from . import ops
from ._backend import check_backend, dispatch
from ._common import statistics_dtype

try:
    from sklearn.base import BaseEstimator, TransformerMixin

    _ESTIMATOR_BASES = (TransformerMixin, BaseEstimator)
except ImportError:  # optional: only the sklearn transformers need it
    _ESTIMATOR_BASES = ()


def _is_dask(a):
    return type(a).__module__.split(".")[0] == "dask"


def _pymks_window(spatial, cutoff):
    """PyMKS's window: min(cutoff, (min(spatial) - 1) // 2) on every axis, (min(spatial) - 1) // 2 for None."""
    largest = (min(spatial) - 1) // 2
    requested = ops.check_cutoff(largest if cutoff is None else cutoff, len(spatial))
    return tuple(min(k, largest) for k in requested)  # PyMKS clips the cutoff


def _samples(a, name, state_axis=False):
    """Number of spatial axes of (n_samples, *spatial[, n_state]), checked to be 1 to 3."""
    extra = 2 if state_axis else 1
    if a.ndim - extra not in (1, 2, 3):
        layout = "(n_samples, *spatial, n_state)" if state_axis else "(n_samples, *spatial)"
        raise ValueError(f"{name} must have shape {layout} with 1 to 3 spatial axes, got shape {tuple(a.shape)}")
    return a.ndim - extra


def _over_sample_chunks(block_function, first, others, out_tail):
    """Lazy dask array (n_samples, *out_tail): ``block_function`` on each chunk of samples of ``first``.

    ``others`` are dask arrays with the same samples (or one sample, broadcast), cut into the same
    chunks; every other axis becomes one chunk.
    """
    from dask.array.utils import meta_from_array

    samples = first.chunks[0]
    blocks = [first.rechunk((samples,) + first.shape[1:])]
    blocks += [o.rechunk((samples if o.shape[0] == first.shape[0] else 1,) + o.shape[1:]) for o in others]
    return blocks[0].map_blocks(
        block_function,
        *blocks[1:],
        chunks=(samples,) + tuple((n,) for n in out_tail),
        dtype=np.float64,
        meta=meta_from_array(first, ndim=1 + len(out_tail), dtype=np.float64),
    )


def _dask_two_point_stats(arr1, arr2, periodic_boundary, cutoff, mask, backend):
    import dask.array as da

    d = _samples(arr1, "arr1")
    if tuple(arr2.shape) != tuple(arr1.shape):
        raise ValueError(f"arr2 has shape {tuple(arr2.shape)} but arr1 has shape {tuple(arr1.shape)}; they must match")
    periodic = ops.check_flag(periodic_boundary, "periodic_boundary")
    check_backend(backend)
    spatial = tuple(arr1.shape[1:])
    window = _pymks_window(spatial, cutoff)
    others = [] if arr2 is arr1 else [arr2]
    if mask is not None:
        mask = da.asarray(mask)
        mask = mask[None] if mask.ndim == d else mask
        if mask.ndim != d + 1 or tuple(mask.shape[1:]) != spatial or mask.shape[0] not in (1, arr1.shape[0]):
            raise ValueError(
                f"mask must have shape (*spatial) or (n_samples, *spatial) = {tuple(arr1.shape)}, "
                f"got shape {tuple(mask.shape)}"
            )
        others.append(mask)
    block = functools.partial(
        _two_point_stats_block,
        auto=arr2 is arr1,
        masked=mask is not None,
        periodic_boundary=periodic,
        cutoff=cutoff,
        backend=backend,
    )
    return _over_sample_chunks(block, arr1, others, ops.window_shape(window))


def _two_point_stats_block(arr1, *rest, auto, masked, **options):
    arr2 = arr1 if auto else rest[0]
    return two_point_stats(arr1, arr2, mask=rest[-1] if masked else None, **options)


def two_point_stats(arr1, arr2, periodic_boundary=True, cutoff=None, mask=None, *, backend="auto"):
    """Two-point statistics of ``arr1`` with ``arr2``, PyMKS's convention and window.

    Args:
        arr1, arr2: (n_samples, *spatial) fields with 1 to 3 spatial axes (any real values); numpy,
            dask, torch or cupy (both dask: a lazy dask array out; one dask, one numpy: numpy, as PyMKS).
        periodic_boundary: wrap around the image (True) or count only pairs inside it (False).
        cutoff: window half-width; PyMKS clips it to (min(spatial) - 1) // 2, which is also the
            default when None (the same on every axis, unlike ``spatialstats.two_point``).
        mask: (n_samples, *spatial) or (*spatial) confidence weights in [0, 1] (or bool).
        backend: as in :func:`spatialstats.two_point`.

    Returns:
        (n_samples, *[2 * cutoff + 1] * spatial_dims); index cutoff + r holds displacement r.
    """
    if _is_dask(arr1) and _is_dask(arr2):
        return _dask_two_point_stats(arr1, arr2, periodic_boundary, cutoff, mask, backend)
    if _is_dask(arr1) or _is_dask(arr2):
        arr1, arr2 = (np.asarray(a) if _is_dask(a) else a for a in (arr1, arr2))
        mask = np.asarray(mask) if _is_dask(mask) else mask
    a, kind, a_valid = ops.as_tensor(arr1, "arr1")
    b, b_kind, b_valid = ops.as_tensor(arr2, "arr2")
    d = _samples(a, "arr1")
    periodic = ops.check_flag(periodic_boundary, "periodic_boundary")
    check_backend(backend)
    for t, name in ((a, "arr1"), (b, "arr2")):
        ops.check_shape(t, name, d)
        ops.check_values(t, name, indicator_ints=False)
    ops.check_partner(b, b_kind, "arr2", a, kind, "arr1")
    spatial = tuple(a.shape[1:])
    window = _pymks_window(spatial, cutoff)
    valid = a_valid if b_valid is None else (b_valid if a_valid is None else a_valid & b_valid)
    flat_mask, _ = ops.prepare_mask(mask, kind, a.shape[:1], spatial, a.device, weights=True, valid=valid)
    if arr1 is arr2:
        fields, pairs = a.unsqueeze(1), ((0, 0),)
    else:
        fields, pairs = torch.stack([a, b], dim=1), ((0, 1),)
    stats = dispatch(
        ops.working_fields(fields, kind),
        pairs=pairs,
        half_widths=window,
        periodic=periodic,
        mask=flat_mask,
        backend=backend,
    )
    return ops.to_kind(stats.squeeze(1), kind)


class _StatelessTransformer(*_ESTIMATOR_BASES):
    """An sklearn transformer without state: ``fit`` returns self, ``transform`` does the work."""

    def __new__(cls, *args, **kwargs):
        if not _ESTIMATOR_BASES:
            raise ImportError(
                f"spatialstats.compat.{cls.__name__} needs scikit-learn: pip install 'spatialstats[pymks]'"
            )
        return super().__new__(cls)

    def fit(self, X=None, y=None):
        """Nothing to learn: returns self (for sklearn pipelines)."""
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        return tags


class PrimitiveTransformer(_StatelessTransformer):
    """PyMKS's primitive (hat) basis: (n_samples, *spatial) values -> (n_samples, *spatial, n_state).

    Each value, clipped to [min_, max_], is split between the two nearest of the n_state equally
    spaced local states min_, ..., max_ by linear weights (an integer label l with min_=0,
    max_=n_state-1 becomes the one-hot vector of state l). ``chunks``: chunk size of the state axis
    of a dask result (default: one chunk).
    """

    def __init__(self, n_state=2, min_=0.0, max_=1.0, chunks=None):
        self.n_state = n_state
        self.min_ = min_
        self.max_ = max_
        self.chunks = chunks

    def _states(self):
        n_state, low, high = self.n_state, self.min_, self.max_
        if isinstance(n_state, (bool, np.bool_)) or not isinstance(n_state, (int, np.integer)) or n_state < 2:
            raise ValueError(f"n_state must be an int >= 2, got {n_state!r}")
        if not (np.isfinite(low) and np.isfinite(high) and low < high):
            raise ValueError(f"min_ and max_ must be finite with min_ < max_, got min_={low!r}, max_={high!r}")
        if self.chunks is not None and (not isinstance(self.chunks, (int, np.integer)) or self.chunks < 1):
            raise ValueError(f"chunks must be None or a positive int (the state axis chunk size), got {self.chunks!r}")
        return np.linspace(low, high, n_state)

    def transform(self, X):
        """Discretise ``X`` (n_samples, *spatial): numpy, dask, torch or cupy, the same type out."""
        states = self._states()
        if _is_dask(X):
            from dask.array.utils import meta_from_array

            result = X.map_blocks(
                self.transform,
                new_axis=X.ndim,
                chunks=X.chunks + ((len(states),),),
                dtype=np.float64,
                meta=meta_from_array(X, ndim=X.ndim + 1, dtype=np.float64),
            )
            return result.rechunk({X.ndim: self.chunks or len(states)})
        x, kind = ops.as_unmasked_tensor(X, "X")
        ops.check_shape(x, "X", 0)
        ops.check_values(x, "X", indicator_ints=False)
        x = ops.working_fields(x, kind)
        x = x.to(statistics_dtype(x.dtype))
        states_t = torch.from_numpy(states).to(x)
        hat = 1 - (x.clamp(self.min_, self.max_)[..., None] - states_t).abs() / (states_t[1] - states_t[0])
        return ops.to_kind(hat.clamp_min(0), kind)


class TwoPointCorrelation(_StatelessTransformer):
    """PyMKS's two-point statistics of discretised data: (n_samples, *spatial, n_state) -> (n_samples, *window, P).

    ``correlations``: the (i, j) state pairs, P of them, in output order; None (or empty) gives
    PyMKS's default (0, 0), (0, 1), ..., (0, n_state - 1). The window follows PyMKS: half-width
    min(cutoff, (min(spatial) - 1) // 2) on every axis (see :func:`two_point_stats`).
    """

    def __init__(self, correlations=None, periodic_boundary=True, cutoff=None, *, backend="auto"):
        self.correlations = correlations
        self.periodic_boundary = periodic_boundary
        self.cutoff = cutoff
        self.backend = backend

    def _pairs(self, n_state):
        if self.correlations is None or len(self.correlations) == 0:
            return tuple((0, j) for j in range(n_state))
        return ops.check_pairs(self.correlations, tuple(range(n_state)))

    def _window(self, spatial):
        periodic = ops.check_flag(self.periodic_boundary, "periodic_boundary")
        check_backend(self.backend)
        return _pymks_window(spatial, self.cutoff), periodic

    def transform(self, X):
        """Statistics of ``X`` (n_samples, *spatial, n_state): numpy, dask, torch or cupy, the same type out."""
        if _is_dask(X):
            window, _ = self._window(tuple(X.shape[1 : 1 + _samples(X, "X", state_axis=True)]))
            out_tail = ops.window_shape(window) + (len(self._pairs(X.shape[-1])),)
            return _over_sample_chunks(self.transform, X, [], out_tail)
        x, kind = ops.as_unmasked_tensor(X, "X")
        ops.check_shape(x, "X", _samples(x, "X", state_axis=True) + 1)
        ops.check_values(x, "X", indicator_ints=False)
        pairs = self._pairs(x.shape[-1])
        window, periodic = self._window(tuple(x.shape[1:-1]))
        fields = ops.working_fields(x.movedim(-1, 1), kind)
        stats = dispatch(fields, pairs=pairs, half_widths=window, periodic=periodic, backend=self.backend)
        return ops.to_kind(stats.movedim(1, -1), kind)


class FlattenTransformer(_StatelessTransformer):
    """PyMKS's reshape before a PCA: (n_samples, ...) -> (n_samples, prod(...)), any array type (lazy for dask)."""

    def transform(self, X):
        """``X`` reshaped to (n_samples, -1)."""
        if getattr(X, "ndim", 0) < 1:
            raise ValueError(f"X must be an array of shape (n_samples, ...), got {type(X).__name__}")
        return X.reshape(X.shape[0], -1)
