"""Block helpers of the E-step: load a block of rows transposed, its
weighted log densities under every component, and their normalisation into
responsibilities.  Plain ``@njit`` functions called by the kernels in
:mod:`._passes`.
"""

import numpy as np
from numba import njit, types
from numba.extending import overload

from ._classes import DCLASS_SMALL, DCLASS_WIDE, _tag_class
from ._regtiles import _distances_rows, _logprob_tri_tiles, _make_tile
from ._machinery import FASTMATH, HELPER_CACHE, _distinct_njit, target_has_avx512
from ._math import _exp_neg, _fma, _log_normal
from ._transpose import _transpose4
from ._triangular import _logprob_tri, _logprob_tri_four

# _load_block copies 4 x 4 tiles (:func:`._transpose._transpose4`) for
# 4 <= d < TILED_LOAD_MAX_D: 1.3-1.4x as fast as the copy value by value
# from memory at d = 8 and 16 (Zen 3, AVX2 code), but 0.8x at d = 64, where
# each group of four rows writes to all of xt's 64 rows at once
TILED_LOAD_MAX_D = 32


@njit(cache=HELPER_CACHE, fastmath=FASTMATH, error_model="numpy")
def _load_block(X, start, nb, xt):
    """Copy rows start:start+nb of X transposed into xt[:, :nb]."""
    d = X.shape[1]
    if 4 <= d < TILED_LOAD_MAX_D:
        # the tiles read and write without bounds checks: clamp to what
        # exists (callers never ask for more)
        d = min(d, xt.shape[0])
        nb = max(0, min(nb, xt.shape[1], X.shape[0] - start))
        nb4 = nb - nb % 4
        d4 = d - d % 4
        for r in range(0, nb4, 4):
            for i in range(0, d4, 4):
                _transpose4(X, start + r, i, xt, i, r)
            for i in range(d4, d):
                xt[i, r] = X[start + r, i]
                xt[i, r + 1] = X[start + r + 1, i]
                xt[i, r + 2] = X[start + r + 2, i]
                xt[i, r + 3] = X[start + r + 3, i]
        for r in range(nb4, nb):
            for i in range(d):
                xt[i, r] = X[start + r, i]
    elif d == 2:
        # one sweep with both features (the generic inner loop is too short
        # to vectorise: this is 5x faster)
        for r in range(nb):
            xt[0, r] = X[start + r, 0]
            xt[1, r] = X[start + r, 1]
    elif d == 1:
        for r in range(nb):
            xt[0, r] = X[start + r, 0]
    else:
        for r in range(nb):
            for i in range(d):
                xt[i, r] = X[start + r, i]


@njit(cache=HELPER_CACHE, fastmath=FASTMATH, error_model="numpy")
def _logprob_small(diff, nb, proj, P, log_norm, lp):
    """_logprob_block_full for one or two features: one sweep over the points
    per component, everything in registers (the tiled loops would make
    several passes over short rows)."""
    K, d = proj.shape
    for k in range(K):
        c = log_norm[k]
        p00 = P[k, 0, 0]
        c0 = proj[k, 0]
        if d == 2:
            p01 = P[k, 0, 1]
            p11 = P[k, 1, 1]
            c1 = proj[k, 1]
            for r in range(nb):
                v0 = diff[0, r]
                y0 = v0 * p00 - c0
                y1 = (v0 * p01 + diff[1, r] * p11) - c1
                lp[k, r] = c - 0.5 * (y0 * y0 + y1 * y1)
        else:
            for r in range(nb):
                y0 = diff[0, r] * p00 - c0
                lp[k, r] = c - 0.5 * (y0 * y0)


@njit(cache=HELPER_CACHE, fastmath=FASTMATH, error_model="numpy")
def _centre_block(xt, nb, ref2, diff):
    """diff[i, :nb] = xt[i, :nb] - ref2[i]."""
    d = xt.shape[0]
    for i in range(d):
        m = ref2[i]
        for r in range(nb):
            diff[i, r] = xt[i, r] - m


