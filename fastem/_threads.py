"""Thread policy: Numba threads per estimator call, one BLAS thread while
the kernels run, and the calling thread alone for one task's worth of rows.

Numba's thread count is per calling thread; the BLAS limit is process-wide
and shared by concurrent callers (taken by the first, given back by the
last), so overlapping calls from several threads cannot leave it changed.
"""

import contextlib
import os
import sys
import threading

#: The OpenMP wait policy fastem sets when nobody chose one (see
#: :func:`default_wait_policy`).
WAIT_POLICY = "passive"
#: The environment variables that, when set, mean the user chose how OpenMP
#: threads wait; fastem then leaves the environment alone.
WAIT_POLICY_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def default_wait_policy(environ=None):
    """Make Numba's OpenMP threads sleep instead of spinning while they wait.

    Called by ``import fastem``.  Sets ``OMP_WAIT_POLICY=passive`` in
    ``environ`` (default ``os.environ``) unless ``OMP_WAIT_POLICY`` or
    ``GOMP_SPINCOUNT`` is already set, or Numba's threading layer has already
    started (libgomp reads the variable once, when it is loaded, which Numba
    does at its first parallel kernel).  Returns the policy set, or None.

    Why: with the default (spinning) policy, a thread that finishes its part
    of a kernel busy-waits for the others; on a machine where another process
    competes for the cores, the spinning threads take the CPU from the thread
    that still has work: on a shared 2-core machine a fit ran about 4x slower
    than with sleeping threads, and 2.2x slower again with one more busy
    process (sleeping: 1.1x; docs/benchmarks.md, "Throughput under
    contention").  Results do not depend on the policy or the threading
    layer (fixed blocks, merged in order).
    """
    environ = os.environ if environ is None else environ
    if any(k in environ for k in WAIT_POLICY_VARS):
        return None
    parallel = sys.modules.get("numba.np.ufunc.parallel")
    if parallel is not None and getattr(parallel, "_is_initialized", False):
        return None
    environ["OMP_WAIT_POLICY"] = WAIT_POLICY
    return WAIT_POLICY


@contextlib.contextmanager
def thread_limits(n_jobs):
    """Run Numba kernels with ``n_jobs`` threads and BLAS with one thread.

    ``n_jobs=None`` keeps Numba's current setting; negative values count from
    the number of available threads (-1: all).  The previous settings are
    restored on exit.

    Numba's thread count is per calling thread, so concurrent fits and
    predictions in several threads each get their own.  The BLAS limit is
    process-wide: it is taken by the first caller and given back by the last
    one (a count under a lock), so that overlapping calls from several
    threads can never leave BLAS limited after they all return.
    """
    import numba

    previous = numba.get_num_threads()
    n = resolve_n_jobs(n_jobs)
    _blas_enter()
    try:
        numba.set_num_threads(n if n is not None else previous)
        yield
    finally:
        numba.set_num_threads(previous)
        _blas_exit()


_BLAS_LOCK = threading.Lock()
_BLAS_STATE = {"users": 0, "limiter": None}


def _blas_enter():
    with _BLAS_LOCK:
        if _BLAS_STATE["users"] == 0:
            _BLAS_STATE["limiter"] = _blas_controller().limit(limits=1, user_api="blas")
        _BLAS_STATE["users"] += 1


def blas_limited():
    """Whether BLAS runs on one thread now because a fit holds the limit (see
    :func:`thread_limits`): a BLAS call then starts no threads that would
    spin afterwards."""
    return _BLAS_STATE["users"] > 0


def _blas_exit():
    with _BLAS_LOCK:
        _BLAS_STATE["users"] -= 1
        if _BLAS_STATE["users"] == 0:
            limiter, _BLAS_STATE["limiter"] = _BLAS_STATE["limiter"], None
            limiter.restore_original_limits()


_CONTROLLER = []
_CONTROLLER_LOCK = threading.Lock()


@contextlib.contextmanager
def serial_if(condition):
    """Run a kernel on the calling thread only, when there is one task's worth
    of rows: waking idle threads would cost more than the work (and much more
    on a busy machine).  Results do not depend on the thread count."""
    if not condition:
        yield
        return
    import numba

    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


def _blas_controller():
    """One threadpoolctl controller per process: scanning the loaded
    libraries costs milliseconds, too much for every mini-batch."""
    with _CONTROLLER_LOCK:
        if not _CONTROLLER:
            from threadpoolctl import ThreadpoolController

            _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0]


def resolve_n_jobs(n_jobs):
    import numba

    if n_jobs is None:
        return None
    top = numba.config.NUMBA_NUM_THREADS
    if n_jobs < 0:
        n = top + 1 + n_jobs
    else:
        n = n_jobs
    return max(1, min(int(n), top))
