"""The parallel kernels: one E-step + statistics pass per covariance family
(``pass_full``, ``pass_tied``, ``pass_diag``, ``pass_spherical``) and the
E-step only (``logprob_*``).

The eight kernels repeat the same frame (a ``prange`` over fixed tasks, the
task's scratch, the ordered merge) on purpose: Numba compiles, caches and
parallelises per top-level function, and each family's frame allocates its
own scratch (the tied type's whitened rows, the full type's partial sums),
so one kernel per family keeps every compiled kernel to its own code path.
The block work itself is written once, in :mod:`._blocks` and
:mod:`._moments`.
"""

import numpy as np
from numba import njit, prange, types

from ._blocks import (_load_block, _logprob_block_diag, _logprob_block_full,
                      _logprob_block_spherical, _logprob_block_tied, _normalise_block)
from ._fileread import SRC_FD, SRC_ROWS, _count_short, _read_task
from ._machinery import CACHE, FASTMATH, HELPER_CACHE, SCRATCH_PAD, _arr, kernel
from ._moments import (_accumulate_diag, _accumulate_full, _accumulate_spherical,
                       _accumulate_tied, _merge_tasks, _zero_task)

_f8 = types.float64
_i8 = types.int64

# ---------------------------------------------------------------------------
# E-step + statistics: one pass over the rows
#
# One parallel kernel per covariance family; the full family's feature class
# is the dtype of its tag argument, so each class compiles (and caches) a
# kernel holding only its own code path.  The block helpers are functions of
# their own, each compiled once per argument types and linked into the
# kernels that call it (no IR inlining: typing and lowering one huge body
# was most of a first fit's compile time), except four moment helpers that
# are faster inlined at no measurable compile cost (see _moments._gram_tiles).
#
# Numba links a copy of each helper, and of the parallel region, into every
# kernel, and a process that compiled them runs the helpers' own copies
# while one that loads the kernel from the cache runs the linked copies;
# the two are optimised separately and can differ in the last bits.  So a
# kernel that is not in the cache is compiled in a child process and then
# loaded from the cache here (see _Kernel.variant): every process runs the
# same machine code.
#
# _TASK_VIEWS: a slice such as p_s1[t] is a view whose reference count Numba
# updates atomically when it is made and dropped; in a helper that is not
# inlined nothing removes that pair, and on arrays every thread shares the
# updates contend.  So the kernels and helpers slice once per task, not once
# per block or component, and index with k elsewhere.  The partials are
# np.empty, zeroed by their own task (_zero_task): np.zeros would be a
# parallel region of its own.
# ---------------------------------------------------------------------------


def _sig_pass(dt, ro, P_ndim=3, extra=()):
    return types.void(
        _arr(dt, 2, ro), _arr(_f8, 1), _arr(dt, 2), _arr(dt, P_ndim), _arr(_f8, 1),
        _arr(dt, 1), _arr(dt, 2), _i8, _i8, _arr(_f8, 1), _arr(_f8, 2),
        _arr(_f8, P_ndim), _arr(_f8, 1), _arr(_i8, 1), *extra,
    )


def _sig_pass_full(dt, ro, tag):
    return _sig_pass(dt, ro, 3, (tag,))


def _sig_pass_tied(dt, ro):
    return _sig_pass(dt, ro, 3)


def _sig_pass_diag(dt, ro):
    return _sig_pass(dt, ro, 2)


@kernel(_sig_pass_full, tagged=True, parallel=True, cache=CACHE, fastmath=FASTMATH,
        shapes=("x d", "0|m", "K d", "K d d", "K", "d", "K d", "block", "task", "K", "K d",
                "K d d", "2", "src", "tag"))
