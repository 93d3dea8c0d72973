"""Small helpers built on top of ChunkSource: check_finite, count_rows, reservoir_sample."""

import numbers

import numpy as np

from ._source import chunks


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
        "non-finite values (NaN or infinity) first."
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

