"""Tests of fastem.selection.select_model."""

import sys

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.exceptions import ConvergenceWarning

import fastem
from fastem import io
from fastem.datasets import load_old_faithful
from fastem.selection import TABLE_COLUMNS, SelectionResult, select_model

COVARIANCE_TYPES = ("full", "diag", "tied", "spherical")


def blobs(n=600, seed=0):
    rng = np.random.default_rng(seed)
    centers = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]])
    labels = rng.integers(0, 3, size=n)
    return centers[labels] + rng.normal(size=(n, 2))


def column(table, name):
    return np.asarray(table[name])


@pytest.fixture(scope="module")
def grid_result():
    return select_model(blobs(), n_components=range(1, 5), random_state=0)


def test_table_shape_and_columns(grid_result):
    result = grid_result
    table = result.table
    assert isinstance(result, SelectionResult)
    assert len(table) == 4 * 4
    assert list(table.columns) == list(TABLE_COLUMNS)
    # grid order: covariance types outer, n_components inner
    assert column(table, "covariance_type").tolist() == [
        ct for ct in COVARIANCE_TYPES for _ in range(4)]
    assert column(table, "n_components").tolist() == [1, 2, 3, 4] * 4
    assert np.isnan(column(table, "heldout")).all()
    assert column(table, "converged").dtype == bool
    assert (column(table, "n_iter") >= 1).all()
    assert set(result.estimators_) == {(k, ct) for ct in COVARIANCE_TYPES
                                       for k in range(1, 5)}
    assert result.criterion == "bic"


def test_table_values_match_estimators(grid_result):
    X = blobs()
    table = grid_result.table
    for i, (k, ct) in enumerate(zip(column(table, "n_components"),
                                    column(table, "covariance_type"))):
        model = grid_result.estimators_[(int(k), ct)]
        assert isinstance(model, fastem.GaussianMixture)
        assert model.n_components == k and model.covariance_type == ct
        assert_allclose(column(table, "bic")[i], model.bic(X), rtol=1e-10)
        assert_allclose(column(table, "aic")[i], model.aic(X), rtol=1e-10)
        assert_allclose(column(table, "log_likelihood")[i], model.score(X), rtol=1e-10)
        assert column(table, "n_parameters")[i] == model._n_parameters()
        assert column(table, "n_iter")[i] == model.n_iter_


def test_best_is_argmin_bic(grid_result):
    table = grid_result.table
    bic = column(table, "bic")
    best = int(np.argmin(bic))
    assert grid_result.best_index_ == best
    assert grid_result.best_params_ == {
        "n_components": int(column(table, "n_components")[best]),
        "covariance_type": column(table, "covariance_type")[best]}
    key = (grid_result.best_params_["n_components"],
           grid_result.best_params_["covariance_type"])
    assert grid_result.best_estimator_ is grid_result.estimators_[key]
    # three well-separated round blobs
    assert grid_result.best_params_["n_components"] == 3


def _mclust_tool():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "tools" / "mclust_comparison.py"
    spec = importlib.util.spec_from_file_location("mclust_comparison", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["old_faithful", "iris"])
def test_defaults_pick_mclusts_model_and_match_every_candidate(name):
    # mclust's mclustBIC (R mclust 6.0.0) table is in tools/mclust_comparison.py:
    # with select_model's defaults, the same model and K wins, and no candidate's
    # BIC is worse than mclust's for the same model and K.
    tool = _mclust_tool()
    result, best, worse, _, _ = tool.compare(name, random_state=0)
    assert best == tool.MCLUST_BEST[name]
    assert worse == []
    assert not np.asarray(result.table["degenerate"]).any()


def test_old_faithful_eruptions_bic_table():
    # 1-D: full = diag = spherical ('V' in mclust).  The search finds a K=3
    # fit (BIC 572.7) better than mclust's K=3 (580.8) and its K=4 (576.66),
    # so BIC picks 3 components here where mclust picks 4.
    tool = _mclust_tool()
    result, best, worse, _, _ = tool.compare("eruptions", random_state=0)
    assert worse == []
    assert best == (3, "full")
    bic = column(result.table, "bic")
    assert bic[2] < bic[3] - 3 and bic[2] < bic[1] - 7
    means = np.sort(result.best_estimator_.means_.ravel())
    assert_allclose(means, [1.86, 2.19, 4.29], atol=0.02)


