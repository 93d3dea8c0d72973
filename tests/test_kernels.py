"""The Numba kernels (through fastem._estep) against independent oracles."""

import hashlib
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from scipy.stats import multivariate_normal
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SkGaussianMixture

import reference
from conftest import COVARIANCE_TYPES, DTYPES, assert_rel, make_blobs, to_params
from fastem import GaussianMixture
from fastem import _estep

# n > one block (256 rows) with a ragged last block
N, D, K = 1037, 4, 3


def _data(dtype, seed=0, n=N, d=D, k=K, ct="full"):
    rng = np.random.default_rng(seed)
    p = reference.random_params(ct, k, d, rng)
    X = rng.normal(size=(n, d)) * 2.5 + p["means"][rng.integers(0, k, n)]
    return np.ascontiguousarray(X, dtype=dtype), p


def _rtol(dtype):
    return 1e-10 if dtype == np.float64 else 1e-4


# ---------------------------------------------------------------------------
# Per-row log densities
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_reference_log_densities_match_scipy(ct):
    # the oracle itself, before anything is tested against it
    X, p = _data(np.float64, ct=ct)
    covs = reference.full_covariances(p["covariances"], ct, K, D)
    got = reference.log_densities(X, p["means"], p["precisions_cholesky"], ct)
    for k in range(K):
        want = multivariate_normal.logpdf(X, p["means"][k], covs[k])
        np.testing.assert_allclose(got[:, k], want, rtol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_log_densities_match_scipy(ct, dtype):
    X, p = _data(dtype, ct=ct)
    params = to_params(p)
    wlp = _estep.weighted_log_prob(X, params)
    assert wlp.shape == (N, K) and wlp.dtype == np.float64
    got = wlp - np.log(p["weights"])
    covs = reference.full_covariances(p["covariances"], ct, K, D)
    X64 = X.astype(np.float64)
    for k in range(K):
        want = multivariate_normal.logpdf(X64, p["means"][k], covs[k])
        np.testing.assert_allclose(got[:, k], want, rtol=_rtol(dtype),
                                   atol=1e-12 if dtype == np.float64 else 1e-4)


@pytest.mark.parametrize("ct, d", [(ct, 11) for ct in COVARIANCE_TYPES] + [("full", 34)])
def test_log_densities_d_above_8(ct, d):
    # n_features > 8 selects the other block size and the unrolled path of
    # the triangular product; d >= 32 the wide class (four-column tiles)
    X, p = _data(np.float64, n=300, d=d, k=2, ct=ct, seed=5)
    got = _estep.weighted_log_prob(X, to_params(p))
    want = reference.log_densities(X, p["means"], p["precisions_cholesky"], ct)
    np.testing.assert_allclose(got - np.log(p["weights"]), want, rtol=1e-10)


def test_log_densities_empty_X():
    _, p = _data(np.float64)
    out = _estep.weighted_log_prob(np.empty((0, D)), to_params(p))
    assert out.shape == (0, K)


# ---------------------------------------------------------------------------
# Statistics of one pass
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_compute_stats_matches_reference(ct, dtype, weighted):
    X, p = _data(dtype, ct=ct, seed=1)
    rng = np.random.default_rng(2)
    w = rng.uniform(0.0, 3.0, size=N) if weighted else None
    st = _estep.compute_stats(X, to_params(p), w)
    rtol = 1e-10 if dtype == np.float64 else 1e-4
    # the references are the means, in the data's precision
    np.testing.assert_array_equal(st.ref, p["means"].astype(dtype).astype(np.float64))
    resp, mean_ll = reference.e_step(X, p, w)
    resp_w = resp if w is None else resp * w[:, None]
    nk, s1, s2 = reference.stats(X, resp_w, st.ref, ct, ref2=st.ref2, sample_weight=w)
    assert_rel(st.nk, nk, rtol, "nk")
    assert_rel(st.s1, s1, 10 * rtol if dtype == np.float32 else rtol, "s1")
    assert_rel(reference.s2_statistic(st.s2, ct), reference.s2_statistic(s2, ct), rtol, "s2")
    wsum = N if w is None else w.sum()
    assert st.weight_sum == pytest.approx(wsum, rel=1e-12)
    assert st.n_rows == N
    assert st.mean_loglik() == pytest.approx(mean_ll, rel=rtol)
    if ct == "tied":
        np.testing.assert_allclose(st.ref2, p["weights"] @ st.ref, rtol=1e-6)


def _ct_d_cases():
    for ct in COVARIANCE_TYPES:
        for d in (1, 2, 3, 5, 6, 7, 11, 16) + ((33,) if ct == "full" else ()):
            yield pytest.param(ct, d, id=f"{ct}-{d}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ct, d", list(_ct_d_cases()))
def test_compute_stats_feature_counts(ct, d, dtype):
    # odd and even n_features exercise every tail of the tiled moment loops, on
    # both sides of SCALED_MIN_D (weighted and square-root-scaled moments), and
    # the one- and two-feature paths
    X, p = _data(dtype, ct=ct, seed=9, n=700, d=d, k=2)
    rng = np.random.default_rng(d)
    w = rng.uniform(0.0, 2.0, size=700)
    st = _estep.compute_stats(X, to_params(p), w)
    X64 = X.astype(np.float64)
    resp, _ = reference.e_step(X64, p, w)
    nk, s1, s2 = reference.stats(X64, resp * w[:, None], st.ref, ct, ref2=st.ref2,
                                 sample_weight=w)
    tol = 1e-10 if dtype == np.float64 else 2e-4
    assert_rel(st.nk, nk, tol, "nk")
    assert_rel(st.s1, s1, tol, "s1")
    assert_rel(reference.s2_statistic(st.s2, ct), reference.s2_statistic(s2, ct), tol, "s2")
    if ct in ("full", "tied"):
        np.testing.assert_array_equal(st.s2, np.swapaxes(st.s2, -1, -2))


def _separated(d, dtype, n=3001, seed=0, narrow_share=7 / 8):
    """Seven components 60 sigma apart on the axes and a broad eighth one
    around them all: each row has a responsibility other than exactly zero
    for its own component and the broad one only.  narrow_share: the share
    of the rows drawn from the seven narrow components."""
    rng = np.random.default_rng(seed)
    K = 8
    means = np.zeros((K, d))
    means[np.arange(K - 1), np.arange(K - 1)] = 60.0
    covs = np.stack([np.eye(d)] * (K - 1) + [np.eye(d) * 900.0])
    weights = np.full(K, 1.0 / K)
    labels = rng.choice(K, n, p=[narrow_share / 7] * 7 + [1.0 - narrow_share])
    X = means[labels] + rng.normal(size=(n, d)) * np.sqrt(covs[labels, 0, 0])[:, None]
    p = {"covariance_type": "full", "weights": weights, "means": means,
         "covariances": covs,
         "precisions_cholesky": reference.precision_cholesky(covs, "full")}
    return np.ascontiguousarray(X, dtype=dtype), p


@pytest.mark.parity
@pytest.mark.parametrize("narrow_share", [7 / 8, 0.2])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("d", [8, 16, 33])
def test_full_statistics_of_well_separated_components(d, dtype, narrow_share):
    # most responsibilities are exactly zero, so the full moments of the
    # seven narrow components are formed from the rows that weigh in, packed
    # (_component_scaled; a packed count rarely fills the zero-padded tiles),
    # or, with a fifth of the rows in the narrow components (about 7 of 256
    # rows per block each, 0 to 16, rarely a multiple of 4) and d >= 32, row
    # by row (_few_rows), while the broad component keeps every row of every
    # block
    X, p = _separated(d, dtype, narrow_share=narrow_share)
    w = np.random.default_rng(1).uniform(0.0, 2.0, size=X.shape[0])
    st = _estep.compute_stats(X, to_params(p), w)
    X64 = X.astype(np.float64)
    resp, _ = reference.e_step(X64, p, w)
    assert (resp[:, :7] < 1e-300).mean() > 0.8
    # rows per block that weigh in for each narrow component
    from fastem._kernels._moments import FEW_ROWS

    block = _estep.block_size(d)
    nblocks = X.shape[0] // block
    kept = (resp[:nblocks * block, :7] > 1e-300).reshape(nblocks, block, 7).sum(axis=1)
    few = np.mean(kept <= FEW_ROWS)
    assert few > 0.9 if narrow_share < 0.5 else few < 0.1
    nk, s1, s2 = reference.stats(X64, resp * w[:, None], st.ref, "full", sample_weight=w)
    tol = 1e-10 if dtype == np.float64 else 2e-4
    assert_rel(st.nk, nk, tol, "nk")
    assert_rel(st.s1, s1, tol, "s1")
    iu = np.triu_indices(d)
    for k in range(8):
        assert_rel(st.s2[k][iu], s2[k][iu], tol, f"s2[{k}]")
    # and the same bits for any number of threads
    digests = []
    for n_jobs in (1, 2):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            gm = GaussianMixture(8, covariance_type="full", tol=0, max_iter=3, n_jobs=n_jobs,
                                 weights_init=p["weights"], means_init=p["means"],
                                 precisions_init=np.linalg.inv(p["covariances"])).fit(X)
        digests.append(hashlib.sha256(np.concatenate(
            [gm.means_.ravel(), gm.covariances_.ravel(), gm.lower_bounds_]).tobytes()).hexdigest())
    assert digests[0] == digests[1]


@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_m_step_of_compute_stats_matches_reference(ct):
    X, p = _data(np.float64, ct=ct, seed=3)
    got = _estep.compute_stats(X, to_params(p)).m_step(1e-6)
    resp, _ = reference.e_step(X, p)
    want = reference.m_step(X, resp, 1e-6, ct)
    for name in ("weights", "means", "covariances", "precisions_cholesky"):
        assert_rel(getattr(got, name), want[name], 1e-10, name)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_stats_invariant_to_chunking(ct, weighted):
    X, p = _data(np.float64, ct=ct, seed=4, n=5000)
    params = to_params(p)
    w = np.random.default_rng(0).uniform(0, 2, 5000) if weighted else None
    whole = _estep.compute_stats(X, params, w)
    cuts = [0, 1, 100, 257, 2048, 3999, 5000]
    merged = None
    for lo, hi in zip(cuts[:-1], cuts[1:]):
        part = _estep.compute_stats(X[lo:hi], params, None if w is None else w[lo:hi])
        merged = part if merged is None else merged.merge(part)
    for name in ("nk", "s1", "s2"):
        assert_rel(getattr(merged, name), getattr(whole, name), 1e-12, name)
    assert merged.loglik == pytest.approx(whole.loglik, rel=1e-12)
    assert merged.weight_sum == pytest.approx(whole.weight_sum, rel=1e-12)
    assert merged.n_rows == whole.n_rows == 5000


@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_in_memory_pass_calls_match_chunks_bitwise(ct):
    """An in-memory array goes to the kernels in calls of pass_rows rows (a
    multiple of the task size, several chunks of CHUNK_ROWS); its statistics,
    weight sum included, are bitwise those of a pass over CHUNK_ROWS chunks."""
    from fastem._constants import CHUNK_ROWS
    from fastem._data import ArrayData

    n = 2 * CHUNK_ROWS + 4321
    X, p = _data(np.float64, ct=ct, seed=5, n=n)
    params = to_params(p)
    K, d = params.means.shape
    rows = _estep.pass_rows(ct, K, d)
    assert rows % _estep.task_rows(d) == 0 and rows >= n  # one call here
    w = np.random.default_rng(1).uniform(0.1, 3.0, n)
    acc = _estep.StatsAccumulator(params, X.dtype)
    for lo in range(0, n, CHUNK_ROWS):
        acc.add(X[lo:lo + CHUNK_ROWS], w[lo:lo + CHUNK_ROWS])
    chunked = acc.result()
    whole = ArrayData(X, w).e_pass(params)
    for name in ("nk", "s1", "s2", "loglik", "weight_sum"):
        assert np.asarray(getattr(whole, name)).tobytes() == \
            np.asarray(getattr(chunked, name)).tobytes(), name


def test_stats_of_rows_with_no_density_raise():
    X, p = _data(np.float64, ct="diag")
    X = X.copy()
    X[7] = 1e200  # squared Mahalanobis distance overflows: density 0 everywhere
    with pytest.raises(ValueError, match="zero probability under every component"):
        _estep.compute_stats(X, to_params(p))


# ---------------------------------------------------------------------------
# Input kinds: C, Fortran, read-only memmap
# ---------------------------------------------------------------------------


def _input_kinds(X, tmp_path):
    path = tmp_path / "X.npy"
    np.save(path, X)
    mm = np.load(path, mmap_mode="r")
    assert not mm.flags.writeable
    return {"C": np.ascontiguousarray(X), "F": np.asfortranarray(X), "memmap": mm}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_input_kinds_give_equal_fits(ct, dtype, tmp_path):
    X, _ = _data(dtype, ct=ct, seed=6)
    results = {}
    for kind, Xk in _input_kinds(X, tmp_path).items():
        gm = GaussianMixture(3, covariance_type=ct, random_state=0, tol=1e-6,
                             max_iter=200).fit(Xk)
        results[kind] = (gm.means_, gm.covariances_, gm.lower_bound_,
                         gm.predict_proba(Xk), gm.score_samples(Xk))
        assert gm.means_.dtype == np.float64
    # Fortran input is copied to C order by the estimator: the same kernel runs
    for a, b in zip(results["F"], results["C"]):
        np.testing.assert_array_equal(a, b)
    # a read-only memmap runs the read-only specialisation of the kernels,
    # which LLVM may vectorise differently: equal to rounding
    for a, b in zip(results["memmap"], results["C"]):
        np.testing.assert_allclose(a, b, rtol=1e-12 if dtype == np.float64 else 1e-5,
                                   atol=1e-13)


@pytest.mark.parametrize("dtype", DTYPES)
def test_compute_stats_on_readonly_memmap(dtype, tmp_path):
    X, p = _data(dtype, ct="full", seed=7)
    mm = _input_kinds(X, tmp_path)["memmap"]
    a = _estep.compute_stats(X, to_params(p))
    b = _estep.compute_stats(np.asarray(mm), to_params(p))
    assert b.n_rows == a.n_rows
    assert not np.asarray(mm).flags.writeable
    # the read-only specialisation may be vectorised differently: equal to rounding
    rtol = 1e-13 if dtype == np.float64 else 1e-6
    for name in ("nk", "s1", "s2"):
        assert_rel(getattr(a, name), getattr(b, name), rtol, name)
    assert a.loglik == pytest.approx(b.loglik, rel=rtol)


# ---------------------------------------------------------------------------
# Responsibilities
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_responsibilities_sum_to_one(ct, dtype):
    X, p = _data(dtype, ct=ct, seed=8)
    gm = GaussianMixture(3, covariance_type=ct, random_state=0).fit(X)
    proba = gm.predict_proba(X)
    assert proba.shape == (N, 3)
    assert np.all(proba >= 0) and np.all(proba <= 1)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    # and they are the reference posterior under the fitted parameters
    fitted = {"covariance_type": ct, "weights": gm.weights_, "means": gm.means_,
              "precisions_cholesky": gm.precisions_cholesky_}
    want, _ = reference.e_step(X, fitted)
    np.testing.assert_allclose(proba, want, rtol=0,
                               atol=1e-10 if dtype == np.float64 else 1e-4)


# ---------------------------------------------------------------------------
# Data far from the origin
# ---------------------------------------------------------------------------


def _far_data():
    rng = np.random.default_rng(11)
    centers = 1e4 + np.array([[0.0, 0.0, 0.0], [0.08, -0.05, 0.06]])
    X, _ = make_blobs(3000, centers, 0.01, rng)
    return X


def _far_init(X, ct):
    # well-placed initial parameters: the two blob centres and spreads
    means = 1e4 + np.array([[0.005, 0.0, -0.005], [0.07, -0.04, 0.05]])
    var = 2e-4
    cov = {"full": np.stack([var * np.eye(3)] * 2), "tied": var * np.eye(3),
           "diag": np.full((2, 3), var), "spherical": np.full(2, var)}[ct]
    return {"covariance_type": ct, "weights": np.array([0.4, 0.6]), "means": means,
            "covariances": cov,
            "precisions_cholesky": reference.precision_cholesky(cov, ct)}


def _precisions(p):
    pc = p["precisions_cholesky"]
    ct = p["covariance_type"]
    if ct == "full":
        return np.einsum("kij,klj->kil", pc, pc)
    if ct == "tied":
        return pc @ pc.T
    return pc**2


@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_far_from_origin_statistics(ct):
    X = _far_data()
    p = _far_init(X, ct)
    st = _estep.compute_stats(X, to_params(p))
    resp, _ = reference.e_step(X, p)
    nk, s1, s2 = reference.stats(X, resp, st.ref, ct, ref2=st.ref2)
    assert_rel(st.nk, nk, 1e-10, "nk")
    assert_rel(st.s1, s1, 1e-8, "s1")
    assert_rel(reference.s2_statistic(st.s2, ct), reference.s2_statistic(s2, ct), 1e-8, "s2")
    got = st.m_step(1e-10)
    want = reference.m_step(X, resp, 1e-10, ct)
    assert_rel(got.covariances, want["covariances"], 1e-8, "covariances")
    assert_rel(got.means - 1e4, want["means"] - 1e4, 1e-8, "means")


@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_far_from_origin_fit(ct):
    X = _far_data()
    p = _far_init(X, ct)
    n_iter = 10
    want, bounds = reference.em(X, p, n_iter, reg_covar=1e-10)
    kw = dict(n_components=2, covariance_type=ct, tol=0, max_iter=n_iter,
              reg_covar=1e-10, weights_init=p["weights"], means_init=p["means"],
              precisions_init=_precisions(p))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm = GaussianMixture(**kw).fit(X)
    assert_rel(gm.covariances_, want["covariances"], 1e-8, "covariances")
    assert_rel(gm.means_ - 1e4, want["means"] - 1e4, 1e-8, "means")
    assert_rel(gm.weights_, want["weights"], 1e-8, "weights")
    np.testing.assert_allclose(gm.lower_bounds_, bounds, rtol=1e-10)
    if ct == "full":
        # scikit-learn's 'full' formula is two-pass too
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            sk = SkGaussianMixture(**kw).fit(X)
        assert_rel(gm.covariances_, sk.covariances_, 1e-8, "covariances vs sklearn")
        assert_rel(gm.means_ - 1e4, sk.means_ - 1e4, 1e-8, "means vs sklearn")


# ---------------------------------------------------------------------------
# Determinism across thread counts
# ---------------------------------------------------------------------------

_THREAD_SCRIPT = textwrap.dedent("""
    import hashlib, warnings
    import numpy as np
    from sklearn.exceptions import ConvergenceWarning
    from fastem import GaussianMixture
    import numba
    print("threads", numba.get_num_threads())
    rng = np.random.default_rng(2024)
    centers = rng.normal(size=(4, 5)) * 4
    X = centers[rng.integers(0, 4, 50_000)] + rng.normal(size=(50_000, 5))
    w = rng.uniform(0.5, 2.0, size=50_000)
    warnings.simplefilter("ignore", ConvergenceWarning)
    for dtype in (np.float32, np.float64):
        Xd = X.astype(dtype)
        for ct in ("full", "tied", "diag", "spherical"):
            for sw in (None, w):
                gm = GaussianMixture(4, covariance_type=ct, tol=0, max_iter=4,
                                     random_state=0).fit(Xd, sample_weight=sw)
                h = hashlib.sha256()
                for a in (gm.weights_, gm.means_, gm.covariances_,
                          gm.precisions_cholesky_, np.array(gm.lower_bounds_),
                          gm.predict_proba(Xd[:2000])):
                    h.update(np.ascontiguousarray(a).tobytes())
                print(np.dtype(dtype).name, ct, sw is None, h.hexdigest())
""")


def _run_with_threads(n):
    env = dict(os.environ, NUMBA_NUM_THREADS=str(n))
    out = subprocess.run([sys.executable, "-c", _THREAD_SCRIPT], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == f"threads {n}"
    return lines[1:]


def test_bitwise_identical_across_thread_counts():
    one = _run_with_threads(1)
    two = _run_with_threads(2)
    assert len(one) == 16
    assert one == two


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_n_jobs_bitwise_identical(ct, dtype):
    rng = np.random.default_rng(3)
    X, _ = make_blobs(20_000, rng.normal(size=(3, 4)) * 5, 1.0, rng, dtype)
    digests = []
    for n_jobs in (1, 2):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            gm = GaussianMixture(3, covariance_type=ct, tol=0, max_iter=5,
                                 random_state=0, n_jobs=n_jobs).fit(X)
        h = hashlib.sha256()
        for a in (gm.means_, gm.covariances_, np.array(gm.lower_bounds_),
                  gm.score_samples(X)):
            h.update(np.ascontiguousarray(a).tobytes())
        digests.append(h.hexdigest())
    assert digests[0] == digests[1]


def test_n_jobs_restores_numba_threads():
    import numba

    before = numba.get_num_threads()
    X, _ = _data(np.float64)
    GaussianMixture(2, n_jobs=1, random_state=0).fit(X)
    assert numba.get_num_threads() == before


# ---------------------------------------------------------------------------
# The vectorised exp and log of the E-step
# ---------------------------------------------------------------------------


def _elementwise(helper):
    from numba import njit

    from fastem._kernels import FASTMATH

    @njit(fastmath=FASTMATH, error_model="numpy")
    def apply(x, out):
        for i in range(x.shape[0]):
            out[i] = helper(x[i])

    def call(x):
        out = np.empty_like(x)
        apply(x, out)
        return out

    return call


def _check_exp(got, ref, x, rel_tol, tiny):
    """got within rel_tol * max(1, |x|) of ref where ref is normal in got's
    precision; where ref is subnormal, within that relative error plus two
    units of the smallest subnormal (tiny) (the relative error of the
    polynomial is up to ~50 units of tiny just below the smallest normal, and
    the rounding into the subnormal range half a unit); exactly 0 where ref is 0."""
    normal = ref >= np.finfo(got.dtype).tiny
    rel = np.abs(got[normal] - ref[normal]) / ref[normal]
    assert np.all(rel <= rel_tol * np.maximum(1.0, np.abs(x[normal].astype(np.float64))))
    sub = ~normal & (ref > 0)
    bound = rel_tol * np.maximum(1.0, np.abs(x[sub].astype(np.float64))) * ref[sub] + 2 * tiny
    assert np.all(np.abs(got[sub].astype(np.float64) - ref[sub]) <= bound)
    # where the relative error is below half a unit (all but the top of the
    # subnormal range) that is within a couple of units
    deep = sub & (rel_tol * np.maximum(1.0, np.abs(x.astype(np.float64))) * ref <= 0.5 * tiny)
    if np.any(sub):
        assert np.count_nonzero(deep) > 0.5 * np.count_nonzero(sub)
    assert np.all(np.abs(got[deep].astype(np.float64) - ref[deep]) <= 2 * tiny)
    assert np.all(got[ref == 0] == 0.0)
    return rel


def test_exp_matches_numpy():
    from fastem._kernels import _exp_neg

    rng = np.random.default_rng(3)
    edge = -1022 * np.log(2.0)          # exp(edge) is the smallest normal float64
    x = -np.concatenate([rng.random(20_000) * 50, rng.random(2_000) * 708,
                         rng.random(100) * 1e-12,
                         [0.0, 1e-300, 0.5 * np.log(2), np.log(2), 707.99, 708.0, 708.39]])
    above = np.nextafter(edge, 0.0) + np.arange(50) * 1e-13
    x = np.concatenate([x, above])
    got = _elementwise(_exp_neg)(x)
    ref = np.exp(x)
    # every result here is a normal float64
    assert np.all(ref >= np.finfo(np.float64).tiny)
    # the argument itself carries an error of about eps * |x| (it is a
    # difference of log densities), so that is the accuracy asked of exp too
    rel = _check_exp(got, ref, x, 2.3e-16, 2.0 ** -1074)
    assert np.median(rel[np.abs(x) < 1]) < 1.2e-16
    # ... and exp itself adds no more than about one unit, however large |x|:
    # the range reduction x - n log 2 is exact (two explicit FMAs; folded into
    # one multiply by a rounded log 2, as 'reassoc' once let LLVM do, the
    # error grew with n to 1e-14 relative near x = -708)
    assert rel.max() <= np.finfo(np.float64).eps
    assert np.max(rel[np.abs(x) > 300]) <= np.finfo(np.float64).eps
    # below the smallest normal (np.exp's subnormal range and where it
    # underflows), -inf and NaN: exactly 0 (no subnormal arithmetic in the
    # kernels)
    tail = np.concatenate([
        [edge, np.nextafter(edge, -np.inf), -708.5, -709.0897, -720.0, -744.44, -745.13,
         -745.2, -746.0, -1e6, -1e300, -np.inf, np.nan],
        edge - rng.random(1000) * 40])
    assert np.all(_elementwise(_exp_neg)(tail) == 0.0)


def test_exp_float32_matches_numpy():
    from fastem._kernels import _exp_neg

    rng = np.random.default_rng(5)
    edge = np.float32(-87.0)   # float32 results below the smallest normal are flushed
    x = -np.concatenate([rng.random(20_000) * 20, rng.random(2_000) * 87,
                         [0.0, 1e-30, np.log(2), 86.99]]).astype(np.float32)
    above = np.nextafter(edge, np.float32(0.0))
    x = np.concatenate([x, [above]]).astype(np.float32)
    got = _elementwise(_exp_neg)(x)
    assert got.dtype == np.float32
    ref = np.exp(x.astype(np.float64))
    # every result here is a normal float32: against the float64 exp
    assert np.all(ref >= np.finfo(np.float32).tiny)
    rel = _check_exp(got, ref, x, 1.2e-7, 2.0 ** -149)
    # within one unit whatever |x| (exact range reduction, as for float64)
    assert rel.max() <= np.finfo(np.float32).eps
    # from -87 down: exactly 0 (no subnormal float32 arithmetic in the kernels)
    tail = np.array([edge, np.nextafter(edge, np.float32(-np.inf)), -87.5, -100.0,
                     -103.97, -104.0, -1e6, -np.inf, np.nan], dtype=np.float32)
    assert np.all(_elementwise(_exp_neg)(tail) == 0.0)
    # the Python function (used outside compiled code) agrees
    assert _exp_neg(-1.5) == pytest.approx(np.exp(-1.5), rel=1e-15)
    assert _exp_neg(-700.0) == np.exp(-700.0)
    assert _exp_neg(-740.0) == 0.0
    assert _exp_neg(-800.0) == 0.0
    assert _exp_neg(-745.1332191019412) == 0.0


def test_log_matches_numpy():
    from fastem._kernels import _log_normal

    rng = np.random.default_rng(4)
    x = np.concatenate([1.0 + rng.random(20_000) * 64, rng.random(2_000) * 1e-3 + 1e-300,
                        10.0 ** rng.uniform(-300, 300, 2_000),
                        [1.0, 2.0, np.sqrt(2.0), np.nextafter(np.sqrt(2.0), 2.0),
                         np.nextafter(1.0, 0.0), 1e308, 2.2250738585072014e-308]])
    got = _elementwise(_log_normal)(x)
    ref = np.log(x)
    assert np.all(np.abs(got - ref) <= 2.3e-16 * np.maximum(1.0, np.abs(ref)))


def test_target_isa_agrees_with_generated_code():
    """The instruction-set switch of the kernels (from the target's features)
    says AVX-512 exactly when LLVM emits 512-bit registers for this target."""
    from fastem._kernels._machinery import _probe_zmm, target_has_avx512

    assert target_has_avx512() == _probe_zmm()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("d", [3, 4, 7, 9, 16, 33, 64])
def test_triangular_products_match_reference(d, dtype):
    """Every variant of the triangular products (the AVX-512 loops: two-column
    tiles, and four-column tiles from 16 features on, an odd d ending with
    two-column and one-column tails; the AVX2 register tiles of four columns
    and their single columns) gives the log densities of a NumPy reference,
    for full and ragged blocks; with the register tiles a point gets the
    same bits first in a block (a tile's) and last in a ragged one (the
    rows' path)."""
    from fastem._kernels._blocks import _logprob_tri, _logprob_tri_four
    from fastem._kernels._regtiles import _logprob_tri_tiles

    rng = np.random.default_rng(d)
    K, width = 5, 256 + 16
    eps = np.finfo(dtype).eps
    proj = rng.standard_normal((K, d)).astype(dtype)
    P = np.triu(rng.standard_normal((K, d, d))).astype(dtype)
    log_norm = rng.standard_normal(K)
    for nb in (256, 253, 9, 1):
        diff = rng.standard_normal((d, width)).astype(dtype)
        diff[:, nb - 1] = diff[:, 0]
        x = diff[:, :nb].astype(np.float64)
        P64 = P.astype(np.float64)
        y = np.einsum("kij,ir->kjr", P64, x) - proj.astype(np.float64)[:, :, None]
        want = log_norm[:, None] - 0.5 * (y ** 2).sum(axis=1)
        # each y_j sums j + 2 products, each square sum d terms: a few eps
        # each, of the terms' magnitudes (and lp's rounding to the data type)
        ymag = (np.abs(P64)[:, :, :, None] * np.abs(x)[None, :, None, :]).sum(axis=1)
        ymag += np.abs(proj.astype(np.float64))[:, :, None]
        tol = 8 * d * eps * (1.0 + np.abs(log_norm)[:, None] + 0.5 * (ymag ** 2).sum(axis=1))
        for fn in (_logprob_tri, _logprob_tri_four, _logprob_tri_tiles):
            lp = np.full((K, width), np.nan, dtype)
            if fn is _logprob_tri_tiles:
                fn(diff, nb, proj, P, log_norm, lp)
                np.testing.assert_array_equal(lp[:, nb - 1], lp[:, 0])
            else:
                scratch = [np.full(width, np.nan, dtype) for _ in range(5)]
                fn(diff, nb, proj, P, log_norm, *scratch, lp)
            assert np.all(np.abs(lp[:, :nb] - want) <= tol), (fn, nb)
            assert np.isnan(lp[:, nb:]).all(), (fn, nb)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("d", [1, 2, 3, 4, 5, 7, 8, 16, 17, 31, 32, 33])
def test_load_block_transposes_exactly(d, dtype):
    """_load_block copies rows start:start + nb of X into xt[:, :nb]
    transposed, value for value, whatever d (4 x 4 shuffled tiles from 4 to
    31 features, with tails of rows and features), and writes nothing else;
    with tiles it clamps nb to the rows that exist."""
    from fastem._kernels._blocks import TILED_LOAD_MAX_D, _load_block

    rng = np.random.default_rng(d)
    n, width = 1000, 256 + 16
    X = rng.standard_normal((n, d)).astype(dtype)
    cases = [(0, 256), (3, 255), (997, 3), (744, 256), (0, 1), (5, 0), (1, 6)]
    if 4 <= d < TILED_LOAD_MAX_D:
        cases += [(999, 10), (990, 256)]
    for start, nb in cases:
        xt = np.full((d, width), np.nan, dtype)
        _load_block(X, start, nb, xt)
        m = min(nb, n - start)
        np.testing.assert_array_equal(xt[:, :m], X[start:start + m].T)
        assert np.isnan(xt[:, m:]).all(), (start, nb)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("K,d", [(1, 1), (3, 2), (4, 16), (5, 3), (7, 5), (16, 16), (9, 33)])
def test_distance_tiles_give_every_point_the_same_bits(K, d, dtype):
    """The diagonal and spherical log densities and squared distances
    (register tiles of _regtiles, and _distances_rows for the points and
    components they leave) agree with NumPy to a few eps, and a point gets
    the same bits wherever it sits in a block: first (a tile's), or last of
    a block whose size is no multiple of the tile's width (the rows' path)."""
    from fastem._kernels._blocks import _distances, _scaled_distances

    rng = np.random.default_rng(K * 100 + d)
    width = 256 + 16
    eps = np.finfo(dtype).eps
    proj = rng.standard_normal((K, d)).astype(dtype)
    prec = (rng.random((K, d)) + 0.5).astype(dtype)
    prec_sph = np.repeat(prec[:, :1], d, axis=1)
    log_norm = 10 * rng.standard_normal(K)
    for nb in (256, 255, 37, 3, 1):
        diff = rng.standard_normal((d, width)).astype(dtype)
        diff[:, nb - 1] = diff[:, 0]
        x = diff[:, :nb].astype(np.float64)
        c = proj.astype(np.float64)[:, :, None]
        p = prec.astype(np.float64)
        for fn, a, h, pr in ((_distances, np.broadcast_to(x[None], (K, d, nb)),
                              0.5 * p[:, :1] ** 2, prec_sph),
                             (_scaled_distances, x[None] * p[:, :, None], 0.5, prec)):
            dist = np.full((K, width), np.nan, dtype)
            lp = np.full((K, width), np.nan, dtype)
            fn(diff, nb, proj, pr, log_norm, dist, lp)
            want = ((a - c) ** 2).sum(axis=1)
            # each t_i = a_i - c_i is off by about eps (|a_i| + |c_i|), its
            # square by twice that relative to (|a_i| + |c_i|)^2; d terms
            tol = 4 * (d + 2) * eps * ((np.abs(a) + np.abs(c)) ** 2).sum(axis=1)
            want_lp = log_norm[:, None] - h * want
            tol_lp = h * tol + 2 * eps * (np.abs(log_norm)[:, None] + h * want)
            assert np.all(np.abs(lp[:, :nb] - want_lp) <= tol_lp), (fn, nb)
            np.testing.assert_array_equal(lp[:, nb - 1], lp[:, 0])
            assert np.isnan(lp[:, nb:]).all()
            if fn is _distances:
                assert np.all(np.abs(dist[:, :nb] - want) <= tol), nb
                np.testing.assert_array_equal(dist[:, nb - 1], dist[:, 0])
                assert np.isnan(dist[:, nb:]).all()
            else:
                assert np.isnan(dist).all()  # not written


@pytest.mark.parametrize("ct", ["diag", "spherical"])
def test_float32_moments_of_components_far_from_the_mixture_mean(ct):
    # The E-step centres the rows at the mixture mean c; the spherical kernel
    # forms first moments as sum_r resp (x - c) - N_k (mu_k - c), so its
    # rounding grows with |mu_k - c|.  Two components 60 sigma from c,
    # float32, against float64 on the same rows: the M-step's means may be
    # off by float32's eps times |mu_k - c| (the precision of the means
    # themselves; measured: 2.9 eps for spherical, 0.04 eps for diag), the
    # variances by a few eps (their moments are taken around the means;
    # measured: 0.4 eps).
    rng = np.random.default_rng(5)
    d, n, sep = 6, 4000, 60.0
    centres = np.zeros((2, d))
    centres[0, 0], centres[1, 0] = -sep, sep
    X, _ = make_blobs(n, centres + 3.0, 1.0, rng)
    X32 = np.ascontiguousarray(X, dtype=np.float32)
    X64 = X32.astype(np.float64)
    var = np.ones((2, d)) if ct == "diag" else np.ones(2)
    p = {"covariance_type": ct, "weights": np.array([0.5, 0.5]),
         "means": centres + 3.0 + 0.3, "covariances": var,
         "precisions_cholesky": reference.precision_cholesky(var, ct)}
    got = _estep.compute_stats(X32, to_params(p)).m_step(1e-6)
    resp, _ = reference.e_step(X64, p)
    want = reference.m_step(X64, resp, 1e-6, ct)
    eps = np.finfo(np.float32).eps
    mean_err = np.max(np.abs(got.means - want["means"]))
    assert mean_err <= eps * (sep + 1.0), mean_err
    assert_rel(got.covariances, want["covariances"], 16 * eps, "covariances")


def test_every_compiled_helper_has_a_name_of_its_own():
    # Numba names a compiled function's symbol after its qualified name and a
    # per-process counter.  Two variants made by one factory under one name
    # (the scaled and plain distances once were) can get the same symbol in
    # two compiling processes; a process that loads both kernels from the
    # cache then runs one variant for the other (CI saw logprob_spherical
    # float32 run the diagonal type's distances).  Every dispatcher of the
    # kernel modules must carry a distinct qualified name.
    from numba.core.registry import CPUDispatcher

    from fastem._kernels import (_blocks, _regtiles, _incomplete, _math, _moments, _passes,
                                 _triangular)

    seen = {}
    for mod in (_blocks, _regtiles, _incomplete, _math, _moments, _passes, _triangular):
        for obj in vars(mod).values():
            fn = getattr(obj, "py_func", None)
            if isinstance(obj, CPUDispatcher) and fn is not None:
                key = (fn.__module__, fn.__qualname__)
                seen.setdefault(key, set()).add(id(obj))
    shared = {k: len(v) for k, v in seen.items() if len(v) > 1}
    assert not shared, shared
    assert ("fastem._kernels._blocks", "_distances") in seen
    assert ("fastem._kernels._blocks", "_scaled_distances") in seen
