"""Glue between parameters, statistics and the Numba kernels.

Drivers call :func:`compute_stats` (E-step + accumulation, one pass) and
:func:`weighted_log_prob` (E-step only) on validated arrays; they never look
inside a kernel.  The kernel module is imported on first use so that
``import fastem`` stays fast.
"""


import numpy as np

from . import _missing
from ._constants import CHUNK_ROWS, PASS_PARTIALS_BYTES
from ._threads import serial_if
from ._suffstats import SuffStats

# Rows per block: a fixed number, never derived from the thread count.  256
# for every d: with blocks of 128 rows for d > 8 (as until December 2026) the
# per-block sums of the tiles and the per-component loop set-up weighed more;
# 256 ran M 4%, D 7%, P 5% and L 21% faster (e-pass, two threads, AVX-512
# code; AVX2 code as fast or faster), once the scratch rows were padded
# (_kernels._machinery.SCRATCH_PAD).
BLOCK_ROWS = 256
# Blocks per parallel task: fixed, so that task boundaries fall on the same
# rows whatever the chunking of the data (see StatsAccumulator).
BLOCKS_PER_TASK = 16


def kernels():
    from . import _kernels

    return _kernels


def block_size(n_features):
    """Rows per block of the kernels (the same for every n_features)."""
    return BLOCK_ROWS


# the E-step + statistics kernel of each covariance type
PASS_KERNEL = {"full": "pass_full", "tied": "pass_tied", "diag": "pass_diag",
                "spherical": "pass_spherical"}


def start_compiling(covariance_type, dtype, n_features, hard_pass=False):
    """Start compiling in the background, each in a child process of its own,
    the E-step kernel of a fit of this type, dtype and width and (with
    ``hard_pass``) the kernel of the 'kmeans' start's pass over every row,
    unless cached or already loaded; returns at once.  The fit's first calls
    of those kernels then wait for the children (see
    :func:`fastem._kernels.start_in_child`)."""
    k = kernels()
    dtype = np.dtype(dtype)
    tag = k.class_tag(n_features) if covariance_type == "full" else None
    k.start_in_child([(PASS_KERNEL[covariance_type], dtype, False, tag)])
    if hard_pass:
        k.start_in_child([("hard_pass", dtype, False, None)])


def task_rows(n_features):
    """Rows per parallel task: a function of the number of features only."""
    return block_size(n_features) * BLOCKS_PER_TASK