def _logprob_block_full(xt, nb, ref2, proj, P, log_norm, diff, acc, acc2, acc3, acc4, maha,
                        lp, tag):
    """lp[k, :nb] = log_norm[k] - 0.5 * ||(x - mu_k) P_k||^2 for every k.

    P_k is the upper-triangular Cholesky factor of the precision matrix
    (scikit-learn's ``precisions_cholesky_``), so only i <= j terms of
    y_j = sum_i (x_i - ref2_i) P[i, j] - proj[k, j] are formed (a triangular
    product), with proj_k = P_k^T (mu_k - ref2).  The rows are centred once
    per block at ref2 (the mixture mean), not once per component: the
    rounding error of y is then of the order of eps * |mu_k - ref2| / sigma,
    whatever the distance of the data from the origin.

    ``tag`` is the feature-class tag (:func:`class_tag`): its dtype picks,
    when the calling kernel is compiled, :func:`_logprob_small` or, for
    d > 2, the triangular products of the target's instruction set (AVX-512:
    :mod:`._triangular`; AVX2: the register tiles of
    :func:`._regtiles._logprob_tri_tiles`), so that a kernel compiles only its
    own path.
    """
    raise NotImplementedError("compiled code only")


@overload(_logprob_block_full,
          jit_options=dict(fastmath=FASTMATH, error_model="numpy"))
def _logprob_block_full_typed(xt, nb, ref2, proj, P, log_norm, diff, acc, acc2, acc3, acc4,
                              maha, lp, tag):
    if _tag_class(tag) == DCLASS_SMALL:
        def impl(xt, nb, ref2, proj, P, log_norm, diff, acc, acc2, acc3, acc4, maha, lp, tag):
            _centre_block(xt, nb, ref2, diff)
            _logprob_small(diff, nb, proj, P, log_norm, lp)
    elif (target_has_avx512() and _tag_class(tag) == DCLASS_WIDE
          and diff.dtype == types.float64):
        def impl(xt, nb, ref2, proj, P, log_norm, diff, acc, acc2, acc3, acc4, maha, lp, tag):
            _centre_block(xt, nb, ref2, diff)
            _logprob_tri_four(diff, nb, proj, P, log_norm, acc, acc2, acc3, acc4, maha, lp)
    elif target_has_avx512():
        def impl(xt, nb, ref2, proj, P, log_norm, diff, acc, acc2, acc3, acc4, maha, lp, tag):
            _centre_block(xt, nb, ref2, diff)
            _logprob_tri(diff, nb, proj, P, log_norm, acc, acc2, acc3, acc4, maha, lp)
    else:
        def impl(xt, nb, ref2, proj, P, log_norm, diff, acc, acc2, acc3, acc4, maha, lp, tag):
            _centre_block(xt, nb, ref2, diff)
            _logprob_tri_tiles(diff, nb, proj, P, log_norm, lp)
    return impl


@njit(cache=HELPER_CACHE, fastmath=FASTMATH, error_model="numpy")
def _logprob_block_tied(xt, nb, ref2, Pt, proj, log_norm, diff, Y, maha, lp):
    """Tied precision: one triangular product per row instead of one per
    component.

    Y = Pt^T (x - ref2) is formed once; then for every k,
    (x - mu_k)^T Sigma^-1 (x - mu_k) = ||Y - proj_k||^2 with
    proj_k = Pt^T (mu_k - ref2).  Centring at ref2 (the mixture mean) keeps
    both terms at the scale of the data's spread, so nothing cancels.  Sums
    of four products or squares are chains of explicit multiply-adds (_fma),
    as in :func:`_logprob_tri`.
    """
    K, d = proj.shape
    for i in range(d):
        m = ref2[i]
        for r in range(nb):
            diff[i, r] = xt[i, r] - m
    for j in range(d):
        p0 = Pt[0, j]
        for r in range(nb):
            Y[j, r] = diff[0, r] * p0
        i = 1
        while i + 3 <= j:
            pa = Pt[i, j]
            pb = Pt[i + 1, j]
            pc = Pt[i + 2, j]
            pd = Pt[i + 3, j]
            for r in range(nb):
                Y[j, r] = _fma(diff[i + 3, r], pd, _fma(diff[i + 2, r], pc, _fma(
                    diff[i + 1, r], pb, _fma(diff[i, r], pa, Y[j, r]))))
            i += 4
        while i <= j:
            pa = Pt[i, j]
            for r in range(nb):
                Y[j, r] += diff[i, r] * pa
            i += 1
    for k in range(K):
        for r in range(nb):
            maha[r] = 0.0
        j = 0
        while j + 3 < d:
            b0 = proj[k, j]
            b1 = proj[k, j + 1]
            b2 = proj[k, j + 2]
            b3 = proj[k, j + 3]
            for r in range(nb):
                t0 = Y[j, r] - b0
                t1 = Y[j + 1, r] - b1
                t2 = Y[j + 2, r] - b2
                t3 = Y[j + 3, r] - b3
                maha[r] = _fma(t3, t3, _fma(t2, t2, _fma(t1, t1, _fma(t0, t0, maha[r]))))
            j += 4
        while j < d:
            b0 = proj[k, j]
            for r in range(nb):
                t0 = Y[j, r] - b0
                maha[r] += t0 * t0
            j += 1
        c = log_norm[k]
        for r in range(nb):
            lp[k, r] = c - 0.5 * maha[r]


