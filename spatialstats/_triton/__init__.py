"""Triton backend of the two-point statistics: fused kernels for CUDA GPUs, and the Triton
interpreter on the CPU (``TRITON_INTERPRET=1`` before import; for tests).

The backend interface of ``spatialstats._ref``: ``two_point``, ``pair_counts``, ``pair_distance``
(the fused loss term) and ``unavailable_reason``. The kernels (``correlation.py``, ``loss.py``) take
fields (B, C, n0, n1, n2), so 1D and 2D inputs get unit leading axes, and compute the window of
distinct displacements: k_a <= n_a // 2 when periodic, k_a <= n_a - 1 when not. This module applies
the mask (g = m f), divides by the pair counts and maps that window onto the requested one:
periodic S is periodic in r; non-periodic displacements |r_a| >= n_a have no pairs and give 0.
"""

from typing import NamedTuple

import torch

from .. import _fft
from .correlation import INTERPRETED, correlate
from .loss import weighted_distance


def unavailable_reason(device):
    """None when the kernels can run on ``device``, else why not."""
    device = torch.device(device)
    if device.type == "cpu":
        if INTERPRETED:
            return None
        return "Triton kernels run on CUDA GPUs; on the CPU only in the interpreter (TRITON_INTERPRET=1 before import)"
    if device.type != "cuda":
        return f"Triton kernels run on CUDA GPUs, not on {device.type}"
    if not torch.cuda.is_available():
        return "CUDA is not available"
    major, minor = torch.cuda.get_device_capability(device)
    if major < 8 and not INTERPRETED:
        return f"the kernels need TF32 tensor cores (compute capability 8.0+), this GPU has {major}.{minor}"
    return None


@torch.compiler.assume_constant_result  # read when traced: dynamo cannot trace the fp32_precision getter
def _tf32_allowed():
    """Whether torch allows TF32 for float32 matrix products on CUDA: the ``fp32_precision`` API of
    torch >= 2.9 when it exists (``allow_tf32`` raises once that API has been used), else
    ``allow_tf32``. An unset ("none") CUDA matmul precision follows the global one."""
    matmul = torch.backends.cuda.matmul
    precision = getattr(matmul, "fp32_precision", None)
    if precision is None:
        return bool(matmul.allow_tf32)
    if precision == "none":
        precision = getattr(torch.backends, "fp32_precision", "none")
    return precision == "tf32"


def _precision(dtype):
    """tl.dot input precision: float64 FMA; TF32 for fp16/bf16 (exact products) and for float32 when
    torch allows TF32 matrix products (``torch.set_float32_matmul_precision("high")`` or
    ``torch.backends.cuda.matmul.fp32_precision = "tf32"``); else tf32x3 (about float32 accuracy)."""
    if dtype == torch.float64:
        return "ieee"
    if dtype == torch.float32 and not _tf32_allowed():
        return "tf32x3"
    return "tf32"


