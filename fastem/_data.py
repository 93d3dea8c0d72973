"""Rows for the EM driver: in-memory arrays, chunk sources and Dask
collections behind one interface.

:class:`RowData` is that interface, complete: the driver asks a data object
for an E-step pass (:meth:`~RowData.e_pass`, or one pass for several sets of
parameters, :meth:`~RowData.e_pass_many`), for per-row results of the
E-step (:meth:`~RowData.collect`), for the statistics of the k-means start
(:meth:`~RowData.hard_assignment_stats`), for a random subsample
(:meth:`~RowData.sample`) and for mini-batches (:meth:`~RowData.minibatches`);
it never asks which kind of data it holds.  :func:`as_data` builds the right
one.  The base class implements every method over :meth:`~RowData.iter_chunks`
(one pass over the chunks, in row order); :class:`ArrayData` and
:class:`SourceData` use those, ``fastem._dask.DaskData`` computes where the
rows live.

Data objects never touch an estimator: :func:`as_data` returns the number of
features and the feature names it found, and the estimator records or checks
them.
"""

import numpy as np

from . import _estep, _initstats, _missing
from ._constants import CHUNK_ROWS
from ._validation import check_finite, check_sample_weight, normalise_weights


def sample_indices(n, size, random_state):
    """``size`` distinct row indices out of ``n``, uniformly, sorted.

    Memory is O(size), not O(n): ``RandomState.choice(n, size,
    replace=False)`` permutes all n indices (268 MB for 33 million rows).
    Distinct indices are gathered from batches of uniform draws; a random
    subset of the right size is kept.  Every method that draws a subsample
    (in memory, from files, on Dask) uses this function, so they draw the
    same rows for the same random_state.
    """
    if size >= n:
        return np.arange(n)
    if 2 * size >= n:
        return np.sort(random_state.choice(n, size, replace=False))
    chosen = np.empty(0, dtype=np.int64)
    while chosen.size < size:
        draw = random_state.randint(0, n, size=size - chosen.size + 64).astype(np.int64)
        chosen = np.union1d(chosen, draw)
    if chosen.size > size:
        keep = random_state.choice(chosen.size, size, replace=False)
        chosen = np.sort(chosen[keep])
    return chosen


