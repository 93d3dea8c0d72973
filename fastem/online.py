"""fastem.MiniBatchGaussianMixture: stepwise (online) EM with ``partial_fit``.

Stepwise EM (Cappé and Moulines 2009; Liang and Klein 2009) keeps running
sufficient statistics, normalised per row, and blends each mini-batch's
statistics into them with a step size

    rho_t = (t + learning_offset) ** -learning_decay,  0.5 < learning_decay <= 1,

followed by an M-step.  The first ``burn_in`` batches are averaged with equal
weights before the first M-step.  Optionally the parameters are averaged
over the steps (Polyak-Ruppert).  The kernels and the M-step are the ones of
:class:`fastem.GaussianMixture`.
"""

import numbers

import numpy as np
from sklearn.utils import check_random_state

from . import _em, _init, _threads
from ._validation import STEPWISE_CONSTRAINTS, check_constraints, check_enough_rows
from ._data import ArrayData
from .mixture import _MixtureBase


class MiniBatchGaussianMixture(_MixtureBase):
    """Gaussian mixture fitted by stepwise online EM on mini-batches.

    Parameters
    ----------
    n_components : int, default=1
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default='full'
    batch_size : int, default=4096
        Rows per mini-batch.
    learning_decay : float in (0.5, 1], default=0.7
    learning_offset : float >= 0, default=10.0
        Step size ``rho_t = (t + learning_offset) ** -learning_decay`` for the
        t-th mini-batch after the burn-in.
    burn_in : int >= 1, default=1
        Mini-batches whose statistics are averaged with equal weights before
        the first M-step.
    average : bool or int, default=False
        Polyak-Ruppert averaging of the parameters: True averages every
        M-step after the burn-in, an int ``k`` from the k-th mini-batch on.
        The averaged parameters are the model's (``weights_``, ``means_``,
        ...); the E-steps keep using the current iterate.
    max_iter : int, default=10
        Passes over the data in :meth:`fit`.
    tol : float, default=1e-3
        :meth:`fit` stops when the mean per-sample log-likelihood of a pass
        changes by less than ``tol``.
    reg_covar : float, default=1e-6
    init_params : {'kmeans', 'k-means++', 'random', 'random_from_data', \
'kmeans_standardized', 'hierarchical'}, default='kmeans'
        As in :class:`fastem.GaussianMixture`. Initialisation on the first mini-batch (:meth:`partial_fit`) or on a
        random sample of the data (:meth:`fit`).
    weights_init, means_init, precisions_init : array-like, default=None
    random_state : int, RandomState instance or None, default=None
        Initialisation and the shuffling of rows of in-memory arrays.
    verbose : int, default=0
    verbose_interval : int, default=10
    n_jobs : int or None, default=None
    chunk_size : int or None, default=None
        Rows read per chunk from a file or chunk source.
    progress : bool, default=False
        Show a tqdm progress bar of the mini-batches of :meth:`fit` on stderr
        (needs ``pip install 'fastem[progress]'``).
    missing : {'error', 'marginalize'}, default='error'
        What a NaN entry means: an error, or a missing value that every
        step marginalises (as in :class:`fastem.GaussianMixture`).

    Attributes
    ----------
    weights_, means_, covariances_, precisions_, precisions_cholesky_
        As in :class:`fastem.GaussianMixture`.
    n_steps_ : int
        Mini-batches processed.
    n_rows_seen_ : int
    n_iter_ : int
        Passes over the data made by the last :meth:`fit`.
    converged_ : bool
    lower_bound_ : float
        Mean per-sample log-likelihood of the last pass (each batch scored
        under the parameters before its update) or, after ``partial_fit``, of
        the last batch.
    lower_bounds_ : list of float
        One value per pass of :meth:`fit`.
    n_features_in_ : int
    """

    def __init__(self, n_components=1, *, covariance_type="full", batch_size=4096,
                 learning_decay=0.7, learning_offset=10.0, burn_in=1, average=False,
                 max_iter=10, tol=1e-3, reg_covar=1e-6, init_params="kmeans",
                 weights_init=None, means_init=None, precisions_init=None,
                 random_state=None, verbose=0, verbose_interval=10, n_jobs=None,
                 chunk_size=None, progress=False, missing="error"):
        # scikit-learn's estimator contract: __init__ stores every parameter
        # unchanged under its own name (get_params and clone read them back),
        # so the estimators' lists look alike by design; checks run in fit.
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.batch_size = batch_size
        self.learning_decay = learning_decay
        self.learning_offset = learning_offset
        self.burn_in = burn_in
        self.average = average
        self.max_iter = max_iter
        self.tol = tol
        self.reg_covar = reg_covar
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.n_jobs = n_jobs
        self.chunk_size = chunk_size
        self.progress = progress
        self.missing = missing

    # -- parameters ----------------------------------------------------------

    def _check_online_parameters(self):
        self._check_base_parameters()
        check_constraints(self, STEPWISE_CONSTRAINTS)
        av = self.average
        if not (isinstance(av, (bool, np.bool_)) or (isinstance(av, numbers.Integral)
                                                     and av >= 1)):
            raise ValueError(f"The 'average' parameter of {type(self).__name__} must be "
                             f"a bool or an int >= 1. Got {av!r} instead.")

    def _average_start(self):
        if self.average is True or self.average is np.True_:
            return self.burn_in
        if not self.average:
            return None
        return max(int(self.average), self.burn_in)

    # -- state ---------------------------------------------------------------

    def _get_state(self):
        return {"iterate": self._iterate, "stats": self._stats, "avg": self._avg,
                "n_avg": self._n_avg, "n_steps": self.n_steps_,
                "n_rows": self.n_rows_seen_}

    def _commit(self, state, lower_bound):
        """Publish a new state (all attributes at once)."""
        self._iterate = state["iterate"]
        self._stats = state["stats"]
        self._avg = state["avg"]
        self._n_avg = state["n_avg"]
        self.n_steps_ = state["n_steps"]
        self.n_rows_seen_ = state["n_rows"]
        shown = state["avg"] if state["avg"] is not None else state["iterate"]
        self._set_params_from(shown)
        self.lower_bound_ = lower_bound

    def _persist_attributes(self):
        return ["weights_", "means_", "covariances_", "precisions_",
                "precisions_cholesky_", "converged_", "n_iter_", "lower_bound_",
                "lower_bounds_", "n_features_in_", "feature_names_in_", "n_steps_",
                "n_rows_seen_", "_iterate", "_stats", "_avg", "_n_avg", "_rng"]

    # -- one step ------------------------------------------------------------

    def _stepwise(self):
        """The stepwise-EM schedule of this estimator's parameters."""
        return _em.StepwiseEM(self.reg_covar, self.burn_in, self.learning_offset,
                              self.learning_decay, self._average_start(),
                              missing=self.missing == "marginalize")

    def _initial_state(self, data, rng):
        inits = self._check_initial_parameters(data.n_features)
        return _em.StepwiseEM.fresh_state(self._initial_params(data, rng, inits))

    # -- public API ----------------------------------------------------------

    def partial_fit(self, X, y=None, sample_weight=None):
        """Update the model with one mini-batch.

        The first call initialises the model from this batch (or from the
        given initial parameters).  A call that raises leaves the model
        exactly as it was.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self
        """
        with self._transaction():
            return self._partial_fit(X, sample_weight)

    def _partial_fit(self, X, sample_weight):
        self._check_online_parameters()
        first = not hasattr(self, "_iterate")
        saved = (getattr(self, "n_features_in_", None),
                 getattr(self, "feature_names_in_", None))
        try:
            data = self._as_data(X, sample_weight, reset=first)
            if not data.in_memory:
                raise TypeError("partial_fit takes an in-memory mini-batch (array-like); "
                                "use fit() for files and chunk sources.")
            with _threads.thread_limits(self.n_jobs), self._announce_compiles():
                if first:
                    rng = check_random_state(self.random_state)
                    check_enough_rows(data.n_samples, self.n_components,
                                      "The first mini-batch initialises the model: ")
                    state = self._initial_state(data, rng)
                else:
                    rng = self._rng
                    state = self._get_state()
                state, ll = self._stepwise().step(state, data.X, data.sample_weight)
        except BaseException:
            if first:
                # undo what validation set on a fresh estimator
                for name, value in zip(("n_features_in_", "feature_names_in_"), saved):
                    if value is None and hasattr(self, name):
                        delattr(self, name)
            raise
        self._rng = rng
        self._commit(state, ll)
        if first:
            self.converged_ = False
            self.n_iter_ = 0
            self.lower_bounds_ = []
        return self

    def fit(self, X, y=None, sample_weight=None):
        """Fit by passes of mini-batches over the data.

        In-memory arrays are visited in a new random order each pass;
        files, chunk sources and iterables in chunk order, each chunk cut
        into mini-batches.  Initialisation uses a random sample of rows.

        Returns
        -------
        self
        """
        with self._transaction():
            return self._fit(X, sample_weight)

    def _fit(self, X, sample_weight):
        self._check_online_parameters()
        data = self._as_data(X, sample_weight, reset=True)
        rng = check_random_state(self.random_state)
        with _threads.thread_limits(self.n_jobs), self._announce_compiles():
            size = _init.subsample_size(data.n_samples or _init.KMEANS_SAMPLE_MIN,
                                        self.n_components)
            S, Sw = data.sample(size, rng)
            check_enough_rows(S.shape[0], self.n_components)
            sample = ArrayData(np.ascontiguousarray(S, dtype=data.dtype), Sw)
            sample.missing = data.missing
            state = self._initial_state(sample, rng)
            per_pass = (None if data.n_samples is None
                        else -(-data.n_samples // self.batch_size))
            report = _em.Report(self.verbose, self.verbose_interval, self.progress,
                                total=None if per_pass is None else per_pass * self.max_iter,
                                desc="online EM", unit="batch")
            try:
                state, bounds, n_pass, converged = self._stepwise().passes(
                    state, data, rng, self.batch_size, self.max_iter, self.tol, report)
            finally:
                report.bar.close()
        self._rng = rng
        self._commit(state, bounds[-1] if bounds else -np.inf)
        self.lower_bounds_ = bounds
        self.n_iter_ = n_pass
        self.converged_ = converged
        # a pass's change can only be measured from the second pass on
        _em.warn_not_converged(
            converged, self.max_iter,
            f"MiniBatchGaussianMixture did not converge in {self.max_iter} passes "
            f"(tol={self.tol}). Increase max_iter or tol.", min_iter=2, stacklevel=4)
        return self
