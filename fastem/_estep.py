"""Glue between parameters, statistics and the Numba kernels.

Drivers call :func:`compute_stats` (E-step + accumulation, one pass) and
:func:`weighted_log_prob` (E-step only) on validated arrays; they never look
inside a kernel.  The kernel module is imported on first use so that
``import fastem`` stays fast.
"""

import contextlib
import threading

import numpy as np

from ._suffstats import SuffStats

# Rows per block: a fixed number, never derived from the thread count.
BLOCK_SMALL_D = 256
BLOCK_LARGE_D = 128
# Blocks per parallel task: fixed, so that task boundaries fall on the same
# rows whatever the chunking of the data (see StatsAccumulator).
BLOCKS_PER_TASK = 16
# Rows handed to one kernel call when an in-memory array is processed: bounds
# the per-task partial statistics a call allocates.
PASS_CHUNK = 65_536


def kernels():
    from . import _kernels

    return _kernels


def block_size(n_features):
    return BLOCK_SMALL_D if n_features <= 8 else BLOCK_LARGE_D


def task_rows(n_features):
    """Rows per parallel task: a function of the number of features only."""
    return block_size(n_features) * BLOCKS_PER_TASK


def _own(a, dtype):
    """A fresh, writable, C-contiguous copy (the kernels' parameter arrays are
    typed writable; fitted attributes may be read-only or broadcast views)."""
    return np.array(a, dtype=dtype, order="C", copy=True)


def kernel_args(params, dtype):
    """Means, precision factors and log normalisers in the kernels' layout."""
    K, d = params.means.shape
    means = _own(params.means, dtype)
    ct = params.covariance_type
    pc = np.asarray(params.precisions_cholesky)
    if ct == "tied":
        P = _own(pc[None], dtype)  # the kernels use P[0]
    elif ct == "spherical":
        P = _own(np.broadcast_to(pc[:, None], (K, d)), dtype)
    elif ct == "full":
        # the full E-step reads whole groups of rows of P_k: the entries below
        # the diagonal must be exact zeros
        P = _own(np.triu(pc), dtype)
    else:
        P = _own(pc, dtype)
    return means, P, _own(params.log_norm(), np.float64)


def mixture_reference(params, dtype):
    """The mixture mean: the point at which the E-step centres the rows, and
    the reference of the tied total scatter."""
    return _own(params.weights @ params.means, dtype)


def projection(params, ref2, dtype):
    """(mu_k - ref2) projected by the precision factor of component k, (K, d):
    P_k^T (mu_k - ref2) for full and tied, (mu_k - ref2) * p_k for diag and
    spherical.  The E-step forms P_k^T (x - ref2) - proj_k = P_k^T (x - mu_k)."""
    centred = params.means - np.asarray(ref2, dtype=np.float64)
    pc = np.asarray(params.precisions_cholesky)
    ct = params.covariance_type
    if ct == "full":
        proj = np.einsum("ki,kij->kj", centred, pc)
    elif ct == "tied":
        proj = centred @ pc
    elif ct == "diag":
        proj = centred * pc
    else:
        proj = centred * pc[:, None]
    return _own(proj, dtype)


def _upper_to_full(s2):
    """Fill the lower triangles of (K, d, d) from the upper triangles."""
    return np.triu(s2) + np.swapaxes(np.triu(s2, 1), -1, -2)


class ZeroDensityError(ValueError):
    """Rows with zero probability under every component (their log-density
    is -inf or NaN)."""


