"""Reproducers of reliability defects: failed re-fits, kernel arguments that
do not fit together, BLAS thread limits under concurrent calls.

Each test here failed before its fix (the first two crashed the process with
"double free or corruption" or silently ignored columns)."""

import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
import threadpoolctl

import fastem
from fastem import _estep, _threads
from fastem import _kernels as K

ESTIMATORS = [fastem.GaussianMixture, fastem.MiniBatchGaussianMixture]


def _snapshot(est):
    out = {}
    for k, v in vars(est).items():
        if isinstance(v, np.ndarray):
            out[k] = (v.dtype, v.shape, v.tobytes())
        elif hasattr(v, "__slots__") and hasattr(v, "nk"):
            out[k] = tuple(np.asarray(getattr(v, s)).tobytes() for s in v.__slots__)
        elif isinstance(v, list):
            out[k] = repr(v)
        elif isinstance(v, np.random.RandomState):
            out[k] = repr(v.get_state())
        else:
            out[k] = repr(v)
    return out


def _rows(n, d, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d))


@pytest.mark.parametrize("cls", ESTIMATORS)
@pytest.mark.parametrize("new_d", [2, 7])
def test_failed_refit_leaves_model_unchanged(cls, new_d):
    """Defect 1: a re-fit on data of another width that fails (one NaN) must
    leave every attribute as it was; predict on the new width is then a
    clear error, never a crash or silently ignored columns."""
    gm = cls(2, random_state=0).fit(_rows(3000, 5))
    before = _snapshot(gm)
    X2 = _rows(400, new_d, 1)
    X2[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        gm.fit(X2)
    assert _snapshot(gm) == before
    with pytest.raises(ValueError, match=f"X has {new_d} features, but .* expecting 5"):
        gm.predict(_rows(100_000, new_d, 2))
    assert gm.predict(_rows(10, 5, 3)).shape == (10,)


def test_failed_refit_in_a_subprocess_does_not_crash():
    """The original reproduction, run in a child so that a memory error
    fails the test instead of killing pytest."""
    code = textwrap.dedent("""
        import numpy as np, fastem
        gm = fastem.GaussianMixture(2, random_state=0).fit(
            np.random.default_rng(0).normal(size=(5000, 5)))
        X2 = np.random.default_rng(1).normal(size=(300, 2)); X2[3, 1] = np.nan
        try:
            gm.fit(X2)
        except ValueError:
            pass
        try:
            gm.predict(np.random.default_rng(2).normal(size=(100000, 2)))
        except ValueError as e:
            print("clean:", e)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("clean: X has 2 features")


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("cls", ESTIMATORS)
def test_failure_during_em_restores_everything(cls, monkeypatch):
    """A fit that fails half-way (here an error raised by the M-step of the
    third iteration) leaves the previous model bitwise, converged_ included."""
    gm = cls(2, random_state=0, max_iter=5).fit(_rows(3000, 3))
    before = _snapshot(gm)
    calls = {"n": 0}
    real = fastem.SuffStats.m_step

    def failing(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(fastem.SuffStats, "m_step", failing)
    with pytest.raises(KeyboardInterrupt):
        gm.fit(_rows(3000, 3, 5))
    assert calls["n"] == 3
    assert _snapshot(gm) == before


def test_failed_first_fit_with_warm_start_can_fit_again():
    gm = fastem.GaussianMixture(2, warm_start=True, random_state=0)
    X = _rows(500, 2)
    bad = X.copy()
    bad[7, 0] = np.inf
    with pytest.raises(ValueError):
        gm.fit(bad)
    assert not hasattr(gm, "n_features_in_")
    assert not hasattr(gm, "converged_")
    gm.fit(X)
    ref = fastem.GaussianMixture(2, random_state=0).fit(X)
    np.testing.assert_array_equal(gm.means_, ref.means_)


def test_converged_does_not_flip_on_failed_refit():
    gm = fastem.GaussianMixture(2, random_state=0).fit(_rows(2000, 2))
    assert gm.converged_
    with pytest.raises(ValueError):
        gm.fit(np.full((10, 2), np.nan))
    assert gm.converged_


# -- kernel arguments ----------------------------------------------------------


def _pass_args(ct, n=600, d=4, K_=3, dtype=np.float64):
    X = _rows(n, d).astype(dtype)
    if ct == "full":
        P = np.tile(np.eye(d, dtype=dtype), (K_, 1, 1))
        s2 = np.zeros((K_, d, d))
    elif ct == "tied":
        P = np.eye(d, dtype=dtype)[None]
        s2 = np.zeros((1, d, d))
    else:  # diag and spherical
        P = np.ones((K_, d), dtype=dtype)
        s2 = np.zeros((K_, d))
    args = [X, np.empty(0), np.zeros((K_, d), dtype=dtype), P, np.zeros(K_),
            np.zeros(d, dtype=dtype), np.zeros((K_, d), dtype=dtype), 256, 4096,
            np.zeros(K_), np.zeros((K_, d)), s2, np.zeros(2), K.memory_src()]
    if ct == "full":
        args.append(K.class_tag(d))
    kern = {"full": K.pass_full, "tied": K.pass_tied, "diag": K.pass_diag,
            "spherical": K.pass_spherical}[ct]
    return kern, args


def _mutations(ct):
    """(argument index, replacement builder, what) of inconsistent arguments."""
    return [
        (1, lambda a: np.ones(a[0].shape[0] + 1), "weights longer than X"),
        (2, lambda a: np.zeros((a[2].shape[0], a[2].shape[1] + 1), a[2].dtype),
         "means wider than X"),
        (3, lambda a: np.zeros(a[3].shape[:-1] + (a[3].shape[-1] - 1,), a[3].dtype),
         "precision factor too narrow"),
        (4, lambda a: np.zeros(a[4].shape[0] + 2), "log_norm of another K"),
        (5, lambda a: np.zeros(a[5].shape[0] - 1, a[5].dtype), "ref2 too short"),
        (6, lambda a: np.zeros((a[6].shape[0] - 1, a[6].shape[1]), a[6].dtype),
         "proj of another K"),
        (8, lambda a: 300, "task not a multiple of the block"),
        (9, lambda a: np.zeros(a[9].shape[0] - 1), "nk accumulator too short"),
        (11, lambda a: np.zeros((1,) + a[11].shape[1:]) if ct != "tied"
         else np.zeros((2,) + a[11].shape[1:]), "s2 accumulator of another K"),
        (12, lambda a: np.zeros(1), "ll accumulator too short"),
        (13, lambda a: np.array([-1, 0, 0], dtype=np.int64), "row source too short"),
        (13, lambda a: np.array([-1, 0, 0, 0], dtype=np.int32), "row source not int64"),
        (13, lambda a: K.file_src(0, 0, a[0].shape[0]), "file mode while X has rows"),
        (13, lambda a: K.file_src(0, -8, 0), "negative file offset"),
    ] + ([(14, lambda a: K.class_tag(2), "tag of another feature class")]
         if ct == "full" else [])


@pytest.mark.parametrize("ct", ["full", "tied", "diag", "spherical"])
def test_kernels_refuse_inconsistent_arguments(ct):
    """Memory safety by construction: every shape is checked against the
    others in Python before a kernel runs (defect 1's root cause was a width
    taken from X in one place and from the model in another)."""
    kern, args = _pass_args(ct)
    kern(*args)  # consistent: runs
    for pos, make, what in _mutations(ct):
        bad = list(args)
        bad[pos] = make(args)
        with pytest.raises(K.KernelArgumentError):
            kern(*bad)
        assert what


def test_logprob_kernels_refuse_inconsistent_output():
    X = _rows(100, 3)
    params = fastem.GaussianMixture(2, random_state=0).fit(X)._params()
    with pytest.raises(K.KernelArgumentError, match="axis 0"):
        _estep.weighted_log_prob(X, params, out=np.empty((99, 2)))
    with pytest.raises(K.KernelArgumentError, match="axis 1"):
        _estep.weighted_log_prob(X, params, out=np.empty((100, 3)))


# -- threads ---------------------------------------------------------------------


def _blas_threads():
    return sorted((i["filepath"], i["num_threads"]) for i in threadpoolctl.threadpool_info()
                  if i["user_api"] == "blas")


def test_concurrent_predicts_restore_blas_threads():
    """Defect 5: four concurrent predict calls on one model left BLAS at one
    thread for the rest of the process."""
    gm = fastem.GaussianMixture(3, random_state=0).fit(_rows(5000, 4))
    before = _blas_threads()
    X = _rows(20_000, 4, 1)
    errors = []

    def work():
        try:
            for _ in range(20):
                gm.predict(X)
                with _threads.thread_limits(None):
                    np.ones((30, 30)) @ np.ones((30, 30))
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert _blas_threads() == before


def test_thread_limits_nested_and_failing():
    before = _blas_threads()
    with pytest.raises(RuntimeError):
        with _threads.thread_limits(1):
            with _threads.thread_limits(None):
                assert all(n == 1 for _, n in _blas_threads())
            raise RuntimeError
    assert _blas_threads() == before


# -- smaller defects (item 9) -------------------------------------------------------


def test_nan_in_predict_does_not_say_fitting():
    gm = fastem.GaussianMixture(2, random_state=0).fit(_rows(500, 2))
    X = np.ones((10, 2))
    X[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"row 3, column 1 .* before predicting, scoring"):
        gm.predict(X)
    with pytest.raises(ValueError, match="before predicting, scoring"):
        gm.score(X)


def test_huge_values_say_overflow():
    with pytest.raises(ValueError, match="magnitude up to .*overflow the floating-point"):
        fastem.GaussianMixture(2, random_state=0).fit(_rows(500, 2) * 1e300)
    with pytest.raises(ValueError, match="or pass float64 data"):
        fastem.GaussianMixture(2, random_state=0).fit((_rows(500, 2) * 1e25).astype(np.float32))
    # just inside the limit: a clean fit
    gm = fastem.GaussianMixture(2, random_state=0).fit(_rows(500, 2) * 1e140)
    assert np.all(np.isfinite(gm.covariances_))


def test_csv_with_too_few_rows_reports_its_row_count(tmp_path):
    path = tmp_path / "few.csv"
    np.savetxt(path, _rows(25, 2), delimiter=",", header="a,b", comments="")
    with pytest.raises(ValueError, match="n_components = 30, n_samples = 25$"):
        fastem.GaussianMixture(30, random_state=0).fit(str(path))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("layout", ["C", "F", "strided"])
def test_finiteness_check_names_the_first_bad_entry(dtype, layout):
    """The one-pass proof (a sum of squares) and the exact scan agree: every
    NaN, infinity or too-large value is found and named, whatever the layout;
    values whose squares sum past the limit while each is inside it pass."""
    from fastem._validation import MAX_MAGNITUDE, check_finite

    limit = MAX_MAGNITUDE[np.dtype(dtype)]
    rng = np.random.default_rng(3)

    def arrange(A):
        if layout == "F":
            return np.asfortranarray(A)
        if layout == "strided":
            B = np.zeros((A.shape[0], 2 * A.shape[1]), dtype=A.dtype)
            B[:, ::2] = A
            return B[:, ::2]
        return A

    base = rng.standard_normal((300, 5)).astype(dtype)
    check_finite(arrange(base))
    for bad, kind in [(np.nan, "NaN"), (np.inf, "infinity"), (-np.inf, "infinity")]:
        A = base.copy()
        A[217, 4] = bad
        A[250, 1] = bad  # a later bad entry: the first one is named
        with pytest.raises(ValueError, match=f"contains {kind} at row 217, column 4 "):
            check_finite(arrange(A))
    A = base.copy()
    A[5, 2] = -3 * limit
    with pytest.raises(ValueError, match="magnitude up to"):
        check_finite(arrange(A))
    # every value 0.9 * limit: the sum of squares overflows, the exact check passes
    check_finite(arrange(np.full((300, 5), 0.9 * limit, dtype=dtype)))
