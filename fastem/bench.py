"""``fastem bench``: fastem against scikit-learn, side by side.

Reference workloads (generated Gaussian blobs; ``--scale`` multiplies
n_samples):

====  ===========  ============  ==========  ===============
tag   n_samples    n_features    K           covariance_type
====  ===========  ============  ==========  ===============
S     1,000,000    2             8           full
M     1,000,000    16            16          full
L     200,000      64            32          full
D     1,000,000    16            16          diag
T     1,000,000    16            16          tied
P     1,000,000    16            16          spherical
====  ===========  ============  ==========  ===============

Method (default mode, "ms per EM iteration")
---------------------------------------------
For each workload the data are generated deterministically
(``np.random.default_rng(0)``, well separated centres, random covariances) and
explicit initial parameters (``weights_init``, ``means_init``,
``precisions_init``) are taken from a 3-iteration fastem fit on the first
20,000 rows, so that both libraries start from identical parameters and
neither pays for its own initialisation.  The JIT is warmed by a tiny fit of
the same dtype and covariance type before anything is timed.

Each library is then timed (wall clock, ``time.perf_counter``) fitting with
``tol=0`` and ``max_iter=1`` and with ``max_iter=1+m``; the per-iteration time
is ``(t(1+m) - t(1)) / m``, which cancels the fixed costs of a ``fit`` call
(validation, parameter set-up, and scikit-learn's final E-step).  The median
over ``--repeats`` repeats is reported.  ``m`` is ``--sklearn-iters`` (2) for
scikit-learn and, for fastem, ``--fastem-iters`` ("auto": enough iterations
for about 0.2 s of differenced time, at least scikit-learn's ``m``).

The log-likelihoods compared are ``lower_bounds_[m_sk]`` of both libraries:
the mean per-sample log-likelihood evaluated in EM iteration ``1+m_sk`` from
the same initial parameters.

Achieved GFLOP/s uses a useful-flop model of one EM iteration
(:func:`em_flops`) and is compared with the machine's numpy matmul rate
(:func:`measure_matmul_gflops`).  Peak memory is the growth of the resident
set size (peak RSS, reset just before the fit with ``/proc/self/clear_refs``,
else sampled every 5 ms) during one ``fit(max_iter=1)`` in a fresh
subprocess, after the JIT has been warmed there; it is reported in bytes and
relative to ``X.nbytes``.

Other modes: ``--end-to-end`` (default initialisation, EM to ``tol=1e-3``,
total fit time) and ``--compile`` (``import fastem`` time and first-fit
latency in fresh subprocesses with a cold and a warm Numba cache).

Usage::

    fastem bench                                  # all workloads, float64
    fastem bench --workloads S,M --scale 0.1 --repeats 3
    fastem bench --dtype both --threads 1,2 --json out.json
    fastem bench --end-to-end --workloads S --scale 0.1
    fastem bench --compile --workloads S,D
    python -m fastem.bench ...                    # the same
"""

import argparse
import contextlib
import gc
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import warnings

import numpy as np

from .cli import _positive_int

SCHEMA = "fastem-bench/1"

#: tag -> (n_samples, n_features, n_components, covariance_type)
WORKLOADS = {
    "S": (1_000_000, 2, 8, "full"),
    "M": (1_000_000, 16, 16, "full"),
    "L": (200_000, 64, 32, "full"),
    "D": (1_000_000, 16, 16, "diag"),
    "T": (1_000_000, 16, 16, "tied"),
    "P": (1_000_000, 16, 16, "spherical"),
}
LIBRARIES = ("fastem", "sklearn")
INIT_SUBSAMPLE = 20_000
INIT_ITERS = 3
# Target differenced time (seconds) when choosing fastem's iteration count.
AUTO_TARGET_S = 0.2
AUTO_MAX_ITERS = 50
MATMUL_N = 2000

METHOD = ("ms per EM iteration = median over repeats of (t(max_iter=1+m) - "
          "t(max_iter=1)) / m, wall clock, tol=0, identical explicit initial "
          "parameters for both libraries, JIT warmed beforehand")


# ---------------------------------------------------------------------------
# Workloads
# ---------------------------------------------------------------------------