class StatsAccumulator:
    """Sufficient statistics of one E-step pass, accumulated chunk by chunk.

    All chunks must have the dtype given here.  Chunks are processed in the
    order they are added; each kernel call adds its tasks' statistics to the
    same accumulators in task order, so adding chunks whose sizes are
    multiples of :func:`task_rows` gives bitwise the result of adding all rows
    at once.

    Parameters
    ----------
    params : GaussianParams
        The current parameters (the E-step's and the moments' reference).
    dtype : numpy dtype, float32 or float64
    rows_per_task : int, optional
        Rows per parallel task instead of :func:`task_rows` (a multiple of
        :func:`block_size`).
    """

    def __init__(self, params, dtype, rows_per_task=None):
        self._k = kernels()
        self.params = params
        self.dtype = np.dtype(dtype)
        K, d = params.means.shape
        self.covariance_type = ct = params.covariance_type
        self._means, self._P, self._log_norm = kernel_args(params, self.dtype)
        self._ref2 = mixture_reference(params, self.dtype)
        self._proj = projection(params, self._ref2, self.dtype)
        self._block = block_size(d)
        # rows_per_task (a multiple of the block size) overrides the fixed task
        # size: mini-batches use smaller tasks so that both threads work on a
        # batch; results then depend on it only through rounding
        self._task_rows = task_rows(d) if rows_per_task is None else int(rows_per_task)
        self.nk = np.zeros(K)
        self.s1 = np.zeros((K, d))
        if ct == "full":
            self.s2 = np.zeros((K, d, d))
        elif ct == "tied":
            self.s2 = np.zeros((1, d, d))
        else:
            self.s2 = np.zeros((K, d))
        self._acc = np.zeros(2)
        self.weight_sum = 0.0
        self.n_rows = 0

    def add(self, X, sample_weight=None):
        """Add the statistics of the rows of X (validated, C-contiguous)."""
        n = X.shape[0]
        if n == 0:
            return
        if X.dtype != self.dtype:
            raise TypeError(f"chunk dtype {X.dtype} differs from the pass's {self.dtype}")
        k = self._k
        w = _weights_arg(sample_weight)
        with _serial_if(n <= self._task_rows):
            self._run(k, X, w)
        self.weight_sum += float(n) if sample_weight is None else float(np.sum(w))
        self.n_rows += n

    def _run(self, k, X, w):
        args = (X, w, self._means, self._P, self._log_norm, self._ref2, self._proj,
                self._block, self._task_rows, self.nk, self.s1, self.s2, self._acc)
        ct = self.covariance_type
        if ct == "full":
            k.pass_full(*args, k.class_tag(X.shape[1]))
        elif ct == "tied":
            k.pass_tied(*args)
        else:
            k.pass_diag(*args)

    def result(self):
        """The accumulated statistics as a SuffStats value."""
        nbad = int(self._acc[1])
        if nbad:
            raise ZeroDensityError(
                f"{nbad} row(s) have zero probability under every component (their "
                "log-density is -inf or NaN); the data are probably far outside the "
                "range of the model. Scale the input data or check the initial "
                "parameters.")
        ct = self.covariance_type
        s2 = self.s2
        if ct == "full":
            s2 = _upper_to_full(s2)
        elif ct == "tied":
            s2 = _upper_to_full(s2)[0]
        return SuffStats(ct, self.nk.copy(), self.s1.copy(), s2,
                         self._means.astype(np.float64),
                         self._ref2.astype(np.float64), float(self._acc[0]),
                         self.weight_sum, self.n_rows)


def _row_slices(n, size):
    for lo in range(0, n, size):
        yield lo, min(n, lo + size)


