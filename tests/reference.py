"""Slow, obviously-correct NumPy/SciPy implementations that fastem is tested against.

Everything here works on float64 copies of the data, loops over components,
and uses two-pass (centred) formulas.  Parameters follow scikit-learn's
layout: ``precisions_cholesky`` is the upper-triangular P with
P P^T = Sigma^-1 ('full': (K, d, d), 'tied': (d, d)), or 1/sqrt(variance)
('diag': (K, d), 'spherical': (K,)).

Nothing in this module imports fastem.
"""

import numpy as np
from scipy import linalg
from scipy.special import logsumexp

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
EPS10 = 10 * np.finfo(np.float64).eps


# ---------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------


def precision_cholesky(covariances, covariance_type):
    """scikit-learn's precision Cholesky factors from covariances."""
    if covariance_type in ("diag", "spherical"):
        return 1.0 / np.sqrt(np.asarray(covariances, dtype=np.float64))
    covs = covariances[None] if covariance_type == "tied" else covariances
    d = covs.shape[-1]
    out = np.empty(covs.shape)
    for k in range(covs.shape[0]):
        L = linalg.cholesky(covs[k], lower=True)
        out[k] = linalg.solve_triangular(L, np.eye(d), lower=True).T
    return out[0] if covariance_type == "tied" else out


def full_covariances(covariances, covariance_type, n_components, n_features):
    """Covariances of every component as (K, d, d) matrices."""
    K, d = n_components, n_features
    c = np.asarray(covariances, dtype=np.float64)
    if covariance_type == "full":
        return c.copy()
    if covariance_type == "tied":
        return np.repeat(c[None], K, axis=0)
    if covariance_type == "diag":
        return np.stack([np.diag(c[k]) for k in range(K)])
    return np.stack([c[k] * np.eye(d) for k in range(K)])


def covariances_from_precisions_cholesky(pc, covariance_type):
    """Invert scikit-learn's precision Cholesky factors."""
    if covariance_type in ("diag", "spherical"):
        return 1.0 / np.asarray(pc, dtype=np.float64) ** 2
    mats = pc[None] if covariance_type == "tied" else pc
    out = np.stack([np.linalg.inv(P @ P.T) for P in mats])
    return out[0] if covariance_type == "tied" else out


def random_params(covariance_type, n_components, n_features, rng, scale=1.0,
                  offset=0.0):
    """Random, well-conditioned mixture parameters as a dict."""
    K, d = n_components, n_features
    weights = rng.dirichlet(np.full(K, 3.0))
    means = offset + scale * rng.normal(size=(K, d)) * 3
    if covariance_type == "full":
        A = rng.normal(size=(K, d, d))
        cov = np.einsum("kij,klj->kil", A, A) / d + 0.5 * np.eye(d)
    elif covariance_type == "tied":
        A = rng.normal(size=(d, d))
        cov = A @ A.T / d + 0.5 * np.eye(d)
    elif covariance_type == "diag":
        cov = rng.uniform(0.3, 2.0, size=(K, d))
    else:
        cov = rng.uniform(0.3, 2.0, size=K)
    cov = cov * scale**2
    return {
        "covariance_type": covariance_type,
        "weights": weights,
        "means": means,
        "covariances": cov,
        "precisions_cholesky": precision_cholesky(cov, covariance_type),
    }


# ---------------------------------------------------------------------------
# E-step
# ---------------------------------------------------------------------------


def log_densities(X, means, precisions_cholesky, covariance_type):
    """log N(x_n | mu_k, Sigma_k) for every row and component, shape (n, K).

    Computed one component at a time from the precision Cholesky factor:
    log N = sum log diag(P) - d/2 log(2 pi) - 1/2 ||(x - mu) P||^2.
    """
    X = np.asarray(X, dtype=np.float64)
    means = np.asarray(means, dtype=np.float64)
    pc = np.asarray(precisions_cholesky, dtype=np.float64)
    n, d = X.shape
    K = means.shape[0]
    out = np.empty((n, K))
    for k in range(K):
        diff = X - means[k]
        if covariance_type == "full":
            P = pc[k]
            y = diff @ P
            logdet = np.sum(np.log(np.diag(P)))
        elif covariance_type == "tied":
            y = diff @ pc
            logdet = np.sum(np.log(np.diag(pc)))
        elif covariance_type == "diag":
            y = diff * pc[k]
            logdet = np.sum(np.log(pc[k]))
        else:
            y = diff * pc[k]
            logdet = d * np.log(pc[k])
        out[:, k] = logdet - 0.5 * d * np.log(2 * np.pi) - 0.5 * np.sum(y * y, axis=1)
    return out