def workload_shape(tag, scale=1.0):
    """(n_samples, n_features, n_components, covariance_type) of a workload."""
    try:
        n, d, K, ct = WORKLOADS[tag]
    except KeyError:
        raise ValueError(f"Unknown workload {tag!r}; expected one of "
                         f"{', '.join(WORKLOADS)}") from None
    if not (scale > 0 and math.isfinite(scale)):
        raise ValueError(f"Expected scale > 0, got scale={scale!r}")
    n = max(int(round(n * scale)), 20 * K)
    return n, d, K, ct


def make_blobs(n_samples, n_features, n_components, dtype="float64", seed=0):
    """Deterministic, well separated Gaussian blobs.

    Returns ``(X, truth)``: X of shape (n_samples, n_features) in ``dtype``
    (C-contiguous, rows in random component order) and a dict with the
    generating ``weights``, ``means`` and ``covariances`` (full).
    """
    rng = np.random.default_rng(seed)
    K, d = n_components, n_features
    weights = rng.uniform(0.5, 1.5, K)
    weights /= weights.sum()
    spread = 5.0 * K ** (1.0 / d) + 5.0
    means = rng.uniform(-spread, spread, (K, d))
    A = rng.standard_normal((K, d, d)) / np.sqrt(d)
    covs = 0.5 * A @ A.transpose(0, 2, 1) + 0.5 * np.eye(d)
    labels = rng.choice(K, size=n_samples, p=weights)
    X = rng.standard_normal((n_samples, d))
    for k in range(K):
        idx = np.flatnonzero(labels == k)
        L = np.linalg.cholesky(covs[k])
        X[idx] = X[idx] @ L.T + means[k]
    X = np.ascontiguousarray(X, dtype=dtype)
    return X, {"weights": weights, "means": means, "covariances": covs}


def initial_parameters(X, n_components, covariance_type):
    """Explicit initial parameters from a quick fastem fit on a subsample.

    A fit with ``max_iter=3`` (k-means init, ``random_state=0``) on the first
    20,000 rows (in float64) gives ``weights_init``, ``means_init`` and
    ``precisions_init`` for both libraries.
    """
    from .mixture import GaussianMixture

    sub = np.ascontiguousarray(X[:INIT_SUBSAMPLE], dtype=np.float64)
    gm = GaussianMixture(n_components=n_components, covariance_type=covariance_type,
                         max_iter=INIT_ITERS, tol=0.0, random_state=0)
    with _quiet():
        gm.fit(sub)
    return {"weights_init": gm.weights_.copy(), "means_init": gm.means_.copy(),
            "precisions_init": gm.precisions_.copy()}


def em_flops(n_samples, n_features, n_components, covariance_type):
    """Useful floating-point operations of one EM iteration (model).

    - full: ``n*K*d*(d+1)`` for the triangular solves (d(d+1)/2 multiply-adds
      per point and component) plus ``n*K*d*(d+1)`` for the symmetric rank-1
      updates of the second moments;
    - tied: ``n*K*d*(d+1)`` (solves) plus ``n*d*(d+1)`` (one common scatter);
    - diag and spherical: ``n*K*6*d`` (scaled difference, square, accumulate
      in the E-step; first and second moments in the M-step statistics).
    """
    n, d, K = int(n_samples), int(n_features), int(n_components)
    if covariance_type == "full":
        return n * K * d * (d + 1) + n * K * d * (d + 1)
    if covariance_type == "tied":
        return n * K * d * (d + 1) + n * d * (d + 1)
    if covariance_type in ("diag", "spherical"):
        return n * K * 6 * d
    raise ValueError(f"Unknown covariance_type {covariance_type!r}; expected one of "
                     "'full', 'tied', 'diag', 'spherical'")


# ---------------------------------------------------------------------------
# Machine facts
# ---------------------------------------------------------------------------

_MATMUL_CACHE = {}


def measure_matmul_gflops(dtype="float64", n=MATMUL_N, repeats=3):
    """The machine's numpy matmul rate in GFLOP/s (median of ``repeats``).

    Times ``a @ b`` for (n, n) matrices of ``dtype`` (2*n**3 flops) with the
    BLAS library's default thread count, after one untimed warm-up product.
    """
    dtype = np.dtype(dtype)
    key = (dtype.name, n, repeats)
    if key in _MATMUL_CACHE:
        return _MATMUL_CACHE[key]
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    c = np.empty((n, n), dtype=dtype)
    np.matmul(a, b, out=c)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.matmul(a, b, out=c)
        times.append(time.perf_counter() - t0)
    rate = 2.0 * n ** 3 / statistics.median(times) / 1e9
    _MATMUL_CACHE[key] = rate
    return rate


