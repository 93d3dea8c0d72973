"""Tests for fastem.io, the chunk-source layer."""

import os
import sys
import threading
import time

import numpy as np
import pytest

from fastem.io import (
    DEFAULT_CHUNK_SIZE,
    ChunkSource,
    check_finite,
    chunks,
    count_rows,
    reservoir_sample,
)

N, D = 250, 4
CHUNK_SIZES = [1, 7, 100, 1000]


@pytest.fixture(scope="module")
def X():
    rng = np.random.default_rng(0)
    return rng.normal(size=(N, D)) * 100


def _concat(src):
    blocks = list(src)
    for b in blocks:
        assert b.ndim == 2
        assert b.flags.c_contiguous
        assert b.dtype == src.dtype
        assert b.shape[1] == src.n_features
        assert 1 <= b.shape[0] <= src.chunk_size
    return np.concatenate(blocks, axis=0)


def _prefetch_threads():
    return [t for t in threading.enumerate() if t.name.startswith("fastem-prefetch")]


def _wait_no_prefetch_threads(timeout=3.0):
    deadline = time.monotonic() + timeout
    while _prefetch_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    return not _prefetch_threads()


class ReIterable:
    """A re-iterable object yielding blocks, counting its passes."""

    def __init__(self, X, step):
        self.X, self.step, self.passes, self.closed = X, step, 0, 0

    def __iter__(self):
        self.passes += 1
        try:
            for i in range(0, len(self.X), self.step):
                yield self.X[i : i + self.step]
        finally:
            self.closed += 1


# ---------------------------------------------------------------------------
# Source builders: each returns (source, expected array)
# ---------------------------------------------------------------------------


def _csv_source(tmp_path, X, header=True, delimiter=",", suffix=".csv"):
    path = tmp_path / f"data{suffix}"
    np.savetxt(
        path, X, delimiter=delimiter, fmt="%.17g",
        header=delimiter.join(f"f{j}" for j in range(X.shape[1])) if header else "",
        comments="",
    )
    return str(path)


def _make(kind, tmp_path, X):
    if kind == "array":
        return X
    if kind == "fortran_array":
        return np.asfortranarray(X)
    if kind == "memmap":
        path = tmp_path / "mm.dat"
        mm = np.memmap(path, dtype=X.dtype, mode="w+", shape=X.shape)
        mm[:] = X
        mm.flush()
        del mm
        return np.memmap(path, dtype=X.dtype, mode="r", shape=X.shape)
    if kind == "npy":
        np.save(tmp_path / "x.npy", X)
        return str(tmp_path / "x.npy")
    if kind == "npy_fortran":
        np.save(tmp_path / "xf.npy", np.asfortranarray(X))
        return tmp_path / "xf.npy"  # a PathLike
    if kind == "npy_bigendian":
        np.save(tmp_path / "xb.npy", X.astype(">f8"))
        return str(tmp_path / "xb.npy")
    if kind == "csv":
        return _csv_source(tmp_path, X)
    if kind == "csv_noheader":
        return _csv_source(tmp_path, X, header=False)
    if kind == "tsv":
        return _csv_source(tmp_path, X, delimiter="\t", suffix=".tsv")
    if kind == "csv_semicolon":
        return _csv_source(tmp_path, X, delimiter=";")
    if kind == "txt_whitespace":
        return _csv_source(tmp_path, X, header=False, delimiter=" ", suffix=".txt")
    if kind == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table({f"f{j}": X[:, j] for j in range(X.shape[1])})
        pq.write_table(table, tmp_path / "x.parquet", row_group_size=60)
        return str(tmp_path / "x.parquet")
    if kind == "h5":
        import h5py

        with h5py.File(tmp_path / "x.h5", "w") as f:
            f.create_dataset("grp/data", data=X, chunks=(16, X.shape[1]))
        return str(tmp_path / "x.h5")
    if kind == "h5_named":
        import h5py

        with h5py.File(tmp_path / "x2.h5", "w") as f:
            f.create_dataset("a", data=X)
            f.create_dataset("other", data=np.zeros((3, 2)))
        return str(tmp_path / "x2.h5") + "::a"
    if kind == "zarr":
        import zarr

        z = zarr.open(
            str(tmp_path / "x.zarr"), mode="w", shape=X.shape, chunks=(32, X.shape[1]),
            dtype=X.dtype,
        )
        z[:] = X
        return str(tmp_path / "x.zarr")
    if kind == "zarr_array":
        import zarr

        z = zarr.create_array(store={}, shape=X.shape, chunks=(32, X.shape[1]), dtype=X.dtype)
        z[:] = X
        return z
    if kind == "list":
        return [X[:10], X[10:10], X[10:200], X[200:]]
    if kind == "tuple":
        return tuple(np.array_split(X, 3))
    if kind == "reiterable":
        return ReIterable(X, 33)
    if kind == "dataframe":
        import pandas as pd

        return pd.DataFrame(X, columns=[f"f{j}" for j in range(X.shape[1])])
    if kind == "nested_list":
        return X.tolist()
    raise AssertionError(kind)


