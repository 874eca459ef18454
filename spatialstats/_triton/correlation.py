"""Windowed correlation sums as Triton kernels: padding, forward, backward, launch heuristic, custom ops.

Forward. For fields g of shape (B, C, n0, n1, n2) (the caller has applied the mask, g = m f, and
runs 1D and 2D inputs with unit leading axes), channel pairs p = (i, j) and the window |r_a| <= k_a,

    sums_p(r) = sum_s g_i(s) g_j(s + r)                        -> (B, P, 2 k0 + 1, 2 k1 + 1, 2 k2 + 1)

over every s when periodic (s + r wraps; k_a <= n_a // 2), or over the s with s and s + r inside
the grid (k_a <= n_a - 1). Output index k_a + r_a holds r_a. The caller divides by the pair counts
and maps to larger windows (``spatialstats._triton``).

Backward. With G_p(r) = dL/dsums_p(r) the gradient of channel c is a windowed correlation of the
pairs' other fields with the (2k + 1)^3 gradient maps:

    dL/dg_c(u) = sum_e sum_r H_ce(r) g_e(u + r),    H_ce(r) = sum_{p=(c,e)} G_p(r) + sum_{p=(e,c)} G_p(-r)

The first sum holds the forward's pairs (s, s + r) = (u, u + r), the second its pairs
(s, s + r) = (u - r, u), written with r -> -r. Double backward: the backward B(G, g) is bilinear,
so for an upstream V of dL/dg, d<V, B>/dG_p = sums_(V_i, g_j) + sums_(g_i, V_j) (two forward
correlations) and d<V, B>/dg = B(G, V) (since H_ec(r) = H_ce(-r)): every gradient order runs on
these two kernels.

Layout. The fields are copied once (``_pad_kernel``) into a buffer (B, C, n0 + 2 k0, rows, width)
with a halo of k0, k1 rows and PAD >= k2 columns (k2 rounded up to 8, so that tiles stay 16-byte
aligned) on each side, circular when periodic and zeros when not, and zeros beyond, in the MMA
input dtype. Every load of the two kernels is then an affine tile, unmasked but for image tails
that the blocks do not divide. The forward returns the buffer, and autograd keeps it (instead of the
fields) for the backward, which reads it again: one copy per step, not two.

Forward tiling: a banded GEMM per row shift. A row shift q = (r0, r1) pairs row t - q of g_i with
row t of g_j. For a column block a0 of NARROW columns and the BAND >= NARROW + k2 + PAD columns
of g_j starting at a0 - PAD (padded column a0),

    M_q[i, j] = sum_t g_i(t - q, a0 + i) g_j(t, a0 - PAD + j),     sums(q, r2) = sum_a0 sum_i M_q[i, i + PAD + r2]

one program per (b, p) and group of SHIFTS row shifts accumulates acc[(q, i), j] over every row t
and column block (the band geometry is the same for every block): one tl.dot per step of ROWS rows,
M = SHIFTS x NARROW (g_i's row-shifted tiles stacked), N = BAND, K = ROWS, then sums the
diagonals once (tl.gather). Auto-correlations (every pair (i, i)) are centrosymmetric: only the row
shifts q >= (0, 0) in lexicographic order are computed, each stored at r and -r.

Backward tiling: the same band. For an output block of ROW_BLOCK rows u1 and NARROW columns a0 + n,
for every term (c, e) and row shift q,

    acc[m, n] += sum_j g_e(u0 + r0, u1 + m + r1, a0 - PAD + j) T_q[j, n],    T_q[j, n] = H_ce(q, j - n - PAD)

with T_q the (BAND x NARROW) band of H gathered from the window-sized H (zero outside |r2| <= k2):
M = ROW_BLOCK, N = NARROW, K = BAND.

Both kernels load with plain (L1-cached) loads and no software pipelining (``num_stages=1``): the
row-shifted tiles of consecutive steps overlap, and asynchronous copies would fetch every overlap
again from L2 (``bench/static_kernels.py`` shows the figures).

Dtypes and accuracy: the MMA inputs are bf16 for bf16 fields (exact 0/1 and bf16 products), fp32
for fp16 fields (exact in TF32) and float32 fields, fp64 for float64 (FMA, "ieee"). float32 uses
3xTF32 (about float32 accuracy) unless torch allows TF32 for float32 matrix products (``_precision``
in ``spatialstats._triton``): then the padded copy is rounded to TF32 to nearest (ties away, as
cvt.rna), so that the products carry no truncation bias, and 0/1 indicators stay exact. The
backward's H is split into a high and a low part in the MMA input type when the fields are exact
in it (bf16, fp16): two MMAs, about 16 significant bits of H. Accumulation is float32 (float64),
in a fixed order: results are deterministic.
"""

