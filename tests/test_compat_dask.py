"""spatialstats.compat on dask arrays: lazy results chunked like the input along the samples, the same
numbers as numpy, on the threaded scheduler and on a dask.distributed LocalCluster of two worker processes."""

import warnings

import numpy as np
import pytest

from model.data import gaussian_microstructure
from spatialstats.compat import FlattenTransformer, PrimitiveTransformer, TwoPointCorrelation, two_point_stats
from spatialstats.io import lazy_stack

da = pytest.importorskip("dask.array", reason="dask is an optional dependency")


def microstructures(n, shape=(20, 22), phases=2):
    fractions = (1 / phases,) * (phases - 1)
    return np.stack([gaussian_microstructure(shape, volume_fractions=fractions, seed=s) for s in range(n)])


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, worker_dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def test_two_point_stats_lazy_and_chunked_like_the_samples():
    labels = microstructures(7)
    x = da.from_array(labels == 1, chunks=(3, 10, 11))
    y = da.from_array(labels == 0, chunks=(2, 20, 22))
    result = two_point_stats(x, y, periodic_boundary=False, cutoff=4)
    assert isinstance(result, da.Array) and result.shape == (7, 9, 9) and result.chunks[0] == (3, 3, 1)
    expected = two_point_stats(labels == 1, labels == 0, periodic_boundary=False, cutoff=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # dask's read-only chunks reach torch without a warning
        computed = result.compute(scheduler="threads")
    np.testing.assert_allclose(computed, expected, rtol=1e-12, atol=1e-14)
    auto = two_point_stats(x, x)
    assert auto.shape == (7, 19, 19)
    np.testing.assert_allclose(auto.compute(), two_point_stats(labels == 1, labels == 1), rtol=1e-12)


@pytest.mark.parametrize("mask_shape", ["spatial", "per-sample", "one-sample"])
def test_two_point_stats_masks(mask_shape):
    labels = microstructures(5)
    rng = np.random.default_rng(2)
    mask = {
        "spatial": rng.random(labels.shape[1:]),
        "per-sample": rng.random(labels.shape) > 0.2,
        "one-sample": rng.random((1, *labels.shape[1:])),
    }[mask_shape]
    x = da.from_array(labels.astype(float), chunks=(2, 20, 22))
    result = two_point_stats(x, 1 - x, periodic_boundary=False, mask=da.from_array(mask), cutoff=3)
    expected = two_point_stats(labels.astype(float), 1 - labels, periodic_boundary=False, mask=mask, cutoff=3)
    assert result.chunks[0] == (2, 2, 1)
    np.testing.assert_allclose(result.compute(), expected, rtol=1e-12, atol=1e-14)


def test_mixed_dask_and_numpy_give_numpy_as_pymks():
    labels = microstructures(3)
    result = two_point_stats(da.from_array(labels == 1), labels == 0, cutoff=2)
    assert isinstance(result, np.ndarray)
    np.testing.assert_allclose(result, two_point_stats(labels == 1, labels == 0, cutoff=2), rtol=1e-12)


def test_transformers_on_dask_keep_sample_chunks():
    labels = microstructures(6, phases=3)
    x = da.from_array(labels, chunks=(4, 10, 22))
    basis = PrimitiveTransformer(n_state=3, max_=2, chunks=1).transform(x)
    assert isinstance(basis, da.Array) and basis.chunks == ((4, 2), (10, 10), (22,), (1, 1, 1))
    stats = TwoPointCorrelation(correlations=[(0, 0), (1, 2)], cutoff=5).transform(basis)
    assert stats.shape == (6, 11, 11, 2) and stats.chunks == ((4, 2), (11,), (11,), (2,))
    expected = TwoPointCorrelation(correlations=[(0, 0), (1, 2)], cutoff=5).transform(np.eye(3)[labels])
    np.testing.assert_allclose(stats.compute(), expected, rtol=1e-12, atol=1e-14)
    assert FlattenTransformer().transform(stats).shape == (6, 242)


def test_dask_errors():
    x = da.zeros((4, 6, 6), chunks=2)
    with pytest.raises(ValueError, match="arr2 has shape"):
        two_point_stats(x, da.zeros((4, 6, 5)))
    with pytest.raises(ValueError, match="mask must have shape"):
        two_point_stats(x, x, mask=np.ones((3, 6, 6)))
    with pytest.raises(ValueError, match=r"\(n_samples, \*spatial, n_state\)"):
        TwoPointCorrelation().transform(x[:, 0])
    nan = da.from_array(np.full((2, 4, 4), np.nan))
    with pytest.raises(ValueError, match="NaN"):
        two_point_stats(nan, nan).compute()


def test_local_cluster_pipeline_with_pca(client):
    from sklearn.decomposition import PCA
    from sklearn.pipeline import Pipeline

    labels = microstructures(12)
    x = da.from_array(labels, chunks=(3, 20, 22))
    pipeline = Pipeline(
        [
            ("discretize", PrimitiveTransformer(n_state=2, max_=1)),
            ("correlations", TwoPointCorrelation(cutoff=6)),
            ("flatten", FlattenTransformer()),
        ]
    )
    features = pipeline.fit_transform(x)
    assert isinstance(features, da.Array) and features.chunks[0] == (3, 3, 3, 3)
    computed = client.compute(features).result()
    expected = pipeline.fit_transform(labels)
    np.testing.assert_allclose(computed, expected, rtol=1e-12, atol=1e-14)
    workers = client.run(lambda: __import__("os").getpid())
    assert len(set(workers.values())) == 2
    pipeline.steps.append(("pca", PCA(n_components=2, svd_solver="full")))
    scores = pipeline.fit_transform(x)  # sklearn's PCA computes the dask features on the cluster
    np.testing.assert_allclose(
        np.abs(scores), np.abs(PCA(n_components=2, svd_solver="full").fit_transform(expected)), rtol=1e-8
    )


def test_lazy_stack_of_image_files_on_the_cluster(client, tmp_path):
    from PIL import Image

    labels = microstructures(5)
    for i, image in enumerate(labels):
        Image.fromarray((image * 255).astype(np.uint8)).save(tmp_path / f"scan{i}.png")
    x = lazy_stack([tmp_path / "*.png"])
    assert x.shape == (5, 20, 22) and x.dtype == np.uint8 and x.chunks[0] == (1,) * 5
    stats = TwoPointCorrelation(cutoff=4).transform(PrimitiveTransformer(n_state=2, max_=255).transform(x))
    expected = TwoPointCorrelation(cutoff=4).transform(np.eye(2)[labels])
    np.testing.assert_allclose(client.compute(stats).result(), expected, rtol=1e-12, atol=1e-14)
    Image.fromarray(np.zeros((20, 21), np.uint8)).save(tmp_path / "scan9.png")
    with pytest.raises(ValueError, match=r"scan9\.png: shape"):
        lazy_stack([tmp_path]).compute(scheduler="threads")
