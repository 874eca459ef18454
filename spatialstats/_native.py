"""Native backend: the ops of the compiled extension ``spatialstats._C`` (``csrc/``), CPU and CUDA.

Math (the convention of ``_ref.py``): with g_c = m f_c, a pair (i, j) and N(r) the pair counts,

    S_ij(r) = (1 / N(r)) sum_s g_i(s) g_j(s + r)               (0 where N(r) = 0)
    dL/df_c(s) = m(s) [ sum_{(c, j)} sum_r H(r) g_j(s + r) + sum_{(i, c)} sum_r H(r) g_i(s - r) ]

with H = (dL/dS) / N, summed directly over the window: csrc/cpu (OpenMP, AVX-512/AVX2 row kernels)
and csrc/cuda (shared-memory tiles with a halo). An auto-correlation computes half the window
(S(-r) = S(r)) and its gradient in one pass (H(r) + H(-r)). Ops (``torch.ops.spatialstats``):

    pair_counts(mask (Bm, *spatial), window, periodic) -> (Bm, *window) float64
    two_point(fields (B, C, *spatial), mask, counts, pairs, window, periodic) -> (B, P, *window)
    two_point_backward(grad, fields, mask, counts, pairs, window, periodic) -> (B, C, *spatial)

``pairs`` is flat (i0, j0, i1, j1, ...); ``counts`` None means "from the mask" (analytic without
one). Gradients of any order reach the fields through ``register_autograd``; ``register_fake``
gives the shapes to torch.compile. Dtypes: fp16, bf16, fp32 fields give fp32 statistics
(accumulated in fp32), fp64 gives fp64. Accuracy relative to max |S|: about 1e-7 on the CPU (float32
sums of ~128 products per lane flushed to float64), about 1e-6 on CUDA (float32 per thread and in
the atomics); float64 ~1e-15. ``register_vmap`` folds a vmapped axis into the batch axis, so
torch.func.vmap, jacrev and jacfwd-free compositions run the ops once, not once per vmapped entry.
"""

import torch

from ._common import counts_without_mask, flat_pairs, statistics_dtype

try:
    from . import _C
except ImportError as error:  # not built: pip's isolated build, no compiler, or a failed compile
    _C, _IMPORT_ERROR = None, error
else:
    _IMPORT_ERROR = None

REBUILD_HINT = "build it with `pip install --no-build-isolation -e .` (a CUDA toolkit in CUDA_HOME for its CUDA part)"


def unavailable_reason(device):
    """None when the extension runs on ``device``, else why not."""
    if _C is None:
        return f"the compiled extension spatialstats._C is not importable ({_IMPORT_ERROR}); {REBUILD_HINT}"
    if device.type == "cuda" and not _C.WITH_CUDA:
        return f"spatialstats._C was built without its CUDA part; {REBUILD_HINT}"
    if device.type == "cuda" and not torch.cuda.is_available():
        return "CUDA is not available"
    if device.type not in ("cpu", "cuda"):
        return f"spatialstats._C has no implementation for {device.type} devices (cpu and cuda only)"
    return None


def pair_counts(mask, *, spatial_shape, half_widths, periodic, device=None):
    """N(r) over the window, float64: (Bm, *window), Bm = 1 without a mask (then analytic)."""
    if mask is None:
        return counts_without_mask(tuple(spatial_shape), tuple(half_widths), periodic, device)
    return torch.ops.spatialstats.pair_counts(mask, list(half_widths), periodic)


def two_point(fields, *, pairs, half_widths, periodic, mask=None, counts=None, nonnegative=False):
    """S_ij(r) for each (i, j) in pairs: (B, C, *spatial) -> (B, P, *window), fp32 or fp64.

    Direct sums of products: non-negative fields give non-negative statistics without a clamp.
    """
    if mask is not None and counts is None:
        counts = torch.ops.spatialstats.pair_counts(mask, list(half_widths), periodic)
    return _TwoPoint.apply(fields, mask, counts, flat_pairs(pairs), list(half_widths), periodic)


# Gradients: the same functions serve the ops' registered autograd (for callers of torch.ops) and
# the autograd.Functions below, which torch.func (grad, vmap, jacrev) requires.


def _setup_context(ctx, inputs, output):
    fields, mask, counts, pairs, window, periodic = inputs
    ctx.save_for_backward(fields, mask, counts)
    ctx.pairs, ctx.window, ctx.periodic = pairs, window, periodic


def _backward(ctx, grad):
    fields, mask, counts = ctx.saved_tensors
    grad_fields = None
    if ctx.needs_input_grad[0]:
        grad_fields = _TwoPointBackward.apply(grad, fields, mask, counts, ctx.pairs, ctx.window, ctx.periodic)
    return grad_fields, None, None, None, None, None


def _backward_setup_context(ctx, inputs, output):
    grad, fields, mask, counts, pairs, window, periodic = inputs
    ctx.save_for_backward(grad, fields, mask, counts)
    ctx.pairs, ctx.window, ctx.periodic = pairs, window, periodic


