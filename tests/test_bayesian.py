"""BayesianGaussianMixture and MiniBatchBayesianGaussianMixture: parity with
scikit-learn, the lower bound, switching off components, out of core, Dask,
online variational Bayes and persistence."""

import re
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import BayesianGaussianMixture as SkBGM

from conftest import COVARIANCE_TYPES, make_blobs, rel_err

import fastem
from fastem import BayesianGaussianMixture, MiniBatchBayesianGaussianMixture
from fastem import _init, _initstats

PRIOR_TYPES = ("dirichlet_process", "dirichlet_distribution")
no_convergence = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

ATTRIBUTES = ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_",
              "mean_precision_", "degrees_of_freedom_", "mean_prior_", "covariance_prior_",
              "degrees_of_freedom_prior_", "mean_precision_prior_",
              "weight_concentration_prior_")


def _datasets():
    rng = np.random.default_rng(11)
    blobs, _ = make_blobs(900, [[-4, 0, 1], [0, 3, 0], [5, -1, 2]], 1.0, rng)
    A = rng.normal(size=(5, 5))
    far = 100.0 + np.concatenate([rng.normal(size=(200, 5)) @ A * 0.3 + 2 * k
                                  for k in range(3)])
    from fastem.datasets import load_old_faithful

    return {"blobs": blobs, "far_correlated": far, "old_faithful": load_old_faithful()}


DATASETS = _datasets()


def _start(X, K, seed=0):
    """Random initial responsibilities, the start given to both libraries."""
    rng = np.random.default_rng(seed)
    resp = rng.uniform(size=(X.shape[0], K))
    return resp / resp.sum(axis=1, keepdims=True)


def _fit_pair(X, resp, monkeypatch, **kw):
    """scikit-learn's and fastem's fits from the same responsibilities."""
    sk = SkBGM(**kw)
    sk._initialize_parameters = lambda X_, rs, xp=None: sk._initialize(X_, resp.astype(X.dtype))
    sk.fit(X)
    K = resp.shape[1]
    stats = _initstats.stats_from_resp(X, resp, np.zeros((K, X.shape[1])), kw["covariance_type"])
    monkeypatch.setattr(_init, "initial_stats", lambda *a, **k: stats)
    fb = BayesianGaussianMixture(**kw).fit(X)
    monkeypatch.undo()
    return sk, fb


def _assert_same(fb, sk, rtol):
    for name in ATTRIBUTES:
        assert rel_err(getattr(fb, name), getattr(sk, name)) <= rtol, name
    for a, b in zip(np.ravel(fb.weight_concentration_), np.ravel(sk.weight_concentration_)):
        assert rel_err(a, b) <= rtol, "weight_concentration_"
    sk_bounds = np.asarray(sk.lower_bounds_, dtype=np.float64).ravel()
    assert rel_err(fb.lower_bounds_, sk_bounds) <= rtol, "lower_bounds_"
    assert rel_err(fb.lower_bound_, float(np.ravel(sk.lower_bound_)[0])) <= rtol
    assert fb.n_iter_ == sk.n_iter_ and fb.converged_ == sk.converged_


@pytest.mark.parity
@no_convergence
@pytest.mark.parametrize("data", sorted(DATASETS))
@pytest.mark.parametrize("pt", PRIOR_TYPES)
@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_same_answer_as_sklearn_float64(data, pt, ct, monkeypatch):
    # the bound: every attribute within 1e-8 relative after 25
    # iterations from the same start (measured: below 1e-10)
    X = DATASETS[data]
    kw = dict(n_components=4, covariance_type=ct, weight_concentration_prior_type=pt,
              max_iter=25, tol=0, random_state=0)
    sk, fb = _fit_pair(X, _start(X, 4), monkeypatch, **kw)
    _assert_same(fb, sk, 1e-8)
    # predictions: the attributes' differences (up to 1e-8) times the size of
    # the quadratic forms of the E-step (up to about 100 on these data)
    Xt = X[::7]
    assert rel_err(fb.score_samples(Xt), sk.score_samples(Xt)) <= 1e-6
    assert rel_err(fb.predict_proba(Xt), sk.predict_proba(Xt)) <= 1e-6
    assert rel_err(fb.score(Xt), sk.score(Xt)) <= 1e-6
    p = sk.predict_proba(Xt)
    clear = np.sort(p, axis=1)[:, -1] - np.sort(p, axis=1)[:, -2] > 1e-6
    np.testing.assert_array_equal(fb.predict(Xt)[clear], sk.predict(Xt)[clear])


@pytest.mark.parity
@no_convergence
@pytest.mark.parametrize("pt", PRIOR_TYPES)
@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_same_answer_as_sklearn_float32(pt, ct, monkeypatch):
    X = DATASETS["blobs"].astype(np.float32)
    kw = dict(n_components=4, covariance_type=ct, weight_concentration_prior_type=pt,
              max_iter=25, tol=0, random_state=0)
    sk, fb = _fit_pair(X, _start(X, 4, seed=1), monkeypatch, **kw)
    _assert_same(fb, sk, 1e-4)


