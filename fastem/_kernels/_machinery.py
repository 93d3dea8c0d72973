"""Compiling, caching and checking the kernels: the explicitly typed, lazily
compiled ``kernel`` decorator, argument checks, the target CPU.

Set the environment variable ``FASTEM_NUMBA_CACHE=0`` to disable the on-disk
compilation cache.
"""

import os
import threading

import numpy as np
from numba import njit, types
from numba.np.numpy_support import from_dtype as numba_from_dtype

from ._classes import _TAGS, class_tag

# Helpers are not cached on their own: they are compiled into the kernels
# that call them, and the kernels are cached with the package's digest (see
# _package_digest), so a changed helper can never be linked in stale.
HELPER_CACHE = False
CACHE = os.environ.get("FASTEM_NUMBA_CACHE", "1").lower() not in ("0", "false", "no")
# A safe subset of fast-math: no 'nnan'/'ninf' (-inf is a legitimate log
# probability) and no 'afn' (approximate exp/log).  'reassoc' lets LLVM
# vectorise the reductions over points; the compiled order is fixed, so results
# stay deterministic.
FASTMATH = {"nsz", "arcp", "contract", "reassoc"}
# Elements added to each row of a block's (features or components) x block
# scratch arrays.  Rows of 128 or 256 float64 (1 or 2 KiB) would start at
# multiples of 1 KiB, so every fourth or second row would fall in the same
# L1 cache sets; 16 more elements keep the rows 64-byte aligned and spread
# them over the sets.  The extra elements are never read.
SCRATCH_PAD = 16

_ISA = {}


def target_has_avx512():
    """Whether the code Numba generates in this process uses AVX-512 (the
    target's features: the host's, or NUMBA_CPU_NAME / NUMBA_CPU_FEATURES).

    Read when a kernel is compiled, to choose code paths per instruction set
    (16 vector registers of 4 float64 lanes with AVX2, 32 of 8 with AVX-512).
    Kernels cached for one target are never loaded for another: Numba's cache
    index includes the target CPU and its features.
    """
    if "avx512" not in _ISA:
        try:
            from numba.core.registry import cpu_target

            features = cpu_target.target_context.codegen()._get_host_cpu_features()
            if features:
                _ISA["avx512"] = "+avx512f" in features.split(",")
            else:
                # features left to the CPU's name (NUMBA_CPU_FEATURES=""): ask
                # LLVM for the code of one 8-lane float64 operation
                _ISA["avx512"] = _probe_zmm()
        except Exception:  # noqa: BLE001 - Numba internals moved: the AVX2 paths are valid anywhere
            _ISA["avx512"] = False
    return _ISA["avx512"]


def _probe_zmm():
    """Whether LLVM, for Numba's target, compiles an 8-lane float64 addition
    to 512-bit registers (no pointers in the IR: any LLVM version parses it)."""
    import llvmlite.binding as ll
    from numba.core.registry import cpu_target

    codegen = cpu_target.target_context.codegen()
    ir = ("define <8 x double> @fastem_isa_probe(<8 x double> %a, <8 x double> %b) {\n"
          "  %c = fadd <8 x double> %a, %b\n"
          "  ret <8 x double> %c\n}\n")
    mod = ll.parse_assembly(ir)
    mod.verify()
    return "zmm" in codegen._tm.emit_assembly(mod)



def _arr(dtype, ndim, readonly=False):
    return types.Array(dtype, ndim, "C", readonly=readonly)


_VARIANT_LOCK = threading.RLock()

# The kernels release the GIL (nogil): the read-ahead thread of a stream
# reads and checks the next chunk while a kernel works on this one, and fits
# in several threads (Dask's threaded workers) compute at once.  Numba's
# workqueue threading layer cannot run parallel regions launched from two
# threads at once (it aborts the process), so while it is the active layer,
# or before any layer was chosen, parallel kernels are launched one at a
# time under this lock.  The OpenMP and TBB layers need no lock.
_LAUNCH_LOCK = threading.Lock()
_LAYER = []


