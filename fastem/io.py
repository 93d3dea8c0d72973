"""Chunk sources: read rows in bounded blocks from arrays, files and iterables.

Every estimator in fastem consumes its data as a sequence of 2-D blocks of rows.
This module turns the many places such rows can live in (in-memory arrays,
memory maps, ``.npy``, CSV, Parquet, HDF5 and Zarr files, lists of arrays and
generators) into one object, a :class:`ChunkSource`, which

- knows ``n_features`` (and ``n_samples`` where that is knowable without
  reading the data),
- yields C-contiguous ``float32`` or ``float64`` blocks of at most
  ``chunk_size`` rows, validated for shape,
- can be iterated again from the first row (except for one-shot iterators),
- optionally reads the next block in a background thread while the caller
  works on the current one.

Use :func:`chunks` to build one. :func:`check_finite`, :func:`count_rows` and
:func:`reservoir_sample` are small helpers built on top of it.
"""

import ast
import csv
import math
import numbers
import os
import queue
import struct
import threading

import numpy as np

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "ChunkSource",
    "check_finite",
    "chunks",
    "count_rows",
    "reservoir_sample",
]

#: Number of rows per block when ``chunk_size`` is not given.
DEFAULT_CHUNK_SIZE = 65_536

_CSV_SUFFIXES = (".csv", ".tsv", ".txt")
_PARQUET_SUFFIXES = (".parquet", ".pq")
_HDF5_SUFFIXES = (".h5", ".hdf5")
_SUPPORTED_SUFFIXES = (".npy",) + _CSV_SUFFIXES + _PARQUET_SUFFIXES + _HDF5_SUFFIXES + (".zarr",)

# Cells that pandas.read_csv reads as missing (NaN) by default; the pure-Python
# CSV reader uses the same set so both readers agree.
_NA_STRINGS = frozenset(
    [
        "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan",
        "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a",
        "nan", "null",
    ]
)

# How long (seconds) the prefetch thread and its consumer wait on the queue
# before they look at the stop flag / the thread's liveness again.
_POLL_S = 0.05


# ---------------------------------------------------------------------------
# Small validation helpers
# ---------------------------------------------------------------------------


def _check_chunk_size(chunk_size):
    if (
        isinstance(chunk_size, bool)
        or not isinstance(chunk_size, numbers.Integral)
        or chunk_size <= 0
    ):
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    return int(chunk_size)


def _check_dtype(dtype):
    """Validate a requested output dtype (None, float32 or float64)."""
    if dtype is None:
        return None
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    # (``np.dtype(None)`` is float64, so test for a failed conversion first.)
    if dt is None or dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be np.float32, np.float64 or None, got {dtype!r}")
    return dt.type


def _check_numeric(dtype, what):
    """Raise TypeError unless ``dtype`` is bool, integer or real floating."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "biuf":
        raise TypeError(
            f"{what} has non-numeric dtype {dtype}; fastem needs numbers "
            "(bool, integer or floating point). Convert or drop the non-numeric "
            "columns first."
        )


def _output_dtype(source_dtype, requested):
    """Apply the dtype rule: float32 stays float32, everything else is float64."""
    if requested is not None:
        return requested
    if source_dtype is not None and np.dtype(source_dtype) == np.float32:
        return np.float32
    return np.float64


def _as_list(columns):
    """The user's column selection as a list (None stays None)."""
    if columns is None:
        return None
    if isinstance(columns, (str, bytes, numbers.Integral)):
        return [columns]
    return list(columns)


def _row_chunk(obj):
    """Row length of an array's storage chunks (zarr shards first), or None."""
    for attr in ("shards", "chunks"):
        try:
            value = getattr(obj, attr, None)
        except Exception:  # some zarr versions raise for arrays without shards
            value = None
        if (
            isinstance(value, tuple)
            and value
            and isinstance(value[0], numbers.Integral)
            and value[0] > 0
        ):
            return int(value[0])
    return None


def _resolve_columns(columns, names, n_columns, name):
    """Turn a column selection into a list of non-negative positions.

    Parameters
    ----------
    columns : list of str or int, or None
        The selection; names need ``names``.
    names : list of str or None
        Column names of the source, or None when it has none.
    n_columns : int
        Number of columns of the source.
    name : str
        Source description for error messages.

    Returns
    -------
    positions : list of int or None
        None when ``columns`` is None.
    """
    if columns is None:
        return None
    columns = _as_list(columns)
    if not columns:
        raise ValueError(f"columns must select at least one column of {name}, got []")
    positions = []
    for col in columns:
        if isinstance(col, numbers.Integral) and not isinstance(col, bool):
            pos = int(col)
            if not -n_columns <= pos < n_columns:
                raise ValueError(
                    f"column index {pos} is out of range for {name}, which has "
                    f"{n_columns} columns (valid indices: 0..{n_columns - 1})"
                )
            positions.append(pos % n_columns)
        elif isinstance(col, str):
            if names is None:
                raise ValueError(
                    f"column {col!r} was selected by name, but {name} has no column "
                    f"names (no header); select columns by integer index 0..{n_columns - 1}"
                )
            matches = [i for i, n in enumerate(names) if n == col]
            if not matches:
                raise KeyError(
                    f"column {col!r} not found in {name}; available columns: {list(names)}"
                )
            positions.append(matches[0])
        else:
            raise TypeError(
                f"columns must be a list of column names (str) or indices (int), "
                f"got an element {col!r} of type {type(col).__name__}"
            )
    return positions


def _column_take(block, positions):
    """Select columns of a 2-D block (a view when they form a contiguous run)."""
    if positions is None:
        return block
    first = positions[0]
    if positions == list(range(first, first + len(positions))):
        return block[:, first : first + len(positions)]
    return block[:, positions]


