"""Block helpers of the statistics: the weighted first and second moments
of a block around each component's reference, per covariance family, and
the ordered merge of the tasks' partial statistics.
"""

import numpy as np
from numba import njit
from numba.extending import overload

from ._classes import _tag_class
from ._kept_rows import COMPACT_SLACK, FEW_ROWS, _few_rows, _packed_scaled, _scaled_rows
from ._machinery import FASTMATH, HELPER_CACHE

@njit(cache=HELPER_CACHE, fastmath=FASTMATH, error_model="numpy", inline="always")
def _gram_tiles(u, ua, ub, v, i, nb, s2, k, zero):
    """s2[k, i, j] += sum_r u[ua, r] v[j, r] and, if i + 1 < d, s2[k, i + 1, j] +=
    sum_r u[ub, r] v[j, r], for j >= i (d = v.shape[0]).

    Register tiles of 2 rows x 4 columns: six loads feed eight multiply-adds.
    The sums over one block are formed in the data's precision (``zero`` is a
    zero of that type, as are u and v) and added to the float64 accumulator
    s2.  Row ub of u is read (not stored) even when i + 1 == d.

    _gram_tiles, _moments_full and _component_scaled are inlined (Numba IR)
    into their callers: as calls they kept M, L and T 5-12% slower on one
    thread; inlined, a first full fit compiles in the same time (9.3-10.0 s
    against 9.8-10.0 s, 10,000 x 16 rows, empty cache) and every fit keeps
    its bits.
    """
    d = v.shape[0]
    two = i + 1 < d
    j = i
    while j + 3 < d:
        c00 = zero
        c01 = zero
        c02 = zero
        c03 = zero
        if two:
            c10 = zero
            c11 = zero
            c12 = zero
            c13 = zero
            for r in range(nb):
                u0 = u[ua, r]
                u1 = u[ub, r]
                v0 = v[j, r]
                v1 = v[j + 1, r]
                v2 = v[j + 2, r]
                v3 = v[j + 3, r]
                c00 += u0 * v0
                c01 += u0 * v1
                c02 += u0 * v2
                c03 += u0 * v3
                c10 += u1 * v0
                c11 += u1 * v1
                c12 += u1 * v2
                c13 += u1 * v3
            s2[k, i + 1, j] += c10
            s2[k, i + 1, j + 1] += c11
            s2[k, i + 1, j + 2] += c12
            s2[k, i + 1, j + 3] += c13
        else:
            for r in range(nb):
                u0 = u[ua, r]
                c00 += u0 * v[j, r]
                c01 += u0 * v[j + 1, r]
                c02 += u0 * v[j + 2, r]
                c03 += u0 * v[j + 3, r]
        s2[k, i, j] += c00
        s2[k, i, j + 1] += c01
        s2[k, i, j + 2] += c02
        s2[k, i, j + 3] += c03
        j += 4
    while j < d:
        c00 = zero
        c10 = zero
        for r in range(nb):
            vj = v[j, r]
            c00 += u[ua, r] * vj
            c10 += u[ub, r] * vj
        s2[k, i, j] += c00
        if two:
            s2[k, i + 1, j] += c10
        j += 1


@njit(cache=HELPER_CACHE, fastmath=FASTMATH, error_model="numpy", inline="always")
def _moments_full(xt, nb, centre, kc, sq, z, s1, s2, k, zero):
    """With g = sq[:nb] the square roots of the row weights (responsibilities)
    and c = centre[kc]: s1[k, i] += sum_r g^2 (x_i - c_i); s2[k, i, j] +=
    sum_r g^2 (x_i - c_i)(x_j - c_j) for j >= i (entries just below the
    diagonal may also be written; only the upper triangle is used).  Rows of
    centre, s1, s2 are picked by index, not sliced (_TASK_VIEWS in
    :mod:`._passes`).

    The scaled rows z = (x - c) g are formed once (z is (d, block) scratch),
    so that s2 = z z^T reads one array for both factors of the tiles
    (:func:`_gram_tiles`), with no weighted copy per row pair.  Sums over a
    block are in the data's precision (``zero``; sq and z have that type too),
    added to the float64 accumulators s1, s2: float32 data gets twice the SIMD
    width, and the centred terms cannot make a variance negative.
    """
    _scaled_rows(xt, nb, centre, kc, sq, z, s1, k, zero)
    d = z.shape[0]
    for i in range(0, d, 2):
        _gram_tiles(z, i, min(i + 1, d - 1), z, i, nb, s2, k, zero)


