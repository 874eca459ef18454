"""Triton backend statistics and gradients against the float64 reference (``spatialstats._ref``).

Runs in the Triton interpreter on the CPU (tests/conftest.py) and unchanged on a CUDA GPU; shapes
are small because each interpreted program instance costs milliseconds. Tolerances: float32 and
fp16/bf16 (compared with the reference of the same rounded inputs, so only the float32 accumulation
differs) 1e-5; float64 1e-12; TF32 for float32 (opt-in) 2e-3, relative to values of order 1.
"""

import types

import numpy as np
import pytest
import torch

import spatialstats
from spatialstats import _fft, _ref
from spatialstats._common import window_shape

pytest.importorskip("triton")
from spatialstats import _triton
from spatialstats._triton import correlation

DTYPE_TOLERANCE = {torch.float16: 1e-5, torch.bfloat16: 1e-5, torch.float32: 1e-5, torch.float64: 1e-12}
AUTO, CROSS, MIXED = ((0, 0), (1, 1)), ((0, 1),), ((1, 0), (0, 0), (0, 1))

UNAVAILABLE = _triton.unavailable_reason("cuda" if torch.cuda.is_available() else "cpu")
pytestmark = pytest.mark.skipif(UNAVAILABLE is not None, reason=str(UNAVAILABLE))


def make_mask(kind, batch, spatial, device):
    """None, or a (Bm, *spatial) mask: all True, sparse, all False, per sample, [0, 1] weights."""
    generator = torch.Generator().manual_seed(7)
    if kind is None:
        return None
    if kind == "all":
        return torch.ones((1, *spatial), dtype=torch.bool, device=device)
    if kind == "none":
        return torch.zeros((1, *spatial), dtype=torch.bool, device=device)
    if kind == "sparse":
        return (torch.rand((1, *spatial), generator=generator) < 0.2).to(device)
    if kind == "per_sample":
        return (torch.rand((batch, *spatial), generator=generator) < 0.6).to(device)
    return torch.rand((1, *spatial), generator=generator, dtype=torch.float64).to(device)


def assert_matches_reference(fields, pairs, mask, window, periodic, tolerance):
    result = _triton.two_point(fields, pairs=pairs, mask=mask, half_widths=window, periodic=periodic)
    expected = _ref.two_point(fields.double(), pairs=pairs, mask=mask, half_widths=window, periodic=periodic)
    assert result.shape == (fields.shape[0], len(pairs), *window_shape(window))
    assert result.dtype == (torch.float64 if fields.dtype == torch.float64 else torch.float32)
    torch.testing.assert_close(result.double(), expected, atol=tolerance, rtol=tolerance)


CASES = [
    # spatial, window, periodic, pairs
    ((9, 11), (3, 2), True, AUTO),
    ((9, 11), (3, 2), False, CROSS),
    ((8, 6), (4, 3), True, MIXED),
    ((5, 6), (0, 0), False, AUTO),  # cutoff 0
    ((1, 7), (0, 3), True, CROSS),  # one row
    ((6, 4), (5, 5), True, CROSS),  # periodic window wider than the image: S is periodic in r
    ((6, 4), (7, 2), False, AUTO),  # non-periodic |r| >= n: no pairs, 0
    ((1, 1), (2, 2), False, AUTO),  # size 1
    ((1, 1), (1, 2), True, CROSS),
    ((7,), (3,), True, AUTO),  # 1D
    ((8,), (9,), False, CROSS),
    ((4, 5, 6), (1, 2, 3), True, AUTO),  # 3D
    ((3, 5, 4), (2, 4, 6), False, MIXED),
    ((3, 4, 5), (4, 1, 2), True, CROSS),
]


@pytest.mark.parametrize("spatial, window, periodic, pairs", CASES)
def test_matches_reference(spatial, window, periodic, pairs, device):
    fields = torch.rand((2, 2, *spatial), generator=torch.Generator().manual_seed(1)).to(device)
    assert_matches_reference(fields, pairs, None, window, periodic, 1e-5)