REITERABLE_KINDS = [
    "array", "fortran_array", "memmap", "npy", "npy_fortran", "npy_bigendian",
    "csv", "csv_noheader", "tsv", "csv_semicolon", "txt_whitespace", "parquet",
    "h5", "h5_named", "zarr", "zarr_array", "list", "tuple", "reiterable",
    "dataframe", "nested_list",
]
TEXT_KINDS = {"csv", "csv_noheader", "tsv", "csv_semicolon", "txt_whitespace"}


@pytest.mark.parametrize("kind", REITERABLE_KINDS)
@pytest.mark.parametrize("chunk_size", CHUNK_SIZES)
def test_roundtrip_every_source(kind, chunk_size, tmp_path, X):
    source = _make(kind, tmp_path, X)
    src = chunks(source, chunk_size=chunk_size, prefetch=chunk_size != 1)
    assert src.n_features == D
    assert src.chunk_size == chunk_size
    assert src.dtype is np.float64
    if kind in TEXT_KINDS or kind == "reiterable":
        assert src.n_samples is None
    else:
        assert src.n_samples == N
    np.testing.assert_array_equal(_concat(src), X)
    # Re-iterable: a second pass gives the same rows.
    np.testing.assert_array_equal(_concat(src), X)


@pytest.mark.parametrize("kind", REITERABLE_KINDS)
def test_offsets_are_consistent(kind, tmp_path, X):
    src = chunks(_make(kind, tmp_path, X), chunk_size=40)
    expected_start = 0
    for i, (index, start, block) in enumerate(src.iter_with_offsets()):
        assert index == i
        assert start == expected_start
        np.testing.assert_array_equal(block, X[start : start + block.shape[0]])
        expected_start += block.shape[0]
    assert expected_start == N


def test_generator_is_one_shot(X):
    def gen():
        for i in range(0, N, 50):
            yield X[i : i + 50]

    src = chunks(gen(), chunk_size=20)
    assert not src.reiterable
    assert src.n_samples is None
    assert src.n_features == D
    np.testing.assert_array_equal(_concat(src), X)
    with pytest.raises(ValueError, match="one-shot iterator and was already consumed; pass a list"):
        iter(src)


def test_generator_consumed_after_partial_iteration(X):
    src = chunks(iter([X[:100], X[100:]]), prefetch=False)
    for _ in src:
        break
    with pytest.raises(ValueError, match="already consumed"):
        list(src)


def test_reiterable_object_is_closed_and_restarted(X):
    obj = ReIterable(X, 33)
    src = chunks(obj, chunk_size=10)
    list(src)
    list(src)
    # one peek at construction plus two passes, each one closed.
    assert obj.passes == 3
    assert obj.closed == 3


def test_list_blocks_longer_than_chunk_size_are_split(X):
    src = chunks([X], chunk_size=64)
    assert [b.shape[0] for b in src] == [64, 64, 64, 58]


def test_existing_chunksource_is_returned_or_rewrapped(X):
    src = chunks(X, chunk_size=10, prefetch=False)
    assert chunks(src) is src
    again = chunks(src, chunk_size=100)
    assert again is not src and again.chunk_size == 100
    assert not again.prefetch  # switched off stays off
    np.testing.assert_array_equal(_concat(again), X)
    sel = chunks(chunks(X, columns=[3, 1, 0]), columns=[2, 0])
    np.testing.assert_array_equal(_concat(sel), X[:, [0, 3]])
    as32 = chunks(src, dtype="float32")
    assert as32.dtype is np.float32
    np.testing.assert_array_equal(_concat(as32), X.astype(np.float32))


