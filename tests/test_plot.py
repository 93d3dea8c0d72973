"""Tests for fastem.plot: the artists each helper draws, and its errors."""

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402
from matplotlib.patches import Ellipse  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.mixture import GaussianMixture  # noqa: E402

from fastem import plot as fplot  # noqa: E402

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
OLD_FAITHFUL = (
    Path(__file__).resolve().parents[1] / "fastem" / "datasets" / "old_faithful.csv"
)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def make_blobs(n_features, n_per_component=120, seed=0):
    """Three well separated, correlated Gaussian blobs."""
    rng = np.random.default_rng(seed)
    centres = 6.0 * rng.normal(size=(3, n_features))
    blocks = []
    for centre in centres:
        A = rng.normal(size=(n_features, n_features)) * 0.6 + np.eye(n_features)
        blocks.append(centre + rng.normal(size=(n_per_component, n_features)) @ A.T)
    return np.vstack(blocks)


@pytest.fixture(scope="module")
def X2():
    return make_blobs(2)


@pytest.fixture(scope="module")
def X3():
    return make_blobs(3, seed=1)


@pytest.fixture(scope="module")
def models2(X2):
    return {
        cov: GaussianMixture(3, covariance_type=cov, random_state=0).fit(X2)
        for cov in COVARIANCE_TYPES
    }


@pytest.fixture(scope="module")
def model3(X3):
    return GaussianMixture(3, random_state=0).fit(X3)


def ellipses(ax):
    return [p for p in ax.patches if isinstance(p, Ellipse)]


def ellipse_covariance(ellipse, n_std):
    """Covariance that an Ellipse drawn at ``n_std`` standard deviations encodes."""
    theta = np.radians(ellipse.angle)
    R = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    half_axes = np.array([ellipse.width, ellipse.height]) / (2 * n_std)
    D = np.diag(half_axes**2)
    return R @ D @ R.T


# --------------------------------------------------------------------------
# _full_covariances
# --------------------------------------------------------------------------


@pytest.mark.parametrize("cov_type", COVARIANCE_TYPES)
def test_full_covariances_expands_every_type(models2, cov_type):
    model = models2[cov_type]
    full = fplot._full_covariances(model)
    assert full.shape == (3, 2, 2)
    cov = model.covariances_
    for k in range(3):
        expected = {
            "full": lambda: cov[k],
            "tied": lambda: cov,
            "diag": lambda: np.diag(cov[k]),
            "spherical": lambda: cov[k] * np.eye(2),
        }[cov_type]()
        np.testing.assert_allclose(full[k], expected)


def test_full_covariances_rejects_bad_shapes():
    model = SimpleNamespace(
        means_=np.zeros((2, 3)), covariances_=np.ones((2, 2)), covariance_type="diag"
    )
    with pytest.raises(ValueError, match=r"covariances_ has shape \(2, 2\).*\(2, 3\)"):
        fplot._full_covariances(model)
    model.covariance_type = "banana"
    with pytest.raises(ValueError, match="Unknown covariance_type='banana'"):
        fplot._full_covariances(model)


# --------------------------------------------------------------------------
# plot_ellipses
# --------------------------------------------------------------------------


@pytest.mark.parametrize("cov_type", COVARIANCE_TYPES)
def test_ellipses_one_patch_per_component_and_level(models2, X2, cov_type):
    ax = fplot.plot_ellipses(models2[cov_type], X2)
    assert len(ellipses(ax)) == 3 * 3
    # data scatter + mean markers
    assert len(ax.collections) == 2
    assert ax.collections[0].get_offsets().shape == (X2.shape[0], 2)


def test_ellipses_without_data_and_custom_levels(models2):
    ax = fplot.plot_ellipses(models2["full"], n_std=2.0)
    assert len(ellipses(ax)) == 3
    assert len(ax.collections) == 1  # only the means


def test_ellipse_geometry_matches_covariance(models2):
    model = models2["full"]
    ax = fplot.plot_ellipses(model, n_std=(1, 2, 3))
    patches = ellipses(ax)[:3]  # component 0, levels 1, 2, 3
    cov = model.covariances_[0]
    eigvals = np.linalg.eigvalsh(cov)
    for n_std, ellipse in zip((1, 2, 3), patches):
        np.testing.assert_allclose(ellipse.center, model.means_[0])
        np.testing.assert_allclose(
            sorted([ellipse.width, ellipse.height]), 2 * n_std * np.sqrt(eigvals)
        )
        np.testing.assert_allclose(ellipse_covariance(ellipse, n_std), cov, atol=1e-10)


