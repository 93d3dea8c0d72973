"""Initialisation of the mixture parameters: k-means, k-means++, random,
k-means on standardised data, hierarchical agglomeration.

The 'kmeans' initialisation runs k-means++ seeding and Lloyd iterations on a
bounded random subsample of the rows, then assigns every row to its nearest
centre in one pass, so that initialising costs less than an EM iteration even
for millions of rows.  The k-means on the subsample is written with NumPy
(BLAS products on bounded chunks); the pass over every row is a kernel
(:func:`fastem._kernels.hard_pass`), which a first fit compiles in a child
process while the E-step kernel compiles in another.  Each method returns the
sufficient statistics of the data under the initial responsibilities; the
caller runs the M-step.
"""

import math

import numpy as np

from . import _estep, _initstats
from ._constants import CHUNK_ROWS
from ._validation import check_enough_rows

# Rows of the subsample that k-means runs on: enough for stable centres,
# bounded so that initialisation never dominates a fit.
KMEANS_SAMPLE_MIN = 20_000
KMEANS_SAMPLE_PER_COMPONENT = 500
KMEANS_MAX_ITER = 100
KMEANS_TOL = 1e-4
# Rows that the hierarchical agglomeration runs on: its cost is quadratic in
# them (memory and time), so it stays a few milliseconds on any data.
HIERARCHICAL_SAMPLE = 2_000


def subsample_size(n_samples, n_components):
    return min(n_samples, max(KMEANS_SAMPLE_MIN, KMEANS_SAMPLE_PER_COMPONENT * n_components))


def kmeans_plusplus(S, n_clusters, random_state, weights=None):
    """Greedy k-means++ seeding on the rows of S; returns row indices.

    At each step ``2 + floor(log K)`` candidates are drawn in proportion to
    the (weighted) squared distance to the closest centre so far, and the one
    that lowers the potential most is kept.
    """
    m = S.shape[0]
    if weights is not None and np.all(weights == weights[0]):
        weights = None  # equal weights draw exactly as no weights
    w = np.ones(m) if weights is None else weights
    n_trials = 2 + int(math.log(n_clusters))
    first = random_state.choice(m, p=w / w.sum()) if weights is not None else (
        random_state.randint(m))
    idx = [int(first)]
    diff = S - S[first]
    # squared distances by einsum: 40% less time than np.sum(diff ** 2, axis=-1)
    closest = np.einsum("ij,ij->i", diff, diff)
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
        diff = S[cand][:, None, :] - S[None, :, :]
        d = np.einsum("cij,cij->ci", diff, diff)
        np.minimum(closest, d, out=d)
        pots = d @ w
        best = int(np.argmin(pots))
        idx.append(int(cand[best]))
        closest = d[best]
        pot = float(pots[best])
    return np.asarray(idx, dtype=np.int64)


def lloyd(S, centers, max_iter=KMEANS_MAX_ITER, tol=KMEANS_TOL, weights=None):
    """(Weighted) Lloyd iterations on the subsample S (float64); returns the
    centres.

    Written with NumPy: the subsample is bounded (:func:`subsample_size`), so
    this costs milliseconds and no kernel compilation on a first fit.
    """
    m, d = S.shape
    K = centers.shape[0]
    w = np.ones(m) if weights is None else np.ascontiguousarray(weights, dtype=np.float64)
    centers = np.array(centers, dtype=np.float64)
    origin = S.mean(axis=0)
    scale = tol * float(np.mean(np.var(S, axis=0))) if m > 1 else 0.0
    for _ in range(max_iter):
        labels, dist = _initstats.nearest_centre(S, centers, origin)
        counts = np.bincount(labels, weights=w, minlength=K)
        new = centers.copy()
        filled = counts > 0
        for i in range(d):
            sums = np.bincount(labels, weights=w * S[:, i], minlength=K)
            new[filled, i] = sums[filled] / counts[filled]
        empty = np.flatnonzero(~filled)
        if empty.size:
            # move empty clusters to the rows farthest from their centre
            far = np.argsort(dist)[::-1][: empty.size]
            new[empty] = S[far]
        shift = float(np.sum((new - centers) ** 2))
        centers = new
        if shift <= scale:
            break
    return centers


