"""Plotting helpers for fitted Gaussian mixtures.

matplotlib is an optional dependency (``pip install 'fastem[plot]'``); it is
imported only when a plotting function is called, so ``import fastem`` never
needs it.

Every function accepts any fitted object that carries scikit-learn's
``GaussianMixture`` attributes (``weights_``, ``means_``, ``covariances_``,
``covariance_type``) and methods (``predict``, ``predict_proba``). That covers
:class:`fastem.GaussianMixture`, :class:`fastem.MiniBatchGaussianMixture` and
:class:`sklearn.mixture.GaussianMixture`. Each function draws into ``ax`` when
one is given, otherwise into a new figure, and returns the matplotlib Axes.
"""

from collections.abc import Mapping, Sequence
from numbers import Integral, Real

import numpy as np
from sklearn.exceptions import NotFittedError
from sklearn.utils import check_random_state

__all__ = [
    "plot_density",
    "plot_ellipses",
    "plot_loglik",
    "plot_selection",
    "plot_uncertainty",
]

_MATPLOTLIB_MISSING = "Plotting needs matplotlib: pip install 'fastem[plot]'"

_COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")

# Criterion column -> (axis label, True when larger values are better).
_CRITERIA = {
    "bic": ("BIC (lower is better)", False),
    "aic": ("AIC (lower is better)", False),
    "heldout": ("held-out log-likelihood per sample (higher is better)", True),
}


# --------------------------------------------------------------------------
# Private helpers
# --------------------------------------------------------------------------


def _import_pyplot():
    """Return ``matplotlib.pyplot``, or raise an ImportError saying how to get it."""
    try:
        import matplotlib  # noqa: F401
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError(_MATPLOTLIB_MISSING) from err
    return plt


def _get_ax(ax, plt):
    """Return ``ax``, or the Axes of a new figure when ``ax`` is None."""
    if ax is None:
        _, ax = plt.subplots()
    return ax


def _check_fitted(model, attributes=("weights_", "means_", "covariances_")):
    """Raise NotFittedError when ``model`` lacks any of ``attributes``."""
    for name in attributes:
        if getattr(model, name, None) is None:
            raise NotFittedError(
                f"{type(model).__name__} has no attribute {name!r}: fit the "
                "model before plotting it"
            )


def _full_covariances(model):
    """Expand a fitted model's covariances to one full matrix per component.

    Parameters
    ----------
    model : fitted mixture
        Needs ``means_`` of shape (n_components, n_features), ``covariances_``
        and ``covariance_type`` (missing means ``'full'``).

    Returns
    -------
    covariances : ndarray of shape (n_components, n_features, n_features)
        A new array; ``'tied'`` is repeated for every component, ``'diag'``
        and ``'spherical'`` become diagonal matrices.
    """
    _check_fitted(model, ("means_", "covariances_"))
    means = np.asarray(model.means_, dtype=np.float64)
    if means.ndim != 2:
        raise ValueError(
            f"Expected means_ of shape (n_components, n_features), got shape "
            f"{means.shape}"
        )
    n_components, n_features = means.shape
    cov_type = getattr(model, "covariance_type", "full")
    cov = np.asarray(model.covariances_, dtype=np.float64)
    expected = {
        "full": (n_components, n_features, n_features),
        "tied": (n_features, n_features),
        "diag": (n_components, n_features),
        "spherical": (n_components,),
    }
    if cov_type not in expected:
        raise ValueError(
            f"Unknown covariance_type={cov_type!r}; expected one of "
            f"{', '.join(map(repr, _COVARIANCE_TYPES))}"
        )
    if cov.shape != expected[cov_type]:
        raise ValueError(
            f"covariances_ has shape {cov.shape}, but covariance_type="
            f"{cov_type!r} with {n_components} components and {n_features} "
            f"features needs shape {expected[cov_type]}"
        )
    if cov_type == "full":
        return cov.copy()
    if cov_type == "tied":
        return np.repeat(cov[np.newaxis], n_components, axis=0)
    eye = np.eye(n_features)
    if cov_type == "diag":
        return cov[:, :, np.newaxis] * eye
    return cov[:, np.newaxis, np.newaxis] * eye


def _mixture_parameters(model):
    """Return ``(weights, means, covariances)`` as float64, covariances full.

    Returns
    -------
    weights : ndarray of shape (n_components,)
    means : ndarray of shape (n_components, n_features)
    covariances : ndarray of shape (n_components, n_features, n_features)
    """
    _check_fitted(model)
    covariances = _full_covariances(model)
    means = np.asarray(model.means_, dtype=np.float64)
    weights = np.asarray(model.weights_, dtype=np.float64)
    if weights.shape != (means.shape[0],):
        raise ValueError(
            f"weights_ has shape {weights.shape}, expected ({means.shape[0]},) "
            "(one weight per component)"
        )
    return weights, means, covariances


