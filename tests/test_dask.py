"""fastem on Dask arrays and DataFrames: equal to the in-memory fit."""

import importlib
import os
import signal
import sys

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

from conftest import (COVARIANCE_TYPES, DTYPES, assert_rel, em_tol,  # noqa: E402
                      make_blobs)

from fastem import GaussianMixture  # noqa: E402
from fastem import _dask  # noqa: E402
from fastem._data import ArrayData  # noqa: E402

no_convergence = pytest.mark.filterwarnings(
    "ignore::sklearn.exceptions.ConvergenceWarning")

CENTERS = np.array([[0.0, 0.0, 0.0], [5.0, 1.0, -2.0], [-3.0, 6.0, 4.0]])
N = 20_000
CHUNK = 3_001  # odd: block boundaries never fall on the kernels' task boundaries


def _rtol(X):
    # Dask blocks (CHUNK is odd) cut the kernels' row blocks elsewhere: the
    # same numbers summed in another grouping (float32 data: each block of rows
    # is summed in float32 before it is added to the float64 statistics), so
    # the fits differ by rounding of X's dtype, amplified by the conditioning
    # (em_tol).  Measured worst over the 4 covariance types x 2 inits, native
    # AVX-512 and AVX2 (NUMBA_CPU_NAME=haswell) code: 20 eps in float64 (tied
    # covariances, where cond(cov(X)) = 22 cancels) and 1.02 eps in float32.
    # With factor 16 the bound is 16 * sqrt(3) * 22 = 615 eps: 30x the float64
    # worst (a real error in the Dask path is orders of magnitude larger).  The
    # old float32 bound, 1e-7 (0.84 eps), held on one CPU only.
    return em_tol(X.dtype, X, 16)


@pytest.fixture(scope="module")
def data():
    X, _ = make_blobs(N, CENTERS, 1.0, np.random.default_rng(7))
    return X


def initial(X, ct, K=3):
    """Explicit initial parameters (from a few rows) for covariance type ct."""
    d = X.shape[1]
    means = X[[0, 1, 2]].astype(np.float64) + 0.5
    weights = np.full(K, 1.0 / K)
    prec = {"full": np.repeat(np.eye(d)[None], K, axis=0), "tied": np.eye(d),
            "diag": np.ones((K, d)), "spherical": np.ones(K)}[ct]
    return dict(weights_init=weights, means_init=means, precisions_init=prec)


def fitted_attrs(gm):
    return [gm.weights_, gm.means_, gm.covariances_, gm.precisions_cholesky_,
            np.asarray(gm.lower_bounds_)]


def assert_same_model(a, b, rtol, what=""):
    for x, y in zip(fitted_attrs(a), fitted_attrs(b)):
        assert_rel(x, y, rtol, what)
    assert a.n_iter_ == b.n_iter_


def assert_bitwise(a, b):
    for x, y in zip(fitted_attrs(a), fitted_attrs(b)):
        np.testing.assert_array_equal(x, y)


# -- equality with the in-memory fit -----------------------------------------------


@pytest.mark.parity
@no_convergence
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_fit_equals_in_memory_explicit_init(data, ct, dtype):
    X = data.astype(dtype)
    kw = dict(n_components=3, covariance_type=ct, tol=0, max_iter=10, **initial(X, ct))
    ref = GaussianMixture(**kw).fit(X)
    gm = GaussianMixture(**kw).fit(da.from_array(X, chunks=(CHUNK, 1)))
    assert gm.n_features_in_ == 3
    assert_same_model(gm, ref, _rtol(X), f"{ct} {np.dtype(dtype)}")


@no_convergence
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_fit_equals_in_memory_default_init(data, ct, dtype):
    # same random_state: the same subsample is drawn, so the same k-means
    # centres and (to rounding) the same model
    X = data.astype(dtype)
    kw = dict(n_components=3, covariance_type=ct, tol=0, max_iter=10, random_state=3)
    ref = GaussianMixture(**kw).fit(X)
    gm = GaussianMixture(**kw).fit(da.from_array(X, chunks=CHUNK))
    assert_same_model(gm, ref, _rtol(X), f"{ct} {np.dtype(dtype)}")


