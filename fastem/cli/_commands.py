"""The commands fit, predict, info, sample, compile and bench of the ``fastem`` tool."""

import sys
import warnings

import numpy as np

from ._args import CLIError
from ._data import (_check_outputs, _import_optional, _load_model, _model_and_source,
                    _model_features, _model_names, _old_faithful, _open_source, _write_npy)
from ._output import (EFFECTIVE_WEIGHT, PLOT_MAX_POINTS, _plot_model,
                      _require_matplotlib, format_components)


def _make_estimator(args):
    common = dict(n_components=args.n_components, covariance_type=args.covariance_type,
                  random_state=args.random_state)
    if getattr(args, "bayesian", False):
        return _make_bayesian(args, common)
    if not args.online:
        from ..mixture import GaussianMixture

        return GaussianMixture(
            tol=args.tol, max_iter=args.max_iter, n_init=args.n_init,
            init_params=args.init_params, reg_covar=args.reg_covar, n_jobs=args.n_jobs,
            chunk_size=args.chunk_size, missing=args.missing, **common)
    online = _import_optional("fastem.online", "fastem fit --online")
    cls = online.MiniBatchGaussianMixture
    if args.batch_size is not None:
        common["batch_size"] = args.batch_size
    accepted = cls().get_params(deep=False)
    for name in ("reg_covar", "n_jobs", "chunk_size", "init_params", "missing"):
        if name in accepted:
            common[name] = getattr(args, name)
    return cls(**common)


def _make_bayesian(args, common):
    common.update(tol=args.tol, max_iter=args.max_iter, init_params=args.init_params,
                  reg_covar=args.reg_covar, n_jobs=args.n_jobs, chunk_size=args.chunk_size,
                  missing=args.missing)
    if not args.online:
        from ..bayesian import BayesianGaussianMixture

        return BayesianGaussianMixture(n_init=args.n_init, **common)
    from ..bayesian_online import MiniBatchBayesianGaussianMixture

    if args.batch_size is not None:
        common["batch_size"] = args.batch_size
    return MiniBatchBayesianGaussianMixture(**common)


def _print_scores(model, total, n):
    """The log-likelihood and criteria, or for a variational mixture its score,
    lower bound and effective number of components."""
    if hasattr(model, "effective_n_components"):
        from ..selection import effective_components

        n_effective, _ = effective_components(model, EFFECTIVE_WEIGHT)
        print(f"score (variational, mean per sample): {total / n:.6g}")
        print(f"lower bound: {model.lower_bound_:.6g}")
        print(f"effective components: {n_effective} of {model.n_components} "
              f"(weights > {EFFECTIVE_WEIGHT:g})")
        return
    p = model._n_parameters()
    bic = -2.0 * total + p * np.log(n)
    aic = -2.0 * total + 2.0 * p
    print(f"log-likelihood: {total:.6g} (mean per sample {total / n:.6g})")
    print(f"BIC: {bic:.6g}   AIC: {aic:.6g}")


def cmd_fit(args):
    from .. import io

    if args.batch_size is not None and not args.online:
        raise CLIError("--batch-size applies to --online fits only; add --online")
    if args.plot is not None:
        _require_matplotlib()
    _check_outputs(args.out, args.plot)
    K = args.n_components
    if args.path is None:
        X, name, names = _old_faithful(args.columns)
        data = score_data = X
        n_known = X.shape[0]
    else:
        src, names = _open_source(args.path, args.columns, args.chunk_size)
        name = args.path
        # Stream from disk: fit reads the path (or the column selection) chunk
        # by chunk, one pass per EM iteration.
        data = args.path if args.columns is None else src
        score_data = src
        n_known = src.n_samples
    if n_known is not None and n_known < K:
        raise CLIError(f"-k {K} needs at least {K} rows; {name} has {n_known}")
    from .._compile import prefetch

    # a kernel the fit will need and the cache lacks compiles in the
    # background while the estimator's imports load
    prefetch(args.covariance_type, getattr(score_data, "dtype", np.float64),
             score_data.shape[1] if hasattr(score_data, "shape") else score_data.n_features)
    model = _make_estimator(args)

    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(data)
        # one E-step pass with the fit's kernel (no per-row array)
        total, n = model._weighted_total(score_data, None)
    d = model.means_.shape[1]
    print(f"fastem {type(model).__name__}: {K} components, "
          f"covariance_type={args.covariance_type!r}")
    print(f"data: {name}: {n} rows x {d} features ({', '.join(names)})")
    print()
    print(format_components(model, names))
    print()
    _print_scores(model, total, n)
    if hasattr(model, "n_iter_"):
        status = ("converged" if getattr(model, "converged_", False)
                  else "did not converge" + ("" if args.online else " (raise --max-iter)"))
        print(f"iterations: {model.n_iter_} ({status})")
    for w in caught:
        if not issubclass(w.category, ConvergenceWarning):
            print(f"warning: {w.message}", file=sys.stderr)
    if args.out is not None:
        from .. import persist

        persist.save(model, args.out)
        print(f"model saved to {args.out}")
    if args.plot is not None:
        if args.path is None:
            sample = X
        else:
            sample = io.reservoir_sample(src, PLOT_MAX_POINTS, random_state=args.random_state)
        _plot_model(args.plot, model, sample, names)
        print(f"plot saved to {args.plot}")
    return 0