@pytest.mark.parity
@pytest.mark.parametrize("prior", [
    dict(weight_concentration_prior=0.5, mean_precision_prior=0.1, mean_prior=[1.0, 2.0, 3.0],
         degrees_of_freedom_prior=5.5),
    dict(covariance_prior="given"),
])
@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
@no_convergence
def test_given_priors_same_as_sklearn(prior, ct, monkeypatch):
    X = DATASETS["blobs"]
    if prior.get("covariance_prior") == "given":
        prior = dict(covariance_prior={"full": np.diag([1.0, 2.0, 0.5]) + 0.1,
                                       "tied": np.eye(3) * 0.7, "diag": np.array([1.0, 2, 3]),
                                       "spherical": 0.8}[ct])
    kw = dict(n_components=3, covariance_type=ct, max_iter=10, tol=0, **prior)
    sk, fb = _fit_pair(X, _start(X, 3, seed=2), monkeypatch, **kw)
    _assert_same(fb, sk, 1e-8)


@no_convergence
@pytest.mark.parametrize("pt", PRIOR_TYPES)
@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_lower_bound_never_decreases(pt, ct):
    for name, X in DATASETS.items():
        for init in ("kmeans", "random"):
            fb = BayesianGaussianMixture(
                n_components=5, covariance_type=ct, weight_concentration_prior_type=pt,
                max_iter=60, tol=0, init_params=init, random_state=0).fit(X)
            lb = np.asarray(fb.lower_bounds_)
            # rounding of a sum over the rows: a few eps of its magnitude
            slack = 64 * np.finfo(np.float64).eps * np.max(np.abs(lb))
            assert np.all(np.diff(lb) >= -slack), (name, init, np.diff(lb).min())


@pytest.mark.parametrize("pt", PRIOR_TYPES)
@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_extra_components_switched_off(pt, ct):
    rng = np.random.default_rng(3)
    centres = np.array([[0.0, 0.0], [8.0, 1.0], [-4.0, 8.0]])
    truth = np.array([0.5, 0.3, 0.2])
    labels = rng.choice(3, size=3000, p=truth)
    X = centres[labels] + rng.normal(size=(3000, 2))
    fb = BayesianGaussianMixture(n_components=10, covariance_type=ct,
                                 weight_concentration_prior_type=pt, max_iter=2000,
                                 tol=1e-6, random_state=0).fit(X)
    assert fb.converged_
    w = np.sort(fb.weights_)[::-1]
    assert np.all(w[3:] < 1e-3), w
    assert fb.effective_n_components() == 3
    np.testing.assert_allclose(w[:3], truth, atol=0.02)
    assert np.all(np.diff(fb.lower_bounds_) >= -1e-9 * abs(fb.lower_bound_))


# -- drivers: out of core, Dask, threads, weights -------------------------------------


def _model_arrays(m):
    return [m.weights_, m.means_, m.covariances_, m.precisions_cholesky_, m.mean_precision_,
            np.ravel(m.weight_concentration_), np.atleast_1d(m.degrees_of_freedom_),
            np.asarray(m.lower_bounds_)]


def _assert_close(a, b, rtol):
    for x, y in zip(_model_arrays(a), _model_arrays(b)):
        assert rel_err(x, y) <= rtol
    assert a.n_iter_ == b.n_iter_


@no_convergence
@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_out_of_core_equals_in_memory(ct, tmp_path):
    X = DATASETS["blobs"]
    kw = dict(n_components=4, covariance_type=ct, max_iter=20, tol=0, random_state=0)
    ref = BayesianGaussianMixture(**kw).fit(X)
    path = tmp_path / "x.npy"
    np.save(path, X)
    for source, chunk in ((str(path), 4096), (str(path), 97),
                          ([X[:301], X[301:]], None)):
        m = BayesianGaussianMixture(chunk_size=chunk, **kw).fit(source)
        _assert_close(m, ref, 1e-9)
    w = np.random.default_rng(0).uniform(0.5, 2.0, size=len(X))
    ref_w = BayesianGaussianMixture(**kw).fit(X, sample_weight=w)
    _assert_close(BayesianGaussianMixture(chunk_size=128, **kw).fit(str(path), sample_weight=w),
                  ref_w, 1e-9)


@no_convergence
@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_dask_equals_in_memory(ct):
    da = pytest.importorskip("dask.array")
    X = DATASETS["blobs"]
    kw = dict(n_components=4, covariance_type=ct, max_iter=20, tol=0, random_state=0)
    ref = BayesianGaussianMixture(**kw).fit(X)
    m = BayesianGaussianMixture(**kw).fit(da.from_array(X, chunks=301))
    _assert_close(m, ref, 1e-9)
    np.testing.assert_array_equal(np.asarray(m.predict(da.from_array(X, chunks=301))),
                                  ref.predict(X))


