"""fastem.persist: exact, pickle-free save/load of estimators."""

import importlib
import inspect
import json
import math
import os
import pickle
import pkgutil
import re
import struct
import zipfile

import numpy as np
import pytest

from fastem import GaussianMixture, GaussianParams, SuffStats, persist
from fastem.persist import load, save

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def assert_identical(a, b, where="value"):
    """Same type and bitwise the same content, recursively."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype, f"{where}: dtype {a.dtype} != {b.dtype}"
        assert a.shape == b.shape, f"{where}: shape {a.shape} != {b.shape}"
        if a.dtype == object:
            assert a.tolist() == b.tolist(), where
        else:
            assert a.tobytes() == b.tobytes(), f"{where}: array bytes differ"
    elif isinstance(a, np.generic):
        assert a.dtype == b.dtype, f"{where}: dtype {a.dtype} != {b.dtype}"
        assert a.tobytes() == b.tobytes(), f"{where}: scalar bits differ"
    elif isinstance(a, float):
        assert struct.pack("<d", a) == struct.pack("<d", b), f"{where}: {a!r} != {b!r}"
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{where}[{i}]")
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            assert_identical(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, np.random.RandomState):
        assert_identical(a.get_state(), b.get_state(), f"{where}.get_state()")
    elif isinstance(a, np.random.Generator):
        assert_identical(a.bit_generator.state, b.bit_generator.state, f"{where}.state")
    elif isinstance(a, SuffStats):
        for f in SuffStats.__slots__:
            assert_identical(getattr(a, f), getattr(b, f), f"{where}.{f}")
    elif isinstance(a, GaussianParams):
        for f in ("covariance_type", "weights", "means", "covariances",
                  "precisions_cholesky"):
            assert_identical(getattr(a, f), getattr(b, f), f"{where}.{f}")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def saved_names(est):
    return [n for n in est._persist_attributes() if hasattr(est, n)]


def assert_same_model(a, b):
    assert type(a) is type(b)
    assert_identical(a.get_params(deep=False), b.get_params(deep=False), "params")
    names = saved_names(a)
    assert names == saved_names(b)
    for name in names:
        assert_identical(getattr(a, name), getattr(b, name), name)


def rewrite(path, edit_meta=None, extra=None, out=None):
    """Copy a model file, editing its metadata dict and adding entries."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays["__meta__"].tobytes().decode("utf-8"))
    if edit_meta is not None:
        edit_meta(meta)
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    arrays.update(extra or {})
    out = out or path
    with open(out, "wb") as f:
        np.savez(f, **arrays)
    return out


def _blobs(dtype=np.float64, n=400, seed=0):
    rng = np.random.default_rng(seed)
    centers = np.array([[0.0, 0.0, 0.0], [5.0, 1.0, -3.0], [-2.0, 6.0, 3.0]])
    labels = rng.integers(0, 3, size=n)
    return (centers[labels] + rng.normal(size=(n, 3))).astype(dtype)


@pytest.fixture(scope="module")
def X():
    return _blobs()


@pytest.fixture(scope="module")
def fitted(X):
    return GaussianMixture(3, random_state=0).fit(X)


# ---------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_round_trip_exact(tmp_path, covariance_type, dtype):
    X = _blobs(dtype)
    gm = GaussianMixture(3, covariance_type=covariance_type, random_state=1).fit(X)
    path = tmp_path / "model.npz"
    save(gm, path)
    gm2 = load(path)
    assert_same_model(gm, gm2)
    for name in ("weights_", "means_", "covariances_", "precisions_",
                 "precisions_cholesky_", "converged_", "n_iter_", "lower_bound_",
                 "lower_bounds_", "n_features_in_"):
        assert hasattr(gm2, name), name
    assert not hasattr(gm2, "feature_names_in_")
    np.testing.assert_array_equal(gm2.predict(X), gm.predict(X))
    assert gm2.predict_proba(X).tobytes() == gm.predict_proba(X).tobytes()
    assert gm2.score_samples(X).tobytes() == gm.score_samples(X).tobytes()
    assert gm2.bic(X) == gm.bic(X)


