"""Files that change under a fit, truncated headers, and streamed lists/iterables.

Each test changes a file at a fixed point of a fit (between two passes, or
after the consumer got a given block of a pass), through a ChunkSource
subclass that wraps ``iter_with_offsets``: deterministic, not timing-based.
"""

import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

import fastem
from fastem import io


def _hooked_source(path, chunk_size, hook, prefetch=True):
    """A ChunkSource over ``path`` calling ``hook(pass_number, block_index)``
    before each pass (block_index -1) and after the consumer got each block."""

    class Hooked(io.ChunkSource):
        passes = 0

        def iter_with_offsets(self, check=None):
            Hooked.passes += 1
            p = Hooked.passes
            hook(p, -1)
            it = super().iter_with_offsets(check=check)
            try:
                for i, item in enumerate(it):
                    yield item
                    hook(p, i)
            finally:
                it.close()

    src = io.chunks(path, chunk_size=chunk_size)
    return Hooked(src._backend, chunk_size=chunk_size, dtype=src.dtype, prefetch=prefetch)


def _fit(X, **kw):
    g = fastem.GaussianMixture(2, covariance_type="full", random_state=0, tol=0,
                               max_iter=kw.pop("max_iter", 12), **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return g.fit(X)


# ---------------------------------------------------------------------------
# (a) truncated while streamed: a clean ValueError, never a bus error
# ---------------------------------------------------------------------------

_TRUNCATE_SCRIPT = textwrap.dedent(
    """
    import os, sys, warnings
    import numpy as np
    import fastem
    from fastem import io
    sys.path.insert(0, {tests!r})
    from test_io_changes import _hooked_source

    path, order = sys.argv[1], sys.argv[2]
    X = np.random.default_rng(0).normal(size=(40960, 3))
    warnings.simplefilter("ignore")

    # 1. Plain iteration: cut the file in half once the consumer holds block
    # 1 of 10 (the prefetch thread is then at most 3 blocks ahead).
    np.save(path, np.asarray(X, order=order))
    def cut(p, i):
        if i == 1:
            os.truncate(path, os.path.getsize(path) // 2)
    try:
        list(_hooked_source(path, 4096, cut))
    except ValueError as exc:
        print("ITER VALUEERROR:", exc)
    else:
        print("ITER NO ERROR")

    # 2. The same in the middle of a fit of an already fitted estimator.
    np.save(path, np.asarray(X, order=order))
    g = fastem.GaussianMixture(2, random_state=0, tol=0, max_iter=5).fit(X)
    before = [np.copy(getattr(g, a)) for a in ("weights_", "means_", "covariances_")]

    done = []
    def hook(p, i):
        # from the third pass on (EM iterations), in the same place
        if p >= 3 and i == 1 and not done:
            done.append(p)
            os.truncate(path, os.path.getsize(path) // 2)

    src = _hooked_source(path, 4096, hook)
    g.set_params(max_iter=20)
    try:
        g.fit(src)
    except ValueError as exc:
        print("FIT VALUEERROR:", exc)
    else:
        print("FIT NO ERROR")
    after = [getattr(g, a) for a in ("weights_", "means_", "covariances_")]
    print("KEPT:", all(np.array_equal(a, b) for a, b in zip(before, after)))
    """
)


@pytest.mark.parametrize("order", ["C", "F"])
def test_npy_truncated_during_streamed_fit_is_a_clean_error(tmp_path, order):
    # In a subprocess, so that a bus error (the old memory-mapped reader of
    # Fortran-ordered files) fails this test instead of killing pytest.
    script = tmp_path / "run.py"
    script.write_text(_TRUNCATE_SCRIPT.format(tests=os.path.dirname(__file__)))
    path = tmp_path / "data.npy"
    proc = subprocess.run(
        [sys.executable, str(script), str(path), order],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr[-3000:])
    lines = proc.stdout.splitlines()
    it = next(line for line in lines if line.startswith("ITER"))
    expected = 128 + 40960 * 3 * 8
    assert it.startswith(
        f"ITER VALUEERROR: {path}: file is shorter than its header says (expected "
        f"{expected} bytes, got {expected // 2}) while reading rows "
    ), it
    assert it.endswith("; was it truncated or replaced during the fit?"), it
    fit = next(line for line in lines if line.startswith("FIT"))
    # a short read, or (had the fit stopped reading that pass early) the
    # change seen at the start of the next pass: either names the file
    assert fit.startswith(f"FIT VALUEERROR: {path}"), fit
    assert "shorter than its header says" in fit or "changed since the fit" in fit, fit
    assert "KEPT: True" in lines, lines


def test_npy_reader_does_not_memory_map(tmp_path, monkeypatch):
    X = np.random.default_rng(1).normal(size=(300, 4))
    path = tmp_path / "f.npy"
    np.save(path, np.asfortranarray(X))

    def no_memmap(*args, **kwargs):
        raise AssertionError("np.memmap must not be used")

    monkeypatch.setattr(np, "memmap", no_memmap)
    for cols in (None, [2, 0], [3, 3]):
        src = io.chunks(str(path), chunk_size=7, columns=cols)
        got = np.concatenate(list(src))
        assert np.array_equal(got, X if cols is None else X[:, cols])


# ---------------------------------------------------------------------------
# (b) a file rewritten between or during passes
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["C", "F"])
def test_npy_overwritten_between_passes_raises_naming_file(tmp_path, order):
    X = np.random.default_rng(2).normal(size=(20000, 3))
    path = tmp_path / "data.npy"
    np.save(path, np.asarray(X, order=order))

    def hook(p, i):
        if p == 3 and i == -1:  # in place: same inode, new header and size
            np.save(path, np.ones((40000, 2)))

    src = _hooked_source(str(path), 4096, hook)
    msg = r"data\.npy changed since the fit started \(shape \(20000, 3\) -> \(40000, 2\)"
    with pytest.raises(ValueError, match=msg):
        _fit(src, max_iter=10)


