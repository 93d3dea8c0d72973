"""Tests of fastem.anomaly."""

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from sklearn.exceptions import NotFittedError
from sklearn.mixture import GaussianMixture as SkGaussianMixture

import fastem
from fastem.anomaly import density_threshold, outliers


def blobs(n, seed=0):
    rng = np.random.default_rng(seed)
    centers = np.array([[0.0, 0.0], [5.0, 0.0]])
    return centers[rng.integers(0, 2, size=n)] + rng.normal(size=(n, 2))


@pytest.fixture(scope="module")
def model():
    return fastem.GaussianMixture(2, random_state=0).fit(blobs(2000))


def test_injected_far_outliers_are_flagged(model):
    rng = np.random.default_rng(1)
    X = blobs(990, seed=2)
    far = 40.0 + rng.normal(size=(10, 2))
    X = np.vstack([X, far])
    is_out = np.r_[np.zeros(990, bool), np.ones(10, bool)]
    mask = outliers(model, X, quantile=0.01)
    assert mask.dtype == bool and mask.shape == (1000,)
    assert mask[is_out].all()
    assert mask.sum() == 10  # 1% of 1000 rows: exactly the injected ones


@pytest.mark.parametrize("n", [100, 997, 1000, 2001])
@pytest.mark.parametrize("q", [0.001, 0.01, 0.05, 0.25, 0.5, 0.9])
def test_fraction_flagged_is_quantile(model, n, q):
    X = blobs(n, seed=n)
    mask = outliers(model, X, quantile=q)
    assert abs(mask.mean() - q) <= 1.0 / n


def test_default_quantile_is_one_percent(model):
    X = blobs(1000, seed=5)
    assert_array_equal(outliers(model, X), outliers(model, X, quantile=0.01))
    assert outliers(model, X).sum() == 10


def test_scores_and_threshold_consistency(model):
    X = blobs(500, seed=3)
    mask, scores = outliers(model, X, quantile=0.05, return_scores=True)
    assert_array_equal(scores, model.score_samples(X))
    t = density_threshold(model, X, 0.05)
    assert t == pytest.approx(np.quantile(scores, 0.05))
    assert_array_equal(mask, scores < t)
    assert_array_equal(outliers(model, X, threshold=t), mask)


def test_threshold_path(model):
    X = blobs(300, seed=4)
    scores = model.score_samples(X)
    t = float(np.median(scores))
    mask, s = outliers(model, X, threshold=t, return_scores=True)
    assert_array_equal(mask, scores < t)
    assert_array_equal(s, scores)
    assert not outliers(model, X, threshold=-np.inf).any()
    assert outliers(model, X, threshold=np.inf).all()
    # threshold alone, with quantile explicitly None, is the same
    assert_array_equal(outliers(model, X, quantile=None, threshold=t), mask)


def test_threshold_from_training_data_on_new_data(model):
    t = density_threshold(model, blobs(2000), 0.01)
    far = np.array([[30.0, 30.0], [-20.0, 10.0]])
    assert outliers(model, far, threshold=t).all()


def test_works_with_sklearn_and_paths(tmp_path):
    X = blobs(400, seed=6)
    sk = SkGaussianMixture(2, random_state=0).fit(X)
    assert abs(outliers(sk, X, quantile=0.1).mean() - 0.1) <= 1 / 400
    fe = fastem.GaussianMixture(2, random_state=0).fit(X)
    path = tmp_path / "x.npy"
    np.save(path, X)
    assert_array_equal(outliers(fe, str(path), quantile=0.1),
                       outliers(fe, X, quantile=0.1))


@pytest.mark.parametrize("q", [0, 0.0, 1, 1.0, -0.1, 1.5, np.nan, True, "0.1"])
def test_bad_quantile(model, q):
    X = blobs(50)
    with pytest.raises(ValueError, match=r"quantile must be a float in the open interval"):
        outliers(model, X, quantile=q)
    with pytest.raises(ValueError, match=r"quantile must be a float in the open interval"):
        density_threshold(model, X, q)


def test_both_given(model):
    with pytest.raises(ValueError, match="either quantile or threshold, not both"):
        outliers(model, blobs(50), quantile=0.05, threshold=-3.0)
    with pytest.raises(ValueError, match="not both; got quantile=0.01"):
        outliers(model, blobs(50), quantile=0.01, threshold=-3.0)


def test_neither_given(model):
    with pytest.raises(ValueError, match="got neither"):
        outliers(model, blobs(50), quantile=None)


def test_bad_threshold(model):
    with pytest.raises(ValueError, match="threshold must be a real log-density"):
        outliers(model, blobs(50), threshold=np.nan)
    with pytest.raises(ValueError, match="threshold must be a real log-density"):
        outliers(model, blobs(50), threshold="low")


def test_unfitted_model():
    with pytest.raises(NotFittedError, match="not fitted"):
        outliers(fastem.GaussianMixture(2), blobs(50))
    with pytest.raises(NotFittedError, match="not fitted"):
        density_threshold(fastem.GaussianMixture(2), blobs(50), 0.1)


def test_model_without_score_samples():
    with pytest.raises(TypeError, match="score_samples"):
        outliers(object(), blobs(50))
