"""The machine's measured floor for fastem.bench: FMA rate, exp rate, read bandwidth,
the instruction set Numba compiles for, and each workload's roofline floor.

Nothing here is assumed from a data sheet.  Three microbenchmarks run on the
target Numba compiles for (``NUMBA_CPU_NAME`` / ``NUMBA_CPU_FEATURES`` honoured):

- **FMA rate**: an LLVM loop of ``FMA_CHAINS`` independent vector FMA chains
  (``llvm.fma`` on vectors as wide as the target's registers), compiled by
  Numba's own code generator, called through ctypes (which releases the GIL)
  from one thread, then from one thread per available CPU at once.  Enough
  independent chains cover the FMA latency on every x86 core with two FMA
  pipes, so the loop runs at the pipes' throughput.  The best of a few
  repeats is kept: it is a capability of the machine, and noise only slows.
- **exp rate**: fastem's own vectorised ``exp`` (``_kernels._math``) over a
  small array that stays in L1, all threads.
- **read bandwidth**: a parallel sum over a 256 MiB array (far above the
  last-level cache) in 64 blocks, all threads.

The instruction set is read from the FMA loop's assembly: 512-bit registers
(``zmm``) mean AVX-512 code, 256-bit (``ymm``) AVX2, else SSE.
"""

import ctypes
import re
import threading
import time

import numpy as np

#: Independent vector FMA chains in the microbenchmark loop (>= latency x pipes
#: = 4 x 2 on current x86 cores; fits 16 ymm registers with the two operands).
FMA_CHAINS = 12
#: Vector FMAs per chain per call of the loop (a unit: the calls are made
#: long enough to last FMA_SECONDS).
FMA_ITERS = 2_000_000
FMA_SECONDS = 0.1
BANDWIDTH_BYTES = 256 * 2 ** 20
EXP_N = 2048            # float64 values per thread (16 KiB: stays in L1)
EXP_REPS = 4000
REPEATS = 5

_CACHE = {}


def _codegen():
    from numba.core.registry import cpu_target

    return cpu_target.target_context.codegen()


def target_isa():
    """What Numba's target compiles to: dict with ``cpu`` (the LLVM CPU name,
    NUMBA_CPU_NAME when set), ``isa`` ('AVX-512', 'AVX2' or 'SSE', read from
    the generated code) and ``vector_bits`` (512, 256 or 128)."""
    if "isa" in _CACHE:
        return _CACHE["isa"]
    cg = _codegen()
    lib = _compile(cg, "float64", 8, "isa_probe")
    asm = lib.get_asm_str()
    if re.search(r"\bzmm\d+", asm):
        isa, bits = "AVX-512", 512
    elif re.search(r"\bymm\d+", asm):
        isa, bits = "AVX2" if "vfmadd" in asm else "AVX", 256
    else:
        isa, bits = "SSE", 128
    from numba.core import config

    out = {"cpu": cg._get_host_cpu_name(), "isa": isa, "vector_bits": bits,
           "features_overridden": config.CPU_FEATURES is not None}
    _CACHE["isa"] = out
    return out


def _fma_ir(name, dtype, lanes):
    t = "double" if dtype == "float64" else "float"
    v = f"<{lanes} x {t}>"
    sfx = f"v{lanes}f{64 if dtype == 'float64' else 32}"

    def splat(x):
        return "<" + ", ".join(f"{t} {x!r}" for _ in range(lanes)) + ">"

    lines = [f"declare {v} @llvm.fma.{sfx}({v}, {v}, {v})",
             f"define double @{name}(i64 %n) {{", "entry:", "  br label %loop", "loop:",
             "  %i = phi i64 [0, %entry], [%i1, %loop]"]
    for j in range(FMA_CHAINS):
        lines.append(f"  %a{j} = phi {v} [{splat(1.0 + j / 1024)}, %entry], [%b{j}, %loop]")
    for j in range(FMA_CHAINS):
        lines.append(f"  %b{j} = call {v} @llvm.fma.{sfx}({v} %a{j}, {v} {splat(0.5)}, "
                     f"{v} {splat(0.5)})")
    lines += ["  %i1 = add i64 %i, 1", "  %c = icmp ult i64 %i1, %n",
              "  br i1 %c, label %loop, label %exit", "exit:"]
    acc = "%b0"
    for j in range(1, FMA_CHAINS):
        lines.append(f"  %s{j} = fadd {v} {acc}, %b{j}")
        acc = f"%s{j}"
    lines.append(f"  %e = extractelement {v} {acc}, i32 0")
    if t == "float":
        lines += ["  %r = fpext float %e to double", "  ret double %r", "}"]
    else:
        lines += ["  ret double %e", "}"]
    return "\n".join(lines)