def _default_aligned_chunk(row_chunk):
    """Largest multiple of a storage row-chunk length not above the default."""
    if not row_chunk or row_chunk <= 0:
        return DEFAULT_CHUNK_SIZE
    if row_chunk >= DEFAULT_CHUNK_SIZE:
        return int(row_chunk)
    return (DEFAULT_CHUNK_SIZE // row_chunk) * int(row_chunk)


def _reshape_hint(shape, name):
    if len(shape) == 1:
        return ValueError(
            f"Expected 2-D data of shape (n_samples, n_features), but {name} is 1-D "
            f"with shape {tuple(shape)}. Reshape it with array.reshape(-1, 1) if it "
            "holds a single feature, or array.reshape(1, -1) if it holds a single sample."
        )
    return ValueError(
        f"Expected 2-D data of shape (n_samples, n_features), but {name} has "
        f"{len(shape)} dimensions with shape {tuple(shape)}."
    )


def _check_shape(shape, name):
    if len(shape) != 2:
        raise _reshape_hint(shape, name)
    if shape[1] == 0:
        raise ValueError(
            f"{name} has shape {tuple(shape)} with 0 columns; at least one feature is required"
        )
    if shape[0] == 0:
        raise ValueError(f"{name} contains no rows")


def _import_optional(module, what, extra):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{what} needs {module.split('.')[0]}: pip install 'fastem[{extra}]'"
        ) from exc


# ---------------------------------------------------------------------------
# Backends. Each one knows how to open its source and yield raw 2-D blocks of
# at most ``chunk_size`` rows (file backends) or as the source gives them
# (iterables); ChunkSource validates, splits and converts them.
# ---------------------------------------------------------------------------


class _Backend:
    """Base class of the per-source readers (internal)."""

    name = "data"
    n_features = 0  # after column selection
    n_samples = None
    source_dtype = None
    column_names = None  # names of the output columns, or None
    columns = None  # the user's selection, for ChunkSource.columns
    reiterable = True
    row_chunk = None  # storage row-chunk length to align reads to
    # Raw blocks have ``raw_columns`` columns; ChunkSource validates that and
    # then keeps ``post_positions`` (None: all). Only iterables, whose blocks
    # must be validated before columns can be taken, and re-selections of an
    # existing ChunkSource use post_positions.
    post_positions = None
    # A _FileWatch of the file behind a file source, checked at the start of
    # every pass (and by blocks() at its end), or None.
    watch = None

    @property
    def raw_columns(self):
        return self.n_features

    def default_chunk_size(self):
        return _default_aligned_chunk(self.row_chunk)

    def start(self):
        """Called in the consumer's thread when an iteration begins."""
        if self.watch is not None:
            self.watch.check()

    def end_of_pass(self):
        """Called by blocks() after its last block: the file must not have
        changed while it was read."""
        if self.watch is not None:
            self.watch.check()

    def blocks(self, chunk_size, dtype):
        raise NotImplementedError


class _SlicedBackend(_Backend):
    """Anything with a 2-D ``.shape`` and row slicing ``obj[a:b]``."""

    def __init__(self, obj, columns, name, row_chunk=None):
        shape = tuple(obj.shape)
        _check_shape(shape, name)
        dtype = np.dtype(obj.dtype)
        _check_numeric(dtype, name)
        self.obj = obj
        self.name = name
        self.n_samples = int(shape[0])
        self.positions = _resolve_columns(columns, None, int(shape[1]), name)
        self.columns = _as_list(columns)
        self.n_features = int(shape[1]) if self.positions is None else len(self.positions)
        self.source_dtype = dtype
        self.row_chunk = row_chunk

    def _read(self, obj, start, stop):
        return np.asarray(obj[start:stop])

    def blocks(self, chunk_size, dtype):
        obj = self.obj
        for start in range(0, self.n_samples, chunk_size):
            stop = min(start + chunk_size, self.n_samples)
            if self.watch is None:
                block = self._read(obj, start, stop)
            else:  # a Zarr store: errors name it
                try:
                    block = self._read(obj, start, stop)
                except (OSError, ValueError) as exc:
                    raise _read_error(self.name, exc, self.watch) from exc
            yield _column_take(block, self.positions)
        self.end_of_pass()


class _DataFrameBackend(_Backend):
    """A pandas DataFrame (column names are its column labels)."""

    def __init__(self, df, columns, name):
        _check_shape(df.shape, name)
        names = [str(c) for c in df.columns]
        self.positions = _resolve_columns(columns, names, len(names), name)
        pos = list(range(len(names))) if self.positions is None else self.positions
        dtypes = []
        for p in pos:
            dt = df.dtypes.iloc[p]
            dt = getattr(dt, "numpy_dtype", dt)  # nullable extension dtypes
            try:
                dt = np.dtype(dt)
            except TypeError:
                dt = np.dtype(object)
            _check_numeric(dt, f"column {names[p]!r} of {name}")
            dtypes.append(dt)
        self.df = df
        self.name = name
        self.n_samples = int(df.shape[0])
        self.n_features = len(pos)
        self.column_names = [names[p] for p in pos]
        self.columns = _as_list(columns)
        self.source_dtype = np.result_type(*dtypes)
        self._pos = pos

    def blocks(self, chunk_size, dtype):
        for start in range(0, self.n_samples, chunk_size):
            part = self.df.iloc[start : start + chunk_size, self._pos]
            yield part.to_numpy(dtype=dtype, na_value=np.nan)


# ---------------------------------------------------------------------------
# Files that change while they are read. A file source records the identity
# of its file (size, modification time, inode) when it is opened and checks
# it again at the start and at the end of every pass: a fit that reads the
# data once per EM iteration must not silently mix the rows of two files.
# ---------------------------------------------------------------------------


def _identity(st):
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)


def _stat_changes(old, new):
    """What differs between two ``os.stat`` results, in words (a list)."""
    changes = []
    if (old.st_ino, old.st_dev) != (new.st_ino, new.st_dev):
        changes.append("replaced by another file")
    if old.st_size != new.st_size:
        changes.append(f"size {old.st_size} -> {new.st_size} bytes")
    if old.st_mtime_ns != new.st_mtime_ns:
        changes.append("modified")
    return changes


