"""Iterables of blocks, and column selection on top of an existing source."""

import numpy as np

from ._base import _as_list, _Backend, _check_numeric, _resolve_columns


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

