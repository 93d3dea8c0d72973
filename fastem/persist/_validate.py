"""Validation of a decoded model (:func:`validate_model`) before it is assigned."""

import math

import numpy as np

from ._archive import MAX_ELEMENTS

_PARAM_ATTRIBUTES = ("weights_", "means_", "covariances_", "precisions_",
                     "precisions_cholesky_")
_ONLINE_STATE = ("_iterate", "_stats", "_avg", "_n_avg", "n_steps_", "n_rows_seen_",
                 "_rng")


def _cov_shape(covariance_type, K, d):
    return {"full": (K, d, d), "tied": (d, d), "diag": (K, d),
            "spherical": (K,)}[covariance_type]


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_real(value):
    return (isinstance(value, (int, float, np.integer, np.floating))
            and not isinstance(value, (bool, np.bool_)))


class _Checker:
    """Raises ValueError naming the file and the field."""

    def __init__(self, path):
        self.path = path

    def fail(self, field, message):
        raise ValueError(f"{self.path}: field {field!r} {message}")

    def array(self, field, value, shape, why=""):
        if not isinstance(value, np.ndarray):
            self.fail(field, f"is a {type(value).__name__}, not an array")
        if value.dtype.kind != "f":
            self.fail(field, f"has dtype {value.dtype}; a floating-point array is needed")
        if value.shape != shape:
            self.fail(field, f"has shape {value.shape} but {why}, so it should be {shape}")
        if not np.all(np.isfinite(value)):
            self.fail(field, "holds NaN or infinite values")
        return value

    def int(self, field, value, low=0):
        if not _is_int(value) or value < low:
            self.fail(field, f"is {value!r:.80}; an integer >= {low} is needed")
        return int(value)

    def params(self, prefix, ct, K, d, weights, means, covariances, pc, precisions=None):
        """Check one set of mixture parameters against K, d and the type."""
        def name(base):  # 'means_' for the model, '_iterate.means' for a state
            return prefix + base if prefix else base + "_"

        why = f"n_components is {K} and n_features_in_ is {d}"
        shape = _cov_shape(ct, K, d)
        why_cov = f"{why} and covariance_type is {ct!r}"
        self.array(name("means"), means, (K, d), why)
        wname = name("weights")
        w = self.array(wname, weights, (K,), why)
        if np.any(w < 0):
            self.fail(wname, f"holds a negative weight ({float(w.min())!r})")
        total = float(np.sum(w, dtype=np.float64))
        # rounding of K weights stored in their dtype, with a generous floor
        tol = max(1e-6, 4 * K * float(np.finfo(w.dtype).eps))
        if not abs(total - 1.0) <= tol:
            self.fail(wname, f"sums to {total!r}, not 1")
        cname = name("covariances")
        cov = self.array(cname, covariances, shape, why_cov)
        pname = name("precisions_cholesky")
        p = self.array(pname, pc, shape, why_cov)
        if precisions is not None:
            self.array("precisions_", precisions, shape, why_cov)
        if ct in ("full", "tied"):
            mats = cov if ct == "full" else cov[None]
            pmats = p if ct == "full" else p[None]
            diag = np.diagonal(mats, axis1=1, axis2=2)
            if not np.all(diag > 0):
                self.fail(cname, "has a non-positive variance on its diagonal")
            if not np.allclose(mats, np.swapaxes(mats, 1, 2), rtol=1e-5,
                               atol=1e-8 * float(np.max(np.abs(diag)))):
                self.fail(cname, "is not symmetric")
            try:
                chol = np.linalg.cholesky(mats.astype(np.float64))
            except np.linalg.LinAlgError:
                chol = None
            if chol is None or not np.all(np.isfinite(chol)):
                self.fail(cname, "is not positive definite")
            if not np.all(np.diagonal(pmats, axis1=1, axis2=2) > 0):
                self.fail(pname, "has a non-positive value on its diagonal")
            if np.any(np.tril(pmats, -1) != 0):
                self.fail(pname, "is not upper triangular")
        else:
            if not np.all(cov > 0):
                self.fail(cname, "holds a non-positive variance")
            if not np.all(p > 0):
                self.fail(pname, "holds a non-positive value")


