"""Block helpers of the E-step: load a block of rows transposed, its
weighted log densities under every component, and their normalisation into
responsibilities.  Plain ``@njit`` functions called by the kernels in
:mod:`._passes`.
"""

import numpy as np
from numba import njit, types
from numba.extending import overload

from ._classes import DCLASS_SMALL, DCLASS_WIDE, _tag_class
from ._machinery import FASTMATH, HELPER_CACHE, target_has_avx512
from ._math import _exp_neg, _fma, _log_normal
from ._transpose import _transpose4

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
    when the calling kernel is compiled, :func:`_logprob_small` or
    :func:`_logprob_tri`, so that a kernel compiles only its own path.
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
            if nb == FIXED_TRIP:
                _logprob_tri_fixed(diff, nb, proj, P, log_norm, acc, acc2, acc3, acc4, maha,
                                   lp)
            else:
                _logprob_tri(diff, nb, proj, P, log_norm, acc, acc2, acc3, acc4, maha, lp)
    return impl


@njit(cache=HELPER_CACHE, fastmath=FASTMATH, error_model="numpy", inline="always")
def _four_columns(diff, m, k, j, proj, P, acc, acc2, acc3, acc4, maha):
    """Columns j..j + 3 of the triangular products of component k (j a
    multiple of 4, j + 4 <= d), rows taken four at a time: a 4 x 4 register
    tile, four loads of diff feed sixteen multiply-adds (the two-column
    tile: eight).  One loop shape for every group of rows (the sums start at
    -proj, the squares are added after the last group): the two-column
    tile's four shapes here would cost a first fit seconds of compilation."""
    ca = proj[k, j]
    cb = proj[k, j + 1]
    cc = proj[k, j + 2]
    cd = proj[k, j + 3]
    for r in range(m):
        acc[r] = -ca
        acc2[r] = -cb
        acc3[r] = -cc
        acc4[r] = -cd
    for i in range(0, j + 4, 4):
        pa0 = P[k, i, j]
        pa1 = P[k, i + 1, j]
        pa2 = P[k, i + 2, j]
        pa3 = P[k, i + 3, j]
        pb0 = P[k, i, j + 1]
        pb1 = P[k, i + 1, j + 1]
        pb2 = P[k, i + 2, j + 1]
        pb3 = P[k, i + 3, j + 1]
        pc0 = P[k, i, j + 2]
        pc1 = P[k, i + 1, j + 2]
        pc2 = P[k, i + 2, j + 2]
        pc3 = P[k, i + 3, j + 2]
        pd0 = P[k, i, j + 3]
        pd1 = P[k, i + 1, j + 3]
        pd2 = P[k, i + 2, j + 3]
        pd3 = P[k, i + 3, j + 3]
        for r in range(m):
            v0 = diff[i, r]
            v1 = diff[i + 1, r]
            v2 = diff[i + 2, r]
            v3 = diff[i + 3, r]
            acc[r] += (v0 * pa0 + v1 * pa1) + (v2 * pa2 + v3 * pa3)
            acc2[r] += (v0 * pb0 + v1 * pb1) + (v2 * pb2 + v3 * pb3)
            acc3[r] += (v0 * pc0 + v1 * pc1) + (v2 * pc2 + v3 * pc3)
            acc4[r] += (v0 * pd0 + v1 * pd1) + (v2 * pd2 + v3 * pd3)
    for r in range(m):
        ya = acc[r]
        yb = acc2[r]
        yc = acc3[r]
        yd = acc4[r]
        maha[r] += (ya * ya + yb * yb) + (yc * yc + yd * yd)


@njit(cache=HELPER_CACHE, error_model="numpy", inline="always")
def _no_columns(diff, m, k, j, proj, P, acc, acc2, acc3, acc4, maha):
    """Stands in for _four_columns in the variants without four-column tiles
    (so that they do not compile its loops)."""


def _distinct_njit(py_func, name):
    """``njit`` of a function made by a factory, under a name of its own.

    Numba names a compiled function's symbol after its qualified name (and a
    per-process counter), and every variant a factory makes has the same one
    (``_make_distances.<locals>._distances``).  A kernel loaded from the cache
    carries its own copy of each helper; two kernels loaded into one process
    whose copies of two variants got the same symbol (the counters of the two
    compiling processes agreed) shared one copy: ``logprob_spherical`` then
    ran the diagonal type's scaled distances (seen in CI: wrong float32
    log densities, depending on which kernels the process had loaded
    before).  A name per variant gives each its own symbol.
    """
    py_func.__name__ = name
    py_func.__qualname__ = name
    return njit(cache=HELPER_CACHE, fastmath=FASTMATH, error_model="numpy")(py_func)