def test_params_preserved(tmp_path, X):
    K = 3
    gm = GaussianMixture(
        K, covariance_type="diag", tol=1e-5, reg_covar=1e-4, max_iter=50, n_init=2,
        init_params="random_from_data", weights_init=[0.2, 0.3, 0.5],
        means_init=np.array([[0.0, 0.0, 0.0], [5.0, 1.0, -3.0], [-2.0, 6.0, 3.0]]),
        precisions_init=np.ones((K, 3)), random_state=12, warm_start=True, verbose=0,
        verbose_interval=3, n_jobs=1, chunk_size=128)
    path = tmp_path / "p.npz"
    save(gm, path)  # unfitted: parameters only
    gm2 = load(path)
    assert_identical(gm.get_params(deep=False), gm2.get_params(deep=False), "params")
    assert not hasattr(gm2, "means_")
    gm.fit(X)
    gm2.fit(X)
    assert_same_model(gm, gm2)


def test_random_state_preserved(tmp_path, X):
    rs = np.random.RandomState(7)
    rs.standard_normal(3)  # a state with a cached Gaussian
    gm = GaussianMixture(3, random_state=rs).fit(X)
    path = tmp_path / "rs.npz"
    save(gm, path)
    gm2 = load(path)
    assert isinstance(gm2.random_state, np.random.RandomState)
    assert gm2.random_state is not rs
    assert_identical(gm.random_state.get_state(), gm2.random_state.get_state())
    Xa, ya = gm.sample(50)
    Xb, yb = gm2.sample(50)
    assert Xa.tobytes() == Xb.tobytes()
    np.testing.assert_array_equal(ya, yb)


def test_feature_names_round_trip(tmp_path, X):
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(X, columns=["a", "b", "é"])
    gm = GaussianMixture(2, random_state=0).fit(df)
    save(gm, tmp_path / "f.npz")
    gm2 = load(tmp_path / "f.npz")
    assert_identical(gm.feature_names_in_, gm2.feature_names_in_, "feature_names_in_")
    np.testing.assert_array_equal(gm2.predict(df), gm.predict(df))


class _Extra(GaussianMixture):
    """A GaussianMixture whose extra attributes hold every supported kind of value."""


def _all_kinds():
    rs = np.random.RandomState(3)
    rs.standard_normal()
    gen = np.random.default_rng(5)
    gen.random(3)
    f = np.arange(6, dtype=np.float32).reshape(2, 3, order="F")
    ref = np.arange(6.0).reshape(2, 3)
    stats = SuffStats("diag", [1.5, 2.5], np.ones((2, 3)) / 3, np.full((2, 3), 0.1), ref,
                      ref2=np.array([0.1, 0.2, 0.3]), loglik=-12.345678901234567,
                      weight_sum=4.0, n_rows=4)
    params = GaussianParams("spherical", np.array([0.25, 0.75]), ref, np.array([1.0, 2.0]),
                            1 / np.sqrt([1.0, 2.0]))
    return {
        "none_": None, "true_": True, "false_": False, "int_": 7, "big_int_": 2**80,
        "neg_int_": -3, "float_": 0.1, "tiny_": 5e-324, "negzero_": -0.0,
        "inf_": math.inf, "ninf_": -math.inf, "nan_": math.nan,
        "nan_neg_": struct.unpack("<d", struct.pack("<Q", 0xFFF8000000000123))[0],
        "str_": "unicode: é ∞", "empty_str_": "",
        "list_": [1, 2.5, -math.inf, "x", None, [True, (1, 2)]], "tuple_": (0.1, 0.2),
        "empty_list_": [], "dict_": {"a": 1, "b": [0.5, np.float32(2.5)]},
        "f32_": np.float32(1.1), "i8_": np.int8(-5), "u64_": np.uint64(2**64 - 1),
        "bool_np_": np.bool_(True), "f64_": np.float64(np.nan),
        "arr_f_": f, "arr_empty_": np.empty((0, 4)), "arr_0d_": np.array(3.5),
        "arr_u_": np.array(["eruptions", "waiting"]), "arr_s_": np.array([b"ab", b"c"]),
        "arr_bool_": np.array([True, False]), "arr_c_": np.array([1 + 2j]),
        "arr_be_": np.arange(3, dtype=">f8"),
        "arr_obj_str_": np.array(["x", "y"], dtype=object),
        "rs_": rs, "gen_": gen, "gen_mt_": np.random.Generator(np.random.MT19937(4)),
        "_stats": stats, "_params": params,
    }


def test_every_kind_of_value_round_trips(tmp_path, monkeypatch, X):
    values = _all_kinds()
    gm = GaussianMixture(2, random_state=0).fit(X)
    for k, v in values.items():
        setattr(gm, k, v)
    base = gm._persist_attributes()
    monkeypatch.setattr(GaussianMixture, "_persist_attributes",
                        lambda self: base + list(values) + ["missing_attr_"])
    save(gm, tmp_path / "all.npz")
    gm2 = load(tmp_path / "all.npz")
    assert not hasattr(gm2, "missing_attr_")
    for k, v in values.items():
        assert_identical(v, getattr(gm2, k), k)
    # the restored random generators continue the same streams
    assert gm2.rs_.standard_normal() == values["rs_"].standard_normal()
    assert gm2.gen_.random() == values["gen_"].random()
    assert gm2.arr_f_.flags.f_contiguous


