"""The OpenMP wait policy fastem sets at import, and fits that are bitwise the same
under every Numba threading layer."""

import json
import os
import subprocess
import sys

import pytest

from fastem import _threads

_CHILD = """
import json, warnings
import numpy as np
import numba
import fastem
warnings.simplefilter("ignore")
rng = np.random.default_rng(0)
X = np.concatenate([rng.normal(m, 1.0, (7000, 3)) for m in (-4.0, 0.0, 4.0)])
g = fastem.GaussianMixture(3, covariance_type="full", max_iter=4, tol=0, random_state=0,
                           n_jobs=2).fit(X)
print(json.dumps({"layer": numba.threading_layer(),
                  "bits": [float(v).hex() for v in np.concatenate(
                      [g.means_.ravel(), g.covariances_.ravel(), g.lower_bounds_])]}))
"""


def test_default_wait_policy_respects_the_user(monkeypatch):
    from numba.np.ufunc import parallel

    monkeypatch.setattr(parallel, "_is_initialized", False)
    env = {}
    assert _threads.default_wait_policy(env) == "passive"
    assert env == {"OMP_WAIT_POLICY": "passive"}
    for var, value in (("OMP_WAIT_POLICY", "active"), ("GOMP_SPINCOUNT", "1000")):
        env = {var: value}
        assert _threads.default_wait_policy(env) is None
        assert env == {var: value}
    # too late once Numba's threads run: libgomp has read its environment
    monkeypatch.setattr(parallel, "_is_initialized", True)
    env = {}
    assert _threads.default_wait_policy(env) is None
    assert env == {}


def _child(code, **env_extra):
    env = {k: v for k, v in os.environ.items() if k not in _threads.WAIT_POLICY_VARS}
    env.update(env_extra)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


def test_import_sets_passive_unless_set():
    code = "import os, fastem; print(os.environ.get('OMP_WAIT_POLICY'))"
    assert _child(code) == "passive"
    assert _child(code, OMP_WAIT_POLICY="active") == "active"


@pytest.mark.slow
def test_fits_are_bitwise_equal_across_threading_layers():
    out = {}
    for layer in ("omp", "workqueue"):
        res = json.loads(_child(_CHILD, NUMBA_THREADING_LAYER=layer))
        assert res["layer"] == layer
        out[layer] = res["bits"]
    # the default policy (passive) and a spinning OpenMP give the same bits too
    res = json.loads(_child(_CHILD, NUMBA_THREADING_LAYER="omp", OMP_WAIT_POLICY="active"))
    out["omp-active"] = res["bits"]
    assert out["omp"] == out["workqueue"] == out["omp-active"]


_CONCURRENT = """
import json, threading, warnings
import numpy as np
import numba
import fastem
warnings.simplefilter("ignore")
rng = np.random.default_rng(1)
X = np.concatenate([rng.normal(m, 1.0, (20000, 3)) for m in (-4.0, 0.0, 4.0)])

def fit(ct, out, i):
    g = fastem.GaussianMixture(3, covariance_type=ct, max_iter=6, tol=0, random_state=i,
                               n_jobs=2).fit(X)
    out[i] = [float(v).hex() for v in np.concatenate(
        [g.means_.ravel(), np.ravel(g.covariances_), g.lower_bounds_])]

types = ["full", "diag", "tied", "spherical"] * 2
alone, together = {}, {}
for i, ct in enumerate(types):
    fit(ct, alone, i)
threads = [threading.Thread(target=fit, args=(ct, together, i)) for i, ct in enumerate(types)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps({"layer": numba.threading_layer(), "same": alone == together,
                  "n": len(together)}))
"""


@pytest.mark.parametrize("layer", ["omp", "workqueue"])
def test_fits_in_several_threads_at_once(layer):
    """Kernels release the GIL, so fits in several threads run their parallel
    kernels at the same time: under OpenMP they overlap, under workqueue
    (which cannot run two parallel regions at once and would abort the
    process) they take turns; either way each fit gives the bits it gives
    alone."""
    res = json.loads(_child(_CONCURRENT, NUMBA_THREADING_LAYER=layer))
    assert res == {"layer": layer, "same": True, "n": 8}


def test_kernels_release_the_gil():
    import numpy as np

    from fastem import _kernels as K

    fn = K.pass_diag.variant(np.dtype("float64"), False)
    assert fn.targetoptions.get("nogil") is True