def test_rewrap_columns_on_list_and_csv(tmp_path, X):
    sel = chunks(chunks([X[:100], X[100:]], columns=[1, 2, 3]), columns=[-1])
    np.testing.assert_array_equal(_concat(sel), X[:, [3]])
    path = _csv_source(tmp_path, X)
    sel = chunks(chunks(path, columns=["f3", "f0"]), columns=["f0"])
    assert sel.columns == ["f0"]
    np.testing.assert_array_equal(_concat(sel), X[:, [0]])


def test_default_chunk_size(X):
    src = chunks(X)
    assert src.chunk_size == DEFAULT_CHUNK_SIZE == 65_536
    assert len(list(src)) == 1


@pytest.mark.parametrize("bad", [0, -3, 2.5, "10", True])
def test_bad_chunk_size(bad, X):
    with pytest.raises(ValueError, match="chunk_size must be a positive integer, got"):
        chunks(X, chunk_size=bad)


def test_chunk_size_aligned_to_zarr_and_hdf5_chunks(tmp_path, X):
    import h5py
    import zarr

    z = zarr.create_array(store={}, shape=(10, 2), chunks=(3000, 2), dtype="f8")
    assert chunks(z).chunk_size == 21 * 3000
    z_big = zarr.create_array(store={}, shape=(10, 2), chunks=(100_000, 2), dtype="f8")
    assert chunks(z_big).chunk_size == 100_000
    assert chunks(z, chunk_size=5).chunk_size == 5
    path = _make("h5", tmp_path, X)
    assert chunks(path).chunk_size == DEFAULT_CHUNK_SIZE  # 16 divides it
    with h5py.File(tmp_path / "c.h5", "w") as f:
        f.create_dataset("x", data=X, chunks=(50, D))
        assert chunks(f["x"]).chunk_size == (DEFAULT_CHUNK_SIZE // 50) * 50
    assert chunks(str(tmp_path / "c.h5")).chunk_size == (DEFAULT_CHUNK_SIZE // 50) * 50


# ---------------------------------------------------------------------------
# Columns
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind", ["array", "memmap", "npy", "npy_fortran", "csv", "csv_noheader", "parquet",
             "h5", "zarr", "list", "reiterable", "dataframe"]
)
def test_integer_column_selection(kind, tmp_path, X):
    src = chunks(_make(kind, tmp_path, X), columns=[3, 0, -2], chunk_size=31)
    assert src.n_features == 3
    assert src.columns == [3, 0, -2]
    np.testing.assert_array_equal(_concat(src), X[:, [3, 0, 2]])


@pytest.mark.parametrize("kind", ["csv", "tsv", "csv_semicolon", "parquet", "dataframe"])
def test_named_column_selection(kind, tmp_path, X):
    src = chunks(_make(kind, tmp_path, X), columns=["f2", "f0"], chunk_size=64)
    assert src.columns == ["f2", "f0"]
    assert src.n_features == 2
    np.testing.assert_array_equal(_concat(src), X[:, [2, 0]])


@pytest.mark.parametrize("kind", ["csv", "parquet", "dataframe"])
def test_unknown_column_name_lists_available(kind, tmp_path, X):
    msg = r"column 'nope' not found .*available columns: \['f0', 'f1', 'f2', 'f3'\]"
    with pytest.raises(KeyError, match=msg):
        chunks(_make(kind, tmp_path, X), columns=["nope"])


@pytest.mark.parametrize("kind", ["array", "npy", "csv_noheader", "list"])
def test_names_without_header_and_bad_indices(kind, tmp_path, X):
    source = _make(kind, tmp_path, X)
    with pytest.raises(ValueError, match="has no column names .*integer index 0..3"):
        chunks(source, columns=["f0"])
    msg = r"column index 4 is out of range .* 4 columns \(valid indices: 0..3\)"
    with pytest.raises(ValueError, match=msg):
        chunks(source, columns=[0, 4])
    with pytest.raises(ValueError, match="at least one column"):
        chunks(source, columns=[])


# ---------------------------------------------------------------------------
# dtype rules
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "in_dtype, out_dtype",
    [
        (np.float32, np.float32),
        (np.float64, np.float64),
        (np.float16, np.float64),
        (np.int32, np.float64),
        (np.int64, np.float64),
        (np.uint8, np.float64),
        (np.bool_, np.float64),
    ],
)
@pytest.mark.parametrize("kind", ["array", "npy", "list", "parquet", "h5", "zarr_array"])
def test_dtype_rule(in_dtype, out_dtype, kind, tmp_path, X):
    data = (np.abs(X) > 50) if in_dtype is np.bool_ else np.round(np.abs(X)).astype(in_dtype)
    if kind == "parquet" and in_dtype is np.float16:
        pytest.skip("Parquet has no float16 columns")
    src = chunks(_make(kind, tmp_path, data), chunk_size=64)
    assert src.dtype is out_dtype
    np.testing.assert_array_equal(_concat(src), data.astype(out_dtype))


