"""Statistics of the initialisation: rows under given responsibilities
(:class:`RespAccumulator`), or each given wholly to its nearest centre
(:func:`add_hard_assignment`, the ``hard_pass`` kernel), and the nearest
centre of each row.  Rows go in the same fixed tasks as the E-step kernels
of :mod:`._estep`.
"""

import numpy as np

from . import _missing
from ._constants import CHUNK_ROWS
from ._estep import (_add_in_tasks, _finish_s2, _own, _row_slices, _weights_arg, _zero_s2,
                     kernels, task_rows)
from ._suffstats import SuffStats
from ._threads import serial_if


class RespAccumulator:
    """Statistics under given responsibilities (initialisation), accumulated
    chunk by chunk.

    Soft responsibilities (:meth:`add`, the 'random' and partition starts)
    are added with NumPy (BLAS products in float64); rows given wholly to one
    component (:meth:`add_hard`, the pass over every row of the 'kmeans'
    start) by the ``hard_pass`` kernel.  Rows are taken in the same fixed
    tasks of :func:`task_rows` rows as the E-step kernels, and each task's
    statistics are added to the float64 accumulators in task order, so
    chunks whose sizes are multiples of the task size give bitwise the result
    of adding all rows at once.

    Parameters
    ----------
    ref : ndarray of shape (K, d), the references of the moments
    covariance_type : str
    dtype : the data's dtype
    ref2 : ndarray of shape (d,), the reference of the tied scatter
    """

    def __init__(self, ref, covariance_type, dtype, ref2=None):
        self.covariance_type = covariance_type
        self.dtype = np.dtype(dtype)
        self.centers = np.ascontiguousarray(ref, dtype=np.float64)
        # the references in the data's precision, as the E-step uses them
        self.ref = _own(ref, self.dtype).astype(np.float64)
        K, d = self.ref.shape
        if ref2 is None:
            ref2 = self.ref.mean(axis=0)
        self.ref2 = _own(ref2, self.dtype).astype(np.float64)
        self.nk = np.zeros(K)
        self.s1 = np.zeros((K, d))
        self.s2 = _zero_s2(covariance_type, K, d)
        self.weight_sum = 0.0
        self.n_rows = 0

    def _tasks(self, n, d):
        size = task_rows(d)
        return _row_slices(n, size)

    def add(self, X, resp, weight_sum=None):
        """Add rows X (n, d) with (weighted) responsibilities resp (n, K);
        ``weight_sum``: the sum of the rows' weights when known (else that of
        resp, equal up to rounding)."""
        n, d = X.shape
        if n == 0:
            return
        resp = np.asarray(resp, dtype=np.float64)
        for lo, hi in self._tasks(n, d):
            x = np.asarray(X[lo:hi], dtype=np.float64)
            r = resp[lo:hi]
            for k in range(self.ref.shape[0]):
                self._add_component(k, x, r[:, k])
            if self.covariance_type == "tied":
                self._add_scatter(x, r.sum(axis=1))
        self.weight_sum += float(resp.sum()) if weight_sum is None else float(weight_sum)
        self.n_rows += n

    def add_hard(self, X, labels=None, sample_weight=None):
        """Add rows X (n, d), each given wholly to one component with its
        weight (1 when ``sample_weight`` is None): ``labels[i]``, or when
        ``labels`` is None the nearest of the centres.

        One pass of the ``hard_pass`` kernel: per task of :func:`task_rows`
        rows, each component's rows in row order, added in task order, so
        chunks of whole tasks give bitwise the result of one call, and unit
        weights bitwise that of weights of ones."""
        n, d = X.shape
        if n == 0:
            return
        K = self.ref.shape[0]
        k = kernels()
        if labels is None:
            labels = np.empty(n, dtype=np.int64)
            given = 0
        else:
            # (a writable copy when needed: the kernel's labels are in/out)
            labels = np.require(labels, np.int64, ["C", "W"])
            # the kernel indexes the accumulators with the labels
            if labels.shape != (n,) or (n and (labels.min() < 0 or labels.max() >= K)):
                raise ValueError(f"labels must be {n} integers in [0, {K})")
            given = 1
        w = _weights_arg(sample_weight)
        ct = self.covariance_type
        s2 = self.s2 if ct in ("full", "tied") else np.zeros((0, d, d))
        sq = self.s2 if ct in ("diag", "spherical") else np.zeros((0, d))
        size = task_rows(d)
        with serial_if(n <= size):
            k.hard_pass(X, w, self.centers, self.ref, self.ref2, labels, given,
                        int(ct == "tied"), size, self.nk, self.s1, s2, sq)
        self.weight_sum = (self.weight_sum + float(n) if sample_weight is None
                           else _add_in_tasks(self.weight_sum, w, size))
        self.n_rows += n

    def _add_component(self, k, x, g):
        """Rows x (float64) with responsibilities g for component k."""
        tot = float(g.sum())
        if tot == 0.0:
            return
        self.nk[k] += tot
        diff = x - self.ref[k]
        gd = diff * g[:, None]
        self.s1[k] += gd.sum(axis=0)
        ct = self.covariance_type
        if ct == "full":
            self.s2[k] += gd.T @ diff
        elif ct in ("diag", "spherical"):
            self.s2[k] += (gd * diff).sum(axis=0)

    def _add_scatter(self, x, wrow):
        """Tied: the total scatter around ref2 weighted by the row weights."""
        diff = x - self.ref2
        self.s2[0] += (diff * wrow[:, None]).T @ diff

    def result(self):
        ct = self.covariance_type
        return SuffStats(ct, self.nk.copy(), self.s1.copy(), _finish_s2(ct, self.s2),
                         self.ref.copy(), self.ref2.copy(), 0.0, self.weight_sum,
                         self.n_rows)


