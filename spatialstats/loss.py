"""TwoPointLoss: the distance between the two-point statistics of a prediction and a target.

For predictions and targets of shape (N, C, *spatial) (C phase probabilities per pixel,
``spatial_dims`` spatial axes) and the chosen phase pairs P, with D = S(pred) - S(target) of shape
(N, P, *window) and optional per-displacement weights w (broadcastable to (P, *window)):

    distance="l2":  d_n = sqrt(sum w D_n^2)      (the paper's per-sample Euclidean norm, Eq. 1)
    distance="mse": d_n = mean(w D_n^2)

reduced over the batch by "mean", "sum" or "none". The window holds each distinct displacement once
(periodic: cutoff <= (n - 1) // 2). The statistics are computed in float32 (float64 for float64
predictions), also under autocast; the target is read in that dtype too, whatever its own.
"""

import numpy as np
import torch

from . import ops
from ._backend import check_backend, dispatch
from ._common import DISTANCES, statistics_dtype, window_shape

REDUCTIONS = ("mean", "sum", "none")


def _check_options(cutoff, spatial_dims, periodic, distance, reduction, backend):
    d = ops.check_spatial_dims(spatial_dims)
    ops.check_cutoff(cutoff, d)
    ops.check_flag(periodic, "periodic")
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {list(DISTANCES)}, got {distance!r}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {list(REDUCTIONS)}, got {reduction!r}")
    check_backend(backend)
    return d


def _check_prediction(t, name, spatial_dims, *, allow_bool):
    if not isinstance(t, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of phase probabilities (N, C, *spatial), got {type(t).__name__}"
        )
    if not (t.dtype.is_floating_point or (allow_bool and t.dtype == torch.bool)):
        raise TypeError(
            f"{name} must hold phase probabilities as a floating tensor, got dtype {t.dtype}; "
            "convert a label image with torch.nn.functional.one_hot(labels).movedim(-1, 1).float()"
        )
    if t.ndim != spatial_dims + 2:
        raise ValueError(
            f"{name} must have shape (N, C, *spatial) with spatial_dims={spatial_dims} spatial axes, i.e. "
            f"{spatial_dims + 2} axes, got shape {tuple(t.shape)}"
            + ("; add the channel axis with .unsqueeze(1)" if t.ndim == spatial_dims + 1 else "")
        )
    ops.check_shape(t, name, spatial_dims)
    return ops.check_values(t, name)


def _reduce(values, reduction):
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    return values


def _prepare(pred, periodic, phases, pairs, cutoff, mask):
    """(pairs, half-widths, flat mask) for predictions of shape (N, C, *spatial)."""
    spatial = tuple(pred.shape[2:])
    chosen = ops.check_pairs(pairs, ops.check_phases(phases, pred.shape[1]))
    window = ops.resolve_window(cutoff, spatial, periodic, distinct_only=True)
    flat_mask, _ = ops.prepare_mask(mask, "torch", pred.shape[:1], spatial, pred.device)
    return chosen, window, flat_mask


def _check_weights(weights, n_pairs, window, dtype, device):
    if weights is None:
        return None
    w = torch.as_tensor(weights, dtype=dtype, device=device)
    target_shape = (n_pairs, *window_shape(window))
    try:
        broadcast = torch.broadcast_shapes(tuple(w.shape), target_shape)
    except RuntimeError:
        broadcast = None
    if broadcast != target_shape:
        raise ValueError(f"weights of shape {tuple(w.shape)} do not broadcast to (P, *window) = {target_shape}")
    low, high = torch.aminmax(w)
    ops.require(torch.isfinite(high) & (low >= 0), "weights must be finite and non-negative")
    return w


def _check_target_stats(target_stats, expected, device):
    if not isinstance(target_stats, torch.Tensor) or not target_stats.dtype.is_floating_point:
        raise TypeError(f"target_stats must be a floating torch.Tensor of shape (N, P, *window) = {expected}")
    if tuple(target_stats.shape) != expected:
        raise ValueError(f"target_stats must have shape (N, P, *window) = {expected}, got {tuple(target_stats.shape)}")
    if target_stats.device != device:
        raise ValueError(f"target_stats is on {target_stats.device} but pred is on {device}; put both on one device")
    ops.check_values(target_stats, "target_stats")


def two_point_statistics(
    x, *, spatial_dims=2, cutoff=None, periodic=True, phases=None, pairs="auto", mask=None, backend="auto"
):
    """Statistics as the loss compares them: (N, C, *spatial) -> (N, P, *window) float32/float64."""
    d = _check_options(cutoff, spatial_dims, periodic, "l2", "mean", backend)
    nonnegative = _check_prediction(x, "x", d, allow_bool=True)
    chosen, window, flat_mask = _prepare(x, bool(periodic), phases, pairs, cutoff, mask)
    return dispatch(
        ops.working_fields(x, "torch"),
        pairs=chosen,
        half_widths=window,
        periodic=bool(periodic),
        mask=flat_mask,
        backend=backend,
        nonnegative=nonnegative,
    )


