"""Scale-out with Dask (the ``dask`` extra, part of ``test``): GridSearchCV through
joblib's Dask backend on a LocalCluster of worker processes, and dask-ml's Incremental
over a Dask array. The results equal the same work done in this process, bitwise."""

import dask.array as da
import joblib
import numpy as np
import pytest
from dask import distributed
from dask_ml import wrappers
from sklearn.model_selection import GridSearchCV

from fastmlp import MLPImageClassifier, PixelScaler

pytestmark = pytest.mark.filterwarnings(
    "ignore::sklearn.exceptions.ConvergenceWarning",
    # The cluster's own housekeeping (ports, event loop shutdown) is not fastmlp's.
    "ignore::DeprecationWarning", "ignore::ResourceWarning",
    "ignore::pytest.PytestUnraisableExceptionWarning")

FIT = dict(hidden_layer_sizes=(16,), max_iter=3, random_state=0, n_threads=1)


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
    with cluster, distributed.Client(cluster) as c:
        yield c


def _images(rng, n=240):
    X = rng.integers(0, 256, size=(n, 8, 8), dtype=np.uint8)
    return X, np.arange(n) % 4


def _weights(m):
    return [a.tobytes() for a in m.coefs_ + m.intercepts_]


def test_grid_search_on_dask_workers_equals_the_local_search(rng, client):
    X, y = _images(rng)
    grid = {"alpha": [1e-4, 1e-2], "hidden_layer_sizes": [(8,), (16,)]}
    search = GridSearchCV(MLPImageClassifier(input_scaler=PixelScaler(), **FIT), grid, cv=3,
                          n_jobs=-1)
    with joblib.parallel_config(backend="dask"):
        remote = search.fit(X, y)
    remote_scores = remote.cv_results_["mean_test_score"].copy()
    workers = client.run(lambda: __import__("os").getpid())
    assert len(set(workers.values())) == 2  # two worker processes did the fits
    local = GridSearchCV(MLPImageClassifier(input_scaler=PixelScaler(), **FIT), grid, cv=3,
                         n_jobs=1).fit(X, y)
    np.testing.assert_array_equal(remote_scores, local.cv_results_["mean_test_score"])
    assert _weights(remote.best_estimator_) == _weights(local.best_estimator_)


def test_incremental_over_a_dask_array_equals_partial_fit_block_by_block(rng, client):
    X, y = _images(rng)
    X = X.reshape(len(X), -1)
    Xd, yd = da.from_array(X, chunks=(60, X.shape[1])), da.from_array(y, chunks=60)
    classes = np.unique(y)
    inc = wrappers.Incremental(MLPImageClassifier(input_scaler=PixelScaler(), **FIT),
                               shuffle_blocks=False)  # in order, as the loop below
    inc.fit(Xd, yd, classes=classes)
    local = MLPImageClassifier(input_scaler=PixelScaler(), **FIT)
    for start in range(0, len(y), 60):
        local.partial_fit(X[start:start + 60], y[start:start + 60], classes=classes)
    assert _weights(inc.estimator_) == _weights(local)
    predicted = inc.predict(Xd).compute()
    np.testing.assert_array_equal(predicted, local.predict(X))
