"""Shared plotting helpers: the lazy matplotlib import, Axes, colours, and
checks of fitted models, data and feature indices.
"""

from collections.abc import Sequence
from numbers import Integral

import numpy as np
from sklearn.exceptions import NotFittedError
from sklearn.utils import check_random_state

_MATPLOTLIB_MISSING = "Plotting needs matplotlib: pip install 'fastem[plot]'"

from .._constants import COVARIANCE_TYPES as _COVARIANCE_TYPES


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
