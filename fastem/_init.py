"""Initialisation of the mixture parameters: k-means, k-means++, random.

The 'kmeans' initialisation runs k-means++ seeding and Lloyd iterations on a
bounded random subsample of the rows (Numba kernels for the assignment and
the update), then assigns every row to its nearest centre in one pass, so that
initialising costs about as much as one or two EM iterations even for
millions of rows.  Each method returns the sufficient statistics of the data
under the initial responsibilities; the caller runs the M-step.
"""

import math

import numpy as np

from . import _estep

# Rows of the subsample that k-means runs on: enough for stable centres,
# bounded so that initialisation never dominates a fit.
KMEANS_SAMPLE_MIN = 20_000
KMEANS_SAMPLE_PER_COMPONENT = 500
KMEANS_MAX_ITER = 100
KMEANS_TOL = 1e-4
RESP_CHUNK = 65_536


def _row_slices(n, size):
    for start in range(0, n, size):
        yield start, min(n, start + size)


def subsample_size(n_samples, n_components):
    return min(n_samples, max(KMEANS_SAMPLE_MIN, KMEANS_SAMPLE_PER_COMPONENT * n_components))


def draw_subsample(X, sample_weight, size, random_state):
    """Rows for k-means: uniform without replacement; with sample weights,
    drawn with replacement in proportion to the weights."""
    n = X.shape[0]
    if sample_weight is None:
        if size >= n:
            return np.asarray(X, dtype=np.float64)
        idx = np.sort(random_state.choice(n, size, replace=False))
    else:
        p = sample_weight / sample_weight.sum()
        idx = np.sort(random_state.choice(n, size, replace=True, p=p))
    return np.ascontiguousarray(X[idx], dtype=np.float64)


def kmeans_plusplus(S, n_clusters, random_state, weights=None):
    """Greedy k-means++ seeding on the rows of S; returns row indices.

    At each step ``2 + floor(log K)`` candidates are drawn in proportion to
    the (weighted) squared distance to the closest centre so far, and the one
    that lowers the potential most is kept.
    """
    m = S.shape[0]
    w = np.ones(m) if weights is None else weights
    n_trials = 2 + int(math.log(n_clusters))
    first = random_state.choice(m, p=w / w.sum()) if weights is not None else (
        random_state.randint(m))
    idx = [int(first)]
    closest = np.sum((S - S[first]) ** 2, axis=1)
    pot = float(w @ closest)
    for _ in range(1, n_clusters):
        if pot <= 0:
            # every remaining row coincides with a centre: take any others
            rest = np.setdiff1d(np.arange(m), idx)
            idx.append(int(random_state.choice(rest)))
            continue
        r = random_state.uniform(size=n_trials) * pot
        cand = np.searchsorted(np.cumsum(w * closest), r)
        cand = np.minimum(cand, m - 1)
        d = np.sum((S[cand][:, None, :] - S[None, :, :]) ** 2, axis=2)
        np.minimum(closest, d, out=d)
        pots = d @ w
        best = int(np.argmin(pots))
        idx.append(int(cand[best]))
        closest = d[best]
        pot = float(pots[best])
    return np.asarray(idx, dtype=np.int64)


def lloyd(S, centers, max_iter=KMEANS_MAX_ITER, tol=KMEANS_TOL):
    """Lloyd iterations on the subsample S (float64); returns the centres."""
    k = _estep.kernels()
    m, d = S.shape
    K = centers.shape[0]
    labels = np.empty(m, dtype=np.int64)
    dist = np.empty(m)
    counts = np.empty(K)
    ones = np.ones(m)
    centers = np.ascontiguousarray(centers, dtype=np.float64)
    scale = tol * float(np.mean(np.var(S, axis=0))) if m > 1 else 0.0
    block = _estep.block_size(d)
    for _ in range(max_iter):
        k.kmeans_assign(S, centers, block, labels, dist)
        new = centers.copy()
        k.kmeans_update(S, labels, ones, K, new, counts)
        empty = np.flatnonzero(counts == 0)
        if empty.size:
            # move empty clusters to the rows farthest from their centre
            far = np.argsort(dist)[::-1][: empty.size]
            new[empty] = S[far]
        shift = float(np.sum((new - centers) ** 2))
        centers = new
        if shift <= scale:
            break
    return centers


