"""fastem: fast Expectation-Maximization for Gaussian mixture models.

One-pass Numba kernels compute responsibilities, the log-likelihood and the
sufficient statistics of all components; thin scikit-learn compatible
estimators drive them over in-memory arrays, chunks read from disk, or
streams.
"""

from .mixture import GaussianMixture
from .online import MiniBatchGaussianMixture
from ._suffstats import GaussianParams, SuffStats


def load(path):
    """Load a model saved with ``model.save(path)`` (no pickle, no code run)."""
    from .persist import load as _load

    return _load(path)

__version__ = "0.1.0"

__all__ = ["GaussianMixture", "MiniBatchGaussianMixture", "GaussianParams", "SuffStats",
           "load", "__version__"]