def validate_model(estimator, attributes, path="model", online=None):
    """Check decoded attributes of a model before they are assigned.

    Parameters
    ----------
    estimator : GaussianMixture or MiniBatchGaussianMixture
        The estimator built from the file's parameters (without attributes).
    attributes : dict
        The decoded attributes, by name.
    path : str
        Named in the error messages.
    online : bool, default=None
        Whether to check the online state of a MiniBatchGaussianMixture
        (default: when the estimator has ``partial_fit``).

    Raises
    ------
    ValueError
        Naming the path and the field, when the model is not fitted and yet
        holds fitted attributes, or a fitted model's parameters are invalid:
        shapes inconsistent with ``n_components``, ``n_features_in_`` and
        ``covariance_type``; non-finite values; negative weights or weights
        that do not sum to 1; covariances with a non-positive diagonal or
        (full, tied) not symmetric positive definite; precision Cholesky
        factors with a non-positive diagonal or (full, tied) not upper
        triangular; covariances of more than :data:`MAX_ELEMENTS` elements;
        online statistics inconsistent with the model.
    """
    if online is None:
        online = hasattr(estimator, "partial_fit") and not _is_variational(estimator)
    # extreme values (weights of 1e308) must give a clear refusal, not an
    # overflow warning
    with np.errstate(all="ignore"):
        _validate_model(_Checker(path), estimator, attributes, path, online)


def _validate_model(chk, estimator, attributes, path, online):
    fitted_names = _PARAM_ATTRIBUTES + ("n_features_in_",)
    present = [n for n in fitted_names if n in attributes]
    if online and any(n in attributes for n in _ONLINE_STATE):
        present = present or ["_iterate"]
    if not present:
        return
    missing = [n for n in fitted_names if n not in attributes]
    if missing:
        raise ValueError(f"{path}: the model has {present[0]!r} but not "
                         f"{', '.join(map(repr, missing))}; it is incomplete")
    try:
        estimator._check_base_parameters()
        if online and hasattr(estimator, "_check_online_parameters"):
            estimator._check_online_parameters()
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    ct = estimator.covariance_type
    K = chk.int("n_components", estimator.n_components, 1)
    d = chk.int("n_features_in_", attributes["n_features_in_"], 1)
    n = math.prod(_cov_shape(ct, K, d)) + K * d
    if n > MAX_ELEMENTS:
        raise ValueError(
            f"{path}: a model with n_components={K}, n_features_in_={d} and "
            f"covariance_type={ct!r} has {n} parameters, more than the limit of "
            f"{MAX_ELEMENTS}")
    a = attributes
    chk.params("", ct, K, d, a["weights_"], a["means_"], a["covariances_"],
               a["precisions_cholesky_"], a["precisions_"])
    names = a.get("feature_names_in_")
    if names is not None:
        if (not isinstance(names, np.ndarray) or names.shape != (d,)
                or not all(isinstance(v, str) for v in names.tolist())):
            chk.fail("feature_names_in_", f"should be an array of {d} strings")
    if "converged_" in a and not isinstance(a["converged_"], (bool, np.bool_)):
        chk.fail("converged_", "is not a bool")
    if "n_iter_" in a:
        chk.int("n_iter_", a["n_iter_"])
    if "lower_bound_" in a and not _is_real(a["lower_bound_"]):
        chk.fail("lower_bound_", "is not a number")
    if "lower_bounds_" in a:
        lbs = a["lower_bounds_"]
        if not isinstance(lbs, (list, tuple, np.ndarray)) or not all(
                _is_real(v) for v in (lbs.tolist() if isinstance(lbs, np.ndarray) else lbs)):
            chk.fail("lower_bounds_", "is not a list of numbers")
    if online:
        _validate_online(chk, a, ct, K, d)
    if _is_variational(estimator):
        _validate_variational(chk, estimator, a, ct, K, d)


def _validate_online(chk, a, ct, K, d):
    from .._suffstats import GaussianParams

    if "_iterate" not in a:
        extra = [n for n in _ONLINE_STATE if n in a]
        if extra:
            chk.fail(extra[0], "is saved without the online state '_iterate'")
        return
    missing = [n for n in _ONLINE_STATE if n not in a]
    if missing:
        chk.fail(missing[0], "is missing from the online state")
    for name in ("_n_avg", "n_steps_", "n_rows_seen_"):
        chk.int(name, a[name])
    if not isinstance(a["_rng"], (np.random.RandomState, np.random.Generator)):
        chk.fail("_rng", "is not a random state")
    for name in ("_iterate", "_avg"):
        p = a[name]
        if p is None and name == "_avg":
            continue
        if type(p) is not GaussianParams:
            chk.fail(name, "is not a GaussianParams")
        if p.covariance_type != ct:
            chk.fail(name, f"has covariance_type {p.covariance_type!r:.40} but the model "
                           f"has {ct!r}")
        chk.params(name + ".", ct, K, d, p.weights, p.means, p.covariances,
                   p.precisions_cholesky)
    _validate_stats(chk, a["_stats"], ct, K, d)


