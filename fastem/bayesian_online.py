"""fastem.MiniBatchBayesianGaussianMixture: online variational Bayes (``partial_fit``).

Stochastic variational inference (Hoffman, Blei, Wang and Paisley 2013) for
the model of :class:`fastem.BayesianGaussianMixture`.  After each mini-batch
B the global variational parameters lambda (the natural parameters of the
Dirichlet/Beta and Normal-Wishart posteriors) take a natural-gradient step

    lambda <- (1 - rho_t) lambda + rho_t (prior + N / |B| t(B)),
    rho_t = (t + learning_offset) ** -learning_decay,  0.5 < learning_decay <= 1,

where t(B) are the batch's expected sufficient statistics and N the size of
the data set.  The natural parameters are affine in the statistics, so the
step is stepwise EM's blend of per-row statistics (:class:`fastem._em.StepwiseEM`)
followed by the posterior update of the blend scaled to N rows
(:func:`fastem._variational.posterior`): the same driver, kernels and
conventions as :class:`fastem.MiniBatchGaussianMixture`.
"""

import numbers

import numpy as np
from sklearn.utils import check_random_state

from . import _em, _init, _threads, _variational
from ._data import ArrayData
from ._validation import STEPWISE_CONSTRAINTS, check_constraints, check_enough_rows
from .bayesian import BayesianGaussianMixture


