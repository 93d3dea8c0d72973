"""The ``fastem`` tool's argument parser: commands, options and the examples of each."""

import argparse

from ._args import (COVARIANCE_TYPES, INIT_PARAMS, _columns, _covariance_types, _dtypes,
                    _k_values, _Parser, _positive_int)
from ._commands import (_run_bench, cmd_compile, cmd_fit, cmd_info, cmd_predict,
                        cmd_sample)
from ._impute import cmd_impute
from ._select import cmd_select

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

EPILOG_IMPUTE = """examples:
  fastem fit table.csv -k 3 --missing marginalize --out model.npz
  fastem impute model.npz table.csv --out filled.csv
  fastem impute model.npz table.csv --out draw1.csv --draw --random-state 1

Missing entries (empty CSV cells, NaN, Parquet nulls) are replaced by their
conditional mean given the row's observed entries under the mixture, or with
--draw by one draw from that conditional distribution (run it with several
--random-state values for multiple imputation). Rows are read and written
chunk by chunk.
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
  fastem select --bayesian -k 10               one variational fit per type, K <= 10

-k takes a range A:B (both ends included), a comma-separated list or one
number. With --bayesian, one BayesianGaussianMixture (Dirichlet-process prior)
is fitted per covariance type with the largest K as its truncation level; the
table gives each type's effective number of components (weights above
--weight-threshold) and the criterion of its fit restricted to them, and the
pick is the best of those by the criterion.
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
                   choices=list(INIT_PARAMS))
    p.add_argument("--reg-covar", type=float, default=1e-6)
    p.add_argument("--random-state", type=int, default=0)
    p.add_argument("--n-jobs", type=int, default=None,
                   help="number of threads (default: all)")
    p.add_argument("--missing", choices=["error", "marginalize"], default="error",
                   help="NaN entries / empty cells: an error (default) or missing "
                        "values to marginalise")
    p.add_argument("--online", action="store_true",
                   help="fit a MiniBatchGaussianMixture (stepwise online EM)")
    p.add_argument("--bayesian", action="store_true",
                   help="fit a BayesianGaussianMixture (variational, Dirichlet-process "
                        "prior): -k is an upper bound and the components the data do not "
                        "need get weights near 0; with --online, a "
                        "MiniBatchBayesianGaussianMixture (stochastic variational inference)")
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

    p = _sub(sub, "impute", "fill the missing entries of a data file with a saved model",
             "Replace each missing entry of PATH by its conditional mean under MODEL "
             "given the row's observed entries (or a draw with --draw).", EPILOG_IMPUTE)
    p.add_argument("model", metavar="MODEL", help="model file written by 'fastem fit --out'")
    p.add_argument("path", metavar="PATH", help="data file")
    p.add_argument("--out", metavar="OUT.csv", required=True,
                   help="output file (.csv, .tsv, .txt or .npy)")
    p.add_argument("--draw", action="store_true",
                   help="draw from the conditional distribution instead of its mean")
    p.add_argument("--random-state", type=int, default=None, help="seed of --draw")
    _add_data_options(p)
    p.set_defaults(func=cmd_impute)

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
    p.add_argument("--criterion", choices=["bic", "icl", "aic", "heldout"], default="bic",
                   help="how to rank the models (default: bic)")
    p.add_argument("--n-init", type=_positive_int, default=5,
                   help="starts per candidate (default: 5)")
    p.add_argument("--init-params", default="auto", choices=["auto"] + list(INIT_PARAMS),
                   help="starts: 'auto' (standardised k-means and splits of the "
                        "K-1 fit, the default) or a GaussianMixture init_params")
    p.add_argument("--keep-degenerate", action="store_true",
                   help="rank candidates flagged degenerate too (default: skip them)")
    p.add_argument("--bayesian", action="store_true",
                   help="one variational fit per covariance type with the largest K as "
                        "truncation level; report its effective number of components")
    p.add_argument("--weight-threshold", type=float, default=1e-3, metavar="W",
                   help="with --bayesian, a component is effective when its weight "
                        "exceeds W (default: 1e-3)")
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
    from .. import __version__

    return f"fastem {__version__}"
