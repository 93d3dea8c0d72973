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
"""

import math
import os
import threading

import numpy as np
from numba import njit, prange, types
from numba.np.numpy_support import from_dtype as numba_from_dtype
from numba.extending import intrinsic, overload

CACHE = os.environ.get("FASTEM_NUMBA_CACHE", "1").lower() not in ("0", "false", "no")
# A safe subset of fast-math: no 'nnan'/'ninf' (-inf is a legitimate log
# probability) and no 'afn' (approximate exp/log).  'reassoc' lets LLVM
# vectorise the reductions over points; the compiled order is fixed, so results
# stay deterministic.
FASTMATH = {"nsz", "arcp", "contract", "reassoc"}

# from this many features on, full second moments are formed from rows scaled
# by the square roots of their responsibilities (one array for both factors)
SCALED_MIN_D = 6
# code paths of the full type by number of features; each gets kernels of its
# own (compiled only when data of that kind arrive), see _d_class
DCLASS_SMALL = 0     # d <= 2: one sweep per component, all in registers
DCLASS_WEIGHTED = 1  # 2 < d < SCALED_MIN_D: tiles on responsibility-weighted rows
DCLASS_SCALED = 2    # d >= SCALED_MIN_D: tiles on square-root-scaled rows
# The class reaches the kernels as the dtype of an empty "tag" array, so that
# it is part of the kernel's type: each class compiles (and caches) a kernel
# of its own holding only its own code path, from one kernel source.
_TAG_DTYPES = (np.int8, np.int16, np.int32)
_TAGS = tuple(np.empty(0, dtype=t) for t in _TAG_DTYPES)

_f8 = types.float64
_i8 = types.int64


def _arr(dtype, ndim, readonly=False):
    return types.Array(dtype, ndim, "C", readonly=readonly)


_VARIANT_LOCK = threading.RLock()


def target_cpu():
    """The CPU name (and whether features were overridden) Numba compiles
    for: NUMBA_CPU_NAME when set, else the host's."""
    from numba.core import config
    from llvmlite import binding as ll

    name = config.CPU_NAME or ll.get_host_cpu_name()
    return name + (" (NUMBA_CPU_FEATURES set)" if config.CPU_FEATURES else "")


class _Kernel:
    """A Numba kernel with one explicit signature per kind of data array.

    ``build(dtype, readonly)`` gives the signature for float32/float64 data,
    writable or read-only (memmap chunks are a Numba type of their own).  Each
    variant is compiled (or loaded from the cache) the first time data of its
    kind arrives, so a float64 fit never pays for the float32 variants.
    The data array is always the first argument.

    LLVM may vectorise the read-only variant of a kernel differently, which
    changes the last bits of floating-point sums.  Kernels whose results must
    not depend on the kind of input (``readonly="copy"``, the default) copy
    read-only data into a writable array instead; callers hand them bounded
    chunks.  ``readonly="native"`` kernels (finite checks) use the read-only
    variant and never copy.
    """

    def __init__(self, py_func, build, options, readonly="copy", tagged=False,
                 shapes=None):
        self.py_func = py_func
        self._shapes = shapes
        self._build = build
        self._options = options
        self._readonly = readonly
        self._tagged = tagged
        self._variants = {}
        self.__name__ = py_func.__name__
        self.__doc__ = py_func.__doc__

    def variant(self, dtype, readonly, tag=None):
        """The compiled kernel for data of ``dtype`` (read-only or not) and,
        for tagged kernels, the feature-class tag array ``tag``."""
        key = (np.dtype(dtype).char, bool(readonly),
               None if tag is None else tag.dtype.char)
        fn = self._variants.get(key)
        if fn is None:
            with _VARIANT_LOCK:
                fn = self._variants.get(key)
                if fn is None:
                    if not self.in_cache(dtype, readonly, tag):
                        from . import _compile

                        _compile.announce(self.__name__, dtype)
                        _compile.compile_in_child([(self.__name__, dtype, readonly, tag)])
                    fn = njit(self._signature(dtype, readonly, tag),
                              **self._options)(self.py_func)
                    self._variants[key] = fn
        return fn

    def _signature(self, dtype, readonly, tag=None):
        nbtype = types.float32 if np.dtype(dtype) == np.float32 else types.float64
        extra = () if tag is None else (_arr(numba_from_dtype(tag.dtype), 1),)
        return self._build(nbtype, bool(readonly), *extra)

    def _function_cache(self):
        from numba.core.caching import FunctionCache

        return FunctionCache(self.py_func)

    def in_cache(self, dtype, readonly=False, tag=None):
        """Whether that variant is in the on-disk cache for this CPU (and the
        current source); compiles nothing."""
        if not self._options.get("cache"):
            return False
        try:
            from numba.core.registry import cpu_target

            cache = self._function_cache()
            sig = self._signature(dtype, readonly, tag)
            key = cache._index_key(sig, cpu_target.target_context.codegen())
            return key in cache._cache_file._load_index()
        except Exception:  # noqa: BLE001 - a status query must never fail a fit
            return False

    def cache_dir(self):
        """The folder holding this kernel's cache files."""
        return self._function_cache()._cache_path

    def is_compiled(self, dtype, readonly=False, tag=None):
        """Whether that variant is already compiled in this process."""
        key = (np.dtype(dtype).char, bool(readonly),
               None if tag is None else tag.dtype.char)
        fn = self._variants.get(key)
        return fn is not None and bool(fn.overloads)

    def __call__(self, X, *args):
        check_arguments(self.__name__, self._shapes, (X,) + args)
        if not X.flags.writeable and self._readonly == "copy":
            X = np.array(X, order="C", copy=True)
        tag = args[-1] if self._tagged else None
        return self.variant(X.dtype, not X.flags.writeable, tag)(X, *args)

    def variants(self, dtypes=(np.float32, np.float64)):
        """The (dtype, readonly, tag) keys of every variant fits can use."""
        out = []
        for dt in dtypes:
            for ro in ((False, True) if self._readonly == "native" else (False,)):
                for tag in (_TAGS if self._tagged else (None,)):
                    out.append((np.dtype(dt), ro, tag))
        return out

    def compile_all(self, dtypes=(np.float32, np.float64)):
        """Compile (or load) every variant this kernel uses."""
        for dt, ro, tag in self.variants(dtypes):
            self.variant(dt, ro, tag)


class KernelArgumentError(ValueError):
    """Arguments that do not fit a kernel's shapes: the kernel is not run."""


