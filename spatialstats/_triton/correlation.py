"""Windowed correlation sums as Triton kernels: forward, backward, launch heuristic, custom ops.

Forward. For fields g of shape (B, C, n0, n1, n2) (the caller has applied the mask, g = m f, and
runs 1D and 2D inputs with unit leading axes), channel pairs p = (i, j) and the window |r_a| <= k_a,

    sums_p(r) = sum_s g_i(s) g_j(s + r)                        -> (B, P, 2 k0 + 1, 2 k1 + 1, 2 k2 + 1)

over every s when periodic (s + r wraps; k_a <= n_a // 2), or over the s with s and s + r inside
the grid (k_a <= n_a - 1). Output index k_a + r_a holds r_a. The caller divides by the pair counts
and maps to larger windows (``spatialstats._triton``).

Backward. With G_p(r) = dL/dsums_p(r) the gradient of channel c is again a windowed correlation, of
the pair's other field with the upstream gradient:

    dL/dg_c(u) = sum_e sum_r H_ce(r) g_e(u + r),    H_ce(r) = sum_{p=(c,e)} G_p(r) + sum_{p=(e,c)} G_p(-r)

The first sum holds the forward's pairs (s, s + r) = (u, u + r), the second its pairs
(s, s + r) = (u - r, u), written with r -> -r; u + r wraps, or must lie inside the grid, as in the
forward. An auto pair (c, c) gives H_cc(r) = G(r) + G(-r).

Tiling: both directions are sums of small matrix products on tensor cores (tl.dot).
  forward, one program per (b, p, r0) and tile of (r1, r2), summing over its rows (s0, s1):
      acc[r2, r1] += sum_s2' g_i(s0, s1, s2' - r2) * g_j(s0 + r0, s1 + r1, s2')
      (a Toeplitz matrix of one row of g_i, displacements x positions, times rows of g_j)
  backward, one program per (b, c, u0) and tile of output rows (u1, u2), summing over r0 and rows t1:
      acc[u2, u1] += sum_r2 g_e(u0 + r0, t1, u2 + r2) * H_ce(r0, t1 - u1, r2)
      (a Hankel matrix of one row of g_e, positions x displacements, times a band of H_ce)
A plain-FMA inner loop would run on the CUDA cores: H100 has 67 TFLOP/s of FP32 FMA against 495
TFLOP/s of dense TF32 tensor-core work, so even tf32x3 (three TF32 products) and the padding of
2k + 1 displacements to power-of-two tiles leave tl.dot ahead.
Auto-correlations (every pair (i, i)) are centrosymmetric, S(-r) = S(r): the forward computes only
(r0, r1) >= (0, 0) in lexicographic order, every r2, and stores each value at r and -r. The field is
read from DRAM once; the two operands of the product come from the caches.

Dtypes and accuracy: the kernels load the input dtype and compute in float32 (float64 for float64).
fp16 and bf16 significands fit in TF32, so their products are exact on TF32 tensor cores and the
only error is the float32 accumulation's (typically ~1e-7 of sum |g_i g_j|). float32 uses tf32x3
(about float32 accuracy) unless torch allows TF32 for float32 matrix products
(``torch.set_float32_matmul_precision("high")``): then one TF32 product, a relative error of at
most 2^-10 per product, averaging out over the sum, and exact for 0/1 indicators. float64
uses float64 FMA ("ieee"). Row splits (``LaunchConfig.splits > 1``) add their sums with atomics,
in no fixed order.
"""

import functools
from typing import NamedTuple

import torch
import triton
import triton.language as tl

from .._common import statistics_dtype

PRECISIONS = ("tf32", "tf32x3", "ieee")


@triton.jit
def _wrap(index, n, PERIODIC: tl.constexpr):
    """(index, inside): periodic, index in [-n, 2n) wrapped into [0, n); inside says 0 <= index < n."""
    if PERIODIC:
        index = tl.where(index < 0, index + n, index)
        index = tl.where(index >= n, index - n, index)
    return index, (index >= 0) & (index < n)