@pytest.mark.parametrize("mask_kind", ["all", "sparse", "none", "per_sample", "weights"])
@pytest.mark.parametrize(
    "spatial, window, periodic", [((7, 9), (3, 4), True), ((6, 5), (5, 2), False), ((3, 4, 5), (1, 2, 2), False)]
)
def test_masks(mask_kind, spatial, window, periodic, device):
    fields = torch.rand((2, 2, *spatial), generator=torch.Generator().manual_seed(2)).to(device)
    mask = make_mask(mask_kind, 2, spatial, device)
    assert_matches_reference(fields, MIXED, mask, window, periodic, 1e-5)
    counts = _triton.pair_counts(mask, spatial_shape=spatial, half_widths=window, periodic=periodic, device=device)
    torch.testing.assert_close(
        counts,
        _ref.pair_counts(mask, spatial_shape=spatial, half_widths=window, periodic=periodic, device=device),
        atol=1e-9,
        rtol=1e-9,
    )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("periodic", [True, False])
def test_dtypes(dtype, periodic, device):
    fields = torch.rand((2, 2, 7, 10), generator=torch.Generator().manual_seed(3)).to(device, dtype)
    assert_matches_reference(
        fields, MIXED, make_mask("sparse", 2, (7, 10), device), (3, 4), periodic, DTYPE_TOLERANCE[dtype]
    )


def round_tf32(values):
    """An independent transcription of round-to-nearest TF32, ties away from zero (cvt.rna), in numpy."""
    bits = values.detach().cpu().numpy().astype(np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x1000) & 0xFFFFE000).astype(np.uint32).view(np.float32)
    return torch.from_numpy(rounded).to(values.device)


def test_tf32_when_allowed(device):
    """With TF32 allowed, float32 fields are rounded to the nearest TF32 once (no truncation bias):
    the result is the reference of the rounded fields, not of the truncated ones."""
    fields = torch.rand((2, 1, 9, 8), generator=torch.Generator().manual_seed(4)).to(device)
    fields = fields + 2**-12  # low bits set, so that rounding and truncation differ
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    try:
        assert _triton._precision(torch.float32) == "tf32"
        result = _triton.two_point(fields, pairs=AUTO[:1], half_widths=(3, 3), periodic=True).double()
    finally:
        torch.set_float32_matmul_precision(previous)
    assert _triton._precision(torch.float32) == "tf32x3"
    window = dict(pairs=AUTO[:1], half_widths=(3, 3), periodic=True)
    rounded = _ref.two_point(round_tf32(fields).double(), **window)
    truncated = _ref.two_point(fields.view(torch.int32).bitwise_and(-0x2000).view(torch.float32).double(), **window)
    exact = _ref.two_point(fields.double(), **window)
    torch.testing.assert_close(result, rounded, atol=1e-6, rtol=1e-6)
    assert (truncated - result).abs().max() > 1e-4  # truncation would have been seen
    assert abs(((result - exact) / exact).mean()) < 2e-5  # and rounding leaves no bias


def test_precision_reads_the_fp32_precision_api(monkeypatch):
    """torch >= 2.9: reading allow_tf32 raises once fp32_precision was set; _precision reads the new API."""
    matmul = torch.backends.cuda.matmul
    if not hasattr(matmul, "fp32_precision"):
        pytest.skip("torch < 2.9 has no fp32_precision")
    try:
        matmul.fp32_precision = "tf32"
        assert _triton._precision(torch.float32) == "tf32"
        matmul.fp32_precision = "ieee"
        assert _triton._precision(torch.float32) == "tf32x3"
    finally:
        matmul.fp32_precision = "none"
    monkeypatch.setattr(torch.backends.cuda, "matmul", types.SimpleNamespace(allow_tf32=True))  # torch < 2.9
    assert _triton._precision(torch.float32) == "tf32"
    assert _triton._precision(torch.bfloat16) == "tf32" and _triton._precision(torch.float64) == "ieee"


def test_non_contiguous_input(device):
    base = torch.rand((2, 9, 2, 7), generator=torch.Generator().manual_seed(5)).to(device)
    fields = base.permute(0, 2, 3, 1)  # (B, C, 7, 9), not contiguous
    assert not fields.is_contiguous()
    assert_matches_reference(fields, MIXED, None, (2, 3), False, 1e-5)