def pass_full(X, w, means, P, log_norm, ref2, proj, block, task_rows, out_nk, out_s1,
              out_s2, out_ll, src, tag):
    """One EM pass for the full covariance type.

    Parameters
    ----------
    X : (n, d) float32/float64
    w : (n,) float64 sample weights, or an empty array for unit weights
    means : (K, d), same dtype as X; also the reference of the statistics
    P : (K, d, d) upper-triangular precision Cholesky factors
    log_norm : (K,) log weight + log det P_k - d/2 log(2 pi)
    ref2 : (d,) centre of the E-step (the mixture mean)
    proj : (K, d) P_k^T (mu_k - ref2)
    block, task_rows : rows per block and per parallel task
    out_nk, out_s1, out_s2 : (K,), (K, d), (K, d, d) float64 accumulators; each
        task's statistics are added to them in task order (upper triangle of
        s2 only)
    out_ll : (2,) float64 accumulator: [sum of weighted log-likelihoods,
        number of rows without a finite density]
    src : (4,) int64, where the rows come from (:mod:`._fileread`): X, or
        (file mode: X has no rows) a file each task reads its own rows from,
        and the output count of tasks whose read came short
    tag : the feature-class tag for d (:func:`class_tag`)
    """
    d = X.shape[1]
    from_file = src[SRC_FD] >= 0
    n = src[SRC_ROWS] if from_file else X.shape[0]
    K = means.shape[0]
    has_w = w.shape[0] > 0
    ntasks = (n + task_rows - 1) // task_rows
    p_nk = np.empty((ntasks, K))
    p_s1 = np.empty((ntasks, K, d))
    p_s2 = np.empty((ntasks, K, d, d))
    p_ll = np.empty(ntasks)
    p_bad = np.empty(ntasks, dtype=np.int64)
    p_short = np.empty(ntasks, dtype=np.int64)
    bs = block + SCRATCH_PAD
    for t in prange(ntasks):
        xt = np.empty((d, bs), dtype=X.dtype)
        diff = np.empty((d, bs), dtype=X.dtype)
        acc = np.empty(block, dtype=X.dtype)
        acc2 = np.empty(block, dtype=X.dtype)
        acc3 = np.empty(block, dtype=X.dtype)
        acc4 = np.empty(block, dtype=X.dtype)
        maha = np.empty(block, dtype=X.dtype)
        lp = np.empty((K, bs), dtype=X.dtype)
        wrow = np.empty(block)
        mx = np.empty(block, dtype=X.dtype)
        ssum = np.empty(block, dtype=X.dtype)
        wd = np.empty((2, bs), dtype=X.dtype)
        rf = np.empty(block, dtype=X.dtype)
        idx = np.empty(block, dtype=np.int64)
        t4 = np.empty((4, d))
        zero = np.zeros(1, dtype=X.dtype)[0]
        lo = t * task_rows
        hi = min(n, lo + task_rows)
        # file mode: the task's rows, read by this thread (see _fileread)
        tb = np.empty((min(task_rows, n) if from_file else 0, d), dtype=X.dtype)
        p_short[t] = 0
        if from_file and not _read_task(src, lo, hi, tb):
            p_short[t] = 1
            hi = lo  # the task adds nothing
        ll = 0.0
        nbad = 0
        # the task's partials, sliced once per task (see _TASK_VIEWS)
        nk_t = p_nk[t]
        s1_t = p_s1[t]
        s2_t = p_s2[t]
        _zero_task(nk_t, s1_t, s2_t)
        for start in range(lo, hi, block):
            nb = min(block, hi - start)
            if from_file:
                _load_block(tb, start - lo, nb, xt)
            else:
                _load_block(X, start, nb, xt)
            _logprob_block_full(xt, nb, ref2, proj, P, log_norm, diff, acc, acc2, acc3, acc4,
                                maha, lp, tag)
            bl, bb = _normalise_block(lp, nb, w, start, has_w, wrow, mx, ssum)
            ll += bl
            nbad += bb
            _accumulate_full(xt, nb, lp, means, tag, diff, wd, rf, idx, t4, zero, nk_t, s1_t,
                             s2_t)
        p_ll[t] = ll
        p_bad[t] = nbad
    _merge_tasks(p_nk, p_s1, p_s2, p_ll, p_bad, out_nk, out_s1, out_s2, out_ll)
    _count_short(p_short, src)


