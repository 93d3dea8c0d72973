"""Watch EM converge from a poor random start, then deal with label switching.

Usage: python examples/em_iterations.py [OUTPUT_DIR]

Part 1 runs EM one iteration at a time (warm_start=True, max_iter=1) from
init_params='random_from_data' and draws the ellipses after selected
iterations. Part 2 refits with other seeds: the same components come back
under permuted labels, and we align them by sorting and by the Hungarian
assignment.

Figures go to OUTPUT_DIR (default: a new temporary directory, printed at the end).
"""

import argparse
import copy
import os
import sys
import tempfile
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy.optimize import linear_sum_assignment  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

import fastem  # noqa: E402
from fastem.plot import plot_ellipses  # noqa: E402

DPI = 80
SNAPSHOTS = (1, 2, 3, 4, 6, 9, 13)  # iterations to draw; the converged fit is added


def output_dir(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output_dir", nargs="?", default=None,
                        help="where to write the figures (default: a new temporary "
                             "directory)")
    args = parser.parse_args(argv)
    if args.output_dir is None:
        return tempfile.mkdtemp(prefix="fastem_em_iterations_")
    os.makedirs(args.output_dir, exist_ok=True)
    return args.output_dir


def make_data(seed=0):
    """650 points from three correlated Gaussian clusters in 2-D."""
    rng = np.random.default_rng(seed)
    centers = np.array([[0.0, 0.0], [4.0, 3.0], [-3.0, 4.0]])
    covs = np.array([[[1.0, 0.6], [0.6, 0.8]],
                     [[0.6, -0.3], [-0.3, 1.2]],
                     [[0.9, 0.0], [0.0, 0.3]]])
    sizes = (300, 200, 150)
    X = np.vstack([rng.multivariate_normal(c, s, size=m)
                   for c, s, m in zip(centers, covs, sizes)])
    return X, centers


def em_snapshots(X, random_state, tol=1e-4, limit=200):
    """Run EM one iteration per fit() call; return {iteration: model copy}."""
    gm = fastem.GaussianMixture(3, init_params="random_from_data",
                                random_state=random_state, warm_start=True,
                                max_iter=1, tol=tol)
    snaps = {}
    # Every single-iteration fit "fails to converge" and says so with a
    # ConvergenceWarning; that is expected here, so silence exactly that.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for it in range(1, limit + 1):
            gm.fit(X)  # the first call initialises, later ones continue
            if it in SNAPSHOTS:
                snaps[it] = copy.deepcopy(gm)
            if gm.converged_:
                break
    snaps[it] = copy.deepcopy(gm)
    return snaps, it


def align_hungarian(reference_means, means):
    """Permutation p such that means[p[k]] matches reference_means[k].

    The cost of pairing reference component i with component j is the
    squared distance between their means; linear_sum_assignment finds the
    pairing with the lowest total cost (works in any dimension, unlike
    sorting by one coordinate).
    """
    cost = ((reference_means[:, None, :] - means[None, :, :]) ** 2).sum(axis=-1)
    rows, cols = linear_sum_assignment(cost)
    return cols[np.argsort(rows)]


def fmt(means):
    return "  ".join(f"({m[0]:+.1f}, {m[1]:+.1f})" for m in means)


def main(argv=None):
    out = output_dir(sys.argv[1:] if argv is None else argv)
    X, true_centers = make_data()

    # Part 1: EM, one iteration at a time ----------------------------------
    snaps, n_iter = em_snapshots(X, random_state=0)
    print(f"{X.shape[0]} points, 3 clusters. EM from 3 random data points "
          f"(init_params='random_from_data') converged after {n_iter} iterations:")
    for it, gm in snaps.items():
        print(f"  after iteration {it:2d}: mean log-likelihood {gm.lower_bound_:.3f}")
    print("  (each value is computed under the parameters the iteration started from;\n"
          "   the first start has one data point per component and covariances of\n"
          "   just reg_covar, hence its huge negative value)")

    fig, axes = plt.subplots(2, 4, figsize=(8.8, 4.4), sharex=True, sharey=True)
    for ax, (it, gm) in zip(axes.ravel(), snaps.items()):
        plot_ellipses(gm, X, ax=ax, n_std=(1, 2), scatter_kws={"s": 3, "alpha": 0.6})
        ax.set_title(f"iteration {it}" + (" (converged)" if it == n_iter else ""),
                     fontsize=10)
        ax.set_xlabel("")
        ax.set_ylabel("")
    fig.suptitle("EM from a poor random start: 1 and 2 sd ellipses")
    fig.tight_layout()
    path = os.path.join(out, "em_iterations.png")
    fig.savefig(path, dpi=DPI)
    plt.close(fig)

    # A poor start can also end in a poor local optimum.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        stuck = fastem.GaussianMixture(3, init_params="random_from_data",
                                       random_state=4, tol=1e-4).fit(X)
    print(f"  from another random start (random_state=4) EM stops at a local optimum: "
          f"mean log-likelihood {stuck.score(X):.3f} against "
          f"{snaps[n_iter].score(X):.3f};\n  n_init > 1 or the default k-means "
          "initialisation guard against that.")

    # Part 2: label switching ------------------------------------------------
    # The likelihood does not change when components are renumbered, so
    # component 0 of one fit has no reason to be component 0 of another:
    # refits with different seeds return the same clusters in another order.
    print("\nLabel switching: the same 3 components, fitted with different seeds "
          "(means, in the order the fits return them):")
    fits = [fastem.GaussianMixture(3, init_params="random_from_data", random_state=s,
                                   tol=1e-4).fit(X) for s in (0, 1, 2, 3)]
    for s, gm in zip((0, 1, 2, 3), fits):
        print(f"  random_state={s}: {fmt(gm.means_)}")

    # Fix 1: sort by a coordinate of the means (fine when it separates them).
    print("Aligned by sorting on the first coordinate of the means:")
    for s, gm in zip((0, 1, 2, 3), fits):
        print(f"  random_state={s}: {fmt(gm.means_[np.argsort(gm.means_[:, 0])])}")

    # Fix 2: match every fit to a reference fit (Hungarian assignment).
    reference = fits[0].means_
    print("Aligned to random_state=0 by the Hungarian assignment on mean distances:")
    worst = 0.0
    for s, gm in zip((0, 1, 2, 3), fits):
        perm = align_hungarian(reference, gm.means_)
        aligned = gm.means_[perm]
        worst = max(worst, float(np.abs(aligned - reference).max()))
        # Apply perm to every per-component array: weights_[perm],
        # covariances_[perm] and predict_proba(X)[:, perm] are aligned too.
        print(f"  random_state={s}: permutation {perm.tolist()}, means {fmt(aligned)}")
    print(f"  largest difference of aligned means across seeds: {worst:.2e}")

    print(f"\nFigure written to {out}:\n  em_iterations.png")


if __name__ == "__main__":
    main()
