"""fastem.BayesianGaussianMixture: a drop-in for sklearn.mixture.BayesianGaussianMixture.

Variational inference for a Gaussian mixture with a Dirichlet-process (or
Dirichlet) prior on the weights and Normal-Wishart priors on the components:
it switches off the components the data do not need.  Each iteration is one
E-step pass of the EM kernels (the variational E-step is a Gaussian quadratic
form with shifted constants, :mod:`fastem._variational`) and the posterior
update from the pass's :class:`~fastem._suffstats.SuffStats`, so it runs in
memory, out of core and on Dask like :class:`fastem.GaussianMixture`.
"""

import numbers

import numpy as np
from sklearn.utils import check_random_state

from . import _em, _init, _threads, _variational
from ._suffstats import GaussianParams, precision_cholesky
from ._validation import check_enough_rows
from .mixture import BatchFitMixin, _MixtureBase


def _check_shape(value, shape, name):
    if value.shape != shape:
        raise ValueError(
            f"The parameter '{name}' should have the shape of {shape}, but got "
            f"{value.shape}. Pass an array of shape {shape} (n_features = {shape[0]}).")


def _as_float_array(value, name, cls):
    try:
        arr = np.asarray(value)
        if arr.dtype not in (np.float32, np.float64):
            arr = arr.astype(np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"The '{name}' parameter of {cls} must be an array of numbers. "
                         f"Got {value!r:.80} instead.") from None
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"The '{name}' parameter of {cls} must be finite. "
                         f"Got {value!r:.80} instead.")
    return arr


def _is_positive_real(value):
    return (not isinstance(value, bool) and isinstance(value, numbers.Real)
            and np.isfinite(value) and value > 0)


def _is_array_like(value):
    return not np.isscalar(value) and (hasattr(value, "__len__") or hasattr(value, "shape")
                                       or hasattr(value, "__array__"))


def data_moments(data, full):
    """Weighted mean and covariance (ddof=1, frequency weights) of the rows,
    from two E-step passes with one unit Gaussian: the first finds the mean,
    the second the scatter around it.  ``full``: the (d, d) covariance, else
    the per-feature variances.  Works on every kind of :class:`RowData`.
    With missing values (and at least one NaN): :func:`_moments_with_missing`."""
    if data.missing:
        observed = _observed_moments(data)
        if observed is not None:
            return _moments_with_missing(data, full, *observed)
    d = data.n_features
    ct = "full" if full else "diag"
    ref = np.zeros((1, d))
    stats = None
    for _ in range(2):
        pc = np.eye(d)[None] if full else np.ones((1, d))
        params = GaussianParams(ct, np.ones(1), ref, pc.copy(), pc)
        stats = data.e_pass(params)
        ref = stats.ref + stats.s1 / stats.nk[0]
    n = stats.nk[0]
    s1 = stats.s1[0]
    scatter = stats.s2[0] - (np.outer(s1, s1) if full else s1**2) / n
    total = n * data.weight_scale
    _check_total(total)
    return ref[0], scatter * data.weight_scale / (total - 1.0)


def _check_total(total, column=None):
    if not np.all(total > 1.0):
        where, what = "", "one row (a sum of sample weights above 1)"
        if column is not None:
            j = int(np.flatnonzero(~(total > 1.0))[0])
            total = total[j]
            where = f" in column {j}"
            what = ("one observed value in each column (a sum of the sample weights of "
                    "its observed entries above 1)")
        raise ValueError(
            f"covariance_prior=None uses the covariance of the data, which needs more than "
            f"{what}; got {total!r}{where}. Pass covariance_prior, or scale sample_weight "
            "so that it counts rows.")


