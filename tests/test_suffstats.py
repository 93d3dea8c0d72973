"""SuffStats algebra (merge, scale, recenter), the M-step and precision Cholesky."""

import numpy as np
import pytest

import reference
from conftest import COVARIANCE_TYPES, assert_rel, to_params
from fastem import SuffStats
from fastem import _estep, _initstats
from fastem._suffstats import GaussianParams, precision_cholesky

K, D = 3, 4


def _setup(ct, seed=0, n=900, offset=0.0):
    rng = np.random.default_rng(seed)
    p = reference.random_params(ct, K, D, rng, offset=offset)
    X = offset + rng.normal(size=(n, D)) * 3
    resp = rng.dirichlet(np.ones(K), size=n)
    w = rng.uniform(0.2, 2.0, size=n)
    return X, p, resp * w[:, None], w


def _stats(X, resp_w, ref, ct, ref2):
    """SuffStats built from the reference moments (independent of the kernels)."""
    nk, s1, s2 = reference.stats(X, resp_w, ref, ct, ref2=ref2,
                                 sample_weight=resp_w.sum(axis=1))
    return SuffStats(ct, nk, s1, s2, ref, ref2, loglik=0.0,
                     weight_sum=resp_w.sum(), n_rows=X.shape[0])


def _assert_stats_equal(a, b, rtol):
    for name in ("nk", "s1", "s2"):
        assert_rel(getattr(a, name), getattr(b, name), rtol, name)
    assert a.weight_sum == pytest.approx(b.weight_sum, rel=rtol)
    assert a.loglik == pytest.approx(b.loglik, rel=rtol, abs=1e-300)
    assert a.n_rows == b.n_rows


# ---------------------------------------------------------------------------
# merge
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_merge_same_reference_equals_concatenated(ct):
    X, p, resp_w, w = _setup(ct)
    params = to_params(p)
    a = _estep.compute_stats(X[:400], params, w[:400])
    b = _estep.compute_stats(X[400:], params, w[400:])
    whole = _estep.compute_stats(X, params, w)
    merged = a.merge(b)
    _assert_stats_equal(merged, whole, 1e-12)
    np.testing.assert_array_equal(merged.ref, a.ref)
    # the operands are not modified
    again = _estep.compute_stats(X[:400], params, w[:400])
    np.testing.assert_array_equal(a.s2, again.s2)


@pytest.mark.parametrize("offset", [0.0, 1e4])
@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_merge_different_references_recenters(ct, offset):
    X, p, resp_w, w = _setup(ct, seed=1, offset=offset)
    rng = np.random.default_rng(5)
    ref_a = offset + rng.normal(size=(K, D))
    ref_b = offset + rng.normal(size=(K, D)) * 2
    ref2_a = offset + rng.normal(size=D)
    ref2_b = offset + rng.normal(size=D)
    a = _stats(X[:300], resp_w[:300], ref_a, ct, ref2_a)
    b = _stats(X[300:], resp_w[300:], ref_b, ct, ref2_b)
    merged = a.merge(b)
    np.testing.assert_array_equal(merged.ref, ref_a)
    if ct == "tied":
        np.testing.assert_array_equal(merged.ref2, ref2_a)
    want = _stats(X, resp_w, ref_a, ct, ref2_a)
    _assert_stats_equal(merged, want, 1e-10)
    # and the M-step of the merged statistics is the reference M-step
    got = merged.m_step(1e-6)
    ref = reference.m_step(X, resp_w, 1e-6, ct)
    assert_rel(got.means - offset, ref["means"] - offset, 1e-8, "means")
    assert_rel(got.covariances, ref["covariances"], 1e-8, "covariances")


@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_merge_is_associative_over_many_parts(ct):
    X, p, resp_w, w = _setup(ct, seed=2)
    rng = np.random.default_rng(6)
    cuts = [0, 50, 51, 300, 700, 900]
    parts = [_stats(X[lo:hi], resp_w[lo:hi], rng.normal(size=(K, D)), ct,
                    rng.normal(size=D)) for lo, hi in zip(cuts[:-1], cuts[1:])]
    left = parts[0]
    for q in parts[1:]:
        left = left.merge(q)
    right = parts[-1]
    for q in parts[-2::-1]:
        right = q.merge(right)
    _assert_stats_equal(left, right.recenter(left.ref, left.ref2), 1e-10)
    _assert_stats_equal(left, _stats(X, resp_w, parts[0].ref, ct, parts[0].ref2), 1e-10)