def _changed_error(path, changes):
    return ValueError(
        f"{path} changed since the fit started ({'; '.join(changes)}); a file "
        "must not be rewritten, truncated or replaced while it is being read, "
        "because the result would mix rows of the old and the new data. Write "
        "new data to a new file, or fit again once the file is complete."
    )


class _FileWatch:
    """The identity of a file when a source opened it, checked again later."""

    def __init__(self, path, st=None):
        self.path = path
        self.stat = os.stat(path) if st is None else st

    def changes(self, st=None):
        """Differences to the recorded identity (``st``: a fresh stat, or None)."""
        if st is None:
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                return ["the file was deleted or moved away"]
        return _stat_changes(self.stat, st)

    def check(self, st=None):
        changes = self.changes(st)
        if changes:
            raise _changed_error(self.path, changes)


def _read_error(path, exc, watch=None):
    """A read error that names ``path``: the file changed, or ``exc`` reworded.

    Errors that already name the file are returned unchanged.
    """
    if watch is not None:
        changes = watch.changes()
        if changes:
            return _changed_error(path, changes)
    if path in str(exc):
        return exc
    if isinstance(exc, OSError):
        return OSError(f"could not read {path}: {exc}")
    return ValueError(f"could not read {path}: {exc}")


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


class _CsvBackend(_Backend):
    """A delimited text file, streamed (pandas when importable, else pure Python)."""

    def __init__(self, path, columns):
        self.path = path
        self.name = path
        self.watch = _FileWatch(path)
        suffix = os.path.splitext(path)[1].lower()
        lines = _first_lines(path, 20)
        if not lines:
            raise ValueError(f"{path} contains no rows")
        self.delimiter = "\t" if suffix == ".tsv" else _sniff_delimiter(lines)
        first = self._split(lines[0])
        self.has_header = any(not _is_number_cell(c) for c in first)
        n_columns = len(first)
        names = [c.strip() for c in first] if self.has_header else None
        if self.has_header and len(lines) == 1:
            raise ValueError(f"{path} contains no rows (only a header line)")
        self.header_names = names
        self.n_columns = n_columns
        self.positions = _resolve_columns(columns, names, n_columns, path)
        pos = list(range(n_columns)) if self.positions is None else self.positions
        self.n_features = len(pos)
        self.column_names = None if names is None else [names[p] for p in pos]
        self.columns = _as_list(columns)
        self.source_dtype = np.dtype(np.float64)
        self.n_samples = None

    def _split(self, line):
        if self.delimiter is None:
            return line.split()
        return next(csv.reader([line], delimiter=self.delimiter))

    def _column_label(self, pos):
        if self.header_names is not None:
            return f"column {pos} ({self.header_names[pos]!r})"
        return f"column {pos}"

    def blocks(self, chunk_size, dtype):
        try:
            import pandas  # noqa: F401
        except ImportError:
            yield from self._blocks_python(chunk_size, dtype)
        else:
            yield from self._blocks_pandas(chunk_size, dtype)
        self.end_of_pass()

    def _blocks_pandas(self, chunk_size, dtype):
        import pandas as pd

        pos = list(range(self.n_columns)) if self.positions is None else self.positions
        used = sorted(set(pos))
        order = [used.index(p) for p in pos]
        kwargs = dict(
            header=0 if self.has_header else None,
            dtype=np.float64,
            chunksize=chunk_size,
        )
        if self.positions is not None:
            # Only then: with usecols, pandas tolerates rows with extra fields.
            kwargs["usecols"] = used
        if self.delimiter is None:
            kwargs["sep"] = r"\s+"
        else:
            kwargs["sep"] = self.delimiter
        reader = pd.read_csv(self.path, **kwargs)
        try:
            while True:
                try:
                    frame = next(reader)
                except StopIteration:
                    return
                except (ValueError, pd.errors.ParserError) as exc:
                    self.watch.check()  # a file cut mid-line is no bad cell
                    # Find the offending line and cell with the exact reader.
                    self._locate_error()
                    raise ValueError(f"could not read {self.path}: {exc}") from exc
                except OSError as exc:
                    raise _read_error(self.path, exc, self.watch) from exc
                values = frame.to_numpy(dtype=np.float64)
                yield values[:, order] if order != list(range(len(used))) else values
        finally:
            reader.close()

    def _blocks_python(self, chunk_size, dtype):
        pos = list(range(self.n_columns)) if self.positions is None else self.positions
        buf = np.empty((chunk_size, len(pos)), dtype=np.float64)
        filled = 0
        for row in self._parsed_rows(pos):
            buf[filled] = row
            filled += 1
            if filled == chunk_size:
                yield buf
                buf = np.empty((chunk_size, len(pos)), dtype=np.float64)
                filled = 0
        if filled:
            yield buf[:filled]

    def _parsed_rows(self, pos):
        """Yield each data row's selected cells as floats, checking every line."""
        try:
            yield from self._parsed_rows_unchecked(pos)
        except UnicodeDecodeError as exc:
            raise ValueError(f"{self.path} is not UTF-8 text: {exc}") from exc

    def _parsed_rows_unchecked(self, pos):
        with open(self.path, newline="", encoding="utf-8-sig") as f:
            if self.delimiter is None:
                rows = ((i + 1, line.split()) for i, line in enumerate(f))
            else:
                reader = csv.reader(f, delimiter=self.delimiter)
                rows = ((reader.line_num, r) for r in reader)
            header_pending = self.has_header
            for line_no, fields in rows:
                if not fields or (len(fields) == 1 and not fields[0].strip()):
                    continue
                if header_pending:
                    header_pending = False
                    continue
                if len(fields) != self.n_columns:
                    raise ValueError(
                        f"{self.path}, line {line_no}: found {len(fields)} fields, "
                        f"expected {self.n_columns} (as on the first line)"
                    )
                out = []
                for p in pos:
                    cell = fields[p].strip()
                    if cell in _NA_STRINGS:
                        out.append(math.nan)
                        continue
                    try:
                        out.append(float(cell))
                    except ValueError:
                        raise ValueError(
                            f"{self.path}, line {line_no}, {self._column_label(p)}: "
                            f"cannot convert {fields[p]!r} to a number. Remove or "
                            "convert non-numeric cells, or select numeric columns "
                            "with columns=[...]"
                        ) from None
                yield out

    def _locate_error(self):
        pos = list(range(self.n_columns)) if self.positions is None else self.positions
        for _ in self._parsed_rows(pos):
            pass


