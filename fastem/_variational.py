"""The variational posterior of a Bayesian Gaussian mixture, from sufficient statistics.

The model (Bishop, *Pattern Recognition and Machine Learning*, 10.2, and
Blei and Jordan 2006 for the Dirichlet process) puts a Dirichlet (or a
stick-breaking Beta) prior on the weights and a Normal-Wishart prior on each
component's mean and precision.  The mean-field posterior has the same form,
with parameters

    weight concentration   alpha_k = alpha_0 + N_k  (or the Beta pair
                           1 + N_k, alpha_0 + sum_{j > k} N_j)
    mean precision         beta_k = beta_0 + N_k
    mean                   m_k = (beta_0 m_0 + N_k xbar_k) / beta_k
    degrees of freedom     nu_k = nu_0 + N_k
    scale                  W_k^-1 = Psi_0 + N_k S_k + N_k beta_0 / beta_k
                                    (xbar_k - m_0)(xbar_k - m_0)^T

which need only the statistics N_k, xbar_k and S_k of :class:`SuffStats`
(:meth:`SuffStats.moments`).  scikit-learn's conventions are kept:
``covariances_`` is W_k^-1 / nu_k, so that its precision Cholesky factor
gives the quadratic form nu_k (x - m_k)^T W_k (x - m_k).

The variational E-step, log rho_nk = E[log pi_k] + 1/2 E[log |Lambda_k|]
- d / (2 beta_k) - nu_k / 2 (x - m_k)^T W_k (x - m_k) (+ const), is a
Gaussian log-density with that precision factor and a shifted constant: a
:class:`VariationalParams` carries the constant (:meth:`~VariationalParams.log_norm`),
and the EM kernels compute the E-step and the statistics unchanged.

Missing values (``missing='marginalize'``) are latent variables of the
posterior, q(z, x_m) = q(z) q(x_m | z).  With Lambda~_k = nu_k W_k (the
precision of the factor above), q(x_m | z = k) = N(m_m - Lambda~_mm^-1
Lambda~_mo (x_o - m_o), Lambda~_mm^-1), and integrating x_m out of the
optimal q(z, x_m) gives log rho_nk = c_k + log N(x_o; m_o, (Lambda~^-1)_oo)
+ d/2 log(2 pi) - 1/2 log |Lambda~_k|, with c_k the constant above
(d / beta_k counts every coordinate, missing or not).  That is the
observed-data E-step of :mod:`fastem._missing` handed a
:class:`VariationalParams`; its statistics (conditional means, second
moments including Lambda~_mm^-1) feed :func:`posterior` unchanged.  The
bound needs no new term: on these statistics :func:`entropy` equals
H[q(z)] + sum_n sum_k r_nk H[q(x_m | z = k)] (the conditional covariance
adds q_n / 2 to the quadratic term, the marginal's normaliser
q_n/2 log(2 pi) - 1/2 log |Lambda~_mm|: together the Gaussian entropies).

Stochastic variational inference (Hoffman et al. 2013) moves the natural
parameters of the posterior towards prior + (N / |B|) x (a mini-batch's
statistics).  The natural parameters are affine in the statistics, so one
natural-gradient step of size rho equals blending the statistics with
weight rho and applying :func:`posterior` to the blend: the online driver
is stepwise EM's with this update in place of the M-step.
"""

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import betaln, digamma, gammaln

from ._suffstats import GaussianParams, precision_cholesky

PRIOR_TYPES = ("dirichlet_process", "dirichlet_distribution")

_LOG_2PI = math.log(2.0 * math.pi)
_LOG_2 = math.log(2.0)


@dataclass
class Prior:
    """The prior of a Bayesian Gaussian mixture (scikit-learn's ``*_prior_``).

    Attributes
    ----------
    weight_concentration_prior_type : {'dirichlet_process', 'dirichlet_distribution'}
    weight_concentration : float
    mean_precision : float
    mean : ndarray of shape (d,)
    degrees_of_freedom : float
    covariance : ndarray (d, d) for 'full' and 'tied', (d,) for 'diag', or
        float for 'spherical'
    """

    weight_concentration_prior_type: str
    weight_concentration: float
    mean_precision: float
    mean: np.ndarray
    degrees_of_freedom: float
    covariance: object