def test_npy_rewritten_during_a_pass_raises_at_its_end(tmp_path):
    # Same shape, other values, rewritten in the last pass: only the
    # modification time tells. The end-of-pass check must see it, or the fit
    # would return a model of half old, half new rows.
    X = np.random.default_rng(3).normal(size=(20000, 3))
    path = tmp_path / "data.npy"
    np.save(path, X)
    st = os.stat(path)

    def hook(p, i):
        if p == 2 and i == 0:
            with open(path, "r+b") as f:
                f.seek(st.st_size - 8 * 3 * 100)
                f.write(np.zeros((100, 3)).tobytes())
            # a later modification time, whatever the file system's clock tick
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))

    src = _hooked_source(str(path), 4096, hook)
    with pytest.raises(ValueError, match=r"data\.npy changed since the fit started \(modified\)"):
        for _ in range(3):
            list(src)


def test_npy_replaced_by_rename_between_passes(tmp_path):
    X = np.random.default_rng(4).normal(size=(500, 3))
    path = tmp_path / "data.npy"
    np.save(path, X)
    src = io.chunks(str(path), chunk_size=100)
    assert np.array_equal(np.concatenate(list(src)), X)
    np.save(tmp_path / "new.npy", X)  # same shape and size
    os.replace(tmp_path / "new.npy", path)
    with pytest.raises(ValueError, match=r"data\.npy changed since the fit started \(replaced"):
        list(src)
    os.remove(path)
    with pytest.raises(ValueError, match=r"data\.npy changed .*deleted or moved"):
        list(src)


def _rewrite(kind, path, X):
    if kind == "csv":
        np.savetxt(path, X, delimiter=",")
    elif kind == "parquet":
        import pandas as pd

        pd.DataFrame(X, columns=[f"c{j}" for j in range(X.shape[1])]).to_parquet(path)
    elif kind == "h5":
        import h5py

        with h5py.File(path, "w") as f:
            f["x"] = X
    elif kind == "zarr":
        import zarr

        z = zarr.open(str(path), mode="w", shape=X.shape, dtype="f8", chunks=(100, 3))
        z[:] = X


@pytest.mark.parametrize("kind", ["csv", "parquet", "h5", "zarr"])
def test_other_files_changed_between_passes_raise_naming_file(tmp_path, kind):
    pytest.importorskip({"csv": "numpy", "parquet": "pyarrow", "h5": "h5py",
                         "zarr": "zarr"}[kind])
    if kind == "parquet":
        pytest.importorskip("pandas")
    X = np.random.default_rng(5).normal(size=(600, 3))
    path = tmp_path / f"data.{kind}"
    _rewrite(kind, path, X)
    src = io.chunks(str(path), chunk_size=100)
    np.testing.assert_allclose(np.concatenate(list(src)), X)
    np.testing.assert_allclose(np.concatenate(list(src)), X)  # unchanged: fine
    if kind == "zarr":
        import zarr

        zarr.open(str(path), mode="a").resize((1200, 3))
    else:
        _rewrite(kind, path, np.vstack([X, X]))
    with pytest.raises(ValueError, match=rf"data\.{kind}\S* changed since the fit started"):
        list(src)