class MiniBatchBayesianGaussianMixture(BayesianGaussianMixture):
    """Bayesian Gaussian mixture fitted by stochastic variational inference.

    Parameters
    ----------
    n_components, covariance_type, reg_covar, init_params,
    weight_concentration_prior_type, weight_concentration_prior,
    mean_precision_prior, mean_prior, degrees_of_freedom_prior, covariance_prior
        As in :class:`fastem.BayesianGaussianMixture`.  Priors left None are
        taken from the data in :meth:`fit` and from the first mini-batch in
        :meth:`partial_fit`.
    batch_size : int, default=4096
        Rows per mini-batch in :meth:`fit`.
    learning_decay : float in (0.5, 1], default=0.7
    learning_offset : float >= 0, default=10.0
        Step size ``rho_t = (t + learning_offset) ** -learning_decay`` for the
        t-th mini-batch after the burn-in (as in
        :class:`fastem.MiniBatchGaussianMixture`).
    burn_in : int >= 1, default=1
        Mini-batches averaged with equal weights before the first update.
    total_samples : float > 0 or None, default=None
        N, the size of the data set the posterior describes.  None: in
        :meth:`fit`, the number of rows (the sum of the sample weights); in
        :meth:`partial_fit`, the rows (weight) seen so far, so that the
        posterior is that of the stream up to now.
    max_iter : int, default=10
        Passes over the data in :meth:`fit`.
    tol : float, default=1e-3
        :meth:`fit` stops when the mean per-row score of a pass (each batch
        scored before its update) changes by less than ``tol``.
    random_state, verbose, verbose_interval, n_jobs, chunk_size, progress
        As in :class:`fastem.MiniBatchGaussianMixture`.
    missing : {'error', 'marginalize'}, default='error'
        What a NaN entry means: an error, or a missing value that every step
        marginalises (as in :class:`fastem.BayesianGaussianMixture`).

    Attributes
    ----------
    weights_, means_, covariances_, precisions_, precisions_cholesky_,
    weight_concentration_, mean_precision_, degrees_of_freedom_, and the
    ``*_prior_`` attributes
        As in :class:`fastem.BayesianGaussianMixture`.
    n_steps_ : int
        Mini-batches processed.
    n_rows_seen_ : int
    n_iter_ : int
        Passes made by the last :meth:`fit`.
    converged_ : bool
    lower_bound_ : float
        Mean per-row score (:meth:`score`) of the last pass, or of the last
        mini-batch after :meth:`partial_fit`, each batch scored before its update.
    lower_bounds_ : list of float
        One value per pass of :meth:`fit`.
    n_features_in_ : int
    """

    def __init__(self, *, n_components=1, covariance_type="full", batch_size=4096,
                 learning_decay=0.7, learning_offset=10.0, burn_in=1, total_samples=None,
                 max_iter=10, tol=1e-3, reg_covar=1e-6, init_params="kmeans",
                 weight_concentration_prior_type="dirichlet_process",
                 weight_concentration_prior=None, mean_precision_prior=None, mean_prior=None,
                 degrees_of_freedom_prior=None, covariance_prior=None, random_state=None,
                 verbose=0, verbose_interval=10, n_jobs=None, chunk_size=None,
                 progress=False, missing="error"):
        # scikit-learn's estimator contract: __init__ stores every parameter
        # unchanged under its own name (get_params and clone read them back),
        # so the estimators' lists look alike by design; checks run in fit.
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.batch_size = batch_size
        self.learning_decay = learning_decay
        self.learning_offset = learning_offset
        self.burn_in = burn_in
        self.total_samples = total_samples
        self.max_iter = max_iter
        self.tol = tol
        self.reg_covar = reg_covar
        self.init_params = init_params
        self.weight_concentration_prior_type = weight_concentration_prior_type
        self.weight_concentration_prior = weight_concentration_prior
        self.mean_precision_prior = mean_precision_prior
        self.mean_prior = mean_prior
        self.degrees_of_freedom_prior = degrees_of_freedom_prior
        self.covariance_prior = covariance_prior
        self.random_state = random_state
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.n_jobs = n_jobs
        self.chunk_size = chunk_size
        self.progress = progress
        self.missing = missing

    # -- parameters ----------------------------------------------------------

    def _check_online_parameters(self):
        self._check_bayesian_parameters()
        check_constraints(self, STEPWISE_CONSTRAINTS + (
            ("total_samples", lambda v: v is None or (
                isinstance(v, numbers.Real) and np.isfinite(v) and v > 0),
             "None or a finite float > 0 (the number of rows the posterior describes)"),))

    def _persist_attributes(self):
        return super()._persist_attributes() + [
            "n_steps_", "n_rows_seen_", "_stats", "_weight_seen", "_rng"]

    # -- state ---------------------------------------------------------------

    def _prior_from_attributes(self):
        return _variational.Prior(self.weight_concentration_prior_type,
                                  self.weight_concentration_prior_,
                                  self.mean_precision_prior_, self.mean_prior_,
                                  self.degrees_of_freedom_prior_, self.covariance_prior_)

    def _svi(self, prior, n_total):
        """The stepwise schedule whose update is the posterior of the blended
        per-row statistics scaled to ``n_total`` rows."""
        reg = self.reg_covar

        def update(blended):
            return _variational.posterior(blended.scale(n_total), prior, reg)

        return _em.StepwiseEM(reg, self.burn_in, self.learning_offset, self.learning_decay,
                              None, update=update, missing=self._marginalizes())

    def _initial_state(self, data, rng, prior, n_total):
        """The posterior of the initial responsibilities on ``data`` (a
        mini-batch or a subsample), scaled to ``n_total`` rows."""
        stats = _init.initial_stats(data, self.n_components, self.covariance_type,
                                    self.init_params, rng)
        stats = stats.scale(n_total / stats.weight_sum)
        return _em.StepwiseEM.fresh_state(_variational.posterior(stats, prior,
                                                                 self.reg_covar))

    def _commit(self, state, prior, weight_seen, lower_bound):
        self._set_prior(prior)
        self._set_params_from(state["iterate"])
        self._stats = state["stats"]
        self.n_steps_ = state["n_steps"]
        self.n_rows_seen_ = state["n_rows"]
        self._weight_seen = weight_seen
        self.lower_bound_ = lower_bound

    # -- public API ----------------------------------------------------------

    def partial_fit(self, X, y=None, sample_weight=None):
        """Update the posterior with one mini-batch (one natural-gradient step).

        The first call sets the priors left None from this batch and
        initialises the posterior from it.  A call that raises leaves the
        model exactly as it was; a model saved and loaded continues exactly
        as the original would.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self
        """
        with self._transaction(), self._announce_compiles():
            self._partial_fit(X, sample_weight)
        return self

    def _partial_fit(self, X, sample_weight):
        self._check_online_parameters()
        first = not hasattr(self, "_stats")
        data = self._as_data(X, sample_weight, reset=first)
        if not data.in_memory:
            raise TypeError("partial_fit takes an in-memory mini-batch (array-like); "
                            "use fit() for files and chunk sources.")
        batch_weight = (float(data.n_samples) if data.sample_weight is None
                        else float(np.sum(data.sample_weight)) * data.weight_scale)
        with _threads.thread_limits(self.n_jobs):
            if first:
                rng = check_random_state(self.random_state)
                check_enough_rows(data.n_samples, self.n_components,
                                  "The first mini-batch initialises the model: ")
                prior = self._prior(data)
                seen = batch_weight
                n_total = self.total_samples or seen
                state = self._initial_state(data, rng, prior, n_total)
            else:
                rng = self._rng
                prior = self._prior_from_attributes()
                seen = self._weight_seen + batch_weight
                n_total = self.total_samples or seen
                state = {"iterate": self._params(), "stats": self._stats, "avg": None,
                         "n_avg": 0, "n_steps": self.n_steps_, "n_rows": self.n_rows_seen_}
            state, ll = self._svi(prior, n_total).step(state, data.X, data.sample_weight)
        self._rng = rng
        self._commit(state, prior, seen, ll)
        if first:
            self.converged_ = False
            self.n_iter_ = 0
            self.lower_bounds_ = []

    def fit(self, X, y=None, sample_weight=None):
        """Fit by passes of mini-batches over the data (stochastic VI).

        In-memory arrays are visited in a new random order each pass;
        files, chunk sources, iterables and Dask collections in chunk order,
        each chunk cut into mini-batches.  The priors left None come from the
        whole data (two passes), the initialisation from a random sample.

        Returns
        -------
        self
        """
        with self._transaction(), self._announce_compiles():
            self._fit(X, sample_weight)
        return self

    def fit_predict(self, X, y=None, sample_weight=None):
        """Fit and return the label of each sample (equal to ``fit(X).predict(X)``).

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        self.fit(X, sample_weight=sample_weight)
        return self.predict(X)

    def _fit(self, X, sample_weight):
        self._check_online_parameters()
        data = self._as_data(X, sample_weight, reset=True)
        rng = check_random_state(self.random_state)
        with _threads.thread_limits(self.n_jobs):
            prior = self._prior(data)
            n_total = self.total_samples or self._total_weight(data)
            size = _init.subsample_size(data.n_samples or _init.KMEANS_SAMPLE_MIN,
                                        self.n_components)
            S, Sw = data.sample(size, rng)
            check_enough_rows(S.shape[0], self.n_components)
            sample = ArrayData(np.ascontiguousarray(S, dtype=data.dtype), Sw)
            sample.missing = data.missing
            state = self._initial_state(sample, rng, prior, n_total)
            per_pass = (None if data.n_samples is None
                        else -(-data.n_samples // self.batch_size))
            report = _em.Report(self.verbose, self.verbose_interval, self.progress,
                                total=None if per_pass is None else per_pass * self.max_iter,
                                desc="online VB", unit="batch")
            try:
                state, bounds, n_pass, converged = self._svi(prior, n_total).passes(
                    state, data, rng, self.batch_size, self.max_iter, self.tol, report)
            finally:
                report.bar.close()
        self._rng = rng
        self._commit(state, prior, n_total, bounds[-1] if bounds else -np.inf)
        self.lower_bounds_ = bounds
        self.n_iter_ = n_pass
        self.converged_ = converged
        _em.warn_not_converged(
            converged, self.max_iter,
            f"{type(self).__name__} did not converge in {self.max_iter} passes "
            f"(tol={self.tol}). Increase max_iter or tol.", min_iter=2, stacklevel=4)

    @staticmethod
    def _total_weight(data):
        """The number of rows (sum of the sample weights, in the units given)."""
        if data.sample_weight is not None:
            return float(np.sum(data.sample_weight)) * data.weight_scale
        if data.n_samples is not None:
            return float(data.n_samples)
        return float(sum(block.shape[0] for _, block, _ in data.iter_chunks()))
