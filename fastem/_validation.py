"""Input validation with errors that say what is wrong and how to fix it."""

import numbers

import numpy as np
from sklearn.utils.validation import validate_data

from ._constants import COVARIANCE_TYPES, INIT_PARAMS
from ._threads import blas_limited



def validate_X(estimator, X, reset, min_samples=1):
    """Validate X as a C-contiguous float32/float64 array without NaN/inf.

    float32 stays float32; other numeric types become float64.  A read-only
    C-contiguous input (a memmap) is used without copying.  Non-finite values
    raise ValueError naming the first offending row and column.
    """
    if (not reset and type(X) is np.ndarray and X.ndim == 2
            and X.dtype in (np.float64, np.float32) and X.flags.c_contiguous
            and X.shape[0] >= min_samples and X.shape[1] > 0
            and X.shape[1] == getattr(estimator, "n_features_in_", -1)
            and not hasattr(estimator, "feature_names_in_")):
        # the common case of predicting / partial_fit on a clean float array:
        # nothing for scikit-learn's validation to convert or to check
        check_finite(X, purpose="fitting" if reset else "predicting, scoring or updating",
                     allow_nan=_allows_nan(estimator))
        return X
    dtype = getattr(X, "dtype", None)
    if dtype is not None and not isinstance(X, np.ndarray):
        dtype = None
    if dtype is not None and dtype.kind not in "biuf":
        if dtype.kind == "c":
            raise ValueError("Complex data not supported: got a complex array; "
                             "pass real-valued features.")
        if dtype.kind != "O":
            raise TypeError(
                f"Expected numeric input, got an array of dtype {dtype} "
                f"(kind {dtype.kind!r}). Convert the features to numbers, e.g. "
                "X.astype(float), or select the numeric columns.")
    X = validate_data(
        estimator, X, reset=reset, dtype=[np.float64, np.float32], order="C",
        ensure_all_finite=False, ensure_min_samples=min_samples,
    )
    check_finite(X, purpose="fitting" if reset else "predicting, scoring or updating",
                 allow_nan=_allows_nan(estimator))
    return X


def _allows_nan(estimator):
    return getattr(estimator, "missing", "error") == "marginalize"


_CHECK_ROWS = 1 << 16


def _first_nonfinite_row(X):
    """Index of the first row of X holding NaN or inf, or -1.

    Chunks of rows are summed: a finite sum proves every value finite (NaN
    and inf propagate; finite values whose sum overflows fall through to the
    exact check of that chunk).  NumPy only: no kernel to compile, and about
    one memory pass.
    """
    n = X.shape[0]
    for lo in range(0, n, _CHECK_ROWS):
        chunk = X[lo:lo + _CHECK_ROWS]
        with np.errstate(over="ignore", invalid="ignore"):
            total = np.add.reduce(chunk, axis=None)
        if np.isfinite(total):
            continue
        bad = ~np.isfinite(chunk).all(axis=1)
        if bad.any():
            return lo + int(np.flatnonzero(bad)[0])
    return -1


# Largest magnitude the kernels can square and sum without overflow: the
# second moments of float64 data beyond ~1e150 (float32: ~1e18, the block
# sums of squares being float32) exceed the floating-point range.
MAX_MAGNITUDE = {np.dtype(np.float64): 1e150, np.dtype(np.float32): 1e18}


def _finite_and_squarable(X):
    """True when every value of X is finite and of magnitude at most
    :data:`MAX_MAGNITUDE`, proved in one memory pass: the sum of squares is
    finite only when no value is NaN or infinite, and it bounds every square.
    False means "not proved" (a sum of squares that overflows, or is above
    the limit squared, or an unsupported layout): the caller then runs the
    exact checks, which also find the offending row.

    The sum is a BLAS dot product while a fit limits BLAS to one thread (the
    chunks of a stream, checked in the read-ahead thread: 7x as fast as
    NumPy's einsum on a chunk in cache), else NumPy's einsum: OpenBLAS's
    threads spin for a while after a threaded call, and on a 2-core machine
    they took a core from the fit that followed the check (S: 8.4 -> 12 ms
    per iteration).
    """
    limit = MAX_MAGNITUDE.get(X.dtype)
    if limit is None or not (X.flags.c_contiguous or X.flags.f_contiguous):
        return False
    flat = X.ravel(order="K")
    with np.errstate(over="ignore", invalid="ignore"):
        total = float(np.dot(flat, flat) if blas_limited() else np.einsum("i,i->", flat, flat))
    return total <= limit * limit  # False for NaN and inf


