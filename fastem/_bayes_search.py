"""Variational candidates for :func:`fastem.selection.select_model` (``bayesian=True``).

Instead of a grid over K, one :class:`fastem.BayesianGaussianMixture` per
covariance type is fitted with ``n_components`` set to the largest K of the
grid (the truncation level); its Dirichlet-process prior gives the
components the data do not need weights near zero.  The components whose
weight exceeds a threshold are its effective components
(:func:`effective_components`).  To rank the types, each fit's point
estimate restricted to its effective components (weights renormalised) is
turned into an ordinary fitted :class:`fastem.GaussianMixture`
(:func:`point_estimate`), which the selection table then scores exactly as
it scores the candidates of the grid (:func:`fastem._search.candidate_rows`).
"""

import copy
import numbers
import warnings
from collections.abc import Mapping

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted

from ._suffstats import GaussianParams
from .bayesian import BayesianGaussianMixture
from .mixture import GaussianMixture

__all__ = ["PRIOR_OPTIONS", "check_options", "check_threshold", "check_prior_options", "effective_components",
           "point_estimate", "fit_types", "refit"]

#: The BayesianGaussianMixture parameters that ``bayesian_params`` may set.
PRIOR_OPTIONS = ("weight_concentration_prior_type", "weight_concentration_prior",
                 "mean_precision_prior", "mean_prior", "degrees_of_freedom_prior",
                 "covariance_prior")


def check_threshold(threshold, name="threshold"):
    """``threshold`` as a float in [0, 1), or a ValueError saying why not."""
    if (isinstance(threshold, bool) or not isinstance(threshold, numbers.Real)
            or not 0.0 <= threshold < 1.0):
        raise ValueError(f"{name} must be a float in [0, 1), got {threshold!r}; "
                         "weights sum to 1, so e.g. 1e-3 or 1e-2.")
    return float(threshold)


def check_prior_options(options):
    """The prior options of ``bayesian_params`` as a dict, checked by
    BayesianGaussianMixture's own parameter validation before any fit."""
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise TypeError(f"bayesian_params must be a dict of prior options, got "
                        f"{type(options).__name__}")
    unknown = sorted(str(k) for k in options if k not in PRIOR_OPTIONS)
    if unknown:
        raise ValueError(
            f"Unknown bayesian_params {unknown}; it takes the prior options "
            f"{PRIOR_OPTIONS}. n_components (the truncation level is "
            "max(n_components)), covariance_types, n_init, init_params, random_state, "
            "max_iter, tol, reg_covar and n_jobs are select_model's own arguments.")
    options = dict(options)
    BayesianGaussianMixture(**options)._check_bayesian_parameters()
    return options


def check_options(bayesian, bayesian_params, threshold):
    """select_model's options of ``bayesian=True`` checked; its prior options
    (a dict, empty without ``bayesian``)."""
    if not bayesian:
        if bayesian_params is not None:
            raise ValueError("bayesian_params sets the prior of the variational fits; "
                             "pass bayesian=True too")
        return {}
    check_threshold(threshold, "weight_threshold")
    return check_prior_options(bayesian_params)


def _kept(model, threshold):
    """Boolean mask of the components of a fitted mixture with weight > threshold."""
    check_is_fitted(model, "weights_")
    threshold = check_threshold(threshold)
    kept = np.asarray(model.weights_) > threshold
    if not kept.any():
        raise ValueError(
            f"No component has a weight above threshold={threshold!r} (the largest is "
            f"{float(np.max(model.weights_)):.3g}); use a smaller threshold.")
    return kept


