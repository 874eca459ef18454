"""Triton backend statistics and gradients against the float64 reference (``spatialstats._ref``).

Runs in the Triton interpreter on the CPU (tests/conftest.py) and unchanged on a CUDA GPU; shapes
are small because each interpreted program instance costs milliseconds. Tolerances: float32 and
fp16/bf16 (compared with the reference of the same rounded inputs, so only the float32 accumulation
differs) 1e-5; float64 1e-12; TF32 for float32 (opt-in) 2e-3, relative to values of order 1.
"""

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


def test_tf32_when_allowed(device):
    fields = torch.rand((2, 1, 9, 8), generator=torch.Generator().manual_seed(4)).to(device)
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    try:
        assert _triton._precision(torch.float32) == "tf32"
        assert_matches_reference(fields, AUTO[:1], None, (3, 3), True, 2e-3)
    finally:
        torch.set_float32_matmul_precision(previous)
    assert _triton._precision(torch.float32) == "tf32x3"


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
    "spatial, window, periodic, pairs, splits",
    [
        ((34, 20), (17, 17), False, CROSS, 1),  # several tiles of displacements and of outputs
        ((40, 9), (3, 4), True, AUTO[:1], 2),  # rows split between programs (atomic sums)
        ((2, 32, 6), (1, 9, 2), True, AUTO[:1], 2),  # 3D auto-correlation with row splits
    ],
)
def test_gpu_tiles(spatial, window, periodic, pairs, splits, device, monkeypatch):
    """The GPU branch of the launch heuristic (small tiles, row splits), here with 4 multiprocessors."""
    monkeypatch.setattr(correlation, "_multiprocessors", lambda _device: 4)
    padding = (1,) * (3 - len(spatial))
    config = correlation._launch_config(
        padding + spatial, (0,) * len(padding) + window, [c for p in pairs for c in p], 1, 4
    )
    assert (config.splits, config.block_u1, config.block_k) == (splits, 16, 16)
    generator = torch.Generator().manual_seed(15)
    fields = torch.rand((1, 2, *spatial), generator=generator).to(device)
    upstream = torch.randn((1, len(pairs), *window_shape(window)), generator=generator).to(device)
    stats, gradient = stats_and_gradient(_triton, fields, pairs, None, window, periodic, upstream)
    expected_stats, expected = stats_and_gradient(_fft, fields, pairs, None, window, periodic, upstream)
    torch.testing.assert_close(stats, expected_stats, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gradient, expected, atol=1e-5, rtol=1e-5)


def test_launch_config_pads_little():
    config = correlation._launch_config((1, 128, 128), (0, 16, 16), [0, 0], 256, 132)
    assert config.half and config.r_counts == (1, 17, 33)
    assert (config.block_r1, config.block_r2) == (32, 16)  # 17 -> 32, 33 -> 3 x 16
    assert config.splits == 1  # 256 x 3 programs already fill 132 multiprocessors twice
    assert correlation._launch_config((1, 128, 128), (0, 8, 8), [0, 1], 1, 132).splits == 8


def test_opcheck(device):
    generator = torch.Generator().manual_seed(16)
    fields = torch.rand((2, 2, 1, 6, 7), generator=generator).to(device).requires_grad_(True)
    for pairs, periodic in (([0, 0, 1, 1], True), ([1, 0, 0, 1], False)):
        torch.library.opcheck(correlation.correlate, (fields, pairs, [0, 2, 3], periodic, "tf32x3"))
    upstream = torch.rand((2, 2, 1, 5, 7), generator=generator).to(device)
    torch.library.opcheck(
        correlation.correlate_backward, (upstream, fields.detach(), [0, 0, 0, 1], [0, 2, 3], False, "tf32x3")
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
