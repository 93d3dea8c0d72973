"""The kernel for rows with missing entries (NaN), full and tied
covariances: the observed-data E-step and the conditional moments of EM
for the observed-data likelihood (``missing='marginalize'``).

For a row with missing coordinates m (q of them) and a component with mean
mu, precision Lambda = P P^T (P upper triangular, the precision Cholesky
factor of the other kernels):

- with diff = x - mu, set to 0 at m, z = P^T diff and b = (Lambda diff)_m =
  P[m, :] z; with Lambda_mm = L D L^T (q x q, L unit lower), the shift of the
  missing block is y = -Lambda_mm^-1 b, the conditional mean is
  xhat = x with x_m = mu_m + y, and the observed Mahalanobis distance is
  |z|^2 + y.b (the full one at xhat);
- log det Sigma_oo = log det Sigma + log det Lambda_mm, so the log density is
  log_norm_k + q/2 log(2 pi) - 1/2 log det Lambda_mm - 1/2 maha;
- the M-step statistics take xhat's moments plus, in the missing block of
  the second moment, the conditional covariance Lambda_mm^-1.

Each row needs one q x q factorisation per precision (q is small: a row
misses a few entries), and the rest is O(d^2) per component, like a
complete row.  The kernel runs on float64 rows (the incomplete rows are
gathered into a float64 copy, for every data dtype), so it has one variant.
Rows go in tasks of ``task_rows`` rows, ``prange`` over tasks, and the
tasks' partial statistics are added to the caller's accumulators in task
order: bitwise identical results for any number of threads.
"""

import numpy as np
from numba import njit, prange, types

from ._machinery import CACHE, FASTMATH, HELPER_CACHE, _arr, kernel
from ._moments import _moments_full, _zero_task

_f8 = types.float64
_i8 = types.int64

LOG_2PI = float(np.log(2.0 * np.pi))


def _sig_pass_missing(dt, ro):
    """One signature: float64 rows (``dt`` is ignored, see the module)."""
    return types.void(
        _arr(_f8, 2, ro), _arr(_f8, 1), _arr(_f8, 2), _arr(_f8, 3), _arr(_f8, 3),
        _arr(_f8, 1), _arr(_f8, 2), _arr(_f8, 1), _i8, _i8, _i8, _arr(_f8, 1), _arr(_f8, 2),
        _arr(_f8, 3), _arr(_f8, 1),
    )


@njit(cache=HELPER_CACHE, fastmath=FASTMATH, error_model="numpy")
def _load_incomplete(X, start, nb, x0, mk, idx, qs):
    """Rows start..start+nb of X, transposed: x0 (d, block) with 0 at the
    missing entries, mk (d, block) 1 where observed and 0 where missing;
    idx[r, :qs[r]] the (increasing) missing columns of row r."""
    d = X.shape[1]
    for r in range(nb):
        q = 0
        for j in range(d):
            v = X[start + r, j]
            if np.isnan(v):
                x0[j, r] = 0.0
                mk[j, r] = 0.0
                idx[r, q] = j
                q += 1
            else:
                x0[j, r] = v
                mk[j, r] = 1.0
        qs[r] = q


@njit(cache=HELPER_CACHE, fastmath=FASTMATH, error_model="numpy")
def _whiten_observed(x0, mk, nb, mu, Pk, diff, z, zz):
    """diff = (x - mu) at the observed entries, 0 at the missing ones;
    z = P^T diff (P upper triangular); zz[r] = |z[:, r]|^2.  Loops over
    points innermost (contiguous, vectorised)."""
    d = x0.shape[0]
    for i in range(d):
        m = mu[i]
        for r in range(nb):
            diff[i, r] = (x0[i, r] - m) * mk[i, r]
    for r in range(nb):
        zz[r] = 0.0
    for j in range(d):
        for r in range(nb):
            z[j, r] = 0.0
        for i in range(j + 1):
            p = Pk[i, j]
            for r in range(nb):
                z[j, r] += p * diff[i, r]
        for r in range(nb):
            zz[r] += z[j, r] * z[j, r]


@njit(cache=HELPER_CACHE, fastmath=FASTMATH, error_model="numpy", inline="always")
def _missing_rhs(P, pk, idx, r, q, z, b):
    """b = (Lambda diff)_m = P[m, :] z[:, r] for the q missing features
    idx[r, :q] of row r (P upper triangular, so the sum starts at m)."""
    d = P.shape[1]
    for a in range(q):
        ma = idx[r, a]
        s = 0.0
        for j in range(ma, d):
            s += P[pk, ma, j] * z[j, r]
        b[a] = s