class RowData:
    """The interface every kind of rows implements (see the module docstring).

    Attributes: ``n_samples`` (None while unknown), ``n_features``, ``dtype``
    (float32 or float64), ``name`` (for messages), ``sample_weight`` (the
    normalised weights or None), ``weight_scale`` (the weights given are
    ``sample_weight * weight_scale``), ``in_memory`` (rows can be drawn in
    any order, as ``partial_fit`` needs), ``feature_names`` (or None).
    """

    n_samples = None
    n_features = None
    dtype = None
    name = "X"
    sample_weight = None
    # the weights given divided by this (see normalise_weights); sums of
    # weights and weighted log-likelihoods times it are those of the weights given
    weight_scale = 1.0
    in_memory = False
    feature_names = None
    # NaN entries are missing values, marginalised (missing='marginalize')
    missing = False
    # whether passes over the rows run kernels in this process (not on Dask
    # workers): a fit then compiles the kernels it needs ahead (prefetch)
    kernels_here = True

    def iter_chunks(self):
        """Yield (start_row, block, block_weights or None) in row order."""
        raise NotImplementedError  # pragma: no cover - interface

    # -- passes over the rows -----------------------------------------------------

    def e_pass(self, params):
        """One E-step pass over every row: the :class:`SuffStats` under params."""
        return self.e_pass_many([params])[0]

    def e_pass_many(self, params_list):
        """One pass over the rows feeding every set of parameters: a list of
        SuffStats, each equal to :meth:`e_pass` of its parameters (the same
        chunks in the same order)."""
        accs = [_estep.StatsAccumulator(p, self.dtype, missing=self.missing)
                for p in params_list]
        for lo, block, w in self.iter_chunks():
            inc = self._incomplete_rows(lo, block) if self.missing else None
            for acc in accs:
                acc.add(block, w, incomplete=inc)
        return [acc.result() for acc in accs]

    def _pass_in_calls(self, params_list, rows, add):
        """The statistics of every set of parameters from one pass in kernel
        calls of ``rows`` rows (the last may be shorter): ``add(acc, lo,
        hi)`` feeds rows lo:hi to the accumulator ``acc``."""
        accs = [_estep.StatsAccumulator(p, self.dtype) for p in params_list]
        for lo in range(0, self.n_samples, rows):
            hi = min(self.n_samples, lo + rows)
            for acc in accs:
                add(acc, lo, hi)
        return [acc.result() for acc in accs]

    def _incomplete_rows(self, lo, block):
        """The rows of the chunk starting at row ``lo`` that hold a NaN (with
        missing values): scanned once per chunk and pass, for every set of
        parameters the pass feeds."""
        return _missing.incomplete_rows(block)

    def collect(self, params, reduce, width=None, dtype=np.float64):
        """``reduce`` applied to the weighted log probabilities (rows, K) of
        bounded row chunks, stacked in row order (an ndarray; Dask: a lazy
        array)."""
        parts = []
        for _, block, _ in self.iter_chunks():
            for lo in range(0, block.shape[0], CHUNK_ROWS):
                parts.append(reduce(_estep.weighted_log_prob(
                    block[lo:lo + CHUNK_ROWS], params, missing=self.missing)))
        if parts:
            return np.concatenate(parts, axis=0)
        shape = (0,) if width is None else (0, width)
        return np.empty(shape, dtype=dtype)

    def hard_assignment_stats(self, centers, covariance_type):
        """Statistics with every row given wholly to its nearest centre (the
        pass that ends the 'kmeans' initialisation)."""
        acc = _initstats.hard_assignment_accumulator(centers, covariance_type, self.dtype)
        for _, block, w in self.iter_chunks():
            _initstats.add_hard_assignment(acc, block, w)
        return acc.result()

    def minibatches(self, batch_size, random_state):
        """Mini-batches (rows, weights or None) of one pass: consecutive rows
        of each chunk, in chunk order (in-memory arrays: a new random order
        each pass)."""
        for _, block, w in self.iter_chunks():
            for lo in range(0, block.shape[0], batch_size):
                yield block[lo:lo + batch_size], None if w is None else w[lo:lo + batch_size]

    def weights_of(self, lo, hi):
        return None if self.sample_weight is None else self.sample_weight[lo:hi]

    def sample(self, size, random_state):
        """A random subsample of rows (float64) and their weights.

        Without sample weights: ``size`` distinct rows drawn uniformly (all
        rows, in order, when ``size >= n_samples``).  With sample weights:
        ``size`` rows drawn with replacement in proportion to the weights
        (returned weights are then ones).  The draw depends only on
        ``random_state`` and ``n_samples``, so an in-memory array and a file
        holding the same rows give the same sample.
        """
        n = self.n_samples
        w = self.sample_weight
        if w is not None and np.all(w == w[0]):
            # equal weights: draw exactly as without weights
            S, _ = _unweighted(self, size, random_state)
            return S, np.full(S.shape[0], w[0])
        if w is None:
            return self.take(sample_indices(n, size, random_state)), None
        pos = np.flatnonzero(w > 0)
        if pos.size <= size:
            return self.take(pos), w[pos]
        p = w[pos] / w[pos].sum()
        idx = np.sort(pos[random_state.choice(pos.size, size, replace=True, p=p)])
        return self.take(idx), None

    def take(self, idx):
        """Rows idx (sorted, int) as a float64 array, in one pass."""
        out = np.empty((len(idx), self.n_features))
        j = 0
        for start, block, _ in self.iter_chunks():
            stop = start + block.shape[0]
            hi = int(np.searchsorted(idx, stop))
            if hi > j:
                out[j:hi] = block[idx[j:hi] - start]
                j = hi
            if j == len(idx):
                break
        return out


def _unweighted(data, size, random_state):
    return data.take(sample_indices(data.n_samples, size, random_state)), None


def _pass_call_rows(params_list):
    """Rows per kernel call of a pass feeding every set of parameters: the
    smallest :func:`fastem._estep.pass_rows` among them (a multiple of the
    task size, so the statistics are bitwise those of any other such size)."""
    return min(_estep.pass_rows(p.covariance_type, *p.means.shape) for p in params_list)