def check_finite(X, what="X", row_offset=0, purpose="fitting", allow_nan=False):
    """Raise ValueError naming the first row/column of X holding NaN or inf,
    or, for values too large to square (:data:`MAX_MAGNITUDE`), saying that
    the data must be scaled.

    With ``allow_nan`` (``missing='marginalize'``), NaN marks a missing entry
    and is accepted, except in a row whose every entry is NaN (it carries no
    information: the error names the row); infinity is still an error.
    """
    if X.size == 0:
        return
    if not allow_nan and _finite_and_squarable(X):
        return
    row = _first_nonfinite_row(X)
    if row >= 0 and allow_nan:
        _check_missing_rows(X, what, row, row_offset)
        row = -1
    if row < 0:
        limit = MAX_MAGNITUDE.get(X.dtype)
        if limit is not None:
            if allow_nan:
                with np.errstate(invalid="ignore"):
                    big = max(float(np.nanmax(X)), -float(np.nanmin(X)))
            else:
                big = max(float(np.max(X)), -float(np.min(X)))
            if big > limit:
                raise ValueError(
                    f"Input {what} has values of magnitude up to {big:.3g}: their squares "
                    "overflow the floating-point range of the second moments (limit about "
                    f"{limit:.0e} for {X.dtype} data). Scale the input data (for instance "
                    "divide each column by its standard deviation)"
                    + (" or pass float64 data." if X.dtype == np.float32 else "."))
        return
    vals = X[row]
    col = int(np.flatnonzero(~np.isfinite(vals))[0])
    kind = "NaN" if np.isnan(vals[col]) else "infinity"
    hint = (" NaN entries can also be treated as missing values and marginalised: "
            "pass missing='marginalize' to the estimator." if kind == "NaN" else "")
    raise ValueError(
        f"Input {what} contains {kind} at row {row + row_offset}, column {col} "
        f"(value {float(vals[col])!r}). Remove or impute non-finite values (NaN or "
        f"infinity) before {purpose}.{hint}")


def _check_missing_rows(X, what, first, row_offset):
    """With missing values allowed: no infinity, and no row entirely NaN
    (``first`` is the first row holding a non-finite value)."""
    rest = X[first:]
    inf = np.isinf(rest)
    if inf.any():
        r, c = (int(v[0]) for v in np.nonzero(inf))
        raise ValueError(
            f"Input {what} contains infinity at row {first + r + row_offset}, column {c} "
            f"(value {float(rest[r, c])!r}). Only NaN marks a missing value; remove or "
            "replace infinite values before fitting.")
    empty = np.isnan(rest).all(axis=1)
    if empty.any():
        r = first + int(np.flatnonzero(empty)[0]) + row_offset
        raise ValueError(
            f"Input {what} has every entry missing (NaN) in row {r} ({int(empty.sum())} "
            "such row(s)): such a row carries no information about the mixture. Drop "
            "the rows with no observed value first, e.g. X[~np.isnan(X).all(axis=1)].")


def check_missing_option(est):
    """The ``missing`` parameter: 'error' (NaN is an error) or 'marginalize'."""
    value = getattr(est, "missing", "error")
    if not isinstance(value, str) or value not in ("error", "marginalize"):
        raise ValueError(
            f"The 'missing' parameter of {type(est).__name__} must be one of "
            f"('error', 'marginalize'). Got {value!r} instead.")
    return value == "marginalize"


