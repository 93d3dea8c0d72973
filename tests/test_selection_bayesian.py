"""select_model(bayesian=True): the effective number of components of
variational fits, scored like the grid's candidates."""

import re
import sys

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from sklearn.exceptions import NotFittedError

from fastem import BayesianGaussianMixture, cli
from fastem.datasets import load_old_faithful
from fastem.selection import TABLE_COLUMNS, effective_components, select_model

TYPES = ("full", "diag", "tied", "spherical")


def three_blobs(n_per=1000, seed=0):
    """3000 rows, 2-D, three well-separated Gaussians of different shapes."""
    rng = np.random.RandomState(seed)
    means = [(0.0, 0.0), (10.0, 0.0), (0.0, 10.0)]
    covs = [[[1.0, 0.6], [0.6, 1.0]], [[2.0, -0.5], [-0.5, 0.5]], [[0.5, 0.0], [0.0, 1.5]]]
    return np.concatenate([rng.multivariate_normal(m, c, n_per) for m, c in zip(means, covs)])


@pytest.fixture(scope="module")
def blobs():
    return three_blobs()


@pytest.fixture(scope="module")
def result(blobs):
    return select_model(blobs, n_components=range(1, 11), bayesian=True, random_state=0)


def rows(table):
    return table.to_dict("records") if hasattr(table, "to_dict") else [
        {n: r[n] for n in table.dtype.names} for r in table]


# ---------------------------------------------------------------------------
# What it finds
# ---------------------------------------------------------------------------


def test_three_components_found(result):
    by_type = {r["covariance_type"]: r for r in rows(result.table)}
    assert list(by_type) == list(TYPES)
    assert by_type["full"]["effective_n_components"] == 3
    best = rows(result.table)[result.best_index_]
    assert best["effective_n_components"] == 3
    assert result.best_params_ == {"n_components": 10,
                                   "covariance_type": best["covariance_type"]}
    est = result.best_estimator_
    assert isinstance(est, BayesianGaussianMixture)
    assert est.n_components == 10 and est.weight_concentration_prior_type == "dirichlet_process"
    assert est.effective_n_components() == 3
    assert "K=3 of 10" in result.summary()
    assert "(3 effective)" in repr(result)


def test_table_layout(result):
    cols = list(result.table.columns)
    assert cols == list(TABLE_COLUMNS) + ["effective_n_components", "lower_bound", "weights"]
    assert (result.table["n_components"] == 10).all()
    assert set(result.estimators_) == {(10, ct) for ct in TYPES}
    assert set(result.point_estimates_) == set(result.estimators_)
    for r in rows(result.table):
        fit = result.estimators_[(10, r["covariance_type"])]
        assert r["effective_n_components"] == fit.effective_n_components()
        np.testing.assert_array_equal(r["weights"], fit.weights_[fit.weights_ > 1e-3])
        assert r["lower_bound"] == fit.lower_bound_
        assert r["converged"] == fit.converged_ and r["n_iter"] == fit.n_iter_
    ranked = [rows(result.table)[i]["bic"] for i in result.ranking_]
    assert ranked == sorted(ranked)


def _covariance(fit, k):
    ct, c = fit.covariance_type, fit.covariances_
    d = fit.means_.shape[1]
    return {"full": lambda: c[k], "tied": lambda: c, "diag": lambda: np.diag(c[k]),
            "spherical": lambda: c[k] * np.eye(d)}[ct]()


def _independent_criteria(fit, X, threshold=1e-3):
    """BIC, AIC, total log-likelihood and entropy of the fit's effective
    components (renormalised weights), with scipy."""
    kept = np.flatnonzero(fit.weights_ > threshold)
    w = fit.weights_[kept] / fit.weights_[kept].sum()
    logp = np.column_stack([np.log(w[j]) + multivariate_normal(
        fit.means_[k], _covariance(fit, k)).logpdf(X) for j, k in enumerate(kept)])
    total = logsumexp(logp, axis=1).sum()
    K, (n, d) = len(kept), X.shape
    cov = {"full": K * d * (d + 1) / 2, "diag": K * d, "tied": d * (d + 1) / 2,
           "spherical": K}[fit.covariance_type]
    p = cov + K * d + K - 1
    z = np.exp(logp - logsumexp(logp, axis=1)[:, None])
    entropy = -np.sum(np.where(z > 0, z * np.log(np.where(z > 0, z, 1.0)), 0.0))
    return {"bic": -2 * total + p * np.log(n), "aic": -2 * total + 2 * p,
            "total_log_likelihood": total, "n_parameters": p, "entropy": entropy}