@dataclass
class VariationalParams(GaussianParams):
    """A variational posterior, usable wherever the kernels take GaussianParams.

    ``weights``, ``means``, ``covariances`` and ``precisions_cholesky`` are
    scikit-learn's ``weights_``, ``means_``, ``covariances_`` and
    ``precisions_cholesky_``; :meth:`log_norm` returns the E-step's
    constants instead of the Gaussian normalisers.

    Attributes
    ----------
    weight_concentration_prior_type : str
    weight_concentration : tuple of two ndarrays of shape (K,), or ndarray (K,)
    mean_precision : ndarray of shape (K,)
    degrees_of_freedom : ndarray of shape (K,), or float for 'tied'
    effective_log_norm : ndarray of shape (K,)
    """

    weight_concentration_prior_type: str
    weight_concentration: object
    mean_precision: np.ndarray
    degrees_of_freedom: object
    effective_log_norm: np.ndarray

    def log_norm(self):
        """E[log pi_k] + 1/2 E[log |Lambda_k|] - d / (2 beta_k) - d/2 log(2 pi),
        in the form the kernels add to -1/2 ||P_k^T (x - m_k)||^2."""
        return self.effective_log_norm


def build(prior_type, covariance_type, weight_concentration, mean_precision, means,
          degrees_of_freedom, covariances, precisions_cholesky=None):
    """A :class:`VariationalParams` from the posterior's parameters (the
    fitted attributes of a Bayesian mixture); the precision factors are
    computed from the covariances unless given."""
    if precisions_cholesky is None:
        precisions_cholesky = precision_cholesky(covariances, covariance_type)
    weights = posterior_weights(prior_type, weight_concentration)
    params = VariationalParams(covariance_type, weights, means, covariances,
                               precisions_cholesky, prior_type, weight_concentration,
                               mean_precision, degrees_of_freedom, None)
    params.effective_log_norm = _effective_log_norm(params)
    return params


def posterior_weights(prior_type, weight_concentration):
    """The expected weights E[pi_k] of the posterior, normalised."""
    if prior_type == "dirichlet_process":
        a, b = weight_concentration
        total = a + b
        # E[pi_k] = E[v_k] prod_{j<k} E[1 - v_j] for independent Beta sticks
        rest = np.concatenate(([1.0], np.cumprod(b[:-1] / total[:-1])))
        w = a / total * rest
    else:
        w = np.asarray(weight_concentration, dtype=np.float64)
    return w / np.sum(w)


def expected_log_weights(prior_type, weight_concentration):
    """E[log pi_k] under the posterior, shape (K,)."""
    if prior_type == "dirichlet_process":
        a, b = weight_concentration
        dg_total = digamma(a + b)
        # log pi_k = log v_k + sum_{j<k} log(1 - v_j)
        log_rest = np.cumsum(digamma(b) - dg_total)
        return digamma(a) - dg_total + np.concatenate(([0.0], log_rest[:-1]))
    alpha = np.asarray(weight_concentration, dtype=np.float64)
    return digamma(alpha) - digamma(np.sum(alpha))


def _per_component(value, K):
    return np.broadcast_to(np.asarray(value, dtype=np.float64), (K,))


def _effective_log_norm(params):
    K, d = params.means.shape
    nu = _per_component(params.degrees_of_freedom, K)
    half_nu = 0.5 * (nu[None, :] - np.arange(d)[:, None])
    # E[log |Lambda_k|] less log |nu_k W_k| (the latter is in the factor's log-det)
    e_log_det = d * _LOG_2 + np.sum(digamma(half_nu), axis=0) - d * np.log(nu)
    return (expected_log_weights(params.weight_concentration_prior_type,
                                 params.weight_concentration)
            + params.log_det_cholesky() - 0.5 * d * _LOG_2PI
            + 0.5 * (e_log_det - d / params.mean_precision))


