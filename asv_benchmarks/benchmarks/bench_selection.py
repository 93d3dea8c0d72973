"""asv benchmark of fastem.selection.select_model: the grid K = 1..9 x the four
covariance types x 5 starts (issue 13's benchmark, scaled).

Rows: 1e6 x 8 times ``FASTEM_ASV_SCALE`` (default 0.05: 50,000 rows; the tiny
CI profile 0.002: 2,000), drawn from a 6-component mixture.  ``time_select``
is the whole search; ``track_passes`` the passes over all rows that its EM
iterations made (0 while the rows fit in the screening sample), so a change
that makes restarts cost full passes again shows up.  Uses only the public API.
"""

import os
import warnings

import numpy as np

SCALE = float(os.environ.get("FASTEM_ASV_SCALE", "0.05"))
N_ROWS = max(2_000, int(1_000_000 * SCALE))


def make_data(n, d=8, K=6, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=4.0, size=(K, d))
    labels = rng.integers(0, K, size=n)
    scales = rng.uniform(0.5, 1.5, size=(K, d))
    return centers[labels] + rng.normal(size=(n, d)) * scales[labels]


class SelectModel:
    timeout = 1200
    number = 1
    repeat = 1

    def setup(self):
        from fastem.selection import select_model

        self.X = make_data(N_ROWS)
        warnings.simplefilter("ignore")
        select_model(self.X[:500], n_components=[1, 2], random_state=0)  # compile

    def _run(self):
        from fastem.selection import select_model

        return select_model(self.X, n_components=range(1, 10), n_init=5, tol=1e-3,
                            max_iter=100, random_state=0)

    def time_select(self):
        self._run()

    def track_passes(self):
        return self._run().passes_

    track_passes.unit = "passes"