def test_merge_incompatible_raises():
    X, p, resp_w, _ = _setup("full")
    a = _stats(X, resp_w, p["means"], "full", None)
    b = _stats(X, resp_w, p["means"], "diag", None)
    with pytest.raises(ValueError, match="Cannot merge statistics of different models"):
        a.merge(b)
    c = _stats(X, resp_w[:, :2], p["means"][:2], "full", None)
    with pytest.raises(ValueError, match="Cannot merge"):
        a.merge(c)


@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_merge_with_zeros_is_identity(ct):
    X, p, resp_w, _ = _setup(ct, seed=3)
    a = _stats(X, resp_w, p["means"], ct, p["weights"] @ p["means"])
    z = SuffStats.zeros(ct, np.zeros((K, D)), np.ones(D))
    assert z.n_rows == 0 and z.weight_sum == 0.0 and np.all(z.nk == 0)
    _assert_stats_equal(z.merge(a).recenter(a.ref, a.ref2), a, 1e-12)
    _assert_stats_equal(a.merge(z), a, 0.0)


# ---------------------------------------------------------------------------
# scale, recenter, copy
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_scale(ct):
    X, p, resp_w, _ = _setup(ct, seed=4)
    a = _stats(X, resp_w, p["means"], ct, np.zeros(D))
    a.loglik = -123.5
    s = a.scale(0.25)
    for name in ("nk", "s1", "s2"):
        np.testing.assert_array_equal(getattr(s, name), getattr(a, name) * 0.25)
    assert s.loglik == -123.5 * 0.25
    assert s.weight_sum == a.weight_sum * 0.25
    assert s.n_rows == a.n_rows
    # scaling every sum leaves the M-step unchanged (up to the 10 eps)
    ga, gs = a.m_step(1e-6), s.m_step(1e-6)
    assert_rel(gs.means, ga.means, 1e-12, "means")
    assert_rel(gs.covariances, ga.covariances, 1e-12, "covariances")
    # weighting data by 2 == scaling its statistics by 2
    twice = _stats(X, 2 * resp_w, p["means"], ct, np.zeros(D))
    _assert_stats_equal(a.scale(2.0), SuffStats(ct, twice.nk, twice.s1, twice.s2, twice.ref,
                                                twice.ref2, -247.0, twice.weight_sum,
                                                twice.n_rows), 1e-14)


@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_recenter_round_trip(ct):
    X, p, resp_w, _ = _setup(ct, seed=5)
    a = _stats(X, resp_w, p["means"], ct, np.full(D, 0.5))
    rng = np.random.default_rng(0)
    new_ref, new_ref2 = rng.normal(size=(K, D)) * 5, rng.normal(size=D) * 5
    b = a.recenter(new_ref, new_ref2)
    np.testing.assert_array_equal(b.ref, new_ref)
    # recentred statistics are the statistics around the new reference
    want = _stats(X, resp_w, new_ref, ct, new_ref2 if ct == "tied" else a.ref2)
    for name in ("nk", "s1", "s2"):
        assert_rel(getattr(b, name), getattr(want, name), 1e-10, name)
    back = b.recenter(a.ref, a.ref2)
    for name in ("nk", "s1", "s2"):
        assert_rel(getattr(back, name), getattr(a, name), 1e-10, name)
    # the M-step does not depend on the reference
    ga, gb = a.m_step(1e-6), b.m_step(1e-6)
    for name in ("weights", "means", "covariances", "precisions_cholesky"):
        assert_rel(getattr(gb, name), getattr(ga, name), 1e-9, name)


def test_copy_is_independent():
    X, p, resp_w, _ = _setup("full")
    a = _stats(X, resp_w, p["means"], "full", None)
    c = a.copy()
    c.s2[0, 0, 0] += 1.0
    c.nk[0] = -1
    assert a.s2[0, 0, 0] != c.s2[0, 0, 0] and a.nk[0] != -1