def check_sample_weight(sample_weight, n_samples):
    """Validate sample weights: shape (n_samples,), finite, >= 0, sum > 0."""
    if isinstance(sample_weight, numbers.Number):
        sample_weight = np.full(n_samples, sample_weight, dtype=np.float64)
    w = np.asarray(sample_weight)
    if w.dtype.kind not in "biuf":
        raise TypeError(f"sample_weight must be numeric, got dtype {w.dtype}.")
    w = np.ascontiguousarray(w, dtype=np.float64)
    if w.ndim != 1 or w.shape[0] != n_samples:
        raise ValueError(
            f"sample_weight.shape == {w.shape}, expected ({n_samples},): one "
            "weight per row of X.")
    check_weight_values(w)
    if not np.any(w > 0):  # (non-negative: a sum could overflow)
        raise ValueError("sample_weight sums to zero; at least one row needs a "
                         "positive weight.")
    return w


def normalise_weights(w):
    """Validated weights divided by their maximum, and that maximum.

    Weights are relative: the fit uses ``w / max(w)`` (at most 1, so that
    sums over rows cannot overflow however large the weights are, and at
    least one row keeps weight 1).  Returns (w, 1.0) unchanged when the
    largest weight is already 1 (unit weights stay bit for bit).
    """
    top = float(np.max(w))
    if top == 1.0:
        return w, 1.0
    return w / top, top


def check_weight_values(w, offset=0):
    """Raise for NaN/inf or negative weights; ``offset`` is the row number of
    w[0] in the whole data (for messages about a chunk)."""
    if not np.all(np.isfinite(w)):
        raise ValueError("sample_weight contains NaN or infinity; weights must be "
                         "finite.")
    if np.any(w < 0):
        i = int(np.flatnonzero(w < 0)[0])
        raise ValueError(f"Negative values in sample_weight are not allowed: "
                         f"sample_weight[{offset + i}] = {float(w[i])!r}.")


def check_enough_rows(n_samples, n_components, context=""):
    """scikit-learn's check (and message) that a fit has enough rows; a
    ``n_samples`` of None (not known yet) passes.  ``context`` starts the
    message (e.g. "The first mini-batch initialises the model: ")."""
    if n_samples is not None and n_samples < n_components:
        expected = "expected" if context else "Expected"
        raise ValueError(
            f"{context}{expected} n_samples >= n_components but got n_components = "
            f"{n_components}, n_samples = {n_samples}")


# -- estimator parameters ---------------------------------------------------------

def _check_int(name, value, low, allow_none=False):
    if allow_none and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(
            f"The '{name}' parameter of {{cls}} must be an int in the range "
            f"[{low}, inf). Got {value!r} instead.")


def _check_real(name, value, low):
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not np.isfinite(value) or value < low):
        raise ValueError(
            f"The '{name}' parameter of {{cls}} must be a finite float >= {low}. "
            f"Got {value!r} instead.")


def check_base_parameters(est):
    """The parameters every fastem mixture shares, with scikit-learn's texts
    (``The 'name' parameter of Class must be ...``)."""
    cls = type(est).__name__
    try:
        _check_int("n_components", est.n_components, 1)
        _check_real("tol", est.tol, 0.0)
        _check_real("reg_covar", est.reg_covar, 0.0)
        _check_int("max_iter", est.max_iter, 0)
        _check_int("verbose", est.verbose, 0)
        _check_int("verbose_interval", est.verbose_interval, 1)
        if hasattr(est, "n_init"):
            _check_int("n_init", est.n_init, 1)
        _check_int("chunk_size", getattr(est, "chunk_size", None), 1, allow_none=True)
        prog = getattr(est, "progress", False)
        if not isinstance(prog, (bool, np.bool_)):
            raise ValueError(f"The 'progress' parameter of {{cls}} must be a bool. "
                             f"Got {prog!r} instead.")
    except ValueError as exc:
        raise ValueError(str(exc).replace("{cls}", cls)) from None
    for name in ("weights_init", "means_init", "precisions_init"):
        value = getattr(est, name, None)
        if value is not None and (np.isscalar(value) or not (
                hasattr(value, "__len__") or hasattr(value, "shape")
                or hasattr(value, "__array__"))):
            raise ValueError(f"The '{name}' parameter of {cls} must be an "
                             f"array-like or None. Got {value!r} instead.")
    if est.covariance_type not in COVARIANCE_TYPES:
        raise ValueError(
            f"The 'covariance_type' parameter of {cls} must be one of "
            f"{COVARIANCE_TYPES}. Got {est.covariance_type!r} instead.")
    if est.init_params not in INIT_PARAMS:
        raise ValueError(
            f"The 'init_params' parameter of {cls} must be one of "
            f"{INIT_PARAMS}. Got {est.init_params!r} instead.")
    check_missing_option(est)
    nj = est.n_jobs
    if nj is not None and (isinstance(nj, bool) or not isinstance(nj, numbers.Integral)
                           or nj == 0):
        raise ValueError(
            f"The 'n_jobs' parameter of {cls} must be None or a non-zero int "
            f"(-1 for all cores). Got {nj!r} instead.")


