"""Fuzzing the public API with hypothesis: arrays of every dtype and shape,
NaN/inf anywhere, extreme magnitudes, odd sample weights.

Each case either fits a finite model (and then predicts and scores rows of
the same width) or raises a clear ValueError/TypeError; it never crashes,
never hangs, never returns NaN parameters.  The number of examples is small
by default (the suite has a time budget); FASTEM_FUZZ_EXAMPLES=N runs more.
"""

import os
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastem

EXAMPLES = int(os.environ.get("FASTEM_FUZZ_EXAMPLES", "40"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize="FASTEM_FUZZ_EXAMPLES"
                    not in os.environ,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

FITTED = ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_")

magnitudes = st.sampled_from([1e-300, 1e-30, 1e-8, 1.0, 1e8, 1e30, 1e150, 1e300])
special = st.sampled_from([np.nan, np.inf, -np.inf, 0.0, -0.0, 5e-324])


@st.composite
def arrays(draw):
    dtype = draw(st.sampled_from([np.float64, np.float32, np.int64, np.int8, np.bool_,
                                  np.float16]))
    n = draw(st.integers(0, 60))
    d = draw(st.integers(0, 5))
    X = draw(hnp.arrays(np.float64, (n, d),
                        elements=st.floats(-10, 10, allow_nan=False, allow_infinity=False)))
    X = X * draw(magnitudes)
    if n and d and draw(st.booleans()):
        i, j = draw(st.integers(0, n - 1)), draw(st.integers(0, d - 1))
        X[i, j] = draw(special)
    if draw(st.booleans()) and n > 1:
        X[1:] = X[0]  # every row the same
    with np.errstate(all="ignore"):
        X = X.astype(dtype)
    if draw(st.booleans()):
        X = np.asfortranarray(X)
    return X


@st.composite
def weights(draw, n):
    kind = draw(st.sampled_from(["none", "scaled", "zeros", "negative", "nan", "wrong-length",
                                 "huge"]))
    if kind == "none":
        return None
    if kind == "wrong-length":
        return np.ones(n + 1)
    w = np.ones(n)
    if n == 0:
        return w
    if kind == "scaled":
        w = w * draw(magnitudes)
    elif kind == "zeros":
        w[: max(1, n // 2)] = 0.0
    elif kind == "negative":
        w[0] = -1.0
    elif kind == "nan":
        w[0] = np.nan
    elif kind == "huge":
        w[:] = 1e308
    return w


def _check_fitted(model, X):
    for name in FITTED:
        value = getattr(model, name)
        assert np.all(np.isfinite(value)), f"{name} is not finite"
    assert np.isfinite(model.lower_bound_)
    assert abs(model.weights_.sum() - 1.0) < 1e-9
    Xf = np.asarray(X, dtype=np.float64)
    labels = model.predict(Xf)
    assert labels.shape == (X.shape[0],)
    assert np.all((labels >= 0) & (labels < model.n_components))


@SETTINGS
@given(data=st.data(), ct=st.sampled_from(["full", "tied", "diag", "spherical"]),
       k=st.integers(1, 3))
@pytest.mark.filterwarnings("ignore")
def test_fit_is_finite_or_a_clear_error(data, ct, k):
    X = data.draw(arrays())
    w = data.draw(weights(X.shape[0]))
    model = fastem.GaussianMixture(k, covariance_type=ct, random_state=0, max_iter=20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model.fit(X, sample_weight=w)
        except (ValueError, TypeError) as e:
            assert str(e), "an error must say what is wrong"
            assert "Traceback" not in str(e)
            return
    _check_fitted(model, X)


@SETTINGS
@given(data=st.data(), ct=st.sampled_from(["full", "diag"]))
@pytest.mark.filterwarnings("ignore")
def test_partial_fit_is_finite_or_unchanged(data, ct):
    model = fastem.MiniBatchGaussianMixture(2, covariance_type=ct, random_state=0)
    base = np.random.default_rng(0).normal(size=(200, 3))
    model.partial_fit(base)
    before = {n: getattr(model, n).copy() for n in FITTED}
    X = data.draw(arrays())
    try:
        model.partial_fit(X)
    except (ValueError, TypeError):
        for n in FITTED:
            np.testing.assert_array_equal(getattr(model, n), before[n])
        return
    _check_fitted(model, X)