def test_old_faithful_2d_one_kmeans_start_stops_at_two_full():
    # scikit-learn's defaults (one unscaled k-means start, tol 1e-3): the
    # 3-component tied fit lands in a worse local optimum and 'full' K=2 wins;
    # this is the failure the default search fixes.
    X = load_old_faithful()
    result = select_model(X, n_components=range(1, 7), random_state=0, n_init=1,
                          init_params="kmeans", tol=1e-3, max_iter=100)
    assert result.best_params_ == {"n_components": 2, "covariance_type": "full"}
    assert_allclose(column(result.table, "bic")[result.best_index_], 2322.19, atol=0.1)
    default = select_model(X, n_components=range(1, 7), random_state=0)
    assert default.best_params_ == {"n_components": 3, "covariance_type": "tied"}
    assert_allclose(column(default.table, "bic")[default.best_index_], 2314.31, atol=0.01)


def test_aic_criterion():
    X = blobs()
    result = select_model(X, n_components=range(1, 5), covariance_types=["full", "diag"],
                          criterion="aic", random_state=0)
    aic = column(result.table, "aic")
    assert result.criterion == "aic"
    assert result.best_index_ == int(np.argmin(aic))
    assert np.isnan(column(result.table, "heldout")).all()


def test_heldout_criterion():
    X = blobs()
    result = select_model(X, n_components=range(1, 5), covariance_types="full",
                          criterion="heldout", validation_fraction=0.25, random_state=0)
    heldout = column(result.table, "heldout")
    assert np.isfinite(heldout).all()
    assert result.best_index_ == int(np.argmax(heldout))
    # three blobs: K=4 ties with K=3 on held-out rows (within noise), fewer lose
    k = result.best_params_["n_components"]
    assert k in (3, 4) and heldout[2] > heldout.max() - 0.01
    key = (k, "full")
    # candidates are fitted on the training rows, the winner is refitted on all
    best = result.best_estimator_
    assert best is not result.estimators_[key]
    assert best.n_components == k
    if k == 3:  # same clusters, slightly different rows
        assert_allclose(np.sort(best.means_, axis=0),
                        np.sort(result.estimators_[key].means_, axis=0), atol=0.3)


def test_heldout_is_mean_loglik_of_validation_rows():
    X = blobs(n=200)
    result = select_model(X, n_components=[2], covariance_types="full",
                          criterion="heldout", validation_fraction=0.5, random_state=1)
    model = result.estimators_[(2, "full")]
    scores = model.score_samples(X)
    heldout = column(result.table, "heldout")[0]
    train_ll = column(result.table, "log_likelihood")[0]
    # the 200 rows split 100/100: the two halves' means average to the mean
    assert_allclose(0.5 * (heldout + train_ll), scores.mean(), rtol=1e-10)


def test_reproducible_with_int_random_state():
    X = blobs()
    a = select_model(X, n_components=range(1, 4), criterion="heldout", random_state=3)
    b = select_model(X, n_components=range(1, 4), criterion="heldout", random_state=3)
    for name in ("bic", "heldout", "log_likelihood"):
        assert_array_equal(column(a.table, name), column(b.table, name))


def test_single_int_and_str_grid():
    X = blobs(n=100)
    result = select_model(X, n_components=2, covariance_types="diag", random_state=0)
    assert len(result.table) == 1
    assert result.best_params_ == {"n_components": 2, "covariance_type": "diag"}


def test_npy_path_matches_array(tmp_path):
    X = blobs()
    path = tmp_path / "blobs.npy"
    np.save(path, X)
    kw = dict(n_components=range(1, 4), covariance_types=("full", "spherical"),
              random_state=0)
    from_path = select_model(str(path), **kw)
    from_array = select_model(X, **kw)
    for name in ("bic", "aic", "log_likelihood"):
        assert_allclose(column(from_path.table, name), column(from_array.table, name),
                        rtol=1e-9)
    assert from_path.best_params_ == from_array.best_params_


def test_chunk_source_heldout(tmp_path):
    X = blobs()
    path = tmp_path / "blobs.npy"
    np.save(path, X)
    src = io.chunks(path, chunk_size=128)
    result = select_model(src, n_components=range(1, 5), covariance_types="full",
                          criterion="heldout", random_state=0)
    heldout = column(result.table, "heldout")
    assert np.isfinite(heldout).all()
    assert result.best_params_["n_components"] in (3, 4)
    assert heldout[2] > heldout.max() - 0.01
    assert result.best_estimator_.n_features_in_ == 2