def _double_backward(ctx, upstream):
    """two_point_backward(G, f) = A_G f with A_G symmetric (the Hessian of <G, S(f)>), so its
    derivative is A_G U for f and, for G, dS(f)[U] = sum over pairs of S(U_i, f_j) + S(f_i, U_j)."""
    grad, fields, mask, counts = ctx.saved_tensors
    wrt_grad = wrt_fields = None
    if ctx.needs_input_grad[0]:
        channels = fields.shape[1]
        both = torch.cat([fields, upstream.to(fields.dtype)], dim=1)
        firsts, seconds = ctx.pairs[0::2], ctx.pairs[1::2]
        crossed = [c for i, j in zip(firsts, seconds) for c in (channels + i, j, i, channels + j)]
        stats = _TwoPoint.apply(both, mask, counts, crossed, ctx.window, ctx.periodic)
        wrt_grad = stats[:, 0::2] + stats[:, 1::2]
    if ctx.needs_input_grad[1]:
        wrt_fields = _TwoPointBackward.apply(grad, upstream, mask, counts, ctx.pairs, ctx.window, ctx.periodic)
    return wrt_grad, wrt_fields, None, None, None, None, None


class _TwoPoint(torch.autograd.Function):
    """spatialstats::two_point with its gradient, for autograd and torch.func."""

    generate_vmap_rule = True

    @staticmethod
    def forward(fields, mask, counts, pairs, window, periodic):
        return torch.ops.spatialstats.two_point(fields, mask, counts, pairs, window, periodic)

    setup_context = staticmethod(_setup_context)
    backward = staticmethod(_backward)


class _TwoPointBackward(torch.autograd.Function):
    """spatialstats::two_point_backward with its gradient (second derivatives of the statistics)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(grad, fields, mask, counts, pairs, window, periodic):
        return torch.ops.spatialstats.two_point_backward(grad, fields, mask, counts, pairs, window, periodic)

    setup_context = staticmethod(_backward_setup_context)
    backward = staticmethod(_double_backward)


def _fold(tensor, dim, size):
    """A vmapped tensor (vmapped axis ``dim``, or None: not vmapped) as (size * B, ...)."""
    tensor = tensor.unsqueeze(0).expand(size, *tensor.shape) if dim is None else tensor.movedim(dim, 0)
    return tensor.reshape(-1, *tensor.shape[2:])


def _unfold(tensor, size):
    return tensor.reshape(size, -1, *tensor.shape[1:]), 0


def _each(op, size, in_dims, *arguments):
    """The op once per vmapped entry (for vmapped masks or counts, whose batch axis may be 1)."""
    results = []
    for index in range(size):
        pick = [a if d is None or a is None else a.select(d, index) for a, d in zip(arguments, in_dims)]
        results.append(op(*pick))
    return torch.stack(results), 0


def _pair_counts_vmap(info, in_dims, mask, window, periodic):
    counts = torch.ops.spatialstats.pair_counts(_fold(mask, in_dims[0], info.batch_size), window, periodic)
    return _unfold(counts, info.batch_size)


def _two_point_vmap(info, in_dims, fields, mask, counts, pairs, window, periodic):
    if in_dims[1] is not None or in_dims[2] is not None:
        return _each(
            lambda f, m, c: torch.ops.spatialstats.two_point(f, m, c, pairs, window, periodic),
            info.batch_size,
            in_dims[:3],
            fields,
            mask,
            counts,
        )
    folded = _fold(fields, in_dims[0], info.batch_size)
    return _unfold(torch.ops.spatialstats.two_point(folded, mask, counts, pairs, window, periodic), info.batch_size)


def _two_point_backward_vmap(info, in_dims, grad, fields, mask, counts, pairs, window, periodic):
    if in_dims[2] is not None or in_dims[3] is not None:
        return _each(
            lambda g, f, m, c: torch.ops.spatialstats.two_point_backward(g, f, m, c, pairs, window, periodic),
            info.batch_size,
            in_dims[:4],
            grad,
            fields,
            mask,
            counts,
        )
    size = info.batch_size
    result = torch.ops.spatialstats.two_point_backward(
        _fold(grad, in_dims[0], size), _fold(fields, in_dims[1], size), mask, counts, pairs, window, periodic
    )
    return _unfold(result, size)


if _C is not None:

    @torch.library.register_fake("spatialstats::pair_counts")
    def _(mask, window, periodic):
        return mask.new_empty((mask.shape[0], *(2 * k + 1 for k in window)), dtype=torch.float64)

    @torch.library.register_fake("spatialstats::two_point")
    def _(fields, mask, counts, pairs, window, periodic):
        shape = (fields.shape[0], len(pairs) // 2, *(2 * k + 1 for k in window))
        return fields.new_empty(shape, dtype=statistics_dtype(fields.dtype))

    @torch.library.register_fake("spatialstats::two_point_backward")
    def _(grad, fields, mask, counts, pairs, window, periodic):
        return fields.new_empty(fields.shape)

    torch.library.register_autograd("spatialstats::two_point", _backward, setup_context=_setup_context)
    torch.library.register_autograd(
        "spatialstats::two_point_backward", _double_backward, setup_context=_backward_setup_context
    )
    torch.library.register_vmap("spatialstats::pair_counts", _pair_counts_vmap)
    torch.library.register_vmap("spatialstats::two_point", _two_point_vmap)
    torch.library.register_vmap("spatialstats::two_point_backward", _two_point_backward_vmap)