def _make_logprob_tri(trip, four):
    """_logprob_tri with loops over ``trip`` points (a compile-time constant)
    when trip > 0, over nb when trip == 0; with four-column tiles when
    ``four`` (see the note below)."""
    columns4 = _four_columns if four else _no_columns

    def _logprob_tri(diff, nb, proj, P, log_norm, acc, acc2, acc3, acc4, maha, lp):
        """The triangular products of :func:`_logprob_block_full` on centred rows
        diff (d, block), for d > 2 (acc..acc4, maha: (block,) scratch).

        With four-column tiles, columns go four at a time while they need
        only whole groups of four rows (j + 4 <= d rounded down to a multiple
        of 4); then two at a time, then the last one.

        A column's four products of a group of rows are a chain of explicit
        multiply-adds (_fma) from its partial sum: four operations where the
        pairwise form (two products, two multiply-adds, two additions) took
        six; the rows' iterations are independent, so the chain's latency
        overlaps.  8% fewer cycles for the products of d = 16 (Zen 3, AVX2
        code, one thread); each y_j has one rounding per multiply-add."""
        K, d = proj.shape
        m = trip if trip > 0 else nb
        d4 = d - d % 4 if four else 0  # (columns4 is a no-op without four)
        for k in range(K):
            for r in range(m):
                maha[r] = 0.0
            j = 0
            while j + 4 <= d4:
                columns4(diff, m, k, j, proj, P, acc, acc2, acc3, acc4, maha)
                j += 4
            while j + 1 < d:
                # Two columns j, j + 1 at a time share the loads of diff; rows
                # are taken four at a time (P is zero below its diagonal, so a
                # group may run past row j + 1).  The first group initialises
                # the partial sums, the last adds the squares to maha
                # directly: two columns cost ceil((j + 2) / 4) sweeps over
                # the points.
                ca = proj[k, j]
                cb = proj[k, j + 1]
                nrows = j + 2
                i = 0
                while i < nrows and i + 3 < d:
                    first = i == 0
                    last = i + 4 >= nrows
                    pa0 = P[k, i, j]
                    pa1 = P[k, i + 1, j]
                    pa2 = P[k, i + 2, j]
                    pa3 = P[k, i + 3, j]
                    pb0 = P[k, i, j + 1]
                    pb1 = P[k, i + 1, j + 1]
                    pb2 = P[k, i + 2, j + 1]
                    pb3 = P[k, i + 3, j + 1]
                    if first and last:
                        for r in range(m):
                            v0 = diff[i, r]
                            v1 = diff[i + 1, r]
                            v2 = diff[i + 2, r]
                            v3 = diff[i + 3, r]
                            ya = _fma(v3, pa3, _fma(v2, pa2, _fma(v1, pa1, _fma(v0, pa0, -ca))))
                            yb = _fma(v3, pb3, _fma(v2, pb2, _fma(v1, pb1, _fma(v0, pb0, -cb))))
                            maha[r] += ya * ya + yb * yb
                    elif first:
                        for r in range(m):
                            v0 = diff[i, r]
                            v1 = diff[i + 1, r]
                            v2 = diff[i + 2, r]
                            v3 = diff[i + 3, r]
                            acc[r] = _fma(v3, pa3, _fma(v2, pa2, _fma(v1, pa1, _fma(v0, pa0, -ca))))
                            acc2[r] = _fma(v3, pb3, _fma(v2, pb2, _fma(v1, pb1, _fma(v0, pb0, -cb))))
                    elif last:
                        for r in range(m):
                            v0 = diff[i, r]
                            v1 = diff[i + 1, r]
                            v2 = diff[i + 2, r]
                            v3 = diff[i + 3, r]
                            ya = _fma(v3, pa3, _fma(v2, pa2, _fma(v1, pa1, _fma(v0, pa0, acc[r]))))
                            yb = _fma(v3, pb3, _fma(v2, pb2, _fma(v1, pb1, _fma(v0, pb0, acc2[r]))))
                            maha[r] += ya * ya + yb * yb
                    else:
                        for r in range(m):
                            v0 = diff[i, r]
                            v1 = diff[i + 1, r]
                            v2 = diff[i + 2, r]
                            v3 = diff[i + 3, r]
                            acc[r] = _fma(v3, pa3, _fma(v2, pa2, _fma(v1, pa1, _fma(v0, pa0, acc[r]))))
                            acc2[r] = _fma(v3, pb3, _fma(v2, pb2, _fma(v1, pb1, _fma(v0, pb0, acc2[r]))))
                    i += 4
                if i < nrows:
                    # fewer than four rows left before row d: one at a time
                    if i == 0:
                        for r in range(m):
                            acc[r] = -ca
                            acc2[r] = -cb
                    while i < nrows:
                        pa = P[k, i, j]
                        pb = P[k, i, j + 1]
                        for r in range(m):
                            v = diff[i, r]
                            acc[r] += v * pa
                            acc2[r] += v * pb
                        i += 1
                    for r in range(m):
                        maha[r] += acc[r] * acc[r] + acc2[r] * acc2[r]
                j += 2
            if j < d:
                # last column when d is odd
                ca = proj[k, j]
                for r in range(m):
                    acc[r] = -ca
                for i in range(j + 1):
                    pa = P[k, i, j]
                    for r in range(m):
                        acc[r] += diff[i, r] * pa
                for r in range(m):
                    maha[r] += acc[r] * acc[r]
            c = log_norm[k]
            for r in range(m):
                lp[k, r] = c - 0.5 * maha[r]

    return _distinct_njit(_logprob_tri, f"_logprob_tri_trip{trip}" + ("_four" if four else ""))


