"""spatialstats.generators: seeded microstructures with the asked-for phase fractions and correlation length."""

import numpy as np
import pytest

from spatialstats import two_point
from spatialstats.generators import gaussian_microstructure


@pytest.mark.parametrize("shape", [(200,), (48, 40), (16, 12, 20)])
@pytest.mark.parametrize("fractions", [(0.5,), (0.2, 0.3), (0.1, 0.2, 0.3)])
def test_phase_fractions_hold_to_one_pixel(shape, fractions):
    labels = gaussian_microstructure(shape, volume_fractions=fractions, correlation_length=2.0, seed=3)
    assert labels.shape == shape and labels.dtype == np.int64
    expected = [*fractions, 1 - sum(fractions)]
    counts = np.bincount(labels.ravel(), minlength=len(expected))
    assert len(counts) == len(expected)
    assert np.all(np.abs(counts - np.asarray(expected) * labels.size) <= 1)


def test_seeded_and_correlated_over_the_correlation_length():
    a = gaussian_microstructure((64, 64), correlation_length=3.0, seed=[1, 2])
    assert np.array_equal(a, gaussian_microstructure((64, 64), correlation_length=3.0, seed=[1, 2]))
    assert not np.array_equal(a, gaussian_microstructure((64, 64), correlation_length=3.0, seed=[1, 3]))
    s2 = two_point((a == 0).astype(np.float64), cutoff=20)  # periodic S2 of phase 0, centre (20, 20)
    covariance = s2 - 0.25  # volume fraction 0.5
    assert covariance[20, 20] == pytest.approx(0.25)
    assert covariance[20, 21] > 0.15 and covariance[21, 20] > 0.15  # neighbours within a correlation length agree
    assert np.abs(covariance[20, 40]) < 0.1 and np.abs(covariance[0, 20]) < 0.1  # 20 pixels away they hardly do
    rough = gaussian_microstructure((64, 64), correlation_length=0.5, seed=[1, 2]) == 0
    assert two_point(rough.astype(np.float64), cutoff=20)[20, 21] - 0.25 < covariance[20, 21]


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(volume_fractions=(0.6, 0.5)), ["volume_fractions", "less than 1"]),
        (dict(volume_fractions=(0.0,)), ["volume_fractions", "positive"]),
        (dict(volume_fractions=()), ["volume_fractions"]),
        (dict(correlation_length=0), ["correlation_length"]),
        (dict(correlation_length=float("nan")), ["correlation_length"]),
        (dict(shape=(4, 4, 4, 4)), ["shape"]),
        (dict(shape=(0, 4)), ["shape"]),
    ],
)
def test_bad_options_are_refused(kwargs, words):
    kwargs = {"shape": (8, 8)} | kwargs
    with pytest.raises(ValueError) as error:
        gaussian_microstructure(**kwargs)
    assert all(word in str(error.value) for word in words)
