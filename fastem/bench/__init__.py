"""``fastem bench``: fastem against scikit-learn, side by side.

Reference workloads (generated Gaussian blobs; ``--scale`` multiplies
n_samples):

====  ===========  ============  ==========  ===============
tag   n_samples    n_features    K           covariance_type
====  ===========  ============  ==========  ===============
S     1,000,000    2             8           full
M     1,000,000    16            16          full
L     200,000      64            32          full
D     1,000,000    16            16          diag
T     1,000,000    16            16          tied
P     1,000,000    16            16          spherical
====  ===========  ============  ==========  ===============

Method (default mode, "ms per EM iteration")
---------------------------------------------
For each workload the data are generated deterministically
(``np.random.default_rng(0)``, well separated centres, random covariances) and
explicit initial parameters (``weights_init``, ``means_init``,
``precisions_init``) are taken from a 3-iteration fastem fit on the first
20,000 rows, so that both libraries start from identical parameters and
neither pays for its own initialisation.  The JIT is warmed by a tiny fit of
the same dtype and covariance type before anything is timed.

Each library is then timed (wall clock, ``time.perf_counter``) fitting with
``tol=0`` and ``max_iter=1`` and with ``max_iter=1+m``; the per-iteration time
is ``(t(1+m) - t(1)) / m``, which cancels the fixed costs of a ``fit`` call
(validation, parameter set-up, and scikit-learn's final E-step).  The median
over ``--repeats`` repeats is reported.  ``m`` is ``--sklearn-iters`` (2) for
scikit-learn and, for fastem, ``--fastem-iters`` ("auto": enough iterations
for about 0.2 s of differenced time, at least scikit-learn's ``m``).

The log-likelihoods compared are ``lower_bounds_[m_sk]`` of both libraries:
the mean per-sample log-likelihood evaluated in EM iteration ``1+m_sk`` from
the same initial parameters.

Achieved GFLOP/s uses a useful-flop model of one EM iteration
(:func:`em_flops`) and is compared with the machine's numpy matmul rate
(:func:`measure_matmul_gflops`).  Peak memory is the growth of the resident
set size (peak RSS, reset just before the fit with ``/proc/self/clear_refs``,
else sampled every 5 ms) during one ``fit(max_iter=1)`` in a fresh
subprocess, after the JIT has been warmed there; it is reported in bytes and
relative to ``X.nbytes``.

Other modes: ``--end-to-end`` (default initialisation, EM to ``tol=1e-3``,
total fit time) and ``--compile`` (``import fastem`` time and first-fit
latency in fresh subprocesses with a cold and a warm Numba cache).

Usage::

    fastem bench                                  # all workloads, float64
    fastem bench --workloads S,M --scale 0.1 --repeats 3
    fastem bench --dtype both --threads 1,2 --json out.json
    fastem bench --end-to-end --workloads S --scale 0.1
    fastem bench --compile --workloads S,D
    python -m fastem.bench ...                    # the same
"""

from ._iteration import METHOD, run_workload
from ._machine import MATMUL_N, machine_info, measure_matmul_gflops
from ._main import SCHEMA, build_parser, main
from ._memory import measure_peak_memory
from ._modes import run_compile, run_end_to_end
from ._report import format_header, format_table
from ._roofline import (measure_exp_rate, measure_fma_rate, measure_machine,
                        measure_read_bandwidth, roofline_counts, roofline_floor, target_isa)
from ._timing import AUTO_MAX_ITERS, AUTO_TARGET_S, initial_parameters, warm_up
from ._workloads import (INIT_ITERS, INIT_SUBSAMPLE, LIBRARIES, WORKLOADS, em_flops,
                         make_blobs, workload_shape)

__all__ = ["SCHEMA", "WORKLOADS", "LIBRARIES", "INIT_SUBSAMPLE", "INIT_ITERS", "AUTO_TARGET_S",
           "AUTO_MAX_ITERS", "MATMUL_N", "METHOD", "workload_shape", "make_blobs",
           "initial_parameters", "em_flops", "measure_matmul_gflops", "machine_info",
           "warm_up", "measure_peak_memory", "run_workload", "run_end_to_end", "run_compile",
           "format_header", "format_table", "build_parser", "main", "target_isa",
           "measure_fma_rate", "measure_exp_rate", "measure_read_bandwidth", "measure_machine",
           "roofline_counts", "roofline_floor"]