def _first_lines(path, n):
    lines = []
    with open(path, newline="", encoding="utf-8-sig") as f:
        try:
            for line in f:
                if line.strip():
                    lines.append(line.rstrip("\r\n"))
                    if len(lines) == n:
                        break
        except UnicodeDecodeError as exc:
            raise ValueError(f"{path} is not UTF-8 text: {exc}") from exc
    return lines


def _sniff_delimiter(lines):
    """Pick tab, semicolon or comma when it splits every sampled line alike."""
    for cand in ("\t", ";", ","):
        counts = {line.count(cand) for line in lines}
        if len(counts) == 1 and counts.pop() > 0:
            return cand
    for cand in ("\t", ";", ","):
        if cand in lines[0]:
            return cand
    return None  # runs of whitespace


def _is_number_cell(cell):
    """True for a number or a missing-value marker (a data cell, not a name)."""
    cell = cell.strip()
    if cell in _NA_STRINGS:
        return True
    try:
        float(cell)
    except ValueError:
        return False
    return True


class _ParquetBackend(_Backend):
    """A Parquet file read with ``ParquetFile.iter_batches``."""

    def __init__(self, path, columns):
        pq = _import_optional("pyarrow.parquet", "Reading Parquet files", "parquet")
        self.path = path
        self.name = path
        with open(path, "rb") as fh:
            self.watch = _FileWatch(path, os.fstat(fh.fileno()))
            try:
                pf = pq.ParquetFile(fh)
            except (OSError, ValueError) as exc:
                raise _read_error(path, exc) from exc
            schema = pf.schema_arrow
            self.n_samples = int(pf.metadata.num_rows)
        names = list(schema.names)
        self.positions = _resolve_columns(columns, names, len(names), path)
        pos = list(range(len(names))) if self.positions is None else self.positions
        dtypes = []
        for p in pos:
            field = schema.field(p)
            try:
                dt = np.dtype(field.type.to_pandas_dtype())
            except (NotImplementedError, TypeError):
                dt = np.dtype(object)
            if dt.kind not in "biuf":
                raise TypeError(
                    f"column {field.name!r} of {path} has non-numeric type {field.type}; "
                    "fastem needs numbers. Select numeric columns with columns=[...]"
                )
            dtypes.append(dt)
        if len(pos) == 0:
            raise ValueError(f"{path} has no columns; at least one feature is required")
        self.n_features = len(pos)
        self.column_names = [names[p] for p in pos]
        self.columns = _as_list(columns)
        self.source_dtype = np.result_type(*dtypes)
        if self.n_samples == 0:
            raise ValueError(f"{path} contains no rows")

    def blocks(self, chunk_size, dtype):
        import pyarrow.parquet as pq

        with open(self.path, "rb") as fh:
            self.watch.check(os.fstat(fh.fileno()))
            try:
                pf = pq.ParquetFile(fh)
                batches = pf.iter_batches(batch_size=chunk_size, columns=self.column_names)
            except (OSError, ValueError) as exc:
                raise _read_error(self.path, exc, self.watch) from exc
            try:
                while True:
                    try:
                        batch = next(batches, None)
                    except (OSError, ValueError) as exc:
                        raise _read_error(self.path, exc, self.watch) from exc
                    if batch is None:
                        break
                    out = np.empty((batch.num_rows, self.n_features), dtype=dtype)
                    for j in range(self.n_features):
                        out[:, j] = batch.column(j).to_numpy(zero_copy_only=False)
                    yield out
            finally:
                pf.close()
        self.end_of_pass()


class _Hdf5Backend(_SlicedBackend):
    """A dataset in an HDF5 file, opened for each pass."""

    def __init__(self, path, key, columns):
        h5py = _import_optional("h5py", "Reading HDF5 files", "hdf5")
        self.path = path
        watch = _FileWatch(path)
        try:
            f = h5py.File(path, "r")
        except OSError as exc:
            raise _read_error(path, exc) from exc
        with f:
            key = _pick_hdf5_dataset(f, key, path, h5py)
            ds = f[key]
            name = f"{path}::{key}"
            super().__init__(ds, columns, name, _row_chunk(ds))
        self.key = key
        self.watch = watch
        self.obj = None  # the file is closed again; blocks() reopens it

    def blocks(self, chunk_size, dtype):
        import h5py

        try:
            f = h5py.File(self.path, "r")
        except OSError as exc:
            raise _read_error(self.path, exc, self.watch) from exc
        with f:
            try:
                ds = f[self.key]
                shape = tuple(ds.shape)
            except (KeyError, OSError, ValueError) as exc:
                raise _read_error(self.name, exc, self.watch) from exc
            if shape[:1] != (self.n_samples,):
                raise _changed_error(
                    self.name, [f"shape ({self.n_samples}, ...) -> {shape}"]
                )
            for start in range(0, self.n_samples, chunk_size):
                try:
                    block = ds[start : min(start + chunk_size, self.n_samples)]
                except (OSError, ValueError, RuntimeError) as exc:
                    raise _read_error(self.name, exc, self.watch) from exc
                yield _column_take(block, self.positions)
        self.end_of_pass()


def _pick_hdf5_dataset(f, key, path, h5py):
    found = []
    f.visititems(lambda n, o: found.append(n) if isinstance(o, h5py.Dataset) else None)
    if key is not None:
        key = key.lstrip("/")
        if key not in found:
            raise KeyError(
                f"dataset {key!r} not found in {path}; available datasets: {found}"
            )
        return key
    if len(found) == 1:
        return found[0]
    if not found:
        raise ValueError(f"{path} contains no datasets")
    raise ValueError(
        f"{path} contains several datasets {found}; name one as "
        f"'{path}::{found[0]}'"
    )