@no_convergence
def test_threads_bitwise_and_fit_predict():
    X = DATASETS["far_correlated"]
    kw = dict(n_components=4, max_iter=15, tol=0, random_state=0)
    a = BayesianGaussianMixture(n_jobs=1, **kw).fit(X)
    b = BayesianGaussianMixture(n_jobs=2, **kw).fit(X)
    for x, y in zip(_model_arrays(a), _model_arrays(b)):
        np.testing.assert_array_equal(x, y)
    labels = BayesianGaussianMixture(**kw).fit_predict(X)
    np.testing.assert_array_equal(labels, a.predict(X))


@no_convergence
@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_integer_weights_equal_repeated_rows(ct):
    X = DATASETS["blobs"][:300]
    w = np.random.default_rng(1).integers(1, 4, size=len(X))
    start = _start(X, 3)
    resp_rep = np.repeat(start, w, axis=0)
    # the initial statistics, like every pass's, are in units of the weights
    # divided by their maximum (the fit scales them back)
    stats_w = _initstats.stats_from_resp(X, start * (w / w.max())[:, None], np.zeros((3, 3)), ct)
    stats_r = _initstats.stats_from_resp(np.repeat(X, w, axis=0), resp_rep, np.zeros((3, 3)), ct)
    kw = dict(n_components=3, covariance_type=ct, max_iter=10, tol=0)
    orig = _init.initial_stats
    try:
        _init.initial_stats = lambda *a, **k: stats_w
        a = BayesianGaussianMixture(**kw).fit(X, sample_weight=w.astype(float))
        _init.initial_stats = lambda *a, **k: stats_r
        b = BayesianGaussianMixture(**kw).fit(np.repeat(X, w, axis=0))
    finally:
        _init.initial_stats = orig
    _assert_close(a, b, 1e-9)


@no_convergence
def test_warm_start_continues():
    X = DATASETS["blobs"]
    kw = dict(n_components=4, tol=0, random_state=0)
    ten = BayesianGaussianMixture(max_iter=10, **kw).fit(X)
    warm = BayesianGaussianMixture(max_iter=5, warm_start=True, **kw).fit(X)
    warm.fit(X)
    np.testing.assert_allclose(warm.means_, ten.means_, rtol=1e-12)
    assert warm.lower_bounds_ == ten.lower_bounds_[5:]


# -- API, errors, warnings ------------------------------------------------------------


@pytest.mark.parametrize("kw, match", [
    (dict(weight_concentration_prior=-1), "The 'weight_concentration_prior' parameter of "
     "BayesianGaussianMixture must be None or a float in the range (0.0, inf). Got -1"),
    (dict(weight_concentration_prior_type="x"), "The 'weight_concentration_prior_type' "
     "parameter of BayesianGaussianMixture must be a str among"),
    (dict(mean_precision_prior=0), "The 'mean_precision_prior' parameter"),
    (dict(covariance_prior="a"), "The 'covariance_prior' parameter of "
     "BayesianGaussianMixture must be None, an array-like or a float"),
    (dict(mean_prior=3), "The 'mean_prior' parameter of BayesianGaussianMixture must be "
     "None or an array-like. Got 3"),
    (dict(degrees_of_freedom_prior=1.0), "The parameter 'degrees_of_freedom_prior' should "
     "be greater than 2, but got 1.000"),
    (dict(mean_prior=[1.0, 2.0]), "The parameter 'means' should have the shape of (3,), "
     "but got (2,)"),
    (dict(covariance_prior=np.eye(2)), "The parameter 'full covariance_prior' should have "
     "the shape of (3, 3)"),
    (dict(covariance_prior=-np.eye(3)), "'full precision' should be symmetric, "
     "positive-definite"),
    (dict(covariance_type="diag", covariance_prior=np.array([1.0, -1, 1])),
     "'diag precision' should be positive"),
])
def test_errors_match_sklearn(kw, match):
    X = DATASETS["blobs"]
    with pytest.raises(ValueError, match=re.escape(match)):
        BayesianGaussianMixture(**kw).fit(X)
    with pytest.raises(ValueError, match=re.escape(match)):
        SkBGM(**kw).fit(X)


def test_failed_refit_leaves_model_unchanged():
    X = DATASETS["blobs"]
    m = BayesianGaussianMixture(n_components=3, random_state=0).fit(X)
    before = {k: np.copy(v) if isinstance(v, np.ndarray) else v for k, v in vars(m).items()}
    m.set_params(mean_prior=[1.0])
    with pytest.raises(ValueError, match="should have the shape"):
        m.fit(X)
    assert set(vars(m)) == set(before)
    np.testing.assert_array_equal(m.means_, before["means_"])