def machine_info():
    """Facts about the machine and the libraries, for the report header."""
    import numba
    import sklearn

    from . import __version__

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = os.cpu_count()
    blas = []
    with contextlib.suppress(Exception):
        from threadpoolctl import threadpool_info

        blas = [{"internal_api": i.get("internal_api"), "num_threads": i.get("num_threads"),
                 "version": i.get("version")}
                for i in threadpool_info() if i.get("user_api") == "blas"]
    layer = None
    with contextlib.suppress(Exception):
        layer = numba.threading_layer()
    return {
        "cpu": cpu, "cpu_count": os.cpu_count(), "cpus_available": affinity,
        "platform": platform.platform(), "python": platform.python_version(),
        "numpy": np.__version__, "numba": numba.__version__,
        "sklearn": sklearn.__version__, "fastem": __version__,
        "numba_threads": numba.get_num_threads(),
        "numba_max_threads": numba.config.NUMBA_NUM_THREADS,
        "numba_threading_layer": layer, "blas": blas,
    }


# ---------------------------------------------------------------------------
# Timing helpers
# ---------------------------------------------------------------------------

@contextlib.contextmanager
def _quiet():
    """Silence the ConvergenceWarning of fits stopped by max_iter."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def _estimator(lib, K, ct, max_iter, tol, init, n_jobs=None, random_state=0):
    if lib == "fastem":
        from .mixture import GaussianMixture

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


def _timed_fit(lib, X, K, ct, max_iter, init, n_jobs=None, blas_threads=None):
    est = _estimator(lib, K, ct, max_iter, 0.0, init, n_jobs)
    gc.collect()
    with _quiet(), _blas_limit(blas_threads if lib == "sklearn" else None):
        t0 = time.perf_counter()
        est.fit(X)
        t = time.perf_counter() - t0
    return t, est


def warm_up(lib, n_features, n_components, covariance_type, dtype, n_jobs=None):
    """A tiny fit with the same dtype and covariance type (compiles the JIT)."""
    rng = np.random.default_rng(1)
    n = max(50 * n_components, 1000)
    Xw = rng.standard_normal((n, n_features)).astype(dtype)
    est = _estimator(lib, n_components, covariance_type, 2, 0.0, None, n_jobs)
    with _quiet():
        est.fit(Xw)
        if lib == "fastem":
            est.predict_proba(Xw)


def _lower_bounds(est):
    lbs = getattr(est, "lower_bounds_", None)
    if lbs is None:
        return [float(est.lower_bound_)]
    return [float(v) for v in lbs]


def _per_iteration(lib, X, K, ct, m, init, repeats, n_jobs=None, blas_threads=None):
    """Differenced timings of one library: dict with per-repeat values."""
    per_iter, first, lbs = [], [], None
    for _ in range(repeats):
        t1, _est = _timed_fit(lib, X, K, ct, 1, init, n_jobs, blas_threads)
        tm, est = _timed_fit(lib, X, K, ct, 1 + m, init, n_jobs, blas_threads)
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


def _auto_iters(X, K, ct, init, n_jobs, minimum):
    t1, _ = _timed_fit("fastem", X, K, ct, 1, init, n_jobs)
    t3, _ = _timed_fit("fastem", X, K, ct, 3, init, n_jobs)
    est = max((t3 - t1) / 2.0, 1e-6)
    m = int(math.ceil(AUTO_TARGET_S / est))
    return max(minimum, min(AUTO_MAX_ITERS, max(2, m)))


# ---------------------------------------------------------------------------
# Peak memory in a subprocess
# ---------------------------------------------------------------------------

def _rss_bytes():
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _hwm_bytes():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def _reset_hwm():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _maxrss_bytes():
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024


def _memory_child(spec_path):
    """Subprocess entry: one fit(max_iter=1), print its peak RSS growth."""
    with open(spec_path) as f:
        spec = json.load(f)
    X = np.load(spec["X"])
    init = dict(np.load(spec["init"]))
    lib, K, ct, n_jobs = spec["lib"], spec["K"], spec["covariance_type"], spec["n_jobs"]
    warm_up(lib, X.shape[1], K, ct, X.dtype, n_jobs)
    est = _estimator(lib, K, ct, 1, 0.0, init, n_jobs)
    gc.collect()
    base = _rss_bytes()
    maxrss_before = _maxrss_bytes()
    reset = base is not None and _reset_hwm()
    peak = [base or 0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            r = _rss_bytes()
            if r is not None and r > peak[0]:
                peak[0] = r
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    with _quiet():
        est.fit(X)
    stop.set()
    sampler.join()
    if reset:
        hwm = _hwm_bytes()
        growth, method = max(hwm, peak[0]) - base, "VmHWM reset via /proc/self/clear_refs"
    elif base is not None:
        growth, method = peak[0] - base, "RSS sampled every 5 ms"
    else:
        growth, method = _maxrss_bytes() - maxrss_before, "ru_maxrss growth"
    print(json.dumps({"peak_mem_bytes": int(max(growth, 0)), "method": method}))


def measure_peak_memory(lib, X_path, init_path, K, covariance_type, n_jobs=None,
                        timeout=3600):
    """Peak RSS growth (bytes) of one ``fit(max_iter=1)`` in a fresh process."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({"lib": lib, "X": X_path, "init": init_path, "K": K,
                   "covariance_type": covariance_type, "n_jobs": n_jobs}, f)
        spec = f.name
    try:
        out = _run_child(f"from fastem.bench import _memory_child; _memory_child({spec!r})",
                         timeout=timeout)
    finally:
        os.unlink(spec)
    return out