@kernel(_sig_pass_tied, parallel=True, cache=CACHE, fastmath=FASTMATH,
        shapes=("x d", "0|m", "K d", "1 d d", "K", "d", "K d", "block", "task", "K", "K d",
                "1 d d", "2", "src"))
def pass_tied(X, w, means, P, log_norm, ref2, proj, block, task_rows, out_nk, out_s1,
              out_s2, out_ll, src):
    """One EM pass for the tied covariance type: as :func:`pass_full` (src
    included) with P (1, d, d) the shared precision factor, proj = P^T (mu_k
    - ref2), and out_s2 (1, d, d) receiving the weighted total scatter around
    ref2."""
    d = X.shape[1]
    from_file = src[SRC_FD] >= 0
    n = src[SRC_ROWS] if from_file else X.shape[0]
    K = means.shape[0]
    has_w = w.shape[0] > 0
    ntasks = (n + task_rows - 1) // task_rows
    p_nk = np.empty((ntasks, K))
    p_s1 = np.empty((ntasks, K, d))
    p_s2 = np.empty((ntasks, 1, d, d))
    p_ll = np.empty(ntasks)
    p_bad = np.empty(ntasks, dtype=np.int64)
    p_short = np.empty(ntasks, dtype=np.int64)
    bs = block + SCRATCH_PAD
    for t in prange(ntasks):
        xt = np.empty((d, bs), dtype=X.dtype)
        diff = np.empty((d, bs), dtype=X.dtype)
        Y = np.empty((d, bs), dtype=X.dtype)
        maha = np.empty(block, dtype=X.dtype)
        lp = np.empty((K, bs), dtype=X.dtype)
        wrow = np.empty(block)
        mx = np.empty(block, dtype=X.dtype)
        ssum = np.empty(block, dtype=X.dtype)
        rf = np.empty(block, dtype=X.dtype)
        zero = np.zeros(1, dtype=X.dtype)[0]
        tied_s1 = np.zeros((1, d))
        lo = t * task_rows
        hi = min(n, lo + task_rows)
        # file mode: the task's rows, read by this thread (see _fileread)
        tb = np.empty((min(task_rows, n) if from_file else 0, d), dtype=X.dtype)
        p_short[t] = 0
        if from_file and not _read_task(src, lo, hi, tb):
            p_short[t] = 1
            hi = lo  # the task adds nothing
        ll = 0.0
        nbad = 0
        P0 = P[0]
        ref2_row = ref2.reshape((1, d))
        nk_t = p_nk[t]
        s1_t = p_s1[t]
        s2_t = p_s2[t]
        _zero_task(nk_t, s1_t, s2_t)
        for start in range(lo, hi, block):
            nb = min(block, hi - start)
            if from_file:
                _load_block(tb, start - lo, nb, xt)
            else:
                _load_block(X, start, nb, xt)
            _logprob_block_tied(xt, nb, ref2, P0, proj, log_norm, diff, Y, maha, lp)
            bl, bb = _normalise_block(lp, nb, w, start, has_w, wrow, mx, ssum)
            ll += bl
            nbad += bb
            _accumulate_tied(xt, nb, lp, wrow, means, ref2_row, diff, rf, zero, tied_s1,
                             nk_t, s1_t, s2_t)
        p_ll[t] = ll
        p_bad[t] = nbad
    _merge_tasks(p_nk, p_s1, p_s2, p_ll, p_bad, out_nk, out_s1, out_s2, out_ll)
    _count_short(p_short, src)


@kernel(_sig_pass_diag, parallel=True, cache=CACHE, fastmath=FASTMATH,
        shapes=("x d", "0|m", "K d", "K d", "K", "d", "K d", "block", "task", "K", "K d",
                "K d", "2", "src"))
