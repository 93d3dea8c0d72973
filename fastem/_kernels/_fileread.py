"""Rows read from a file inside a parallel task: the E-step kernels' file mode.

A stream from a ``.npy`` file used to be read by one prefetch thread while
the kernel's threads computed on the previous chunk.  On a machine whose
cores all run kernel threads, that reader took its time from one of them,
and every parallel region then waited for the slowed thread (Zen 3, 2
cores, 4e6 x 8 rows: 1.18-1.48x the in-memory iteration).  In file mode each
task reads its own rows with ``pread`` into a buffer of its own, right
before it computes on them: the copy is split between the threads as the
work is, and the rows are fresh in the core's caches when the task starts
(4,096 rows: 512 KiB at d = 16 float64).

``src`` is an int64 array of four: the file descriptor (negative: the rows
are the kernel's X, not a file), the byte offset of the first row in the
file, the number of rows (file mode), and an output, the number of tasks
whose read came short (the file shrank or could not be read); such a task
adds nothing.  The caller checks the file's identity before and after the
pass and raises if anything changed or any read came short.

``pread`` is called through an external symbol that the JIT resolves in the
running process (C library), so the kernels stay cacheable; on Windows there
is no ``pread`` and the helper reads nothing (file mode is never used there).
"""

import sys

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from ._machinery import FASTMATH, HELPER_CACHE

HAVE_PREAD = sys.platform != "win32"

# src's entries
SRC_FD, SRC_OFFSET, SRC_ROWS, SRC_SHORT = 0, 1, 2, 3


@intrinsic
def _pread_into(typingctx, fd, buf, byte_start, nbytes, offset):
    """pread(fd, buf's bytes + byte_start, nbytes, offset): the C library's
    count of bytes read, or -1 (errno is not looked at)."""
    if not isinstance(buf, types.Array) or buf.layout != "C":
        return None
    sig = types.int64(types.int64, buf, types.int64, types.int64, types.int64)

    def codegen(context, builder, signature, args):
        fdv, arr, start, nb, off = args
        if not HAVE_PREAD:
            return context.get_constant(types.int64, -1)
        ary = context.make_array(signature.args[1])(context, builder, arr)
        i8p = ir.IntType(8).as_pointer()
        data = builder.gep(builder.bitcast(ary.data, i8p), [start])
        i64 = ir.IntType(64)
        fnty = ir.FunctionType(i64, [ir.IntType(32), i8p, i64, i64])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "pread")
        return builder.call(fn, [builder.trunc(fdv, ir.IntType(32)), data, nb, off])

    return sig, codegen


# A failed pread (-1) is tried again this many times before the read counts
# as short: errno is not looked at, and a read interrupted by a signal
# (EINTR, possible on network and FUSE file systems) succeeds when repeated.
READ_TRIES = 3


@njit(cache=HELPER_CACHE, fastmath=FASTMATH, error_model="numpy")
def _read_task(src, lo, hi, tb):
    """Read rows lo:hi of the file described by ``src`` into tb[:hi - lo];
    True when every byte came (partial reads are continued; end of file, or
    READ_TRIES failures in a row, make the read short)."""
    d = tb.shape[1]
    item = tb.itemsize
    want = (hi - lo) * d * item
    if (hi - lo) > tb.shape[0]:
        return False
    where = src[SRC_OFFSET] + lo * d * item
    got = 0
    fails = 0
    while got < want:
        r = _pread_into(src[SRC_FD], tb, got, want - got, where + got)
        if r == 0:
            return False  # end of file
        if r < 0:
            fails += 1
            if fails >= READ_TRIES:
                return False
            continue
        fails = 0
        got += r
    return True


@njit(cache=HELPER_CACHE, fastmath=FASTMATH, error_model="numpy")
def _count_short(p_short, src):
    """src's output: the number of tasks whose read came short."""
    short = 0
    for t in range(p_short.shape[0]):
        short += p_short[t]
    src[SRC_SHORT] = short


def memory_src():
    """``src`` for rows given as the kernel's X (no file)."""
    return np.array([-1, 0, 0, 0], dtype=np.int64)


def file_src(fd, offset, rows):
    """``src`` for ``rows`` rows read from ``fd`` from byte ``offset``."""
    return np.array([fd, offset, rows, 0], dtype=np.int64)