class ArrayData(RowData):
    """A validated in-memory array (or memmap), processed in row chunks."""

    in_memory = True

    def __init__(self, X, sample_weight=None, chunk_size=CHUNK_ROWS):
        self.X = X
        self.n_samples, self.n_features = X.shape
        self.dtype = X.dtype
        self.sample_weight = sample_weight
        self.chunk_size = chunk_size

    def e_pass_many(self, params_list):
        """As RowData's, in calls of :func:`fastem._estep.pass_rows` rows (a
        multiple of the task size, so bitwise the same statistics) rather than
        chunks: fewer kernel calls, each waking the threads once."""
        if self.missing or not params_list:
            return super().e_pass_many(params_list)
        return self._pass_in_calls(params_list, _pass_call_rows(params_list), lambda acc, lo, hi:
                                   acc.add(self.X[lo:hi], self.weights_of(lo, hi)))

    def hard_assignment_stats(self, centers, covariance_type):
        """As RowData's, in calls of :func:`fastem._estep.pass_rows` rows
        (whole tasks: bitwise the same statistics) rather than chunks."""
        if self.missing:
            return super().hard_assignment_stats(centers, covariance_type)
        acc = _initstats.hard_assignment_accumulator(centers, covariance_type, self.dtype)
        rows = _estep.pass_rows(covariance_type, *np.shape(centers))
        for lo in range(0, self.n_samples, rows):
            hi = min(self.n_samples, lo + rows)
            _initstats.add_hard_assignment(acc, self.X[lo:hi], self.weights_of(lo, hi))
        return acc.result()

    def iter_chunks(self):
        n = self.n_samples
        for lo in range(0, n, self.chunk_size):
            hi = min(n, lo + self.chunk_size)
            yield lo, self.X[lo:hi], self.weights_of(lo, hi)

    def take(self, idx):
        return np.ascontiguousarray(self.X[idx], dtype=np.float64)

    def _incomplete_rows(self, lo, block):
        # the array does not change during a fit: each chunk is scanned for
        # NaN in the first pass only (the scan reads the chunk once more, a
        # few per cent of an iteration)
        cache = self.__dict__.setdefault("_incomplete_cache", {})
        key = (lo, block.shape[0])
        inc = cache.get(key)
        if inc is None:
            inc = cache[key] = _missing.incomplete_rows(block)
        return inc

    def minibatches(self, batch_size, random_state):
        order = random_state.permutation(self.n_samples)
        for lo in range(0, self.n_samples, batch_size):
            idx = np.sort(order[lo:lo + batch_size])
            w = None if self.sample_weight is None else self.sample_weight[idx]
            yield np.ascontiguousarray(self.X[idx]), w


class SourceData(RowData):
    """A :class:`fastem.io.ChunkSource`: chunks are checked for NaN/inf as
    they are read, and the row count is learned by the first pass when the
    source cannot tell it."""

    def __init__(self, source, sample_weight=None):
        self.source = source
        # every chunk passed the finiteness check in a whole pass (iter_chunks)
        self._checked = False
        self.n_features = source.n_features
        self.dtype = np.dtype(source.dtype)
        self.name = source.name
        self.n_samples = source.n_samples
        self._raw_weight = sample_weight
        if sample_weight is not None:
            if self.n_samples is None:
                self.n_samples = self.count()
            self.sample_weight, self.weight_scale = normalise_weights(
                check_sample_weight(sample_weight, self.n_samples))

    def _check(self, index, start, block):
        check_finite(block, what=f"chunk {index} of {self.name}", row_offset=start,
                     allow_nan=self.missing)

    def iter_chunks(self):
        # The finiteness check runs where the chunk is read (the source's
        # prefetch thread): it overlaps the kernels' work on the previous chunk.
        n = 0
        for _index, start, block in self.source.iter_with_offsets(check=self._check):
            n = start + block.shape[0]
            if self.sample_weight is not None and n > self.n_samples:
                raise ValueError(
                    f"{self.name} yields more rows than sample_weight has "
                    f"({self.n_samples}).")
            yield start, block, self.weights_of(start, n)
        if self.n_samples is None:
            self.n_samples = n
        elif n != self.n_samples:
            raise ValueError(
                f"{self.name} yielded {n} rows, but {self.n_samples} were expected; "
                "the source changed or is truncated.")
        self._checked = True

    def e_pass_many(self, params_list):
        """As RowData's; once a whole pass has checked every row of a
        ``.npy`` file (whose identity each pass verifies: a changed file is
        an error), later passes let the E-step kernels read the rows
        themselves, each task its own (:meth:`StatsAccumulator.add_from_file`):
        the reading is shared by the kernel's threads instead of taking a core
        from them.  The calls cover the rows of the source's chunks, or of
        :func:`fastem._estep.pass_rows` when the chunk size is a multiple of
        the task size (the same tasks): the statistics are bitwise those of
        the chunked passes, whichever way the rows are read."""
        direct = None
        if self._checked and not self.missing and params_list and self.n_samples:
            direct = self.source._direct_rows()
        if direct is None:
            return super().e_pass_many(params_list)
        rows = self.source.chunk_size
        if rows % _estep.task_rows(self.n_features) == 0:
            rows = _pass_call_rows(params_list)
        row_bytes = self.n_features * self.dtype.itemsize
        with direct as (fd, offset):
            return self._pass_in_calls(params_list, rows, lambda acc, lo, hi: acc.add_from_file(
                fd, offset + lo * row_bytes, hi - lo, self.weights_of(lo, hi)))

    def count(self):
        n = 0
        for block in self.source:
            n += block.shape[0]
        return n

    def sample(self, size, random_state):
        if self.n_samples is None:
            # length unknown (CSV, iterables): one pass of reservoir sampling
            from .io import reservoir_sample

            S = np.ascontiguousarray(reservoir_sample(self.source, size, random_state),
                                     dtype=np.float64)
            if self.missing:
                check_finite(S, what=f"{self.name} (rows drawn for initialisation)",
                             allow_nan=True)
            elif not np.all(np.isfinite(S)):
                raise ValueError(
                    f"Input {self.name} contains NaN or infinity (found in the rows "
                    "drawn for initialisation). Remove or impute non-finite values "
                    "(NaN or infinity) before fitting, or, for NaN marking missing "
                    "values, pass missing='marginalize' to the estimator.")
            return S, None
        return super().sample(size, random_state)