def test_ellipses_feature_pair_is_the_marginal(model3, X3):
    ax = fplot.plot_ellipses(model3, X3, features=(2, 0), n_std=(1,))
    idx = [2, 0]
    for k, ellipse in enumerate(ellipses(ax)):
        np.testing.assert_allclose(ellipse.center, model3.means_[k, idx])
        sub = model3.covariances_[k][np.ix_(idx, idx)]
        np.testing.assert_allclose(ellipse_covariance(ellipse, 1), sub, atol=1e-10)
    np.testing.assert_allclose(ax.collections[0].get_offsets(), X3[:, idx])
    assert ax.get_xlabel() == "feature 2"
    assert ax.get_ylabel() == "feature 0"


def test_ellipses_pca_projection_d5():
    X = make_blobs(5, seed=2)
    model = GaussianMixture(3, covariance_type="diag", random_state=0).fit(X)
    ax = fplot.plot_ellipses(model, X, projection="pca")
    patches = ellipses(ax)
    assert len(patches) == 9
    assert ax.get_xlabel().startswith("PC1 (")
    assert ax.get_ylabel().startswith("PC2 (")

    eigvals, eigvecs = np.linalg.eigh(np.cov(X, rowvar=False))
    W = eigvecs[:, ::-1][:, :2]
    centres = np.array([p.center for p in patches[::3]])
    projected = model.means_ @ W
    # Principal axes are defined up to sign: compare per-axis distances.
    np.testing.assert_allclose(
        np.abs(centres[:, None] - centres[None]),
        np.abs(projected[:, None] - projected[None]),
        atol=1e-8,
    )
    # The projected covariance W^T S W has the same eigenvalues whatever the signs.
    S = fplot._full_covariances(model)[0]
    expected = np.linalg.eigvalsh(W.T @ S @ W)
    p = patches[0]
    np.testing.assert_allclose(sorted([p.width, p.height]), 2 * np.sqrt(expected))
    # Data points lie in the same plane as the means.
    np.testing.assert_allclose(
        np.abs(ax.collections[0].get_offsets()[:, 0] - centres[0, 0]),
        np.abs(X @ W[:, 0] - projected[0, 0]),
        atol=1e-8,
    )

    ax = fplot.plot_ellipses(model, projection="pca")  # mixture's own covariance
    assert len(ellipses(ax)) == 9


def test_ellipses_subsample_colours_and_labels(models2, X2):
    ax = fplot.plot_ellipses(
        models2["full"],
        X2,
        max_points=50,
        colors=["red", "green", "blue"],
        feature_names=["length", "width"],
        scatter_kws={"s": 3},
    )
    assert ax.collections[0].get_offsets().shape == (50, 2)
    assert ax.get_xlabel() == "length"
    assert ax.get_ylabel() == "width"
    edges = [to_rgb(p.get_edgecolor()) for p in ellipses(ax)]
    assert edges == [to_rgb(c) for c in ("red", "green", "blue") for _ in range(3)]


def test_ellipses_uses_given_axes(models2):
    _, ax = plt.subplots()
    assert fplot.plot_ellipses(models2["tied"], ax=ax) is ax


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"features": (0, 5)}, r"features=\(0, 5\) is out of range for 3 features"),
        ({"features": (1, 1)}, "names the same feature twice"),
        ({"features": (0,)}, "features must be a pair"),
        ({"projection": "tsne"}, "projection must be None or 'pca', got 'tsne'"),
        ({"n_std": (1, -2)}, "n_std must be a positive number"),
        ({"colors": ["red"]}, "colors has 1 entries but the model has 3 components"),
        ({"feature_names": ["a"]}, "feature_names has 1 entries, expected 3"),
        ({"max_points": 0}, "max_points must be >= 1"),
    ],
)
def test_ellipses_bad_arguments(model3, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fplot.plot_ellipses(model3, **kwargs)


def test_ellipses_bad_data_and_models(model3, X2):
    with pytest.raises(ValueError, match="X has 2 features, but the model was fitted"):
        fplot.plot_ellipses(model3, X2)
    one_d = GaussianMixture(2, random_state=0).fit(X2[:, :1])
    with pytest.raises(ValueError, match="plot_density"):
        fplot.plot_ellipses(one_d)
    with pytest.raises(NotFittedError, match="fit the model"):
        fplot.plot_ellipses(GaussianMixture(2))


# --------------------------------------------------------------------------
# plot_density
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model1():
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(-2, 0.5, 200), rng.normal(3, 1.5, 300)])
    return GaussianMixture(2, random_state=0).fit(x[:, None]), x


