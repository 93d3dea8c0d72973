"""Fuzzing fastem.persist.load with mutated model files.

Saved models (every covariance type, and an online model with its state) are
mutated: array values (NaN, inf, huge, tiny, negative, random), array shapes
and dtypes, and fields of the JSON metadata. ``load`` must either refuse the
file with ValueError/TypeError, or return a model whose parameters are finite
and whose ``predict`` works on valid data. It must never crash the process,
run out of memory or return NaN parameters.

The run is derandomized (the same 50 examples each time) to keep the suite
fast and reproducible; set FASTEM_FUZZ_EXAMPLES to search longer.
"""

import io
import json
import os
import warnings

import numpy as np
import pytest

from fastem import GaussianMixture
from fastem.persist import load, save

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

PARAMETER_ARRAYS = ("weights_", "means_", "covariances_", "precisions_",
                    "precisions_cholesky_")


def _data(n=120, seed=0):
    rng = np.random.default_rng(seed)
    centers = np.array([[0.0, 0.0], [4.0, 3.0]])
    return centers[rng.integers(0, 2, size=n)] + rng.normal(size=(n, 2))


N_MODELS = 5


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    """The bytes of a few saved models."""
    X = _data()
    folder = tmp_path_factory.mktemp("fuzz")
    models = [GaussianMixture(2, covariance_type=ct, random_state=0).fit(X)
              for ct in ("full", "tied", "diag", "spherical")]
    online = pytest.importorskip("fastem.online")
    models.append(online.MiniBatchGaussianMixture(2, covariance_type="full", batch_size=40,
                                                  random_state=0, average=True)
                  .partial_fit(X[:60]).partial_fit(X[60:]))
    out = []
    for i, m in enumerate(models):
        path = folder / f"m{i}.npz"
        save(m, path)
        out.append(path.read_bytes())
    assert len(out) == N_MODELS
    return _Blobs(out)


class _Blobs(list):
    """The saved files; a short repr for Hypothesis' failure reports."""

    def __repr__(self):
        return f"<{len(self)} saved model files>"


def _unpack(blob):
    with np.load(io.BytesIO(blob), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays.pop("__meta__").tobytes().decode("utf-8"))
    return meta, arrays


def _pack(meta, arrays):
    arrays = dict(arrays)
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


SPECIAL = [np.nan, np.inf, -np.inf, 1e308, -1e308, 0.0, -0.0, -1.0, 1e-320, 1.0, 0.5,
           2.0**64]
values = st.one_of(st.sampled_from(SPECIAL),
                   st.floats(allow_nan=True, allow_infinity=True, width=64))
shapes = st.lists(st.integers(0, 4), min_size=0, max_size=3).map(tuple)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10, 10),
              st.sampled_from([10**12, 2**63, -2**63, 10**40]),
              st.text(max_size=8), st.floats(allow_nan=False, allow_infinity=False)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=6)


def _json_paths(node, prefix=()):
    """Every (container path, key) inside the params/attributes sections."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield prefix, k
            yield from _json_paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield prefix, i
            yield from _json_paths(v, prefix + (i,))


def _at(node, path):
    for k in path:
        node = node[k]
    return node


@st.composite
def mutations(draw, n_models):
    model = draw(st.integers(0, n_models - 1))
    n_edits = draw(st.integers(1, 3))
    edits = []
    for _ in range(n_edits):
        kind = draw(st.sampled_from(["values", "shape", "dtype", "json", "json_int",
                                     "delete"]))
        edits.append((kind, draw(st.integers(0, 10**6)), draw(values), draw(shapes),
                      draw(json_values), draw(st.integers(-3, 2**31 + 5))))
    return model, edits


def _mutate(blob, edits):
    meta, arrays = _unpack(blob)
    keys = sorted(arrays)
    for kind, pick, value, shape, jvalue, jint in edits:
        if kind in ("values", "shape", "dtype") and keys:
            key = keys[pick % len(keys)]
            a = arrays[key]
            if kind == "values" and a.size and a.dtype.kind == "f":
                a = a.copy()
                a.flat[pick % a.size] = value
            elif kind == "shape":
                a = np.full(shape, value if np.isfinite(value) else 0.5)
            elif kind == "dtype":
                target = [np.int64, np.float32, np.complex128, np.bool_, "U3",
                          np.float16][pick % 6]
                try:
                    with np.errstate(all="ignore"), warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        a = a.astype(target)
                except (TypeError, ValueError):
                    pass
            arrays[key] = a
        elif kind in ("json", "json_int", "delete"):
            paths = [p for p in _json_paths({"params": meta["params"],
                                             "attributes": meta["attributes"]})
                     if p[0]]  # inside a section, not the section itself
            if not paths:
                continue
            where, key = paths[pick % len(paths)]
            container = _at({"params": meta["params"], "attributes": meta["attributes"]},
                            where)
            if kind == "delete":
                if isinstance(container, dict):
                    del container[key]
                else:
                    container.pop(key)
            else:
                container[key] = jvalue if kind == "json" else jint
    return _pack(meta, arrays)


def _check_loaded(model, X):
    if not hasattr(model, "means_"):
        return
    for name in PARAMETER_ARRAYS:
        a = getattr(model, name)
        assert isinstance(a, np.ndarray) and np.all(np.isfinite(a)), name
    d = model.n_features_in_
    assert model.means_.shape == (model.n_components, d)
    Xd = np.resize(X, (X.shape[0], d)) if d != X.shape[1] else X
    # Finite but extreme values (a mean of 1e308) pass validation and may
    # overflow in the E-step: predictions must still come back, well-formed.
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        labels = model.predict(Xd)
        proba = model.predict_proba(Xd)
    assert labels.dtype.kind == "i" and labels.shape == (X.shape[0],)
    assert labels.min() >= 0 and labels.max() < model.n_components
    assert proba.shape == (X.shape[0], model.n_components)


# FASTEM_FUZZ_EXAMPLES=5000 runs a longer, random (not derandomized) search.
_LONG = int(os.environ.get("FASTEM_FUZZ_EXAMPLES", "0"))


@settings(max_examples=_LONG or 50, deadline=None, derandomize=not _LONG,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutation=mutations(N_MODELS))
def test_mutated_model_files(tmp_path, saved_models, mutation):
    model, edits = mutation
    blob = _mutate(saved_models[model], edits)
    path = tmp_path / "fuzz.npz"
    path.write_bytes(blob)
    try:
        est = load(path)
    except (ValueError, TypeError) as exc:
        assert str(path) in str(exc)
        return
    _check_loaded(est, _data(30, seed=1))
    if hasattr(est, "partial_fit") and hasattr(est, "_iterate"):
        # the online state goes on training, or refuses clearly
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore", RuntimeWarning)
                est.partial_fit(np.resize(_data(50, seed=2), (50, est.n_features_in_)))
        except ValueError:
            return
        _check_loaded(est, _data(30, seed=1))


def test_unmutated_files_load(saved_models, tmp_path):
    X = _data(30, seed=1)
    for i, blob in enumerate(saved_models):
        path = tmp_path / f"ok{i}.npz"
        path.write_bytes(blob)
        _check_loaded(load(path), X)