def _observed_moments(data):
    """Per column: the (weighted) mean and scatter of the observed entries and
    the sum of their weights (in units of the normalised weights); and the sum
    of the rows' weights.  None when no entry is missing.  Two passes (the
    means, then the scatter around them)."""
    d = data.n_features
    sums, tot = np.zeros(d), np.zeros(d)
    rows = 0.0
    any_missing = False
    for _, block, w in data.iter_chunks():
        obs = ~np.isnan(block)
        any_missing = any_missing or not obs.all()
        ww = np.ones(block.shape[0]) if w is None else w
        sums += ww @ np.where(obs, block, 0.0)
        tot += ww @ obs
        rows += float(ww.sum())
    if not any_missing:
        return None
    _check_total(tot * data.weight_scale, column=True)
    mean = sums / tot
    scatter = np.zeros(d)
    for _, block, w in data.iter_chunks():
        ww = np.ones(block.shape[0]) if w is None else w
        dev = np.where(np.isnan(block), 0.0, block - mean)
        scatter += ww @ dev**2
    return mean, scatter, tot, rows


#: The maximum-likelihood Gaussian of rows with missing values (the prior's
#: mean and covariance, 'full' and 'tied') is found by EM, stopped when the
#: mean log-likelihood changes by less than this (parameters then within
#: about sqrt of it, plenty for a prior), or after _PRIOR_MAX_ITER passes.
_PRIOR_TOL = 1e-10
_PRIOR_MAX_ITER = 100


def _moments_with_missing(data, full, mean, scatter, tot, rows):
    """The data's mean and covariance (ddof=1) when entries are missing.

    Per-feature variances ('diag', 'spherical'): those of each column's
    observed entries, the maximum-likelihood estimate of a Gaussian with a
    diagonal covariance under marginalisation.  A full covariance: the
    maximum-likelihood Gaussian of the observed entries, by EM through the
    same missing-value E-step as the fits (from the per-column moments), then
    rescaled by total / (total - 1) as the complete-data covariance is."""
    scale = data.weight_scale
    if not full:
        return mean, scatter * scale / (tot * scale - 1.0)
    var = scatter / tot
    cov = np.diag(var)[None]
    params = GaussianParams("full", np.ones(1), mean[None], cov,
                            precision_cholesky(cov, "full"))
    run = _em.Run(params, _PRIOR_TOL, 0.0, _PRIOR_MAX_ITER)
    _em.run_batch([run], data)
    total = rows * scale
    _check_total(total)
    return run.params.means[0], run.params.covariances[0] * total / (total - 1.0)


