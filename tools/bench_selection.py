"""Time select_model's grid against separate fits and scikit-learn's loop.

The grid: K = 1..9 x the four covariance types x ``--n-init`` starts, on
``--rows`` x ``--features`` rows drawn from a 6-component mixture.  Three ways:

- ``select_model(X, range(1, 10), n_init=5, tol=..., max_iter=...)``: the
  search (starts on a 50,000-row screening sample, then each candidate's best
  start on all rows, all candidates in the same passes);
- the same grid as separate ``fastem.GaussianMixture(K, covariance_type=ct,
  n_init=5)`` fits followed by ``bic``;
- the same loop with scikit-learn's GaussianMixture (its BIC example), only
  when ``--sklearn`` is given (it is slow).

Passes over all rows are counted by wrapping fastem's data interface (E-step
passes, k-means assignment passes, row draws).  Prints one line per way and the
ratios.  Example::

    python tools/bench_selection.py --rows 1000000 --features 8 --sklearn
"""

import argparse
import os
import time
import warnings

import numpy as np


def make_data(n, d, seed=0):
    rng = np.random.default_rng(seed)
    K = 6
    centers = rng.normal(scale=4.0, size=(K, d))
    labels = rng.integers(0, K, size=n)
    scales = rng.uniform(0.5, 1.5, size=(K, d))
    return centers[labels] + rng.normal(size=(n, d)) * scales[labels]


class PassCounter:
    """Counts passes over the rows of in-memory data of n rows."""

    def __init__(self, n):
        from fastem import _data

        self.n = n
        self.passes = 0
        self._data = _data
        self._saved = {}

    def __enter__(self):
        cls = self._data.ArrayData
        counter = self

        def wrap(name):
            original = getattr(cls, name)
            self._saved[name] = original

            def counted(data, *args, **kwargs):
                if data.n_samples == counter.n:
                    counter.passes += 1
                return original(data, *args, **kwargs)
            setattr(cls, name, counted)

        for name in ("e_pass_many", "e_pass", "hard_assignment_stats", "take", "collect"):
            wrap(name)
        return self

    def __exit__(self, *exc):
        for name, original in self._saved.items():
            setattr(self._data.ArrayData, name, original)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--features", type=int, default=8)
    ap.add_argument("--n-init", type=int, default=5)
    ap.add_argument("--tol", type=float, default=1e-3)
    ap.add_argument("--max-iter", type=int, default=100)
    ap.add_argument("--sklearn", action="store_true")
    ap.add_argument("--separate", action="store_true",
                    help="also time the grid as separate fastem fits")
    args = ap.parse_args()

    import fastem
    from fastem.selection import select_model

    X = make_data(args.rows, args.features)
    grid = [(k, ct) for ct in ("full", "diag", "tied", "spherical") for k in range(1, 10)]
    opts = dict(n_init=args.n_init, tol=args.tol, max_iter=args.max_iter)
    print(f"# {args.rows} x {args.features}, K=1..9 x 4 types x n_init={args.n_init}, "
          f"tol={args.tol}, max_iter={args.max_iter}; {os.cpu_count()} CPUs")
    # compile first (not timed)
    select_model(X[:2000], n_components=[1, 2], random_state=0)
    results = {}
    with PassCounter(args.rows) as c, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        r = select_model(X, n_components=range(1, 10), random_state=0, **opts)
        results["select_model"] = (time.perf_counter() - t0, c.passes)
    best = r.best_params_
    print(f"select_model: {results['select_model'][0]:.1f} s, "
          f"{results['select_model'][1]} passes over the rows "
          f"(EM {r.passes_}); best {best['covariance_type']} K={best['n_components']}")
    if args.separate:
        with PassCounter(args.rows) as c, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            bics = [fastem.GaussianMixture(k, covariance_type=ct, random_state=0,
                                           **opts).fit(X).bic(X) for k, ct in grid]
            results["separate"] = (time.perf_counter() - t0, c.passes)
        i = int(np.argmin(bics))
        print(f"separate fastem fits: {results['separate'][0]:.1f} s, "
              f"{results['separate'][1]} passes; best {grid[i][1]} K={grid[i][0]}")
    if args.sklearn:
        from sklearn.mixture import GaussianMixture as SkGM

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            bics = [SkGM(k, covariance_type=ct, random_state=0, **opts).fit(X).bic(X)
                    for k, ct in grid]
            results["sklearn"] = (time.perf_counter() - t0, None)
        i = int(np.argmin(bics))
        print(f"scikit-learn loop: {results['sklearn'][0]:.1f} s; best {grid[i][1]} "
              f"K={grid[i][0]}")
    base = results["select_model"][0]
    for name, (t, _) in results.items():
        if name != "select_model":
            print(f"{name} / select_model: {t / base:.1f}x")


if __name__ == "__main__":
    main()