@pytest.mark.parametrize("periodic", [True, False])
def test_structured_inputs(periodic, device):
    """All-zero fields give 0; all-one fields give 1 wherever N(r) > 0 (CONVENTIONS example 3)."""
    spatial, window = (5, 6), (4, 6)
    zeros = torch.zeros((1, 1, *spatial), device=device)
    assert torch.equal(
        _triton.two_point(zeros, pairs=AUTO[:1], half_widths=window, periodic=periodic),
        torch.zeros(1, 1, 9, 13, device=device),
    )
    ones = torch.ones((1, 1, *spatial), device=device)
    mask = make_mask("sparse", 1, spatial, device)
    counts = _triton.pair_counts(mask, spatial_shape=spatial, half_widths=window, periodic=periodic, device=device)
    stats = _triton.two_point(ones, pairs=AUTO[:1], mask=mask, half_widths=window, periodic=periodic)
    assert torch.equal(stats[0, 0], (counts[0] > 0).float())


def test_worked_examples(device):
    """CONVENTIONS.md examples 1, 2 and 4, exact values."""
    x = torch.zeros((1, 2, 1, 7), device=device)
    x[0, 0, 0, 0] = x[0, 1, 0, 2] = 1.0
    for periodic, value in ((True, 1 / 7), (False, 1 / 5)):
        expected = torch.zeros((1, 2, 1, 7), device=device)
        expected[0, 0, 0, 5] = expected[0, 1, 0, 1] = value
        torch.testing.assert_close(
            _triton.two_point(x, pairs=((0, 1), (1, 0)), half_widths=(0, 3), periodic=periodic), expected
        )
    grid = torch.zeros((1, 2, 5, 5), device=device)
    grid[0, 0, 0, 0] = grid[0, 1, 1, 2] = 1.0
    expected = torch.zeros((1, 1, 5, 5), device=device)
    expected[0, 0, 3, 4] = 1 / 25
    torch.testing.assert_close(_triton.two_point(grid, pairs=CROSS, half_widths=(2, 2), periodic=True), expected)
    indicator = (torch.rand((1, 1, 6, 8), generator=torch.Generator().manual_seed(6)) < 0.4).float().to(device)
    stats = _triton.two_point(indicator, pairs=AUTO[:1], half_widths=(3, 4), periodic=True)[
        0, 0, :6, :8
    ]  # all 48 distinct r
    fraction = indicator.mean()
    torch.testing.assert_close(stats[3, 4], fraction)
    torch.testing.assert_close(stats.mean(), fraction**2)


