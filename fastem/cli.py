"""The ``fastem`` command-line tool.

Examples
--------
fastem fit                       # Old Faithful, 2 components
fastem fit data.npy -k 8 --covariance-type diag --out model.npz
fastem fit data.csv -k 3 --columns x,y --plot fit.png
fastem predict model.npz data.npy --out labels.npy
fastem info model.npz
fastem sample model.npz -n 1000 --out samples.npy
fastem select -k 1:6 --types full,diag
fastem bench --help

Every subcommand prints its own help with examples (``fastem fit --help``).
Every failure is reported as one line on stderr with exit status 2: bad
arguments as ``fastem COMMAND: error: ...`` (the usage is shown by
``--help`` only), everything else (missing or unreadable files, invalid or
tampered models, requests too large for memory) as ``fastem: error: ...``.
"""

import argparse
import importlib
import importlib.util
import os
import sys
import warnings

import numpy as np

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
#: Most rows drawn in a --plot picture.
PLOT_MAX_POINTS = 20_000
_MATPLOTLIB_HINT = "pip install 'fastem[plot]'"

EPILOG_FIT = """examples:
  fastem fit                                   Old Faithful data shipped with fastem
  fastem fit data.npy -k 8 --covariance-type diag
  fastem fit table.csv -k 3 --columns eruptions,waiting
  fastem fit big.npy -k 5 --chunk-size 100000 --out model.npz
  fastem fit big.parquet -k 5 --online --batch-size 4096 --out model.npz
  fastem fit -k 2 --plot faithful.png

Files are streamed from disk in chunks of --chunk-size rows; memory use does
not grow with the file. --online fits a MiniBatchGaussianMixture (stepwise
online EM), which needs fewer passes over large files.
"""

EPILOG_PREDICT = """examples:
  fastem predict model.npz data.npy --out labels.npy
  fastem predict model.npz table.csv --columns x,y --out labels.npy
  fastem predict model.npz data.npy --proba --out resp.npy

Labels are written as an int64 array of shape (n_samples,); with --proba the
posterior probabilities as a float64 array of shape (n_samples, n_components).
"""

EPILOG_INFO = """examples:
  fastem info model.npz
"""

EPILOG_SAMPLE = """examples:
  fastem sample model.npz -n 1000 --out samples.npy
  fastem sample model.npz -n 1000 --out samples.npy --labels labels.npy --random-state 1

Samples are written as a float64 array of shape (N, n_features); --labels
writes the component of each sample (int64).
"""

EPILOG_SELECT = """examples:
  fastem select                                Old Faithful, K = 1..6, all covariance types
  fastem select -k 1:10 --types full,diag --criterion bic
  fastem select data.npy -k 2,4,8 --criterion heldout --out best.npz
  fastem select --columns eruptions -k 1:5 --plot selection.png

-k takes a range A:B (both ends included), a comma-separated list or one
number.
"""

EPILOG_COMPILE = """examples:
  fastem compile                          every kernel, both dtypes (a few minutes)
  fastem compile --types full --dtypes float64 --features 2
  fastem compile --status                 where the cache is, what it holds

The cache is NUMBA_CACHE_DIR when set, else next to fastem's sources when
writable, else the user's cache folder (~/.cache/numba). Dockerfile:
RUN fastem compile. Dask: client.run(fastem.compile, progress=False).
"""

EPILOG_BENCH = """examples:
  fastem bench --help
"""


