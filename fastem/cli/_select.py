"""The select command of the ``fastem`` tool: a table of candidate models."""

import warnings

import numpy as np

from ._args import CLIError
from ._data import _check_outputs, _import_optional, load_data
from ._output import _format_table, _require_matplotlib, _save_figure, format_components


def _table_rows(table):
    """(column names, list of row tuples) of a DataFrame, structured array or records."""
    if hasattr(table, "columns") and hasattr(table, "itertuples"):
        cols = [str(c) for c in table.columns]
        return cols, [tuple(r) for r in table.itertuples(index=False, name=None)]
    if isinstance(table, np.ndarray) and table.dtype.names:
        cols = list(table.dtype.names)
        return cols, [tuple(r) for r in table.tolist()]
    rows = list(table)
    if rows and isinstance(rows[0], dict):
        cols = list(rows[0])
        return cols, [tuple(r.get(c) for c in cols) for r in rows]
    raise CLIError(f"fastem.selection returned a table of unsupported type "
                   f"{type(table).__name__}")


#: Columns of the selection table that the tool does not print (the mean
#: log-likelihood repeats the total; the guard's measures are summed up by
#: the 'degenerate' column).
_NOT_PRINTED = ("log_likelihood", "min_component_rows", "min_variance_ratio")


def _selection_columns(cols, rows, criterion):
    """The table columns to print: K, type, the criterion, then the others
    (for a bayesian=True table: type, effective K, the criterion, ...; the
    truncation level is in the heading)."""
    lead = ("n_components", "covariance_type", criterion)
    hidden = _NOT_PRINTED
    if "effective_n_components" in cols:
        lead = ("covariance_type", "effective_n_components", criterion)
        hidden = _NOT_PRINTED + ("n_components",)
    first = [c for c in lead if c in cols]
    rest = []
    for i, c in enumerate(cols):
        if c in first or c in hidden:
            continue
        values = [r[i] for r in rows]
        floats = [v for v in values if isinstance(v, (float, np.floating))]
        if floats and len(floats) == len(values) and all(np.isnan(floats)):
            continue  # e.g. 'heldout' when ranking by bic
        rest.append(c)
    return first + rest


def _cell(v):
    if isinstance(v, np.ndarray):  # the weights of a bayesian=True row
        return ",".join(f"{float(w):.3f}" for w in v)
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.2f}"
    if isinstance(v, bytes):
        return v.decode()
    return str(v)


def cmd_select(args):
    selection = _import_optional("fastem.selection", "fastem select")
    if args.plot is not None:
        _require_matplotlib()
    _check_outputs(args.out, args.plot)
    X, name, names = load_data(args.path, args.columns, args.chunk_size)
    n, d = X.shape
    ks = args.n_components
    if n < max(ks):
        raise CLIError(f"-k up to {max(ks)} needs at least {max(ks)} rows; {name} has {n}")
    bayesian = {}
    if args.bayesian:
        bayesian = dict(bayesian=True, weight_threshold=args.weight_threshold)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        result = selection.select_model(
            X, n_components=ks, covariance_types=args.types, criterion=args.criterion,
            random_state=args.random_state, n_init=args.n_init,
            init_params=args.init_params, skip_degenerate=not args.keep_degenerate,
            **bayesian)
    cols, rows = _table_rows(result.table)
    shown = _selection_columns(cols, rows, args.criterion)
    best = dict(getattr(result, "best_params_", {}) or {})
    best_index = getattr(result, "best_index_", None)
    marks = []
    for i, r in enumerate(rows):
        if best_index is not None:
            is_best = i == best_index
        else:
            rec = dict(zip(cols, r))
            is_best = bool(best) and all(_cell(rec.get(k)) == _cell(v) for k, v in best.items())
        marks.append("*" if is_best else "")
    rows = [tuple(r[cols.index(c)] for c in shown) for r in rows]
    cols = shown
    body = [[_cell(v) for v in r] + [m] for r, m in zip(rows, marks)]
    how = (f"variational fits with truncation K = {max(ks)}, ranked by {args.criterion}"
           if args.bayesian else f"model selection by {args.criterion}")
    print(f"{how}: {name}: {n} rows x {d} features ({', '.join(names)})")
    print()
    print(_format_table(cols + ["best"], body))
    print()
    if hasattr(result, "summary"):
        print(result.summary())
        print()
    print("best: " + ", ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}"
                               for k, v in best.items()))
    est = result.best_estimator_
    if args.bayesian:
        n_eff = rows[best_index][cols.index("effective_n_components")]
        print(f"effective components of the best: {n_eff} of {est.n_components} "
              f"(weights > {args.weight_threshold:g}); below, those components")
    print()
    print(format_components(est, names, args.weight_threshold if args.bayesian else None))
    if args.out is not None or args.plot is not None:
        print()
    if args.out is not None:
        from .. import persist

        persist.save(est, args.out)
        print(f"model saved to {args.out}")
    if args.plot is not None:
        _save_figure(args.plot, lambda ax: result.plot(ax=ax))
        print(f"plot saved to {args.plot}")
    return 0
