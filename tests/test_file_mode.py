"""The E-step kernels' file mode: after a whole checked pass over a ``.npy``
file, each parallel task reads its own rows (``StatsAccumulator.add_from_file``).

Oracles: the same fit on the same rows in memory (bitwise: the tasks are the
same rows in the same order), NumPy's view of the file, and the file's
identity checks (a file changed under a fit is an error naming it).
"""

import os
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

import fastem
from fastem import _estep, io
from fastem import _kernels as K
from fastem._suffstats import GaussianParams, precision_cholesky

COV_TYPES = ["full", "tied", "diag", "spherical"]


def _rows(n, d, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-6, 6, size=(3, d))
    return (centres[rng.integers(0, 3, n)] + rng.standard_normal((n, d))).astype(dtype)


@pytest.fixture
def spy(monkeypatch):
    """Counts the calls of StatsAccumulator.add_from_file; ``before`` and
    ``after`` run before and after each call (given the call's number)."""
    state = {"calls": 0, "before": None, "after": None}
    orig = _estep.StatsAccumulator.add_from_file

    def wrapped(self, *args, **kwargs):
        state["calls"] += 1
        if state["before"] is not None:
            state["before"](state["calls"])
        out = orig(self, *args, **kwargs)
        if state["after"] is not None:
            state["after"](state["calls"])
        return out

    monkeypatch.setattr(_estep.StatsAccumulator, "add_from_file", wrapped)
    return state


