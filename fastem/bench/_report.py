"""Benchmark results as aligned tables and as JSON."""

import math

import numpy as np

from ._workloads import LIBRARIES


def _fmt(v, spec):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return format(v, spec)


def _table(header, rows):
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def format_header(machine, matmul=None, roofline=None):
    """One line of machine facts (plus a line of the measured roofline rates
    when given, and a line of versions)."""
    blas = ", ".join(dict.fromkeys(
        f"{b['internal_api']} {b.get('version') or ''} kernel "
        f"{b.get('architecture') or 'unknown'} ({b['num_threads']} threads)"
        .replace("  ", " ") for b in machine.get("blas", []))) or "unknown BLAS"
    if machine.get("blas_env_unset"):
        blas += " [unset: " + ", ".join(
            f"{k}={v}" for k, v in machine["blas_env_unset"].items()) + "]"
    isa = machine.get("isa")
    if isa:
        isa = (f"ISA {isa} (Numba target {machine.get('numba_target_cpu')}"
               + (", NUMBA_CPU_FEATURES set" if machine.get("isa_features_overridden")
                  else "") + ")")
    layer = machine.get("numba_threading_layer") or "layer not yet chosen"
    parts = [f"machine: {machine['cpu']}, {machine['cpus_available']} CPUs",
             isa or "ISA unknown",
             f"numba {machine['numba_threads']} threads ({layer})",
             f"BLAS {blas}"]
    if matmul:
        parts.append("numpy matmul " + ", ".join(
            f"{k} {v:.1f} GFLOP/s" for k, v in matmul.items()))
    if roofline:
        fma = "; ".join(
            f"{k} {2 * v['1'] / 1e9:.1f} GFLOP/s per core, {2 * v['all'] / 1e9:.1f} on "
            f"{roofline['threads']}" for k, v in roofline["fma_per_s"].items())
        versions = (f"roofline (measured): FMA {fma}; exp "
                    f"{roofline['exp_per_s'] / 1e9:.2f} G/s; read "
                    f"{roofline['read_bytes_per_s'] / 1e9:.1f} GB/s\n")
    else:
        versions = ""
    versions += (f"versions: fastem {machine['fastem']}, numpy {machine['numpy']}, "
                 f"numba {machine['numba']}, scikit-learn {machine['sklearn']}, "
                 f"python {machine['python']}")
    return "; ".join(parts) + "\n" + versions


def format_table(results):
    """A monospace, aligned table of benchmark results.

    ``results`` is a list of dicts from :func:`run_workload`,
    :func:`run_end_to_end` or :func:`run_compile`, or a whole report (the
    dict written by ``--json``), whose header line is then included.
    """
    head = ""
    if isinstance(results, dict):
        head = format_header(results["machine"], results.get("matmul_gflops"),
                             results.get("roofline")) + "\n"
        if results.get("method"):
            head += f"method: {results['method']}\n"
        head += "\n"
        results = results["results"]
    results = list(results)
    if not results:
        return head + "(no results)"
    if "cold" in results[0]:
        return head + _compile_table(results)
    if "total_s" in next(iter(results[0].get(lib) for lib in LIBRARIES
                              if lib in results[0])):
        return head + _end_to_end_table(results)
    return head + _iteration_table(results)


def _shape(r):
    return f"{r['n_samples']:,}x{r['n_features']}"


