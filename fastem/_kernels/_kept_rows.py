"""Block helpers of the full moments that choose the rows they sum over:
the rows scaled by the square roots of their responsibilities
(:func:`_scaled_rows`), only the rows whose responsibility is not exactly
zero, packed (:func:`_packed_scaled`), or, when there are few of them,
added row by row (:func:`_few_rows`).  Called by :mod:`._moments`.
"""

import numpy as np
from numba import njit

from ._machinery import FASTMATH, HELPER_CACHE

# a block's rows with responsibility exactly zero are left out of a
# component's full second moments when m (d + COMPACT_SLACK) <= nb d
# (_component_scaled); the packed rows are zero-padded to a multiple of
# PACK_ALIGN columns (_packed_scaled)
COMPACT_SLACK = 30
PACK_ALIGN = 16
# at most FEW_ROWS such rows, with d >= WIDE_MIN_D: their moments are added
# row by row (_few_rows, called by _moments._component_wide), without tiles
FEW_ROWS = 16


@njit(cache=HELPER_CACHE, fastmath=FASTMATH, error_model="numpy", inline="always")
def _scaled_rows(xt, nb, centre, kc, sq, z, s1, k, zero):
    """z[i, r] = (xt[i, r] - centre[kc, i]) sq[r] and s1[k, i] += sum_r sq[r]
    z[i, r] (the first half of :func:`_moments_full`); xt may be z itself
    (scaled in place)."""
    d = z.shape[0]
    for i in range(d):
        m = centre[kc, i]
        a = zero
        for r in range(nb):
            g = sq[r]
            t = (xt[i, r] - m) * g
            z[i, r] = t
            a += g * t
        s1[k, i] += a


@njit(cache=HELPER_CACHE, fastmath=FASTMATH, error_model="numpy")
def _few_rows(xt, nb, resp, k, ref, m, idx, t4, s1, s2):
    """Moments of component k over the m (<= FEW_ROWS) rows of the block
    whose responsibility g is not exactly zero, added straight to the
    float64 s1[k] and s2[k] (upper triangle; entries up to three places left
    of the diagonal may also be written): four rows at a time, t4[q] = x - ref[k]
    in float64 for each, s1[k, i] += sum_q g_q t_qi and s2[k, i, l] += sum_q
    (g_q t_qi) t_ql, vectorised over l.

    The tiles of :func:`_gram_tiles` sum over the points (each ends with
    horizontal sums and the updates of eight entries), and the packed points
    are padded to PACK_ALIGN: with one or two kept rows in sixteen, as in L
    (d = 64, K = 32, one component per row), those fixed costs were most of
    the moments, and float32 data, with twice the lanes to reduce, ran them
    slower than float64.  Here the cost is per kept row.  A missing fourth
    row has g = 0 and t = 0 and adds exact zeros.
    """
    d = xt.shape[0]
    j = 0
    for r in range(nb):
        idx[j] = r
        j += resp[k, r] != 0
    p = 0
    while p < m:
        g0 = 0.0
        g1 = 0.0
        g2 = 0.0
        g3 = 0.0
        for q in range(4):
            if p + q < m:
                r = idx[p + q]
                g = np.float64(resp[k, r])
                for i in range(d):
                    t4[q, i] = np.float64(xt[i, r]) - np.float64(ref[k, i])
            else:
                g = 0.0
                for i in range(d):
                    t4[q, i] = 0.0
            if q == 0:
                g0 = g
            elif q == 1:
                g1 = g
            elif q == 2:
                g2 = g
            else:
                g3 = g
        for i in range(d):
            a0 = g0 * t4[0, i]
            a1 = g1 * t4[1, i]
            a2 = g2 * t4[2, i]
            a3 = g3 * t4[3, i]
            s1[k, i] += (a0 + a1) + (a2 + a3)
            # from i rounded down to a multiple of 4 (whole vectors); the
            # index runs from 0 so that LLVM knows it is >= 0 and drops
            # Numba's negative-index wraparound, which kept it scalar
            l0 = i - i % 4
            s2i = s2[k, i, l0:]
            u0 = t4[0, l0:]
            u1 = t4[1, l0:]
            u2 = t4[2, l0:]
            u3 = t4[3, l0:]
            for l in range(d - l0):
                s2i[l] += (a0 * u0[l] + a1 * u1[l]) + (a2 * u2[l] + a3 * u3[l])
        p += 4


@njit(cache=HELPER_CACHE, fastmath=FASTMATH, error_model="numpy")
def _packed_scaled(xt, nb, resp, k, ref, idx, z, g, zero, s1):
    """Pack the rows of the block with a responsibility other than exactly
    zero: with r_j the j-th such row (idx[j], found without branches),
    g[j] = sqrt(resp[k, r_j]) and z[i, j] = (xt[i, r_j] - ref[k, i]) g[j];
    s1[k, i] += sum_j g[j] z[i, j] (the first moments of :func:`_moments_full`
    over the packed rows).  Columns m.. are zeroed up to a multiple of
    PACK_ALIGN (within z); returns that padded count, the number of columns
    the tiles then sum over."""
    d = xt.shape[0]
    m = 0
    for r in range(nb):
        idx[m] = r
        m += resp[k, r] != zero
    for j in range(m):
        g[j] = np.sqrt(resp[k, idx[j]])
    # the gather alone (not vectorised: AVX2 has no fast gather), then the
    # scaling and the first moments in vectorised sweeps over the packed rows
    for i in range(d):
        for j in range(m):
            z[i, j] = xt[i, idx[j]]
    _scaled_rows(z, m, ref, k, g, z, s1, k, zero)
    # zero columns up to a multiple of PACK_ALIGN, so that the tiles' loops
    # over the points end without a scalar remainder (they add exact zeros)
    mp = min((m + PACK_ALIGN - 1) // PACK_ALIGN * PACK_ALIGN, z.shape[1])
    for i in range(d):
        for j in range(m, mp):
            z[i, j] = zero
    return mp