def _run_child(code, env=None, timeout=3600):
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=timeout)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"benchmark subprocess failed (exit {proc.returncode}):\n{tail}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(f"benchmark subprocess printed no result:\n{proc.stdout[-2000:]}")
    out = json.loads(lines[-1])
    out["process_s"] = wall
    return out


# ---------------------------------------------------------------------------
# One workload
# ---------------------------------------------------------------------------

def _describe(tag, scale, dtype):
    n, d, K, ct = workload_shape(tag, scale)
    return {"workload": tag, "scale": scale, "dtype": np.dtype(dtype).name,
            "n_samples": n, "n_features": d, "n_components": K, "covariance_type": ct}


def _progress(msg, verbose):
    if verbose:
        print(msg, file=sys.stderr, flush=True)


def run_workload(tag, scale=1.0, dtype="float64", repeats=3, libraries=LIBRARIES,
                 n_jobs=None, *, sklearn_iters=2, fastem_iters="auto", threads=None,
                 memory=True, matmul_gflops=None, sklearn_blas_threads=None,
                 verbose=False):
    """Time one EM iteration of fastem and scikit-learn on one workload.

    Parameters
    ----------
    tag : {'S', 'M', 'L', 'D', 'T', 'P'}
    scale : float, default=1.0
        Multiplies the workload's n_samples.
    dtype : {'float64', 'float32'}, default='float64'
    repeats : int, default=3
        Timings are medians over this many repeats.
    libraries : tuple of {'fastem', 'sklearn'}
    n_jobs : int or None, default=None
        fastem's ``n_jobs`` (None: all Numba threads).  Ignored when
        ``threads`` is given.
    sklearn_iters : int, default=2
        ``m`` for scikit-learn: it is timed with ``max_iter=1`` and ``1+m``.
    fastem_iters : int or 'auto', default='auto'
        ``m`` for fastem; 'auto' aims at about 0.2 s of differenced time and
        is at least ``sklearn_iters``.
    threads : sequence of int, optional
        Also time fastem with each of these thread counts (``n_jobs``); the
        headline fastem numbers use the last one, and ``thread_speedup`` is
        time(first) / time(last).
    memory : bool, default=True
        Measure the peak RSS growth of one fit in a fresh subprocess.
    matmul_gflops : float, optional
        The machine's matmul rate; measured if not given.
    sklearn_blas_threads : int, optional
        Limit scikit-learn's BLAS threads (threadpoolctl); default: the BLAS
        library's own setting.

    Returns
    -------
    result : dict
        See ``docs/benchmarks.md`` ("JSON output") for the keys.  The method:
        per-iteration time = median over repeats of
        ``(t(max_iter=1+m) - t(max_iter=1)) / m`` with ``tol=0``, from
        identical explicit initial parameters, after a JIT warm-up.
    """
    libraries = tuple(libraries)
    for lib in libraries:
        if lib not in LIBRARIES:
            raise ValueError(f"Unknown library {lib!r}; expected one of "
                             f"{', '.join(LIBRARIES)}")
    if "fastem" not in libraries:
        raise ValueError("libraries must include 'fastem'; got "
                         f"{libraries!r}")
    if repeats < 1:
        raise ValueError(f"Expected repeats >= 1, got repeats={repeats}")
    if sklearn_iters < 1:
        raise ValueError(f"Expected sklearn_iters >= 1, got {sklearn_iters}")
    res = _describe(tag, scale, dtype)
    n, d, K, ct = res["n_samples"], res["n_features"], res["n_components"], \
        res["covariance_type"]
    dtype = np.dtype(dtype)
    _progress(f"[{tag} {dtype.name}] generating {n:,} x {d} blobs, K={K}, {ct}", verbose)
    X, _truth = make_blobs(n, d, K, dtype)
    init = initial_parameters(X, K, ct)
    res["X_nbytes"] = int(X.nbytes)
    res["flops_per_iter"] = int(em_flops(n, d, K, ct))
    if matmul_gflops is None:
        matmul_gflops = measure_matmul_gflops(dtype)
    res["matmul_gflops"] = matmul_gflops
    res["method"] = METHOD

    thread_list = [int(t) for t in threads] if threads else [n_jobs]
    head_jobs = thread_list[-1]
    for t in thread_list:
        warm_up("fastem", d, K, ct, dtype, t)
    if "sklearn" in libraries:
        warm_up("sklearn", d, K, ct, dtype)

    m_sk = int(sklearn_iters)
    if fastem_iters == "auto":
        m_fe = _auto_iters(X, K, ct, init, head_jobs,
                           m_sk if "sklearn" in libraries else 2)
    else:
        m_fe = int(fastem_iters)
        if m_fe < 1:
            raise ValueError(f"Expected fastem_iters >= 1 or 'auto', got {fastem_iters!r}")

    fe = None
    per_thread = {}
    for t in thread_list:
        _progress(f"[{tag} {dtype.name}] fastem n_jobs={t}: {repeats} x "
                  f"(1 and {1 + m_fe} iterations)", verbose)
        r = _per_iteration("fastem", X, K, ct, m_fe, init, repeats, t)
        per_thread[t] = r
        fe = r
    from ._estep import resolve_n_jobs

    import numba

    fe = dict(fe)
    fe["n_jobs"] = head_jobs
    eff = resolve_n_jobs(head_jobs)
    fe["threads"] = eff if eff is not None else numba.get_num_threads()
    sec = fe["ms_per_iter"] / 1e3
    fe["gflops"] = res["flops_per_iter"] / sec / 1e9 if sec > 0 else float("nan")
    fe["pct_of_matmul"] = 100.0 * fe["gflops"] / matmul_gflops
    if threads:
        fe["ms_per_iter_by_threads"] = {str(t): per_thread[t]["ms_per_iter"]
                                        for t in thread_list}
        first, last = per_thread[thread_list[0]], per_thread[thread_list[-1]]
        fe["thread_speedup"] = (first["ms_per_iter"] / last["ms_per_iter"]
                                if last["ms_per_iter"] > 0 and first["ms_per_iter"] > 0
                                else float("nan"))
        fe["thread_speedup_of"] = f"{thread_list[-1]} vs {thread_list[0]} threads"
    res["fastem"] = fe

    if "sklearn" in libraries:
        _progress(f"[{tag} {dtype.name}] sklearn: {repeats} x (1 and {1 + m_sk} "
                  "iterations)", verbose)
        sk = _per_iteration("sklearn", X, K, ct, m_sk, init, repeats,
                            blas_threads=sklearn_blas_threads)
        sk["blas_threads"] = sklearn_blas_threads
        res["sklearn"] = sk
        res["speedup"] = (sk["ms_per_iter"] / fe["ms_per_iter"]
                          if fe["ms_per_iter"] > 0 else float("nan"))
        j = min(m_fe, m_sk)
        a, b = fe["lower_bounds"][j], sk["lower_bounds"][j]
        res["loglik_iteration"] = j + 1
        res["loglik_fastem"] = a
        res["loglik_sklearn"] = b
        res["loglik_rel_diff"] = abs(a - b) / max(abs(b), 1e-300)

    if memory:
        tmp = tempfile.mkdtemp(prefix="fastem-bench-")
        try:
            xp, ip = os.path.join(tmp, "X.npy"), os.path.join(tmp, "init.npz")
            np.save(xp, X)
            np.savez(ip, **init)
            del X
            gc.collect()
            for lib in libraries:
                _progress(f"[{tag} {dtype.name}] {lib}: peak memory of one fit "
                          "in a subprocess", verbose)
                out = measure_peak_memory(lib, xp, ip, K, ct,
                                          head_jobs if lib == "fastem" else None)
                res[lib]["peak_mem_bytes"] = out["peak_mem_bytes"]
                res[lib]["peak_mem_ratio"] = out["peak_mem_bytes"] / res["X_nbytes"]
                res[lib]["peak_mem_method"] = out["method"]
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return res