def effective_components(model, threshold=1e-3):
    """The effective number of components of a fitted mixture, and their weights.

    A variational mixture with a Dirichlet-process prior
    (:class:`fastem.BayesianGaussianMixture`,
    :class:`fastem.MiniBatchBayesianGaussianMixture`) gives the components
    the data do not need weights near zero; the others are its effective
    components.

    Parameters
    ----------
    model : fitted mixture
        Anything with a fitted ``weights_`` of shape (n_components,).
    threshold : float in [0, 1), default=1e-3
        A component is effective when its weight exceeds this.

    Returns
    -------
    n_effective : int
        The number of effective components (the same as
        ``model.effective_n_components(threshold)``).
    weights : ndarray of shape (n_effective,)
        Their weights as fitted (not renormalised), in component order.

    Raises
    ------
    ValueError
        If ``threshold`` is not in [0, 1) or no weight exceeds it.
    sklearn.exceptions.NotFittedError
        If the model is not fitted.
    """
    kept = _kept(model, threshold)
    return int(kept.sum()), np.asarray(model.weights_)[kept].copy()


def point_estimate(model, threshold=1e-3):
    """The fitted variational mixture's point estimate (its ``weights_``,
    ``means_`` and ``covariances_``) restricted to its effective components,
    with the weights renormalised, as a fitted :class:`fastem.GaussianMixture`
    (its ``converged_``, ``n_iter_`` and ``lower_bound_`` are the variational
    fit's)."""
    kept = _kept(model, threshold)
    ct = model.covariance_type
    weights = np.asarray(model.weights_)[kept]
    per_component = ct != "tied"
    params = GaussianParams(
        ct, weights / weights.sum(), np.asarray(model.means_)[kept],
        model.covariances_[kept] if per_component else model.covariances_,
        model.precisions_cholesky_[kept] if per_component else model.precisions_cholesky_)
    gm = GaussianMixture(int(kept.sum()), covariance_type=ct, reg_covar=model.reg_covar,
                         missing=getattr(model, "missing", "error"),
                         random_state=model.random_state, n_jobs=model.n_jobs,
                         chunk_size=getattr(model, "chunk_size", None))
    gm._set_params_from(params)
    gm.n_features_in_ = model.n_features_in_
    if hasattr(model, "feature_names_in_"):
        gm.feature_names_in_ = model.feature_names_in_
    gm.converged_, gm.n_iter_ = model.converged_, model.n_iter_
    gm.lower_bound_, gm.lower_bounds_ = model.lower_bound_, list(model.lower_bounds_)
    return gm


def _row_count(X):
    """Rows of an array, or of a re-iterable chunk source (one pass when its
    length is not known)."""
    shape = getattr(X, "shape", None)
    if shape is not None:
        return int(shape[0])
    if hasattr(X, "reiterable"):
        n = X.n_samples
        return int(n) if n is not None else sum(int(b.shape[0]) for b in X)
    return len(X)


def fit_types(X, truncation, covariance_types, random_state, options, prior_options,
              init_params):
    """One fitted BayesianGaussianMixture per covariance type.

    ``options`` holds select_model's ``n_init``, ``n_jobs``, ``max_iter``,
    ``tol``, ``reg_covar`` and ``missing``; its ``tol`` is per row, as for the grid, and
    becomes ``tol x n_rows`` because the variational bound is a sum over the
    rows.  ``init_params='auto'`` is the estimator's own default, 'kmeans'.
    Convergence warnings are left to the caller (see select_model).
    """
    n = _row_count(X)
    models = []
    for ct in covariance_types:
        model = BayesianGaussianMixture(
            n_components=truncation, covariance_type=ct, random_state=random_state,
            init_params="kmeans" if init_params == "auto" else init_params,
            n_init=options["n_init"], n_jobs=options["n_jobs"],
            max_iter=options["max_iter"], tol=options["tol"] * n,
            reg_covar=options["reg_covar"], missing=options["missing"], **prior_options)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            models.append(model.fit(X))
    return models


def refit(X, model, tol):
    """The held-out winner refitted on all rows X, starting from its
    posterior on the training rows (``tol`` per row, as in :func:`fit_types`)."""
    refitted = copy.deepcopy(model)
    refitted.set_params(warm_start=True, tol=tol * _row_count(X))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        refitted.fit(X)
    return refitted.set_params(warm_start=False)
