"""The backend base classes, in-memory backends and the checks they share."""

import numbers

import numpy as np

from ._watch import _read_error

#: Number of rows per block when ``chunk_size`` is not given.
DEFAULT_CHUNK_SIZE = 65_536



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