def test_csv_truncated_during_a_pass_raises(tmp_path):
    X = np.random.default_rng(6).normal(size=(4000, 3))
    path = tmp_path / "data.csv"
    np.savetxt(path, X, delimiter=",")
    size = os.path.getsize(path)

    def hook(p, i):
        if p == 1 and i == 0:
            os.truncate(path, size // 2)

    src = _hooked_source(str(path), 100, hook)
    with pytest.raises(ValueError, match=r"data\.csv changed since the fit started \(size"):
        list(src)


# ---------------------------------------------------------------------------
# (c) truncated or invalid headers name the file
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("keep", [0, 5, 9, 30, 100])
def test_truncated_npy_header_names_file(tmp_path, keep):
    good = tmp_path / "good.npy"
    np.save(good, np.zeros((10, 3)))
    path = tmp_path / "cut.npy"
    path.write_bytes(good.read_bytes()[:keep])
    with pytest.raises(ValueError, match=r"cut\.npy is not a readable \.npy file"):
        io.chunks(str(path))


def test_garbage_npy_header_names_file(tmp_path):
    path = tmp_path / "junk.npy"
    path.write_bytes(b"\x93NUMPY\x01\x00" + b"\x10\x00" + b"{'descr': <f8,  }\n")
    with pytest.raises(ValueError, match=r"junk\.npy is not a readable \.npy file"):
        io.chunks(str(path))
    (tmp_path / "text.npy").write_text("1,2,3\n")
    with pytest.raises(ValueError, match=r"text\.npy is not a readable \.npy file"):
        io.chunks(str(tmp_path / "text.npy"))


def test_npy_header_unreadable_between_passes(tmp_path):
    path = tmp_path / "data.npy"
    np.save(path, np.zeros((10, 3)))
    src = io.chunks(str(path))
    list(src)
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(ValueError, match=r"data\.npy changed .*header is no longer readable"):
        list(src)


def test_csv_not_utf8_names_file(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("a,b\n1,2\n3,\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin\.csv is not UTF-8 text"):
        list(io.chunks(str(path)))


# ---------------------------------------------------------------------------
# (d) lists of blocks and re-iterables are streamed like files
# ---------------------------------------------------------------------------


class _Blocks:
    """A re-iterable object: a fresh iterator over the blocks per pass."""

    def __init__(self, blocks):
        self.blocks = blocks

    def __iter__(self):
        return iter(self.blocks)


@pytest.fixture(scope="module")
def blob_blocks():
    X = np.random.default_rng(7).normal(size=(5 * 4096, 3))
    X[: 2 * 4096] += 4.0
    return X, [X[i : i + 4096] for i in range(0, X.shape[0], 4096)]


def _same_fit(a, b):
    for name in ("weights_", "means_", "covariances_"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.lower_bounds_ == b.lower_bounds_


def _init_of(X):
    g = _fit(X[:4096], max_iter=2)
    return dict(weights_init=g.weights_, means_init=g.means_,
                precisions_init=g.precisions_)


@pytest.mark.parametrize("wrap", [list, _Blocks])
def test_chunk_source_of_blocks_fit_equals_in_memory(blob_blocks, wrap):
    X, blocks = blob_blocks
    _same_fit(_fit(X), _fit(io.chunks(list(blocks), chunk_size=4096)))
    # A re-iterable does not tell its length, so the default initialisation
    # draws its rows by reservoir sampling, not as in memory: compare the EM
    # iterations from the same initial parameters (bitwise, 4096-row blocks).
    init = _init_of(X)
    _same_fit(_fit(X, **init), _fit(io.chunks(wrap(blocks), chunk_size=4096), **init))


@pytest.mark.parametrize("wrap", [list, _Blocks])
def test_fit_on_blocks_equals_in_memory(blob_blocks, wrap):
    X, blocks = blob_blocks
    init = _init_of(X)
    _same_fit(_fit(X, **init), _fit(wrap(blocks), chunk_size=4096, **init))


def test_fit_on_generator_says_it_needs_another_pass(blob_blocks):
    _, blocks = blob_blocks
    with pytest.raises(ValueError, match="one-shot iterator.*needs another pass"):
        _fit(b for b in blocks)
