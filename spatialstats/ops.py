"""Public two-point statistics: argument checking, array types, the window, then ``_backend.dispatch``.

Array types: numpy in -> numpy out (float64, computed in float64); torch in -> torch out on the same
device (float64 for float64 input, float32 otherwise, computed in at least float32); cupy in -> cupy
out through DLPack, without a host copy. A numpy masked array's mask excludes its entries (as the
``mask`` argument does); big-endian arrays are read in native byte order.

Value checks (finite fields, 0/1 integer indicators) never synchronise with a GPU: on the CPU they
raise ValueError before any work; on CUDA and while torch.compile traces they are device-side
assertions (``torch._assert_async``), which fail the CUDA context with the message instead.
"""

from typing import NamedTuple

import numpy as np
import torch

from ._backend import BACKENDS, BackendUnavailableError, available_backends, check_backend, dispatch
from ._common import TensorKeyedCache, functorch_active, statistics_dtype, window_shape
from .io import RELABEL, check_phase_labels

__all__ = [
    "BACKENDS",
    "BackendUnavailableError",
    "TwoPointAll",
    "available_backends",
    "resolve_window",
    "two_point",
    "two_point_all",
    "window_shape",
]


# ----------------------------------------------------------------------------------------------
# Array types
# ----------------------------------------------------------------------------------------------


def _array_kind(a):
    if isinstance(a, torch.Tensor):
        return "torch"
    if type(a).__module__.split(".")[0] == "cupy":
        return "cupy"
    return "numpy"


def as_tensor(a, name):
    """(tensor, kind, valid): a torch view of a numpy, cupy or torch array (numpy: a CPU tensor); ``valid``
    is None, or for a numpy masked array the bool tensor of its unmasked entries (masked ones read as 0)."""
    kind = _array_kind(a)
    if kind == "torch":
        return a, kind, None
    if kind == "cupy":
        return torch.from_dlpack(a), kind, None
    if a is None:
        raise TypeError(f"{name} must be an array, got None")
    valid = None
    if isinstance(a, np.ma.MaskedArray):
        valid = torch.from_numpy(~np.ma.getmaskarray(a))
        a = a.filled(0)
    array = np.asarray(a)
    if array.dtype.kind == "c":
        raise TypeError(f"{name} must be real, got complex dtype {array.dtype}")
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a numeric array (bool, integer or float), got dtype {array.dtype}")
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    array = np.ascontiguousarray(array)
    if not array.flags.writeable:  # read-only memory (dask chunks, memory maps): torch.from_numpy would warn
        array = array.copy()
    return torch.from_numpy(array), kind, valid


def as_unmasked_tensor(a, name):
    """(tensor, kind) as :func:`as_tensor`, for inputs where a numpy masked array has no meaning."""
    t, kind, valid = as_tensor(a, name)
    if valid is not None:
        raise TypeError(f"{name} is a numpy masked array, which has no meaning here; pass a plain array")
    return t, kind


def to_kind(t, kind):
    """Return ``t`` as the array type ``kind`` ("numpy" gives float64 for floating results)."""
    if kind == "torch":
        return t
    if kind == "cupy":
        import cupy

        return cupy.from_dlpack(t.detach().contiguous())
    array = t.detach().cpu().numpy()
    return array.astype(np.float64) if array.dtype.kind == "f" else array


def working_fields(t, kind):
    """Fields as the backends take them: numpy -> float64; bool/int -> float32; floats kept."""
    if kind == "numpy":
        return t.to(torch.float64)
    return t if t.dtype.is_floating_point else t.to(torch.float32)


# ----------------------------------------------------------------------------------------------
# Argument checks
# ----------------------------------------------------------------------------------------------


def check_spatial_dims(spatial_dims):
    if isinstance(spatial_dims, bool) or not isinstance(spatial_dims, (int, np.integer)):
        raise TypeError(f"spatial_dims must be the int 1, 2 or 3, got {spatial_dims!r}")
    if spatial_dims not in (1, 2, 3):
        raise ValueError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims}")
    return int(spatial_dims)


def check_flag(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_shape(t, name, spatial_dims):
    """Real dtype, at least ``spatial_dims`` axes, no empty axis."""
    if t.is_complex():
        raise TypeError(f"{name} must be real, got complex dtype {t.dtype}")
    if t.ndim < spatial_dims:
        raise ValueError(
            f"{name} must have shape (*batch, *spatial) with {spatial_dims} spatial axes, got shape {tuple(t.shape)}"
        )
    if t.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)}); every axis needs at least one entry")


