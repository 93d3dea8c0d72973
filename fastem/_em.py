"""The EM driver: the one place where EM iterations run.

- :func:`run_batch` advances EM runs (one per initialisation of a
  ``GaussianMixture.fit``, or the candidates of ``select_model``) over full
  passes of a :class:`~fastem._data.RowData`: runs that advance together
  share each pass (:meth:`~fastem._data.RowData.e_pass_many`).
- :class:`StepwiseEM` is online (stepwise) EM: one mini-batch at a time
  (``partial_fit``), or passes of mini-batches (``MiniBatchGaussianMixture.fit``).

One policy for all of them: an iteration is the E-step pass, then the M-step;
a run has converged when its lower bound changes by less than ``tol``; a run
that did not converge warns (:func:`warn_not_converged`); verbose output
follows scikit-learn's format and progress bars are tqdm's
(:class:`Report`).  Drivers never touch an estimator's attributes: they
return results, and the estimator publishes them when the whole fit has
succeeded.
"""

import copy
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from . import _estep
from ._progress import progress_bar
from ._suffstats import GaussianParams, precision_cholesky


class Report:
    """Verbose lines (scikit-learn's format) and a progress bar for one run.

    ``verbose``: 0 silent, 1 a line per initialisation and every
    ``interval`` iterations, 2 with times and changes.
    """

    def __init__(self, verbose=0, interval=10, progress=False, total=None, desc="EM",
                 unit="iter"):
        self.verbose = verbose
        self.interval = interval
        self.t0 = time.perf_counter()
        self.bar = progress_bar(progress, total=total, desc=desc, unit=unit)

    def start(self, init):
        self.t0 = time.perf_counter()
        if self.verbose >= 1:
            print(f"Initialization {init}")

    def iteration(self, n_iter, lower_bound, change):
        self.bar.update(1)
        self.bar.set_postfix_str(f"loglik {lower_bound:.6g}, change {change:.3g}")
        if n_iter % self.interval == 0:
            if self.verbose == 1:
                print(f"  Iteration {n_iter}")
            elif self.verbose >= 2:
                print(f"  Iteration {n_iter}\t time lapse "
                      f"{time.perf_counter() - self.t0:.5f}s\t ll change {change:.5f}")

    def end(self, converged, lower_bound):
        self.bar.close()
        if self.verbose == 1:
            print(f"Initialization {'converged' if converged else 'did not converge'}.")
        elif self.verbose >= 2:
            print(f"Initialization {'converged' if converged else 'did not converge'}. "
                  f"time lapse {time.perf_counter() - self.t0:.5f}s\t lower bound "
                  f"{lower_bound:.5f}.")


class Run:
    """One EM run: its parameters, lower bounds, iterations and convergence.

    Parameters
    ----------
    params : GaussianParams
        The starting point.
    tol, reg_covar, max_iter : as the estimator's
    lower_bound : float
        The lower bound of the starting point (-inf for a fresh start; the
        previous fit's for a warm start).
    report : Report or None
    update : callable or None
        ``update(stats, params) -> (params, lower_bound)``: the update from a
        pass's statistics and the lower bound it reaches, in place of EM's
        (the M-step, and the mean log-likelihood of the pass); a variational
        mixture supplies its posterior update and evidence lower bound.
    """

    def __init__(self, params, tol, reg_covar, max_iter, lower_bound=-np.inf, report=None,
                 update=None):
        self.params = params
        self.update_rule = update
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.lower_bound = lower_bound
        self.bounds = []
        self.n_iter = 0
        self.converged = False
        self.report = report
        self.error = None

    @property
    def running(self):
        return not self.converged and self.n_iter < self.max_iter

    def update(self, stats):
        """The M-step from one pass's statistics, and the convergence test."""
        prev = self.lower_bound
        if self.update_rule is None:
            self.params = stats.m_step(self.reg_covar)
            self.lower_bound = stats.mean_loglik()
        else:
            self.params, self.lower_bound = self.update_rule(stats, self.params)
        self.bounds.append(self.lower_bound)
        self.n_iter += 1
        change = self.lower_bound - prev
        if self.report is not None:
            self.report.iteration(self.n_iter, self.lower_bound, change)
        if abs(change) < self.tol:
            self.converged = True