def _zarr_watch(path, name):
    """A _FileWatch for a Zarr store: the file of a zip store, or the metadata
    file of the array in a directory store (rewritten when it is resized).
    Chunk files rewritten in place are not noticed."""
    if os.path.isfile(path):
        return _FileWatch(path)
    key = name[len(path) + 2 :] if name.startswith(path + "::") else ""
    folder = os.path.join(path, *[p for p in key.split("/") if p])
    for meta in ("zarr.json", ".zarray"):
        meta_path = os.path.join(folder, meta)
        if os.path.isfile(meta_path):
            return _FileWatch(meta_path)
    return None


def _open_zarr(path, key):
    zarr = _import_optional("zarr", "Reading Zarr stores", "zarr")
    node = zarr.open(path, mode="r")
    if key is not None:
        key = key.strip("/")
        try:
            node = node[key]
        except (KeyError, TypeError):
            available = sorted(node.array_keys()) if hasattr(node, "array_keys") else []
            raise KeyError(
                f"array {key!r} not found in {path}; available arrays: {available}"
            ) from None
        if hasattr(node, "array_keys"):
            raise ValueError(f"{path}::{key} is a group, not an array")
        return node, f"{path}::{key}"
    if hasattr(node, "array_keys"):
        keys = sorted(node.array_keys())
        if len(keys) == 1:
            return node[keys[0]], f"{path}::{keys[0]}"
        if not keys:
            raise ValueError(f"{path} is a Zarr group with no arrays")
        raise ValueError(
            f"{path} is a Zarr group with several arrays {keys}; name one as "
            f"'{path}::{keys[0]}'"
        )
    return node, path


class _IterableBackend(_Backend):
    """A list of blocks, a re-iterable object, or a one-shot iterator."""

    def __init__(self, source, columns, name):
        self.source = source
        self.name = name
        self._prefix = []
        self._consumed = False
        if isinstance(source, (list, tuple)):
            self.reiterable = True
            blocks = [np.asarray(b) for b in source]
            self.source = blocks
            first = next((b for b in blocks if b.ndim != 2 or b.shape[0] > 0), None)
            if first is None:
                raise ValueError(f"{name} contains no rows")
            for i, b in enumerate(blocks):
                _check_numeric(b.dtype, f"block {i} of {name}")
            self.source_dtype = np.result_type(*[b.dtype for b in blocks])
            if all(b.ndim == 2 for b in blocks):
                self.n_samples = int(sum(b.shape[0] for b in blocks))
        else:
            it = iter(source)
            self.reiterable = it is not source
            first = None
            for b in it:
                b = np.asarray(b)
                if not self.reiterable:
                    self._prefix.append(b)
                if b.ndim != 2 or b.shape[0] > 0:
                    first = b
                    break
            if first is None:
                raise ValueError(f"{name} contains no rows")
            _check_numeric(first.dtype, f"the first block of {name}")
            self.source_dtype = first.dtype
            if not self.reiterable:
                self._rest = it
            elif hasattr(it, "close"):
                it.close()
        if first.ndim != 2:
            raise ValueError(
                f"{name} must yield 2-D blocks of shape (rows, n_features), but its "
                f"first block has shape {first.shape}"
            )
        n_columns = first.shape[1]
        if n_columns == 0:
            raise ValueError(
                f"{name} yields blocks with 0 columns; at least one feature is required"
            )
        self.positions = _resolve_columns(columns, None, n_columns, name)
        self.columns = _as_list(columns)
        self.n_columns = n_columns
        self.n_features = n_columns if self.positions is None else len(self.positions)
        self.post_positions = self.positions

    @property
    def raw_columns(self):
        return self.n_columns

    def start(self):
        if not self.reiterable:
            if self._consumed:
                raise ValueError(
                    f"{self.name} is a one-shot iterator and was already consumed; "
                    "pass a list or a re-iterable object (one whose __iter__ starts "
                    "again from the first block), or a file path: it can be read "
                    "only once, and this needs another pass over the data (a fit "
                    "reads it once for the initialisation and once per EM iteration)"
                )
            self._consumed = True

    def blocks(self, chunk_size, dtype):
        if self.reiterable:
            it = iter(self.source)
        else:
            prefix, self._prefix = self._prefix, []
            it = _chain(prefix, self._rest)
        try:
            for block in it:
                yield np.asarray(block)
        finally:
            if hasattr(it, "close"):
                it.close()


def _chain(prefix, rest):
    yield from prefix
    yield from rest


class _SelectBackend(_Backend):
    """Column selection on top of an existing ChunkSource's backend.

    Positions and names refer to the inner source's output columns.
    """

    def __init__(self, inner, columns):
        self.inner = inner
        self.name = inner.name
        positions = _resolve_columns(columns, inner.column_names, inner.n_features, inner.name)
        inner_post = inner.post_positions
        if inner_post is None:
            inner_post = list(range(inner.n_features))
        self.post_positions = [inner_post[p] for p in positions]
        self.n_features = len(positions)
        self.n_samples = inner.n_samples
        self.source_dtype = inner.source_dtype
        self.reiterable = inner.reiterable
        self.row_chunk = inner.row_chunk
        if inner.column_names is not None:
            self.column_names = [inner.column_names[p] for p in positions]
        self.columns = _as_list(columns)

    @property
    def raw_columns(self):
        return self.inner.raw_columns

    def default_chunk_size(self):
        return self.inner.default_chunk_size()

    def start(self):
        self.inner.start()

    def blocks(self, chunk_size, dtype):
        return self.inner.blocks(chunk_size, dtype)


# ---------------------------------------------------------------------------
# ChunkSource
# ---------------------------------------------------------------------------