def _iteration_table(results):
    has_sk = any("sklearn" in r for r in results)
    has_mem = any("peak_mem_bytes" in r["fastem"] for r in results)
    has_roof = any("roofline" in r for r in results)
    thread_keys = []
    for r in results:
        for t in r["fastem"].get("ms_per_iter_by_threads", {}):
            if t not in thread_keys:
                thread_keys.append(t)
    header = ["wl", "dtype", "n x d", "K", "cov", "fastem ms/it"]
    if has_sk:
        header += ["sklearn ms/it", "speed-up"]
    header += ["GFLOP/s", "% matmul"]
    if has_roof:
        header += ["floor ms", "bound", "% floor"]
    header += [f"ms/it {t}T" for t in thread_keys]
    if len(thread_keys) > 1:
        header.append(f"{thread_keys[-1]}T/{thread_keys[0]}T")
    if has_mem:
        header += ["fastem mem/X"] + (["sklearn mem/X"] if has_sk else [])
    if has_sk:
        header += ["loglik (fastem)", "rel.diff"]
    rows = []
    for r in results:
        fe, sk = r["fastem"], r.get("sklearn")
        vb = "-VB" if r.get("estimator") == "bayesian" else ""
        row = [r["workload"] + vb, r["dtype"], _shape(r), str(r["n_components"]),
               r["covariance_type"], _fmt(fe["ms_per_iter"], ".2f")]
        if has_sk:
            row += [_fmt(sk and sk["ms_per_iter"], ".2f"), _fmt(r.get("speedup"), ".1f")]
        row += [_fmt(fe.get("gflops"), ".2f"), _fmt(fe.get("pct_of_matmul"), ".1f")]
        if has_roof:
            roof = r.get("roofline") or {}
            row += [_fmt(roof.get("floor_s", math.nan) * 1e3, ".2f"), roof.get("bound", "-"),
                    _fmt(fe.get("pct_of_floor"), ".1f")]
        by = fe.get("ms_per_iter_by_threads", {})
        row += [_fmt(by.get(t), ".2f") for t in thread_keys]
        if len(thread_keys) > 1:
            row.append(_fmt(fe.get("thread_speedup"), ".2f"))
        if has_mem:
            row.append(_fmt(fe.get("peak_mem_ratio"), ".2f"))
            if has_sk:
                row.append(_fmt(sk and sk.get("peak_mem_ratio"), ".2f"))
        if has_sk:
            row += [_fmt(r.get("loglik_fastem"), ".6g"), _fmt(r.get("loglik_rel_diff"), ".1e")]
        rows.append(row)
    notes = ("\nms/it: wall-clock ms per EM iteration, (t(1+m) - t(1)) / m, median of "
             "repeats; speed-up = sklearn / fastem; GFLOP/s from the useful-flop model "
             "(fastem.bench.em_flops); floor ms: the roofline floor from the FMA, exp and byte "
             "counts (fastem.bench.roofline_counts) at the measured rates, % floor = floor / "
             "fastem ms/it (both count the dense work: full fits leave rows whose "
             "responsibility is exactly zero out of the second moments, so on well "
             "separated data they do less, and % floor can pass 100); mem/X: peak RSS growth of one fit / X.nbytes; "
             "rel.diff: |loglik_fastem - loglik_sklearn| / |loglik_sklearn| after the "
             "same number of iterations.")
    return _table(header, rows) + notes


def _end_to_end_table(results):
    has_sk = any("sklearn" in r for r in results)
    header = ["wl", "dtype", "n x d", "K", "cov", "fastem s", "iters", "loglik"]
    if has_sk:
        header += ["sklearn s", "iters", "loglik", "speed-up"]
    rows = []
    for r in results:
        fe, sk = r["fastem"], r.get("sklearn")
        vb = "-VB" if r.get("estimator") == "bayesian" else ""
        row = [r["workload"] + vb, r["dtype"], _shape(r), str(r["n_components"]),
               r["covariance_type"], _fmt(fe["total_s"], ".3f"), str(fe["n_iter"]),
               _fmt(fe["lower_bound"], ".6g")]
        if has_sk:
            row += [_fmt(sk["total_s"], ".3f"), str(sk["n_iter"]),
                    _fmt(sk["lower_bound"], ".6g"), _fmt(r.get("speedup"), ".1f")]
        rows.append(row)
    notes = ("\nend-to-end: total fit time (default init, EM until tol), median of "
             "repeats; the two libraries initialise differently, so iteration counts "
             "and log-likelihoods may differ.")
    return _table(header, rows) + notes


def _compile_table(results):
    header = ["cov", "dtype", "import ms", "estimators ms", "cold 1st fit s", "warm 1st fit s",
              "steady fit ms", "cold process s", "warm process s", "cache files"]
    rows = []
    for r in results:
        c, w = r["cold"], r["warm"]
        rows.append([r["covariance_type"], r["dtype"], _fmt(1e3 * w["import_s"], ".0f"),
                     _fmt(1e3 * w.get("estimator_import_s", math.nan), ".0f"),
                     _fmt(c["first_fit_s"], ".2f"), _fmt(w["first_fit_s"], ".2f"),
                     _fmt(1e3 * w["steady_fit_s"], ".1f"), _fmt(c["process_s"], ".2f"),
                     _fmt(w["process_s"], ".2f"), str(r.get("cache_files", "-"))])
    notes = ("\nfresh subprocesses with an initially empty NUMBA_CACHE_DIR; 1st fit: "
             "latency of the first default fit of 2,000 rows (compilation or cache "
             "loading included); import ms: `import fastem`; estimators ms: then `from fastem "
             "import GaussianMixture` (imports scikit-learn, whose estimators it "
             "subclasses); both from the warm-cache process.")
    return _table(header, rows) + notes


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    return obj
