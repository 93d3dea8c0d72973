"""Compiling the Numba kernels ahead of time, and saying so when a fit must.

fastem's kernels are compiled by Numba the first time data of their kind
(covariance family, dtype, feature class) arrive, and cached on disk, so
that later processes load them in milliseconds.  This module:

- :func:`compile` (``fastem.compile``, the ``fastem compile`` command) warms
  that cache ahead of time, kernel by kernel, with the time each took: in a
  Dockerfile (``RUN fastem compile``), on Dask workers
  (``client.run(fastem.compile)``), or after an install;
- :func:`status` tells where the cache is and which kernels are in it,
  without compiling anything;
- the announcements of a fit that compiles (``verbose`` set, or the command
  line: one line on stderr) and the compilation in child processes live
  with the kernels (:mod:`fastem._kernels._aot`).

Where the cache lives is Numba's rule: ``NUMBA_CACHE_DIR`` when set; else a
``__pycache__`` folder next to ``fastem/_kernels.py`` when that folder is
writable; else the user's cache directory (``~/.cache/numba`` on Linux), so
that system-wide and read-only installs work too.  Entries are keyed by the
CPU (name and features) and the kernel's source: a new CPU or a new fastem
version compiles afresh.

Nothing here imports Numba until a function is called.
"""

import os
import sys
import time

import numpy as np

from ._announce import announcing
from ._constants import COVARIANCE_TYPES, DTYPES
from ._estep import PASS_KERNEL

__all__ = ["compile", "status", "cache_dir"]

# kernel families by covariance type: (E-step + statistics, E-step only); the
# fits' own table of the first (_estep.PASS_KERNEL) is the one source
_FAMILY = {ct: (PASS_KERNEL[ct], "logprob_" + ct) for ct in COVARIANCE_TYPES}
# covariance types whose rows with missing values (NaN) have a kernel of their
# own (pass_missing, float64 only, compiled only when such rows arrive)
_MISSING_TYPES = ("full", "tied")



def _check_choice(values, allowed, what):
    if isinstance(values, str):
        values = (values,)
    values = tuple(values)
    bad = [v for v in values if v not in allowed]
    if bad or not values:
        raise ValueError(f"{what} must be among {', '.join(allowed)}; got {values!r}")
    return values


def _plan(covariance_types, dtypes, n_features):
    """The (kernel name, dtype, readonly, tag) variants a set of fits uses,
    in compile order, without duplicates."""
    from . import _kernels as K

    cts = _check_choice(covariance_types, COVARIANCE_TYPES, "covariance_types")
    dts = _check_choice(dtypes, DTYPES, "dtypes")
    if n_features is not None:
        if isinstance(n_features, bool) or int(n_features) != n_features or n_features < 1:
            raise ValueError(f"n_features must be a positive integer, got {n_features!r}")
    names = []
    for ct in cts:
        for name in _FAMILY[ct]:
            if name not in names:
                names.append(name)
    plan = []
    for dt in dts:
        for name in names:
            kern = getattr(K, name)
            for dtype, ro, tag in kern.variants((np.dtype(dt),)):
                if tag is not None and n_features is not None and \
                        tag.dtype != K.class_tag(int(n_features)).dtype:
                    continue
                plan.append((name, dtype, ro, tag))
    # the hard-assignment pass that ends the default ('kmeans') start of every
    # covariance type
    for dt in dts:
        for dtype, ro, tag in K.hard_pass.variants((np.dtype(dt),)):
            plan.append(("hard_pass", dtype, ro, tag))
    if any(ct in _MISSING_TYPES for ct in cts):
        # fits with missing values (missing='marginalize'): the kernel for
        # rows with NaN, full and tied, computes in float64 whatever the
        # data's dtype, so it has one variant
        kern = K.pass_missing
        for dtype, ro, tag in kern.variants():
            plan.append(("pass_missing", dtype, ro, tag))
    return plan


def _label(name, dtype, ro, tag):
    from . import _kernels as K

    parts = [name, dtype.name]
    if tag is not None:
        parts.append(K.class_name(tag))
    if ro:
        parts.append("read-only")
    return "/".join(parts)


