"""Stepwise online EM: MiniBatchGaussianMixture."""

import warnings

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.exceptions import ConvergenceWarning

import fastem
from fastem import io
from fastem._suffstats import SuffStats

import reference

COV_TYPES = ["full", "tied", "diag", "spherical"]


@pytest.fixture(scope="module")
def data():
    X, y = make_blobs(60_000, n_features=4, centers=5, random_state=7)
    return X[:50_000], X[50_000:]


@pytest.fixture(scope="module")
def batch_model(data):
    Xtr, _ = data
    return fastem.GaussianMixture(5, random_state=0, tol=1e-8, max_iter=300).fit(Xtr)


def _stream(model, X, bs):
    for lo in range(0, len(X), bs):
        model.partial_fit(X[lo:lo + bs])
    return model


@pytest.mark.parametrize("ct", COV_TYPES)
def test_one_pass_reaches_batch_likelihood(data, ct):
    Xtr, Xte = data
    batch = fastem.GaussianMixture(5, covariance_type=ct, random_state=0, tol=1e-8,
                                   max_iter=300).fit(Xtr)
    online = _stream(fastem.MiniBatchGaussianMixture(5, covariance_type=ct,
                                                     batch_size=2048, random_state=0),
                     Xtr, 2048)
    rel = abs(online.score(Xte) - batch.score(Xte)) / abs(batch.score(Xte))
    assert rel < 0.01
    # covariances stay positive definite
    if ct in ("full",):
        assert np.all(np.linalg.eigvalsh(online.covariances_) > 0)
    elif ct == "tied":
        assert np.all(np.linalg.eigvalsh(online.covariances_) > 0)
    else:
        assert np.all(online.covariances_ > 0)