@no_convergence
@pytest.mark.parametrize("init", ["k-means++", "random_from_data"])
def test_other_inits_equal_in_memory(data, init):
    kw = dict(n_components=3, tol=0, max_iter=5, random_state=0, init_params=init)
    ref = GaussianMixture(**kw).fit(data)
    gm = GaussianMixture(**kw).fit(da.from_array(data, chunks=CHUNK))
    assert_same_model(gm, ref, _rtol(data), init)  # other grouping of the sums


def test_converged_fit_equals_in_memory(data):
    ref = GaussianMixture(3, random_state=0).fit(data)
    gm = GaussianMixture(3, random_state=0).fit(da.from_array(data, chunks=CHUNK))
    assert gm.converged_ and ref.converged_
    assert_same_model(gm, ref, _rtol(data))  # other grouping of the sums


@no_convergence
def test_schedulers_give_bitwise_equal_models(data):
    dX = da.from_array(data, chunks=CHUNK)
    kw = dict(n_components=3, tol=0, max_iter=5, **initial(data, "full"))
    with dask.config.set(scheduler="threads"):
        a = GaussianMixture(**kw).fit(dX)
    with dask.config.set(scheduler="synchronous"):
        b = GaussianMixture(**kw).fit(dX)
    assert_bitwise(a, b)


# -- prediction is lazy ----------------------------------------------------------


@no_convergence
@pytest.mark.parametrize("dtype", DTYPES)
def test_predict_score_are_lazy_and_equal(data, dtype):
    X = data.astype(dtype)
    gm = GaussianMixture(3, random_state=0, max_iter=5).fit(X)
    dX = da.from_array(X, chunks=CHUNK)
    for method, dt in [("predict", np.int64), ("predict_proba", np.float64),
                       ("score_samples", np.float64)]:
        lazy = getattr(gm, method)(dX)
        assert isinstance(lazy, da.Array), method
        assert lazy.dtype == dt
        assert lazy.chunks[0] == dX.chunks[0]
        got = lazy.compute()
        want = getattr(gm, method)(X)
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=method)
    assert gm.score(dX) == pytest.approx(gm.score(X), rel=1e-12)
    assert gm.bic(dX) == pytest.approx(gm.bic(X), rel=1e-12)


def test_fit_predict_equals_fit_then_predict(data):
    dX = da.from_array(data, chunks=CHUNK)
    gm = GaussianMixture(3, random_state=0)
    labels = gm.fit_predict(dX)
    assert isinstance(labels, da.Array)
    np.testing.assert_array_equal(labels.compute(), gm.predict(data))


def test_predict_checks_features_and_values(data):
    gm = GaussianMixture(3, random_state=0).fit(da.from_array(data, chunks=CHUNK))
    with pytest.raises(ValueError, match="X has 2 features, but GaussianMixture is "
                       "expecting 3 features as input."):
        gm.predict(da.from_array(data[:, :2], chunks=CHUNK))
    bad = data.copy()
    bad[5000, 1] = np.nan
    with pytest.raises(ValueError, match="contains NaN at row 5000, column 1"):
        gm.predict(da.from_array(bad, chunks=CHUNK)).compute()
    with pytest.raises(ValueError, match="contains NaN at row 5000, column 1"):
        GaussianMixture(3).fit(da.from_array(bad, chunks=CHUNK))


# -- input kinds -----------------------------------------------------------------


@no_convergence
def test_dataframe_input(data):
    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(data, columns=["a", "b", "c"])
    df["label"] = "x"  # non-numeric: ignored
    ddf = dd.from_pandas(df, npartitions=5)
    kw = dict(n_components=3, tol=0, max_iter=5, **initial(data, "full"))
    ref = GaussianMixture(**kw).fit(data)
    gm = GaussianMixture(**kw).fit(ddf)
    assert_same_model(gm, ref, _rtol(data))  # 5 partitions: other grouping
    assert list(gm.feature_names_in_) == ["a", "b", "c"]
    labels = gm.predict(ddf)
    assert isinstance(labels, da.Array)
    np.testing.assert_array_equal(labels.compute(), ref.predict(data))
    # a later fit on an array drops the names
    gm.fit(da.from_array(data, chunks=CHUNK))
    assert not hasattr(gm, "feature_names_in_")