# ---------------------------------------------------------------------------
# M-step
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("reg_covar", [0.0, 1e-6, 0.1])
@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_m_step_matches_reference(ct, reg_covar):
    X, p, resp_w, _ = _setup(ct, seed=6)
    rng = np.random.default_rng(1)
    a = _stats(X, resp_w, rng.normal(size=(K, D)), ct, rng.normal(size=D))
    got = a.m_step(reg_covar)
    want = reference.m_step(X, resp_w, reg_covar, ct)
    assert isinstance(got, GaussianParams)
    assert got.covariance_type == ct
    for name in ("weights", "means", "covariances", "precisions_cholesky"):
        assert_rel(getattr(got, name), want[name], 1e-10, name)
    assert got.weights.sum() == pytest.approx(1.0, abs=1e-15)
    shapes = {"full": (K, D, D), "tied": (D, D), "diag": (K, D), "spherical": (K,)}
    assert got.covariances.shape == shapes[ct]
    assert got.precisions_cholesky.shape == shapes[ct]


@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_m_step_matches_sklearn_estimates(ct):
    from sklearn.mixture._gaussian_mixture import _estimate_gaussian_parameters

    X, p, _, _ = _setup(ct, seed=7)
    resp = np.random.default_rng(3).dirichlet(np.ones(K), size=X.shape[0])
    a = _stats(X, resp, p["means"], ct, X.mean(axis=0))
    got = a.m_step(1e-6)
    nk, means, covs = _estimate_gaussian_parameters(X, resp, 1e-6, ct)
    assert_rel(got.weights, nk / nk.sum(), 1e-12, "weights")
    assert_rel(got.means, means, 1e-12, "means")
    assert_rel(got.covariances, covs, 1e-10, "covariances")


def test_m_step_empty_component_is_finite():
    X, p, resp_w, _ = _setup("diag", seed=8)
    resp_w[:, 1] = 0.0
    for ct in COVARIANCE_TYPES:
        a = _stats(X, resp_w, p["means"], ct, np.zeros(D))
        got = a.m_step(1e-3)
        for name in ("weights", "means", "covariances", "precisions_cholesky"):
            assert np.all(np.isfinite(getattr(got, name))), (ct, name)
        np.testing.assert_array_equal(got.means[1], p["means"][1])


# ---------------------------------------------------------------------------
# precision Cholesky
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_precision_cholesky_matches_reference(ct):
    p = reference.random_params(ct, K, D, np.random.default_rng(9))
    got = precision_cholesky(p["covariances"], ct)
    assert_rel(got, p["precisions_cholesky"], 1e-12, ct)
    if ct in ("full", "tied"):
        mats = got if ct == "full" else got[None]
        covs = p["covariances"] if ct == "full" else p["covariances"][None]
        for P, C in zip(mats, covs):
            np.testing.assert_array_equal(P, np.triu(P))
            np.testing.assert_allclose(P @ P.T @ C, np.eye(D), atol=1e-10)
    gp = to_params(p)
    back = reference.covariances_from_precisions_cholesky(gp.precisions_cholesky, ct)
    assert_rel(back, p["covariances"], 1e-10, "round trip")


@pytest.mark.parametrize("ct, cov, detail", [
    ("full", np.stack([np.eye(2), np.array([[1.0, 2.0], [2.0, 1.0]])]),
     "component 1's covariance is not positive definite"),
    ("full", np.stack([np.eye(2), np.zeros((2, 2))]),
     "component 1's covariance is not positive definite"),
    ("full", np.stack([np.full((2, 2), np.nan), np.eye(2)]),
     "component 0 has a non-finite covariance"),
    ("tied", np.array([[1.0, 2.0], [2.0, 1.0]]),
     "the tied covariance is not positive definite"),
    ("diag", np.array([[1.0, 1.0], [1.0, 0.0]]), "component 1 has variance"),
    ("diag", np.array([[1.0, -1.0], [1.0, 1.0]]), "component 0 has variance"),
    ("spherical", np.array([1.0, 2.0, np.nan]), "component 2 has variance"),
    ("spherical", np.array([1.0, np.inf]), "component 1 has variance"),
])
def test_precision_cholesky_ill_defined(ct, cov, detail):
    with pytest.raises(ValueError, match="ill-defined empirical covariance") as info:
        precision_cholesky(cov, ct)
    assert detail in str(info.value)
    assert "increase reg_covar" in str(info.value)