def _make_distances(scaled):
    """_distances: the log densities of the diagonal type (``scaled``: t_i =
    diff_i prec_ki - proj_ki, one multiply-add) or of the spherical type (t_i
    = diff_i - proj_ki, one subtraction, which runs on other pipes than the
    multiply-adds)."""
    tile4 = _make_tile(scaled, 4, 2)
    tile1 = _make_tile(scaled, 1, 8)

    def _distances(diff, nb, proj, prec, log_norm, dist, lp):
        """lp[k, r] = log_norm[k] - h_k sum_i t_i^2 (t_i of _make_distances)
        over the centred rows diff (d, block), the squares summed in the
        order of i by multiply-adds; h_k = 1/2 (diagonal) or p_k^2 / 2
        (spherical, which also keeps the sums in dist).

        Register tiles (:mod:`._regtiles`) of four components x two vectors
        of points, then one component x eight vectors for the last K % 4;
        the points a tile leaves (nb not a multiple of its width) are
        computed by :func:`._regtiles._distances_rows` with the same
        operations.  Against the loop through memory of two components x
        four features before them (Zen 3, AVX2 code, one thread, K = d = 16,
        cycles per two components x four features x four points): spherical
        8.5 -> 6.7-7.0, diagonal 10.7-11.0 -> 9.4-9.6; passes D 48.1-49.5 ->
        47.5-47.8 ms, P 40.1-40.5 -> 37.8-38.5 (two threads, minima).  The
        tiles also write lp, which took a sweep of its own over the block.
        log_norm is rounded to the data's type before it is added.
        """
        K = proj.shape[0]
        k = 0
        while k + 3 < K:
            rows = tile4(diff, nb, proj, prec, k, log_norm, dist, lp)
            if rows < nb:
                for c in range(k, k + 4):
                    _distances_rows(diff, rows, nb, c, proj, prec, log_norm, dist, lp, scaled)
            k += 4
        while k < K:
            rows = tile1(diff, nb, proj, prec, k, log_norm, dist, lp)
            if rows < nb:
                _distances_rows(diff, rows, nb, k, proj, prec, log_norm, dist, lp, scaled)
            k += 1

    return _distinct_njit(_distances, "_scaled_distances" if scaled else "_distances")


_scaled_distances = _make_distances(True)
_distances = _make_distances(False)


@njit(cache=HELPER_CACHE, fastmath=FASTMATH, error_model="numpy")
def _logprob_block_diag(xt, nb, ref2, proj, prec, log_norm, diff, lp):
    """Diagonal precisions: lp[k] = log_norm[k] - 0.5 sum_i t_i^2 with
    t_i = (x_i - ref2_i) p_ki - proj_ki = (x_i - mu_ki) p_ki, proj_k =
    (mu_k - ref2) p_k (:func:`_scaled_distances`), on rows centred once per
    block at ref2 (the mixture mean).
    """
    _centre_block(xt, nb, ref2, diff)
    _scaled_distances(diff, nb, proj, prec, log_norm, lp, lp)


