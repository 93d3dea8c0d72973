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

from ._common import _full_covariances as _full_covariances  # for the tests
from ._curves import plot_loglik, plot_selection
from ._density import plot_density
from ._ellipses import plot_ellipses
from ._uncertainty import plot_uncertainty

__all__ = [
    "plot_density",
    "plot_ellipses",
    "plot_loglik",
    "plot_selection",
    "plot_uncertainty",
]