def pass_diag(X, w, means, prec, log_norm, ref2, proj, block, task_rows, out_nk, out_s1,
              out_s2, out_ll, src):
    """One EM pass for the diagonal and spherical covariance types.

    ``prec`` (K, d) holds the square roots of the diagonal precisions (the
    spherical type passes its scalar broadcast over d); ref2 (d,) is the
    centre of the E-step and proj = (means - ref2) * prec.  Adds, in task order,
    to the accumulators out_nk (K,), out_s1 (K, d), out_s2 (K, d) (diagonal second
    moments around the means) and out_ll = [sum of weighted log-likelihoods,
    rows without a finite density]; src as in pass_full.
    """
    d = X.shape[1]
    from_file = src[SRC_FD] >= 0
    n = src[SRC_ROWS] if from_file else X.shape[0]
    K = means.shape[0]
    has_w = w.shape[0] > 0
    ntasks = (n + task_rows - 1) // task_rows
    p_nk = np.empty((ntasks, K))
    p_s1 = np.empty((ntasks, K, d))
    p_s2 = np.empty((ntasks, K, d))
    p_ll = np.empty(ntasks)
    p_bad = np.empty(ntasks, dtype=np.int64)
    p_short = np.empty(ntasks, dtype=np.int64)
    bs = block + SCRATCH_PAD
    for t in prange(ntasks):
        xt = np.empty((d, bs), dtype=X.dtype)
        diff = np.empty((d, bs), dtype=X.dtype)
        lp = np.empty((K, bs), dtype=X.dtype)
        wrow = np.empty(block)
        mx = np.empty(block, dtype=X.dtype)
        ssum = np.empty(block, dtype=X.dtype)
        tot = np.empty(K)
        zero = np.zeros(1, dtype=X.dtype)[0]
        lo = t * task_rows
        hi = min(n, lo + task_rows)
        # file mode: the task's rows, read by this thread (see _fileread)
        tb = np.empty((min(task_rows, n) if from_file else 0, d), dtype=X.dtype)
        p_short[t] = 0
        if from_file and not _read_task(src, lo, hi, tb):
            p_short[t] = 1
            hi = lo  # the task adds nothing
        ll = 0.0
        nbad = 0
        nk_t = p_nk[t]
        s1_t = p_s1[t]
        s2_t = p_s2[t]
        _zero_task(nk_t, s1_t, s2_t)
        for start in range(lo, hi, block):
            nb = min(block, hi - start)
            if from_file:
                _load_block(tb, start - lo, nb, xt)
            else:
                _load_block(X, start, nb, xt)
            _logprob_block_diag(xt, nb, ref2, proj, prec, log_norm, diff, lp)
            bl, bb = _normalise_block(lp, nb, w, start, has_w, wrow, mx, ssum)
            ll += bl
            nbad += bb
            _accumulate_diag(xt, nb, lp, means, tot, zero, nk_t, s1_t, s2_t)
        p_ll[t] = ll
        p_bad[t] = nbad
    _merge_tasks(p_nk, p_s1, p_s2, p_ll, p_bad, out_nk, out_s1, out_s2, out_ll)
    _count_short(p_short, src)


@kernel(_sig_pass_diag, parallel=True, cache=CACHE, fastmath=FASTMATH,
        shapes=("x d", "0|m", "K d", "K d", "K", "d", "K d", "block", "task", "K", "K d",
                "K d", "2", "src"))