def test_density_lines_and_normalisation(model1):
    model, _ = model1
    ax = fplot.plot_density(model, n_points=4000)
    assert len(ax.lines) == 2 + 1
    *components, mixture = ax.lines
    grid, total = mixture.get_data()
    assert np.trapezoid(total, grid) == pytest.approx(1.0, abs=1e-4)
    np.testing.assert_allclose(sum(line.get_ydata() for line in components), total)
    for k, line in enumerate(components):
        weight = np.trapezoid(line.get_ydata(), line.get_xdata())
        assert weight == pytest.approx(model.weights_[k], abs=1e-4)


def test_density_with_histogram_and_1d_data(model1):
    model, x = model1
    ax = fplot.plot_density(model, x, bins=20)  # 1-D X is fine for a 1-D model
    assert len(ax.lines) == 3
    assert len(ax.patches) == 20
    heights = np.array([p.get_height() for p in ax.patches])
    widths = np.array([p.get_width() for p in ax.patches])
    assert (heights * widths).sum() == pytest.approx(1.0)
    grid = ax.lines[-1].get_xdata()
    assert grid[0] < x.min() and grid[-1] > x.max()


def test_density_old_faithful():
    data = np.loadtxt(OLD_FAITHFUL, delimiter=",", skiprows=1)
    model = GaussianMixture(2, random_state=0).fit(data)
    names = ["eruptions", "waiting"]
    ax = fplot.plot_density(model, data, feature=0, feature_names=names)
    assert len(ax.lines) == 3
    assert ax.get_xlabel() == "eruptions"
    # Two eruption modes, near 2 and 4.4 minutes.
    assert sorted(np.round(model.means_[:, 0])) == [2.0, 4.0]


def test_density_marginal_of_multivariate(model3, X3):
    ax = fplot.plot_density(model3, X3, feature=2, n_points=50)
    k_line = ax.lines[0]
    x, y = k_line.get_data()
    mu, var = model3.means_[0, 2], model3.covariances_[0, 2, 2]
    pdf = np.exp(-0.5 * (x - mu) ** 2 / var) / np.sqrt(2 * np.pi * var)
    expected = model3.weights_[0] * pdf
    np.testing.assert_allclose(y, expected)


def test_density_errors(model3, model1):
    with pytest.raises(ValueError, match="feature=3 is out of range for 3 features"):
        fplot.plot_density(model3, feature=3)
    with pytest.raises(ValueError, match="n_points must be an integer >= 2"):
        fplot.plot_density(model3, n_points=1)
    with pytest.raises(ValueError, match=r"Expected X of shape \(n_samples, n_"):
        fplot.plot_density(model3, np.zeros(5))


# --------------------------------------------------------------------------
# plot_loglik
# --------------------------------------------------------------------------


def test_loglik_line(models2):
    model = models2["full"]
    ax = fplot.plot_loglik(model)
    assert len(ax.lines) == 1
    x, y = ax.lines[0].get_data()
    np.testing.assert_array_equal(y, model.lower_bounds_)
    np.testing.assert_array_equal(x, np.arange(1, len(model.lower_bounds_) + 1))
    assert ax.get_ylabel() == "mean log-likelihood per sample"


def test_loglik_needs_lower_bounds():
    with pytest.raises(ValueError, match="has no lower_bounds_"):
        fplot.plot_loglik(SimpleNamespace())
    with pytest.raises(ValueError, match="lower_bounds_ is empty"):
        fplot.plot_loglik(SimpleNamespace(lower_bounds_=[]))


# --------------------------------------------------------------------------
# plot_selection
# --------------------------------------------------------------------------


def selection_table():
    rows = {"n_components": [], "covariance_type": [], "bic": [], "heldout": []}
    for offset, cov in enumerate(COVARIANCE_TYPES):
        for n in range(1, 6):
            rows["n_components"].append(n)
            rows["covariance_type"].append(cov)
            rows["bic"].append((n - 3) ** 2 + 10.0 * offset)
            rows["heldout"].append(-abs(n - 4) - offset)
    return rows


def line_by_label(ax):
    return {line.get_label(): line for line in ax.lines}


def check_selection(ax, criterion="bic"):
    lines = line_by_label(ax)
    assert set(lines) == set(COVARIANCE_TYPES)
    for line in lines.values():
        np.testing.assert_array_equal(line.get_xdata(), np.arange(1, 6))
    best = ax.collections[-1]
    expected = (3, 0.0) if criterion == "bic" else (4, 0.0)
    np.testing.assert_allclose(best.get_offsets(), [expected])
    assert best.get_label() == f"best: full, {expected[0]} components"


def test_selection_from_mapping():
    ax = fplot.plot_selection(selection_table())
    check_selection(ax, "bic")
    assert ax.get_ylabel().startswith("BIC")
    np.testing.assert_allclose(
        line_by_label(ax)["tied"].get_ydata(), [14.0, 11.0, 10.0, 11.0, 14.0]
    )


