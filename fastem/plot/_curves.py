"""Curves: log-likelihood per EM iteration (:func:`plot_loglik`) and a
model-selection criterion against n_components (:func:`plot_selection`).
"""

from collections.abc import Mapping, Sequence

import numpy as np

from ._common import _COVARIANCE_TYPES, _get_ax, _import_pyplot

# Criterion column -> (axis label, True when larger values are better).
_CRITERIA = {
    "bic": ("BIC (lower is better)", False),
    "icl": ("ICL (lower is better)", False),
    "aic": ("AIC (lower is better)", False),
    "heldout": ("held-out log-likelihood per sample (higher is better)", True),
}


def _as_columns(table):
    """Turn a selection table into a dict of 1-D arrays keyed by column name."""
    if isinstance(table, np.ndarray) and table.dtype.names is not None:
        return {name: np.asarray(table[name]) for name in table.dtype.names}
    if isinstance(table, Mapping):
        return {str(key): np.asarray(value) for key, value in table.items()}
    if hasattr(table, "columns") and hasattr(table, "__getitem__"):
        # pandas / polars style data frames.
        return {str(col): np.asarray(table[col]) for col in table.columns}
    if (
        isinstance(table, Sequence)
        and len(table) > 0
        and all(isinstance(row, Mapping) for row in table)
    ):
        keys = list(table[0])
        return {str(k): np.asarray([row.get(k) for row in table]) for k in keys}
    raise TypeError(
        "plot_selection expects an object with a 'table' attribute, a mapping "
        "of columns, a structured NumPy array, a list of row dicts or a "
        f"DataFrame; got {type(table).__name__}"
    )


def _text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def plot_loglik(model, ax=None):
    """Plot the mean log-likelihood per sample against the EM iteration.

    Parameters
    ----------
    model : fitted mixture
        Any object with ``lower_bounds_``: a sequence of shape (n_iter,)
        holding the mean log-likelihood per sample after each iteration.
    ax : matplotlib.axes.Axes, default=None
        Axes to draw into; a new figure is created when None.

    Returns
    -------
    ax : matplotlib.axes.Axes
        The Axes drawn into, with one line at x = 1, ..., n_iter.

    Raises
    ------
    ValueError
        If the model has no (or an empty) ``lower_bounds_``.
    """
    plt = _import_pyplot()
    from matplotlib.ticker import MaxNLocator

    bounds = getattr(model, "lower_bounds_", None)
    if bounds is None:
        raise ValueError(
            f"{type(model).__name__} has no lower_bounds_ to plot; fit the "
            "model first (scikit-learn >= 1.7 and fastem record one value per "
            "EM iteration)"
        )
    bounds = np.asarray(bounds, dtype=np.float64).ravel()
    if bounds.size == 0:
        raise ValueError(
            "lower_bounds_ is empty: the model ran no EM iterations to plot"
        )
    iterations = np.arange(1, bounds.size + 1)
    ax = _get_ax(ax, plt)
    ax.plot(iterations, bounds, marker="o" if bounds.size <= 50 else None,
            markersize=4)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("iteration")
    ax.set_ylabel("mean log-likelihood per sample")
    return ax


