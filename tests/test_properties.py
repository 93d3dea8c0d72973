"""Property tests (hypothesis) of the invariants the design promises.

- a fit is bitwise the same for any number of threads;
- streaming the rows in chunks whose sizes are multiples of the task size
  gives bitwise the in-memory statistics;
- merging SuffStats is deterministic in a fixed order, and associative up
  to rounding;
- EM's lower bound never decreases (beyond rounding);
- rows of predict_proba sum to 1;
- save/load round-trips every fitted attribute bitwise.

Examples are few by default (the suite has a time budget);
FASTEM_PROPERTY_EXAMPLES=N runs more.
"""

import os
import warnings

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastem
from fastem import _estep
from fastem._suffstats import GaussianParams

EXAMPLES = int(os.environ.get("FASTEM_PROPERTY_EXAMPLES", "12"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None,
                    derandomize="FASTEM_PROPERTY_EXAMPLES" not in os.environ,
                    suppress_health_check=[HealthCheck.too_slow])

cov_types = st.sampled_from(["full", "tied", "diag", "spherical"])
dtypes = st.sampled_from([np.float64, np.float32])


@st.composite
def problems(draw, max_rows=20_000):
    """Rows from a random mixture, its parameters, and a dtype."""
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    d = draw(st.integers(1, 7))
    K = draw(st.integers(1, 4))
    n = draw(st.integers(max(K, 50), max_rows))
    dt = draw(dtypes)
    ct = draw(cov_types)
    offset = draw(st.sampled_from([0.0, 10.0, 1e4]))
    means = offset + rng.normal(scale=3.0, size=(K, d))
    X = means[rng.integers(K, size=n)] + rng.normal(size=(n, d))
    return X.astype(dt), ct, K, seed


def _params(X, ct, K, seed):
    rng = np.random.default_rng(seed + 1)
    means = X[rng.choice(X.shape[0], K, replace=False)].astype(np.float64)
    var = np.var(X.astype(np.float64), axis=0) + 1e-3
    if ct == "full":
        covs = np.repeat(np.diag(var)[None], K, axis=0)
        pc = np.linalg.inv(np.linalg.cholesky(covs)).transpose(0, 2, 1)
    elif ct == "tied":
        covs = np.diag(var)
        pc = np.linalg.inv(np.linalg.cholesky(covs)).T
    elif ct == "diag":
        covs = np.repeat(var[None], K, axis=0)
        pc = 1 / np.sqrt(covs)
    else:
        covs = np.full(K, var.mean())
        pc = 1 / np.sqrt(covs)
    return GaussianParams(ct, np.full(K, 1.0 / K), means, covs, pc)


def _bits(stats):
    return tuple(np.asarray(getattr(stats, f)).tobytes()
                 for f in ("nk", "s1", "s2", "ref", "ref2", "loglik", "weight_sum"))


@SETTINGS
@given(problems(), st.sampled_from([1, 2]))
def test_fit_bitwise_for_any_thread_count(problem, n_jobs):
    X, ct, K, seed = problem
    kw = dict(n_components=K, covariance_type=ct, random_state=seed % 1000, max_iter=5,
              tol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = fastem.GaussianMixture(**kw, n_jobs=1).fit(X)
        b = fastem.GaussianMixture(**kw, n_jobs=n_jobs).fit(X)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert getattr(a, name).tobytes() == getattr(b, name).tobytes(), name
    assert a.lower_bounds_ == b.lower_bounds_


@SETTINGS
@given(problems(), st.integers(1, 5), st.booleans())
def test_chunked_statistics_bitwise(problem, tasks_per_chunk, weighted):
    X, ct, K, seed = problem
    params = _params(X, ct, K, seed)
    w = (np.random.default_rng(seed).uniform(0.1, 3.0, X.shape[0]) if weighted
         else None)
    whole = _estep.compute_stats(X, params, w)
    step = _estep.task_rows(X.shape[1]) * tasks_per_chunk
    acc = _estep.StatsAccumulator(params, X.dtype)
    for lo in range(0, X.shape[0], step):
        acc.add(np.ascontiguousarray(X[lo:lo + step]),
                None if w is None else w[lo:lo + step])
    assert _bits(acc.result()) == _bits(whole)


@SETTINGS
@given(problems(max_rows=6000), st.data())
def test_merge_deterministic_and_associative(problem, data):
    X, ct, K, seed = problem
    params = _params(X, ct, K, seed)
    n = X.shape[0]
    cut1 = data.draw(st.integers(1, n - 2))
    cut2 = data.draw(st.integers(cut1 + 1, n - 1))
    parts = [_estep.compute_stats(np.ascontiguousarray(X[a:b]), params)
             for a, b in ((0, cut1), (cut1, cut2), (cut2, n))]
    left = parts[0].merge(parts[1]).merge(parts[2])
    again = parts[0].merge(parts[1]).merge(parts[2])
    assert _bits(left) == _bits(again)  # the same order: the same bits
    right = parts[0].merge(parts[1].merge(parts[2]))
    whole = _estep.compute_stats(X, params)
    for f in ("nk", "s1", "s2"):
        a, b, c = (np.asarray(getattr(s, f)) for s in (left, right, whole))
        scale = np.max(np.abs(c)) + 1.0
        # rounding only: a few hundred float64 eps of the largest entry (the
        # float32 block sums add float32 rounding per block)
        tol = (1e-5 if X.dtype == np.float32 else 1e-12) * scale
        np.testing.assert_allclose(a, b, rtol=0, atol=tol, err_msg=f)
        np.testing.assert_allclose(a, c, rtol=0, atol=tol, err_msg=f)


@SETTINGS
@given(problems(max_rows=5000))
def test_lower_bound_never_decreases(problem):
    X, ct, K, seed = problem
    X = X.astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm = fastem.GaussianMixture(K, covariance_type=ct, random_state=seed % 1000,
                                    max_iter=30, tol=0, reg_covar=1e-6).fit(X)
    lb = np.asarray(gm.lower_bounds_)
    # EM's bound is monotone; reg_covar perturbs each M-step by at most
    # O(reg_covar / variance) per row, and rounding by a few eps
    slack = 1e-6 * (1 + np.abs(lb[:-1])) + 1e-5
    assert np.all(np.diff(lb) >= -slack), np.diff(lb)


@SETTINGS
@given(problems(max_rows=5000))
def test_predict_proba_rows_sum_to_one(problem):
    X, ct, K, seed = problem
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm = fastem.GaussianMixture(K, covariance_type=ct, random_state=seed % 1000,
                                    max_iter=10).fit(X)
    P = gm.predict_proba(X)
    assert P.shape == (X.shape[0], K)
    assert np.all(P >= 0)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=0, atol=K * 4 * np.finfo(float).eps)


@SETTINGS
@given(problems(max_rows=3000), st.booleans())
def test_save_load_round_trip_bitwise(tmp_path_factory, problem, online):
    X, ct, K, seed = problem
    path = tmp_path_factory.mktemp("rt") / "m.npz"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if online:
            gm = fastem.MiniBatchGaussianMixture(K, covariance_type=ct,
                                                 random_state=seed % 1000,
                                                 batch_size=512, max_iter=2).fit(X)
        else:
            gm = fastem.GaussianMixture(K, covariance_type=ct, random_state=seed % 1000,
                                        max_iter=5).fit(X)
    gm.save(path)
    back = fastem.load(path)
    for name in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
        assert getattr(back, name).tobytes() == getattr(gm, name).tobytes(), name
        assert getattr(back, name).dtype == getattr(gm, name).dtype
    assert back.get_params() == gm.get_params()
    assert back.lower_bound_ == gm.lower_bound_ and back.n_iter_ == gm.n_iter_
    assert back.predict(X[:100]).tobytes() == gm.predict(X[:100]).tobytes()

