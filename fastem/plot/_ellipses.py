"""Confidence ellipses of each component (:func:`plot_ellipses`)."""

from numbers import Real

import numpy as np

from ._common import (
    _check_max_points,
    _component_colors,
    _get_ax,
    _import_pyplot,
    _subsample,
)
from ._planar import _planar_view


def _check_n_std(n_std):
    """Return ``n_std`` as a tuple of positive finite floats."""
    values = (n_std,) if isinstance(n_std, Real) else tuple(n_std)
    if (
        len(values) == 0
        or not all(isinstance(v, Real) and not isinstance(v, bool) for v in values)
        or not all(np.isfinite(v) and v > 0 for v in values)
    ):
        raise ValueError(
            f"n_std must be a positive number or a non-empty sequence of "
            f"positive numbers, got {n_std!r}"
        )
    return tuple(float(v) for v in values)


def _ellipse_geometry(cov2):
    """Semi-axis standard deviations and angle of a 2x2 covariance.

    Returns
    -------
    major, minor : float
        Square roots of the larger and smaller eigenvalue.
    angle : float
        Angle of the major axis in degrees, counter-clockwise from +x.
    """
    eigvals, eigvecs = np.linalg.eigh(0.5 * (cov2 + cov2.T))
    eigvals = np.clip(eigvals, 0.0, None)
    major_axis = eigvecs[:, 1]
    angle = np.degrees(np.arctan2(major_axis[1], major_axis[0]))
    return np.sqrt(eigvals[1]), np.sqrt(eigvals[0]), angle


def plot_ellipses(
    model,
    X=None,
    *,
    features=(0, 1),
    projection=None,
    n_std=(1, 2, 3),
    ax=None,
    colors=None,
    scatter_kws=None,
    max_points=20000,
    random_state=0,
    feature_names=None,
):
    """Draw each component as confidence ellipses, over the data if given.

    For every component and every level in ``n_std`` one
    :class:`matplotlib.patches.Ellipse` is drawn, centred at the component's
    mean, with axes along the eigenvectors of its 2x2 covariance and full
    lengths ``2 * n_std * sqrt(eigenvalue)``. Means are marked with an ``X``.
    When ``X`` is given, its points are scattered first, coloured by the
    component ``model.predict`` assigns them to.

    Parameters
    ----------
    model : fitted mixture
        Any object with ``weights_`` of shape (n_components,), ``means_`` of
        shape (n_components, n_features), ``covariances_``,
        ``covariance_type`` and ``predict``; ``n_features >= 2``.
    X : array-like of shape (n_samples, n_features), default=None
        Data to scatter. At most ``max_points`` rows are drawn.
    features : tuple of two int, default=(0, 1)
        The pair of features to show when ``projection`` is None. The
        picture is the exact marginal: each Gaussian's mean and covariance
        restricted to these two features.
    projection : {None, 'pca'}, default=None
        ``'pca'`` shows the plane of the top two principal axes ``W`` (of
        shape (n_features, 2)) of ``X``, or of the mixture's overall
        covariance when ``X`` is None. Means map to ``W.T @ mu`` and
        covariances to ``W.T @ S @ W``; ``features`` is then ignored.
    n_std : float or sequence of float, default=(1, 2, 3)
        Ellipse sizes in standard deviations along each principal axis.
    ax : matplotlib.axes.Axes, default=None
        Axes to draw into; a new figure is created when None.
    colors : sequence of colours, default=None
        One matplotlib colour per component; a qualitative colormap when
        None.
    scatter_kws : dict, default=None
        Extra keyword arguments for :meth:`matplotlib.axes.Axes.scatter` of
        the data points; they override the defaults.
    max_points : int or None, default=20000
        Largest number of data points to draw; larger ``X`` is subsampled
        uniformly without replacement. None draws every point.
    random_state : int, RandomState instance or None, default=0
        Seeds the subsample.
    feature_names : sequence of str of length n_features, default=None
        Axis labels; defaults to the model's ``feature_names_in_`` if it has
        one, else ``"feature i"``.

    Returns
    -------
    ax : matplotlib.axes.Axes
        The Axes drawn into.

    Raises
    ------
    ValueError
        If the model has one feature (use :func:`plot_density`), ``features``
        is not a pair of distinct valid indices, ``projection`` is unknown, or
        ``X`` does not have ``n_features`` columns.
    """
    plt = _import_pyplot()
    from matplotlib.patches import Ellipse

    means2, covs2, X_full, project, (xlabel, ylabel) = _planar_view(
        model, X, features, projection, feature_names
    )
    levels = _check_n_std(n_std)
    max_points = _check_max_points(max_points)
    n_components = means2.shape[0]
    rgba = _component_colors(n_components, colors)
    ax = _get_ax(ax, plt)

    if X_full is not None:
        shown = _subsample(X_full, max_points, random_state)
        labels = np.asarray(model.predict(shown), dtype=np.intp)
        points = project(shown)
        kws = {
            "s": 12 if points.shape[0] <= 2000 else 4,
            "alpha": 0.5,
            "linewidths": 0,
            "rasterized": points.shape[0] > 5000,
            "zorder": 1,
        }
        user_kws = dict(scatter_kws or {})
        if not {"c", "color", "colors"} & user_kws.keys():
            kws["c"] = rgba[labels]
        kws.update(user_kws)
        ax.scatter(points[:, 0], points[:, 1], **kws)

    # Inner ellipses are drawn boldest, outer ones fade.
    ranks = np.argsort(np.argsort(levels, kind="stable"), kind="stable")
    fade = ranks / max(len(levels) - 1, 1)
    for k in range(n_components):
        major, minor, angle = _ellipse_geometry(covs2[k])
        for level, f in zip(levels, fade):
            ax.add_patch(
                Ellipse(
                    xy=(means2[k, 0], means2[k, 1]),
                    width=2.0 * level * major,
                    height=2.0 * level * minor,
                    angle=angle,
                    facecolor="none",
                    edgecolor=rgba[k],
                    linewidth=2.0 - 0.75 * f,
                    alpha=1.0 - 0.5 * f,
                    zorder=2,
                )
            )
    ax.scatter(
        means2[:, 0],
        means2[:, 1],
        c=rgba,
        marker="X",
        s=90,
        edgecolors="black",
        linewidths=1.0,
        zorder=3,
    )
    ax.autoscale_view()
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return ax