# rows per chunk of nearest_centre: its (rows, d) and (rows, K) buffers stay
# in the cache (65536 rows were measured 20-40% slower than 8192)
NEAREST_ROWS = 8192


def nearest_centre(X, centers, origin, distances=True):
    """Index of each row's nearest centre and its squared distance (None
    when ``distances`` is False).

    Distances are formed as ||x - o||^2 - 2 (x - o).(c - o) + ||c - o||^2 with
    one BLAS product, after moving the origin to ``origin`` (the data's mean):
    data far from zero then lose no precision to cancellation.  Rows are
    handled in bounded chunks (no n_samples x n_components array), in buffers
    reused from chunk to chunk.  The row-wise subtractions run on flat views
    against the origin (or the centres' norms) repeated once per row: NumPy
    broadcasts a (rows, d) - (d,) difference with an inner loop of d
    elements per row, several times slower for small d.  Each element gets
    the same single rounding either way, so the results are those of the
    broadcast formulas.
    """
    n, d = X.shape
    C = np.asarray(centers, dtype=np.float64) - origin
    K = C.shape[0]
    cc = np.einsum("ij,ij->i", C, C)
    m2ct = -2.0 * C.T
    labels = np.empty(n, dtype=np.int64)
    dist = np.empty(n) if distances else None
    rows = max(1, min(n, NEAREST_ROWS))
    xbuf = np.empty((rows, d))
    dbuf = np.empty((rows, K))
    o_rep = np.tile(np.asarray(origin, dtype=np.float64), rows)
    cc_rep = np.tile(cc, rows)
    for lo in range(0, n, rows):
        hi = min(n, lo + rows)
        m = hi - lo
        x = xbuf[:m]
        np.subtract(np.asarray(X[lo:hi], dtype=np.float64).reshape(-1), o_rep[:m * d],
                    out=x.reshape(-1))
        D = dbuf[:m]
        np.matmul(x, m2ct, out=D)
        Dflat = D.reshape(-1)
        Dflat += cc_rep[:m * K]
        lab = labels[lo:hi]
        np.argmin(D, axis=1, out=lab)
        if distances:
            best = D[np.arange(m), lab] + np.einsum("ij,ij->i", x, x)
            np.maximum(best, 0.0, out=dist[lo:hi])
    return labels, dist


def hard_assignment_accumulator(centers, covariance_type, dtype):
    """A :class:`RespAccumulator` for rows given wholly to their nearest
    centre (see :func:`add_hard_assignment`)."""
    centers = np.asarray(centers, dtype=np.float64)
    return RespAccumulator(centers, covariance_type, dtype, centers.mean(axis=0))


def add_hard_assignment(acc, X, sample_weight=None):
    """Add rows X, each given wholly to the nearest of ``acc``'s centres.

    A row with NaN entries (missing values) goes to the centre nearest in
    its observed coordinates, and counts with its missing entries set to
    that centre's: the start of EM, which then marginalises them."""
    inc = _missing.incomplete_rows(X)
    if inc.size:
        X = np.array(X, dtype=np.float64)
        labels, _ = nearest_centre(np.where(np.isnan(X), 0.0, X), acc.centers,
                                   acc.centers.mean(axis=0), distances=False)
        labels[inc] = nearest_observed_centre(X[inc], acc.centers)
        miss = np.isnan(X)
        X[miss] = acc.centers[labels][miss]
        # in the data's dtype again: the kernel variant every other chunk uses
        acc.add_hard(X.astype(acc.dtype, copy=False), labels, sample_weight)
        return
    acc.add_hard(X, None, sample_weight)


def nearest_observed_centre(X, centers):
    """Index of the centre nearest to each row of X in the row's observed
    (non-NaN) coordinates."""
    X = np.asarray(X, dtype=np.float64)
    C = np.asarray(centers, dtype=np.float64)
    labels = np.empty(X.shape[0], dtype=np.int64)
    for lo in range(0, X.shape[0], CHUNK_ROWS):
        x = X[lo:lo + CHUNK_ROWS]
        obs = ~np.isnan(x)
        dist = np.stack([np.sum(np.where(obs, x - c, 0.0) ** 2, axis=1) for c in C], axis=1)
        labels[lo:lo + CHUNK_ROWS] = dist.argmin(axis=1)
    return labels


def stats_from_resp(X, resp, ref, covariance_type, ref2=None):
    """Statistics of X under given (weighted) responsibilities (initialisation).

    resp : ndarray of shape (n_samples, K), float64, rows sum to the row weight.
    ref : ndarray of shape (K, d), the references of the moments.
    """
    acc = RespAccumulator(ref, covariance_type, X.dtype, ref2)
    acc.add(X, resp)
    return acc.result()