@triton.jit
def _write(pointers, values, mask, ATOMIC: tl.constexpr):
    if ATOMIC:
        tl.atomic_add(pointers, values, mask=mask)
    else:
        tl.store(pointers, values, mask=mask)


# Integer arguments are not specialised on their values (fewer compiled variants) except the row
# length n2 and the image size, whose divisibility lets the compiler vectorise the row loads.
@triton.jit(
    do_not_specialize=[
        "n_pairs",
        "n_channels",
        "n0",
        "n1",
        "k0",
        "k1",
        "k2",
        "r0_first",
        "r1_first",
        "n_r2_blocks",
        "n_r_blocks",
        "rows_per_split",
    ]
)
def _correlation_forward_kernel(
    fields_ptr,
    pairs_ptr,
    sums_ptr,
    n_pairs,
    n_channels,
    image_size,
    n0,
    n1,
    n2,
    k0,
    k1,
    k2,
    r0_first,
    r1_first,
    n_r2_blocks,
    n_r_blocks,
    rows_per_split,
    PERIODIC: tl.constexpr,
    HALF: tl.constexpr,
    ATOMIC: tl.constexpr,
    PRECISION: tl.constexpr,
    BLOCK_R1: tl.constexpr,
    BLOCK_R2: tl.constexpr,
    BLOCK_S2: tl.constexpr,
):
    # Program: (b, p) x displacement r0 x (split of the rows s1, tile of r1 (N) and r2 (M)).
    batch_pair = tl.program_id(0)
    r0 = r0_first + tl.program_id(1)
    tile = tl.program_id(2) % n_r_blocks
    split = tl.program_id(2) // n_r_blocks
    b = batch_pair // n_pairs
    pair = batch_pair % n_pairs
    x_image = fields_ptr + (b.to(tl.int64) * n_channels + tl.load(pairs_ptr + 2 * pair)) * image_size
    y_image = fields_ptr + (b.to(tl.int64) * n_channels + tl.load(pairs_ptr + 2 * pair + 1)) * image_size

    r1_low = r1_first + (tile // n_r2_blocks) * BLOCK_R1
    r1 = r1_low + tl.arange(0, BLOCK_R1)
    r2 = -k2 + (tile % n_r2_blocks) * BLOCK_R2 + tl.arange(0, BLOCK_R2)
    r1_in_window = r1 <= k1
    r2_in_window = r2 <= k2
    # Rows s (s0, s1) of this program; non-periodic, only those with a partner row s + r inside.
    s0_first = 0
    s0_last = n0
    s1_first = split * rows_per_split
    s1_last = tl.minimum(s1_first + rows_per_split, n1)
    if not PERIODIC:
        s0_first = tl.maximum(0, -r0)
        s0_last = tl.minimum(n0, n0 - r0)
        s1_first = tl.maximum(s1_first, -tl.minimum(r1_low + BLOCK_R1 - 1, k1))
        s1_last = tl.minimum(s1_last, n1 - r1_low)

    positions = tl.arange(0, BLOCK_S2)
    acc = tl.zeros((BLOCK_R2, BLOCK_R1), dtype=sums_ptr.dtype.element_ty)
    for s0 in range(s0_first, s0_last):
        t0, _ = _wrap(s0 + r0, n0, PERIODIC)
        for s1 in range(s1_first, s1_last):
            t1, t1_inside = _wrap(s1 + r1, n1, PERIODIC)
            x_row = x_image + (tl.cast(s0, tl.int64) * n1 + s1) * n2
            y_rows = y_image + tl.cast(t0, tl.int64) * n1 * n2 + t1 * n2
            y_rows_valid = t1_inside & r1_in_window
            for s2 in range(0, n2, BLOCK_S2):
                y_cols = s2 + positions
                x_cols, x_inside = _wrap(y_cols[None, :] - r2[:, None], n2, PERIODIC)
                x_valid = x_inside & (y_cols < n2)[None, :] & r2_in_window[:, None]
                toeplitz = tl.load(x_row + x_cols, mask=x_valid, other=0.0).to(acc.dtype)
                rows = tl.load(
                    y_rows[None, :] + y_cols[:, None], mask=y_rows_valid[None, :] & (y_cols < n2)[:, None], other=0.0
                ).to(acc.dtype)
                acc = tl.dot(toeplitz, rows, acc, input_precision=PRECISION, out_dtype=acc.dtype)

    window1 = 2 * k1 + 1
    window2 = 2 * k2 + 1
    out = sums_ptr + batch_pair.to(tl.int64) * (2 * k0 + 1) * window1 * window2
    keep = r1_in_window[None, :] & r2_in_window[:, None]
    if HALF:
        mirror = keep & ((r0 > 0) | (r1 > 0))[None, :]
        keep = keep & ((r0 > 0) | (r1 >= 0))[None, :]
        mirrored = ((k0 - r0) * window1 + (k1 - r1)[None, :]) * window2 + (k2 - r2)[:, None]
        _write(out + mirrored, acc, mirror, ATOMIC)
    offsets = ((r0 + k0) * window1 + (r1 + k1)[None, :]) * window2 + (r2 + k2)[:, None]
    _write(out + offsets, acc, keep, ATOMIC)


@triton.jit(do_not_specialize=["n_terms", "n_channels", "n0", "n1", "k0", "k1", "k2", "n_u2_blocks"])
def _correlation_backward_kernel(
    kernels_ptr,
    fields_ptr,
    term_first_ptr,
    term_partner_ptr,
    grad_ptr,
    n_terms,
    n_channels,
    image_size,
    n0,
    n1,
    n2,
    k0,
    k1,
    k2,
    n_u2_blocks,
    PERIODIC: tl.constexpr,
    PRECISION: tl.constexpr,
    BLOCK_U1: tl.constexpr,
    BLOCK_U2: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    # Program: (b, c) x output plane u0 x tile of output rows u1 (N) and positions u2 (M).
    batch_channel = tl.program_id(0)
    b = batch_channel // n_channels
    c = batch_channel % n_channels
    u0 = tl.program_id(1)
    u1_first = (tl.program_id(2) // n_u2_blocks) * BLOCK_U1
    u1 = u1_first + tl.arange(0, BLOCK_U1)
    u2 = (tl.program_id(2) % n_u2_blocks) * BLOCK_U2 + tl.arange(0, BLOCK_U2)
    window1 = 2 * k1 + 1
    window2 = 2 * k2 + 1
    # Displacements r0 and rows t1 of g_e that reach this tile; non-periodic, only those inside.
    r0_first = -k0
    r0_last = k0
    t1_first = u1_first - k1
    t1_last = tl.minimum(u1_first + BLOCK_U1, n1) - 1 + k1
    if not PERIODIC:
        r0_first = tl.maximum(-k0, -u0)
        r0_last = tl.minimum(k0, n0 - 1 - u0)
        t1_first = tl.maximum(t1_first, 0)
        t1_last = tl.minimum(t1_last, n1 - 1)

    acc = tl.zeros((BLOCK_U2, BLOCK_U1), dtype=kernels_ptr.dtype.element_ty)
    for term in range(tl.load(term_first_ptr + c), tl.load(term_first_ptr + c + 1)):
        z_image = fields_ptr + (b.to(tl.int64) * n_channels + tl.load(term_partner_ptr + term)) * image_size
        kernel = kernels_ptr + (b.to(tl.int64) * n_terms + term) * (2 * k0 + 1) * window1 * window2
        for r0 in range(r0_first, r0_last + 1):
            t0, _ = _wrap(u0 + r0, n0, PERIODIC)
            kernel_plane = kernel + (r0 + k0) * window1 * window2
            for t1 in range(t1_first, t1_last + 1):
                row, _ = _wrap(t1, n1, PERIODIC)
                z_row = z_image + (tl.cast(t0, tl.int64) * n1 + row) * n2
                r1 = t1 - u1
                band = (r1 >= -k1) & (r1 <= k1) & (u1 < n1)
                for r2_first in range(-k2, k2 + 1, BLOCK_K):
                    r2 = r2_first + tl.arange(0, BLOCK_K)
                    z_cols, z_inside = _wrap(u2[:, None] + r2[None, :], n2, PERIODIC)
                    z_valid = z_inside & (r2 <= k2)[None, :] & (u2 < n2)[:, None]
                    hankel = tl.load(z_row + z_cols, mask=z_valid, other=0.0).to(acc.dtype)
                    h = tl.load(
                        kernel_plane + (r1 + k1)[None, :] * window2 + (r2 + k2)[:, None],
                        mask=band[None, :] & (r2 <= k2)[:, None],
                        other=0.0,
                    )
                    acc = tl.dot(hankel, h, acc, input_precision=PRECISION, out_dtype=acc.dtype)

    grad = grad_ptr + batch_channel.to(tl.int64) * image_size + u0.to(tl.int64) * n1 * n2
    inside = (u1 < n1)[None, :] & (u2 < n2)[:, None]
    tl.store(grad + u1[None, :] * n2 + u2[:, None], acc.to(grad_ptr.dtype.element_ty), mask=inside)


class LaunchConfig(NamedTuple):
    """How the kernels tile one problem; see :func:`_launch_config`."""

    half: bool  # forward: auto-correlations only, computed for (r0, r1) >= (0, 0)
    r_first: tuple  # forward: first r0 and r1 computed
    r_counts: tuple  # forward: number of r0, r1, r2 computed
    block_r1: int  # forward tile: displacements r1 (N) ...
    block_r2: int  # ... displacements r2 (M) ...
    block_s2: int  # ... and positions s2 (K)
    splits: int  # forward: programs sharing the rows s1 of one tile (atomic sums when > 1)
    block_u1: int  # backward tile: output rows u1 (N) ...
    block_u2: int  # ... output positions u2 (M) ...
    block_k: int  # ... and displacements r2 (K)
    num_warps: int


def _power_of_two(count, smallest, largest):
    return max(smallest, min(largest, triton.next_power_of_2(count)))


def _tile(count):
    """The tile in {16, 32, 64} that pads ``count`` displacements least (the larger on a tie)."""
    return min((64, 32, 16), key=lambda block: triton.cdiv(count, block) * block)


@functools.cache
def _multiprocessors(device):
    """Streaming multiprocessors of a CUDA device; None elsewhere (the interpreter)."""
    return torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else None


def _launch_config(spatial, window, pairs, batch, multiprocessors):
    """Tiles for fields (batch, C, *spatial), flat ``pairs`` and ``window`` (k0, k1, k2), shared by
    forward and backward.

    On a GPU (``multiprocessors`` given): tiles that pad the 2k + 1 displacements least, 4 warps, and
    forward row splits until there are two programs per multiprocessor. In the interpreter (None),
    where each program instance costs milliseconds: the fewest, largest tiles and no splits.
    """
    _, n1, n2 = spatial
    k0, k1, k2 = window
    half = all(pairs[a] == pairs[a + 1] for a in range(0, len(pairs), 2)) and (k0 > 0 or k1 > 0)
    r_first = (0 if half else -k0, 0 if half and k0 == 0 else -k1)
    r_counts = (k0 - r_first[0] + 1, k1 - r_first[1] + 1, 2 * k2 + 1)
    if multiprocessors is None:
        blocks = dict(
            block_r1=_power_of_two(r_counts[1], 16, 64),
            block_r2=_power_of_two(r_counts[2], 16, 64),
            block_s2=_power_of_two(n2, 16, 128),
            splits=1,
            block_u1=_power_of_two(n1, 16, 64),
            block_u2=_power_of_two(n2, 16, 128),
            block_k=_power_of_two(r_counts[2], 16, 64),
        )
    else:
        block_r1, block_r2 = _tile(r_counts[1]), _tile(r_counts[2])
        programs = batch * (len(pairs) // 2) * r_counts[0]
        programs *= triton.cdiv(r_counts[1], block_r1) * triton.cdiv(r_counts[2], block_r2)
        blocks = dict(
            block_r1=block_r1,
            block_r2=block_r2,
            block_s2=_power_of_two(n2, 16, 64),
            splits=max(1, min(triton.cdiv(2 * multiprocessors, programs), n1 // 16)),
            block_u1=16,
            block_u2=_power_of_two(n2, 16, 64),
            block_k=16,
        )
    return LaunchConfig(half=half, r_first=r_first, r_counts=r_counts, num_warps=4, **blocks)


def _check(fields, pairs, window, precision):
    if fields.ndim != 5:
        raise ValueError(f"fields must have shape (B, C, n0, n1, n2), got {tuple(fields.shape)}")
    if fields.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        raise TypeError(f"the triton kernels take float16, bfloat16, float32 or float64 fields, got {fields.dtype}")
    if len(pairs) % 2 or len(window) != 3:
        raise ValueError(f"pairs must be flat (i, j) pairs and window 3 half-widths, got {pairs}, {window}")
    if precision not in PRECISIONS or (fields.dtype == torch.float64) != (precision == "ieee"):
        raise ValueError(f"precision must be 'ieee' for float64 and 'tf32' or 'tf32x3' otherwise, got {precision!r}")
    n0, n1, n2 = fields.shape[2:]
    if n1 * n2 >= 2**31 or n0 >= 2**15:
        raise ValueError(f"spatial shape {tuple(fields.shape[2:])} is too large for the triton kernels")


@functools.lru_cache(maxsize=256)
def _index_tensor(values, device):
    return torch.tensor(values, dtype=torch.int32, device=device)


def _forward(fields, pairs, window, periodic, precision):
    """sums_p(r) of the module docstring: (B, C, n0, n1, n2) -> (B, P, *window), float32 or float64."""
    _check(fields, pairs, window, precision)
    fields = fields.contiguous()
    batch, n_channels, n0, n1, n2 = fields.shape
    k0, k1, k2 = window
    n_pairs = len(pairs) // 2
    config = _launch_config((n0, n1, n2), window, pairs, batch, _multiprocessors(fields.device))
    _, r1_count, r2_count = config.r_counts
    n_r2_blocks = triton.cdiv(r2_count, config.block_r2)
    n_r_blocks = triton.cdiv(r1_count, config.block_r1) * n_r2_blocks
    rows_per_split = triton.cdiv(n1, config.splits)
    splits = triton.cdiv(n1, rows_per_split)
    allocate = torch.zeros if splits > 1 else torch.empty
    sums = allocate(
        (batch, n_pairs, 2 * k0 + 1, 2 * k1 + 1, 2 * k2 + 1), dtype=statistics_dtype(fields.dtype), device=fields.device
    )
    grid = (batch * n_pairs, config.r_counts[0], n_r_blocks * splits)
    _correlation_forward_kernel[grid](
        fields,
        _index_tensor(tuple(pairs), fields.device),
        sums,
        n_pairs,
        n_channels,
        n0 * n1 * n2,
        n0,
        n1,
        n2,
        k0,
        k1,
        k2,
        *config.r_first,
        n_r2_blocks,
        n_r_blocks,
        rows_per_split,
        PERIODIC=periodic,
        HALF=config.half,
        ATOMIC=splits > 1,
        PRECISION=precision,
        BLOCK_R1=config.block_r1,
        BLOCK_R2=config.block_r2,
        BLOCK_S2=config.block_s2,
        num_warps=config.num_warps,
    )
    return sums


@functools.lru_cache(maxsize=256)
def _backward_terms(pairs, n_channels, device):
    """The terms (c, e) of the backward, sorted: the first term of each channel c (C + 1,), the
    partner e of each term (T,), and the (2, T, P) selection summing G_p(r) (0) and G_p(-r) (1)
    into H_ce."""
    contributions = {}
    for p in range(len(pairs) // 2):
        i, j = pairs[2 * p], pairs[2 * p + 1]
        contributions.setdefault((i, j), []).append((p, 0))
        contributions.setdefault((j, i), []).append((p, 1))
    terms = sorted(contributions)
    selection = torch.zeros((2, len(terms), len(pairs) // 2), dtype=torch.float64)
    for t, term in enumerate(terms):
        for p, mirrored in contributions[term]:
            selection[mirrored, t, p] += 1.0
    first = tuple(sum(c < channel for c, _ in terms) for channel in range(n_channels + 1))
    partner = tuple(e for _, e in terms)
    return _index_tensor(first, device), _index_tensor(partner, device), selection.to(device)


def _backward(grad_sums, fields, pairs, window, periodic, precision):
    """dL/dfields from G = dL/dsums (B, P, *window): (B, C, n0, n1, n2), the dtype of ``fields``."""
    _check(fields, pairs, window, precision)
    fields = fields.contiguous()
    batch, n_channels, n0, n1, n2 = fields.shape
    k0, k1, k2 = window
    term_first, term_partner, selection = _backward_terms(tuple(pairs), n_channels, fields.device)
    g = grad_sums.to(statistics_dtype(fields.dtype))
    selection = selection.to(g.dtype)
    kernels = torch.einsum("tp,bp...->bt...", selection[0], g)
    kernels += torch.einsum("tp,bp...->bt...", selection[1], g.flip((-3, -2, -1)))
    config = _launch_config((n0, n1, n2), window, pairs, batch, _multiprocessors(fields.device))
    n_u2_blocks = triton.cdiv(n2, config.block_u2)
    grad = torch.empty(fields.shape, dtype=fields.dtype, device=fields.device)
    grid = (batch * n_channels, n0, triton.cdiv(n1, config.block_u1) * n_u2_blocks)
    _correlation_backward_kernel[grid](
        kernels.contiguous(),
        fields,
        term_first,
        term_partner,
        grad,
        selection.shape[1],
        n_channels,
        n0 * n1 * n2,
        n0,
        n1,
        n2,
        k0,
        k1,
        k2,
        n_u2_blocks,
        PERIODIC=periodic,
        PRECISION=precision,
        BLOCK_U1=config.block_u1,
        BLOCK_U2=config.block_u2,
        BLOCK_K=config.block_k,
        num_warps=config.num_warps,
    )
    return grad


@torch.library.custom_op("spatialstats_triton::correlate", mutates_args=())
def correlate(
    fields: torch.Tensor, pairs: list[int], window: list[int], periodic: bool, precision: str
) -> torch.Tensor:
    """sums_p(r): fields (B, C, n0, n1, n2), pairs flat [i0, j0, i1, j1, ...], window [k0, k1, k2]."""
    return _forward(fields, pairs, window, periodic, precision)


@correlate.register_fake
def _correlate_fake(fields, pairs, window, periodic, precision):
    shape = (fields.shape[0], len(pairs) // 2, *(2 * k + 1 for k in window))
    return fields.new_empty(shape, dtype=statistics_dtype(fields.dtype))


@torch.library.custom_op("spatialstats_triton::correlate_backward", mutates_args=())
def correlate_backward(
    grad_sums: torch.Tensor, fields: torch.Tensor, pairs: list[int], window: list[int], periodic: bool, precision: str
) -> torch.Tensor:
    """dL/dfields from dL/dsums: (B, P, *window), (B, C, n0, n1, n2) -> (B, C, n0, n1, n2)."""
    return _backward(grad_sums, fields, pairs, window, periodic, precision)


@correlate_backward.register_fake
def _correlate_backward_fake(grad_sums, fields, pairs, window, periodic, precision):
    return fields.new_empty(fields.shape)


def _save_fields(ctx, inputs, output):
    fields, *options = inputs
    ctx.save_for_backward(fields)
    ctx.options = options


def _correlate_grad(ctx, grad_sums):
    (fields,) = ctx.saved_tensors
    return correlate_backward(grad_sums, fields, *ctx.options), None, None, None, None


correlate.register_autograd(_correlate_grad, setup_context=_save_fields)
