"""TwoPointLoss: the distance between the two-point statistics of a prediction and a target.

For predictions and targets of shape (N, C, *spatial) (C phase probabilities per pixel, 1 to 3
spatial axes) and the chosen phase pairs P, with D = S(pred) - S(target) of shape (N, P, *window)
and optional per-displacement weights w (broadcastable to (P, *window)):

    distance="l2":  d_n = sqrt(sum w D_n^2)      (the paper's per-sample Euclidean norm, Eq. 1)
    distance="mse": d_n = mean(w D_n^2)

reduced over the batch by "mean", "sum" or "none". The statistics are computed in float32 (float64
for float64 predictions), also under autocast.
"""

import numpy as np
import torch

from . import ops

DISTANCES = ("l2", "mse")
REDUCTIONS = ("mean", "sum", "none")


def _check_options(cutoff, periodic, distance, reduction):
    if cutoff is not None:
        ops.resolve_window(cutoff, (1,) * (len(cutoff) if isinstance(cutoff, (tuple, list)) else 1), True)
    ops.check_flag(periodic, "periodic")
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {list(DISTANCES)}, got {distance!r}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {list(REDUCTIONS)}, got {reduction!r}")


def _check_prediction(t, name, *, allow_bool):
    if not isinstance(t, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of phase probabilities (N, C, *spatial), got {type(t).__name__}"
        )
    if not (t.dtype.is_floating_point or (allow_bool and t.dtype == torch.bool)):
        raise TypeError(
            f"{name} must hold phase probabilities as a floating tensor, got dtype {t.dtype}; "
            "convert a label image with torch.nn.functional.one_hot(labels).movedim(-1, 1).float()"
        )
    if t.ndim not in (3, 4, 5):
        raise ValueError(
            f"{name} must have shape (N, C, *spatial) with 1 to 3 spatial axes, got shape {tuple(t.shape)}"
        )
    ops.check_field(t, name, t.ndim - 2)


def _distance(diff, weights, distance):
    """Per-sample distance of D (N, P, *window): (N,)."""
    squares = diff.square()
    if weights is not None:
        squares = squares * weights
    if distance == "mse":
        return squares.flatten(1).mean(1)
    total = squares.flatten(1).sum(1)
    positive = total > 0
    # sqrt has an infinite slope at 0: give the zero distance a zero gradient instead of NaN.
    return torch.where(positive, torch.where(positive, total, 1.0).sqrt(), 0.0)


def _reduce(values, reduction):
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    return values


def _prepare(pred, periodic, phases, pairs, cutoff, mask):
    """(pairs, window, flat mask) for predictions of shape (N, C, *spatial)."""
    spatial = tuple(pred.shape[2:])
    chosen = ops.check_pairs(pairs, ops.check_phases(phases, pred.shape[1]))
    window = ops.resolve_window(cutoff, spatial, periodic)
    flat_mask, _ = ops.prepare_mask(mask, "torch", pred.shape[:1], spatial, pred.device)
    return chosen, window, flat_mask


def _check_weights(weights, n_pairs, window, like):
    if weights is None:
        return None
    w = torch.as_tensor(weights, dtype=like.dtype, device=like.device)
    target_shape = (n_pairs, *ops.window_shape(window))
    try:
        broadcast = torch.broadcast_shapes(tuple(w.shape), target_shape)
    except RuntimeError:
        broadcast = None
    if broadcast != target_shape:
        raise ValueError(f"weights of shape {tuple(w.shape)} do not broadcast to (P, *window) = {target_shape}")
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
        raise ValueError("weights must be finite and non-negative")
    return w


def _check_target_stats(target_stats, expected, device):
    if not isinstance(target_stats, torch.Tensor) or not target_stats.dtype.is_floating_point:
        raise TypeError(f"target_stats must be a floating torch.Tensor of shape (N, P, *window) = {expected}")
    if tuple(target_stats.shape) != expected:
        raise ValueError(f"target_stats must have shape (N, P, *window) = {expected}, got {tuple(target_stats.shape)}")
    if target_stats.device != device:
        raise ValueError(f"target_stats is on {target_stats.device} but pred is on {device}; put both on one device")
    if not bool(torch.isfinite(target_stats).all()):
        raise ValueError("target_stats contains NaN or infinite values")


