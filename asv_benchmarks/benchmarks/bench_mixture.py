"""asv benchmarks of fastem.GaussianMixture (scikit-learn style suite).

Workloads are the reference workloads of ``fastem bench`` scaled down: n_samples
is multiplied by ``FASTEM_ASV_SCALE`` (default 0.05, i.e. 1/20 of the reference
sizes; 0.002 is the tiny CI profile).  The shape ``S`` (n x 2, K=8), ``M``
(n x 16, K=16) and ``L`` (n x 64, K=32) is crossed with every covariance type
and both dtypes, so the reference workloads D, T and P are ``M`` with the diag,
tied and spherical covariance.

This module uses only fastem's public API (``fastem.GaussianMixture``), so
that ``asv continuous`` can run it against older commits.  Every ``setup``
warms the JIT with a tiny fit of the same dtype and covariance type, so no
``time_*`` benchmark times compilation (see ``TimeCompile`` for that); EM runs
a fixed number of iterations (``tol=0``) from fixed initial parameters derived
from the generating parameters, so every commit does the same work.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

SCALE = float(os.environ.get("FASTEM_ASV_SCALE", "0.05"))
#: shape -> (reference n_samples, n_features, n_components)
SHAPES = {"S": (1_000_000, 2, 8), "M": (1_000_000, 16, 16), "L": (200_000, 64, 32)}
COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]
DTYPES = ["float64", "float32"]
FIT_ITERS = 10
LOGLIK_ITERS = 5
SKLEARN_ITERS = 2
FASTEM_ITERS = 10


def _quiet():
    from sklearn.exceptions import ConvergenceWarning

    warnings.simplefilter("ignore", ConvergenceWarning)


def make_blobs(n, d, K, dtype, seed=0):
    """Deterministic, separated Gaussian blobs (as ``fastem.bench.make_blobs``).

    A copy, not an import: ``asv continuous`` runs this suite against older
    commits, whose fastem may not have ``fastem.bench`` or may generate other
    data, and every commit must be timed on the same rows."""
    rng = np.random.default_rng(seed)
    weights = rng.uniform(0.5, 1.5, K)
    weights /= weights.sum()
    spread = 5.0 * K ** (1.0 / d) + 5.0
    means = rng.uniform(-spread, spread, (K, d))
    A = rng.standard_normal((K, d, d)) / np.sqrt(d)
    covs = 0.5 * A @ A.transpose(0, 2, 1) + 0.5 * np.eye(d)
    labels = rng.choice(K, size=n, p=weights)
    X = rng.standard_normal((n, d))
    for k in range(K):
        idx = np.flatnonzero(labels == k)
        X[idx] = X[idx] @ np.linalg.cholesky(covs[k]).T + means[k]
    return np.ascontiguousarray(X, dtype=dtype), (weights, means, covs)


def initial_parameters(truth, covariance_type, seed=1):
    """Generating parameters, means perturbed: fixed across commits."""
    weights, means, covs = truth
    rng = np.random.default_rng(seed)
    means = means + 0.1 * rng.standard_normal(means.shape)
    if covariance_type == "full":
        prec = np.linalg.inv(covs)
    elif covariance_type == "tied":
        prec = np.linalg.inv(np.einsum("k,kij->ij", weights, covs))
    elif covariance_type == "diag":
        prec = 1.0 / np.diagonal(covs, axis1=1, axis2=2)
    else:
        prec = 1.0 / np.diagonal(covs, axis1=1, axis2=2).mean(axis=1)
    return {"weights_init": weights, "means_init": means, "precisions_init": prec}


_CACHE = {}


def workload(shape, covariance_type, dtype):
    """(X, K, init) of a scaled-down workload, cached per process."""
    key = (shape, dtype)
    if key not in _CACHE:
        n_ref, d, K = SHAPES[shape]
        # at least 2 * d rows per component, so that every covariance type is
        # well defined (also in float32) at the tiny CI scale
        n = max(int(round(n_ref * SCALE)), 20 * K, 2 * d * K)
        _CACHE.clear()
        _CACHE[key] = (K,) + make_blobs(n, d, K, dtype)
    K, X, truth = _CACHE[key]
    return X, K, initial_parameters(truth, covariance_type)


def warm_up(lib, d, K, covariance_type, dtype):
    """A tiny fit (and predict_proba) of the same dtype and covariance type."""
    if lib == "fastem":
        from fastem import GaussianMixture
    else:
        from sklearn.mixture import GaussianMixture
    Xw = np.random.default_rng(1).standard_normal((max(50 * K, 1000), d)).astype(dtype)
    gm = GaussianMixture(n_components=K, covariance_type=covariance_type, max_iter=2,
                         tol=0.0, random_state=0).fit(Xw)
    gm.predict_proba(Xw)


def fastem_gm(K, covariance_type, max_iter, init=None):
    from fastem import GaussianMixture

    return GaussianMixture(n_components=K, covariance_type=covariance_type,
                           max_iter=max_iter, tol=0.0, random_state=0, **(init or {}))


class _Mixture:
    params = (list(SHAPES), COVARIANCE_TYPES, DTYPES)
    param_names = ["shape", "covariance_type", "dtype"]
    timer = time.perf_counter
    timeout = 600

    def setup(self, shape, covariance_type, dtype):
        _quiet()
        self.X, self.K, self.init = workload(shape, covariance_type, dtype)
        warm_up("fastem", self.X.shape[1], self.K, covariance_type, dtype)


class TimeMixture(_Mixture):
    """Wall-clock times of fit and predict_proba (JIT warmed in setup)."""

    def setup(self, shape, covariance_type, dtype):
        super().setup(shape, covariance_type, dtype)
        self.fitted = fastem_gm(self.K, covariance_type, 1, self.init).fit(self.X)

    def time_em_iteration(self, shape, covariance_type, dtype):
        """One EM iteration (fit, max_iter=1, tol=0) from fixed initial parameters."""
        fastem_gm(self.K, covariance_type, 1, self.init).fit(self.X)

    def time_fit(self, shape, covariance_type, dtype):
        """Default (k-means) initialisation and 10 EM iterations (tol=0)."""
        fastem_gm(self.K, covariance_type, FIT_ITERS).fit(self.X)

    def time_predict_proba(self, shape, covariance_type, dtype):
        self.fitted.predict_proba(self.X)


class MemMixture(_Mixture):
    """Peak resident memory of the benchmark process (data included)."""

    def peakmem_fit(self, shape, covariance_type, dtype):
        """Default initialisation and 10 EM iterations (tol=0)."""
        fastem_gm(self.K, covariance_type, FIT_ITERS).fit(self.X)


class TrackMixture(_Mixture):
    """Result quality and the speed-up against scikit-learn."""

    timeout = 1200

    def track_loglik(self, shape, covariance_type, dtype):
        """Mean log-likelihood per sample after 5 EM iterations from fixed parameters."""
        gm = fastem_gm(self.K, covariance_type, LOGLIK_ITERS, self.init).fit(self.X)
        return float(gm.lower_bound_)

    track_loglik.unit = "log-likelihood per sample"

    def track_speedup_vs_sklearn(self, shape, covariance_type, dtype):
        """sklearn / fastem time per EM iteration, both from the same fixed initial
        parameters: (min t(1+m) - min t(1)) / m over 3 repeats, m = 2 for
        scikit-learn and 10 for fastem.  NaN when the difference is not positive
        (the data are too small for the timer: raise FASTEM_ASV_SCALE)."""
        from sklearn.mixture import GaussianMixture

        warm_up("sklearn", self.X.shape[1], self.K, covariance_type, dtype)

        def per_iter(make, m):
            t_1, t_m = [], []
            for _ in range(3):
                t0 = time.perf_counter()
                make(1).fit(self.X)
                t1 = time.perf_counter()
                make(1 + m).fit(self.X)
                t2 = time.perf_counter()
                t_1.append(t1 - t0)
                t_m.append(t2 - t1)
            return (min(t_m) - min(t_1)) / m

        def make_sk(it):
            return GaussianMixture(n_components=self.K, covariance_type=covariance_type,
                                   max_iter=it, tol=0.0, random_state=0, **self.init)

        def make_fe(it):
            return fastem_gm(self.K, covariance_type, it, self.init)

        fe = per_iter(make_fe, FASTEM_ITERS)
        sk = per_iter(make_sk, SKLEARN_ITERS)
        return sk / fe if fe > 0 and sk > 0 else float("nan")

    track_speedup_vs_sklearn.unit = "ratio"

    def track_pct_of_floor(self, shape, covariance_type, dtype):
        """The roofline floor of one EM iteration (``fastem.bench.roofline_counts``
        at the rates ``fastem.bench.measure_machine`` measures on this machine:
        FMA, exp, read bandwidth) as a percentage of fastem's time per iteration
        ((min t(11) - min t(1)) / 10 over 3 repeats).  NaN on commits before the
        roofline existed, or when the difference is not positive."""
        try:
            from fastem.bench import measure_machine, roofline_counts, roofline_floor
        except ImportError:
            return float("nan")
        key = ("rates", dtype)
        if key not in _CACHE:
            _CACHE[key] = measure_machine((dtype,))
        n, d = self.X.shape
        counts = roofline_counts(n, d, self.K, covariance_type, np.dtype(dtype).itemsize)
        floor = roofline_floor(counts, _CACHE[key], dtype)["floor_s"]
        t_1, t_m = [], []
        for _ in range(3):
            t0 = time.perf_counter()
            fastem_gm(self.K, covariance_type, 1, self.init).fit(self.X)
            t1 = time.perf_counter()
            fastem_gm(self.K, covariance_type, 1 + FASTEM_ITERS, self.init).fit(self.X)
            t_1.append(t1 - t0)
            t_m.append(time.perf_counter() - t1)
        per_iter = (min(t_m) - min(t_1)) / FASTEM_ITERS
        return 100.0 * floor / per_iter if per_iter > 0 else float("nan")

    track_pct_of_floor.unit = "percent"


_COMPILE_CODE = """
import warnings
import numpy as np
import fastem
warnings.simplefilter("ignore")
X = np.random.default_rng(0).standard_normal((2000, {d})).astype({dtype!r})
fastem.GaussianMixture(n_components={K}, covariance_type={ct!r}, max_iter=2,
                       random_state=0).fit(X)
"""


class TimeCompile:
    """Cold start: a fresh interpreter imports fastem and fits 2,000 rows with an
    empty NUMBA_CACHE_DIR, so every kernel the fit needs is compiled."""

    params = (["full", "diag"], ["float64"])
    param_names = ["covariance_type", "dtype"]
    timer = time.perf_counter
    number = 1
    repeat = (1, 3, 120.0)
    warmup_time = 0.0
    timeout = 1800

    def setup(self, covariance_type, dtype):
        self.dirs = []

    def teardown(self, covariance_type, dtype):
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)

    def time_cold_compile(self, covariance_type, dtype):
        cache = tempfile.mkdtemp(prefix="fastem-asv-numba-")
        self.dirs.append(cache)
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, FASTEM_NUMBA_CACHE="1")
        code = _COMPILE_CODE.format(d=2, K=8, ct=covariance_type, dtype=dtype)
        proc = subprocess.run([sys.executable, "-c", code], env=env,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"cold-compile subprocess failed:\n{proc.stderr[-3000:]}")