def test_one_shot_iterator_rejected():
    X = blobs(n=100)
    gen = (X[i:i + 10] for i in range(0, 100, 10))
    with pytest.raises(ValueError, match="one-shot iterator"):
        select_model(gen, n_components=[1, 2])


def test_plot_returns_axes(grid_result):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ax = grid_result.plot()
    try:
        assert len(ax.lines) == 4
        assert ax.get_ylabel().startswith("BIC")
    finally:
        plt.close(ax.figure)


def test_structured_array_without_pandas(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    result = select_model(blobs(n=100), n_components=[1, 2], covariance_types="full",
                          random_state=0)
    assert isinstance(result.table, np.ndarray)
    assert result.table.dtype.names == TABLE_COLUMNS
    assert result.table["n_components"].tolist() == [1, 2]


def test_warns_when_best_did_not_converge():
    with pytest.warns(ConvergenceWarning, match="best candidate"):
        result = select_model(blobs(), n_components=[3], covariance_types="full",
                              max_iter=1, random_state=0)
    assert not column(result.table, "converged")[0]


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(n_components=range(1, 1)), ValueError, "n_components is empty"),
    (dict(n_components=[]), ValueError, "n_components is empty"),
    (dict(n_components=[0, 1]), ValueError, "must be >= 1, got 0"),
    (dict(n_components=-2), ValueError, "must be >= 1, got -2"),
    (dict(n_components=[1.5]), TypeError, "must hold ints, got 1.5"),
    (dict(n_components="3"), TypeError, "must hold ints"),
    (dict(n_components=[1, 600]), ValueError, "n_components=600 with 100 rows"),
    (dict(covariance_types=("full", "banana")), ValueError,
     "Unknown covariance type 'banana'"),
    (dict(covariance_types=()), ValueError, "covariance_types is empty"),
    (dict(criterion="likelihood"), ValueError, "Unknown criterion 'likelihood'"),
    (dict(validation_fraction=0.0), ValueError, r"open interval \(0, 1\), got 0.0"),
    (dict(validation_fraction=1), ValueError, r"open interval \(0, 1\), got 1"),
    (dict(validation_fraction=1.5), ValueError, "got 1.5"),
    (dict(criterion="heldout", validation_fraction=0.001), ValueError,
     "0 validation rows"),
])
def test_errors(kwargs, exc, match):
    X = blobs(n=100)
    kwargs = {"n_components": [1, 2], **kwargs}
    with pytest.raises(exc, match=match):
        select_model(X, **kwargs)


