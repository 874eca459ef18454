"""Triton backend of the two-point statistics: fused kernels for CUDA GPUs, and the Triton
interpreter on the CPU (``TRITON_INTERPRET=1`` before import; for tests).

The backend contract of ``spatialstats._backend``: ``two_point``, ``pair_counts``, ``pair_distance``
(the fused loss term) and ``unavailable_reason``. The kernels (``correlation.py``, ``loss.py``) take
fields (B, C, n0, n1, n2), so 1D and 2D inputs get unit leading axes, and compute the window of
distinct displacements (``_common.computed_half_widths``). This module applies the mask (g = m f),
divides by the pair counts and maps that window onto the requested one (``_common.to_window``).
"""

from typing import NamedTuple

import torch

from .._common import (
    cached,
    computed_half_widths,
    counts_from_correlation,
    counts_without_mask,
    divide_by_counts,
    flat_pairs,
    statistics_dtype,
    to_window,
)
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


def _as_3d(values, d):
    """(B, C, *spatial) with d spatial axes -> (B, C, n0, n1, n2), unit leading axes."""
    return values.reshape(*values.shape[:2], *(1,) * (3 - d), *values.shape[2:])


def _mask_counts(mask, computed, periodic, dtype):
    """N(r) = sum_s m(s) m(s + r) over the computed window: (Bm, *window) in ``dtype``."""
    d = len(computed)
    weights = mask.to(dtype).unsqueeze(1)
    exact = mask.dtype == torch.bool and dtype == torch.float32  # 0/1 products are exact in TF32
    half_widths3 = [0] * (3 - d) + list(computed)
    counts, _ = correlate(_as_3d(weights, d), [0, 0], half_widths3, periodic, "tf32" if exact else _precision(dtype))
    counts = counts.reshape(mask.shape[0], *(2 * k + 1 for k in computed))
    return counts_from_correlation(counts, mask)


@cached()
def _counts_without_mask(spatial, computed, periodic, device, dtype):
    """(N(r), 1/N(r) or 0 where N = 0) without a mask over the computed window: (1, *window) each, in
    ``dtype`` on ``device``; shared, never modified."""
    counts = counts_without_mask(spatial, computed, periodic, device).to(dtype)
    return counts, torch.where(counts > 0, counts.reciprocal(), 0.0)


class _Prepared(NamedTuple):
    fields: torch.Tensor  # masked, (B, C, n0, n1, n2)
    pairs: list  # flat [i0, j0, i1, j1, ...]
    computed: tuple  # computed half-widths, one per spatial axis
    half_widths3: list  # computed half-widths for the kernels' three axes
    counts: torch.Tensor  # N(r) over the computed window, (Bm, *window), compute dtype
    inverse_counts: torch.Tensor | None  # 1/N (0 where N = 0) when known without work, else None
    precision: str


def _prepare(fields, pairs, mask, counts, half_widths, periodic):
    if fields.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        raise TypeError(f"the triton backend takes float16, bfloat16, float32 or float64 fields, got {fields.dtype}")
    spatial = tuple(fields.shape[2:])
    d = len(spatial)
    dtype = statistics_dtype(fields.dtype)
    computed = computed_half_widths(spatial, half_widths, periodic)
    inverse_counts = None
    if mask is None:
        counts, inverse_counts = _counts_without_mask(spatial, computed, periodic, fields.device, dtype)
    else:
        if counts is None:
            counts = _mask_counts(mask, computed, periodic, dtype)
        else:  # counts over the requested window: its centre holds the computed one
            centre = tuple(slice(k - c, k + c + 1) for k, c in zip(half_widths, computed))
            counts = counts[(slice(None), *centre)].to(dtype)
        fields = (
            fields * mask.unsqueeze(1) if mask.dtype == torch.bool else fields.to(dtype) * mask.to(dtype).unsqueeze(1)
        )
    return _Prepared(
        fields=_as_3d(fields, d),
        pairs=flat_pairs(pairs),
        computed=computed,
        half_widths3=[0] * (3 - d) + list(computed),
        counts=counts,
        inverse_counts=inverse_counts,
        precision=_precision(fields.dtype),
    )


def two_point(fields, *, pairs, half_widths, periodic, mask=None, counts=None, nonnegative=False):
    """S_ij(r) for each (i, j) in pairs: (B, C, *spatial) -> (B, P, *window), float32 or float64.

    Direct sums of products: non-negative fields give non-negative statistics without a clamp.
    """
    prepared = _prepare(fields, pairs, mask, counts, half_widths, periodic)
    sums, _ = correlate(prepared.fields, prepared.pairs, prepared.half_widths3, periodic, prepared.precision)
    sums = sums.reshape(*sums.shape[:2], *prepared.counts.shape[1:])
    stats = divide_by_counts(sums, prepared.counts.unsqueeze(1))
    return to_window(stats, fields.shape[2:], prepared.computed, tuple(half_widths), periodic)


def pair_counts(mask, *, spatial_shape, half_widths, periodic, device=None):
    """N(r) for every r of the window, float64: (Bm, *window), Bm = 1 without a mask."""
    if mask is None:
        return counts_without_mask(tuple(spatial_shape), tuple(half_widths), periodic, device)
    computed = computed_half_widths(spatial_shape, half_widths, periodic)
    dtype = torch.float32 if mask.dtype == torch.bool else torch.float64
    counts = _mask_counts(mask, computed, periodic, dtype).to(torch.float64)
    return to_window(counts, spatial_shape, computed, tuple(half_widths), periodic)


def pair_distance(
    fields,
    *,
    pairs,
    half_widths,
    periodic,
    distance,
    target=None,
    target_stats=None,
    mask=None,
    counts=None,
    weights=None,
):
    """Per-sample distance (B,) between the statistics of ``fields`` and ``target_stats`` (B, P,
    *window) (or those of ``target`` (B, C, *spatial)), fused (``loss.py``); None where the window
    holds repeated displacements or the weights need a gradient (the caller then compares statistics).
    """
    if computed_half_widths(fields.shape[2:], half_widths, periodic) != tuple(half_widths) or (
        weights is not None and weights.requires_grad
    ):
        return None
    if target_stats is None:
        target_stats = two_point(
            target, pairs=pairs, half_widths=half_widths, periodic=periodic, mask=mask, counts=counts
        )
    prepared = _prepare(fields, pairs, mask, counts, half_widths, periodic)
    dtype = prepared.counts.dtype
    shape = (target_stats.shape[0], len(pairs), *(2 * k + 1 for k in prepared.half_widths3))
    target = target_stats.to(dtype).reshape(shape)
    if weights is not None:
        weights = weights.to(dtype).expand(target_stats.shape[1:]).reshape(shape[1:])
    counts = prepared.counts.reshape(prepared.counts.shape[0], *shape[2:])
    inverse_counts = prepared.inverse_counts
    if inverse_counts is None:
        inverse_counts = torch.where(prepared.counts > 0, prepared.counts.reciprocal(), 0.0)
    distances, _, _ = weighted_distance(
        prepared.fields,
        target,
        weights,
        inverse_counts.reshape(counts.shape),
        prepared.pairs,
        prepared.half_widths3,
        periodic,
        prepared.precision,
        distance,
    )
    return distances