class BayesianGaussianMixture(BatchFitMixin, _MixtureBase):
    """Variational Bayesian estimation of a Gaussian mixture.

    A drop-in replacement for :class:`sklearn.mixture.BayesianGaussianMixture`
    with the same parameters, attributes and results (from the same
    initialisation), computed by the one-pass kernels of
    :class:`fastem.GaussianMixture`; plus ``sample_weight``, ``n_jobs``,
    out-of-core and Dask input (``chunk_size``) and ``progress``.  For
    online variational Bayes (``partial_fit``) see
    :class:`fastem.MiniBatchBayesianGaussianMixture`.

    Parameters
    ----------
    n_components : int, default=1
        Upper bound on the number of components; the posterior switches
        off those the data do not need (see :meth:`effective_n_components`).
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default='full'
    tol : float, default=1e-3
        The fit stops when the lower bound (a sum over the samples, as in
        scikit-learn) changes by less than ``tol``.
    reg_covar : float, default=1e-6
    max_iter : int, default=100
    n_init : int, default=1
    init_params : {'kmeans', 'k-means++', 'random', 'random_from_data'}, default='kmeans'
        As in :class:`fastem.GaussianMixture` (k-means on a subsample).
    weight_concentration_prior_type : {'dirichlet_process', 'dirichlet_distribution'}, \
default='dirichlet_process'
    weight_concentration_prior : float > 0 or None, default=None
        None: ``1 / n_components``.
    mean_precision_prior : float > 0 or None, default=None
        None: 1.
    mean_prior : array-like of shape (n_features,) or None, default=None
        None: the (weighted) mean of X.
    degrees_of_freedom_prior : float > n_features - 1 or None, default=None
        None: ``n_features``.
    covariance_prior : float or array-like, default=None
        None: the (weighted) covariance of X (ddof=1), in the layout of the
        covariance type: (n_features, n_features) for 'full' and 'tied',
        (n_features,) for 'diag', a float for 'spherical'.
    random_state : int, RandomState instance or None, default=None
    warm_start : bool, default=False
    verbose : int, default=0
    verbose_interval : int, default=10
    n_jobs : int or None, default=None
        Number of Numba threads; results are bitwise identical for any value.
    chunk_size : int or None, default=None
        Rows per chunk when X is streamed from a file or chunk source.
    progress : bool, default=False
        A tqdm progress bar of the iterations on stderr.
    missing : {'error', 'marginalize'}, default='error'
        What a NaN entry of X means.  'error': invalid input (the error
        names the first one).  'marginalize': a missing value, treated as a
        latent variable of the variational posterior (q(z, x_m) =
        q(z) q(x_m | z), :mod:`fastem._variational`).  A row's E-step then
        uses the observed entries only (the observed-data marginal of
        :class:`fastem.GaussianMixture` with the posterior's precisions and
        constants), and the update the expected statistics of the missing
        ones given the observed ones, under each component.  ``predict``,
        ``predict_proba``, ``score_samples`` and ``score`` use the observed
        entries too, and :meth:`impute` fills the missing ones (under
        q(x_m | z)).  A row with no observed entry is an error.  Rows
        without NaN are processed exactly as with 'error' (bitwise the same
        fit when there is none).  Priors left None come from the observed
        entries: the column means and variances ('diag', 'spherical'), or
        the maximum-likelihood Gaussian of the observed entries ('full',
        'tied', by EM).  Initialisation as in :class:`fastem.GaussianMixture`.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
    means_ : ndarray of shape (n_components, n_features)
    covariances_, precisions_, precisions_cholesky_ : ndarray
        Shapes as in :class:`fastem.GaussianMixture`.
    weight_concentration_ : ndarray of shape (n_components,), or a tuple of two
        For the Dirichlet process, the Beta parameters of the sticks.
    mean_precision_ : ndarray of shape (n_components,)
    degrees_of_freedom_ : ndarray of shape (n_components,) (float for 'tied')
    weight_concentration_prior_, mean_precision_prior_, mean_prior_,
    degrees_of_freedom_prior_, covariance_prior_
        The priors used.
    converged_ : bool
    n_iter_ : int
    lower_bound_ : float
        The lower bound of the best fit (a sum over the samples).
    lower_bounds_ : list of float
        The lower bound after each iteration of the best fit.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
    """

    def __init__(self, *, n_components=1, covariance_type="full", tol=1e-3, reg_covar=1e-6,
                 max_iter=100, n_init=1, init_params="kmeans",
                 weight_concentration_prior_type="dirichlet_process",
                 weight_concentration_prior=None, mean_precision_prior=None, mean_prior=None,
                 degrees_of_freedom_prior=None, covariance_prior=None, random_state=None,
                 warm_start=False, verbose=0, verbose_interval=10, n_jobs=None,
                 chunk_size=None, progress=False, missing="error"):
        # scikit-learn's estimator contract: __init__ stores every parameter
        # unchanged under its own name (get_params and clone read them back),
        # so the estimators' lists look alike by design; checks run in fit.
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weight_concentration_prior_type = weight_concentration_prior_type
        self.weight_concentration_prior = weight_concentration_prior
        self.mean_precision_prior = mean_precision_prior
        self.mean_prior = mean_prior
        self.degrees_of_freedom_prior = degrees_of_freedom_prior
        self.covariance_prior = covariance_prior
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.n_jobs = n_jobs
        self.chunk_size = chunk_size
        self.progress = progress
        self.missing = missing

    # -- parameters ----------------------------------------------------------

    def _check_bayesian_parameters(self):
        """Every parameter, with scikit-learn's texts (and how to fix them)."""
        self._check_base_parameters()
        cls = type(self).__name__
        pt = self.weight_concentration_prior_type
        if pt not in _variational.PRIOR_TYPES:
            raise ValueError(
                f"The 'weight_concentration_prior_type' parameter of {cls} must be a str "
                "among {'dirichlet_process', 'dirichlet_distribution'}. "
                f"Got {pt!r} instead.")
        for name in ("weight_concentration_prior", "mean_precision_prior",
                     "degrees_of_freedom_prior"):
            value = getattr(self, name)
            if value is not None and not _is_positive_real(value):
                raise ValueError(
                    f"The '{name}' parameter of {cls} must be None or a float in the "
                    f"range (0.0, inf). Got {value!r} instead.")
        if self.mean_prior is not None and not _is_array_like(self.mean_prior):
            raise ValueError(f"The 'mean_prior' parameter of {cls} must be None or an "
                             f"array-like. Got {self.mean_prior!r} instead.")
        cp = self.covariance_prior
        if cp is not None and not (_is_array_like(cp) or _is_positive_real(cp)):
            raise ValueError(
                f"The 'covariance_prior' parameter of {cls} must be None, an array-like "
                f"or a float in the range (0.0, inf). Got {cp!r} instead.")

    def _prior(self, data):
        """The prior for these rows (scikit-learn's ``*_prior_`` rules); the
        data's mean and covariance are computed only where a prior needs them."""
        cls = type(self).__name__
        d = data.n_features
        ct = self.covariance_type
        K = self.n_components
        alpha = 1.0 / K if self.weight_concentration_prior is None \
            else self.weight_concentration_prior
        beta = 1.0 if self.mean_precision_prior is None else self.mean_precision_prior
        nu = self.degrees_of_freedom_prior
        if nu is None:
            nu = d
        elif not nu > d - 1.0:
            raise ValueError(
                f"The parameter 'degrees_of_freedom_prior' should be greater than {d - 1}, "
                f"but got {nu:.3f}. The Wishart prior needs degrees_of_freedom_prior > "
                "n_features - 1; pass a larger value or None (n_features).")
        mean = cov = None
        if self.mean_prior is None or self.covariance_prior is None:
            mean, cov = data_moments(data, full=ct in ("full", "tied"))
        if self.mean_prior is not None:
            mean = _as_float_array(self.mean_prior, "mean_prior", cls)
            _check_shape(mean, (d,), "means")
        if self.covariance_prior is None:
            psi = float(np.mean(cov)) if ct == "spherical" else cov
        elif ct in ("full", "tied"):
            psi = _as_float_array(self.covariance_prior, "covariance_prior", cls)
            _check_shape(psi, (d, d), f"{ct} covariance_prior")
            if not (np.allclose(psi, psi.T) and np.all(np.linalg.eigvalsh(psi) > 0.0)):
                raise ValueError(f"'{ct} precision' should be symmetric, positive-definite "
                                 "(covariance_prior must be a symmetric positive-definite "
                                 "matrix)")
        elif ct == "diag":
            psi = _as_float_array(self.covariance_prior, "covariance_prior", cls)
            _check_shape(psi, (d,), f"{ct} covariance_prior")
            if np.any(psi <= 0.0):
                raise ValueError("'diag precision' should be positive (covariance_prior "
                                 f"must hold positive variances; got {psi!r})")
        else:
            psi = self.covariance_prior
            if not _is_positive_real(psi):
                raise ValueError(
                    f"The 'covariance_prior' parameter of {cls} must be a float > 0 for "
                    f"covariance_type='spherical'. Got {psi!r} instead.")
        return _variational.Prior(self.weight_concentration_prior_type, alpha, beta, mean,
                                  nu, psi)

    def _update_rule(self, prior, weight_scale=1.0):
        """The variational update and lower bound, as the EM driver takes them.

        The statistics of a pass are in units of the normalised weights
        (:func:`fastem._validation.normalise_weights`); the posterior counts
        rows in units of the weights given (integer weights equal repeated
        rows), so they are scaled by ``weight_scale`` first."""
        reg = self.reg_covar

        def update(stats, old):
            if weight_scale != 1.0:
                stats = stats.scale(weight_scale)
            new = _variational.posterior(stats, prior, reg)
            return new, _variational.lower_bound(stats, old, new)

        return update

    # -- the model -----------------------------------------------------------

    def _params(self):
        return _variational.build(
            self.weight_concentration_prior_type, self.covariance_type,
            self.weight_concentration_, self.mean_precision_, self.means_,
            self.degrees_of_freedom_, self.covariances_, self.precisions_cholesky_)

    def _set_params_from(self, params):
        super()._set_params_from(params)
        self.weight_concentration_ = params.weight_concentration
        self.mean_precision_ = params.mean_precision
        self.degrees_of_freedom_ = params.degrees_of_freedom

    def _set_prior(self, prior):
        self.weight_concentration_prior_ = prior.weight_concentration
        self.mean_precision_prior_ = prior.mean_precision
        self.mean_prior_ = prior.mean
        self.degrees_of_freedom_prior_ = prior.degrees_of_freedom
        self.covariance_prior_ = prior.covariance

    def _persist_attributes(self):
        return ["weights_", "means_", "covariances_", "precisions_",
                "precisions_cholesky_", "weight_concentration_", "mean_precision_",
                "degrees_of_freedom_", "weight_concentration_prior_",
                "mean_precision_prior_", "mean_prior_", "degrees_of_freedom_prior_",
                "covariance_prior_", "converged_", "n_iter_", "lower_bound_",
                "lower_bounds_", "n_features_in_", "feature_names_in_"]

    def effective_n_components(self, threshold=1e-3):
        """Number of components whose weight exceeds ``threshold``.

        With a Dirichlet-process prior the posterior gives the components the
        data do not need weights near zero; this counts the others.

        Parameters
        ----------
        threshold : float in [0, 1), default=1e-3

        Returns
        -------
        int
        """
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self)
        if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) \
                or not 0.0 <= threshold < 1.0:
            raise ValueError(f"threshold must be a float in [0, 1), got {threshold!r}; "
                             "weights sum to 1, so e.g. 1e-3 or 1e-2.")
        return int(np.sum(self.weights_ > threshold))

    @property
    def bic(self):
        raise AttributeError(
            f"'{type(self).__name__}' object has no attribute 'bic': a variational "
            "mixture has no maximum-likelihood criterion; compare lower_bound_ or use "
            "effective_n_components()")

    @property
    def aic(self):
        raise AttributeError(
            f"'{type(self).__name__}' object has no attribute 'aic': a variational "
            "mixture has no maximum-likelihood criterion; compare lower_bound_ or use "
            "effective_n_components()")

    # -- fit -----------------------------------------------------------------

    def fit(self, X, y=None, sample_weight=None):
        """Estimate the variational posterior.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or a data source
            In-memory arrays, or a path, chunk source, iterable of blocks or
            Dask collection, streamed as in :meth:`fastem.GaussianMixture.fit`
            (the result equals the in-memory fit).
        y : ignored
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative row weights; integer weights equal repeating rows.

        Returns
        -------
        self
        """
        with self._transaction(), self._announce_compiles():
            self._fit(X, sample_weight)
        return self

    def _fit(self, X, sample_weight):
        self._check_bayesian_parameters()
        data = self._as_data(X, sample_weight, reset=True)
        check_enough_rows(data.n_samples, self.n_components)
        warm = self.warm_start and hasattr(self, "converged_")
        n_init = 1 if warm else self.n_init
        rng = check_random_state(self.random_state)
        with _threads.thread_limits(self.n_jobs):
            prior = self._prior(data)
            scale = data.weight_scale
            update = self._update_rule(prior, scale)

            def start(report):
                if warm:
                    params, bound = self._params(), self.lower_bound_
                else:
                    stats = _init.initial_stats(data, self.n_components, self.covariance_type,
                                                self.init_params, rng)
                    if scale != 1.0:
                        stats = stats.scale(scale)
                    params, bound = _variational.posterior(stats, prior, self.reg_covar), -np.inf
                return _em.Run(params, self.tol, self.reg_covar, self.max_iter, bound, report,
                               update=update)

            best = _em.run_starts(n_init, start, data, self.verbose, self.verbose_interval,
                                  self.progress, self.max_iter, desc="VB")
        self.converged_ = best.converged
        _em.warn_not_converged(best.converged, self.max_iter, _em.BATCH_WARNING,
                               stacklevel=4)
        self._set_prior(prior)
        self._set_params_from(best.params)
        self.n_iter_ = best.n_iter
        self.lower_bound_ = best.lower_bound
        self.lower_bounds_ = best.bounds
        return data
