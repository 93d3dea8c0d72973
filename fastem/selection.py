"""Choose the number of components and the covariance type of a mixture.

:func:`select_model` fits one :class:`fastem.GaussianMixture` per
(n_components, covariance_type) pair of a grid and ranks them by BIC, ICL,
AIC or the log-likelihood of held-out rows.  Its default starts and the
spurious-optimum guard are in :mod:`fastem._search`.
"""

import numbers
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state

from . import _bayes_search, _search, _threads
from ._bayes_search import effective_components
from ._constants import INIT_PARAMS
from ._validation import check_covariance_types, check_fraction, check_grid_n_components
from ._data import is_stream
from ._search import fit_sharing_passes
from .mixture import GaussianMixture

__all__ = ["CRITERIA", "HELDOUT_SAMPLE_SIZE", "SelectionResult", "select_model",
           "effective_components"]

CRITERIA = ("bic", "icl", "aic", "heldout")

#: Rows drawn (by reservoir sampling) from a streamed source for the
#: training/validation split of ``criterion='heldout'``.
HELDOUT_SAMPLE_SIZE = 200_000

TABLE_COLUMNS = ("n_components", "covariance_type", "bic", "icl", "aic", "heldout",
                 "log_likelihood", "total_log_likelihood", "n_parameters",
                 "min_component_rows", "min_variance_ratio", "degenerate", "converged",
                 "n_iter")

_TABLE_DTYPE = np.dtype([
    ("n_components", np.int64), ("covariance_type", "U9"), ("bic", np.float64),
    ("icl", np.float64), ("aic", np.float64), ("heldout", np.float64),
    ("log_likelihood", np.float64), ("total_log_likelihood", np.float64),
    ("n_parameters", np.int64), ("min_component_rows", np.float64),
    ("min_variance_ratio", np.float64), ("degenerate", np.bool_),
    ("converged", np.bool_), ("n_iter", np.int64),
])

#: Columns a ``bayesian=True`` table has besides TABLE_COLUMNS.
BAYESIAN_COLUMNS = ("effective_n_components", "lower_bound", "weights")

_BAYESIAN_DTYPE = np.dtype(_TABLE_DTYPE.descr + [
    ("effective_n_components", np.int64), ("lower_bound", np.float64), ("weights", object)])


