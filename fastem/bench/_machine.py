"""Facts about the machine for fastem.bench: numpy's matmul rate, CPU, library versions."""

import contextlib
import os
import platform
import statistics
import time

import numpy as np

MATMUL_N = 2000

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

    from .. import __version__

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
                 "version": i.get("version"), "architecture": i.get("architecture")}
                for i in threadpool_info() if i.get("user_api") == "blas"]
    layer = None
    with contextlib.suppress(Exception):
        layer = numba.threading_layer()
    from ._roofline import target_isa

    isa = target_isa()
    return {
        "cpu": cpu, "cpu_count": os.cpu_count(), "cpus_available": affinity,
        "platform": platform.platform(), "python": platform.python_version(),
        "numpy": np.__version__, "numba": numba.__version__,
        "sklearn": sklearn.__version__, "fastem": __version__,
        "numba_threads": numba.get_num_threads(),
        "numba_max_threads": numba.config.NUMBA_NUM_THREADS,
        "numba_threading_layer": layer, "blas": blas,
        "numba_target_cpu": isa["cpu"], "isa": isa["isa"],
        "isa_features_overridden": isa["features_overridden"],
        "blas_env_unset": dict(_BLAS_ENV_UNSET),
    }


#: Environment variables that pin OpenBLAS to an older kernel than the CPU's
#: own; ``fastem bench`` runs without them (see :func:`native_blas_env`).
BLAS_PINNING_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
#: Set in the re-executed bench process: the values it unset.
_BLAS_ENV_UNSET = {}
_REEXEC_MARK = "FASTEM_BENCH_UNSET_BLAS_ENV"


def native_blas_env(environ=None):
    """``(env, unset)``: ``environ`` without :data:`BLAS_PINNING_VARS`, and the
    values removed.  OpenBLAS reads them when it is loaded, so the bench
    re-executes itself with this environment when any is set (that command
    alone: the caller's environment is untouched)."""
    environ = dict(os.environ if environ is None else environ)
    unset = {k: environ.pop(k) for k in BLAS_PINNING_VARS if k in environ}
    return environ, unset