def test_criteria_equal_an_independent_computation(result, blobs):
    for r in rows(result.table):
        fit = result.estimators_[(10, r["covariance_type"])]
        ref = _independent_criteria(fit, blobs)
        for name in ("bic", "aic", "total_log_likelihood"):
            assert r[name] == pytest.approx(ref[name], rel=1e-9), (r["covariance_type"], name)
        assert r["n_parameters"] == ref["n_parameters"]


def test_icl_equals_an_independent_computation(blobs):
    res = select_model(blobs, n_components=range(1, 6), covariance_types="diag",
                       criterion="icl", bayesian=True, random_state=0, n_init=2)
    (r,) = rows(res.table)
    ref = _independent_criteria(res.best_estimator_, blobs)
    assert r["icl"] == pytest.approx(ref["bic"] + 2 * ref["entropy"], rel=1e-9)


def test_heldout_refits_the_winner_on_all_rows():
    X = load_old_faithful()
    res = select_model(X, n_components=range(1, 7), covariance_types=("full", "tied"),
                       criterion="heldout", bayesian=True, random_state=0, n_init=2)
    table = rows(res.table)
    assert all(np.isfinite(r["heldout"]) for r in table)
    best = res.best_estimator_
    assert isinstance(best, BayesianGaussianMixture) and not best.warm_start
    assert best is not res.estimators_[(6, res.best_params_["covariance_type"])]
    assert best.effective_n_components() == 2


def test_prior_options_pass_through():
    X = load_old_faithful()
    res = select_model(X, n_components=4, covariance_types="full", bayesian=True,
                       random_state=0, n_init=1,
                       bayesian_params={"weight_concentration_prior": 1e-3,
                                        "weight_concentration_prior_type":
                                            "dirichlet_distribution"})
    est = res.best_estimator_
    assert est.weight_concentration_prior_ == 1e-3
    assert est.weight_concentration_prior_type == "dirichlet_distribution"
    assert est.n_components == 4


def test_threshold_changes_what_counts(result):
    fit = result.estimators_[(10, "full")]
    n, w = effective_components(fit, 0.0)
    assert n == 10 and w.shape == (10,)
    n, w = effective_components(fit, 0.3)
    assert n == 3 and np.all(w > 0.3)


def test_streamed_source_equals_in_memory(tmp_path):
    X = np.ascontiguousarray(load_old_faithful(), dtype=np.float64)
    path = tmp_path / "faithful.npy"
    np.save(path, X)
    opts = dict(n_components=5, covariance_types=("full", "diag"), bayesian=True,
                random_state=0, n_init=2)
    a, b = select_model(X, **opts), select_model(str(path), **opts)
    for ra, rb in zip(rows(a.table), rows(b.table)):
        assert ra["effective_n_components"] == rb["effective_n_components"]
        assert ra["bic"] == pytest.approx(rb["bic"], rel=1e-9)


def test_structured_array_without_pandas(monkeypatch):
    opts = dict(n_components=4, covariance_types=("full", "tied"), bayesian=True,
                random_state=0, n_init=3)
    frame = select_model(load_old_faithful(), **opts).table
    monkeypatch.setitem(sys.modules, "pandas", None)
    res = select_model(load_old_faithful(), **opts)
    assert res.table.dtype.names == tuple(frame.columns)
    for a, b in zip(rows(res.table), rows(frame)):
        np.testing.assert_array_equal(a.pop("weights"), b.pop("weights"))
        np.testing.assert_equal(a, b)  # NaN equal to NaN
    assert "K=2 of 4" in res.summary()


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(bayesian_params={"n_components": 5}), ValueError,
     r"Unknown bayesian_params \['n_components'\].*select_model's own arguments"),
    (dict(bayesian_params={"mean_precision_prior": -1.0}), ValueError,
     r"'mean_precision_prior' parameter .* range \(0.0, inf\)\. Got -1.0"),
    (dict(bayesian_params={"weight_concentration_prior_type": "pitman_yor"}), ValueError,
     r"'weight_concentration_prior_type'.*Got 'pitman_yor'"),
    (dict(bayesian_params=[("mean_prior", 0)]), TypeError,
     r"bayesian_params must be a dict of prior options, got list"),
    (dict(weight_threshold=1.0), ValueError,
     r"weight_threshold must be a float in \[0, 1\), got 1.0"),
    (dict(weight_threshold=-0.1), ValueError, r"weight_threshold must be a float"),
    (dict(missing="impute"), ValueError, r"missing"),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        select_model(np.zeros((5, 2)), n_components=2, bayesian=True, **kwargs)


