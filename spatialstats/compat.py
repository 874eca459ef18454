"""Drop-in replacement for PyMKS 0.4.1's ``two_point_stats``: change one import, get the same numbers.

    from pymks import two_point_stats          ->  from spatialstats.compat import two_point_stats

Same arguments, same window and same values as PyMKS, computed by the spatialstats backends.
Differences: the result is a numpy array for numpy and dask input (torch and cupy arrays come
back as their own type); where a masked displacement has no pair at all (N(r) = 0) PyMKS divides
by zero (or by round-off) and we return 0; a mask outside [0, 1] raises ``ValueError`` where PyMKS
raises ``RuntimeError``.
"""

import torch

from . import ops
from ._backend import check_backend, dispatch


def two_point_stats(arr1, arr2, periodic_boundary=True, cutoff=None, mask=None, *, backend="auto"):
    """Two-point statistics of ``arr1`` with ``arr2``, PyMKS's convention and window.

    Args:
        arr1, arr2: (n_samples, *spatial) fields with 1 to 3 spatial axes (any real values).
        periodic_boundary: wrap around the image (True) or count only pairs inside it (False).
        cutoff: window half-width; PyMKS clips it to (min(spatial) - 1) // 2, which is also the
            default when None (the same on every axis, unlike ``spatialstats.two_point``).
        mask: (n_samples, *spatial) or (*spatial) confidence weights in [0, 1] (or bool).
        backend: as in :func:`spatialstats.two_point`.

    Returns:
        (n_samples, *[2 * cutoff + 1] * spatial_dims); index cutoff + r holds displacement r.
    """
    a, kind, a_valid = ops.as_tensor(arr1, "arr1")
    b, b_kind, b_valid = ops.as_tensor(arr2, "arr2")
    if a.ndim not in (2, 3, 4):
        raise ValueError(
            f"arr1 must have shape (n_samples, *spatial) with 1 to 3 spatial axes, got shape {tuple(a.shape)}"
        )
    d = a.ndim - 1
    periodic = ops.check_flag(periodic_boundary, "periodic_boundary")
    check_backend(backend)
    for t, name in ((a, "arr1"), (b, "arr2")):
        ops.check_shape(t, name, d)
        ops.check_values(t, name, indicator_ints=False)
    ops.check_partner(b, b_kind, "arr2", a, kind, "arr1")
    spatial = tuple(a.shape[1:])
    largest = (min(spatial) - 1) // 2
    requested = ops.check_cutoff(largest if cutoff is None else cutoff, d)
    window = tuple(min(k, largest) for k in requested)  # PyMKS clips the cutoff
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
