"""asv trackers of the performance targets that are ratios rather than times
(issue 16): the fraction of the machine's matmul rate, float32 against
float64, end to end against scikit-learn, a fit under a competing busy
process against the same fit idle, and a ``.npy`` stream against the same
rows in memory.

Data are scaled by ``FASTEM_ASV_SCALE`` as in :mod:`bench_mixture` (default
0.05; 0.002 is the tiny CI profile, where the timer cannot resolve most of
these and they return NaN).  Only the public API is used, so that the suite
also runs against older commits.  Per-iteration times are
``(min t(1 + m) - min t(1)) / m`` over 3 repeats from fixed initial
parameters; a ratio is NaN when a difference is not positive.
"""

import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from .bench_mixture import (
    SCALE,
    _quiet,
    fastem_gm,
    initial_parameters,
    make_blobs,
    warm_up,
    workload,
)

FASTEM_ITERS = 10


def _per_iter(make, data, m=FASTEM_ITERS, repeats=3):
    t_1, t_m = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        make(1).fit(data)
        t1 = time.perf_counter()
        make(1 + m).fit(data)
        t_1.append(t1 - t0)
        t_m.append(time.perf_counter() - t1)
    return (min(t_m) - min(t_1)) / m


def _ratio(a, b):
    return a / b if a > 0 and b > 0 else float("nan")


def _matmul_gflops(dtype="float64", n=2048, repeats=3):
    """numpy's matmul rate on this machine (best of ``repeats``), measured here
    rather than imported, so that every commit is compared with the same."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    c = np.empty((n, n), dtype=dtype)
    np.matmul(a, b, out=c)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.matmul(a, b, out=c)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best / 1e9


def _full_flops(n, d, K):
    """Useful floating-point operations of one full-covariance EM iteration
    (``fastem.bench.em_flops``): the triangular solves and the rank-1 updates
    of the second moments, d(d+1)/2 multiply-adds each per row and component."""
    return 2 * n * K * d * (d + 1)


class TrackTargets:
    """The issue's ratio targets, one number per commit."""

    timeout = 1800

    def setup(self, *params):
        _quiet()

    # -- fraction of the matmul rate (M >= 50%, L >= 65%) -------------------

    def track_pct_of_matmul(self, shape):
        """Useful GFLOP/s of a full-covariance EM iteration as a percentage of
        numpy's float64 matmul rate measured in the same process."""
        X, K, init = workload(shape, "full", "float64")
        warm_up("fastem", X.shape[1], K, "full", "float64")
        t = _per_iter(lambda it: fastem_gm(K, "full", it, init), X)
        if not t > 0:
            return float("nan")
        gflops = _full_flops(X.shape[0], X.shape[1], K) / t / 1e9
        return 100.0 * gflops / _matmul_gflops("float64")

    track_pct_of_matmul.params = (["M", "L"],)
    track_pct_of_matmul.param_names = ["shape"]
    track_pct_of_matmul.unit = "percent"

    # -- float32 against float64 (>= 1.6x on M and L) -----------------------

    def track_float32_speedup(self, shape):
        """Time per EM iteration in float64 over the same in float32 (full)."""
        times = {}
        for dtype in ("float64", "float32"):
            X, K, init = workload(shape, "full", dtype)
            warm_up("fastem", X.shape[1], K, "full", dtype)
            times[dtype] = _per_iter(lambda it, K=K, init=init: fastem_gm(K, "full", it, init),
                                     X)
        return _ratio(times["float64"], times["float32"])

    track_float32_speedup.params = (["M", "L"],)
    track_float32_speedup.param_names = ["shape"]
    track_float32_speedup.unit = "ratio"

    # -- end to end against scikit-learn (M >= 25x) -------------------------

    def track_end_to_end_speedup(self):
        """scikit-learn's total fit time over fastem's on M (full, float64):
        default initialisation (k-means) and EM until tol=1e-3, the best of two
        fits each."""
        from fastem import GaussianMixture as FastGM
        from sklearn.mixture import GaussianMixture as SkGM

        X, K, _ = workload("M", "full", "float64")
        warm_up("fastem", X.shape[1], K, "full", "float64")
        warm_up("sklearn", X.shape[1], K, "full", "float64")

        def total(cls):
            best = float("inf")
            for _ in range(2):
                t0 = time.perf_counter()
                cls(n_components=K, covariance_type="full", tol=1e-3,
                    random_state=0).fit(X)
                best = min(best, time.perf_counter() - t0)
            return best

        return _ratio(total(SkGM), total(FastGM))

    track_end_to_end_speedup.unit = "ratio"

    # -- one competing busy process (<= 2.5x idle) --------------------------

    def track_loaded_over_idle(self):
        """Time per EM iteration with one competing busy process over the same
        idle: 1e6 x 8 rows (times the scale), K=8, full, float64."""
        n = max(int(1_000_000 * SCALE), 2_000)
        X, truth = make_blobs(n, 8, 8, "float64")
        init = initial_parameters(truth, "full")
        warm_up("fastem", 8, 8, "full", "float64")

        def make(it):
            return fastem_gm(8, "full", it, init)

        idle = _per_iter(make, X)
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            time.sleep(0.5)
            loaded = _per_iter(make, X)
        finally:
            busy.kill()
            busy.wait()
        return _ratio(loaded, idle)

    track_loaded_over_idle.unit = "ratio"

    # -- a .npy stream against the same rows in memory (<= 1.15x) -----------

    def track_stream_over_memory(self):
        """Time per EM iteration of ``fit(path)`` on a ``.npy`` file (in the page
        cache) over ``fit(X)`` on the same rows: 4e6 x 8 (times the scale),
        K=8, full, float64."""
        n = max(int(4_000_000 * SCALE), 2_000)
        X, truth = make_blobs(n, 8, 8, "float64")
        init = initial_parameters(truth, "full")
        warm_up("fastem", 8, 8, "full", "float64")
        folder = tempfile.mkdtemp(prefix="fastem-asv-stream-")
        path = os.path.join(folder, "X.npy")
        try:
            np.save(path, X)
            with open(path, "rb") as f:  # into the page cache
                while f.read(1 << 24):
                    pass

            def make(it):
                return fastem_gm(8, "full", it, init)

            memory = _per_iter(make, X)
            stream = _per_iter(make, path)
        finally:
            os.remove(path)
            os.rmdir(folder)
        return _ratio(stream, memory)

    track_stream_over_memory.unit = "ratio"