def test_bayesian_params_without_bayesian():
    with pytest.raises(ValueError, match="pass bayesian=True too"):
        select_model(np.zeros((5, 2)), n_components=2, bayesian_params={})


def test_lower_bound_is_no_criterion():
    with pytest.raises(ValueError, match="cannot rank them"):
        select_model(np.zeros((5, 2)), n_components=2, bayesian=True,
                     criterion="lower_bound")


def test_effective_components_errors(result):
    with pytest.raises(NotFittedError):
        effective_components(BayesianGaussianMixture(n_components=3))
    fit = result.estimators_[(10, "full")]
    with pytest.raises(ValueError, match=r"threshold must be a float in \[0, 1\)"):
        effective_components(fit, 1.5)
    with pytest.raises(ValueError, match="No component has a weight above threshold=0.9"):
        effective_components(fit, 0.9)


# ---------------------------------------------------------------------------
# The command line and the plot
# ---------------------------------------------------------------------------


def run(capsys, *argv):
    capsys.readouterr()
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_select_bayesian(capsys):
    rc, out, err = run(capsys, "select", "--bayesian")
    assert rc == 0, err
    assert out.startswith("variational fits with truncation K = 6, ranked by bic: Old Faithful")
    lines = out.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.lstrip().startswith("covariance_type"))
    header = lines[start].split()
    assert header[:3] == ["covariance_type", "effective_n_components", "bic"]
    assert "n_components" not in header and header[-2:] == ["weights", "best"]
    table = [ln.split() for ln in lines[start + 1:start + 5]]
    assert sorted(r[0] for r in table) == sorted(TYPES)
    full = next(r for r in table if r[0] == "full")
    assert full[1] == "2" and full[-1] == "*"
    assert re.fullmatch(r"0\.6\d\d,0\.3\d\d", full[-2])
    assert "best: n_components=6, covariance_type='full'" in out
    assert "effective components of the best: 2 of 6 (weights > 0.001)" in out
    components = out[out.index("effective components of the best"):].splitlines()[2:]
    assert len([ln for ln in components if ln.strip()]) == 3  # header + 2 components


def test_cli_fit_bayesian_counts_effective_components(capsys):
    rc, out, err = run(capsys, "fit", "--bayesian", "-k", "6")
    assert rc == 0, err
    assert "effective components: 2 of 6 (weights > 0.001)" in out


def test_cli_bad_threshold(capsys):
    rc, out, err = run(capsys, "select", "--bayesian", "--weight-threshold", "2")
    assert rc == 2
    assert err.startswith("fastem: error: weight_threshold must be a float in [0, 1)")


def test_plot(result):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    ax = Figure().add_subplot()
    assert result.plot(ax=ax) is ax
    assert ax.get_xlabel() == "effective n components"
    by_type = {r["covariance_type"]: r for r in rows(result.table)}
    for line in ax.lines:
        r = by_type[line.get_label()]
        assert list(line.get_xdata()) == [r["effective_n_components"]]
        assert list(line.get_ydata()) == [r["bic"]]
    labels = ax.get_legend_handles_labels()[1]
    best = rows(result.table)[result.best_index_]
    assert f"best: {best['covariance_type']}, 3 effective components" in labels


def test_missing_values_marginalized(blobs):
    """With 15% of the entries missing at random, the variational fits
    marginalise them (missing='marginalize' reaches both the fits and the
    scoring of their point estimates) and still find the three components."""
    X = blobs.copy()
    rng = np.random.RandomState(3)
    mask = rng.rand(*X.shape) < 0.15
    mask[mask.all(axis=1), 0] = False  # keep one entry per row
    X[mask] = np.nan
    res = select_model(X, n_components=range(1, 11), covariance_types=("full",),
                       bayesian=True, random_state=0, missing="marginalize")
    est = res.best_estimator_
    assert est.missing == "marginalize" and est.effective_n_components() == 3
    (row,) = rows(res.table)
    point = res.point_estimates_[(10, "full")]
    assert point.missing == "marginalize"
    # the table's log-likelihood is the observed-data one of the point estimate
    assert np.isfinite(row["total_log_likelihood"])
    np.testing.assert_allclose(row["total_log_likelihood"], point.score(X) * X.shape[0],
                               rtol=1e-10)
