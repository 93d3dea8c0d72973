"""Out-of-core EM: streamed fits equal in-memory fits, errors name the chunk."""

import numpy as np
import pytest
from sklearn.datasets import make_blobs

import fastem
from fastem import io

COV_TYPES = ["full", "tied", "diag", "spherical"]


@pytest.fixture(scope="module")
def blobs():
    X, _ = make_blobs(30_000, n_features=5, centers=4, random_state=3)
    return X


def _init_params(X, ct):
    g = fastem.GaussianMixture(4, covariance_type=ct, random_state=0, max_iter=2,
                               tol=0)
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        g.fit(X[:3000])
    return dict(weights_init=g.weights_, means_init=g.means_,
                precisions_init=g.precisions_)


def _fit(X, ct, **kw):
    return fastem.GaussianMixture(4, covariance_type=ct, tol=0, max_iter=8,
                                  **kw).fit(X)


def _assert_same(a, b, rtol):
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        np.testing.assert_allclose(getattr(b, name), getattr(a, name), rtol=rtol,
                                   atol=0, err_msg=name)
    np.testing.assert_allclose(b.lower_bounds_, a.lower_bounds_, rtol=rtol)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("ct", COV_TYPES)
def test_npy_stream_is_bitwise_in_memory_for_task_multiples(tmp_path, blobs, ct):
    path = tmp_path / "x.npy"
    np.save(path, blobs)
    a = _fit(blobs, ct, random_state=0)
    for cs in (4096, 3 * 4096):
        b = _fit(str(path), ct, random_state=0, chunk_size=cs)
        for name in ("weights_", "means_", "covariances_"):
            assert np.array_equal(getattr(a, name), getattr(b, name)), (cs, name)
        assert a.lower_bounds_ == b.lower_bounds_


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("ct", COV_TYPES)
@pytest.mark.parametrize("chunk_size", [pytest.param(1000, marks=pytest.mark.parity), 7777,
                                        100_000])
def test_stream_equals_in_memory_any_chunk_size(tmp_path, blobs, ct, chunk_size):
    path = tmp_path / "x.npy"
    np.save(path, blobs)
    a = _fit(blobs, ct, random_state=0)
    b = _fit(str(path), ct, random_state=0, chunk_size=chunk_size)
    _assert_same(a, b, 1e-9)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("kind", ["csv", "parquet", "h5", "zarr", "memmap", "list",
                                  "chunksource"])
def test_every_source_equals_in_memory(tmp_path, blobs, kind):
    X = blobs[:6000]
    ct = "full"
    init = _init_params(X, ct)
    if kind == "csv":
        src = tmp_path / "x.csv"
        np.savetxt(src, X, delimiter=",", header="a,b,c,d,e", comments="",
                   fmt="%.17g")
        src = str(src)
    elif kind == "parquet":
        pa = pytest.importorskip("pyarrow")
        pq = pytest.importorskip("pyarrow.parquet")
        src = tmp_path / "x.parquet"
        pq.write_table(pa.table({f"c{i}": X[:, i] for i in range(5)}), src,
                       row_group_size=1000)
        src = str(src)
    elif kind == "h5":
        h5py = pytest.importorskip("h5py")
        f = h5py.File(tmp_path / "x.h5", "w")
        f.create_dataset("data", data=X, chunks=(512, 5))
        src = f["data"]
    elif kind == "zarr":
        zarr = pytest.importorskip("zarr")
        src = zarr.create_array(store=str(tmp_path / "x.zarr"), shape=X.shape,
                                chunks=(1000, 5), dtype="f8")
        src[:] = X
    elif kind == "memmap":
        np.save(tmp_path / "m.npy", X)
        src = np.load(tmp_path / "m.npy", mmap_mode="r")
    elif kind == "list":
        src = io.chunks([X[:2500], X[2500:4000], X[4000:]])
    else:
        src = io.chunks(X, chunk_size=999)
    a = _fit(X, ct, **init)
    b = _fit(src, ct, chunk_size=1500, **init)
    _assert_same(a, b, 1e-9)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_predict_and_score_accept_sources(tmp_path, blobs):
    path = tmp_path / "x.npy"
    np.save(path, blobs)
    g = fastem.GaussianMixture(4, random_state=0).fit(blobs)
    np.testing.assert_array_equal(g.predict(str(path)), g.predict(blobs))
    np.testing.assert_allclose(g.score_samples(str(path)), g.score_samples(blobs),
                               rtol=1e-12)
    np.testing.assert_allclose(g.predict_proba(io.chunks(blobs, chunk_size=777)),
                               g.predict_proba(blobs), rtol=1e-12, atol=1e-300)
    assert g.score(str(path)) == pytest.approx(g.score(blobs), rel=1e-12)
    assert g.bic(str(path)) == pytest.approx(g.bic(blobs), rel=1e-12)


def test_nan_in_a_chunk_names_chunk_and_row(tmp_path, blobs):
    X = blobs[:5000].copy()
    X[3210, 2] = np.nan
    path = tmp_path / "bad.npy"
    np.save(path, X)
    with pytest.raises(ValueError, match=r"chunk 3 of .*bad\.npy.*row 3210, column 2"):
        fastem.GaussianMixture(2, chunk_size=1000, init_params="random",
                               random_state=0).fit(str(path))


def test_wrong_width_chunk_and_empty_source():
    good = np.zeros((10, 3))
    with pytest.raises(ValueError, match="has 2 columns, expected 3"):
        fastem.GaussianMixture(2, random_state=0).fit(
            io.chunks([good, np.zeros((10, 2))]))
    with pytest.raises(ValueError, match="no rows"):
        fastem.GaussianMixture(2).fit(io.chunks([np.zeros((0, 3))]))