@njit(cache=HELPER_CACHE, fastmath=FASTMATH, error_model="numpy")
def _logprob_block_spherical(xt, nb, ref2, cen, prec, log_norm, diff, dist, lp):
    """One variance per component: dist[k] = |x - mu_k|^2, formed as
    sum_i ((x_i - ref2_i) - cen_ki)^2 with cen_k = mu_k - ref2 on rows
    centred once per block, and lp[k] = log_norm[k] - 0.5 p_k^2 dist[k]
    (p_k = prec[k, 0], the square root of the precision), both by
    :func:`_distances`.

    The squared distances are kept (dist, K x block): the component's second
    moment is then sum_r resp dist, one multiply-add per row instead of two
    per feature (:func:`._moments._accumulate_spherical`).
    """
    _centre_block(xt, nb, ref2, diff)
    _distances(diff, nb, cen, prec, log_norm, dist, lp)


@njit(cache=HELPER_CACHE, fastmath=FASTMATH, error_model="numpy")
def _normalise_block(lp, nb, w, start, has_w, wrow, mx, ssum):
    """Turn log probabilities lp[:, :nb] into weighted responsibilities.

    Returns (sum_r w_r * logsumexp_r, number of rows with no finite density).
    wrow[:nb] (float64) receives the row weights (0 for rows without a finite
    density).  mx and ssum are scratch of lp's type: float32 data keep their
    log probabilities, exponentials and responsibilities in float32 (twice the
    SIMD width); the log-likelihood is summed in float64.
    """
    K = lp.shape[0]
    # the row maxima, going back and forth between mx and ssum (free until
    # the exponentials): written as mx[r] = max(lp[k, r], mx[r]) in place,
    # LLVM stores only the lanes that change (vmaskmovpd), which AMD cores
    # run in microcode: 1.75 cycles per element on Zen 3, the sweep as slow as
    # a third of the exponentials
    for r in range(nb):
        mx[r] = lp[0, r]
    for k in range(1, K):
        if k % 2 == 1:
            for r in range(nb):
                v = lp[k, r]
                m = mx[r]
                ssum[r] = v if v > m else m
        else:
            for r in range(nb):
                v = lp[k, r]
                m = ssum[r]
                mx[r] = v if v > m else m
    if K % 2 == 0:
        for r in range(nb):
            mx[r] = ssum[r]
    for r in range(nb):
        ssum[r] = 0.0
    # rows to which no component gives a finite density: counted in a sweep
    # without branches (it vectorises), fixed up one by one only if any
    nbad = 0
    for r in range(nb):
        wrow[r] = w[start + r] if has_w else 1.0
        m = mx[r]
        nbad += (m == np.inf) | (m == -np.inf) | (m != m)
    if nbad:
        for r in range(nb):
            m = mx[r]
            if not (m > -np.inf) or m == np.inf:
                wrow[r] = 0.0
                mx[r] = 0.0
                for k in range(K):
                    lp[k, r] = -np.inf
    # the exponentials of two components per sweep: one exp is a chain of
    # about fifteen dependent operations, and with one per sweep the loop ran
    # at the chain's latency (5.7 cycles per float64 exp on Zen 3, AVX2 code;
    # 4.5 with two in flight).  ssum is summed in the order of k, so the
    # results are the same bits.
    k = 0
    while k + 1 < K:
        for r in range(nb):
            m = mx[r]
            e0 = _exp_neg(lp[k, r] - m)
            e1 = _exp_neg(lp[k + 1, r] - m)
            lp[k, r] = e0
            lp[k + 1, r] = e1
            ssum[r] = (ssum[r] + e0) + e1
        k += 2
    if k < K:
        for r in range(nb):
            e = _exp_neg(lp[k, r] - mx[r])
            lp[k, r] = e
            ssum[r] += e
    ll = 0.0
    for r in range(nb):
        # ssum >= 1 for a row with a finite density (its largest term is
        # exp(0)); the others have wrow = mx = 0 and ssum = 0
        wr = wrow[r]
        sr = np.float64(ssum[r]) if wr != 0.0 else 1.0
        ll += wr * (np.float64(mx[r]) + _log_normal(sr))
        ssum[r] = wr / sr
    for k in range(K):
        for r in range(nb):
            lp[k, r] *= ssum[r]
    return ll, nbad