@pytest.mark.parametrize("ct, cov, value", [
    ("diag", np.array([[1.0, 1.0], [1.0, 0.0]]), "has variance 0.0)"),
    ("spherical", np.array([1.0, -2.0]), "has variance -2.0)"),
])
def test_ill_defined_message_shows_plain_value(ct, cov, value):
    with pytest.raises(ValueError) as info:
        precision_cholesky(cov, ct)
    assert value in str(info.value)


def test_m_step_collapsed_component_raises():
    # all the weight of component 0 on one point: zero covariance without reg_covar
    X = np.vstack([np.ones((5, 2)), np.random.default_rng(0).normal(size=(20, 2))])
    resp = np.zeros((25, 2))
    resp[:5, 0] = 1
    resp[5:, 1] = 1
    for ct in ("full", "diag", "spherical"):
        a = _stats(X, resp, np.zeros((2, 2)), ct, np.zeros(2))
        if ct == "full":
            with pytest.raises(ValueError, match="ill-defined empirical covariance"):
                a.m_step(0.0)
        else:
            # diag/spherical keep scikit-learn's positive bias
            # nk 10eps xbar^2 / (nk + 10 eps)^2 (here xbar = 1, nk = 5)
            eps10 = 10 * np.finfo(np.float64).eps
            cov = a.m_step(0.0).covariances[0]
            # (plus the rounding of the centred sum, a few eps * x^2)
            np.testing.assert_allclose(cov, 5 * eps10 / (5 + eps10) ** 2, rtol=0,
                                       atol=4 * np.finfo(np.float64).eps)
            assert np.all(cov > 0)
        assert np.all(np.isfinite(a.m_step(1e-6).precisions_cholesky))


# ---------------------------------------------------------------------------
# GaussianParams
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_gaussian_params_precisions_and_log_norm(ct):
    p = reference.random_params(ct, K, D, np.random.default_rng(10))
    gp = to_params(p)
    assert gp.n_components == K and gp.n_features == D
    covs = reference.full_covariances(p["covariances"], ct, K, D)
    prec = gp.precisions()
    full_prec = reference.full_covariances(prec, ct, K, D)
    for k in range(K):
        np.testing.assert_allclose(full_prec[k] @ covs[k], np.eye(D), atol=1e-10)
        sign, logdet = np.linalg.slogdet(covs[k])
        want = np.log(p["weights"][k]) - 0.5 * logdet - 0.5 * D * np.log(2 * np.pi)
        assert gp.log_norm()[k] == pytest.approx(want, rel=1e-12)


# ---------------------------------------------------------------------------
# Sample weights are relative: scaling all of them changes nothing
# ---------------------------------------------------------------------------

WEIGHT_SCALES = (1e-200, 1e-17, 1.0, 1e17, 1e200)


# squares of first moments must not underflow or overflow (fits divide the
# weights by their maximum, so statistics stay of the order of the row count)
@pytest.mark.parametrize("c", (1e-100, 1e-17, 1e-3, 1.0, 1e17, 1e100))
@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_m_step_invariant_under_scale(ct, c):
    X, p, resp_w, _ = _setup(ct, seed=11)
    a = _stats(X, resp_w, np.asarray(p["means"]), ct, np.zeros(D))
    want = a.m_step(1e-6)
    got = a.scale(c).m_step(1e-6)
    for name in ("weights", "means", "covariances", "precisions_cholesky"):
        assert_rel(getattr(got, name), getattr(want, name), 1e-13, name)


def test_m_step_eps_is_sklearns_for_unit_weights():
    from fastem._suffstats import _EPS10

    a = SuffStats("diag", [3.0, 0.0], np.zeros((2, 1)), [[2.0], [0.0]], np.zeros((2, 1)),
                  weight_sum=3.0, n_rows=3)
    assert a._eps10() == _EPS10 == 10 * np.finfo(np.float64).eps
    # an empty component keeps the weight scikit-learn gives it: 10 eps / (n + 20 eps)
    assert a.m_step(0.1).weights[1] == _EPS10 / (3.0 + 2 * _EPS10)
    assert a.scale(1e-17)._eps10() == pytest.approx(1e-17 * _EPS10, rel=1e-15)