def e_step(X, params, sample_weight=None):
    """Weighted E-step.

    Returns
    -------
    resp : (n, K) responsibilities (rows sum to 1, unweighted)
    mean_loglik : sum_n w_n log p(x_n) / sum_n w_n
    """
    lp = log_densities(X, params["means"], params["precisions_cholesky"],
                       params["covariance_type"])
    with np.errstate(divide="ignore"):
        wlp = lp + np.log(params["weights"])
    lse = logsumexp(wlp, axis=1)
    resp = np.exp(wlp - lse[:, None])
    w = np.ones(X.shape[0]) if sample_weight is None else np.asarray(sample_weight, float)
    return resp, float(np.sum(w * lse) / np.sum(w))


# ---------------------------------------------------------------------------
# Statistics and M-step
# ---------------------------------------------------------------------------


def stats(X, resp_w, ref, covariance_type, ref2=None, sample_weight=None):
    """Moments around references, the layout of fastem's SuffStats.

    resp_w : (n, K) weighted responsibilities (rows sum to the row weight).
    Returns nk (K,), s1 (K, d) around ref, s2: (K, d, d) around ref ('full'),
    (d, d) total weighted scatter around ref2 ('tied'), (K, d) diagonal
    second moments around ref ('diag', 'spherical').
    """
    X = np.asarray(X, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    n, d = X.shape
    K = ref.shape[0]
    nk = resp_w.sum(axis=0)
    s1 = np.empty((K, d))
    for k in range(K):
        s1[k] = resp_w[:, k] @ (X - ref[k])
    if covariance_type == "full":
        s2 = np.empty((K, d, d))
        for k in range(K):
            diff = X - ref[k]
            s2[k] = (resp_w[:, k, None] * diff).T @ diff
    elif covariance_type == "tied":
        w = resp_w.sum(axis=1) if sample_weight is None else np.asarray(sample_weight)
        diff = X - np.asarray(ref2, dtype=np.float64)
        s2 = (w[:, None] * diff).T @ diff
    else:
        s2 = np.empty((K, d))
        for k in range(K):
            s2[k] = resp_w[:, k] @ (X - ref[k]) ** 2
    return nk, s1, s2


def s2_statistic(s2, covariance_type):
    """What of an s2 layout is a statistic: all of it, except for
    'spherical', where only the sums over the features are (fastem's
    spherical kernel puts each component's whole sum in column 0)."""
    s2 = np.asarray(s2, dtype=np.float64)
    return s2.sum(axis=1) if covariance_type == "spherical" else s2


def m_step(X, resp_w, reg_covar, covariance_type):
    """Two-pass centred M-step with scikit-learn's conventions.

    nk + 10 eps in every denominator, reg_covar on the diagonal, weights
    normalised.  resp_w are weighted responsibilities.
    """
    X = np.asarray(X, dtype=np.float64)
    n, d = X.shape
    K = resp_w.shape[1]
    nk = resp_w.sum(axis=0) + EPS10
    means = (resp_w.T @ X) / nk[:, None]
    if covariance_type == "full":
        cov = np.empty((K, d, d))
        for k in range(K):
            diff = X - means[k]
            cov[k] = (resp_w[:, k, None] * diff).T @ diff / nk[k]
            cov[k].flat[:: d + 1] += reg_covar
    elif covariance_type == "tied":
        cov = np.zeros((d, d))
        for k in range(K):
            diff = X - means[k]
            cov += (resp_w[:, k, None] * diff).T @ diff
        cov /= nk.sum()
        cov.flat[:: d + 1] += reg_covar
    else:
        var = np.empty((K, d))
        for k in range(K):
            var[k] = resp_w[:, k] @ (X - means[k]) ** 2 / nk[k]
        var += reg_covar
        cov = var if covariance_type == "diag" else var.mean(axis=1)
    return {
        "covariance_type": covariance_type,
        "weights": nk / nk.sum(),
        "means": means,
        "covariances": cov,
        "precisions_cholesky": precision_cholesky(cov, covariance_type),
    }


def em(X, params, n_iter, reg_covar=1e-6, sample_weight=None):
    """Plain EM from given parameters.

    Returns the parameters after ``n_iter`` iterations and the list of mean
    log-likelihoods evaluated before each M-step (scikit-learn's
    ``lower_bounds_``).
    """
    w = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    bounds = []
    for _ in range(n_iter):
        resp, ll = e_step(X, params, w)
        bounds.append(ll)
        resp_w = resp if w is None else resp * w[:, None]
        params = m_step(X, resp_w, reg_covar, params["covariance_type"])
    return params, bounds


def score_samples(X, params):
    lp = log_densities(X, params["means"], params["precisions_cholesky"],
                       params["covariance_type"])
    return logsumexp(lp + np.log(params["weights"]), axis=1)


def n_parameters(covariance_type, n_components, n_features):
    K, d = n_components, n_features
    cov = {"full": K * d * (d + 1) / 2, "tied": d * (d + 1) / 2, "diag": K * d,
           "spherical": K}[covariance_type]
    return int(cov + K * d + K - 1)


# ---------------------------------------------------------------------------
# Missing values (NaN entries marginalised)
# ---------------------------------------------------------------------------


def missing_e_step(X, params):
    """Observed-data E-step, one row and one component at a time.

    For row n with observed set o and missing set m, and component k:
    log w_k + log N(x_o; mu_o, Sigma_oo) (scipy's density), the conditional
    mean mu_m + Sigma_mo Sigma_oo^-1 (x_o - mu_o) and the conditional
    covariance Sigma_mm - Sigma_mo Sigma_oo^-1 Sigma_om, from the covariance
    matrices (fastem works from the precisions).

    Returns
    -------
    logp : (n, K) weighted log densities of the observed entries
    xhat : (n, K, d) E[x | x_o, k]
    cond : (n, K, d, d) Cov[x | x_o, k] (zero outside the missing block)
    """
    from scipy.stats import multivariate_normal

    X = np.asarray(X, dtype=np.float64)
    n, d = X.shape
    K = len(params["weights"])
    covs = full_covariances(params["covariances"], params["covariance_type"], K, d)
    logp = np.empty((n, K))
    xhat = np.empty((n, K, d))
    cond = np.zeros((n, K, d, d))
    for i in range(n):
        m = np.isnan(X[i])
        o = ~m
        xo = X[i, o]
        for k in range(K):
            mu = params["means"][k]
            S = covs[k]
            Soo = S[np.ix_(o, o)]
            logp[i, k] = np.log(params["weights"][k]) + multivariate_normal.logpdf(
                xo, mu[o], Soo)
            xhat[i, k] = X[i]
            if m.any():
                Smo = S[np.ix_(m, o)]
                gain = linalg.solve(Soo, Smo.T, assume_a="pos").T
                xhat[i, k, m] = mu[m] + gain @ (xo - mu[o])
                cond[i, k][np.ix_(m, m)] = S[np.ix_(m, m)] - gain @ Smo.T
    return logp, xhat, cond


def missing_em_step(X, params, reg_covar=1e-6):
    """One EM iteration for the observed-data likelihood.

    Returns (new parameter dict, mean per-row observed-data log-likelihood
    under ``params``).  The M-step is scikit-learn's (``nk + 10 eps``
    denominators, ``reg_covar`` on the diagonal) applied to the conditional
    expectations: Sigma_k = sum_n r_nk (E[(x - mu_k)(x - mu_k)^T | x_o, k])
    / N_k, the expectation being (xhat - mu_k)(xhat - mu_k)^T + Cov[x | x_o, k].
    """
    ct = params["covariance_type"]
    logp, xhat, cond = missing_e_step(X, params)
    n, K, d = xhat.shape
    ll = logsumexp(logp, axis=1)
    resp = np.exp(logp - ll[:, None])
    nk = resp.sum(axis=0) + EPS10
    means = np.stack([(resp[:, k] @ xhat[:, k]) / nk[k] for k in range(K)])
    scat = np.zeros((K, d, d))
    for k in range(K):
        for i in range(n):
            diff = xhat[i, k] - means[k]
            scat[k] += resp[i, k] * (np.outer(diff, diff) + cond[i, k])
    if ct == "full":
        cov = scat / nk[:, None, None] + reg_covar * np.eye(d)
    elif ct == "tied":
        cov = scat.sum(axis=0) / nk.sum() + reg_covar * np.eye(d)
    elif ct == "diag":
        cov = np.stack([np.diag(scat[k]) / nk[k] for k in range(K)]) + reg_covar
    else:
        cov = np.array([np.trace(scat[k]) / (d * nk[k]) for k in range(K)]) + reg_covar
    new = {"covariance_type": ct, "weights": nk / nk.sum(), "means": means,
           "covariances": cov, "precisions_cholesky": precision_cholesky(cov, ct)}
    return new, float(ll.mean())
