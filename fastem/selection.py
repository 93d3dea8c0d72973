"""Choose the number of components and the covariance type of a mixture.

:func:`select_model` fits one :class:`fastem.GaussianMixture` per
(n_components, covariance_type) pair of a grid and ranks them by BIC, AIC or
the log-likelihood of held-out rows.
"""

import numbers
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state

from ._suffstats import COVARIANCE_TYPES
from ._data import is_stream
from .mixture import GaussianMixture, fit_sharing_passes

__all__ = ["CRITERIA", "HELDOUT_SAMPLE_SIZE", "SelectionResult", "select_model"]

CRITERIA = ("bic", "aic", "heldout")

#: Rows drawn (by reservoir sampling) from a streamed source for the
#: training/validation split of ``criterion='heldout'``.
HELDOUT_SAMPLE_SIZE = 200_000

TABLE_COLUMNS = ("n_components", "covariance_type", "bic", "aic", "heldout",
                 "log_likelihood", "n_parameters", "converged", "n_iter")

_TABLE_DTYPE = np.dtype([
    ("n_components", np.int64), ("covariance_type", "U9"), ("bic", np.float64),
    ("aic", np.float64), ("heldout", np.float64), ("log_likelihood", np.float64),
    ("n_parameters", np.int64), ("converged", np.bool_), ("n_iter", np.int64),
])


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
        - ``heldout`` (float, higher is better): mean log-likelihood per
          held-out row when ``criterion='heldout'``, else NaN;
        - ``log_likelihood`` (float): mean log-likelihood per row on the rows
          the candidate was fitted to;
        - ``n_parameters`` (int): free parameters of the candidate;
        - ``converged`` (bool), ``n_iter`` (int): of the candidate's EM run.

        A DataFrame when pandas can be imported, else a structured array
        with the same field names.
    criterion : {'bic', 'aic', 'heldout'}
        The criterion the best candidate was chosen by.
    best_params_ : dict
        ``{'n_components': int, 'covariance_type': str}`` of the best row.
    best_index_ : int
        Position of the best row in ``table``.
    best_estimator_ : fastem.GaussianMixture
        The best candidate. For ``'bic'`` and ``'aic'`` it is the candidate
        itself (fitted on all rows); for ``'heldout'`` it is refitted on all
        rows with the best parameters.
    estimators_ : dict
        Every fitted candidate, keyed by ``(n_components, covariance_type)``.
        For ``'heldout'`` these are the fits on the training rows.
    """

    def __init__(self, table, criterion, best_index, best_params, best_estimator,
                 estimators):
        self.table = table
        self.criterion = criterion
        self.best_index_ = best_index
        self.best_params_ = best_params
        self.best_estimator_ = best_estimator
        self.estimators_ = estimators

    def __repr__(self):
        p = self.best_params_
        return (f"SelectionResult(criterion={self.criterion!r}, "
                f"n_candidates={len(self.estimators_)}, best: "
                f"n_components={p['n_components']}, "
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
# Validation
# ---------------------------------------------------------------------------


def _check_n_components(n_components):
    if isinstance(n_components, numbers.Integral) and not isinstance(n_components, bool):
        values = [n_components]
    else:
        try:
            values = list(n_components)
        except TypeError:
            raise TypeError(
                "n_components must be an int or an iterable of ints (e.g. "
                f"range(1, 11)), got {n_components!r}") from None
    if not values:
        raise ValueError(
            f"n_components is empty (got {n_components!r}); pass at least one "
            "number of components, e.g. range(1, 11)")
    out = []
    for k in values:
        if isinstance(k, bool) or not isinstance(k, numbers.Integral):
            raise TypeError(f"n_components must hold ints, got {k!r} in {n_components!r}")
        if k < 1:
            raise ValueError(
                f"Every n_components must be >= 1, got {int(k)} in {n_components!r}")
        if int(k) not in out:
            out.append(int(k))
    return out


def _check_covariance_types(covariance_types):
    values = [covariance_types] if isinstance(covariance_types, str) else covariance_types
    try:
        values = list(values)
    except TypeError:
        raise TypeError(
            "covariance_types must be a str or a sequence of str, got "
            f"{covariance_types!r}") from None
    if not values:
        raise ValueError(
            f"covariance_types is empty; choose from {COVARIANCE_TYPES}")
    out = []
    for ct in values:
        if ct not in COVARIANCE_TYPES:
            raise ValueError(
                f"Unknown covariance type {ct!r}; choose from {COVARIANCE_TYPES}")
        if ct not in out:
            out.append(ct)
    return out


def _check_fraction(validation_fraction):
    ok = (isinstance(validation_fraction, numbers.Real)
          and not isinstance(validation_fraction, bool)
          and 0.0 < validation_fraction < 1.0)
    if not ok:
        raise ValueError(
            "validation_fraction must be a float in the open interval (0, 1), got "
            f"{validation_fraction!r}")
    return float(validation_fraction)


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


def _fit(X, n_components, covariance_type, seed, options):
    """Fit one candidate; a ConvergenceWarning becomes ``converged_ = False``."""
    model = GaussianMixture(n_components, covariance_type=covariance_type,
                            random_state=seed, **options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X)
    return model


def _make_table(rows):
    try:
        import pandas as pd
    except ImportError:
        return np.array([tuple(r[c] for c in TABLE_COLUMNS) for r in rows],
                        dtype=_TABLE_DTYPE)
    table = pd.DataFrame({c: [r[c] for r in rows] for c in TABLE_COLUMNS})
    return table.astype({"n_components": "int64", "n_parameters": "int64",
                         "n_iter": "int64", "converged": "bool"})


# ---------------------------------------------------------------------------
# Public function
# ---------------------------------------------------------------------------


def select_model(X, n_components=range(1, 11),
                 covariance_types=("full", "diag", "tied", "spherical"),
                 criterion="bic", n_init=1, validation_fraction=0.2,
                 random_state=None, n_jobs=None, max_iter=100, tol=1e-3,
                 reg_covar=1e-6, missing="error"):
    """Fit a grid of Gaussian mixtures and pick the best by BIC, AIC or held-out
    log-likelihood.

    Every (n_components, covariance_type) pair of the grid is a
    :class:`fastem.GaussianMixture` fit.  With ``n_init=1`` and criterion
    'bic' or 'aic' the candidates share their data passes
    (:func:`fastem.mixture.fit_sharing_passes`): each EM iteration reads the
    rows once for every candidate still running, and each candidate still
    equals its own ``fit`` exactly; then one pass per candidate scores it.
    Otherwise (``n_init > 1``, or 'heldout') the candidates are fitted one
    after the other.  Each uses ``n_jobs`` threads.

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
    criterion : {'bic', 'aic', 'heldout'}, default='bic'
        How the best candidate is chosen:

        - ``'bic'``, ``'aic'``: every candidate is fitted on all rows and the
          lowest criterion on those rows wins;
        - ``'heldout'``: the rows are split at random (``random_state``) into
          a training part and a validation part of ``validation_fraction`` of
          the rows; every candidate is fitted on the training part, and the
          highest mean log-likelihood per validation row wins. The winner is
          then refitted on all rows. For a streamed source the split is made
          inside a uniform reservoir sample (:func:`fastem.io.reservoir_sample`)
          of at most :data:`HELDOUT_SAMPLE_SIZE` (200,000) rows, drawn in one
          pass: candidates are fitted in memory on the sample's training part
          and scored on its validation part; only the final refit streams
          the whole source.

        Ties go to the first candidate in grid order.
    n_init : int, default=1
        Initialisations per candidate (the best is kept).
    validation_fraction : float in (0, 1), default=0.2
        Share of rows held out when ``criterion='heldout'``.
    random_state : int, RandomState instance or None, default=None
        Seeds the split and, through one derived seed shared by all
        candidates, their initialisations. An int gives reproducible results.
    n_jobs : int or None, default=None
        Numba threads of each fit (see :class:`fastem.GaussianMixture`).
    max_iter, tol, reg_covar :
        Passed to every :class:`fastem.GaussianMixture`.
    missing : {'error', 'marginalize'}, default='error'
        Passed to every candidate: with 'marginalize', NaN entries are
        missing values and the criteria use the observed-data likelihood.

    Returns
    -------
    result : SelectionResult
        With ``table``, ``criterion``, ``best_params_``, ``best_index_``,
        ``best_estimator_``, ``estimators_`` and ``plot(ax=None)``.

    Raises
    ------
    ValueError
        If ``n_components`` is empty or holds a value < 1 or larger than the
        number of (training) rows, a covariance type or the criterion is
        unknown, ``validation_fraction`` is not in (0, 1), or a streamed
        source is a one-shot iterator.
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
    parameters, as in :meth:`fastem.GaussianMixture.bic`.

    For a file or chunk source (criterion 'bic' or 'aic', ``n_init=1``) the
    candidates share their data passes: each EM iteration reads the rows once
    for all candidates still running (:func:`fastem.mixture.fit_sharing_passes`);
    in-memory arrays are fitted candidate by candidate, which costs the same
    kernel work without the repeated reads.

    Each candidate is one EM run from one initialisation (per ``n_init``),
    so a candidate stuck in a poor local optimum gets a poor score. When
    scores are close, compare a few ``random_state`` values or raise
    ``n_init``, and look at the whole table (``result.plot()``), not only
    the winner.

    On the Old Faithful data (:func:`fastem.datasets.load_old_faithful`,
    272 rows), with the default grid and settings and ``random_state=0``:

    - eruption times alone (1-D): BIC picks 2 components (BIC 580.9), the
      short (about 2.0 min) and long (about 4.3 min) eruptions. In one
      dimension 'full', 'diag' and 'spherical' are the same model and tie;
      the tie goes to 'full', first in the grid. K itself is a near tie:
      with thorough fits (``n_init=20, tol=1e-6, max_iter=1000``) 3
      components reach BIC 580.6 and 4 components 576.6, so 4 wins; some
      seeds at ``n_init=1`` pick 4 too (``random_state=1``: 580.4).
    - eruptions and waiting times (2-D): BIC picks 2 'full' components
      (BIC 2322.2, against 2325.2 for 2 'tied'). With thorough fits a
      3-component 'tied' model reaches 2314.3, and a 5-component 'diag'
      model reaches 2220.7 only by collapsing one component onto the 14
      rows whose (integer) waiting time is exactly 83 minutes: its variance
      there is ``reg_covar``. Such degenerate winners are an artefact of
      rounded data; a larger ``reg_covar`` (1e-3) removes it and 3 'tied'
      components win.

    Examples
    --------
    >>> from fastem.datasets import load_old_faithful
    >>> from fastem.selection import select_model
    >>> X = load_old_faithful(columns="eruptions")
    >>> result = select_model(X, n_components=range(1, 7), random_state=0)
    >>> result.best_params_["n_components"]
    2
    """
    from . import io

    ks = _check_n_components(n_components)
    cts = _check_covariance_types(covariance_types)
    if criterion not in CRITERIA:
        raise ValueError(f"Unknown criterion {criterion!r}; choose from {CRITERIA}")
    fraction = _check_fraction(validation_fraction)
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
    shared = {}
    if criterion != "heldout" and n_init == 1:
        # every EM iteration of all candidates reads the data once (each
        # candidate still equals its own fit)
        models = [GaussianMixture(k, covariance_type=ct, random_state=seed, **options)
                  for k, ct in grid]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            fit_sharing_passes(models, fit_X)
        shared = dict(zip(grid, models))
    rows, estimators = [], {}
    for ct in cts:
        for k in ks:
            model = shared.get((k, ct)) or _fit(fit_X, k, ct, seed, options)
            crit = model._criteria(fit_X)
            heldout = np.nan if val_X is None else model.score(val_X)
            rows.append({
                "n_components": k, "covariance_type": ct,
                "bic": crit["bic"], "aic": crit["aic"],
                "heldout": heldout, "log_likelihood": crit["total"] / crit["n"],
                "n_parameters": crit["n_parameters"],
                "converged": bool(model.converged_), "n_iter": int(model.n_iter_),
            })
            estimators[(k, ct)] = model

    scores = np.array([r[criterion] for r in rows], dtype=np.float64)
    if not np.isfinite(scores).any():
        raise ValueError(f"No candidate has a finite {criterion}; check the data")
    if criterion == "heldout":
        best = int(np.nanargmax(np.where(np.isfinite(scores), scores, -np.inf)))
    else:
        best = int(np.nanargmin(np.where(np.isfinite(scores), scores, np.inf)))
    best_row = rows[best]
    params = {"n_components": best_row["n_components"],
              "covariance_type": best_row["covariance_type"]}
    best_model = estimators[(params["n_components"], params["covariance_type"])]
    if criterion == "heldout":
        best_model = _fit(X, params["n_components"], params["covariance_type"], seed,
                          options)
    if not best_model.converged_ and max_iter > 0:
        warnings.warn(
            f"The best candidate (n_components={params['n_components']}, "
            f"covariance_type={params['covariance_type']!r}) did not converge in "
            f"max_iter={max_iter} iterations; increase max_iter or tol.",
            ConvergenceWarning, stacklevel=2)
    return SelectionResult(_make_table(rows), criterion, best, params, best_model,
                           estimators)