# ---------------------------------------------------------------------------
# End-to-end and compile modes
# ---------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------

def _fmt(v, spec):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return format(v, spec)


def _table(header, rows):
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def format_header(machine, matmul=None):
    """One line of machine facts (plus a line of versions)."""
    blas = ", ".join(dict.fromkeys(
        f"{b['internal_api']} {b.get('version') or ''} ({b['num_threads']} threads)"
        .replace("  ", " ") for b in machine.get("blas", []))) or "unknown BLAS"
    parts = [f"machine: {machine['cpu']}, {machine['cpus_available']} CPUs",
             f"numba {machine['numba_threads']} threads "
             f"({machine.get('numba_threading_layer') or 'layer not yet chosen'})",
             blas]
    if matmul:
        parts.append("numpy matmul " + ", ".join(
            f"{k} {v:.1f} GFLOP/s" for k, v in matmul.items()))
    versions = (f"versions: fastem {machine['fastem']}, numpy {machine['numpy']}, "
                f"numba {machine['numba']}, scikit-learn {machine['sklearn']}, "
                f"python {machine['python']}")
    return "; ".join(parts) + "\n" + versions


def format_table(results):
    """A monospace, aligned table of benchmark results.

    ``results`` is a list of dicts from :func:`run_workload`,
    :func:`run_end_to_end` or :func:`run_compile`, or a whole report (the
    dict written by ``--json``), whose header line is then included.
    """
    head = ""
    if isinstance(results, dict):
        head = format_header(results["machine"], results.get("matmul_gflops")) + "\n"
        if results.get("method"):
            head += f"method: {results['method']}\n"
        head += "\n"
        results = results["results"]
    results = list(results)
    if not results:
        return head + "(no results)"
    if "cold" in results[0]:
        return head + _compile_table(results)
    if "total_s" in next(iter(results[0].get(lib) for lib in LIBRARIES
                              if lib in results[0])):
        return head + _end_to_end_table(results)
    return head + _iteration_table(results)


