"""Sufficient statistics of a Gaussian mixture, their algebra, and the M-step.

A :class:`SuffStats` value is what one kernel pass over a block of rows
produces, and the only thing the EM drivers (in-memory, out-of-core, online,
Dask) exchange with the kernels:

- ``nk`` (K,): sum of (weighted) responsibilities per component;
- ``s1`` (K, d): first moments around a reference point ``ref`` (K, d),
  ``sum_n r_nk (x_n - ref_k)``;
- ``s2``: second moments, around ``ref`` for the 'full' (K, d, d), 'diag' and
  'spherical' (K, d) types, and the weighted total scatter around ``ref2``
  (d,) for 'tied' (d, d).  For 'spherical' only each row's sum over the
  features is a statistic (``s2.sum(axis=1)``, the second moment around
  ``ref_k`` summed over the features): the spherical kernel puts the whole
  sum in column 0, other producers spread it over the features;
- ``loglik``: sum of weighted per-row log-likelihoods under the parameters of
  the pass, ``weight_sum`` the sum of row weights, ``n_rows`` the row count.

Moments are taken around the current means so that data far from the origin
keeps its precision; values with different references are merged after an
exact shift of reference (the pairwise update of Chan, Golub and LeVeque).
"""

from dataclasses import dataclass

import numpy as np
from scipy import linalg

from ._constants import COVARIANCE_TYPES  # noqa: F401 (its users import it from here)

_ILL_DEFINED = (
    "Fitting the mixture model failed because some components have "
    "ill-defined empirical covariance (for instance caused by singleton "
    "or collapsed samples). Try to decrease the number of components, "
    "increase reg_covar, or scale the input data."
)

_EPS10 = 10 * np.finfo(np.float64).eps


def _ill_defined(detail):
    return ValueError(f"{_ILL_DEFINED} ({detail})")


@dataclass
class GaussianParams:
    """Parameters of a Gaussian mixture, in scikit-learn's conventions.

    Attributes
    ----------
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
    weights : ndarray of shape (K,)
    means : ndarray of shape (K, d)
    covariances : ndarray, shape (K, d, d), (d, d), (K, d) or (K,)
    precisions_cholesky : ndarray, same shape as ``covariances``
    """

    covariance_type: str
    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    precisions_cholesky: np.ndarray

    @property
    def n_components(self):
        return self.means.shape[0]

    @property
    def n_features(self):
        return self.means.shape[1]

    def precisions(self):
        """Precision matrices from their Cholesky factors."""
        pc = self.precisions_cholesky
        if self.covariance_type == "full":
            return np.einsum("kij,klj->kil", pc, pc)
        if self.covariance_type == "tied":
            return pc @ pc.T
        return pc**2

    def log_det_cholesky(self):
        """log det of each precision Cholesky factor, shape (K,)."""
        pc = self.precisions_cholesky
        K, d = self.means.shape
        if self.covariance_type == "full":
            return np.sum(np.log(np.diagonal(pc, axis1=1, axis2=2)), axis=1)
        if self.covariance_type == "tied":
            return np.full(K, np.sum(np.log(np.diag(pc))))
        if self.covariance_type == "diag":
            return np.sum(np.log(pc), axis=1)
        return d * np.log(pc)

    def log_norm(self):
        """log weight_k + log det P_k - d/2 log(2 pi), shape (K,)."""
        d = self.n_features
        with np.errstate(divide="ignore"):
            logw = np.log(self.weights)
        return logw + self.log_det_cholesky() - 0.5 * d * np.log(2 * np.pi)


def precision_cholesky(covariances, covariance_type):
    """Cholesky factors of the precision matrices (scikit-learn's layout).

    For 'full' and 'tied', the upper-triangular P with P P^T = Sigma^-1; for
    'diag' and 'spherical', 1 / sqrt(variance).  Raises ValueError naming the
    component when a covariance is not positive definite.
    """
    if covariance_type in ("full", "tied"):
        covs = covariances[None] if covariance_type == "tied" else covariances
        K, d, _ = covs.shape
        if np.all(np.isfinite(covs)):
            try:
                # batched: one LAPACK call per component inside numpy
                chol = np.linalg.cholesky(covs)
                out = np.swapaxes(np.linalg.solve(chol, np.broadcast_to(np.eye(d), covs.shape)),
                                  1, 2)
                out = np.triu(out)
                return out[0] if covariance_type == "tied" else out
            except np.linalg.LinAlgError:
                pass  # find and name the failing component below
        out = np.empty_like(covs, dtype=np.float64)
        eye = np.eye(d)
        for k in range(K):
            if not np.all(np.isfinite(covs[k])):
                raise _ill_defined(f"component {k} has a non-finite covariance")
            try:
                chol = linalg.cholesky(covs[k], lower=True)
            except linalg.LinAlgError:
                what = "the tied covariance" if covariance_type == "tied" else (
                    f"component {k}'s covariance")
                raise _ill_defined(f"{what} is not positive definite") from None
            out[k] = linalg.solve_triangular(chol, eye, lower=True).T
        return out[0] if covariance_type == "tied" else out
    cov = np.asarray(covariances, dtype=np.float64)
    bad = ~(cov > 0) | ~np.isfinite(cov)
    if np.any(bad):
        k = int(np.argwhere(bad)[0][0])
        raise _ill_defined(
            f"component {k} has variance {float(cov.flat[np.flatnonzero(bad)[0]])!r}")
    return 1.0 / np.sqrt(cov)