def two_point_loss(
    pred,
    target=None,
    *,
    target_stats=None,
    spatial_dims=2,
    cutoff=None,
    periodic=True,
    phases=None,
    pairs="auto",
    distance="l2",
    reduction="mean",
    weights=None,
    mask=None,
    backend="auto",
):
    """Distance between the two-point statistics of ``pred`` and of ``target`` (or ``target_stats``).

    Args:
        pred: (N, C, *spatial) float phase probabilities (differentiable), ``spatial_dims`` spatial axes.
        target: (N, C, *spatial) float or bool, read in pred's compute dtype; or pass ``target_stats``
            (N, P, *window) instead, e.g. from :meth:`TwoPointLoss.precompute`.
        spatial_dims: number of spatial axes (1, 2 or 3); pred must have spatial_dims + 2 axes.
        cutoff, periodic, mask, backend: as in :func:`spatialstats.two_point`; the window must hold
            distinct displacements only (cutoff <= (n - 1) // 2 periodic, <= n - 1 non-periodic).
        phases, pairs: which statistics to compare, as in :func:`spatialstats.two_point_all`.
        distance: "l2" (per-sample Euclidean norm) or "mse" (per-sample mean of squares).
        reduction: "mean", "sum" or "none" over the batch.
        weights: per-displacement weights broadcastable to (P, *window), or a scalar.

    Returns:
        A scalar (or (N,) for reduction="none"), float32 (float64 for float64 predictions).
    """
    d = _check_options(cutoff, spatial_dims, periodic, distance, reduction, backend)
    _check_prediction(pred, "pred", d, allow_bool=False)
    if (target is None) == (target_stats is None):
        raise ValueError("pass exactly one of target (N, C, *spatial) and target_stats (N, P, *window)")
    periodic = bool(periodic)
    chosen, window, flat_mask = _prepare(pred, periodic, phases, pairs, cutoff, mask)
    work = statistics_dtype(pred.dtype)
    if target is not None:
        _check_prediction(target, "target", d, allow_bool=True)
        ops.check_partner(target, "torch", "target", pred, "torch", "pred", same_dtype=False)
        target = target.to(work)
    else:
        _check_target_stats(target_stats, (pred.shape[0], len(chosen), *window_shape(window)), pred.device)
        target_stats = target_stats.to(work)
    per_sample = dispatch(
        pred,
        pairs=chosen,
        half_widths=window,
        periodic=periodic,
        mask=flat_mask,
        backend=backend,
        target=target,
        target_stats=target_stats,
        weights=_check_weights(weights, len(chosen), window, work, pred.device),
        distance=distance,
    )
    return _reduce(per_sample, reduction)


class TwoPointLoss(torch.nn.Module):
    """Module form of :func:`two_point_loss`; the options are fixed at construction.

    >>> loss_fn = TwoPointLoss(cutoff=16, periodic=True)
    >>> loss = loss_fn(decoder(z), images)                       # (N, C, H, W) each
    >>> stats = loss_fn.precompute(train_images)                 # once per dataset
    >>> loss = loss_fn(decoder(z), target_stats=stats[batch_idx])
    """

    def __init__(
        self,
        cutoff=None,
        *,
        spatial_dims=2,
        periodic=True,
        phases=None,
        pairs="auto",
        distance="l2",
        reduction="mean",
        weights=None,
        backend="auto",
    ):
        super().__init__()
        self.spatial_dims = _check_options(cutoff, spatial_dims, periodic, distance, reduction, backend)
        self.cutoff, self.periodic, self.phases, self.pairs = cutoff, periodic, phases, pairs
        self.distance, self.reduction, self.backend = distance, reduction, backend
        self.register_buffer("weights", None if weights is None else torch.as_tensor(weights, dtype=torch.float32))

    def statistics(self, x, mask=None):
        """The statistics this loss compares: (N, C, *spatial) -> (N, P, *window)."""
        return two_point_statistics(
            x,
            spatial_dims=self.spatial_dims,
            cutoff=self.cutoff,
            periodic=self.periodic,
            phases=self.phases,
            pairs=self.pairs,
            mask=mask,
            backend=self.backend,
        )

    @torch.no_grad()
    def precompute(self, data, *, batch_size=256, device=None):
        """Statistics of a whole dataset, once: (N, P, *window) on the CPU.

        ``data``: a tensor or array (N, C, *spatial), or an iterable of such batches (or of tuples
        whose first item is the batch, as a DataLoader gives); ``device``: where to compute.
        """
        if isinstance(data, (torch.Tensor, np.ndarray)):
            batches = torch.as_tensor(data).split(batch_size)
        else:
            batches = (batch[0] if isinstance(batch, (tuple, list)) else batch for batch in data)
        return torch.cat([self.statistics(torch.as_tensor(b).to(device or "cpu")).cpu() for b in batches])

    def forward(self, pred, target=None, *, target_stats=None, mask=None):
        return two_point_loss(
            pred,
            target,
            target_stats=target_stats,
            spatial_dims=self.spatial_dims,
            cutoff=self.cutoff,
            periodic=self.periodic,
            phases=self.phases,
            pairs=self.pairs,
            distance=self.distance,
            reduction=self.reduction,
            weights=self.weights,
            mask=mask,
            backend=self.backend,
        )

    def extra_repr(self):
        return (
            f"cutoff={self.cutoff}, spatial_dims={self.spatial_dims}, periodic={self.periodic}, "
            f"phases={self.phases}, pairs={self.pairs!r}, distance={self.distance!r}, "
            f"reduction={self.reduction!r}, backend={self.backend!r}"
        )
