"""fastem.GaussianMixture: a drop-in for sklearn.mixture.GaussianMixture.

The estimator holds parameters, validation and the EM loop; every numeric
loop runs in the Numba kernels through :mod:`fastem._estep`, which return
:class:`~fastem._suffstats.SuffStats`.
"""

import numbers

import numpy as np
from scipy.special import logsumexp
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from . import _em, _estep, _init, _threads
from ._data import as_data
from ._suffstats import GaussianParams
from ._validation import (check_base_parameters, check_enough_rows, check_initial_parameters,
                          check_sample_weight, normalise_weights,
                          precision_cholesky_from_precisions, validate_X)



class _MixtureBase(DensityMixin, BaseEstimator):
    """Shared parameter checks, prediction and scoring of fastem mixtures."""

    # -- parameter checks ----------------------------------------------------

    def _check_base_parameters(self):
        check_base_parameters(self)

    def _check_initial_parameters(self, n_features):
        """Validate weights_init, means_init and precisions_init
        (:func:`fastem._validation.check_initial_parameters`)."""
        return check_initial_parameters(self, n_features)

    def _transaction(self):
        """A context in which a failure leaves the estimator exactly as it was.

        Fits build their results aside and publish them at the end, but
        validation sets ``n_features_in_`` early and a fit may fail after
        that (bad values, a file changed under it, a singular covariance,
        Ctrl-C): on any exception every attribute, public and private, is
        put back as it was, so a failed re-fit can never leave a model whose
        parts disagree.
        """
        return _em.Transaction(self)

    def _announce_compiles(self):
        """With ``verbose`` set, a fit that must compile kernels says so first
        (one line on stderr)."""
        import contextlib

        from ._announce import announcing

        if getattr(self, "verbose", 0) > 0:
            return announcing(True)
        return contextlib.nullcontext()

    def _params(self):
        return GaussianParams(self.covariance_type, self.weights_, self.means_,
                              self.covariances_, self.precisions_cholesky_)

    def _set_params_from(self, params):
        self.weights_ = params.weights
        self.means_ = params.means
        self.covariances_ = params.covariances
        self.precisions_cholesky_ = params.precisions_cholesky
        self.precisions_ = params.precisions()

    def _collect(self, data, reduce, width=None, dtype=np.float64):
        """``reduce`` of the weighted log probabilities of bounded row chunks,
        stacked (a lazy array for Dask data)."""
        with _threads.thread_limits(self.n_jobs):
            return data.collect(self._params(), reduce, width, dtype)

    def _initial_params(self, data, rng, inits):
        """Initial GaussianParams: the given initial values, the rest from
        ``init_params`` (scikit-learn's rules)."""
        weights, means, precisions = inits
        if weights is None or means is None or precisions is None:
            stats = _init.initial_stats(data, self.n_components, self.covariance_type,
                                        self.init_params, rng)
            est = stats.m_step(self.reg_covar)
        ct = self.covariance_type
        if weights is None:
            weights = est.weights
        if means is None:
            means = est.means
        if precisions is None:
            covs, pcs = est.covariances, est.precisions_cholesky
        else:
            pcs, covs = precision_cholesky_from_precisions(precisions, ct)
        return GaussianParams(ct, weights, means, covs, pcs)

    def _as_data(self, X, sample_weight=None, reset=False):
        """X as a :class:`~fastem._data.RowData` (:func:`fastem._data.as_data`),
        its number of features recorded (``reset``) or checked against the
        fit's.  In-memory arrays go through scikit-learn's validation, which
        does the same; other inputs are checked here."""
        validated = []

        def validate(A):
            validated.append(True)
            return validate_X(self, A, reset=reset, min_samples=2 if reset else 1)

        data = as_data(X, sample_weight, chunk_size=getattr(self, "chunk_size", None),
                       validate_array=validate, missing=self._marginalizes())
        if not validated:
            self._record_features(data, reset)
        return data

    def _record_features(self, data, reset):
        d = data.n_features
        if reset:
            self.n_features_in_ = d
            if data.feature_names is not None:
                self.feature_names_in_ = data.feature_names
            elif hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
        elif d != self.n_features_in_:
            raise ValueError(
                f"X has {d} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input.")

    def save(self, path):
        """Save the fitted model (and any online state) to a ``.npz`` file.

        The file holds arrays and JSON metadata only, never pickles; read it
        back with :func:`fastem.load`.
        """
        from .persist import save

        save(self, path)

    def _marginalizes(self):
        return getattr(self, "missing", "error") == "marginalize"

    def _check_predict_X(self, X):
        check_is_fitted(self)
        return self._as_data(X, reset=False)

    # -- public API ----------------------------------------------------------

    def score_samples(self, X):
        """Log-likelihood of each sample under the model.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        log_prob : ndarray of shape (n_samples,)
        """
        data = self._check_predict_X(X)
        return self._collect(data, lambda wlp: logsumexp(wlp, axis=1))

    def score(self, X, y=None, sample_weight=None):
        """Mean (weighted) per-sample log-likelihood of X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        log_likelihood : float
        """
        total, n, _ = self._weighted_pass(X, sample_weight)
        return float(total / n)

    def predict(self, X):
        """Label of the most probable component for each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        data = self._check_predict_X(X)
        return self._collect(data, lambda wlp: wlp.argmax(axis=1), dtype=np.int64)

    def predict_proba(self, X):
        """Posterior probability of each component for each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        resp : ndarray of shape (n_samples, n_components)
        """
        data = self._check_predict_X(X)
        return self._collect(
            data, lambda wlp: np.exp(wlp - logsumexp(wlp, axis=1)[:, None]),
            width=self.n_components)

    def impute(self, X, *, method="mean", random_state=None):
        """Fill the missing (NaN) entries of X under the fitted mixture.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            In memory; NaN marks a missing entry.  Rows without NaN are
            returned unchanged.  A row with no observed entry is an error.
        method : {'mean', 'sample'}, default='mean'
            'mean': the conditional mean E[x_m | x_o] =
            sum_k p(k | x_o) E[x_m | x_o, k] (the best guess in squared
            error).  'sample': one draw from the conditional distribution
            p(x_m | x_o) (a component drawn from p(k | x_o), then x_m from
            its conditional Gaussian); call it with several ``random_state``
            values for multiple imputation.
        random_state : int, RandomState instance or None, default=None
            The draws of 'sample'.

        Returns
        -------
        X_filled : ndarray of shape (n_samples, n_features)
            A copy of X (float32 stays float32) with no NaN.
        """
        from . import _missing

        check_is_fitted(self)
        if method not in ("mean", "sample"):
            raise ValueError(f"The 'method' parameter of impute must be 'mean' or 'sample'. "
                             f"Got {method!r} instead.")
        X = validate_X(_Marginalizing(self), X, reset=False)
        rng = check_random_state(random_state)
        return _missing.impute(X, self._params(), method, rng)

    def sample(self, n_samples=1):
        """Generate random samples from the fitted mixture.

        Parameters
        ----------
        n_samples : int, default=1

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        y : ndarray of shape (n_samples,), the component of each sample
        """
        check_is_fitted(self)
        if isinstance(n_samples, bool) or not isinstance(n_samples, numbers.Integral) \
                or n_samples < 1:
            raise ValueError(
                f"Invalid value for 'n_samples': {n_samples!r}. The sampling requires "
                "at least one sample.")
        _, d = self.means_.shape
        rng = check_random_state(self.random_state)
        counts = rng.multinomial(n_samples, self.weights_)
        ct = self.covariance_type
        parts = []
        for k, (mean, m) in enumerate(zip(self.means_, counts)):
            if ct in ("full", "tied"):
                cov = self.covariances_[k] if ct == "full" else self.covariances_
                parts.append(rng.multivariate_normal(mean, cov, int(m)))
            else:
                parts.append(mean + rng.standard_normal(size=(m, d))
                             * np.sqrt(self.covariances_[k]))
        X = np.vstack(parts)
        y = np.concatenate([np.full(m, k, dtype=np.int64) for k, m in enumerate(counts)])
        return X, y

    def _n_parameters(self):
        """Number of free parameters of the model."""
        K, d = self.means_.shape
        ct = self.covariance_type
        if ct == "full":
            cov = K * d * (d + 1) / 2.0
        elif ct == "diag":
            cov = K * d
        elif ct == "tied":
            cov = d * (d + 1) / 2.0
        else:
            cov = K
        return int(cov + K * d + K - 1)

    def _weighted_total(self, X, sample_weight):
        """Total (weighted) log-likelihood of X and the sample size (the sum
        of the weights).

        One E-step pass with the fit's own kernel: no per-row array, and no
        second kernel to compile on a first run.  Rows with zero density
        under every component make the total -inf, as in scikit-learn.
        """
        total, n, scale = self._weighted_pass(X, sample_weight)
        if scale == 1.0:
            return total, n
        return total * scale, n * scale

    def _weighted_pass(self, X, sample_weight):
        """(total, n, scale): the totals of :meth:`_weighted_total` for the
        weights divided by ``scale`` (their maximum), so that total / n
        does not overflow however large the weights."""
        check_is_fitted(self)
        data = self._as_data(X, sample_weight, reset=False)
        try:
            with _threads.thread_limits(self.n_jobs):
                stats = data.e_pass(self._params())
        except _estep.ZeroDensityError:
            ll = self.score_samples(X)
            if sample_weight is None:
                return float(ll.sum()), ll.shape[0], 1.0
            w, scale = normalise_weights(check_sample_weight(sample_weight, ll.shape[0]))
            return float(np.sum(w * ll)), float(np.sum(w)), scale
        if sample_weight is None:
            return stats.loglik, stats.n_rows, 1.0
        return stats.loglik, stats.weight_sum, data.weight_scale

    def _criteria(self, X, sample_weight=None):
        """BIC, AIC, the total log-likelihood, the sample size and the number
        of free parameters of the model on X, from one E-step pass."""
        total, n = self._weighted_total(X, sample_weight)
        p = self._n_parameters()
        return {"bic": -2 * total + p * np.log(n), "aic": -2 * total + 2 * p,
                "total": total, "n": n, "n_parameters": p}

    def bic(self, X, sample_weight=None):
        """Bayesian information criterion for the model on X (lower is better).

        With ``sample_weight`` the log-likelihood is weighted and the sample
        size is the sum of the weights.
        """
        return self._criteria(X, sample_weight)["bic"]

    def aic(self, X, sample_weight=None):
        """Akaike information criterion for the model on X (lower is better)."""
        return self._criteria(X, sample_weight)["aic"]


class _Marginalizing:
    """An estimator seen with ``missing='marginalize'`` by validation
    (:meth:`_MixtureBase.impute` accepts NaN whatever the option)."""

    missing = "marginalize"

    def __init__(self, est):
        self._est = est

    def __getattr__(self, name):
        return getattr(self._est, name)


class BatchFitMixin:
    """``fit_predict`` of the estimators whose ``_fit`` makes full passes and
    returns its data (GaussianMixture, BayesianGaussianMixture)."""

    def fit_predict(self, X, y=None, sample_weight=None):
        """Fit the model and return the label of each sample.

        Equal to ``fit(X).predict(X)``, labelling the rows with the fitted
        parameters in one more pass.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        with self._transaction(), self._announce_compiles():
            data = self._fit(X, sample_weight)
        return self._collect(data, lambda wlp: wlp.argmax(axis=1), dtype=np.int64)