@njit(cache=HELPER_CACHE, fastmath=FASTMATH, error_model="numpy")
def _moments_weighted(resp, nb, diff, wd, s1, s2, k, zero):
    """s1[k, i] += sum_r resp[r] diff[i, r]; s2[k, i, j] += sum_r resp[r] diff[i, r]
    diff[j, r] for j >= i (entries just below the diagonal may also be written; only the
    upper triangle is used).

    Used for few features (d < SCALED_MIN_D), where the square roots of
    :func:`_moments_full` cost more than they save: rows i, i + 1 weighted by
    resp go to wd (2, block), then :func:`_gram_tiles` against diff.  Types
    as in :func:`_moments_full` (resp and wd in the data's precision).
    """
    d = diff.shape[0]
    for i in range(0, d, 2):
        a0 = zero
        a1 = zero
        if i + 1 < d:
            for r in range(nb):
                t0 = resp[r] * diff[i, r]
                t1 = resp[r] * diff[i + 1, r]
                wd[0, r] = t0
                wd[1, r] = t1
                a0 += t0
                a1 += t1
            s1[k, i] += a0
            s1[k, i + 1] += a1
        else:
            for r in range(nb):
                t0 = resp[r] * diff[i, r]
                wd[0, r] = t0
                a0 += t0
            s1[k, i] += a0
        _gram_tiles(wd, 0, 1, diff, i, nb, s2, k, zero)


@njit(cache=HELPER_CACHE, fastmath=FASTMATH, error_model="numpy", inline="always")
def _component_small(xt, nb, resp, k, ref, diff, wd, rf, idx, t4, zero, s1, s2):
    """Moments of component k for one or two features: one sweep over the
    points with every sum in a register (resp[k, :nb] the responsibilities,
    around ref[k]).  The arrays are indexed with k, not sliced: a slice is a
    view whose reference count is updated atomically, on arrays (the means)
    that all threads share, once per block and component.

    Inlined (Numba IR) into the small class's accumulate loop: called there
    as a function it kept S 10-25% slower on one thread (float64, float32),
    for no measurable compile time, as only the small class's kernel holds it."""
    d = xt.shape[0]
    m0 = ref[k, 0]
    a0 = zero
    b00 = zero
    if d == 2:
        m1 = ref[k, 1]
        a1 = zero
        b01 = zero
        b11 = zero
        for r in range(nb):
            t0 = xt[0, r] - m0
            t1 = xt[1, r] - m1
            u0 = resp[k, r] * t0
            u1 = resp[k, r] * t1
            a0 += u0
            a1 += u1
            b00 += u0 * t0
            b01 += u0 * t1
            b11 += u1 * t1
        s1[k, 1] += a1
        s2[k, 0, 1] += b01
        s2[k, 1, 1] += b11
    else:
        for r in range(nb):
            t0 = xt[0, r] - m0
            u0 = resp[k, r] * t0
            a0 += u0
            b00 += u0 * t0
    s1[k, 0] += a0
    s2[k, 0, 0] += b00


@njit(cache=HELPER_CACHE, fastmath=FASTMATH, error_model="numpy")
def _component_weighted(xt, nb, resp, k, ref, diff, wd, rf, idx, t4, zero, s1, s2):
    """Moments of component k, 2 < d < SCALED_MIN_D: rows centred at ref[k],
    then :func:`_moments_weighted`."""
    d = xt.shape[0]
    for i in range(d):
        m = ref[k, i]
        for r in range(nb):
            diff[i, r] = xt[i, r] - m
    for r in range(nb):
        rf[r] = resp[k, r]
    _moments_weighted(rf, nb, diff, wd, s1, s2, k, zero)


@njit(cache=HELPER_CACHE, fastmath=FASTMATH, error_model="numpy", inline="always")
def _component_scaled(xt, nb, resp, k, ref, diff, wd, rf, idx, t4, zero, s1, s2):
    """Moments of component k, d >= SCALED_MIN_D: rows scaled by the square
    roots of the responsibilities (:func:`_moments_full`).

    When few rows of the block have a responsibility other than exactly zero
    (m of nb with m (d + COMPACT_SLACK) <= nb d), only those rows are scaled
    and packed into the first m columns of diff (:func:`_packed_scaled`), and
    the tiles run over m points: a row whose responsibility is exactly zero
    adds exact zeros to every sum, so the statistics are the same sums over
    fewer terms.  Well separated components make most responsibilities
    exactly zero (the exp of the E-step is 0 below the smallest normal
    number): in L (d = 64, K = 32) each row has one component of 32.  The
    packing copies d values per kept row, one at a time, against about d^2 / 2
    multiply-adds of the tiles, so it pays from fewer kept rows the fewer
    features there are; the choice depends on the block's responsibilities
    only, so results stay the same for any thread count.
    """
    d = xt.shape[0]
    m = 0
    for r in range(nb):
        m += resp[k, r] != zero
    if m * (d + COMPACT_SLACK) <= nb * d:
        m = _packed_scaled(xt, nb, resp, k, ref, idx, diff, rf, zero, s1)
    else:
        for r in range(nb):
            rf[r] = np.sqrt(resp[k, r])
        _scaled_rows(xt, nb, ref, k, rf, diff, s1, k, zero)
        m = nb
    for i in range(0, d, 2):
        _gram_tiles(diff, i, min(i + 1, d - 1), diff, i, m, s2, k, zero)


