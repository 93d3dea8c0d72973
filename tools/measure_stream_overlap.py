"""Per-iteration time of an EM fit streamed from a .npy file against the same
rows in memory (issue 16's streaming target: stream / in-memory <= 1.15).

    python tools/measure_stream_overlap.py [--rows 4000000] [--processes 4] [--rounds 2]

4e6 x 8 rows, K=8, full, float64 (256 MB; the file is read once first, so it
is in the page cache), 2 Numba threads, fixed initial parameters; the
per-iteration time is (t(5) - t(1)) / 4 of ``fit(X)`` and of ``fit(path)``
(default chunk size).  Each fresh process alternates in-memory and stream
``--rounds`` times; the per-round ratio stream / in-memory is printed, then
the medians over all rounds, and the stream fits' lower bound bits (every
stream and in-memory fit must give the same bits).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

CHILD = r"""
import json, sys, time, warnings
import numpy as np
import fastem
warnings.simplefilter("ignore")
path, rounds = sys.argv[1], int(sys.argv[2])
X = np.load(path)
rng = np.random.default_rng(1)
K, d = 8, X.shape[1]
init = dict(weights_init=np.full(K, 1.0 / K), means_init=X[rng.choice(len(X), K, replace=False)],
            precisions_init=np.tile(np.eye(d), (K, 1, 1)))

def per_iter(data):
    times = {}
    for it in (1, 5):
        g = fastem.GaussianMixture(K, covariance_type="full", max_iter=it, tol=0, n_jobs=2,
                                   **init)
        t = time.perf_counter()
        g.fit(data)
        times[it] = time.perf_counter() - t
    return (times[5] - times[1]) / 4 * 1e3, float(g.lower_bound_).hex()

per_iter(X[:100000])  # compile / load the kernels
out = []
for _ in range(rounds):
    mem, bits_mem = per_iter(X)
    stream, bits_stream = per_iter(path)
    out.append({"memory_ms": mem, "stream_ms": stream, "bits": [bits_mem, bits_stream]})
print(json.dumps(out))
"""


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=4_000_000)
    p.add_argument("--processes", type=int, default=4)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--dir", default=None, help="folder for the .npy (default: a temp folder)")
    args = p.parse_args()
    folder = args.dir or tempfile.mkdtemp(prefix="fastem_stream_")
    path = os.path.join(folder, "X.npy")
    if not os.path.exists(path):
        rng = np.random.default_rng(0)
        centres = rng.uniform(-10, 10, size=(8, 8))
        X = centres[rng.integers(0, 8, args.rows)] + rng.standard_normal((args.rows, 8))
        np.save(path, X)
        del X
    with open(path, "rb") as f:  # into the page cache
        while f.read(1 << 24):
            pass
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root)
    rounds = []
    for i in range(args.processes):
        out = subprocess.run([sys.executable, "-c", CHILD, path, str(args.rounds)], env=env,
                             check=True, capture_output=True, text=True).stdout
        for r in json.loads(out.splitlines()[-1]):
            rounds.append(r)
            print(f"process {i}: in memory {r['memory_ms']:7.1f} ms/it   stream "
                  f"{r['stream_ms']:7.1f} ms/it   ratio {r['stream_ms'] / r['memory_ms']:.3f}",
                  flush=True)
    mem = np.median([r["memory_ms"] for r in rounds])
    stream = np.median([r["stream_ms"] for r in rounds])
    ratio = np.median([r["stream_ms"] / r["memory_ms"] for r in rounds])
    bits = {b for r in rounds for b in r["bits"]}
    print(f"median: in memory {mem:.1f} ms/it, stream {stream:.1f} ms/it, "
          f"median of per-round ratios {ratio:.3f} ({len(rounds)} rounds)")
    print(f"lower bound bits of all fits: {sorted(bits)}")


if __name__ == "__main__":
    main()