class SelectionResult:
    """The outcome of :func:`select_model`.

    Attributes
    ----------
    table : pandas.DataFrame or numpy structured array of shape (n_candidates,)
        One row per candidate, in grid order (covariance types outer,
        n_components inner), with columns

        - ``n_components`` (int), ``covariance_type`` (str);
        - ``bic``, ``aic`` (float, lower is better): of the candidate on the
          rows it was fitted to;
        - ``icl`` (float, lower is better): the BIC plus twice the entropy of
          the classification, when ``criterion='icl'``, else NaN;
        - ``heldout`` (float, higher is better): mean log-likelihood per
          held-out row when ``criterion='heldout'``, else NaN;
        - ``log_likelihood`` (float): mean log-likelihood per row on the rows
          the candidate was fitted to; ``total_log_likelihood`` (float): its
          sum over those rows (the "log-likelihood" of mclust's summary);
        - ``n_parameters`` (int): free parameters of the candidate;
        - ``min_component_rows`` (float): rows (weight x n) of its smallest
          component; ``min_variance_ratio`` (float): the smallest eigenvalue
          of its covariances on the data's scale (columns divided by their
          standard deviation); ``degenerate`` (bool): either is below the
          guard's limit (see :func:`select_model`, Notes);
        - ``converged`` (bool), ``n_iter`` (int): of the candidate's EM run.

        With ``bayesian=True`` there is one row per covariance type:
        ``n_components`` is the truncation level (the variational fit's
        ``n_components``), the criteria and the columns above are those of
        its point estimate restricted to its effective components, and
        three columns are added: ``effective_n_components`` (int),
        ``lower_bound`` (float, the fit's variational lower bound: not
        comparable across covariance types) and ``weights`` (ndarray of
        the effective components' weights as fitted).

        A DataFrame when pandas can be imported, else a structured array
        with the same field names.
    criterion : {'bic', 'icl', 'aic', 'heldout'}
        The criterion the best candidate was chosen by.
    ranking_ : list of int
        Positions in ``table`` of the eligible candidates (finite criterion;
        not degenerate unless ``skip_degenerate=False`` or all are), best
        first; ``ranking_[0] == best_index_`` and ``ranking_[1]`` is the
        runner-up.
    passes_ : int
        Passes over all rows that the EM iterations of the search made
        (0 when the data were their own screening sample; see
        :func:`select_model`); scoring adds one pass for all candidates
        ('icl': one more per candidate).
    best_params_ : dict
        ``{'n_components': int, 'covariance_type': str}`` of the best row.
    best_index_ : int
        Position of the best row in ``table``.
    best_estimator_ : fastem.GaussianMixture or fastem.BayesianGaussianMixture
        The best candidate (a BayesianGaussianMixture with ``bayesian=True``). For ``'bic'`` and ``'aic'`` it is the candidate
        itself (fitted on all rows); for ``'heldout'`` it is refitted on all
        rows with the best parameters.
    estimators_ : dict
        Every fitted candidate, keyed by ``(n_components, covariance_type)``.
        For ``'heldout'`` these are the fits on the training rows.
    point_estimates_ : dict
        With ``bayesian=True``, the GaussianMixture that each variational fit's
        row was scored as (same keys as ``estimators_``); else empty.
    """

    def __init__(self, table, criterion, best_index, best_params, best_estimator,
                 estimators, ranking=None, passes=None, point_estimates=None):
        self.table = table
        self.criterion = criterion
        self.best_index_ = best_index
        self.best_params_ = best_params
        self.best_estimator_ = best_estimator
        self.estimators_ = estimators
        self.ranking_ = [best_index] if ranking is None else list(ranking)
        self.passes_ = passes
        self.point_estimates_ = {} if point_estimates is None else dict(point_estimates)

    def summary(self, top=3):
        """The ``top`` best candidates as text, like mclust's summary: model,
        criterion, its difference to the best, log-likelihood, parameters."""
        rows = _rows_of(self.table)
        crit = self.criterion
        best = rows[self.best_index_][crit]
        names = [f"{r['covariance_type']}, K={r['n_components']}" for r in rows]
        if "effective_n_components" in rows[0]:  # bayesian=True: K effective of K
            names = [f"{r['covariance_type']}, K={r['effective_n_components']} of "
                     f"{r['n_components']}" for r in rows]
        width = max([16] + [len(n) + 2 for n in names])
        lines = [f"Top {min(top, len(self.ranking_))} models by {crit.upper()}"
                 f"{' (higher is better)' if crit == 'heldout' else ' (lower is better)'}:",
                 f"  {'model':<{width}}{crit:>12}{'diff':>10}{'loglik':>14}{'params':>8}"]
        for i in self.ranking_[:top]:
            r = rows[i]
            lines.append(f"  {names[i]:<{width}}{r[crit]:>12.2f}{r[crit] - best:>10.2f}"
                         f"{r['total_log_likelihood']:>14.2f}{r['n_parameters']:>8d}")
        flagged = [r for r in rows if r["degenerate"]]
        if flagged:
            ranked = any(rows[i]["degenerate"] for i in self.ranking_)
            lines.append(f"  ({len(flagged)} degenerate candidate(s) "
                         f"{'ranked' if ranked else 'not ranked'}; see the table's "
                         "'degenerate' column)")
        return "\n".join(lines)

    def __repr__(self):
        p = self.best_params_
        effective = ""
        if self.point_estimates_:
            best = self.point_estimates_[(p["n_components"], p["covariance_type"])]
            effective = f" ({best.n_components} effective)"
        return (f"SelectionResult(criterion={self.criterion!r}, "
                f"n_candidates={len(self.estimators_)}, best: "
                f"n_components={p['n_components']}{effective}, "
                f"covariance_type={p['covariance_type']!r})")

    def plot(self, ax=None):
        """Plot the criterion against n_components, one line per covariance type.

        Calls :func:`fastem.plot.plot_selection`; needs matplotlib.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, default=None
            Axes to draw into; a new figure is created when None.

        Returns
        -------
        ax : matplotlib.axes.Axes
        """
        from .plot import plot_selection

        return plot_selection(self, ax=ax)