class ChunkSource:
    """Rows of a data source, served as validated 2-D blocks.

    Build one with :func:`chunks`; the constructor is internal.

    Attributes
    ----------
    n_features : int
        Number of columns of every block (after column selection).
    n_samples : int or None
        Number of rows, or None where it cannot be known without reading the
        whole source (CSV files, generic iterables).
    dtype : type
        ``np.float32`` or ``np.float64``, the dtype of every block.
    chunk_size : int
        Maximum number of rows of a block.
    columns : list of str or int, or None
        The selected columns, or None for all of them.
    name : str
        A short description of the source (a file path, "array of shape
        (n, d)", ...) used in error messages.
    reiterable : bool
        False for a one-shot iterator, which can be iterated only once.
    prefetch : bool
        Whether the next block is read in a background thread.

    Notes
    -----
    Iterating yields C-contiguous arrays of shape ``(rows, n_features)`` with
    ``1 <= rows <= chunk_size``. Blocks may be read-only views of the source's
    memory (in-memory arrays, memory maps): never write to them. Blocks of an
    iterable source that are longer than ``chunk_size`` are split; shorter
    ones are passed on as they are, and empty ones are skipped.
    """

    def __init__(self, backend, *, chunk_size=None, dtype=None, prefetch=True):
        self._backend = backend
        self.name = backend.name
        self.n_features = int(backend.n_features)
        self.n_samples = backend.n_samples
        self.dtype = _output_dtype(backend.source_dtype, _check_dtype(dtype))
        self.chunk_size = (
            backend.default_chunk_size() if chunk_size is None
            else _check_chunk_size(chunk_size)
        )
        self.columns = backend.columns
        self.reiterable = bool(backend.reiterable)
        self.prefetch = bool(prefetch)

    def __repr__(self):
        return (
            f"ChunkSource({self.name!r}, n_samples={self.n_samples}, "
            f"n_features={self.n_features}, dtype={np.dtype(self.dtype).name}, "
            f"chunk_size={self.chunk_size})"
        )

    def __iter__(self):
        """Iterate over the blocks, from the first row.

        Yields
        ------
        block : ndarray of shape (rows, n_features)
        """
        return _drop_offsets(self.iter_with_offsets())

    def iter_with_offsets(self):
        """Iterate over the blocks together with their position in the source.

        Yields
        ------
        chunk_index : int
            0-based number of the block in this iteration.
        start_row : int
            Absolute (0-based) index of the block's first row in the source.
        block : ndarray of shape (rows, n_features)
            C-contiguous, with dtype ``self.dtype``.

        Raises
        ------
        ValueError
            If a block has the wrong shape, if the source contains no rows, or
            if a one-shot iterator is iterated a second time.
        TypeError
            If a block is not numeric.
        """
        self._backend.start()
        if self.prefetch:
            return _prefetched(self._validated, self.name)
        return self._validated()

    def _validated(self):
        backend = self._backend
        chunk_size = self.chunk_size
        dtype = self.dtype
        positions = backend.post_positions
        expected = backend.raw_columns
        index = 0
        start = 0
        raw = backend.blocks(chunk_size, dtype)
        try:
            for block in raw:
                block = np.asarray(block)
                if block.ndim == 2 and block.shape[0] == 0:
                    continue
                if block.ndim != 2:
                    raise ValueError(
                        f"chunk {index} (starting at row {start}) of {self.name} has "
                        f"{block.ndim} dimensions (shape {block.shape}), expected a 2-D "
                        f"block of shape (rows, {expected})"
                    )
                rows = block.shape[0]
                where = f"chunk {index} (rows {start}..{start + rows - 1}) of {self.name}"
                if block.shape[1] != expected:
                    raise ValueError(
                        f"{where} has {block.shape[1]} columns, expected {expected}"
                    )
                _check_numeric(block.dtype, where)
                block = _column_take(block, positions)
                for off in range(0, rows, chunk_size):
                    piece = block[off : off + chunk_size]
                    yield index, start, np.ascontiguousarray(piece, dtype=dtype)
                    index += 1
                    start += piece.shape[0]
        finally:
            raw.close()
        if start == 0:
            raise ValueError(f"{self.name} contains no rows")


def _drop_offsets(it):
    try:
        for _, _, block in it:
            yield block
    finally:
        it.close()


def _prefetched(make_iter, name, depth=2):
    """Run ``make_iter()`` in a daemon thread, ``depth`` items ahead.

    Exceptions raised in the thread are re-raised in the consumer with their
    original type. When the consumer stops early (``break``, garbage
    collection), the thread notices within ``_POLL_S`` seconds, closes the
    underlying iterator (and so its files) and exits.
    """
    q = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item):
        while not stop.is_set():
            try:
                q.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                pass
        return False

    def worker():
        it = None
        try:
            it = make_iter()
            for item in it:
                if not put(("item", item)):
                    return
            put(("done", None))
        except BaseException as exc:  # handed to the consumer, re-raised there
            put(("error", exc))
        finally:
            if it is not None:
                it.close()

    thread = threading.Thread(target=worker, name=f"fastem-prefetch[{name}]", daemon=True)
    thread.start()
    return _consume(q, stop, thread)


def _consume(q, stop, thread):
    try:
        while True:
            try:
                kind, payload = q.get(timeout=_POLL_S)
            except queue.Empty:
                if not thread.is_alive() and q.empty():
                    raise RuntimeError("the prefetch thread stopped without a result") from None
                continue
            if kind == "item":
                yield payload
            elif kind == "done":
                return
            else:
                try:
                    raise payload
                finally:
                    payload = None
    finally:
        stop.set()
        while True:
            try:
                q.get_nowait()
            except queue.Empty:
                break
        if thread is not threading.current_thread():
            thread.join(timeout=1.0)


# ---------------------------------------------------------------------------
# Public functions
# ---------------------------------------------------------------------------