def _weight_data():
    rng = np.random.default_rng(21)
    centers = np.array([[0.0, 0.0, 0.0], [5.0, 1.0, -2.0], [-3.0, 6.0, 3.0]])
    X = centers[rng.integers(0, 3, size=3000)] + rng.normal(size=(3000, 3))
    w = rng.uniform(0.2, 3.0, size=3000)
    w[::7] = 0.0
    return X, w


def _assert_same_model(a, b, rtol=1e-12):
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert_rel(getattr(a, name), getattr(b, name), rtol, name)
    assert a.lower_bound_ == pytest.approx(b.lower_bound_, rel=rtol)
    assert a.n_iter_ == b.n_iter_


def _gm(ct, **kw):
    from fastem import GaussianMixture

    kw.setdefault("max_iter", 8)
    return GaussianMixture(3, covariance_type=ct, random_state=0, tol=0, **kw)


@pytest.fixture(scope="module")
def weight_data():
    return _weight_data()


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_fit_invariant_to_scaling_sample_weight(weight_data, ct):
    X, w = weight_data
    ref = _gm(ct).fit(X, sample_weight=w)
    for c in WEIGHT_SCALES:
        _assert_same_model(_gm(ct).fit(X, sample_weight=c * w), ref)
    # equal weights of any size: the unweighted model
    plain = _gm(ct).fit(X)
    for c in WEIGHT_SCALES + (1e-300, 1e300, np.finfo(np.float64).max):
        _assert_same_model(_gm(ct).fit(X, sample_weight=np.full(len(X), c)), plain)
    # unit weights: bit for bit the unweighted fit
    ones = _gm(ct).fit(X, sample_weight=np.ones(len(X)))
    for name in ("weights_", "means_", "covariances_", "lower_bound_"):
        np.testing.assert_array_equal(getattr(ones, name), getattr(plain, name))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_streamed_fit_invariant_to_scaling_sample_weight(weight_data, ct, tmp_path):
    X, w = weight_data
    path = tmp_path / "x.npy"
    np.save(path, X)
    ref = _gm(ct).fit(X, sample_weight=w)
    for c in WEIGHT_SCALES:
        _assert_same_model(_gm(ct, chunk_size=700).fit(str(path), sample_weight=c * w), ref,
                           1e-10)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_score_and_bic_with_scaled_weights(weight_data):
    X, w = weight_data
    gm = _gm("diag", max_iter=3).fit(X)
    want = gm.score(X, sample_weight=w)
    for c in WEIGHT_SCALES + (1e300,):
        assert gm.score(X, sample_weight=c * w) == pytest.approx(want, rel=1e-13)
    # bic/aic count the weights as they are given (frequency weights)
    total = want * w.sum()
    assert gm.aic(X, sample_weight=2 * w) == pytest.approx(
        -2 * 2 * total + 2 * gm._n_parameters(), rel=1e-12)
    assert gm.bic(X, sample_weight=2 * w) == pytest.approx(
        -2 * 2 * total + gm._n_parameters() * np.log(2 * w.sum()), rel=1e-12)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("ct", ["full", "spherical"])
def test_minibatch_invariant_to_scaling_sample_weight(weight_data, ct):
    from fastem import MiniBatchGaussianMixture

    X, w = weight_data

    def fit(sw):
        return MiniBatchGaussianMixture(3, covariance_type=ct, batch_size=500,
                                        random_state=0, max_iter=2).fit(X, sample_weight=sw)

    ref = fit(w)
    for c in WEIGHT_SCALES:
        got = fit(c * w)
        for name in ("weights_", "means_", "covariances_"):
            assert_rel(getattr(got, name), getattr(ref, name), 1e-12, name)


