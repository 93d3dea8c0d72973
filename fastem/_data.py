"""Rows for the EM drivers: in-memory arrays and chunk sources behind one face.

A driver asks a :class:`RowData` for its chunks (each with its first row and
its sample weights), for a random subsample of rows, and for the row count;
it never cares whether the rows live in memory, in a file, or in a stream.
"""

import numpy as np

from . import _estep
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
    """Common interface; see :class:`ArrayData` and :class:`SourceData`."""

    n_samples = None
    n_features = None
    dtype = None
    name = "X"
    sample_weight = None
    # the weights given divided by this (see normalise_weights); sums of
    # weights and weighted log-likelihoods times it are those of the weights given
    weight_scale = 1.0

    def iter_chunks(self):
        """Yield (start_row, block, block_weights or None) in row order."""
        raise NotImplementedError  # pragma: no cover - interface

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


class ArrayData(RowData):
    """A validated in-memory array (or memmap), processed in row chunks."""

    def __init__(self, X, sample_weight=None, chunk_size=_estep.PASS_CHUNK):
        self.X = X
        self.n_samples, self.n_features = X.shape
        self.dtype = X.dtype
        self.sample_weight = sample_weight
        self.chunk_size = chunk_size

    def iter_chunks(self):
        n = self.n_samples
        for lo in range(0, n, self.chunk_size):
            hi = min(n, lo + self.chunk_size)
            yield lo, self.X[lo:hi], self.weights_of(lo, hi)

    def take(self, idx):
        return np.ascontiguousarray(self.X[idx], dtype=np.float64)


class SourceData(RowData):
    """A :class:`fastem.io.ChunkSource`: chunks are checked for NaN/inf as
    they are read, and the row count is learned by the first pass when the
    source cannot tell it."""

    def __init__(self, source, sample_weight=None):
        self.source = source
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

    def iter_chunks(self):
        n = 0
        for index, start, block in self.source.iter_with_offsets():
            check_finite(block, what=f"chunk {index} of {self.name}", row_offset=start)
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
            if not np.all(np.isfinite(S)):
                raise ValueError(
                    f"Input {self.name} contains NaN or infinity (found in the rows "
                    "drawn for initialisation). Remove or impute non-finite values "
                    "(NaN or infinity) before fitting.")
            return S, None
        return super().sample(size, random_state)
