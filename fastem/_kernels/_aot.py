"""Ahead-of-time care of the kernels: compiling in child processes, and the
one-line notice of a fit that compiles.

A kernel that is not in the on-disk cache is compiled by a child process that
writes the cache, then loaded from it (see :mod:`._passes` for why); and,
when announcing (:mod:`fastem._announce`), one line on stderr says so first.  ``fastem.compile`` (:mod:`fastem._compile`) uses
the same children, several at a time.
"""

import atexit
import os
import sys
import threading

import numpy as np

from .._announce import announce, announcing  # noqa: F401 (re-exported)
from ._machinery import CACHE

_CHILD_ENV = "FASTEM_COMPILE_CHILD"

# Children started ahead of need (start_in_child), by variant key; a later
# compile_in_child of the same variant waits for that child instead of
# starting another.
_IN_FLIGHT = {}
_IN_FLIGHT_LOCK = threading.Lock()
_AT_EXIT = []  # whether _stop_in_flight is registered
# seconds settle() waits for a finished compile's child to exit
_SETTLE_S = 2.0


def _child_code(variants):
    lines = ["import time", "import numpy as np", "from fastem import _kernels as K"]
    for i, (name, dtype, ro, tag) in enumerate(variants):
        tag_expr = "None" if tag is None else f"np.empty(0, dtype=np.{tag.dtype.name})"
        lines.append("t = time.perf_counter()")
        lines.append(f"K.{name}.variant(np.dtype({np.dtype(dtype).name!r}), {bool(ro)}, "
                     f"{tag_expr})")
        lines.append(f"print({i}, time.perf_counter() - t, flush=True)")
    return "\n".join(lines)


def variant_key(variant):
    """A hashable key of a (name, dtype, readonly, tag) variant."""
    name, dtype, ro, tag = variant
    return (name, np.dtype(dtype).char, bool(ro), None if tag is None else tag.dtype.char)


def _spawn(variants, quiet=False):
    """A child process compiling ``variants`` into the on-disk cache (it
    prints each one's index and compile time, unless ``quiet``: a child in
    the background, whose output nobody reads), or None when it cannot be
    started."""
    import subprocess

    env = dict(os.environ)
    env[_CHILD_ENV] = "1"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"]
                                if env.get("PYTHONPATH") else "")
    out = subprocess.DEVNULL if quiet else subprocess.PIPE
    try:
        return subprocess.Popen(
            [sys.executable, "-c", _child_code(variants)],
            env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out, text=True)
    except OSError:
        return None


def _can_spawn():
    return CACHE and not os.environ.get(_CHILD_ENV)


def start_in_child(variants, announce_them=True):
    """Start compiling, in one child process in the background, those of
    ``variants`` that are neither in the cache nor being compiled already
    (in that order), and return at once, announcing each family as a compile
    does (unless ``announce_them`` is False).

    For callers that know which kernels will be needed before anything asks
    for them: the command line, which then spends a second importing
    scikit-learn, and the test suite, which runs tests meanwhile.  A later
    ``compile_in_child`` of such a variant waits until the child has cached
    it rather than compiling it again.
    """
    from .. import _kernels as K

    if not _can_spawn():
        return
    with _IN_FLIGHT_LOCK:
        todo = [v for v in variants if variant_key(v) not in _IN_FLIGHT
                and not getattr(K, v[0]).loaded(*v[1:])
                and not getattr(K, v[0]).in_cache(*v[1:])]
        if not todo:
            return
        if announce_them:
            for name, dtype, _, _ in todo:
                announce(name, dtype)
        proc = _spawn(todo, quiet=True)
        if proc is None:
            return
        if not _AT_EXIT:
            atexit.register(_stop_in_flight)
            _AT_EXIT.append(True)
        for v in todo:
            _IN_FLIGHT[variant_key(v)] = proc


def _wait_in_flight(variants):
    """Wait until the background children compiling any of ``variants``
    have cached them; returns the variants that none was compiling, or whose
    child ended without caching them."""
    import time

    from .. import _kernels as K

    rest = []
    for v in variants:
        key = variant_key(v)
        with _IN_FLIGHT_LOCK:
            proc = _IN_FLIGHT.get(key)
        if proc is None:
            rest.append(v)
            continue
        kern = getattr(K, v[0])
        # the child writes a kernel's data before its index entry, so an
        # indexed kernel is complete; poll() also reaps a finished child
        while proc.poll() is None and not kern.in_cache(*v[1:]):
            time.sleep(0.02)
        with _IN_FLIGHT_LOCK:
            _IN_FLIGHT.pop(key, None)
            last = all(p is not proc for p in _IN_FLIGHT.values())
        if last:
            # nothing else expected from that child: it is exiting
            proc.wait()
        if not kern.in_cache(*v[1:]):
            rest.append(v)
    return rest


def settle(variant):
    """A variant found in the cache: forget the background child that was
    compiling it (a prefetch nobody had to wait for), and reap that child
    when it has nothing else in flight.  A child that does not exit within
    _SETTLE_S (it is still compiling: another process cached the variant
    first) is left to the exit handler."""
    import subprocess

    key = variant_key(variant)
    with _IN_FLIGHT_LOCK:
        proc = _IN_FLIGHT.pop(key, None)
        last = proc is not None and all(p is not proc for p in _IN_FLIGHT.values())
    if not last:
        return
    try:
        # it wrote its last index entry: it is exiting
        proc.wait(timeout=_SETTLE_S)
    except subprocess.TimeoutExpired:
        with _IN_FLIGHT_LOCK:
            _IN_FLIGHT.setdefault(key, proc)


def _stop_in_flight():
    """At exit: a background compile nobody waited for (the fit failed
    first) is stopped, not left running on its own."""
    with _IN_FLIGHT_LOCK:
        procs = {id(p): p for p in _IN_FLIGHT.values()}
        _IN_FLIGHT.clear()
    for p in procs.values():
        if p.poll() is None:
            p.kill()
        p.wait()


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
    process.  ``jobs`` children run at once.  A variant that a child started
    by :func:`start_in_child` is compiling is waited for, not compiled again.
    """
    from .. import _kernels as K

    if not _can_spawn() or not variants:
        return False
    index = {variant_key(v): i for i, v in enumerate(variants)}
    todo = _wait_in_flight(list(variants))
    if todo:
        n_groups = max(1, min(jobs, len(todo)))
        groups = [todo[i::n_groups] for i in range(n_groups)]
        procs = []
        try:
            for group in groups:
                p = _spawn(group)
                if p is None:
                    return False
                procs.append(p)
            for group, p in zip(groups, procs):
                out, _ = p.communicate()
                for line in out.splitlines():
                    parts = line.split()
                    if timings is not None and len(parts) == 2 and parts[0].isdigit():
                        timings[index[variant_key(group[int(parts[0])])]] = float(parts[1])
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
    return all(getattr(K, name).in_cache(dtype, ro, tag) for name, dtype, ro, tag in variants)