#: The step-size parameters of the online estimators (stepwise EM and
#: stochastic variational inference): (name, test, what a valid value is).
STEPWISE_CONSTRAINTS = (
    ("batch_size", lambda v: isinstance(v, numbers.Integral) and v >= 1, "an int >= 1"),
    ("learning_decay", lambda v: isinstance(v, numbers.Real) and 0.5 < v <= 1,
     "in (0.5, 1] for the Robbins-Monro steps to converge"),
    ("learning_offset", lambda v: isinstance(v, numbers.Real) and np.isfinite(v) and v >= 0,
     "a finite float >= 0"),
    ("burn_in", lambda v: isinstance(v, numbers.Integral) and v >= 1, "an int >= 1"),
)


def check_constraints(est, constraints):
    """Check ``(name, test, what)`` constraints on the estimator's parameters,
    with scikit-learn's text (``The 'name' parameter of Class must be ...``);
    booleans are never valid numbers."""
    cls = type(est).__name__
    for name, ok, what in constraints:
        value = getattr(est, name)
        if isinstance(value, (bool, np.bool_)) or not ok(value):
            raise ValueError(f"The '{name}' parameter of {cls} must be {what}. "
                             f"Got {value!r} instead.")


def check_initial_parameters(est, n_features):
    """Validate weights_init, means_init and precisions_init.

    The checks and their messages are scikit-learn's (``_check_weights``,
    ``_check_means``, ``_check_precisions``), word for word, so that code
    and tests written against scikit-learn see the same errors.
    """
    K = est.n_components
    d = n_features
    weights = means = precisions = None
    if est.weights_init is not None:
        weights = _init_array(est.weights_init)
        _check_init_shape(weights, (K,), "weights")
        if np.any(weights < 0.0) or np.any(weights > 1.0):
            # scikit-learn prints the minimum as "max value" and the
            # maximum as "min value"; kept so that the texts are equal
            raise ValueError(
                "The parameter 'weights' should be in the range [0, 1], but got "
                "max value %.5f, min value %.5f" % (weights.min(), weights.max()))
        atol = 1e-6 if weights.dtype == np.float32 else 1e-8
        if not np.allclose(float(np.abs(1.0 - weights.sum())), 0.0, atol=atol):
            raise ValueError(
                "The parameter 'weights' should be normalized, but got "
                "sum(weights) = %.5f" % weights.sum())
        weights = weights.astype(np.float64)
    if est.means_init is not None:
        means = _init_array(est.means_init).astype(np.float64)
        _check_init_shape(means, (K, d), "means")
    if est.precisions_init is not None:
        precisions = _init_array(est.precisions_init,
                                 allow_nd=est.covariance_type == "full")
        shapes = {"full": (K, d, d), "tied": (d, d), "diag": (K, d),
                  "spherical": (K,)}
        _check_init_shape(precisions, shapes[est.covariance_type],
                          f"{est.covariance_type} precision")
        precisions = precisions.astype(np.float64)
        _check_precisions(precisions, est.covariance_type)
    return weights, means, precisions

# -- helpers -------------------------------------------------------------