@pytest.mark.parametrize("requested", [np.float32, "float32", np.dtype("float32")])
def test_requested_dtype(requested, X):
    src = chunks(X, dtype=requested)
    assert src.dtype is np.float32
    np.testing.assert_array_equal(_concat(src), X.astype(np.float32))
    assert chunks(X.astype(np.float32), dtype="float64").dtype is np.float64


def test_csv_is_float64_unless_asked(tmp_path, X):
    path = _csv_source(tmp_path, X)
    assert chunks(path).dtype is np.float64
    src = chunks(path, dtype=np.float32)
    np.testing.assert_array_equal(_concat(src), X.astype(np.float32))


@pytest.mark.parametrize("bad", [np.int32, "float16", "complex128", "nonsense"])
def test_bad_requested_dtype(bad, X):
    with pytest.raises(ValueError, match="dtype must be np.float32, np.float64 or None"):
        chunks(X, dtype=bad)


@pytest.mark.parametrize(
    "data",
    [
        np.array([["a", "b"], ["c", "d"]]),
        np.array([[1, None], [2, 3]], dtype=object),
        np.ones((3, 2), dtype=complex),
        [[1.0, "x"], [2.0, "y"]],
    ],
)
def test_non_numeric_is_typeerror(data):
    with pytest.raises(TypeError, match="non-numeric dtype"):
        chunks(data)


def test_non_numeric_later_block_is_typeerror(X):
    with pytest.raises(TypeError, match=r"block 1 of list of 2 arrays has non-numeric dtype <U1"):
        chunks([X[:10], np.array([["a"] * D])])
    gen = chunks(b for b in [X[:10], np.array([["a"] * D])])
    with pytest.raises(TypeError, match=r"chunk 1 \(rows 10..10\) of generator object has non-numeric"):
        list(gen)


def test_non_numeric_parquet_column(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"x": [1.0, 2.0], "s": ["a", "b"]}), tmp_path / "s.parquet")
    with pytest.raises(TypeError, match="column 's' of .* has non-numeric type string"):
        chunks(str(tmp_path / "s.parquet"))
    src = chunks(str(tmp_path / "s.parquet"), columns=["x"])
    np.testing.assert_array_equal(_concat(src), [[1.0], [2.0]])


def test_parquet_nulls_become_nan(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"i": pa.array([1, None, 3], pa.int64()), "f": [0.5, 1.5, None]})
    pq.write_table(table, tmp_path / "n.parquet")
    out = _concat(chunks(str(tmp_path / "n.parquet")))
    np.testing.assert_array_equal(out, [[1.0, 0.5], [np.nan, 1.5], [3.0, np.nan]])


# ---------------------------------------------------------------------------
# Shape validation and errors
# ---------------------------------------------------------------------------


def test_1d_array_error():
    with pytest.raises(ValueError, match=r"is 1-D with shape \(5,\).*reshape\(-1, 1\)"):
        chunks(np.arange(5.0))


def test_3d_and_zero_column_errors():
    with pytest.raises(ValueError, match="has 3 dimensions"):
        chunks(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="0 columns; at least one feature"):
        chunks(np.zeros((4, 0)))


def test_1d_npy_error(tmp_path):
    np.save(tmp_path / "v.npy", np.arange(5.0))
    with pytest.raises(ValueError, match=r"v.npy is 1-D .*reshape\(-1, 1\)"):
        chunks(str(tmp_path / "v.npy"))


def test_wrong_number_of_columns_in_a_block(X):
    blocks = [X[:100], X[100:200], X[200:], np.zeros((100, 5))]
    src = chunks(blocks, chunk_size=100)
    msg = r"chunk 3 \(rows 250..349\) of list of 4 arrays has 5 columns, expected 4"
    with pytest.raises(ValueError, match=msg):
        list(src)
    src = chunks(blocks[:2] + [np.zeros(3)])
    msg = r"chunk 2 \(starting at row 200\) .* has 1 dimensions .*a 2-D block of shape \(rows, 4\)"
    with pytest.raises(ValueError, match=msg):
        list(src)