@njit(cache=HELPER_CACHE, fastmath=FASTMATH, error_model="numpy", inline="always")
def _component_wide(xt, nb, resp, k, ref, diff, wd, rf, idx, t4, zero, s1, s2):
    """Moments of component k, d >= WIDE_MIN_D: when at most FEW_ROWS rows of
    the block have a responsibility other than exactly zero, row by row
    (:func:`._kept_rows._few_rows`), otherwise as :func:`_component_scaled`.

    Only the wide class has the row-by-row path: there it halves the moments
    of L (d = 64, K = 32: about 8 of 256 rows per component and block) and
    makes float32 as fast as it should be; at d = 16 (M) a component rarely
    has so few rows, and the path would add about 2.3 s to the compilation
    of every first fit (pass_full, float64, Zen 3)."""
    m = 0
    for r in range(nb):
        m += resp[k, r] != zero
    if m <= FEW_ROWS:
        _few_rows(xt, nb, resp, k, ref, m, idx, t4, s1, s2)
    else:
        _component_scaled(xt, nb, resp, k, ref, diff, wd, rf, idx, t4, zero, s1, s2)


def _accumulate_full(xt, nb, resp, ref, tag, diff, wd, rf, idx, t4, zero, nk, s1, s2):
    """Add one block's statistics to (nk, s1, s2) for the full type.

    resp[k, :nb] are the (weighted) responsibilities; s1[k] and s2[k] are
    taken around ref[k] (upper triangle of s2 only).  The dtype of ``tag``
    (:func:`class_tag`) picks the moments' code path when the kernel is
    compiled.  diff (d, block), wd (2, block) and rf (block,) in the data's
    type and idx (block,) int64 are scratch; zero is a zero of that type.
    """
    raise NotImplementedError("compiled code only")


@overload(_accumulate_full,
          jit_options=dict(fastmath=FASTMATH, error_model="numpy"))
def _accumulate_full_typed(xt, nb, resp, ref, tag, diff, wd, rf, idx, t4, zero, nk, s1, s2):
    component = (_component_small, _component_weighted, _component_scaled,
                 _component_wide)[_tag_class(tag)]

    def impl(xt, nb, resp, ref, tag, diff, wd, rf, idx, t4, zero, nk, s1, s2):
        K = ref.shape[0]
        for k in range(K):
            tot = 0.0
            for r in range(nb):
                tot += resp[k, r]
            if tot == 0.0:
                # all responsibilities of this block are exactly zero: its
                # statistics would add exact zeros
                continue
            nk[k] += tot
            component(xt, nb, resp, k, ref, diff, wd, rf, idx, t4, zero, s1, s2)

    return impl


@njit(cache=HELPER_CACHE, fastmath=FASTMATH, error_model="numpy")
def _accumulate_tied(xt, nb, resp, wrow, ref, ref2, diff, rf, zero, tied_s1, nk, s1, s2):
    """Add one block's statistics for the tied type: nk[k] and s1[k] (around
    ref[k]) per component, and to s2[0] the weighted total scatter around
    ref2[0] (upper triangle), from the row weights wrow[:nb]; tied_s1 (1, d)
    receives the matching first moment around ref2 (unused by the M-step).
    Scratch as in :func:`_accumulate_full`.

    The per-component preamble (the block's total responsibility, the skip of
    a component without any, the copy into rf) is written out here and in
    _accumulate_full's implementation rather than called: a helper returning the total is a call per block and component
    whose float64 reduction LLVM may vectorise differently from the inlined
    loop, which would change the last bits of nk."""
    K, d = ref.shape
    for k in range(K):
        tot = 0.0
        for r in range(nb):
            tot += resp[k, r]
        if tot == 0.0:
            continue
        nk[k] += tot
        for r in range(nb):
            rf[r] = resp[k, r]
        for i in range(d):
            m = ref[k, i]
            a = zero
            for r in range(nb):
                a += rf[r] * (xt[i, r] - m)
            s1[k, i] += a
    for r in range(nb):
        rf[r] = np.sqrt(wrow[r])
    _moments_full(xt, nb, ref2, 0, rf, diff, tied_s1, s2, 0, zero)