@njit(cache=HELPER_CACHE, fastmath=FASTMATH, error_model="numpy", inline="always")
def _schur_row(P, lam, pk, idx, r, q, z, b, Lf, W, D, invD, Y, C, k):
    """The missing block of row r of a block (column r of z = P^T diff)
    under precision pk: b = (Lambda diff)_m = P[m, :] z, Lambda_mm =
    Lf D Lf^T (unit lower Lf), the shift Y[k, r, :q] = -Lambda_mm^-1 b of the
    missing entries' conditional mean, and the factors packed into C[k, r]
    (Lf's strict lower triangle by rows, then 1/D).  Returns
    (y.b, log det Lambda_mm).  Arrays are indexed, not sliced: a view per
    row would cost reference counting (atomic, on arrays threads share)."""
    _missing_rhs(P, pk, idx, r, q, z, b)
    # Lambda_mm = Lf D Lf^T, Lf unit lower triangular; W[a, c] = Lf[a, c] D[c]
    prod = 1.0
    for a in range(q):
        ia = idx[r, a]
        for c in range(a):
            s = lam[pk, ia, idx[r, c]]
            for e in range(c):
                s -= Lf[a, e] * W[c, e]
            W[a, c] = s
            Lf[a, c] = s * invD[c]
        s = lam[pk, ia, ia]
        for e in range(a):
            s -= Lf[a, e] * W[a, e]
        D[a] = s
        invD[a] = 1.0 / s
        prod *= s
    if 1e-280 < prod < 1e280:
        logdet = np.log(prod)
    else:
        logdet = 0.0
        for a in range(q):
            logdet += np.log(D[a])
    # y = -Lambda_mm^-1 b
    for a in range(q):
        s = -b[a]
        for e in range(a):
            s -= Lf[a, e] * Y[k, r, e]
        Y[k, r, a] = s
    for a in range(q - 1, -1, -1):
        s = Y[k, r, a] * invD[a]
        for e in range(a + 1, q):
            s -= Lf[e, a] * Y[k, r, e]
        Y[k, r, a] = s
    yb = 0.0
    for a in range(q):
        yb += Y[k, r, a] * b[a]
    # the factors, packed for _add_cond_cov: Lf's strict lower triangle by
    # rows, then 1/D
    pos = 0
    for a in range(q):
        for c in range(a):
            C[k, r, pos] = Lf[a, c]
            pos += 1
    for a in range(q):
        C[k, r, pos] = invD[a]
        pos += 1
    return yb, logdet