def pass_spherical(X, w, means, prec, log_norm, ref2, proj, block, task_rows, out_nk,
                   out_s1, out_s2, out_ll, src):
    """One EM pass for the spherical covariance type.

    The arguments of pass_diag, except: prec (K, d) holds each component's
    square root of the precision broadcast over d (only column 0 is read),
    and proj = means - ref2, not scaled by it.  out_s2 (K, d) receives the
    second moments around the means summed over the features, in column 0.
    """
    d = X.shape[1]
    from_file = src[SRC_FD] >= 0
    n = src[SRC_ROWS] if from_file else X.shape[0]
    K = means.shape[0]
    has_w = w.shape[0] > 0
    ntasks = (n + task_rows - 1) // task_rows
    p_nk = np.empty((ntasks, K))
    p_s1 = np.empty((ntasks, K, d))
    p_s2 = np.empty((ntasks, K, d))
    p_ll = np.empty(ntasks)
    p_bad = np.empty(ntasks, dtype=np.int64)
    p_short = np.empty(ntasks, dtype=np.int64)
    bs = block + SCRATCH_PAD
    for t in prange(ntasks):
        xt = np.empty((d, bs), dtype=X.dtype)
        diff = np.empty((d, bs), dtype=X.dtype)
        dist = np.empty((K, bs), dtype=X.dtype)
        lp = np.empty((K, bs), dtype=X.dtype)
        wrow = np.empty(block)
        mx = np.empty(block, dtype=X.dtype)
        ssum = np.empty(block, dtype=X.dtype)
        tot = np.empty(K)
        zero = np.zeros(1, dtype=X.dtype)[0]
        lo = t * task_rows
        hi = min(n, lo + task_rows)
        # file mode: the task's rows, read by this thread (see _fileread)
        tb = np.empty((min(task_rows, n) if from_file else 0, d), dtype=X.dtype)
        p_short[t] = 0
        if from_file and not _read_task(src, lo, hi, tb):
            p_short[t] = 1
            hi = lo  # the task adds nothing
        ll = 0.0
        nbad = 0
        nk_t = p_nk[t]
        s1_t = p_s1[t]
        s2_t = p_s2[t]
        _zero_task(nk_t, s1_t, s2_t)
        for start in range(lo, hi, block):
            nb = min(block, hi - start)
            if from_file:
                _load_block(tb, start - lo, nb, xt)
            else:
                _load_block(X, start, nb, xt)
            _logprob_block_spherical(xt, nb, ref2, proj, prec, log_norm, diff, dist, lp)
            bl, bb = _normalise_block(lp, nb, w, start, has_w, wrow, mx, ssum)
            ll += bl
            nbad += bb
            _accumulate_spherical(diff, nb, lp, means, ref2, dist, tot, zero, nk_t, s1_t, s2_t)
        p_ll[t] = ll
        p_bad[t] = nbad
    _merge_tasks(p_nk, p_s1, p_s2, p_ll, p_bad, out_nk, out_s1, out_s2, out_ll)
    _count_short(p_short, src)


# ---------------------------------------------------------------------------
# E-step only: per-row, per-component weighted log densities
# ---------------------------------------------------------------------------


def _sig_logprob(dt, ro, P_ndim=3, extra=()):
    return types.void(
        _arr(dt, 2, ro), _arr(dt, 2), _arr(dt, P_ndim), _arr(_f8, 1), _arr(dt, 1),
        _arr(dt, 2), _i8, _arr(_f8, 2), *extra,
    )


def _sig_logprob_full(dt, ro, tag):
    return _sig_logprob(dt, ro, 3, (tag,))


def _sig_logprob_tied(dt, ro):
    return _sig_logprob(dt, ro, 3)


def _sig_logprob_diag(dt, ro):
    return _sig_logprob(dt, ro, 2)


@njit(cache=HELPER_CACHE, error_model="numpy")
def _store_logprob(lp, nb, start, out):
    """out[start + r, k] = lp[k, r] for r < nb."""
    K = lp.shape[0]
    for r in range(nb):
        for k in range(K):
            out[start + r, k] = lp[k, r]


@kernel(_sig_logprob_full, tagged=True, parallel=True, cache=CACHE, fastmath=FASTMATH,
        shapes=("n d", "K d", "K d d", "K", "d", "K d", "block", "n K", "tag"))
