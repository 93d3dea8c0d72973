"""Dask arrays and DataFrames as rows of an EM fit: statistics on the workers.

:class:`DaskData` is the :class:`~fastem._data.RowData` of a Dask collection.
The rows are persisted on the workers once per fit; every EM iteration then
maps the one-pass E-step kernel over the row blocks where they live, and only
the parameters (sent once to each worker) and the per-block sufficient
statistics (``O(K d^2)`` numbers, whatever the block's row count) travel.  The
block statistics are merged by a tree of fixed shape over the block order, so
the result does not depend on which worker finished first: two fits of the
same data give bitwise the same model, with any scheduler and any number of
workers, and after a worker is lost.

Prediction (``predict``, ``predict_proba``, ``score_samples``) returns lazy
Dask arrays computed block by block on the workers.
"""

import threading

import numpy as np

try:
    import dask
    import dask.array as da
except ImportError as exc:  # pragma: no cover - exercised without dask only
    raise ImportError(
        "Dask support needs dask[array] and distributed: pip install 'fastem[dask]'"
    ) from exc

from . import _estep
from ._constants import CHUNK_ROWS
from ._data import ArrayData, RowData, sample_indices
from ._validation import check_finite, check_weight_values

# Statistics of up to this many neighbouring blocks are merged (in block
# order) by one task of the reduction tree; the tree's depth is
# ceil(log_FAN_IN(n_blocks)).
TREE_FAN_IN = 8


# -- helpers that run on the workers ------------------------------------------