def _plain(t):
    """The tensor beneath torch.func's wrappers (under vmap: every vmapped entry at once)."""
    functorch = torch._C._functorch
    while functorch.is_batchedtensor(t) or functorch.is_gradtrackingtensor(t) or functorch.is_functionaltensor(t):
        t = functorch.get_unwrapped(t)
    return t


def check_values(t, name, *, indicator_ints=True):
    """Floats must be finite; integers (with ``indicator_ints``) 0 or 1. Returns whether ``t >= 0``:
    a bool, or on CUDA and under torch.compile a 0-dim bool tensor (looking would synchronise); there
    the checks are device-side assertions (see the module docstring)."""
    if t.dtype == torch.bool or not (t.dtype.is_floating_point or indicator_ints):
        return True
    if torch.compiler.is_compiling():
        low, high = torch.aminmax(t)
    else:
        low, high = torch.aminmax(_plain(t) if functorch_active() else t)
    if t.dtype.is_floating_point:
        valid, problem = (
            torch.isfinite(low) & torch.isfinite(high),
            "contains NaN or infinite values; expected finite numbers",
        )
    else:
        valid, problem = (
            (low >= 0) & (high <= 1),
            (
                "is an integer array with values other than 0 and 1, but two_point expects an indicator (0/1, bool)"
                " or probabilities (float); for a label image of several phases use spatialstats.two_point_all"
            ),
        )
    require(valid, f"{name} {problem}")
    return low >= 0 if _deferred(low) else bool(low.item() >= 0)


def _deferred(t):
    """Checks of ``t``'s values are device-side assertions (CUDA, tracing) rather than ValueErrors."""
    return t.device.type != "cpu" or torch.compiler.is_compiling()


def require(valid, message):
    """Raise ValueError(message) unless the 0-dim bool tensor ``valid`` is true; on CUDA and while
    tracing, a device-side assertion instead (no synchronisation)."""
    if _deferred(valid):
        torch._assert_async(valid, message)
    elif not valid.item():
        raise ValueError(message)


def check_partner(t, kind, name, ref, ref_kind, ref_name, *, same_dtype=True):
    """``t`` must match ``ref`` in array type, shape, device and (torch, ``same_dtype``) floating dtype."""
    if kind != ref_kind:
        raise TypeError(f"{name} is a {kind} array but {ref_name} is a {ref_kind} array; pass the same array type")
    if t.device != ref.device:
        raise ValueError(f"{name} is on {t.device} but {ref_name} is on {ref.device}; put both on one device")
    if tuple(t.shape) != tuple(ref.shape):
        raise ValueError(
            f"{name} has shape {tuple(t.shape)} but {ref_name} has shape {tuple(ref.shape)}; they must match"
        )
    floats = t.dtype.is_floating_point and ref.dtype.is_floating_point
    if same_dtype and kind != "numpy" and floats and t.dtype != ref.dtype:
        raise TypeError(f"{name} has dtype {t.dtype} but {ref_name} has dtype {ref.dtype}; pass one dtype")


_FLAT_MASKS = TensorKeyedCache()