# ---------------------------------------------------------------------------
# Data helpers
# ---------------------------------------------------------------------------


def _n_rows(X):
    shape = getattr(X, "shape", None)
    if shape is not None:
        if len(shape) == 0:
            raise ValueError(f"X must be 2-D of shape (n_samples, n_features), got a "
                             f"scalar {X!r}")
        return int(shape[0])
    return len(X)


def _take_rows(X, idx):
    if hasattr(X, "iloc"):
        return X.iloc[idx]
    return np.asarray(X)[idx]


def _make_table(rows, bayesian=False):
    columns = TABLE_COLUMNS + BAYESIAN_COLUMNS if bayesian else TABLE_COLUMNS
    try:
        import pandas as pd
    except ImportError:
        table = np.empty(len(rows), dtype=_BAYESIAN_DTYPE if bayesian else _TABLE_DTYPE)
        for i, r in enumerate(rows):
            table[i] = tuple(r[c] for c in columns)
        return table
    table = pd.DataFrame({c: [r[c] for r in rows] for c in columns})
    return table.astype({"n_components": "int64", "n_parameters": "int64",
                         "n_iter": "int64", "converged": "bool",
                         **({"effective_n_components": "int64"} if bayesian else {})})


# ---------------------------------------------------------------------------
# Public function
# ---------------------------------------------------------------------------