def test_public_api(device):
    x = torch.rand((2, 3, 9, 8), generator=torch.Generator().manual_seed(8)).to(device)
    mask = make_mask("sparse", 6, (9, 8), device)[0]
    stats, counts = spatialstats.two_point(x, cutoff=3, periodic=False, mask=mask, backend="triton", return_counts=True)
    ref_stats, ref_counts = spatialstats.two_point(
        x, cutoff=3, periodic=False, mask=mask, backend="reference", return_counts=True
    )
    torch.testing.assert_close(stats, ref_stats, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(counts, ref_counts)
    labels = torch.randint(0, 3, (2, 7, 6), generator=torch.Generator().manual_seed(9)).to(device)
    result = spatialstats.two_point_all(labels, pairs="all", cutoff=2, backend="triton")
    expected = spatialstats.two_point_all(labels, pairs="all", cutoff=2, backend="reference")
    assert result.pairs == expected.pairs
    torch.testing.assert_close(result.stats, expected.stats, atol=1e-5, rtol=1e-5)


def test_availability(device):
    assert spatialstats.available_backends(device)["triton"] is None
    assert "CUDA" in _triton.unavailable_reason("meta")


def test_rejects_integer_fields(device):
    with pytest.raises(TypeError, match="float16, bfloat16, float32 or float64"):
        _triton.two_point(
            torch.ones((1, 1, 4, 4), dtype=torch.int32, device=device),
            pairs=AUTO[:1],
            half_widths=(1, 1),
            periodic=True,
        )


# ----------------------------------------------------------------------------------------------
# Gradients
# ----------------------------------------------------------------------------------------------

GRADIENT_CASES = [
    # spatial, window, periodic, pairs, mask kind
    ((9, 11), (3, 2), True, AUTO, None),
    ((7, 8), (6, 3), False, MIXED, "sparse"),
    ((6, 4), (5, 5), True, CROSS, "per_sample"),  # wider than the image
    ((8,), (3,), False, AUTO, None),
    ((3, 5, 4), (1, 2, 2), True, MIXED, None),
    ((3, 4, 5), (2, 3, 4), False, AUTO, "weights"),
]


def stats_and_gradient(module, fields, pairs, mask, window, periodic, upstream):
    fields = fields.detach().requires_grad_(True)
    stats = module.two_point(fields, pairs=pairs, mask=mask, half_widths=window, periodic=periodic)
    (gradient,) = torch.autograd.grad((stats * upstream).sum(), fields)
    return stats, gradient


@pytest.mark.parametrize("spatial, window, periodic, pairs, mask_kind", GRADIENT_CASES)
def test_gradient_matches_fft(spatial, window, periodic, pairs, mask_kind, device):
    generator = torch.Generator().manual_seed(10)
    fields = torch.rand((2, 2, *spatial), generator=generator).to(device)
    upstream = torch.randn((2, len(pairs), *window_shape(window)), generator=generator).to(device)
    mask = make_mask(mask_kind, 2, spatial, device)
    _, gradient = stats_and_gradient(_triton, fields, pairs, mask, window, periodic, upstream)
    _, expected = stats_and_gradient(_fft, fields, pairs, mask, window, periodic, upstream)
    torch.testing.assert_close(gradient, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "spatial, window, periodic, pairs", [((7, 6), (2, 3), True, MIXED), ((2, 3, 4), (1, 2, 3), False, MIXED)]
)
def test_gradient_central_differences_float32(spatial, window, periodic, pairs, device):
    """S is bilinear in the fields, so a central difference along any direction v is exact up to
    round-off: (S(f + h v) - S(f - h v)) / 2h = dS/df . v. Tolerance 1e-4 relative (float32)."""
    generator = torch.Generator().manual_seed(11)
    fields = torch.rand((2, 2, *spatial), generator=generator).to(device)
    direction = torch.randn(fields.shape, generator=generator).to(device)
    upstream = torch.randn((2, len(pairs), *window_shape(window)), generator=generator).to(device)
    _, gradient = stats_and_gradient(_triton, fields, pairs, None, window, periodic, upstream)

    def objective(f):
        return (_triton.two_point(f, pairs=pairs, half_widths=window, periodic=periodic) * upstream).sum()

    step = 0.25
    difference = (objective(fields + step * direction) - objective(fields - step * direction)) / (2 * step)
    torch.testing.assert_close(difference, (gradient * direction).sum(), atol=1e-4, rtol=1e-4)


def test_gradcheck_float64(device):
    fields = torch.rand((1, 2, 3, 4), dtype=torch.float64, generator=torch.Generator().manual_seed(12)).to(device)
    mask = make_mask("per_sample", 1, (3, 4), device)
    for periodic in (True, False):
        assert torch.autograd.gradcheck(
            lambda f, periodic=periodic: _triton.two_point(
                f, pairs=MIXED, mask=mask, half_widths=(1, 2), periodic=periodic
            ),
            (fields.requires_grad_(True),),
            fast_mode=True,
        )


def test_gradgradcheck_float64(device):
    """Every gradient order: the backward's own backward (module docstring of correlation.py)."""
    generator = torch.Generator().manual_seed(19)
    fields = torch.rand((1, 2, 3, 4), dtype=torch.float64, generator=generator).to(device)
    mask = make_mask("per_sample", 1, (3, 4), device)
    for periodic, pairs in ((True, MIXED), (False, CROSS)):
        assert torch.autograd.gradgradcheck(
            lambda f, periodic=periodic, pairs=pairs: _triton.two_point(
                f, pairs=pairs, mask=mask, half_widths=(1, 2), periodic=periodic
            ),
            (fields.clone().requires_grad_(True),),
            fast_mode=True,
        )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_gradient_half_precision(dtype, device):
    fields = torch.rand((2, 2, 6, 7), generator=torch.Generator().manual_seed(13)).to(device, dtype)
    upstream = torch.randn((2, 3, 5, 7), generator=torch.Generator().manual_seed(14)).to(device)
    stats, gradient = stats_and_gradient(_triton, fields, MIXED, None, (2, 3), False, upstream)
    _, expected = stats_and_gradient(_fft, fields.float(), MIXED, None, (2, 3), False, upstream)
    assert stats.dtype == torch.float32 and gradient.dtype == dtype
    torch.testing.assert_close(gradient.float(), expected, atol=1e-2, rtol=1e-2)  # the gradient's own rounding


# ----------------------------------------------------------------------------------------------
# Launch configurations and op registration
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spatial, window, periodic, pairs, groups",
    [
        ((20, 40), (9, 5), False, AUTO[:1], 3),  # 3 groups of 4 row shifts, 3 column blocks, row and column tails
        ((3, 5, 34), (2, 1, 16), True, CROSS, 4),  # 3D, 15 row shifts in groups of 4, columns 32 wide, band 64
        ((2, 17, 16), (1, 0, 3), True, AUTO[:1], 1),  # half window across planes; even columns
    ],
)
def test_tiles(spatial, window, periodic, pairs, groups, device):
    """Launches with several groups of row shifts, column blocks and tails, against the fft backend."""
    padding = (1,) * (3 - len(spatial))
    flat = [c for p in pairs for c in p]
    config = correlation._launch_config(padding + spatial, (0,) * len(padding) + window, flat)
    assert -(-config.n_shifts // config.shifts) == groups
    generator = torch.Generator().manual_seed(15)
    fields = torch.rand((1, 2, *spatial), generator=generator).to(device)
    upstream = torch.randn((1, len(pairs), *window_shape(window)), generator=generator).to(device)
    stats, gradient = stats_and_gradient(_triton, fields, pairs, None, window, periodic, upstream)
    expected_stats, expected = stats_and_gradient(_fft, fields, pairs, None, window, periodic, upstream)
    torch.testing.assert_close(stats, expected_stats, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gradient, expected, atol=1e-5, rtol=1e-5)


def test_launch_config_pads_little():
    """The goal shape (128^2, auto-correlation): bands of 32 (cutoff 8) and 64 (cutoff 16) columns,
    row shifts stacked by 4 (M = 64, one wgmma) or 8 when that leaves fewer tiles to load, the padded
    rows 16-byte aligned."""
    config = correlation._launch_config((1, 128, 128), (0, 8, 8), [0, 0])
    assert config.half and (config.first_shift, config.n_shifts) == (8, 9)
    assert (config.pad, config.narrow, config.band, config.shifts, config.rows) == (8, 16, 32, 4, 32)
    assert config.row_block == 128 and config.padded == (1, 144, 144)
    assert correlation._launch_config((1, 128, 128), (0, 4, 4), [0, 0]).shifts == 8  # 5 row shifts
    config = correlation._launch_config((1, 128, 128), (0, 16, 16), [0, 1])
    assert not config.half and (config.first_shift, config.n_shifts) == (0, 33)
    assert (config.pad, config.narrow, config.band) == (16, 32, 64)
    assert (config.shifts, config.row_block) == (4, 64) and config.padded[2] % 16 == 0


class _Recorder:
    """Stands in for a kernel: records the grids it is launched with."""

    def __init__(self, grids):
        self.grids = grids

    def __getitem__(self, grid):
        return lambda **arguments: self.grids.append(grid)


@pytest.mark.parametrize("shape", [(1, 1, 1, 16384, 16384), (2, 1, 1, 1, 5_000_000), (8, 3, 64, 64, 64)])
def test_grids_use_axis_0_only(shape, monkeypatch):
    """Axes 1 and 2 of a CUDA grid take at most 65535 programs: every launch is one-dimensional, so an
    16384^2 image or a 5M-long signal fits (the launch geometry only, on meta tensors)."""
    grids = []
    for kernel in (
        "_pad_kernel",
        "_correlation_forward_kernel",
        "_correlation_backward_kernel",
        "_gradient_maps_kernel",
    ):
        monkeypatch.setattr(correlation, kernel, _Recorder(grids))
    fields = torch.empty(shape, device="meta")
    window = [0, 0, 2] if shape[3] == 1 else [0 if shape[2] == 1 else 2, 2, 2]
    sums, padded = correlation._forward(fields, [0, 0], window, True, "tf32")
    correlation._backward(torch.empty(sums.shape, device="meta"), fields, padded, [0, 0], window, True, "tf32")
    assert len(grids) == 4 and all(len(grid) == 1 and 0 < grid[0] < 2**31 for grid in grids)
    assert max(grid[0] for grid in grids) > 65535 or shape[0] == 8
    with pytest.raises(ValueError, match="exceed the launch grid"):
        correlation._grid(2**31)
    with pytest.raises(ValueError, match="too large for the triton kernels"):
        correlation._forward(torch.empty((1, 1, 1, 46341, 46341), device="meta"), [0, 0], [0, 1, 1], True, "tf32")


def test_launches_on_the_fields_device(device, monkeypatch):
    """Every launch runs inside torch.cuda.device(fields.device) (a tensor on cuda:1 runs on cuda:1)."""
    scope = correlation._device_scope(torch.device("cuda", 1))
    assert isinstance(scope, torch.cuda.device) and scope.idx == 1
    devices = []
    original = correlation._device_scope
    monkeypatch.setattr(correlation, "_device_scope", lambda d: devices.append(d) or original(d))
    fields = torch.rand((1, 1, 5, 6), generator=torch.Generator().manual_seed(20)).to(device).requires_grad_(True)
    _triton.two_point(fields, pairs=AUTO[:1], half_widths=(1, 1), periodic=True).sum().backward()
    assert len(devices) == 3 and all(d == fields.device for d in devices)  # pad, forward, backward


def test_opcheck(device):
    generator = torch.Generator().manual_seed(16)
    fields = torch.rand((1, 2, 1, 6, 7), generator=generator).to(device).requires_grad_(True)
    torch.library.opcheck(correlation.correlate, (fields, [0, 0, 1, 1], [0, 2, 3], True, "tf32x3"))
    torch.library.opcheck(correlation.pad, (fields.detach(), [0, 1], [0, 2, 3], False, "tf32"))
    upstream = torch.rand((1, 2, 1, 5, 7), generator=generator).to(device).requires_grad_(True)
    _, padded = correlation.correlate(fields.detach(), [0, 0, 0, 1], [0, 2, 3], False, "tf32x3")
    torch.library.opcheck(
        correlation.correlate_backward, (upstream, fields, padded, [0, 0, 0, 1], [0, 2, 3], False, "tf32x3")
    )


@pytest.mark.skipif(
    not torch.cuda.is_available() or torch.cuda.get_device_properties(0).total_memory < 32 * 2**30,
    reason="needs a CUDA GPU with 32 GiB",
)
def test_offsets_beyond_int32():
    """A batch of more than 2^31 elements: the last image is reached through int64 offsets."""
    batch, n = 2**31 // (256 * 256) + 2, 256
    last = torch.rand((1, 1, n, n), generator=torch.Generator().manual_seed(17)).to("cuda", torch.bfloat16)
    fields = torch.zeros((batch, 1, n, n), dtype=torch.bfloat16, device="cuda")
    fields[-1:] = last
    fields.requires_grad_(True)
    stats = _triton.two_point(fields, pairs=AUTO[:1], half_widths=(1, 2), periodic=True)
    upstream = torch.zeros_like(stats)
    upstream[-1] = torch.randn(stats.shape[1:], generator=torch.Generator().manual_seed(18)).to("cuda")
    (gradient,) = torch.autograd.grad((stats * upstream).sum(), fields)
    expected_stats, expected = stats_and_gradient(_fft, last.float(), AUTO[:1], None, (1, 2), True, upstream[-1:])
    assert not stats[:-1].any() and not gradient[:-1].any()
    torch.testing.assert_close(stats[-1:], expected_stats, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gradient[-1:].float(), expected, atol=1e-2, rtol=1e-2)