def check_arguments(name, shapes, args):
    """Check the arguments of kernel ``name`` against its shape spec.

    Each spec entry is one of:

    - a string of space-separated dimensions for an array: a symbol (``n``,
      ``d``, ``K``) is bound by its first use and must agree afterwards, a
      digit is that size, ``n|0`` is n or 0 (optional sample weights);
      the array must be a C-contiguous float32/float64/int64 ndarray of that
      many dimensions;
    - ``"block"``: a positive int; ``"task"``: a positive multiple of block;
    - ``"tag"``: one of the feature-class tag arrays, matching d.

    Float arrays other than the data and the float64 accumulators must have
    the data's dtype where the kernel's signature says so; Numba's explicit
    signatures refuse a wrong dtype, ndim or layout themselves.
    """
    if shapes is None:
        return
    if len(args) != len(shapes):
        raise KernelArgumentError(f"{name}: expected {len(shapes)} arguments, got "
                                  f"{len(args)}")
    env = {}
    for pos, (spec, a) in enumerate(zip(shapes, args)):
        where = f"{name}: argument {pos}"
        if spec in ("block", "task"):
            if isinstance(a, bool) or not isinstance(a, (int, np.integer)) or a < 1:
                raise KernelArgumentError(f"{where} must be a positive int, got {a!r}")
            if spec == "task" and a % env["block"]:
                raise KernelArgumentError(
                    f"{where}: rows per task {a} is not a multiple of the block {env['block']}")
            env[spec] = int(a)
            continue
        if not isinstance(a, np.ndarray):
            raise KernelArgumentError(f"{where} must be an ndarray, got {type(a).__name__}")
        if spec == "tag":
            if a.shape != (0,) or a.dtype != class_tag(env["d"]).dtype:
                raise KernelArgumentError(f"{where}: feature-class tag does not match "
                                          f"d={env['d']}")
            continue
        dims = spec.split()
        if a.ndim != len(dims):
            raise KernelArgumentError(f"{where} must have {len(dims)} dimensions, "
                                      f"got shape {a.shape}")
        for axis, (sym, size) in enumerate(zip(dims, a.shape)):
            alts = sym.split("|")
            ok = False
            for alt in alts:
                if alt.isdigit():
                    ok = size == int(alt)
                elif alt in env:
                    ok = size == env[alt]
                else:
                    env[alt] = size
                    ok = True
                if ok:
                    break
            if not ok:
                want = " or ".join(str(env.get(x, x)) for x in alts)
                raise KernelArgumentError(
                    f"{where} has shape {a.shape}: axis {axis} is {size}, expected {want} "
                    f"({sym})")
        if not a.flags.c_contiguous:
            raise KernelArgumentError(f"{where} must be C-contiguous")


def kernel(build, readonly="copy", tagged=False, shapes=None, **options):
    """Decorator: a lazily compiled, explicitly typed, cached Numba kernel.

    ``tagged=True``: the last argument is a feature-class tag array
    (:func:`class_tag`) whose dtype selects the compiled variant.

    ``shapes``: one entry per argument, checked in Python before every call
    (:func:`check_arguments`), so that no argument can make the kernel read
    or write outside an array."""
    options.setdefault("cache", CACHE)
    # no Python exceptions from arithmetic (a division by zero gives inf/nan):
    # the checks would also keep LLVM from vectorising the loops
    options.setdefault("error_model", "numpy")

    def wrap(py_func):
        return _Kernel(py_func, build, options, readonly, tagged, shapes)

    return wrap


def compile_all():
    """Compile every kernel variant (e.g. to warm the cache after install)."""
    for obj in list(globals().values()):
        if isinstance(obj, _Kernel):
            obj.compile_all()


# ---------------------------------------------------------------------------
# Block helpers (inlined into the parallel kernels)
# ---------------------------------------------------------------------------


@njit(cache=CACHE, fastmath=FASTMATH, error_model="numpy")
def _load_block(X, start, nb, xt):
    """Copy rows start:start+nb of X transposed into xt[:, :nb]."""
    d = X.shape[1]
    if d == 2:
        # one sweep with both features (the generic inner loop is too short
        # to vectorise: this is 5x faster)
        for r in range(nb):
            xt[0, r] = X[start + r, 0]
            xt[1, r] = X[start + r, 1]
    elif d == 1:
        for r in range(nb):
            xt[0, r] = X[start + r, 0]
    else:
        for r in range(nb):
            for i in range(d):
                xt[i, r] = X[start + r, i]


@njit(cache=CACHE, fastmath=FASTMATH, error_model="numpy")
def _logprob_small(diff, nb, proj, P, log_norm, lp):
    """_logprob_block_full for one or two features: one sweep over the points
    per component, everything in registers (the tiled loops would make
    several passes over short rows)."""
    K, d = proj.shape
    for k in range(K):
        c = log_norm[k]
        p00 = P[k, 0, 0]
        c0 = proj[k, 0]
        if d == 2:
            p01 = P[k, 0, 1]
            p11 = P[k, 1, 1]
            c1 = proj[k, 1]
            for r in range(nb):
                v0 = diff[0, r]
                y0 = v0 * p00 - c0
                y1 = (v0 * p01 + diff[1, r] * p11) - c1
                lp[k, r] = c - 0.5 * (y0 * y0 + y1 * y1)
        else:
            for r in range(nb):
                y0 = diff[0, r] * p00 - c0
                lp[k, r] = c - 0.5 * (y0 * y0)


@njit(cache=CACHE, fastmath=FASTMATH, error_model="numpy")
def _centre_block(xt, nb, ref2, diff):
    """diff[i, :nb] = xt[i, :nb] - ref2[i]."""
    d = xt.shape[0]
    for i in range(d):
        m = ref2[i]
        for r in range(nb):
            diff[i, r] = xt[i, r] - m


def _logprob_block_full(xt, nb, ref2, proj, P, log_norm, diff, acc, acc2, maha, lp, tag):
    """lp[k, :nb] = log_norm[k] - 0.5 * ||(x - mu_k) P_k||^2 for every k.

    P_k is the upper-triangular Cholesky factor of the precision matrix
    (scikit-learn's ``precisions_cholesky_``), so only i <= j terms of
    y_j = sum_i (x_i - ref2_i) P[i, j] - proj[k, j] are formed (a triangular
    product), with proj_k = P_k^T (mu_k - ref2).  The rows are centred once
    per block at ref2 (the mixture mean), not once per component: the
    rounding error of y is then of the order of eps * |mu_k - ref2| / sigma,
    whatever the distance of the data from the origin.

    ``tag`` is the feature-class tag (:func:`class_tag`): its dtype picks,
    when the calling kernel is compiled, :func:`_logprob_small` or
    :func:`_logprob_tri`, so that a kernel compiles only its own path.
    """
    raise NotImplementedError("compiled code only")


@overload(_logprob_block_full,
          jit_options=dict(fastmath=FASTMATH, error_model="numpy"))
def _logprob_block_full_typed(xt, nb, ref2, proj, P, log_norm, diff, acc, acc2, maha, lp,
                              tag):
    if _tag_class(tag) == DCLASS_SMALL:
        def impl(xt, nb, ref2, proj, P, log_norm, diff, acc, acc2, maha, lp, tag):
            _centre_block(xt, nb, ref2, diff)
            _logprob_small(diff, nb, proj, P, log_norm, lp)
    else:
        def impl(xt, nb, ref2, proj, P, log_norm, diff, acc, acc2, maha, lp, tag):
            _centre_block(xt, nb, ref2, diff)
            _logprob_tri(diff, nb, proj, P, log_norm, acc, acc2, maha, lp)
    return impl


