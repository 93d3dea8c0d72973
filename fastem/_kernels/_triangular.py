"""The triangular products of the full type's log densities
(:func:`._blocks._logprob_block_full` for d > 2) as loops over the points,
for AVX-512 code (two- and four-column variants, compiled apart by a
factory); AVX2 code uses the register tiles of :mod:`._regtiles`.
"""

from numba import njit

from ._machinery import FASTMATH, HELPER_CACHE, _distinct_njit
from ._math import _fma


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


def _make_logprob_tri(four):
    """_logprob_tri with four-column tiles when ``four`` (see the note
    below)."""
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
        m = nb
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

    return _distinct_njit(_logprob_tri, "_logprob_tri" + ("_four" if four else ""))


# Register tiles and loops of the triangular products, per instruction set
# (one thread, rows of 128 points; Zen 4 with AVX-512 code and with AVX2 code
# compiled for haswell):
# - AVX-512 (32 vector registers): four columns at a time (a 4 x 4 tile) for
#   float64 data of the feature class d >= WIDE_MIN_D (32): L (d=64) ran its
#   E-step pass 1.05-1.08x as fast (696-702 -> 651-664 ms, two threads), M
#   (d=16) 0.97x, L in float32 0.9x (424 -> 474 ms per iteration), so fewer
#   features and float32 keep two columns; a class of its own, so that fits
#   of fewer features do not compile it (about 0.8 s of a first fit);
# - AVX2 (16 registers): the register tiles of ._regtiles (four columns x two
#   vectors of points, the sums in registers), in place of these loops.
# Each target compiles only its own variants.
_logprob_tri = _make_logprob_tri(False)
_logprob_tri_four = _make_logprob_tri(True)