@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
@pytest.mark.parametrize("weighted", [False, True])
def test_hard_assignment_stats_match_reference(ct, weighted):
    """Every row given wholly to its nearest centre: the moments equal those
    of one-hot responsibilities from a brute-force nearest centre, over
    several tasks (rows grouped by label inside each task), with a label
    that no row takes."""
    from fastem._data import ArrayData

    rng = np.random.default_rng(7)
    n = 3 * _estep.task_rows(D) + 123
    centers = rng.normal(size=(5, D)) * 4
    centers[4] = 1e3  # far from every row: no row is assigned to it
    X = centers[rng.integers(0, 4, n)] + rng.normal(size=(n, D))
    w = rng.uniform(0.2, 2.0, size=n) if weighted else None
    data = ArrayData(X, sample_weight=w)
    got = data.hard_assignment_stats(centers, ct)
    labels = np.argmin(((X[:, None, :] - centers[None]) ** 2).sum(axis=2), axis=1)
    resp_w = np.zeros((n, 5))
    resp_w[np.arange(n), labels] = 1.0 if w is None else w
    want = _stats(X, resp_w, got.ref, ct, got.ref2)
    np.testing.assert_array_equal(got.nk[4], 0.0)
    np.testing.assert_allclose(got.nk, want.nk, rtol=1e-12)
    _, mu_g, cov_g = got.moments(1e-6)
    _, mu_w, cov_w = want.moments(1e-6)
    np.testing.assert_allclose(mu_g[:4], mu_w[:4], rtol=1e-10, atol=1e-10)
    # the moments are sums of products around the references: their rounding
    # is eps times the largest squared distance of a row from its reference
    # (tied: from ref2, the mean of the centres, pulled far off by centre 4)
    scale = np.max(((X - (got.ref2 if ct == "tied" else got.ref[labels])) ** 2).sum(axis=1))
    np.testing.assert_allclose(cov_g, cov_w, rtol=0, atol=100 * np.finfo(float).eps * scale)


@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_hard_assignment_stats_bitwise_over_chunks_and_unit_weights(ct):
    """Rows added in chunks of whole tasks give bitwise the statistics of one
    call, and unit weights bitwise those of weights of ones (the grouped
    sums of add_hard are formed per task, in task order)."""
    rng = np.random.default_rng(11)
    size = _estep.task_rows(D)
    n = 5 * size + 77
    centers = rng.normal(size=(K, D)) * 3
    X = centers[rng.integers(0, K, n)] + rng.normal(size=(n, D))

    def stats(chunks, weights):
        acc = _initstats.hard_assignment_accumulator(centers, ct, np.float64)
        for lo, hi in zip(chunks[:-1], chunks[1:]):
            _initstats.add_hard_assignment(acc, X[lo:hi],
                                       None if weights is None else weights[lo:hi])
        return acc.result()

    whole = stats([0, n], None)
    for other in (stats([0, size, 3 * size, n], None), stats([0, n], np.ones(n)),
                  stats([0, 2 * size, n], np.ones(n))):
        for name in ("nk", "s1", "s2"):
            np.testing.assert_array_equal(getattr(other, name), getattr(whole, name), name)
    # and the sums are right: a non-trivial weighting changes them
    halves = stats([0, n], np.full(n, 0.5))
    np.testing.assert_allclose(halves.nk, whole.nk / 2, rtol=1e-15)


@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_hard_pass_with_given_labels_matches_numpy(ct, dtype):
    """The hard_pass kernel with labels given (the start with missing values)
    against the statistics written out in NumPy: float32 rows are widened to
    float64 before any sum, so the tolerance is float64's."""
    rng = np.random.default_rng(5)
    n = 2 * _estep.task_rows(D) + 301
    centers = rng.normal(size=(K, D)) * 3
    X = (centers[rng.integers(0, K, n)] + rng.normal(size=(n, D))).astype(dtype)
    w = rng.uniform(0.1, 3.0, size=n)
    labels = rng.integers(0, K, n)  # not the nearest centres: taken as given
    labels[labels == 2] = 0  # and a component without rows
    acc = _initstats.hard_assignment_accumulator(centers, ct, dtype)
    acc.add_hard(X, labels, w)
    got = acc.result()
    x = X.astype(np.float64)
    ref = got.ref
    np.testing.assert_allclose(got.nk, np.bincount(labels, weights=w, minlength=K),
                               rtol=1e-13)
    assert got.nk[2] == 0.0
    for k in range(K):
        diff = x[labels == k] - ref[k]
        wk = w[labels == k]
        np.testing.assert_allclose(got.s1[k], wk @ diff, rtol=1e-12, atol=1e-9)
        if ct == "full":
            np.testing.assert_allclose(got.s2[k], (diff * wk[:, None]).T @ diff, rtol=1e-12,
                                       atol=1e-9)
        elif ct in ("diag", "spherical"):
            np.testing.assert_allclose(got.s2[k], wk @ (diff * diff), rtol=1e-12, atol=1e-9)
    if ct == "tied":
        diff = x - got.ref2
        np.testing.assert_allclose(got.s2, (diff * w[:, None]).T @ diff, rtol=1e-12, atol=1e-9)
    with pytest.raises(ValueError, match="labels must be"):
        acc.add_hard(X, np.full(n, K), w)


