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


# The package, one module per concern; each imports only modules listed below it:
#
#   _helpers     check_finite, count_rows, reservoir_sample (built on chunks)
#   _source      ChunkSource, chunks(), the choice of backend for a source
#   _prefetch    the prefetch thread
#   _npy         .npy header parser, pread reader, and the kernels' file mode (opened)
#   _text        CSV / TSV / whitespace-delimited text
#   _columnar    Parquet, HDF5, Zarr
#   _iterable    lists, iterables and generators of blocks; column selection
#   _base        backend base classes, in-memory backends, shared checks
#   _watch       file identity: a file changed while it is read
#
# Nothing here imports fastem.mixture, the kernels or numba.

from ._base import DEFAULT_CHUNK_SIZE
from ._helpers import check_finite, count_rows, reservoir_sample
from ._source import ChunkSource, chunks

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "ChunkSource",
    "check_finite",
    "chunks",
    "count_rows",
    "reservoir_sample",
]


# The public objects keep the module name they always had (reprs, pickles, docs).
for _obj in (ChunkSource, chunks, check_finite, count_rows, reservoir_sample):
    _obj.__module__ = __name__
del _obj
