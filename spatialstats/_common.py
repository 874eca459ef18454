"""Helpers every backend and the loss share: dtype rules, counts, window mapping, pair flattening,
the per-sample distance, and caches that are safe under torch.compile, torch.func and threads.

Names: ``half_widths`` is the window's half-width per spatial axis (k_a, |r_a| <= k_a, 2 k_a + 1
entries); ``window_shape(half_widths)`` is the shape of the statistics' trailing axes.
"""

import functools
import weakref

import torch

DISTANCES = ("l2", "mse")


def statistics_dtype(dtype):
    """The dtype statistics of ``dtype`` fields are computed and returned in: fp64 for fp64, else fp32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def window_shape(half_widths):
    """(2 k_a + 1, ...): the trailing shape of statistics over the window |r_a| <= k_a."""
    return tuple(2 * k + 1 for k in half_widths)


def flat_pairs(pairs):
    """((i0, j0), (i1, j1), ...) -> [i0, j0, i1, j1, ...], the form the compiled ops take."""
    return [channel for pair in pairs for channel in pair]


def divide_by_counts(sums, counts):
    """S = sums / N where N > 0, else 0 (no pairs); ``counts`` broadcasts against ``sums``."""
    return torch.where(counts > 0, sums / torch.where(counts > 0, counts, 1.0), 0.0)


def computed_half_widths(spatial_shape, half_widths, periodic):
    """The half-widths a backend computes before :func:`to_window` maps them to ``half_widths``.

    Periodic: min(k, n // 2), which holds every displacement mod n once k reaches it. Non-periodic:
    min(k, n - 1); displacements |r| >= n have no pairs.
    """
    return tuple(min(k, n // 2 if periodic else n - 1) for k, n in zip(half_widths, spatial_shape))


def to_window(values, spatial_shape, computed, half_widths, periodic):
    """Map the trailing axes of ``values`` from ``computed`` to ``half_widths`` (:func:`computed_half_widths`).

    Index c + r of an axis computed for c holds displacement r. Periodic, an axis without 2k + 1
    entries holds every displacement mod n (from r = -c on, n or 2c + 1 entries), so r is read at
    index (r + c) mod n; non-periodic, |r| > c has no pairs and is 0.
    """
    first_axis = values.ndim - len(half_widths)
    if not periodic:
        pad = []
        for k, c in zip(half_widths, computed):
            pad = [k - c, k - c, *pad]  # torch pads the last axis first
        return torch.nn.functional.pad(values, pad) if any(pad) else values
    for axis, (k, c, n) in enumerate(zip(half_widths, computed, spatial_shape)):
        if values.shape[first_axis + axis] != 2 * k + 1:
            index = (torch.arange(-k, k + 1, device=values.device) + c) % n
            values = values.index_select(first_axis + axis, index)
    return values


def fast_fft_size(minimum):
    """Smallest integer >= minimum whose only prime factors are 2, 3, 5 and 7."""
    size = max(1, minimum)
    while True:
        rest = size
        for p in (2, 3, 5, 7):
            while rest % p == 0:
                rest //= p
        if rest == 1:
            return size
        size += 1


def analytic_counts(spatial_shape, half_widths, periodic):
    """N(r) without a mask, as per-axis float64 vectors whose outer product is N: n_a (periodic) or
    max(n_a - |r_a|, 0)."""
    vectors = []
    for k, n in zip(half_widths, spatial_shape):
        r = torch.arange(-k, k + 1, dtype=torch.float64)
        vectors.append(torch.full_like(r, float(n)) if periodic else (n - r.abs()).clamp_min(0))
    return vectors


def counts_without_mask(spatial_shape, half_widths, periodic, device=None):
    """N(r) without a mask, float64: (1, *window), a fresh tensor."""
    counts = torch.ones((1,), dtype=torch.float64)
    for vector in analytic_counts(spatial_shape, half_widths, periodic):
        counts = counts.unsqueeze(-1) * vector
    return counts.to(device)


def counts_from_correlation(counts, mask):
    """N(r) from a correlation of the mask with itself (B, *window), by transforms or direct sums:
    integers for a boolean mask (so N(r) = 0 is exact and gives S = 0); for [0, 1] weights, 0 where
    the sum is zero up to round-off."""
    if mask.dtype == torch.bool:
        return counts.round()
    total = mask.to(torch.float64).flatten(1).square().sum(1).reshape((-1,) + (1,) * (counts.ndim - 1))
    return torch.where(counts.abs() <= 1e-12 * total, 0.0, counts)


def distance_from_squares(squares, n_values, distance):
    """The per-sample distance from sum_{p, r} w D^2 (B,): sqrt of it ("l2", with a zero slope at 0 where
    sqrt's is infinite) or its mean over the ``n_values`` entries ("mse")."""
    if distance == "mse":
        return squares / n_values
    positive = squares > 0
    return torch.where(positive, torch.where(positive, squares, 1.0).sqrt(), 0.0)


def per_sample_distance(diff, weights, distance):
    """The distance of each sample's statistics difference D (B, P, *window) -> (B,), weights w
    broadcasting to (P, *window) or None: "l2" sqrt(sum w D^2), "mse" mean(w D^2)."""
    if distance == "l2" and weights is None:
        return torch.linalg.vector_norm(diff.flatten(1), dim=1)  # one op; its gradient at 0 is 0
    squares = diff.square()
    if weights is not None:
        squares = squares * weights
    return distance_from_squares(squares.flatten(1).sum(1), diff[0].numel(), distance)


def functorch_active():
    """True inside torch.func transforms (grad, vmap, jacrev, ...), whose tensors are wrappers."""
    return torch._C._are_functorch_transforms_active()


def eager_twin(function):
    """``apply`` for a torch.func-ready autograd.Function (forward without ctx, setup_context): inside
    torch.func transforms the Function itself, elsewhere a twin that takes ctx in forward, whose
    apply() skips the per-call signature binding of setup_context Functions (~10x cheaper)."""

    def forward(ctx, *inputs):
        output = function.forward(*inputs)
        function.setup_context(ctx, inputs, output)
        return output

    twin = type(
        f"{function.__name__}Eager",
        (torch.autograd.Function,),
        {
            "forward": staticmethod(forward),
            "backward": staticmethod(function.backward),
        },
    )

    def apply(*inputs):
        return (function if functorch_active() else twin).apply(*inputs)

    return apply


def caching_allowed():
    """Caches hand out plain tensors built once: not while torch.compile traces (it folds them into
    the graph) nor inside torch.func transforms (whose tensors must not be stored)."""
    return not torch.compiler.is_compiling() and not functorch_active()


def cached(maxsize=256):
    """functools.lru_cache (thread-safe) for builders of constant tensors keyed by hashable arguments;
    while tracing for torch.compile or inside torch.func the value is built afresh. The cached
    tensors are shared: never modify one in place (hand out a clone)."""

    def decorate(build):
        memo = functools.lru_cache(maxsize)(build)

        @functools.wraps(build)
        def get(*key):
            return memo(*key) if caching_allowed() else build(*key)

        get.cache_clear = memo.cache_clear
        return get

    return decorate


class TensorKeyedCache:
    """Values derived from a tensor's contents (e.g. the pair counts of a mask), kept while the same
    tensor object lives and is not modified in place (its version counter is unchanged).

    ``get(tensor, key, build)`` returns the value built for (tensor, key) or builds it; entries go
    away with their tensor. Bypassed where :func:`caching_allowed` is False and for inference tensors
    (which have no version counter).
    """

    def __init__(self):
        self._entries = {}

    def get(self, tensor, key, build):
        if not caching_allowed() or tensor.is_inference():
            return build()
        slot = (id(tensor), key)
        entry = self._entries.get(slot)
        if entry is not None and entry[0]() is tensor and entry[1] == tensor._version:
            return entry[2]
        value = build()
        entries = self._entries
        reference = weakref.ref(tensor, lambda _, slot=slot: entries.pop(slot, None))
        entries[slot] = (reference, tensor._version, value)
        return value

    def clear(self):
        self._entries.clear()