import contextlib
import functools
import math
import os
from typing import NamedTuple

import torch
import triton
import triton.language as tl

from .._common import statistics_dtype

PRECISIONS = ("tf32", "tf32x3", "ieee")
# triton.jit picks the interpreter when the kernels are defined, so this is read once, here.
INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") == "1"
_MAX_GRID = 2**31 - 1  # every launch is a one-dimensional grid: axis 0 takes up to 2^31 - 1 programs


@triton.jit
def _mma(x, y, acc, PRECISION: tl.constexpr, UPCAST: tl.constexpr):
    """acc + x @ y on the tensor cores; UPCAST: through float32 (the interpreter multiplies bf16 bit
    patterns as integers)."""
    if UPCAST:
        x = x.to(tl.float32)
        y = y.to(tl.float32)
    return tl.dot(x, y, acc, input_precision=PRECISION, out_dtype=acc.dtype)


@triton.jit
def _to_mma_input(values, dtype: tl.constexpr, ROUND_TF32: tl.constexpr):
    """``values`` in the MMA input ``dtype``; ROUND_TF32: float32 rounded to the nearest TF32, ties away
    from zero (as cvt.rna): half an ulp added, 13 bits dropped."""
    values = values.to(dtype)
    if ROUND_TF32:
        values = ((values.to(tl.int32, bitcast=True) + 0x1000) & -0x2000).to(tl.float32, bitcast=True)
    return values