@njit(cache=HELPER_CACHE, fastmath=FASTMATH, error_model="numpy")
def _accumulate_diag(xt, nb, resp, ref, tot, zero, nk, s1, s2):
    """Add one block's statistics to (nk, s1, s2) for the diag type:
    s1[k, i] = sum_r resp (x_i - ref_ki), s2[k, i] = sum_r resp
    (x_i - ref_ki)^2.  Two components x two features per sweep over the
    points (the last of an odd K pairs with itself: computed twice, added
    once): two loads of the rows feed eight sums, 1.16x (AVX-512) and 1.36x
    (AVX2 code) as fast as one component at a time.  Block sums in the
    data's precision (zero of that type); tot (float64, K) is scratch for
    the weight sums.
    """
    K, d = ref.shape
    for k in range(K):
        t = 0.0
        for r in range(nb):
            t += resp[k, r]
        tot[k] = t
        nk[k] += t
    k = 0
    while k < K:
        j = k + 1 if k + 1 < K else k
        # a component without weight in the block adds exact zeros; skip a
        # pair only when both are
        if tot[k] != 0.0 or tot[j] != 0.0:
            _diag_pair(xt, nb, resp, ref, k, j, zero, s1, s2)
        k += 2


@njit(cache=HELPER_CACHE, fastmath=FASTMATH, error_model="numpy")
def _diag_pair(xt, nb, resp, ref, k, j, zero, s1, s2):
    """_accumulate_diag's sums for components k and j (j == k: added once)."""
    d = ref.shape[1]
    two = j != k
    i = 0
    while i < d:
        # the second feature of the sweep: i + 1, or i again at an odd end
        i1 = i + 1 if i + 1 < d else i
        m0 = ref[k, i]
        m1 = ref[k, i1]
        n0 = ref[j, i]
        n1 = ref[j, i1]
        a0 = zero
        b0 = zero
        a1 = zero
        b1 = zero
        c0 = zero
        e0 = zero
        c1 = zero
        e1 = zero
        for r in range(nb):
            g = resp[k, r]
            h = resp[j, r]
            x0 = xt[i, r]
            x1 = xt[i1, r]
            t0 = x0 - m0
            t1 = x1 - m1
            v0 = x0 - n0
            v1 = x1 - n1
            u0 = g * t0
            u1 = g * t1
            w0 = h * v0
            w1 = h * v1
            a0 += u0
            b0 += u0 * t0
            a1 += u1
            b1 += u1 * t1
            c0 += w0
            e0 += w0 * v0
            c1 += w1
            e1 += w1 * v1
        s1[k, i] += a0
        s2[k, i] += b0
        if two:
            s1[j, i] += c0
            s2[j, i] += e0
        if i1 != i:
            s1[k, i1] += a1
            s2[k, i1] += b1
            if two:
                s1[j, i1] += c1
                s2[j, i1] += e1
        i += 2


@njit(cache=HELPER_CACHE, fastmath=FASTMATH, error_model="numpy")
def _spherical_pair(diff, nb, resp, k, j, means, ref2, dist, zero, tot, s1, s2):
    """_accumulate_spherical for components k and j together (j == k for the
    last of an odd K: computed twice, added once): four loads of the rows
    feed eight multiply-adds.  (The block sums are reassociated by the
    vectoriser, so they may round differently from one component at a time;
    they are the same for any thread count.)"""
    d = means.shape[1]
    two = j != k
    qk = zero
    qj = zero
    for r in range(nb):
        qk += resp[k, r] * dist[k, r]
        qj += resp[j, r] * dist[j, r]
    s2[k, 0] += qk
    if two:
        s2[j, 0] += qj
    i = 0
    while i + 3 < d:
        a0 = zero
        a1 = zero
        a2 = zero
        a3 = zero
        b0 = zero
        b1 = zero
        b2 = zero
        b3 = zero
        for r in range(nb):
            g = resp[k, r]
            h = resp[j, r]
            x0 = diff[i, r]
            x1 = diff[i + 1, r]
            x2 = diff[i + 2, r]
            x3 = diff[i + 3, r]
            a0 += g * x0
            a1 += g * x1
            a2 += g * x2
            a3 += g * x3
            b0 += h * x0
            b1 += h * x1
            b2 += h * x2
            b3 += h * x3
        _shift_first(s1, k, i, a0, tot[k], means, ref2)
        _shift_first(s1, k, i + 1, a1, tot[k], means, ref2)
        _shift_first(s1, k, i + 2, a2, tot[k], means, ref2)
        _shift_first(s1, k, i + 3, a3, tot[k], means, ref2)
        if two:
            _shift_first(s1, j, i, b0, tot[j], means, ref2)
            _shift_first(s1, j, i + 1, b1, tot[j], means, ref2)
            _shift_first(s1, j, i + 2, b2, tot[j], means, ref2)
            _shift_first(s1, j, i + 3, b3, tot[j], means, ref2)
        i += 4
    while i < d:
        a0 = zero
        b0 = zero
        for r in range(nb):
            x0 = diff[i, r]
            a0 += resp[k, r] * x0
            b0 += resp[j, r] * x0
        _shift_first(s1, k, i, a0, tot[k], means, ref2)
        if two:
            _shift_first(s1, j, i, b0, tot[j], means, ref2)
        i += 1