def _fit(X, ct, dtype=np.float64, **kw):
    g = fastem.GaussianMixture(3, covariance_type=ct, random_state=0, tol=0,
                               max_iter=kw.pop("max_iter", 4), **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return g.fit(X)


def _same(a, b):
    for attr in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert np.array_equal(getattr(a, attr), getattr(b, attr)), attr
    assert a.lower_bound_ == b.lower_bound_
    assert a.n_iter_ == b.n_iter_


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("ct", COV_TYPES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_npy_passes_read_in_the_kernels_bitwise_in_memory(tmp_path, spy, ct, dtype):
    # three whole tasks and a partial one, a width that is no feature class edge
    n = 3 * _estep.task_rows(5) + 123
    X = _rows(n, 5, dtype=dtype)
    path = tmp_path / "x.npy"
    np.save(path, X)
    mem = _fit(X, ct)
    calls_before = spy["calls"]
    streamed = _fit(str(path), ct)
    # the 'kmeans' start's pass checked every row; each EM pass read in the kernels
    assert spy["calls"] - calls_before == streamed.n_iter_ >= 3
    _same(mem, streamed)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_npy_file_mode_with_weights_and_several_starts(tmp_path, spy):
    n = 2 * _estep.task_rows(4) + 77
    X = _rows(n, 4, seed=1)
    w = np.random.default_rng(2).uniform(0.2, 3.0, n)
    path = tmp_path / "x.npy"
    np.save(path, X)
    kw = {"covariance_type": "full", "random_state": 1, "tol": 0, "max_iter": 3, "n_init": 2}
    mem = fastem.GaussianMixture(3, **kw).fit(X, sample_weight=w)
    streamed = fastem.GaussianMixture(3, **kw).fit(str(path), sample_weight=w)
    assert spy["calls"] > 0
    _same(mem, streamed)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("chunk_size", [1000, 7777])
def test_file_mode_keeps_the_chunks_of_other_chunk_sizes(tmp_path, spy, chunk_size):
    """A chunk size that is not a multiple of the task size gives tasks of
    its own; file mode reads the same rows per call, so the fit is bitwise
    the one that reads every pass chunk by chunk."""
    X = _rows(20000, 3, seed=8)
    path = str(tmp_path / "x.npy")
    np.save(path, X)
    direct = _fit(io.chunks(path, chunk_size=chunk_size), "full")
    assert spy["calls"] > 0
    chunked = io.chunks(path, chunk_size=chunk_size)
    chunked.iter_with_offsets = chunked.iter_with_offsets  # no file mode
    calls = spy["calls"]
    _same(direct, _fit(chunked, "full"))
    assert spy["calls"] == calls


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("case", ["fortran", "columns", "cast", "subclass", "patched"])
def test_file_mode_only_where_rows_are_read_whole(tmp_path, spy, case):
    """Fortran order, a column selection, a dtype conversion, and a subclass
    or an instance that serves its own blocks are read chunk by chunk."""
    X = _rows(5000, 4, seed=3)
    path = str(tmp_path / "x.npy")
    expect = X
    if case == "fortran":
        np.save(path, np.asfortranarray(X))
        src = path
    elif case == "columns":
        np.save(path, np.hstack([X, X[:, :1]]))
        src = io.chunks(path, columns=[0, 1, 2, 3])
    elif case == "cast":
        np.save(path, X.astype(np.float32))
        src = io.chunks(path, dtype=np.float64)
        expect = X.astype(np.float32).astype(np.float64)
    elif case == "patched":
        np.save(path, X)
        src = io.chunks(path)
        src.iter_with_offsets = src.iter_with_offsets  # an instance's own method
    else:
        np.save(path, X)

        class Own(io.ChunkSource):
            def iter_with_offsets(self, check=None):
                return super().iter_with_offsets(check=check)

        base = io.chunks(path)
        src = Own(base._backend)
    _same(_fit(expect, "full"), _fit(src, "full"))
    assert spy["calls"] == 0


def _params(X, ct, K_=3):
    d = X.shape[1]
    rng = np.random.default_rng(4)
    means = X[rng.choice(len(X), K_, replace=False)].astype(np.float64)
    covs = {"full": np.tile(np.eye(d), (K_, 1, 1)), "tied": np.eye(d),
            "diag": np.ones((K_, d)), "spherical": np.ones(K_)}[ct]
    return GaussianParams(ct, np.full(K_, 1 / K_), means, covs, precision_cholesky(covs, ct))


@pytest.mark.parametrize("ct", COV_TYPES)
def test_add_from_file_equals_add_and_refuses_short_reads(tmp_path, ct):
    X = _rows(2 * _estep.task_rows(3) + 5, 3, seed=5)
    path = tmp_path / "x.npy"
    np.save(path, X)
    offset = os.path.getsize(path) - X.nbytes  # the .npy header's length
    p = _params(X, ct)
    w = np.random.default_rng(6).uniform(0.5, 2.0, len(X))
    a = _estep.StatsAccumulator(p, X.dtype)
    a.add(X, w)
    b = _estep.StatsAccumulator(p, X.dtype)
    with open(path, "rb") as f:
        fd = f.fileno()
        b.add_from_file(fd, offset, len(X), w)
        ra, rb = a.result(), b.result()
        for attr in ("nk", "s1", "s2", "loglik", "weight_sum", "n_rows"):
            assert np.array_equal(getattr(ra, attr), getattr(rb, attr)), attr
        # rows past the end of the file: the last task's read comes short
        c = _estep.StatsAccumulator(p, X.dtype)
        with pytest.raises(OSError, match="came short"):
            c.add_from_file(fd, offset, len(X) + 1)
        # weights for another number of rows are refused before the kernel runs
        with pytest.raises(K.KernelArgumentError, match="sample weights"):
            c.add_from_file(fd, offset, len(X) - 1, w)
    # a descriptor that cannot be read (a folder): every read fails
    folder = os.open(tmp_path, os.O_RDONLY)
    try:
        with pytest.raises(OSError, match="came short"):
            _estep.StatsAccumulator(p, X.dtype).add_from_file(folder, offset, len(X))
    finally:
        os.close(folder)


def _truncate(path, X):
    os.truncate(path, os.path.getsize(path) // 2)


def _rewrite_in_place(path, X):
    Y = X.copy()
    Y[0, 0] += 1.0
    np.save(path, Y)  # same size and inode, new contents and modification time


def _replace_by_rename(path, X):
    other = path + ".new.npy"
    np.save(other, X)
    os.replace(other, path)


def _new_header(path, X):
    np.save(path, X.reshape(-1, 1))


@pytest.mark.parametrize("hook,change", [("before", _truncate),
                                         ("after", _truncate),
                                         ("before", _rewrite_in_place),
                                         ("after", _replace_by_rename),
                                         ("after", _new_header)])
def test_npy_changed_under_file_mode_raises_and_keeps_the_model(tmp_path, spy, hook, change):
    """The file cut inside a file-mode pass before the tasks read it (their
    reads come short) or between two such passes, rewritten in place while
    a pass reads it (the check after the pass), replaced by a rename or
    given another header between two passes (the check before the pass): a
    ValueError naming the file; the fitted model is kept."""
    X = _rows(3 * _estep.task_rows(3), 3, seed=9)
    path = str(tmp_path / "x.npy")
    np.save(path, X)
    g = _fit(X, "full", max_iter=3)
    before = [np.copy(getattr(g, a)) for a in ("weights_", "means_", "covariances_")]

    def on_first(call):
        if call == 1:
            change(path, X)

    spy[hook] = on_first
    g.set_params(max_iter=6)
    with pytest.raises(ValueError, match="changed since the fit started") as info, \
            warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        g.fit(path)
    assert path in str(info.value)
    assert spy["calls"] == 1
    for a, b in zip(before, (g.weights_, g.means_, g.covariances_)):
        assert np.array_equal(a, b)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_chunk_source_class_patched_keeps_chunked_reads(tmp_path, spy, monkeypatch):
    X = _rows(5000, 3, seed=10)
    path = str(tmp_path / "x.npy")
    np.save(path, X)
    served = []
    plain = io.ChunkSource.iter_with_offsets

    def counting(self, check=None):
        served.append(1)
        return plain(self, check=check)

    monkeypatch.setattr(io.ChunkSource, "iter_with_offsets", counting)
    g = _fit(path, "full")
    assert spy["calls"] == 0 and len(served) >= g.n_iter_ + 1


def test_file_descriptor_beyond_a_c_int_is_refused():
    X = _rows(100, 3)
    acc = _estep.StatsAccumulator(_params(X, "diag"), X.dtype)
    with pytest.raises(K.KernelArgumentError, match="not a C int"):
        acc.add_from_file(2**32, 0, 10)
