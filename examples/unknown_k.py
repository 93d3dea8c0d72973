"""Let the data choose the number of components: a Dirichlet-process mixture.

Usage: python examples/unknown_k.py [OUTPUT_DIR]

Data from a known 3-component mixture are fitted with n_components=10 by
fastem.BayesianGaussianMixture, one iteration at a time (warm_start=True,
max_iter=1), and the weight of every component is recorded: the figure shows
the seven components the data do not need fading to zero as the fit proceeds.

The figure goes to OUTPUT_DIR (default: a new temporary directory, printed at
the end).  FASTEM_EXAMPLE_SMALL=1 runs a smaller version (used by the tests).
"""

import argparse
import os
import tempfile
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

import fastem  # noqa: E402

DPI = 80


def output_dir():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output_dir", nargs="?", default=None)
    args = parser.parse_args()
    if args.output_dir is None:
        return tempfile.mkdtemp(prefix="fastem_unknown_k_")
    os.makedirs(args.output_dir, exist_ok=True)
    return args.output_dir


def main():
    out = output_dir()
    small = os.environ.get("FASTEM_EXAMPLE_SMALL") == "1"
    n, n_iter = (3000, 500) if small else (30_000, 800)
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [8.0, 1.0], [-4.0, 8.0]])
    labels = rng.choice(3, size=n, p=[0.5, 0.3, 0.2])
    X = centres[labels] + rng.normal(size=(n, 2))

    model = fastem.BayesianGaussianMixture(n_components=10, max_iter=1, warm_start=True,
                                           random_state=0)
    history = []
    with warnings.catch_warnings():
        # max_iter=1 per call: each call "did not converge" by design
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(n_iter):
            model.fit(X)
            history.append(model.weights_.copy())
    history = np.array(history)
    k_eff = model.effective_n_components(threshold=1e-3)
    print(f"{n} rows from 3 components, fitted with n_components=10: "
          f"{k_eff} components have weight > 1e-3")
    print("final weights:", np.array2string(np.sort(model.weights_)[::-1], precision=4))

    fig, ax = plt.subplots(figsize=(7, 4))
    for k in range(history.shape[1]):
        ax.plot(np.arange(1, n_iter + 1), history[:, k], lw=1.5)
    ax.set_yscale("log")
    ax.set_ylim(1e-6, 1.0)
    ax.axhline(1e-3, color="grey", ls=":", lw=1)
    ax.set_xlabel("iteration")
    ax.set_ylabel("component weight")
    ax.set_title(f"Dirichlet-process mixture, K=10: {k_eff} components kept")
    fig.tight_layout()
    path = os.path.join(out, "unknown_k_weights.png")
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    print(f"Figure written to {out}:")
    print(f"  {os.path.basename(path)}")


if __name__ == "__main__":
    main()
