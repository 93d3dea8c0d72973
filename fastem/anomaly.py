"""Flag low-density rows under a fitted mixture as outliers.

A fitted density model gives every row a log-density,
``model.score_samples(X)``. Rows whose log-density falls below a threshold
are the ones the model finds least plausible; the threshold is either an
explicit log-density or a quantile of the scores themselves (the lowest
1% of rows, say), as scikit-learn's outlier detectors do with their
``contamination``.
"""

import numbers

import numpy as np
from sklearn.utils.validation import check_is_fitted

__all__ = ["density_threshold", "outliers"]


class _DefaultQuantile(float):
    """The default ``quantile`` of :func:`outliers`: 0.01, but recognisable,
    so that an explicit ``quantile`` together with ``threshold`` is an error
    while ``threshold`` alone is not."""

    __slots__ = ()


_DEFAULT_QUANTILE = _DefaultQuantile(0.01)


def _check_quantile(quantile):
    ok = (isinstance(quantile, numbers.Real) and not isinstance(quantile, bool)
          and 0.0 < quantile < 1.0)
    if not ok:
        raise ValueError(
            "quantile must be a float in the open interval (0, 1), e.g. 0.01 to flag "
            f"the lowest-density 1% of rows; got {quantile!r}")
    return float(quantile)


def _check_threshold(threshold):
    ok = (isinstance(threshold, numbers.Real) and not isinstance(threshold, bool)
          and not np.isnan(threshold))
    if not ok:
        raise ValueError(
            f"threshold must be a real log-density (a float, not NaN); got {threshold!r}")
    return float(threshold)


def _scores(model, X):
    if not hasattr(model, "score_samples"):
        raise TypeError(
            f"model must be a fitted density model with a score_samples method "
            f"(e.g. fastem.GaussianMixture); got {type(model).__name__}")
    check_is_fitted(model)
    scores = np.asarray(model.score_samples(X), dtype=np.float64).ravel()
    if scores.size == 0:
        raise ValueError("X contains no rows to score")
    if np.isnan(scores).any():
        i = int(np.flatnonzero(np.isnan(scores))[0])
        raise ValueError(f"score_samples returned NaN for row {i}; check X for NaN")
    return scores


def _quantile_of(scores, quantile):
    # -inf scores (rows with zero density in floating point) would make the
    # linear interpolation NaN; they are the lowest anyway.
    finite = np.where(np.isneginf(scores), np.finfo(np.float64).min, scores)
    return float(np.quantile(finite, quantile))


def density_threshold(model, X, quantile):
    """The log-density below which a given share of the rows of X falls.

    Parameters
    ----------
    model : fitted density model
        Any fitted object with ``score_samples`` (a
        :class:`fastem.GaussianMixture`, scikit-learn's mixtures, ...).
    X : array-like of shape (n_samples, n_features), path or fastem.io.ChunkSource
        Rows to score; anything ``model.score_samples`` accepts.
    quantile : float in (0, 1)
        Share of rows meant to fall below the threshold.

    Returns
    -------
    threshold : float
        ``np.quantile(model.score_samples(X), quantile)`` (linear
        interpolation between order statistics), a log-density.

    Raises
    ------
    ValueError
        If ``quantile`` is not in (0, 1) or X has no rows.
    sklearn.exceptions.NotFittedError
        If the model is not fitted.
    """
    quantile = _check_quantile(quantile)
    return _quantile_of(_scores(model, X), quantile)


def outliers(model, X, quantile=_DEFAULT_QUANTILE, threshold=None, return_scores=False):
    """Flag the rows of X with a low log-density under a fitted model.

    Give either ``quantile`` (the default, 0.01) or ``threshold``, not both.

    Parameters
    ----------
    model : fitted density model
        Any fitted object with ``score_samples`` (a
        :class:`fastem.GaussianMixture`, scikit-learn's mixtures, ...).
    X : array-like of shape (n_samples, n_features), path or fastem.io.ChunkSource
        Rows to score; anything ``model.score_samples`` accepts.
    quantile : float in (0, 1) or None, default=0.01
        Flag rows whose log-density is strictly below this quantile of the
        log-densities of all rows of X (see :func:`density_threshold`). With
        distinct scores the share of rows flagged is within ``1 / n_samples``
        of ``quantile``. Ignored when left at its default and ``threshold``
        is given.
    threshold : float, default=None
        Flag rows whose log-density (``score_samples``, natural log) is
        strictly below this value instead, e.g. a threshold computed once on
        training data with :func:`density_threshold` and reused on new data.
    return_scores : bool, default=False
        Also return the log-density of every row.

    Returns
    -------
    mask : ndarray of bool of shape (n_samples,)
        True for the flagged rows.
    scores : ndarray of shape (n_samples,)
        ``model.score_samples(X)``; only when ``return_scores`` is True.

    Raises
    ------
    ValueError
        If both an explicit ``quantile`` and ``threshold`` are given, or
        neither (``quantile=None`` without ``threshold``); if ``quantile`` is
        not in (0, 1) or ``threshold`` is NaN; if X has no rows.
    sklearn.exceptions.NotFittedError
        If the model is not fitted.

    Examples
    --------
    >>> import numpy as np
    >>> import fastem
    >>> from fastem.anomaly import outliers
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(1000, 2))
    >>> model = fastem.GaussianMixture(1, random_state=0).fit(X)
    >>> int(outliers(model, X, quantile=0.01).sum())
    10
    """
    explicit_quantile = quantile is not None and quantile is not _DEFAULT_QUANTILE
    if threshold is not None and explicit_quantile:
        raise ValueError(
            f"Give either quantile or threshold, not both; got quantile={quantile!r} "
            f"and threshold={threshold!r}")
    if threshold is None and quantile is None:
        raise ValueError(
            "Give either quantile (a share of rows in (0, 1)) or threshold (a "
            "log-density); got neither")
    if threshold is not None:
        threshold = _check_threshold(threshold)
        scores = _scores(model, X)
    else:
        quantile = _check_quantile(quantile)
        scores = _scores(model, X)
        threshold = _quantile_of(scores, quantile)
    mask = scores < threshold
    if return_scores:
        return mask, scores
    return mask