@pytest.mark.parametrize("shape", [(1, 1), (1, 3), (4, 1), (3, 7)])
@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_hard_pass_odd_shapes_match_numpy(ct, shape):
    """One component, one feature, an odd number of features (the distance
    loop's tail): the nearest centres and the moments against NumPy, and the
    sum of weights bitwise the same over chunkings into whole tasks."""
    k, d = shape
    rng = np.random.default_rng(17)
    size = _estep.task_rows(d)
    n = 2 * size + 5
    centers = rng.normal(size=(k, d)) * 4
    X = centers[rng.integers(0, k, n)] + rng.normal(size=(n, d))
    w = rng.uniform(0.2, 2.0, size=n)
    acc = _initstats.hard_assignment_accumulator(centers, ct, np.float64)
    _initstats.add_hard_assignment(acc, X, w)
    got = acc.result()
    labels = np.argmin(((X[:, None, :] - centers[None]) ** 2).sum(axis=2), axis=1)
    np.testing.assert_allclose(got.nk, np.bincount(labels, weights=w, minlength=k),
                               rtol=1e-13)
    for j in range(k):
        diff = X[labels == j] - got.ref[j]
        np.testing.assert_allclose(got.s1[j], w[labels == j] @ diff, rtol=1e-12, atol=1e-9)
    chunked = _initstats.hard_assignment_accumulator(centers, ct, np.float64)
    for lo, hi in ((0, size), (size, n)):
        _initstats.add_hard_assignment(chunked, X[lo:hi], w[lo:hi])
    assert chunked.weight_sum == acc.weight_sum
    np.testing.assert_array_equal(chunked.s2, acc.s2)


def test_hard_pass_refuses_labels_it_cannot_index():
    """The kernel itself checks given labels and the tied accumulator's
    shape before writing anything (its callers check too)."""
    from fastem import _kernels

    X = np.zeros((10, 2))
    out = (np.zeros(3), np.zeros((3, 2)), np.zeros((3, 2, 2)), np.zeros((0, 2)))
    C = np.zeros((3, 2))
    for bad in (3, -1):
        labels = np.zeros(10, dtype=np.int64)
        labels[4] = bad
        with pytest.raises(ValueError, match="label"):
            _kernels.hard_pass(X, np.empty(0), C, C, np.zeros(2), labels, 1, 0, 4096, *out)
    assert not any(a.any() for a in out)
    with pytest.raises(ValueError, match="tied"):
        _kernels.hard_pass(X, np.empty(0), C, C, np.zeros(2), np.zeros(10, dtype=np.int64),
                           0, 1, 4096, out[0], out[1], np.zeros((0, 2, 2)), out[3])


def test_float32_start_with_missing_values_uses_float32_kernel(monkeypatch):
    """Rows with NaN are filled from their centre and go through the same
    (float32) kernel variant as the other chunks of a float32 fit."""
    from fastem import _kernels

    rng = np.random.default_rng(3)
    X = rng.normal(size=(3000, 3)).astype(np.float32)
    X[::7, 1] = np.nan
    centers = rng.normal(size=(2, 3))
    acc = _initstats.hard_assignment_accumulator(centers, "full", np.float32)
    asked = []
    real = _kernels.hard_pass.variant

    def variant(dtype, readonly, tag=None):
        asked.append(np.dtype(dtype))
        return real(dtype, readonly, tag)

    monkeypatch.setattr(_kernels.hard_pass, "variant", variant)
    _initstats.add_hard_assignment(acc, X)
    assert asked == [np.dtype(np.float32)]
    assert acc.result().nk.sum() == 3000