def compute_stats(X, params, sample_weight=None):
    """One E-step pass over an in-memory array: statistics around the means.

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
    acc = StatsAccumulator(params, X.dtype)
    for lo, hi in _row_slices(X.shape[0], PASS_CHUNK):
        acc.add(X[lo:hi], None if sample_weight is None else sample_weight[lo:hi])
    return acc.result()


class RespAccumulator:
    """Statistics under given responsibilities (initialisation), accumulated
    chunk by chunk.

    This runs once per fit, so it is written with NumPy (BLAS products in
    float64) rather than with Numba kernels, which would cost a first fit
    seconds of compilation for no lasting gain.  Rows are taken in the same
    fixed tasks of :func:`task_rows` rows as the E-step kernels, and each
    task's statistics are added to the float64 accumulators in row order, so
    chunks whose sizes are multiples of the task size give bitwise the result
    of adding all rows at once.

    Parameters
    ----------
    ref : ndarray of shape (K, d), the references of the moments
    covariance_type : str
    dtype : the data's dtype
    ref2 : ndarray of shape (d,), the reference of the tied scatter
    """

    def __init__(self, ref, covariance_type, dtype, ref2=None):
        self.covariance_type = covariance_type
        self.dtype = np.dtype(dtype)
        # the references in the data's precision, as the E-step uses them
        self.ref = _own(ref, self.dtype).astype(np.float64)
        K, d = self.ref.shape
        if ref2 is None:
            ref2 = self.ref.mean(axis=0)
        self.ref2 = _own(ref2, self.dtype).astype(np.float64)
        self.nk = np.zeros(K)
        self.s1 = np.zeros((K, d))
        if covariance_type == "full":
            self.s2 = np.zeros((K, d, d))
        elif covariance_type == "tied":
            self.s2 = np.zeros((d, d))
        else:
            self.s2 = np.zeros((K, d))
        self.weight_sum = 0.0
        self.n_rows = 0

    def _tasks(self, n, d):
        size = task_rows(d)
        return _row_slices(n, size)

    def add(self, X, resp, weight_sum=None):
        """Add rows X (n, d) with (weighted) responsibilities resp (n, K);
        ``weight_sum``: the sum of the rows' weights when known (else that of
        resp, equal up to rounding)."""
        n, d = X.shape
        if n == 0:
            return
        resp = np.asarray(resp, dtype=np.float64)
        for lo, hi in self._tasks(n, d):
            x = np.asarray(X[lo:hi], dtype=np.float64)
            r = resp[lo:hi]
            for k in range(self.ref.shape[0]):
                self._add_component(k, x, r[:, k])
            if self.covariance_type == "tied":
                self._add_scatter(x, r.sum(axis=1))
        self.weight_sum += float(resp.sum()) if weight_sum is None else float(weight_sum)
        self.n_rows += n

    def add_hard(self, X, labels, sample_weight=None):
        """Add rows X (n, d), each given wholly to component ``labels[i]``
        with its weight (1 when ``sample_weight`` is None)."""
        n, d = X.shape
        if n == 0:
            return
        for lo, hi in self._tasks(n, d):
            x = np.asarray(X[lo:hi], dtype=np.float64)
            lab = labels[lo:hi]
            w = None if sample_weight is None else np.asarray(sample_weight[lo:hi],
                                                              dtype=np.float64)
            for k in np.unique(lab):
                rows = lab == k
                self._add_component(int(k), x[rows],
                                    np.ones(int(rows.sum())) if w is None else w[rows])
            if self.covariance_type == "tied":
                self._add_scatter(x, np.ones(hi - lo) if w is None else w)
        self.weight_sum += float(n) if sample_weight is None else float(np.sum(sample_weight))
        self.n_rows += n

    def _add_component(self, k, x, g):
        """Rows x (float64) with responsibilities g for component k."""
        tot = float(g.sum())
        if tot == 0.0:
            return
        self.nk[k] += tot
        diff = x - self.ref[k]
        gd = diff * g[:, None]
        self.s1[k] += gd.sum(axis=0)
        ct = self.covariance_type
        if ct == "full":
            self.s2[k] += gd.T @ diff
        elif ct in ("diag", "spherical"):
            self.s2[k] += (gd * diff).sum(axis=0)

    def _add_scatter(self, x, wrow):
        """Tied: the total scatter around ref2 weighted by the row weights."""
        diff = x - self.ref2
        self.s2 += (diff * wrow[:, None]).T @ diff

    def result(self):
        ct = self.covariance_type
        s2 = self.s2.copy()
        if ct in ("full", "tied"):
            s2 = _upper_to_full(s2) if ct == "full" else _upper_to_full(s2[None])[0]
        return SuffStats(ct, self.nk.copy(), self.s1.copy(), s2, self.ref.copy(),
                         self.ref2.copy(), 0.0, self.weight_sum, self.n_rows)


def stats_from_resp(X, resp, ref, covariance_type, ref2=None):
    """Statistics of X under given (weighted) responsibilities (initialisation).

    resp : ndarray of shape (n_samples, K), float64, rows sum to the row weight.
    ref : ndarray of shape (K, d), the references of the moments.
    """
    acc = RespAccumulator(ref, covariance_type, X.dtype, ref2)
    acc.add(X, resp)
    return acc.result()


def weighted_log_prob(X, params, out=None):
    """log w_k + log N(x | mu_k, Sigma_k), shape (n_samples, K), float64."""
    k = kernels()
    n, d = X.shape
    means, P, log_norm = kernel_args(params, X.dtype)
    if out is None:
        out = np.empty((n, params.n_components))
    if n == 0:
        return out
    ref2 = mixture_reference(params, X.dtype)
    proj = projection(params, ref2, X.dtype)
    args = (X, means, P, log_norm, ref2, proj, block_size(d), out)
    ct = params.covariance_type
    if ct == "full":
        k.logprob_full(*args, k.class_tag(d))
    elif ct == "tied":
        k.logprob_tied(*args)
    else:
        k.logprob_diag(*args)
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

    Numba's thread count is per calling thread, so concurrent fits and
    predictions in several threads each get their own.  The BLAS limit is
    process-wide: it is taken by the first caller and given back by the last
    one (a count under a lock), so that overlapping calls from several
    threads can never leave BLAS limited after they all return.
    """
    import numba

    previous = numba.get_num_threads()
    n = resolve_n_jobs(n_jobs)
    _blas_enter()
    try:
        numba.set_num_threads(n if n is not None else previous)
        yield
    finally:
        numba.set_num_threads(previous)
        _blas_exit()


_BLAS_LOCK = threading.Lock()
_BLAS_STATE = {"users": 0, "limiter": None}


def _blas_enter():
    with _BLAS_LOCK:
        if _BLAS_STATE["users"] == 0:
            _BLAS_STATE["limiter"] = _blas_controller().limit(limits=1, user_api="blas")
        _BLAS_STATE["users"] += 1


def _blas_exit():
    with _BLAS_LOCK:
        _BLAS_STATE["users"] -= 1
        if _BLAS_STATE["users"] == 0:
            limiter, _BLAS_STATE["limiter"] = _BLAS_STATE["limiter"], None
            limiter.restore_original_limits()


_CONTROLLER = []
_CONTROLLER_LOCK = threading.Lock()


@contextlib.contextmanager
def _serial_if(condition):
    """Run a kernel on the calling thread only, when there is one task's worth
    of rows: waking idle threads would cost more than the work (and much more
    on a busy machine).  Results do not depend on the thread count."""
    if not condition:
        yield
        return
    import numba

    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


def _blas_controller():
    """One threadpoolctl controller per process: scanning the loaded
    libraries costs milliseconds, too much for every mini-batch."""
    with _CONTROLLER_LOCK:
        if not _CONTROLLER:
            from threadpoolctl import ThreadpoolController

            _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0]


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
