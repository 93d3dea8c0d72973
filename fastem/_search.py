"""The model search behind :func:`fastem.selection.select_model`.

Three things make a grid of candidates trustworthy and cheap:

- **Starts that find the good optimum.**  Each candidate (K, covariance
  type) starts EM from several initial parameters: k-means on standardised
  rows (``init_params='kmeans_standardized'``, each with its own seed), and
  splits of the best fit with K - 1 components of the same type (the
  heaviest components, each cut in two along its principal axis).  The
  number of each: :func:`n_splits`.
- **Restarts that share passes, on a screening sample.**  All starts of all
  covariance types at one K advance together, one pass per EM iteration
  (:func:`fastem._em.run_batch`), on at most :data:`SCREEN_ROWS` rows drawn at
  random; then the best start of every candidate continues on all rows, every
  candidate in the same passes.  Data with at most :data:`SCREEN_ROWS` rows
  are their own screening sample, and the search ends there.
- **Candidates that share passes** with another ``init_params``
  (:func:`fit_sharing_passes`): every candidate equals its own ``fit``.
- **A guard against spurious optima** (:func:`degeneracy`): a component that
  holds fewer rows than its covariance needs, or whose covariance is almost
  singular on the data's own scale, marks the fit as degenerate; a candidate's
  best start is its best non-degenerate one.

:func:`candidate_rows` scores fitted candidates for the selection table (one
shared pass for BIC, AIC and the log-likelihood).
"""

import numpy as np
from sklearn.utils import check_random_state

from . import _em, _estep, _init, _threads
from ._data import ArrayData
from ._suffstats import GaussianParams
from ._validation import check_enough_rows

__all__ = ["SCREEN_ROWS", "MIN_VARIANCE_RATIO", "MIN_ROWS", "n_splits", "split_starts",
           "degeneracy", "column_variance", "search", "fit_sharing_passes",
           "candidate_rows", "score", "entropy", "n_parameters"]

#: Rows the starts of a search run on (a uniform random sample of larger data).
SCREEN_ROWS = 50_000

#: A fit is degenerate when a component's covariance, on the scale of the
#: data (each column divided by its standard deviation), has an eigenvalue
#: below this: a spread of less than 1% of the data's along some direction.
MIN_VARIANCE_RATIO = 1e-4

#: Rows (weight x n) a component needs for its covariance: d + 1 for a full
#: covariance, 2 for a diagonal or spherical one, 1 for a tied one (it only
#: estimates a mean).
MIN_ROWS = {"full": lambda d: d + 1, "diag": lambda d: 2, "spherical": lambda d: 2,
            "tied": lambda d: 1}


def n_splits(n_components, n_init):
    """How many starts of a candidate split the best fit with one component
    fewer: every component of it, at most ``2 n_init - 2`` (the heaviest).
    Besides them a candidate has ``max(2, n_init - splits)`` starts from
    k-means on standardised rows (one start when K = 1: every start is the
    same).  With the default n_init=5: 5 starts for K <= 4, K + 1 for
    5 <= K <= 9, at most 10."""
    return min(n_components - 1, 2 * n_init - 2)


def _component_covariance(params, k):
    ct, cov = params.covariance_type, params.covariances
    d = params.n_features
    if ct == "full":
        return cov[k]
    if ct == "tied":
        return cov
    if ct == "diag":
        return np.diag(cov[k])
    return np.eye(d) * cov[k]


