"""spatialstats.compat reproduces PyMKS 0.4.1's two_point_stats, PrimitiveTransformer and TwoPointCorrelation.

Checked three ways: PyMKS's own documented answers, numpy transcriptions of PyMKS's algorithms
(the hat basis; FFT, fftshift, centre slice, normalisation by the padded mask's auto-correlation;
the default correlation pairs), and, when PyMKS is installed, PyMKS itself on generated
microstructures. The dask paths are in test_compat_dask.py.
"""

import numpy as np
import pytest
import torch

from spatialstats import compat
from spatialstats.compat import FlattenTransformer, PrimitiveTransformer, TwoPointCorrelation, two_point_stats
from spatialstats.generators import gaussian_microstructure


def pymks_algorithm(arr1, arr2, periodic, cutoff, mask):
    """PyMKS 0.4.1's steps in numpy: returns (stats, normalisation) both cropped to the window."""
    largest = int((np.min(arr1.shape[1:]) - 1) / 2)
    cutoff = largest if cutoff is None else min(cutoff, largest)
    axes = tuple(range(1, arr1.ndim))
    pad = [(0, 0)] + [(cutoff, cutoff)] * (arr1.ndim - 1)
    weights = np.ones_like(arr1, dtype=float) if mask is None else np.broadcast_to(mask, arr1.shape).astype(float)
    padder = (lambda a: a) if periodic else (lambda a: np.pad(a, pad))

    def correlate(a, b):
        spectrum = np.conj(np.fft.fftn(a, axes=axes)) * np.fft.fftn(b, axes=axes)
        return np.fft.fftshift(np.fft.ifftn(spectrum, axes=axes), axes=axes).real

    sums = correlate(padder(arr1 * weights), padder(arr2 * weights))
    norm = correlate(padder(weights), padder(weights))
    centre = tuple(slice(n // 2 - cutoff, n // 2 + cutoff + 1) for n in sums.shape[1:])
    return sums[(slice(None),) + centre], norm[(slice(None),) + centre]


def test_pymks_documented_answers():
    data = np.arange(10).reshape(2, 5)
    np.testing.assert_allclose(two_point_stats(data, data), [[3, 4, 6, 4, 3], [48, 49, 51, 49, 48]], rtol=1e-12)
    array = np.array([[[1, 0, 0], [0, 1, 1], [1, 1, 0]]])
    mask = np.array([[[1, 1, 1], [1, 1, 1], [1, 0, 0]]])
    norm_mask = np.array([[[2, 4, 3], [4, 7, 4], [3, 4, 2]]])
    expected = np.array([[[1, 0, 1], [1, 4, 1], [1, 0, 1]]]) / norm_mask
    np.testing.assert_allclose(two_point_stats(array, array, mask=mask, periodic_boundary=False), expected, rtol=1e-12)


@pytest.mark.parametrize("periodic", [True, False])
@pytest.mark.parametrize("cutoff", [None, 0, 2, 100])
@pytest.mark.parametrize("shape", [(3, 12), (2, 9, 9), (2, 8, 11), (2, 6, 5, 7)])
@pytest.mark.parametrize("mask_kind", ["none", "bool", "weights"])
def test_matches_pymks_algorithm(shape, cutoff, periodic, mask_kind):
    rng = np.random.default_rng(sum(shape))
    arr1 = rng.random(shape) > 0.5
    arr2 = rng.random(shape)
    mask = {"none": None, "bool": rng.random(shape) > 0.2, "weights": rng.random(shape)}[mask_kind]
    expected_sums, norm = pymks_algorithm(arr1, arr2, periodic, cutoff, mask)
    result = two_point_stats(arr1, arr2, periodic_boundary=periodic, cutoff=cutoff, mask=mask)
    assert result.shape == expected_sums.shape and result.dtype == np.float64
    has_pairs = norm > 1e-9
    np.testing.assert_allclose(result[has_pairs], expected_sums[has_pairs] / norm[has_pairs], rtol=1e-10, atol=1e-12)
    assert np.all(result[~has_pairs] == 0)


def test_auto_correlation_when_both_arguments_are_one_array():
    x = np.random.default_rng(0).random((2, 10, 10))
    np.testing.assert_allclose(two_point_stats(x, x), two_point_stats(x, x.copy()), rtol=1e-12)


def test_torch_in_torch_out():
    x = torch.rand(2, 9, 9)
    result = two_point_stats(x, x, cutoff=3)
    assert isinstance(result, torch.Tensor) and result.shape == (2, 7, 7)
    np.testing.assert_allclose(
        result.double().numpy(), two_point_stats(x.double().numpy(), x.double().numpy(), cutoff=3), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("periodic", [True, False])
@pytest.mark.parametrize("cutoff", [None, 10])
def test_equals_pymks_on_microstructures(periodic, cutoff):
    pymks = pytest.importorskip("pymks", reason="PyMKS (optional) is not installed")
    labels = np.stack([gaussian_microstructure((48, 40), correlation_length=3, seed=s) for s in range(3)])
    mask = np.random.default_rng(1).random(labels.shape) > 0.1
    for m in (None, mask):
        expected = np.asarray(
            pymks.two_point_stats(labels == 1, labels == 0, periodic_boundary=periodic, cutoff=cutoff, mask=m)
        )
        result = two_point_stats(labels == 1, labels == 0, periodic_boundary=periodic, cutoff=cutoff, mask=m)
        np.testing.assert_allclose(result, expected, rtol=1e-10, atol=1e-12)


def pymks_discretize(x, n_state, min_, max_):
    """PyMKS 0.4.1's primitive basis in numpy: hat functions on n_state equally spaced states."""
    states = np.linspace(min_, max_, n_state)
    return np.maximum(1 - np.abs(np.clip(x, min_, max_)[..., None] - states) / (states[1] - states[0]), 0)


def pymks_correlations(data, correlations, periodic, cutoff):
    """PyMKS 0.4.1's correlations_multiple: two_point_stats of each pair, stacked on a last axis."""
    pairs = correlations or [(0, j) for j in range(data.shape[-1])]
    stacked = []
    for i, j in pairs:
        sums, norm = pymks_algorithm(data[..., i], data[..., j], periodic, cutoff, None)
        stacked.append(sums / norm)
    return np.stack(stacked, axis=-1)


def test_primitive_transformer_pymks_documented_answers():
    result = PrimitiveTransformer().fit(None, None).transform(np.array([[0, 0.5, 1]]))
    assert isinstance(result, np.ndarray) and result.dtype == np.float64
    np.testing.assert_allclose(result, [[[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]], rtol=0, atol=0)
    labels = np.array([[[1, 1, 0], [1, 0, 2], [0, 1, 0]]])
    np.testing.assert_array_equal(PrimitiveTransformer(n_state=3, max_=2).transform(labels), np.eye(3)[labels])


@pytest.mark.parametrize("n_state, min_, max_", [(2, 0.0, 1.0), (3, -0.5, 2.5), (5, 0.1, 0.9)])
def test_primitive_transformer_matches_pymks_rule(n_state, min_, max_):
    x = np.random.default_rng(n_state).random((3, 7, 6)) * 3 - 1
    np.testing.assert_array_equal(
        PrimitiveTransformer(n_state, min_, max_).transform(x), pymks_discretize(x, n_state, min_, max_)
    )
    as_torch = PrimitiveTransformer(n_state, min_, max_).transform(torch.from_numpy(x).float())
    assert isinstance(as_torch, torch.Tensor) and as_torch.dtype == torch.float32
    np.testing.assert_allclose(as_torch.numpy(), pymks_discretize(x, n_state, min_, max_), atol=1e-6)


@pytest.mark.parametrize("periodic", [True, False])
@pytest.mark.parametrize("cutoff", [None, 2, 100])
@pytest.mark.parametrize("correlations", [None, [(1, 1), (0, 2), (2, 1)]])
@pytest.mark.parametrize("spatial", [(13,), (9, 12), (6, 7, 5)])
def test_two_point_correlation_matches_pymks_rule(spatial, correlations, cutoff, periodic):
    labels = np.random.default_rng(len(spatial)).integers(0, 3, (2, *spatial))
    data = pymks_discretize(labels, 3, 0, 2)
    result = TwoPointCorrelation(correlations, periodic, cutoff).fit(data).transform(data)
    expected = pymks_correlations(data, correlations, periodic, cutoff)
    assert result.shape == expected.shape and result.dtype == np.float64
    np.testing.assert_allclose(result, expected, rtol=1e-10, atol=1e-12)


def test_pipeline_with_pca_and_sklearn_protocols():
    pytest.importorskip("sklearn")
    from sklearn.base import clone
    from sklearn.decomposition import PCA
    from sklearn.pipeline import Pipeline

    labels = np.stack([gaussian_microstructure((24, 24), correlation_length=1 + s % 3, seed=s) for s in range(8)])
    pipeline = Pipeline(
        [
            ("discretize", PrimitiveTransformer(n_state=2, max_=1)),
            ("correlations", TwoPointCorrelation(cutoff=5, correlations=[(0, 0), (0, 1)])),
            ("flatten", FlattenTransformer()),
            ("pca", PCA(n_components=3, svd_solver="full")),
        ]
    )
    scores = pipeline.fit_transform(labels)
    features = pymks_correlations(pymks_discretize(labels, 2, 0, 1), [(0, 0), (0, 1)], True, 5).reshape(8, -1)
    expected = PCA(n_components=3, svd_solver="full").fit_transform(features)
    np.testing.assert_allclose(np.abs(scores), np.abs(expected), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(pipeline.transform(labels), scores, rtol=1e-9, atol=1e-12)
    copy = clone(pipeline)
    assert copy.get_params()["correlations__cutoff"] == 5 and copy.named_steps["correlations"].backend == "auto"
    tags = copy.named_steps["discretize"].__sklearn_tags__()
    assert tags.transformer_tags is not None and not tags.requires_fit


def test_transformers_without_sklearn(monkeypatch):
    monkeypatch.setattr(compat, "_ESTIMATOR_BASES", ())
    with pytest.raises(ImportError, match="needs scikit-learn"):
        TwoPointCorrelation()


@pytest.mark.parametrize(
    "make, data, error, words",
    [
        (lambda: PrimitiveTransformer(n_state=1), np.zeros((2, 4, 4)), ValueError, "n_state must be an int >= 2"),
        (lambda: PrimitiveTransformer(min_=1, max_=1), np.zeros((2, 4, 4)), ValueError, "min_ < max_"),
        (lambda: PrimitiveTransformer(chunks=0), np.zeros((2, 4, 4)), ValueError, "chunks must be None"),
        (lambda: PrimitiveTransformer(), np.full((2, 4, 4), np.nan), ValueError, "NaN"),
        (lambda: TwoPointCorrelation(), np.zeros((2, 4)), ValueError, "(n_samples, *spatial, n_state)"),
        (lambda: TwoPointCorrelation([(0, 2)]), np.zeros((2, 4, 4, 2)), ValueError, "outside the available phases"),
        (lambda: TwoPointCorrelation(periodic_boundary="yes"), np.zeros((2, 4, 4, 2)), TypeError, "periodic_boundary"),
        (lambda: TwoPointCorrelation(cutoff=-1), np.zeros((2, 4, 4, 2)), ValueError, "cutoff must be >= 0"),
        (lambda: TwoPointCorrelation(), np.full((2, 4, 4, 2), np.inf), ValueError, "infinite"),
    ],
)
def test_transformer_bad_input(make, data, error, words):
    with pytest.raises(error) as info:
        make().transform(data)
    assert words in str(info.value)


@pytest.mark.parametrize("periodic", [True, False])
def test_transformers_equal_pymks(periodic):
    pymks = pytest.importorskip("pymks", reason="PyMKS (optional) is not installed")
    labels = np.stack([gaussian_microstructure((30, 26), volume_fractions=(0.3, 0.3), seed=s) for s in range(3)])
    expected_basis = np.asarray(pymks.PrimitiveTransformer(n_state=3, max_=2).transform(labels))
    basis = PrimitiveTransformer(n_state=3, max_=2).transform(labels)
    np.testing.assert_array_equal(basis, expected_basis)
    for correlations in (None, [(1, 1), (2, 0)]):
        for cutoff in (None, 6):
            expected = pymks.TwoPointCorrelation(correlations, periodic, cutoff).transform(basis)
            result = TwoPointCorrelation(correlations, periodic, cutoff).transform(basis)
            np.testing.assert_allclose(result, expected, rtol=1e-10, atol=1e-12)