def _validate_stats(chk, st, ct, K, d):
    from .._suffstats import SuffStats

    if st is None:
        return
    if type(st) is not SuffStats:
        chk.fail("_stats", "is not a SuffStats")
    if st.covariance_type != ct:
        chk.fail("_stats", f"has covariance_type {st.covariance_type!r:.40} but the "
                           f"model has {ct!r}")
    why = f"n_components is {K} and n_features_in_ is {d}"
    s2_shape = {"full": (K, d, d), "tied": (d, d)}.get(ct, (K, d))
    nk = chk.array("_stats.nk", st.nk, (K,), why)
    chk.array("_stats.s1", st.s1, (K, d), why)
    chk.array("_stats.s2", st.s2, s2_shape, why + f" and covariance_type is {ct!r}")
    chk.array("_stats.ref", st.ref, (K, d), why)
    chk.array("_stats.ref2", st.ref2, (d,), why)
    if np.any(nk < 0):
        chk.fail("_stats.nk", "holds a negative count")
    if math.isnan(st.loglik):
        chk.fail("_stats.loglik", "is NaN")
    if not (math.isfinite(st.weight_sum) and st.weight_sum >= 0):
        chk.fail("_stats.weight_sum", f"is {st.weight_sum!r}")
    if st.n_rows < 0:
        chk.fail("_stats.n_rows", f"is {st.n_rows!r}")


# -- variational mixtures -----------------------------------------------------------

_VARIATIONAL = ("weight_concentration_", "mean_precision_", "degrees_of_freedom_",
                "weight_concentration_prior_", "mean_precision_prior_", "mean_prior_",
                "degrees_of_freedom_prior_", "covariance_prior_")
_SVI_STATE = ("_stats", "n_steps_", "n_rows_seen_", "_weight_seen", "_rng")


def _is_variational(estimator):
    return hasattr(estimator, "weight_concentration_prior_type")


def _positive(chk, field, value, shape, why, low=0.0):
    arr = chk.array(field, value, shape, why)
    if not np.all(arr > low):
        chk.fail(field, f"holds a value <= {low!r}; the posterior needs values > {low!r}")
    return arr


def _positive_real(chk, field, value, low=0.0):
    if not _is_real(value) or not math.isfinite(float(value)) or not float(value) > low:
        chk.fail(field, f"is {value!r:.80}; a finite number > {low!r} is needed")


def _validate_variational(chk, estimator, a, ct, K, d):
    """The posterior and prior of a (Mini-Batch) BayesianGaussianMixture, and
    the stochastic-VI state of the mini-batch one."""
    missing = [n for n in _VARIATIONAL if n not in a]
    if missing:
        chk.fail(missing[0], "is missing from the variational posterior")
    why = f"n_components is {K} and n_features_in_ is {d}"
    wc = a["weight_concentration_"]
    if estimator.weight_concentration_prior_type == "dirichlet_process":
        if not isinstance(wc, (tuple, list)) or len(wc) != 2:
            chk.fail("weight_concentration_", "should be a pair of arrays (the Beta "
                                              "parameters of the sticks)")
        for i, part in enumerate(wc):
            _positive(chk, f"weight_concentration_[{i}]", part, (K,), why)
    else:
        _positive(chk, "weight_concentration_", wc, (K,), why)
    _positive(chk, "mean_precision_", a["mean_precision_"], (K,), why)
    dof = a["degrees_of_freedom_"]
    if ct == "tied":
        _positive_real(chk, "degrees_of_freedom_", dof, d - 1.0)
    else:
        _positive(chk, "degrees_of_freedom_", dof, (K,), why, d - 1.0)
    _positive_real(chk, "weight_concentration_prior_", a["weight_concentration_prior_"])
    _positive_real(chk, "mean_precision_prior_", a["mean_precision_prior_"])
    _positive_real(chk, "degrees_of_freedom_prior_", a["degrees_of_freedom_prior_"], d - 1.0)
    chk.array("mean_prior_", a["mean_prior_"], (d,), why)
    psi = a["covariance_prior_"]
    if ct == "spherical":
        _positive_real(chk, "covariance_prior_", psi)
    elif ct == "diag":
        _positive(chk, "covariance_prior_", psi, (d,), why)
    else:
        chk.array("covariance_prior_", psi, (d, d), why)
        if not np.allclose(psi, psi.T) or not np.all(np.linalg.eigvalsh(psi) > 0):
            chk.fail("covariance_prior_", "is not symmetric positive definite")
    if not hasattr(estimator, "partial_fit") or "_stats" not in a:
        return
    missing = [n for n in _SVI_STATE if n not in a]
    if missing:
        chk.fail(missing[0], "is missing from the online state")
    chk.int("n_steps_", a["n_steps_"])
    chk.int("n_rows_seen_", a["n_rows_seen_"])
    _positive_real(chk, "_weight_seen", a["_weight_seen"])
    if not isinstance(a["_rng"], (np.random.RandomState, np.random.Generator)):
        chk.fail("_rng", "is not a random state")
    _validate_stats(chk, a["_stats"], ct, K, d)