def test_convergence_warning_and_verbose(capsys):
    X = DATASETS["blobs"]
    with pytest.warns(ConvergenceWarning, match="Best performing initialization did not "
                      "converge"):
        BayesianGaussianMixture(n_components=3, max_iter=2, verbose=2,
                                verbose_interval=1).fit(X)
    out = capsys.readouterr().out
    assert "Initialization 0" in out and "Iteration 2\t time lapse" in out
    assert "Initialization did not converge. time lapse" in out


def test_no_likelihood_criteria_and_sample():
    m = BayesianGaussianMixture(n_components=3, random_state=0).fit(DATASETS["blobs"])
    assert not hasattr(m, "bic") and not hasattr(m, "aic")
    with pytest.raises(AttributeError, match="effective_n_components"):
        m.bic(DATASETS["blobs"])
    Xs, ys = m.sample(50)
    assert Xs.shape == (50, 3) and ys.shape == (50,)
    with pytest.raises(ValueError, match="threshold must be a float in"):
        m.effective_n_components(1.5)


# -- online variational Bayes ------------------------------------------------------------


def _stream(n, seed):
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [6.0, 1.0], [-3.0, 7.0]])
    labels = rng.choice(3, size=n, p=[0.5, 0.3, 0.2])
    return centres[labels] + rng.normal(size=(n, 2)) * np.array([1.0, 0.7])


def _one_pass_vs_batch(n):
    X, Xt = _stream(n, 0), _stream(20_000, 1)
    with warnings.catch_warnings():
        # the bound is a sum over the rows: tol=1e-3 is out of reach of 1e5 rows
        warnings.simplefilter("ignore", ConvergenceWarning)
        batch = BayesianGaussianMixture(n_components=6, random_state=0, max_iter=300).fit(X)
    online = MiniBatchBayesianGaussianMixture(n_components=6, random_state=0, max_iter=1,
                                              batch_size=4096)
    online.fit(X)  # one pass: no convergence test, so no warning
    assert online.n_iter_ == 1 and online.n_rows_seen_ == n
    ref, got = batch.score(Xt), online.score(Xt)
    assert abs(got - ref) <= 0.01 * abs(ref), (got, ref)


def test_online_one_pass_near_batch_small():
    _one_pass_vs_batch(100_000)


@pytest.mark.slow
def test_online_one_pass_near_batch_1e6_rows():
    _one_pass_vs_batch(1_000_000)


@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_partial_fit_save_load_resumes_exactly(ct, tmp_path):
    X = _stream(6000, 2)
    kw = dict(n_components=4, covariance_type=ct, random_state=0)
    a = MiniBatchBayesianGaussianMixture(**kw)
    b = MiniBatchBayesianGaussianMixture(**kw)
    batches = np.array_split(X, 12)
    for i, Xb in enumerate(batches):
        a.partial_fit(Xb)
        if i < 5:
            b.partial_fit(Xb)
        elif i == 5:
            b.save(tmp_path / "m.npz")
            b = fastem.load(tmp_path / "m.npz")
            b.partial_fit(Xb)
        else:
            b.partial_fit(Xb)
    for x, y in zip(_model_arrays_online(a), _model_arrays_online(b)):
        np.testing.assert_array_equal(x, y)
    assert a.n_steps_ == b.n_steps_ == 12


def _model_arrays_online(m):
    return [m.weights_, m.means_, m.covariances_, m.precisions_cholesky_, m.mean_precision_,
            np.ravel(m.weight_concentration_), np.atleast_1d(m.degrees_of_freedom_),
            m._stats.nk, m._stats.s2]


def test_batch_model_save_load_and_validation(tmp_path):
    X = DATASETS["blobs"]
    m = BayesianGaussianMixture(n_components=3, random_state=0).fit(X)
    m.save(tmp_path / "b.npz")
    m2 = fastem.load(tmp_path / "b.npz")
    np.testing.assert_array_equal(m2.predict_proba(X), m.predict_proba(X))
    m.mean_precision_ = -m.mean_precision_
    m.save(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match="mean_precision_"):
        fastem.load(tmp_path / "bad.npz")


def test_partial_fit_errors():
    m = MiniBatchBayesianGaussianMixture(n_components=3, learning_decay=0.3)
    with pytest.raises(ValueError, match=r"'learning_decay' parameter .* must be in \(0.5, 1\]"):
        m.partial_fit(DATASETS["blobs"])
    m = MiniBatchBayesianGaussianMixture(n_components=5)
    with pytest.raises(ValueError, match="The first mini-batch initialises the model"):
        m.partial_fit(DATASETS["blobs"][:3])
    assert not hasattr(m, "n_features_in_")
