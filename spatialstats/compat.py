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
    a, kind = ops.as_tensor(arr1, "arr1")
    b, b_kind = ops.as_tensor(arr2, "arr2")
    if a.ndim not in (2, 3, 4):
        raise ValueError(
            f"arr1 must have shape (n_samples, *spatial) with 1 to 3 spatial axes, got shape {tuple(a.shape)}"
        )
    d = a.ndim - 1
    periodic = ops.check_flag(periodic_boundary, "periodic_boundary")
    ops.check_field(a, "arr1", d, indicator_ints=False)
    ops.check_field(b, "arr2", d, indicator_ints=False)
    ops.check_partner(b, b_kind, "arr2", a, kind, "arr1")
    spatial = tuple(a.shape[1:])
    largest = (min(spatial) - 1) // 2
    requested = ops.resolve_window(largest if cutoff is None else cutoff, spatial, periodic)
    window = tuple(min(k, largest) for k in requested)
    flat_mask, _ = ops.prepare_mask(mask, kind, a.shape[:1], spatial, a.device, weights=True)
    if arr1 is arr2:
        fields, pairs = a.unsqueeze(1), ((0, 0),)
    else:
        fields, pairs = torch.stack([a, b], dim=1), ((0, 1),)
    fields = ops.working_fields(fields, kind)
    stats = ops.compute(fields, pairs, flat_mask, window, periodic, backend)
    return ops.to_kind(stats.squeeze(1), kind)