def prepare_mask(mask, kind, batch_shape, spatial_shape, device, *, weights=False, valid=None):
    """Check a mask of shape (*mask_batch, *spatial) and flatten it to (Bm, *spatial), Bm in {1, B}.

    Returns (mask or None, mask_batch_shape). ``weights``: accept [0, 1] floats (PyMKS), not only
    bool. ``valid``: the unmasked entries of masked-array inputs (*batch, *spatial), combined with
    the mask. A torch mask passed again unmodified gives the same flat tensor (its counts are cached).
    """
    if mask is None and valid is None:
        return None, ()
    if mask is None:
        m = valid
    else:
        m, mask_kind, mask_valid = as_tensor(mask, "mask")
        if mask_kind != kind:
            raise TypeError(f"mask is a {mask_kind} array but x is a {kind} array; pass the same array type")
        for entries in (mask_valid, valid):
            if entries is not None:
                m = m & entries if m.dtype == torch.bool else m * entries
    if m.device != device:
        raise ValueError(f"mask is on {m.device} but x is on {device}; put both on one device")
    if weights:
        if m.dtype != torch.bool:
            m = m.to(torch.float64)
            if not bool(torch.isfinite(m).all()) or bool((m < 0).any()) or bool((m > 1).any()):
                raise ValueError("mask must hold weights in the range [0, 1]")
    elif m.dtype != torch.bool:
        raise TypeError(f"mask must be a boolean array (True where the image is valid), got dtype {m.dtype}")
    d = len(spatial_shape)
    if m.ndim < d or tuple(m.shape[m.ndim - d :]) != tuple(spatial_shape):
        raise ValueError(
            f"mask must have shape (*batch, {', '.join(map(str, spatial_shape))}) to match the spatial "
            f"axes of x, got shape {tuple(m.shape)}"
        )
    mask_batch = tuple(m.shape[: m.ndim - d])
    try:
        broadcast = torch.broadcast_shapes(mask_batch, tuple(batch_shape))
    except RuntimeError:
        broadcast = None
    if broadcast != tuple(batch_shape):
        raise ValueError(f"mask batch axes {mask_batch} do not broadcast to the batch axes {tuple(batch_shape)} of x")
    shared = all(s == 1 for s in mask_batch)

    def flatten():
        if shared:
            return m.reshape(1, *spatial_shape)
        return m.expand(*batch_shape, *spatial_shape).reshape(-1, *spatial_shape)

    cached = m is mask and isinstance(m, torch.Tensor)
    flat = _FLAT_MASKS.get(m, (tuple(batch_shape), tuple(spatial_shape)), flatten) if cached else flatten()
    return flat, (mask_batch if shared else tuple(batch_shape))


def check_cutoff(cutoff, d):
    """``cutoff`` as d non-negative ints (an int applies to every axis), or None."""
    if cutoff is None:
        return None
    values = tuple(cutoff) if isinstance(cutoff, (tuple, list)) else (cutoff,) * d
    if len(values) != d:
        raise ValueError(f"cutoff must be an int or one int per spatial axis ({d}), got {cutoff!r}")
    for k in values:
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
            raise TypeError(f"cutoff must be a non-negative int (or one per spatial axis), got {cutoff!r}")
        if k < 0:
            raise ValueError(f"cutoff must be >= 0, got {cutoff!r}")
    return tuple(int(k) for k in values)


