"""Fit a Gaussian mixture on a Dask array spread over a local cluster.

Two worker processes with one thread each hold the rows; every EM iteration
runs the E-step kernel on the workers and sends back only the sufficient
statistics.  Prediction returns a lazy Dask array.  The same fit in memory is
timed for comparison.

    python examples/dask_cluster.py          # 2,000,000 x 8 rows
    FASTEM_EXAMPLE_SMALL=1 python examples/dask_cluster.py   # 200,000 rows

``--iteration-bench N [REPEATS]`` times one EM iteration (E-step pass and
M-step) on N x 8 rows, 8 components, distributed and in memory, alternately,
REPEATS times each, and prints the medians (see docs/scaling.md).
"""

import os
import pickle
import sys
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

import dask.array as da
from distributed import Client, LocalCluster

from fastem import GaussianMixture

N = 200_000 if os.environ.get("FASTEM_EXAMPLE_SMALL") else 2_000_000
D = 8
K = 8
ITER = 20


def make_data(n, seed=0):
    """Rows of an 8-component mixture, generated block by block from a seed
    (a deterministic graph: a lost block can be recomputed)."""
    rng = np.random.default_rng(seed)
    centers = rng.uniform(-10, 10, size=(K, D))
    rows = -(-n // 16)  # 16 blocks
    rs = da.random.RandomState(seed)
    labels = rs.randint(0, K, size=n, chunks=rows)
    noise = rs.standard_normal(size=(n, D), chunks=(rows, D))
    return da.from_array(centers)[labels] + noise


def main():
    warnings.simplefilter("ignore", ConvergenceWarning)
    kw = dict(n_components=K, max_iter=ITER, tol=0, random_state=0)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        X = make_data(N).persist()
        print(f"{N:,} x {D} rows in {X.npartitions} blocks on "
              f"{len(client.scheduler_info()['workers'])} workers")
        # warm the JIT on the workers (fit and predict kernels)
        GaussianMixture(K, max_iter=1, tol=0, random_state=0).fit(X[:20_000]).predict(
            X[:20_000]).compute()

        t = time.perf_counter()
        gm = GaussianMixture(**kw).fit(X)
        t_dask = time.perf_counter() - t
        labels = gm.predict(X)  # lazy: nothing computed yet
        t = time.perf_counter()
        counts = np.bincount(labels.compute(), minlength=K)
        t_pred = time.perf_counter() - t
        print(f"dask fit ({ITER} iterations): {t_dask:.2f} s, "
              f"lower bound {gm.lower_bound_:.6f}")
        print(f"lazy predict computed on the workers: {t_pred:.2f} s, "
              f"cluster sizes {counts.tolist()}")

        Xnp = X.compute()
    GaussianMixture(K, max_iter=1, tol=0, random_state=0).fit(Xnp[:10_000])
    t = time.perf_counter()
    ref = GaussianMixture(**kw).fit(Xnp)
    t_mem = time.perf_counter() - t
    print(f"in-memory fit ({ITER} iterations): {t_mem:.2f} s, "
          f"lower bound {ref.lower_bound_:.6f}")
    print(f"dask / in-memory time: {t_dask / t_mem:.2f}; "
          f"max |means difference| {np.abs(gm.means_ - ref.means_).max():.2e}")


def iteration_bench(n, repeats):
    """Median seconds of one EM iteration, distributed and in memory."""
    from fastem._data import ArrayData
    from fastem._dask import DaskData

    warnings.simplefilter("ignore", ConvergenceWarning)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster):
        X = make_data(n).persist()
        gm = GaussianMixture(K, max_iter=2, tol=0, random_state=0).fit(X[:200_000])
        params = gm._params()
        dd = DaskData(X)
        dd.e_pass(params)  # persist, check, warm the workers' JIT
        Xnp = np.ascontiguousarray(X.compute())
        ad = ArrayData(Xnp)
        ad.e_pass(params)  # warm the client's JIT
        stats_bytes = len(pickle.dumps(dd.e_pass(params)))
        t_dask, t_mem = [], []
        for _ in range(repeats):
            t = time.perf_counter()
            dd.e_pass(params).m_step(gm.reg_covar)
            t_dask.append(time.perf_counter() - t)
            t = time.perf_counter()
            ad.e_pass(params).m_step(gm.reg_covar)
            t_mem.append(time.perf_counter() - t)
        nblocks = X.npartitions
    md, mm = np.median(t_dask), np.median(t_mem)
    print(f"{n:,} x {D} rows, K={K} full, {nblocks} blocks, 2 workers x 1 thread; "
          f"in memory: numba threads of this process")
    print("distributed s/iter:", " ".join(f"{v:.3f}" for v in t_dask))
    print("in-memory   s/iter:", " ".join(f"{v:.3f}" for v in t_mem))
    print(f"median distributed {md:.3f} s, in-memory {mm:.3f} s, ratio {md / mm:.2f}")
    print(f"statistics of one block, pickled: {stats_bytes} bytes")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--iteration-bench":
        iteration_bench(int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 5)
    else:
        main()