def select_model(X, n_components=range(1, 11),
                 covariance_types=("full", "diag", "tied", "spherical"),
                 criterion="bic", n_init=5, validation_fraction=0.2,
                 random_state=None, n_jobs=None, max_iter=1000, tol=1e-5,
                 reg_covar=1e-6, init_params="auto", skip_degenerate=True,
                 missing="error", bayesian=False, bayesian_params=None,
                 weight_threshold=1e-3):
    """Fit a grid of Gaussian mixtures and pick the best by BIC, ICL, AIC or
    held-out log-likelihood.

    Every (n_components, covariance_type) pair of the grid is a
    :class:`fastem.GaussianMixture` fit, from ``n_init`` starts.  With the
    default ``init_params='auto'`` the starts are chosen to find the good
    optimum (k-means on standardised rows, and splits of the best fit with one
    component fewer) and run on a screening sample, all starts of all types
    at one K in the same passes; then each candidate's best start continues on
    all rows, all candidates in the same passes (see Notes).  Each uses
    ``n_jobs`` threads.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features), path or fastem.io.ChunkSource
        The data. A path (.npy, .csv, .parquet, .h5::dataset, .zarr) or a
        :class:`fastem.io.ChunkSource` is streamed chunk by chunk (it must
        be re-iterable, not a one-shot iterator); BIC, AIC and the
        log-likelihood are then accumulated block by block, so memory stays
        bounded.
    n_components : int or iterable of int, default=range(1, 11)
        Numbers of components to try, each >= 1 (duplicates are dropped).
    covariance_types : str or sequence of {'full', 'diag', 'tied', 'spherical'}, \
default=('full', 'diag', 'tied', 'spherical')
        Covariance types to try.
    criterion : {'bic', 'icl', 'aic', 'heldout'}, default='bic'
        How the best candidate is chosen:

        - ``'bic'``, ``'aic'``: every candidate is fitted on all rows and the
          lowest criterion on those rows wins;
        - ``'icl'``: the integrated complete-data likelihood criterion, BIC
          plus twice the entropy of the classification,
          ``-2 sum_i sum_k z_ik log z_ik`` with ``z`` the responsibilities
          (Biernacki, Celeux & Govaert 2000, in its entropy form; mclust's
          ``icl`` uses the hard classification instead): it penalises
          overlapping components, so it prefers well-separated clusters.
          One more pass per candidate;
        - ``'heldout'``: the rows are split at random (``random_state``) into
          a training part and a validation part of ``validation_fraction`` of
          the rows; every candidate is fitted on the training part, and the
          highest mean log-likelihood per validation row wins. The winner is
          then refitted on all rows, starting from its training fit. For a
          streamed source the split is made inside a uniform reservoir sample
          (:func:`fastem.io.reservoir_sample`) of at most
          :data:`HELDOUT_SAMPLE_SIZE` (200,000) rows, drawn in one pass:
          candidates are fitted in memory on the sample's training part and
          scored on its validation part; only the final refit streams the
          whole source.

        Ties go to the first candidate in grid order.
    n_init : int, default=5
        Starts per candidate (the best is kept).  With ``init_params='auto'``
        the starts are splits of the best fit with K - 1 components (when
        K - 1 is in the grid), one per component, at most ``2 n_init - 2``
        (the heaviest), and ``max(2, n_init - splits)`` runs of k-means on
        standardised rows: 5 starts for K <= 4, K + 1 up to K = 9, at most
        10 (:func:`fastem._search.n_splits`); with K = 1 there is one.
    validation_fraction : float in (0, 1), default=0.2
        Share of rows held out when ``criterion='heldout'``.
    random_state : int, RandomState instance or None, default=None
        Seeds the split, the screening sample and the starts. An int gives
        reproducible results.
    n_jobs : int or None, default=None
        Numba threads (see :class:`fastem.GaussianMixture`).
    max_iter, tol, reg_covar :
        Of every EM run, as in :class:`fastem.GaussianMixture`.  The defaults
        (``tol=1e-5`` on the mean log-likelihood per row, ``max_iter=1000``)
        run EM closer to convergence than GaussianMixture's (1e-3, 100), as
        mclust does (relative tolerance 1e-5): candidates are compared by
        their likelihoods, and a stop at 1e-3 leaves BIC differences of
        about one unit on a few hundred rows.
    init_params : {'auto', 'kmeans', 'k-means++', 'random', 'random_from_data', \
'kmeans_standardized', 'hierarchical'}, default='auto'
        'auto' is the search above.  Any other value fits every candidate as
        ``GaussianMixture(K, covariance_type=..., init_params=init_params,
        n_init=n_init, random_state=seed).fit(X)`` would (with ``n_init=1``
        and 'bic', 'icl' or 'aic' all candidates share their data passes and
        each still equals its own fit exactly).
    skip_degenerate : bool, default=True
        Leave candidates flagged ``degenerate`` out of the ranking unless every
        candidate is (see Notes).
    missing : {'error', 'marginalize'}, default='error'
        Passed to every candidate: with 'marginalize', NaN entries are
        missing values and the criteria use the observed-data likelihood.
        Not available with ``bayesian=True``.
    bayesian : bool, default=False
        Instead of the grid over K, fit one
        :class:`fastem.BayesianGaussianMixture` per covariance type with
        ``n_components=max(n_components)`` (the truncation level), a
        Dirichlet-process prior on the weights, ``n_init``, ``random_state``,
        ``max_iter``, ``reg_covar`` and ``n_jobs`` as given, ``tol`` per row
        as for the grid (the fit's bound is a sum over the rows, so its tol
        is ``tol x n_rows``) and ``init_params='kmeans'`` for 'auto'.  Its
        components with weight above ``weight_threshold`` are its effective
        components.  Each type's row scores the fit's point estimate
        (``weights_``, ``means_``, ``covariances_``) restricted to them, with
        renormalised weights, as the grid scores a GaussianMixture with those
        parameters, and the rows are ranked by ``criterion``.  Not by the
        variational lower bound: scikit-learn's bound leaves out constants
        that depend on the covariance type, so the bounds of different types
        cannot be compared (the table reports each, see SelectionResult).
        ``best_estimator_`` is the winning BayesianGaussianMixture.
    bayesian_params : dict or None, default=None
        Prior options of the variational fits (``bayesian=True`` only):
        ``weight_concentration_prior_type`` (default 'dirichlet_process'),
        ``weight_concentration_prior``, ``mean_precision_prior``,
        ``mean_prior``, ``degrees_of_freedom_prior``, ``covariance_prior``,
        as in :class:`fastem.BayesianGaussianMixture`.
    weight_threshold : float in [0, 1), default=1e-3
        With ``bayesian=True``, a component is effective when its weight
        exceeds this (:func:`effective_components`).

    Returns
    -------
    result : SelectionResult
        With ``table``, ``criterion``, ``best_params_``, ``best_index_``,
        ``ranking_``, ``best_estimator_``, ``estimators_``, ``passes_``,
        ``summary()`` and ``plot(ax=None)``.

    Raises
    ------
    ValueError
        If ``n_components`` is empty or holds a value < 1 or larger than the
        number of (training) rows, a covariance type, the criterion or
        ``init_params`` is unknown, ``n_init`` < 1, ``validation_fraction``
        is not in (0, 1), or a streamed source is a one-shot iterator; with
        ``bayesian=True``, if ``bayesian_params`` holds an unknown or invalid
        option or ``weight_threshold`` is not in [0, 1); ``bayesian_params``
        without ``bayesian=True``.
    TypeError
        If ``n_components`` is not an int or an iterable of ints.

    Warns
    -----
    ConvergenceWarning
        Once, if the best candidate's EM did not converge within
        ``max_iter`` iterations. Candidates that do not converge are not
        warned about one by one; see the ``converged`` column.

    Notes
    -----
    The BIC is ``-2 log L + p log n`` and the AIC ``-2 log L + 2 p``, where
    ``log L`` is the total log-likelihood and ``p`` the number of free
    parameters, as in :meth:`fastem.GaussianMixture.bic` (mclust reports
    ``2 log L - p log n``: the same number with the opposite sign).

    **The search** (``init_params='auto'``, :mod:`fastem._search`): the
    candidates are fitted in increasing K.  At each K, every start of every
    covariance type runs EM on the screening sample (all rows when there are
    at most 50,000, else 50,000 drawn at random), sharing each pass; the best
    non-degenerate start of each candidate is kept, and its splits seed K +
    1.  With more than 50,000 rows, each candidate's best start then runs EM
    on all rows, every candidate in the same passes (``passes_`` counts
    them), so the cost of the restarts is that of the sample, not of the
    data.  On Old Faithful and iris every candidate of the default grid
    reaches a BIC at least as good as mclust's (docs/model_selection.md).

    **Spurious optima.**  With rounded or duplicated values a component can
    collapse onto a few identical rows, its covariance shrinks to
    ``reg_covar``, and its likelihood (hence the BIC) grows without meaning.
    A candidate is flagged ``degenerate`` when a component holds fewer rows
    (weight x n) than its covariance needs (d + 1 for 'full', 2 for 'diag'
    and 'spherical', 1 for 'tied'), or when a covariance has an eigenvalue
    below 1e-4 on the data's scale (each column divided by its standard
    deviation: a spread of less than 1% of the data's in some direction).
    Degenerate candidates stay in the table and are not ranked
    (``skip_degenerate=True``); among a candidate's starts, the best
    non-degenerate one is kept.

    Examples
    --------
    >>> from fastem.datasets import load_old_faithful
    >>> from fastem.selection import select_model
    >>> X = load_old_faithful()
    >>> result = select_model(X, n_components=range(1, 10), random_state=0)
    >>> result.best_params_
    {'n_components': 3, 'covariance_type': 'tied'}
    """
    from . import io

    ks = check_grid_n_components(n_components)
    cts = check_covariance_types(covariance_types)
    if criterion == "lower_bound":
        raise ValueError(
            "criterion='lower_bound' is not offered: the variational lower bounds of "
            "different covariance types leave out different constants, so they cannot "
            f"rank them; use bayesian=True with one of {CRITERIA}")
    if criterion not in CRITERIA:
        raise ValueError(f"Unknown criterion {criterion!r}; choose from {CRITERIA}")
    prior = _bayes_search.check_options(bayesian, bayesian_params, weight_threshold)
    if init_params != "auto" and init_params not in INIT_PARAMS:
        raise ValueError(f"Unknown init_params {init_params!r}; choose from "
                         f"{('auto',) + INIT_PARAMS}")
    if (isinstance(n_init, bool) or not isinstance(n_init, numbers.Integral)
            or n_init < 1):
        raise ValueError(f"n_init must be an int >= 1, got {n_init!r}")
    fraction = check_fraction(validation_fraction)
    rng = check_random_state(random_state)
    options = dict(n_init=n_init, n_jobs=n_jobs, max_iter=max_iter, tol=tol,
                   reg_covar=reg_covar, missing=missing)

    streamed = is_stream(X)
    if streamed:
        X = io.chunks(X)
        if not X.reiterable:
            raise ValueError(
                f"select_model reads the data many times, but {X.name} is a one-shot "
                "iterator; pass a path, an array or a re-iterable source instead")
        n = X.n_samples
    else:
        n = _n_rows(X)

    if criterion == "heldout":
        if streamed:
            pool = io.reservoir_sample(X, HELDOUT_SAMPLE_SIZE,
                                       random_state=rng.randint(2**31 - 1))
            n_pool = pool.shape[0]
        else:
            pool, n_pool = X, n
        n_val = int(round(fraction * n_pool))
        n_train = n_pool - n_val
        if n_val < 1 or n_train < 1:
            raise ValueError(
                f"validation_fraction={fraction} of {n_pool} rows leaves "
                f"{n_train} training and {n_val} validation rows; both need at least "
                "one row: use more data or another validation_fraction")
        perm = rng.permutation(n_pool)
        fit_X = _take_rows(pool, np.sort(perm[n_val:]))
        val_X = _take_rows(pool, np.sort(perm[:n_val]))
        n_fit, what = n_train, "training rows"
    else:
        fit_X, val_X = X, None
        n_fit, what = n, "rows"
    if n_fit is not None and max(ks) > n_fit:
        raise ValueError(
            f"Expected n_components <= number of {what}, got n_components={max(ks)} "
            f"with {n_fit} {what}; shrink the n_components grid")

    seed = rng.randint(np.iinfo(np.int32).max)
    grid = [(k, ct) for ct in cts for k in ks]
    passes = None
    if bayesian:
        fits = _bayes_search.fit_types(fit_X, max(ks), cts, seed, options, prior,
                                       init_params)
        models = [_bayes_search.point_estimate(m, weight_threshold) for m in fits]
        grid = [(max(ks), ct) for ct in cts]
        data = models[0]._as_data(fit_X)
    elif init_params == "auto":
        models, passes, data = _search_grid(fit_X, ks, cts, grid, seed, options)
    else:
        models = [GaussianMixture(k, covariance_type=ct, random_state=seed,
                                  init_params=init_params, **options) for k, ct in grid]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            if criterion != "heldout" and n_init == 1:
                # every EM iteration of all candidates reads the data once
                # (each candidate still equals its own fit)
                fit_sharing_passes(models, fit_X)
            else:
                for m in models:
                    m.fit(fit_X)
        data = models[0]._as_data(fit_X)
    rows = _search.candidate_rows(grid, models, data, fit_X, criterion, val_X)
    estimators = dict(zip(grid, models))
    if bayesian:
        for row, fit in zip(rows, fits):
            n_eff, weights = effective_components(fit, weight_threshold)
            row.update(effective_n_components=n_eff, lower_bound=fit.lower_bound_,
                       weights=weights)
        point_estimates, estimators = estimators, dict(zip(grid, fits))
    ranking = _rank(rows, criterion, skip_degenerate)
    if not ranking:
        raise ValueError(f"No candidate has a finite {criterion}; check the data")
    best = ranking[0]
    best_row = rows[best]
    params = {"n_components": best_row["n_components"],
              "covariance_type": best_row["covariance_type"]}
    best_model = estimators[(params["n_components"], params["covariance_type"])]
    if criterion == "heldout":
        best_model = (_bayes_search.refit(X, best_model, tol) if bayesian
                      else _refit(X, best_model, options))
    if not best_model.converged_ and max_iter > 0:
        warnings.warn(
            f"The best candidate (n_components={params['n_components']}, "
            f"covariance_type={params['covariance_type']!r}) did not converge in "
            f"max_iter={max_iter} iterations; increase max_iter or tol.",
            ConvergenceWarning, stacklevel=2)
    return SelectionResult(_make_table(rows, bayesian), criterion, best, params, best_model,
                           estimators, ranking, passes,
                           point_estimates if bayesian else None)


