"""The --missing mode of fastem.bench: the cost of marginalising missing values."""

import gc
import statistics
import time

import numpy as np

from ._timing import _quiet, initial_parameters
from ._workloads import _describe, _progress, make_blobs

#: Fraction of rows with missing entries, and how many entries such a row misses.
MISSING_ROW_FRACTION = 0.10
MISSING_PER_ROW = (1, 4)

VARIANTS = (
    ("complete", "complete data, missing='error' (today's path)"),
    ("option_no_nan", "complete data, missing='marginalize'"),
    ("with_nan", "10% of rows missing 1-4 features, missing='marginalize'"),
)


def with_missing(X, fraction=MISSING_ROW_FRACTION, per_row=MISSING_PER_ROW, seed=0):
    """A copy of X in which ``fraction`` of the rows, drawn at random, each
    miss between ``per_row[0]`` and ``per_row[1]`` random features (NaN)."""
    rng = np.random.default_rng(seed)
    n, d = X.shape
    out = X.copy()
    rows = rng.choice(n, int(round(fraction * n)), replace=False)
    counts = rng.integers(per_row[0], min(per_row[1], d - 1) + 1, size=rows.size)
    for q in np.unique(counts):
        sel = rows[counts == q]
        cols = np.argsort(rng.random((sel.size, d)), axis=1)[:, :q]
        out[sel[:, None], cols] = np.nan
    return out


def _fit_time(X, K, ct, iters, init, missing, n_jobs):
    from ..mixture import GaussianMixture

    gm = GaussianMixture(n_components=K, covariance_type=ct, max_iter=iters, tol=0.0,
                         random_state=0, n_jobs=n_jobs, missing=missing, **init)
    gc.collect()
    with _quiet():
        t0 = time.perf_counter()
        gm.fit(X)
        return time.perf_counter() - t0


def run_missing(tag, scale=1.0, dtype="float64", repeats=3, iters=5, n_jobs=None,
                verbose=False):
    """Per-iteration time of the three :data:`VARIANTS`, side by side.

    Each repeat times a 1-iteration and a (1 + iters)-iteration fit of every
    variant in turn (interleaved, so that a noisy machine affects all alike)
    from the same explicit initial parameters; the per-iteration time is the
    difference divided by ``iters``.  Medians over repeats, and the ratios to
    the complete-data time.
    """
    res = _describe(tag, scale, dtype)
    n, d, K, ct = (res["n_samples"], res["n_features"], res["n_components"],
                   res["covariance_type"])
    _progress(f"[{tag} {dtype}] generating {n:,} x {d} blobs (missing values)", verbose)
    X, _ = make_blobs(n, d, K, dtype)
    Xm = with_missing(X)
    init = initial_parameters(X, K, ct)
    data = {"complete": (X, "error"), "option_no_nan": (X, "marginalize"),
            "with_nan": (Xm, "marginalize")}
    for name, (A, opt) in data.items():  # warm the JIT and the caches
        _fit_time(A[:20_000], K, ct, 2, init, opt, n_jobs)
    times = {name: [] for name in data}
    for r in range(repeats):
        for name, (A, opt) in data.items():
            _progress(f"[{tag} {dtype}] repeat {r + 1}/{repeats}: {name}", verbose)
            t1 = _fit_time(A, K, ct, 1, init, opt, n_jobs)
            tm = _fit_time(A, K, ct, 1 + iters, init, opt, n_jobs)
            times[name].append((tm - t1) / iters)
    res["iters_timed"] = iters
    res["missing_rows"] = int(np.isnan(Xm).any(axis=1).sum())
    for name in data:
        res[name] = {"ms_per_iter": 1e3 * statistics.median(times[name]),
                     "ms_per_iter_repeats": [1e3 * t for t in times[name]]}
    base = res["complete"]["ms_per_iter"]
    res["ratio_option_no_nan"] = res["option_no_nan"]["ms_per_iter"] / base
    res["ratio_with_nan"] = res["with_nan"]["ms_per_iter"] / base
    return res


def format_missing_table(results):
    lines = ["workload  shape         K  type   " + "  ".join(
        f"{name:>14s}" for name, _ in VARIANTS) + "   option/complete  nan/complete"]
    for r in results:
        shape = f"{r['n_samples']:,}x{r['n_features']}"
        cells = "  ".join(f"{r[name]['ms_per_iter']:11.1f} ms" for name, _ in VARIANTS)
        lines.append(f"{r['workload']:8s}  {shape:12s} {r['n_components']:2d}  "
                     f"{r['covariance_type']:5s}  {cells}   {r['ratio_option_no_nan']:15.3f}"
                     f"  {r['ratio_with_nan']:12.3f}")
    lines.append("")
    lines.extend(f"{name}: {what}" for name, what in VARIANTS)
    return "\n".join(lines)
