"""What the ``fastem`` tool prints and draws: component tables and --plot pictures."""

import importlib.util
import sys

import numpy as np

from ._args import CLIError

#: Most rows drawn in a --plot picture.
PLOT_MAX_POINTS = 20_000
#: A variational mixture's component counts as effective above this weight.
EFFECTIVE_WEIGHT = 1e-3
_MATPLOTLIB_HINT = "pip install 'fastem[plot]'"


def _stds(model):
    ct = model.covariance_type
    K, d = model.means_.shape
    c = model.covariances_
    if ct == "full":
        return np.sqrt(np.diagonal(c, axis1=1, axis2=2))
    if ct == "tied":
        return np.broadcast_to(np.sqrt(np.diag(c)), (K, d))
    if ct == "diag":
        return np.sqrt(c)
    return np.broadcast_to(np.sqrt(c)[:, None], (K, d))


def format_components(model, feature_names, min_weight=None):
    """A readable table: component, weight, means and standard deviations
    (only the components whose weight exceeds ``min_weight`` when given)."""
    K, d = model.means_.shape
    names = list(feature_names) if feature_names is not None else [f"x{i}" for i in range(d)]
    header = ["component", "weight"] + [f"mean[{n}]" for n in names] + [
        f"std[{n}]" for n in names]
    stds = _stds(model)
    order = np.argsort(-model.weights_, kind="stable")
    if min_weight is not None:
        order = [k for k in order if model.weights_[k] > min_weight]
    rows = []
    for k in order:
        rows.append([str(k), f"{model.weights_[k]:.4f}"]
                    + [f"{v:.4g}" for v in model.means_[k]]
                    + [f"{v:.4g}" for v in stds[k]])
    return _format_table(header, rows)


def _format_table(header, rows):
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------


def _require_matplotlib():
    if importlib.util.find_spec("matplotlib") is None:
        raise CLIError(f"--plot needs matplotlib: {_MATPLOTLIB_HINT}")


def _save_figure(path, draw):
    """Call draw(ax) on a new Agg figure and save it as path."""
    _require_matplotlib()
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.8), layout="constrained")
    ax = fig.add_subplot()
    draw(ax)
    fig.savefig(path, format="png", dpi=100)


def _plot_model(path, model, X, names):
    from .. import plot

    if model.means_.shape[1] >= 2:
        _save_figure(path, lambda ax: plot.plot_ellipses(
            model, X, ax=ax, feature_names=names, max_points=PLOT_MAX_POINTS))
    else:
        _save_figure(path, lambda ax: plot.plot_density(model, X, ax=ax, feature_names=names))
