"""ChunkSource, the :func:`chunks` factory and the choice of backend for a source."""

import os

import numpy as np

from ._base import (
    _check_chunk_size,
    _check_dtype,
    _check_numeric,
    _column_take,
    _DataFrameBackend,
    _output_dtype,
    _row_chunk,
    _SlicedBackend,
)
from ._columnar import _Hdf5Backend, _open_zarr, _ParquetBackend, _zarr_watch
from ._iterable import _IterableBackend, _SelectBackend
from ._npy import _NpyBackend
from ._prefetch import _prefetched
from ._text import _CsvBackend

_CSV_SUFFIXES = (".csv", ".tsv", ".txt")
_PARQUET_SUFFIXES = (".parquet", ".pq")
_HDF5_SUFFIXES = (".h5", ".hdf5")
_SUPPORTED_SUFFIXES = (".npy",) + _CSV_SUFFIXES + _PARQUET_SUFFIXES + _HDF5_SUFFIXES + (".zarr",)



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

    def _direct_rows(self):
        """A context manager for one pass that reads the rows straight from
        the file into the E-step kernels (yielding a file descriptor and the
        byte offset of row 0), or None where this source cannot: anything but
        a C-ordered ``.npy`` file read whole, in the fit's dtype, and any
        subclass that serves its blocks its own way."""
        if (type(self).iter_with_offsets is not _SERVED_BLOCKS
                or "iter_with_offsets" in vars(self)):
            return None
        backend = self._backend
        direct = getattr(backend, "direct_rows", None)
        if direct is None or not direct(self.dtype):
            return None
        return backend.opened()

    def iter_with_offsets(self, check=None):
        """Iterate over the blocks together with their position in the source.

        Parameters
        ----------
        check : callable, optional
            Called as ``check(chunk_index, start_row, block)`` on every block
            before it is yielded, in the thread that reads the block: the
            prefetch thread when prefetching is on, so that the check of the
            next block overlaps the caller's work on this one.  An exception it
            raises is re-raised in the caller, with its type, at that block.

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
        make = self._validated if check is None else (lambda: _checked(self._validated(), check))
        if self.prefetch:
            return _prefetched(make, self.name)
        return make()

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


# ChunkSource's own iteration: a subclass, an instance or the class patched
# to serve other blocks turns the kernels' file mode off (_direct_rows)
_SERVED_BLOCKS = ChunkSource.iter_with_offsets


def _checked(it, check):
    try:
        for item in it:
            check(*item)
            yield item
    finally:
        it.close()


def _drop_offsets(it):
    try:
        for _, _, block in it:
            yield block
    finally:
        it.close()



# ---------------------------------------------------------------------------
# chunks: the factory
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

