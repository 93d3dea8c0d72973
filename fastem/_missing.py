"""Rows with missing entries (NaN): the observed-data E-step and the
conditional moments that EM for the observed-data likelihood needs.

For a row with observed coordinates o and missing coordinates m, and a
component with mean mu and covariance Sigma (precision Lambda = Sigma^-1):

- the E-step uses the marginal density N(x_o; mu_o, Sigma_oo);
- the M-step uses E[x | x_o] (the observed entries, and
  mu_m - Lambda_mm^-1 Lambda_mo (x_o - mu_o) for the missing ones) and
  E[x x^T | x_o], whose missing block adds the conditional covariance
  Lambda_mm^-1 = Sigma_mm - Sigma_mo Sigma_oo^-1 Sigma_om.

Everything follows from the precision matrix (Schur complements), so a row
needs one factorisation of the q x q block Lambda_mm (q = number of missing
entries), not one of the observed block: rows are grouped by q and each group
is handled with batched NumPy (LAPACK on stacks of q x q matrices, BLAS
products over the rows).  The quadratic form is (xhat - mu)^T Lambda
(xhat - mu) with the conditional mean filled in, which equals the observed
Mahalanobis distance, and log det Sigma_oo = log det Sigma + log det
Lambda_mm.  Diagonal and spherical covariances need no factorisation at all.

The statistics produced here have exactly the layout of the kernels'
(:class:`~fastem._suffstats.SuffStats`), around the same references, so the
drivers merge them like any other block's.  This module is written with
NumPy: it costs a first fit no compilation, and rows with missing entries are
usually a minority.
"""

import numpy as np
from scipy.special import logsumexp

from ._suffstats import SuffStats

LOG_2PI = float(np.log(2.0 * np.pi))

#: The option values of the estimators' ``missing`` parameter.
MISSING_OPTIONS = ("error", "marginalize")

# The (rows x components x features) scratch of one batch is bounded by this
# many float64 values (8 MB: larger batches fall out of the caches and run slower).
_BATCH_VALUES = 1 << 20


# The kernel for full and tied covariances (fastem._kernels.pass_missing):
# rows per block, per parallel task, and tasks per call (fixed numbers, so results do
# not depend on the thread count or on how the data were chunked).
KERNEL_BLOCK = 64
KERNEL_TASK_ROWS = 256
KERNEL_TASKS_PER_CALL = 64