class SuffStats:
    """Sufficient statistics of a Gaussian mixture over a set of rows.

    See the module docstring for the meaning of the fields.  Values are
    combined with :meth:`merge` (exact, in call order) and :meth:`scale`, and
    turned into parameters with :meth:`m_step`.
    """

    __slots__ = ("covariance_type", "nk", "s1", "s2", "ref", "ref2", "loglik",
                 "weight_sum", "n_rows")

    def __init__(self, covariance_type, nk, s1, s2, ref, ref2=None, loglik=0.0,
                 weight_sum=None, n_rows=0):
        self.covariance_type = covariance_type
        self.nk = np.asarray(nk, dtype=np.float64)
        self.s1 = np.asarray(s1, dtype=np.float64)
        self.s2 = np.asarray(s2, dtype=np.float64)
        self.ref = np.asarray(ref, dtype=np.float64)
        d = self.ref.shape[1]
        self.ref2 = (np.zeros(d) if ref2 is None
                     else np.asarray(ref2, dtype=np.float64))
        self.loglik = float(loglik)
        self.weight_sum = float(self.nk.sum() if weight_sum is None else weight_sum)
        self.n_rows = int(n_rows)

    # -- construction ------------------------------------------------------

    @classmethod
    def zeros(cls, covariance_type, ref, ref2=None):
        """Empty statistics around the given references."""
        ref = np.asarray(ref, dtype=np.float64)
        K, d = ref.shape
        if covariance_type == "full":
            s2 = np.zeros((K, d, d))
        elif covariance_type == "tied":
            s2 = np.zeros((d, d))
        else:
            s2 = np.zeros((K, d))
        return cls(covariance_type, np.zeros(K), np.zeros((K, d)), s2, ref, ref2,
                   0.0, 0.0, 0)

    def copy(self):
        return SuffStats(self.covariance_type, self.nk.copy(), self.s1.copy(),
                         self.s2.copy(), self.ref.copy(), self.ref2.copy(),
                         self.loglik, self.weight_sum, self.n_rows)

    # -- algebra -----------------------------------------------------------

    @property
    def n_components(self):
        return self.ref.shape[0]

    @property
    def n_features(self):
        return self.ref.shape[1]

    def recenter(self, ref, ref2=None):
        """The same statistics expressed around new reference points."""
        ref = np.asarray(ref, dtype=np.float64)
        ref2 = self.ref2 if ref2 is None else np.asarray(ref2, dtype=np.float64)
        delta = self.ref - ref  # x - ref_new = (x - ref_old) + delta
        nk = self.nk
        s1 = self.s1 + nk[:, None] * delta
        if self.covariance_type == "full":
            cross = self.s1[:, :, None] * delta[:, None, :]
            s2 = (self.s2 + cross + np.swapaxes(cross, 1, 2)
                  + nk[:, None, None] * delta[:, :, None] * delta[:, None, :])
        elif self.covariance_type == "tied":
            # total first moment around the old ref2
            m1 = np.sum(self.s1 + nk[:, None] * (self.ref - self.ref2), axis=0)
            d2 = self.ref2 - ref2
            cross = np.outer(m1, d2)
            s2 = self.s2 + cross + cross.T + nk.sum() * np.outer(d2, d2)
        else:
            s2 = self.s2 + 2 * self.s1 * delta + nk[:, None] * delta**2
        return SuffStats(self.covariance_type, nk.copy(), s1, s2, ref, ref2,
                         self.loglik, self.weight_sum, self.n_rows)

    def _check_compatible(self, other):
        if (other.covariance_type != self.covariance_type
                or other.ref.shape != self.ref.shape):
            raise ValueError(
                "Cannot merge statistics of different models: "
                f"{self.covariance_type} {self.ref.shape} and "
                f"{other.covariance_type} {other.ref.shape}")

    def merge(self, other):
        """Statistics of the union of both row sets (self first, then other)."""
        self._check_compatible(other)
        if not (np.array_equal(other.ref, self.ref)
                and (self.covariance_type != "tied"
                     or np.array_equal(other.ref2, self.ref2))):
            other = other.recenter(self.ref, self.ref2)
        return SuffStats(self.covariance_type, self.nk + other.nk,
                         self.s1 + other.s1, self.s2 + other.s2, self.ref.copy(),
                         self.ref2.copy(), self.loglik + other.loglik,
                         self.weight_sum + other.weight_sum,
                         self.n_rows + other.n_rows)

    def scale(self, factor):
        """Statistics with every sum multiplied by ``factor`` (row count kept)."""
        f = float(factor)
        return SuffStats(self.covariance_type, self.nk * f, self.s1 * f,
                         self.s2 * f, self.ref.copy(), self.ref2.copy(),
                         self.loglik * f, self.weight_sum * f, self.n_rows)

    def mean_loglik(self):
        """Mean per-sample (weighted) log-likelihood of the pass."""
        if self.weight_sum <= 0:
            return -np.inf
        return self.loglik / self.weight_sum

    # -- M-step ------------------------------------------------------------

    def _eps10(self):
        """scikit-learn's ``10 eps`` for unit weights, times the mean row weight."""
        if self.n_rows > 0 and self.weight_sum > 0 and np.isfinite(self.weight_sum):
            return _EPS10 * (self.weight_sum / self.n_rows)
        return _EPS10

    def m_step(self, reg_covar):
        """Maximum-likelihood parameters from these statistics.

        Follows scikit-learn's estimates exactly (``nk + 10 eps`` in the
        denominators, ``reg_covar`` added to the diagonal, weights
        normalised), computed from centred moments.  The ``10 eps`` is
        relative to the mean weight of a row (``weight_sum / n_rows``, 1 for
        unit weights, as in scikit-learn), so that multiplying every sample
        weight, or these statistics (:meth:`scale`), by a constant gives the
        same parameters.

        Returns
        -------
        GaussianParams
        """
        nk_eps, means, cov = self.moments(reg_covar)
        weights = nk_eps / nk_eps.sum()
        ct = self.covariance_type
        pc = precision_cholesky(cov, ct)
        return GaussianParams(ct, weights, means, cov, pc)

    def moments(self, reg_covar):
        """scikit-learn's ``_estimate_gaussian_parameters`` from these statistics.

        Returns
        -------
        nk : ndarray of shape (K,)
            The weight sums plus ``10 eps`` (see :meth:`m_step`).
        means : ndarray of shape (K, d)
        covariances : ndarray
            The maximum-likelihood covariances with ``reg_covar`` added to
            the diagonal, in the layout of the covariance type.
        """
        nk = self.nk
        nk_eps = nk + self._eps10()
        safe = np.where(nk > 0, nk, 1.0)
        shift = self.s1 / nk_eps[:, None]
        means = self.ref + shift
        ct = self.covariance_type
        K, d = self.ref.shape
        if ct == "full":
            corr = self.s1[:, :, None] * self.s1[:, None, :] / safe[:, None, None]
            cov = (self.s2 - corr) / nk_eps[:, None, None]
            cov = 0.5 * (cov + np.swapaxes(cov, 1, 2))
            idx = np.arange(d)
            cov[:, idx, idx] += reg_covar
        elif ct == "tied":
            delta = means - self.ref2
            cov = (self.s2 - np.einsum("k,ki,kj->ij", nk_eps, delta, delta)) / nk_eps.sum()
            cov = 0.5 * (cov + cov.T)
            cov.flat[:: d + 1] += reg_covar
        else:
            s2, s1sq = self.s2, self.s1**2
            xbar2 = (self.ref + self.s1 / safe[:, None])**2
            if ct == "spherical":
                # only the sums over the features count (the spherical kernel
                # puts a component's whole second moment in column 0)
                s2, s1sq, xbar2 = (a.sum(axis=1, keepdims=True) for a in (s2, s1sq, xbar2))
            var = (s2 - s1sq / safe[:, None]) / nk_eps[:, None]
            # the centred form cannot be negative, but rounding may give -0
            var = np.maximum(var, 0.0)
            # scikit-learn's E[x^2] - mean^2 with both over nk + 10 eps equals
            # the centred variance plus nk 10eps xbar^2 / (nk + 10 eps)^2: a
            # bias far below the variance's last bit unless the variance is
            # ~0 (a component on one row), where it keeps the variance
            # positive as scikit-learn's does (its issue 18216)
            var += (nk * (nk_eps - nk) / nk_eps**2)[:, None] * xbar2
            if ct == "spherical":
                var = var[:, 0] / d
            var += reg_covar
            cov = var
        return nk_eps, means, cov