def split_starts(params, n, S, w=None, missing=False):
    """Starts with one more component: each of the ``n`` heaviest components
    of ``params`` (ties: the first) cut in two.

    The halves have half the weight, the parent's covariance, and means half
    a standard deviation either side of the parent's mean along the principal
    axis of the rows the parent holds: the responsibility-weighted scatter of
    the screening rows ``S`` (weights ``w``) around the parent's mean.  (The
    parent's own covariance has no preferred axis when it is spherical.)
    With ``missing``, rows with NaN entries are left out of the scatter.
    """
    ct = params.covariance_type
    order = np.argsort(-params.weights, kind="stable")[:n]
    if missing:
        complete = ~np.isnan(S).any(axis=1)
        S, w = S[complete], None if w is None else w[complete]
    wlp = _estep.weighted_log_prob(np.ascontiguousarray(S), params)
    resp = np.exp(wlp - np.logaddexp.reduce(wlp, axis=1)[:, None])
    if w is not None:
        resp *= w[:, None]
    out = []
    for k in order:
        r = resp[:, k]
        diff = S - params.means[k]
        scatter = (diff * r[:, None]).T @ diff / max(float(r.sum()), 1e-300)
        if not np.all(np.isfinite(scatter)) or not r.sum() > 0:
            scatter = _component_covariance(params, k)
        lam, vec = np.linalg.eigh(scatter)
        step = 0.5 * np.sqrt(max(lam[-1], 0.0)) * vec[:, -1]
        means = np.concatenate([params.means[:k], params.means[k:k + 1] - step,
                                params.means[k:k + 1] + step, params.means[k + 1:]])
        weights = np.concatenate([params.weights[:k], [params.weights[k] / 2] * 2,
                                  params.weights[k + 1:]])
        if ct == "tied":
            covs, pcs = params.covariances, params.precisions_cholesky
        else:
            dup = np.r_[np.arange(k + 1), np.arange(k, params.n_components)]
            covs = params.covariances[dup]
            pcs = params.precisions_cholesky[dup]
        out.append(GaussianParams(ct, weights, means, covs.copy(), pcs.copy()))
    return out


def degeneracy(params, n_rows, column_variance):
    """(fewest rows of a component, smallest covariance eigenvalue on the
    data's scale, degenerate?) of a fit.

    Parameters
    ----------
    params : GaussianParams
    n_rows : float
        Rows (or the sum of the weights) the fit is on.
    column_variance : ndarray of shape (n_features,)
        The data's variance of each column.
    """
    ct, d = params.covariance_type, params.n_features
    rows = float(np.min(params.weights) * n_rows)
    scale = np.where(column_variance > 0, column_variance, 1.0)
    cov = params.covariances
    if ct == "full":
        s = 1.0 / np.sqrt(scale)
        ratio = min(float(np.linalg.eigvalsh(c * s[:, None] * s[None, :])[0]) for c in cov)
    elif ct == "tied":
        s = 1.0 / np.sqrt(scale)
        ratio = float(np.linalg.eigvalsh(cov * s[:, None] * s[None, :])[0])
    elif ct == "diag":
        ratio = float(np.min(cov / scale[None, :]))
    else:
        ratio = float(np.min(cov) / np.max(scale))
    bad = rows < MIN_ROWS[ct](d) or ratio < MIN_VARIANCE_RATIO
    return rows, ratio, bool(bad)


def column_variance(data, rows=None):
    """Each column's variance over at most :data:`SCREEN_ROWS` rows of data
    (all of them when there are no more; a fixed draw otherwise), or over
    ``rows`` = (S, weights) when given."""
    S, w = data.sample(SCREEN_ROWS, np.random.RandomState(0)) if rows is None else rows
    w = np.ones(S.shape[0]) if w is None else w
    observed = ~np.isnan(S)  # NaN: missing values (missing='marginalize')
    x = np.where(observed, S, 0.0)
    count = w @ observed
    count = np.where(count > 0, count, 1.0)
    mean = (w @ x) / count
    return (w @ (np.where(observed, S - mean, 0.0) ** 2)) / count


def _best(runs, n_rows, column_variance):
    """The best run (highest lower bound) that ended without error, preferring
    non-degenerate ones; None when every run failed."""
    ok = [r for r in runs if r.error is None and np.isfinite(r.lower_bound)]
    if not ok:
        return None
    sound = [r for r in ok if not degeneracy(r.params, n_rows, column_variance)[2]]
    return _em.best_of(sound or ok)


