"""Timing fits of fastem and scikit-learn from identical initial parameters."""

import contextlib
import gc
import math
import statistics
import time
import warnings

import numpy as np

from ._workloads import INIT_ITERS, INIT_SUBSAMPLE, LIBRARIES

# Target differenced time (seconds) when choosing fastem's iteration count.
AUTO_TARGET_S = 0.2
AUTO_MAX_ITERS = 50


#: The posterior that starts both libraries' BayesianGaussianMixture (set as
#: fitted attributes, then ``warm_start=True``: both continue from it).
POSTERIOR = ("weight_concentration_", "mean_precision_", "means_", "degrees_of_freedom_",
             "covariances_", "precisions_cholesky_")
ESTIMATORS = ("gmm", "bayesian")


def initial_parameters(X, n_components, covariance_type, estimator="gmm"):
    """Explicit initial parameters from a quick fastem fit on a subsample.

    A fit with ``max_iter=3`` (k-means init, ``random_state=0``) on the first
    20,000 rows (in float64) gives ``weights_init``, ``means_init`` and
    ``precisions_init`` for both libraries; for ``estimator='bayesian'``, a
    BayesianGaussianMixture fit gives the posterior (:data:`POSTERIOR`) both
    libraries start from.
    """
    from ..mixture import GaussianMixture

    sub = np.ascontiguousarray(X[:INIT_SUBSAMPLE], dtype=np.float64)
    if estimator == "bayesian":
        from ..bayesian import BayesianGaussianMixture

        bgm = BayesianGaussianMixture(n_components=n_components,
                                      covariance_type=covariance_type, max_iter=INIT_ITERS,
                                      tol=0.0, random_state=0)
        with _quiet():
            bgm.fit(sub)
        return {name: _copy(getattr(bgm, name)) for name in POSTERIOR}
    gm = GaussianMixture(n_components=n_components, covariance_type=covariance_type,
                         max_iter=INIT_ITERS, tol=0.0, random_state=0)
    with _quiet():
        gm.fit(sub)
    return {"weights_init": gm.weights_.copy(), "means_init": gm.means_.copy(),
            "precisions_init": gm.precisions_.copy()}


@contextlib.contextmanager
def _quiet():
    """Silence the ConvergenceWarning of fits stopped by max_iter."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def _copy(value):
    return tuple(np.copy(v) for v in value) if isinstance(value, tuple) else np.copy(value)


def _bayesian(lib, K, ct, max_iter, tol, init, n_jobs, random_state):
    """A BayesianGaussianMixture of either library that continues from the
    posterior ``init`` (warm start), or starts afresh when ``init`` is None."""
    if lib == "fastem":
        from ..bayesian import BayesianGaussianMixture

        est = BayesianGaussianMixture(n_components=K, covariance_type=ct, max_iter=max_iter,
                                      tol=tol, random_state=random_state, n_jobs=n_jobs,
                                      warm_start=True)
    else:
        from sklearn.mixture import BayesianGaussianMixture

        est = BayesianGaussianMixture(n_components=K, covariance_type=ct, max_iter=max_iter,
                                      tol=tol, random_state=random_state, warm_start=True)
    if init is not None:
        for name, value in init.items():
            setattr(est, name, _copy(value))
        est.converged_ = False
        est.lower_bound_ = -np.inf
    return est


def _estimator(lib, K, ct, max_iter, tol, init, n_jobs=None, random_state=0, estimator="gmm"):
    if lib not in LIBRARIES:
        raise ValueError(f"Unknown library {lib!r}; expected one of {', '.join(LIBRARIES)}")
    if estimator == "bayesian":
        return _bayesian(lib, K, ct, max_iter, tol, init, n_jobs, random_state)
    if estimator != "gmm":
        raise ValueError(f"Unknown estimator {estimator!r}; expected one of "
                         f"{', '.join(ESTIMATORS)}")
    if lib == "fastem":
        from ..mixture import GaussianMixture

        return GaussianMixture(n_components=K, covariance_type=ct, max_iter=max_iter,
                               tol=tol, random_state=random_state, n_jobs=n_jobs,
                               **(init or {}))
    if lib == "sklearn":
        from sklearn.mixture import GaussianMixture

        return GaussianMixture(n_components=K, covariance_type=ct, max_iter=max_iter,
                               tol=tol, random_state=random_state, **(init or {}))
    raise ValueError(f"Unknown library {lib!r}; expected one of {', '.join(LIBRARIES)}")


@contextlib.contextmanager
def _blas_limit(blas_threads):
    """Limit BLAS threads (scikit-learn's) when ``blas_threads`` is given."""
    if blas_threads is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=int(blas_threads), user_api="blas"):
        yield


def _timed_fit(lib, X, K, ct, max_iter, init, n_jobs=None, blas_threads=None,
               estimator="gmm"):
    est = _estimator(lib, K, ct, max_iter, 0.0, init, n_jobs, estimator=estimator)
    gc.collect()
    with _quiet(), _blas_limit(blas_threads if lib == "sklearn" else None):
        t0 = time.perf_counter()
        est.fit(X)
        t = time.perf_counter() - t0
    return t, est


def warm_up(lib, n_features, n_components, covariance_type, dtype, n_jobs=None,
            estimator="gmm"):
    """A tiny fit with the same dtype and covariance type (compiles the JIT)."""
    rng = np.random.default_rng(1)
    n = max(50 * n_components, 1000)
    Xw = rng.standard_normal((n, n_features)).astype(dtype)
    est = _estimator(lib, n_components, covariance_type, 2, 0.0, None, n_jobs,
                     estimator=estimator)
    with _quiet():
        est.fit(Xw)
        if lib == "fastem":
            est.predict_proba(Xw)


def _lower_bounds(est):
    lbs = getattr(est, "lower_bounds_", None)
    if lbs is None:
        return [float(est.lower_bound_)]
    # scikit-learn's tied BayesianGaussianMixture keeps arrays of one value
    return [float(np.ravel(v)[0]) for v in lbs]


def _per_iteration(lib, X, K, ct, m, init, repeats, n_jobs=None, blas_threads=None,
                   estimator="gmm"):
    """Differenced timings of one library: dict with per-repeat values."""
    per_iter, first, lbs = [], [], None
    for _ in range(repeats):
        t1, _est = _timed_fit(lib, X, K, ct, 1, init, n_jobs, blas_threads, estimator)
        tm, est = _timed_fit(lib, X, K, ct, 1 + m, init, n_jobs, blas_threads, estimator)
        per_iter.append((tm - t1) / m)
        first.append(t1)
        lbs = _lower_bounds(est)
    return {
        "ms_per_iter": 1e3 * statistics.median(per_iter),
        "ms_per_iter_repeats": [1e3 * v for v in per_iter],
        "ms_fit_1_iter": 1e3 * statistics.median(first),
        "iters_timed": m,
        "lower_bounds": lbs,
    }


def _auto_iters(X, K, ct, init, n_jobs, minimum, estimator="gmm"):
    t1, _ = _timed_fit("fastem", X, K, ct, 1, init, n_jobs, estimator=estimator)
    t3, _ = _timed_fit("fastem", X, K, ct, 3, init, n_jobs, estimator=estimator)
    est = max((t3 - t1) / 2.0, 1e-6)
    m = int(math.ceil(AUTO_TARGET_S / est))
    return max(minimum, min(AUTO_MAX_ITERS, max(2, m)))