# Register tiles and loops of the triangular products, per instruction set
# (one thread, rows of 128 points; Zen 4 with AVX-512 code and with AVX2 code
# compiled for haswell):
# - AVX-512 (32 vector registers): four columns at a time (a 4 x 4 tile) for
#   float64 data of the feature class d >= WIDE_MIN_D (32): L (d=64) ran its
#   E-step pass 1.05-1.08x as fast (696-702 -> 651-664 ms, two threads), M
#   (d=16) 0.97x, L in float32 0.9x (424 -> 474 ms per iteration), so fewer
#   features and float32 keep two columns; a class of its own, so that fits
#   of fewer features do not compile it (about 0.8 s of a first fit);
# - AVX2 (16 registers): two columns, and full blocks of FIXED_TRIP points
#   in loops of a compile-time trip count, 1.24x (d=16) to 1.6x (d=64) as
#   fast as loops over nb with blocks of 128 (AVX-512 code: 0.97x).
# Each target compiles only its own variants.  FIXED_TRIP is the block size
# (fastem._estep.BLOCK_ROWS).
FIXED_TRIP = 256
_logprob_tri = _make_logprob_tri(0, False)
_logprob_tri_fixed = _make_logprob_tri(FIXED_TRIP, False)
_logprob_tri_four = _make_logprob_tri(0, True)


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
    """_distances with each feature scaled per component (``scaled``, the
    diagonal type: t_i = diff_i prec_ki - proj_ki, one multiply-add) or not
    (the spherical type: t_i = diff_i - proj_ki, one subtraction, which runs
    on other pipes than the multiply-adds: 1.15x as fast a pass)."""

    def _distances(diff, nb, proj, prec, out):
        """out[k, r] = sum_i t_i^2 (t_i of _make_distances) over the centred
        rows diff (d, block).

        Tiles of two components x four features: four loads of the rows feed
        eight squared terms (1.3-1.6x as fast as one component at a time,
        AVX2 and AVX-512 code).  The squares are summed in pairs: a chain of
        explicit multiply-adds, as in :func:`_logprob_tri`, put all eight
        operations on the multiply-add pipes instead of six, and the
        diagonal type's pass ran 4% slower (Zen 3, AVX2 code).  Every
        component's sum has the same order, paired or not; the last component
        of an odd K pairs with itself (the same sum, computed and stored
        twice).
        """
        K, d = proj.shape
        for k in range(K):
            for r in range(nb):
                out[k, r] = 0.0
        k = 0
        while k < K:
            j = k + 1 if k + 1 < K else k
            i = 0
            while i + 3 < d:
                m0 = proj[k, i]
                m1 = proj[k, i + 1]
                m2 = proj[k, i + 2]
                m3 = proj[k, i + 3]
                n0 = proj[j, i]
                n1 = proj[j, i + 1]
                n2 = proj[j, i + 2]
                n3 = proj[j, i + 3]
                p0 = prec[k, i]
                p1 = prec[k, i + 1]
                p2 = prec[k, i + 2]
                p3 = prec[k, i + 3]
                q0 = prec[j, i]
                q1 = prec[j, i + 1]
                q2 = prec[j, i + 2]
                q3 = prec[j, i + 3]
                for r in range(nb):
                    x0 = diff[i, r]
                    x1 = diff[i + 1, r]
                    x2 = diff[i + 2, r]
                    x3 = diff[i + 3, r]
                    if scaled:
                        t0 = x0 * p0 - m0
                        t1 = x1 * p1 - m1
                        t2 = x2 * p2 - m2
                        t3 = x3 * p3 - m3
                        u0 = x0 * q0 - n0
                        u1 = x1 * q1 - n1
                        u2 = x2 * q2 - n2
                        u3 = x3 * q3 - n3
                    else:
                        t0 = x0 - m0
                        t1 = x1 - m1
                        t2 = x2 - m2
                        t3 = x3 - m3
                        u0 = x0 - n0
                        u1 = x1 - n1
                        u2 = x2 - n2
                        u3 = x3 - n3
                    a = out[k, r] + ((t0 * t0 + t1 * t1) + (t2 * t2 + t3 * t3))
                    b = out[j, r] + ((u0 * u0 + u1 * u1) + (u2 * u2 + u3 * u3))
                    out[k, r] = a
                    out[j, r] = b
                i += 4
            while i < d:
                m0 = proj[k, i]
                n0 = proj[j, i]
                p0 = prec[k, i]
                q0 = prec[j, i]
                for r in range(nb):
                    x0 = diff[i, r]
                    if scaled:
                        t0 = x0 * p0 - m0
                        u0 = x0 * q0 - n0
                    else:
                        t0 = x0 - m0
                        u0 = x0 - n0
                    a = out[k, r] + t0 * t0
                    b = out[j, r] + u0 * u0
                    out[k, r] = a
                    out[j, r] = b
                i += 1
            k += 2

    return _distinct_njit(_distances, "_scaled_distances" if scaled else "_distances")