def pass_rows(covariance_type, n_components, n_features):
    """Rows per E-step pass call on an in-memory array: a multiple of
    :func:`task_rows` (so the result is bitwise that of any other such call
    size, see StatsAccumulator) whose per-task partial statistics fit in
    PASS_PARTIALS_BYTES, and at least CHUNK_ROWS."""
    K, d = n_components, n_features
    s2 = {"full": K * d * d, "tied": d * d}.get(covariance_type, K * d)
    per_task = 8 * (K * (1 + d) + s2 + 2)
    tasks = max(1, PASS_PARTIALS_BYTES // per_task)
    return max(CHUNK_ROWS, tasks * task_rows(d))


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
    P_k^T (mu_k - ref2) for full and tied, (mu_k - ref2) * p_k for diag; the
    E-step forms P_k^T (x - ref2) - proj_k = P_k^T (x - mu_k).  Spherical:
    mu_k - ref2 itself (the kernels form |x - mu_k|^2 and scale it after)."""
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
        # the spherical kernels take the centred means unscaled (they keep
        # the squared distances for the second moments)
        proj = centred
    return _own(proj, dtype)


def _zero_s2(covariance_type, K, d):
    """The second-moment accumulator, one layout for every producer: (K, d, d)
    for full, (1, d, d) for tied (the total scatter), (K, d) for diag and
    spherical; full and tied fill the upper triangle only."""
    if covariance_type == "full":
        return np.zeros((K, d, d))
    if covariance_type == "tied":
        return np.zeros((1, d, d))
    return np.zeros((K, d))


def _finish_s2(covariance_type, s2):
    """The accumulator as SuffStats holds it: symmetric, (d, d) for tied."""
    if covariance_type == "full":
        return _upper_to_full(s2)
    if covariance_type == "tied":
        return _upper_to_full(s2)[0]
    return s2.copy()


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
    missing : bool, default=False
        Rows holding NaN are marginalised (:mod:`fastem._missing`): each
        chunk's complete rows go to the kernel as before, its incomplete rows
        to a :class:`~fastem._missing.MissingAccumulator`, whose statistics
        are added after the kernel's (a fixed order).  A chunk without NaN
        takes exactly the path it takes without this option.
    """

    def __init__(self, params, dtype, rows_per_task=None, missing=False):
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
        self.s2 = _zero_s2(ct, K, d)
        self._acc = np.zeros(2)
        self.weight_sum = 0.0
        self.n_rows = 0
        self._missing = (_missing.MissingAccumulator(
            params, self._means.astype(np.float64), self._ref2.astype(np.float64))
            if missing else None)

    def add(self, X, sample_weight=None, incomplete=None):
        """Add the statistics of the rows of X (validated, C-contiguous).

        With missing values, ``incomplete`` may give the rows of X that hold a
        NaN (:func:`fastem._missing.incomplete_rows`, found once per chunk by
        the caller); otherwise X is scanned here.
        """
        n = X.shape[0]
        if n == 0:
            return
        if X.dtype != self.dtype:
            raise TypeError(f"chunk dtype {X.dtype} differs from the pass's {self.dtype}")
        if self._missing is not None:
            inc = _missing.incomplete_rows(X) if incomplete is None else incomplete
            if inc.size:
                keep = np.ones(n, dtype=bool)
                keep[inc] = False
                w = None if sample_weight is None else np.asarray(sample_weight)
                self._missing.add(X[inc], None if w is None else w[inc])
                X = np.ascontiguousarray(X[keep])
                sample_weight = None if w is None else np.ascontiguousarray(w[keep])
                n = X.shape[0]
                if n == 0:
                    return
        self._add_rows(X, n, sample_weight, self._k.memory_src())

    def add_from_file(self, fd, offset, n, sample_weight=None):
        """Add the statistics of ``n`` rows of this pass's dtype and width
        stored C-ordered in the open file ``fd`` from byte ``offset``: each
        parallel task reads its own rows (see :mod:`fastem._kernels._fileread`).
        The same statistics, bitwise, as :meth:`add` of those rows.  The
        caller has checked the rows (finite) and the file's identity, and
        checks it again after the pass.  A read that came short raises
        OSError; the tasks that read their rows have then added them, so the
        accumulator must be dropped (a pass that fails is discarded whole)."""
        if self._missing is not None:
            raise ValueError("add_from_file: rows with missing values are added with add()")
        if n == 0:
            return
        src = self._k.file_src(fd, offset, n)
        self._add_rows(np.empty((0, self.s1.shape[1]), dtype=self.dtype), n, sample_weight, src)
        if src[3]:
            raise OSError(f"{int(src[3])} of the tasks' reads from file descriptor {fd} came "
                          "short (the file shrank or could not be read)")

    def _add_rows(self, X, n, sample_weight, src):
        k = self._k
        w = _weights_arg(sample_weight)
        with serial_if(n <= self._task_rows):
            self._run(k, X, w, src)
        if src[3]:
            return  # add_from_file raises; the statistics are not used
        self.weight_sum = (self.weight_sum + float(n) if sample_weight is None
                           else _add_in_tasks(self.weight_sum, w, self._task_rows))
        self.n_rows += n

    def _run(self, k, X, w, src):
        args = (X, w, self._means, self._P, self._log_norm, self._ref2, self._proj,
                self._block, self._task_rows, self.nk, self.s1, self.s2, self._acc, src)
        ct = self.covariance_type
        if ct == "full":
            k.pass_full(*args, k.class_tag(X.shape[1]))
        elif ct == "tied":
            k.pass_tied(*args)
        elif ct == "spherical":
            k.pass_spherical(*args)
        else:
            k.pass_diag(*args)

    def result(self):
        """The accumulated statistics as a SuffStats value."""
        nbad = int(self._acc[1])
        if self._missing is not None:
            missing_stats, nbad_missing = self._missing.result()
            nbad += nbad_missing
        if nbad:
            raise ZeroDensityError(
                f"{nbad} row(s) have zero probability under every component (their "
                "log-density is -inf or NaN); the data are probably far outside the "
                "range of the model. Scale the input data or check the initial "
                "parameters.")
        ct = self.covariance_type
        stats = SuffStats(ct, self.nk.copy(), self.s1.copy(), _finish_s2(ct, self.s2),
                          self._means.astype(np.float64),
                          self._ref2.astype(np.float64), float(self._acc[0]),
                          self.weight_sum, self.n_rows)
        if self._missing is not None and missing_stats.n_rows:
            stats = stats.merge(missing_stats)
        return stats


def _add_in_tasks(total, w, task):
    """total plus the weights w, summed per task of ``task`` rows and added in
    task order: the same bits for any chunking into multiples of the task
    size, as the kernels' statistics (np.sum of a whole chunk would depend on
    the chunk's length)."""
    n = w.shape[0]
    m = n - n % task
    sums = [total]
    if m:
        sums.extend(w[:m].reshape(-1, task).sum(axis=1))
    if m < n:
        sums.append(w[m:].sum())
    return float(np.add.accumulate(np.array(sums))[-1])


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
    K, d = params.means.shape
    for lo, hi in _row_slices(X.shape[0], pass_rows(params.covariance_type, K, d)):
        acc.add(X[lo:hi], None if sample_weight is None else sample_weight[lo:hi])
    return acc.result()


def weighted_log_prob(X, params, out=None, missing=False):
    """log w_k + log N(x | mu_k, Sigma_k), shape (n_samples, K), float64.

    With ``missing``, rows holding NaN get the density of their observed
    entries, log w_k + log N(x_o | mu_k,o, Sigma_k,oo) (:mod:`fastem._missing`);
    the other rows go through the kernel as without it.
    """
    if missing:
        inc = _missing.incomplete_rows(X)
        if inc.size:
            n = X.shape[0]
            if out is None:
                out = np.empty((n, params.n_components))
            keep = np.ones(n, dtype=bool)
            keep[inc] = False
            if keep.any():
                out[keep] = weighted_log_prob(np.ascontiguousarray(X[keep]), params)
            out[inc] = _missing.log_prob(X[inc], params)
            return out
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
    elif ct == "spherical":
        k.logprob_spherical(*args)
    else:
        k.logprob_diag(*args)
    return out


def _weights_arg(sample_weight):
    if sample_weight is None:
        return np.empty(0)
    return np.ascontiguousarray(sample_weight, dtype=np.float64)