def test_persist_attributes_contract_is_used(tmp_path, monkeypatch, X):
    gm = GaussianMixture(2, random_state=0).fit(X)
    # a fitted model must be saved whole (load refuses a partial parameter
    # set), but nothing beyond the names listed is written
    names = ["weights_", "means_", "covariances_", "precisions_",
             "precisions_cholesky_", "n_features_in_", "n_iter_"]
    monkeypatch.setattr(GaussianMixture, "_persist_attributes", lambda self: names)
    save(gm, tmp_path / "m.npz")
    gm2 = load(tmp_path / "m.npz")
    assert_identical(gm.means_, gm2.means_)
    assert gm2.n_iter_ == gm.n_iter_
    assert not hasattr(gm2, "lower_bound_")
    assert not hasattr(gm2, "converged_")


def test_minibatch_round_trip_and_resume(tmp_path, X):
    online = pytest.importorskip("fastem.online")
    est = online.MiniBatchGaussianMixture(3, batch_size=100, random_state=0)
    est.partial_fit(X[:200]).partial_fit(X[200:300])
    save(est, tmp_path / "online.npz")
    est2 = load(tmp_path / "online.npz")
    assert type(est2) is online.MiniBatchGaussianMixture
    assert_same_model(est, est2)
    # the online state is restored: training goes on identically
    est.partial_fit(X[300:])
    est2.partial_fit(X[300:])
    assert_same_model(est, est2)


def test_save_writes_exactly_the_given_path(tmp_path, fitted):
    path = tmp_path / "model"  # no .npz suffix: nothing is appended
    save(fitted, str(path))
    assert sorted(os.listdir(tmp_path)) == ["model"]
    assert zipfile.is_zipfile(path)
    assert_same_model(fitted, load(str(path)))


def test_save_overwrites_and_leaves_no_temporary_files(tmp_path, fitted, X):
    path = tmp_path / "m.npz"
    path.write_bytes(b"old content")
    save(fitted, path)
    save(fitted, path)
    assert os.listdir(tmp_path) == ["m.npz"]
    assert_same_model(fitted, load(path))


def test_file_holds_no_pickles_and_readable_metadata(tmp_path, fitted):
    path = tmp_path / "m.npz"
    save(fitted, path)
    with np.load(path, allow_pickle=False) as z:
        for key in z.files:
            assert z[key].dtype != object
        meta = json.loads(z["__meta__"].tobytes().decode("utf-8"))
    assert meta["format"] == "fastem-model"
    assert meta["format_version"] == 1
    assert meta["class"] == "GaussianMixture"
    assert meta["fastem_version"]
    assert meta["params"]["n_components"] == {"type": "int", "value": 3}
    assert meta["attributes"]["lower_bound_"] == {
        "type": "float", "value": repr(fitted.lower_bound_)}


def test_convenience_wrappers(tmp_path, fitted):
    import fastem

    if not hasattr(fitted, "save") or not hasattr(fastem, "load"):
        pytest.skip("est.save / fastem.load not added yet")
    fitted.save(tmp_path / "w.npz")
    assert_same_model(fitted, fastem.load(tmp_path / "w.npz"))


# ---------------------------------------------------------------------------
# What cannot be saved
# ---------------------------------------------------------------------------


def test_save_refuses_unsupported_values(tmp_path, monkeypatch, fitted):
    monkeypatch.setattr(GaussianMixture, "_persist_attributes", lambda self: ["bad_"])
    fitted.bad_ = object()
    with pytest.raises(TypeError, match="attribute 'bad_'.*object"):
        save(fitted, tmp_path / "m.npz")
    fitted.bad_ = np.array([1, "a", None], dtype=object)
    with pytest.raises(TypeError, match="without pickling"):
        save(fitted, tmp_path / "m.npz")
    del fitted.bad_
    assert not os.listdir(tmp_path)


def test_save_refuses_other_classes(tmp_path, X):
    with pytest.raises(TypeError, match="save supports GaussianMixture"):
        save(_Extra(2).fit(X), tmp_path / "m.npz")
    from sklearn.mixture import GaussianMixture as SkGM

    with pytest.raises(TypeError, match="sklearn"):
        save(SkGM(2), tmp_path / "m.npz")