def as_data(X, sample_weight=None, *, chunk_size=None, validate_array=None, missing=False):
    """The :class:`RowData` for X: one factory for every kind of input.

    Parameters
    ----------
    X : array-like, path, :class:`fastem.io.ChunkSource`, iterable of blocks,
        h5py/zarr array, or Dask array/DataFrame
    sample_weight : array-like of shape (n_samples,) or None
    chunk_size : int or None
        Rows per chunk of a streamed source.
    validate_array : callable
        ``validate_array(X) -> ndarray`` for in-memory input: the estimator's
        scikit-learn validation (which records the feature names).
    missing : bool, default=False
        NaN entries are missing values to marginalise (otherwise an error).

    Returns
    -------
    RowData
    """
    data = _as_data(X, sample_weight, chunk_size, validate_array, missing)
    data.missing = bool(missing)
    return data


def _as_data(X, sample_weight, chunk_size, validate_array, missing):
    if _is_dask(X):
        from ._dask import DaskData

        return DaskData(X, sample_weight, missing=missing)
    if is_stream(X):
        from . import io

        return SourceData(io.chunks(X, chunk_size=chunk_size), sample_weight)
    X = validate_array(X)
    if sample_weight is None:
        return ArrayData(X)
    w, scale = normalise_weights(check_sample_weight(sample_weight, X.shape[0]))
    data = ArrayData(X, w)
    data.weight_scale = scale
    return data


def _is_dask(X):
    import sys

    if "dask" not in sys.modules:
        return False
    mod = type(X).__module__ or ""
    return mod.startswith("dask.")


def is_stream(X):
    """Whether X is read chunk by chunk rather than validated in memory."""
    import os

    from . import io

    if isinstance(X, (str, os.PathLike, io.ChunkSource)):
        return True
    if isinstance(X, (list, tuple)):
        # a list of 2-D blocks is streamed block by block; a list of rows
        # (or of numbers) is an array-like, validated in memory
        return len(X) > 0 and np.ndim(X[0]) == 2
    if isinstance(X, np.ndarray) or hasattr(X, "iloc"):
        return False
    import scipy.sparse

    if scipy.sparse.issparse(X):
        return False  # validation says dense data is required
    if hasattr(X, "__next__"):
        return True
    if hasattr(X, "__iter__") and not hasattr(X, "shape") and not hasattr(X, "__array__") \
            and not hasattr(X, "__array_interface__"):
        # a re-iterable of blocks (each iteration yields the rows again)
        return True
    shape = getattr(X, "shape", None)
    return (shape is not None and len(shape) == 2 and hasattr(X, "__getitem__")
            and not hasattr(X, "__array_function__"))