def test_truncated_npy_is_a_clear_error(tmp_path, blobs):
    path = tmp_path / "t.npy"
    np.save(path, blobs[:1000])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(ValueError, match="t.npy"):
        fastem.GaussianMixture(2).fit(str(path))


def test_feature_count_mismatch_on_stream(tmp_path, blobs):
    g = fastem.GaussianMixture(2, random_state=0).fit(blobs[:2000])
    np.save(tmp_path / "w.npy", blobs[:100, :3])
    with pytest.raises(ValueError, match="X has 3 features, but GaussianMixture is "
                                         "expecting 5 features"):
        g.predict(str(tmp_path / "w.npy"))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_stream_sample_weight_equals_in_memory(tmp_path, blobs):
    X = blobs[:8000]
    w = np.random.default_rng(0).integers(0, 4, size=len(X)).astype(float)
    np.save(tmp_path / "x.npy", X)
    init = _init_params(X, "diag")
    a = _fit(X, "diag", sample_weight=None, **init) if False else None
    a = fastem.GaussianMixture(4, covariance_type="diag", tol=0, max_iter=6,
                               **init).fit(X, sample_weight=w)
    b = fastem.GaussianMixture(4, covariance_type="diag", tol=0, max_iter=6,
                               chunk_size=1234, **init).fit(str(tmp_path / "x.npy"),
                                                            sample_weight=w)
    _assert_same(a, b, 1e-9)


@pytest.mark.slow
def test_peak_rss_bounded_when_streaming_npy(tmp_path):
    """Streaming a 256 MB .npy grows the peak RSS of a fresh process by far less
    than the file (the 512 MB / 4 GB figures are measured by fastem bench)."""
    import subprocess
    import sys

    n, d = 2_000_000, 16
    path = tmp_path / "big.npy"
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=(n, d))
    rng = np.random.default_rng(0)
    for lo in range(0, n, 200_000):
        mm[lo:lo + 200_000] = rng.standard_normal((200_000, d)) + (lo // 200_000 % 4)
    mm.flush()
    del mm
    code = f"""
import resource, warnings
import fastem
from fastem.datasets import load_old_faithful
fastem.GaussianMixture(2).fit(load_old_faithful())  # load kernels, numpy, sklearn
warnings.simplefilter("ignore")
fastem.GaussianMixture(4, covariance_type="diag", max_iter=2, random_state=0,
                       chunk_size=100_000).fit({str(path)!r})
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(base)
"""
    code_base = """
import resource
import fastem
from fastem.datasets import load_old_faithful
fastem.GaussianMixture(2).fit(load_old_faithful())
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""
    peak = int(subprocess.check_output([sys.executable, "-c", code]).split()[-1])
    base = int(subprocess.check_output([sys.executable, "-c", code_base]).split()[-1])
    grown_mb = (peak - base) / 1024
    assert grown_mb <= 128, f"peak RSS grew by {grown_mb:.0f} MB"


def test_progress_bar_over_iterations(blobs, capsys, monkeypatch):
    a = fastem.GaussianMixture(4, random_state=0, progress=True).fit(blobs)
    b = fastem.GaussianMixture(4, random_state=0).fit(blobs)
    err = capsys.readouterr().err
    assert "EM (init 1/1)" in err and "iter" in err
    np.testing.assert_array_equal(a.means_, b.means_)
    with pytest.raises(ValueError, match="'progress' parameter"):
        fastem.GaussianMixture(2, progress="yes").fit(blobs)
    monkeypatch.setitem(__import__("sys").modules, "tqdm", None)
    with pytest.raises(ImportError, match=r"pip install 'fastem\[progress\]'"):
        fastem.GaussianMixture(2, progress=True).fit(blobs)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("ct", COV_TYPES)
def test_read_ahead_is_bitwise_the_plain_stream(tmp_path, blobs, ct):
    # the prefetch thread reads and checks the next chunk while the kernels
    # work on this one: the same chunks in the same order, so the same bits
    path = str(tmp_path / "x.npy")
    np.save(path, blobs)
    init = _init_params(blobs, ct)
    a = _fit(io.chunks(path, chunk_size=5000, prefetch=False), ct, **init)
    b = _fit(io.chunks(path, chunk_size=5000, prefetch=True), ct, **init)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.lower_bounds_ == b.lower_bounds_


def test_chunks_are_checked_in_the_reading_thread(tmp_path, blobs):
    import threading

    path = str(tmp_path / "x.npy")
    np.save(path, blobs[:1000])
    for prefetch in (True, False):
        seen = []

        def check(index, start, block, seen=seen):
            seen.append((index, start, block.shape[0], threading.current_thread().name))

        src = io.chunks(path, chunk_size=300, prefetch=prefetch)
        out = [(i, s) for i, s, _ in src.iter_with_offsets(check=check)]
        assert out == [(0, 0), (1, 300), (2, 600), (3, 900)]
        assert [t[:3] for t in seen] == [(0, 0, 300), (1, 300, 300), (2, 600, 300),
                                         (3, 900, 100)]
        names = {t[3] for t in seen}
        if prefetch:
            assert all(n.startswith("fastem-prefetch") for n in names), names
        else:
            assert names == {threading.current_thread().name}



def test_read_ahead_is_at_most_two_chunks():
    import time

    made = []

    def blocks():
        for i in range(10):
            made.append(i)
            yield np.full((4, 2), float(i))

    src = io.chunks(blocks(), prefetch=True)
    it = src.iter_with_offsets()
    next(it)  # the consumer holds chunk 0 and works slowly
    time.sleep(0.5)
    # chunk 1 queued, chunk 2 made and waiting for room: two ahead, no more
    assert made == [0, 1, 2]
    assert [i for i, _, _ in it] == list(range(1, 10))
