"""Ahead-of-time care of the kernels: compiling in child processes, and the
one-line notice of a fit that compiles.

A kernel that is not in the on-disk cache is compiled by a child process that
writes the cache, then loaded from it (see :mod:`._passes` for why); and,
when announcing (:mod:`fastem._announce`), one line on stderr says so first.  ``fastem.compile`` (:mod:`fastem._compile`) uses
the same children, several at a time.
"""

import sys

import numpy as np

from .._announce import announce, announcing  # noqa: F401 (re-exported)
from ._machinery import CACHE



_CHILD_ENV = "FASTEM_COMPILE_CHILD"


def _child_code(variants):
    lines = ["import time", "import numpy as np", "from fastem import _kernels as K"]
    for i, (name, dtype, ro, tag) in enumerate(variants):
        tag_expr = "None" if tag is None else f"np.empty(0, dtype=np.{tag.dtype.name})"
        lines.append("t = time.perf_counter()")
        lines.append(f"K.{name}.variant(np.dtype({np.dtype(dtype).name!r}), {bool(ro)}, "
                     f"{tag_expr})")
        lines.append(f"print({i}, time.perf_counter() - t, flush=True)")
    return "\n".join(lines)


def compile_in_child(variants, jobs=1, timings=None):
    """Compile kernel variants ``(name, dtype, readonly, tag)`` in child
    processes that write them to the on-disk cache; returns True when every
    variant is in the cache afterwards.  ``timings`` (a dict), when given,
    receives each variant's compile time in seconds, keyed by its index in
    ``variants``.

    A process that compiles a kernel runs the freshly linked code, which can
    differ in the last bits from the cached machine code that every later
    process loads (see :mod:`fastem._kernels`); compiling in a child and
    loading from the cache makes the first process run exactly what later
    ones run.  Nothing happens (False) when the cache is disabled, inside a
    child already, or when the children fail: the caller then compiles in
    process.  ``jobs`` children run at once.
    """
    import os
    import subprocess

    from .. import _kernels as K

    if not CACHE or os.environ.get(_CHILD_ENV) or not variants:
        return False
    env = dict(os.environ)
    env[_CHILD_ENV] = "1"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"]
                                if env.get("PYTHONPATH") else "")
    n_groups = max(1, min(jobs, len(variants)))
    groups = [list(range(i, len(variants), n_groups)) for i in range(n_groups)]
    procs = []
    try:
        for group in groups:
            procs.append(subprocess.Popen(
                [sys.executable, "-c", _child_code([variants[i] for i in group])],
                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True))
        for group, p in zip(groups, procs):
            out, _ = p.communicate()
            for line in out.splitlines():
                parts = line.split()
                if timings is not None and len(parts) == 2 and parts[0].isdigit():
                    timings[group[int(parts[0])]] = float(parts[1])
    except OSError:
        return False
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return all(getattr(K, name).in_cache(dtype, ro, tag) for name, dtype, ro, tag in variants)