def test_first_step_is_an_exact_em_step(data):
    """With burn_in=1 the first update is one EM step on the first batch."""
    Xtr, _ = data
    B = Xtr[:3000]
    g = fastem.GaussianMixture(5, random_state=0, max_iter=2, tol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        g.fit(B)
    init = dict(weights_init=g.weights_, means_init=g.means_,
                precisions_init=g.precisions_)
    m = fastem.MiniBatchGaussianMixture(5, **init).partial_fit(B)
    params = {"covariance_type": "full", "weights": g.weights_, "means": g.means_,
              "precisions_cholesky": g.precisions_cholesky_}
    resp, _ = reference.e_step(B, params)
    ref = reference.m_step(B, resp, 1e-6, "full")
    np.testing.assert_allclose(m.means_, ref["means"], rtol=1e-10)
    np.testing.assert_allclose(m.covariances_, ref["covariances"], rtol=1e-9)
    np.testing.assert_allclose(m.weights_, ref["weights"], rtol=1e-10)


def test_step_size_blending_matches_formula(data):
    """Second step: stats = (1 - rho) s1 + rho s2 with rho = (1 + offset) ** -decay."""
    Xtr, _ = data
    B1, B2 = Xtr[:2000], Xtr[2000:4000]
    m = fastem.MiniBatchGaussianMixture(5, random_state=0, learning_offset=3.0,
                                        learning_decay=0.8)
    m.partial_fit(B1)
    s1 = m._stats.copy()
    params = m._iterate
    m.partial_fit(B2)
    rho = (1 + 3.0) ** -0.8
    resp, _ = reference.e_step(B2, {"covariance_type": "full", "weights": params.weights,
                                    "means": params.means,
                                    "precisions_cholesky": params.precisions_cholesky})
    nk = resp.sum(0) / len(B2)
    blended_nk = (1 - rho) * s1.nk + rho * nk
    np.testing.assert_allclose(m._stats.nk, blended_nk, rtol=1e-12)
    np.testing.assert_allclose(m.weights_, blended_nk / blended_nk.sum(), rtol=1e-9)


def test_fit_passes_and_sources(tmp_path, data):
    Xtr, Xte = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        m = fastem.MiniBatchGaussianMixture(5, random_state=0, max_iter=3,
                                            batch_size=4096).fit(Xtr)
    assert 1 <= m.n_iter_ <= 3 and len(m.lower_bounds_) == m.n_iter_
    np.save(tmp_path / "x.npy", Xtr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        f = fastem.MiniBatchGaussianMixture(5, random_state=0, max_iter=2,
                                            chunk_size=10_000).fit(str(tmp_path / "x.npy"))
    assert f.n_rows_seen_ == 2 * len(Xtr) or f.n_iter_ == 1
    assert abs(f.score(Xte) - m.score(Xte)) / abs(m.score(Xte)) < 0.01


def test_averaging_and_burn_in(data):
    Xtr, Xte = data
    m = _stream(fastem.MiniBatchGaussianMixture(5, random_state=0, average=True,
                                                burn_in=3), Xtr, 2048)
    assert m._avg is not None and m._n_avg == m.n_steps_ - 3 + 1
    np.testing.assert_allclose(m.means_, m._avg.means)
    assert m.score(Xte) > -20


def test_sample_weight_integer_equals_repeats(data):
    Xtr, _ = data
    B = Xtr[:1500]
    w = np.random.default_rng(1).integers(1, 4, size=len(B))
    g = fastem.GaussianMixture(5, random_state=0, max_iter=3, tol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        g.fit(B)
    init = dict(weights_init=g.weights_, means_init=g.means_,
                precisions_init=g.precisions_)
    a = fastem.MiniBatchGaussianMixture(5, **init).partial_fit(B, sample_weight=w)
    b = fastem.MiniBatchGaussianMixture(5, **init).partial_fit(np.repeat(B, w, axis=0))
    np.testing.assert_allclose(a.means_, b.means_, rtol=1e-10)
    np.testing.assert_allclose(a.covariances_, b.covariances_, rtol=1e-9)


def test_failed_partial_fit_leaves_model_unchanged(data):
    Xtr, _ = data
    m = _stream(fastem.MiniBatchGaussianMixture(5, random_state=0), Xtr[:8192], 4096)
    before = {k: (v.copy() if isinstance(v, np.ndarray) else v)
              for k, v in vars(m).items() if not isinstance(v, (SuffStats,))}
    stats_before = m._stats.copy()
    bad = Xtr[:100].copy()
    bad[17, 1] = np.inf
    with pytest.raises(ValueError, match="row 17"):
        m.partial_fit(bad)
    with pytest.raises(ValueError, match="X has 3 features"):
        m.partial_fit(Xtr[:100, :3])
    for k, v in before.items():
        now = getattr(m, k)
        if isinstance(v, np.ndarray):
            assert np.array_equal(now, v), k
        elif isinstance(v, float) and np.isnan(v):
            assert np.isnan(now)
        elif not isinstance(v, (np.random.RandomState, fastem.GaussianParams)):
            assert now == v, k
    assert np.array_equal(m._stats.s2, stats_before.s2)


def test_first_partial_fit_failure_leaves_estimator_unfitted():
    m = fastem.MiniBatchGaussianMixture(3)
    with pytest.raises(ValueError, match="n_samples >= n_components"):
        m.partial_fit(np.random.default_rng(0).standard_normal((2, 2)))
    assert not hasattr(m, "n_features_in_")
    assert not hasattr(m, "means_")


@pytest.mark.parametrize("kw, msg", [
    (dict(learning_decay=0.5), "learning_decay"),
    (dict(learning_decay=1.5), "learning_decay"),
    (dict(learning_offset=-1), "learning_offset"),
    (dict(batch_size=0), "batch_size"),
    (dict(burn_in=0), "burn_in"),
    (dict(average=-2), "average"),
])
def test_invalid_parameters(kw, msg):
    with pytest.raises(ValueError, match=msg):
        fastem.MiniBatchGaussianMixture(2, **kw).partial_fit(np.zeros((10, 2)) + np.arange(10)[:, None])


def test_partial_fit_rejects_sources(tmp_path):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((100, 2)))
    with pytest.raises(TypeError, match="use fit"):
        fastem.MiniBatchGaussianMixture(2).partial_fit(str(tmp_path / "x.npy"))


def test_chunk_source_one_shot_iterator_single_pass():
    rng = np.random.default_rng(0)
    blocks = (rng.standard_normal((1000, 2)) + i % 2 * 8 for i in range(10))
    src = io.chunks(blocks)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        m = fastem.MiniBatchGaussianMixture(2, random_state=0, max_iter=1,
                                            batch_size=500)
        # a one-shot iterator can be read only once: sampling + one pass is too
        # much, and the error says so
        with pytest.raises(ValueError, match="one-shot"):
            m.fit(src)


def test_progress_bar_and_missing_tqdm(data, capsys, monkeypatch):
    Xtr, _ = data
    X = Xtr[:20_000]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = fastem.MiniBatchGaussianMixture(5, random_state=0, max_iter=2,
                                            progress=True).fit(X)
        b = fastem.MiniBatchGaussianMixture(5, random_state=0, max_iter=2).fit(X)
    assert "online EM" in capsys.readouterr().err
    np.testing.assert_array_equal(a.means_, b.means_)
    monkeypatch.setitem(__import__("sys").modules, "tqdm", None)
    with pytest.raises(ImportError, match=r"fastem\[progress\]"):
        fastem.MiniBatchGaussianMixture(5, max_iter=1, progress=True).fit(X)