@njit(cache=HELPER_CACHE, fastmath=FASTMATH, error_model="numpy", inline="always")
def _solve_packed(P, pk, idx, r, q, z, b, C, kf, rf, Y, k):
    """As :func:`_schur_row` for a row whose missing pattern was factorised
    already (the factors packed in C[kf, rf]): b = P[m, :] z[:, r], the
    shift Y[k, r, :q] = -Lambda_mm^-1 b; returns y.b."""
    _missing_rhs(P, pk, idx, r, q, z, b)
    base = q * (q - 1) // 2
    for a in range(q):
        s = -b[a]
        for e in range(a):
            s -= C[kf, rf, a * (a - 1) // 2 + e] * Y[k, r, e]
        Y[k, r, a] = s
    yb = 0.0
    for a in range(q - 1, -1, -1):
        s = Y[k, r, a] * C[kf, rf, base + a]
        for e in range(a + 1, q):
            s -= C[kf, rf, e * (e - 1) // 2 + a] * Y[k, r, e]
        Y[k, r, a] = s
        yb += s * b[a]
    return yb


@njit(cache=HELPER_CACHE, fastmath=FASTMATH, error_model="numpy")
def _add_cond_cov(C, k, rf, r, idx, q, g, Lf, Linv, s2, t, s):
    """s2[t, s, m_a, m_c] += g * (Lambda_mm^-1)[a, c] for a <= c (upper
    triangle; m = idx[r, :q] is increasing), from the factors Lambda_mm =
    Lf D Lf^T packed into C[k, rf] by :func:`_schur_row` (row rf has row
    r's missing pattern): Lambda_mm^-1 =
    Linv^T D^-1 Linv with Linv = Lf^-1 (unit lower).  Called only for rows
    and components of nonzero responsibility (most are exactly 0)."""
    pos = 0
    for a in range(q):
        for c in range(a):
            Lf[a, c] = C[k, rf, pos]
            pos += 1
    base = pos
    for c in range(q):
        Linv[c, c] = 1.0
        for a in range(c + 1, q):
            v = -Lf[a, c]
            for e in range(c + 1, a):
                v -= Lf[a, e] * Linv[e, c]
            Linv[a, c] = v
    for a in range(q):
        ma = idx[r, a]
        for c in range(a, q):
            v = 0.0
            for e in range(c, q):
                v += Linv[e, a] * Linv[e, c] * C[k, rf, base + e]
            s2[t, s, ma, idx[r, c]] += g * v


@kernel(_sig_pass_missing, dtypes=(np.float64,), parallel=True, cache=CACHE,
        fastmath=FASTMATH,
        shapes=("n d", "n|0", "K d", "L d d", "L d d", "K", "K d", "d", "flag", "block",
                "task", "K", "K d", "S d d", "2"))
def pass_missing(X, w, means, P, lam, log_norm, ref, ref2, tied, block, task_rows, out_nk,
                 out_s1, out_s2, out_ll):
    """One EM pass over rows with missing entries (NaN), full or tied.

    Parameters
    ----------
    X : (n, d) float64, NaN marking a missing entry
    w : (n,) float64 sample weights, or an empty array for unit weights
    means : (K, d) float64, the components' means (the E-step's)
    P : (K, d, d) upper-triangular precision Cholesky factors, float64;
        (1, d, d) for tied
    lam : the precision matrices P P^T, P's shape
    log_norm : (K,) log weight + log det P_k - d/2 log(2 pi)
    ref : (K, d) the references of the first (and, full, second) moments
    ref2 : (d,) the reference of the tied total scatter
    tied : 0 for full, 1 for tied
    block, task_rows : rows per block and per parallel task
    out_nk, out_s1 : (K,), (K, d) float64 accumulators
    out_s2 : (K, d, d) (full: second moments around ref[k]) or (1, d, d)
        (tied: the weighted total scatter around ref2); upper triangles only
    out_ll : (2,) [sum of weighted log-likelihoods, rows without a finite
        density]

    Each block of rows is transposed (points innermost) for the O(d^2)
    work, which vectorises as in the complete rows' kernels: z = P^T diff
    per component, and the second moments of the conditional means (tiles
    of :func:`_moments_full`).  The O(q^3) work on the missing block is per
    missing pattern and component (:func:`_schur_row`): a row with the
    pattern of the row before it reuses its factors (the caller sorts the
    rows by pattern), and the conditional covariance is added once per run
    of such rows.
    """
    n, d = X.shape
    K = means.shape[0]
    has_w = w.shape[0] > 0
    ntasks = (n + task_rows - 1) // task_rows
    S = out_s2.shape[0]
    npack = d * (d + 1) // 2
    p_nk = np.empty((ntasks, K))
    p_s1 = np.empty((ntasks, K, d))
    p_s2 = np.empty((ntasks, S, d, d))
    p_ll = np.empty(ntasks)
    p_bad = np.empty(ntasks, dtype=np.int64)
    half_log_2pi = 0.5 * LOG_2PI
    for t in prange(ntasks):
        x0 = np.empty((d, block))
        mk = np.empty((d, block))
        diff = np.empty((d, block))
        z = np.empty((d, block))
        zz = np.empty(block)
        idx = np.empty((block, d), dtype=np.int64)
        qs = np.empty(block, dtype=np.int64)
        b = np.empty(d)
        Lf = np.empty((d, d))
        D = np.empty(d)
        W = np.empty((d, d))
        invD = np.empty(d)
        Linv = np.empty((d, d))
        Y = np.empty((K, block, d))
        C = np.empty((K, block, npack))
        lp = np.empty((K, block))
        LD = np.empty((K, block))
        src = np.empty(block, dtype=np.int64)
        sq = np.empty(block)
        tied_s1 = np.zeros((1, d))
        ref2_row = ref2.reshape((1, d))
        s1_t = p_s1[t]
        s2_t = p_s2[t]
        _zero_task(p_nk[t], s1_t, s2_t)
        lo = t * task_rows
        hi = min(n, lo + task_rows)
        ll = 0.0
        nbad = 0
        for start in range(lo, hi, block):
            nb = min(block, hi - start)
            _load_incomplete(X, start, nb, x0, mk, idx, qs)
            # rows with the missing pattern of the row before them reuse its
            # factorisations (the caller sorts rows by pattern)
            for r in range(nb):
                src[r] = r
                if r > 0 and qs[r] == qs[r - 1]:
                    same = True
                    for a in range(qs[r]):
                        if idx[r, a] != idx[r - 1, a]:
                            same = False
                            break
                    if same:
                        src[r] = src[r - 1]
            # E-step: log w_k + log N(x_o; mu_k,o, Sigma_k,oo)
            for k in range(K):
                pk = 0 if tied else k
                _whiten_observed(x0, mk, nb, means[k], P[pk], diff, z, zz)
                for r in range(nb):
                    q = qs[r]
                    rf = src[r]
                    if rf == r and (k == 0 or not tied):
                        yb, ld = _schur_row(P, lam, pk, idx, r, q, z, b, Lf, W, D, invD,
                                            Y, C, k)
                        LD[pk, r] = ld
                    else:
                        # the pattern's factors are those of row rf (tied: of
                        # component 0)
                        yb = _solve_packed(P, pk, idx, r, q, z, b, C, pk, rf, Y, k)
                        ld = LD[pk, rf]
                    lp[k, r] = (log_norm[k] + q * half_log_2pi - 0.5 * ld
                                - 0.5 * (zz[r] + yb))
            # responsibilities (weighted) in lp, log-likelihood
            for r in range(nb):
                mx = lp[0, r]
                for k in range(1, K):
                    if lp[k, r] > mx:
                        mx = lp[k, r]
                ssum = 0.0
                for k in range(K):
                    ssum += np.exp(lp[k, r] - mx)
                lse = mx + np.log(ssum)
                if not np.isfinite(lse):
                    nbad += 1
                    for k in range(K):
                        lp[k, r] = 0.0
                    continue
                wr = w[start + r] if has_w else 1.0
                ll += wr * lse
                for k in range(K):
                    lp[k, r] = np.exp(lp[k, r] - lse) * wr
            # statistics of the conditional means, then the conditional
            # covariances of the missing blocks
            for k in range(K):
                tot = 0.0
                for r in range(nb):
                    tot += lp[k, r]
                if tot == 0.0:
                    continue
                p_nk[t, k] += tot
                for r in range(nb):
                    sq[r] = np.sqrt(lp[k, r])
                    for a in range(qs[r]):
                        ma = idx[r, a]
                        x0[ma, r] = means[k, ma] + Y[k, r, a]
                if tied:
                    for i in range(d):
                        m = ref[k, i]
                        a1 = 0.0
                        for r in range(nb):
                            a1 += lp[k, r] * (x0[i, r] - m)
                        p_s1[t, k, i] += a1
                    _moments_full(x0, nb, ref2_row, 0, sq, diff, tied_s1, s2_t, 0, 0.0)
                else:
                    _moments_full(x0, nb, ref, k, sq, diff, s1_t, s2_t, k, 0.0)
                    # one conditional covariance per run of rows sharing a
                    # missing pattern, times the run's responsibilities
                    g = 0.0
                    for r in range(nb):
                        g += lp[k, r]
                        if (r + 1 == nb or src[r + 1] != src[r]) and g != 0.0:
                            _add_cond_cov(C, k, src[r], r, idx, qs[r], g, Lf, Linv, p_s2,
                                          t, k)
                        if r + 1 == nb or src[r + 1] != src[r]:
                            g = 0.0
            if tied:
                g = 0.0
                for r in range(nb):
                    for k in range(K):
                        g += lp[k, r]
                    if (r + 1 == nb or src[r + 1] != src[r]) and g != 0.0:
                        _add_cond_cov(C, 0, src[r], r, idx, qs[r], g, Lf, Linv, p_s2, t, 0)
                    if r + 1 == nb or src[r + 1] != src[r]:
                        g = 0.0
        p_ll[t] = ll
        p_bad[t] = nbad
    for t in range(ntasks):
        for k in range(K):
            out_nk[k] += p_nk[t, k]
            for j in range(d):
                out_s1[k, j] += p_s1[t, k, j]
        for s in range(S):
            for i in range(d):
                for j in range(d):
                    out_s2[s, i, j] += p_s2[t, s, i, j]
        out_ll[0] += p_ll[t]
        out_ll[1] += p_bad[t]
