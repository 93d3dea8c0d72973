"""fastem: fast Expectation-Maximization for Gaussian mixture models.

One-pass Numba kernels compute responsibilities, the log-likelihood and the
sufficient statistics of all components; thin scikit-learn compatible
estimators drive them over in-memory arrays, chunks read from disk, or
streams.

The estimators are imported on first access (``fastem.GaussianMixture``,
``from fastem import GaussianMixture``): they subclass scikit-learn's
estimators, and importing scikit-learn takes most of a second, which
``import fastem`` alone (for ``fastem.io``, ``fastem.load``, the command line)
does not pay.
"""

import importlib

from ._threads import default_wait_policy

__version__ = "0.1.0"

# Numba's OpenMP threads sleep rather than spin while they wait, unless the
# user chose otherwise (OMP_WAIT_POLICY or GOMP_SPINCOUNT set): a spinning
# wait made fits several times slower on a machine shared with another busy
# process.  Must run before Numba's first parallel kernel loads libgomp.
default_wait_policy()

# public name -> submodule that defines it
_LAZY = {
    "GaussianMixture": "mixture",
    "MiniBatchGaussianMixture": "online",
    "BayesianGaussianMixture": "bayesian",
    "MiniBatchBayesianGaussianMixture": "bayesian_online",
    "GaussianParams": "_suffstats",
    "SuffStats": "_suffstats",
}

__all__ = ["GaussianMixture", "MiniBatchGaussianMixture", "BayesianGaussianMixture",
           "MiniBatchBayesianGaussianMixture", "GaussianParams", "SuffStats", "compile", "load",
           "__version__"]


# public submodules, imported on first access (``fastem.io`` after a plain
# ``import fastem``)
_SUBMODULES = ("anomaly", "bayesian", "bayesian_online", "bench", "cli", "datasets", "io",
               "mixture", "online", "persist", "plot", "selection")


def __getattr__(name):
    if name in _SUBMODULES:
        # importing a submodule binds it as an attribute of the package
        return importlib.import_module(f".{name}", __name__)
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fastem' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__) | set(_SUBMODULES))


def compile(covariance_types=("full", "tied", "diag", "spherical"),
            dtypes=("float64", "float32"), n_features=None, progress=True, file=None):
    """Compile (or load from the on-disk cache) the Numba kernels ahead of time.

    A first fit compiles the kernels it needs (seconds) and caches them; this
    does it beforehand, e.g. ``RUN fastem compile`` in a Dockerfile or
    ``client.run(fastem.compile, progress=False)`` on Dask workers.  See
    :func:`fastem._compile.compile` for the parameters; returns one record
    (kernel, seconds, cached) per kernel variant.
    """
    from ._compile import compile as _compile

    return _compile(covariance_types, dtypes, n_features, progress, file)


def load(path):
    """Load a model saved with ``model.save(path)`` (no pickle, no code run)."""
    from .persist import load as _load

    return _load(path)