# ---------------------------------------------------------------------------
# Files that are refused, with messages naming the file
# ---------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "nope.npz")


def test_directory(tmp_path):
    with pytest.raises(ValueError, match="is a directory"):
        load(tmp_path)


@pytest.mark.parametrize("content", [b"", b"hello, not a model", b"PK\x03\x04garbage"])
def test_not_a_model_file(tmp_path, content):
    path = tmp_path / "junk.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=re.escape(str(path))):
        load(path)


def test_plain_npy_and_npz_are_refused(tmp_path):
    npy = tmp_path / "a.npy"
    np.save(npy, np.arange(3))
    with pytest.raises(ValueError, match=re.escape(str(npy)) + ".*not a fastem model"):
        load(npy)
    npz = tmp_path / "a.npz"
    np.savez(npz, x=np.arange(3))
    with pytest.raises(ValueError, match=re.escape(str(npz)) + ".*not a fastem model"):
        load(npz)


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9, 0.99])
def test_truncated_file(tmp_path, fitted, fraction):
    path = tmp_path / "m.npz"
    save(fitted, path)
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * fraction)])
    with pytest.raises(ValueError, match=re.escape(str(path))):
        load(path)


def test_corrupted_bytes(tmp_path, fitted):
    path = tmp_path / "m.npz"
    save(fitted, path)
    data = bytearray(path.read_bytes())
    # flip bytes inside the first array's data: the zip CRC check fails
    start = data.index(b"arr_0.npy") + 200
    for i in range(start, start + 16):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=re.escape(str(path))):
        load(path)


_EXECUTED = []


def _record_execution():
    _EXECUTED.append(True)
    return "owned"


class _Evil:
    def __reduce__(self):
        return (_record_execution, ())


def test_pickle_file_is_refused(tmp_path):
    path = tmp_path / "m.npz"
    with open(path, "wb") as f:
        pickle.dump(_Evil(), f)
    with pytest.raises(ValueError, match=re.escape(str(path))):
        load(path)
    assert not _EXECUTED


def test_pickled_object_array_is_refused(tmp_path, fitted):
    path = tmp_path / "m.npz"
    save(fitted, path)
    evil = np.array([_Evil()], dtype=object)

    def point_at_evil(meta):
        meta["attributes"]["means_"] = {"type": "array", "key": "evil"}

    rewrite(path, point_at_evil, extra={"evil": evil})
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*pickled object array"):
        load(path)
    assert not _EXECUTED


def test_newer_format_version(tmp_path, fitted):
    path = tmp_path / "m.npz"
    save(fitted, path)

    def bump(meta):
        meta["format_version"] = 2
        meta["fastem_version"] = "9.0"

    rewrite(path, bump)
    with pytest.raises(ValueError, match=re.escape(str(path)) + r".*format version 2.*"
                       r"fastem 9\.0.*reads format version 1.*Upgrade fastem"):
        load(path)


def test_unknown_class(tmp_path, fitted):
    path = tmp_path / "m.npz"
    save(fitted, path)
    rewrite(path, lambda meta: meta.update({"class": "os:system"}))
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*unknown class 'os:system'"
                       ".*GaussianMixture, MiniBatchGaussianMixture"):
        load(path)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update({"format": "something-else"}), "not a fastem model file"),
    (lambda m: m.update({"format_version": "1"}), "invalid format version"),
    (lambda m: m.pop("attributes"), "no 'attributes' mapping"),
    (lambda m: m["attributes"].update({"means_": {"type": "array", "key": "arr_99"}}),
     "missing array entry 'arr_99'"),
    (lambda m: m["attributes"].update({"means_": {"type": "exec", "value": "rm"}}),
     "unknown value type 'exec'"),
    (lambda m: m["attributes"].update({"n_iter_": {"type": "int", "value": "3"}}),
     "expected a int"),
    (lambda m: m["attributes"].update({"lower_bound_": {"type": "float", "value": "x"}}),
     "malformed float"),
    (lambda m: m["attributes"].update({"__class__": {"type": "none"}}),
     "invalid attribute name '__class__'"),
    (lambda m: m["params"].update({"evil_param": {"type": "int", "value": 1}}),
     r"parameters \['evil_param'\]"),
    (lambda m: m["params"].update({"random_state": {"type": "random_state",
                                                    "bit_generator": "MT19937",
                                                    "keys": "arr_0", "pos": 0,
                                                    "has_gauss": 0}}),
     "malformed float"),
])
def test_corrupt_metadata(tmp_path, fitted, edit, message):
    path = tmp_path / "m.npz"
    save(fitted, path)
    rewrite(path, edit)
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*" + message):
        load(path)