def batch_rows(n_components, n_features):
    """Incomplete rows handled together: a function of K and d only, so that
    batches (and hence the statistics, bitwise) do not depend on chunking."""
    return int(max(256, min(1 << 15, _BATCH_VALUES // max(1, n_components * n_features))))


def _pattern_keys(miss):
    """A sortable key per row of the boolean mask ``miss`` that is equal for
    equal rows (int64 bit masks up to 62 columns, else the rank of the row
    among the distinct rows)."""
    n, d = miss.shape
    if d <= 62:
        return miss.astype(np.int64) @ (np.int64(1) << np.arange(d, dtype=np.int64))
    return np.unique(miss, axis=0, return_inverse=True)[1].reshape(-1)


def incomplete_rows(X):
    """Indices (int64, sorted) of the rows of X holding a NaN.

    A chunk whose sum is finite holds no NaN (one cheap pass, no temporary of
    the chunk's size); only chunks with a non-finite sum are examined row by
    row.  Infinities are rejected by validation before this is called.
    """
    if X.shape[0] == 0:
        return np.empty(0, dtype=np.int64)
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.add.reduce(X, axis=None)
    if not np.isnan(total):
        return np.empty(0, dtype=np.int64)
    with np.errstate(over="ignore", invalid="ignore"):
        rows = np.isnan(np.add.reduce(X, axis=1))
    return np.flatnonzero(rows)


class Conditionals:
    """The observed-data log densities and conditional moments of a batch of
    incomplete rows under every component.

    Attributes
    ----------
    logp : ndarray of shape (n, K)
        log w_k + log N(x_o; mu_k,o, Sigma_k,oo).
    xhat : ndarray of shape (n, K, d)
        E[x | x_o, k]: the observed entries, and the conditional means of the
        missing ones.
    cvar : ndarray of shape (n, K, d) or None
        'diag' and 'spherical': the conditional variances (the component's
        variances at the missing entries, 0 elsewhere).
    groups : list of (rows, idx, C)
        'full' and 'tied': for the rows with q missing entries (``rows``
        indexes the batch, ``idx`` (n_q, q) the missing columns), the
        conditional covariances C (n_q, K, q, q) ('tied': (n_q, 1, q, q)).
    """

    def __init__(self, X, params):
        X = np.asarray(X, dtype=np.float64)
        n, d = X.shape
        K = params.n_components
        ct = params.covariance_type
        means = np.asarray(params.means, dtype=np.float64)
        miss = np.isnan(X)
        X0 = np.where(miss, 0.0, X)
        q = miss.sum(axis=1)
        log_norm = params.log_norm()
        self.logp = np.empty((n, K))
        self.xhat = np.empty((n, K, d))
        self.cvar = None
        self.groups = []
        if ct in ("diag", "spherical"):
            var = np.broadcast_to(np.asarray(params.covariances, dtype=np.float64)
                                  .reshape(K, -1), (K, d))
            prec = 1.0 / var
            for k in range(K):
                diff = np.where(miss, 0.0, X0 - means[k])
                maha = (diff * diff) @ prec[k]
                logdet_mm = miss @ np.log(prec[k])
                self.logp[:, k] = (log_norm[k] + 0.5 * q * LOG_2PI - 0.5 * logdet_mm
                                   - 0.5 * maha)
                self.xhat[:, k] = np.where(miss, means[k], X0)
            self.cvar = miss[:, None, :] * var[None]
            return
        lam = params.precisions()
        lam = lam[None] if ct == "tied" else lam
        order = np.argsort(q, kind="stable")
        cuts = np.flatnonzero(np.diff(q[order])) + 1
        for rows in np.split(order, cuts):
            nq = int(q[rows[0]])
            idx = np.nonzero(miss[rows])[1].reshape(rows.size, nq)
            # one factorisation per missing pattern and component, shared by
            # the rows with that pattern
            pats, inv = np.unique(idx, axis=0, return_inverse=True)
            inv = inv.reshape(-1)
            Lmm = lam[:, pats[:, :, None], pats[:, None, :]]  # (K or 1, U, q, q)
            Cu = np.linalg.inv(Lmm)
            Cu = 0.5 * (Cu + np.swapaxes(Cu, -1, -2))
            logdet_mm = np.linalg.slogdet(Lmm)[1]  # (K or 1, U)
            C = Cu[:, inv]  # (K or 1, n, q, q)
            Xg = X0[rows]
            obs = ~miss[rows]
            diff = np.where(obs[None], Xg[None] - means[:, None, :], 0.0)  # (K, n, d)
            Ld = np.matmul(diff, lam)  # (K, n, d): Lambda (x - mu) with x_m = mu_m
            b = np.take_along_axis(Ld, np.broadcast_to(idx, (K,) + idx.shape), axis=2)
            y = -np.einsum("knij,knj->kni", np.broadcast_to(C, (K,) + C.shape[1:]), b)
            # (xhat - mu)^T Lambda (xhat - mu) with y the shift of the missing
            # block: diff.Ld + 2 y.b + y^T Lambda_mm y, and Lambda_mm y = -b
            maha = np.einsum("knd,knd->kn", diff, Ld) + np.einsum("knq,knq->kn", y, b)
            self.logp[rows] = (log_norm[:, None] + 0.5 * nq * LOG_2PI
                               - 0.5 * logdet_mm[:, inv] - 0.5 * maha).T
            xh = np.broadcast_to(Xg, (K,) + Xg.shape).copy()
            np.put_along_axis(xh, np.broadcast_to(idx, (K,) + idx.shape),
                              y + means[:, idx], axis=2)
            self.xhat[rows] = xh.transpose(1, 0, 2)
            self.groups.append((rows, idx, np.ascontiguousarray(C.transpose(1, 0, 2, 3))))


def log_prob(X, params):
    """log w_k + log N(x_o; mu_k,o, Sigma_k,oo) for rows with NaN entries,
    shape (n, K), float64 (in batches of :func:`batch_rows`)."""
    n = X.shape[0]
    out = np.empty((n, params.n_components))
    step = batch_rows(params.n_components, params.n_features)
    for lo in range(0, n, step):
        out[lo:lo + step] = Conditionals(X[lo:lo + step], params).logp
    return out


class MissingAccumulator:
    """Statistics of the incomplete rows of an E-step pass.

    Rows are buffered and handled in batches of exactly :func:`batch_rows`
    rows (the last one shorter), in the order they were added, so the
    result depends on the incomplete rows and their order only, not on how
    the data were chunked.

    Parameters
    ----------
    params : GaussianParams
    ref : ndarray of shape (K, d), float64
        The references of the first and second moments (those of the
        kernel pass the result is merged with).
    ref2 : ndarray of shape (d,), float64
        The reference of the tied scatter.
    """

    def __init__(self, params, ref, ref2):
        self.params = params
        self.ct = params.covariance_type
        K, d = params.means.shape
        self.ref = ref
        self.ref2 = ref2
        self.nk = np.zeros(K)
        self.s1 = np.zeros((K, d))
        self.s2 = SuffStats.zeros(self.ct, ref).s2
        self.loglik = 0.0
        self.weight_sum = 0.0
        self.n_rows = 0
        self.n_bad = 0
        self._step = batch_rows(K, d)
        self._buf = []
        self._buffered = 0
        # full and tied: the Numba kernel (compiled on first use, so only
        # when rows with NaN arrive); its tasks of KERNEL_TASK_ROWS rows are
        # fixed, and every call but the last gets a whole number of tasks
        self._kernel = self.ct in ("full", "tied")
        if self._kernel:
            self._step = KERNEL_TASK_ROWS * KERNEL_TASKS_PER_CALL
            self._acc = np.zeros(2)
            self.s2 = np.zeros((K if self.ct == "full" else 1, d, d))
            self._args = None

    def add(self, X, sample_weight=None):
        """Buffer incomplete rows X (any float dtype) and their weights."""
        if X.shape[0] == 0:
            return
        w = (np.ones(X.shape[0]) if sample_weight is None
             else np.asarray(sample_weight, dtype=np.float64))
        self._buf.append((np.array(X, dtype=np.float64), w))
        self._buffered += X.shape[0]
        while self._buffered >= self._step:
            self._flush(self._step)

    def _flush(self, count):
        X = np.concatenate([b[0] for b in self._buf])
        w = np.concatenate([b[1] for b in self._buf])
        self._buf = [(X[count:], w[count:])] if X.shape[0] > count else []
        self._buffered = X.shape[0] - count
        self._add_batch(X[:count], w[:count])

    def _kernel_args(self):
        if self._args is None:
            p = self.params
            pc = np.asarray(p.precisions_cholesky, dtype=np.float64)
            lam = np.asarray(p.precisions(), dtype=np.float64)
            if self.ct == "tied":
                pc, lam = pc[None], lam[None]
            self._args = (np.ascontiguousarray(p.means, dtype=np.float64),
                          np.ascontiguousarray(np.triu(pc)), np.ascontiguousarray(lam),
                          np.ascontiguousarray(p.log_norm(), dtype=np.float64),
                          np.ascontiguousarray(self.ref, dtype=np.float64),
                          np.ascontiguousarray(self.ref2, dtype=np.float64),
                          int(self.ct == "tied"))
        return self._args

    def _add_batch(self, X, w):
        if self._kernel:
            from . import _kernels

            self.weight_sum += float(w.sum())
            self.n_rows += X.shape[0]
            # rows sorted by missing pattern (stable): the kernel factorises
            # each pattern's block of the precisions once per run of rows
            order = np.argsort(_pattern_keys(np.isnan(X)), kind="stable")
            X, w = X[order], w[order]
            _kernels.pass_missing(np.ascontiguousarray(X), np.ascontiguousarray(w),
                                  *self._kernel_args(), KERNEL_BLOCK, KERNEL_TASK_ROWS,
                                  self.nk, self.s1,
                                  self.s2, self._acc)
            return
        cond = Conditionals(X, self.params)
        lse = logsumexp(cond.logp, axis=1)
        bad = ~np.isfinite(lse)
        with np.errstate(invalid="ignore"):
            r = np.exp(cond.logp - lse[:, None])
        r[bad] = 0.0
        r *= w[:, None]
        self.n_bad += int(bad.sum())
        self.loglik += float(w[~bad] @ lse[~bad])
        self.weight_sum += float(w.sum())
        self.n_rows += X.shape[0]
        self.nk += r.sum(axis=0)
        ct = self.ct
        K, d = self.s1.shape
        diff = cond.xhat - self.ref[None]  # (n, K, d)
        gd = diff * r[:, :, None]
        self.s1 += gd.sum(axis=0)
        if ct == "full":
            self.s2 += np.matmul(gd.transpose(1, 2, 0), diff.transpose(1, 0, 2))
        elif ct == "tied":
            diff2 = (cond.xhat - self.ref2).reshape(-1, d)
            self.s2 += (diff2 * r.reshape(-1, 1)).T @ diff2
        else:
            self.s2 += (gd * diff).sum(axis=0) + np.einsum("nk,nkd->kd", r, cond.cvar)
        for rows, idx, C in cond.groups:
            flat = (idx[:, :, None] * d + idx[:, None, :])[:, None]  # (n, 1, q, q)
            if ct == "full":
                flat = flat + (np.arange(K) * (d * d))[None, :, None, None]
                wc = r[rows][:, :, None, None] * C
                self.s2 += np.bincount(flat.ravel(), weights=wc.ravel(),
                                       minlength=K * d * d).reshape(K, d, d)
            else:
                wc = r[rows].sum(axis=1)[:, None, None, None] * C
                self.s2 += np.bincount(flat.ravel(), weights=wc.ravel(),
                                       minlength=d * d).reshape(d, d)

    def result(self):
        """The statistics as a SuffStats (around ``ref``/``ref2``), and the
        number of rows of zero density under every component."""
        if self._buffered:
            self._flush(self._buffered)
        s2, loglik, n_bad = self.s2.copy(), self.loglik, self.n_bad
        if self._kernel:
            # the kernel fills the upper triangles
            s2 = np.triu(s2) + np.swapaxes(np.triu(s2, 1), -1, -2)
            s2 = s2[0] if self.ct == "tied" else s2
            loglik, n_bad = float(self._acc[0]), int(self._acc[1])
        return (SuffStats(self.ct, self.nk.copy(), self.s1.copy(), s2, self.ref, self.ref2,
                          loglik, self.weight_sum, self.n_rows),
                n_bad)


def impute(X, params, method="mean", random_state=None):
    """Rows of X with their NaN entries filled under the mixture.

    Parameters
    ----------
    X : ndarray of shape (n, d), float, NaN marking missing entries
    params : GaussianParams
    method : {'mean', 'sample'}
        'mean': the conditional mean sum_k p(k | x_o) E[x_m | x_o, k];
        'sample': a draw of x_m from p(x_m | x_o) (a component drawn from
        p(k | x_o), then x_m from that component's conditional Gaussian).
    random_state : numpy.random.RandomState (for 'sample')

    Returns
    -------
    ndarray of shape (n, d), X's dtype
    """
    out = np.array(X, copy=True)
    inc = incomplete_rows(out)
    step = batch_rows(params.n_components, params.n_features)
    for lo in range(0, inc.size, step):
        rows = inc[lo:lo + step]
        cond = Conditionals(out[rows], params)
        post = np.exp(cond.logp - logsumexp(cond.logp, axis=1)[:, None])
        if method == "mean":
            filled = np.einsum("nk,nkd->nd", post, cond.xhat)
        else:
            filled = _draw(cond, post, random_state)
        block = out[rows]
        miss = np.isnan(block)
        block[miss] = filled[miss]
        out[rows] = block
    return out


def _draw(cond, post, rng):
    """One draw per row from p(x_m | x_o) (see :func:`impute`)."""
    n, K, d = cond.xhat.shape
    u = rng.uniform(size=n)
    comp = np.minimum((np.cumsum(post, axis=1) < u[:, None]).sum(axis=1), K - 1)
    rows = np.arange(n)
    filled = cond.xhat[rows, comp].copy()
    if cond.cvar is not None:
        sd = np.sqrt(cond.cvar[rows, comp])
        return filled + sd * rng.standard_normal(size=(n, d))
    for grp_rows, idx, C in cond.groups:
        kk = comp[grp_rows] if C.shape[1] > 1 else np.zeros(grp_rows.size, dtype=np.int64)
        Cg = C[np.arange(grp_rows.size), kk]
        L = np.linalg.cholesky(Cg)
        z = rng.standard_normal(size=idx.shape)
        noise = np.einsum("nij,nj->ni", L, z)
        vals = np.take_along_axis(filled[grp_rows], idx, axis=1) + noise
        sub = filled[grp_rows]
        np.put_along_axis(sub, idx, vals, axis=1)
        filled[grp_rows] = sub
    return filled
