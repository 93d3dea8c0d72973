"""Glue between parameters, statistics and the Numba kernels.

Drivers call :func:`compute_stats` (E-step + accumulation, one pass) and
:func:`weighted_log_prob` (E-step only) on validated arrays; they never look
inside a kernel.  The kernel module is imported on first use so that
``import fastem`` stays fast.
"""

import contextlib
import math

import numpy as np

from ._suffstats import SuffStats

# Rows per block: a fixed number, never derived from the thread count.
BLOCK_SMALL_D = 256
BLOCK_LARGE_D = 128
# Per-task partial statistics are bounded by this many bytes in total.
_PARTIAL_BUDGET = 32 * 2**20
_MAX_TASKS = 256
_MIN_BLOCKS_PER_TASK = 8


def kernels():
    from . import _kernels

    return _kernels


def block_size(n_features):
    return BLOCK_SMALL_D if n_features <= 8 else BLOCK_LARGE_D


def task_rows(n_samples, n_components, n_features, covariance_type):
    """Rows per parallel task: a function of the data shape only."""
    block = block_size(n_features)
    d = n_features
    K = n_components
    if covariance_type == "full":
        per_task = K + K * d + K * d * d
    elif covariance_type == "tied":
        per_task = K + K * d + d * d
    else:
        per_task = K + 2 * K * d
    max_tasks = max(8, min(_MAX_TASKS, _PARTIAL_BUDGET // (8 * per_task)))
    n_blocks = max(1, math.ceil(n_samples / block))
    blocks_per_task = max(_MIN_BLOCKS_PER_TASK, math.ceil(n_blocks / max_tasks))
    return block * blocks_per_task


def kernel_args(params, dtype):
    """Means, precision factors and log normalisers in the kernels' layout."""
    K, d = params.means.shape
    means = np.ascontiguousarray(params.means, dtype=dtype)
    ct = params.covariance_type
    pc = params.precisions_cholesky
    if ct == "full":
        P = np.ascontiguousarray(pc, dtype=dtype)
    elif ct == "tied":
        P = np.ascontiguousarray(np.broadcast_to(pc, (K, d, d)), dtype=dtype)
    elif ct == "diag":
        P = np.ascontiguousarray(pc, dtype=dtype)
    else:
        P = np.ascontiguousarray(np.broadcast_to(pc[:, None], (K, d)), dtype=dtype)
    return means, P, np.ascontiguousarray(params.log_norm(), dtype=np.float64)


def tied_reference(params, dtype):
    """Common reference point of the tied scatter: the mixture mean."""
    ref2 = params.weights @ params.means
    return np.ascontiguousarray(ref2, dtype=dtype)


def compute_stats(X, params, sample_weight=None):
    """One E-step pass over X: statistics around the current means.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32 or float64,
        C-contiguous, finite
    params : GaussianParams
    sample_weight : ndarray of shape (n_samples,) float64 or None

    Returns
    -------
    SuffStats
    """
    k = kernels()
    n, d = X.shape
    K = params.n_components
    ct = params.covariance_type
    means, P, log_norm = kernel_args(params, X.dtype)
    w = _weights_arg(sample_weight)
    block = block_size(d)
    rows = task_rows(n, K, d, ct)
    ref = means.astype(np.float64)
    if ct in ("full", "tied"):
        ref2 = tied_reference(params, X.dtype)
        mode = k.MODE_TIED if ct == "tied" else k.MODE_FULL
        nk, s1, s2, ll, nbad = k.pass_full(X, w, means, P, log_norm, ref2, mode,
                                           block, rows)
        if ct == "tied":
            s2 = s2[0]
    else:
        ref2 = None
        nk, s1, s2, ll, nbad = k.pass_diag(X, w, means, P, log_norm, block, rows)
    if nbad:
        raise ValueError(
            f"{nbad} row(s) have zero probability under every component (their "
            "log-density is -inf or NaN); the data are probably far outside the "
            "range of the model. Scale the input data or check the initial "
            "parameters.")
    wsum = float(n) if sample_weight is None else float(np.sum(sample_weight))
    return SuffStats(ct, nk, s1, s2, ref,
                     None if ref2 is None else ref2.astype(np.float64),
                     ll, wsum, n)


def stats_from_resp(X, resp, ref, covariance_type, ref2=None):
    """Statistics of X under given (weighted) responsibilities (initialisation).

    resp : ndarray of shape (n_samples, K), float64, rows sum to the row weight.
    ref : ndarray of shape (K, d), the references of the moments.
    """
    k = kernels()
    n, d = X.shape
    K = resp.shape[1]
    mode = {"full": k.MODE_FULL, "tied": k.MODE_TIED}.get(covariance_type, k.MODE_DIAG)
    refT = np.ascontiguousarray(ref, dtype=X.dtype)
    if ref2 is None:
        ref2 = refT.mean(axis=0)
    ref2T = np.ascontiguousarray(ref2, dtype=X.dtype)
    nk, s1, s2, s2d = k.resp_stats(X, np.ascontiguousarray(resp, dtype=np.float64),
                                   refT, ref2T, mode, block_size(d),
                                   task_rows(n, K, d, covariance_type))
    if covariance_type == "tied":
        s2 = s2[0]
    elif covariance_type in ("diag", "spherical"):
        s2 = s2d
    return SuffStats(covariance_type, nk, s1, s2, refT.astype(np.float64),
                     ref2T.astype(np.float64), 0.0, float(resp.sum()), n)


def weighted_log_prob(X, params, out=None):
    """log w_k + log N(x | mu_k, Sigma_k), shape (n_samples, K), float64."""
    k = kernels()
    n, d = X.shape
    means, P, log_norm = kernel_args(params, X.dtype)
    if out is None:
        out = np.empty((n, params.n_components))
    if n == 0:
        return out
    if params.covariance_type in ("full", "tied"):
        k.logprob_full(X, means, P, log_norm, block_size(d), out)
    else:
        k.logprob_diag(X, means, P, log_norm, block_size(d), out)
    return out


def _weights_arg(sample_weight):
    if sample_weight is None:
        return np.empty(0)
    return np.ascontiguousarray(sample_weight, dtype=np.float64)


@contextlib.contextmanager
def thread_limits(n_jobs):
    """Run Numba kernels with ``n_jobs`` threads and BLAS with one thread.

    ``n_jobs=None`` keeps Numba's current setting; negative values count from
    the number of available threads (-1: all).  The previous settings are
    restored on exit.
    """
    import numba
    from threadpoolctl import threadpool_limits

    previous = numba.get_num_threads()
    n = resolve_n_jobs(n_jobs)
    try:
        numba.set_num_threads(n if n is not None else previous)
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    finally:
        numba.set_num_threads(previous)


def resolve_n_jobs(n_jobs):
    import numba

    if n_jobs is None:
        return None
    top = numba.config.NUMBA_NUM_THREADS
    if n_jobs < 0:
        n = top + 1 + n_jobs
    else:
        n = n_jobs
    return max(1, min(int(n), top))