def posterior(stats, prior, reg_covar):
    """The variational update: the posterior given the statistics.

    Parameters
    ----------
    stats : SuffStats
        Statistics of the rows under the current responsibilities (for
        stochastic updates, scaled to the size of the data set).
    prior : Prior
    reg_covar : float
        Added to the diagonal of the statistics' covariances, as
        scikit-learn does.

    Returns
    -------
    VariationalParams
    """
    ct = stats.covariance_type
    nk, xk, sk = stats.moments(reg_covar)
    K, d = xk.shape
    if prior.weight_concentration_prior_type == "dirichlet_process":
        # the stick of component k: Beta(1 + N_k, alpha_0 + N_{>k})
        tail = np.cumsum(nk[::-1])[::-1]
        concentration = (1.0 + nk,
                         prior.weight_concentration + np.concatenate((tail[1:], [0.0])))
    else:
        concentration = prior.weight_concentration + nk
    beta0 = prior.mean_precision
    m0 = np.asarray(prior.mean, dtype=np.float64)
    beta = beta0 + nk
    means = (beta0 * m0 + nk[:, None] * xk) / beta[:, None]
    diff = xk - m0
    shrink = nk * beta0 / beta  # N_k beta_0 / beta_k
    psi0 = np.asarray(prior.covariance, dtype=np.float64)
    if ct == "full":
        nu = prior.degrees_of_freedom + nk
        scale = (psi0[None] + nk[:, None, None] * sk
                 + shrink[:, None, None] * diff[:, :, None] * diff[:, None, :])
        covs = scale / nu[:, None, None]
    elif ct == "tied":
        n_mean = nk.sum() / K
        nu = prior.degrees_of_freedom + n_mean
        scale = psi0 + sk * n_mean + (shrink[:, None] * diff).T @ diff / K
        covs = scale / nu
    elif ct == "diag":
        nu = prior.degrees_of_freedom + nk
        covs = (psi0 + nk[:, None] * sk + shrink[:, None] * diff**2) / nu[:, None]
    else:
        nu = prior.degrees_of_freedom + nk
        covs = (psi0 + nk * sk + shrink * np.mean(diff**2, axis=1)) / nu
    return build(prior.weight_concentration_prior_type, ct, concentration, beta, means,
                 nu, covs)


def _weighted_quadratic_sum(stats, params):
    """sum_n sum_k r_nk ||P_k^T (x_n - ref_k)||^2 from the statistics of a
    pass whose references are the means of ``params``."""
    ct = stats.covariance_type
    prec = params.precisions()
    if ct == "full":
        return float(np.sum(prec * stats.s2))
    if ct == "diag":
        return float(np.sum(prec * stats.s2))
    if ct == "spherical":
        return float(np.sum(prec * stats.s2.sum(axis=1)))
    # tied: the total scatter around ref2 less the component offsets
    a = stats.ref - stats.ref2
    cross = stats.s1.T @ a
    within = stats.s2 - cross - cross.T - (stats.nk[:, None] * a).T @ a
    return float(np.sum(prec * within))


def entropy(stats, params):
    """-sum_n sum_k r_nk log r_nk of the pass that produced ``stats`` under
    ``params``: with log r_nk = log rho_nk - log sum_j rho_nj, it is
    sum_n log sum_j rho_nj - sum_k (c_k N_k - 1/2 sum_n r_nk q_nk), where
    c_k is the E-step's constant and q_nk the quadratic form.  With missing
    entries the same formula adds the entropies of q(x_m | z) (module
    docstring)."""
    linear = float(np.dot(params.log_norm(), stats.nk))
    return stats.loglik - linear + 0.5 * _weighted_quadratic_sum(stats, params)


def lower_bound(stats, old, new):
    """scikit-learn's lower bound (up to constants) after an update.

    Parameters
    ----------
    stats : SuffStats
        The pass under ``old`` that the update used.
    old, new : VariationalParams
        The posterior before and after the update.

    Returns
    -------
    float
    """
    K, d = new.means.shape
    ct = new.covariance_type
    nu = new.degrees_of_freedom
    log_det = new.log_det_cholesky() - 0.5 * d * np.log(nu)
    if ct == "tied":
        log_det = log_det[0]
    half_nu = 0.5 * (np.asarray(nu)[..., None] - np.arange(d))
    log_wishart = -(nu * log_det + nu * d * 0.5 * _LOG_2
                    + np.sum(gammaln(half_nu), axis=-1))
    log_wishart = K * float(log_wishart) if ct == "tied" else float(np.sum(log_wishart))
    if new.weight_concentration_prior_type == "dirichlet_process":
        a, b = new.weight_concentration
        log_norm_weight = -float(np.sum(betaln(a, b)))
    else:
        alpha = new.weight_concentration
        log_norm_weight = float(gammaln(np.sum(alpha)) - np.sum(gammaln(alpha)))
    return (entropy(stats, old) - log_wishart - log_norm_weight
            - 0.5 * d * float(np.sum(np.log(new.mean_precision))))