def test_metadata_not_json(tmp_path, fitted):
    path = tmp_path / "m.npz"
    save(fitted, path)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["__meta__"] = np.frombuffer(b"{not json", dtype=np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*not valid JSON"):
        load(path)


def test_module_never_allows_pickle():
    # every module of the fastem.persist package
    source = "".join(inspect.getsource(importlib.import_module(f"fastem.persist.{m.name}"))
                     for m in pkgutil.iter_modules(persist.__path__))
    source += inspect.getsource(persist)
    assert "allow_pickle=True" not in source
    assert not re.search(r"^\s*(import|from)\s+(pickle|cloudpickle|joblib)\b", source, re.M)
    uses = re.findall(r"allow_pickle\s*=\s*(\w+)", source)
    assert uses and set(uses) == {"False"}
    # every np.load call passes allow_pickle=False
    for call in re.findall(r"np\.load\(([^)]*)\)", source):
        assert "allow_pickle=False" in call, call
    assert "eval(" not in source and "exec(" not in source


def test_save_into_missing_folder(tmp_path, fitted):
    target = tmp_path / "nodir" / "m.npz"
    with pytest.raises(FileNotFoundError) as info:
        save(fitted, target)
    assert info.value.filename == str(target)


# ---------------------------------------------------------------------------
# Validated loading: tampered models are refused before use
# ---------------------------------------------------------------------------


def tamper(path, edit):
    """Rewrite a model file; edit(meta, arrays, key_of) may change both.

    key_of(name) is the archive entry of the array attribute ``name``.
    """
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays.pop("__meta__").tobytes().decode("utf-8"))

    def key_of(name):
        return meta["attributes"][name]["key"]

    edit(meta, arrays, key_of)
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def _set_array(name, fn):
    def edit(meta, arrays, key_of):
        arrays[key_of(name)] = fn(arrays[key_of(name)].copy())
    return edit


def _set_attr(name, desc):
    return lambda meta, arrays, key_of: meta["attributes"].update({name: desc})


def _nan_first(a):
    a.flat[0] = np.nan
    return a


def _negate_first_weight(w):
    w[0] = -w[0]
    return w


def _negate_first_chol_diag(p):
    p[0, 0, 0] = -p[0, 0, 0]
    return p


def _lower_nonzero(p):
    p[0, 2, 0] = 0.5
    return p


def _not_pd(c):
    c[0] = np.diag([1.0, 1.0, -1.0])
    return c


def _asymmetric(c):
    c[0, 0, 1] += 1.0
    return c


TAMPERED = [
    ("n_features_in_", _set_attr("n_features_in_", {"type": "int", "value": 2}),
     r"field 'means_' has shape \(3, 3\) but n_components is 3 and n_features_in_ is 2"),
    ("nan_means", _set_array("means_", _nan_first), "field 'means_' holds NaN"),
    ("inf_covariance", _set_array("covariances_", lambda c: c * np.inf),
     "field 'covariances_' holds NaN or infinite"),
    ("negative_weight", _set_array("weights_", _negate_first_weight),
     "field 'weights_' holds a negative weight"),
    ("weights_sum", _set_array("weights_", lambda w: w * 1.01), "field 'weights_' sums to"),
    ("negative_cholesky_diagonal", _set_array("precisions_cholesky_",
                                              _negate_first_chol_diag),
     "field 'precisions_cholesky_' has a non-positive value on its diagonal"),
    ("cholesky_not_triangular", _set_array("precisions_cholesky_", _lower_nonzero),
     "field 'precisions_cholesky_' is not upper triangular"),
    ("covariance_not_pd", _set_array("covariances_", _not_pd),
     "field 'covariances_' (has a non-positive variance|is not positive definite)"),
    ("covariance_asymmetric", _set_array("covariances_", _asymmetric),
     "field 'covariances_' is not symmetric"),
    ("covariance_type", lambda m, a, k: m["params"].update(
        {"covariance_type": {"type": "str", "value": "diag"}}),
     r"field 'covariances_' has shape \(3, 3, 3\) but .*covariance_type is 'diag'"),
    ("covariance_type_unknown", lambda m, a, k: m["params"].update(
        {"covariance_type": {"type": "str", "value": "banana"}}),
     "'covariance_type' parameter of GaussianMixture must be one of"),
    ("means_1d", _set_array("means_", lambda m: m[0]),
     r"field 'means_' has shape \(3,\) but"),
    ("means_int", _set_array("means_", lambda m: m.astype(np.int64)),
     "field 'means_' has dtype int64"),
    ("n_components_huge", lambda m, a, k: m["params"].update(
        {"n_components": {"type": "int", "value": 10**12}}),
     r"n_components=1000000000000.*more than the limit of 2147483648"),
    ("n_components_mismatch", lambda m, a, k: m["params"].update(
        {"n_components": {"type": "int", "value": 2}}),
     r"field 'means_' has shape \(3, 3\) but n_components is 2"),
    ("missing_weights", lambda m, a, k: m["attributes"].pop("weights_"),
     "has 'means_' but not 'weights_'"),
    ("unknown_attribute", _set_attr("predict", {"type": "int", "value": 1}),
     r"sets attributes \['predict'\]"),
    ("feature_names", _set_attr("feature_names_in_", {
        "type": "str_object_array", "shape": [2], "items": ["a", "b"]}),
     "field 'feature_names_in_' should be an array of 3 strings"),
]