def chunks(source, chunk_size=None, columns=None, dtype=None, prefetch=True):
    """Wrap a data source as a :class:`ChunkSource` of row blocks.

    Parameters
    ----------
    source : array-like, path, iterable of arrays, or ChunkSource
        Where the rows come from:

        - a 2-D ``np.ndarray`` or ``np.memmap`` of shape (n_samples,
          n_features), or any object with a 2-D ``.shape``, a ``.dtype`` and
          row slicing ``obj[a:b]`` (h5py Dataset, zarr Array, dask array);
          a pandas DataFrame (columns may be selected by label);
        - a path (str or ``os.PathLike``) to a ``.npy`` file, a delimited text
          file (``.csv``, ``.tsv``, ``.txt``), a Parquet file (``.parquet``,
          ``.pq``), an HDF5 file (``.h5``, ``.hdf5``) or a Zarr store
          (``.zarr``). Name a dataset inside an HDF5 file or Zarr group as
          ``"file.h5::group/dataset"``; without a name the file must hold
          exactly one;
        - a list or tuple of 2-D arrays, any re-iterable object whose
          ``__iter__`` yields 2-D arrays, or a one-shot iterator/generator
          (which can then be iterated only once);
        - an existing ChunkSource, returned as is when ``chunk_size``,
          ``columns`` and ``dtype`` are all None, else re-wrapped with the new
          settings (``columns`` then refer to its current columns, and
          prefetching stays off if it was off).
    chunk_size : int, optional
        Maximum number of rows per block. Default :data:`DEFAULT_CHUNK_SIZE`,
        or for chunked HDF5/Zarr arrays the largest multiple of the storage
        row-chunk length not above it (at least one storage chunk), so every
        read covers whole storage chunks.
    columns : list of str or int, optional
        Columns to keep, in this order: integer positions (any source) or
        names (CSV files with a header line, Parquet files, DataFrames).
    dtype : {np.float32, np.float64, "float32", "float64"}, optional
        dtype of the blocks. Default: float32 data stay float32, all other
        numeric data (integers, bool, float16, float64) become float64.
    prefetch : bool, default=True
        Read the next block in a background thread while the current one is
        being processed.

    Returns
    -------
    source : ChunkSource

    Raises
    ------
    FileNotFoundError
        If a path does not exist.
    ValueError
        For unsupported file suffixes, non-2-D data, an empty source, or a bad
        ``chunk_size``, ``dtype`` or column index.
    KeyError
        For a column name, HDF5 dataset or Zarr array that does not exist.
    TypeError
        For non-numeric data or an unsupported source type.
    ImportError
        When the optional package a file type needs is missing.

    Notes
    -----
    CSV files: the first non-blank line is a header when any of its cells is
    not a number. The delimiter is a tab for ``.tsv`` and otherwise sniffed
    among tab, semicolon, comma and runs of whitespace. Empty cells and the
    usual missing-value markers ("NA", "nan", ...) become NaN. ``n_samples``
    is None for CSV files.

    ``.npy`` files are read with positioned reads (``pread``) of
    ``chunk_size`` rows at a time into fresh buffers, never loaded whole and
    never memory-mapped; Fortran-ordered files are read one run per column
    for each block of rows. Truncated files are reported when the source is
    built, and a file cut short while it is read gives a ValueError naming
    it.

    File sources record their file's size, modification time and inode (and
    for ``.npy`` the header's shape, dtype and order) when they are built, and
    check them at the start and the end of every pass: a file rewritten,
    truncated or replaced between or during passes raises a ValueError naming
    it instead of silently mixing two data sets. For Zarr directory stores
    only the array's metadata file is watched (a resize is noticed, chunk
    files rewritten in place are not).

    Examples
    --------
    >>> import numpy as np
    >>> from fastem.io import chunks
    >>> src = chunks(np.arange(10.0).reshape(5, 2), chunk_size=2)
    >>> [block.shape for block in src]
    [(2, 2), (2, 2), (1, 2)]
    """
    if isinstance(source, ChunkSource):
        # ``prefetch`` alone never re-wraps, and can only switch prefetching off.
        if chunk_size is None and columns is None and dtype is None:
            return source
        backend = source._backend
        if columns is not None:
            backend = _SelectBackend(backend, columns)
        return ChunkSource(
            backend,
            chunk_size=source.chunk_size if chunk_size is None else chunk_size,
            dtype=source.dtype if dtype is None else dtype,
            prefetch=source.prefetch and prefetch,
        )
    if chunk_size is not None:
        _check_chunk_size(chunk_size)
    _check_dtype(dtype)
    backend = _make_backend(source, columns)
    return ChunkSource(backend, chunk_size=chunk_size, dtype=dtype, prefetch=prefetch)


def _make_backend(source, columns):
    if isinstance(source, (str, bytes, os.PathLike)):
        return _path_backend(os.fsdecode(source), columns)
    if isinstance(source, np.ndarray):
        kind = "memmap" if isinstance(source, np.memmap) else "array"
        name = f"{kind} of shape {source.shape}"
        if source.ndim == 2:
            _check_numeric(source.dtype, f"the input {kind}")
        return _SlicedBackend(source, columns, name)
    if hasattr(source, "iloc") and hasattr(source, "columns") and hasattr(source, "to_numpy"):
        return _DataFrameBackend(source, columns, f"DataFrame of shape {source.shape}")
    if hasattr(source, "shape") and hasattr(source, "dtype") and hasattr(source, "__getitem__"):
        module = type(source).__module__ or ""
        row_chunk = _row_chunk(source)
        label = type(source).__name__
        if module.startswith("h5py"):
            label = f"HDF5 dataset {getattr(source, 'name', '')}".rstrip()
        elif module.startswith("zarr"):
            label = "Zarr array"
        name = f"{label} of shape {tuple(source.shape)}"
        return _SlicedBackend(source, columns, name, row_chunk)
    if isinstance(source, (list, tuple)):
        if not source:
            raise ValueError(f"the input {type(source).__name__} is empty: it contains no rows")
        if np.ndim(source[0]) == 2:
            name = f"{type(source).__name__} of {len(source)} arrays"
            return _IterableBackend(source, columns, name)
        arr = np.asarray(source)
        if arr.ndim == 2:
            _check_numeric(arr.dtype, "the input data")
        return _SlicedBackend(arr, columns, f"array of shape {arr.shape}")
    if hasattr(source, "__iter__"):
        return _IterableBackend(source, columns, f"{type(source).__name__} object")
    raise TypeError(
        f"Unsupported data source of type {type(source).__name__}; pass a 2-D array, "
        "a file path, a list of 2-D arrays or an iterable of 2-D arrays"
    )


