"""Columnar and chunked array files: Parquet, HDF5 and Zarr."""

import os

import numpy as np

from ._base import (
    _as_list,
    _Backend,
    _column_take,
    _import_optional,
    _resolve_columns,
    _row_chunk,
    _SlicedBackend,
)
from ._watch import _changed_error, _FileWatch, _read_error


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