def cmd_compile(args):
    from .. import _compile

    if args.status:
        st = _compile.status(args.types, args.dtypes, args.features)
        enabled = "" if st["cache_enabled"] else " (disabled: FASTEM_NUMBA_CACHE=0)"
        print(f"cache: {st['cache_dir']}{enabled}")
        print(f"CPU: {st['cpu']}")
        n = sum(c for _, c in st["kernels"])
        print(f"compiled: {n} of {len(st['kernels'])} kernels")
        for label, cached in st["kernels"]:
            print(f"  {'yes' if cached else 'no ':3s}  {label}")
        return 0
    _compile.compile(args.types, args.dtypes, args.features, progress=True,
                     file=sys.stdout)
    return 0


def cmd_predict(args):
    _check_outputs(args.out)
    model, src, _ = _model_and_source(args)
    if args.n_jobs is not None:
        model.n_jobs = args.n_jobs
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        if args.proba:
            out = np.ascontiguousarray(model.predict_proba(src), dtype=np.float64)
            labels = out.argmax(axis=1)
        else:
            out = labels = np.asarray(model.predict(src), dtype=np.int64)
    _write_npy(args.out, out)
    n = labels.shape[0]
    counts = np.bincount(labels, minlength=model.n_components)
    parts = ", ".join(f"{k}: {c}" for k, c in enumerate(counts))
    what = "probabilities" if args.proba else "labels"
    print(f"predicted {n} rows of {args.path}; rows per component {parts}; "
          f"{what} written to {args.out}")
    return 0


def cmd_info(args):
    model = _load_model(args.model)
    print(f"model: {args.model}")
    print(f"class: {type(model).__name__}")
    print(f"covariance_type: {model.covariance_type}")
    print(f"n_components: {model.n_components}")
    if not hasattr(model, "means_"):
        print("fitted: no")
        return 0
    names = _model_names(model)
    print(f"n_features: {model.means_.shape[1]} ({', '.join(names)})")
    fields = []
    if hasattr(model, "converged_"):
        fields.append(f"converged: {bool(model.converged_)}")
    if hasattr(model, "n_iter_"):
        fields.append(f"n_iter: {model.n_iter_}")
    if hasattr(model, "lower_bound_"):
        fields.append(f"lower_bound: {float(model.lower_bound_):.6g}")
    if fields:
        print("   ".join(fields))
    print()
    print(format_components(model, names))
    return 0


#: Most values (samples x features) 'fastem sample' draws: 2**28 float64
#: values are 2 GiB.
MAX_SAMPLE_VALUES = 2**28


def cmd_sample(args):
    _check_outputs(args.out, args.labels)
    model = _load_model(args.model)
    d = _model_features(model, args.model)
    if args.n_samples * d > MAX_SAMPLE_VALUES:
        raise CLIError(
            f"-n {args.n_samples} samples x {d} features is {args.n_samples * d} values, "
            f"more than the limit of {MAX_SAMPLE_VALUES} ({MAX_SAMPLE_VALUES * 8 // 2**30} "
            f"GiB); draw at most {MAX_SAMPLE_VALUES // d} samples per run")
    if args.random_state is not None:
        model.random_state = args.random_state
    X, y = model.sample(args.n_samples)
    _write_npy(args.out, np.ascontiguousarray(X, dtype=np.float64))
    msg = f"wrote {X.shape[0]} samples x {d} features to {args.out}"
    if args.labels is not None:
        _write_npy(args.labels, np.asarray(y, dtype=np.int64))
        msg += f", their components to {args.labels}"
    print(msg)
    return 0


def _run_bench(argv):
    bench = _import_optional("fastem.bench", "fastem bench")
    rc = bench.main(list(argv))
    return 0 if rc is None else int(rc)
