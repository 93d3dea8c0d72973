"""Streaming from disk: exact out-of-core EM and one pass of online EM.

1. Write 300,000 rows of well separated blobs (8 features, 8 components) to a
   .npy file, plus 50,000 held-out rows.
2. Fit batch EM in memory (to convergence) and time 3 EM iterations.
3. Fit the same model out of core, streaming the .npy in chunks of 100,000
   rows, and compare it with the in-memory fit (same answer) and the cost of
   an iteration.
4. Make ONE pass of online EM (``partial_fit`` on batches of 4,096 rows read
   from the file) and record the held-out log-likelihood as rows are seen:
   the learning curve is drawn to ``learning_curve.png``.

Usage: python examples/streaming_from_disk.py [OUTPUT_DIR]
FASTEM_EXAMPLE_SMALL=1 shrinks the data for CI.
"""

import os
import sys
import tempfile
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

import fastem
from fastem import io

SMALL = os.environ.get("FASTEM_EXAMPLE_SMALL") == "1"
N_TRAIN = 60_000 if SMALL else 300_000
N_TEST = 10_000 if SMALL else 50_000
D, K, BATCH = 8, 8, 4096


def make_data(rng):
    centers = rng.uniform(-12, 12, size=(K, D))
    labels = rng.integers(0, K, size=N_TRAIN + N_TEST)
    X = centers[labels] + rng.standard_normal((N_TRAIN + N_TEST, D))
    return X[:N_TRAIN], X[N_TRAIN:]


def main(out_dir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(0)
    Xtr, Xte = make_data(rng)
    path = os.path.join(out_dir, "train.npy")
    np.save(path, Xtr)
    print(f"wrote {path}: {Xtr.shape[0]:,} rows x {D} features "
          f"({Xtr.nbytes / 2**20:.0f} MB)")

    # 1. batch EM in memory, to convergence
    t0 = time.perf_counter()
    batch = fastem.GaussianMixture(K, random_state=0, tol=1e-6, max_iter=500).fit(Xtr)
    t_batch = time.perf_counter() - t0
    target = batch.score(Xte)
    print(f"batch EM (in memory): {batch.n_iter_} iterations, {t_batch:.2f} s, "
          f"held-out log-likelihood {target:.4f}")
    init = dict(weights_init=batch.weights_, means_init=batch.means_,
                precisions_init=batch.precisions_)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t0 = time.perf_counter()
        fastem.GaussianMixture(K, tol=0, max_iter=3, **init).fit(Xtr)
        t3 = time.perf_counter() - t0
    print(f"3 batch EM iterations (in memory): {t3:.3f} s")

    # 2. the same fit out of core
    t0 = time.perf_counter()
    ooc = fastem.GaussianMixture(K, random_state=0, tol=1e-6, max_iter=500,
                                 chunk_size=100_000).fit(path)
    t_ooc = time.perf_counter() - t0
    rel = max(np.max(np.abs(getattr(ooc, a) - getattr(batch, a)))
              / np.max(np.abs(getattr(batch, a)))
              for a in ("weights_", "means_", "covariances_"))
    print(f"out-of-core EM (chunks of 100,000 rows): {ooc.n_iter_} iterations, "
          f"{t_ooc:.2f} s, max relative difference to the in-memory fit {rel:.1e}")

    # 3. one pass of online EM over the file
    online = fastem.MiniBatchGaussianMixture(K, batch_size=BATCH, random_state=0)
    seen, curve = [], []
    t0 = time.perf_counter()
    elapsed = 0.0
    for i, block in enumerate(io.chunks(path, chunk_size=BATCH)):
        online.partial_fit(block)
        if i % 4 == 0 or online.n_rows_seen_ == N_TRAIN:
            elapsed += time.perf_counter() - t0
            seen.append(online.n_rows_seen_)
            curve.append(online.score(Xte))  # not timed
            t0 = time.perf_counter()
    elapsed += time.perf_counter() - t0
    final = online.score(Xte)
    gap = abs(final - target) / abs(target)
    print(f"online EM, one pass of {N_TRAIN // BATCH + 1} batches of {BATCH}: "
          f"{elapsed:.3f} s (3 batch iterations: {t3:.3f} s), held-out "
          f"log-likelihood {final:.4f}, {100 * gap:.3f}% from batch EM")

    # the same pass over the rows already in memory (no file reading)
    mem = fastem.MiniBatchGaussianMixture(K, batch_size=BATCH, random_state=0)
    mem.partial_fit(Xtr[:BATCH])  # initialises from the first batch
    t0 = time.perf_counter()
    for lo in range(BATCH, N_TRAIN, BATCH):
        mem.partial_fit(Xtr[lo:lo + BATCH])
    t_mem = time.perf_counter() - t0
    print(f"online EM, the same pass over in-memory rows (after the initialising "
          f"batch): {t_mem:.3f} s against {t3:.3f} s for 3 batch iterations; held-out "
          f"log-likelihood {mem.score(Xte):.4f}")

    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(seen, curve, marker=".", label="online EM (one pass, partial_fit)")
    ax.axhline(target, color="k", linestyle="--", label="batch EM, converged")
    ax.set_xlabel("rows seen")
    ax.set_ylabel("held-out mean log-likelihood")
    lo = min(target, np.percentile(curve, 10)) - 0.05 * abs(target)
    ax.set_ylim(lo, target + 0.02 * abs(target))
    ax.legend(loc="lower right")
    ax.set_title("Online EM learning curve")
    fig.tight_layout()
    png = os.path.join(out_dir, "learning_curve.png")
    fig.savefig(png, dpi=80)
    plt.close(fig)
    print(f"Figure written to {png}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="fastem_"))