def _worker_threads():
    """Numba threads for a kernel call inside a Dask task.

    In a distributed worker: at most the worker's thread count.  In the local
    threaded scheduler: the cores shared by its pool threads.  In the
    synchronous scheduler (main thread): Numba's current setting (None).
    """
    import numba

    top = numba.config.NUMBA_NUM_THREADS
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        worker = None
    if worker is not None:
        state = getattr(worker, "state", None)
        n = getattr(state, "nthreads", None) or getattr(worker, "nthreads", None)
        return None if not n else max(1, min(top, int(n)))
    if threading.current_thread() is threading.main_thread():
        return None
    from dask.system import CPU_COUNT

    pool = dask.config.get("num_workers", None) or CPU_COUNT
    return max(1, top // int(pool))


class _task_threads:
    """Context manager: limit Numba threads inside a task, restore after."""

    def __enter__(self):
        import numba

        self._previous = numba.get_num_threads()
        n = _worker_threads()
        if n is not None and n != self._previous:
            numba.set_num_threads(n)
        return self

    def __exit__(self, *exc):
        import numba

        numba.set_num_threads(self._previous)
        return False


def _contiguous(block):
    """A C-contiguous block.  Blocks arrive writable or read-only depending
    on the scheduler (deserialised on a worker or produced in memory); the
    kernels copy read-only data to a writable array, so both give the same
    bits."""
    return np.ascontiguousarray(block)


def _block_weights(w):
    return None if w is None else np.ascontiguousarray(w, dtype=np.float64)


def _check_block(block, w, start, name, missing=False):
    """Raise for non-finite values (NaN allowed with ``missing``) or bad
    weights; return (weight sum, rows of positive weight) of the block."""
    check_finite(np.ascontiguousarray(block), what=name, row_offset=start,
                 allow_nan=missing)
    if w is None:
        return 0.0, 0
    w = np.asarray(w, dtype=np.float64)
    check_weight_values(w, offset=start)
    return float(w.sum()), int(np.count_nonzero(w > 0))


def _array_data(block, w, missing):
    data = ArrayData(_contiguous(block), _block_weights(w))
    data.missing = missing
    return data


def _block_stats_many(block, w, params_list, missing=False):
    """E-step statistics of one block for several sets of parameters."""
    with _task_threads():
        return _array_data(block, w, missing).e_pass_many(params_list)


def _block_hard_stats(block, w, centers, covariance_type):
    """Statistics of one block under the nearest-centre assignment."""
    block = _contiguous(block)
    if block.shape[0] == 0:
        return None
    with _task_threads():
        return _array_data(block, w, False).hard_assignment_stats(centers,
                                                                  covariance_type)


def _merge(*parts):
    """Merge statistics left to right (None: a block without rows)."""
    total = None
    for part in parts:
        if part is None:
            continue
        total = part if total is None else total.merge(part)
    return total


def _block_collect(block, params, reduce, name, missing=False, block_info=None):
    block = _contiguous(block)
    start = 0
    if block_info is not None and 0 in block_info:
        start = block_info[0]["array-location"][0][0]
    check_finite(block, what=name, row_offset=start, allow_nan=missing)
    parts = []
    with _task_threads():
        for lo in range(0, block.shape[0], CHUNK_ROWS):
            wlp = _estep.weighted_log_prob(block[lo:lo + CHUNK_ROWS], params,
                                           missing=missing)
            parts.append(reduce(wlp))
    if not parts:
        return reduce(np.empty((0, params.n_components)))
    return np.concatenate(parts, axis=0)


def _block_weighted_sample(block, w, count, seed):
    """``count`` rows of the block drawn with replacement in proportion to w."""
    w = np.asarray(w, dtype=np.float64)
    rng = np.random.RandomState(seed)
    idx = np.sort(rng.choice(w.shape[0], count, replace=True, p=w / w.sum()))
    return np.asarray(block[idx], dtype=np.float64)


def _block_positive_rows(block, w):
    w = np.asarray(w, dtype=np.float64)
    pos = w > 0
    return np.asarray(block[pos], dtype=np.float64), w[pos]


# -- client side -----------------------------------------------------------------


def _client():
    """The active distributed Client, or None."""
    try:
        from distributed import default_client
    except ImportError:
        return None
    try:
        client = default_client()
    except ValueError:
        return None
    # a scheduler chosen with dask.config.set(scheduler=...) takes precedence
    scheduler = dask.base.get_scheduler()
    return client if getattr(scheduler, "__self__", None) is client else None


def _tree(parts, fan_in=TREE_FAN_IN):
    """Merge delayed statistics by a tree whose shape depends only on their
    number: groups of ``fan_in`` neighbours, in order, level by level."""
    level = list(parts)
    merge = dask.delayed(_merge, pure=False)
    while len(level) > 1:
        level = [merge(*level[i:i + fan_in]) if len(level[i:i + fan_in]) > 1
                 else level[i] for i in range(0, len(level), fan_in)]
    return level[0]


def _as_dask_array(X, name):
    """The numeric 2-D Dask array behind a Dask array or DataFrame, with
    float32 kept and other numeric types as float64, and one column chunk.

    Returns (array, feature names or None).
    """
    names = None
    if not isinstance(X, da.Array):
        if hasattr(X, "select_dtypes") and hasattr(X, "to_dask_array"):
            num = X.select_dtypes("number")
            cols = list(num.columns)
            if not cols:
                raise ValueError(
                    f"The Dask DataFrame {name} has no numeric columns (columns: "
                    f"{list(X.columns)}); fastem uses the numeric columns only.")
            if all(isinstance(c, str) for c in cols):
                names = np.asarray(cols, dtype=object)
            X = num.to_dask_array(lengths=True)
        elif hasattr(X, "to_dask_array"):  # a Dask Series
            X = X.to_dask_array(lengths=True)
        else:
            raise TypeError(
                f"Expected a dask.array.Array or dask DataFrame for {name}, got "
                f"{type(X).__module__}.{type(X).__name__}.")
    if X.ndim != 2:
        raise ValueError(
            f"Expected 2D array, got {X.ndim}D array instead: {name} must have shape "
            "(n_samples, n_features); reshape your data, e.g. X.reshape(-1, 1) "
            "for a single feature.")
    kind = X.dtype.kind
    if kind == "c":
        raise ValueError("Complex data not supported: got a complex array; "
                         "pass real-valued features.")
    if kind not in "biuf":
        raise TypeError(
            f"Expected numeric input, got a Dask array of dtype {X.dtype} "
            f"(kind {kind!r}). Convert the features to numbers, e.g. "
            "X.astype(float), or select the numeric columns.")
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    if any(np.isnan(c) for c in X.chunks[0]):
        X = X.compute_chunk_sizes()
    if len(X.chunks[1]) != 1:
        X = X.rechunk({1: -1})
    return X, names


class DaskData(RowData):
    """A Dask array or DataFrame as the rows of a fit or a prediction.

    Parameters
    ----------
    X : dask.array.Array of shape (n_samples, n_features), or dask DataFrame
        A DataFrame contributes its numeric columns (their names become
        ``feature_names``).
    sample_weight : dask or numpy array of shape (n_samples,), or None

    The rows are persisted on the workers at the first pass and kept for the
    whole fit.
    """

    name = "X"
    # the kernels run on the workers
    kernels_here = False

    def __init__(self, X, sample_weight=None, missing=False):
        self.missing = bool(missing)
        X, names = _as_dask_array(X, self.name)
        n, d = X.shape
        self.n_samples = int(n)
        self.n_features = int(d)
        self.dtype = np.dtype(X.dtype)
        self.feature_names = names
        self.X = X
        self.sample_weight = self._weights(sample_weight)
        self._persisted = False
        self._block_sums = None

    # -- set-up ---------------------------------------------------------------

    def _weights(self, sample_weight):
        """Sample weights as a float64 Dask array with X's row chunks."""
        if sample_weight is None:
            return None
        import numbers

        rows = self.X.chunks[0]
        if isinstance(sample_weight, numbers.Number):
            sample_weight = np.full(self.n_samples, sample_weight, dtype=np.float64)
        if not isinstance(sample_weight, da.Array):
            if _is_dask_object(sample_weight) and hasattr(sample_weight, "to_dask_array"):
                sample_weight = sample_weight.to_dask_array(lengths=True)  # a Series
            else:
                sample_weight = np.asarray(sample_weight)
        w = sample_weight
        if w.dtype.kind not in "biuf":
            raise TypeError(f"sample_weight must be numeric, got dtype {w.dtype}.")
        if w.ndim != 1 or w.shape[0] != self.n_samples:
            raise ValueError(
                f"sample_weight.shape == {w.shape}, expected ({self.n_samples},): "
                "one weight per row of X.")
        if isinstance(w, np.ndarray):
            return da.from_array(np.ascontiguousarray(w, dtype=np.float64), chunks=(rows,))
        if w.dtype != np.float64:
            w = w.astype(np.float64)
        if w.chunks[0] != rows:
            w = w.rechunk((rows,))
        return w

    def _ensure_ready(self):
        """Persist the rows (and weights) on the workers and check them, once."""
        if self._persisted:
            return
        client = _client()
        parts = (self.X,) if self.sample_weight is None else (self.X, self.sample_weight)
        parts = client.persist(list(parts)) if client is not None else dask.persist(*parts)
        self.X = parts[0]
        if self.sample_weight is not None:
            self.sample_weight = parts[1]
        check = dask.delayed(_check_block, pure=False)
        starts = np.concatenate([[0], np.cumsum(self.X.chunks[0])[:-1]]).astype(int)
        results = dask.compute(*[
            check(b, wb, int(s), self.name, self.missing)
            for b, wb, s in zip(self._blocks(), self._weight_blocks(), starts)])
        self._persisted = True
        if self.sample_weight is not None:
            sums = np.array([r[0] for r in results])
            self._block_sums = sums
            self._block_positive = np.array([r[1] for r in results])
            if not sums.sum() > 0:
                raise ValueError("sample_weight sums to zero; at least one row needs a "
                                 "positive weight.")

    def _blocks(self):
        return list(self.X.to_delayed().ravel())

    def _weight_blocks(self):
        if self.sample_weight is None:
            return [None] * len(self.X.chunks[0])
        return list(self.sample_weight.to_delayed().ravel())

    # -- the passes -----------------------------------------------------------

    def e_pass_many(self, params_list):
        """One E-step over all rows on the workers for every set of
        parameters: merged SuffStats, one per set (each block's statistics
        merged by the same fixed tree as a single fit's)."""
        self._ensure_ready()
        p = dask.delayed(list(params_list), pure=True)
        stats = dask.delayed(_block_stats_many, pure=False, nout=len(params_list))
        per_block = [stats(b, wb, p, self.missing)
                     for b, wb in zip(self._blocks(), self._weight_blocks())]
        trees = [_tree([blk[i] for blk in per_block]) for i in range(len(params_list))]
        return list(dask.compute(*trees))

    def hard_assignment_stats(self, centers, covariance_type):
        """Statistics with each row given to its nearest centre (the 'kmeans'
        initialisation's full pass), computed on the workers."""
        self._ensure_ready()
        c = dask.delayed(np.ascontiguousarray(centers, dtype=np.float64), pure=True)
        hard = dask.delayed(_block_hard_stats, pure=False)
        parts = [hard(b, wb, c, covariance_type)
                 for b, wb in zip(self._blocks(), self._weight_blocks())]
        return _tree(parts).compute()

    def collect(self, params, reduce, width=None, dtype=np.float64):
        """A lazy Dask array: ``reduce`` of each block's weighted log
        probabilities, computed on the workers."""
        X = self.X
        p = dask.delayed(params, pure=True)
        if width is None:
            return da.map_blocks(_block_collect, X, p, reduce, self.name, self.missing,
                                 drop_axis=1,
                                 chunks=(X.chunks[0],), dtype=dtype,
                                 meta=np.empty((0,), dtype=dtype))
        return da.map_blocks(_block_collect, X, p, reduce, self.name, self.missing,
                             chunks=(X.chunks[0], (int(width),)), dtype=dtype,
                             meta=np.empty((0, 0), dtype=dtype))

    def iter_chunks(self):
        """Yield (start_row, block, weights or None), one block at a time.

        Blocks are computed (or fetched from the workers) one by one, the
        next one prefetched while the caller works on the current one, so
        that client memory holds at most two blocks.
        """
        blocks = self._blocks()
        wblocks = self._weight_blocks()
        checked = self._persisted
        client = _client()

        def fetch(i):
            if client is None:
                return blocks[i], wblocks[i]
            # start computing (or moving) the block now; collected when needed
            return client.compute(blocks[i]), (
                None if wblocks[i] is None else client.compute(wblocks[i]))

        def result(handle):
            if client is None:
                return dask.compute(*handle)
            return tuple(None if h is None else h.result() for h in handle)

        start = 0
        nxt = fetch(0) if blocks else None
        for i in range(len(blocks)):
            block, w = result(nxt)
            nxt = fetch(i + 1) if i + 1 < len(blocks) else None
            block = _contiguous(block)
            if not checked:
                _check_block(block, w, start, self.name, self.missing)
            yield start, block, _block_weights(w)
            start += block.shape[0]

    # -- the initial subsample ----------------------------------------------------

    def take(self, idx):
        """Rows idx (sorted int) as float64, gathered from the workers."""
        self._ensure_ready()
        idx = np.asarray(idx, dtype=np.int64)
        if idx.size == 0:
            return np.empty((0, self.n_features))
        rows = self.X[idx].compute()
        return np.ascontiguousarray(rows, dtype=np.float64)

    def sample(self, size, random_state):
        """A random subsample of rows (float64), gathered from the workers.

        Without sample weights the rows are those an in-memory array of the
        same rows gives for the same ``random_state``
        (:func:`fastem._data.sample_indices`).  With
        sample weights, the rows are drawn with replacement in proportion to
        the weights, block by block on the workers (a multinomial split of
        ``size`` over the blocks by their weight sums), and returned with
        unit weights; the draw differs from the in-memory one.
        """
        n = self.n_samples
        self._ensure_ready()
        if self.sample_weight is None:
            return self.take(sample_indices(n, size, random_state)), None
        blocks = self._blocks()
        wblocks = self._weight_blocks()
        if self._block_positive.sum() <= size:
            pos = dask.delayed(_block_positive_rows, pure=False, nout=2)
            parts = dask.compute(*[pos(b, wb) for b, wb in zip(blocks, wblocks)])
            rows = np.concatenate([r for r, _ in parts], axis=0)
            return np.ascontiguousarray(rows), np.concatenate([w for _, w in parts])
        sums = self._block_sums
        counts = random_state.multinomial(size, sums / sums.sum())
        seeds = random_state.randint(np.iinfo(np.int32).max, size=len(blocks))
        draw = dask.delayed(_block_weighted_sample, pure=False)
        parts = dask.compute(*[draw(b, wb, int(c), int(s))
                               for b, wb, c, s in zip(blocks, wblocks, counts, seeds)
                               if c > 0])
        return np.ascontiguousarray(np.concatenate(parts, axis=0)), np.ones(size)


def _is_dask_object(obj):
    return (type(obj).__module__ or "").startswith("dask.")
