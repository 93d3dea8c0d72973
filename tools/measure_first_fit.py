"""Time a new user's first fit: each run in a fresh process with an empty
Numba cache (so every kernel it needs is compiled), then `fastem fit` cold
and warm.

    python tools/measure_first_fit.py

Prints one line per covariance type and dtype (GaussianMixture(8).fit of
10,000 x 16 rows), then the README's main command with an empty and a warm
cache.  Wall-clock seconds of the fit call (imports excluded) and of the
whole command.
"""

import os
import subprocess
import sys
import tempfile
import time

FIT = """
import sys, time
import numpy as np
import fastem
ct, dt = sys.argv[1], sys.argv[2]
X = np.random.default_rng(0).normal(size=(10_000, 16)).astype(dt)
t = time.perf_counter()
fastem.GaussianMixture(8, covariance_type=ct, random_state=0).fit(X)
print(f"{time.perf_counter() - t:.2f}")
"""


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    base = dict(os.environ, PYTHONPATH=root)
    for ct in ("full", "tied", "diag", "spherical"):
        for dt in ("float64", "float32"):
            with tempfile.TemporaryDirectory() as cache:
                out = subprocess.run([sys.executable, "-W", "ignore", "-c", FIT, ct, dt],
                                     env=dict(base, NUMBA_CACHE_DIR=cache), check=True,
                                     capture_output=True, text=True).stdout.split()[-1]
            print(f"first fit, empty cache: {ct:9s} {dt:7s} {out:>7s} s", flush=True)
    with tempfile.TemporaryDirectory() as cache:
        for label in ("empty", "warm"):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-c", "from fastem.cli import main; main(['fit'])"],
                           env=dict(base, NUMBA_CACHE_DIR=cache), check=True,
                           capture_output=True)
            print(f"fastem fit, {label} cache: {time.perf_counter() - t:.2f} s", flush=True)


if __name__ == "__main__":
    main()
