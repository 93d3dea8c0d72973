"""The command line of fastem.bench (``fastem bench``): options, and running the modes."""

import argparse
import json
import math
import os
import subprocess
import sys
import textwrap
import time

from .._argtypes import _positive_int
from . import _machine
from ._iteration import METHOD, run_workload
from ._machine import machine_info, measure_matmul_gflops, native_blas_env
from ._missing import format_missing_table, run_missing
from ._modes import run_compile, run_end_to_end
from ._report import _jsonable, format_header, format_table
from ._roofline import measure_machine
from ._workloads import LIBRARIES, WORKLOADS, _progress

SCHEMA = "fastem-bench/1"


def _list_of(kind, allowed=None):
    def parse(text):
        items = [p.strip() for p in text.split(",") if p.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
        out = []
        for p in items:
            if kind is int:
                try:
                    v = int(p)
                except ValueError:
                    raise argparse.ArgumentTypeError(
                        f"expected positive integers, got {p!r}") from None
                if v < 1:
                    raise argparse.ArgumentTypeError(f"expected positive integers, got {p!r}")
                out.append(v)
            else:
                p = p.upper()
                if allowed and p not in allowed:
                    raise argparse.ArgumentTypeError(
                        f"unknown workload {p!r}; choose from {','.join(allowed)}")
                out.append(p)
        return out
    return parse


def _iters(text):
    return "auto" if text == "auto" else _positive_int(text)


def _positive_float(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (v > 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return v


def build_parser():
    p = argparse.ArgumentParser(
        prog="fastem bench",
        description="Benchmark fastem against scikit-learn on generated Gaussian blobs.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=textwrap.dedent("""\
            workloads (n_samples x n_features, K, covariance type; --scale multiplies n):
              S 1,000,000x2 K=8 full     M 1,000,000x16 K=16 full   L 200,000x64 K=32 full
              D 1,000,000x16 K=16 diag   T 1,000,000x16 K=16 tied   P 1,000,000x16 K=16 spherical

            ms per EM iteration = median over repeats of (t(max_iter=1+m) - t(max_iter=1)) / m,
            wall clock, tol=0, identical explicit initial parameters, JIT warmed first.

            examples:
              fastem bench --workloads S --scale 0.1
              fastem bench --dtype both --threads 1,2 --json out.json
              fastem bench --end-to-end --workloads S,D --scale 0.1
              fastem bench --compile --workloads S
            """))
    p.add_argument("--workloads", type=_list_of(str, tuple(WORKLOADS)),
                   default=list(WORKLOADS), help="comma-separated tags (default: S,M,L,D,T,P)")
    p.add_argument("--scale", type=_positive_float, default=1.0,
                   help="multiply every workload's n_samples (default: 1)")
    p.add_argument("--dtype", choices=["float64", "float32", "both"], default="float64")
    p.add_argument("--repeats", type=_positive_int, default=3,
                   help="repeats; medians are reported (default: 3)")
    p.add_argument("--sklearn-iters", type=_positive_int, default=2, metavar="M",
                   help="scikit-learn is timed with max_iter=1 and 1+M (default: 2)")
    p.add_argument("--fastem-iters", type=_iters, default="auto", metavar="M",
                   help="fastem is timed with max_iter=1 and 1+M (default: auto, "
                        "about 0.2 s of differenced time, at least --sklearn-iters)")
    p.add_argument("--no-sklearn", action="store_true", help="time fastem only")
    p.add_argument("--threads", type=_list_of(int), default=None, metavar="N1,N2",
                   help="time fastem with each thread count (n_jobs); the headline "
                        "numbers use the last, and the last-vs-first speed-up is reported")
    p.add_argument("--sklearn-blas-threads", type=_positive_int, default=None, metavar="N",
                   help="limit scikit-learn's BLAS threads (default: the BLAS default)")
    p.add_argument("--no-memory", action="store_true",
                   help="skip the peak-memory subprocesses")
    p.add_argument("--estimator", choices=["gmm", "bayesian", "both"], default="gmm",
                   help="time GaussianMixture (gmm), BayesianGaussianMixture (bayesian: both "
                        "libraries continue from the same posterior), or both side by side")
    p.add_argument("--no-roofline", action="store_true",
                   help="skip the FMA/exp/bandwidth microbenchmarks and the floor columns")
    p.add_argument("--json", metavar="PATH", default=None, help="also write the results here")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--end-to-end", action="store_true",
                      help="default init + EM to tol=1e-3 for both libraries; total times")
    mode.add_argument("--compile", action="store_true",
                      help="import time and first-fit latency, cold and warm Numba cache, "
                           "in fresh subprocesses")
    mode.add_argument("--missing", action="store_true",
                      help="per-iteration time with missing values: complete data, the "
                           "option on without NaN, and 10%% of rows missing 1-4 features "
                           "(fastem only)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    return p


def _rerun_with_native_blas(argv):
    """Run the bench again in a subprocess without OPENBLAS_CORETYPE and
    OPENBLAS_L2_SIZE (OpenBLAS reads them when numpy loads it, so they cannot
    be unset in this process); None when neither is set."""
    mark = os.environ.pop(_machine._REEXEC_MARK, None)
    if mark is not None:
        _machine._BLAS_ENV_UNSET.update(json.loads(mark))
        return None
    env, unset = native_blas_env()
    if not unset:
        return None
    print("fastem bench: running without " + ", ".join(f"{k}={v}" for k, v in unset.items())
          + " (they pin OpenBLAS to an older kernel; unset for this command only)",
          file=sys.stderr, flush=True)
    env[_machine._REEXEC_MARK] = json.dumps(unset)
    return subprocess.run([sys.executable, "-m", "fastem.bench", *argv], env=env,
                          check=False).returncode


def main(argv=None):
    """Entry point of ``fastem bench``; returns the exit status.

    When OPENBLAS_CORETYPE or OPENBLAS_L2_SIZE is set, the bench runs in a
    subprocess without them, so that scikit-learn (and the matmul rate) use
    the BLAS kernel native to the CPU; the header names the values unset.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    rc = _rerun_with_native_blas(argv)
    if rc is not None:
        return rc
    args = build_parser().parse_args(argv)
    verbose = not args.quiet
    dtypes = ["float64", "float32"] if args.dtype == "both" else [args.dtype]
    libraries = ("fastem",) if args.no_sklearn else LIBRARIES
    machine = machine_info()
    report = {"schema": SCHEMA, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "machine": machine, "options": {k: v for k, v in vars(args).items()},
              "results": []}
    results = report["results"]
    if args.compile:
        report["mode"] = "compile"
        report["method"] = ("fresh subprocesses, initially empty NUMBA_CACHE_DIR "
                            "(cold), then the same cache directory again (warm)")
        seen = []
        for tag in args.workloads:
            _, d, K, ct = WORKLOADS[tag]
            for dt in dtypes:
                if (ct, dt) not in seen:
                    seen.append((ct, dt))
                    results.append(run_compile(ct, dt, d, K, verbose))
    elif args.missing:
        report["mode"] = "missing"
        report["method"] = ("per-iteration time (differenced fits from the same explicit "
                            "initial parameters, tol=0), the three variants interleaved; "
                            "median over repeats")
        for tag in args.workloads:
            for dt in dtypes:
                results.append(run_missing(tag, args.scale, dt, args.repeats,
                                           n_jobs=None, verbose=verbose))
        print(format_header(machine) + "\n" + report["method"] + "\n")
        print(format_missing_table(results))
        _write_json(args.json, report)
        return 0
    elif args.end_to_end:
        report["mode"] = "end-to-end"
        report["method"] = ("total fit time, default initialisation (random_state=0), "
                            "EM until tol=1e-3; median over repeats")
        for tag in args.workloads:
            for dt in dtypes:
                results.append(run_end_to_end(tag, args.scale, dt, args.repeats, libraries,
                                              verbose=verbose))
    else:
        report["mode"] = "iteration"
        report["method"] = METHOD
        # the roofline first: OpenBLAS's threads keep spinning for a while after
        # a product, and measured right after the matmul the exp rate read
        # 0.75-0.92 G/s instead of 1.33-1.36 (Zen 3, two threads), moving every
        # floor that counts exponentials
        if not args.no_roofline:
            _progress("measuring the roofline: FMA rate (1 and all threads), exp rate, "
                      "read bandwidth", verbose)
            report["roofline"] = measure_machine(dtypes)
        _progress("measuring numpy matmul GFLOP/s", verbose)
        report["matmul_gflops"] = {dt: measure_matmul_gflops(dt) for dt in dtypes}
        estimators = ["gmm", "bayesian"] if args.estimator == "both" else [args.estimator]
        for tag in args.workloads:
            for dt in dtypes:
                for est in estimators:
                    results.append(run_workload(
                        tag, args.scale, dt, args.repeats, libraries,
                        sklearn_iters=args.sklearn_iters, fastem_iters=args.fastem_iters,
                        threads=args.threads, memory=not args.no_memory,
                        matmul_gflops=report["matmul_gflops"][dt],
                        sklearn_blas_threads=args.sklearn_blas_threads, verbose=verbose,
                        estimator=est, roofline=report.get("roofline")))
    # the threading layer is only known once a parallel kernel has run
    machine.update({k: v for k, v in machine_info().items()
                    if k == "numba_threading_layer"})
    print(format_table(report))
    _write_json(args.json, report)
    return 0


def _write_json(path, report):
    """The report as JSON at ``path`` (nothing when None)."""
    if path:
        with open(path, "w") as f:
            json.dump(_jsonable(report), f, indent=2)
            f.write("\n")
