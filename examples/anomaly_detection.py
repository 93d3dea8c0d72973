"""Outlier detection with a fitted mixture: flag the rows of lowest density.

Usage: python examples/anomaly_detection.py [OUTPUT_DIR]

Fit a 3-component mixture on clean data, then score new data into which 20
far-away outliers were injected. fastem.anomaly.outliers flags the rows whose
log-density is in the lowest 1%; we check the flags against the truth
(precision and recall), and compare with a threshold fixed on the clean
training data instead.

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
from fastem.anomaly import density_threshold, outliers  # noqa: E402
from fastem.plot import plot_uncertainty  # noqa: E402

DPI = 80
CENTERS = np.array([[0.0, 0.0], [5.0, 1.0], [1.5, 5.0]])
COVS = np.array([[[1.0, 0.5], [0.5, 1.0]],
                 [[0.8, -0.2], [-0.2, 0.5]],
                 [[0.6, 0.0], [0.0, 1.2]]])


def output_dir(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output_dir", nargs="?", default=None,
                        help="where to write the figures (default: a new temporary "
                             "directory)")
    args = parser.parse_args(argv)
    if args.output_dir is None:
        return tempfile.mkdtemp(prefix="fastem_anomaly_")
    os.makedirs(args.output_dir, exist_ok=True)
    return args.output_dir


def clean_blobs(n, rng):
    labels = rng.integers(0, len(CENTERS), size=n)
    X = np.empty((n, 2))
    for k, (c, s) in enumerate(zip(CENTERS, COVS)):
        rows = labels == k
        X[rows] = rng.multivariate_normal(c, s, size=rows.sum())
    return X


def far_points(n, rng):
    """Points on a ring of radius 9 to 12 around the data's centre."""
    angle = rng.uniform(0.0, 2.0 * np.pi, size=n)
    radius = rng.uniform(9.0, 12.0, size=n)
    return CENTERS.mean(axis=0) + radius[:, None] * np.c_[np.cos(angle), np.sin(angle)]


def precision_recall(flagged, truth):
    tp = int(np.sum(flagged & truth))
    precision = tp / max(int(flagged.sum()), 1)
    recall = tp / max(int(truth.sum()), 1)
    return tp, precision, recall


def main(argv=None):
    out = output_dir(sys.argv[1:] if argv is None else argv)
    rng = np.random.default_rng(0)

    X_train = clean_blobs(3000, rng)
    model = fastem.GaussianMixture(n_components=3, random_state=0).fit(X_train)

    n_clean, n_out = 1980, 20
    X_new = np.vstack([clean_blobs(n_clean, rng), far_points(n_out, rng)])
    is_outlier = np.r_[np.zeros(n_clean, bool), np.ones(n_out, bool)]
    perm = rng.permutation(X_new.shape[0])
    X_new, is_outlier = X_new[perm], is_outlier[perm]
    print(f"Fitted 3 components on {X_train.shape[0]} clean points; scoring "
          f"{X_new.shape[0]} new points of which {n_out} are injected outliers "
          f"({n_out / X_new.shape[0]:.1%}).")

    # 1. The lowest 1% of the new data's own log-densities.
    flagged, scores = outliers(model, X_new, quantile=0.01, return_scores=True)
    tp, precision, recall = precision_recall(flagged, is_outlier)
    print(f"\nquantile=0.01 of the new data's scores: {flagged.sum()} rows flagged, "
          f"{tp} of them injected")
    print(f"  precision {precision:.2f}, recall {recall:.2f}")
    print(f"  log-density of the flagged rows: {scores[flagged].max():.1f} and below; "
          f"median of all rows {np.median(scores):.1f}")

    # 2. A threshold fixed on clean data: the 1% quantile of training scores.
    #    It flags about 1% of clean rows plus whatever falls below it.
    t = density_threshold(model, X_train, 0.01)
    flagged_t = outliers(model, X_new, threshold=t)
    tp_t, precision_t, recall_t = precision_recall(flagged_t, is_outlier)
    print(f"\nthreshold={t:.2f} (1% quantile of the clean training scores): "
          f"{flagged_t.sum()} rows flagged, {tp_t} of them injected")
    print(f"  precision {precision_t:.2f}, recall {recall_t:.2f}  (a quantile of "
          "clean data means about 1% false alarms by construction)")

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.2))
    plot_uncertainty(model, X_new, ax=ax1)
    ax1.set_title("component uncertainty")
    ax2.scatter(X_new[:, 0], X_new[:, 1], s=4, c="0.7", linewidths=0, label="data")
    ax2.scatter(X_new[is_outlier, 0], X_new[is_outlier, 1], s=60, facecolors="none",
                edgecolors="tab:red", label="injected outlier")
    ax2.scatter(X_new[flagged, 0], X_new[flagged, 1], s=14, marker="x", c="black",
                label="flagged (lowest 1%)")
    ax2.set_aspect("equal", adjustable="datalim")
    ax2.legend(loc="lower left", fontsize=8)
    ax2.set_title(f"flagged: precision {precision:.2f}, recall {recall:.2f}")
    fig.tight_layout()
    path = os.path.join(out, "anomaly_detection.png")
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    print(f"\nFigure written to {out}:\n  anomaly_detection.png")


if __name__ == "__main__":
    main()