@njit(cache=CACHE, fastmath=FASTMATH, error_model="numpy")
def _logprob_tri(diff, nb, proj, P, log_norm, acc, acc2, maha, lp):
    """The triangular products of :func:`_logprob_block_full` on centred rows
    diff (d, block), for d > 2 (acc, acc2, maha: (block,) scratch)."""
    K, d = proj.shape
    for k in range(K):
        for r in range(nb):
            maha[r] = 0.0
        # Two columns j, j + 1 at a time share the loads of diff; rows are
        # taken four at a time (P is zero below its diagonal, so a group
        # may run past row j + 1).  The first group initialises the
        # partial sums, the last adds the squares to maha directly: two
        # columns cost ceil((j + 2) / 4) sweeps over the points.
        j = 0
        while j + 1 < d:
            ca = proj[k, j]
            cb = proj[k, j + 1]
            nrows = j + 2
            i = 0
            while i < nrows and i + 3 < d:
                first = i == 0
                last = i + 4 >= nrows
                pa0 = P[k, i, j]
                pa1 = P[k, i + 1, j]
                pa2 = P[k, i + 2, j]
                pa3 = P[k, i + 3, j]
                pb0 = P[k, i, j + 1]
                pb1 = P[k, i + 1, j + 1]
                pb2 = P[k, i + 2, j + 1]
                pb3 = P[k, i + 3, j + 1]
                if first and last:
                    for r in range(nb):
                        v0 = diff[i, r]
                        v1 = diff[i + 1, r]
                        v2 = diff[i + 2, r]
                        v3 = diff[i + 3, r]
                        ya = (v0 * pa0 + v1 * pa1) + (v2 * pa2 + v3 * pa3) - ca
                        yb = (v0 * pb0 + v1 * pb1) + (v2 * pb2 + v3 * pb3) - cb
                        maha[r] += ya * ya + yb * yb
                elif first:
                    for r in range(nb):
                        v0 = diff[i, r]
                        v1 = diff[i + 1, r]
                        v2 = diff[i + 2, r]
                        v3 = diff[i + 3, r]
                        acc[r] = (v0 * pa0 + v1 * pa1) + (v2 * pa2 + v3 * pa3) - ca
                        acc2[r] = (v0 * pb0 + v1 * pb1) + (v2 * pb2 + v3 * pb3) - cb
                elif last:
                    for r in range(nb):
                        v0 = diff[i, r]
                        v1 = diff[i + 1, r]
                        v2 = diff[i + 2, r]
                        v3 = diff[i + 3, r]
                        ya = acc[r] + ((v0 * pa0 + v1 * pa1) + (v2 * pa2 + v3 * pa3))
                        yb = acc2[r] + ((v0 * pb0 + v1 * pb1) + (v2 * pb2 + v3 * pb3))
                        maha[r] += ya * ya + yb * yb
                else:
                    for r in range(nb):
                        v0 = diff[i, r]
                        v1 = diff[i + 1, r]
                        v2 = diff[i + 2, r]
                        v3 = diff[i + 3, r]
                        acc[r] += (v0 * pa0 + v1 * pa1) + (v2 * pa2 + v3 * pa3)
                        acc2[r] += (v0 * pb0 + v1 * pb1) + (v2 * pb2 + v3 * pb3)
                i += 4
            if i < nrows:
                # fewer than four rows left before row d: one at a time
                if i == 0:
                    for r in range(nb):
                        acc[r] = -ca
                        acc2[r] = -cb
                while i < nrows:
                    pa = P[k, i, j]
                    pb = P[k, i, j + 1]
                    for r in range(nb):
                        v = diff[i, r]
                        acc[r] += v * pa
                        acc2[r] += v * pb
                    i += 1
                for r in range(nb):
                    maha[r] += acc[r] * acc[r] + acc2[r] * acc2[r]
            j += 2
        if j < d:
            # last column when d is odd
            ca = proj[k, j]
            for r in range(nb):
                acc[r] = -ca
            for i in range(j + 1):
                pa = P[k, i, j]
                for r in range(nb):
                    acc[r] += diff[i, r] * pa
            for r in range(nb):
                maha[r] += acc[r] * acc[r]
        c = log_norm[k]
        for r in range(nb):
            lp[k, r] = c - 0.5 * maha[r]


@njit(cache=CACHE, fastmath=FASTMATH, error_model="numpy")
def _logprob_block_tied(xt, nb, ref2, Pt, proj, log_norm, diff, Y, maha, lp):
    """Tied precision: one triangular product per row instead of one per
    component.

    Y = Pt^T (x - ref2) is formed once; then for every k,
    (x - mu_k)^T Sigma^-1 (x - mu_k) = ||Y - proj_k||^2 with
    proj_k = Pt^T (mu_k - ref2).  Centring at ref2 (the mixture mean) keeps
    both terms at the scale of the data's spread, so nothing cancels.
    """
    K, d = proj.shape
    for i in range(d):
        m = ref2[i]
        for r in range(nb):
            diff[i, r] = xt[i, r] - m
    for j in range(d):
        p0 = Pt[0, j]
        for r in range(nb):
            Y[j, r] = diff[0, r] * p0
        i = 1
        while i + 3 <= j:
            pa = Pt[i, j]
            pb = Pt[i + 1, j]
            pc = Pt[i + 2, j]
            pd = Pt[i + 3, j]
            for r in range(nb):
                Y[j, r] += (diff[i, r] * pa + diff[i + 1, r] * pb) + (
                    diff[i + 2, r] * pc + diff[i + 3, r] * pd)
            i += 4
        while i <= j:
            pa = Pt[i, j]
            for r in range(nb):
                Y[j, r] += diff[i, r] * pa
            i += 1
    for k in range(K):
        for r in range(nb):
            maha[r] = 0.0
        j = 0
        while j + 3 < d:
            b0 = proj[k, j]
            b1 = proj[k, j + 1]
            b2 = proj[k, j + 2]
            b3 = proj[k, j + 3]
            for r in range(nb):
                t0 = Y[j, r] - b0
                t1 = Y[j + 1, r] - b1
                t2 = Y[j + 2, r] - b2
                t3 = Y[j + 3, r] - b3
                maha[r] += (t0 * t0 + t1 * t1) + (t2 * t2 + t3 * t3)
            j += 4
        while j < d:
            b0 = proj[k, j]
            for r in range(nb):
                t0 = Y[j, r] - b0
                maha[r] += t0 * t0
            j += 1
        c = log_norm[k]
        for r in range(nb):
            lp[k, r] = c - 0.5 * maha[r]


@njit(cache=CACHE, fastmath=FASTMATH, error_model="numpy")
def _logprob_block_diag(xt, nb, ref2, proj, prec, log_norm, diff, maha, lp):
    """Diagonal precisions: lp[k] = log_norm[k] - 0.5 sum_i t_i^2 with
    t_i = (x_i - ref2_i) p_ki - proj_ki = (x_i - mu_ki) p_ki, proj_k =
    (mu_k - ref2) p_k: one multiply-add and one square per term, on rows
    centred once per block at ref2 (the mixture mean).

    Four features per sweep over the points: five loads and one store feed
    four squared terms.
    """
    K, d = proj.shape
    for i in range(d):
        m = ref2[i]
        for r in range(nb):
            diff[i, r] = xt[i, r] - m
    for k in range(K):
        for r in range(nb):
            maha[r] = 0.0
        i = 0
        while i + 3 < d:
            m0 = proj[k, i]
            m1 = proj[k, i + 1]
            m2 = proj[k, i + 2]
            m3 = proj[k, i + 3]
            p0 = prec[k, i]
            p1 = prec[k, i + 1]
            p2 = prec[k, i + 2]
            p3 = prec[k, i + 3]
            for r in range(nb):
                t0 = diff[i, r] * p0 - m0
                t1 = diff[i + 1, r] * p1 - m1
                t2 = diff[i + 2, r] * p2 - m2
                t3 = diff[i + 3, r] * p3 - m3
                maha[r] += (t0 * t0 + t1 * t1) + (t2 * t2 + t3 * t3)
            i += 4
        while i < d:
            m0 = proj[k, i]
            p0 = prec[k, i]
            for r in range(nb):
                t0 = diff[i, r] * p0 - m0
                maha[r] += t0 * t0
            i += 1
        c = log_norm[k]
        for r in range(nb):
            lp[k, r] = c - 0.5 * maha[r]