_scaled_distances = _make_distances(True)
_distances = _make_distances(False)


@njit(cache=HELPER_CACHE, fastmath=FASTMATH, error_model="numpy")
def _logprob_block_diag(xt, nb, ref2, proj, prec, log_norm, diff, lp):
    """Diagonal precisions: lp[k] = log_norm[k] - 0.5 sum_i t_i^2 with
    t_i = (x_i - ref2_i) p_ki - proj_ki = (x_i - mu_ki) p_ki, proj_k =
    (mu_k - ref2) p_k (:func:`_scaled_distances`, summed in lp itself), on
    rows centred once per block at ref2 (the mixture mean).
    """
    K = proj.shape[0]
    _centre_block(xt, nb, ref2, diff)
    _scaled_distances(diff, nb, proj, prec, lp)
    for k in range(K):
        c = log_norm[k]
        for r in range(nb):
            lp[k, r] = c - 0.5 * lp[k, r]


@njit(cache=HELPER_CACHE, fastmath=FASTMATH, error_model="numpy")
def _logprob_block_spherical(xt, nb, ref2, cen, prec, log_norm, diff, dist, lp):
    """One variance per component: dist[k] = |x - mu_k|^2, formed as
    sum_i ((x_i - ref2_i) - cen_ki)^2 with cen_k = mu_k - ref2 on rows
    centred once per block (:func:`_distances`), and lp[k] = log_norm[k] -
    0.5 p_k^2 dist[k] (p_k = prec[k, 0], the square root of the precision).

    The squared distances are kept (dist, K x block): the component's second
    moment is then sum_r resp dist, one multiply-add per row instead of two
    per feature (:func:`._moments._accumulate_spherical`).
    """
    K = cen.shape[0]
    _centre_block(xt, nb, ref2, diff)
    _distances(diff, nb, cen, prec, dist)
    for k in range(K):
        c = log_norm[k]
        p = prec[k, 0]
        h = 0.5 * (p * p)
        for r in range(nb):
            lp[k, r] = c - h * dist[k, r]


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