# ---------------------------------------------------------------------------
# The pieces of select_model
# ---------------------------------------------------------------------------


def _search_grid(X, ks, cts, grid, seed, options):
    """The 'auto' search (:func:`fastem._search.search`); every candidate
    published as a fitted GaussianMixture (transactionally: a failure leaves
    none half-fitted)."""
    models = [GaussianMixture(k, covariance_type=ct, random_state=seed,
                              init_params="kmeans_standardized", **options)
              for k, ct in grid]
    first = models[0]
    for m in models:
        m._check_base_parameters()
    data = first._as_data(X, None, reset=True)
    with _threads.thread_limits(first.n_jobs):
        runs, passes = _search.search(data, ks, cts, options["n_init"], seed,
                                      options["tol"], options["reg_covar"],
                                      options["max_iter"])
    for (k, ct), m in zip(grid, models):
        run = runs[(k, ct)]
        if run.error is not None:
            continue  # every start failed: the candidate stays unfitted
        m._record_features(data, reset=True)
        if hasattr(first, "feature_names_in_"):
            m.feature_names_in_ = first.feature_names_in_
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            m._finish_fit(run)
    return models, passes, data


def _rank(rows, criterion, skip_degenerate):
    """Positions of the rankable rows, best first (ties: grid order)."""
    finite = [i for i, r in enumerate(rows) if np.isfinite(r[criterion])]
    eligible = [i for i in finite if not rows[i]["degenerate"]]
    if not skip_degenerate or not eligible:
        eligible = finite
    sign = -1.0 if criterion == "heldout" else 1.0
    return sorted(eligible, key=lambda i: (sign * rows[i][criterion], i))


def _refit(X, model, options):
    """The held-out winner refitted on all rows, from its training fit."""
    refit = GaussianMixture(
        model.n_components, covariance_type=model.covariance_type,
        weights_init=model.weights_, means_init=model.means_,
        precisions_init=model.precisions_,
        **{k: v for k, v in options.items() if k != "n_init"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return refit.fit(X)


def _rows_of(table):
    """The table's rows as dicts (DataFrame or structured array)."""
    if hasattr(table, "to_dict"):
        return table.to_dict("records")
    return [{name: _scalar(row[name]) for name in table.dtype.names} for row in table]


def _scalar(value):
    """A NumPy scalar as a Python one; the weights of a bayesian row stay an array."""
    return value.item() if isinstance(value, np.generic) else value