def search(data, ks, covariance_types, n_init, random_state, tol, reg_covar, max_iter):
    """The best run of every candidate (K, covariance type).

    Parameters
    ----------
    data : fastem._data.RowData
        The rows the candidates are fitted to.
    ks : list of int
        Numbers of components.
    covariance_types : list of str
    n_init : int
        Starts per candidate.
    random_state : numpy.random.RandomState
    tol, reg_covar, max_iter :
        Of every EM run, as in :class:`fastem.GaussianMixture`.

    Returns
    -------
    runs : dict
        ``(K, covariance_type) -> Run`` on all rows (its ``error`` set when
        every start failed).
    passes : int
        Passes over all rows (beyond the screening sample) that the search
        made.
    """
    rng = check_random_state(random_state)

    def new_run(params):
        return _em.Run(params, tol, reg_covar, max_iter)

    n = data.n_samples if data.n_samples is not None else data.count()
    if n is not None and n <= SCREEN_ROWS:
        screen = data
    else:
        S, Sw = data.sample(SCREEN_ROWS, rng)
        screen = ArrayData(np.ascontiguousarray(S, dtype=data.dtype), Sw)
        screen.missing = data.missing
    rows = screen.sample(SCREEN_ROWS, np.random.RandomState(0))  # all its rows
    variance = column_variance(screen, rows)
    n_screen = screen.n_samples if screen.sample_weight is None else float(
        np.sum(screen.sample_weight) * screen.weight_scale)

    best = {}
    for K in sorted(ks):
        starts = {}
        for ct in covariance_types:
            parent = best.get((K - 1, ct))
            n_split = n_splits(K, n_init) if parent is not None else 0
            n_km = 1 if K == 1 else max(n_init - n_split, 2)
            seeds = rng.randint(np.iinfo(np.int32).max, size=n_km)
            runs = []
            for seed in seeds:
                try:
                    stats = _init.initial_stats(screen, K, ct, "kmeans_standardized",
                                                np.random.RandomState(seed))
                    runs.append(new_run(stats.m_step(reg_covar)))
                except ValueError as exc:
                    failed = new_run(None)
                    failed.error, failed.max_iter = exc, 0
                    runs.append(failed)
            if n_split:
                runs += [new_run(p) for p in split_starts(parent.params, n_split, *rows,
                                                     missing=data.missing)]
            starts[ct] = runs
        _em.run_batch([r for runs in starts.values() for r in runs], screen, isolate=True)
        for ct, runs in starts.items():
            chosen = _best(runs, n_screen, variance)
            if chosen is None:
                chosen = next(r for r in runs if r.error is not None)
            best[(K, ct)] = chosen

    if screen is data:
        return best, 0
    final = {}
    for key, run in best.items():
        if run.error is None:
            final[key] = new_run(run.params)
        else:
            final[key] = run
    before = [r.n_iter for r in final.values()]
    _em.run_batch(list(final.values()), data, isolate=True)
    passes = max([r.n_iter - b for r, b in zip(final.values(), before)], default=0)
    return final, passes


def fit_sharing_passes(models, X):
    """Fit several GaussianMixture candidates, one data pass per EM iteration.

    Each pass over the rows (a file or chunk source is read once per pass, not
    once per candidate) feeds every candidate that has not converged yet
    (:func:`fastem._em.run_batch`).  Every candidate is initialised as its
    own ``fit`` would do it, and the statistics of each are accumulated in the
    same blocks and order, so each model equals ``model.fit(X)`` exactly.
    Used by :func:`fastem.selection.select_model` when ``init_params`` is not
    'auto'.  Transactional: if any
    candidate fails, every model is left as it was.

    Parameters
    ----------
    models : list of GaussianMixture
        Unfitted candidates with ``n_init=1`` and ``warm_start=False``.
    X : array-like or data source

    Returns
    -------
    models
    """
    if not models:
        return models
    for m in models:
        m._check_base_parameters()
        if m.n_init != 1 or m.warm_start:
            raise ValueError("fit_sharing_passes needs n_init=1 and warm_start=False "
                             "candidates")
    first = models[0]
    transactions = [m._transaction() for m in models]
    for t in transactions:
        t.__enter__()
    try:
        data = first._as_data(X, None, reset=True)
        runs = []
        with _threads.thread_limits(first.n_jobs):
            for m in models:
                if m is not first:
                    m._record_features(data, reset=True)
                    if hasattr(first, "feature_names_in_"):
                        m.feature_names_in_ = first.feature_names_in_
                check_enough_rows(data.n_samples, m.n_components)
                inits = m._check_initial_parameters(data.n_features)
                params = m._initial_params(data, check_random_state(m.random_state), inits)
                report = _em.Report(m.verbose, m.verbose_interval, m.progress,
                                    total=m.max_iter, desc=f"EM (K={m.n_components}, "
                                    f"{m.covariance_type})")
                report.start(0)
                runs.append(m._new_run(params, -np.inf, report))
            try:
                _em.run_batch(runs, data)
            finally:
                for run in runs:
                    run.report.bar.close()
            for run in runs:
                run.report.end(run.converged, run.lower_bound)
        for m, run in zip(models, runs):
            m._finish_fit(run)
    except BaseException as exc:
        for t in transactions:
            t.__exit__(type(exc), exc, exc.__traceback__)
        raise
    return models

