"""The ``fastem`` command-line tool.

Examples
--------
fastem fit                       # Old Faithful, 2 components
fastem fit data.npy -k 8 --covariance-type diag
fastem fit data.csv -k 3 --columns x,y
"""

import argparse
import os
import sys

import numpy as np

EPILOG_FIT = """examples:
  fastem fit                                   Old Faithful data shipped with fastem
  fastem fit data.npy -k 8 --covariance-type diag
  fastem fit table.csv -k 3 --columns eruptions,waiting
"""


class CLIError(Exception):
    """An error reported to the user as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


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


def build_parser():
    parser = _Parser(
        prog="fastem",
        description="Fast EM for Gaussian mixture models.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser(
        "fit", help="fit a Gaussian mixture to a .npy/.csv/.parquet/.h5/.zarr file",
        description="Fit a Gaussian mixture and print its components. Without "
                    "PATH, fits the Old Faithful data shipped with fastem.",
        epilog=EPILOG_FIT, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", nargs="?", metavar="PATH",
                   help="data file (.npy, .csv, .tsv, .txt, .parquet, .h5::dataset, "
                        ".zarr); default: the embedded Old Faithful data")
    p.add_argument("-k", "--n-components", type=_positive_int, default=2,
                   help="number of components (default: 2)")
    p.add_argument("--covariance-type", default="full",
                   choices=["full", "tied", "diag", "spherical"],
                   help="covariance type (default: full)")
    p.add_argument("--columns", type=_columns, default=None,
                   help="comma-separated column names or indices to use")
    p.add_argument("--max-iter", type=_positive_int, default=100)
    p.add_argument("--tol", type=float, default=1e-3)
    p.add_argument("--n-init", type=_positive_int, default=1)
    p.add_argument("--init-params", default="kmeans",
                   choices=["kmeans", "k-means++", "random", "random_from_data"])
    p.add_argument("--reg-covar", type=float, default=1e-6)
    p.add_argument("--random-state", type=int, default=0)
    p.add_argument("--n-jobs", type=int, default=None,
                   help="number of threads (default: all)")
    p.add_argument("--chunk-size", type=_positive_int, default=None,
                   help="rows read per chunk from the file")
    p.set_defaults(func=cmd_fit)
    return parser


def _version():
    from . import __version__

    return f"fastem {__version__}"


def load_data(path, columns=None, chunk_size=None):
    """Read a data file (or the Old Faithful data) into memory.

    Returns (X, name, feature_names).
    """
    from . import io
    from .datasets import OLD_FAITHFUL_COLUMNS, load_old_faithful

    if path is None:
        names = list(OLD_FAITHFUL_COLUMNS)
        if columns is not None:
            names = [OLD_FAITHFUL_COLUMNS[c] if isinstance(c, int) else c for c in columns]
            for c in names:
                if c not in OLD_FAITHFUL_COLUMNS:
                    raise CLIError(f"column {c!r} not found; the Old Faithful data has "
                                   f"columns {', '.join(OLD_FAITHFUL_COLUMNS)}")
        return load_old_faithful(names), "Old Faithful (embedded, 272 eruptions)", names
    base = path.split("::")[0]
    if not os.path.exists(base):
        raise CLIError(f"no such file: {base}")
    src = io.chunks(path, chunk_size=chunk_size, columns=columns)
    blocks = list(src)
    X = np.concatenate(blocks, axis=0) if blocks else np.empty((0, src.n_features))
    names = src.columns if src.columns is not None else None
    if names is None or len(names) != X.shape[1]:
        names = _feature_names_of(src) or [f"x{i}" for i in range(X.shape[1])]
    return X, path, [str(n) for n in names]


def _feature_names_of(src):
    names = getattr(src, "feature_names", None)
    return list(names) if names is not None else None


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
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def cmd_fit(args):
    from .mixture import GaussianMixture

    X, name, names = load_data(args.path, args.columns, args.chunk_size)
    n, d = X.shape
    if n < args.n_components:
        raise CLIError(f"-k {args.n_components} needs at least {args.n_components} rows; "
                       f"{name} has {n}")
    model = GaussianMixture(
        n_components=args.n_components, covariance_type=args.covariance_type,
        tol=args.tol, max_iter=args.max_iter, n_init=args.n_init,
        init_params=args.init_params, reg_covar=args.reg_covar,
        random_state=args.random_state, n_jobs=args.n_jobs)
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(X)
    ll = model.score(X) * n
    print(f"fastem GaussianMixture: {args.n_components} components, "
          f"covariance_type={args.covariance_type!r}")
    print(f"data: {name}: {n} rows x {d} features ({', '.join(names)})")
    print()
    print(format_components(model, names))
    print()
    print(f"log-likelihood: {ll:.6g} (mean per sample {ll / n:.6g})")
    print(f"BIC: {model.bic(X):.6g}   AIC: {model.aic(X):.6g}")
    status = "converged" if model.converged_ else "did not converge (raise --max-iter)"
    print(f"iterations: {model.n_iter_} ({status})")
    for w in caught:
        if not issubclass(w.category, ConvergenceWarning):
            print(f"warning: {w.message}", file=sys.stderr)
    return 0


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CLIError as exc:
        print(f"fastem: error: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        print(f"fastem: error: cannot read {exc.filename or ''}: {exc.strerror or exc}",
              file=sys.stderr)
        return 2
    except (ValueError, TypeError, KeyError, ImportError, OSError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"fastem: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