def _computed_window(spatial_shape, window, periodic):
    """The distinct displacements the kernels compute: k <= n // 2 periodic, k <= n - 1 not."""
    return tuple(min(k, n // 2 if periodic else n - 1) for k, n in zip(window, spatial_shape))


def _to_window(values, spatial_shape, computed, window, periodic):
    """Map the trailing window axes from ``computed`` to ``window`` half-widths: periodic, by r mod n;
    non-periodic, with zeros (no pairs)."""
    if not periodic:
        return _fft._pad_to_window(values, computed, window)
    first_axis = values.ndim - len(window)
    for axis, (k, kc, n) in enumerate(zip(window, computed, spatial_shape)):
        if k != kc:
            r = torch.arange(-k, k + 1, device=values.device) % n
            values = values.index_select(first_axis + axis, torch.where(r > kc, r - n, r) + kc)
    return values


def _as_3d(values, d):
    """(B, C, *spatial) with d spatial axes -> (B, C, n0, n1, n2), unit leading axes."""
    return values.reshape(*values.shape[:2], *(1,) * (3 - d), *values.shape[2:])


def _mask_counts(mask, computed, periodic, dtype):
    """N(r) = sum_s m(s) m(s + r) over the computed window: (Bm, *window) in ``dtype``."""
    d = len(computed)
    weights = mask.to(dtype).unsqueeze(1)
    exact = mask.dtype == torch.bool and dtype == torch.float32  # 0/1 products are exact in TF32
    window3 = [0] * (3 - d) + list(computed)
    counts, _ = correlate(_as_3d(weights, d), [0, 0], window3, periodic, "tf32" if exact else _precision(dtype))
    counts = counts.reshape(mask.shape[0], *(2 * k + 1 for k in computed))
    return counts.round() if mask.dtype == torch.bool else counts


class _Prepared(NamedTuple):
    fields: torch.Tensor  # masked, (B, C, n0, n1, n2)
    pairs: list  # flat [i0, j0, i1, j1, ...]
    computed: tuple  # computed window, one half-width per spatial axis
    window3: list  # computed window for the kernels' three axes
    counts: torch.Tensor  # N(r) over the computed window, (Bm, *window), compute dtype
    precision: str


def _prepare(fields, pairs, mask, window, periodic):
    if fields.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        raise TypeError(f"the triton backend takes float16, bfloat16, float32 or float64 fields, got {fields.dtype}")
    spatial = tuple(fields.shape[2:])
    d = len(spatial)
    dtype = _fft.statistics_dtype(fields.dtype)
    computed = _computed_window(spatial, window, periodic)
    if mask is None:
        counts = _fft.pair_counts(None, spatial, computed, periodic, fields.device).to(dtype)
    else:
        counts = _mask_counts(mask, computed, periodic, dtype)
        fields = (
            fields * mask.unsqueeze(1) if mask.dtype == torch.bool else fields.to(dtype) * mask.to(dtype).unsqueeze(1)
        )
    return _Prepared(
        fields=_as_3d(fields, d),
        pairs=[c for pair in pairs for c in pair],
        computed=computed,
        window3=[0] * (3 - d) + list(computed),
        counts=counts,
        precision=_precision(fields.dtype),
    )


def two_point(fields, pairs, mask, window, periodic):
    """S_ij(r) for each (i, j) in pairs: (B, C, *spatial) -> (B, P, *window), float32 or float64."""
    prepared = _prepare(fields, pairs, mask, window, periodic)
    sums, _ = correlate(prepared.fields, prepared.pairs, prepared.window3, periodic, prepared.precision)
    sums = sums.reshape(*sums.shape[:2], *prepared.counts.shape[1:])
    stats = _fft.divide_by_counts(sums, prepared.counts.unsqueeze(1))
    return _to_window(stats, fields.shape[2:], prepared.computed, window, periodic)


def pair_counts(mask, spatial_shape, window, periodic, device=None):
    """N(r) for every r of the window, float64: (Bm, *window), Bm = 1 without a mask."""
    if mask is None:
        return _fft.pair_counts(None, spatial_shape, window, periodic, device)
    computed = _computed_window(spatial_shape, window, periodic)
    dtype = torch.float32 if mask.dtype == torch.bool else torch.float64
    counts = _mask_counts(mask, computed, periodic, dtype).to(torch.float64)
    return _to_window(counts, spatial_shape, computed, window, periodic)


def pair_distance(fields, target_stats, pairs, mask, window, periodic, weights, distance):
    """Per-sample distance (B,) between the statistics of ``fields`` and ``target_stats`` (B, P,
    *window), equal to ``spatialstats.loss._distance(two_point(...) - target_stats, weights, distance)``.

    Fused (``loss.py``) when the window holds distinct displacements only and the weights need no
    gradient; otherwise computed from :func:`two_point`.
    """
    if _computed_window(fields.shape[2:], window, periodic) != tuple(window) or (
        weights is not None and weights.requires_grad
    ):
        from ..loss import _distance

        return _distance(two_point(fields, pairs, mask, window, periodic) - target_stats, weights, distance)
    prepared = _prepare(fields, pairs, mask, window, periodic)
    dtype = prepared.counts.dtype
    shape = (target_stats.shape[0], len(pairs), *(2 * k + 1 for k in prepared.window3))
    target = target_stats.to(dtype).reshape(shape)
    if weights is not None:
        weights = weights.to(dtype).expand(target_stats.shape[1:]).reshape(shape[1:])
    counts = prepared.counts.reshape(prepared.counts.shape[0], *shape[2:])
    inverse_counts = torch.where(counts > 0, counts.reciprocal(), 0.0)
    distances, _, _ = weighted_distance(
        prepared.fields,
        target,
        weights,
        inverse_counts,
        prepared.pairs,
        prepared.window3,
        periodic,
        prepared.precision,
        distance,
    )
    return distances