def _shape(r):
    return f"{r['n_samples']:,}x{r['n_features']}"


def _iteration_table(results):
    has_sk = any("sklearn" in r for r in results)
    has_mem = any("peak_mem_bytes" in r["fastem"] for r in results)
    thread_keys = []
    for r in results:
        for t in r["fastem"].get("ms_per_iter_by_threads", {}):
            if t not in thread_keys:
                thread_keys.append(t)
    header = ["wl", "dtype", "n x d", "K", "cov", "fastem ms/it"]
    if has_sk:
        header += ["sklearn ms/it", "speed-up"]
    header += ["GFLOP/s", "% matmul"]
    header += [f"ms/it {t}T" for t in thread_keys]
    if len(thread_keys) > 1:
        header.append(f"{thread_keys[-1]}T/{thread_keys[0]}T")
    if has_mem:
        header += ["fastem mem/X"] + (["sklearn mem/X"] if has_sk else [])
    if has_sk:
        header += ["loglik (fastem)", "rel.diff"]
    rows = []
    for r in results:
        fe, sk = r["fastem"], r.get("sklearn")
        row = [r["workload"], r["dtype"], _shape(r), str(r["n_components"]),
               r["covariance_type"], _fmt(fe["ms_per_iter"], ".2f")]
        if has_sk:
            row += [_fmt(sk and sk["ms_per_iter"], ".2f"), _fmt(r.get("speedup"), ".1f")]
        row += [_fmt(fe.get("gflops"), ".2f"), _fmt(fe.get("pct_of_matmul"), ".1f")]
        by = fe.get("ms_per_iter_by_threads", {})
        row += [_fmt(by.get(t), ".2f") for t in thread_keys]
        if len(thread_keys) > 1:
            row.append(_fmt(fe.get("thread_speedup"), ".2f"))
        if has_mem:
            row.append(_fmt(fe.get("peak_mem_ratio"), ".2f"))
            if has_sk:
                row.append(_fmt(sk and sk.get("peak_mem_ratio"), ".2f"))
        if has_sk:
            row += [_fmt(r.get("loglik_fastem"), ".6g"), _fmt(r.get("loglik_rel_diff"), ".1e")]
        rows.append(row)
    notes = ("\nms/it: wall-clock ms per EM iteration, (t(1+m) - t(1)) / m, median of "
             "repeats; speed-up = sklearn / fastem; GFLOP/s from the useful-flop model "
             "(fastem.bench.em_flops); mem/X: peak RSS growth of one fit / X.nbytes; "
             "rel.diff: |loglik_fastem - loglik_sklearn| / |loglik_sklearn| after the "
             "same number of iterations.")
    return _table(header, rows) + notes