def compile(covariance_types=COVARIANCE_TYPES, dtypes=DTYPES, n_features=None,
            progress=True, file=None):
    """Compile (or load from the on-disk cache) the kernels fits will use.

    Parameters
    ----------
    covariance_types : str or sequence of str, default: all four
    dtypes : str or sequence of {'float64', 'float32'}, default: both
    n_features : int, optional
        Only the kernels for this number of features (full covariances have
        separate code for 1-2, 3-5 and 6 or more features); default: all.
    progress : bool, default=True
        A line per kernel on ``file`` (a tqdm bar too when tqdm is
        installed).
    file : text stream, default: sys.stderr

    Returns
    -------
    list of dict
        One record per kernel variant: ``kernel``, ``seconds`` and
        ``cached`` (True when it was already in the cache, so only loaded).

    Examples
    --------
    In a Dockerfile, after ``pip install fastem``: ``RUN fastem compile``.
    On every Dask worker: ``client.run(fastem.compile, progress=False)``.
    """
    plan = _plan(covariance_types, dtypes, n_features)
    out = sys.stderr if file is None else file
    from . import _kernels as K

    bar = None
    if progress and getattr(out, "isatty", lambda: False)():
        try:
            from tqdm import tqdm

            bar = tqdm(total=len(plan), desc="fastem compile", unit="kernel", file=out,
                       leave=False)
        except ImportError:
            bar = None
    records = []
    # kernels not in the cache are compiled by child processes, several at a
    # time (they write the cache; this process then loads them)
    t_start = time.perf_counter()
    missing = [v for v in plan if not getattr(K, v[0]).in_cache(*v[1:])]
    jobs = max(1, min(len(missing), os.cpu_count() or 1))
    t_children = time.perf_counter()
    child_times = {}
    K.compile_in_child(missing, jobs=jobs, timings=child_times)
    t_children = time.perf_counter() - t_children
    compiled_in = {K.variant_key(v): child_times.get(i) for i, v in enumerate(missing)}
    # compile() reports each kernel itself: no "compiling..." announcements
    try:
        with announcing(False):
            for name, dtype, ro, tag in plan:
                kern = getattr(K, name)
                key = K.variant_key((name, dtype, ro, tag))
                cached = key not in compiled_in
                t0 = time.perf_counter()
                kern.variant(dtype, ro, tag)
                dt = time.perf_counter() - t0
                if not cached and compiled_in[key] is not None:
                    # compiled by a child: its compile time (this process
                    # only loaded the result)
                    dt = compiled_in[key]
                rec = {"kernel": _label(name, dtype, ro, tag), "seconds": dt,
                       "cached": cached}
                records.append(rec)
                if progress:
                    how = "loaded from cache" if cached else "compiled"
                    msg = f"  {rec['kernel']:<40s} {how} in {dt:6.2f} s"
                    if bar is not None:
                        bar.update(1)
                        bar.write(msg, file=out)
                    else:
                        print(msg, file=out, flush=True)
    finally:
        if bar is not None:
            bar.close()
    if progress:
        total = time.perf_counter() - t_start
        n_new = sum(not r["cached"] for r in records)
        print(f"fastem compile: {len(records)} kernels ({n_new} compiled, by {jobs} "
              f"processes at once; {len(records) - n_new} already cached) in {total:.1f} s "
              f"wall; cache: {cache_dir()}", file=out, flush=True)
    return records


def prefetch(covariance_type, dtype, n_features):
    """Start compiling, in the background, the E-step kernel a fit of this
    covariance type, dtype and number of features will ask for, unless it is
    cached; returns at once.

    The command line calls this as soon as it knows the data's shape, so that
    the compile overlaps its other start-up work (importing scikit-learn); the
    fit then waits for that compile instead of starting its own.  Invalid
    arguments do nothing: the fit reports them.
    """
    try:
        plan = _plan((covariance_type,), (np.dtype(dtype).name,), n_features)
    except (ValueError, TypeError):
        return
    from . import _kernels as K

    first = _FAMILY[covariance_type][0]
    K.start_in_child([v for v in plan if v[0] == first])


def cache_dir():
    """The folder where the kernels' compiled code is cached (Numba's rule:
    NUMBA_CACHE_DIR, else next to the sources when writable, else the user's
    cache directory)."""
    from . import _kernels as K

    return K.pass_full.cache_dir()


def status(covariance_types=COVARIANCE_TYPES, dtypes=DTYPES, n_features=None):
    """Where the cache is and which kernel variants it holds for this CPU.

    Compiles nothing.  Returns a dict with ``cache_dir``, ``cpu`` (the name
    Numba compiles for) and ``kernels``: a list of ``(label, cached)``.
    """
    from . import _kernels as K

    plan = _plan(covariance_types, dtypes, n_features)
    return {
        "cache_dir": cache_dir(),
        "cache_enabled": K.CACHE,
        "cpu": K.target_cpu(),
        "kernels": [(_label(*v), getattr(K, v[0]).in_cache(*v[1:])) for v in plan],
    }
