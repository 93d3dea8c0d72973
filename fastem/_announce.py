"""The one-line notice of a fit that must compile kernels.

Within :func:`announcing` (a fit with ``verbose`` set, or the command line),
the kernel machinery calls :func:`announce` just before compiling a kernel
that is not in the on-disk cache, and one line goes to stderr, once per
family and dtype per process.  No Numba here: the command line imports this
without loading the compiler.
"""

import contextlib
import sys
import threading

import numpy as np

_state = threading.local()
_announced = set()
_announce_lock = threading.Lock()


@contextlib.contextmanager
def announcing(enabled=True):
    """Within this block (on this thread), a kernel that must be compiled
    (not in the cache) first prints one line on stderr when ``enabled``, and
    nothing when not.  Used by fits with ``verbose`` set and by the command
    line; ``compile`` turns it off, as it reports every kernel itself."""
    prev = getattr(_state, "on", False)
    _state.on = bool(enabled)
    try:
        yield
    finally:
        _state.on = prev


def announce(kernel_name, dtype):
    """Called by the kernel machinery just before it compiles a variant that
    is not in the cache: one line on stderr per family and dtype per process,
    when announcing."""
    if not getattr(_state, "on", False):
        return
    family = {"pass_full": "full", "logprob_full": "full", "pass_tied": "tied",
              "logprob_tied": "tied", "pass_diag": "diag",
              "logprob_diag": "diag", "pass_spherical": "spherical",
              "logprob_spherical": "spherical",
              "pass_missing": "rows with missing values (full/tied)",
              "hard_pass": "the k-means start"}.get(kernel_name, kernel_name)
    key = (family, np.dtype(dtype).name)
    with _announce_lock:
        if key in _announced:
            return
        if kernel_name == "hard_pass" and any(k[1] == key[1] for k in _announced):
            # compiled beside a family already announced for this dtype (the
            # fit's start): one line per fit is enough
            return
        _announced.add(key)
    print(f"fastem: compiling kernels for {family}/{key[1]}, once per install and CPU "
          "(a few seconds; 'fastem compile' does it ahead of time)...",
          file=sys.stderr, flush=True)