def run_batch(runs, data, isolate=False):
    """Advance the runs to convergence or ``max_iter``, one pass of ``data``
    per iteration shared by every run still going.  Each run's result equals
    that of running it alone (the same chunks, in the same order).

    With ``isolate`` (the many starts of a model search), a run whose E-step
    or M-step fails (a component with zero density for every row, an
    ill-defined covariance) stops with the error in ``run.error`` instead of
    ending the others; otherwise the error propagates.
    """
    active = [r for r in runs if r.running]
    while active:
        if len(active) == 1 and not isolate:
            stats = [data.e_pass(active[0].params)]
        else:
            try:
                stats = data.e_pass_many([r.params for r in active])
            except ValueError:
                if not isolate:
                    raise
                # find the failing runs: this iteration one pass per run
                stats = [_isolated(r, lambda r=r: data.e_pass(r.params)) for r in active]
        for r, s in zip(active, stats):
            if s is None:
                continue
            if isolate:
                _isolated(r, lambda: r.update(s))
            else:
                r.update(s)
        active = [r for r in active if r.running]
    return runs


def _isolated(run, step):
    """``step()``, or None with the run stopped and its ValueError kept."""
    try:
        return step()
    except ValueError as exc:
        run.error = exc
        run.max_iter = run.n_iter  # stops it (``running`` is then False)
        return None


def run_starts(n_init, start, data, verbose=0, verbose_interval=10, progress=False,
               max_iter=None, desc="EM"):
    """The runs of a fit's ``n_init`` starts, one after the other, each with
    its own :class:`Report` (scikit-learn's verbose lines, a progress bar);
    returns the best (:func:`best_of`).

    ``start(report) -> Run`` makes the run of the next start (its initial
    parameters drawn in order, so a random state gives the same starts).
    """
    runs = []
    for init in range(n_init):
        report = Report(verbose, verbose_interval, progress, total=max_iter,
                        desc=f"{desc} (init {init + 1}/{n_init})")
        report.start(init)
        run = start(report)
        try:
            run_batch([run], data)
        finally:
            report.bar.close()
        report.end(run.converged, run.lower_bound)
        runs.append(run)
    return best_of(runs)


def best_of(runs):
    """The run with the highest final lower bound (the first on ties), as
    scikit-learn picks among initialisations."""
    best = None
    for r in runs:
        if best is None or r.lower_bound > best.lower_bound:
            best = r
    return best


def warn_not_converged(converged, max_iter, message, min_iter=1, stacklevel=4):
    """The ConvergenceWarning policy: warn when a fit that could have
    converged (``max_iter >= min_iter``) did not."""
    if not converged and max_iter >= min_iter:
        warnings.warn(message, ConvergenceWarning, stacklevel=stacklevel)


BATCH_WARNING = ("Best performing initialization did not converge. Try different init "
                 "parameters, or increase max_iter, tol, or check for degenerate data.")


# ---------------------------------------------------------------------------
# Stepwise (online) EM
# ---------------------------------------------------------------------------