def test_selection_heldout_larger_is_better():
    ax = fplot.plot_selection(selection_table(), criterion="heldout")
    check_selection(ax, "heldout")
    assert ax.get_ylabel().startswith("held-out")


def test_selection_from_result_structured_array_records_and_frame():
    table = selection_table()
    check_selection(fplot.plot_selection(SimpleNamespace(table=table)))
    result = SimpleNamespace(table=table, criterion="heldout")
    check_selection(fplot.plot_selection(result), "heldout")
    structured = np.rec.fromarrays(
        [np.array(v) for v in table.values()], names=list(table)
    ).view(np.ndarray)
    check_selection(fplot.plot_selection(structured))
    records = [dict(zip(table, row)) for row in zip(*table.values())]
    check_selection(fplot.plot_selection(records))
    pd = pytest.importorskip("pandas")
    check_selection(fplot.plot_selection(pd.DataFrame(table)))


def test_selection_averages_repeats_and_skips_nan():
    table = {
        "n_components": [1, 1, 2, 2, 3],
        "covariance_type": ["diag"] * 5,
        "aic": [4.0, 6.0, 1.0, np.nan, 2.0],
    }
    ax = fplot.plot_selection(table)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [5.0, 1.0, 2.0])
    np.testing.assert_allclose(ax.collections[-1].get_offsets(), [[2, 1.0]])
    assert ax.get_ylabel().startswith("AIC")


def test_selection_errors():
    table = selection_table()
    with pytest.raises(ValueError, match="criterion='aic' is not a column"):
        fplot.plot_selection(table, criterion="aic")
    with pytest.raises(ValueError, match="criterion must be one of"):
        fplot.plot_selection(table, criterion="loss")
    del table["bic"], table["heldout"]
    with pytest.raises(ValueError, match="no criterion column"):
        fplot.plot_selection(table)
    with pytest.raises(ValueError, match=r"missing \['covariance_type'\]"):
        fplot.plot_selection({"n_components": [1], "bic": [1.0]})
    with pytest.raises(TypeError, match="plot_selection expects"):
        fplot.plot_selection(42)


# --------------------------------------------------------------------------
# plot_uncertainty
# --------------------------------------------------------------------------


def test_uncertainty_colorbar_and_values(model3, X3):
    ax = fplot.plot_uncertainty(model3, X3, features=(0, 2))
    overlay = ax.collections[-1]
    assert overlay.colorbar is not None
    assert len(ax.figure.axes) == 2
    uncertainty = 1.0 - model3.predict_proba(X3).max(axis=1)
    np.testing.assert_allclose(np.sort(overlay.get_array()), np.sort(uncertainty))
    assert overlay.norm.vmin == 0.0 and overlay.norm.vmax == pytest.approx(2 / 3)
    # component layer: one point per sample, coloured by predicted component
    assert ax.collections[0].get_offsets().shape == (X3.shape[0], 2)


def test_uncertainty_pca_and_errors(model3, X3):
    ax = fplot.plot_uncertainty(model3, X3, projection="pca", max_points=100)
    assert ax.collections[-1].get_offsets().shape == (100, 2)
    match = r"features=\(0, 5\) is out of range for 3 features"
    with pytest.raises(ValueError, match=match):
        fplot.plot_uncertainty(model3, X3, features=(0, 5))
    with pytest.raises(ValueError, match="needs the data X"):
        fplot.plot_uncertainty(model3, None)


# --------------------------------------------------------------------------
# Optional dependency and other models
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda m: fplot.plot_ellipses(m),
        lambda m: fplot.plot_density(m),
        lambda m: fplot.plot_loglik(m),
        lambda m: fplot.plot_selection(selection_table()),
        lambda m: fplot.plot_uncertainty(m, np.zeros((4, 2))),
    ],
)
def test_missing_matplotlib(monkeypatch, models2, call):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install 'fastem\[plot\]'"):
        call(models2["full"])


def test_works_with_fastem_gaussian_mixture(X2):
    try:
        from fastem import GaussianMixture as FastGaussianMixture

        model = FastGaussianMixture(n_components=3, random_state=0).fit(X2)
    except Exception as exc:  # fastem's estimator is optional for these tests
        pytest.skip(f"fastem.GaussianMixture is not usable here: {exc!r}")
    assert len(ellipses(fplot.plot_ellipses(model, X2))) == 9
    assert len(fplot.plot_density(model, X2).lines) == 4
    fplot.plot_uncertainty(model, X2)
    if getattr(model, "lower_bounds_", None) is not None:
        fplot.plot_loglik(model)