def _check_X(X, n_features, *, allow_1d=False):
    """Return ``X`` as a float 2-D array with ``n_features`` columns."""
    X = np.asarray(X)
    if X.dtype.kind not in "fiub":
        raise ValueError(f"X must be numeric, got dtype {X.dtype}")
    if X.dtype.kind != "f":
        X = X.astype(np.float64)
    if X.ndim == 1 and allow_1d and n_features == 1:
        X = X.reshape(-1, 1)
    if X.ndim != 2:
        raise ValueError(
            f"Expected X of shape (n_samples, n_features), got an array with "
            f"{X.ndim} dimension(s), shape {X.shape}"
        )
    if X.shape[1] != n_features:
        raise ValueError(
            f"X has {X.shape[1]} features, but the model was fitted with "
            f"{n_features} features"
        )
    if X.shape[0] == 0:
        raise ValueError("X has 0 samples; pass at least one row")
    return X


def _check_features(features, n_features):
    """Validate a pair of distinct feature indices and return it as a tuple."""
    if isinstance(features, np.ndarray):
        features = features.tolist()
    if (
        isinstance(features, (str, bytes))
        or not isinstance(features, Sequence)
        or len(features) != 2
        or not all(
            isinstance(f, Integral) and not isinstance(f, bool) for f in features
        )
    ):
        raise ValueError(
            f"features must be a pair of integer feature indices such as "
            f"(0, 1), got {features!r}"
        )
    features = (int(features[0]), int(features[1]))
    if not all(0 <= f < n_features for f in features):
        raise ValueError(
            f"features={features} is out of range for {n_features} features"
        )
    if features[0] == features[1]:
        raise ValueError(
            f"features={features} names the same feature twice; pick two "
            "different features"
        )
    return features


def _check_feature(feature, n_features):
    """Validate a single feature index and return it as an int."""
    if isinstance(feature, bool) or not isinstance(feature, Integral):
        raise ValueError(f"feature must be an integer index, got {feature!r}")
    if not 0 <= feature < n_features:
        raise ValueError(
            f"feature={feature} is out of range for {n_features} features"
        )
    return int(feature)


def _feature_names(model, feature_names, n_features):
    """Return one axis label per feature."""
    if feature_names is None:
        feature_names = getattr(model, "feature_names_in_", None)
        if feature_names is None:
            return [f"feature {i}" for i in range(n_features)]
    names = [str(name) for name in feature_names]
    if len(names) != n_features:
        raise ValueError(
            f"feature_names has {len(names)} entries, expected {n_features} "
            "(one per feature of the model)"
        )
    return names


def _check_max_points(max_points):
    if max_points is None:
        return None
    if isinstance(max_points, bool) or not isinstance(max_points, Integral):
        raise ValueError(
            f"max_points must be a positive integer or None, got {max_points!r}"
        )
    if max_points < 1:
        raise ValueError(f"max_points must be >= 1, got max_points={max_points}")
    return int(max_points)


def _subsample(X, max_points, random_state):
    """Return at most ``max_points`` rows of ``X``, drawn without replacement."""
    if max_points is None or X.shape[0] <= max_points:
        return X
    rng = check_random_state(random_state)
    rows = np.sort(rng.choice(X.shape[0], size=max_points, replace=False))
    return X[rows]


def _component_colors(n_components, colors):
    """Return an RGBA array of shape (n_components, 4), one colour per component."""
    import matplotlib
    from matplotlib.colors import to_rgba_array

    if colors is None:
        if n_components <= 10:
            cmap = matplotlib.colormaps["tab10"]
            return cmap(np.arange(n_components))
        if n_components <= 20:
            cmap = matplotlib.colormaps["tab20"]
            return cmap(np.arange(n_components))
        return matplotlib.colormaps["turbo"](np.linspace(0.0, 1.0, n_components))
    if isinstance(colors, str):
        raise ValueError(
            f"colors must be a sequence of {n_components} colours (one per "
            f"component), got the single string {colors!r}"
        )
    rgba = to_rgba_array(colors)
    if rgba.shape[0] < n_components:
        raise ValueError(
            f"colors has {rgba.shape[0]} entries but the model has "
            f"{n_components} components; pass at least one colour per component"
        )
    return rgba[:n_components]


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


