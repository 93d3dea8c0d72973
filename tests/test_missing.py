"""Missing values (``missing='marginalize'``): exact EM for the observed-data
likelihood, checked against the per-row reference in tests/reference.py."""

import warnings

import numpy as np
import pytest
from scipy.special import logsumexp
from sklearn.exceptions import ConvergenceWarning

import reference
from conftest import COVARIANCE_TYPES, assert_rel

from fastem import GaussianMixture
from fastem.online import MiniBatchGaussianMixture

K, D = 3, 5


def _precisions(p):
    cov = p["covariances"]
    ct = p["covariance_type"]
    if ct in ("diag", "spherical"):
        return 1.0 / cov
    if ct == "tied":
        return np.linalg.inv(cov)
    return np.stack([np.linalg.inv(c) for c in cov])


def _data(ct, seed=0, n=300, frac=0.3):
    """Rows from a random mixture, each entry missing with probability
    ``frac``, every row keeping at least one entry, and 20 rows missing all
    but one entry."""
    rng = np.random.RandomState(seed)
    p = reference.random_params(ct, K, D, rng)
    covs = reference.full_covariances(p["covariances"], ct, K, D)
    comp = rng.choice(K, size=n, p=p["weights"])
    X = np.stack([rng.multivariate_normal(p["means"][k], covs[k]) for k in comp])
    miss = rng.uniform(size=X.shape) < frac
    miss[np.arange(n), rng.randint(D, size=n)] = False
    if frac > 0:
        one = rng.choice(n, 20, replace=False)
        miss[one] = True
        miss[one, rng.randint(D, size=20)] = False
    X[miss] = np.nan
    return X, p