def plot_selection(result_or_table, ax=None, criterion=None):
    """Plot a model-selection criterion against the number of components.

    One line per covariance type; the best row overall (lowest BIC, ICL or
    AIC, highest held-out log-likelihood) is marked with a star.  For a
    :class:`~fastem.selection.SelectionResult` plotted by its own criterion,
    the best and the runner-up are those of its ranking (degenerate
    candidates left out), the runner-up marked with a diamond.  A table of
    ``select_model(..., bayesian=True)`` (with an ``effective_n_components``
    column) is plotted against the effective number of components: one
    point per covariance type, the criterion of its variational fit
    restricted to those components.  Rows that repeat
    a (covariance_type, n_components) pair, such as cross-validation folds,
    are averaged; NaN entries (failed fits) are ignored.

    Parameters
    ----------
    result_or_table : object with a ``table`` attribute, mapping, structured \
ndarray, list of dicts or DataFrame
        Columns ``n_components``, ``covariance_type`` and at least one of
        ``bic``, ``aic``, ``heldout``, each of shape (n_rows,).
    ax : matplotlib.axes.Axes, default=None
        Axes to draw into; a new figure is created when None.
    criterion : {'bic', 'icl', 'aic', 'heldout'}, default=None
        Column to plot. When None, the result's own ``criterion`` attribute
        is used if it names a present column, else the first of ``bic``,
        ``aic``, ``heldout`` that is present.

    Returns
    -------
    ax : matplotlib.axes.Axes
        The Axes drawn into: ``ax.lines`` holds one line per covariance type
        (labelled with it), the best point is a separate scatter marker.

    Raises
    ------
    ValueError
        If a required column is missing, columns differ in length, the
        criterion is unknown or absent, or no value is finite.
    TypeError
        If the table is of an unsupported kind.
    """
    plt = _import_pyplot()
    from matplotlib.ticker import MaxNLocator

    is_table = isinstance(result_or_table, (Mapping, np.ndarray)) or hasattr(
        result_or_table, "columns"
    )
    # A data frame may have a column called "table" or "criterion": only a
    # selection result is asked for those attributes.
    result = None if is_table else result_or_table
    table = result_or_table if is_table else getattr(result, "table", result)
    columns = _as_columns(table)
    missing = [c for c in ("n_components", "covariance_type") if c not in columns]
    if missing:
        raise ValueError(
            f"The selection table needs columns 'n_components' and "
            f"'covariance_type'; missing {missing}, found {sorted(columns)}"
        )
    if criterion is None:
        preferred = getattr(result, "criterion", None)
        known = isinstance(preferred, str) and preferred in _CRITERIA
        if known and preferred in columns:
            criterion = preferred
        else:
            present = [c for c in _CRITERIA if c in columns]
            if not present:
                raise ValueError(
                    "The selection table has no criterion column: expected one "
                    f"of 'bic', 'icl', 'aic', 'heldout', found {sorted(columns)}"
                )
            criterion = present[0]
    elif criterion not in _CRITERIA:
        raise ValueError(
            f"criterion must be one of 'bic', 'icl', 'aic', 'heldout' or None, got "
            f"{criterion!r}"
        )
    elif criterion not in columns:
        raise ValueError(
            f"criterion={criterion!r} is not a column of the selection table; "
            f"found {sorted(columns)}"
        )

    x_name = ("effective_n_components" if "effective_n_components" in columns
              else "n_components")
    n_components = np.asarray(columns[x_name]).ravel()
    cov_types = np.asarray(columns["covariance_type"]).ravel()
    scores = np.asarray(columns[criterion], dtype=np.float64).ravel()
    if not n_components.size == cov_types.size == scores.size:
        raise ValueError(
            f"Columns differ in length: {x_name} has {n_components.size}, "
            f"covariance_type {cov_types.size}, {criterion} {scores.size} rows"
        )
    try:
        n_components = n_components.astype(np.int64)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"{x_name} must hold integers, got {n_components[:5]!r}"
        ) from err
    if not np.isfinite(scores).any():
        raise ValueError(f"The {criterion} column has no finite value to plot")

    label, larger_is_better = _CRITERIA[criterion]
    cov_names = [_text(c) for c in cov_types]
    order = sorted(
        dict.fromkeys(cov_names),
        key=lambda c: (_COVARIANCE_TYPES.index(c) if c in _COVARIANCE_TYPES
                       else len(_COVARIANCE_TYPES), cov_names.index(c)),
    )
    cov_names = np.asarray(cov_names, dtype=object)

    ax = _get_ax(ax, plt)
    best = None  # (score, cov_type, n, colour)
    for cov_type in order:
        rows = cov_names == cov_type
        ns = np.unique(n_components[rows])
        means = []
        for n in ns:
            vals = scores[rows & (n_components == n)]
            vals = vals[np.isfinite(vals)]
            means.append(vals.mean() if vals.size else np.nan)
        means = np.asarray(means)
        (line,) = ax.plot(ns, means, marker="o", label=cov_type)
        finite = np.isfinite(means)
        if finite.any():
            pick = np.nanargmax(means) if larger_is_better else np.nanargmin(means)
            score = means[pick]
            if (
                best is None
                or (larger_is_better and score > best[0])
                or (not larger_is_better and score < best[0])
            ):
                best = (score, cov_type, int(ns[pick]), line.get_color())

    colours = {c: line.get_color() for c, line in zip(order, ax.lines[-len(order):])}
    ranking = getattr(result, "ranking_", None)
    if ranking and getattr(result, "criterion", None) == criterion:
        # the result's own ranking (degenerate candidates left out)
        picks = [(scores[i], cov_names[i], int(n_components[i])) for i in ranking[:2]]
    else:
        picks = [best[:3]]
    what = "effective components" if x_name != "n_components" else "components"
    score, cov_type, n_best = picks[0]
    ax.scatter(
        [n_best], [score], marker="*", s=300, color=colours[cov_type],
        edgecolors="black", linewidths=1.0, zorder=3,
        label=f"best: {cov_type}, {n_best} {what}",
    )
    if len(picks) > 1:
        score, cov_type, n_second = picks[1]
        ax.scatter(
            [n_second], [score], marker="D", s=90, color=colours[cov_type],
            edgecolors="black", linewidths=1.0, zorder=3,
            label=f"runner-up: {cov_type}, {n_second} {what}",
        )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(x_name.replace("_", " ") if x_name != "n_components" else x_name)
    ax.set_ylabel(label)
    ax.legend(title="covariance_type")
    return ax