def test_wrong_columns_in_generator_propagates_through_prefetch(X):
    def gen():
        yield X[:50]
        yield X[50:100, :3]

    src = chunks(gen(), prefetch=True)
    msg = r"chunk 1 \(rows 50..99\) of generator object has 3 columns, expected 4"
    with pytest.raises(ValueError, match=msg):
        list(src)
    assert _wait_no_prefetch_threads()


@pytest.mark.parametrize(
    "source",
    [
        np.zeros((0, 3)),
        [],
        [np.zeros((0, 3)), np.zeros((0, 3))],
        iter([np.zeros((0, 3))]),
    ],
)
def test_no_rows(source):
    with pytest.raises(ValueError, match="contains no rows"):
        chunks(source)


def test_reiterable_that_becomes_empty_raises_on_iteration():
    class Shrinking:
        def __init__(self):
            self.calls = 0

        def __iter__(self):
            self.calls += 1
            if self.calls == 1:
                yield np.ones((2, 2))

    src = chunks(Shrinking())
    with pytest.raises(ValueError, match="Shrinking object contains no rows"):
        list(src)


def test_empty_blocks_are_skipped(X):
    blocks = [np.zeros((0, D)), X[:5], np.zeros((0, D)), np.zeros((0, D)), X[5:]]
    src = chunks(blocks, chunk_size=1000)
    assert [b.shape[0] for b in src] == [5, N - 5]
    assert [i for i, _, _ in src.iter_with_offsets()] == [0, 1]