@pytest.mark.parametrize("edit, message", [t[1:] for t in TAMPERED],
                         ids=[t[0] for t in TAMPERED])
def test_tampered_model_is_refused(tmp_path, fitted, edit, message):
    path = tmp_path / "model.npz"
    save(fitted, path)
    tamper(path, edit)
    with pytest.raises(ValueError, match=re.escape(str(path)) + "[: ].*" + message):
        load(path)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_tampered_precision_values_per_type(tmp_path, X, covariance_type):
    gm = GaussianMixture(2, covariance_type=covariance_type, random_state=0).fit(X)
    path = tmp_path / "m.npz"
    save(gm, path)
    load(path)  # valid as saved
    tamper(path, _set_array("precisions_cholesky_", lambda p: -p))
    with pytest.raises(ValueError, match="field 'precisions_cholesky_' .*non-positive"):
        load(path)
    save(gm, path)
    tamper(path, _set_array("covariances_", lambda c: -c))
    with pytest.raises(ValueError, match="field 'covariances_' .*non-positive"):
        load(path)
    save(gm, path)
    tamper(path, _set_array("precisions_", lambda p: p[..., :1]))
    with pytest.raises(ValueError, match="field 'precisions_' has shape"):
        load(path)


def test_float32_model_loads(tmp_path):
    X32 = _blobs(np.float32)
    gm = GaussianMixture(3, random_state=0).fit(X32)
    path = tmp_path / "m.npz"
    save(gm, path)
    # parameters stored as float32 (as a user might convert them) still pass
    tamper(path, lambda m, a, k: [a.update({k(n): a[k(n)].astype(np.float32)})
                                  for n in ("weights_", "means_", "covariances_")])
    gm2 = load(path)
    np.testing.assert_array_equal(gm2.predict(X32), gm.predict(X32))