@njit(cache=HELPER_CACHE, fastmath=FASTMATH, error_model="numpy", inline="always")
def _shift_first(s1, k, i, a, tot, means, ref2):
    """s1[k, i] += a - tot (mu_ki - ref2_i): a first moment around ref2 added
    around the mean (the difference in float64)."""
    s1[k, i] += a - tot * (np.float64(means[k, i]) - np.float64(ref2[i]))


@njit(cache=HELPER_CACHE, fastmath=FASTMATH, error_model="numpy")
def _accumulate_spherical(diff, nb, resp, means, ref2, dist, tot, zero, nk, s1, s2):
    """Add one block's statistics to (nk, s1, s2) for the spherical type, from
    the rows centred at ref2 (diff) and the squared distances to the means
    (dist = |x - mu_k|^2) of :func:`._blocks._logprob_block_spherical`: s1[k, i] = sum_r resp
    (x_i - mu_ki) = sum_r resp diff_i - (sum_r resp) (mu_ki - ref2_i), and
    s2[k, 0] = sum_r resp |x - mu_k|^2, the whole second moment in the first
    column (the M-step of this type reads only the sums over features of s2,
    see SuffStats).  One multiply-add per feature and row instead of the
    diagonal type's subtraction and two, for two components at a time
    (1.66x as fast as one at a time, one thread); block sums in the data's precision
    (zero of that type), the shifts in float64.  tot (float64, K) is scratch
    for the weight sums.
    """
    K = means.shape[0]
    for k in range(K):
        t = 0.0
        for r in range(nb):
            t += resp[k, r]
        tot[k] = t
        nk[k] += t
    k = 0
    while k < K:
        j = k + 1 if k + 1 < K else k
        # a component without weight in the block adds nothing (its sums are
        # exact zeros); skip a pair only when both are
        if tot[k] != 0.0 or tot[j] != 0.0:
            _spherical_pair(diff, nb, resp, k, j, means, ref2, dist, zero, tot, s1, s2)
        k += 2


@njit(cache=HELPER_CACHE, error_model="numpy")
def _zero_task(nk, s1, s2):
    """Zero one task's partial statistics, in the task itself.

    The kernels allocate the partials with np.empty: np.zeros in a
    ``parallel=True`` kernel is a parallel region of its own, and waking
    the threads for each of them (five per call, sixteen calls per pass over
    a million rows) cost more than the zeroing, most of all with sleeping
    (passive) OpenMP threads.
    """
    a = nk.reshape(-1)
    for i in range(a.shape[0]):
        a[i] = 0.0
    a = s1.reshape(-1)
    for i in range(a.shape[0]):
        a[i] = 0.0
    a = s2.reshape(-1)
    for i in range(a.shape[0]):
        a[i] = 0.0


@njit(cache=HELPER_CACHE, error_model="numpy")
def _add_into(dst, src):
    """dst += src elementwise, as a plain serial loop.

    In a ``parallel=True`` kernel an array expression such as ``dst += src``
    becomes a parallel region of its own; merging hundreds of partials that
    way costs a thread barrier each (seconds on a busy machine).
    """
    a = dst.reshape(-1)
    b = src.reshape(-1)
    for i in range(a.shape[0]):
        a[i] += b[i]


@njit(cache=HELPER_CACHE, error_model="numpy")
def _merge_tasks(p_nk, p_s1, p_s2, p_ll, p_bad, out_nk, out_s1, out_s2, out_ll):
    """Add the tasks' partial statistics to the accumulators, in task order."""
    for t in range(p_nk.shape[0]):
        _add_into(out_nk, p_nk[t])
        _add_into(out_s1, p_s1[t])
        _add_into(out_s2, p_s2[t])
        out_ll[0] += p_ll[t]
        out_ll[1] += p_bad[t]