def _pca_basis(X, weights, means, covariances):
    """Top-2 principal axes of the data, or of the mixture when ``X`` is None.

    Returns
    -------
    W : ndarray of shape (n_features, 2)
        Orthonormal columns, largest variance first; each column's largest
        entry in absolute value is made positive so the picture is stable.
    explained : ndarray of shape (2,)
        Fraction of the total variance along each axis.
    """
    if X is not None:
        if X.shape[0] < 2:
            raise ValueError(
                f"projection='pca' needs at least 2 samples in X, got "
                f"{X.shape[0]}"
            )
        total = np.cov(X, rowvar=False)
    else:
        # Law of total variance: E[cov] + cov[E] over the components.
        w = weights / weights.sum()
        overall_mean = w @ means
        second_moment = np.einsum(
            "k,kij->ij",
            w,
            covariances + means[:, :, np.newaxis] * means[:, np.newaxis, :],
        )
        total = second_moment - np.outer(overall_mean, overall_mean)
    total = 0.5 * (total + total.T)
    eigvals, eigvecs = np.linalg.eigh(total)
    order = np.argsort(eigvals)[::-1][:2]
    W = eigvecs[:, order]
    flip = np.sign(W[np.argmax(np.abs(W), axis=0), np.arange(2)])
    W = W * np.where(flip == 0, 1.0, flip)
    total_variance = np.clip(eigvals, 0.0, None).sum()
    if total_variance > 0:
        explained = np.clip(eigvals[order], 0.0, None) / total_variance
    else:
        explained = np.zeros(2)
    return W, explained


def _planar_view(model, X, features, projection, feature_names):
    """Reduce a mixture (and data) to two dimensions for a scatter-type plot.

    Returns
    -------
    means2 : ndarray of shape (n_components, 2)
    covs2 : ndarray of shape (n_components, 2, 2)
    X_full : ndarray of shape (n_samples, n_features) or None
        Validated data in the model's feature space (for ``predict``).
    project : callable
        Maps rows of shape (n, n_features) to (n, 2).
    labels : tuple of str
        The x and y axis labels.
    """
    weights, means, covariances = _mixture_parameters(model)
    n_features = means.shape[1]
    X_full = None if X is None else _check_X(X, n_features)

    if projection is None:
        if n_features < 2:
            raise ValueError(
                "This plot needs at least 2 features, but the model has 1; use "
                "fastem.plot.plot_density for one-dimensional mixtures"
            )
        i, j = _check_features(features, n_features)
        names = _feature_names(model, feature_names, n_features)
        idx = np.array([i, j])
        means2 = means[:, idx]
        # The marginal of a Gaussian on a subset of features is the sub-block.
        covs2 = covariances[:, idx[:, np.newaxis], idx[np.newaxis, :]]
        return means2, covs2, X_full, lambda rows: rows[:, idx], (names[i], names[j])

    if projection != "pca":
        raise ValueError(f"projection must be None or 'pca', got {projection!r}")
    if n_features < 2:
        raise ValueError(
            "projection='pca' needs at least 2 features, but the model has 1; "
            "use fastem.plot.plot_density for one-dimensional mixtures"
        )
    W, explained = _pca_basis(X_full, weights, means, covariances)
    means2 = means @ W
    covs2 = np.einsum("ia,kij,jb->kab", W, covariances, W)
    labels = tuple(
        f"PC{a + 1} ({100.0 * explained[a]:.1f}% of variance)" for a in range(2)
    )
    return means2, covs2, X_full, lambda rows: rows @ W, labels


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


# --------------------------------------------------------------------------
# Public functions
# --------------------------------------------------------------------------


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

    One line per covariance type; the best row overall (lowest BIC or AIC,
    highest held-out log-likelihood) is marked with a star. Rows that repeat
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
    criterion : {'bic', 'aic', 'heldout'}, default=None
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
                    f"of 'bic', 'aic', 'heldout', found {sorted(columns)}"
                )
            criterion = present[0]
    elif criterion not in _CRITERIA:
        raise ValueError(
            f"criterion must be one of 'bic', 'aic', 'heldout' or None, got "
            f"{criterion!r}"
        )
    elif criterion not in columns:
        raise ValueError(
            f"criterion={criterion!r} is not a column of the selection table; "
            f"found {sorted(columns)}"
        )

    n_components = np.asarray(columns["n_components"]).ravel()
    cov_types = np.asarray(columns["covariance_type"]).ravel()
    scores = np.asarray(columns[criterion], dtype=np.float64).ravel()
    if not n_components.size == cov_types.size == scores.size:
        raise ValueError(
            f"Columns differ in length: n_components has {n_components.size}, "
            f"covariance_type {cov_types.size}, {criterion} {scores.size} rows"
        )
    try:
        n_components = n_components.astype(np.int64)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"n_components must hold integers, got {n_components[:5]!r}"
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

    score, cov_type, n_best, colour = best
    ax.scatter(
        [n_best], [score], marker="*", s=300, color=colour, edgecolors="black",
        linewidths=1.0, zorder=3,
        label=f"best: {cov_type}, {n_best} components",
    )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("n_components")
    ax.set_ylabel(label)
    ax.legend(title="covariance_type")
    return ax


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