def two_point_statistics(x, *, cutoff=None, periodic=True, phases=None, pairs="auto", mask=None, backend="auto"):
    """Statistics as the loss compares them: (N, C, *spatial) -> (N, P, *window) float32/float64."""
    _check_prediction(x, "x", allow_bool=True)
    periodic = ops.check_flag(periodic, "periodic")
    chosen, window, flat_mask = _prepare(x, periodic, phases, pairs, cutoff, mask)
    with torch.autocast(device_type=x.device.type, enabled=False):
        return ops.compute(ops.working_fields(x, "torch"), chosen, flat_mask, window, periodic, backend)


def two_point_loss(
    pred,
    target=None,
    *,
    target_stats=None,
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
        pred: (N, C, *spatial) float phase probabilities (differentiable).
        target: (N, C, *spatial) float or bool; or pass ``target_stats`` (N, P, *window) instead,
            e.g. from :meth:`TwoPointLoss.precompute`.
        cutoff, periodic, mask, backend: as in :func:`spatialstats.two_point`.
        phases, pairs: which statistics to compare, as in :func:`spatialstats.two_point_all`.
        distance: "l2" (per-sample Euclidean norm) or "mse" (per-sample mean of squares).
        reduction: "mean", "sum" or "none" over the batch.
        weights: per-displacement weights broadcastable to (P, *window), or a scalar.

    Returns:
        A scalar (or (N,) for reduction="none").
    """
    _check_options(cutoff, periodic, distance, reduction)
    _check_prediction(pred, "pred", allow_bool=False)
    if (target is None) == (target_stats is None):
        raise ValueError("pass exactly one of target (N, C, *spatial) and target_stats (N, P, *window)")
    chosen, window, flat_mask = _prepare(pred, periodic, phases, pairs, cutoff, mask)
    with torch.autocast(device_type=pred.device.type, enabled=False):
        module = ops.resolve_backend(backend, pred, chosen, window, periodic)
        if target is not None:
            _check_prediction(target, "target", allow_bool=True)
            ops.check_partner(target, "torch", "target", pred, "torch", "pred")
            target_fields = target.to(pred.dtype)
            target_stats = module.two_point(target_fields, chosen, flat_mask, window, periodic)
        else:
            _check_target_stats(target_stats, (pred.shape[0], len(chosen), *ops.window_shape(window)), pred.device)
        target_stats = target_stats.to(ops.result_dtype(pred))
        w = _check_weights(weights, len(chosen), window, target_stats)
        fused = getattr(module, "pair_distance", None)
        if fused is not None:
            per_sample = fused(pred, target_stats, chosen, flat_mask, window, periodic, w, distance)
        else:
            pred_stats = module.two_point(pred, chosen, flat_mask, window, periodic).to(target_stats.dtype)
            per_sample = _distance(pred_stats - target_stats, w, distance)
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
        periodic=True,
        phases=None,
        pairs="auto",
        distance="l2",
        reduction="mean",
        weights=None,
        backend="auto",
    ):
        super().__init__()
        _check_options(cutoff, periodic, distance, reduction)
        self.cutoff, self.periodic, self.phases, self.pairs = cutoff, periodic, phases, pairs
        self.distance, self.reduction, self.backend = distance, reduction, backend
        self.register_buffer("weights", None if weights is None else torch.as_tensor(weights, dtype=torch.float32))

    def statistics(self, x, mask=None):
        """The statistics this loss compares: (N, C, *spatial) -> (N, P, *window)."""
        return two_point_statistics(
            x,
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
            f"cutoff={self.cutoff}, periodic={self.periodic}, phases={self.phases}, pairs={self.pairs!r}, "
            f"distance={self.distance!r}, reduction={self.reduction!r}, backend={self.backend!r}"
        )