def test_empty_files(tmp_path):
    (tmp_path / "e.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match="e.csv contains no rows"):
        chunks(str(tmp_path / "e.csv"))
    (tmp_path / "blank.csv").write_text("\n\n")
    with pytest.raises(ValueError, match="blank.csv contains no rows"):
        chunks(str(tmp_path / "blank.csv"))
    np.save(tmp_path / "e.npy", np.zeros((0, 3)))
    with pytest.raises(ValueError, match="e.npy contains no rows"):
        chunks(str(tmp_path / "e.npy"))


def test_missing_file(tmp_path):
    path = str(tmp_path / "nope.npy")
    with pytest.raises(FileNotFoundError, match="nope.npy"):
        chunks(path)
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        chunks(str(tmp_path / "nope.h5") + "::x")


def test_unsupported_suffix(tmp_path):
    path = tmp_path / "data.xlsx"
    path.write_bytes(b"x")
    msg = r"Unsupported file type '.xlsx'.*supported suffixes are .npy, .csv"
    with pytest.raises(ValueError, match=msg):
        chunks(path)
    with pytest.raises(ValueError, match="is a directory"):
        chunks(tmp_path)
    with pytest.raises(ValueError, match="'path::name' syntax is for HDF5 files and Zarr"):
        chunks(str(_make("npy", tmp_path, np.ones((2, 2)))) + "::x")


def test_unsupported_source_type():
    with pytest.raises(TypeError, match="Unsupported data source of type int"):
        chunks(3)


def test_truncated_npy(tmp_path, X):
    path = tmp_path / "t.npy"
    np.save(path, X)
    full = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(full - 100)
    msg = rf"t.npy is truncated: .*shape \(250, 4\).*needs {full} bytes.*only {full - 100} bytes"
    with pytest.raises(ValueError, match=msg):
        chunks(str(path))


def test_npy_format_version_3(tmp_path, X):
    path = tmp_path / "v3.npy"
    with open(path, "wb") as f:
        np.lib.format.write_array(f, X, version=(3, 0))
    np.testing.assert_array_equal(_concat(chunks(str(path), chunk_size=60)), X)


def test_structured_npy_rejected(tmp_path):
    np.save(tmp_path / "s.npy", np.zeros(3, dtype=[("a", "f8"), ("b", "i4")]))
    with pytest.raises(TypeError, match="structured or object array"):
        chunks(str(tmp_path / "s.npy"))


def test_npy_read_does_not_load_whole_file(tmp_path, X, monkeypatch):
    np.save(tmp_path / "x.npy", X)

    def no_load(*args, **kwargs):
        raise AssertionError("np.load must not be used")

    monkeypatch.setattr(np, "load", no_load)
    np.testing.assert_array_equal(_concat(chunks(str(tmp_path / "x.npy"), chunk_size=13)), X)


# ---------------------------------------------------------------------------
# CSV specifics
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("use_pandas", [True, False])
def test_csv_bad_cell_names_line_and_column(use_pandas, tmp_path, monkeypatch):
    if not use_pandas:
        monkeypatch.setitem(sys.modules, "pandas", None)
    path = tmp_path / "bad.csv"
    path.write_text("a,b,c\n1,2,3\n\n4,5,6\n7,oops,9\n")
    src = chunks(str(path), chunk_size=2)
    msg = r"bad.csv, line 5, column 1 \('b'\): cannot convert 'oops' to a number"
    with pytest.raises(ValueError, match=msg):
        list(src)
    # Not selecting the bad column is fine.
    np.testing.assert_array_equal(_concat(chunks(str(path), columns=["c", "a"])), [[3, 1], [6, 4], [9, 7]])


@pytest.mark.parametrize("use_pandas", [True, False])
def test_csv_fallback_matches_pandas(use_pandas, tmp_path, monkeypatch, X):
    if not use_pandas:
        monkeypatch.setitem(sys.modules, "pandas", None)
    for kind in sorted(TEXT_KINDS):
        src = chunks(_make(kind, tmp_path, X), chunk_size=37, columns=[2, 1])
        np.testing.assert_array_equal(_concat(src), X[:, [2, 1]])


@pytest.mark.parametrize("use_pandas", [True, False])
def test_csv_missing_values_are_nan(use_pandas, tmp_path, monkeypatch):
    if not use_pandas:
        monkeypatch.setitem(sys.modules, "pandas", None)
    path = tmp_path / "na.csv"
    path.write_text("x,y\n1,\nNA,inf\nnan,-inf\n")
    out = _concat(chunks(str(path)))
    np.testing.assert_array_equal(out, [[1, np.nan], [np.nan, np.inf], [np.nan, -np.inf]])


def test_csv_ragged_row_fallback(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    path = tmp_path / "r.csv"
    path.write_text("1,2\n3,4,5\n")
    with pytest.raises(ValueError, match="r.csv, line 2: found 3 fields, expected 2"):
        list(chunks(str(path)))


def test_csv_too_many_fields_with_pandas(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("1,2\n3,4\n5,6,7\n")
    with pytest.raises(ValueError, match="r.csv, line 3: found 3 fields, expected 2"):
        list(chunks(str(path)))


def test_csv_header_detection(tmp_path):
    (tmp_path / "h.csv").write_text("x,1\n2,3\n")
    src = chunks(str(tmp_path / "h.csv"))
    assert src.n_features == 2
    np.testing.assert_array_equal(_concat(src), [[2, 3]])
    (tmp_path / "n.csv").write_text("1.5e3,-2\n2,3\n")
    np.testing.assert_array_equal(_concat(chunks(str(tmp_path / "n.csv"))), [[1500, -2], [2, 3]])


# ---------------------------------------------------------------------------
# HDF5 / Zarr specifics
# ---------------------------------------------------------------------------


def test_hdf5_dataset_choice(tmp_path, X):
    import h5py

    path = tmp_path / "m.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("a", data=X)
        f.create_dataset("g/b", data=X[:, :2])
    with pytest.raises(ValueError, match=r"several datasets \['a', 'g/b'\]; name one as"):
        chunks(str(path))
    src = chunks(f"{path}::/g/b", chunk_size=50)
    assert src.name.endswith("::g/b")
    np.testing.assert_array_equal(_concat(src), X[:, :2])
    with pytest.raises(KeyError, match=r"dataset 'zz' not found .*available datasets: \['a', 'g/b'\]"):
        chunks(f"{path}::zz")


def test_zarr_group_choice(tmp_path, X):
    import zarr

    g = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    g.create_array("one", shape=X.shape, dtype="f8", chunks=(64, D))[:] = X
    g.create_array("two", shape=(3, 2), dtype="f8")
    with pytest.raises(ValueError, match="several arrays"):
        chunks(str(tmp_path / "g.zarr"))
    np.testing.assert_array_equal(_concat(chunks(str(tmp_path / "g.zarr") + "::one")), X)
    with pytest.raises(KeyError, match="array 'nope' not found"):
        chunks(str(tmp_path / "g.zarr") + "::nope")


# ---------------------------------------------------------------------------
# Optional dependencies
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind, module, message",
    [
        ("parquet", "pyarrow", r"Reading Parquet files needs pyarrow: pip install 'fastem\[parquet\]'"),
        ("h5", "h5py", r"Reading HDF5 files needs h5py: pip install 'fastem\[hdf5\]'"),
        ("zarr", "zarr", r"Reading Zarr stores needs zarr: pip install 'fastem\[zarr\]'"),
    ],
)
def test_missing_optional_dependency(kind, module, message, tmp_path, X, monkeypatch):
    path = _make(kind, tmp_path, X)
    for name in list(sys.modules):
        if name == module or name.startswith(module + "."):
            monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=message):
        chunks(path)


# ---------------------------------------------------------------------------
# Prefetch
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["array", "npy", "csv", "parquet", "h5", "reiterable"])
def test_prefetch_early_break_does_not_hang(kind, tmp_path, X):
    src = chunks(_make(kind, tmp_path, X), chunk_size=1, prefetch=True)
    for block in src:
        break
    for _, _, block in src.iter_with_offsets():
        break
    assert _wait_no_prefetch_threads()
    # Still usable afterwards.
    np.testing.assert_array_equal(_concat(src), X)


