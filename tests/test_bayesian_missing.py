"""Missing values in the variational estimators (``missing='marginalize'``).

The oracles here use NumPy and SciPy only: one variational E-step with latent
missing entries written row by row from the mean-field formulas (covariance
form, where fastem works with precisions), and the evidence lower bound of a
'full' model computed term by term (expected log joint, Kullback-Leibler
divergences of the Normal-Wishart and Dirichlet/Beta factors, entropies of
q(z) and q(x_m | z)).
"""

import math
import warnings

import numpy as np
import pytest
from scipy.special import digamma, gammaln, logsumexp
from sklearn.exceptions import ConvergenceWarning

from conftest import COVARIANCE_TYPES, rel_err, tol

from fastem import BayesianGaussianMixture, MiniBatchBayesianGaussianMixture
from fastem import _data, _estep, _variational

PRIOR_TYPES = ("dirichlet_process", "dirichlet_distribution")
no_convergence = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
LOG_2PI = math.log(2.0 * math.pi)
EPS = np.finfo(np.float64).eps

FITTED = ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_",
          "mean_precision_", "degrees_of_freedom_", "mean_prior_", "covariance_prior_",
          "degrees_of_freedom_prior_", "mean_precision_prior_",
          "weight_concentration_prior_", "lower_bounds_")


# ---------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------