@no_convergence
def test_integer_and_column_chunked_input(data):
    Xi = np.round(data * 10).astype(np.int32)
    dX = da.from_array(Xi, chunks=(CHUNK, 2))  # columns split over 2 chunks
    kw = dict(n_components=3, tol=0, max_iter=5, **initial(Xi.astype(float), "diag"),
              covariance_type="diag")
    ref = GaussianMixture(**kw).fit(Xi)
    gm = GaussianMixture(**kw).fit(dX)
    assert_same_model(gm, ref, _rtol(Xi.astype(np.float64)))  # other grouping
    data_ = _dask.DaskData(dX)
    assert data_.dtype == np.float64 and len(data_.X.chunks[1]) == 1


def test_rejects_bad_input(data):
    gm = GaussianMixture(2)
    with pytest.raises(ValueError, match="Expected 2D array, got 1D array"):
        gm.fit(da.from_array(data[:, 0], chunks=CHUNK))
    with pytest.raises(TypeError, match="Expected numeric input"):
        gm.fit(da.from_array(data.astype(str), chunks=CHUNK))


# -- sample weights --------------------------------------------------------------


@no_convergence
@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
@pytest.mark.parametrize("as_dask", [True, False])
def test_sample_weight_equals_in_memory(data, ct, as_dask):
    w = np.random.default_rng(1).uniform(0.0, 3.0, size=N)
    w[::7] = 0.0
    kw = dict(n_components=3, covariance_type=ct, tol=0, max_iter=10,
              **initial(data, ct))
    ref = GaussianMixture(**kw).fit(data, sample_weight=w)
    dw = da.from_array(w, chunks=5000) if as_dask else w  # rechunked to X's blocks
    gm = GaussianMixture(**kw).fit(da.from_array(data, chunks=CHUNK), sample_weight=dw)
    assert_same_model(gm, ref, _rtol(data), ct)  # other grouping of the sums


@no_convergence
def test_sample_weight_default_init_fits(data):
    # the weighted subsample is drawn on the workers (not the in-memory draw):
    # the fit finds the same clusters
    w = np.random.default_rng(1).uniform(0.5, 2.0, size=N)
    ref = GaussianMixture(3, random_state=0).fit(data, sample_weight=w)
    gm = GaussianMixture(3, random_state=0).fit(da.from_array(data, chunks=CHUNK),
                                                sample_weight=da.from_array(w, chunks=CHUNK))
    order = np.argsort(gm.means_[:, 0])
    ref_order = np.argsort(ref.means_[:, 0])
    np.testing.assert_allclose(gm.means_[order], ref.means_[ref_order], atol=1e-3)


def test_sample_weight_errors(data):
    dX = da.from_array(data, chunks=CHUNK)
    w = np.ones(N)
    w[4321] = -1.0
    with pytest.raises(ValueError, match=r"sample_weight\[4321\] = -1.0"):
        GaussianMixture(2).fit(dX, sample_weight=da.from_array(w, chunks=1000))
    with pytest.raises(ValueError, match=r"sample_weight.shape == \(5,\), expected"):
        GaussianMixture(2).fit(dX, sample_weight=np.ones(5))
    with pytest.raises(ValueError, match="sums to zero"):
        GaussianMixture(2).fit(dX, sample_weight=np.zeros(N))


# -- RowData protocol --------------------------------------------------------------


def test_iter_chunks_and_sample_match_array_data(data):
    w = np.random.default_rng(2).uniform(size=N)
    dd = _dask.DaskData(da.from_array(data, chunks=CHUNK), w)
    starts = []
    for start, block, bw in dd.iter_chunks():
        starts.append(start)
        np.testing.assert_array_equal(block, data[start:start + block.shape[0]])
        np.testing.assert_array_equal(bw, w[start:start + block.shape[0]])
        assert block.flags.c_contiguous
    assert starts == list(range(0, N, CHUNK))
    dd = _dask.DaskData(da.from_array(data, chunks=CHUNK))
    ad = ArrayData(data)
    S1, _ = dd.sample(500, np.random.RandomState(4))
    S2, _ = ad.sample(500, np.random.RandomState(4))
    np.testing.assert_array_equal(S1, S2)