def test_prefetch_abandoned_iterator_stops_thread(X):
    src = chunks(X, chunk_size=1, prefetch=True)
    it = iter(src)
    next(it)
    del it
    assert _wait_no_prefetch_threads()


def test_prefetch_early_break_closes_source(X):
    obj = ReIterable(X, 1)
    src = chunks(obj, prefetch=True)
    for _ in src:
        break
    assert _wait_no_prefetch_threads()
    assert obj.closed == obj.passes == 2


def test_prefetch_reads_ahead_in_another_thread(X):
    seen = []

    class Tracking:
        def __iter__(self):
            for i in range(0, N, 50):
                seen.append(threading.current_thread().name)
                yield X[i : i + 50]

    list(chunks(Tracking(), prefetch=True))
    assert seen[-1].startswith("fastem-prefetch")
    seen.clear()
    list(chunks(Tracking(), prefetch=False))
    assert set(seen) == {threading.current_thread().name}


class CustomError(Exception):
    pass


def test_prefetch_propagates_original_exception_type(X):
    class Failing:
        def __iter__(self):
            yield X[:10]
            raise CustomError("disk on fire")

    src = chunks(Failing(), prefetch=True)
    with pytest.raises(CustomError, match="disk on fire"):
        list(src)
    assert _wait_no_prefetch_threads()


def test_prefetch_and_plain_iteration_agree(tmp_path, X):
    path = _make("npy", tmp_path, X)
    a = list(chunks(path, chunk_size=17, prefetch=True).iter_with_offsets())
    b = list(chunks(path, chunk_size=17, prefetch=False).iter_with_offsets())
    assert [(i, s) for i, s, _ in a] == [(i, s) for i, s, _ in b]
    for (_, _, x), (_, _, y) in zip(a, b):
        np.testing.assert_array_equal(x, y)


# ---------------------------------------------------------------------------
# check_finite, count_rows, reservoir_sample
# ---------------------------------------------------------------------------


def test_check_finite_message():
    block = np.zeros((5, 3))
    check_finite(block, 0, 0, "data.npy")
    block[2, 1] = np.nan
    block[3, 0] = np.inf
    with pytest.raises(
        ValueError,
        match=(
            r"^Input contains NaN or infinity: chunk 2 of data.npy, row 131074 "
            r"\(row 2 of the chunk\), column 1\. Remove or impute non-finite values "
            r"\(NaN or infinity\) first\.$"
        ),
    ):
        check_finite(block, 2, 131072, "data.npy")


def test_check_finite_overflowing_sum_is_fine():
    block = np.full((4, 2), np.finfo(np.float32).max, dtype=np.float32)
    check_finite(block, 0, 0, "x")


def test_check_finite_with_offsets(X):
    data = X.copy()
    data[131, 3] = -np.inf
    src = chunks(data, chunk_size=100)
    msg = r"chunk 1 of array of shape \(250, 4\), row 131 \(row 31 of the chunk\), column 3"
    with pytest.raises(ValueError, match=msg):
        for index, start, block in src.iter_with_offsets():
            check_finite(block, index, start, src.name)


def test_count_rows(tmp_path, X):
    assert count_rows(X) == N
    assert count_rows(_make("csv", tmp_path, X)) == N
    assert count_rows(chunks(ReIterable(X, 7), chunk_size=3)) == N


