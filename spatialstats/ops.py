"""Public two-point statistics: argument checking, array types, window and backend choice.

Array types: numpy in -> numpy out (float64, computed in float64); torch in -> torch out on the same
device (float64 for float64 input, float32 otherwise, computed in at least float32); cupy in -> cupy
out through DLPack, without a host copy. Every backend receives torch tensors of the shapes
documented in ``_ref.py``.
"""

import importlib
import os
from typing import NamedTuple

import numpy as np
import torch

from . import _fft

BACKENDS = ("reference", "fft", "triton", "native", "conv")
_BACKEND_MODULES = {
    "reference": "spatialstats._ref",
    "fft": "spatialstats._fft",
    "triton": "spatialstats._triton",
    "native": "spatialstats._native",
    "conv": "spatialstats._conv",
}
BACKEND_ENV = "SPATIALSTATS_BACKEND"


class BackendUnavailableError(RuntimeError):
    """An explicitly requested backend cannot run here; the message says why."""


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
    """(tensor, kind): a torch view of a numpy, cupy or torch array (numpy: a CPU tensor)."""
    kind = _array_kind(a)
    if kind == "torch":
        return a, kind
    if kind == "cupy":
        return torch.from_dlpack(a), kind
    if a is None:
        raise TypeError(f"{name} must be an array, got None")
    array = np.asarray(a)
    if array.dtype.kind == "c":
        raise TypeError(f"{name} must be real, got complex dtype {array.dtype}")
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a numeric array (bool, integer or float), got dtype {array.dtype}")
    return torch.from_numpy(np.ascontiguousarray(array)), kind


def to_kind(t, kind):
    """Return ``t`` as the array type ``kind`` ("numpy" gives float64 for floating results)."""
    if kind == "torch":
        return t
    if kind == "cupy":
        import cupy

        return cupy.from_dlpack(t.detach().contiguous())
    array = t.detach().cpu().numpy()
    return array.astype(np.float64) if array.dtype.kind == "f" else array


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


def check_field(t, name, spatial_dims, *, indicator_ints=True):
    """Rank, emptiness, dtype and finiteness of a field of shape (*batch, *spatial).

    ``indicator_ints``: an integer field must hold only 0 and 1 (an indicator function).
    """
    if t.is_complex():
        raise TypeError(f"{name} must be real, got complex dtype {t.dtype}")
    if t.ndim < spatial_dims:
        raise ValueError(
            f"{name} must have shape (*batch, *spatial) with {spatial_dims} spatial axes, got shape {tuple(t.shape)}"
        )
    if t.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)}); every axis needs at least one entry")
    if t.dtype.is_floating_point:
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} contains NaN or infinite values; expected finite numbers")
    elif indicator_ints and t.dtype != torch.bool and not bool(((t == 0) | (t == 1)).all()):
        raise ValueError(
            f"{name} is an integer array with values other than 0 and 1, but two_point expects an "
            "indicator (0/1, bool) or probabilities (float); for a label image of several phases "
            "use spatialstats.two_point_all"
        )


def check_partner(t, kind, name, ref, ref_kind, ref_name):
    """``t`` must match ``ref`` in array type, shape, device and (torch) floating dtype."""
    if kind != ref_kind:
        raise TypeError(f"{name} is a {kind} array but {ref_name} is a {ref_kind} array; pass the same array type")
    if t.device != ref.device:
        raise ValueError(f"{name} is on {t.device} but {ref_name} is on {ref.device}; put both on one device")
    if tuple(t.shape) != tuple(ref.shape):
        raise ValueError(
            f"{name} has shape {tuple(t.shape)} but {ref_name} has shape {tuple(ref.shape)}; they must match"
        )
    if kind != "numpy" and t.dtype.is_floating_point and ref.dtype.is_floating_point and t.dtype != ref.dtype:
        raise TypeError(f"{name} has dtype {t.dtype} but {ref_name} has dtype {ref.dtype}; pass one dtype")


def prepare_mask(mask, kind, batch_shape, spatial_shape, device, *, weights=False):
    """Check a mask of shape (*mask_batch, *spatial) and flatten it to (Bm, *spatial), Bm in {1, B}.

    Returns (mask or None, mask_batch_shape). ``weights``: accept [0, 1] floats (PyMKS), not only bool.
    """
    if mask is None:
        return None, ()
    m, mask_kind = as_tensor(mask, "mask")
    if mask_kind != kind:
        raise TypeError(f"mask is a {mask_kind} array but x is a {kind} array; pass the same array type")
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
    if all(s == 1 for s in mask_batch):
        return m.reshape(1, *spatial_shape), mask_batch
    full = m.expand(*batch_shape, *spatial_shape).reshape(-1, *spatial_shape)
    return full, tuple(batch_shape)


