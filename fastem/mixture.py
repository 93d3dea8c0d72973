"""fastem.GaussianMixture: a drop-in for sklearn.mixture.GaussianMixture.

The estimator holds parameters, validation and the EM loop; every numeric
loop runs in the Numba kernels through :mod:`fastem._estep`, which return
:class:`~fastem._suffstats.SuffStats`.
"""

import copy
import numbers
import time
import warnings

import numpy as np
from scipy.special import logsumexp
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from . import _estep, _init
from ._data import ArrayData, SourceData
from ._progress import progress_bar
from ._suffstats import COVARIANCE_TYPES, GaussianParams
from ._validation import check_sample_weight, normalise_weights, validate_X

INIT_PARAMS = ("kmeans", "k-means++", "random", "random_from_data")
# Rows per call of the E-step-only kernel in predict/score: bounds the
# (rows, n_components) temporary.
PREDICT_CHUNK = 65_536


def _is_dask(X):
    import sys

    if "dask" not in sys.modules:
        return False
    mod = type(X).__module__ or ""
    return mod.startswith("dask.")


def is_stream(X):
    """Whether X is read chunk by chunk rather than validated in memory."""
    import os

    from . import io

    if isinstance(X, (str, os.PathLike, io.ChunkSource)):
        return True
    if isinstance(X, (list, tuple)):
        # a list of 2-D blocks is streamed block by block; a list of rows
        # (or of numbers) is an array-like, validated in memory
        return len(X) > 0 and np.ndim(X[0]) == 2
    if isinstance(X, np.ndarray) or hasattr(X, "iloc"):
        return False
    import scipy.sparse

    if scipy.sparse.issparse(X):
        return False  # validation says dense data is required
    if hasattr(X, "__next__"):
        return True
    if hasattr(X, "__iter__") and not hasattr(X, "shape") and not hasattr(X, "__array__") \
            and not hasattr(X, "__array_interface__"):
        # a re-iterable of blocks (each iteration yields the rows again)
        return True
    shape = getattr(X, "shape", None)
    return (shape is not None and len(shape) == 2 and hasattr(X, "__getitem__")
            and not hasattr(X, "__array_function__"))


def _check_int(name, value, low, allow_none=False):
    if allow_none and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(
            f"The '{name}' parameter of {{cls}} must be an int in the range "
            f"[{low}, inf). Got {value!r} instead.")


def _check_real(name, value, low):
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not np.isfinite(value) or value < low):
        raise ValueError(
            f"The '{name}' parameter of {{cls}} must be a finite float >= {low}. "
            f"Got {value!r} instead.")


class _Transaction:
    """Snapshot of an estimator's attributes, restored if the block raises.

    Arrays (and containers of them) are copied, so that even an in-place
    change would be undone; the attribute set itself is restored too
    (attributes added by the failed call are removed)."""

    def __init__(self, est):
        self.est = est

    def __enter__(self):
        self.saved = {k: copy.deepcopy(v) if _mutable_state(v) else v
                      for k, v in vars(self.est).items()}
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            d = vars(self.est)
            d.clear()
            d.update(self.saved)
        return False


def _mutable_state(v):
    return isinstance(v, (np.ndarray, list, dict, np.random.RandomState,
                          np.random.Generator)) or hasattr(v, "__slots__")


