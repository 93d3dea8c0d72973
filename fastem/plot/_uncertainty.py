"""Points the mixture is unsure about (:func:`plot_uncertainty`)."""

import numpy as np

from ._common import (
    _check_max_points,
    _component_colors,
    _get_ax,
    _import_pyplot,
    _subsample,
)
from ._planar import _planar_view


def plot_uncertainty(
    model,
    X,
    *,
    features=(0, 1),
    ax=None,
    projection=None,
    cmap="viridis",
    colors=None,
    max_points=20000,
    random_state=0,
    feature_names=None,
):
    """Show which points the mixture is unsure about.

    Every point is drawn small in the colour of its predicted component.
    On top, each point gets a marker whose colour (on ``cmap``, explained by
    a colorbar) and area grow with its uncertainty ``1 - max_k r_k``, where
    ``r`` are the responsibilities from ``model.predict_proba``; confidently
    assigned points have no overlay, so the boundaries between components
    stand out.

    Parameters
    ----------
    model : fitted mixture
        Any object with ``weights_``, ``means_`` of shape
        (n_components, n_features) with ``n_features >= 2``,
        ``covariances_``, ``covariance_type`` and ``predict_proba``.
    X : array-like of shape (n_samples, n_features)
        The data. At most ``max_points`` rows are drawn.
    features : tuple of two int, default=(0, 1)
        The pair of features to show when ``projection`` is None.
    ax : matplotlib.axes.Axes, default=None
        Axes to draw into; a new figure is created when None.
    projection : {None, 'pca'}, default=None
        ``'pca'`` shows the plane of the top two principal axes of ``X``
        instead of a feature pair.
    cmap : str or matplotlib.colors.Colormap, default='viridis'
        Colormap of the uncertainty, from 0 to its largest possible value
        ``1 - 1/n_components``.
    colors : sequence of colours, default=None
        One matplotlib colour per component; a qualitative colormap when
        None.
    max_points : int or None, default=20000
        Largest number of points to draw; larger ``X`` is subsampled
        uniformly without replacement. None draws every point.
    random_state : int, RandomState instance or None, default=0
        Seeds the subsample.
    feature_names : sequence of str of length n_features, default=None
        Axis labels; defaults to the model's ``feature_names_in_`` if it has
        one.

    Returns
    -------
    ax : matplotlib.axes.Axes
        The Axes drawn into. The colorbar lives in its own Axes of the same
        figure and is reachable as ``ax.collections[-1].colorbar``.
    """
    plt = _import_pyplot()
    if X is None:
        raise ValueError("plot_uncertainty needs the data X, got None")
    _, _, X_full, project, (xlabel, ylabel) = _planar_view(
        model, X, features, projection, feature_names
    )
    max_points = _check_max_points(max_points)
    shown = _subsample(X_full, max_points, random_state)
    resp = np.asarray(model.predict_proba(shown), dtype=np.float64)
    n_components = np.asarray(model.means_).shape[0]
    if resp.shape != (shown.shape[0], n_components):
        raise ValueError(
            f"predict_proba returned shape {resp.shape}, expected "
            f"({shown.shape[0]}, {n_components})"
        )
    labels = resp.argmax(axis=1)
    uncertainty = np.clip(1.0 - resp.max(axis=1), 0.0, 1.0)
    vmax = 1.0 - 1.0 / n_components if n_components > 1 else 1.0
    rgba = _component_colors(n_components, colors)
    points = project(shown)

    ax = _get_ax(ax, plt)
    many = points.shape[0] > 5000
    ax.scatter(
        points[:, 0], points[:, 1], c=rgba[labels], s=6, alpha=0.4,
        linewidths=0, rasterized=many, zorder=1,
    )
    order = np.argsort(uncertainty, kind="stable")  # most uncertain on top
    scaled = np.clip(uncertainty[order] / vmax, 0.0, 1.0)
    overlay = ax.scatter(
        points[order, 0],
        points[order, 1],
        c=uncertainty[order],
        s=60.0 * scaled,
        alpha=0.2 + 0.8 * scaled,
        cmap=cmap,
        vmin=0.0,
        vmax=vmax,
        linewidths=0,
        rasterized=many,
        zorder=2,
    )
    ax.figure.colorbar(overlay, ax=ax, label="uncertainty (1 - max responsibility)")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return ax