def _path_backend(path, columns):
    key = None
    file_path = path
    if "::" in path:
        file_path, key = path.rsplit("::", 1)
    if not os.path.exists(file_path):
        raise FileNotFoundError(f"No such file or directory: {file_path!r}")
    suffix = os.path.splitext(file_path.rstrip("/\\"))[1].lower()
    is_zarr = suffix == ".zarr" or (
        os.path.isdir(file_path)
        and any(
            os.path.exists(os.path.join(file_path, marker))
            for marker in ("zarr.json", ".zarray", ".zgroup")
        )
    )
    if key is not None and not (is_zarr or suffix in _HDF5_SUFFIXES):
        raise ValueError(
            f"the 'path::name' syntax is for HDF5 files and Zarr groups only, got {path!r}"
        )
    if is_zarr:
        arr, name = _open_zarr(file_path, key)
        backend = _SlicedBackend(arr, columns, name, _row_chunk(arr))
        backend.watch = _zarr_watch(file_path, name)
        return backend
    if os.path.isdir(file_path):
        raise ValueError(f"{file_path!r} is a directory, not a data file or Zarr store")
    if suffix == ".npy":
        return _NpyBackend(file_path, columns)
    if suffix in _CSV_SUFFIXES:
        return _CsvBackend(file_path, columns)
    if suffix in _PARQUET_SUFFIXES:
        return _ParquetBackend(file_path, columns)
    if suffix in _HDF5_SUFFIXES:
        return _Hdf5Backend(file_path, key, columns)
    raise ValueError(
        f"Unsupported file type {suffix or '(no suffix)'!r} for {file_path!r}; supported "
        f"suffixes are {', '.join(_SUPPORTED_SUFFIXES)}"
    )


def check_finite(block, chunk_index, start_row, name):
    """Raise if a block contains NaN or infinity, naming where.

    Parameters
    ----------
    block : ndarray of shape (rows, n_features)
        A block yielded by :meth:`ChunkSource.iter_with_offsets`.
    chunk_index : int
        The block's index.
    start_row : int
        Absolute index of the block's first row.
    name : str
        The source's name (:attr:`ChunkSource.name`).

    Raises
    ------
    ValueError
        At the first non-finite value, in row-major order.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.add.reduce(block, axis=None)
    if np.isfinite(total):
        return
    bad = np.flatnonzero(~np.isfinite(block))
    if bad.size == 0:  # the sum overflowed, the values are finite
        return
    n_cols = block.shape[1] if block.ndim == 2 else 1
    row, col = divmod(int(bad[0]), n_cols)
    raise ValueError(
        f"Input contains NaN or infinity: chunk {chunk_index} of {name}, row "
        f"{start_row + row} (row {row} of the chunk), column {col}. Remove or impute "
        "non-finite values before fitting."
    )


def count_rows(source):
    """Number of rows of a source, reading it only when it must.

    Parameters
    ----------
    source : ChunkSource or anything :func:`chunks` accepts

    Returns
    -------
    n_samples : int
    """
    src = chunks(source)
    if src.n_samples is not None:
        return int(src.n_samples)
    return sum(block.shape[0] for block in src)


def _as_generator(random_state):
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(0, 2**63 - 1, dtype=np.int64))
    if random_state is None or (
        isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool)
    ):
        return np.random.default_rng(random_state)
    raise ValueError(
        f"random_state must be None, an int, a np.random.Generator or a "
        f"np.random.RandomState, got {random_state!r}"
    )


def reservoir_sample(source, n, random_state=None):
    """Draw a uniform random sample of rows in one pass (Algorithm R).

    Every subset of ``min(n, total)`` rows is equally likely. Rows of a block
    are processed together: row ``t`` (0-based, counted over the whole
    source) past the first ``n`` draws ``j`` uniformly from ``0..t`` and
    replaces reservoir slot ``j`` when ``j < n``; within a block the later row
    wins a slot, as in the sequential algorithm.

    Parameters
    ----------
    source : ChunkSource or anything :func:`chunks` accepts
    n : int
        Number of rows wanted.
    random_state : int, np.random.Generator, np.random.RandomState or None
        Seed; the result is deterministic for a given seed, source and
        chunk size.

    Returns
    -------
    sample : ndarray of shape (min(n, total), n_features)
        With the source's dtype; rows in reservoir order, not source order.
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n <= 0:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    n = int(n)
    src = chunks(source)
    rng = _as_generator(random_state)
    filling = []
    n_filled = 0
    reservoir = None
    seen = 0
    for block in src:
        rows = block.shape[0]
        offset = 0
        if reservoir is None:
            take = min(n - n_filled, rows)
            filling.append(np.array(block[:take]))
            n_filled += take
            offset = take
            if n_filled == n:
                reservoir = np.concatenate(filling, axis=0)
                filling = None
        if offset < rows:
            t = np.arange(seen + offset, seen + rows, dtype=np.int64)
            j = rng.integers(0, t + 1)
            hit = np.flatnonzero(j < n)
            if hit.size:
                slots = j[hit]
                # Keep the last row aimed at each slot (sequential semantics).
                rev_slots = slots[::-1]
                uniq, first_in_rev = np.unique(rev_slots, return_index=True)
                winners = hit[::-1][first_in_rev]
                reservoir[uniq] = block[offset + winners]
        seen += rows
    if reservoir is None:
        reservoir = np.concatenate(filling, axis=0)
    return reservoir
