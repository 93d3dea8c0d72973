"""Input validation with errors that say what is wrong and how to fix it."""

import numbers

import numpy as np
from sklearn.utils.validation import validate_data



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
        check_finite(X)
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
    check_finite(X)
    return X


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


def check_finite(X, what="X", row_offset=0):
    """Raise ValueError naming the first row/column of X holding NaN or inf."""
    if X.size == 0:
        return
    row = _first_nonfinite_row(X)
    if row < 0:
        return
    vals = X[row]
    col = int(np.flatnonzero(~np.isfinite(vals))[0])
    kind = "NaN" if np.isnan(vals[col]) else "infinity"
    raise ValueError(
        f"Input {what} contains {kind} at row {row + row_offset}, column {col} "
        f"(value {float(vals[col])!r}). Remove or impute non-finite values (NaN or "
        "infinity) before fitting.")


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