class GaussianMixture(BatchFitMixin, _MixtureBase):
    """Gaussian mixture model fitted by Expectation-Maximization.

    A drop-in replacement for :class:`sklearn.mixture.GaussianMixture` with
    the same parameters, attributes and results, computed by one-pass Numba
    kernels that never hold an (n_samples, n_components) array during
    ``fit``, plus ``sample_weight`` and ``n_jobs``.

    Parameters
    ----------
    n_components : int, default=1
        Number of mixture components.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default='full'
    tol : float, default=1e-3
        Convergence threshold: EM stops when the change of the mean per-sample
        log-likelihood is below ``tol``.
    reg_covar : float, default=1e-6
        Non-negative regularisation added to the diagonal of covariances.
    max_iter : int, default=100
        Number of EM iterations per initialisation.
    n_init : int, default=1
        Number of initialisations; the best result is kept.
    init_params : {'kmeans', 'k-means++', 'random', 'random_from_data', \
'kmeans_standardized', 'hierarchical'}, default='kmeans'
        'kmeans' runs k-means++ seeding and Lloyd iterations on a random
        subsample of at most ``max(20000, 500 * n_components)`` rows, then
        assigns every row to its nearest centre; 'k-means++' seeds on such a
        subsample.  'random' and 'random_from_data' are as in scikit-learn.
        Not in scikit-learn:

        - 'kmeans_standardized': k-means on that subsample with every column
          standardised (zero mean, unit variance), so that columns in large
          units do not dominate the distances; the initial parameters are
          those of the subsample's k-means groups.
        - 'hierarchical': Ward's agglomeration (the model-based
          agglomeration of a mixture with equal spherical covariances) of at
          most 2,000 of those rows after whitening them, cut at
          ``n_components`` groups; deterministic for a given subsample.
    weights_init : array-like of shape (n_components,), default=None
    means_init : array-like of shape (n_components, n_features), default=None
    precisions_init : array-like, default=None
        Shape (n_components,) spherical, (n_features, n_features) tied,
        (n_components, n_features) diag, (n_components, n_features,
        n_features) full.
    random_state : int, RandomState instance or None, default=None
    warm_start : bool, default=False
        Start from the previous solution when ``fit`` is called again
        (``n_init`` is then ignored).
    verbose : int, default=0
    verbose_interval : int, default=10
    n_jobs : int or None, default=None
        Number of Numba threads (None: Numba's setting, -1: all cores).
        Results are bitwise identical for any value.
    chunk_size : int or None, default=None
        Rows read per chunk when X is streamed from disk or a chunk source
        (default :data:`fastem.io.DEFAULT_CHUNK_SIZE`, 65536).  Memory use
        is bounded by a few chunks.  With sizes that are multiples of 4096
        (2048 for more than 8 features) the statistics are summed in exactly
        the order of an in-memory fit.
    progress : bool, default=False
        Show a tqdm progress bar of the EM iterations on stderr (needs
        ``pip install 'fastem[progress]'``).
    missing : {'error', 'marginalize'}, default='error'
        What a NaN entry of X means.  'error': invalid input (the error
        names the first one).  'marginalize': a missing value.  EM then
        maximises the likelihood of the observed entries exactly: a row's
        E-step uses the marginal density of its observed entries, and the
        M-step the conditional expectations of the missing ones (and of
        their products) given the observed ones, under each component.
        ``predict``, ``predict_proba``, ``score_samples``, ``score``,
        ``bic`` and ``aic`` then use the marginal density of the observed
        entries too, and :meth:`impute` fills the missing entries.  A row
        with no observed entry is an error.  Rows without NaN are processed
        exactly as with 'error' (bitwise the same fit when there is none).
        With 'kmeans' (and 'k-means++', 'random_from_data') initialisation,
        k-means runs on the complete rows of its sample when there are at
        least ``20 * n_components`` of them, otherwise on the sample with
        each missing entry replaced by its column's mean.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
    means_ : ndarray of shape (n_components, n_features)
    covariances_ : ndarray (shape depends on ``covariance_type``)
    precisions_ : ndarray (same shape)
    precisions_cholesky_ : ndarray (same shape)
    converged_ : bool
    n_iter_ : int
    lower_bound_ : float
        Mean per-sample log-likelihood of the best fit (evaluated before its
        last M-step, as scikit-learn does).
    lower_bounds_ : list of float
        ``lower_bound_`` at each iteration of the best fit.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Only when X has feature names that are all strings.

    Notes
    -----
    Parameters are stored in float64; float32 data is processed by float32
    kernels: each block of at most 256 rows is summed in float32 around the
    current means and the block sums are accumulated in float64.
    """

    def __init__(self, n_components=1, *, covariance_type="full", tol=1e-3,
                 reg_covar=1e-6, max_iter=100, n_init=1, init_params="kmeans",
                 weights_init=None, means_init=None, precisions_init=None,
                 random_state=None, warm_start=False, verbose=0,
                 verbose_interval=10, n_jobs=None, chunk_size=None, progress=False,
                 missing="error"):
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
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.n_jobs = n_jobs
        self.chunk_size = chunk_size
        self.progress = progress
        self.missing = missing

    def _persist_attributes(self):
        return ["weights_", "means_", "covariances_", "precisions_",
                "precisions_cholesky_", "converged_", "n_iter_", "lower_bound_",
                "lower_bounds_", "n_features_in_", "feature_names_in_"]

    def fit(self, X, y=None, sample_weight=None):
        """Estimate the model parameters with the EM algorithm.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or a data source
            In-memory arrays (including memmaps) are processed in place.
            A path (.npy, .csv, .parquet, .h5::dataset, .zarr), a
            :class:`fastem.io.ChunkSource`, an array-like that is not a numpy
            array (h5py, zarr) or an iterable of 2-D blocks is streamed chunk
            by chunk, one pass per EM iteration, with memory bounded by
            ``chunk_size``; the result equals the in-memory fit.
        y : ignored
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative row weights: each row's responsibilities are scaled
            by its weight; integer weights equal repeating rows.

        Returns
        -------
        self
        """
        with self._transaction(), self._announce_compiles():
            self._fit(X, sample_weight)
        return self

    # -- the EM driver -------------------------------------------------------

    def _fit(self, X, sample_weight):
        self._check_base_parameters()
        data = self._as_data(X, sample_weight, reset=True)
        check_enough_rows(data.n_samples, self.n_components)
        inits = self._check_initial_parameters(data.n_features)
        warm = self.warm_start and hasattr(self, "converged_")
        n_init = 1 if warm else self.n_init
        rng = check_random_state(self.random_state)

        def start(report):
            if warm:
                return self._new_run(self._params(), self.lower_bound_, report)
            return self._new_run(self._initial_params(data, rng, inits), -np.inf, report)

        with _threads.thread_limits(self.n_jobs):
            best = _em.run_starts(n_init, start, data, self.verbose, self.verbose_interval,
                                  self.progress, self.max_iter)
        self._finish_fit(best)
        return data

    def _new_run(self, params, lower_bound, report=None):
        return _em.Run(params, self.tol, self.reg_covar, self.max_iter, lower_bound, report)

    def _finish_fit(self, run):
        """Publish the result of a fit (and warn, as scikit-learn does, when
        it did not converge)."""
        self.converged_ = run.converged
        _em.warn_not_converged(run.converged, self.max_iter, _em.BATCH_WARNING,
                               stacklevel=5)
        self._set_params_from(run.params)
        self.n_iter_ = run.n_iter
        self.lower_bound_ = run.lower_bound
        self.lower_bounds_ = run.bounds