class StepwiseEM:
    """Online EM: running statistics blended with each mini-batch's.

    The state is a dict (``iterate``, ``stats``, ``avg``, ``n_avg``,
    ``n_steps``, ``n_rows``); :meth:`step` returns a new one and never
    changes the one given, so that a failed step leaves nothing behind.
    The step size after ``burn_in`` equally weighted batches is
    ``(t - burn_in + learning_offset) ** -learning_decay``;
    ``average_start`` (or None) starts Polyak-Ruppert averaging.
    ``update(stats) -> params`` (or None for the M-step) turns the running
    statistics, normalised per unit of row weight, into the next iterate;
    stochastic variational inference supplies its posterior update there.
    """

    def __init__(self, reg_covar, burn_in, learning_offset, learning_decay, average_start,
                 update=None, missing=False):
        self.update_rule = update
        self.missing = missing
        self.reg_covar = reg_covar
        self.burn_in = burn_in
        self.learning_offset = learning_offset
        self.learning_decay = learning_decay
        self.average_start = average_start

    @staticmethod
    def fresh_state(iterate):
        return {"iterate": iterate, "stats": None, "avg": None, "n_avg": 0,
                "n_steps": 0, "n_rows": 0}

    def step(self, state, X, w):
        """Blend one mini-batch into a copy of state; returns (state, batch ll)."""
        params = state["iterate"]
        # a mini-batch is often a single fixed-size task: split it in two-block
        # tasks so that every thread has work
        acc = _estep.StatsAccumulator(params, X.dtype,
                                      rows_per_task=2 * _estep.block_size(X.shape[1]),
                                      missing=self.missing)
        acc.add(X, w)
        batch = acc.result()
        ll = batch.mean_loglik()
        batch = batch.scale(1.0 / batch.weight_sum)
        t = state["n_steps"] + 1
        running = state["stats"]
        if running is None:
            blended = batch
        elif t <= self.burn_in:
            blended = running.scale((t - 1) / t).merge(batch.scale(1.0 / t))
        else:
            rho = (t - self.burn_in + self.learning_offset) ** (-self.learning_decay)
            blended = running.scale(1.0 - rho).merge(batch.scale(rho))
        new = dict(state)
        new["n_steps"] = t
        new["n_rows"] = state["n_rows"] + X.shape[0]
        if t >= self.burn_in:
            if self.update_rule is None:
                iterate = blended.m_step(self.reg_covar)
            else:
                iterate = self.update_rule(blended)
            ref2 = iterate.weights @ iterate.means
            blended = blended.recenter(iterate.means, ref2)
            new["iterate"] = iterate
            start = self.average_start
            if start is not None and t >= start:
                new["avg"], new["n_avg"] = _average(state["avg"], state["n_avg"], iterate)
        new["stats"] = blended
        return new, ll

    def passes(self, state, data, rng, batch_size, max_iter, tol, report):
        """Up to ``max_iter`` passes of mini-batches over ``data``; stops when
        the mean log-likelihood of a pass (each batch scored before its
        update) changes by less than ``tol``.

        Returns (state, bounds, n_pass, converged).
        """
        bounds = []
        converged = False
        prev = -np.inf
        n_pass = 0
        for n_pass in range(1, max_iter + 1):
            total = 0.0
            weight = 0.0
            for Xb, wb in data.minibatches(batch_size, rng):
                state, ll = self.step(state, Xb, wb)
                bw = Xb.shape[0] if wb is None else float(np.sum(wb))
                total += ll * bw
                weight += bw
                report.bar.update(1)
            report.bar.set_postfix_str(
                f"pass {n_pass}, loglik {total / max(weight, 1e-300):.6g}")
            mean_ll = total / weight if weight > 0 else -np.inf
            bounds.append(mean_ll)
            if report.verbose and n_pass % report.interval == 0:
                print(f"  Pass {n_pass}\t time lapse {time.perf_counter() - report.t0:.5f}s"
                      f"\t ll change {mean_ll - prev:.5f}")
            if abs(mean_ll - prev) < tol:
                converged = True
                break
            prev = mean_ll
        report.bar.close()
        return state, bounds, n_pass, converged


def _average(avg, n_avg, params):
    """Running average of parameters (Polyak-Ruppert)."""
    m = n_avg + 1
    if avg is None:
        return GaussianParams(params.covariance_type, params.weights.copy(),
                              params.means.copy(), params.covariances.copy(),
                              params.precisions_cholesky.copy()), m
    f = 1.0 / m
    weights = avg.weights + f * (params.weights - avg.weights)
    means = avg.means + f * (params.means - avg.means)
    covs = avg.covariances + f * (params.covariances - avg.covariances)
    return GaussianParams(params.covariance_type, weights, means, covs,
                          precision_cholesky(covs, params.covariance_type)), m


# ---------------------------------------------------------------------------
# Transactions
# ---------------------------------------------------------------------------


class Transaction:
    """Snapshot of an estimator's attributes, restored if the block raises.

    Arrays (and containers of them) are copied, so that even an in-place
    change would be undone; the attribute set itself is restored too
    (attributes added by the failed call are removed)."""

    def __init__(self, est):
        self.est = est

    def __enter__(self):
        self.saved = {k: copy.deepcopy(v) if _mutable_state(v) else v
                      for k, v in vars(self.est).items()}
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            d = vars(self.est)
            d.clear()
            d.update(self.saved)
        return False


def _mutable_state(v):
    return isinstance(v, (np.ndarray, list, dict, np.random.RandomState,
                          np.random.Generator)) or hasattr(v, "__slots__")
