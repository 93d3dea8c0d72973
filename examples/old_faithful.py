"""Old Faithful: the classic two-component Gaussian mixture, and how to choose K.

Usage: python examples/old_faithful.py [OUTPUT_DIR]

1. Eruption times alone (1-D): two components, short and long eruptions.
2. Eruption and waiting times (2-D): components drawn as ellipses.
3. BIC over K = 1..6 and four covariance types (fastem.selection).
4. The log-likelihood per EM iteration.

Figures go to OUTPUT_DIR (default: a new temporary directory, printed at the end).
"""

import argparse
import os
import sys
import tempfile

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import fastem  # noqa: E402
from fastem.datasets import load_old_faithful  # noqa: E402
from fastem.plot import plot_density, plot_ellipses, plot_loglik  # noqa: E402
from fastem.selection import select_model  # noqa: E402

FIGSIZE = (5.5, 4.0)
DPI = 80


def output_dir(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output_dir", nargs="?", default=None,
                        help="where to write the figures (default: a new temporary "
                             "directory)")
    args = parser.parse_args(argv)
    if args.output_dir is None:
        return tempfile.mkdtemp(prefix="fastem_old_faithful_")
    os.makedirs(args.output_dir, exist_ok=True)
    return args.output_dir


def save(ax, out, name):
    path = os.path.join(out, name)
    ax.figure.tight_layout()
    ax.figure.savefig(path, dpi=DPI)
    plt.close(ax.figure)
    return path


def main(argv=None):
    out = output_dir(sys.argv[1:] if argv is None else argv)
    written = []

    # 1. Eruption times alone --------------------------------------------
    x = load_old_faithful(columns="eruptions")  # shape (272, 1), minutes
    gm1 = fastem.GaussianMixture(n_components=2, random_state=0).fit(x)
    order = np.argsort(gm1.means_[:, 0])  # component numbers are arbitrary
    print(f"1-D: {x.shape[0]} eruption times, a 2-component mixture:")
    for name, k in zip(("short", "long"), order):
        sd = np.sqrt(gm1.covariances_[k, 0, 0])
        print(f"  {name:5s} eruptions: mean {gm1.means_[k, 0]:.2f} min, "
              f"sd {sd:.2f} min, weight {gm1.weights_[k]:.2f}")
    print(f"  mean log-likelihood per eruption: {gm1.score(x):.3f}")
    fig, ax = plt.subplots(figsize=FIGSIZE)
    plot_density(gm1, x, ax=ax, feature_names=["eruption time (min)"])
    ax.set_title("Old Faithful eruptions: K=2")
    written.append(save(ax, out, "old_faithful_density.png"))

    # 2. Eruption and waiting times -----------------------------------------
    X = load_old_faithful()  # columns: eruptions, waiting (minutes)
    gm2 = fastem.GaussianMixture(n_components=2, random_state=0).fit(X)
    print("\n2-D: eruption time and waiting time to the next eruption, K=2 'full':")
    for k in np.argsort(gm2.means_[:, 0]):
        corr = gm2.covariances_[k, 0, 1] / np.sqrt(
            gm2.covariances_[k, 0, 0] * gm2.covariances_[k, 1, 1])
        print(f"  eruption {gm2.means_[k, 0]:.2f} min, waiting {gm2.means_[k, 1]:.1f} "
              f"min, weight {gm2.weights_[k]:.2f}, correlation {corr:+.2f}")
    fig, ax = plt.subplots(figsize=FIGSIZE)
    plot_ellipses(gm2, X, ax=ax, n_std=(1, 2),
                  feature_names=["eruption time (min)", "waiting time (min)"])
    ax.set_title("Old Faithful: K=2, 1 and 2 sd ellipses")
    written.append(save(ax, out, "old_faithful_ellipses.png"))

    # 3. Choosing K with BIC ------------------------------------------------
    result = select_model(X, n_components=range(1, 7), random_state=0)
    table = result.table
    best = result.best_params_
    print(f"\nBIC over K=1..6 x 4 covariance types ({len(table)} candidates):")
    print(f"  best: K={best['n_components']}, '{best['covariance_type']}', "
          f"BIC {table['bic'][result.best_index_]:.1f}")
    full = table[table["covariance_type"] == "full"]
    print("  'full' row:  " + "  ".join(
        f"K={k}: {b:.0f}" for k, b in zip(full["n_components"], full["bic"])))
    print(result.summary())
    print("  (a difference of a few BIC units is weak evidence; R's mclust picks the\n"
          "   same 3 'tied' components: docs/model_selection.md)")
    fig, ax = plt.subplots(figsize=FIGSIZE)
    result.plot(ax=ax)
    ax.set_title("Old Faithful: BIC by K and covariance type")
    written.append(save(ax, out, "old_faithful_bic.png"))

    # 4. Convergence ------------------------------------------------------
    # init_params='random' starts from random responsibilities: both components
    # begin near the overall mean, so EM first sits on a plateau (the K=1 fit)
    # before the components separate.
    gm_slow = fastem.GaussianMixture(n_components=2, init_params="random",
                                     tol=1e-6, max_iter=500, random_state=0).fit(X)
    lb = gm_slow.lower_bounds_
    print(f"\nEM from random responsibilities: {gm_slow.n_iter_} iterations, mean "
          f"log-likelihood {lb[0]:.3f} at the first, {lb[-1]:.3f} at the end")
    fig, ax = plt.subplots(figsize=FIGSIZE)
    plot_loglik(gm_slow, ax=ax)
    ax.set_title("Log-likelihood per EM iteration")
    written.append(save(ax, out, "old_faithful_loglik.png"))

    print(f"\nFigures written to {out}:")
    for path in written:
        print(f"  {os.path.basename(path)}")


if __name__ == "__main__":
    main()