def initial_stats(data, n_components, covariance_type, init_params, random_state):
    """Sufficient statistics under the initial responsibilities.

    Parameters
    ----------
    data : fastem._data.RowData
        The rows (in memory or streamed) and their sample weights.
    init_params : {'kmeans', 'k-means++', 'random', 'random_from_data'}
    random_state : numpy.random.RandomState

    Returns
    -------
    SuffStats
    """
    K = n_components
    ct = covariance_type
    if init_params == "random":
        return _random_resp_stats(data, K, ct, random_state)
    # a source of unknown length (CSV, iterables) is sampled as one of
    # unbounded length: all its rows when it has fewer than the sample size,
    # so that too few rows are reported with their true count
    n = data.n_samples if data.n_samples is not None else np.iinfo(np.int64).max
    size = subsample_size(n, K)
    S, Sw = data.sample(size, random_state)
    check_enough_rows(S.shape[0], K)
    if data.missing:
        S, Sw = complete_or_imputed(S, Sw, K)
    if init_params == "kmeans":
        if data.kernels_here:
            # a first fit compiles the hard-assignment kernel and the E-step
            # kernel at once, in two child processes, while k-means runs
            _estep.start_compiling(ct, data.dtype, data.n_features, hard_pass=True)
        seeds = kmeans_plusplus(S, K, random_state, Sw)
        centers = lloyd(S, S[seeds], weights=Sw)
        return data.hard_assignment_stats(centers, ct)
    if init_params == "kmeans_standardized":
        return _partition_stats(S, Sw, _standardized_kmeans(S, Sw, K, random_state), K, ct,
                                data.dtype)
    if init_params == "hierarchical":
        if S.shape[0] > HIERARCHICAL_SAMPLE:
            keep = np.sort(random_state.choice(S.shape[0], HIERARCHICAL_SAMPLE,
                                               replace=False))
            S, Sw = S[keep], None if Sw is None else Sw[keep]
        check_enough_rows(S.shape[0], K)
        return _partition_stats(S, Sw, _ward_labels(S, K), K, ct, data.dtype)
    if init_params == "k-means++":
        idx = kmeans_plusplus(S, K, random_state, Sw)
    elif init_params == "random_from_data":
        if Sw is None or np.all(Sw == Sw[0]):
            idx = random_state.choice(S.shape[0], size=K, replace=False)
        else:
            pos = np.flatnonzero(Sw > 0)
            if pos.size < K:
                raise ValueError(
                    "init_params='random_from_data' needs at least n_components "
                    f"rows of positive weight, got {pos.size} for n_components={K}")
            idx = pos[random_state.choice(pos.size, size=K, replace=False,
                                          p=Sw[pos] / Sw[pos].sum())]
    else:
        raise ValueError(f"Unknown init_params {init_params!r}")
    rows = np.ascontiguousarray(S[idx], dtype=data.dtype)
    resp = np.eye(K)
    if data.sample_weight is not None:
        # one row per component; its weight is the row's weight when known,
        # else (rows drawn in proportion to the weights) the mean weight
        wk = Sw[idx] if Sw is not None else np.full(K, data.sample_weight.mean())
        resp *= wk[:, None]
    return _initstats.stats_from_resp(rows, resp, rows, ct)


def _standardize(S, weights=None):
    """S centred and divided by each column's standard deviation (columns
    that do not vary are only centred)."""
    mean = np.average(S, axis=0, weights=weights)
    sd = np.sqrt(np.average((S - mean) ** 2, axis=0, weights=weights))
    sd[~(sd > 0)] = 1.0
    return (S - mean) / sd


def _standardized_kmeans(S, Sw, K, random_state):
    """Labels of k-means (k-means++ seeding, Lloyd) on the standardised sample.

    With every column on the same scale, a column measured in large units
    (waiting minutes, 40-100) no longer outweighs one in small units
    (eruption minutes, 2-5) in the distances.
    """
    Z = _standardize(S, Sw)
    seeds = kmeans_plusplus(Z, K, random_state, Sw)
    centers = lloyd(Z, Z[seeds], weights=Sw)
    labels, _ = _initstats.nearest_centre(Z, centers, np.zeros(Z.shape[1]), distances=False)
    return labels


