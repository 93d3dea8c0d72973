"""Fit a Gaussian mixture to 2-D data with missing coordinates.

Usage: python examples/missing_values.py [OUTPUT_DIR]

A third of the rows lose one of their two coordinates (missing completely at
random). ``GaussianMixture(missing='marginalize')`` fits on every row: a row
with one coordinate contributes the marginal density of that coordinate. The
figure shows the complete rows, the rows with only x (ticks along the bottom
axis) or only y (ticks along the left axis), the fitted ellipses, the true
ellipses (dashed) and, for comparison, a fit on the complete rows only.
``impute`` then fills the missing coordinates with their conditional means.

The figure goes to OUTPUT_DIR (default: a new temporary directory, printed at the end).
"""

import argparse
import os
import sys
import tempfile

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Ellipse  # noqa: E402

import fastem  # noqa: E402

DPI = 80
TRUE_MEANS = np.array([[0.0, 0.0], [4.0, 3.0], [-1.0, 5.0]])
TRUE_COVS = np.array([[[1.0, 0.6], [0.6, 1.0]], [[0.6, -0.3], [-0.3, 1.2]],
                      [[1.5, 0.0], [0.0, 0.3]]])
TRUE_WEIGHTS = np.array([0.4, 0.35, 0.25])


def output_dir(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output_dir", nargs="?", default=None,
                        help="where to write the figure (default: a new temporary directory)")
    args = parser.parse_args(argv)
    if args.output_dir is None:
        return tempfile.mkdtemp(prefix="fastem_missing_values_")
    os.makedirs(args.output_dir, exist_ok=True)
    return args.output_dir


def make_data(n=900, seed=0):
    """n rows from a known 3-component mixture; a third lose one coordinate."""
    rng = np.random.default_rng(seed)
    comp = rng.choice(3, size=n, p=TRUE_WEIGHTS)
    X = np.stack([rng.multivariate_normal(TRUE_MEANS[k], TRUE_COVS[k]) for k in comp])
    Xm = X.copy()
    lose = rng.uniform(size=n) < 1 / 3
    Xm[lose, rng.integers(0, 2, size=int(lose.sum()))] = np.nan
    return X, Xm


def ellipse(ax, mean, cov, **kw):
    vals, vecs = np.linalg.eigh(cov)
    angle = np.degrees(np.arctan2(vecs[1, 1], vecs[0, 1]))
    label = kw.pop("label", None)
    for s in (1, 2):
        ax.add_patch(Ellipse(mean, 2 * s * np.sqrt(vals[1]), 2 * s * np.sqrt(vals[0]),
                             angle=angle, fill=False, label=label if s == 1 else None,
                             **kw))


def main(argv=None):
    out = output_dir(argv)
    X, Xm = make_data()
    only_x = np.isnan(Xm[:, 1])
    only_y = np.isnan(Xm[:, 0])
    complete = ~(only_x | only_y)
    gm = fastem.GaussianMixture(3, missing="marginalize", n_init=3, random_state=0).fit(Xm)
    cc = fastem.GaussianMixture(3, n_init=3, random_state=0).fit(Xm[complete])
    filled = gm.impute(Xm)
    print(f"{len(Xm)} rows: {complete.sum()} complete, {only_x.sum()} with only x, "
          f"{only_y.sum()} with only y")
    print("fitted means (missing='marginalize'):")
    for k in np.argsort(gm.means_[:, 0]):
        print(f"  weight {gm.weights_[k]:.3f}  mean ({gm.means_[k, 0]:+.3f}, "
              f"{gm.means_[k, 1]:+.3f})")
    rmse = np.sqrt(np.mean((filled[~complete] - X[~complete])[np.isnan(Xm[~complete])] ** 2))
    print(f"imputation RMSE of the {int((~complete).sum())} missing coordinates "
          f"(conditional means): {rmse:.3f}")

    fig, ax = plt.subplots(figsize=(7, 6))
    ax.scatter(Xm[complete, 0], Xm[complete, 1], s=6, color="0.55", label="complete rows")
    lo_x, hi_x = np.nanmin(Xm[:, 0]) - 1, np.nanmax(Xm[:, 0]) + 1
    lo_y, hi_y = np.nanmin(Xm[:, 1]) - 1, np.nanmax(Xm[:, 1]) + 1
    ax.plot(Xm[only_x, 0], np.full(only_x.sum(), lo_y), "|", color="tab:blue", ms=14,
            label="rows with only x (y missing)")
    ax.plot(np.full(only_y.sum(), lo_x), Xm[only_y, 1], "_", color="tab:orange", ms=14,
            label="rows with only y (x missing)")
    for k in range(3):
        ellipse(ax, TRUE_MEANS[k], TRUE_COVS[k], color="k", ls="--", lw=1,
                label="truth" if k == 0 else None)
        ellipse(ax, gm.means_[k], gm.covariances_[k], color="tab:red", lw=1.8,
                label="missing='marginalize'" if k == 0 else None)
        ellipse(ax, cc.means_[k], cc.covariances_[k], color="tab:green", lw=1, ls=":",
                label="complete rows only" if k == 0 else None)
    ax.set_xlim(lo_x - 0.3, hi_x)
    ax.set_ylim(lo_y - 0.3, hi_y)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title("Gaussian mixture with missing coordinates (1 and 2 sigma)")
    ax.legend(loc="upper right", fontsize=8)
    path = os.path.join(out, "missing_values.png")
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    print(f"Figure written to {out}:")
    print(f"  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
