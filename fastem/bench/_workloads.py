"""The reference workloads of fastem.bench: shapes, generated data, the flop model."""

import math
import sys

import numpy as np

#: tag -> (n_samples, n_features, n_components, covariance_type)
WORKLOADS = {
    "S": (1_000_000, 2, 8, "full"),
    "M": (1_000_000, 16, 16, "full"),
    "L": (200_000, 64, 32, "full"),
    "D": (1_000_000, 16, 16, "diag"),
    "T": (1_000_000, 16, 16, "tied"),
    "P": (1_000_000, 16, 16, "spherical"),
}
LIBRARIES = ("fastem", "sklearn")
INIT_SUBSAMPLE = 20_000
INIT_ITERS = 3


def workload_shape(tag, scale=1.0):
    """(n_samples, n_features, n_components, covariance_type) of a workload."""
    try:
        n, d, K, ct = WORKLOADS[tag]
    except KeyError:
        raise ValueError(f"Unknown workload {tag!r}; expected one of "
                         f"{', '.join(WORKLOADS)}") from None
    if not (scale > 0 and math.isfinite(scale)):
        raise ValueError(f"Expected scale > 0, got scale={scale!r}")
    n = max(int(round(n * scale)), 20 * K)
    return n, d, K, ct


def make_blobs(n_samples, n_features, n_components, dtype="float64", seed=0):
    """Deterministic, well separated Gaussian blobs.

    Returns ``(X, truth)``: X of shape (n_samples, n_features) in ``dtype``
    (C-contiguous, rows in random component order) and a dict with the
    generating ``weights``, ``means`` and ``covariances`` (full).
    """
    rng = np.random.default_rng(seed)
    K, d = n_components, n_features
    weights = rng.uniform(0.5, 1.5, K)
    weights /= weights.sum()
    spread = 5.0 * K ** (1.0 / d) + 5.0
    means = rng.uniform(-spread, spread, (K, d))
    A = rng.standard_normal((K, d, d)) / np.sqrt(d)
    covs = 0.5 * A @ A.transpose(0, 2, 1) + 0.5 * np.eye(d)
    labels = rng.choice(K, size=n_samples, p=weights)
    X = rng.standard_normal((n_samples, d))
    for k in range(K):
        idx = np.flatnonzero(labels == k)
        L = np.linalg.cholesky(covs[k])
        X[idx] = X[idx] @ L.T + means[k]
    X = np.ascontiguousarray(X, dtype=dtype)
    return X, {"weights": weights, "means": means, "covariances": covs}


def em_flops(n_samples, n_features, n_components, covariance_type):
    """Useful floating-point operations of one EM iteration (model).

    - full: ``n*K*d*(d+1)`` for the triangular solves (d(d+1)/2 multiply-adds
      per point and component) plus ``n*K*d*(d+1)`` for the symmetric rank-1
      updates of the second moments;
    - tied: ``n*K*d*(d+1)`` (solves) plus ``n*d*(d+1)`` (one common scatter);
    - diag and spherical: ``n*K*6*d`` (scaled difference, square, accumulate
      in the E-step; first and second moments in the M-step statistics).
    """
    n, d, K = int(n_samples), int(n_features), int(n_components)
    if covariance_type == "full":
        return n * K * d * (d + 1) + n * K * d * (d + 1)
    if covariance_type == "tied":
        return n * K * d * (d + 1) + n * d * (d + 1)
    if covariance_type in ("diag", "spherical"):
        return n * K * 6 * d
    raise ValueError(f"Unknown covariance_type {covariance_type!r}; expected one of "
                     "'full', 'tied', 'diag', 'spherical'")


def _describe(tag, scale, dtype):
    n, d, K, ct = workload_shape(tag, scale)
    return {"workload": tag, "scale": scale, "dtype": np.dtype(dtype).name,
            "n_samples": n, "n_features": d, "n_components": K, "covariance_type": ct}


def _progress(msg, verbose):
    if verbose:
        print(msg, file=sys.stderr, flush=True)
