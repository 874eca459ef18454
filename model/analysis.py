"""The paper's searches over the training data: nearest training images (App. C.2, Fig. 3) and the
overfitting check (Figs. 4/5), batched on the evaluation's device.

An image is compared in two spaces: data space (its one-hot phase map, flattened: C*H*W values)
and statistics space (the periodic line-phase S2 over every displacement for two phases, every
phase's S2 for more; the field the "normalized" loss compares), always by the mean squared error
over the entries. One pass over a split gives, for each query, the nearest image of the split in
each space and the mean MSE against all of the split's images. The latter needs no pairwise
search: for a query q and images t_1..t_m of dimension D,

    (1/m) sum_j |q - t_j|^2 / D = (|q|^2 - 2 q . mean_j t_j + mean_j |t_j|^2) / D,

so the pass only accumulates the mean image and the mean squared norm (in float64).
"""

import numpy as np
import torch

from .metrics import statistics
from .vae import one_hot

SPACES = ("data", "statistics")


def features(probabilities):
    """{"data": (N, C*H*W), "statistics": (N, P*h*w)} float32 vectors of phase probabilities (N, C, H, W)."""
    return {
        "data": probabilities.flatten(1).float(),
        "statistics": statistics(probabilities).flatten(1).float(),
    }


@torch.no_grad()
def scan_split(subset, queries, n_phases, *, device, batch_size=256):
    """Compare query vectors with every image of ``subset`` (uint8 label images) in both spaces.

    ``queries``: {space: (k, D) float tensor} as :func:`features` makes them. Returns {space:
    {"nearest": int64 (k,) index into ``subset``, "nearest_mse": (k,), "mean_mse": (k,)}} as numpy.
    Distances are float32 matmuls (|q|^2 - 2 q.t + |t|^2); the means are accumulated in float64.
    """
    device = torch.device(device)
    queries = {space: q.to(device) for space, q in queries.items()}
    query_norms = {space: q.double().square().sum(1) for space, q in queries.items()}
    best = {space: torch.full((len(q),), torch.inf, device=device) for space, q in queries.items()}
    best_index = {space: torch.zeros(len(q), dtype=torch.int64, device=device) for space, q in queries.items()}
    sums = {space: torch.zeros(q.shape[1], dtype=torch.float64, device=device) for space, q in queries.items()}
    square_sums = dict.fromkeys(queries, 0.0)
    seen = 0
    for labels in torch.utils.data.DataLoader(subset, batch_size=batch_size):
        images = features(one_hot(labels.to(device), n_phases))
        for space, query in queries.items():
            chunk = images[space]
            distances = query_norms[space].float()[:, None] - 2 * query @ chunk.T + chunk.square().sum(1)[None, :]
            value, index = distances.min(1)
            closer = value < best[space]
            best[space] = torch.where(closer, value, best[space])
            best_index[space] = torch.where(closer, index + seen, best_index[space])
            sums[space] += chunk.double().sum(0)
            square_sums[space] += float(chunk.double().square().sum())
        seen += len(labels)
    if seen == 0:
        raise ValueError("the split to compare with holds no images")
    result = {}
    for space, query in queries.items():
        dimension = query.shape[1]
        mean_mse = query_norms[space] - 2 * query.double() @ (sums[space] / seen) + square_sums[space] / seen
        result[space] = {
            "nearest": best_index[space].cpu().numpy(),
            "nearest_mse": (best[space].clamp_min(0) / dimension).cpu().numpy(),
            "mean_mse": (mean_mse / dimension).clamp_min(0).cpu().numpy(),
        }
    return result


def bootstrap_ratio(numerator, denominator, *, resamples=2000, level=0.95, seed=0):
    """(ratio of the means, (low, high)): a paired percentile bootstrap interval of mean(a) / mean(b).

    ``numerator`` and ``denominator`` hold per-image values of the same images (paired).
    """
    a, b = np.asarray(numerator, dtype=np.float64), np.asarray(denominator, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(f"need two paired 1D samples of at least 2 values, got shapes {a.shape} and {b.shape}")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(a), size=(resamples, len(a)))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = a[draws].mean(1) / b[draws].mean(1)
        ratio = a.mean() / b.mean()
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return float(ratio), (float(low), float(high))


def two_sample_test(first, second):
    """(statistic, p-value) of the two-sample Kolmogorov-Smirnov test of whether two samples share a distribution."""
    from scipy.stats import ks_2samp

    result = ks_2samp(np.asarray(first), np.asarray(second))
    return float(result.statistic), float(result.pvalue)