@intrinsic
def _i64_as_f64(typingctx, x):
    """The float64 whose bits are those of the int64 x (a register move)."""
    sig = types.float64(types.int64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float64))

    return sig, codegen


@intrinsic
def _f64_as_i64(typingctx, x):
    """The int64 whose bits are those of the float64 x (a register move)."""
    sig = types.int64(types.float64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.int64))

    return sig, codegen


# exp(x) = 2**n * p(r), x = n log 2 + r, |r| <= log(2) / 2: Cody-Waite range
# reduction and a degree-13 Taylor polynomial, 2**n assembled from its bits.
# Scalar code without calls or branches, so that the loops calling it
# vectorise (math.exp is a scalar libm call).  Accurate to a few 1e-16
# relative (~1e-14 if the compiler reassociates the reduction) under the
# fast-math flags used here.  Below -708, where exp(x) is subnormal, 2**n is
# applied as 2**n1 * 2**n2 (n1 = floor(n / 2), n2 = n - n1, both normal):
# p * 2**n1 is exact and the last product rounds once into the subnormal
# range, as np.exp does.
_LOG2E = 1.4426950408889634
_LN2 = 0.6931471805599453
_LN2_HI = 0.6931471803691238      # fdlibm's ln2_hi: n * _LN2_HI is exact
_LN2_LO = 1.9082149292705877e-10  # log(2) - _LN2_HI
_EXP_MIN = -745.1332191019412      # largest x with np.exp(x) == 0 (-1075 log 2)
_SQRT2 = 1.4142135623730951
_MANTISSA = (1 << 52) - 1


@intrinsic
def _i32_as_f32(typingctx, x):
    """The float32 whose bits are those of the int32 x (a register move)."""
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float32))

    return sig, codegen


def _exp_neg(x):
    """exp(x) for x <= 0, subnormal results included; 0 where np.exp
    underflows to 0 (x <= -745.133 in float64, -103.972 in float32), for -inf
    and for NaN.

    In compiled code this is the branch-free, vectorisable version for the
    argument's precision (``_exp_neg_f64``, or ``_exp_neg_f32`` for float32);
    called from Python it uses math.exp.
    """
    return math.exp(x) if x > _EXP_MIN else 0.0


def _exp_neg_f64(x):
    v = x if x > _EXP_MIN else _EXP_MIN
    nf = np.floor(v * _LOG2E + 0.5)
    red = (v - nf * _LN2_HI) - nf * _LN2_LO
    p = 1.0 / 6227020800.0
    p = p * red + 1.0 / 479001600.0
    p = p * red + 1.0 / 39916800.0
    p = p * red + 1.0 / 3628800.0
    p = p * red + 1.0 / 362880.0
    p = p * red + 1.0 / 40320.0
    p = p * red + 1.0 / 5040.0
    p = p * red + 1.0 / 720.0
    p = p * red + 1.0 / 120.0
    p = p * red + 1.0 / 24.0
    p = p * red + 1.0 / 6.0
    p = p * red + 0.5
    p = p * red + 1.0
    p = p * red + 1.0
    # 2**n = 2**n1 * 2**n2 from exponent bits; -1075 <= n <= 0 here, so
    # -538 <= n1 <= n2 <= 0 are both normal
    n = np.int64(nf)
    n1 = n >> 1
    scale1 = _i64_as_f64((n1 + 1023) << 52)
    scale2 = _i64_as_f64((n - n1 + 1023) << 52)
    return (p * scale1) * scale2 if x > _EXP_MIN else 0.0


# float32: the same scheme with a degree-7 Taylor polynomial (truncation
# error below 1e-8 relative on |r| <= log(2) / 2) and 2**n from the float32
# exponent bits, 16 lanes per AVX-512 register instead of 8.
_F32 = np.float32
_EXP_MIN_F32 = _F32(-103.972084)   # largest x with np.exp(x) == 0 in float32
_LOG2E_F32 = _F32(_LOG2E)
_LN2_HI_F32 = _F32(0.693359375)    # 8 significant bits: n * _LN2_HI_F32 is exact
_LN2_LO_F32 = _F32(0.6931471805599453 - 0.693359375)
_HALF_F32 = _F32(0.5)
_ONE_F32 = _F32(1.0)
_ZERO_F32 = _F32(0.0)
_BIAS_F32 = _F32(127.0)
_MANT_SCALE_F32 = _F32(8388608.0)  # 2**23: (n + 127) * 2**23 is the exponent field
_C2_F32 = _F32(1.0 / 2.0)
_C3_F32 = _F32(1.0 / 6.0)
_C4_F32 = _F32(1.0 / 24.0)
_C5_F32 = _F32(1.0 / 120.0)
_C6_F32 = _F32(1.0 / 720.0)
_C7_F32 = _F32(1.0 / 5040.0)


def _exp_neg_f32(x):
    v = x if x > _EXP_MIN_F32 else _EXP_MIN_F32
    nf = np.floor(v * _LOG2E_F32 + _HALF_F32)
    red = (v - nf * _LN2_HI_F32) - nf * _LN2_LO_F32
    p = _C7_F32
    p = p * red + _C6_F32
    p = p * red + _C5_F32
    p = p * red + _C4_F32
    p = p * red + _C3_F32
    p = p * red + _C2_F32
    p = p * red + _ONE_F32
    p = p * red + _ONE_F32
    # 2**n = 2**n1 * 2**n2 with -150 <= n <= 0, -75 <= n1 <= n2 <= 0 (both
    # normal); (n1 + 127) * 2**23 < 2**31 is exact and fits an int32
    n1f = np.floor(nf * _HALF_F32)
    scale1 = _i32_as_f32(np.int32((n1f + _BIAS_F32) * _MANT_SCALE_F32))
    scale2 = _i32_as_f32(np.int32((nf - n1f + _BIAS_F32) * _MANT_SCALE_F32))
    return (p * scale1) * scale2 if x > _EXP_MIN_F32 else _ZERO_F32


@overload(_exp_neg, inline="always")
def _exp_neg_compiled(x):
    if x == types.float32:
        return _exp_neg_f32
    return _exp_neg_f64


@njit(cache=CACHE, fastmath=FASTMATH, error_model="numpy", inline="always")
def _log_normal(x):
    """log(x) for a positive, finite, normal float64 x (no calls, no branches).

    x = 2**e * m with m in [sqrt(2)/2, sqrt(2)); log m = 2 atanh(s),
    s = (m - 1) / (m + 1), |s| < 0.172, summed to s**19 (error below 1e-17).
    """
    b = _f64_as_i64(x)
    e = np.float64(b >> 52) - 1023.0
    m = _i64_as_f64((b & _MANTISSA) | (1023 << 52))
    big = m > _SQRT2
    m = m * 0.5 if big else m
    e = e + 1.0 if big else e
    s = (m - 1.0) / (m + 1.0)
    z = s * s
    q = 1.0 / 19.0
    q = q * z + 1.0 / 17.0
    q = q * z + 1.0 / 15.0
    q = q * z + 1.0 / 13.0
    q = q * z + 1.0 / 11.0
    q = q * z + 1.0 / 9.0
    q = q * z + 1.0 / 7.0
    q = q * z + 1.0 / 5.0
    q = q * z + 1.0 / 3.0
    q = q * z + 1.0
    return 2.0 * s * q + e * _LN2