class CLIError(Exception):
    """An error reported to the user as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # One line, like every other error of the tool; the usage is shown
        # by --help only.
        message = " ".join(str(message).split())
        self.exit(2, f"{self.prog}: error: {message}\n")


# ---------------------------------------------------------------------------
# Argument types
# ---------------------------------------------------------------------------


def _positive_int(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def _columns(text):
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise argparse.ArgumentTypeError("expected a comma-separated list of columns")
    return [int(p) if p.lstrip("-").isdigit() else p for p in parts]


def _k_values(text):
    """Parse -k for select: 'A:B' (inclusive), 'a,b,c' or 'a'."""
    text = text.strip()

    def one(part):
        try:
            v = int(part)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected A:B, a comma-separated list or one positive integer, "
                f"got {text!r}") from None
        if v < 1:
            raise argparse.ArgumentTypeError(
                f"numbers of components must be >= 1, got {v} in {text!r}")
        return v

    if ":" in text:
        a, sep, b = text.partition(":")
        if ":" in b:
            raise argparse.ArgumentTypeError(f"expected A:B, got {text!r}")
        a, b = one(a), one(b)
        if a > b:
            raise argparse.ArgumentTypeError(f"A:B needs A <= B, got {text!r}")
        return range(a, b + 1)
    values = [one(p) for p in text.split(",")]
    return list(dict.fromkeys(values))


def _dtypes(text):
    parts = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in parts if t not in ("float64", "float32")]
    if bad or not parts:
        raise argparse.ArgumentTypeError(
            f"expected float64 and/or float32, comma-separated, got {text!r}")
    return parts


def _covariance_types(text):
    types = [p.strip() for p in text.split(",") if p.strip()]
    bad = [t for t in types if t not in COVARIANCE_TYPES]
    if bad or not types:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated list of {', '.join(COVARIANCE_TYPES)}, got {text!r}")
    return list(dict.fromkeys(types))


# ---------------------------------------------------------------------------
# The parser
# ---------------------------------------------------------------------------


def _sub(sub, name, help, description, epilog, **kwargs):
    return sub.add_parser(name, help=help, description=description, epilog=epilog,
                          formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)


def _add_data_options(p):
    p.add_argument("--columns", type=_columns, default=None,
                   help="comma-separated column names or indices to use")
    p.add_argument("--chunk-size", type=_positive_int, default=None,
                   help="rows read per chunk from the file")


def build_parser():
    parser = _Parser(
        prog="fastem",
        description="Fast EM for Gaussian mixture models.",
        epilog="Run 'fastem COMMAND --help' for the options and examples of a command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = _sub(sub, "fit", "fit a Gaussian mixture to a .npy/.csv/.parquet/.h5/.zarr file",
             "Fit a Gaussian mixture and print its components. Without PATH, fits "
             "the Old Faithful data shipped with fastem.", EPILOG_FIT)
    p.add_argument("path", nargs="?", metavar="PATH",
                   help="data file (.npy, .csv, .tsv, .txt, .parquet, .h5::dataset, "
                        ".zarr); default: the embedded Old Faithful data")
    p.add_argument("-k", "--n-components", type=_positive_int, default=2,
                   help="number of components (default: 2)")
    p.add_argument("--covariance-type", default="full", choices=COVARIANCE_TYPES,
                   help="covariance type (default: full)")
    _add_data_options(p)
    p.add_argument("--max-iter", type=_positive_int, default=100)
    p.add_argument("--tol", type=float, default=1e-3)
    p.add_argument("--n-init", type=_positive_int, default=1)
    p.add_argument("--init-params", default="kmeans",
                   choices=["kmeans", "k-means++", "random", "random_from_data"])
    p.add_argument("--reg-covar", type=float, default=1e-6)
    p.add_argument("--random-state", type=int, default=0)
    p.add_argument("--n-jobs", type=int, default=None,
                   help="number of threads (default: all)")
    p.add_argument("--online", action="store_true",
                   help="fit a MiniBatchGaussianMixture (stepwise online EM)")
    p.add_argument("--batch-size", type=_positive_int, default=None,
                   help="rows per mini-batch with --online")
    p.add_argument("--out", metavar="MODEL.npz", default=None,
                   help="save the fitted model to this file (read it with "
                        "'fastem info/predict/sample')")
    p.add_argument("--plot", metavar="OUT.png", default=None,
                   help="draw the components over (a sample of) the data into a PNG file")
    p.set_defaults(func=cmd_fit)

    p = _sub(sub, "predict", "label the rows of a data file with a saved model",
             "Assign each row of PATH to its most probable component of MODEL "
             "(or, with --proba, write the probabilities of all components).",
             EPILOG_PREDICT)
    p.add_argument("model", metavar="MODEL", help="model file written by 'fastem fit --out'")
    p.add_argument("path", metavar="PATH", help="data file")
    p.add_argument("--out", metavar="OUT.npy", required=True, help="output .npy file")
    p.add_argument("--proba", action="store_true",
                   help="write probabilities (n_samples, n_components) instead of labels")
    _add_data_options(p)
    p.add_argument("--n-jobs", type=int, default=None, help="number of threads")
    p.set_defaults(func=cmd_predict)

    p = _sub(sub, "info", "describe a saved model",
             "Print the class, covariance type, size, convergence and components of "
             "a saved model.", EPILOG_INFO)
    p.add_argument("model", metavar="MODEL", help="model file")
    p.set_defaults(func=cmd_info)

    p = _sub(sub, "sample", "draw random samples from a saved model",
             "Draw N samples from the mixture stored in MODEL.", EPILOG_SAMPLE)
    p.add_argument("model", metavar="MODEL", help="model file")
    p.add_argument("-n", "--n-samples", type=_positive_int, required=True,
                   help="number of samples")
    p.add_argument("--out", metavar="OUT.npy", required=True, help="output .npy file")
    p.add_argument("--labels", metavar="LABELS.npy", default=None,
                   help="also write the component of each sample")
    p.add_argument("--random-state", type=int, default=None,
                   help="seed (default: the model's random_state)")
    p.set_defaults(func=cmd_sample)

    p = _sub(sub, "select", "choose the number of components and covariance type",
             "Fit a mixture for every (K, covariance type) and rank them by an "
             "information criterion or held-out log-likelihood. Without PATH, uses "
             "the Old Faithful data shipped with fastem.", EPILOG_SELECT)
    p.add_argument("path", nargs="?", metavar="PATH",
                   help="data file; default: the embedded Old Faithful data")
    p.add_argument("-k", "--n-components", type=_k_values, default=range(1, 7),
                   metavar="K", help="numbers of components: A:B, a,b,c or K "
                                     "(default: 1:6)")
    p.add_argument("--types", type=_covariance_types, default=list(COVARIANCE_TYPES),
                   help="comma-separated covariance types (default: all four)")
    p.add_argument("--criterion", choices=["bic", "aic", "heldout"], default="bic",
                   help="how to rank the models (default: bic)")
    _add_data_options(p)
    p.add_argument("--random-state", type=int, default=0)
    p.add_argument("--out", metavar="MODEL.npz", default=None,
                   help="save the best model to this file")
    p.add_argument("--plot", metavar="OUT.png", default=None,
                   help="draw the criterion against K into a PNG file")
    p.set_defaults(func=cmd_select)

    p = _sub(sub, "compile", "compile the Numba kernels ahead of time (warm the cache)",
             "Compile (or load from the on-disk cache) the kernels that fits use, with "
             "the time each takes, so that a first fit starts at once. With --status, "
             "say where the cache is and what it holds, compiling nothing.",
             EPILOG_COMPILE)
    p.add_argument("--types", type=_covariance_types, default=list(COVARIANCE_TYPES),
                   help="comma-separated covariance types (default: all four)")
    p.add_argument("--dtypes", type=_dtypes, default=["float64", "float32"],
                   help="comma-separated dtypes: float64, float32 (default: both)")
    p.add_argument("--features", type=_positive_int, default=None, metavar="D",
                   help="only the kernels for D features (default: all feature classes)")
    p.add_argument("--status", action="store_true",
                   help="print the cache folder and which kernels it holds; compile nothing")
    p.set_defaults(func=cmd_compile)

    p = _sub(sub, "bench", "run the benchmarks (options: 'fastem bench --help')",
             "Run fastem's benchmarks; all arguments go to fastem.bench.", EPILOG_BENCH,
             add_help=False)
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments for fastem.bench")
    p.set_defaults(func=lambda args: _run_bench(args.args))
    return parser


def _version():
    from . import __version__

    return f"fastem {__version__}"


# ---------------------------------------------------------------------------
# Data and models
# ---------------------------------------------------------------------------


def _check_path(path):
    base = path.split("::")[0]
    if not os.path.exists(base):
        raise CLIError(f"no such file: {base}")


def _old_faithful(columns):
    from .datasets import OLD_FAITHFUL_COLUMNS, load_old_faithful

    names = list(OLD_FAITHFUL_COLUMNS)
    if columns is not None:
        names = []
        for c in columns:
            if isinstance(c, int):
                if not 0 <= c < len(OLD_FAITHFUL_COLUMNS):
                    raise CLIError(f"column index {c} is out of range; the Old Faithful "
                                   f"data has columns 0..{len(OLD_FAITHFUL_COLUMNS) - 1}")
                c = OLD_FAITHFUL_COLUMNS[c]
            if c not in OLD_FAITHFUL_COLUMNS:
                raise CLIError(f"column {c!r} not found; the Old Faithful data has "
                               f"columns {', '.join(OLD_FAITHFUL_COLUMNS)}")
            names.append(c)
    return load_old_faithful(names), "Old Faithful (embedded, 272 eruptions)", names


def _open_source(path, columns=None, chunk_size=None):
    """A ChunkSource over a data file, and its feature names."""
    from . import io

    _check_path(path)
    src = io.chunks(path, chunk_size=chunk_size, columns=columns)
    return src, _source_names(src)


def _source_names(src):
    names = getattr(getattr(src, "_backend", None), "column_names", None)
    if names is not None and len(names) == src.n_features:
        return [str(n) for n in names]
    if src.columns is not None and len(src.columns) == src.n_features:
        return [c if isinstance(c, str) else f"x{c}" for c in src.columns]
    return [f"x{i}" for i in range(src.n_features)]


def load_data(path, columns=None, chunk_size=None):
    """Read a data file (or the Old Faithful data) into memory.

    Returns (X, name, feature_names).
    """
    if path is None:
        return _old_faithful(columns)
    src, names = _open_source(path, columns, chunk_size)
    blocks = list(src)
    X = np.concatenate(blocks, axis=0) if blocks else np.empty((0, src.n_features))
    return X, path, names


def _load_model(path):
    from . import persist

    if not os.path.exists(path):
        raise CLIError(f"no such model file: {path}")
    return persist.load(path)


def _model_features(model, path):
    d = getattr(model, "n_features_in_", None)
    if d is None or not hasattr(model, "means_"):
        raise CLIError(f"the model in {path} is not fitted")
    return int(d)


def _model_names(model):
    names = getattr(model, "feature_names_in_", None)
    if names is not None:
        return [str(n) for n in names]
    return [f"x{i}" for i in range(model.means_.shape[1])]


def _check_outputs(*paths):
    """Fail before any work when an output file cannot be created."""
    for path in paths:
        if path is None:
            continue
        if os.path.isdir(path):
            raise CLIError(f"cannot write {path}: it is a directory")
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise CLIError(f"cannot write {path}: the folder {folder} does not exist")


def _write_npy(path, array):
    """np.save to exactly this path (np.save would append .npy to a bare name)."""
    with open(path, "wb") as f:
        np.save(f, array)


def _import_optional(module, what):
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module or (exc.name is None and module in str(exc)):
            raise CLIError(f"{what} needs {module}, which this installation of "
                           "fastem does not have") from None
        raise


def _stds(model):
    ct = model.covariance_type
    K, d = model.means_.shape
    c = model.covariances_
    if ct == "full":
        return np.sqrt(np.diagonal(c, axis1=1, axis2=2))
    if ct == "tied":
        return np.broadcast_to(np.sqrt(np.diag(c)), (K, d))
    if ct == "diag":
        return np.sqrt(c)
    return np.broadcast_to(np.sqrt(c)[:, None], (K, d))


def format_components(model, feature_names):
    """A readable table: component, weight, means and standard deviations."""
    K, d = model.means_.shape
    names = list(feature_names) if feature_names is not None else [f"x{i}" for i in range(d)]
    header = ["component", "weight"] + [f"mean[{n}]" for n in names] + [
        f"std[{n}]" for n in names]
    stds = _stds(model)
    order = np.argsort(-model.weights_, kind="stable")
    rows = []
    for k in order:
        rows.append([str(k), f"{model.weights_[k]:.4f}"]
                    + [f"{v:.4g}" for v in model.means_[k]]
                    + [f"{v:.4g}" for v in stds[k]])
    return _format_table(header, rows)


def _format_table(header, rows):
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------


def _require_matplotlib():
    if importlib.util.find_spec("matplotlib") is None:
        raise CLIError(f"--plot needs matplotlib: {_MATPLOTLIB_HINT}")


def _save_figure(path, draw):
    """Call draw(ax) on a new Agg figure and save it as path."""
    _require_matplotlib()
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.8), layout="constrained")
    ax = fig.add_subplot()
    draw(ax)
    fig.savefig(path, format="png", dpi=100)


def _plot_model(path, model, X, names):
    from . import plot

    if model.means_.shape[1] >= 2:
        _save_figure(path, lambda ax: plot.plot_ellipses(
            model, X, ax=ax, feature_names=names, max_points=PLOT_MAX_POINTS))
    else:
        _save_figure(path, lambda ax: plot.plot_density(model, X, ax=ax, feature_names=names))


# ---------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------


def _make_estimator(args):
    common = dict(n_components=args.n_components, covariance_type=args.covariance_type,
                  random_state=args.random_state)
    if not args.online:
        from .mixture import GaussianMixture

        return GaussianMixture(
            tol=args.tol, max_iter=args.max_iter, n_init=args.n_init,
            init_params=args.init_params, reg_covar=args.reg_covar, n_jobs=args.n_jobs,
            chunk_size=args.chunk_size, **common)
    online = _import_optional("fastem.online", "fastem fit --online")
    cls = online.MiniBatchGaussianMixture
    if args.batch_size is not None:
        common["batch_size"] = args.batch_size
    accepted = cls().get_params(deep=False)
    for name in ("reg_covar", "n_jobs", "chunk_size", "init_params"):
        if name in accepted:
            common[name] = getattr(args, name)
    return cls(**common)


def cmd_fit(args):
    from . import io

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
    model = _make_estimator(args)

    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(data)
        # one E-step pass with the fit's kernel (no per-row array)
        total, n = model._weighted_total(score_data, None)
    d = model.means_.shape[1]
    p = model._n_parameters()
    bic = -2.0 * total + p * np.log(n)
    aic = -2.0 * total + 2.0 * p
    print(f"fastem {type(model).__name__}: {K} components, "
          f"covariance_type={args.covariance_type!r}")
    print(f"data: {name}: {n} rows x {d} features ({', '.join(names)})")
    print()
    print(format_components(model, names))
    print()
    print(f"log-likelihood: {total:.6g} (mean per sample {total / n:.6g})")
    print(f"BIC: {bic:.6g}   AIC: {aic:.6g}")
    if hasattr(model, "n_iter_"):
        status = ("converged" if getattr(model, "converged_", False)
                  else "did not converge" + ("" if args.online else " (raise --max-iter)"))
        print(f"iterations: {model.n_iter_} ({status})")
    for w in caught:
        if not issubclass(w.category, ConvergenceWarning):
            print(f"warning: {w.message}", file=sys.stderr)
    if args.out is not None:
        from . import persist

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
    from . import _compile

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
    model = _load_model(args.model)
    d = _model_features(model, args.model)
    src, _ = _open_source(args.path, args.columns, args.chunk_size)
    if src.n_features != d:
        raise CLIError(
            f"{args.path} has {src.n_features} column{'s' if src.n_features != 1 else ''}"
            f"{' (after --columns)' if args.columns is not None else ''}, but the model "
            f"in {args.model} expects {d} features; select {d} with --columns")
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


def _table_rows(table):
    """(column names, list of row tuples) of a DataFrame, structured array or records."""
    if hasattr(table, "columns") and hasattr(table, "itertuples"):
        cols = [str(c) for c in table.columns]
        return cols, [tuple(r) for r in table.itertuples(index=False, name=None)]
    if isinstance(table, np.ndarray) and table.dtype.names:
        cols = list(table.dtype.names)
        return cols, [tuple(r) for r in table.tolist()]
    rows = list(table)
    if rows and isinstance(rows[0], dict):
        cols = list(rows[0])
        return cols, [tuple(r.get(c) for c in cols) for r in rows]
    raise CLIError(f"fastem.selection returned a table of unsupported type "
                   f"{type(table).__name__}")


def _selection_columns(cols, rows, criterion):
    """The table columns to print: K, type, the criterion, then the others."""
    first = [c for c in ("n_components", "covariance_type", criterion) if c in cols]
    rest = []
    for i, c in enumerate(cols):
        if c in first:
            continue
        values = [r[i] for r in rows]
        floats = [v for v in values if isinstance(v, (float, np.floating))]
        if floats and len(floats) == len(values) and all(np.isnan(floats)):
            continue  # e.g. 'heldout' when ranking by bic
        rest.append(c)
    return first + rest


def _cell(v):
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.2f}"
    if isinstance(v, bytes):
        return v.decode()
    return str(v)


def cmd_select(args):
    selection = _import_optional("fastem.selection", "fastem select")
    if args.plot is not None:
        _require_matplotlib()
    _check_outputs(args.out, args.plot)
    X, name, names = load_data(args.path, args.columns, args.chunk_size)
    n, d = X.shape
    ks = args.n_components
    if n < max(ks):
        raise CLIError(f"-k up to {max(ks)} needs at least {max(ks)} rows; {name} has {n}")
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        result = selection.select_model(
            X, n_components=ks, covariance_types=args.types, criterion=args.criterion,
            random_state=args.random_state)
    cols, rows = _table_rows(result.table)
    shown = _selection_columns(cols, rows, args.criterion)
    best = dict(getattr(result, "best_params_", {}) or {})
    best_index = getattr(result, "best_index_", None)
    marks = []
    for i, r in enumerate(rows):
        if best_index is not None:
            is_best = i == best_index
        else:
            rec = dict(zip(cols, r))
            is_best = bool(best) and all(_cell(rec.get(k)) == _cell(v) for k, v in best.items())
        marks.append("*" if is_best else "")
    rows = [tuple(r[cols.index(c)] for c in shown) for r in rows]
    cols = shown
    body = [[_cell(v) for v in r] + [m] for r, m in zip(rows, marks)]
    print(f"model selection by {args.criterion}: {name}: {n} rows x {d} features "
          f"({', '.join(names)})")
    print()
    print(_format_table(cols + ["best"], body))
    print()
    print("best: " + ", ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}"
                               for k, v in best.items()))
    est = result.best_estimator_
    print()
    print(format_components(est, names))
    if args.out is not None or args.plot is not None:
        print()
    if args.out is not None:
        from . import persist

        persist.save(est, args.out)
        print(f"model saved to {args.out}")
    if args.plot is not None:
        _save_figure(args.plot, lambda ax: result.plot(ax=ax))
        print(f"plot saved to {args.plot}")
    return 0


def _run_bench(argv):
    bench = _import_optional("fastem.bench", "fastem bench")
    rc = bench.main(list(argv))
    return 0 if rc is None else int(rc)


# ---------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------


# Errors whose message is meant for the user as it is; others are named by type.
_EXPECTED_ERRORS = (CLIError, ValueError, TypeError, KeyError, ImportError, OSError)


def _report(exc):
    if isinstance(exc, CLIError):
        msg = str(exc)
    elif isinstance(exc, OSError) and exc.filename and exc.strerror:
        msg = f"{exc.filename}: {exc.strerror}"
    elif isinstance(exc, MemoryError):
        text = " ".join(str(exc).split())
        msg = "out of memory" + (f" ({text})" if text else "")
    else:
        text = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        text = " ".join(str(text).split())
        if not isinstance(exc, _EXPECTED_ERRORS):
            text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
        msg = text or type(exc).__name__
    print(f"fastem: error: {msg}", file=sys.stderr)
    return 2


def _guarded(func, *args):
    """Run a command; every failure becomes one line on stderr and status 2
    (130 for Ctrl-C)."""
    try:
        return func(*args)
    except KeyboardInterrupt:
        print("fastem: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 -- one line, never a traceback
        return _report(exc)


def main(argv=None):
    """Run the ``fastem`` tool; returns the exit status.

    Parameters
    ----------
    argv : list of str, default=None (``sys.argv[1:]``)
    """
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    if argv[:1] == ["bench"]:
        # Everything after 'bench', options included, belongs to fastem.bench.
        return _guarded(_run_bench, argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    from ._compile import announcing

    # a command that must compile kernels says so on stderr first
    with announcing(True):
        return _guarded(args.func, args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
