"""One-feature mixture density over a histogram (:func:`plot_density`)."""

from numbers import Integral

import numpy as np

from ._common import (
    _check_feature,
    _check_X,
    _component_colors,
    _feature_names,
    _get_ax,
    _import_pyplot,
    _mixture_parameters,
)


def plot_density(
    model,
    X=None,
    *,
    feature=0,
    bins=30,
    ax=None,
    n_points=500,
    colors=None,
    feature_names=None,
):
    """Plot the mixture density of one feature and its weighted components.

    Draws one line per component, ``w_k * N(x | mu_k, s_k^2)``, and one for
    their sum (the mixture density), over a density-normalised histogram of
    the data when ``X`` is given. For a model with several features the
    curves are the exact marginals along ``feature``.

    Parameters
    ----------
    model : fitted mixture
        Any object with ``weights_`` of shape (n_components,), ``means_`` of
        shape (n_components, n_features), ``covariances_`` and
        ``covariance_type``.
    X : array-like of shape (n_samples, n_features) or (n_samples,), default=None
        Data for the histogram; a 1-D array is accepted when the model has a
        single feature.
    feature : int, default=0
        Which feature's marginal to draw.
    bins : int, sequence or str, default=30
        Passed to :meth:`matplotlib.axes.Axes.hist`.
    ax : matplotlib.axes.Axes, default=None
        Axes to draw into; a new figure is created when None.
    n_points : int, default=500
        Number of grid points for the curves. The grid spans the data
        (padded by 5%) when ``X`` is given, else every component's mean
        plus or minus 5 standard deviations.
    colors : sequence of colours, default=None
        One matplotlib colour per component; a qualitative colormap when
        None. The mixture line is black.
    feature_names : sequence of str of length n_features, default=None
        The x-axis label comes from here; defaults to the model's
        ``feature_names_in_`` if it has one.

    Returns
    -------
    ax : matplotlib.axes.Axes
        The Axes drawn into; its ``lines`` are the n_components component
        curves followed by the mixture curve.
    """
    plt = _import_pyplot()
    weights, means, covariances = _mixture_parameters(model)
    n_components, n_features = means.shape
    feature = _check_feature(feature, n_features)
    if isinstance(n_points, bool) or not isinstance(n_points, Integral) or n_points < 2:
        raise ValueError(f"n_points must be an integer >= 2, got {n_points!r}")
    names = _feature_names(model, feature_names, n_features)
    rgba = _component_colors(n_components, colors)

    mu = means[:, feature]
    sd = np.sqrt(np.clip(covariances[:, feature, feature], np.finfo(float).tiny, None))

    values = None
    if X is not None:
        values = _check_X(X, n_features, allow_1d=True)[:, feature]
        values = values[np.isfinite(values)]
        if values.size == 0:
            raise ValueError(f"X has no finite values in feature {feature}")
        lo, hi = float(values.min()), float(values.max())
        pad = 0.05 * (hi - lo) if hi > lo else 3.0 * float(sd.max())
        lo, hi = lo - pad, hi + pad
    else:
        lo, hi = float(np.min(mu - 5.0 * sd)), float(np.max(mu + 5.0 * sd))
    grid = np.linspace(lo, hi, int(n_points))

    ax = _get_ax(ax, plt)
    if values is not None:
        ax.hist(
            values, bins=bins, density=True, color="0.8", edgecolor="white",
            label="data",
        )

    z = (grid[np.newaxis, :] - mu[:, np.newaxis]) / sd[:, np.newaxis]
    pdf = np.exp(-0.5 * z**2) / (sd[:, np.newaxis] * np.sqrt(2.0 * np.pi))
    weighted = weights[:, np.newaxis] * pdf
    for k in range(n_components):
        ax.plot(
            grid, weighted[k], color=rgba[k], linewidth=1.5, linestyle="--",
            label=f"component {k}", zorder=3,
        )
    ax.plot(
        grid, weighted.sum(axis=0), color="black", linewidth=2.0, label="mixture",
        zorder=2,
    )
    ax.set_xlim(lo, hi)
    ax.set_xlabel(names[feature])
    ax.set_ylabel("density")
    if n_components <= 10:
        ax.legend()
    return ax