def candidate_rows(grid, models, data, X, criterion, val_X=None):
    """The selection table's rows (dicts) of fitted GaussianMixture candidates.

    Parameters
    ----------
    grid : list of (int, str)
        ``(n_components, covariance_type)`` of each row.
    models : list of GaussianMixture
        One per grid entry; an unfitted one (every start failed) gives a
        row of NaN criteria.
    data : fastem._data.RowData
        The rows the candidates were fitted to (``X`` as data).
    X : array-like or data source
        The same rows, for the fallback scoring path.
    criterion : str
        'icl' adds one pass per candidate for the entropy.
    val_X : array-like or None
        Validation rows of 'heldout'.
    """
    scores = score(models, data, X)
    rows, variance = [], None
    for (k, ct), model, crit in zip(grid, models, scores):
        fitted = crit is not None
        if fitted and variance is None:
            variance = column_variance(data)
        rows_k, ratio, degenerate = (degeneracy(model._params(), crit["n"], variance)
                                     if fitted else (np.nan, np.nan, False))
        icl = np.nan
        if fitted and criterion == "icl":
            icl = crit["bic"] + 2.0 * entropy(model, data)
        heldout = model.score(val_X) if fitted and val_X is not None else np.nan
        rows.append({
            "n_components": k, "covariance_type": ct,
            "bic": crit["bic"] if fitted else np.nan,
            "icl": icl, "aic": crit["aic"] if fitted else np.nan,
            "heldout": heldout,
            "log_likelihood": crit["total"] / crit["n"] if fitted else np.nan,
            "total_log_likelihood": crit["total"] if fitted else np.nan,
            "n_parameters": crit["n_parameters"] if fitted else n_parameters(k, ct, data),
            "min_component_rows": rows_k, "min_variance_ratio": ratio,
            "degenerate": degenerate,
            "converged": bool(getattr(model, "converged_", False)),
            "n_iter": int(getattr(model, "n_iter_", 0)),
        })
    return rows


def score(models, data, X):
    """The criteria (BIC, AIC, total log-likelihood, rows, parameters) of
    every fitted candidate: one pass shared by all of them (each total
    equals the model's own ``bic``'s); None for unfitted ones."""
    fitted = [m for m in models if hasattr(m, "means_")]
    try:
        with _threads.thread_limits(models[0].n_jobs):
            stats = data.e_pass_many([m._params() for m in fitted])
    except _estep.ZeroDensityError:
        crits = [m._criteria(X) for m in fitted]
    else:
        crits = []
        for m, st in zip(fitted, stats):
            p = m._n_parameters()
            total, n = st.loglik, st.n_rows
            crits.append({"bic": -2 * total + p * np.log(n), "aic": -2 * total + 2 * p,
                          "total": total, "n": n, "n_parameters": p})
    by_id = {id(m): c for m, c in zip(fitted, crits)}
    return [by_id.get(id(m)) for m in models]


def entropy(model, data):
    """``-sum_i sum_k z_ik log z_ik`` of the model's responsibilities on the
    rows, in bounded chunks (one pass)."""
    def chunk_entropy(wlp):
        norm = np.logaddexp.reduce(wlp, axis=1)
        logz = wlp - norm[:, None]
        z = np.exp(logz)
        with np.errstate(invalid="ignore"):
            terms = np.where(z > 0, z * logz, 0.0)
        return np.atleast_1d(-terms.sum())

    return float(np.sum(model._collect(data, chunk_entropy)))


def n_parameters(k, ct, data):
    """Free parameters of a K-component mixture of this type on these rows."""
    d = data.n_features
    cov = {"full": k * d * (d + 1) / 2, "diag": k * d, "tied": d * (d + 1) / 2,
           "spherical": k}[ct]
    return int(cov + k * d + k - 1)