def _init_array(value, allow_nd=False):
    """An initial parameter as a float64/float32 array, finite (scikit-learn's checks)."""
    from sklearn.utils import check_array

    return check_array(value, dtype=[np.float64, np.float32], ensure_2d=False,
                       allow_nd=allow_nd, copy=True)


def _check_init_shape(param, shape, name):
    if param.shape != shape:
        raise ValueError(
            f"The parameter '{name}' should have the shape of {shape}, but got "
            f"{param.shape}")


def _check_precisions(precisions, covariance_type):
    if covariance_type in ("diag", "spherical"):
        if np.any(precisions <= 0.0):
            raise ValueError(f"'{covariance_type} precision' should be positive")
        return
    mats = precisions if covariance_type == "full" else precisions[None]
    for p in mats:
        if not (np.allclose(p, p.T) and np.all(np.linalg.eigvalsh(p) > 0.0)):
            raise ValueError(
                f"'{covariance_type} precision' should be symmetric, positive-definite")


def precision_cholesky_from_precisions(precisions, covariance_type):
    """Cholesky factors (scikit-learn layout) and covariances from precisions."""
    if covariance_type in ("diag", "spherical"):
        return np.sqrt(precisions), 1.0 / precisions
    mats = precisions if covariance_type == "full" else precisions[None]
    d = mats.shape[-1]
    pcs = np.empty_like(mats)
    covs = np.empty_like(mats)
    for k, p in enumerate(mats):
        # upper-triangular U with U U^T = P: flip, lower Cholesky, flip back
        flipped = np.linalg.cholesky(p[::-1, ::-1])
        pcs[k] = flipped[::-1, ::-1]
        covs[k] = np.linalg.inv(p)
        covs[k] = 0.5 * (covs[k] + covs[k].T)
    del d
    if covariance_type == "tied":
        return pcs[0], covs[0]
    return pcs, covs


# -- model-selection grids ----------------------------------------------------------

def check_grid_n_components(n_components):
    """The numbers of components of a model-selection grid, as a list of
    distinct ints >= 1."""
    if isinstance(n_components, numbers.Integral) and not isinstance(n_components, bool):
        values = [n_components]
    else:
        try:
            values = list(n_components)
        except TypeError:
            raise TypeError(
                "n_components must be an int or an iterable of ints (e.g. "
                f"range(1, 11)), got {n_components!r}") from None
    if not values:
        raise ValueError(
            f"n_components is empty (got {n_components!r}); pass at least one "
            "number of components, e.g. range(1, 11)")
    out = []
    for k in values:
        if isinstance(k, bool) or not isinstance(k, numbers.Integral):
            raise TypeError(f"n_components must hold ints, got {k!r} in {n_components!r}")
        if k < 1:
            raise ValueError(
                f"Every n_components must be >= 1, got {int(k)} in {n_components!r}")
        if int(k) not in out:
            out.append(int(k))
    return out


def check_covariance_types(covariance_types):
    """The covariance types of a model-selection grid, as a list."""
    values = [covariance_types] if isinstance(covariance_types, str) else covariance_types
    try:
        values = list(values)
    except TypeError:
        raise TypeError(
            "covariance_types must be a str or a sequence of str, got "
            f"{covariance_types!r}") from None
    if not values:
        raise ValueError(
            f"covariance_types is empty; choose from {COVARIANCE_TYPES}")
    out = []
    for ct in values:
        if ct not in COVARIANCE_TYPES:
            raise ValueError(
                f"Unknown covariance type {ct!r}; choose from {COVARIANCE_TYPES}")
        if ct not in out:
            out.append(ct)
    return out


def check_fraction(validation_fraction):
    """A held-out share in the open interval (0, 1)."""
    ok = (isinstance(validation_fraction, numbers.Real)
          and not isinstance(validation_fraction, bool)
          and 0.0 < validation_fraction < 1.0)
    if not ok:
        raise ValueError(
            "validation_fraction must be a float in the open interval (0, 1), got "
            f"{validation_fraction!r}")
    return float(validation_fraction)
