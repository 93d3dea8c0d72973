"""The default mode of fastem.bench: milliseconds per EM iteration on one workload."""

import gc
import os
import shutil
import tempfile

import numpy as np

from ._machine import measure_matmul_gflops
from ._memory import measure_peak_memory
from ._roofline import roofline_counts, roofline_floor
from ._timing import _auto_iters, _per_iteration, initial_parameters, warm_up
from ._workloads import LIBRARIES, _describe, _progress, em_flops, make_blobs

METHOD = ("ms per EM iteration = median over repeats of (t(max_iter=1+m) - "
          "t(max_iter=1)) / m, wall clock, tol=0, identical explicit initial "
          "parameters for both libraries, JIT warmed beforehand")


def run_workload(tag, scale=1.0, dtype="float64", repeats=3, libraries=LIBRARIES,
                 n_jobs=None, *, sklearn_iters=2, fastem_iters="auto", threads=None,
                 memory=True, matmul_gflops=None, sklearn_blas_threads=None,
                 verbose=False, estimator="gmm", roofline=None):
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
    estimator : {'gmm', 'bayesian'}, default='gmm'
        GaussianMixture, or BayesianGaussianMixture (both libraries continue
        from the same posterior; no memory measurement).
    roofline : dict, optional
        The machine's rates from :func:`fastem.bench.measure_machine`; when
        given, the workload's floor (:func:`roofline_counts`,
        :func:`roofline_floor`) and fastem's fraction of it are added.

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
    res["estimator"] = estimator
    if estimator == "bayesian":
        memory = False
    n, d, K, ct = res["n_samples"], res["n_features"], res["n_components"], \
        res["covariance_type"]
    dtype = np.dtype(dtype)
    _progress(f"[{tag} {dtype.name}] generating {n:,} x {d} blobs, K={K}, {ct}", verbose)
    X, _truth = make_blobs(n, d, K, dtype)
    init = initial_parameters(X, K, ct, estimator)
    res["X_nbytes"] = int(X.nbytes)
    res["flops_per_iter"] = int(em_flops(n, d, K, ct))
    if matmul_gflops is None:
        matmul_gflops = measure_matmul_gflops(dtype)
    res["matmul_gflops"] = matmul_gflops
    res["method"] = METHOD

    thread_list = [int(t) for t in threads] if threads else [n_jobs]
    head_jobs = thread_list[-1]
    for t in thread_list:
        warm_up("fastem", d, K, ct, dtype, t, estimator)
    if "sklearn" in libraries:
        warm_up("sklearn", d, K, ct, dtype, estimator=estimator)

    m_sk = int(sklearn_iters)
    if fastem_iters == "auto":
        m_fe = _auto_iters(X, K, ct, init, head_jobs,
                           m_sk if "sklearn" in libraries else 2, estimator)
    else:
        m_fe = int(fastem_iters)
        if m_fe < 1:
            raise ValueError(f"Expected fastem_iters >= 1 or 'auto', got {fastem_iters!r}")

    fe = None
    per_thread = {}
    for t in thread_list:
        _progress(f"[{tag} {dtype.name}] fastem n_jobs={t}: {repeats} x "
                  f"(1 and {1 + m_fe} iterations)", verbose)
        r = _per_iteration("fastem", X, K, ct, m_fe, init, repeats, t, estimator=estimator)
        per_thread[t] = r
        fe = r
    from .._threads import resolve_n_jobs

    import numba

    fe = dict(fe)
    fe["n_jobs"] = head_jobs
    eff = resolve_n_jobs(head_jobs)
    fe["threads"] = eff if eff is not None else numba.get_num_threads()
    sec = fe["ms_per_iter"] / 1e3
    fe["gflops"] = res["flops_per_iter"] / sec / 1e9 if sec > 0 else float("nan")
    fe["pct_of_matmul"] = 100.0 * fe["gflops"] / matmul_gflops
    if roofline is not None:
        counts = roofline_counts(n, d, K, ct, dtype.itemsize)
        floor = roofline_floor(counts, roofline, dtype)
        res["roofline"] = dict(counts, **floor)
        fe["pct_of_floor"] = 100.0 * floor["floor_s"] / sec if sec > 0 else float("nan")
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
                            blas_threads=sklearn_blas_threads, estimator=estimator)
        sk["blas_threads"] = sklearn_blas_threads
        res["sklearn"] = sk
        # NaN, not a negative ratio, where a differenced time is not positive
        # (iterations too short for the timer's noise: a tiny --scale)
        res["speedup"] = (sk["ms_per_iter"] / fe["ms_per_iter"]
                          if fe["ms_per_iter"] > 0 and sk["ms_per_iter"] > 0
                          else float("nan"))
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