class _MixtureBase(DensityMixin, BaseEstimator):
    """Shared parameter checks, prediction and scoring of fastem mixtures."""

    # -- parameter checks ----------------------------------------------------

    def _check_base_parameters(self):
        cls = type(self).__name__
        try:
            _check_int("n_components", self.n_components, 1)
            _check_real("tol", self.tol, 0.0)
            _check_real("reg_covar", self.reg_covar, 0.0)
            _check_int("max_iter", self.max_iter, 0)
            _check_int("verbose", self.verbose, 0)
            _check_int("verbose_interval", self.verbose_interval, 1)
            if hasattr(self, "n_init"):
                _check_int("n_init", self.n_init, 1)
            _check_int("chunk_size", getattr(self, "chunk_size", None), 1, allow_none=True)
            prog = getattr(self, "progress", False)
            if not isinstance(prog, (bool, np.bool_)):
                raise ValueError(f"The 'progress' parameter of {{cls}} must be a bool. "
                                 f"Got {prog!r} instead.")
        except ValueError as exc:
            raise ValueError(str(exc).replace("{cls}", cls)) from None
        for name in ("weights_init", "means_init", "precisions_init"):
            value = getattr(self, name, None)
            if value is not None and (np.isscalar(value) or not (
                    hasattr(value, "__len__") or hasattr(value, "shape")
                    or hasattr(value, "__array__"))):
                raise ValueError(f"The '{name}' parameter of {cls} must be an "
                                 f"array-like or None. Got {value!r} instead.")
        if self.covariance_type not in COVARIANCE_TYPES:
            raise ValueError(
                f"The 'covariance_type' parameter of {cls} must be one of "
                f"{COVARIANCE_TYPES}. Got {self.covariance_type!r} instead.")
        if self.init_params not in INIT_PARAMS:
            raise ValueError(
                f"The 'init_params' parameter of {cls} must be one of "
                f"{INIT_PARAMS}. Got {self.init_params!r} instead.")
        nj = self.n_jobs
        if nj is not None and (isinstance(nj, bool) or not isinstance(nj, numbers.Integral)
                               or nj == 0):
            raise ValueError(
                f"The 'n_jobs' parameter of {cls} must be None or a non-zero int "
                f"(-1 for all cores). Got {nj!r} instead.")

    def _check_initial_parameters(self, n_features):
        """Validate weights_init, means_init and precisions_init.

        The checks and their messages are scikit-learn's (``_check_weights``,
        ``_check_means``, ``_check_precisions``), word for word, so that code
        and tests written against scikit-learn see the same errors.
        """
        K = self.n_components
        d = n_features
        weights = means = precisions = None
        if self.weights_init is not None:
            weights = _init_array(self.weights_init)
            _check_init_shape(weights, (K,), "weights")
            if np.any(weights < 0.0) or np.any(weights > 1.0):
                # scikit-learn prints the minimum as "max value" and the
                # maximum as "min value"; kept so that the texts are equal
                raise ValueError(
                    "The parameter 'weights' should be in the range [0, 1], but got "
                    "max value %.5f, min value %.5f" % (weights.min(), weights.max()))
            atol = 1e-6 if weights.dtype == np.float32 else 1e-8
            if not np.allclose(float(np.abs(1.0 - weights.sum())), 0.0, atol=atol):
                raise ValueError(
                    "The parameter 'weights' should be normalized, but got "
                    "sum(weights) = %.5f" % weights.sum())
            weights = weights.astype(np.float64)
        if self.means_init is not None:
            means = _init_array(self.means_init).astype(np.float64)
            _check_init_shape(means, (K, d), "means")
        if self.precisions_init is not None:
            precisions = _init_array(self.precisions_init,
                                     allow_nd=self.covariance_type == "full")
            shapes = {"full": (K, d, d), "tied": (d, d), "diag": (K, d),
                      "spherical": (K,)}
            _check_init_shape(precisions, shapes[self.covariance_type],
                              f"{self.covariance_type} precision")
            precisions = precisions.astype(np.float64)
            _check_precisions(precisions, self.covariance_type)
        return weights, means, precisions

    # -- helpers -------------------------------------------------------------

    def _transaction(self):
        """A context in which a failure leaves the estimator exactly as it was.

        Fits build their results aside and publish them at the end, but
        validation sets ``n_features_in_`` early and a fit may fail after
        that (bad values, a file changed under it, a singular covariance,
        Ctrl-C): on any exception every attribute, public and private, is
        put back as it was, so a failed re-fit can never leave a model whose
        parts disagree.
        """
        return _Transaction(self)

    def _announce_compiles(self):
        """With ``verbose`` set, a fit that must compile kernels says so first
        (one line on stderr)."""
        import contextlib

        from ._compile import announcing

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

    def _iter_log_prob(self, data):
        """Yield weighted log probabilities (rows, K) for row chunks of data."""
        params = self._params()
        with _estep.thread_limits(self.n_jobs):
            for _, block, _ in data.iter_chunks():
                for lo in range(0, block.shape[0], PREDICT_CHUNK):
                    yield _estep.weighted_log_prob(block[lo:lo + PREDICT_CHUNK], params)

    def _collect(self, data, reduce, width=None, dtype=np.float64):
        """Apply reduce to each chunk's log probabilities and stack.

        A RowData with its own ``collect`` (Dask: a lazy array) handles it.
        """
        custom = getattr(data, "collect", None)
        if custom is not None:
            return custom(self._params(), reduce, width, dtype)
        parts = [reduce(wlp) for wlp in self._iter_log_prob(data)]
        if parts:
            return np.concatenate(parts, axis=0)
        shape = (0,) if width is None else (0, width)
        return np.empty(shape, dtype=dtype)

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
            pcs, covs = _precision_cholesky_from_precisions(precisions, ct)
        return GaussianParams(ct, weights, means, covs, pcs)

    def _as_data(self, X, sample_weight=None, reset=False):
        """Wrap X as RowData: validated in-memory arrays, or a chunk source
        for paths, ChunkSources, iterables and array-likes that are not
        numpy arrays (h5py, zarr)."""
        if _is_dask(X):
            from ._dask import DaskData

            return DaskData(self, X, sample_weight, reset=reset)
        if is_stream(X):
            from . import io

            src = io.chunks(X, chunk_size=getattr(self, "chunk_size", None))
            d = src.n_features
            if reset:
                self.n_features_in_ = d
                if hasattr(self, "feature_names_in_"):
                    del self.feature_names_in_
            elif d != self.n_features_in_:
                raise ValueError(
                    f"X has {d} features, but {type(self).__name__} is expecting "
                    f"{self.n_features_in_} features as input.")
            return SourceData(src, sample_weight)
        X = validate_X(self, X, reset=reset, min_samples=2 if reset else 1)
        if sample_weight is None:
            return ArrayData(X)
        w, scale = normalise_weights(check_sample_weight(sample_weight, X.shape[0]))
        data = ArrayData(X, w)
        data.weight_scale = scale
        return data

    def save(self, path):
        """Save the fitted model (and any online state) to a ``.npz`` file.

        The file holds arrays and JSON metadata only, never pickles; read it
        back with :func:`fastem.load`.
        """
        from .persist import save

        save(self, path)

    def _check_predict_X(self, X):
        check_is_fitted(self)
        return self._as_data(X, reset=False)

    def _e_pass(self, data, params):
        """One E-step pass over all rows: SuffStats under params.

        A RowData that computes elsewhere (Dask workers) provides its own
        ``e_pass(params)``.
        """
        custom = getattr(data, "e_pass", None)
        if custom is not None:
            return custom(params)
        acc = _estep.StatsAccumulator(params, data.dtype)
        for _, block, w in data.iter_chunks():
            acc.add(block, w)
        return acc.result()

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
        return total * scale, n * scale

    def _weighted_pass(self, X, sample_weight):
        """(total, n, scale): the totals of :meth:`_weighted_total` for the
        weights divided by ``scale`` (their maximum), so that total / n
        does not overflow however large the weights."""
        check_is_fitted(self)
        data = self._as_data(X, sample_weight, reset=False)
        try:
            with _estep.thread_limits(self.n_jobs):
                stats = self._e_pass(data, self._params())
        except _estep.ZeroDensityError:
            ll = self.score_samples(X)
            if sample_weight is None:
                return float(ll.sum()), ll.shape[0], 1.0
            w, scale = normalise_weights(check_sample_weight(sample_weight, ll.shape[0]))
            return float(np.sum(w * ll)), float(np.sum(w)), scale
        if sample_weight is None:
            return stats.loglik, stats.n_rows, 1.0
        return stats.loglik, stats.weight_sum, data.weight_scale

    def bic(self, X, sample_weight=None):
        """Bayesian information criterion for the model on X (lower is better).

        With ``sample_weight`` the log-likelihood is weighted and the sample
        size is the sum of the weights.
        """
        total, n = self._weighted_total(X, sample_weight)
        return -2 * total + self._n_parameters() * np.log(n)

    def aic(self, X, sample_weight=None):
        """Akaike information criterion for the model on X (lower is better)."""
        total, _ = self._weighted_total(X, sample_weight)
        return -2 * total + 2 * self._n_parameters()


