"""Two-dimensional views of a mixture: a pair of features or the PCA plane."""

import numpy as np

from ._common import _check_features, _check_X, _feature_names, _mixture_parameters


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
