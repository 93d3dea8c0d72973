"""``.npy`` files: the header parser and the ``pread`` reader."""

import ast
import contextlib
import math
import os
import struct

import numpy as np

from ._base import (
    _as_list,
    _Backend,
    _check_numeric,
    _check_shape,
    _column_take,
    _resolve_columns,
)
from ._watch import _changed_error, _FileWatch, _read_error


def _read_npy_header(f, path):
    """Parse a ``.npy`` header: (shape, fortran_order, dtype, data offset).

    Every failure (not a ``.npy`` file, a truncated or garbled header) is a
    ValueError naming ``path``.
    """
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            shape, fortran, dtype = _read_npy_header_utf8(f, path)
    except OSError as exc:
        raise _read_error(path, exc) from exc
    except Exception as exc:  # ValueError, SyntaxError, tokenize.TokenError, ...
        if isinstance(exc, ValueError) and path in str(exc):
            raise
        raise ValueError(
            f"{path} is not a readable .npy file (its header is truncated or "
            f"invalid): {exc}"
        ) from exc
    return tuple(int(s) for s in shape), bool(fortran), dtype, f.tell()


if hasattr(os, "preadv"):

    def _pread(f, view, offset):
        return os.preadv(f.fileno(), [view], offset)

else:  # pragma: no cover - platforms without preadv (Windows)

    def _pread(f, view, offset):
        f.seek(offset)
        return f.readinto(view)


def _read_at(f, buf, offset):
    """Fill the contiguous array ``buf`` from byte ``offset`` of the raw file
    ``f``; returns the number of bytes read (fewer only at the end of file)."""
    view = memoryview(buf.reshape(-1).view(np.uint8))
    want = len(view)
    got = 0
    while got < want:
        n = _pread(f, view[got:], offset + got)
        if not n:
            break
        got += n
    return got