@njit(cache=CACHE, fastmath=FASTMATH, error_model="numpy")
def _normalise_block(lp, nb, w, start, has_w, wrow, mx, ssum):
    """Turn log probabilities lp[:, :nb] into weighted responsibilities.

    Returns (sum_r w_r * logsumexp_r, number of rows with no finite density).
    wrow[:nb] (float64) receives the row weights (0 for rows without a finite
    density).  mx and ssum are scratch of lp's type: float32 data keep their
    log probabilities, exponentials and responsibilities in float32 (twice the
    SIMD width); the log-likelihood is summed in float64.
    """
    K = lp.shape[0]
    for r in range(nb):
        mx[r] = lp[0, r]
        ssum[r] = 0.0
    for k in range(1, K):
        for r in range(nb):
            v = lp[k, r]
            mx[r] = v if v > mx[r] else mx[r]
    nbad = 0
    for r in range(nb):
        wrow[r] = w[start + r] if has_w else 1.0
        m = mx[r]
        if not (m > -np.inf) or m == np.inf:
            # no component gives this row a finite density
            nbad += 1
            wrow[r] = 0.0
            mx[r] = 0.0
            for k in range(K):
                lp[k, r] = -np.inf
    for k in range(K):
        for r in range(nb):
            e = _exp_neg(lp[k, r] - mx[r])
            lp[k, r] = e
            ssum[r] += e
    ll = 0.0
    for r in range(nb):
        # ssum >= 1 for a row with a finite density (its largest term is
        # exp(0)); the others have wrow = mx = 0 and ssum = 0
        wr = wrow[r]
        sr = np.float64(ssum[r]) if wr != 0.0 else 1.0
        ll += wr * (np.float64(mx[r]) + _log_normal(sr))
        ssum[r] = wr / sr
    for k in range(K):
        for r in range(nb):
            lp[k, r] *= ssum[r]
    return ll, nbad


@njit(cache=CACHE, fastmath=FASTMATH, error_model="numpy")
def _gram_tiles(u, ua, ub, v, i, nb, s2, zero):
    """s2[i, j] += sum_r u[ua, r] v[j, r] and, if i + 1 < d, s2[i + 1, j] +=
    sum_r u[ub, r] v[j, r], for j >= i (d = v.shape[0]).

    Register tiles of 2 rows x 4 columns: six loads feed eight multiply-adds.
    The sums over one block are formed in the data's precision (``zero`` is a
    zero of that type, as are u and v) and added to the float64 accumulator
    s2.  Row ub of u is read (not stored) even when i + 1 == d.
    """
    d = v.shape[0]
    two = i + 1 < d
    j = i
    while j + 3 < d:
        c00 = zero
        c01 = zero
        c02 = zero
        c03 = zero
        if two:
            c10 = zero
            c11 = zero
            c12 = zero
            c13 = zero
            for r in range(nb):
                u0 = u[ua, r]
                u1 = u[ub, r]
                v0 = v[j, r]
                v1 = v[j + 1, r]
                v2 = v[j + 2, r]
                v3 = v[j + 3, r]
                c00 += u0 * v0
                c01 += u0 * v1
                c02 += u0 * v2
                c03 += u0 * v3
                c10 += u1 * v0
                c11 += u1 * v1
                c12 += u1 * v2
                c13 += u1 * v3
            s2[i + 1, j] += c10
            s2[i + 1, j + 1] += c11
            s2[i + 1, j + 2] += c12
            s2[i + 1, j + 3] += c13
        else:
            for r in range(nb):
                u0 = u[ua, r]
                c00 += u0 * v[j, r]
                c01 += u0 * v[j + 1, r]
                c02 += u0 * v[j + 2, r]
                c03 += u0 * v[j + 3, r]
        s2[i, j] += c00
        s2[i, j + 1] += c01
        s2[i, j + 2] += c02
        s2[i, j + 3] += c03
        j += 4
    while j < d:
        c00 = zero
        c10 = zero
        for r in range(nb):
            vj = v[j, r]
            c00 += u[ua, r] * vj
            c10 += u[ub, r] * vj
        s2[i, j] += c00
        if two:
            s2[i + 1, j] += c10
        j += 1


@njit(cache=CACHE, fastmath=FASTMATH, error_model="numpy")
def _moments_full(xt, nb, centre, sq, z, s1, s2, zero):
    """With g = sq[:nb] the square roots of the row weights (responsibilities):
    s1[i] += sum_r g^2 (x_i - c_i); s2[i, j] += sum_r g^2 (x_i - c_i)(x_j - c_j)
    for j >= i (entries just below the diagonal may also be written; only the
    upper triangle is used).

    The scaled rows z = (x - c) g are formed once (z is (d, block) scratch),
    so that s2 = z z^T reads one array for both factors of the tiles
    (:func:`_gram_tiles`), with no weighted copy per row pair.  Sums over a
    block are in the data's precision (``zero``; sq and z have that type too),
    added to the float64 accumulators s1, s2: float32 data gets twice the SIMD
    width, and the centred terms cannot make a variance negative.
    """
    d = z.shape[0]
    for i in range(d):
        m = centre[i]
        a = zero
        for r in range(nb):
            g = sq[r]
            t = (xt[i, r] - m) * g
            z[i, r] = t
            a += g * t
        s1[i] += a
    for i in range(0, d, 2):
        _gram_tiles(z, i, min(i + 1, d - 1), z, i, nb, s2, zero)


@njit(cache=CACHE, fastmath=FASTMATH, error_model="numpy")
def _moments_weighted(resp, nb, diff, wd, s1, s2, zero):
    """s1[i] += sum_r resp[r] diff[i, r]; s2[i, j] += sum_r resp[r] diff[i, r] diff[j, r]
    for j >= i (entries just below the diagonal may also be written; only the
    upper triangle is used).

    Used for few features (d < SCALED_MIN_D), where the square roots of
    :func:`_moments_full` cost more than they save: rows i, i + 1 weighted by
    resp go to wd (2, block), then :func:`_gram_tiles` against diff.  Types
    as in :func:`_moments_full` (resp and wd in the data's precision).
    """
    d = diff.shape[0]
    for i in range(0, d, 2):
        a0 = zero
        a1 = zero
        if i + 1 < d:
            for r in range(nb):
                t0 = resp[r] * diff[i, r]
                t1 = resp[r] * diff[i + 1, r]
                wd[0, r] = t0
                wd[1, r] = t1
                a0 += t0
                a1 += t1
            s1[i] += a0
            s1[i + 1] += a1
        else:
            for r in range(nb):
                t0 = resp[r] * diff[i, r]
                wd[0, r] = t0
                a0 += t0
            s1[i] += a0
        _gram_tiles(wd, 0, 1, diff, i, nb, s2, zero)


@njit(cache=CACHE, fastmath=FASTMATH, error_model="numpy")
def _moments_small(xt, nb, centre, g, s1, s2, zero):
    """_moments_weighted for one or two features: one sweep over the points
    with every sum in a register.  g[:nb] are the responsibilities."""
    d = xt.shape[0]
    m0 = centre[0]
    a0 = zero
    b00 = zero
    if d == 2:
        m1 = centre[1]
        a1 = zero
        b01 = zero
        b11 = zero
        for r in range(nb):
            t0 = xt[0, r] - m0
            t1 = xt[1, r] - m1
            u0 = g[r] * t0
            u1 = g[r] * t1
            a0 += u0
            a1 += u1
            b00 += u0 * t0
            b01 += u0 * t1
            b11 += u1 * t1
        s1[1] += a1
        s2[0, 1] += b01
        s2[1, 1] += b11
    else:
        for r in range(nb):
            t0 = xt[0, r] - m0
            u0 = g[r] * t0
            a0 += u0
            b00 += u0 * t0
    s1[0] += a0
    s2[0, 0] += b00