@pytest.mark.parametrize("n", [1, 10, N, N + 5])
def test_reservoir_sample_rows_come_from_source(n, X):
    sample = reservoir_sample(chunks(X, chunk_size=16), n, random_state=0)
    assert sample.shape == (min(n, N), D)
    assert sample.dtype == X.dtype
    # Every sampled row is a distinct row of X.
    rows = {tuple(r) for r in X}
    assert all(tuple(r) in rows for r in sample)
    assert len({tuple(r) for r in sample}) == len(sample)
    if n >= N:
        np.testing.assert_array_equal(sample, X)


def test_reservoir_sample_deterministic(X):
    a = reservoir_sample(X, 20, random_state=42)
    b = reservoir_sample(X, 20, random_state=42)
    c = reservoir_sample(X, 20, random_state=43)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    g1 = reservoir_sample(X, 20, random_state=np.random.default_rng(5))
    g2 = reservoir_sample(X, 20, random_state=np.random.default_rng(5))
    np.testing.assert_array_equal(g1, g2)
    r1 = reservoir_sample(X, 20, random_state=np.random.RandomState(5))
    r2 = reservoir_sample(X, 20, random_state=np.random.RandomState(5))
    np.testing.assert_array_equal(r1, r2)


@pytest.mark.parametrize("chunk_size", [3, 100])
def test_reservoir_sample_is_uniform(chunk_size):
    # 40 rows, samples of 5: each row should be picked with probability 5/40.
    # 2000 draws -> expected count 250 per row. chunk_size=100 puts the fill
    # phase and the replacements in the same block.
    data = np.arange(40.0).reshape(-1, 1)
    src = chunks(data, chunk_size=chunk_size, prefetch=False)
    rng = np.random.default_rng(123)
    counts = np.zeros(40)
    n_draws = 2000
    for _ in range(n_draws):
        sample = reservoir_sample(src, 5, random_state=rng)
        counts[sample[:, 0].astype(int)] += 1
    expected = n_draws * 5 / 40
    # Chi-square with 39 degrees of freedom; 99.9th percentile is about 72.
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 72, chi2


def test_reservoir_sample_bad_arguments(X):
    with pytest.raises(ValueError, match="n must be a positive integer, got 0"):
        reservoir_sample(X, 0)
    with pytest.raises(ValueError, match="random_state must be None, an int"):
        reservoir_sample(X, 3, random_state="seed")


def test_repr_and_attributes(tmp_path, X):
    path = _make("npy", tmp_path, X)
    src = chunks(path, chunk_size=10, columns=[0, 1])
    assert isinstance(src, ChunkSource)
    assert src.name == path
    assert src.reiterable and src.prefetch
    assert repr(src) == f"ChunkSource({path!r}, n_samples=250, n_features=2, dtype=float64, chunk_size=10)"


def test_memmap_chunks_are_views_when_possible(tmp_path, X):
    mm = _make("memmap", tmp_path, X)
    block = next(iter(chunks(mm, chunk_size=10, prefetch=False)))
    assert np.shares_memory(block, mm)
    assert not block.flags.writeable
    assert type(block) is np.ndarray
    assert os.path.exists(mm.filename)


@pytest.mark.parametrize("use_pandas", [True, False])
def test_csv_with_byte_order_mark(use_pandas, tmp_path, monkeypatch):
    if not use_pandas:
        monkeypatch.setitem(sys.modules, "pandas", None)
    path = tmp_path / "bom.csv"
    path.write_text("a,b\n1,2\n3,4\n", encoding="utf-8-sig")
    src = chunks(str(path), columns=["a"])
    np.testing.assert_array_equal(_concat(src), [[1.0], [3.0]])


def test_dataframe_mixed_and_nullable_columns():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(
        {
            "b": [True, False, True],
            "i": pd.array([1, None, 3], dtype="Int64"),
            "f": np.float32([1, 2, 3]),
        }
    )
    src = chunks(df, chunk_size=2)
    assert src.dtype is np.float64
    np.testing.assert_array_equal(_concat(src), [[1, 1, 1], [0, np.nan, 2], [1, 3, 3]])
    assert chunks(df[["f"]]).dtype is np.float32
    with pytest.raises(TypeError, match="column 's' of DataFrame .* non-numeric dtype object"):
        chunks(pd.DataFrame({"s": ["a", "b"]}))


def test_generator_with_zero_columns():
    with pytest.raises(ValueError, match="0 columns; at least one feature"):
        chunks(iter([np.zeros((3, 0))]))