def _compile(cg, dtype, lanes, name):
    from llvmlite import binding as ll
    from numba.core.compiler_lock import global_compiler_lock

    with global_compiler_lock:
        lib = cg.create_library(f"fastem_bench_{name}")
        lib.add_llvm_module(ll.parse_assembly(_fma_ir(name, dtype, lanes)))
        lib.finalize()
    return lib


def _fma_function(dtype):
    """(ctypes function, vector FMAs per unit of n, lanes per vector)."""
    key = ("fma", dtype)
    if key not in _CACHE:
        bits = target_isa()["vector_bits"]
        lanes = bits // (64 if dtype == "float64" else 32)
        name = f"fma_{dtype}_{lanes}"
        lib = _compile(_codegen(), dtype, lanes, name)
        fn = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_int64)(
            lib.get_pointer_to_function(name))
        _CACHE[key] = (fn, lib, lanes)
    fn, _lib, lanes = _CACHE[key]
    return fn, lanes


def _run_threads(work, threads):
    """Run ``work()`` in ``threads`` threads at once; wall seconds of all."""
    barrier = threading.Barrier(threads + 1)
    out = [None] * threads

    def run(i):
        barrier.wait()
        work()
        out[i] = time.perf_counter()

    pool = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in pool:
        t.join()
    return max(out) - t0


def measure_fma_rate(dtype="float64", threads=1, repeats=REPEATS):
    """Sustained FMA rate (scalar FMAs per second, i.e. lanes x vector FMAs)
    of ``threads`` concurrent copies of the FMA loop; the best of ``repeats``."""
    fn, lanes = _fma_function(np.dtype(dtype).name)
    fn(1000)
    # calls of at least FMA_SECONDS each: the threads start a fraction of a
    # millisecond apart (more on a busy virtual machine), which in a call of
    # 3 ms (FMA_ITERS of AVX2 code) made two threads look no faster than one
    t0 = time.perf_counter()
    fn(FMA_ITERS)
    one = time.perf_counter() - t0
    iters = FMA_ITERS * max(1, int(np.ceil(FMA_SECONDS / max(one, 1e-6))))
    per_call = iters * FMA_CHAINS * lanes
    best = 0.0
    for _ in range(repeats):
        wall = _run_threads(lambda: fn(iters), threads)
        best = max(best, threads * per_call / wall)
    return best


def _exp_kernel():
    if "exp" not in _CACHE:
        from numba import njit, prange

        from .._kernels._machinery import FASTMATH
        from .._kernels._math import _exp_neg_f64

        exp = njit(_exp_neg_f64, fastmath=FASTMATH, inline="always")

        # two independent exponentials per iteration, as the kernels'
        # normalisation runs them (_blocks._normalise_block): with one, the
        # loop ran at the latency of the exp's chain of operations and
        # measured a rate 10-15% below what the kernels get (Zen 3, AVX2),
        # which made every floor too low a bar
        @njit(parallel=True, fastmath=FASTMATH)
        def exp_loop(x, reps, nthreads):
            h = x.shape[0] // 2
            out = np.zeros(nthreads)
            for t in prange(nthreads):
                s = 0.0
                for r in range(reps):
                    for i in range(h):
                        s += exp(x[i] - r * 1e-9) + exp(x[i + h] - r * 1e-9)
                out[t] = s
            return out.sum()

        _CACHE["exp"] = exp_loop
    return _CACHE["exp"]


def measure_exp_rate(threads, repeats=REPEATS):
    """float64 exponentials per second with fastem's vectorised exp, all
    ``threads`` Numba threads; the best of ``repeats``."""
    import numba

    fn = _exp_kernel()
    x = -np.linspace(0.0, 30.0, EXP_N)
    previous = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        fn(x, 2, threads)
        best = 0.0
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn(x, EXP_REPS, threads)
            best = max(best, threads * EXP_N * EXP_REPS / (time.perf_counter() - t0))
    finally:
        numba.set_num_threads(previous)
    return best