@njit(cache=CACHE, fastmath=FASTMATH, error_model="numpy")
def _component_small(xt, nb, resp, k, ref, diff, wd, rf, zero, s1, s2):
    """Moments of component k, one or two features (:func:`_moments_small`)."""
    _moments_small(xt, nb, ref[k], resp[k], s1[k], s2[k], zero)


@njit(cache=CACHE, fastmath=FASTMATH, error_model="numpy")
def _component_weighted(xt, nb, resp, k, ref, diff, wd, rf, zero, s1, s2):
    """Moments of component k, 2 < d < SCALED_MIN_D: rows centred at ref[k],
    then :func:`_moments_weighted`."""
    d = xt.shape[0]
    for i in range(d):
        m = ref[k, i]
        for r in range(nb):
            diff[i, r] = xt[i, r] - m
    for r in range(nb):
        rf[r] = resp[k, r]
    _moments_weighted(rf, nb, diff, wd, s1[k], s2[k], zero)


@njit(cache=CACHE, fastmath=FASTMATH, error_model="numpy")
def _component_scaled(xt, nb, resp, k, ref, diff, wd, rf, zero, s1, s2):
    """Moments of component k, d >= SCALED_MIN_D: rows scaled by the square
    roots of the responsibilities (:func:`_moments_full`)."""
    for r in range(nb):
        rf[r] = np.sqrt(resp[k, r])
    _moments_full(xt, nb, ref[k], rf, diff, s1[k], s2[k], zero)


def _accumulate_full(xt, nb, resp, ref, tag, diff, wd, rf, zero, nk, s1, s2):
    """Add one block's statistics to (nk, s1, s2) for the full type.

    resp[k, :nb] are the (weighted) responsibilities; s1[k] and s2[k] are
    taken around ref[k] (upper triangle of s2 only).  The dtype of ``tag``
    (:func:`class_tag`) picks the moments' code path when the kernel is
    compiled.  diff (d, block), wd (2, block) and rf (block,) in the data's
    type are scratch; zero is a zero of that type.
    """
    raise NotImplementedError("compiled code only")


@overload(_accumulate_full,
          jit_options=dict(fastmath=FASTMATH, error_model="numpy"))
def _accumulate_full_typed(xt, nb, resp, ref, tag, diff, wd, rf, zero, nk, s1, s2):
    component = (_component_small, _component_weighted, _component_scaled)[_tag_class(tag)]

    def impl(xt, nb, resp, ref, tag, diff, wd, rf, zero, nk, s1, s2):
        K = ref.shape[0]
        for k in range(K):
            tot = 0.0
            for r in range(nb):
                tot += resp[k, r]
            if tot == 0.0:
                # all responsibilities of this block are exactly zero: its
                # statistics would add exact zeros
                continue
            nk[k] += tot
            component(xt, nb, resp, k, ref, diff, wd, rf, zero, s1, s2)

    return impl


@njit(cache=CACHE, fastmath=FASTMATH, error_model="numpy")
def _accumulate_tied(xt, nb, resp, wrow, ref, ref2, diff, rf, zero, tied_s1, nk, s1, s2):
    """Add one block's statistics for the tied type: nk[k] and s1[k] (around
    ref[k]) per component, and to s2[0] the weighted total scatter around
    ref2 (upper triangle), from the row weights wrow[:nb]; tied_s1 (d,)
    receives the matching first moment around ref2 (unused by the M-step).
    Scratch as in :func:`_accumulate_full`."""
    K, d = ref.shape
    for k in range(K):
        tot = 0.0
        for r in range(nb):
            tot += resp[k, r]
        if tot == 0.0:
            continue
        nk[k] += tot
        for r in range(nb):
            rf[r] = resp[k, r]
        for i in range(d):
            m = ref[k, i]
            a = zero
            for r in range(nb):
                a += rf[r] * (xt[i, r] - m)
            s1[k, i] += a
    for r in range(nb):
        rf[r] = np.sqrt(wrow[r])
    _moments_full(xt, nb, ref2, rf, diff, tied_s1, s2[0], zero)


@njit(cache=CACHE, fastmath=FASTMATH, error_model="numpy")
def _accumulate_diag(xt, nb, resp, ref, rf, zero, nk, s1, s2):
    """Add one block's statistics to (nk, s1, s2) for the diag/spherical
    types: s1[k, i] = sum_r resp (x_i - ref_ki), s2[k, i] = sum_r resp
    (x_i - ref_ki)^2.  Two features per sweep share the loads of resp; block
    sums in the data's precision (rf scratch, zero of that type)."""
    K, d = ref.shape
    for k in range(K):
        tot = 0.0
        for r in range(nb):
            tot += resp[k, r]
        if tot == 0.0:
            continue
        nk[k] += tot
        for r in range(nb):
            rf[r] = resp[k, r]
        i = 0
        while i + 1 < d:
            m0 = ref[k, i]
            m1 = ref[k, i + 1]
            a0 = zero
            b0 = zero
            a1 = zero
            b1 = zero
            for r in range(nb):
                g = rf[r]
                t0 = xt[i, r] - m0
                t1 = xt[i + 1, r] - m1
                u0 = g * t0
                u1 = g * t1
                a0 += u0
                b0 += u0 * t0
                a1 += u1
                b1 += u1 * t1
            s1[k, i] += a0
            s2[k, i] += b0
            s1[k, i + 1] += a1
            s2[k, i + 1] += b1
            i += 2
        if i < d:
            m0 = ref[k, i]
            a0 = zero
            b0 = zero
            for r in range(nb):
                t0 = xt[i, r] - m0
                u0 = rf[r] * t0
                a0 += u0
                b0 += u0 * t0
            s1[k, i] += a0
            s2[k, i] += b0


@njit(cache=CACHE, error_model="numpy")
def _add_into(dst, src):
    """dst += src elementwise, as a plain serial loop.

    In a ``parallel=True`` kernel an array expression such as ``dst += src``
    becomes a parallel region of its own; merging hundreds of partials that
    way costs a thread barrier each (seconds on a busy machine).
    """
    a = dst.reshape(-1)
    b = src.reshape(-1)
    for i in range(a.shape[0]):
        a[i] += b[i]


@njit(cache=CACHE, error_model="numpy")
def _merge_tasks(p_nk, p_s1, p_s2, p_ll, p_bad, out_nk, out_s1, out_s2, out_ll):
    """Add the tasks' partial statistics to the accumulators, in task order."""
    for t in range(p_nk.shape[0]):
        _add_into(out_nk, p_nk[t])
        _add_into(out_s1, p_s1[t])
        _add_into(out_s2, p_s2[t])
        out_ll[0] += p_ll[t]
        out_ll[1] += p_bad[t]


