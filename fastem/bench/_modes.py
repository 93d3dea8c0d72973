"""The --end-to-end and --compile modes of fastem.bench."""

import gc
import os
import shutil
import statistics
import tempfile
import textwrap
import time

import numpy as np

from ._memory import _run_child
from ._timing import _estimator, _quiet, warm_up
from ._workloads import LIBRARIES, _describe, _progress, make_blobs


def run_end_to_end(tag, scale=1.0, dtype="float64", repeats=1, libraries=LIBRARIES,
                   n_jobs=None, tol=1e-3, verbose=False):
    """Total fit time with default initialisation, EM until ``tol``.

    fastem: ``GaussianMixture(n_components=K, covariance_type=T,
    random_state=0, n_jobs=n_jobs)``; scikit-learn: the same with its
    defaults (k-means on all rows, ``max_iter=100``).  Medians over repeats.
    """
    res = _describe(tag, scale, dtype)
    n, d, K, ct = res["n_samples"], res["n_features"], res["n_components"], \
        res["covariance_type"]
    dtype = np.dtype(dtype)
    _progress(f"[{tag} {dtype.name}] generating {n:,} x {d} blobs (end-to-end)", verbose)
    X, _ = make_blobs(n, d, K, dtype)
    res["X_nbytes"] = int(X.nbytes)
    res["tol"] = tol
    res["method"] = ("total fit time, default initialisation (random_state=0), EM "
                     f"until tol={tol:g}; median over repeats; JIT warmed beforehand")
    for lib in libraries:
        warm_up(lib, d, K, ct, dtype, n_jobs if lib == "fastem" else None)
        times, est = [], None
        for _ in range(repeats):
            _progress(f"[{tag} {dtype.name}] {lib}: end-to-end fit", verbose)
            est = _estimator(lib, K, ct, 100, tol, None,
                             n_jobs if lib == "fastem" else None)
            gc.collect()
            with _quiet():
                t0 = time.perf_counter()
                est.fit(X)
                times.append(time.perf_counter() - t0)
        res[lib] = {"total_s": statistics.median(times), "total_s_repeats": times,
                    "n_iter": int(est.n_iter_), "converged": bool(est.converged_),
                    "lower_bound": float(est.lower_bound_)}
    if "fastem" in res and "sklearn" in res:
        res["speedup"] = res["sklearn"]["total_s"] / res["fastem"]["total_s"]
        a, b = res["fastem"]["lower_bound"], res["sklearn"]["lower_bound"]
        res["loglik_rel_diff"] = abs(a - b) / max(abs(b), 1e-300)
    return res


_COMPILE_CHILD = textwrap.dedent("""
    import json, time, warnings
    t0 = time.perf_counter()
    import fastem
    t1 = time.perf_counter()
    from fastem import GaussianMixture
    t1b = time.perf_counter()
    import numpy as np
    from sklearn.exceptions import ConvergenceWarning
    warnings.simplefilter("ignore", ConvergenceWarning)
    X = np.random.default_rng(0).standard_normal((2000, {d})).astype({dtype!r})
    def fit():
        GaussianMixture(n_components={K}, covariance_type={ct!r},
                        random_state=0, max_iter=5, tol=0.0).fit(X)
    t2 = time.perf_counter()
    fit()
    t3 = time.perf_counter()
    fit()
    t4 = time.perf_counter()
    print(json.dumps({{"import_s": t1 - t0, "estimator_import_s": t1b - t1,
                       "first_fit_s": t3 - t2,
                       "steady_fit_s": t4 - t3}}))
""")


def run_compile(covariance_type="full", dtype="float64", n_features=2, n_components=8,
                verbose=False):
    """Import time and first-fit latency with a cold and a warm Numba cache.

    Two fresh subprocesses share an initially empty ``NUMBA_CACHE_DIR``: the
    first compiles every kernel a default fit needs (cold cache), the second
    loads them from the cache (warm cache).  Each reports ``import fastem``
    time, then the time of ``from fastem import GaussianMixture`` (which
    imports scikit-learn), the first fit's latency (compilation or cache loading included) and a
    second, steady-state fit of the same tiny data (2,000 rows).
    """
    dtype = np.dtype(dtype).name
    code = _COMPILE_CHILD.format(d=n_features, K=n_components, ct=covariance_type,
                                 dtype=dtype)
    cache = tempfile.mkdtemp(prefix="fastem-numba-cache-")
    env = dict(os.environ, NUMBA_CACHE_DIR=cache, FASTEM_NUMBA_CACHE="1")
    res = {"covariance_type": covariance_type, "dtype": dtype,
           "n_features": n_features, "n_components": n_components}
    try:
        for label in ("cold", "warm"):
            _progress(f"[compile {covariance_type} {dtype}] {label} cache", verbose)
            out = _run_child(code, env=env)
            res[label] = out
            if label == "cold":
                res["cache_files"] = sum(len(f) for _, _, f in os.walk(cache))
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return res