def _end_to_end_table(results):
    has_sk = any("sklearn" in r for r in results)
    header = ["wl", "dtype", "n x d", "K", "cov", "fastem s", "iters", "loglik"]
    if has_sk:
        header += ["sklearn s", "iters", "loglik", "speed-up"]
    rows = []
    for r in results:
        fe, sk = r["fastem"], r.get("sklearn")
        row = [r["workload"], r["dtype"], _shape(r), str(r["n_components"]),
               r["covariance_type"], _fmt(fe["total_s"], ".3f"), str(fe["n_iter"]),
               _fmt(fe["lower_bound"], ".6g")]
        if has_sk:
            row += [_fmt(sk["total_s"], ".3f"), str(sk["n_iter"]),
                    _fmt(sk["lower_bound"], ".6g"), _fmt(r.get("speedup"), ".1f")]
        rows.append(row)
    notes = ("\nend-to-end: total fit time (default init, EM until tol), median of "
             "repeats; the two libraries initialise differently, so iteration counts "
             "and log-likelihoods may differ.")
    return _table(header, rows) + notes


def _compile_table(results):
    header = ["cov", "dtype", "import ms", "estimators ms", "cold 1st fit s", "warm 1st fit s",
              "steady fit ms", "cold process s", "warm process s", "cache files"]
    rows = []
    for r in results:
        c, w = r["cold"], r["warm"]
        rows.append([r["covariance_type"], r["dtype"], _fmt(1e3 * w["import_s"], ".0f"),
                     _fmt(1e3 * w.get("estimator_import_s", math.nan), ".0f"),
                     _fmt(c["first_fit_s"], ".2f"), _fmt(w["first_fit_s"], ".2f"),
                     _fmt(1e3 * w["steady_fit_s"], ".1f"), _fmt(c["process_s"], ".2f"),
                     _fmt(w["process_s"], ".2f"), str(r.get("cache_files", "-"))])
    notes = ("\nfresh subprocesses with an initially empty NUMBA_CACHE_DIR; 1st fit: "
             "latency of the first default fit of 2,000 rows (compilation or cache "
             "loading included); import ms: `import fastem`; estimators ms: then `from fastem "
             "import GaussianMixture` (imports scikit-learn, whose estimators it "
             "subclasses); both from the warm-cache process.")
    return _table(header, rows) + notes


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def _list_of(kind, allowed=None):
    def parse(text):
        items = [p.strip() for p in text.split(",") if p.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
        out = []
        for p in items:
            if kind is int:
                try:
                    v = int(p)
                except ValueError:
                    raise argparse.ArgumentTypeError(
                        f"expected positive integers, got {p!r}") from None
                if v < 1:
                    raise argparse.ArgumentTypeError(f"expected positive integers, got {p!r}")
                out.append(v)
            else:
                p = p.upper()
                if allowed and p not in allowed:
                    raise argparse.ArgumentTypeError(
                        f"unknown workload {p!r}; choose from {','.join(allowed)}")
                out.append(p)
        return out
    return parse



def _iters(text):
    return "auto" if text == "auto" else _positive_int(text)


def _positive_float(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (v > 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return v


def build_parser():
    p = argparse.ArgumentParser(
        prog="fastem bench",
        description="Benchmark fastem against scikit-learn on generated Gaussian blobs.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=textwrap.dedent("""\
            workloads (n_samples x n_features, K, covariance type; --scale multiplies n):
              S 1,000,000x2 K=8 full     M 1,000,000x16 K=16 full   L 200,000x64 K=32 full
              D 1,000,000x16 K=16 diag   T 1,000,000x16 K=16 tied   P 1,000,000x16 K=16 spherical

            ms per EM iteration = median over repeats of (t(max_iter=1+m) - t(max_iter=1)) / m,
            wall clock, tol=0, identical explicit initial parameters, JIT warmed first.

            examples:
              fastem bench --workloads S --scale 0.1
              fastem bench --dtype both --threads 1,2 --json out.json
              fastem bench --end-to-end --workloads S,D --scale 0.1
              fastem bench --compile --workloads S
            """))
    p.add_argument("--workloads", type=_list_of(str, tuple(WORKLOADS)),
                   default=list(WORKLOADS), help="comma-separated tags (default: S,M,L,D,T,P)")
    p.add_argument("--scale", type=_positive_float, default=1.0,
                   help="multiply every workload's n_samples (default: 1)")
    p.add_argument("--dtype", choices=["float64", "float32", "both"], default="float64")
    p.add_argument("--repeats", type=_positive_int, default=3,
                   help="repeats; medians are reported (default: 3)")
    p.add_argument("--sklearn-iters", type=_positive_int, default=2, metavar="M",
                   help="scikit-learn is timed with max_iter=1 and 1+M (default: 2)")
    p.add_argument("--fastem-iters", type=_iters, default="auto", metavar="M",
                   help="fastem is timed with max_iter=1 and 1+M (default: auto, "
                        "about 0.2 s of differenced time, at least --sklearn-iters)")
    p.add_argument("--no-sklearn", action="store_true", help="time fastem only")
    p.add_argument("--threads", type=_list_of(int), default=None, metavar="N1,N2",
                   help="time fastem with each thread count (n_jobs); the headline "
                        "numbers use the last, and the last-vs-first speed-up is reported")
    p.add_argument("--sklearn-blas-threads", type=_positive_int, default=None, metavar="N",
                   help="limit scikit-learn's BLAS threads (default: the BLAS default)")
    p.add_argument("--no-memory", action="store_true",
                   help="skip the peak-memory subprocesses")
    p.add_argument("--json", metavar="PATH", default=None, help="also write the results here")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--end-to-end", action="store_true",
                      help="default init + EM to tol=1e-3 for both libraries; total times")
    mode.add_argument("--compile", action="store_true",
                      help="import time and first-fit latency, cold and warm Numba cache, "
                           "in fresh subprocesses")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    return p


def main(argv=None):
    """Entry point of ``fastem bench``; returns the exit status."""
    args = build_parser().parse_args(argv)
    verbose = not args.quiet
    dtypes = ["float64", "float32"] if args.dtype == "both" else [args.dtype]
    libraries = ("fastem",) if args.no_sklearn else LIBRARIES
    machine = machine_info()
    report = {"schema": SCHEMA, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "machine": machine, "options": {k: v for k, v in vars(args).items()},
              "results": []}
    results = report["results"]
    if args.compile:
        report["mode"] = "compile"
        report["method"] = ("fresh subprocesses, initially empty NUMBA_CACHE_DIR "
                            "(cold), then the same cache directory again (warm)")
        seen = []
        for tag in args.workloads:
            _, d, K, ct = WORKLOADS[tag]
            for dt in dtypes:
                if (ct, dt) not in seen:
                    seen.append((ct, dt))
                    results.append(run_compile(ct, dt, d, K, verbose))
    elif args.end_to_end:
        report["mode"] = "end-to-end"
        report["method"] = ("total fit time, default initialisation (random_state=0), "
                            "EM until tol=1e-3; median over repeats")
        for tag in args.workloads:
            for dt in dtypes:
                results.append(run_end_to_end(tag, args.scale, dt, args.repeats, libraries,
                                              verbose=verbose))
    else:
        report["mode"] = "iteration"
        report["method"] = METHOD
        _progress("measuring numpy matmul GFLOP/s", verbose)
        report["matmul_gflops"] = {dt: measure_matmul_gflops(dt) for dt in dtypes}
        for tag in args.workloads:
            for dt in dtypes:
                results.append(run_workload(
                    tag, args.scale, dt, args.repeats, libraries,
                    sklearn_iters=args.sklearn_iters, fastem_iters=args.fastem_iters,
                    threads=args.threads, memory=not args.no_memory,
                    matmul_gflops=report["matmul_gflops"][dt],
                    sklearn_blas_threads=args.sklearn_blas_threads, verbose=verbose))
    # the threading layer is only known once a parallel kernel has run
    machine.update({k: v for k, v in machine_info().items()
                    if k == "numba_threading_layer"})
    print(format_table(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(_jsonable(report), f, indent=2)
            f.write("\n")
    return 0


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    return obj


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
