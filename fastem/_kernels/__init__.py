"""Numba kernels: every ``@njit`` function of fastem, and the machinery that
compiles, caches and checks them.

Note for editors: block helpers are plain ``@njit`` functions, compiled once
per argument types with their own flags (every helper carries the same
``FASTMATH`` and ``error_model``, so its code does not depend on which kernel
needed it first).  Only tiny scalar helpers (exp, log) are inlined at the IR
level, so that the loops calling them vectorise.  Kernel outputs are named
``out_*``.  A kernel that is not in the on-disk cache is compiled in a child
process and loaded from the cache (:meth:`_Kernel.variant`): see the comment
above the E-step kernels for why.

All kernels take validated, C-contiguous float32 or float64 arrays (read-only
arrays, such as memmap chunks, have signatures of their own).  Rows are split
into tasks of ``task_rows`` rows (a multiple of ``block``) chosen by the
caller from the model's shape only, never from the thread count; ``prange``
runs over tasks, each task keeps its own partial statistics, and the partials
are added serially, in task order, to accumulators owned by the caller.
Results are therefore bitwise identical for any number of threads, and a pass
over chunks whose sizes are multiples of ``task_rows`` adds exactly the same
numbers in the same order as one call on all rows.

Inside a task, rows are processed in blocks of ``block`` rows that are first
transposed to a (n_features, block) layout, so that the innermost loops run
over contiguous points and vectorise.

Statistics are accumulated in float64 around a reference point: the current
mean of each component (and, for the tied covariance, one common reference),
so that data far from the origin loses no precision.

Set the environment variable ``FASTEM_NUMBA_CACHE=0`` to disable the on-disk
compilation cache.

The package: :mod:`._machinery` (the kernel decorator, compile and cache,
argument checks), :mod:`._classes` (feature classes and their tags),
:mod:`._math` (vectorisable exp and log), :mod:`._blocks` (E-step block
helpers), :mod:`._moments` (statistics block helpers), :mod:`._passes`
(the parallel kernels), :mod:`._incomplete` (rows with missing entries),
:mod:`._hard` (the hard-assignment pass of the k-means start),
:mod:`._fileread` (the E-step kernels' reads from a file).
"""

# before anything is compiled: saves to Numba's cache from several processes
# at once must not give two variants one data file (see _cache_lock)
from ._cache_lock import install as _install_cache_lock

_install_cache_lock()

from ._aot import compile_in_child, start_in_child, variant_key
from ._classes import (DCLASS_SCALED, DCLASS_SMALL, DCLASS_WEIGHTED, DCLASS_WIDE, SCALED_MIN_D,
                       WIDE_MIN_D, class_name, class_tag, d_class)
from ._machinery import (CACHE, FASTMATH, KernelArgumentError, check_arguments, kernel,
                         target_cpu)
from ._fileread import HAVE_PREAD, file_src, memory_src
from ._math import _exp_neg, _log_normal
from ._hard import hard_pass
from ._incomplete import pass_missing
from ._passes import (logprob_diag, logprob_full, logprob_spherical, logprob_tied, pass_diag,
                      pass_full, pass_spherical, pass_tied)

__all__ = ["compile_in_child", "start_in_child", "variant_key", "CACHE", "DCLASS_SCALED", "DCLASS_SMALL", "DCLASS_WEIGHTED", "DCLASS_WIDE", "FASTMATH",
           "KernelArgumentError", "SCALED_MIN_D", "WIDE_MIN_D", "check_arguments", "class_name",
           "class_tag", "d_class", "file_src", "hard_pass", "HAVE_PREAD", "memory_src", "kernel", "logprob_diag", "logprob_full", "logprob_spherical",
           "logprob_tied", "pass_diag", "pass_missing", "pass_full", "pass_spherical", "pass_tied", "target_cpu", "_exp_neg", "_log_normal"]