# ---------------------------------------------------------------------------
# E-step + statistics: one pass over the rows
#
# One parallel kernel per covariance family; the full family's feature class
# is the dtype of its tag argument, so each class compiles (and caches) a
# kernel holding only its own code path.  The block helpers are functions of
# their own, each compiled once per argument types and linked into the
# kernels that call it (no IR inlining: typing and lowering one huge body
# was most of a first fit's compile time).
#
# Numba links a copy of each helper, and of the parallel region, into every
# kernel, and a process that compiled them runs the helpers' own copies
# while one that loads the kernel from the cache runs the linked copies;
# the two are optimised separately and can differ in the last bits.  So a
# kernel that is not in the cache is compiled in a child process and then
# loaded from the cache here (see _Kernel.variant): every process runs the
# same machine code.
# ---------------------------------------------------------------------------


def _sig_pass(dt, ro, P_ndim=3, extra=()):
    return types.void(
        _arr(dt, 2, ro), _arr(_f8, 1), _arr(dt, 2), _arr(dt, P_ndim), _arr(_f8, 1),
        _arr(dt, 1), _arr(dt, 2), _i8, _i8, _arr(_f8, 1), _arr(_f8, 2),
        _arr(_f8, P_ndim), _arr(_f8, 1), *extra,
    )


def _sig_pass_full(dt, ro, tag):
    return _sig_pass(dt, ro, 3, (tag,))


def _sig_pass_tied(dt, ro):
    return _sig_pass(dt, ro, 3)


def _sig_pass_diag(dt, ro):
    return _sig_pass(dt, ro, 2)


@kernel(_sig_pass_full, tagged=True, parallel=True, cache=CACHE, fastmath=FASTMATH,
        shapes=("n d", "n|0", "K d", "K d d", "K", "d", "K d", "block", "task", "K", "K d",
                "K d d", "2", "tag"))
def pass_full(X, w, means, P, log_norm, ref2, proj, block, task_rows, out_nk, out_s1,
              out_s2, out_ll, tag):
    """One EM pass for the full covariance type.

    Parameters
    ----------
    X : (n, d) float32/float64
    w : (n,) float64 sample weights, or an empty array for unit weights
    means : (K, d), same dtype as X; also the reference of the statistics
    P : (K, d, d) upper-triangular precision Cholesky factors
    log_norm : (K,) log weight + log det P_k - d/2 log(2 pi)
    ref2 : (d,) centre of the E-step (the mixture mean)
    proj : (K, d) P_k^T (mu_k - ref2)
    block, task_rows : rows per block and per parallel task
    out_nk, out_s1, out_s2 : (K,), (K, d), (K, d, d) float64 accumulators; each
        task's statistics are added to them in task order (upper triangle of
        s2 only)
    out_ll : (2,) float64 accumulator: [sum of weighted log-likelihoods,
        number of rows without a finite density]
    tag : the feature-class tag for d (:func:`class_tag`)
    """
    n, d = X.shape
    K = means.shape[0]
    has_w = w.shape[0] > 0
    ntasks = (n + task_rows - 1) // task_rows
    p_nk = np.zeros((ntasks, K))
    p_s1 = np.zeros((ntasks, K, d))
    p_s2 = np.zeros((ntasks, K, d, d))
    p_ll = np.zeros(ntasks)
    p_bad = np.zeros(ntasks, dtype=np.int64)
    for t in prange(ntasks):
        xt = np.empty((d, block), dtype=X.dtype)
        diff = np.empty((d, block), dtype=X.dtype)
        acc = np.empty(block, dtype=X.dtype)
        acc2 = np.empty(block, dtype=X.dtype)
        maha = np.empty(block, dtype=X.dtype)
        lp = np.empty((K, block), dtype=X.dtype)
        wrow = np.empty(block)
        mx = np.empty(block, dtype=X.dtype)
        ssum = np.empty(block, dtype=X.dtype)
        wd = np.empty((2, block), dtype=X.dtype)
        rf = np.empty(block, dtype=X.dtype)
        zero = np.zeros(1, dtype=X.dtype)[0]
        lo = t * task_rows
        hi = min(n, lo + task_rows)
        ll = 0.0
        nbad = 0
        for start in range(lo, hi, block):
            nb = min(block, hi - start)
            _load_block(X, start, nb, xt)
            _logprob_block_full(xt, nb, ref2, proj, P, log_norm, diff, acc, acc2, maha, lp,
                                tag)
            bl, bb = _normalise_block(lp, nb, w, start, has_w, wrow, mx, ssum)
            ll += bl
            nbad += bb
            _accumulate_full(xt, nb, lp, means, tag, diff, wd, rf, zero, p_nk[t],
                             p_s1[t], p_s2[t])
        p_ll[t] = ll
        p_bad[t] = nbad
    _merge_tasks(p_nk, p_s1, p_s2, p_ll, p_bad, out_nk, out_s1, out_s2, out_ll)


@kernel(_sig_pass_tied, parallel=True, cache=CACHE, fastmath=FASTMATH,
        shapes=("n d", "n|0", "K d", "1 d d", "K", "d", "K d", "block", "task", "K", "K d",
                "1 d d", "2"))
def pass_tied(X, w, means, P, log_norm, ref2, proj, block, task_rows, out_nk, out_s1,
              out_s2, out_ll):
    """One EM pass for the tied covariance type: as :func:`pass_full` with P
    (1, d, d) the shared precision factor, proj = P^T (mu_k - ref2), and
    out_s2 (1, d, d) receiving the weighted total scatter around ref2."""
    n, d = X.shape
    K = means.shape[0]
    has_w = w.shape[0] > 0
    ntasks = (n + task_rows - 1) // task_rows
    p_nk = np.zeros((ntasks, K))
    p_s1 = np.zeros((ntasks, K, d))
    p_s2 = np.zeros((ntasks, 1, d, d))
    p_ll = np.zeros(ntasks)
    p_bad = np.zeros(ntasks, dtype=np.int64)
    for t in prange(ntasks):
        xt = np.empty((d, block), dtype=X.dtype)
        diff = np.empty((d, block), dtype=X.dtype)
        Y = np.empty((d, block), dtype=X.dtype)
        maha = np.empty(block, dtype=X.dtype)
        lp = np.empty((K, block), dtype=X.dtype)
        wrow = np.empty(block)
        mx = np.empty(block, dtype=X.dtype)
        ssum = np.empty(block, dtype=X.dtype)
        rf = np.empty(block, dtype=X.dtype)
        zero = np.zeros(1, dtype=X.dtype)[0]
        tied_s1 = np.zeros(d)
        lo = t * task_rows
        hi = min(n, lo + task_rows)
        ll = 0.0
        nbad = 0
        for start in range(lo, hi, block):
            nb = min(block, hi - start)
            _load_block(X, start, nb, xt)
            _logprob_block_tied(xt, nb, ref2, P[0], proj, log_norm, diff, Y, maha, lp)
            bl, bb = _normalise_block(lp, nb, w, start, has_w, wrow, mx, ssum)
            ll += bl
            nbad += bb
            _accumulate_tied(xt, nb, lp, wrow, means, ref2, diff, rf, zero, tied_s1,
                             p_nk[t], p_s1[t], p_s2[t])
        p_ll[t] = ll
        p_bad[t] = nbad
    _merge_tasks(p_nk, p_s1, p_s2, p_ll, p_bad, out_nk, out_s1, out_s2, out_ll)


@kernel(_sig_pass_diag, parallel=True, cache=CACHE, fastmath=FASTMATH,
        shapes=("n d", "n|0", "K d", "K d", "K", "d", "K d", "block", "task", "K", "K d",
                "K d", "2"))