def initial_stats(X, n_components, covariance_type, init_params, sample_weight,
                  random_state):
    """Sufficient statistics under the initial responsibilities.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), validated
    init_params : {'kmeans', 'k-means++', 'random', 'random_from_data'}
    sample_weight : ndarray of shape (n_samples,) or None
    random_state : numpy.random.RandomState

    Returns
    -------
    SuffStats
    """
    n, d = X.shape
    K = n_components
    if init_params == "kmeans":
        S = draw_subsample(X, sample_weight, subsample_size(n, K), random_state)
        seeds = kmeans_plusplus(S, K, random_state)
        centers = lloyd(S, S[seeds])
        return _hard_assignment_stats(X, centers, covariance_type, sample_weight)
    if init_params in ("k-means++", "random_from_data"):
        if init_params == "k-means++":
            S_idx = _subsample_indices(n, subsample_size(n, K), random_state,
                                       sample_weight)
            S = np.ascontiguousarray(X[S_idx], dtype=np.float64)
            w = None if sample_weight is None else sample_weight[S_idx]
            idx = S_idx[kmeans_plusplus(S, K, random_state, w)]
        else:
            if sample_weight is None:
                idx = random_state.choice(n, size=K, replace=False)
            else:
                pos = np.flatnonzero(sample_weight > 0)
                if pos.size < K:
                    raise ValueError(
                        "init_params='random_from_data' needs at least n_components "
                        f"rows of positive weight, got {pos.size} for "
                        f"n_components={K}")
                p = sample_weight[pos] / sample_weight[pos].sum()
                idx = pos[random_state.choice(pos.size, size=K, replace=False, p=p)]
        rows = np.ascontiguousarray(X[idx])
        resp = np.eye(K)
        if sample_weight is not None:
            resp *= sample_weight[idx][:, None]
        return _estep.stats_from_resp(rows, resp, rows, covariance_type)
    if init_params == "random":
        ref = _weighted_mean(X, sample_weight)
        refs = np.repeat(ref[None], K, axis=0)
        total = None
        for lo, hi in _row_slices(n, RESP_CHUNK):
            resp = random_state.uniform(size=(hi - lo, K))
            resp /= resp.sum(axis=1)[:, None]
            if sample_weight is not None:
                resp *= sample_weight[lo:hi, None]
            st = _estep.stats_from_resp(X[lo:hi], resp, refs, covariance_type, ref)
            total = st if total is None else total.merge(st)
        return total
    raise ValueError(f"Unknown init_params {init_params!r}")


def _subsample_indices(n, size, random_state, sample_weight):
    if size >= n:
        return np.arange(n)
    if sample_weight is None:
        return np.sort(random_state.choice(n, size, replace=False))
    pos = np.flatnonzero(sample_weight > 0)
    if pos.size <= size:
        return pos
    p = sample_weight[pos] / sample_weight[pos].sum()
    return np.sort(pos[random_state.choice(pos.size, size, replace=False, p=p)])


def _weighted_mean(X, sample_weight):
    n = X.shape[0]
    acc = np.zeros(X.shape[1])
    for lo, hi in _row_slices(n, RESP_CHUNK):
        if sample_weight is None:
            acc += X[lo:hi].sum(axis=0, dtype=np.float64)
        else:
            acc += sample_weight[lo:hi] @ X[lo:hi].astype(np.float64)
    tot = n if sample_weight is None else sample_weight.sum()
    return acc / tot


def _hard_assignment_stats(X, centers, covariance_type, sample_weight):
    """Statistics of X with each row given wholly to its nearest centre."""
    k = _estep.kernels()
    n, d = X.shape
    K = centers.shape[0]
    block = _estep.block_size(d)
    total = None
    for lo, hi in _row_slices(n, RESP_CHUNK):
        chunk = X[lo:hi]
        labels = np.empty(hi - lo, dtype=np.int64)
        dist = np.empty(hi - lo)
        k.kmeans_assign(chunk, centers, block, labels, dist)
        resp = np.zeros((hi - lo, K))
        resp[np.arange(hi - lo), labels] = (
            1.0 if sample_weight is None else sample_weight[lo:hi])
        st = _estep.stats_from_resp(chunk, resp, centers, covariance_type,
                                    centers.mean(axis=0))
        total = st if total is None else total.merge(st)
    return total