def _init_array(value, allow_nd=False):
    """An initial parameter as a float64/float32 array, finite (scikit-learn's checks)."""
    from sklearn.utils import check_array

    return check_array(value, dtype=[np.float64, np.float32], ensure_2d=False,
                       allow_nd=allow_nd, copy=True)


def _check_init_shape(param, shape, name):
    if param.shape != shape:
        raise ValueError(
            f"The parameter '{name}' should have the shape of {shape}, but got "
            f"{param.shape}")


def _check_precisions(precisions, covariance_type):
    if covariance_type in ("diag", "spherical"):
        if np.any(precisions <= 0.0):
            raise ValueError(f"'{covariance_type} precision' should be positive")
        return
    mats = precisions if covariance_type == "full" else precisions[None]
    for p in mats:
        if not (np.allclose(p, p.T) and np.all(np.linalg.eigvalsh(p) > 0.0)):
            raise ValueError(
                f"'{covariance_type} precision' should be symmetric, positive-definite")


def _precision_cholesky_from_precisions(precisions, covariance_type):
    """Cholesky factors (scikit-learn layout) and covariances from precisions."""
    if covariance_type in ("diag", "spherical"):
        return np.sqrt(precisions), 1.0 / precisions
    mats = precisions if covariance_type == "full" else precisions[None]
    d = mats.shape[-1]
    pcs = np.empty_like(mats)
    covs = np.empty_like(mats)
    for k, p in enumerate(mats):
        # upper-triangular U with U U^T = P: flip, lower Cholesky, flip back
        flipped = np.linalg.cholesky(p[::-1, ::-1])
        pcs[k] = flipped[::-1, ::-1]
        covs[k] = np.linalg.inv(p)
        covs[k] = 0.5 * (covs[k] + covs[k].T)
    del d
    if covariance_type == "tied":
        return pcs[0], covs[0]
    return pcs, covs