def _mixture_rows(n, d, seed, frac, centres=None, scale=1.0):
    """Rows of a well-separated mixture with each entry missing with
    probability ``frac`` (every row keeps one entry; 20 rows keep only one)."""
    rng = np.random.default_rng(seed)
    if centres is None:
        centres = rng.normal(scale=6.0, size=(3, d))
    K = len(centres)
    A = [rng.normal(size=(d, d)) * 0.4 + np.eye(d) for _ in range(K)]
    comp = rng.integers(K, size=n)
    X = np.stack([centres[k] + scale * rng.normal(size=d) @ A[k] for k in comp])
    miss = rng.uniform(size=X.shape) < frac
    miss[np.arange(n), rng.integers(d, size=n)] = False
    if frac > 0:
        one = rng.choice(n, min(20, n // 4), replace=False)
        miss[one] = True
        miss[one, rng.integers(d, size=one.size)] = False
    X[miss] = np.nan
    return X


def _write_csv(path, X):
    with open(path, "w") as f:
        f.write(",".join(f"x{j}" for j in range(X.shape[1])) + "\n")
        for row in X:
            f.write(",".join("" if np.isnan(v) else repr(float(v)) for v in row) + "\n")


# ---------------------------------------------------------------------------
# the oracle: one variational E-step, row by row
# ---------------------------------------------------------------------------


def _random_posterior(ct, pt, K, d, rng):
    """Posterior parameters in scikit-learn's layout: covariances are
    W^-1 / nu (the inverse of Lambda~ = nu W)."""
    if pt == "dirichlet_process":
        conc = (rng.uniform(1.0, 50.0, K), rng.uniform(1.0, 50.0, K))
    else:
        conc = rng.uniform(1.0, 50.0, K)
    beta = rng.uniform(1.0, 60.0, K)
    means = rng.normal(scale=2.0, size=(K, d))
    if ct == "tied":
        nu = float(rng.uniform(d + 1.0, 40.0))
    else:
        nu = rng.uniform(d + 1.0, 40.0, K)

    def spd():
        A = rng.normal(size=(d, d))
        return A @ A.T / d + 0.5 * np.eye(d)

    covs = {"full": lambda: np.stack([spd() for _ in range(K)]),
            "tied": spd,
            "diag": lambda: rng.uniform(0.3, 3.0, (K, d)),
            "spherical": lambda: rng.uniform(0.3, 3.0, K)}[ct]()
    return conc, beta, means, nu, covs


def _full_covs(ct, covs, K, d):
    if ct == "full":
        return covs
    if ct == "tied":
        return np.broadcast_to(covs, (K, d, d))
    if ct == "diag":
        return np.stack([np.diag(c) for c in covs])
    return np.stack([c * np.eye(d) for c in covs])


def _expected_log_weights(pt, conc):
    if pt == "dirichlet_process":
        a, b = conc
        out = np.empty(a.size)
        rest = 0.0
        for k in range(a.size):
            out[k] = digamma(a[k]) - digamma(a[k] + b[k]) + rest
            rest += digamma(b[k]) - digamma(a[k] + b[k])
        return out
    return digamma(conc) - digamma(np.sum(conc))


def _expected_log_det(nu, W):
    """E[log |Lambda|] under Wishart(W, nu), with scikit-learn's d-dimensional
    form for every covariance type."""
    d = W.shape[0]
    return (sum(digamma(0.5 * (nu - j)) for j in range(d)) + d * math.log(2.0)
            + np.linalg.slogdet(W)[1])


def reference_estep(X, ct, pt, conc, beta, means, nu, covs):
    """log rho (n, K), the conditional means and covariances of the missing
    entries, and the expected statistics N_k, sum_n r E[x], sum_n r E[x x^T].

    log rho_nk = E[log pi_k] + 1/2 E[log |Lambda_k|] - d / (2 beta_k)
                 - (d - q)/2 log 2 pi - 1/2 log |Lambda~_k,mm|
                 - 1/2 (x_o - m_o)^T (Sigma~_oo)^-1 (x_o - m_o),
    the optimal q(z, x_m) integrated over x_m (q missing entries)."""
    n, d = X.shape
    K = means.shape[0]
    S = _full_covs(ct, covs, K, d)
    nus = np.broadcast_to(np.asarray(nu, dtype=float), (K,))
    elogw = _expected_log_weights(pt, conc)
    const = np.array([elogw[k] + 0.5 * _expected_log_det(nus[k], np.linalg.inv(S[k]) / nus[k])
                      - d / (2.0 * beta[k]) for k in range(K)])
    logrho = np.empty((n, K))
    xhat = np.empty((n, K, d))
    cond = np.zeros((n, K, d, d))
    for i in range(n):
        m = np.isnan(X[i])
        o = ~m
        q = int(m.sum())
        for k in range(K):
            Soo = S[k][np.ix_(o, o)]
            Smo = S[k][np.ix_(m, o)]
            diff = X[i, o] - means[k, o]
            sol = np.linalg.solve(Soo, diff)
            C = S[k][np.ix_(m, m)] - Smo @ np.linalg.solve(Soo, Smo.T)
            # |Lambda~_mm| = 1 / |C| (the Schur complement)
            logrho[i, k] = (const[k] - 0.5 * (d - q) * LOG_2PI + 0.5 * np.linalg.slogdet(C)[1]
                            - 0.5 * diff @ sol)
            xhat[i, k] = X[i]
            xhat[i, k, m] = means[k, m] + Smo @ sol
            cond[i, k][np.ix_(m, m)] = C
    r = np.exp(logrho - logsumexp(logrho, axis=1)[:, None])
    nk = r.sum(axis=0)
    s1 = np.einsum("nk,nkd->kd", r, xhat)
    s2 = np.einsum("nk,nki,nkj->kij", r, xhat, xhat) + np.einsum("nk,nkij->kij", r, cond)
    return logrho, r, cond, nk, s1, s2


def _fastem_params(ct, pt, conc, beta, means, nu, covs):
    return _variational.build(pt, ct, conc, beta, means, nu, covs)


def _fastem_pass(X, params):
    data = _data.as_data(X, validate_array=lambda A: A, missing=True)
    return data.e_pass(params)


def _raw_moments(stats):
    """sum_n r E[x] and sum_n r E[x x^T] from fastem's centred statistics
    ('tied': summed over the components; 'diag', 'spherical': the diagonals)."""
    ct = stats.covariance_type
    nk, s1, s2, ref = stats.nk, stats.s1, stats.s2, stats.ref
    S1 = s1 + nk[:, None] * ref
    if ct == "full":
        S2 = (s2 + np.einsum("ki,kj->kij", ref, s1) + np.einsum("ki,kj->kij", s1, ref)
              + nk[:, None, None] * np.einsum("ki,kj->kij", ref, ref))
    elif ct == "tied":
        t = S1.sum(axis=0)
        r2 = stats.ref2
        S2 = s2 + np.outer(r2, t) + np.outer(t, r2) - nk.sum() * np.outer(r2, r2)
    else:
        S2 = s2 + 2.0 * ref * s1 + nk[:, None] * ref**2
    return S1, S2


def _estep_data(ct, pt, seed):
    rng = np.random.default_rng(seed)
    K, d = 3, 4
    post = _random_posterior(ct, pt, K, d, rng)
    X = _mixture_rows(240, d, seed, 0.3, centres=post[2], scale=1.0)
    X[:5] = rng.normal(size=(5, d))  # a few complete rows
    return X, post


def _estep_tolerance(ct, post, d):
    # every compared quantity is a sum of products and solves with the
    # component covariances: a few eps per operation, times their condition
    # number, times the number of features summed over
    covs = _full_covs(ct, post[4], post[2].shape[0], d)
    cond = max(np.linalg.cond(c) for c in covs)
    return tol(np.float64, 64 * d * cond)


@pytest.mark.parametrize("pt", PRIOR_TYPES)
@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_variational_estep_matches_reference(ct, pt):
    X, post = _estep_data(ct, pt, seed=COVARIANCE_TYPES.index(ct))
    d = X.shape[1]
    assert (np.sum(~np.isnan(X), axis=1) == 1).sum() >= 20
    logrho, _, _, nk, s1, s2 = reference_estep(X, ct, pt, *post)
    params = _fastem_params(ct, pt, *post)
    rtol = _estep_tolerance(ct, post, d)
    assert rtol < 1e-10
    got = _estep.weighted_log_prob(np.ascontiguousarray(X), params, missing=True)
    assert rel_err(got, logrho) <= rtol
    stats = _fastem_pass(X, params)
    S1, S2 = _raw_moments(stats)
    assert rel_err(stats.nk, nk) <= rtol
    assert rel_err(S1, s1) <= rtol
    if ct == "tied":
        assert rel_err(S2, s2.sum(axis=0)) <= rtol
    elif ct == "full":
        assert rel_err(S2, s2) <= rtol
    elif ct == "spherical":
        # only the sums over the features are spherical statistics (SuffStats)
        assert rel_err(S2.sum(axis=1), np.einsum("kii->k", s2)) <= rtol
    else:
        assert rel_err(S2, np.diagonal(s2, axis1=1, axis2=2)) <= rtol
    assert abs(stats.loglik - logsumexp(logrho, axis=1).sum()) <= rtol * abs(stats.loglik)


@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_bound_entropy_includes_missing_entries(ct):
    # the bound's entropy term, computed by fastem from the statistics, is
    # H[q(z)] + sum_n sum_k r_nk H[q(x_m | z = k)] of the reference E-step
    pt = PRIOR_TYPES[0]
    X, post = _estep_data(ct, pt, seed=10 + COVARIANCE_TYPES.index(ct))
    _, r, cond, *_ = reference_estep(X, ct, pt, *post)
    h_z = -np.sum(r * np.log(r))
    h_x = 0.0
    for i in range(X.shape[0]):
        m = np.isnan(X[i])
        q = int(m.sum())
        for k in range(r.shape[1]):
            if q:
                C = cond[i, k][np.ix_(m, m)]
                h_x += r[i, k] * (0.5 * q * (1.0 + LOG_2PI) + 0.5 * np.linalg.slogdet(C)[1])
    params = _fastem_params(ct, pt, *post)
    got = _variational.entropy(_fastem_pass(X, params), params)
    want = h_z + h_x
    # a difference of sums of magnitude |loglik|: rounding of those sums
    scale = abs(_fastem_pass(X, params).loglik) + abs(want)
    assert abs(got - want) <= _estep_tolerance(ct, post, X.shape[1]) * scale


# ---------------------------------------------------------------------------
# the evidence lower bound, by brute force ('full')
# ---------------------------------------------------------------------------


def _log_wishart_norm(W, nu):
    d = W.shape[0]
    return (-0.5 * nu * np.linalg.slogdet(W)[1] - 0.5 * nu * d * math.log(2.0)
            - 0.25 * d * (d - 1) * math.log(math.pi)
            - sum(gammaln(0.5 * (nu - j)) for j in range(d)))


def _kl_normal_wishart(m, beta, W, nu, m0, beta0, W0, nu0):
    """KL(NW(m, beta, W, nu) || NW(m0, beta0, W0, nu0)), from
    E_q[log q] - E_q[log p] with E[Lambda] = nu W,
    E[(mu - a)^T Lambda (mu - a)] = d / beta + nu (m - a)^T W (m - a)."""
    d = m.size
    elog = _expected_log_det(nu, W)
    e_log_q = (0.5 * d * math.log(beta / (2 * math.pi)) + 0.5 * elog - 0.5 * d
               + _log_wishart_norm(W, nu) + 0.5 * (nu - d - 1) * elog - 0.5 * nu * d)
    dm = m - m0
    e_log_p = (0.5 * d * math.log(beta0 / (2 * math.pi)) + 0.5 * elog
               - 0.5 * beta0 * (d / beta + nu * dm @ W @ dm)
               + _log_wishart_norm(W0, nu0) + 0.5 * (nu0 - d - 1) * elog
               - 0.5 * nu * np.trace(np.linalg.solve(W0, W)))
    return e_log_q - e_log_p


def _kl_dirichlet(a, a0):
    return (gammaln(a.sum()) - gammaln(a).sum() - gammaln(a0.sum()) + gammaln(a0).sum()
            + np.sum((a - a0) * (digamma(a) - digamma(a.sum()))))


def _kl_beta(a, b, a0, b0):
    return (gammaln(a + b) - gammaln(a) - gammaln(b) - gammaln(a0 + b0) + gammaln(a0)
            + gammaln(b0) + (a - a0) * digamma(a) + (b - b0) * digamma(b)
            + (a0 - a + b0 - b) * digamma(a + b))


def _posterior_of(est):
    return (est.weight_concentration_, est.mean_precision_, est.means_,
            est.degrees_of_freedom_, est.covariances_)


def brute_force_elbo(X, pt, old, new, prior):
    """The ELBO of q(z, x_m) (the E-step under ``old``) and q(theta) = ``new``:
    E[log p(x_o, x_m, z, theta)] + H[q(z, x_m)] + H[q(theta)]."""
    n, d = X.shape
    _, r, cond, _, _, _ = reference_estep(X, "full", pt, *old)
    conc, beta, means, nu, covs = new
    alpha0, beta0, m0, nu0, psi0 = prior
    K = means.shape[0]
    W = np.stack([np.linalg.inv(covs[k]) / nu[k] for k in range(K)])
    elogw = _expected_log_weights(pt, conc)
    # E[log p(x | z = k, mu_k, Lambda_k)] with x_m ~ q(x_m | z = k)
    old_S = old[4]
    total = 0.0
    for i in range(n):
        m = np.isnan(X[i])
        o = ~m
        for k in range(K):
            xh = X[i].copy()
            S = old_S[k]
            xh[m] = old[2][k, m] + S[np.ix_(m, o)] @ np.linalg.solve(
                S[np.ix_(o, o)], X[i, o] - old[2][k, o])
            diff = xh - means[k]
            quad = d / beta[k] + nu[k] * (diff @ W[k] @ diff + np.trace(W[k] @ cond[i, k]))
            e_log_x = 0.5 * _expected_log_det(nu[k], W[k]) - 0.5 * d * LOG_2PI - 0.5 * quad
            total += r[i, k] * (elogw[k] + e_log_x)
    total -= np.sum(r * np.log(r))
    for i in range(n):
        m = np.isnan(X[i])
        q = int(m.sum())
        if q:
            for k in range(K):
                C = cond[i, k][np.ix_(m, m)]
                total += r[i, k] * (0.5 * q * (1 + LOG_2PI) + 0.5 * np.linalg.slogdet(C)[1])
    W0 = np.linalg.inv(psi0)
    for k in range(K):
        total -= _kl_normal_wishart(means[k], beta[k], W[k], nu[k], m0, beta0, W0, nu0)
    if pt == "dirichlet_process":
        a, b = conc
        total -= sum(_kl_beta(a[k], b[k], 1.0, alpha0) for k in range(K))
    else:
        total -= _kl_dirichlet(np.asarray(conc), np.full(K, alpha0))
    return total


@pytest.mark.parametrize("pt", PRIOR_TYPES)
def test_lower_bound_changes_equal_the_elbo_changes(pt):
    # scikit-learn's bound drops constants of the prior and of the data; its
    # changes between iterations must be those of the true ELBO, whose
    # entropy now includes that of q(x_m | z)
    X = _mixture_rows(90, 3, seed=21, frac=0.3)
    est = BayesianGaussianMixture(n_components=3, weight_concentration_prior_type=pt,
                                  missing="marginalize", reg_covar=0.0, max_iter=1, tol=0,
                                  random_state=0, warm_start=True)
    posts, bounds = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(6):
            est.fit(X)
            posts.append(_posterior_of(est))
            bounds.append(est.lower_bound_)
    prior = (est.weight_concentration_prior_, est.mean_precision_prior_, est.mean_prior_,
             est.degrees_of_freedom_prior_, est.covariance_prior_)
    elbo = [brute_force_elbo(X, pt, posts[t - 1], posts[t], prior) for t in range(1, 6)]
    d_elbo = np.diff(elbo)
    d_bound = np.diff(bounds[1:])
    assert np.all(np.abs(d_bound) > 1e-6)  # the fit moves: the check is not vacuous
    # both are differences of sums over the rows of magnitude |bound|
    slack = 1e3 * EPS * max(abs(b) for b in bounds)
    assert np.max(np.abs(d_elbo - d_bound)) <= slack, (d_elbo, d_bound)


# ---------------------------------------------------------------------------
# fits
# ---------------------------------------------------------------------------


@no_convergence
@pytest.mark.parametrize("pt", PRIOR_TYPES)
@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_lower_bound_never_decreases_with_nan(pt, ct):
    X = _mixture_rows(600, 4, seed=3, frac=0.2)
    for init in ("kmeans", "random"):
        est = BayesianGaussianMixture(n_components=5, covariance_type=ct,
                                      weight_concentration_prior_type=pt,
                                      missing="marginalize", max_iter=40, tol=0,
                                      init_params=init, random_state=0).fit(X)
        lb = np.asarray(est.lower_bounds_)
        assert lb.size == 40 and np.all(np.isfinite(lb))
        # rounding of a sum over the rows: a few eps of its magnitude
        slack = 64 * EPS * np.max(np.abs(lb))
        assert np.all(np.diff(lb) >= -slack), (init, np.diff(lb).min())


@no_convergence
@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_option_without_nan_is_bitwise_the_plain_fit(ct):
    X = _mixture_rows(500, 3, seed=4, frac=0.0)
    for cls, kw in ((BayesianGaussianMixture, dict(max_iter=15)),
                    (MiniBatchBayesianGaussianMixture, dict(max_iter=3, batch_size=128))):
        a = cls(n_components=4, covariance_type=ct, random_state=0, tol=0, **kw).fit(X)
        b = cls(n_components=4, covariance_type=ct, random_state=0, tol=0,
                missing="marginalize", **kw).fit(X)
        for name in FITTED:
            assert np.array_equal(getattr(a, name), getattr(b, name)), (cls, name)
        np.testing.assert_array_equal(a.score_samples(X), b.score_samples(X))


@pytest.mark.parity
@no_convergence
@pytest.mark.parametrize("pt", PRIOR_TYPES)
@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_option_without_nan_same_as_sklearn(pt, ct, monkeypatch):
    from test_bayesian import DATASETS, _assert_same, _fit_pair, _start

    class Marginalizing(BayesianGaussianMixture):
        """Built by _fit_pair with scikit-learn's parameters; the option on."""

        def __init__(self, **params):
            super().__init__(missing="marginalize", **params)

    X = DATASETS["blobs"]
    kw = dict(n_components=4, covariance_type=ct, weight_concentration_prior_type=pt,
              max_iter=25, tol=0, random_state=0)
    monkeypatch.setattr("test_bayesian.BayesianGaussianMixture", Marginalizing)
    sk, fb = _fit_pair(X, _start(X, 4), monkeypatch, **kw)
    assert type(fb) is Marginalizing and fb.missing == "marginalize"
    _assert_same(fb, sk, 1e-8)


def _one_gaussian_em(X, n_iter=2000):
    """The maximum-likelihood Gaussian of the observed entries (NumPy EM)."""
    mu = np.nanmean(X, axis=0)
    S = np.diag(np.nanvar(X, axis=0))
    for _ in range(n_iter):
        s1 = np.zeros_like(mu)
        s2 = np.zeros_like(S)
        for x in X:
            m = np.isnan(x)
            o = ~m
            xh = x.copy()
            C = np.zeros_like(S)
            if m.any():
                A = S[np.ix_(m, o)] @ np.linalg.inv(S[np.ix_(o, o)])
                xh[m] = mu[m] + A @ (x[o] - mu[o])
                C[np.ix_(m, m)] = S[np.ix_(m, m)] - A @ S[np.ix_(o, m)]
            s1 += xh
            s2 += np.outer(xh, xh) + C
        new_mu = s1 / len(X)
        new_S = s2 / len(X) - np.outer(new_mu, new_mu)
        done = np.max(np.abs(new_S - S)) < 1e-13 and np.max(np.abs(new_mu - mu)) < 1e-13
        mu, S = new_mu, new_S
        if done:
            break
    return mu, S


@no_convergence
@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_priors_from_observed_entries(ct):
    X = _mixture_rows(150, 3, seed=12, frac=0.25)
    n = len(X)
    est = BayesianGaussianMixture(n_components=2, covariance_type=ct, missing="marginalize",
                                  max_iter=1, random_state=0).fit(X)
    if ct in ("full", "tied"):
        mu, S = _one_gaussian_em(X)
        # fastem's EM stops when the mean log-likelihood changes by < 1e-10:
        # its parameters are then within about sqrt(1e-10) of the optimum
        assert rel_err(est.mean_prior_, mu) <= 1e-4
        assert rel_err(est.covariance_prior_, S * n / (n - 1)) <= 1e-4
    else:
        var = np.nanvar(X, axis=0, ddof=1)
        assert rel_err(est.mean_prior_, np.nanmean(X, axis=0)) <= tol(np.float64, 16)
        want = var if ct == "diag" else var.mean()
        assert rel_err(est.covariance_prior_, want) <= tol(np.float64, 16)


def _close(a, b, rtol=1e-9):
    for name in ("weights_", "means_", "covariances_", "mean_precision_",
                 "degrees_of_freedom_", "mean_prior_", "covariance_prior_"):
        assert rel_err(getattr(a, name), getattr(b, name)) <= rtol, name
    assert rel_err(a.lower_bounds_, b.lower_bounds_) <= rtol
    assert a.n_iter_ == b.n_iter_


@no_convergence
@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_streams_and_dask_equal_in_memory(ct, tmp_path):
    X = _mixture_rows(3000, 4, seed=5, frac=0.15)
    # the k-means sample is the same rows of an array, a .npy file and Dask;
    # a CSV of unknown length is sampled by reservoir sampling, so the CSV
    # fit is compared from one given start below
    kw = dict(n_components=3, covariance_type=ct, missing="marginalize", max_iter=20,
              tol=0, random_state=0)
    mem = BayesianGaussianMixture(**kw).fit(X)
    npy = tmp_path / "x.npy"
    np.save(npy, X)
    _close(BayesianGaussianMixture(chunk_size=700, **kw).fit(str(npy)), mem)
    csv = tmp_path / "x.csv"
    _write_csv(csv, X)
    w = np.random.default_rng(0).uniform(0.5, 2.0, size=len(X))
    mem_w = BayesianGaussianMixture(**kw).fit(X, sample_weight=w)
    _close(BayesianGaussianMixture(chunk_size=512, **kw).fit(str(npy), sample_weight=w),
           mem_w)
    np.testing.assert_allclose(mem.predict_proba(str(csv)), mem.predict_proba(X),
                               rtol=1e-12, atol=1e-15)
    # the CSV and in-memory fits from one start: the k-means of the array's sample
    from fastem import _init

    start = _init.initial_stats(_data.as_data(X, validate_array=lambda A: A, missing=True),
                                3, ct, "kmeans", np.random.RandomState(0))
    orig = _init.initial_stats
    try:
        _init.initial_stats = lambda *a, **k: start
        a = BayesianGaussianMixture(**kw).fit(X)
        b = BayesianGaussianMixture(chunk_size=1000, **kw).fit(str(csv))
    finally:
        _init.initial_stats = orig
    _close(b, a)
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    cols = {f"x{j}": pa.array([None if np.isnan(v) else float(v) for v in X[:, j]],
                              type=pa.float64()) for j in range(X.shape[1])}
    pq.write_table(pa.table(cols), tmp_path / "x.parquet", row_group_size=900)
    _close(BayesianGaussianMixture(**kw).fit(str(tmp_path / "x.parquet")), mem)
    da = pytest.importorskip("dask.array")
    import dask

    with dask.config.set(scheduler="synchronous"):
        dk = BayesianGaussianMixture(**kw).fit(da.from_array(X, chunks=(700, 4)))
        _close(dk, mem)
        np.testing.assert_allclose(np.asarray(dk.score_samples(da.from_array(X, chunks=900))),
                                   mem.score_samples(X), rtol=1e-9)


@no_convergence
def test_online_with_nan_near_batch():
    centres = np.array([[-6.0, 0, 3, 0], [0, 6, 0, -3], [6, -3, -3, 3]])
    X = _mixture_rows(12000, 4, seed=6, frac=0.2, centres=centres)
    train, test = X[:9000], X[9000:]
    batch = BayesianGaussianMixture(n_components=3, missing="marginalize",
                                    random_state=0).fit(train)
    online = MiniBatchBayesianGaussianMixture(n_components=3, missing="marginalize",
                                              random_state=0)
    for lo in range(0, len(train), 500):
        online.partial_fit(train[lo:lo + 500])
    assert np.all(np.isfinite(online.means_)) and np.all(np.isfinite(online.covariances_))
    s_batch, s_online = batch.score(test), online.score(test)
    assert abs(s_online - s_batch) <= 0.03 * abs(s_batch), (s_online, s_batch)
    fit = MiniBatchBayesianGaussianMixture(n_components=3, missing="marginalize",
                                           batch_size=1000, max_iter=5,
                                           random_state=0).fit(train)
    assert abs(fit.score(test) - s_batch) <= 0.03 * abs(s_batch)
    with pytest.raises(ValueError, match="missing='marginalize'"):
        MiniBatchBayesianGaussianMixture(n_components=3).partial_fit(train[:500])


@no_convergence
@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_extra_components_switched_off_with_nan(ct):
    # three well-separated unit Gaussians (a mixture of every covariance type)
    rng = np.random.default_rng(7)
    centres = np.array([[-8.0, 0, 4], [0, 8, 0], [8, -4, -4]])
    X = centres[rng.integers(3, size=3000)] + rng.normal(size=(3000, 3))
    # 20% of the entries missing completely at random (the few rows left
    # with none observed keep their first entry)
    miss = np.random.default_rng(17).uniform(size=X.shape) < 0.2
    miss[miss.all(axis=1), 0] = False
    X[miss] = np.nan
    assert 0.19 < np.isnan(X).mean() < 0.21
    est = BayesianGaussianMixture(n_components=10, covariance_type=ct,
                                  missing="marginalize", max_iter=1000,
                                  random_state=0).fit(X)
    # (measured: 'tied' converges after about 600 iterations, the others
    # within 200; 1000 leaves room for another CPU's rounding)
    assert est.converged_
    assert est.effective_n_components() == 3


def test_errors_persistence_and_impute(tmp_path):
    from fastem import load

    X = _mixture_rows(300, 3, seed=8, frac=0.2)
    with pytest.raises(ValueError, match=r"contains NaN at row \d+.*missing='marginalize'"):
        BayesianGaussianMixture(n_components=2).fit(X)
    with pytest.raises(ValueError, match=r"'missing' parameter of BayesianGaussianMixture .* "
                                         r"Got 'drop'"):
        BayesianGaussianMixture(n_components=2, missing="drop").fit(X)
    with pytest.raises(ValueError, match=r"'missing' parameter of "
                                         r"MiniBatchBayesianGaussianMixture .* Got 'drop'"):
        MiniBatchBayesianGaussianMixture(n_components=2, missing="drop").partial_fit(X)
    bad = X.copy()
    bad[17] = np.nan
    with pytest.raises(ValueError, match=r"every entry missing \(NaN\) in row 17"):
        BayesianGaussianMixture(n_components=2, missing="marginalize").fit(bad)
    col = _mixture_rows(300, 3, seed=8, frac=0.0)
    col[1:, 2] = np.nan
    with pytest.raises(ValueError, match="more than one observed value in each column.*"
                                         "column 2"):
        BayesianGaussianMixture(n_components=2, missing="marginalize").fit(col)
    est = BayesianGaussianMixture(n_components=3, missing="marginalize",
                                  random_state=0).fit(X)
    filled = est.impute(X)
    assert not np.isnan(filled).any()
    assert np.array_equal(filled[~np.isnan(X)], X[~np.isnan(X)])
    labels = est.predict(X)
    assert np.array_equal(labels, est.predict_proba(X).argmax(axis=1))
    est.save(tmp_path / "m.npz")
    back = load(tmp_path / "m.npz")
    assert back.missing == "marginalize"
    np.testing.assert_array_equal(back.score_samples(X), est.score_samples(X))
    online = MiniBatchBayesianGaussianMixture(n_components=3, missing="marginalize",
                                              random_state=0)
    online.partial_fit(X[:150])
    online.save(tmp_path / "o.npz")
    resumed = load(tmp_path / "o.npz")
    assert resumed.missing == "marginalize"
    online.partial_fit(X[150:])
    resumed.partial_fit(X[150:])
    np.testing.assert_array_equal(resumed.means_, online.means_)


def test_cli_fit_bayesian_missing(tmp_path, capsys):
    from fastem import load
    from fastem.cli import main

    X = _mixture_rows(400, 3, seed=9, frac=0.1)
    csv = tmp_path / "t.csv"
    _write_csv(csv, X)
    model = tmp_path / "m.npz"
    assert main(["fit", str(csv), "-k", "5", "--bayesian", "--missing", "marginalize",
                 "--out", str(model)]) == 0
    out = capsys.readouterr().out
    assert "BayesianGaussianMixture" in out and "effective components" in out
    m = load(model)
    assert m.missing == "marginalize"
    assert main(["impute", str(model), str(csv), "--out", str(tmp_path / "f.npy")]) == 0
    assert not np.isnan(np.load(tmp_path / "f.npy")).any()
    assert main(["fit", str(csv), "-k", "3", "--bayesian", "--online", "--missing",
                 "marginalize"]) == 0
    assert main(["fit", str(csv), "-k", "3", "--bayesian"]) == 2
    assert "missing='marginalize'" in capsys.readouterr().err
