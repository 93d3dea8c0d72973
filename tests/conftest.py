"""Shared fixtures and helpers of the core test suite."""

import os
import sys
from importlib import resources

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))

import reference  # noqa: E402

from fastem import GaussianParams  # noqa: E402

COVARIANCE_TYPES = reference.COVARIANCE_TYPES
DTYPES = (np.float64, np.float32)


def to_params(p):
    """A reference parameter dict as fastem's GaussianParams."""
    return GaussianParams(p["covariance_type"], np.asarray(p["weights"], float),
                          np.asarray(p["means"], float),
                          np.asarray(p["covariances"], float),
                          np.asarray(p["precisions_cholesky"], float))


def rel_err(a, b):
    """max |a - b| / max |b| (a scale-aware relative error)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    den = np.max(np.abs(b)) if b.size else 1.0
    return float(np.max(np.abs(a - b)) / den) if b.size else 0.0


def assert_rel(a, b, rtol, what=""):
    err = rel_err(a, b)
    assert err <= rtol, f"{what}: relative error {err:.3e} > {rtol:.1e}"


def tol(dtype, factor):
    """factor units of rounding of dtype: factor * np.finfo(dtype).eps.

    The bound of a comparison between two different computations of one
    quantity (other summation order, process, instruction set, library,
    precision).  Each use says why that factor; a bare decimal tuned on one
    CPU fails on the next.  Comparisons the design promises to be bitwise
    equal stay exact and do not use this."""
    return float(factor) * float(np.finfo(dtype).eps)


def em_tol(dtype, X, factor):
    """Bound on the relative difference of two EM fits of X from one start
    whose sums differ only by rounding (another grouping of the rows, another
    process or instruction set):

        factor * eps(dtype) * sqrt(n_features) * cond(cov(X)).

    Each sum of n_features products is off by a few eps relative; the
    covariances are second moments minus the squared means, which cancels by
    up to the ratio of the total to the within-component scatter, bounded by
    the condition number of the data covariance."""
    X = np.asarray(X, dtype=np.float64)
    d = X.shape[1]
    kappa = float(np.linalg.cond(np.atleast_2d(np.cov(X.T)))) if d > 1 else 1.0
    return tol(dtype, factor * np.sqrt(d) * kappa)


def make_blobs(n, centers, scale, rng, dtype=np.float64):
    """Gaussian blobs with labels (rows shuffled)."""
    centers = np.asarray(centers, dtype=np.float64)
    K, d = centers.shape
    labels = rng.integers(0, K, size=n)
    X = centers[labels] + scale * rng.normal(size=(n, d))
    return X.astype(dtype), labels


@pytest.fixture(scope="session")
def old_faithful():
    path = resources.files("fastem.datasets") / "old_faithful.csv"
    with resources.as_file(path) as p:
        X = np.loadtxt(p, delimiter=",", skiprows=1)
    assert X.shape == (272, 2)
    return X


@pytest.fixture(scope="session")
def blobs3d():
    """Three well separated 3-D blobs of unequal shape."""
    rng = np.random.default_rng(1234)
    centers = np.array([[0.0, 0.0, 0.0], [6.0, 1.0, -2.0], [-3.0, 7.0, 4.0]])
    X, y = make_blobs(600, centers, 1.0, rng)
    X[y == 1] *= np.array([1.0, 0.5, 1.5])  # anisotropic component
    X[y == 1] += centers[1] * (1 - np.array([1.0, 0.5, 1.5]))
    return X, y


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def pytest_collection_finish(session):
    """A run of the whole suite on an empty Numba cache: every kernel the
    tests will ask for starts compiling in one background child at once, so
    that compilation overlaps the tests on a second core instead of each
    test waiting for its own compile in turn (the kernels are cached and
    loaded exactly as when a test compiles them).  A run of a few tests, or
    FASTEM_TEST_PRECOMPILE=0, compiles on demand as before."""
    if len(session.items) < 300 or os.environ.get("FASTEM_TEST_PRECOMPILE") == "0":
        return
    from fastem import _compile
    from fastem import _kernels as K

    plan = _compile._plan(COVARIANCE_TYPES, ("float64", "float32"), None)
    # the E-step + statistics kernels first (every fit needs one), the
    # E-step-only kernels (predict, score) next, float64 before float32
    plan.sort(key=lambda v: (v[0].startswith("logprob"), v[0] == "pass_missing",
                             np.dtype(v[1]) != np.float64))
    K.start_in_child(plan, announce_them=False)