def logprob_full(X, means, P, log_norm, ref2, proj, block, out, tag):
    """out[n, k] = log w_k + log N(x_n | mu_k, Sigma_k) for the full type
    (ref2 and proj as in pass_full; the log densities in float64)."""
    n, d = X.shape
    K = means.shape[0]
    nblocks = (n + block - 1) // block
    bs = block + SCRATCH_PAD
    for b in prange(nblocks):
        xt = np.empty((d, bs), dtype=X.dtype)
        diff = np.empty((d, bs), dtype=X.dtype)
        acc = np.empty(block, dtype=X.dtype)
        acc2 = np.empty(block, dtype=X.dtype)
        acc3 = np.empty(block, dtype=X.dtype)
        acc4 = np.empty(block, dtype=X.dtype)
        maha = np.empty(block, dtype=X.dtype)
        lp = np.empty((K, bs), dtype=X.dtype)
        start = b * block
        nb = min(block, n - start)
        _load_block(X, start, nb, xt)
        _logprob_block_full(xt, nb, ref2, proj, P, log_norm, diff, acc, acc2, acc3, acc4,
                            maha, lp, tag)
        _store_logprob(lp, nb, start, out)


@kernel(_sig_logprob_tied, parallel=True, cache=CACHE, fastmath=FASTMATH,
        shapes=("n d", "K d", "1 d d", "K", "d", "K d", "block", "n K"))
def logprob_tied(X, means, P, log_norm, ref2, proj, block, out):
    """out[n, k] = log w_k + log N(x_n | mu_k, Sigma) for the tied type."""
    n, d = X.shape
    K = means.shape[0]
    nblocks = (n + block - 1) // block
    bs = block + SCRATCH_PAD
    for b in prange(nblocks):
        xt = np.empty((d, bs), dtype=X.dtype)
        diff = np.empty((d, bs), dtype=X.dtype)
        Y = np.empty((d, bs), dtype=X.dtype)
        maha = np.empty(block, dtype=X.dtype)
        lp = np.empty((K, bs), dtype=X.dtype)
        start = b * block
        nb = min(block, n - start)
        _load_block(X, start, nb, xt)
        _logprob_block_tied(xt, nb, ref2, P[0], proj, log_norm, diff, Y, maha, lp)
        _store_logprob(lp, nb, start, out)


@kernel(_sig_logprob_diag, parallel=True, cache=CACHE, fastmath=FASTMATH,
        shapes=("n d", "K d", "K d", "K", "d", "K d", "block", "n K"))
def logprob_diag(X, means, prec, log_norm, ref2, proj, block, out):
    """out[n, k] = log w_k + log N(x_n | mu_k, diag) (diag/spherical; ref2 and
    proj as in pass_diag)."""
    n, d = X.shape
    K = means.shape[0]
    nblocks = (n + block - 1) // block
    bs = block + SCRATCH_PAD
    for b in prange(nblocks):
        xt = np.empty((d, bs), dtype=X.dtype)
        diff = np.empty((d, bs), dtype=X.dtype)
        lp = np.empty((K, bs), dtype=X.dtype)
        start = b * block
        nb = min(block, n - start)
        _load_block(X, start, nb, xt)
        _logprob_block_diag(xt, nb, ref2, proj, prec, log_norm, diff, lp)
        _store_logprob(lp, nb, start, out)


@kernel(_sig_logprob_diag, parallel=True, cache=CACHE, fastmath=FASTMATH,
        shapes=("n d", "K d", "K d", "K", "d", "K d", "block", "n K"))
def logprob_spherical(X, means, prec, log_norm, ref2, proj, block, out):
    """out[n, k] = log w_k + log N(x_n | mu_k, sigma_k^2 I) (prec and proj as
    in pass_spherical)."""
    n, d = X.shape
    K = means.shape[0]
    nblocks = (n + block - 1) // block
    bs = block + SCRATCH_PAD
    for b in prange(nblocks):
        xt = np.empty((d, bs), dtype=X.dtype)
        diff = np.empty((d, bs), dtype=X.dtype)
        dist = np.empty((K, bs), dtype=X.dtype)
        lp = np.empty((K, bs), dtype=X.dtype)
        start = b * block
        nb = min(block, n - start)
        _load_block(X, start, nb, xt)
        _logprob_block_spherical(xt, nb, ref2, proj, prec, log_norm, diff, dist, lp)
        _store_logprob(lp, nb, start, out)