class _NpyBackend(_Backend):
    """A ``.npy`` file read block by block into fresh buffers with ``pread``.

    No memory map is used, so a file truncated while it is read gives a
    ValueError naming it instead of a bus error. C-ordered files are read
    one contiguous run of rows per block. Fortran-ordered files store each
    column contiguously: a block of rows is read as one run per (selected)
    column, at that column's offset, into a column-major buffer, so memory
    stays bounded by the block size as well.

    The file's identity (size, modification time, inode, and the header's
    shape, dtype and order) is recorded when the source is opened and checked
    at the start and the end of every pass.
    """

    def __init__(self, path, columns):
        self.path = path
        self.name = path
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            shape, fortran, dtype, offset = _read_npy_header(f, path)
        if dtype.hasobject or dtype.names is not None or dtype.subdtype is not None:
            raise TypeError(
                f"{path} holds a structured or object array (dtype {dtype}); fastem "
                "reads plain numeric 2-D arrays only"
            )
        _check_numeric(dtype, path)
        _check_shape(shape, path)
        self.offset = offset
        self.expected_size = offset + math.prod(shape) * dtype.itemsize
        if st.st_size < self.expected_size:
            raise ValueError(
                f"{path} is truncated: its header describes a {dtype} array of shape "
                f"{tuple(shape)}, which needs {self.expected_size} bytes, but the file "
                f"has only {st.st_size} bytes. The file was probably not written "
                "completely; write it again."
            )
        self.watch = _FileWatch(path, st)
        self.file_dtype = dtype
        self.fortran = fortran
        self.shape = shape
        self.n_samples = shape[0]
        self.positions = _resolve_columns(columns, None, shape[1], path)
        self.columns = _as_list(columns)
        self.n_features = shape[1] if self.positions is None else len(self.positions)
        self.source_dtype = dtype

    def _header_changes(self):
        """Differences between the file's header now and when it was opened."""
        try:
            with open(self.path, "rb") as f:
                shape, fortran, dtype, offset = _read_npy_header(f, self.path)
        except FileNotFoundError:
            return []  # reported by the stat check
        except ValueError:
            return ["its header is no longer readable"]
        changes = []
        if shape != self.shape:
            changes.append(f"shape {self.shape} -> {shape}")
        if dtype != self.file_dtype:
            changes.append(f"dtype {self.file_dtype} -> {dtype}")
        if fortran != self.fortran:
            order = {False: "C", True: "Fortran"}
            changes.append(f"order {order[self.fortran]} -> {order[fortran]}")
        if offset != self.offset and not changes:
            changes.append(f"data offset {self.offset} -> {offset}")
        return changes

    def start(self):
        changes = self._header_changes() + self.watch.changes()
        if changes:
            raise _changed_error(self.path, changes)

    def _short_read(self, f, rows):
        size = os.fstat(f.fileno()).st_size
        return ValueError(
            f"{self.path}: file is shorter than its header says (expected "
            f"{self.expected_size} bytes, got {size}) while reading rows "
            f"{rows[0]}..{rows[1] - 1}; was it truncated or replaced during the fit?"
        )

    def blocks(self, chunk_size, dtype):
        n, d = self.shape
        item = self.file_dtype.itemsize
        with open(self.path, "rb", buffering=0) as f:
            # The file opened now must be the one start() checked.
            self.watch.check(os.fstat(f.fileno()))
            if self.fortran:
                cols = list(range(d)) if self.positions is None else self.positions
                for start in range(0, n, chunk_size):
                    rows = min(chunk_size, n - start)
                    buf = np.empty((len(cols), rows), dtype=self.file_dtype)
                    for i, col in enumerate(cols):
                        where = self.offset + (col * n + start) * item
                        if _read_at(f, buf[i], where) != rows * item:
                            raise self._short_read(f, (start, start + rows))
                    yield buf.T  # (rows, len(cols)), made C-contiguous by the caller
            else:
                row_bytes = d * item
                for start in range(0, n, chunk_size):
                    rows = min(chunk_size, n - start)
                    buf = np.empty((rows, d), dtype=self.file_dtype)
                    got = _read_at(f, buf, self.offset + start * row_bytes)
                    if got != rows * row_bytes:
                        raise self._short_read(f, (start, start + rows))
                    yield _column_take(buf, self.positions)
            # Rows of a file modified during this pass may be a mixture.
            self.watch.check(os.fstat(f.fileno()))

    def direct_rows(self, dtype):
        """Whether passes may read this file's rows straight into the E-step
        kernels (:meth:`opened`): C order, every column, stored as ``dtype``
        in native byte order, and a ``pread`` to call."""
        from .._kernels import HAVE_PREAD

        return (HAVE_PREAD and not self.fortran and self.positions is None
                and self.file_dtype == np.dtype(dtype) and self.file_dtype.isnative)

    @contextlib.contextmanager
    def opened(self):
        """For one pass of the kernels' file mode: yields (file descriptor,
        byte offset of the first row); the file's header and identity are
        checked before the pass and its identity (``fstat``) after it, as
        for :meth:`blocks`, and a failed read names the file."""
        self.start()
        with open(self.path, "rb", buffering=0) as f:
            self.watch.check(os.fstat(f.fileno()))
            try:
                yield f.fileno(), self.offset
            except OSError as exc:
                raise _read_error(self.path, exc, self.watch) from exc
            self.watch.check(os.fstat(f.fileno()))


def _read_npy_header_utf8(f, path):
    """Read a version 3.0 ``.npy`` header (a UTF-8 version of 2.0)."""
    raw = f.read(4)
    if len(raw) != 4:
        raise ValueError(f"{path} is truncated inside its .npy header")
    (length,) = struct.unpack("<I", raw)
    text = f.read(length)
    if len(text) != length:
        raise ValueError(f"{path} is truncated inside its .npy header")
    try:
        header = ast.literal_eval(text.decode("utf8"))
        dtype = np.dtype(header["descr"])
        return tuple(header["shape"]), bool(header["fortran_order"]), dtype
    except (SyntaxError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} has an unreadable .npy header: {exc}") from exc