def _launch_needs_lock():
    """Whether a parallel kernel must take _LAUNCH_LOCK: the workqueue layer
    is active, or no layer was chosen yet (the first launch chooses)."""
    if _LAYER:
        return _LAYER[0] == "workqueue"
    import numba

    try:
        layer = numba.threading_layer()
    except ValueError:
        return True
    _LAYER.append(layer)
    return layer == "workqueue"


def _package_digest():
    """SHA-256 of every source file of this package.

    Numba keys a cached function by its own file's time stamp and bytecode
    only: a kernel whose helpers (in other files of this package) changed
    would be loaded stale.  The kernels' cache entries carry this digest
    too, so that any change to the package recompiles them.
    """
    import hashlib

    folder = os.path.dirname(os.path.abspath(__file__))
    h = hashlib.sha256()
    for name in sorted(os.listdir(folder)):
        if name.endswith(".py"):
            with open(os.path.join(folder, name), "rb") as f:
                h.update(name.encode() + b"\0" + f.read())
    return h.hexdigest()


_CACHE_CLASS = []


def _package_cache_class():
    """A numba FunctionCache whose index keys include the package digest."""
    if not _CACHE_CLASS:
        from numba.core.caching import FunctionCache

        digest = _package_digest()

        class PackageCache(FunctionCache):
            def _index_key(self, sig, codegen):
                return super()._index_key(sig, codegen) + (digest,)

        _CACHE_CLASS.append(PackageCache)
    return _CACHE_CLASS[0]


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

    LLVM may vectorise a read-only variant of a kernel differently, which
    would change the last bits of floating-point sums: read-only data (memmap
    chunks) are copied into a writable array instead (callers hand kernels
    bounded chunks), so only writable variants are ever compiled.
    """

    def __init__(self, py_func, build, options, tagged=False, shapes=None, dtypes=None):
        self.py_func = py_func
        # the data dtypes this kernel has variants for (None: float32 and float64)
        self.dtypes = None if dtypes is None else tuple(np.dtype(t) for t in dtypes)
        self._shapes = shapes
        self._build = build
        self._options = options
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
                    from . import _aot

                    if not self.in_cache(dtype, readonly, tag):
                        _aot.announce(self.__name__, dtype)
                        _aot.compile_in_child([(self.__name__, dtype, readonly, tag)])
                    else:
                        # cached, perhaps by a background child that has
                        # finished since: that child is done with it
                        _aot.settle((self.__name__, dtype, readonly, tag))
                    options = dict(self._options)
                    cached = options.pop("cache", False)
                    fn = njit(**options)(self.py_func)
                    if cached:
                        fn._cache = self._function_cache()
                    fn.compile(self._signature(dtype, readonly, tag))
                    self._variants[key] = fn
        return fn

    def _signature(self, dtype, readonly, tag=None):
        nbtype = types.float32 if np.dtype(dtype) == np.float32 else types.float64
        extra = () if tag is None else (_arr(numba_from_dtype(tag.dtype), 1),)
        return self._build(nbtype, bool(readonly), *extra)

    def _function_cache(self):
        return _package_cache_class()(self.py_func)

    def loaded(self, dtype, readonly=False, tag=None):
        """Whether this process has that variant ready (no file is read)."""
        return (np.dtype(dtype).char, bool(readonly),
                None if tag is None else tag.dtype.char) in self._variants

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

    def __call__(self, X, *args):
        check_arguments(self.__name__, self._shapes, (X,) + args)
        if not X.flags.writeable:
            X = np.array(X, order="C", copy=True)
        tag = args[-1] if self._tagged else None
        fn = self.variant(X.dtype, False, tag)
        if self._options.get("parallel") and _launch_needs_lock():
            with _LAUNCH_LOCK:
                return fn(X, *args)
        return fn(X, *args)

    def variants(self, dtypes=(np.float32, np.float64)):
        """The (dtype, readonly, tag) keys of every variant fits can use."""
        out = []
        for dt in dtypes:
            if self.dtypes is not None and np.dtype(dt) not in self.dtypes:
                continue
            for tag in (_TAGS if self._tagged else (None,)):
                out.append((np.dtype(dt), False, tag))
        return out


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
    - ``"block"``: a positive int; ``"task"``: a positive multiple of block
      (or a positive int when no block comes before it); ``"flag"``: 0 or 1;
    - ``"tag"``: one of the feature-class tag arrays, matching d;
    - ``"src"``: the E-step kernels' row source (:mod:`._fileread`), a
      writable int64 array of four: the rows are X's (``x`` of them), or, in
      file mode, X has no rows and the pass reads ``src[2]`` rows from a
      file; optional weights (``0|m``) must have that many rows.

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
        if spec == "flag":
            if isinstance(a, bool) or not isinstance(a, (int, np.integer)) or a not in (0, 1):
                raise KernelArgumentError(f"{where} must be 0 or 1, got {a!r}")
            continue
        if spec in ("block", "task"):
            if isinstance(a, bool) or not isinstance(a, (int, np.integer)) or a < 1:
                raise KernelArgumentError(f"{where} must be a positive int, got {a!r}")
            if spec == "task" and "block" in env and a % env["block"]:
                raise KernelArgumentError(
                    f"{where}: rows per task {a} is not a multiple of the block {env['block']}")
            env[spec] = int(a)
            continue
        if not isinstance(a, np.ndarray):
            raise KernelArgumentError(f"{where} must be an ndarray, got {type(a).__name__}")
        if spec == "src":
            _check_src(where, a, env)
            continue
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


def _check_src(where, src, env):
    """The ``src`` spec of :func:`check_arguments`."""
    if (src.shape != (4,) or src.dtype != np.int64 or not src.flags.c_contiguous
            or not src.flags.writeable):
        raise KernelArgumentError(f"{where} must be a writable int64 array of 4 (the row "
                                  f"source), got {src.dtype} of shape {src.shape}")
    if src[0] < 0:
        rows = env["x"]
    else:
        if env["x"] != 0:
            raise KernelArgumentError(f"{where}: rows read from a file, but X has "
                                      f"{env['x']} rows (expected none)")
        if src[0] >= 2**31:
            raise KernelArgumentError(f"{where}: file descriptor {src[0]} is not a C int")
        if src[1] < 0 or src[2] < 0:
            raise KernelArgumentError(f"{where}: negative file offset or row count "
                                      f"({src[1]}, {src[2]})")
        rows = int(src[2])
    if "m" in env and env["m"] != rows:
        raise KernelArgumentError(f"{where}: {env['m']} sample weights for {rows} rows")


def kernel(build, tagged=False, shapes=None, dtypes=None, **options):
    """Decorator: a lazily compiled, explicitly typed, cached Numba kernel.

    ``tagged=True``: the last argument is a feature-class tag array
    (:func:`class_tag`) whose dtype selects the compiled variant.

    ``shapes``: one entry per argument, checked in Python before every call
    (:func:`check_arguments`), so that no argument can make the kernel read
    or write outside an array.

    ``dtypes``: the data dtypes the kernel has variants for (default: float32
    and float64), as :meth:`_Kernel.variants` lists them."""
    options.setdefault("cache", CACHE)
    # the GIL is released while a kernel runs (see _LAUNCH_LOCK)
    options.setdefault("nogil", True)
    # no Python exceptions from arithmetic (a division by zero gives inf/nan):
    # the checks would also keep LLVM from vectorising the loops
    options.setdefault("error_model", "numpy")

    def wrap(py_func):
        return _Kernel(py_func, build, options, tagged, shapes, dtypes)

    return wrap


def _distinct_njit(py_func, name):
    """``njit`` of a function made by a factory, under a name of its own.

    Numba names a compiled function's symbol after its qualified name (and a
    per-process counter), and every variant a factory makes has the same one
    (``_make_distances.<locals>._distances``).  A kernel loaded from the cache
    carries its own copy of each helper; two kernels loaded into one process
    whose copies of two variants got the same symbol (the counters of the two
    compiling processes agreed) shared one copy: ``logprob_spherical`` then
    ran the diagonal type's scaled distances (seen in CI: wrong float32
    log densities, depending on which kernels the process had loaded
    before).  A name per variant gives each its own symbol.
    """
    py_func.__name__ = name
    py_func.__qualname__ = name
    return njit(cache=HELPER_CACHE, fastmath=FASTMATH, error_model="numpy")(py_func)