def _ward_labels(S, K):
    """Labels of Ward's agglomeration of the whitened rows, cut at K groups.

    Ward's merge cost is the increase of the classification likelihood of a
    mixture with equal spherical covariances (the model-based agglomeration
    of the 'EII' model); on whitened rows (centred, rotated onto the principal
    axes and scaled to unit variance each, the rows' 'SVD' transformation)
    it does not depend on the units of the columns.  It is deterministic.
    """
    from scipy.cluster.hierarchy import fcluster, linkage

    Z = S - S.mean(axis=0)
    _, sv, vt = np.linalg.svd(Z, full_matrices=False)
    keep = sv > sv[0] * 1e-12 if sv.size else sv > 0
    Z = Z @ vt[keep].T / (sv[keep] / np.sqrt(S.shape[0]))
    if K == 1:
        return np.zeros(S.shape[0], dtype=np.int64)
    tree = linkage(Z, method="ward")
    labels = fcluster(tree, K, criterion="maxclust") - 1
    n_groups = int(labels.max()) + 1
    if n_groups < K:
        raise ValueError(
            f"init_params='hierarchical' found only {n_groups} distinct groups of rows "
            f"for n_components={K}: the data have fewer than n_components distinct "
            "rows; use fewer components")
    return labels.astype(np.int64)


def _partition_stats(S, Sw, labels, K, ct, dtype):
    """Statistics of the sample S with every row given wholly to its group."""
    S = np.ascontiguousarray(S, dtype=dtype)
    resp = np.zeros((S.shape[0], K))
    resp[np.arange(S.shape[0]), labels] = 1.0 if Sw is None else Sw
    ref = S.mean(axis=0)
    refs = np.repeat(ref[None], K, axis=0)
    return _initstats.stats_from_resp(S, resp, refs, ct, ref)


#: With missing values, k-means (and the other starts drawn from the
#: initialisation sample) use the sample's complete rows when there are at
#: least this many per component; otherwise the whole sample with each
#: missing entry replaced by its column's mean over the sample.
MIN_COMPLETE_PER_COMPONENT = 20


def complete_or_imputed(S, Sw, K):
    """The initialisation sample without missing entries (see
    :data:`MIN_COMPLETE_PER_COMPONENT`), and its weights."""
    miss = np.isnan(S)
    if not miss.any():
        return S, Sw
    complete = ~miss.any(axis=1)
    if complete.sum() >= max(MIN_COMPLETE_PER_COMPONENT * K, K):
        return S[complete], None if Sw is None else Sw[complete]
    means = np.nanmean(S, axis=0)
    # a column with no observed value in the sample: 0 (its mean is unknown)
    means = np.where(np.isnan(means), 0.0, means)
    return np.where(miss, means, S), Sw


def _random_resp_stats(data, K, ct, random_state):
    """Uniform random responsibilities, drawn row by row in order: the same
    numbers scikit-learn draws with ``uniform(size=(n_samples, K))``."""
    ref = _weighted_mean(data)
    refs = np.repeat(ref[None], K, axis=0)
    acc = _initstats.RespAccumulator(refs, ct, data.dtype, ref)
    for lo, block, w in data.iter_chunks():
        for a in range(0, block.shape[0], CHUNK_ROWS):
            b = min(block.shape[0], a + CHUNK_ROWS)
            resp = random_state.uniform(size=(b - a, K))
            resp /= resp.sum(axis=1)[:, None]
            if w is not None:
                resp *= w[a:b, None]
            rows = block[a:b]
            if data.missing and np.isnan(rows).any():
                # missing entries start at the data's (observed) mean
                rows = np.where(np.isnan(rows), ref, rows)
            acc.add(rows, resp, weight_sum=b - a if w is None else np.sum(w[a:b]))
    return acc.result()


def _weighted_mean(data):
    """The (weighted) column means; with missing values, of the observed
    entries of each column."""
    if data.missing:
        return _weighted_observed_mean(data)
    acc = np.zeros(data.n_features)
    tot = 0.0
    for lo, block, w in data.iter_chunks():
        if w is None:
            acc += block.sum(axis=0, dtype=np.float64)
            tot += block.shape[0]
        else:
            acc += w @ block.astype(np.float64)
            tot += w.sum()
    return acc / tot


def _weighted_observed_mean(data):
    acc = np.zeros(data.n_features)
    tot = np.zeros(data.n_features)
    for lo, block, w in data.iter_chunks():
        obs = ~np.isnan(block)
        vals = np.where(obs, block, 0.0)
        ww = np.ones(block.shape[0]) if w is None else w
        acc += ww @ vals
        tot += ww @ obs
    return np.where(tot > 0, acc / np.where(tot > 0, tot, 1.0), 0.0)
