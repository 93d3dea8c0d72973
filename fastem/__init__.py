"""fastem: fast Expectation-Maximization for Gaussian mixture models.

One-pass Numba kernels compute responsibilities, the log-likelihood and the
sufficient statistics of all components; thin scikit-learn compatible
estimators drive them over in-memory arrays, chunks read from disk, or
streams.
"""

from .mixture import GaussianMixture
from ._suffstats import GaussianParams, SuffStats

__version__ = "0.1.0"

__all__ = ["GaussianMixture", "GaussianParams", "SuffStats", "__version__"]