def _sum_kernel():
    if "sum" not in _CACHE:
        from numba import njit, prange

        from .._kernels._machinery import FASTMATH

        @njit(fastmath=FASTMATH)
        def run_sum(a):
            return a.sum()

        @njit(parallel=True)
        def block_sum(a, nblocks):
            n = a.shape[0]
            size = (n + nblocks - 1) // nblocks
            out = np.zeros(nblocks)
            for b in prange(nblocks):
                out[b] = run_sum(a[b * size:min(n, (b + 1) * size)])
            return out.sum()

        _CACHE["sum"] = block_sum
    return _CACHE["sum"]


def measure_read_bandwidth(threads, repeats=REPEATS):
    """Bytes per second read by a parallel sum over 256 MiB; the best of
    ``repeats``."""
    import numba

    fn = _sum_kernel()
    a = np.ones(BANDWIDTH_BYTES // 8)
    previous = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        fn(a[:1000], 64)
        best = 0.0
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn(a, 64)
            best = max(best, a.nbytes / (time.perf_counter() - t0))
    finally:
        numba.set_num_threads(previous)
    return best


def measure_machine(dtypes=("float64",), threads=None):
    """All the rates of the roofline: dict with ``isa``, ``threads``,
    ``fma_per_s`` {dtype: {'1': per core, 'all': all threads}}, ``exp_per_s``
    (float64, all threads) and ``read_bytes_per_s`` (all threads)."""
    import numba

    threads = threads or numba.get_num_threads()
    out = {"isa": target_isa(), "threads": threads, "fma_per_s": {}}
    for dt in dtypes:
        dt = np.dtype(dt).name
        out["fma_per_s"][dt] = {"1": measure_fma_rate(dt, 1),
                                "all": measure_fma_rate(dt, threads)}
    out["exp_per_s"] = measure_exp_rate(threads)
    out["read_bytes_per_s"] = measure_read_bandwidth(threads)
    return out


def roofline_counts(n_samples, n_features, n_components, covariance_type, itemsize=8):
    """Minimal work of one exact EM iteration: dict of ``fma``, ``exp`` and
    ``bytes`` (per iteration, the M-step's O(K d^3) left out).

    Per row (d features, K components; a triangle is d(d+1)/2):

    - full: K x (triangle + d) for the solve with the precision Cholesky factor
      and the squared norm, K x (triangle + d) for the second and first moments;
    - tied: one triangle for the common whitening, K x d for the distances to
      the whitened means, K x d for the first moments, one triangle for the
      common scatter;
    - diag: K x 2d for the distances (x^2 once per row, then two FMAs per
      feature and component), K x 2d for the first and second moments;
    - spherical: d for |x|^2, K x d for the dot products with the means,
      K x d for the first moments, K for the second moments.

    Every workload takes K exponentials per row (the log-sum-exp) and reads X
    once per iteration (n x d x itemsize bytes).
    """
    n, d, K = int(n_samples), int(n_features), int(n_components)
    tri = d * (d + 1) // 2
    per_row = {"full": 2 * K * (tri + d),
               "tied": 2 * tri + 2 * K * d,
               "diag": 4 * K * d,
               "spherical": d + 2 * K * d + K}
    if covariance_type not in per_row:
        raise ValueError(f"Unknown covariance_type {covariance_type!r}; expected one of "
                         "'full', 'tied', 'diag', 'spherical'")
    return {"fma": n * per_row[covariance_type], "exp": n * K,
            "bytes": n * d * int(itemsize)}


def roofline_floor(counts, rates, dtype="float64"):
    """The floor (seconds per iteration) of ``counts`` on a machine of
    ``rates`` (:func:`measure_machine`): the FMAs at the all-core FMA rate plus
    the exponentials at the all-core exp rate (both on the same vector
    units), or the bytes at the read bandwidth if that is slower.  float32
    exponentials are counted at twice the float64 rate (twice the lanes)."""
    dt = np.dtype(dtype).name
    fma = counts["fma"] / rates["fma_per_s"][dt]["all"]
    exp_rate = rates["exp_per_s"] * (2.0 if dt == "float32" else 1.0)
    compute = fma + counts["exp"] / exp_rate
    memory = counts["bytes"] / rates["read_bytes_per_s"]
    return {"floor_s": max(compute, memory), "fma_s": fma, "exp_s": compute - fma,
            "bytes_s": memory, "bound": "compute" if compute >= memory else "memory"}
