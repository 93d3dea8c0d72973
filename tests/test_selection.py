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


def test_old_faithful_eruptions_bic_picks_two():
    # The settings documented in select_model's docstring. K=2, 3 and 4 are
    # within ~1 BIC unit on these data (and thorough fits prefer K=4), so this
    # pins the documented default-settings outcome rather than a law of nature.
    X = load_old_faithful(columns="eruptions")
    result = select_model(X, random_state=0)
    assert len(result.table) == 40
    # with one feature, 'full', 'diag' and 'spherical' are the same model
    # (equal BIC up to the last bits), so any of them may come first
    assert result.best_params_["n_components"] == 2
    assert result.best_params_["covariance_type"] in ("full", "diag", "spherical")
    means = np.sort(result.best_estimator_.means_.ravel())
    assert_allclose(means, [2.0, 4.3], atol=0.05)


def test_old_faithful_2d_bic_picks_two_full():
    X = load_old_faithful()
    result = select_model(X, n_components=range(1, 7), random_state=0)
    assert result.best_params_ == {"n_components": 2, "covariance_type": "full"}
    assert_allclose(column(result.table, "bic")[result.best_index_], 2322.19, atol=0.1)


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
    assert result.best_params_["n_components"] == 3
    key = (3, "full")
    # candidates are fitted on the training rows, the winner is refitted on all
    best = result.best_estimator_
    assert best is not result.estimators_[key]
    assert best.n_components == 3
    # same clusters, slightly different rows
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
    assert np.isfinite(column(result.table, "heldout")).all()
    assert result.best_params_["n_components"] == 3
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
    from fastem.mixture import fit_sharing_passes

    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(size=(3000, 2)) + c for c in ([0, 0], [6, 0], [0, 6])])
    path = tmp_path / "x.npy"
    np.save(path, X)
    src = io.chunks(str(path), chunk_size=1000)
    reads = []
    original = src.iter_with_offsets

    def counting():
        reads.append(1)
        return original()

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