def resolve_window(cutoff, spatial_shape, periodic):
    """Half-widths k_a of the window |r_a| <= k_a from ``cutoff`` (None, an int, or one per axis).

    None is the largest window of distinct displacements: (n - 1) // 2 periodic, n - 1 not.
    """
    d = len(spatial_shape)
    if cutoff is None:
        return tuple((n - 1) // 2 if periodic else n - 1 for n in spatial_shape)
    values = tuple(cutoff) if isinstance(cutoff, (tuple, list)) else (cutoff,) * d
    if len(values) != d:
        raise ValueError(f"cutoff must be an int or one int per spatial axis ({d}), got {cutoff!r}")
    window = []
    for k in values:
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
            raise TypeError(f"cutoff must be a non-negative int (or one per spatial axis), got {cutoff!r}")
        if k < 0:
            raise ValueError(f"cutoff must be >= 0, got {cutoff!r}")
        window.append(int(k))
    return tuple(window)


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
# Backends
# ----------------------------------------------------------------------------------------------


def _import_backend(name):
    """(module, None) or (None, reason it cannot be imported)."""
    try:
        return importlib.import_module(_BACKEND_MODULES[name]), None
    except ImportError as error:
        return None, f"cannot import {_BACKEND_MODULES[name]}: {error}"


def backend_unavailable_reason(name, device):
    """None when backend ``name`` can run on ``device``, else the reason it cannot."""
    module, reason = _import_backend(name)
    if module is None:
        return reason
    check = getattr(module, "unavailable_reason", None)
    return check(torch.device(device)) if check is not None else None


def available_backends(device=None):
    """{backend name: None if it can run on ``device`` (default: cuda if present, else cpu), else why not}."""
    device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    return {name: backend_unavailable_reason(name, device) for name in BACKENDS}


def _direct_cost(batch, n_pairs, spatial_shape, window):
    """Multiply-adds of the direct sum: B * P * prod(n) * prod(2k + 1)."""
    return batch * n_pairs * float(np.prod(spatial_shape)) * float(np.prod([2 * k + 1 for k in window]))


def _fft_cost(batch, n_channels, n_pairs, spatial_shape, window, periodic):
    """Butterfly work of the FFT path: (C forward + P inverse) transforms of the padded grid."""
    grid = spatial_shape if periodic else [_fft.fast_fft_size(n + min(k, n - 1)) for n, k in zip(spatial_shape, window)]
    size = float(np.prod(grid))
    return batch * (n_channels + n_pairs) * size * max(np.log2(size), 1.0)


# Seconds per unit of cost, per backend and device type, relative to the FFT path (1.0); a direct
# backend is chosen when its time estimate is below the FFT's. Backends not listed are never chosen
# by "auto" on that device type. bench/sweep.py fits these ratios to its measurements.
# ("triton", "cuda") is a roofline estimate for an H100 SXM (3.35 TB/s, 495 TFLOP/s dense TF32),
# float32 at the default precision (tf32x3), until measured:
#   fft: memory-bound; rfftn, channel gathers, spectrum product and irfftn move ~22 bytes per grid
#     point per transform, plus ~3 us per kernel: ~80 us for the statistics of 256 x 128^2 with one
#     phase (1.2e8 units of B (C + P) G log2 G), 6.8e-13 s per unit;
#   triton: B P G |W| multiply-adds on tensor cores, 3 TF32 products each (tf32x3): 8.2e13/s at
#     peak; the 2k + 1 displacements padded to 16/32/64-wide tiles (~30% used at k = 8), ~50% of
#     peak in the gather-fed loop, half the work for auto-correlations: ~50 us for the same
#     statistics at k = 8 (1.2e9 units), 4.1e-14 s per unit.
#   Ratio 0.06 (the loss, forward + backward, scales both by ~3): triton wins on 128^2 up to
#   k = 10, on 64^3 up to k = 3. fp16/bf16 inputs need one TF32 product instead of three: faster
#   than modelled (up to 3x in the products).
# ("native", "cuda") is a roofline estimate on the same card, until measured: B P G |W| float32
#   FMAs on the CUDA cores (3.35e13/s at peak) with two shared-memory loads per 3 to 8 of them,
#   ~40% of peak, half the work for auto-correlations: 5.5e-14 s per unit, ratio 0.08 against the
#   fft's 6.8e-13: native wins over fft on 128^2 up to k = 8, on 64^3 up to k = 3; triton first.
# ("native", "cpu") is measured on one thread of a 2-core AVX-512 CPU (fastest of 5 to 11 runs,
#   forward and forward + backward) over 2D 64^2 to 512^2 and 3D 32^3, 64^3, batches 1 to 8, 1 or
#   3 pairs, cutoffs 1 to 16, periodic or not: 0.1 agrees with the faster backend in 210 of 232
#   cases (forward) and 219 (forward + backward), every miss within 0.44x to 1.7x of break-even;
#   native wins on 256^2 up to k = 8.
COST_MODEL = {
    ("fft", "cpu"): 1.0,
    ("fft", "cuda"): 1.0,
    ("triton", "cuda"): 0.06,
    ("native", "cpu"): 0.1,
    ("native", "cuda"): 0.08,
}


def choose_backend(device, batch, n_channels, pairs, spatial_shape, window, periodic, dtype=torch.float32):
    """The backend "auto" picks: the cheapest estimate of COST_MODEL among the available backends.

    Triton is left out for float64 fields: its float64 path runs on FMA units, not the tensor cores
    its cost entry models.
    """
    device = torch.device(device)
    estimates = {}
    for name in ("fft", "triton", "native"):
        scale = COST_MODEL.get((name, device.type))
        if scale is None or (name == "triton" and dtype == torch.float64):
            continue
        if backend_unavailable_reason(name, device) is not None:
            continue
        if name == "fft":
            cost = _fft_cost(batch, n_channels, len(pairs), spatial_shape, window, periodic)
        else:
            cost = _direct_cost(batch, len(pairs), spatial_shape, window)
        estimates[name] = scale * cost
    return min(estimates, key=estimates.get) if estimates else "fft"


def resolve_backend(backend, fields, pairs, window, periodic):
    """The backend module to run: ``backend`` by name, or "auto" (``SPATIALSTATS_BACKEND`` if set)."""
    if not isinstance(backend, str) or (backend != "auto" and backend not in BACKENDS):
        raise ValueError(f"backend must be 'auto' or one of {list(BACKENDS)}, got {backend!r}")
    if backend == "auto":
        backend = os.environ.get(BACKEND_ENV, "auto") or "auto"
        if backend != "auto" and backend not in BACKENDS:
            raise ValueError(f"{BACKEND_ENV} must be 'auto' or one of {list(BACKENDS)}, got {backend!r}")
    if backend == "auto":
        backend = choose_backend(
            fields.device,
            fields.shape[0],
            fields.shape[1],
            pairs,
            tuple(fields.shape[2:]),
            window,
            periodic,
            dtype=fields.dtype,
        )
    reason = backend_unavailable_reason(backend, fields.device)
    if reason is not None:
        raise BackendUnavailableError(f"backend {backend!r} is unavailable on {fields.device}: {reason}")
    return _import_backend(backend)[0]


def result_dtype(fields):
    return _fft.statistics_dtype(fields.dtype)


def working_fields(t, kind):
    """Fields as the backends take them: numpy -> float64; bool/int -> float32; floats kept."""
    if kind == "numpy":
        return t.to(torch.float64)
    return t if t.dtype.is_floating_point else t.to(torch.float32)


def compute(fields, pairs, mask, window, periodic, backend):
    """S_ij(r) for each pair: (B, C, *spatial) -> (B, P, *window) in float32 or float64."""
    module = resolve_backend(backend, fields, pairs, window, periodic)
    return module.two_point(fields, pairs, mask, window, periodic).to(result_dtype(fields))


def window_shape(window):
    return tuple(2 * k + 1 for k in window)


# ----------------------------------------------------------------------------------------------
# Public functions
# ----------------------------------------------------------------------------------------------


def two_point(x, y=None, *, spatial_dims=2, cutoff=None, periodic=True, mask=None, backend="auto", return_counts=False):
    """Two-point statistics S_xy(r) = (1/N(r)) sum_s x(s) y(s + r) over the valid pairs.

    Args:
        x: (*batch, *spatial) indicator (bool or 0/1) or probability field; numpy, torch or cupy.
        y: the second field, same shape, type, device; None (or ``x`` itself) for the auto-correlation.
        spatial_dims: number of trailing spatial axes (1, 2 or 3).
        cutoff: window half-width, an int or one per spatial axis; None is the largest window of
            distinct displacements ((n - 1) // 2 periodic, n - 1 non-periodic).
        periodic: wrap around the image (True) or count only pairs inside it (False).
        mask: bool (*batch, *spatial) or (*spatial); pairs with an end outside the mask are ignored.
        backend: "auto", "reference", "fft", "triton" or "native".
        return_counts: also return N(r), shape (*mask_batch, *window).

    Returns:
        S of shape (*batch, *window), window 2k + 1 per axis, centre S(0); axis a index k_a + r_a
        holds displacement r_a. With ``return_counts``, (S, N).
    """
    d = check_spatial_dims(spatial_dims)
    periodic = check_flag(periodic, "periodic")
    return_counts = check_flag(return_counts, "return_counts")
    xt, kind = as_tensor(x, "x")
    check_field(xt, "x", d)
    auto = y is None or y is x
    if not auto:
        yt, ykind = as_tensor(y, "y")
        check_field(yt, "y", d)
        check_partner(yt, ykind, "y", xt, kind, "x")
    batch, spatial = tuple(xt.shape[: xt.ndim - d]), tuple(xt.shape[xt.ndim - d :])
    window = resolve_window(cutoff, spatial, periodic)
    flat_mask, mask_batch = prepare_mask(mask, kind, batch, spatial, xt.device)
    if auto:
        fields, pairs = xt.reshape(-1, 1, *spatial), ((0, 0),)
    else:
        fields, pairs = torch.stack([xt.reshape(-1, *spatial), yt.reshape(-1, *spatial)], dim=1), ((0, 1),)
    fields = working_fields(fields, kind)
    stats = compute(fields, pairs, flat_mask, window, periodic, backend)
    stats = to_kind(stats.reshape(*batch, *window_shape(window)), kind)
    if not return_counts:
        return stats
    module = resolve_backend(backend, fields, pairs, window, periodic)
    counts = module.pair_counts(flat_mask, spatial, window, periodic, fields.device)
    counts = counts.to(result_dtype(fields)).reshape(*mask_batch, *window_shape(window))
    return stats, to_kind(counts, kind)


class TwoPointAll(NamedTuple):
    """Statistics of several phases: ``stats`` (*batch, P, *window) and ``pairs``, P (i, j) tuples.

    ``stats[..., p, :]`` is S_ij with (i, j) = ``pairs[p]``: the auto-correlations (i, i) first, in
    phase order, then (with pairs="all") the cross-correlations (i, j), i < j, in lexicographic order.
    """

    stats: object
    pairs: tuple


def phase_fields(t, kind, spatial_dims, n_phases, name="x"):
    """(fields (B, C, *spatial), batch shape) from labels (*batch, *spatial) or a stack (*batch, C, *spatial)."""
    d = spatial_dims
    if t.dtype.is_floating_point:
        check_field(t, name, d + 1)
        n = t.shape[t.ndim - d - 1]
        if n_phases is not None and n_phases != n:
            raise ValueError(f"n_phases={n_phases} but the phase axis of {name} (axis -{d + 1}) has {n} entries")
        batch = tuple(t.shape[: t.ndim - d - 1])
        return working_fields(t.reshape(-1, n, *t.shape[t.ndim - d :]), kind), batch
    check_field(t, name, d, indicator_ints=False)
    labels = t.to(torch.int64)
    if bool((labels < 0).any()):
        raise ValueError(f"{name} is a label image and must hold phases 0..n-1, but it has negative labels")
    largest = int(labels.max())
    if n_phases is None:
        n_phases = largest + 1
    elif isinstance(n_phases, bool) or not isinstance(n_phases, (int, np.integer)) or n_phases < 1:
        raise ValueError(f"n_phases must be a positive int, got {n_phases!r}")
    elif largest >= n_phases:
        raise ValueError(f"{name} has label {largest} but n_phases={n_phases}; labels must be 0..n_phases-1")
    batch, spatial = tuple(t.shape[: t.ndim - d]), tuple(t.shape[t.ndim - d :])
    one_hot = torch.nn.functional.one_hot(labels.reshape(-1, *spatial), int(n_phases))
    one_hot = one_hot.movedim(-1, 1).to(torch.float64 if kind == "numpy" else torch.float32)
    return one_hot, batch


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
        x: an integer label image (*batch, *spatial) with phases 0..n-1, or a float one-hot /
            probability stack (*batch, C, *spatial) whose phase axis precedes the spatial axes.
        n_phases: number of phases of a label image (default: largest label + 1).
        phases: the phases to use (default: all).
        pairs: "auto" (every auto-correlation), "all" (and every cross-correlation i < j) or an
            explicit list of (i, j) pairs.
        spatial_dims, cutoff, periodic, mask, backend: as in :func:`two_point`.

    Returns:
        TwoPointAll(stats (*batch, P, *window), pairs): see :class:`TwoPointAll` for the order.
    """
    d = check_spatial_dims(spatial_dims)
    periodic = check_flag(periodic, "periodic")
    xt, kind = as_tensor(x, "x")
    fields, batch = phase_fields(xt, kind, d, n_phases)
    chosen = check_pairs(pairs, check_phases(phases, fields.shape[1]))
    spatial = tuple(fields.shape[2:])
    window = resolve_window(cutoff, spatial, periodic)
    flat_mask, _ = prepare_mask(mask, kind, batch, spatial, xt.device)
    stats = compute(fields, chosen, flat_mask, window, periodic, backend)
    return TwoPointAll(to_kind(stats.reshape(*batch, len(chosen), *window_shape(window)), kind), chosen)