def pass_diag(X, w, means, prec, log_norm, ref2, proj, block, task_rows, out_nk, out_s1,
              out_s2, out_ll):
    """One EM pass for the diagonal and spherical covariance types.

    ``prec`` (K, d) holds the square roots of the diagonal precisions (the
    spherical type passes its scalar broadcast over d); ref2 (d,) is the
    centre of the E-step and proj = (means - ref2) * prec.  Adds, in task order,
    to the accumulators out_nk (K,), out_s1 (K, d), out_s2 (K, d) (diagonal second
    moments around the means) and out_ll = [sum of weighted log-likelihoods,
    rows without a finite density].
    """
    n, d = X.shape
    K = means.shape[0]
    has_w = w.shape[0] > 0
    ntasks = (n + task_rows - 1) // task_rows
    p_nk = np.zeros((ntasks, K))
    p_s1 = np.zeros((ntasks, K, d))
    p_s2 = np.zeros((ntasks, K, d))
    p_ll = np.zeros(ntasks)
    p_bad = np.zeros(ntasks, dtype=np.int64)
    for t in prange(ntasks):
        xt = np.empty((d, block), dtype=X.dtype)
        diff = np.empty((d, block), dtype=X.dtype)
        maha = np.empty(block, dtype=X.dtype)
        lp = np.empty((K, block), dtype=X.dtype)
        wrow = np.empty(block)
        mx = np.empty(block, dtype=X.dtype)
        ssum = np.empty(block, dtype=X.dtype)
        rf = np.empty(block, dtype=X.dtype)
        zero = np.zeros(1, dtype=X.dtype)[0]
        lo = t * task_rows
        hi = min(n, lo + task_rows)
        ll = 0.0
        nbad = 0
        for start in range(lo, hi, block):
            nb = min(block, hi - start)
            _load_block(X, start, nb, xt)
            _logprob_block_diag(xt, nb, ref2, proj, prec, log_norm, diff, maha, lp)
            bl, bb = _normalise_block(lp, nb, w, start, has_w, wrow, mx, ssum)
            ll += bl
            nbad += bb
            _accumulate_diag(xt, nb, lp, means, rf, zero, p_nk[t], p_s1[t], p_s2[t])
        p_ll[t] = ll
        p_bad[t] = nbad
    _merge_tasks(p_nk, p_s1, p_s2, p_ll, p_bad, out_nk, out_s1, out_s2, out_ll)


def d_class(d):
    """The code path of the full type for d features (DCLASS_*)."""
    if d <= 2:
        return DCLASS_SMALL
    return DCLASS_WEIGHTED if d < SCALED_MIN_D else DCLASS_SCALED


def class_tag(d):
    """The tag array (empty; its dtype names the class) for d features."""
    return _TAGS[d_class(d)]


def class_name(tag):
    """'1-2 features', '3-5 features' or '6+ features' for a tag array."""
    return ("d<=2", f"2<d<{SCALED_MIN_D}", f"d>={SCALED_MIN_D}")[
        _TAG_DTYPES.index(tag.dtype.type)]


def _tag_class(tag):
    """DCLASS_* of a tag's Numba array type (at compile time)."""
    return [types.int8, types.int16, types.int32].index(tag.dtype)


# ---------------------------------------------------------------------------
# E-step only: per-row, per-component weighted log densities
# ---------------------------------------------------------------------------


def _sig_logprob(dt, ro, P_ndim=3, extra=()):
    return types.void(
        _arr(dt, 2, ro), _arr(dt, 2), _arr(dt, P_ndim), _arr(_f8, 1), _arr(dt, 1),
        _arr(dt, 2), _i8, _arr(_f8, 2), *extra,
    )


def _sig_logprob_full(dt, ro, tag):
    return _sig_logprob(dt, ro, 3, (tag,))


def _sig_logprob_tied(dt, ro):
    return _sig_logprob(dt, ro, 3)


def _sig_logprob_diag(dt, ro):
    return _sig_logprob(dt, ro, 2)


@njit(cache=CACHE, error_model="numpy")
def _store_logprob(lp, nb, start, out):
    """out[start + r, k] = lp[k, r] for r < nb."""
    K = lp.shape[0]
    for r in range(nb):
        for k in range(K):
            out[start + r, k] = lp[k, r]


@kernel(_sig_logprob_full, tagged=True, parallel=True, cache=CACHE, fastmath=FASTMATH,
        shapes=("n d", "K d", "K d d", "K", "d", "K d", "block", "n K", "tag"))
def logprob_full(X, means, P, log_norm, ref2, proj, block, out, tag):
    """out[n, k] = log w_k + log N(x_n | mu_k, Sigma_k) for the full type
    (ref2 and proj as in pass_full; the log densities in float64)."""
    n, d = X.shape
    K = means.shape[0]
    nblocks = (n + block - 1) // block
    for b in prange(nblocks):
        xt = np.empty((d, block), dtype=X.dtype)
        diff = np.empty((d, block), dtype=X.dtype)
        acc = np.empty(block, dtype=X.dtype)
        acc2 = np.empty(block, dtype=X.dtype)
        maha = np.empty(block, dtype=X.dtype)
        lp = np.empty((K, block), dtype=X.dtype)
        start = b * block
        nb = min(block, n - start)
        _load_block(X, start, nb, xt)
        _logprob_block_full(xt, nb, ref2, proj, P, log_norm, diff, acc, acc2, maha, lp,
                            tag)
        _store_logprob(lp, nb, start, out)


@kernel(_sig_logprob_tied, parallel=True, cache=CACHE, fastmath=FASTMATH,
        shapes=("n d", "K d", "1 d d", "K", "d", "K d", "block", "n K"))
def logprob_tied(X, means, P, log_norm, ref2, proj, block, out):
    """out[n, k] = log w_k + log N(x_n | mu_k, Sigma) for the tied type."""
    n, d = X.shape
    K = means.shape[0]
    nblocks = (n + block - 1) // block
    for b in prange(nblocks):
        xt = np.empty((d, block), dtype=X.dtype)
        diff = np.empty((d, block), dtype=X.dtype)
        Y = np.empty((d, block), dtype=X.dtype)
        maha = np.empty(block, dtype=X.dtype)
        lp = np.empty((K, block), dtype=X.dtype)
        start = b * block
        nb = min(block, n - start)
        _load_block(X, start, nb, xt)
        _logprob_block_tied(xt, nb, ref2, P[0], proj, log_norm, diff, Y, maha, lp)
        _store_logprob(lp, nb, start, out)


@kernel(_sig_logprob_diag, parallel=True, cache=CACHE, fastmath=FASTMATH,
        shapes=("n d", "K d", "K d", "K", "d", "K d", "block", "n K"))
def logprob_diag(X, means, prec, log_norm, ref2, proj, block, out):
    """out[n, k] = log w_k + log N(x_n | mu_k, diag) (diag/spherical; ref2 and
    proj as in pass_diag)."""
    n, d = X.shape
    K = means.shape[0]
    nblocks = (n + block - 1) // block
    for b in prange(nblocks):
        xt = np.empty((d, block), dtype=X.dtype)
        diff = np.empty((d, block), dtype=X.dtype)
        maha = np.empty(block, dtype=X.dtype)
        lp = np.empty((K, block), dtype=X.dtype)
        start = b * block
        nb = min(block, n - start)
        _load_block(X, start, nb, xt)
        _logprob_block_diag(xt, nb, ref2, proj, prec, log_norm, diff, maha, lp)
        _store_logprob(lp, nb, start, out)