def test_streamed_grid_shares_passes_and_equals_separate_fits(tmp_path):
    """A .npy source: one read of the data per EM iteration for all candidates,
    and every candidate equals its own fit."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    import fastem
    from fastem import io
    from fastem._search import fit_sharing_passes

    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(size=(3000, 2)) + c for c in ([0, 0], [6, 0], [0, 6])])
    path = tmp_path / "x.npy"
    np.save(path, X)
    src = io.chunks(str(path), chunk_size=1000)
    reads = []
    original = src.iter_with_offsets

    def counting(**kwargs):
        reads.append(1)
        return original(**kwargs)

    src.iter_with_offsets = counting
    grid = [(k, ct) for ct in ("full", "diag") for k in (1, 2, 3)]
    models = [fastem.GaussianMixture(k, covariance_type=ct, random_state=5, max_iter=20)
              for k, ct in grid]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fit_sharing_passes(models, src)
        separate = [fastem.GaussianMixture(k, covariance_type=ct, random_state=5,
                                           max_iter=20, chunk_size=1000).fit(str(path))
                    for k, ct in grid]
    longest = max(m.n_iter_ for m in models)
    # per candidate: 1 sampling pass + 1 hard-assignment pass; then one shared
    # pass per iteration of the longest-running candidate
    assert len(reads) == 2 * len(grid) + longest
    for a, b in zip(models, separate):
        assert a.n_iter_ == b.n_iter_ and a.converged_ == b.converged_
        np.testing.assert_array_equal(a.means_, b.means_)
        np.testing.assert_array_equal(a.covariances_, b.covariances_)
        assert a.lower_bounds_ == b.lower_bounds_
    result = select_model(str(path), n_components=[1, 2, 3],
                          covariance_types=("full", "diag"), random_state=0)
    assert result.best_params_["n_components"] == 3


# ---------------------------------------------------------------------------
# The search, ICL, the spurious-optimum guard (issue 13)
# ---------------------------------------------------------------------------


def with_duplicates(seed=0):
    rng = np.random.default_rng(seed)
    return np.vstack([rng.normal(size=(300, 2)), np.tile([3.0, 3.0], (15, 1))])


def test_degenerate_candidate_flagged_and_skipped():
    # 15 identical rows: one k-means start puts a component on them, its
    # covariance shrinks to reg_covar and the BIC rewards it
    X = with_duplicates()
    opts = dict(n_components=range(1, 4), covariance_types="full", n_init=1,
                init_params="kmeans", random_state=0)
    kept = select_model(X, skip_degenerate=False, **opts)
    guarded = select_model(X, **opts)
    degenerate = column(guarded.table, "degenerate")
    ratio = column(guarded.table, "min_variance_ratio")
    assert degenerate[kept.best_index_]
    assert ratio[kept.best_index_] < 1e-4
    assert not degenerate[guarded.best_index_]
    assert all(not degenerate[i] for i in guarded.ranking_)
    assert column(guarded.table, "bic")[guarded.best_index_] > column(
        kept.table, "bic")[kept.best_index_]
    assert "not ranked" in guarded.summary()


def test_degeneracy_rule():
    from fastem._search import degeneracy
    from fastem._suffstats import GaussianParams, precision_cholesky

    covs = np.array([[[1.0, 0.0], [0.0, 1.0]], [[1e-6, 0.0], [0.0, 1.0]]])
    params = GaussianParams("full", np.array([0.5, 0.5]), np.zeros((2, 2)), covs,
                            precision_cholesky(covs, "full"))
    rows, ratio, bad = degeneracy(params, 100, np.array([1.0, 1.0]))
    assert rows == 50 and ratio == pytest.approx(1e-6) and bad
    # on the data's scale: the same covariance is sound for data 1e-3 wide
    rows, ratio, bad = degeneracy(params, 100, np.array([1e-6, 1.0]))
    assert not bad
    # too few rows for a full covariance in 2-D (needs 3)
    rows, ratio, bad = degeneracy(params, 4, np.array([1e-6, 1.0]))
    assert rows == 2 and bad


def test_icl_is_bic_plus_twice_the_entropy():
    X = blobs()
    result = select_model(X, n_components=range(1, 5), covariance_types=["full", "tied"],
                          criterion="icl", random_state=0)
    assert result.best_params_ == {"n_components": 3, "covariance_type": "full"} or (
        result.best_params_["n_components"] == 3)
    icl = column(result.table, "icl")
    bic = column(result.table, "bic")
    for i, ((k, ct), model) in enumerate(result.estimators_.items()):
        z = model.predict_proba(X)
        entropy = -np.sum(np.where(z > 0, z * np.log(np.where(z > 0, z, 1.0)), 0.0))
        assert_allclose(icl[i], bic[i] + 2 * entropy, rtol=1e-10)
    assert np.all(icl >= bic - 1e-9)
    assert np.isnan(column(select_model(X, n_components=[2], random_state=0).table,
                           "icl")).all()


def test_table_reports_totals_like_mclust():
    X = load_old_faithful()
    result = select_model(X, n_components=[2, 3], covariance_types="tied",
                          random_state=0)
    t = result.table
    assert_allclose(column(t, "total_log_likelihood"),
                    column(t, "log_likelihood") * X.shape[0], rtol=1e-12)
    assert list(column(t, "n_parameters")) == [8, 11]  # mclust's df for EEE
    text = result.summary()
    assert "tied, K=3" in text.splitlines()[2] and "2314.31" in text
    assert result.ranking_[0] == result.best_index_ and len(result.ranking_) == 2


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_screening_sample_and_shared_passes(monkeypatch):
    # data larger than the screening sample: starts run on the sample, then
    # the best start of each candidate continues on all rows, all candidates
    # in the same passes; a file gives the same result as the array
    import fastem._search as search

    monkeypatch.setattr(search, "SCREEN_ROWS", 200)
    X = blobs(n=1200)
    result = select_model(X, n_components=range(1, 5), covariance_types=["full", "diag"],
                          random_state=0)
    assert result.best_params_["n_components"] == 3
    assert result.passes_ > 0
    for model in result.estimators_.values():
        # each candidate is a converged fit on all rows: one more EM step
        # from its parameters barely moves the log-likelihood
        again = fastem.GaussianMixture(
            model.n_components, covariance_type=model.covariance_type,
            weights_init=model.weights_, means_init=model.means_,
            precisions_init=model.precisions_, max_iter=1, tol=0).fit(X)
        assert abs(again.lower_bound_ - model.score(X)) < 1e-4
    assert_allclose(column(result.table, "bic"),
                    [m.bic(X) for m in result.estimators_.values()], rtol=1e-12)


def test_screening_file_equals_array(tmp_path, monkeypatch):
    import fastem._search as search

    monkeypatch.setattr(search, "SCREEN_ROWS", 200)
    X = blobs(n=900)
    path = tmp_path / "blobs.npy"
    np.save(path, X)
    a = select_model(X, n_components=range(1, 4), covariance_types="full", random_state=3)
    b = select_model(io.chunks(path, chunk_size=100), n_components=range(1, 4),
                     covariance_types="full", random_state=3)
    assert_allclose(column(a.table, "bic"), column(b.table, "bic"), rtol=1e-9)


@pytest.mark.parametrize("init", ["kmeans_standardized", "hierarchical"])
def test_new_starts_do_not_depend_on_column_units(init):
    X = load_old_faithful()
    scaled = X * np.array([1.0, 1000.0])
    a = fastem.GaussianMixture(3, covariance_type="tied", init_params=init, max_iter=0,
                               random_state=0).fit(X)
    b = fastem.GaussianMixture(3, covariance_type="tied", init_params=init, max_iter=0,
                               random_state=0).fit(scaled)
    order_a, order_b = np.argsort(a.means_[:, 0]), np.argsort(b.means_[:, 0])
    assert_allclose(a.means_[order_a] * [1.0, 1000.0], b.means_[order_b], rtol=1e-9)
    assert_allclose(a.weights_[order_a], b.weights_[order_b], rtol=1e-12)


def test_hierarchical_start_is_deterministic_and_errors_on_too_few_distinct_rows():
    X = load_old_faithful()
    a = fastem.GaussianMixture(3, init_params="hierarchical", max_iter=0,
                               random_state=0).fit(X)
    b = fastem.GaussianMixture(3, init_params="hierarchical", max_iter=0,
                               random_state=1).fit(X)
    assert_array_equal(a.means_, b.means_)  # every row is used: no draw
    dup = np.repeat(np.array([[0.0, 0.0], [1.0, 1.0]]), 10, axis=0)
    with pytest.raises(ValueError, match="only 2 distinct groups"):
        fastem.GaussianMixture(3, init_params="hierarchical").fit(dup)


def test_isolated_runs_survive_a_failing_start():
    from fastem import _em
    from fastem._data import as_data
    from fastem._suffstats import GaussianParams

    X = blobs(n=300)
    good = fastem.GaussianMixture(3, max_iter=0, random_state=0).fit(X)._params()
    # every row is infinitely far from the one component: zero density
    far = GaussianParams("spherical", np.array([1.0]), np.array([[1e6, 1e6]]),
                         np.array([1e-400]), np.array([1e200]))
    runs = [_em.Run(good, 1e-3, 1e-6, 20), _em.Run(far, 1e-3, 1e-6, 20)]
    _em.run_batch(runs, as_data(X, validate_array=np.asarray), isolate=True)
    assert runs[0].error is None and runs[0].n_iter > 0
    assert isinstance(runs[1].error, ValueError)
    with pytest.raises(ValueError):
        _em.run_batch([_em.Run(far, 1e-3, 1e-6, 20)], as_data(X, validate_array=np.asarray))


def test_n_init_and_init_params_validated():
    with pytest.raises(ValueError, match="n_init must be an int >= 1"):
        select_model(blobs(), n_components=[2], n_init=0)
    with pytest.raises(ValueError, match="Unknown init_params 'kmean'"):
        select_model(blobs(), n_components=[2], init_params="kmean")


def test_plot_marks_best_and_runner_up():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    X = load_old_faithful()
    result = select_model(X, n_components=range(1, 5), covariance_types=["full", "tied"],
                          random_state=0)
    ax = result.plot()
    labels = [c.get_label() for c in ax.collections]
    assert labels == ["best: tied, 3 components", "runner-up: tied, 4 components"]
    offsets = ax.collections[1].get_offsets()
    i = result.ranking_[1]
    assert offsets[0][1] == pytest.approx(column(result.table, "bic")[i])
