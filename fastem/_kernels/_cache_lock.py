"""Saving to Numba's on-disk cache safely from several processes at once.

Numba saves a compiled function to its cache in three steps: it loads the
function's index file, takes the first data file number the index does not
use, writes the index, then the data.  Nothing orders two processes that do
this for the same function at the same time, and fastem compiles in several
processes at once (``fastem compile``, the background compiles of the test
suite and the command line; Dask workers on one machine compiling on first
use): two processes saving two variants of one kernel (float32 and float64,
or two feature classes) both take data file 1.  The last index written then
names one variant's key and the last data written may be the other
variant's code, which a later process loads and runs: wrong results, and for
a kernel of another feature class, reads out of bounds.

:func:`install` replaces ``IndexDataCacheFile.save`` with the same steps
under an exclusive lock on a file beside the index (``fcntl.flock``; it
excludes other processes and other threads alike), re-reading the index
under the lock, and writes the data before the index, so that no reader
finds an index entry whose data file is not written yet.  Where ``fcntl`` is
missing (Windows) or Numba's cache class has another shape, nothing is
replaced.
"""

import contextlib
import os

_INSTALLED = []


def _needed_methods(cls):
    return all(hasattr(cls, m) for m in
               ("save", "_load_index", "_save_index", "_save_data", "_data_name"))


@contextlib.contextmanager
def _locked(index_path):
    import fcntl

    fd = os.open(index_path + ".lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        # closing the descriptor releases the lock
        os.close(fd)


def _locked_save(self, key, data):
    """IndexDataCacheFile.save, atomic across processes and threads."""
    with _locked(self._index_path):
        overloads = self._load_index()
        data_name = overloads.get(key)
        new = data_name is None
        if new:
            taken = set(overloads.values())
            number = 1
            while self._data_name(number) in taken:
                number += 1
            data_name = self._data_name(number)
        self._save_data(data_name, data)
        if new:
            overloads[key] = data_name
            self._save_index(overloads)


def install():
    """Make Numba's cache saves atomic (idempotent); returns whether they are."""
    if _INSTALLED:
        return _INSTALLED[0]
    ok = False
    try:
        import fcntl  # noqa: F401
        from numba.core import caching
    except ImportError:
        caching = None
    if caching is not None:
        cls = getattr(caching, "IndexDataCacheFile", None)
        if cls is not None and _needed_methods(cls):
            cls.save = _locked_save
            ok = True
    _INSTALLED.append(ok)
    return ok