@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_hard_assignment_stats_match_in_memory(data, ct):
    centers = CENTERS + 0.3
    dd = _dask.DaskData(da.from_array(data, chunks=CHUNK))
    got = dd.hard_assignment_stats(centers, ct)
    want = ArrayData(data).hard_assignment_stats(centers, ct)
    for f in ("nk", "s1", "s2", "ref", "ref2"):
        assert_rel(getattr(got, f), getattr(want, f), 1e-12, f)
    assert got.n_rows == N


def test_tree_has_fixed_shape():
    # merges group neighbours in block order: the result of 20 parts is the
    # same grouping whatever the completion order
    parts = [dask.delayed(lambda i=i: f"{i}")() for i in range(20)]
    seen = []

    def merge(*xs):
        seen.append(xs)
        return "(" + "+".join(xs) + ")"

    old = _dask._merge
    try:
        _dask._merge = merge
        out = _dask._tree(parts, fan_in=2).compute(scheduler="sync")
    finally:
        _dask._merge = old
    assert out.count("(") == 19
    assert out.startswith("(((((0+1)+(2+3))+((4+5)+(6+7)))+(((8+9)+(10+11))")


def test_import_error_without_dask(monkeypatch):
    for name in list(sys.modules):
        if name == "dask" or name.startswith("dask."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "dask", None)
    monkeypatch.delitem(sys.modules, "fastem._dask")
    with pytest.raises(ImportError, match=r"pip install 'fastem\[dask\]'"):
        importlib.import_module("fastem._dask")


# -- distributed -------------------------------------------------------------------

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as c:
        yield c


@no_convergence
@pytest.mark.parametrize("ct", ["full", pytest.param("diag", marks=pytest.mark.slow)])
def test_distributed_fit_equals_local(client, data, ct):
    kw = dict(n_components=3, covariance_type=ct, tol=0, max_iter=10, random_state=0)
    gm = GaussianMixture(**kw).fit(da.from_array(data, chunks=CHUNK))
    assert _dask._client() is client
    with dask.config.set(scheduler="synchronous"):
        assert _dask._client() is None
        local = GaussianMixture(**kw).fit(da.from_array(data, chunks=CHUNK))
    # same blocks, fixed merge tree: the model of the local scheduler.  With a
    # warm Numba cache the two are bitwise equal; when the worker processes
    # compile the kernels themselves (cold cache) the last bits have been seen
    # to differ (3e-15 relative, 14 eps), so this cross-process check allows
    # the rounding bound of the in-memory comparison.
    assert_same_model(gm, local, _rtol(data), ct)
    ref = GaussianMixture(**kw).fit(data)
    assert_same_model(gm, ref, _rtol(data), ct)  # other grouping of the sums
    labels = gm.predict(da.from_array(data, chunks=CHUNK))
    np.testing.assert_array_equal(labels.compute(), ref.predict(data))


def test_worker_numba_threads(client):
    assert client.submit(_dask._worker_threads, pure=False).result() == 1


@no_convergence
@pytest.mark.slow
def test_fit_survives_worker_loss(client, data, monkeypatch):
    """A worker process is killed after the first EM iteration; its blocks are
    recomputed from the (deterministic) graph and the model is unchanged."""
    kw = dict(n_components=3, tol=0, max_iter=6, random_state=0)
    want = GaussianMixture(**kw).fit(da.from_array(data, chunks=CHUNK))
    pids = client.run(os.getpid)
    assert len(pids) == 2
    victim = sorted(pids.values())[0]
    calls = []
    original = _dask.DaskData.e_pass

    def e_pass(self, params):
        stats = original(self, params)
        calls.append(1)
        if len(calls) == 1:
            os.kill(victim, signal.SIGKILL)
        return stats

    monkeypatch.setattr(_dask.DaskData, "e_pass", e_pass)
    got = GaussianMixture(**kw).fit(da.from_array(data, chunks=CHUNK))
    assert len(calls) == 6
    assert_bitwise(got, want)
    client.wait_for_workers(2, timeout=60)  # the nanny restarts the worker
    assert victim not in client.run(os.getpid).values()
