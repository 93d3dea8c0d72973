"""The hard-assignment pass that ends the 'kmeans' initialisation: every row
given wholly to its nearest centre (with its weight), and the statistics of
the rows of each centre, in one parallel pass.

It runs once per fit, over every row: written with NumPy (a sort by label
and one BLAS product per task and label) it took 0.17-0.19 s on 1e6 x 16
rows, K=16 (as long as an EM iteration); this kernel takes a few tens of
milliseconds.  It compiles in about 8 s per dtype (Zen 3), on a first fit in a
child process of its own while the E-step kernel compiles in another (see
:func:`fastem._estep.start_compiling`).

Rows are split into tasks of ``task_rows`` rows like the E-step kernels'
(:mod:`._passes`): each task adds its rows label by label, in row order
inside a label, to partial statistics of its own, and the partials are added
to the caller's accumulators in task order.  The results are therefore the
same bits for any number of threads and for any chunking of the rows into
whole tasks.  Unit weights (an empty ``w``) multiply by 1.0, which is exact:
they give the bits of weights of ones.
"""

import numpy as np
from numba import njit, prange, types

from ._machinery import CACHE, FASTMATH, HELPER_CACHE, SCRATCH_PAD, _arr, kernel
from ._moments import _add_into

_f8 = types.float64
_i8 = types.int64

# rows whose nearest centre is found together: their features are first
# copied transposed, so that the distance loops run over contiguous rows
_LABEL_BLOCK = 256


@njit(cache=HELPER_CACHE, fastmath=FASTMATH, error_model="numpy")
def _nearest_labels(X, lo, hi, cm2, cc, origin, xt, best, dist, which, lab):
    """lab[i - lo] = the index of the centre nearest to row i of X, for
    lo <= i < hi (the first of equal distances).

    With x and the centres c moved to ``origin`` (the mean of the centres),
    the squared distance less ||x||^2 (the same for every centre) is
    ||c||^2 - 2 x.c: cc holds ||c||^2 and cm2 the centres times -2, so each
    centre and feature costs one multiply-add per row.  xt, best, dist and
    which are scratch of _LABEL_BLOCK rows (which holds the index of the best
    centre so far as a float64, so that the comparison and both selections
    run in the same vector lanes)."""
    d = X.shape[1]
    K = cm2.shape[0]
    for start in range(lo, hi, _LABEL_BLOCK):
        nb = min(_LABEL_BLOCK, hi - start)
        for r in range(nb):
            i = start + r
            for j in range(d):
                xt[j, r] = np.float64(X[i, j]) - origin[j]
        for c in range(K):
            c0 = cc[c]
            for r in range(nb):
                dist[r] = c0
            j = 0
            while j + 1 < d:
                a0 = cm2[c, j]
                a1 = cm2[c, j + 1]
                for r in range(nb):
                    dist[r] += xt[j, r] * a0 + xt[j + 1, r] * a1
                j += 2
            if j < d:
                a0 = cm2[c, j]
                for r in range(nb):
                    dist[r] += xt[j, r] * a0
            if c == 0:
                for r in range(nb):
                    best[r] = dist[r]
                    which[r] = 0.0
            else:
                fc = np.float64(c)
                for r in range(nb):
                    closer = dist[r] < best[r]
                    best[r] = dist[r] if closer else best[r]
                    which[r] = fc if closer else which[r]
        o = start - lo
        for r in range(nb):
            lab[o + r] = np.int64(which[r])


@njit(cache=HELPER_CACHE, fastmath=FASTMATH, error_model="numpy")
def _group_moments(D, G, a, c, k, s1_t, s2_t, sq_t, full, diag):
    """Add columns a:a+c of D (differences, features x rows) and G (the same
    times the row weights) to the task's partials of component k: the first
    moment, and (full) the upper-triangular or (diag) the diagonal second
    moment.  Every sum runs over contiguous columns.

    The column index is unsigned: Numba wraps a negative signed index around
    (a select per element), which kept LLVM from vectorising these loops
    (5x slower) when they do not start at 0."""
    d = D.shape[0]
    qa = np.uint64(a)
    qb = np.uint64(a + c)
    for j in range(d):
        t = 0.0
        for q in range(qa, qb):
            t += G[j, q]
        s1_t[k, j] += t
    if full:
        for j in range(d):
            for m in range(j, d):
                t = 0.0
                for q in range(qa, qb):
                    t += G[j, q] * D[m, q]
                s2_t[k, j, m] += t
    elif diag:
        for j in range(d):
            t = 0.0
            for q in range(qa, qb):
                t += G[j, q] * D[j, q]
            sq_t[k, j] += t


@njit(cache=HELPER_CACHE, fastmath=FASTMATH, error_model="numpy")
def _sorted_differences(X, w, has_w, lo, hi, lab, pos, ref, D, G, nk_t):
    """Row i = lo + r of X, less the reference of its label lab[r], into
    column pos[r] of D (and times its weight into G when has_w; unit weights
    use D as G); the weights are added to nk_t by label, in row order.

    Rows are read in order (the hardware prefetches them), and each goes to
    the columns of its label: a task's rows end up grouped by label, in row
    order inside a group."""
    d = X.shape[1]
    for r in range(hi - lo):
        i = lo + r
        k = lab[r]
        p = pos[r]
        g = w[i] if has_w else 1.0
        nk_t[k] += g
        if has_w:
            for j in range(d):
                v = np.float64(X[i, j]) - ref[k, j]
                D[j, p] = v
                G[j, p] = v * g
        else:
            for j in range(d):
                D[j, p] = np.float64(X[i, j]) - ref[k, j]