def _write_npz_raw(path, members):
    """A zip of raw members {name: bytes}, like np.savez writes."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def _npy_header(shape, descr="<f8"):
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _raw_members(path):
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


@pytest.mark.parametrize("shape, message", [
    ((2**40,), "more than the limit of 2147483648"),
    ((2**20, 2**20, 2**20), "more than the limit"),
    ((10**7,), "holds only"),
])
def test_array_sizes_checked_before_allocation(tmp_path, fitted, monkeypatch, shape,
                                               message):
    path = tmp_path / "m.npz"
    save(fitted, path)
    members = _raw_members(path)
    name = "arr_1.npy"  # means_
    members[name] = _npy_header(shape) + b"\0" * 64
    _write_npz_raw(path, members)
    real = np.lib.format.read_array
    read = []

    def spy(f, *args, **kwargs):
        read.append(getattr(f, "name", None))
        return real(f, *args, **kwargs)

    monkeypatch.setattr(np.lib.format, "read_array", spy)
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*'arr_1'.*" + message):
        load(path)
    assert "__meta__.npy" in read and name not in read  # refused from its header


def test_entry_without_npy_header_is_refused(tmp_path, fitted):
    path = tmp_path / "m.npz"
    save(fitted, path)
    members = _raw_members(path)
    members["arr_1.npy"] = b"raw bytes, not an array"
    _write_npz_raw(path, members)
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*'arr_1'.*not a .npy"):
        load(path)


def test_entry_referred_twice_is_refused(tmp_path, fitted):
    path = tmp_path / "m.npz"
    save(fitted, path)

    def twice(meta, arrays, key_of):
        meta["attributes"]["lower_bounds_"] = {"type": "list", "items": [
            {"type": "array", "key": key_of("means_")}] * 1000}

    tamper(path, twice)
    with pytest.raises(ValueError, match="referred to twice"):
        load(path)


def test_deeply_nested_metadata_is_refused(tmp_path, fitted):
    path = tmp_path / "m.npz"
    save(fitted, path)
    nested = {"type": "none"}
    for _ in range(200):
        nested = {"type": "list", "items": [nested]}
    text = json.dumps(nested)
    depth = 100_000
    deep = '{"type":"list","items":[' * depth + '{"type":"none"}' + "]}" * depth

    def edit(meta, arrays, key_of):
        meta["attributes"]["lower_bounds_"] = "PLACEHOLDER"

    tamper(path, edit)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    raw = arrays["__meta__"].tobytes().decode().replace('"PLACEHOLDER"', deep)
    arrays["__meta__"] = np.frombuffer(raw.encode(), dtype=np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    assert text  # a moderately nested value is fine to encode
    with pytest.raises(ValueError, match=re.escape(str(path))):
        load(path)


def _online_model(X, covariance_type="full"):
    online = pytest.importorskip("fastem.online")
    est = online.MiniBatchGaussianMixture(3, covariance_type=covariance_type,
                                          batch_size=100, random_state=0, average=True)
    return est.partial_fit(X[:200]).partial_fit(X[200:300])


def _edit_fields(owner, field, fn):
    def edit(meta, arrays, key_of):
        desc = meta["attributes"][owner]["fields"][field]
        arrays[desc["key"]] = fn(arrays[desc["key"]].copy())
    return edit


@pytest.mark.parametrize("edit, message", [
    (_edit_fields("_stats", "nk", lambda a: a[:2]), r"field '_stats.nk' has shape \(2,\)"),
    (_edit_fields("_stats", "s2", lambda a: a * np.nan), "field '_stats.s2' holds NaN"),
    (_edit_fields("_stats", "ref", lambda a: a[:, :2]), "field '_stats.ref' has shape"),
    (_edit_fields("_iterate", "means", _nan_first), "field '_iterate.means' holds NaN"),
    (_edit_fields("_iterate", "precisions_cholesky", lambda a: -a),
     "field '_iterate.precisions_cholesky' has a non-positive"),
    (_edit_fields("_avg", "weights", lambda a: a * 3), "field '_avg.weights' sums to"),
    (lambda m, a, k: m["attributes"]["_iterate"]["fields"].update(
        {"covariance_type": {"type": "str", "value": "diag"}}),
     "field '_iterate' has covariance_type 'diag'"),
    (lambda m, a, k: m["attributes"].update({"n_steps_": {"type": "int", "value": -1}}),
     "field 'n_steps_' is -1"),
    (lambda m, a, k: m["attributes"].pop("_stats"), "field '_stats' is missing"),
])
def test_tampered_online_state_is_refused(tmp_path, X, edit, message):
    est = _online_model(X)
    path = tmp_path / "online.npz"
    save(est, path)
    load(path).partial_fit(X[300:])  # valid as saved
    tamper(path, edit)
    with pytest.raises(ValueError, match=re.escape(f"{path}: ") + ".*" + message):
        load(path)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_online_models_of_every_type_load(tmp_path, X, covariance_type):
    est = _online_model(X, covariance_type)
    save(est, tmp_path / "o.npz")
    est2 = load(tmp_path / "o.npz")
    np.testing.assert_array_equal(est2.predict(X), est.predict(X))


def test_validate_model_accepts_unfitted_and_rejects_partial(fitted):
    gm = GaussianMixture(3)
    persist.validate_model(gm, {})
    with pytest.raises(ValueError, match="incomplete"):
        persist.validate_model(gm, {"means_": fitted.means_})
    attrs = {n: getattr(fitted, n) for n in saved_names(fitted)}
    persist.validate_model(GaussianMixture(3), attrs)


# ---------------------------------------------------------------------------
# save: file modes, symbolic links, temporary files
# ---------------------------------------------------------------------------


@pytest.fixture
def umask():
    def set_umask(mask):
        set_umask.previous.append(os.umask(mask))
    set_umask.previous = []
    yield set_umask
    if set_umask.previous:
        os.umask(set_umask.previous[0])


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_new_file_mode_follows_umask(tmp_path, fitted, umask, mask, mode):
    umask(mask)
    path = tmp_path / "m.npz"
    save(fitted, path)
    assert os.stat(path).st_mode & 0o7777 == mode


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o600, 0o444])
def test_overwrite_keeps_mode(tmp_path, fitted, umask, mode):
    umask(0o077)
    path = tmp_path / "m.npz"
    path.write_bytes(b"old")
    os.chmod(path, mode)
    save(fitted, path)
    assert os.stat(path).st_mode & 0o7777 == mode
    assert_same_model(fitted, load(path))


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="symbolic links")
def test_save_through_symlink_writes_the_target(tmp_path, fitted):
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    target = real_dir / "model.npz"
    target.write_bytes(b"old")
    os.chmod(target, 0o640)
    link = tmp_path / "link.npz"
    os.symlink(target, link)
    save(fitted, link)
    assert os.path.islink(link) and os.readlink(link) == str(target)
    assert os.stat(target).st_mode & 0o7777 == 0o640
    assert_same_model(fitted, load(target))
    assert sorted(os.listdir(tmp_path)) == ["link.npz", "real"]
    assert os.listdir(real_dir) == ["model.npz"]
    # a dangling link: the file it names is created
    os.unlink(target)
    save(fitted, link)
    assert os.path.islink(link) and target.is_file()


@pytest.mark.parametrize("exc", [KeyboardInterrupt, OSError, RuntimeError])
def test_failed_save_leaves_no_temporary_file(tmp_path, fitted, monkeypatch, exc):
    path = tmp_path / "m.npz"
    path.write_bytes(b"old model")

    def fail_midway(f, **arrays):
        f.write(b"partial")
        raise exc("boom")

    monkeypatch.setattr(np, "savez", fail_midway)
    with pytest.raises(exc):
        save(fitted, path)
    assert os.listdir(tmp_path) == ["m.npz"]
    assert path.read_bytes() == b"old model"


def test_save_errors_name_the_users_path(tmp_path, fitted, monkeypatch):
    import errno

    path = tmp_path / "m.npz"

    def disk_full(f, **arrays):
        raise OSError(errno.ENOSPC, "No space left on device", f.name)

    monkeypatch.setattr(np, "savez", disk_full)
    with pytest.raises(OSError) as info:
        save(fitted, path)
    assert info.value.filename == str(path)
    assert info.value.errno == errno.ENOSPC
    assert os.listdir(tmp_path) == []
    monkeypatch.undo()
    (tmp_path / "adir").mkdir()
    with pytest.raises(IsADirectoryError) as info:
        save(fitted, tmp_path / "adir")
    assert info.value.filename == str(tmp_path / "adir")


def _dead_pid():
    for pid in range(4_000_000, 3_000_000, -1):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except OSError:
            continue
    pytest.skip("no free PID found")


@pytest.mark.skipif(os.name != "posix", reason="PIDs checked with os.kill")
def test_stale_temporary_files_are_removed(tmp_path, fitted):
    import time

    now = time.time()
    hexes = iter(f"{i:016x}" for i in range(100))

    def tmp_file(target, pid, age):
        p = tmp_path / f".{target}.{pid}.{next(hexes)}.fastem-tmp"
        p.write_bytes(b"partial")
        os.utime(p, (now - age, now - age))
        return p.name

    dead = _dead_pid()
    stale = [tmp_file("m.npz", dead, 120),            # crashed writer, 2 minutes
             tmp_file("m.npz", os.getpid(), 7200)]    # untouched for 2 hours
    kept = [tmp_file("m.npz", dead, 5),               # too recent
            tmp_file("m.npz", os.getpid(), 120),      # writer alive
            tmp_file("other.npz", dead, 7200),        # another target
            tmp_file("m.npz.bak", dead, 7200),        # another target
            ".m.npz.tmp", "m.npz.1.0000000000000000.fastem-tmp"]
    for name in kept[-2:]:
        (tmp_path / name).write_bytes(b"user file")
        os.utime(tmp_path / name, (now - 7200, now - 7200))
    save(fitted, tmp_path / "m.npz")
    left = set(os.listdir(tmp_path))
    assert left == set(kept) | {"m.npz"}
    assert not left & set(stale)


def test_temporary_file_is_named_after_the_target(tmp_path, fitted, monkeypatch):
    seen = []
    real_savez = np.savez

    def spy(f, **arrays):
        seen.append(os.listdir(tmp_path))
        real_savez(f, **arrays)

    monkeypatch.setattr(np, "savez", spy)
    save(fitted, tmp_path / "model.npz")
    (name,) = seen[0]
    assert re.fullmatch(r"\.model\.npz\.\d+\.[0-9a-f]{16}\.fastem-tmp", name)
    assert os.listdir(tmp_path) == ["model.npz"]