def _fit_from(p, X, max_iter=1, **kw):
    gm = GaussianMixture(K, covariance_type=p["covariance_type"], missing="marginalize",
                         max_iter=max_iter, tol=0.0, weights_init=p["weights"],
                         means_init=p["means"], precisions_init=_precisions(p), **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return gm.fit(X)


@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_em_step_matches_reference(ct):
    X, p = _data(ct)
    assert (np.sum(~np.isnan(X), axis=1) == 1).sum() >= 20
    new, ll = reference.missing_em_step(X, p)
    gm = _fit_from(p, X)
    assert_rel(gm.weights_, new["weights"], 1e-10, "weights")
    assert_rel(gm.means_, new["means"], 1e-10, "means")
    assert_rel(gm.covariances_, new["covariances"], 1e-10, "covariances")
    assert abs(gm.lower_bound_ - ll) <= 1e-10 * abs(ll)


@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_predictions_match_reference(ct):
    X, p = _data(ct, seed=1)
    gm = _fit_from(p, X, max_iter=3)
    q = {"covariance_type": ct, "weights": gm.weights_, "means": gm.means_,
         "covariances": gm.covariances_}
    logp, xhat, _ = reference.missing_e_step(X, q)
    ll = logsumexp(logp, axis=1)
    resp = np.exp(logp - ll[:, None])
    assert_rel(gm.score_samples(X), ll, 1e-10, "score_samples")
    assert_rel(gm.predict_proba(X), resp, 1e-10, "predict_proba")
    np.testing.assert_array_equal(gm.predict(X), resp.argmax(axis=1))
    assert abs(gm.score(X) - ll.mean()) <= 1e-10 * abs(ll.mean())
    n_par = reference.n_parameters(ct, K, D)
    assert abs(gm.bic(X) - (-2 * ll.sum() + n_par * np.log(len(X)))) <= 1e-9 * abs(gm.bic(X))
    assert abs(gm.aic(X) - (-2 * ll.sum() + 2 * n_par)) <= 1e-9 * abs(gm.aic(X))
    filled = gm.impute(X)
    expect = np.where(np.isnan(X), np.einsum("nk,nkd->nd", resp, xhat), X)
    assert_rel(filled, expect, 1e-10, "impute")
    assert np.array_equal(filled[~np.isnan(X)], X[~np.isnan(X)])


@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_lower_bound_monotone(ct):
    X, _ = _data(ct, seed=2, n=600)
    gm = GaussianMixture(K, covariance_type=ct, missing="marginalize", tol=1e-10,
                         max_iter=60, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm.fit(X)
    lb = np.asarray(gm.lower_bounds_)
    assert len(lb) > 5
    assert np.all(np.diff(lb) >= -1e-12 * np.abs(lb[1:])), np.diff(lb).min()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_no_nan_is_bitwise_unchanged(ct, dtype):
    X, _ = _data(ct, seed=3, n=5000, frac=0.0)
    X = X.astype(dtype)
    a = GaussianMixture(K, covariance_type=ct, random_state=0).fit(X)
    b = GaussianMixture(K, covariance_type=ct, random_state=0, missing="marginalize").fit(X)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.lower_bounds_ == b.lower_bounds_
    assert np.array_equal(a.score_samples(X), b.score_samples(X))


def _write_csv(path, X):
    with open(path, "w") as f:
        f.write(",".join(f"x{j}" for j in range(X.shape[1])) + "\n")
        for row in X:
            f.write(",".join("" if np.isnan(v) else repr(float(v)) for v in row) + "\n")


def _close(a, b, tol=1e-9):
    for name in ("weights_", "means_", "covariances_"):
        assert_rel(getattr(a, name), getattr(b, name), tol, name)
    assert a.n_iter_ == b.n_iter_
    assert abs(a.lower_bound_ - b.lower_bound_) <= tol * abs(b.lower_bound_)


@pytest.mark.parametrize("ct", ["full", "tied", "diag"])
def test_streams_equal_in_memory(ct, tmp_path):
    # the same start for all (a CSV of unknown length draws its k-means
    # sample by reservoir sampling, not as an array does)
    X, p = _data(ct, seed=4, n=3000, frac=0.15)
    kw = dict(covariance_type=ct, missing="marginalize", max_iter=20, tol=0.0,
              weights_init=p["weights"], means_init=p["means"],
              precisions_init=_precisions(p))
    warnings.simplefilter("ignore", ConvergenceWarning)
    mem = GaussianMixture(K, **kw).fit(X)
    csv = tmp_path / "x.csv"
    _write_csv(csv, X)
    _close(GaussianMixture(K, chunk_size=700, **kw).fit(str(csv)), mem)
    npy = tmp_path / "x.npy"
    np.save(npy, X)
    _close(GaussianMixture(K, chunk_size=1000, **kw).fit(str(npy)), mem)
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    cols = {f"x{j}": pa.array([None if np.isnan(v) else float(v) for v in X[:, j]],
                              type=pa.float64()) for j in range(D)}
    pq.write_table(pa.table(cols), tmp_path / "x.parquet", row_group_size=900)
    src = GaussianMixture(K, **kw).fit(str(tmp_path / "x.parquet"))
    _close(src, mem)
    np.testing.assert_allclose(src.predict_proba(str(csv)), mem.predict_proba(X),
                               rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("ct", ["tied", "diag"])
def test_thread_count_other_types(ct):
    # the incomplete-row kernel (tied) and the NumPy path (diag): bitwise the
    # same fit for one and two threads
    X, _ = _data(ct, seed=15, n=6000, frac=0.2)
    kw = dict(covariance_type=ct, missing="marginalize", random_state=0, max_iter=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = GaussianMixture(K, n_jobs=1, **kw).fit(X)
        b = GaussianMixture(K, n_jobs=2, **kw).fit(X)
    for name in ("weights_", "means_", "covariances_", "lower_bounds_"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name


def test_no_nan_never_loads_the_incomplete_row_kernel():
    # the option on, data without NaN: the fit is today's, and the kernel for
    # incomplete rows is neither compiled nor loaded
    import subprocess
    import sys

    code = (
        "import numpy as np, fastem\n"
        "from fastem import _kernels\n"
        "X = np.random.default_rng(0).normal(size=(3000, 3))\n"
        "fastem.GaussianMixture(2, missing='marginalize', random_state=0).fit(X)\n"
        "print(len(_kernels.pass_missing._variants))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "0"


def test_thread_count_and_dask(tmp_path):
    X, _ = _data("full", seed=5, n=20000, frac=0.1)
    kw = dict(missing="marginalize", random_state=0, max_iter=10)
    a = GaussianMixture(K, n_jobs=1, **kw).fit(X)
    b = GaussianMixture(K, n_jobs=2, **kw).fit(X)
    for name in ("weights_", "means_", "covariances_"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    da = pytest.importorskip("dask.array")
    c = GaussianMixture(K, **kw).fit(da.from_array(X, chunks=(4096, D)))
    _close(c, a)
    np.testing.assert_allclose(np.asarray(c.score_samples(da.from_array(X, chunks=5000))),
                               a.score_samples(X), rtol=1e-9)


def test_online():
    X, p = _data("full", seed=6, n=8000, frac=0.2)
    mb = MiniBatchGaussianMixture(K, batch_size=500, missing="marginalize", random_state=0)
    for lo in range(0, len(X), 500):
        mb.partial_fit(X[lo:lo + 500])
    assert np.all(np.isfinite(mb.means_)) and np.all(np.isfinite(mb.covariances_))
    assert np.isfinite(mb.score(X))
    fit = MiniBatchGaussianMixture(K, batch_size=1000, missing="marginalize",
                                   random_state=0, max_iter=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fit.fit(X)
    assert np.isfinite(fit.score(X))
    with pytest.raises(ValueError, match="missing='marginalize'"):
        MiniBatchGaussianMixture(K).partial_fit(X[:500])


def test_errors(tmp_path):
    X, _ = _data("full", seed=7, n=200)
    with pytest.raises(ValueError, match=r"contains NaN at row \d+.*missing='marginalize'"):
        GaussianMixture(K).fit(X)
    bad = X.copy()
    bad[17] = np.nan
    bad[40] = np.nan
    with pytest.raises(ValueError, match=r"every entry missing \(NaN\) in row 17 \(2 such"):
        GaussianMixture(K, missing="marginalize").fit(bad)
    csv = tmp_path / "bad.csv"
    _write_csv(csv, bad)
    with pytest.raises(ValueError, match=r"every entry missing \(NaN\) in row 17"):
        GaussianMixture(K, missing="marginalize").fit(str(csv))
    inf = X.copy()
    inf[3, 1] = np.inf
    with pytest.raises(ValueError, match="infinity at row 3, column 1"):
        GaussianMixture(K, missing="marginalize").fit(inf)
    with pytest.raises(ValueError, match=r"'missing' parameter .* Got 'drop'"):
        GaussianMixture(K, missing="drop").fit(X)
    gm = GaussianMixture(K, missing="marginalize", random_state=0).fit(X)
    with pytest.raises(ValueError, match="row 17"):
        gm.predict(bad)
    with pytest.raises(ValueError, match="'mean' or 'sample'"):
        gm.impute(X, method="median")
    plain = GaussianMixture(K, random_state=0).fit(np.nan_to_num(X))
    with pytest.raises(ValueError, match="missing='marginalize'"):
        plain.score_samples(X)


def test_impute_draws_and_float32():
    X, _ = _data("full", seed=8, n=400)
    gm = GaussianMixture(K, missing="marginalize", random_state=0).fit(X)
    a = gm.impute(X, method="sample", random_state=1)
    b = gm.impute(X, method="sample", random_state=1)
    c = gm.impute(X, method="sample", random_state=2)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert not np.isnan(a).any()
    assert np.array_equal(a[~np.isnan(X)], X[~np.isnan(X)])
    X32 = X.astype(np.float32)
    g32 = GaussianMixture(K, missing="marginalize", random_state=0).fit(X32)
    assert g32.impute(X32).dtype == np.float32
    assert_rel(g32.means_, gm.means_, 1e-4, "float32 means")


def test_init_mean_imputed_when_few_complete_rows():
    X, _ = _data("diag", seed=9, n=400, frac=0.6)
    assert (~np.isnan(X).any(axis=1)).sum() < 20 * K
    for init in ("kmeans", "k-means++", "random", "random_from_data"):
        gm = GaussianMixture(K, covariance_type="diag", missing="marginalize",
                             init_params=init, random_state=0, max_iter=300).fit(X)
        assert np.all(np.isfinite(gm.means_)), init


def test_persist_round_trip(tmp_path):
    from fastem import load

    X, _ = _data("tied", seed=10, n=300)
    gm = GaussianMixture(K, covariance_type="tied", missing="marginalize",
                         random_state=0).fit(X)
    gm.save(tmp_path / "m.npz")
    back = load(tmp_path / "m.npz")
    assert back.missing == "marginalize"
    np.testing.assert_array_equal(back.score_samples(X), gm.score_samples(X))


def test_cli_fit_and_impute(tmp_path, capsys):
    from fastem.cli import main

    X, _ = _data("full", seed=11, n=400, frac=0.1)
    csv = tmp_path / "t.csv"
    _write_csv(csv, X)
    model = tmp_path / "m.npz"
    assert main(["fit", str(csv), "-k", "3", "--missing", "marginalize",
                 "--out", str(model)]) == 0
    assert main(["impute", str(model), str(csv), "--out", str(tmp_path / "f.csv")]) == 0
    assert "imputed" in capsys.readouterr().out
    filled = np.loadtxt(tmp_path / "f.csv", delimiter=",", skiprows=1)
    from fastem import load

    np.testing.assert_allclose(filled, load(model).impute(X), rtol=1e-15)
    assert main(["impute", str(model), str(csv), "--out", str(tmp_path / "d.npy"),
                 "--draw", "--random-state", "3"]) == 0
    assert not np.isnan(np.load(tmp_path / "d.npy")).any()
    assert main(["fit", str(csv), "-k", "3"]) == 2
    assert "missing='marginalize'" in capsys.readouterr().err


def test_select_model_and_plots(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    from fastem.plot import plot_ellipses
    from fastem.selection import select_model

    X, _ = _data("full", seed=12, n=600, frac=0.1)
    sel = select_model(X, n_components=[1, 2, 3], covariance_types=["full", "diag"],
                       random_state=0, missing="marginalize")
    best = sel.best_estimator_
    assert best.missing == "marginalize"
    assert np.isfinite(best.bic(X))
    ax = plot_ellipses(best, X)
    ax.figure.savefig(tmp_path / "e.png")
    assert (tmp_path / "e.png").stat().st_size > 0