@njit(cache=HELPER_CACHE, fastmath=FASTMATH, error_model="numpy")
def _zero(a):
    for i in range(a.shape[0]):
        a[i] = 0.0


def _sig_hard(dt, ro):
    return types.void(
        _arr(dt, 2, ro), _arr(_f8, 1), _arr(_f8, 2), _arr(_f8, 2), _arr(_f8, 1),
        _arr(_i8, 1), _i8, _i8, _i8, _arr(_f8, 1), _arr(_f8, 2), _arr(_f8, 3), _arr(_f8, 2),
    )


@kernel(_sig_hard, parallel=True, cache=CACHE, fastmath=FASTMATH,
        shapes=("n d", "n|0", "K d", "K d", "d", "n", "flag", "flag", "task", "K", "K d",
                "K|1|0 d d", "K|0 d"))
def hard_pass(X, w, centers, ref, ref2, labels, given, tied, task_rows, out_nk, out_s1,
              out_s2, out_sq):
    """Statistics of the rows of X, each given wholly to one centre.

    Parameters
    ----------
    X : (n, d) float32/float64
    w : (n,) float64 row weights, or an empty array for unit weights
    centers : (K, d) float64, the centres rows are assigned to
    ref : (K, d) float64, the references of each component's moments
    ref2 : (d,) float64, the reference of the tied scatter
    labels : (n,) int64: read when ``given`` is 1 (each in [0, K), else
        ValueError before anything is written), else written with each
        row's nearest centre (squared Euclidean distance; the first of
        equal distances)
    tied : 1 to add the weighted scatter of all rows around ref2 to
        out_s2, which must then be (1, d, d) (upper triangle)
    task_rows : rows per parallel task
    out_nk, out_s1 : (K,), (K, d) float64 accumulators
    out_s2 : (K, d, d) float64 (full, upper triangle), (1, d, d) (tied) or
        (0, d, d)
    out_sq : (K, d) float64 diagonal second moments (diag, spherical) or (0, d)
    """
    n, d = X.shape
    K = centers.shape[0]
    # values the shape checks cannot see, checked before anything is written:
    # the accumulators are indexed with the labels, and the tied scatter
    # needs its (1, d, d) accumulator
    if tied and out_s2.shape[0] != 1:
        raise ValueError("hard_pass: tied needs out_s2 of shape (1, d, d)")
    if given:
        for i in range(n):
            if labels[i] < 0 or labels[i] >= K:
                raise ValueError("hard_pass: a label is outside [0, K)")
    has_w = w.shape[0] > 0
    full = out_s2.shape[0] == K and tied == 0
    diag = out_sq.shape[0] == K
    ntasks = (n + task_rows - 1) // task_rows
    S2 = out_s2.shape[0]
    SQ = out_sq.shape[0]
    # the centres around ref2, times -2, and their squared norms
    cm2 = np.empty((K, d))
    cc = np.empty(K)
    for k in range(K):
        t2 = 0.0
        for j in range(d):
            v = centers[k, j] - ref2[j]
            cm2[k, j] = -2.0 * v
            t2 += v * v
        cc[k] = t2
    p_nk = np.empty((ntasks, K))
    p_s1 = np.empty((ntasks, K, d))
    p_s2 = np.empty((ntasks, S2, d, d))
    p_sq = np.empty((ntasks, SQ, d))
    for t in prange(ntasks):
        lo = t * task_rows
        hi = min(n, lo + task_rows)
        m = hi - lo
        nk_t = p_nk[t]
        s1_t = p_s1[t]
        s2_t = p_s2[t]
        sq_t = p_sq[t]
        _zero(nk_t.reshape(-1))
        _zero(s1_t.reshape(-1))
        _zero(s2_t.reshape(-1))
        _zero(sq_t.reshape(-1))
        lab = labels[lo:hi]
        if given == 0:
            xt = np.empty((d, _LABEL_BLOCK + SCRATCH_PAD))
            best = np.empty(_LABEL_BLOCK)
            dist = np.empty(_LABEL_BLOCK)
            which = np.empty(_LABEL_BLOCK)
            _nearest_labels(X, lo, hi, cm2, cc, ref2, xt, best, dist, which, lab)
        # each row's column in the task's label-sorted scratch (a counting sort)
        counts = np.zeros(K + 1, dtype=np.int64)
        for r in range(m):
            counts[lab[r] + 1] += 1
        for k in range(K):
            counts[k + 1] += counts[k]
        pos = np.empty(m, dtype=np.int64)
        fill = counts[:K].copy()
        for r in range(m):
            k = lab[r]
            pos[r] = fill[k]
            fill[k] += 1
        width = task_rows + SCRATCH_PAD
        D = np.empty((d, width))
        G = np.empty((d, width)) if has_w else D
        _sorted_differences(X, w, has_w, lo, hi, lab, pos, ref, D, G, nk_t)
        for k in range(K):
            a = counts[k]
            c = counts[k + 1] - a
            if c > 0:
                _group_moments(D, G, a, c, k, s1_t, s2_t, sq_t, full, diag)
        if tied:
            # the scatter of the task's rows around ref2, in row order
            zl = np.zeros(m, dtype=np.int64)
            for r in range(m):
                pos[r] = r
            _sorted_differences(X, w, has_w, lo, hi, zl, pos, ref2.reshape((1, d)), D, G,
                                np.zeros(1))
            _group_moments(D, G, 0, m, 0, np.zeros((1, d)), s2_t, sq_t, True, False)
    for t in range(ntasks):
        _add_into(out_nk, p_nk[t])
        _add_into(out_s1, p_s1[t])
        _add_into(out_s2, p_s2[t])
        _add_into(out_sq, p_sq[t])