@triton.jit(do_not_specialize=["n_planes", "n_rows", "n0", "n1", "n2", "k0", "k1", "k2"])
def _pad_kernel(
    fields_ptr,
    padded_ptr,
    n_planes,
    n_rows,
    width,
    n0,
    n1,
    n2,
    k0,
    k1,
    k2,
    PERIODIC: tl.constexpr,
    ROUND_TF32: tl.constexpr,
    PAD: tl.constexpr,
    BLOCK_ROWS: tl.constexpr,
    BLOCK_COLS: tl.constexpr,
):
    # Program: (b, c), padded plane z0 and a block of padded rows z1; a loop over column chunks.
    pid = tl.program_id(0)
    row_blocks = tl.cdiv(n_rows, BLOCK_ROWS)
    z1 = (pid % row_blocks) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    z0 = (pid // row_blocks) % n_planes
    batch_channel = pid // (row_blocks * n_planes)
    # The plane as a tensor, so that masks combine tensors only (Triton 3.9's interpreter rejects a
    # mask made of a tensor and a scalar condition).
    s0 = z0 - k0 + tl.zeros((BLOCK_ROWS,), dtype=tl.int32)
    s1 = z1 - k1
    if PERIODIC:  # the halo wraps once (k <= n // 2); beyond the halo, zeros
        plane_inside = (s0 >= -k0) & (s0 < n0 + k0)
        rows_inside = (s1 >= -k1) & (s1 < n1 + k1)
        s0 = tl.where(s0 < 0, s0 + n0, tl.where(s0 >= n0, s0 - n0, s0))
        s1 = tl.where(s1 < 0, s1 + n1, tl.where(s1 >= n1, s1 - n1, s1))
    else:
        plane_inside = (s0 >= 0) & (s0 < n0)
        rows_inside = (s1 >= 0) & (s1 < n1)
    source = fields_ptr + batch_channel.to(tl.int64) * n0 * n1 * n2 + (s0 * n1 + s1).to(tl.int64)[:, None] * n2
    target = padded_ptr + (batch_channel.to(tl.int64) * n_planes + z0) * n_rows * width + z1[:, None] * width
    rows_valid = (rows_inside & plane_inside)[:, None]
    for first in range(0, width, BLOCK_COLS):
        z2 = first + tl.arange(0, BLOCK_COLS)
        s2 = z2 - PAD
        if PERIODIC:
            cols_inside = (s2 >= -k2) & (s2 < n2 + k2)
            s2 = tl.where(s2 < 0, s2 + n2, tl.where(s2 >= n2, s2 - n2, s2))
        else:
            cols_inside = (s2 >= 0) & (s2 < n2)
        values = tl.load(source + s2[None, :], mask=rows_valid & cols_inside[None, :], other=0.0)
        values = _to_mma_input(values, padded_ptr.dtype.element_ty, ROUND_TF32)
        tl.store(target + z2[None, :], values, mask=(z1 < n_rows)[:, None] & (z2 < width)[None, :])


# Integer arguments are not specialised on their values (fewer compiled variants), except the
# strides of the padded buffer, multiples of 16 elements, which lets the compiler prove 16-byte
# aligned tiles.
@triton.jit(do_not_specialize=["n_pairs", "n_groups", "n0", "n1", "n2", "k0", "k1", "k2", "n_shifts", "first_shift"])
def _correlation_forward_kernel(
    padded_ptr,
    pairs_ptr,
    sums_ptr,
    n_pairs,
    n_groups,
    n_channels,
    channel_stride,
    plane_stride,
    row_stride,
    n0,
    n1,
    n2,
    k0,
    k1,
    k2,
    n_shifts,
    first_shift,
    HALF: tl.constexpr,
    EVEN_ROWS: tl.constexpr,
    EVEN_COLS: tl.constexpr,
    PAD: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
    SHIFTS: tl.constexpr,
    NARROW: tl.constexpr,
    BAND: tl.constexpr,
    ROWS: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    # Program: (b, p) x group of SHIFTS row shifts q, numbered from first_shift in the list of
    # (r0, r1) in lexicographic order.
    pid = tl.program_id(0)
    group = pid % n_groups
    batch_pair = pid // n_groups
    b = batch_pair // n_pairs
    pair = batch_pair % n_pairs
    x_field = padded_ptr + (b.to(tl.int64) * n_channels + tl.load(pairs_ptr + 2 * pair)) * channel_stride
    y_field = padded_ptr + (b.to(tl.int64) * n_channels + tl.load(pairs_ptr + 2 * pair + 1)) * channel_stride

    width1 = 2 * k1 + 1
    m = tl.arange(0, SHIFTS * NARROW)  # stacked rows (q, i) of the first operand
    shift = group * SHIFTS + m // NARROW
    column = m % NARROW
    r0 = (first_shift + shift) // width1 - k0
    r1 = (first_shift + shift) % width1 - k1
    rows = tl.arange(0, ROWS)
    band = tl.arange(0, BAND)
    # g_i at padded (t0 - r0 + k0, t1 - r1 + k1, a0 + i + PAD); g_j at (t0 + k0, t1 + k1, a0 + j).
    x_tile = (k0 - r0) * plane_stride + (k1 - r1) * row_stride + PAD + column
    x_tile = x_tile[:, None] + rows[None, :] * row_stride
    y_tile = k0 * plane_stride + (k1 + rows)[:, None] * row_stride + band[None, :]
    x_rows_valid = (shift < n_shifts)[:, None]

    acc = tl.zeros((SHIFTS * NARROW, BAND), dtype=sums_ptr.dtype.element_ty)
    for t0 in range(0, n0):
        for a0 in range(0, n2, NARROW):
            x_valid = x_rows_valid
            if not EVEN_COLS:
                x_valid = x_valid & (a0 + column < n2)[:, None]
            for t1 in range(0, n1, ROWS):
                offset = t0 * plane_stride + t1 * row_stride + a0
                x = tl.load(x_field + offset + x_tile, mask=x_valid, other=0.0)
                if EVEN_ROWS:
                    y = tl.load(y_field + offset + y_tile)
                else:
                    y = tl.load(y_field + offset + y_tile, mask=(t1 + rows < n1)[:, None], other=0.0)
                acc = _mma(x, y, acc, PRECISION, UPCAST)

    # Diagonal sums: sums(q, r2) = sum_i acc[(q, i), i + PAD + r2], r2 + k2 = d in [0, 2 k2].
    d = tl.arange(0, BLOCK_D)
    diagonal = tl.minimum(column[:, None] + d[None, :] + (PAD - k2), BAND - 1)
    values = tl.sum(tl.reshape(tl.gather(acc, diagonal, axis=1), (SHIFTS, NARROW, BLOCK_D)), axis=1)
    q = group * SHIFTS + tl.arange(0, SHIFTS)
    q0 = (first_shift + q) // width1 - k0
    q1 = (first_shift + q) % width1 - k1
    width2 = 2 * k2 + 1
    keep = (q < n_shifts)[:, None] & (d < width2)[None, :]
    out = sums_ptr + batch_pair.to(tl.int64) * (2 * k0 + 1) * width1 * width2
    tl.store(out + ((q0 + k0) * width1 + q1 + k1)[:, None] * width2 + d[None, :], values, mask=keep)
    if HALF:  # S(-r) = S(r); the row shift (0, 0) holds both signs of r2 already
        mirror = keep & ((q0 > 0) | (q1 > 0))[:, None]
        mirrored = ((k0 - q0) * width1 + k1 - q1)[:, None] * width2 + (width2 - 1 - d)[None, :]
        tl.store(out + mirrored, values, mask=mirror)


@triton.jit(do_not_specialize=["n_terms", "n_row_blocks", "n_col_blocks", "n0", "n1", "n2", "k0", "k1", "k2"])
def _correlation_backward_kernel(
    padded_ptr,
    kernels_ptr,
    kernels_low_ptr,
    term_first_ptr,
    term_partner_ptr,
    grad_ptr,
    n_terms,
    n_channels,
    channel_stride,
    plane_stride,
    row_stride,
    n_row_blocks,
    n_col_blocks,
    n0,
    n1,
    n2,
    k0,
    k1,
    k2,
    SPLIT: tl.constexpr,
    PAD: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
    ROW_BLOCK: tl.constexpr,
    NARROW: tl.constexpr,
    BAND: tl.constexpr,
):
    # Program: (b, c) x output plane u0 x block of ROW_BLOCK rows x block of NARROW columns.
    pid = tl.program_id(0)
    a0 = (pid % n_col_blocks) * NARROW
    u1_first = ((pid // n_col_blocks) % n_row_blocks) * ROW_BLOCK
    u0 = (pid // (n_col_blocks * n_row_blocks)) % n0
    batch_channel = pid // (n_col_blocks * n_row_blocks * n0)
    b = batch_channel // n_channels
    c = batch_channel % n_channels

    m = tl.arange(0, ROW_BLOCK)
    band = tl.arange(0, BAND)
    n = tl.arange(0, NARROW)
    # g_e at padded (u0 + r0 + k0, u1 + m + r1 + k1, a0 + j); T_q[j, n] = H(q, j - n - PAD + k2).
    a_tile = (u0 + k0) * plane_stride + (u1_first + k1 + m)[:, None] * row_stride + (a0 + band)[None, :]
    d = band[:, None] - n[None, :] + (k2 - PAD)
    h_valid = (d >= 0) & (d <= 2 * k2)
    width1 = 2 * k1 + 1
    width2 = 2 * k2 + 1
    window = (2 * k0 + 1) * width1 * width2

    acc = tl.zeros((ROW_BLOCK, NARROW), dtype=tl.float64 if padded_ptr.dtype.element_ty == tl.float64 else tl.float32)
    for term in range(tl.load(term_first_ptr + c), tl.load(term_first_ptr + c + 1)):
        z_field = padded_ptr + (b.to(tl.int64) * n_channels + tl.load(term_partner_ptr + term)) * channel_stride
        h_term = (b.to(tl.int64) * n_terms + term) * window
        for r0 in range(-k0, k0 + 1):
            for r1 in range(-k1, k1 + 1):
                a = tl.load(z_field + a_tile + r0 * plane_stride + r1 * row_stride)
                h_row = h_term + ((r0 + k0) * width1 + r1 + k1) * width2
                h = tl.load(kernels_ptr + h_row + d, mask=h_valid, other=0.0)
                acc = _mma(a, h, acc, PRECISION, UPCAST)
                if SPLIT:
                    h_low = tl.load(kernels_low_ptr + h_row + d, mask=h_valid, other=0.0)
                    acc = _mma(a, h_low, acc, PRECISION, UPCAST)

    u1 = u1_first + m
    u2 = a0 + n
    grad = grad_ptr + (batch_channel.to(tl.int64) * n0 + u0) * n1 * n2
    inside = (u1 < n1)[:, None] & (u2 < n2)[None, :]
    tl.store(grad + u1[:, None] * n2 + u2[None, :], acc.to(grad_ptr.dtype.element_ty), mask=inside)


@triton.jit(do_not_specialize=["n_pairs", "n_terms", "window"])
def _gradient_maps_kernel(
    grad_sums_ptr,
    selection_ptr,
    high_ptr,
    low_ptr,
    n_pairs,
    n_terms,
    window,
    ROUND_TF32: tl.constexpr,
    SPLIT: tl.constexpr,
    BLOCK: tl.constexpr,
):
    # Program: (b, term t) x block of the window: H_t(r) = sum_p s0[t, p] G_p(r) + s1[t, p] G_p(-r),
    # split into a high and a low part in the MMA input dtype.
    pid = tl.program_id(0)
    blocks = tl.cdiv(window, BLOCK)
    r = (pid % blocks) * BLOCK + tl.arange(0, BLOCK)
    batch_term = pid // blocks
    b = batch_term // n_terms
    t = batch_term % n_terms
    inside = r < window
    maps = tl.zeros((BLOCK,), dtype=grad_sums_ptr.dtype.element_ty)
    for p in range(n_pairs):
        grad = grad_sums_ptr + (b.to(tl.int64) * n_pairs + p) * window
        direct = tl.load(selection_ptr + t * n_pairs + p).to(maps.dtype)
        mirrored = tl.load(selection_ptr + (n_terms + t) * n_pairs + p).to(maps.dtype)
        maps += direct * tl.load(grad + r, mask=inside, other=0.0)
        maps += mirrored * tl.load(grad + window - 1 - r, mask=inside, other=0.0)  # r -> -r: the flat index mirrors
    high = _to_mma_input(maps, high_ptr.dtype.element_ty, ROUND_TF32)
    out = batch_term.to(tl.int64) * window + r
    tl.store(high_ptr + out, high, mask=inside)
    if SPLIT:
        low = _to_mma_input(maps - high.to(maps.dtype), low_ptr.dtype.element_ty, ROUND_TF32)
        tl.store(low_ptr + out, low, mask=inside)


class LaunchConfig(NamedTuple):
    """How both kernels tile one problem; see :func:`_launch_config`."""

    pad: int  # PAD: columns of halo on the left, k2 rounded up to 8
    narrow: int  # output columns per block: forward M per row shift, backward N
    band: int  # band columns: forward N, backward K; >= narrow + k2 + pad
    rows: int  # forward K: image rows per step
    shifts: int  # forward: row shifts per program (stacked into M)
    row_block: int  # backward M: output rows per program
    half: bool  # forward: auto-correlations only, row shifts q >= (0, 0)
    first_shift: int  # forward: index of the first row shift computed, in lexicographic order
    n_shifts: int  # forward: row shifts computed
    padded: tuple  # (planes, rows, width) of the padded buffer
    num_warps: int
    num_stages: int


def _launch_config(spatial, window, pairs):
    """Tiles of both kernels for fields of spatial shape (n0, n1, n2), window (k0, k1, k2) and flat
    ``pairs``; the padded buffer's shape follows from them. Chosen from the offline sm_90a figures
    of ``bench/static_kernels.py`` (both kernels are bound by L1 / shared-memory traffic there):

    - the band holds narrow + k2 + PAD columns: the narrowest power of two above 16 + k2 + PAD
      (the band's used share, (2 k2 + 1) / band, is the MMA's), and the widest block of columns
      (16 to 64) that the same band holds (each loaded tile serves more outputs);
    - forward: row shifts stacked by s in (1, 2, 4, 8), the accumulator at most 8192 values (64
      registers a thread), minimising slots x (narrow + band / s) (the tiles loaded per row shift;
      idle slots count) x 2 when s x narrow < 64 (no wgmma below M = 64);
    - backward: 128 output rows (64 with a 64-column band; fewer for small images), so that the
      row-shifted tile stays at 4096 values;
    - one warpgroup (4 warps) and no software pipelining (see the module docstring).
    """
    n0, n1, n2 = spatial
    k0, k1, k2 = window
    pad = -(-k2 // 8) * 8
    band = max(16, triton.next_power_of_2(16 + k2 + pad))
    narrow = max(w for w in (16, 32, 64) if w + k2 + pad <= band and w * band <= 8192)
    half = all(pairs[a] == pairs[a + 1] for a in range(0, len(pairs), 2)) and (k0 > 0 or k1 > 0)
    first_shift = k0 * (2 * k1 + 1) + k1 if half else 0
    n_shifts = (2 * k0 + 1) * (2 * k1 + 1) - first_shift

    def stacking_cost(s):
        return triton.cdiv(n_shifts, s) * s * (narrow + band / s) * (2 if s * narrow < 64 else 1)

    shifts = min((s for s in (1, 2, 4, 8) if s == 1 or s * narrow * band <= 8192), key=stacking_cost)
    rows = min(32, max(16, triton.next_power_of_2(n1)))
    row_block = min(128, max(16, triton.next_power_of_2(n1)), 4096 // band)
    padded_rows = triton.cdiv(n1, max(rows, row_block)) * max(rows, row_block) + 2 * k1
    width = max(n2 + pad + k2, triton.cdiv(n2, narrow) * narrow - narrow + band)
    return LaunchConfig(
        pad=pad,
        narrow=narrow,
        band=band,
        rows=rows,
        shifts=shifts,
        row_block=row_block,
        half=half,
        first_shift=first_shift,
        n_shifts=n_shifts,
        padded=(n0 + 2 * k0, padded_rows, triton.cdiv(width, 16) * 16),
        num_warps=4,
        num_stages=1,
    )


def mma_dtype(dtype):
    """The dtype the kernels multiply ``dtype`` fields in: bf16 and fp64 as they are, fp16 and fp32
    as fp32 (fp16 is exact in TF32)."""
    return dtype if dtype in (torch.bfloat16, torch.float64) else torch.float32


def _dot_options(dtype, precision):
    """The kernels' PRECISION (tl.dot's input precision: the requested one for fp32 MMA inputs) and
    UPCAST (bf16 through float32 in the interpreter, which multiplies bf16 bit patterns as integers)."""
    return dict(
        PRECISION=precision if mma_dtype(dtype) == torch.float32 else "ieee",
        UPCAST=INTERPRETED and dtype == torch.bfloat16,
    )


def _geometry(padded, spatial, window):
    """The arguments both kernels take about the padded buffer (B, C, planes, rows, width) of fields
    with spatial shape (n0, n1, n2) and window (k0, k1, k2)."""
    planes, rows, width = padded.shape[2:]
    n0, n1, n2 = spatial
    k0, k1, k2 = window
    return dict(
        n_channels=padded.shape[1],
        channel_stride=planes * rows * width,
        plane_stride=rows * width,
        row_stride=width,
        n0=n0,
        n1=n1,
        n2=n2,
        k0=k0,
        k1=k1,
        k2=k2,
    )


def _check(fields, pairs, window, precision):
    if fields.ndim != 5:
        raise ValueError(f"fields must have shape (B, C, n0, n1, n2), got {tuple(fields.shape)}")
    if fields.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        raise TypeError(f"the triton kernels take float16, bfloat16, float32 or float64 fields, got {fields.dtype}")
    if len(pairs) % 2 or len(window) != 3:
        raise ValueError(f"pairs must be flat (i, j) pairs and window 3 half-widths, got {pairs}, {window}")
    if precision not in PRECISIONS or (fields.dtype == torch.float64) != (precision == "ieee"):
        raise ValueError(f"precision must be 'ieee' for float64 and 'tf32' or 'tf32x3' otherwise, got {precision!r}")
    if math.prod(_launch_config(tuple(fields.shape[2:]), window, pairs).padded) >= 2**31:
        raise ValueError(
            f"spatial shape {tuple(fields.shape[2:])} with window {tuple(window)} is too large for the triton "
            "kernels: a padded channel must hold fewer than 2^31 values"
        )


def _grid(programs):
    """A one-dimensional launch grid: axis 0 holds up to 2^31 - 1 programs (axes 1 and 2 only 65535)."""
    if programs > _MAX_GRID:
        raise ValueError(f"{programs} programs exceed the launch grid's {_MAX_GRID}; split the batch")
    return (programs,)


def _device_scope(device):
    """Launch on ``device`` (a tensor on cuda:1 runs on cuda:1, whatever the current device)."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def _pad(fields, window, pairs, periodic, precision):
    """The padded buffer of the module docstring: (B, C, *config.padded) in the MMA input dtype."""
    batch, channels, n0, n1, n2 = fields.shape
    config = _launch_config((n0, n1, n2), window, pairs)
    planes, rows, width = config.padded
    padded = torch.empty((batch, channels, planes, rows, width), dtype=mma_dtype(fields.dtype), device=fields.device)
    block_rows = 16
    with _device_scope(fields.device):
        _pad_kernel[_grid(batch * channels * planes * triton.cdiv(rows, block_rows))](
            fields_ptr=fields,
            padded_ptr=padded,
            n_planes=planes,
            n_rows=rows,
            width=width,
            n0=n0,
            n1=n1,
            n2=n2,
            k0=window[0],
            k1=window[1],
            k2=window[2],
            PERIODIC=periodic,
            ROUND_TF32=fields.dtype == torch.float32 and precision == "tf32",
            PAD=config.pad,
            BLOCK_ROWS=block_rows,
            BLOCK_COLS=min(128, triton.next_power_of_2(width)),
        )
    return padded


@functools.lru_cache(maxsize=256)
def _index_tensor(values, device):
    return torch.tensor(values, dtype=torch.int32, device=device)


def _forward(fields, pairs, window, periodic, precision):
    """(sums_p(r) of the module docstring, padded buffer): (B, C, n0, n1, n2) -> (B, P, *window) in
    float32 or float64, and the buffer the backward reads again."""
    _check(fields, pairs, window, precision)
    fields = fields.contiguous()
    batch, _, n0, n1, n2 = fields.shape
    k0, k1, k2 = window
    n_pairs = len(pairs) // 2
    config = _launch_config((n0, n1, n2), window, pairs)
    padded = _pad(fields, window, pairs, periodic, precision)
    sums = torch.empty(
        (batch, n_pairs, 2 * k0 + 1, 2 * k1 + 1, 2 * k2 + 1), dtype=statistics_dtype(fields.dtype), device=fields.device
    )
    n_groups = triton.cdiv(config.n_shifts, config.shifts)
    with _device_scope(fields.device):
        _correlation_forward_kernel[_grid(batch * n_pairs * n_groups)](
            padded_ptr=padded,
            pairs_ptr=_index_tensor(tuple(pairs), fields.device),
            sums_ptr=sums,
            n_pairs=n_pairs,
            n_groups=n_groups,
            **_geometry(padded, (n0, n1, n2), window),
            n_shifts=config.n_shifts,
            first_shift=config.first_shift,
            HALF=config.half,
            EVEN_ROWS=n1 % config.rows == 0,
            EVEN_COLS=n2 % config.narrow == 0,
            PAD=config.pad,
            **_dot_options(fields.dtype, precision),
            SHIFTS=config.shifts,
            NARROW=config.narrow,
            BAND=config.band,
            ROWS=config.rows,
            BLOCK_D=triton.next_power_of_2(2 * k2 + 1),
            num_warps=config.num_warps,
            num_stages=config.num_stages,
        )
    return sums, padded


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
    selection = torch.zeros((2, len(terms), len(pairs) // 2), dtype=torch.float32)
    for t, term in enumerate(terms):
        for p, mirrored in contributions[term]:
            selection[mirrored, t, p] += 1.0
    first = tuple(sum(c < channel for c, _ in terms) for channel in range(n_channels + 1))
    partner = tuple(e for _, e in terms)
    return _index_tensor(first, device), _index_tensor(partner, device), selection.to(device)


def _gradient_maps(grad_sums, fields_dtype, pairs, n_channels, precision):
    """(term_first, term_partner, n_terms, high, low or None): the backward's terms and H (B, T, window)
    in the MMA input dtype: bf16 + bf16 for bf16 fields and TF32 + TF32 for fp16 fields (about 16
    significant bits, both exact products with the fields), one part rounded to TF32 for float32 at
    "tf32", H itself otherwise (3xTF32, float64)."""
    term_first, term_partner, selection = _backward_terms(tuple(pairs), n_channels, grad_sums.device)
    grad_sums = grad_sums.to(statistics_dtype(fields_dtype)).contiguous()
    batch, n_pairs, window = grad_sums.shape[0], grad_sums.shape[1], grad_sums[0, 0].numel()
    n_terms = selection.shape[1]
    dtype = mma_dtype(fields_dtype)
    split = fields_dtype in (torch.bfloat16, torch.float16)
    high = torch.empty((batch, n_terms, window), dtype=dtype, device=grad_sums.device)
    low = torch.empty_like(high) if split else None
    block = min(1024, triton.next_power_of_2(window))
    _gradient_maps_kernel[_grid(batch * n_terms * triton.cdiv(window, block))](
        grad_sums_ptr=grad_sums,
        selection_ptr=selection,
        high_ptr=high,
        low_ptr=high if low is None else low,
        n_pairs=n_pairs,
        n_terms=n_terms,
        window=window,
        ROUND_TF32=dtype == torch.float32 and (fields_dtype == torch.float16 or precision == "tf32"),
        SPLIT=split,
        BLOCK=block,
    )
    return term_first, term_partner, n_terms, high, low


def _backward(grad_sums, fields, padded, pairs, window, periodic, precision):
    """dL/dfields from G = dL/dsums (B, P, *window) and the forward's padded buffer:
    (B, C, n0, n1, n2), the dtype of ``fields``."""
    _check(fields, pairs, window, precision)
    batch, n_channels, n0, n1, n2 = fields.shape
    config = _launch_config((n0, n1, n2), window, pairs)
    grad = torch.empty(fields.shape, dtype=fields.dtype, device=fields.device)
    n_row_blocks = triton.cdiv(n1, config.row_block)
    n_col_blocks = triton.cdiv(n2, config.narrow)
    with _device_scope(fields.device):
        term_first, term_partner, n_terms, high, low = _gradient_maps(
            grad_sums, fields.dtype, pairs, n_channels, precision
        )
        _correlation_backward_kernel[_grid(batch * n_channels * n0 * n_row_blocks * n_col_blocks)](
            padded_ptr=padded,
            kernels_ptr=high,
            kernels_low_ptr=high if low is None else low,
            term_first_ptr=term_first,
            term_partner_ptr=term_partner,
            grad_ptr=grad,
            n_terms=n_terms,
            n_row_blocks=n_row_blocks,
            n_col_blocks=n_col_blocks,
            **_geometry(padded, (n0, n1, n2), window),
            SPLIT=low is not None,
            PAD=config.pad,
            **_dot_options(fields.dtype, precision),
            ROW_BLOCK=config.row_block,
            NARROW=config.narrow,
            BAND=config.band,
            num_warps=config.num_warps,
            num_stages=config.num_stages,
        )
    return grad


def _padded_like(fields, window, pairs):
    config = _launch_config(tuple(fields.shape[2:]), window, pairs)
    return fields.new_empty((*fields.shape[:2], *config.padded), dtype=mma_dtype(fields.dtype))


@torch.library.custom_op("spatialstats_triton::pad", mutates_args=())
def pad(fields: torch.Tensor, pairs: list[int], window: list[int], periodic: bool, precision: str) -> torch.Tensor:
    """The padded buffer of ``fields`` (B, C, n0, n1, n2) that both kernels read (module docstring)."""
    _check(fields, pairs, window, precision)
    return _pad(fields.contiguous(), window, pairs, periodic, precision)


@pad.register_fake
def _pad_fake(fields, pairs, window, periodic, precision):
    return _padded_like(fields, window, pairs)


@torch.library.custom_op("spatialstats_triton::correlate", mutates_args=())
def correlate(
    fields: torch.Tensor, pairs: list[int], window: list[int], periodic: bool, precision: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(sums_p(r), padded buffer): fields (B, C, n0, n1, n2), pairs flat [i0, j0, i1, j1, ...], window
    [k0, k1, k2]. The padded buffer is kept for the backward (no gradient flows through it)."""
    return _forward(fields, pairs, window, periodic, precision)


@correlate.register_fake
def _correlate_fake(fields, pairs, window, periodic, precision):
    shape = (fields.shape[0], len(pairs) // 2, *(2 * k + 1 for k in window))
    return fields.new_empty(shape, dtype=statistics_dtype(fields.dtype)), _padded_like(fields, window, pairs)


@torch.library.custom_op("spatialstats_triton::correlate_backward", mutates_args=())
def correlate_backward(
    grad_sums: torch.Tensor,
    fields: torch.Tensor,
    padded: torch.Tensor,
    pairs: list[int],
    window: list[int],
    periodic: bool,
    precision: str,
) -> torch.Tensor:
    """dL/dfields from dL/dsums (B, P, *window), for fields (B, C, n0, n1, n2) whose padded buffer is
    ``padded`` (read instead of ``fields``; the gradient with respect to the fields is defined through
    ``fields``)."""
    return _backward(grad_sums, fields, padded, pairs, window, periodic, precision)


@correlate_backward.register_fake
def _correlate_backward_fake(grad_sums, fields, padded, pairs, window, periodic, precision):
    return fields.new_empty(fields.shape)


def _save_forward(ctx, inputs, output):
    fields, *options = inputs
    ctx.save_for_backward(fields, output[1])
    ctx.options = options


def _correlate_grad(ctx, grad_sums, _grad_padded):
    fields, padded = ctx.saved_tensors
    return correlate_backward(grad_sums, fields, padded, *ctx.options), None, None, None, None


def _save_backward_inputs(ctx, inputs, output):
    grad_sums, fields, _, *options = inputs
    ctx.save_for_backward(grad_sums, fields)
    ctx.options = options


def _correlate_backward_grad(ctx, upstream):
    """Gradients of <V, B(G, g)> for V = ``upstream``: sums_(V_i, g_j) + sums_(g_i, V_j) for G, and
    B(G, V) for g (module docstring); none for the padded buffer."""
    grad_sums, fields = ctx.saved_tensors
    pairs, window, periodic, precision = ctx.options
    upstream = upstream.to(fields.dtype)
    grad_grad_sums = grad_fields = None
    if ctx.needs_input_grad[0]:
        channels, n_pairs = fields.shape[1], len(pairs) // 2
        crossed = [c for p in range(n_pairs) for c in (channels + pairs[2 * p], pairs[2 * p + 1])]
        crossed += [c for p in range(n_pairs) for c in (pairs[2 * p], channels + pairs[2 * p + 1])]
        sums, _ = correlate(torch.cat([fields, upstream], 1), crossed, window, periodic, precision)
        grad_grad_sums = (sums[:, :n_pairs] + sums[:, n_pairs:]).to(grad_sums.dtype)
    if ctx.needs_input_grad[1]:
        padded = pad(upstream.detach(), pairs, window, periodic, precision)
        grad_fields = correlate_backward(grad_sums, upstream, padded, pairs, window, periodic, precision)
    return grad_grad_sums, grad_fields, None, None, None, None, None


correlate.register_autograd(_correlate_grad, setup_context=_save_forward)
correlate_backward.register_autograd(_correlate_backward_grad, setup_context=_save_backward_inputs)