class GaussianMixture(_MixtureBase):
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
    init_params : {'kmeans', 'k-means++', 'random', 'random_from_data'}, default='kmeans'
        'kmeans' runs k-means++ seeding and Lloyd iterations on a random
        subsample of at most ``max(20000, 500 * n_components)`` rows, then
        assigns every row to its nearest centre; 'k-means++' seeds on such a
        subsample.  'random' and 'random_from_data' are as in scikit-learn.
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
                 verbose_interval=10, n_jobs=None, chunk_size=None, progress=False):
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

    def fit_predict(self, X, y=None, sample_weight=None):
        """Fit the model and return the label of each sample.

        Equal to ``fit(X).predict(X)``.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        with self._transaction(), self._announce_compiles():
            data = self._fit(X, sample_weight)
        return self._collect(data, lambda wlp: wlp.argmax(axis=1), dtype=np.int64)

    # -- the EM driver -------------------------------------------------------

    def _fit(self, X, sample_weight):
        self._check_base_parameters()
        data = self._as_data(X, sample_weight, reset=True)
        K = self.n_components
        n = data.n_samples
        if n is not None and n < K:
            raise ValueError(
                f"Expected n_samples >= n_components but got n_components = {K}, "
                f"n_samples = {n}")
        inits = self._check_initial_parameters(data.n_features)
        do_init = not (self.warm_start and hasattr(self, "converged_"))
        n_init = self.n_init if do_init else 1
        rng = check_random_state(self.random_state)
        best = None
        best_lb = -np.inf
        self.converged_ = False
        with _estep.thread_limits(self.n_jobs):
            for init in range(n_init):
                self._print_verbose_init(init)
                t0 = time.perf_counter()
                if do_init:
                    params = self._initial_params(data, rng, inits)
                    lower_bound = -np.inf
                else:
                    params = self._params()
                    lower_bound = self.lower_bound_
                bounds = []
                converged = False
                n_iter = 0
                bar = progress_bar(self.progress, total=self.max_iter,
                                   desc=f"EM (init {init + 1}/{n_init})", unit="iter")
                try:
                    for n_iter in range(1, self.max_iter + 1):
                        prev = lower_bound
                        stats = self._e_pass(data, params)
                        params = stats.m_step(self.reg_covar)
                        lower_bound = stats.mean_loglik()
                        bounds.append(lower_bound)
                        change = lower_bound - prev
                        bar.update(1)
                        bar.set_postfix_str(f"loglik {lower_bound:.6g}, change {change:.3g}")
                        self._print_verbose_iter(n_iter, t0, change)
                        if abs(change) < self.tol:
                            converged = True
                            break
                finally:
                    bar.close()
                self._print_verbose_end(converged, lower_bound, t0)
                if best is None or lower_bound > best_lb:
                    best_lb = lower_bound
                    best = (params, n_iter, bounds, converged)
        params, n_iter, bounds, converged = best
        self._finish_fit(params, n_iter, best_lb, bounds, converged)
        return data

    def _finish_fit(self, params, n_iter, lower_bound, bounds, converged):
        """Publish the result of a fit (and warn, as scikit-learn does, when
        it did not converge)."""
        self.converged_ = converged
        if not converged and self.max_iter > 0:
            warnings.warn(
                "Best performing initialization did not converge. Try different "
                "init parameters, or increase max_iter, tol, or check for "
                "degenerate data.", ConvergenceWarning, stacklevel=4)
        self._set_params_from(params)
        self.n_iter_ = n_iter
        self.lower_bound_ = lower_bound
        self.lower_bounds_ = bounds

    # -- verbose output (scikit-learn's format) ------------------------------

    def _print_verbose_init(self, n_init):
        if self.verbose >= 1:
            print(f"Initialization {n_init}")

    def _print_verbose_iter(self, n_iter, t0, change):
        if n_iter % self.verbose_interval == 0:
            if self.verbose == 1:
                print(f"  Iteration {n_iter}")
            elif self.verbose >= 2:
                print(f"  Iteration {n_iter}\t time lapse "
                      f"{time.perf_counter() - t0:.5f}s\t ll change {change:.5f}")

    def _print_verbose_end(self, converged, lower_bound, t0):
        if self.verbose == 1:
            print(f"Initialization {'converged' if converged else 'did not converge'}.")
        elif self.verbose >= 2:
            print(f"Initialization {'converged' if converged else 'did not converge'}. "
                  f"time lapse {time.perf_counter() - t0:.5f}s\t lower bound "
                  f"{lower_bound:.5f}.")


def fit_sharing_passes(models, X):
    """Fit several GaussianMixture candidates, one data pass per EM iteration.

    Each pass over the rows (a file or chunk source is read once per pass, not
    once per candidate) feeds every candidate that has not converged yet.
    Every candidate is initialised as its own ``fit`` would do it, and the
    statistics of each are accumulated in the same blocks and order, so each
    model equals ``model.fit(X)`` exactly.  Used by
    :func:`fastem.selection.select_model`.

    Parameters
    ----------
    models : list of GaussianMixture
        Unfitted candidates with ``n_init=1`` and ``warm_start=False``.
    X : array-like or data source

    Returns
    -------
    models
    """
    if not models:
        return models
    for m in models:
        m._check_base_parameters()
        if m.n_init != 1 or m.warm_start:
            raise ValueError("fit_sharing_passes needs n_init=1 and warm_start=False "
                             "candidates")
    first = models[0]
    data = first._as_data(X, None, reset=True)
    names = getattr(first, "feature_names_in_", None)
    states = []
    with _estep.thread_limits(first.n_jobs):
        for m in models:
            m.n_features_in_ = first.n_features_in_
            if names is not None:
                m.feature_names_in_ = names
            K = m.n_components
            if data.n_samples is not None and data.n_samples < K:
                raise ValueError(
                    f"Expected n_samples >= n_components but got n_components = {K}, "
                    f"n_samples = {data.n_samples}")
            inits = m._check_initial_parameters(data.n_features)
            params = m._initial_params(data, check_random_state(m.random_state), inits)
            states.append({"params": params, "lb": -np.inf, "bounds": [],
                           "converged": False, "n_iter": 0})
        active = [i for i, m in enumerate(models) if m.max_iter > 0]
        while active:
            accs = {i: _estep.StatsAccumulator(states[i]["params"], data.dtype)
                    for i in active}
            for _, block, w in data.iter_chunks():
                for i in active:
                    accs[i].add(block, w)
            still = []
            for i in active:
                st, m = states[i], models[i]
                stats = accs[i].result()
                prev = st["lb"]
                st["params"] = stats.m_step(m.reg_covar)
                st["lb"] = stats.mean_loglik()
                st["bounds"].append(st["lb"])
                st["n_iter"] += 1
                if abs(st["lb"] - prev) < m.tol:
                    st["converged"] = True
                elif st["n_iter"] < m.max_iter:
                    still.append(i)
            active = still
    for m, st in zip(models, states):
        m._finish_fit(st["params"], st["n_iter"], st["lb"], st["bounds"],
                      st["converged"])
    return models