def resolve_window(cutoff, spatial_shape, periodic, *, distinct_only=False):
    """Half-widths k_a of the window |r_a| <= k_a from ``cutoff`` (None, an int, or one per axis).

    None is the largest window of distinct displacements: (n - 1) // 2 periodic, n - 1 not. A cutoff
    beyond n - 1 on an axis (only repeats or zeros there) is an error; with ``distinct_only`` (the
    loss) so is one beyond the distinct displacements, which would count some displacements twice.
    """
    d = len(spatial_shape)
    distinct = tuple((n - 1) // 2 if periodic else n - 1 for n in spatial_shape)
    window = check_cutoff(cutoff, d)
    if window is None:
        return distinct
    largest = distinct if distinct_only else tuple(n - 1 for n in spatial_shape)
    for axis, (k, limit, n) in enumerate(zip(window, largest, spatial_shape)):
        if k <= limit:
            continue
        if distinct_only:
            mode = "periodic" if periodic else "non-periodic"
            reason = f"the loss compares each distinct displacement once; a {mode} axis of {n} has them up to {limit}"
        else:
            reason = (
                f"displacements beyond n - 1 = {limit} only repeat (periodic) or have no pairs (non-periodic); "
                f"cutoff=None gives every distinct displacement ({distinct[axis]} there)"
            )
        advice = (
            f"; pass one cutoff per axis, e.g. {tuple(min(v, m) for v, m in zip(window, largest))}" if d > 1 else ""
        )
        raise ValueError(
            f"cutoff {cutoff!r} is too large for spatial axis {axis} of size {n}: the largest useful value there "
            f"is {limit} ({reason}){advice}"
        )
    return window


def check_pairs(pairs, phases):
    """Channel pairs from ``pairs`` ("auto", "all" or a list of (i, j)) over the list ``phases``.

    Order: "auto" gives (p, p) for p in phases; "all" gives those, then every (p, q) with p before q
    in phases; a list is kept as given.
    """
    if isinstance(pairs, str):
        if pairs == "auto":
            return tuple((p, p) for p in phases)
        if pairs == "all":
            crosses = tuple((p, q) for a, p in enumerate(phases) for q in phases[a + 1 :])
            return tuple((p, p) for p in phases) + crosses
        raise ValueError(f"pairs must be 'auto', 'all' or a list of (i, j) phase pairs, got {pairs!r}")
    try:
        result = tuple((int(i), int(j)) for i, j in pairs)
    except (TypeError, ValueError):
        raise TypeError(f"pairs must be 'auto', 'all' or a list of (i, j) phase pairs, got {pairs!r}") from None
    if not result:
        raise ValueError("pairs is empty; give at least one (i, j) phase pair")
    for i, j in result:
        if i not in phases or j not in phases:
            raise ValueError(f"pair {(i, j)} names a phase outside the available phases {list(phases)}")
    return result


def check_phases(phases, n_phases):
    """The list of phases to use (all of 0..n_phases-1 when None)."""
    if phases is None:
        return tuple(range(n_phases))
    result = tuple(int(p) for p in phases)
    if not result or any(p < 0 or p >= n_phases for p in result) or len(set(result)) != len(result):
        raise ValueError(f"phases must be distinct integers in 0..{n_phases - 1}, got {phases!r}")
    return result


# ----------------------------------------------------------------------------------------------
# Public functions
# ----------------------------------------------------------------------------------------------


def two_point(x, y=None, *, spatial_dims=2, cutoff=None, periodic=True, mask=None, backend="auto", return_counts=False):
    """Two-point statistics S_xy(r) = (1/N(r)) sum_s x(s) y(s + r) over the valid pairs.

    Args:
        x: (*batch, *spatial) indicator (bool or 0/1) or probability field; numpy (masked arrays:
            masked entries are excluded like ``mask``), torch or cupy.
        y: the second field, same shape, type, device; None (or ``x`` itself) for the auto-correlation.
        spatial_dims: number of trailing spatial axes (1, 2 or 3).
        cutoff: window half-width, an int or one per spatial axis, at most n - 1 on each axis; None is
            the largest window of distinct displacements ((n - 1) // 2 periodic, n - 1 non-periodic).
        periodic: wrap around the image (True) or count only pairs inside it (False).
        mask: bool (*batch, *spatial) or (*spatial); pairs with an end outside the mask are ignored.
        backend: "auto", "reference", "fft", "triton" or "native".
        return_counts: also return N(r), shape (*mask_batch, *window) (a fresh tensor or array).

    Returns:
        S of shape (*batch, *window), window 2k + 1 per axis, centre S(0); axis a index k_a + r_a
        holds displacement r_a. With ``return_counts``, (S, N). Statistics of non-negative fields
        are >= 0 (FFT round-off below 0 is clamped).
    """
    d = check_spatial_dims(spatial_dims)
    periodic = check_flag(periodic, "periodic")
    return_counts = check_flag(return_counts, "return_counts")
    check_backend(backend)
    xt, kind, x_valid = as_tensor(x, "x")
    check_shape(xt, "x", d)
    nonnegative = check_values(xt, "x")
    auto = y is None or y is x
    valid = x_valid
    if not auto:
        yt, ykind, y_valid = as_tensor(y, "y")
        check_shape(yt, "y", d)
        check_partner(yt, ykind, "y", xt, kind, "x")
        nonnegative = nonnegative & check_values(yt, "y")  # bools, or 0-dim bool tensors
        valid = y_valid if valid is None else (valid if y_valid is None else valid & y_valid)
    batch, spatial = tuple(xt.shape[: xt.ndim - d]), tuple(xt.shape[xt.ndim - d :])
    window = resolve_window(cutoff, spatial, periodic)
    flat_mask, mask_batch = prepare_mask(mask, kind, batch, spatial, xt.device, valid=valid)
    if auto:
        fields, pairs = xt.reshape(-1, 1, *spatial), ((0, 0),)
    else:
        fields, pairs = torch.stack([xt.reshape(-1, *spatial), yt.reshape(-1, *spatial)], dim=1), ((0, 1),)
    result = dispatch(
        working_fields(fields, kind),
        pairs=pairs,
        half_widths=window,
        periodic=periodic,
        mask=flat_mask,
        backend=backend,
        nonnegative=nonnegative,
        return_counts=return_counts,
    )
    stats = result[0] if return_counts else result
    stats = to_kind(stats.reshape(*batch, *window_shape(window)), kind)
    if not return_counts:
        return stats
    counts = result[1].to(statistics_dtype(fields.dtype) if kind != "numpy" else torch.float64)
    return stats, to_kind(counts.reshape(*mask_batch, *window_shape(window)), kind)


class TwoPointAll(NamedTuple):
    """Statistics of several phases: ``stats`` (*batch, P, *window) and ``pairs``, P (i, j) tuples.

    ``stats[..., p, :]`` is S_ij with (i, j) = ``pairs[p]``: the auto-correlations (i, i) first, in
    phase order, then (with pairs="all") the cross-correlations (i, j), i < j, in lexicographic order.
    """

    stats: object
    pairs: tuple


def phase_fields(t, kind, spatial_dims, n_phases, name="x"):
    """(fields (B, C, *spatial), batch shape, fields >= 0) from labels (*batch, *spatial) or a stack
    (*batch, C, *spatial); "fields >= 0" as :func:`check_values` returns it."""
    d = spatial_dims
    if t.dtype.is_floating_point:
        check_shape(t, name, d + 1)
        nonnegative = check_values(t, name)
        n = t.shape[t.ndim - d - 1]
        if n_phases is not None and n_phases != n:
            raise ValueError(f"n_phases={n_phases} but the phase axis of {name} (axis -{d + 1}) has {n} entries")
        batch = tuple(t.shape[: t.ndim - d - 1])
        return working_fields(t.reshape(-1, n, *t.shape[t.ndim - d :]), kind), batch, nonnegative
    check_shape(t, name, d)
    labels = t.to(torch.int64)
    present = torch.unique(labels).tolist()
    if n_phases is None:
        check_phase_labels(present, name, f"{RELABEL}, or pass n_phases if absent phases are intended")
        n_phases = present[-1] + 1
    elif isinstance(n_phases, bool) or not isinstance(n_phases, (int, np.integer)) or n_phases < 1:
        raise ValueError(f"n_phases must be a positive int, got {n_phases!r}")
    elif present[0] < 0:
        raise ValueError(f"{name} is a label image and must hold phases 0..n-1, but it has negative labels")
    elif present[-1] >= n_phases:
        raise ValueError(f"{name} has label {present[-1]} but n_phases={n_phases}; labels must be 0..n_phases-1")
    batch, spatial = tuple(t.shape[: t.ndim - d]), tuple(t.shape[t.ndim - d :])
    one_hot = torch.nn.functional.one_hot(labels.reshape(-1, *spatial), int(n_phases))
    one_hot = one_hot.movedim(-1, 1).to(torch.float64 if kind == "numpy" else torch.float32)
    return one_hot, batch, True


def two_point_all(
    x,
    *,
    spatial_dims=2,
    n_phases=None,
    phases=None,
    pairs="auto",
    cutoff=None,
    periodic=True,
    mask=None,
    backend="auto",
):
    """Statistics of every phase of a multiphase image.

    Args:
        x: an integer label image (*batch, *spatial) with phases 0..n-1, each present unless
            ``n_phases`` says otherwise, or a float one-hot / probability stack (*batch, C, *spatial)
            whose phase axis precedes the spatial axes.
        n_phases: number of phases of a label image (default: largest label + 1, every label present).
        phases: the phases to use (default: all).
        pairs: "auto" (every auto-correlation), "all" (and every cross-correlation i < j) or an
            explicit list of (i, j) pairs.
        spatial_dims, cutoff, periodic, mask, backend: as in :func:`two_point`.

    Returns:
        TwoPointAll(stats (*batch, P, *window), pairs): see :class:`TwoPointAll` for the order.
    """
    d = check_spatial_dims(spatial_dims)
    periodic = check_flag(periodic, "periodic")
    check_backend(backend)
    xt, kind, valid = as_tensor(x, "x")
    fields, batch, nonnegative = phase_fields(xt, kind, d, n_phases)
    chosen = check_pairs(pairs, check_phases(phases, fields.shape[1]))
    spatial = tuple(fields.shape[2:])
    window = resolve_window(cutoff, spatial, periodic)
    if valid is not None and xt.dtype.is_floating_point:
        valid = valid.all(dim=valid.ndim - d - 1)  # a phase stack: valid where every phase is
    flat_mask, _ = prepare_mask(mask, kind, batch, spatial, xt.device, valid=valid)
    stats = dispatch(
        fields,
        pairs=chosen,
        half_widths=window,
        periodic=periodic,
        mask=flat_mask,
        backend=backend,
        nonnegative=nonnegative,
    )
    return TwoPointAll(to_kind(stats.reshape(*batch, len(chosen), *window_shape(window)), kind), chosen)
